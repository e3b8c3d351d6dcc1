"""A sweep's W&B dashboard, built from what the sweep varied: a saved workspace view of its group
and a report, through the ``wandb-workspaces`` library.

- a section per swept axis: the validation (and training) error curves grouped by that axis, mean
  and standard deviation over seeds;
- a parallel-coordinates panel from the axes (and a tuned sweep's tuned settings) to the best
  validation error and the test error;
- the runs table sorted by the best validation error; conv1's kernels and the confusion matrix;
- the report: ``report.md`` (the paper's claims against the measured differences), the same
  panels, and for a tuned sweep the search stage beside the seed runs.

Each run's config has a flat ``axes`` node to group by (:func:`alexnet.run.tracking.axes`). The
specifications are written as JSON when W&B is offline and saved from that JSON later
(:func:`publish`). The library's model of a view (``_to_model``/``_from_model``) is not its public
API: it is used in this module only (``WORKSPACES_TESTED``; ``tests/test_dashboard.py`` names the
installed version if an upgrade moves it).
"""

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import wandb_workspaces.reports.v2 as wr
import wandb_workspaces.workspaces as ws
from wandb_workspaces.reports.v2.internal import ReportViewspec
from wandb_workspaces.workspaces.internal import View

from alexnet.ablations import AXES, VALUES, axis_name
from alexnet.analysis.plotting import pyplot, save

WORKSPACES_TESTED = "0.4.13"
CURVES = ("val/err1", "train/err1")  # plotted against the epoch, grouped by each axis
BEST = "val/err1.min"  # the run's best validation top-1 error: W&B's summary of val/err1 (summary="min")
TEST = "test/err1"  # the test error of the best checkpoint
MEDIA = {"visuals/filters": "conv1's kernels (Fig. 3)", "visuals/confusion": "the confusion matrix"}
WORKSPACE_FILE, REPORT_FILE, PREVIEW_FILE = "wandb_workspace.json", "wandb_report.json", "wandb_workspace.png"


def axis_key(key: str, tuned: Sequence[str] = ()) -> str:
    """The config key a swept override key groups by: ``axes.<name>`` where a run's axes node has
    it (the ablation axes, their values, a tuned sweep's tuned settings), else the key itself."""
    known = {*AXES, *VALUES.values(), *(axis_name(t) for t in tuned)}
    return f"axes.{axis_name(key)}" if axis_name(key) in known else key


def sweep_panels(axes: Sequence[str], tuned: Sequence[str]) -> list[tuple[str, list[Any]]]:
    """(section name, panels) for a sweep that varied ``axes`` (override keys) and tuned ``tuned``."""
    sections = []
    for axis in axes:
        key = axis_key(axis, tuned)
        curves = [
            wr.LinePlot(
                title=f"{metric} by {axis} (mean ± std over seeds)",
                x="epoch",
                y=[metric],
                groupby=key,
                groupby_aggfunc="mean",
                groupby_rangefunc="stddev",
            )
            for metric in CURVES
        ]
        sections.append((f"by {axis}", curves))
    columns = [wr.ParallelCoordinatesPlotColumn(metric=wr.Config(axis_key(a, tuned))) for a in [*axes, *tuned]]
    columns += [wr.ParallelCoordinatesPlotColumn(metric=wr.SummaryMetric(name)) for name in (BEST, TEST)]
    sections.append(
        ("axes → error", [wr.ParallelCoordinatesPlot(title="the axes against the errors", columns=columns)])
    )
    sections.append(("pictures", [wr.MediaBrowser(title=title, media_keys=[key]) for key, title in MEDIA.items()]))
    return sections


def workspace(group: str, axes: Sequence[str], tuned: Sequence[str], project: str) -> ws.Workspace:
    """A saved view of the sweep's W&B group: a section per axis, the parallel coordinates, the
    pictures; its training runs (not a tuned sweep's search trials, nor the report's run) grouped by
    the first axis and sorted by their best validation error. Its entity is set when it is
    published (:func:`publish`), as are the report's."""
    return ws.Workspace(
        entity="",
        project=project,
        name=f"{group} (alexnet)",
        sections=[ws.Section(name=name, panels=panels, is_open=True) for name, panels in sweep_panels(axes, tuned)],
        settings=ws.WorkspaceSettings(x_axis="epoch"),
        runset_settings=ws.RunsetSettings(
            filters=[ws.Metric("Group") == group, ws.Metric("JobType") == "train"],  # not the search, the report
            groupby=[ws.Config(axis_key(axes[0], tuned))] if axes else [],
            order=[ws.Ordering(ws.Summary(BEST), ascending=True)],
        ),
    )


