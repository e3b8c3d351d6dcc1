"""A sweep's W&B dashboard, built offline for a real sweep and checked against what its runs
logged: no panel names a metric, config key or picture the runs do not have."""

import json
from importlib.metadata import version
from pathlib import Path

import pytest

from alexnet.analysis import dashboard
from conftest import ROOT, run_script
from helpers.wandb_files import named_keys, offline_runs

OFFLINE = {"WANDB_MODE": "offline"}
PLOTS = ("val_curves", "train_curves", "differences")  # the report run's images
SHORT = ["debug=smoke", "trainer.accelerator=cpu", "data.batch_size=64", "model.width=0.25", "trainer.max_epochs=2"]


@pytest.fixture(scope="module")
def reported_sweep(tmp_path_factory) -> tuple[Path, str]:
    """``norm=lrn,none`` × two seeds, W&B offline as for a user without a login, then its report."""
    root = tmp_path_factory.mktemp("dashboard")
    sweep = root / "sweep"
    args = ["src/train.py", "-m", "norm=lrn,none", "seed=0,1", *SHORT, f"hydra.sweep.dir={sweep}"]
    trained = run_script(args, ROOT, OFFLINE, timeout=600)
    assert trained.returncode == 0, trained.stderr[-3000:]
    reported = run_script(["src/report.py", str(sweep)], ROOT, OFFLINE)
    assert reported.returncode == 0, reported.stderr[-3000:]
    return sweep, reported.stdout


def logged(sweep: Path) -> dict[str, set[str]]:
    """What the sweep's four runs logged, from their offline files: config keys (nested, dotted),
    metric names (history and summary, a summary's {"min": …} as name.min) and media keys."""
    found: dict[str, set[str]] = {"config": set(), "metrics": set(), "media": set()}
    jobs = sorted(p for p in sweep.iterdir() if (p / "results.json").is_file())
    for folder in [*jobs, sweep]:  # the sweep's own folder: the report's run
        for run in offline_runs(folder):
            found["config"] |= set(flatten(run.config))
            found["metrics"] |= run.history_keys | set(flatten(run.summary))
            found["media"] |= {key for key in run.history_keys if key.startswith("visuals/") or key in PLOTS}
    return found


def flatten(tree: dict, prefix: str = "") -> dict:
    out = {}
    for key, value in tree.items():
        if isinstance(value, dict) and value and "_type" not in value:  # a W&B image is a dict with _type
            out.update(flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def test_the_report_writes_the_dashboard_and_the_command_that_publishes_it(reported_sweep):
    sweep, printed = reported_sweep
    for name in (dashboard.WORKSPACE_FILE, dashboard.REPORT_FILE, dashboard.PREVIEW_FILE):
        assert (sweep / name).is_file(), name
    assert f"python src/report.py {sweep} --publish" in printed and "wandb sync" in printed


@pytest.mark.parametrize("name", [dashboard.WORKSPACE_FILE, dashboard.REPORT_FILE])
def test_every_key_a_panel_names_was_logged_by_the_sweeps_runs(reported_sweep, name):
    sweep, _ = reported_sweep
    named = named_keys(json.loads((sweep / name).read_text()))
    runs = logged(sweep)
    assert named["config"] == {"axes.norm"}  # the swept axis, grouped by; the seeds are averaged over
    assert {"val/err1", "train/err1", "val/err1.min", "test/err1"} <= named["metrics"]
    if name == dashboard.REPORT_FILE:
        assert "val_curves" in named["media"] and "differences" in named["media"]  # lrn is the paper's choice
    for kind in ("config", "metrics", "media"):
        missing = named[kind] - runs[kind] - {"_step"}  # W&B's own step
        assert not missing, f"{name} names {kind} no run logged: {sorted(missing)}"


def test_the_workspace_shows_the_sweeps_group_grouped_by_its_axis_best_first(reported_sweep):
    sweep, _ = reported_sweep
    view = dashboard.from_json(json.loads((sweep / dashboard.WORKSPACE_FILE).read_text()))
    (job_config,) = {run.config["logger"]["wandb"]["group"] for run in offline_runs(sweep / "0")}
    assert str(view.runset_settings.filters[0]).endswith(f"== '{job_config}'") or job_config in repr(
        view.runset_settings.filters
    )
    assert [g.name for g in view.runset_settings.groupby] == ["axes.norm"]
    assert view.runset_settings.order[0].item.name == dashboard.BEST and view.runset_settings.order[0].ascending
    assert [s.name for s in view.sections] == ["by norm", "axes → error", "pictures"]


@pytest.mark.parametrize("name", [dashboard.WORKSPACE_FILE, dashboard.REPORT_FILE])
def test_the_specifications_survive_a_round_trip_through_the_librarys_model(reported_sweep, name):
    sweep, _ = reported_sweep
    spec = json.loads((sweep / name).read_text())
    assert dashboard.to_json(dashboard.from_json(spec)) == spec


def test_the_private_parts_of_wandb_workspaces_used_here_are_still_there():
    from wandb_workspaces.reports.v2.internal import ReportViewspec
    from wandb_workspaces.workspaces.internal import View

    upgraded = (
        f"wandb-workspaces {version('wandb-workspaces')} (dashboard.py was written for {dashboard.WORKSPACES_TESTED})"
    )
    view = dashboard.workspace("sweep-x", ["norm"], [], "alexnet")
    assert hasattr(view, "_to_model") and hasattr(type(view), "_from_model"), upgraded
    assert isinstance(view._to_model(), View), upgraded
    assert hasattr(ReportViewspec, "model_validate"), upgraded


def test_publishing_saves_both_views_under_the_entity_with_their_run_sets(reported_sweep, monkeypatch):
    """``report.py --publish``'s work, with W&B's save replaced by a record of what it was given."""
    import wandb_workspaces.reports.v2 as wr
    import wandb_workspaces.workspaces as ws

    sweep, _ = reported_sweep
    saved = []
    for view in (ws.Workspace, wr.Report):
        monkeypatch.setattr(view, "save", lambda self: saved.append(self))
        monkeypatch.setattr(view, "url", property(lambda self: f"https://wandb.ai/{self.entity}/{self.project}"))
    assert dashboard.publish(sweep, "lab") == ["https://wandb.ai/lab/alexnet"] * 2
    workspace, report = saved
    assert isinstance(workspace, ws.Workspace) and isinstance(report, wr.Report)
    runsets = [runset for block in report.blocks for runset in getattr(block, "runsets", [])]
    assert runsets and {runset.entity for runset in runsets} == {"lab"}
