"""Sweeps: failures recorded, the SLURM job specification, the report.

The README's own sweep command (two jobs of two processes each) runs in ``tests/test_readme.py``,
which checks there that each job ran once in its own directory, as one W&B run of the sweep's group."""

import json
import math
import sys
from pathlib import Path

import pytest
from hydra.utils import instantiate
from omegaconf import OmegaConf

from alexnet.analysis.sweep_stats import difference_ci
from alexnet.run.sweep import report_sweep
from conftest import ROOT, compose_config, run_script

TRAIN = str(ROOT / "src" / "train.py")
REPORT = str(ROOT / "src" / "report.py")


def sweep_dirs(cwd: Path) -> list[Path]:
    return sorted((cwd / "outputs" / "multiruns").glob("*/*"))


def job_results(sweep_dir: Path) -> dict[str, dict]:
    return {p.parent.name: json.loads(p.read_text()) for p in sweep_dir.glob("*/results.json")}


@pytest.mark.slow
def test_a_failing_job_is_recorded_and_the_others_still_run(tmp_path):
    result = run_script(
        [TRAIN, "-m", "dropout.p=1.5,0.5", "debug=smoke", "trainer.accelerator=cpu", "data.batch_size=32"],
        cwd=tmp_path,
        timeout=300,
    )
    assert result.returncode != 0  # the sweep reports that a job failed...
    (sweep,) = sweep_dirs(tmp_path)
    results = job_results(sweep)
    assert results["0"]["status"] == "failed" and "dropout.p=1.5" in results["0"]["error"]
    assert results["1"]["status"] == "finished"  # ...after running the rest

    report_sweep(sweep)  # src/report.py's work (the README's report command runs the script)
    text = (sweep / "report.md").read_text()
    assert "## Failed and unfinished jobs" in text and "job 0: **failed** (dropout.p=1.5" in text


@pytest.mark.slow
def test_stop_on_failure_ends_the_sweep_at_the_first_failed_job(tmp_path):
    result = run_script(
        [
            TRAIN,
            "-m",
            "dropout.p=1.5,0.5",
            "debug=smoke",
            "trainer.accelerator=cpu",
            "hydra.launcher.stop_on_failure=true",
        ],
        cwd=tmp_path,
        timeout=300,
    )
    assert result.returncode != 0
    (sweep,) = sweep_dirs(tmp_path)
    assert list(job_results(sweep)) == ["0"]
    report_sweep(sweep)
    assert "1 job(s) never started" in (sweep / "report.md").read_text()


def test_slurm_launcher_asks_for_one_task_per_device_on_every_node(tmp_path, monkeypatch):
    import submitit

    fake_srun = tmp_path / "bin" / "srun"  # submitit only checks that srun exists
    fake_srun.parent.mkdir()
    fake_srun.write_text("#!/bin/sh\n")
    fake_srun.chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake_srun.parent}:{__import__('os').environ['PATH']}")
    submitted = {}

    def capture(executor, fn, *job_args):
        submitted["sbatch"] = executor._executor._make_submission_file_text("python -u -m submitit.core._submit", "uid")
        submitted["overrides"] = job_args[0]
        raise KeyboardInterrupt  # stop before anything is submitted

    monkeypatch.setattr(submitit.AutoExecutor, "map_array", capture)
    cfg = compose_config(
        ["hydra/launcher=slurm", "trainer.devices=4", "trainer.num_nodes=2", f"hydra.sweep.dir={tmp_path / 'sweep'}"],
        tmp_path,
    )
    launcher = instantiate(cfg.hydra.launcher)
    launcher.setup(hydra_context=None, task_function=None, config=cfg)
    with pytest.raises(KeyboardInterrupt):
        launcher.launch([["norm=lrn", "seed=0"], ["norm=none", "seed=0"]], initial_job_idx=0)

    sbatch = submitted["sbatch"]
    for line in ("--ntasks-per-node=4", "--nodes=2", "--gpus-per-node=4", "--signal=USR2@120"):
        assert line in sbatch
    assert "srun" in sbatch and "submitit.core._submit" in sbatch
    assert submitted["overrides"] == (["norm=lrn", "seed=0"], ["norm=none", "seed=0"])
    assert cfg.hydra.launcher.max_num_timeout > 0  # requeued on preemption or timeout


