"""A search trial's side of ``hparams_search``: report ``val/err1`` to the Optuna study each epoch,
and stop the run when the study's pruner says it is behind.

The sweeper (``hydra_plugins.alexnet_launcher.tuned_sweeper``) starts each trial as an ordinary
run with ``tuning.storage``, ``tuning.study`` and ``tuning.trial`` set; the run ends with status
``pruned``, which the sweeper records as a pruned trial, not a failed one.
"""

from pathlib import Path

import lightning as L
import torch

from alexnet.training.stops import TrialPruned
from alexnet.training.system import MONITOR

PRUNER = "pruner"  # the study's user attribute that holds its pruner's settings


def make_pruner(settings: dict):
    """An Optuna pruner from ``{"kind": "median" | "none", "n_startup_trials", "n_warmup_steps"}``.
    A study does not store its pruner, so the sweeper keeps these settings in the study (a user
    attribute) and each trial's process builds the same pruner from them."""
    import optuna

    if settings.get("kind") == "median":
        return optuna.pruners.MedianPruner(
            n_startup_trials=settings["n_startup_trials"], n_warmup_steps=settings["n_warmup_steps"]
        )
    return optuna.pruners.NopPruner()


def open_trial(storage: str, study: str, number: int):
    """Trial ``number`` of ``study`` in the journal file ``storage``, to report to, with the study's pruner."""
    import optuna

    journal = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(Path(storage))))
    study_id = journal.get_study_id_from_name(study)
    trial_id = journal.get_trial_id_from_study_id_trial_number(study_id, number)
    pruner = make_pruner(journal.get_study_user_attrs(study_id).get(PRUNER, {}))
    return optuna.trial.Trial(optuna.load_study(study_name=study, storage=journal, pruner=pruner), trial_id)


class TrialPruning(L.Callback):
    """After each validation epoch, rank 0 reports ``val/err1`` and asks the pruner; every rank
    then stops together (the decision is broadcast) by raising :class:`TrialPruned`."""

    def __init__(self, storage: str, study: str, trial: int) -> None:
        self.storage, self.study, self.number = storage, study, trial
        self._trial = None

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking or trainer.state.fn != "fit":
            return
        prune = False
        if trainer.is_global_zero:
            if self._trial is None:
                self._trial = open_trial(self.storage, self.study, self.number)
            value = trainer.callback_metrics.get(MONITOR)
            if isinstance(value, torch.Tensor) and torch.isfinite(value):
                self._trial.report(float(value), step=trainer.current_epoch)
                prune = self._trial.should_prune()
        if trainer.strategy.broadcast(prune):
            raise TrialPruned(f"pruned after epoch {trainer.current_epoch} ({self.study}, trial {self.number})")
