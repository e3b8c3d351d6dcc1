"""The README is executable: every command in its fenced ``bash`` blocks runs here, at smoke scale.

Each command runs as written with only shortening overrides appended (``debug=smoke``: fewer
batches and epochs, nothing removed; a quarter of the width), under a timeout, in the default
configuration: progress bar, model summary, loggers (W&B offline where it matters), pictures.
Where a command needs what this machine lacks, it runs its CPU equivalent (``trainer.accelerator=cpu``
added, sweep lists cut to their first value) or is skipped with the reason. ``PLAN`` names every
command; a README command missing from it fails :func:`test_every_readme_command_is_planned`.
"""

import json
import os
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from sklearn.datasets import load_sample_images

from conftest import ROOT
from helpers.columns import check_column_parallel_run
from helpers.readme import readme_commands

SHORT = ["debug=smoke", "model.width=0.25"]
MAKE_SHORT = " ".join(SHORT)
TIMEOUT = 300


@dataclass(frozen=True)
class Plan:
    run: str | None = None  # the command line to run here ({python}, {log_dir}, {run}, {sweep} filled in)
    skip: str | None = None  # why it cannot run here
    note: str = ""  # how the command run differs from the README's, beyond shortening


def cpu(command: str) -> str:
    return f"{command} trainer.accelerator=cpu"


