"""The search stage of a tuned sweep (``hparams_search``), for the sweep report: each configuration's
study, read back from ``<sweep>/optuna.journal``.

Per configuration: trial counts (complete, pruned, failed), the chosen settings, the validation
error of the untuned settings (the first trial, the configuration's own defaults) beside the
best, their differences to the paper's configuration, and Optuna's optimisation history and
parameter importances as PNGs (``optuna.visualization.matplotlib``).
"""

import warnings
from dataclasses import dataclass
from pathlib import Path


@dataclass
class Search:
    """One configuration's study."""

    name: str  # the configuration, e.g. "norm=lrn,pool=overlap"
    complete: int
    pruned: int
    failed: int
    best_value: float | None  # best val top-1 error (fraction)
    best_params: dict[str, float]
    untuned_value: float | None  # the configuration's own defaults (trial 0), if it finished
    untuned_params: dict[str, float]
    study: object  # optuna.Study, for the plots

    @property
    def axes(self) -> dict[str, str]:
        return dict(part.split("=", 1) for part in self.name.split(",") if "=" in part)


def load_searches(journal: Path) -> list[Search]:
    """Every study in a tuned sweep's Optuna ``journal``, in the order they ran (none if there is none)."""
    if not journal.is_file():
        return []
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(journal)))
    searches = []
    for summary in optuna.get_all_study_summaries(storage):
        study = optuna.load_study(study_name=summary.study_name, storage=storage)
        states = optuna.trial.TrialState
        trials = study.get_trials(deepcopy=False)
        complete = [t for t in trials if t.state == states.COMPLETE]
        untuned = next((t for t in trials if t.user_attrs.get("untuned")), None)
        best = min(complete, key=lambda t: t.value) if complete else None
        searches.append(
            Search(
                name=summary.study_name,
                complete=len(complete),
                pruned=sum(t.state == states.PRUNED for t in trials),
                failed=sum(t.state == states.FAIL for t in trials),
                best_value=best.value if best else None,
                best_params=dict(best.params) if best else {},
                untuned_value=untuned.value if untuned is not None and untuned.state == states.COMPLETE else None,
                untuned_params=dict(untuned.params) if untuned is not None else {},
                study=study,
            )
        )
    return searches


def search_section(sweep_dir: Path, searches: list[Search], paper: dict[str, str]) -> tuple[list[str], dict[str, Path]]:
    """The report's lines on the search stage, and the plots written for it. ``paper`` maps each
    axis to the paper's choice; the configuration made of them is the one differences are taken to."""
    baseline = next((s for s in searches if s.axes and all(paper.get(a) == v for a, v in s.axes.items())), None)
    keys = list(dict.fromkeys(k for s in searches for k in [*s.best_params, *s.untuned_params]))
    lines = [
        "## Search: each configuration at its own best settings",
        "",
        "Each configuration had its own Optuna study with the same budget; the seeds above ran at its "
        "best settings. Validation top-1 error (%) of one run each: *untuned* is the configuration's own "
        "defaults (the study's first trial), *tuned* its best trial; Δ is against the paper's configuration "
        "at the same stage.",
        "",
    ]
    header = ["configuration", "trials complete / pruned / failed", "untuned val top-1 %", "Δ untuned"]
    header += ["tuned val top-1 %", "Δ tuned", *(f"chosen {k}" for k in keys)]
    rows = []
    for s in searches:
        row = [s.name + (" (paper)" if s is baseline else ""), f"{s.complete} / {s.pruned} / {s.failed}"]
        references = (baseline.untuned_value, baseline.best_value) if baseline else (None, None)
        for value, reference in zip((s.untuned_value, s.best_value), references):
            row.append(f"{100 * value:.2f}" if value is not None else "—")
            both = value is not None and reference is not None
            row.append("0" if s is baseline else f"{100 * (value - reference):+.2f}" if both else "—")
        row += [f"{s.best_params[k]:.3g}" if k in s.best_params else "—" for k in keys]
        rows.append(row)
    lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    lines.append("")
    written = {}
    for s in searches:
        for kind, path in plot_search(sweep_dir, s).items():
            written[f"{kind}:{s.name}"] = path
            lines.append(f"![{kind} {s.name}]({path.relative_to(sweep_dir)})")
    return lines, written


def plot_search(sweep_dir: Path, search: Search) -> dict[str, Path]:
    """Optuna's optimisation history and (with 2+ complete trials) parameter importances of one study."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from optuna.visualization import matplotlib as optuna_plots

    out = sweep_dir / "search"
    out.mkdir(exist_ok=True)
    stem = search.name.replace("=", "-").replace(",", "_")
    written = {}
    plots = {"history": optuna_plots.plot_optimization_history}
    if search.complete >= 2:
        plots["importances"] = optuna_plots.plot_param_importances
    for kind, plot in plots.items():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # Optuna marks its matplotlib backend experimental
            axes = plot(search.study)
        axes.set_title(f"{axes.get_title()}: {search.name}")
        path = out / f"{kind}_{stem}.png"
        axes.figure.savefig(path, dpi=100, bbox_inches="tight")
        plt.close(axes.figure)
        written[kind] = path
    return written
