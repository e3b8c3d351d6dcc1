"""A DDP run that hangs ends instead: failed collectives named, signals heard while blocked.

Two ways a multi-process run gets stuck, and what this module does about each:

- **Ranks wait in different collectives** (a collective outside the order every rank follows).
  Each collective then fails at the strategy's timeout (``collective_timeout_s``, see
  :func:`alexnet.lightning_compat.set_collective_timeout`); :func:`failed_collective` names it and
  the code that called it, for the log and ``results.json``.
- **A signal arrives while the main thread is blocked in one** (gloo or NCCL wait in C++): Python
  runs a signal handler only between bytecodes, so neither Lightning's SIGTERM handling nor
  Ctrl-C can act until the collective returns, which it never does. :class:`SignalWatchdog` hears
  the signal on another thread (``signal.set_wakeup_fd``), and once the main thread has sat inside
  one ``torch.distributed`` call for ``grace_s``, logs every thread's stack and calls its
  ``on_stuck`` (which writes ``results.json`` and exits).
"""

import logging
import os
import signal
import sys
import threading
import time
import traceback
from collections.abc import Callable

from alexnet.training.slurm import SLURM_SIGNALS

log = logging.getLogger(__name__)

_C10D = f"torch{os.sep}distributed{os.sep}distributed_c10d.py"
_LIBRARIES = (f"{os.sep}torch{os.sep}", f"{os.sep}lightning{os.sep}", f"{os.sep}torchmetrics{os.sep}")


def failed_collective(err: BaseException) -> str | None:
    """For an error raised inside a ``torch.distributed`` collective: which one, and who called it
    (see :func:`collective_in`); None for any other error."""
    return collective_in(traceback.extract_tb(err.__traceback__))


def collective_in(frames: list[traceback.FrameSummary]) -> str | None:
    """For a stack (outermost first) inside a ``torch.distributed`` collective: "<collective>,
    called at <first frame outside torch> (from <nearest frame of this repo>)", else None."""
    inside = [i for i, f in enumerate(frames) if f.filename.endswith(_C10D)]
    if not inside:
        return None
    callers = frames[: inside[0]]  # the outermost: the public call (all_gather_object, not its all_gather)
    caller = next((f for f in reversed(callers) if f"{os.sep}torch{os.sep}" not in f.filename), None)
    ours = next((f for f in reversed(callers) if not any(lib in f.filename for lib in _LIBRARIES)), None)
    where = f"{frames[inside[0]].name}"
    if caller is not None:
        where += f", called at {_short(caller.filename)}:{caller.lineno} ({caller.name})"
    if ours is not None and ours is not caller:
        where += f", from {_short(ours.filename)}:{ours.lineno} ({ours.name})"
    return where


def _short(filename: str) -> str:
    """A path from its package folder on (``lightning/pytorch/…``, ``alexnet/…``), not the venv's root."""
    parts = filename.split(os.sep)
    for root in ("site-packages", "src"):
        if root in parts:
            return "/".join(parts[len(parts) - parts[::-1].index(root) :])
    return filename


def thread_stacks() -> str:
    """Every thread's Python stack, the main thread first."""
    frames = sys._current_frames()  # the one standard way to read another thread's stack
    names = {t.ident: t.name for t in threading.enumerate()}
    main = threading.main_thread().ident
    order = [ident for ident in frames if ident == main] + [ident for ident in frames if ident != main]
    return "\n".join(
        f"Thread {names.get(ident, ident)}:\n{''.join(traceback.format_stack(frames[ident]))}" for ident in order
    )


class SignalWatchdog:
    """Hears SIGTERM, SIGINT, SIGUSR1 and SIGUSR2 while the main thread cannot, and ends a process stuck in C.

    ``start()`` (main thread) points ``signal.set_wakeup_fd`` at a pipe; the C-level handler of any
    signal with a Python handler writes the signal's number there even while the main thread is
    blocked. A daemon thread reads it, then watches the main thread until the process ends: while
    Python runs, the normal path (checkpoint at the step boundary, then exit) goes on. Once the main
    thread stays on one instruction inside a ``torch.distributed`` call for ``grace_s``, where no
    Python handler can run and whose peers have evidently stopped, the thread logs every thread's
    stack and calls ``on_stuck(signum, where)``, which must end the process. Elsewhere (a sleep, a
    queue) Python's handlers still run, so it leaves them to it.
    """

    SIGNALS = (signal.SIGTERM, signal.SIGINT, *SLURM_SIGNALS)

    def __init__(self, on_stuck: Callable[[int, str], None], grace_s: float = 5.0) -> None:
        self.on_stuck, self.grace_s = on_stuck, grace_s
        self._read_fd: int | None = None
        self._previous_fd = -1

    def start(self) -> "SignalWatchdog":
        if threading.current_thread() is not threading.main_thread() or self._read_fd is not None:
            return self
        read_fd, write_fd = os.pipe()
        os.set_blocking(write_fd, False)
        self._previous_fd = signal.set_wakeup_fd(write_fd, warn_on_full_buffer=False)
        self._read_fd, self._write_fd = read_fd, write_fd
        threading.Thread(target=self._listen, args=(read_fd,), name="signal-watchdog", daemon=True).start()
        return self

    def stop(self) -> None:
        if self._read_fd is None or threading.current_thread() is not threading.main_thread():
            return
        signal.set_wakeup_fd(self._previous_fd)
        os.close(self._write_fd)  # the listener's read returns empty and it ends; it closes its end
        self._read_fd = None

    def _listen(self, read_fd: int) -> None:
        try:
            while data := os.read(read_fd, 64):
                for signum in data:
                    if signum in self.SIGNALS:
                        self._watch(signum)
        finally:
            os.close(read_fd)

    def _watch(self, signum: int) -> None:
        """From the signal until the process ends: if the main thread stays on one instruction inside
        a ``torch.distributed`` call for ``grace_s``, it is stuck there (also when the signal's own
        handler ran and then blocked in a collective, as Lightning's SIGTERM handler can)."""
        main = threading.main_thread()
        position, since = None, time.monotonic()
        while main.is_alive():
            time.sleep(0.1)
            now = self._position(main.ident)
            if now != position:
                position, since = now, time.monotonic()
                continue
            if time.monotonic() - since < self.grace_s:
                continue
            frame = sys._current_frames().get(main.ident)
            collective = collective_in(traceback.extract_stack(frame)) if frame is not None else None
            if collective is None:  # blocked where Python's handlers still run (a sleep, a queue): wait on
                since = time.monotonic()
                continue
            where = f"collective {collective}"
            log.error(
                "%s arrived, but the main thread has been blocked in %s for %.0f s: it cannot checkpoint, "
                "so this process ends now. Stacks:\n%s",
                signal.Signals(signum).name,
                where,
                self.grace_s,
                thread_stacks(),
            )
            self.on_stuck(signum, where)
            return

    @staticmethod
    def _position(ident: int | None) -> tuple[int, int] | None:
        frame = sys._current_frames().get(ident)
        return (id(frame), frame.f_lasti) if frame is not None else None