@pytest.mark.parametrize(
    "overrides, sinfo, gpus, cpus",
    [
        (["trainer.accelerator=cpu", "trainer.devices=2"], "2", None, 1),  # a 2-core CPU node: 1 CPU each
        (["trainer.accelerator=cpu", "trainer.devices=2", "data=cifar10"], "48", None, 5),  # 4 workers + itself
        (["trainer.devices=4", "data=imagenet"], "64", 4, 8),  # GPUs; data.num_workers=auto: 8
        (["trainer.devices=8", "data=imagenet"], "32", 8, 4),  # no more than the node has per task
        (["trainer.devices=4", "data=imagenet"], None, 4, 8),  # no sinfo here: what the data wants
    ],
)
def test_slurm_launcher_asks_for_gpus_only_when_used_and_cpus_that_fit_the_node(
    overrides, sinfo, gpus, cpus, tmp_path, monkeypatch
):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    if sinfo is not None:
        (bin_dir / "sinfo").write_text(f"#!/bin/sh\necho {sinfo}\n")
        (bin_dir / "sinfo").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:/usr/bin:/bin" if sinfo is not None else str(bin_dir))
    cfg = compose_config(["hydra/launcher=slurm", *overrides], tmp_path)
    assert (cfg.hydra.launcher.gpus_per_node, cfg.hydra.launcher.cpus_per_task) == (gpus, cpus)


def write_job(sweep: Path, num: int, overrides: list[str], test_err1: float | None, status: str = "finished") -> None:
    job = sweep / str(num)
    (job / ".hydra").mkdir(parents=True)
    OmegaConf.save(OmegaConf.create(overrides), job / ".hydra" / "overrides.yaml")
    history = [{"epoch": 0, "train/err1": 0.5, "val/err1": 0.4}, {"epoch": 1, "train/err1": 0.2, "val/err1": 0.3}]
    results = {
        "status": status,
        "error": None if status == "finished" else "boom",
        "overrides": overrides,
        "val": {"best": {"epoch": 1, "err1": 0.3, "err5": 0.1}, "final": None},
        "test": {"err1": test_err1, "err5": test_err1 / 2} if test_err1 is not None else None,
        "history": history,
    }
    (job / "results.json").write_text(json.dumps(results))