TRAIN = "{python} src/train.py"
MULTINODE = "two machines: tests/test_multinode.py runs this command on each of two nodes made of network namespaces"
PLAN: dict[str, Plan] = {
    "make train": Plan(f'make train ARGS="{MAKE_SHORT} paths.log_dir={{log_dir}}"'),
    "make test": Plan(skip="runs this suite, which this test is part of (CI runs make test)"),
    "make help": Plan("make help"),
    "python src/train.py norm=lrn pool=overlap": Plan(f"{TRAIN} norm=lrn pool=overlap"),
    "python src/train.py norm=batchnorm pool=nonoverlap dropout=none": Plan(
        f"{TRAIN} norm=batchnorm pool=nonoverlap dropout=none"
    ),
    "python src/train.py activation=tanh model.columns=1 model.width=0.25": Plan(
        f"{TRAIN} activation=tanh model.columns=1 model.width=0.25"
    ),
    "python src/train.py norm=lrn pool=overlap trainer.devices=2": Plan(
        cpu(f"{TRAIN} norm=lrn pool=overlap trainer.devices=2"), note="two CPU processes (gloo), not two GPUs"
    ),
    "python src/train.py norm=lrn pool=overlap model.parallel=columns trainer.devices=2": Plan(
        cpu(f"{TRAIN} norm=lrn pool=overlap model.parallel=columns trainer.devices=2"),
        note="two CPU processes (gloo), one column each; then eval.py and resume= on its checkpoints",
    ),
    "python src/summary.py model=paper": Plan("{python} src/summary.py model=paper"),
    "python src/prepare_imagenet.py --archives ~/Downloads/ilsvrc --root data/imagenet --format shards": Plan(
        skip="needs the ILSVRC-2012 archives; tests/test_shards.py runs this script with --format shards on "
        "generated archives in their layout"
    ),
    "python src/train.py experiment=paper_imagenet data.format=shards trainer.devices=8": Plan(
        skip="needs ImageNet and 8 GPUs; tests/test_shards.py trains data.format=shards on generated shards"
    ),
    "python src/eval.py ckpt_path=<best>.ckpt data=imagenet data.format=shards tta=tencrop": Plan(
        skip="needs an ImageNet checkpoint; tests/test_shards.py runs eval.py tta=tencrop on generated shards"
    ),
    "srun python src/train.py experiment=paper_imagenet data.format=shards data.shards=s3://bucket/imagenet/shards "
    "data.cache_dir=/local/scratch/alexnet-cache data.num_workers=10 trainer.devices=8 trainer.num_nodes=4 "
    "hydra.run.dir=outputs/runs/imagenet-4x8": Plan(
        skip="tests/test_slurm.py runs this command as a batch job on the suite's SLURM cluster, with a real time limit"
    ),
    "torchrun --nnodes=2 --node-rank=0 --nproc-per-node=2 --rdzv-backend=c10d --rdzv-endpoint=node0:29400 "
    "--rdzv-id=two-nodes src/train.py trainer.devices=2 trainer.num_nodes=2 hydra.run.dir=outputs/runs/two-nodes": Plan(
        skip=MULTINODE
    ),
    "torchrun --nnodes=2 --node-rank=0 --nproc-per-node=2 --rdzv-backend=c10d --rdzv-endpoint=node0:29400 "
    "--rdzv-id=two-nodes-2 src/train.py resume=outputs/runs/two-nodes": Plan(skip=MULTINODE),
    "make prepare-imagenet ARCHIVES=~/Downloads/ilsvrc ROOT=data/imagenet": Plan(
        skip="needs the ILSVRC-2012 archives; tests/test_imagenet.py prepares generated archives in their layout"
    ),
    "python src/train.py experiment=paper_imagenet trainer.devices=8": Plan(
        skip="needs ImageNet and 8 GPUs; tests/test_imagenet.py trains data=imagenet on generated JPEGs"
    ),
    "python src/eval.py ckpt_path=outputs/runs/<date>/<time>-<id>/checkpoints/<best>.ckpt data=imagenet "
    "tta=tencrop": Plan(
        "{python} src/eval.py ckpt_path={best}",
        note="the best checkpoint of the run above, on its own data (digits): ImageNet's 10 patches need ImageNet",
    ),
    "python src/predict.py ckpt_path=outputs/runs/<date>/<time>-<id> images=photos/ output=predictions.csv": Plan(
        "{python} src/predict.py ckpt_path={run} images={photos} output={log_dir}/predictions.csv",
        note="the run above (digits); the photos are scikit-learn's two samples",
    ),
    "python src/predict.py ckpt_path=alexnet-owt-7be5be79.pth model=one_column data=imagenet_torchvision "
    "images=photos/": Plan(
        skip="needs torchvision's downloaded weights; tests/test_export.py predicts with torchvision's architecture "
        "and seeded weights in its file format, against torchvision's own model"
    ),
    "python src/export.py ckpt_path=outputs/runs/<date>/<time>-<id>": Plan(
        "{python} src/export.py ckpt_path={run}", note="the run above; tests/test_user_paths.py runs the Python snippet"
    ),
    "python src/train.py -m norm=lrn,batchnorm,none pool=overlap,nonoverlap seed=0,1,2 trainer.devices=2": Plan(
        cpu(f"{TRAIN} -m norm=lrn,batchnorm pool=overlap seed=0 trainer.devices=2 hydra.sweep.dir={{sweep}}"),
        note="2 jobs of 2 CPU processes, not 18 on GPUs",
    ),
    "python src/report.py outputs/multiruns/<date>/<time>-<id>": Plan(
        "{python} src/report.py {sweep} --wandb disabled", note="the sweep above"
    ),
    "make sweep-demo": Plan(
        f'make sweep-demo SWEEP_DIR={{log_dir}}/demo ARGS="{MAKE_SHORT} norm=lrn pool=overlap seed=0"',
        note="1 of its 18 jobs, then its report",
    ),
    "make sweep-demo-tuned": Plan(
        f'make sweep-demo-tuned SWEEP_DIR={{log_dir}}/tuned ARGS="{MAKE_SHORT} norm=lrn pool=overlap seed=0 '
        'hydra.sweeper.n_trials=2"',
        # Not two configurations side by side: with that load beside it, test_faults' DDP error test
        # once saw rank 0 SIGKILLed by Lightning's process observer before it could exit 1 itself.
        note="1 configuration: 2 search trials, 1 seed at its best, then the report",
    ),
    "python src/train.py -m experiment=relu_vs_tanh": Plan(
        f"{TRAIN} -m experiment=relu_vs_tanh activation=tanh seed=0", note="1 of its jobs"
    ),
    "python src/train.py -m experiment=ablation_norm_pool scale=full trainer.devices=4": Plan(
        skip="scale=full downloads CIFAR-10 and wants 4 GPUs; make sweep-demo runs the same experiment on digits"
    ),
    "python src/train.py -m hydra/launcher=slurm experiment=ablation_norm_pool scale=full "
    "trainer.devices=4 hydra.launcher.partition=gpu": Plan(
        skip="tests/test_slurm.py runs this command on the suite's SLURM cluster, its sweep 4 jobs with planted faults"
    ),
}
COMMANDS = readme_commands()


def test_every_readme_command_is_planned():
    unplanned = [c for c in COMMANDS if c not in PLAN]
    assert not unplanned, f"README commands with no entry in tests/test_readme.py's PLAN: {unplanned}"
    assert not [c for c in PLAN if c not in COMMANDS], "PLAN names commands the README no longer has"


@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> dict[str, Path]:
    """Where runs go, and the outputs later commands read (the first run's best checkpoint, the sweep)."""
    root = tmp_path_factory.mktemp("readme")
    return {
        "log_dir": root / "outputs",
        "sweep": root / "sweep",
    }