def report(
    group: str,
    axes: Sequence[str],
    tuned: Sequence[str],
    markdown: str,
    project: str,
    plots: Sequence[str] = (),
) -> wr.Report:
    """A W&B report of the sweep: its ``report.md``, its ``plots`` (the images its ``report`` run
    logged, by key), and the workspace's panels over its runs; for a tuned sweep, the search
    stage's trials as a run set beside the seed runs."""

    def runset(name: str, job_type: str) -> wr.Runset:
        where = f"Group = '{group}' and JobType = '{job_type}'"
        return wr.Runset(project=project, entity="", name=name, filters=where)

    blocks: list[Any] = [wr.MarkdownBlock(text=markdown)]
    if plots:
        media = [wr.MediaBrowser(title=key, media_keys=[key]) for key in plots]
        blocks += [wr.H2(text="the report's plots"), wr.PanelGrid(runsets=[runset("report", "report")], panels=media)]
    stages = [runset("runs", "train"), *([runset("search", "search")] if tuned else [])]
    for name, panels in sweep_panels(axes, tuned):
        blocks += [wr.H2(text=name), wr.PanelGrid(runsets=stages, panels=panels)]
    return wr.Report(project=project, entity="", title=f"AlexNet sweep {group}", blocks=blocks)


def preview(view: ws.Workspace, path: Path, per_row: int = 2) -> Path:
    """A picture of the workspace's layout (sections in order, their panels side by side),
    each panel's kind, title and what it plots: the dashboard, seen before it is published."""
    plt = pyplot()
    rows = [
        (section.name, section.panels[i : i + per_row])
        for section in view.sections
        for i in range(0, len(section.panels), per_row)
    ]
    fig, ax = plt.subplots(figsize=(5 * per_row, 1.6 * len(rows) + 0.6))
    ax.set_xlim(0, per_row)
    ax.set_ylim(len(rows), -0.35)
    ax.axis("off")
    ax.text(0, -0.2, f"W&B workspace: {view.name}", fontsize=12, weight="bold")
    for y, (section, panels) in enumerate(rows):
        ax.text(0.02, y + 0.12, section, fontsize=10, weight="bold", color="tab:blue")
        for x, panel in enumerate(panels):
            ax.add_patch(plt.Rectangle((x + 0.04, y + 0.2), 0.92, 0.72, fill=False, linewidth=1.2))
            ax.text(x + 0.08, y + 0.34, type(panel).__name__, fontsize=8, color="grey")
            ax.text(x + 0.08, y + 0.52, panel.title, fontsize=8, wrap=True)
            ax.text(x + 0.08, y + 0.74, _plots(panel), fontsize=7, color="dimgrey")
    return save(fig, path)


def _plots(panel: Any) -> str:
    """What a panel shows, in a few words."""
    if isinstance(panel, wr.LinePlot):
        return f"y {', '.join(_name(m) for m in panel.y)} · grouped by {_name(panel.groupby)}"
    if isinstance(panel, wr.ParallelCoordinatesPlot):
        return " → ".join(_name(c.metric).removeprefix("axes.") for c in panel.columns)
    if isinstance(panel, wr.MediaBrowser):
        return ", ".join(panel.media_keys)
    return ""


def _name(metric: Any) -> str:
    """A metric or config key as the library holds it (an object with a name, or a string)."""
    return str(getattr(metric, "name", metric))


# -- the library's model: its private part, here only ----------------------------------------------
def to_json(view: ws.Workspace | wr.Report) -> dict[str, Any]:
    """A view as the JSON of the library's own model (what it sends to W&B)."""
    return view._to_model().model_dump(by_alias=True, mode="json", exclude_none=True)


def from_json(spec: dict[str, Any]) -> ws.Workspace | wr.Report:
    """The view back from :func:`to_json`'s JSON, through the library's model (a report's spec
    holds blocks, a workspace's sections)."""
    if "blocks" in spec.get("spec", {}):
        return wr.Report._from_model(ReportViewspec.model_validate(spec))
    return ws.Workspace._from_model(View.model_validate(spec))


def write_specs(folder: Path, views: dict[str, ws.Workspace | wr.Report]) -> dict[str, Path]:
    """Write each view's JSON into ``folder`` (``{file name: view}``); return the paths."""
    written = {}
    for name, view in views.items():
        written[name] = folder / name
        written[name].write_text(json.dumps(to_json(view), indent=1) + "\n")
    return written


def publish(folder: Path, entity: str) -> list[str]:
    """Save the views written in ``folder`` to W&B under ``entity``; return their URLs."""
    urls = []
    for name in (WORKSPACE_FILE, REPORT_FILE):
        path = folder / name
        if not path.is_file():
            continue
        view = from_json(json.loads(path.read_text()))
        view.entity = entity
        if isinstance(view, wr.Report):
            for block in view.blocks:
                for runset in getattr(block, "runsets", []):
                    runset.entity = entity
        view.save()
        urls.append(view.url)
    return urls
