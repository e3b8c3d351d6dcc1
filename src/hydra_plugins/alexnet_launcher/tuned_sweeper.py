"""A Hydra sweeper for fair ablations: tune each configuration with Optuna, then train seeds at its best.

    python src/train.py -m experiment=ablation_norm_pool hparams_search=per_config

1. **Search.** The sweep's discrete axes other than ``seed`` (e.g. ``norm × pool``) give the
   configurations. Each gets an Optuna study of ``n_trials`` trials (TPE, seeded), over
   ``search_space`` (e.g. ``optimizer.lr`` on a log scale). The first trial of each study is the
   configuration's own defaults, so the untuned setting is measured with the same budget. Each trial
   is an ordinary run, started through the configured launcher (so a ``trainer.devices=2`` trial is
   one DDP job; ``hydra/launcher=slurm`` submits it) into ``<sweep>/search/<configuration>/<trial>``.
   It reports ``val/err1`` to its study every epoch and stops when the pruner says it is behind
   (``status: pruned``; :mod:`alexnet.training.tuning`).
2. **Seeds.** Each configuration's best settings, trained with each seed of the sweep's ``seed``
   axis (or ``seeds``), into ``<sweep>/<job number>`` as an ordinary sweep's jobs, the directories
   ``src/report.py`` reads.

Every study lives in one journal file, ``<sweep>/optuna.journal``. Run the same command with the
same ``hydra.sweep.dir`` after a kill and it continues: finished trials (complete or pruned) count
and are not repeated, a trial that was running is marked failed and asked again, and seed jobs
that finished at the same settings are kept. A failed trial (one that diverged, say) is recorded
as failed and does not count towards the budget; after ``n_trials`` failures a configuration's
search stops. Optuna is imported only when a sweep starts (Hydra imports plugins at start-up).
"""

import itertools
import logging
import os
import re
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, ListConfig, OmegaConf

from alexnet.errors import require
from alexnet.run.layout import JOURNAL, RunDir

log = logging.getLogger(__name__)

SEARCH_DIR = "search"


def study_name(configuration: Sequence[str]) -> str:
    """A study's name from its configuration's overrides: ``norm=lrn,pool=overlap``."""
    return ",".join(configuration) or "all"


def directory_name(configuration: Sequence[str]) -> str:
    """A configuration as a directory name: ``norm-lrn_pool-overlap``."""
    return re.sub(r"[^A-Za-z0-9.\-_]", "-", "_".join(o.replace("=", "-") for o in configuration)) or "all"


@dataclass
class SearchSettings:
    """A tuned sweep's settings (``hydra.sweeper.*`` of ``conf/hydra/sweeper/tuned.yaml``), each
    checked here, as a :class:`~alexnet.errors.ConfigError` naming its key.

    Args:
        metric: what the study minimises: a run's best ``val/err1`` (``train()``'s return value).
        n_trials: trials per configuration, complete or pruned.
        seed: the TPE sampler's seed (each study adds its configuration's index).
        n_startup_trials: random trials before TPE models the results.
        pruner: ``median`` (Optuna's ``MedianPruner``) or ``none``.
        n_warmup_steps: epochs before a trial may be pruned.
        search_space: ``{key: {low, high, log}}`` floats to search.
        trial_overrides: overrides for search trials only, e.g. ``[trainer.max_epochs=4]``: a
            shorter budget per trial than the seeds get.
        seeds: seeds of the second stage; null: the sweep's ``seed`` axis (or the config's seed).
        n_jobs: jobs at once: configurations searched side by side, then seed runs side by side,
            each job's processes on cores ÷ n_jobs threads (``OMP_NUM_THREADS``, unless set). Most of
            a small job is a process starting, on one core: 2 on 2 cores overlap those.
    """

    metric: str = "val/err1"
    n_trials: int = 4
    seed: int = 0
    n_startup_trials: int = 2
    pruner: str = "median"
    n_warmup_steps: int = 1
    search_space: dict = field(default_factory=dict)
    trial_overrides: list = field(default_factory=list)
    seeds: list | None = None
    n_jobs: int = 1

    def __post_init__(self) -> None:
        require(self.metric == "val/err1", "hydra.sweeper.metric", self.metric, "val/err1: what the runs return")
        require(self.pruner in ("median", "none"), "hydra.sweeper.pruner", self.pruner, "median or none")
        jobs = self.n_jobs
        require(isinstance(jobs, int) and jobs >= 1, "hydra.sweeper.n_jobs", jobs, "a positive integer")
        self.search_space = _plain(self.search_space) or {}
        self.trial_overrides = list(self.trial_overrides)
        self.seeds = list(self.seeds) if self.seeds is not None else None


