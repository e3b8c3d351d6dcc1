"""Files that several processes of one run may write or read at the same moment (every rank of a
DDP run starts at once under torchrun or SLURM): each is written whole or not at all, so a reader
never sees half of one, and a file that must be the same for every rank is created exactly once.
Plain Python, so any layer can use it."""

import os
import threading
import time
from pathlib import Path


def write_atomically(path: Path, text: str) -> None:
    """Write ``text`` to a temporary file beside ``path``, then rename it over ``path``: a reader
    sees the old file or the new one, never half of either. Concurrent writers: the last one wins."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _temporary(path)
    try:
        tmp.write_text(text)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def create_once(path: Path, text: str, wait_s: float = 30.0) -> str:
    """``path``'s text; if there is no such file, create it with ``text`` first.

    Of the processes that race to create it, exactly one wins and every one of them returns what
    the winner wrote: the text is written under a temporary name and hard-linked to ``path``, which
    fails when ``path`` exists, so ``path`` never exists without its whole text. On a filesystem
    without hard links, ``path`` is created exclusively and then written; the others wait (up to
    ``wait_s``) for its text.
    """
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = _temporary(path)
        try:
            tmp.write_text(text)
            os.link(tmp, path)
        except FileExistsError:
            pass  # another process created it first: read its text below
        except OSError:  # no hard links here (some network and FUSE filesystems)
            _create_exclusively(path, text)
        finally:
            tmp.unlink(missing_ok=True)
    deadline = time.monotonic() + wait_s
    while not (found := path.read_text()) and time.monotonic() < deadline:
        time.sleep(0.05)  # only after _create_exclusively: the winner has created, not yet written
    if not found:
        raise RuntimeError(f"{path} stayed empty for {wait_s:g} s: delete it and start the run again")
    return found


def _create_exclusively(path: Path, text: str) -> None:
    try:
        descriptor = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    except FileExistsError:
        return
    with os.fdopen(descriptor, "w") as f:
        f.write(text)


def _temporary(path: Path) -> Path:
    """A name beside ``path`` that no other process or thread writing ``path`` uses."""
    return path.with_name(f"{path.name}.tmp-{os.getpid()}-{threading.get_ident()}")