@pytest.mark.parametrize(
    ("env", "recorded", "subdir"),
    [
        ({}, False, ".hydra"),  # a run, a sweep job, rank 0 of a SLURM job
        ({"SLURM_PROCID": "1"}, False, None),  # its other tasks: rank 0 writes the record
        ({"SLURM_RESTART_COUNT": "1"}, True, None),  # requeued: the record stays as the run started
        ({"SLURM_RESTART_COUNT": "1"}, False, ".hydra"),  # requeued before it had one
    ],
)
def test_only_rank_0_of_a_slurm_jobs_first_start_writes_the_runs_record(tmp_path, monkeypatch, env, recorded, subdir):
    for key in ("SLURM_PROCID", "SLURM_RESTART_COUNT"):
        monkeypatch.delenv(key, raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    if recorded:
        (tmp_path / ".hydra").mkdir()
        (tmp_path / ".hydra" / "config.yaml").write_text("seed: 0\n")
    assert compose_config([], tmp_path).hydra.output_subdir == subdir


def test_report_numbers_equal_a_hand_computation(tmp_path):
    sweep = tmp_path / "sweep"
    paper, no_lrn = [0.10, 0.12, 0.14], [0.20, 0.22, 0.24]
    for seed, err in enumerate(paper):
        write_job(sweep, seed, ["norm=lrn", f"seed={seed}"], err)
    for seed, err in enumerate(no_lrn):
        write_job(sweep, 3 + seed, ["norm=none", f"seed={seed}"], err)
    write_job(sweep, 6, ["norm=batchnorm", "seed=0"], None, status="failed")
    report_sweep(sweep)
    text = (sweep / "report.md").read_text()

    # By hand: means 12 and 22 (%), std 2 each; Welch: se = sqrt(4/3 + 4/3), 4 degrees of freedom,
    # t(0.975, 4) = 2.7764 from a table, so the interval is 10 ± 4.534.
    half = 2.7764 * math.sqrt(4 / 3 + 4 / 3)
    assert "| norm=lrn (paper) | 3 | 12.00 ± 2.00 | 6.00 ± 1.00 | 0 | 0 | — |" in text
    assert f"| norm=none | 3 | 22.00 ± 2.00 | 11.00 ± 1.00 | +10.00 [{10 - half:+.2f}, {10 + half:+.2f}]" in text
    assert "+1.4 / +1.2 (§3.3, ImageNet)" in text  # the paper's claim beside ours
    assert "job 6: **failed** (norm=batchnorm seed=0): boom" in text
    assert (sweep / "val_err1.png").stat().st_size > 0 and (sweep / "differences.png").stat().st_size > 0
    rows = (sweep / "runs.csv").read_text().splitlines()
    assert len(rows) == 8 and rows[7].startswith("6,failed,norm=batchnorm")


def test_welch_interval_agrees_with_scipys_welch_t_test():
    from scipy import stats

    a, b = [1.0, 2.0, 3.0, 4.0], [2.0, 4.0, 6.0]
    diff, low, high = difference_ci(a, b)
    expected = stats.ttest_ind(a, b, equal_var=False).confidence_interval(0.95)
    assert diff == pytest.approx(-1.5)
    assert (low, high) == pytest.approx((expected.low, expected.high))


def test_relu_vs_tanh_report_counts_epochs_to_25_percent_training_error(tmp_path):
    sweep = tmp_path / "sweep"
    for seed in range(2):
        write_job(sweep, seed, ["activation=relu", f"seed={seed}"], 0.1)
        write_job(sweep, 2 + seed, ["activation=tanh", f"seed={seed}"], 0.2)
    report_sweep(sweep)
    text = (sweep / "report.md").read_text()
    assert "epochs to 25% train err" in text and "| 2.00 ± 0.00 |" in text  # train/err1 0.2 at epoch index 1
    assert (sweep / "train_err1.png").is_file()


def test_report_refuses_a_directory_without_jobs(tmp_path):
    result = run_script([REPORT, str(tmp_path), "--wandb", "disabled"], cwd=tmp_path)
    assert result.returncode == 2 and "holds no sweep jobs" in result.stderr


def test_experiment_presets_compose_with_their_sweeps():
    for name, axis in [
        ("ablation_norm_pool", "norm"),
        ("relu_vs_tanh", "activation"),
        ("dropout", "dropout.p"),
        ("columns", "model.columns"),
        ("blog_vs_paper", "model"),
    ]:
        cfg = compose_config([f"experiment={name}"])
        assert axis in cfg.hydra.sweeper.params and "seed" in cfg.hydra.sweeper.params
        assert cfg.data._target_.endswith("DigitsDataModule")  # demo scale by default
    assert compose_config(["experiment=ablation_norm_pool", "scale=full"]).data.name == "cifar10"


def test_a_job_runs_under_torchrun_only_when_it_has_several_processes(tmp_path):
    from hydra_plugins.alexnet_launcher.torchrun_launcher import job_command

    one = job_command("src/train.py", ["norm=none"], tmp_path, 1)
    assert one[:2] == [sys.executable, "src/train.py"] and "torch.distributed.run" not in one
    two = job_command("src/train.py", ["norm=none"], tmp_path, 2)
    assert two[1:3] == ["-m", "torch.distributed.run"] and "--nproc_per_node=2" in two
    assert one[-3:] == two[-3:] == ["norm=none", f"hydra.run.dir={tmp_path}", "hydra.output_subdir=null"]
