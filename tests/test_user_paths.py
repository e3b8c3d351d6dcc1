"""One run with non-default switches, then every entry point on its directory, as a user would:
train -> eval (one process and two) -> predict -> export -> visualize -> resume."""

import csv
import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from omegaconf import OmegaConf
from PIL import Image
from sklearn.datasets import load_sample_images

from alexnet.data import DigitsDataModule
from conftest import ROOT, TESTS_ON_PATH, run_script

SRC = ROOT / "src"
SWITCHES = ["norm=none", "activation=tanh", "dropout=none", "model.width=0.25"]
SPOIL = "+callbacks.spoil._target_=planted.SpoilLastEpoch"  # the last epoch the worst: best and last differ


def as_user(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    """``python <args>`` in ``cwd``, as a user runs it; tests/ on the path for the run's planted callback."""
    return run_script(args, cwd, env=TESTS_ON_PATH)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    cwd = tmp_path_factory.mktemp("user-paths")
    shorter = ["trainer.max_epochs=2", "trainer.limit_train_batches=8", "trainer.accelerator=cpu", "data.batch_size=64"]
    args = [*SWITCHES, *shorter, "callbacks.conv1_filters.every_n_epochs=1", SPOIL, "hydra.run.dir=run"]
    result = as_user([str(SRC / "train.py"), *args], cwd)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    val = results(cwd / "run")["val"]
    assert val["best"]["epoch"] == 0 and val["final"]["err1"] > 0.9, val  # the tests below can tell best from last
    return cwd / "run"


def results(run_dir: Path) -> dict:
    return json.loads((run_dir / "results.json").read_text())


def evaluate(run_dir: Path, *overrides: str) -> tuple[dict, Path]:
    """``src/eval.py ckpt_path=<the run's best>`` with ``overrides``: (eval.json, its directory)."""
    best = results(run_dir)["best_checkpoint"]
    out = run_dir.parent / f"eval-{len(list(run_dir.parent.glob('eval-*')))}"
    args = [str(SRC / "eval.py"), f"ckpt_path={best}", f"hydra.run.dir={out}", *overrides]
    result = as_user(args, run_dir.parent)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    return json.loads((out / "eval.json").read_text()), out


@pytest.fixture(scope="module")
def evaluated(run_dir) -> tuple[dict, Path]:
    """``src/eval.py`` of the run's best checkpoint with no overrides, on one process."""
    return evaluate(run_dir)


@pytest.mark.slow
def test_conv1_is_drawn_during_training_every_n_epochs(run_dir):
    drawn = sorted(p.name for p in (run_dir / "visuals").glob("conv1_epoch*.png"))
    assert drawn == ["conv1_epoch001.png", "conv1_epoch002.png"]


@pytest.mark.slow
def test_eval_without_overrides_reproduces_the_runs_own_test_numbers(run_dir, evaluated):
    evaluated, out = evaluated
    trained_test = results(run_dir)["test"]
    assert (evaluated["err1"], evaluated["err5"]) == (trained_test["err1"], trained_test["err5"])  # every digit
    trained = OmegaConf.load(run_dir / ".hydra" / "config.yaml")
    assert evaluated["model"] == OmegaConf.to_container(trained.model, resolve=True)  # tanh, no norm, no dropout
    assert evaluated["model"]["norm"] is None and evaluated["model"]["dropout"] == 0
    per_class = (out / "per_class.csv").read_text().splitlines()
    assert per_class[0] == "class,name,n,err1,err5" and len(per_class) == 11  # digits: 10 classes
    assert sum(int(row.split(",")[2]) for row in per_class[1:]) == evaluated["images"]


@pytest.mark.slow
def test_eval_on_two_processes_gives_the_same_numbers_as_on_one(run_dir, evaluated):
    one, one_out = evaluated
    two, two_out = evaluate(run_dir, "trainer.devices=2")
    assert two["world_size"] == 2
    assert [two[k] for k in ("images", "err1", "err5")] == [one[k] for k in ("images", "err1", "err5")]
    assert (two_out / "per_class.csv").read_text() == (one_out / "per_class.csv").read_text()  # every class


@pytest.mark.slow
def test_eval_of_a_run_trained_on_8_gpus_evaluates_on_this_machine_and_says_so(run_dir, tmp_path):
    gpu_run = tmp_path / "gpu-run"  # the run, as if started with trainer.accelerator=gpu trainer.devices=8
    shutil.copytree(run_dir, gpu_run)
    saved = gpu_run / ".hydra" / "overrides.yaml"
    kept = [o for o in OmegaConf.load(saved) if not o.startswith("trainer.accelerator=")]
    OmegaConf.save(OmegaConf.create([*kept, "trainer.accelerator=gpu", "trainer.devices=8"]), saved)
    best = gpu_run / "checkpoints" / Path(results(run_dir)["best_checkpoint"]).name
    args = [str(SRC / "eval.py"), f"ckpt_path={best}", f"hydra.run.dir={tmp_path / 'eval'}"]
    result = as_user(args, tmp_path)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    evaluated = json.loads((tmp_path / "eval" / "eval.json").read_text())
    assert evaluated["world_size"] == 1 and evaluated["err1"] == results(run_dir)["test"]["err1"]
    said = "Evaluating on this machine: 1 CPU process(es), not as"
    assert said in result.stdout and "(trainer.accelerator=gpu trainer.devices=8)" in result.stdout


@pytest.mark.slow
def test_eval_of_the_validation_split_reproduces_the_best_epochs_validation_error(run_dir):
    evaluated, _ = evaluate(run_dir, "split=val")
    best = results(run_dir)["val"]["best"]
    assert evaluated["split"] == "val" and (evaluated["err1"], evaluated["err5"]) == (best["err1"], best["err5"])


@pytest.mark.slow
def test_eval_refuses_an_override_that_changes_the_trained_network(run_dir):
    best = results(run_dir)["best_checkpoint"]
    result = as_user([str(SRC / "eval.py"), f"ckpt_path={best}", "activation=relu"], run_dir.parent)
    assert result.returncode != 0
    assert "activation=relu would change the network of" in result.stderr and "drop the override" in result.stderr


@pytest.mark.slow
def test_predict_on_the_test_images_as_files_gives_evals_top1_exactly(run_dir, evaluated):
    evaluated, eval_out = evaluated
    folder = run_dir.parent / "test-images"  # the test split as a user would have it: PNG files
    folder.mkdir()
    data = DigitsDataModule(image_size=32)  # the run's split (test_size, split_seed: conf/data/digits.yaml)
    data.setup()
    for i, (image, label) in enumerate(zip(data.test_set.images, data.test_set.labels)):
        grey = Image.fromarray(image[0].numpy())  # 8×8, the three channels are equal
        (grey if i % 2 else grey.convert("RGB")).save(folder / f"{i:03d}-{int(label)}.png")
    written = run_dir.parent / "predicted.csv"
    args = [str(SRC / "predict.py"), f"ckpt_path={run_dir}", f"images={folder}", f"output={written}"]
    result = as_user(args, run_dir.parent)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    assert "file" in result.stdout and "rank  class  probability  name" in result.stdout

    rows = list(csv.DictReader(written.open()))
    assert len(rows) == evaluated["images"] == 270
    assert all(row["name_1"] == row["class_1"] and len([k for k in row if k.startswith("prob_")]) == 5 for row in rows)
    truth = [int(Path(row["file"]).stem.split("-")[1]) for row in rows]
    wrong = [c for c, row in zip(truth, rows) if int(row["class_1"]) != c]
    assert 0 < len(wrong) < len(rows) - 27  # a network that tells digits apart, and errs
    assert len(wrong) == round(evaluated["err1"] * len(rows))
    for row in csv.DictReader((eval_out / "per_class.csv").open()):  # class by class, as eval.py counts
        assert wrong.count(int(row["class"])) == round(float(row["err1"]) * int(row["n"])), row


@pytest.mark.slow
def test_export_checks_itself_and_the_readmes_onnx_runtime_snippet_runs_on_it(run_dir):
    out = run_dir.parent / "export"
    result = as_user([str(SRC / "export.py"), f"ckpt_path={run_dir}", f"hydra.run.dir={out}"], run_dir.parent)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    said = re.search(r"largest logit difference (\S+) \(tolerance 1e-04\) ok", result.stdout)
    assert said and float(said.group(1)) < 1e-4, result.stdout
    sidecar = json.loads((out / "alexnet.json").read_text())
    assert sidecar["classes"] == [str(d) for d in range(10)] and sidecar["input_size"] == 32
    assert sidecar["source"]["run"] == str(run_dir) and "Tanh" in str(sidecar["source"]["model"]["activation"])

    readme = (ROOT / "README.md").read_text()
    (snippet,) = re.findall(r"```python\n(.*?)```", readme.split("## Use a trained network", 1)[1], re.S)[:1]
    photo = load_sample_images().filenames[0]
    code = snippet.replace("outputs/exports/<date>/<time>-<id>", str(out)).replace("photo.jpg", photo)
    assert code != snippet and len(snippet.strip().splitlines()) <= 7
    ran = as_user(["-c", code], run_dir.parent)
    assert ran.returncode == 0, ran.stderr[-3000:]
    assert ran.stdout.strip() in sidecar["classes"]


@pytest.mark.slow
def test_visualize_then_resume_continue_the_same_run(run_dir):
    visualize = [str(SRC / "visualize.py"), f"run={run_dir}", "wandb_mode=disabled"]
    shown = as_user(visualize, run_dir.parent)
    assert shown.returncode == 0, shown.stderr[-3000:]
    assert (run_dir / "visuals" / "confusion.png").stat().st_size > 0 and "best-epoch" in shown.stdout
    last = as_user([*visualize, "checkpoint=last"], run_dir.parent)  # a path: tests/test_rundir.py
    assert last.returncode == 0 and "last.ckpt" in last.stdout, last.stderr[-3000:]

    resumed = as_user([str(SRC / "train.py"), f"resume={run_dir}", "trainer.max_epochs=3"], run_dir.parent)
    assert resumed.returncode == 0, resumed.stdout[-2000:] + resumed.stderr[-3000:]
    after = results(run_dir)
    assert after["status"] == "finished" and after["epochs"] == 3
    assert after["choices"]["norm"] == "none" and after["choices"]["activation"] == "tanh"