class TunedSweeper(Sweeper):
    """See the module docstring.

    Args:
        params: axes to sweep, as ``hydra.sweeper.params`` of Hydra's basic sweeper (experiments
            set them there).
        **settings: the search's :class:`SearchSettings`.
    """

    continues_in_place = True  # run again on its directory, it keeps its journal's finished trials (run.guard)

    def __init__(self, params: DictConfig | None = None, **settings: Any) -> None:
        self.settings = SearchSettings(**settings)
        self.params = _plain(params) or {}
        self.config: DictConfig | None = None
        self.hydra_context: HydraContext | None = None
        self.launcher = None

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        from hydra.core.plugins import Plugins

        self.config, self.hydra_context = config, hydra_context
        self.launcher = Plugins.instance().instantiate_launcher(
            hydra_context=hydra_context, task_function=task_function, config=config
        )

    def sweep(self, arguments: list[str]) -> Any:
        assert self.config is not None and self.launcher is not None and self.hydra_context is not None
        import optuna

        sweep_dir = Path(str(self.config.hydra.sweep.dir))
        sweep_dir.mkdir(parents=True, exist_ok=True)
        OmegaConf.save(self.config, sweep_dir / "multirun.yaml")
        fixed, axes, seeds = self._split(arguments)
        configurations = [list(c) for c in itertools.product(*axes)] or [[]]
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        if self.settings.n_jobs > 1:
            os.environ.setdefault("OMP_NUM_THREADS", str(max(1, len(os.sched_getaffinity(0)) // self.settings.n_jobs)))
        log.info(
            "Tuning %d configuration(s), %d trials each, then seeds %s at each one's best; studies in %s",
            len(configurations),
            self.settings.n_trials,
            seeds,
            sweep_dir / JOURNAL,
        )
        with ThreadPoolExecutor(self.settings.n_jobs) as pool:  # each study asks its trials one after another
            searches = pool.map(lambda i: self._search(optuna, i, configurations[i], fixed), range(len(configurations)))
            best = list(searches)
        return self._seeds(sweep_dir, configurations, best, fixed, seeds)

    def _split(self, arguments: list[str]) -> tuple[list[str], list[list[str]], list[int]]:
        """(fixed overrides, each swept axis's overrides, the seeds) from ``params`` and the command line."""
        parser = OverridesParser.create(config_loader=self.hydra_context.config_loader)
        given = [f"{k}={v}" for k, v in self.params.items()] + list(arguments)
        fixed, axes, seeds = {}, {}, self.settings.seeds
        for override in parser.parse_overrides(given):
            key = override.get_key_element()
            if override.is_sweep_override():
                values = list(override.sweep_string_iterator())
                if key == "seed":
                    seeds = seeds if self.settings.seeds is not None else [int(v) for v in values]
                else:
                    axes[key] = [f"{key}={v}" for v in values]
                    fixed.pop(key, None)
            else:
                fixed[key] = f"{key}={override.get_value_element_as_str()}"
                axes.pop(key, None)
        if seeds is None:
            seeds = [int(fixed.pop("seed").split("=", 1)[1])] if "seed" in fixed else [int(self.config.seed)]
        fixed.pop("seed", None)
        return list(fixed.values()), list(axes.values()), seeds

    def _search(self, optuna, index: int, configuration: list[str], fixed: list[str]) -> dict | None:
        """Run what is left of one configuration's study; return its best settings (None: no trial
        finished). A failed trial (e.g. diverged) does not count towards ``n_trials``; after
        ``n_trials`` failures the configuration's search stops."""
        from alexnet.training.tuning import PRUNER, make_pruner

        name, tuned = study_name(configuration), self.settings
        journal = Path(str(self.config.hydra.sweep.dir)) / JOURNAL
        storage = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(journal)))
        pruner = {
            "kind": tuned.pruner,
            "n_startup_trials": tuned.n_startup_trials,
            "n_warmup_steps": tuned.n_warmup_steps,
        }
        study = optuna.create_study(
            study_name=name,
            storage=storage,
            direction="minimize",
            sampler=optuna.samplers.TPESampler(seed=tuned.seed + index, n_startup_trials=tuned.n_startup_trials),
            pruner=make_pruner(pruner),
            load_if_exists=True,
        )
        study.set_user_attr(PRUNER, pruner)  # the trials' processes prune with the same settings
        states = optuna.trial.TrialState
        for stale in study.get_trials(deepcopy=False, states=(states.RUNNING,)):  # killed with the sweep
            study.tell(stale.number, state=states.FAIL)
            if stale.user_attrs.get("untuned"):  # the defaults are asked again: every study measures them
                study.enqueue_trial(stale.params, user_attrs={"untuned": True})
        if not study.trials:
            study.enqueue_trial(self._defaults(configuration, fixed), user_attrs={"untuned": True})
        done = (states.COMPLETE, states.PRUNED)
        while len(study.get_trials(deepcopy=False, states=done)) < tuned.n_trials:
            if len(study.get_trials(deepcopy=False, states=(states.FAIL,))) >= tuned.n_trials:
                log.error("%s: %d trials failed (see %s); its search stops here", name, tuned.n_trials, SEARCH_DIR)
                break
            trial = study.ask()
            settings = {key: self._suggest(trial, key, space) for key, space in tuned.search_space.items()}
            job_dir = f"{SEARCH_DIR}/{directory_name(configuration)}/{trial.number}"
            overrides = [
                *fixed,
                *configuration,
                *(f"{key}={value!r}" for key, value in settings.items()),
                *tuned.trial_overrides,
                f"tuning.storage={Path(str(self.config.hydra.sweep.dir)) / JOURNAL}",
                f"tuning.study='{name}'",
                f"tuning.trial={trial.number}",
                f"hydra.sweep.subdir={job_dir}",
            ]
            (ret,) = self.launcher.launch([overrides], initial_job_idx=trial.number)
            results = RunDir(ret.working_dir).results() or {}
            if results.get("status") == "pruned":
                study.tell(trial, state=states.PRUNED)
            elif results.get("status") == "finished" and ret.return_value is not None:
                study.tell(trial, float(ret.return_value))
            else:
                log.error("search trial %s of %s failed: %s", trial.number, name, results.get("error"))
                study.tell(trial, state=states.FAIL)
            log.info("%s trial %d: %s -> %s", name, trial.number, settings, results.get("status"))
        if not study.get_trials(deepcopy=False, states=(states.COMPLETE,)):
            log.error("%s: no trial finished, so it has no seed runs", name)
            return None
        log.info("%s: best %s = %.4f with %s", name, tuned.metric, study.best_value, study.best_params)
        return study.best_params

    def _defaults(self, configuration: list[str], fixed: list[str]) -> dict[str, float]:
        """The configuration's own values of the searched keys (its untuned settings)."""
        cfg = self.hydra_context.config_loader.load_sweep_config(self.config, [*fixed, *configuration])
        return {key: float(OmegaConf.select(cfg, key)) for key in self.settings.search_space}

    @staticmethod
    def _suggest(trial, key: str, space: dict) -> float:
        return trial.suggest_float(key, float(space["low"]), float(space["high"]), log=bool(space.get("log", False)))

    def _seeds(
        self,
        sweep_dir: Path,
        configurations: list[list[str]],
        best: list[dict[str, float] | None],
        fixed: list[str],
        seeds: list[int],
    ) -> list:
        """Each configuration at its best settings, once per seed, as jobs 0, 1, … of the sweep; a job
        that already finished at the same settings (a continued sweep) is kept."""
        jobs = [
            [*fixed, *configuration, *(f"{key}={value!r}" for key, value in (settings or {}).items()), f"seed={seed}"]
            for configuration, settings in zip(configurations, best)
            for seed in seeds
        ]
        searched = [settings is not None for settings in best for _ in seeds]
        todo = []
        for number, overrides in enumerate(jobs):
            if not searched[number]:
                continue  # its search found no settings: the report lists the job as never started
            job = RunDir(sweep_dir / str(number))
            done = job.results() or {}
            if done.get("status") == "finished" and done.get("overrides", [])[: len(overrides)] == overrides:
                continue  # a continued sweep: this job already ran at these settings
            if job.path.is_dir():  # unfinished, or run at settings a continued search has since improved on
                log.info("Job %d is run again; the previous one is moved aside to %s", number, job.move_aside())
            todo.append((number, overrides))
        with ThreadPoolExecutor(self.settings.n_jobs) as pool:
            launched = pool.map(lambda job: self.launcher.launch([job[1]], initial_job_idx=job[0]), todo)
            return [ret for rets in launched for ret in rets]


def _plain(node: Any) -> Any:
    """A config node as plain Python containers (Hydra passes ``DictConfig``/``ListConfig``)."""
    return OmegaConf.to_container(node) if isinstance(node, DictConfig | ListConfig) else node
