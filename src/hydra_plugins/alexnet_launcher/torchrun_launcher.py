"""A Hydra launcher that runs each sweep job under torchrun, so sweeps are correct for any device count.

Why: under ``python src/train.py -m …``, Lightning's own DDP launcher starts ranks 1…N-1 by
re-running ``sys.argv``, which still holds ``-m`` and the sweep lists, so every rank would start a
sweep of its own (Lightning #11617, #15737; Hydra #2070). Here the sweep process trains nothing:
for each job it runs ``python -m torch.distributed.run --nproc_per_node=<trainer.devices>
src/train.py <the job's overrides> hydra.run.dir=<job dir>``. torchrun starts every rank; Lightning
recognises its environment and starts no process of its own; each rank runs one ordinary (non
multirun) training job in the job's directory. A one-process job runs ``python src/train.py …``
itself, without torchrun.

A job that fails is recorded (its ``results.json`` says ``failed``; the launcher writes one if the
job died before it could) and the remaining jobs still run, unless ``stop_on_failure`` is set.
Kept free of torch imports: Hydra imports every plugin module at start-up.
"""

import logging
import os
import subprocess
import sys
import threading
from collections.abc import Sequence
from pathlib import Path

from hydra.core.utils import JobReturn, JobStatus, configure_log, filter_overrides, setup_globals
from hydra.plugins.launcher import Launcher
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, OmegaConf, open_dict

from alexnet.errors import ConfigError
from alexnet.run.layout import RunDir, sweep_group
from alexnet.run.results import results_record

log = logging.getLogger(__name__)
_COMPOSING = threading.Lock()  # a sweeper may launch from several threads (TunedSweeper's n_jobs)


class JobFailed(RuntimeError):
    """A sweep job ended with a non-zero exit code."""


def processes_per_job(devices: object) -> int:
    """torchrun's ``--nproc_per_node`` for a job's ``trainer.devices``."""
    if isinstance(devices, int) and devices >= 1:
        return devices
    if isinstance(devices, Sequence) and not isinstance(devices, str) and len(devices) > 0:
        return len(devices)  # a list of device ids
    if devices in ("auto", -1, "-1"):
        return 1  # one process; pass an explicit count to use several devices in a sweep
    raise ConfigError(
        f"trainer.devices={devices!r} is not allowed in a torchrun sweep: a count (e.g. 2) or a list of device ids"
    )


def job_command(
    script: str, overrides: Sequence[str], job_dir: Path, nproc: int, extra: Sequence[str] = ()
) -> list[str]:
    """The command that runs one sweep job in ``job_dir``: torchrun over the training script, or for
    one process the script itself (torchrun would add a process and 4 s of start-up to each job)."""
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nnodes=1"]
    return [
        *([*torchrun, f"--nproc_per_node={nproc}"] if nproc > 1 else [sys.executable]),
        script,
        *overrides,
        *extra,
        f"hydra.run.dir={job_dir}",
        "hydra.output_subdir=null",  # the launcher writes .hydra/ once, not every rank
    ]


class TorchrunLauncher(Launcher):
    def __init__(self, stop_on_failure: bool = False) -> None:
        self.stop_on_failure = stop_on_failure
        self.config: DictConfig | None = None
        self.hydra_context: HydraContext | None = None

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        self.config, self.hydra_context = config, hydra_context

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        assert self.config is not None and self.hydra_context is not None
        with _COMPOSING:
            setup_globals()
            configure_log(self.config.hydra.hydra_logging, self.config.hydra.verbose)
        sweep_dir = Path(str(self.config.hydra.sweep.dir))
        sweep_dir.mkdir(parents=True, exist_ok=True)
        script = os.path.abspath(sys.argv[0])
        log.info(f"Launching {len(job_overrides)} jobs under torchrun into {sweep_dir}")

        returns: list[JobReturn] = []
        for idx, overrides in enumerate(job_overrides, start=initial_job_idx):
            with _COMPOSING:
                sweep_config = self.hydra_context.config_loader.load_sweep_config(self.config, list(overrides))
                with open_dict(sweep_config):
                    sweep_config.hydra.job.id = str(idx)
                    sweep_config.hydra.job.num = idx
                job_dir = sweep_dir / str(sweep_config.hydra.sweep.subdir)
                nproc = processes_per_job(
                    OmegaConf.to_object(sweep_config.trainer.devices)
                    if OmegaConf.is_config(sweep_config.trainer.devices)
                    else sweep_config.trainer.devices
                )
                processes = f"{nproc} process{'es' if nproc > 1 else ''}"
                log.info(f"\t#{idx} ({processes}): {' '.join(filter_overrides(overrides))}")
                save_job_config(sweep_config, overrides, job_dir)
            extra = [f"hydra.job.num={idx}"]
            if sweep_config.logger.get("wandb") is not None:
                extra.append(f"logger.wandb.group={sweep_group(sweep_dir)}")
            command = job_command(script, list(overrides), job_dir, nproc, extra)
            code = subprocess.run(command, cwd=os.getcwd()).returncode
            returns.append(job_return(sweep_config, overrides, job_dir, code, nproc))
            if code != 0:
                log.error(f"\t#{idx} failed with exit code {code}; see {job_dir}")
                if self.stop_on_failure:
                    break
        with _COMPOSING:
            configure_log(self.config.hydra.hydra_logging, self.config.hydra.verbose)
        return returns


def save_job_config(sweep_config: DictConfig, overrides: Sequence[str], job_dir: Path) -> None:
    """Write the job's ``.hydra/`` files as a Hydra run would (the job itself writes none)."""
    run = RunDir(job_dir)
    run.config_file.parent.mkdir(parents=True, exist_ok=True)
    task_config = OmegaConf.masked_copy(sweep_config, [k for k in sweep_config if k != "hydra"])
    OmegaConf.save(task_config, run.config_file)
    OmegaConf.save(sweep_config.hydra, run.config_file.with_name("hydra.yaml"))
    OmegaConf.save(OmegaConf.create(list(overrides)), run.overrides_file)


def job_return(sweep_config: DictConfig, overrides: Sequence[str], job_dir: Path, code: int, nproc: int) -> JobReturn:
    """Hydra's record of a finished job; a failed one is also recorded in its ``results.json``."""
    ret = JobReturn(overrides=list(overrides), working_dir=str(job_dir), task_name=sweep_config.hydra.job.name)
    run = RunDir(job_dir)
    results = run.results()
    if code == 0:
        ret.status = JobStatus.COMPLETED
        best = (results or {}).get("val", {}).get("best") or {}
        ret.return_value = best.get("err1")
        return ret
    if results is None or results.get("status") in (None, "running", "finished"):
        # Died before train() could say why (a config that does not compose, a crashed process).
        error = f"the job exited with code {code}"
        results = results_record(
            "failed",
            run,
            error=error,
            overrides=overrides,
            seed=sweep_config.get("seed"),
            world_size=nproc,
            history=(results or {}).get("history", []),
        )
        run.write_results(results)
    ret.status = JobStatus.FAILED
    ret.return_value = JobFailed(f"job {job_dir.name} ({' '.join(overrides)}) failed: {results.get('error')}")
    return ret