def run_readme_command(command: str, workspace: dict[str, Path]) -> subprocess.CompletedProcess:
    plan = PLAN[command]
    if plan.skip:
        pytest.skip(plan.skip)
    best = sorted(workspace["log_dir"].glob("runs/*/*/checkpoints/best-*.ckpt"))
    line = plan.run.format(
        python=shlex.quote(sys.executable),
        log_dir=workspace["log_dir"],
        sweep=workspace["sweep"],
        best=best[0] if best else "<no run yet>",
        run=best[0].parent.parent if best else "<no run yet>",
        photos=Path(load_sample_images().filenames[0]).parent,
    )
    if " src/train.py" in line:
        line += f" {' '.join(SHORT)} paths.log_dir={workspace['log_dir']}"
    elif " src/predict.py" in line or " src/export.py" in line:
        line += f" paths.log_dir={workspace['log_dir']}"
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "WANDB_MODE": "offline", "COLUMNS": "120"}
    try:
        result = subprocess.run(line, shell=True, cwd=ROOT, env=env, capture_output=True, text=True, timeout=TIMEOUT)
    except subprocess.TimeoutExpired as err:
        pytest.fail(
            f"`{line}` did not finish in {TIMEOUT} s:\n{(err.stdout or '')[-3000:]}{(err.stderr or '')[-3000:]}"
        )
    assert result.returncode == 0, f"`{line}`\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result


@pytest.mark.slow
@pytest.mark.parametrize("command", COMMANDS)
def test_readme_command_runs(command, workspace):
    before = set(workspace["log_dir"].glob("runs/*/*/results.json"))
    result = run_readme_command(command, workspace)
    if command.startswith("python src/train.py") and "-m" not in command.split():
        (new,) = set(workspace["log_dir"].glob("runs/*/*/results.json")) - before  # one run, made by this command
        results = json.loads(new.read_text())
        assert results["status"] == "finished", results["error"]
        assert results["world_size"] == (2 if "trainer.devices=2" in command else 1)
        assert (new.parent / "visuals" / "confusion.png").is_file()  # the pictures, as users get them
        assert list(new.parent.glob("wandb/offline-run-*"))  # W&B offline, as for a user not logged in
        if "model.parallel=columns" in command:
            check_column_parallel_run(new.parent, result.stdout + result.stderr)
    if command.startswith("python src/eval.py"):
        assert "top-1 error" in result.stdout
    if command.startswith("python src/predict.py"):
        assert "china.jpg" in result.stdout and (workspace["log_dir"] / "predictions.csv").is_file()
    if command.startswith("python src/export.py"):
        assert "largest logit difference" in result.stdout and " ok" in result.stdout
        assert list(workspace["log_dir"].glob("exports/*/*/alexnet.json"))
    if " -m norm=lrn,batchnorm" in command:
        assert set(workspace["log_dir"].glob("runs/*/*/results.json")) == before  # no rank made a run of its own
        check_two_process_sweep(workspace["sweep"], workspace["log_dir"])
        # A BatchNorm job on 2 CPU processes says once that it cannot sync.
        assert (result.stdout + result.stderr).count("BatchNorm statistics cannot be synchronised on CPU") == 1
    if command == "make sweep-demo-tuned":
        text = (workspace["log_dir"] / "tuned" / "report.md").read_text()
        assert "## Search: each configuration at its own best settings" in text
        assert "| all | 2 / " in text  # one configuration (norm and pool given): 2 trials, complete
        assert "never started" not in text  # the 1 seed job of the 1 configuration asked for
    if command.startswith("python src/report.py"):
        text = (workspace["sweep"] / "report.md").read_text()
        assert "| norm=lrn (paper) | 1 |" in text and "| norm=batchnorm | 1 |" in text  # rows name the swept axis
        assert (workspace["sweep"] / "runs.csv").read_text().count("\n") == 3  # header + 2 jobs


def check_two_process_sweep(sweep: Path, log_dir: Path) -> None:
    """Two jobs of two processes each: one directory per job (no rank started a sweep of its own),
    each finished on 2 processes with its own choices, and each one W&B run of the sweep's group."""
    assert not (log_dir / "multiruns").exists()
    assert sorted(p.name for p in sweep.iterdir()) == ["0", "1", "multirun.yaml"]
    group = f"sweep-{sweep.parent.name}-{sweep.name}"
    for job, norm in (("0", "lrn"), ("1", "batchnorm")):
        results = json.loads((sweep / job / "results.json").read_text())
        assert results["status"] == "finished" and results["world_size"] == 2, job
        choices = dict(o.split("=", 1) for o in results["overrides"])
        assert choices["trainer.devices"] == "2" and choices["norm"] == norm
        assert results["choices"]["norm"] == norm and results["choices"]["pool"] == "overlap"
        assert (sweep / job / ".hydra" / "config.yaml").is_file()
        (run_dir,) = (sweep / job / "wandb").glob("offline-run-*")  # one W&B run per job, not per process
        # The offline run keeps what wandb.init got; the settings hold group and tags in clear text.
        blob = b"".join(p.read_bytes() for p in run_dir.rglob("*") if p.is_file())
        assert group.encode() in blob and f"norm={norm}".encode() in blob
