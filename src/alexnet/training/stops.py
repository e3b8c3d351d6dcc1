"""The two ways a run stops early that are outcomes, not faults of the code: raised by callbacks
(``DivergenceGuard``, ``TrialPruning``), caught by the run, which records them as its status."""


class Diverged(RuntimeError):
    """Training produced a non-finite loss or gradient, or fp16's loss scale collapsed."""


class TrialPruned(Exception):
    """The study's pruner stopped this trial (Optuna's ``TrialPruned``, raised on every rank)."""
