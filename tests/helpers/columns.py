"""What a column-parallel run must leave behind (the README's command, run by tests/test_readme.py)."""

import json
from pathlib import Path

import torch

from alexnet.config import build
from conftest import ROOT, compose_config, run_script


def check_column_parallel_run(run_dir: Path, output: str) -> None:
    """For tests/test_readme.py's run of the README's column-parallel command: it printed what it
    moves, its checkpoint is the one-device network's state dict, ``eval.py`` gives its test numbers,
    and ``resume=`` continues it."""
    assert "Column-parallel exchanges per training step" in output and "conv3   conv2's maps" in output
    results = json.loads((run_dir / "results.json").read_text())
    best = Path(results["best_checkpoint"])
    cfg = compose_config([o for o in results["overrides"] if not o.startswith(("hydra.", "paths."))])
    one_device = build(cfg.model, "model")
    state = torch.load(best, map_location="cpu", weights_only=True)["state_dict"]
    one_device.load_state_dict({k.removeprefix("net."): v for k, v in state.items() if k.startswith("net.")})
    eval_dir = run_dir.parents[2] / "column-eval"
    evaluated = run_script(["src/eval.py", f"ckpt_path={best}", f"hydra.run.dir={eval_dir}"], cwd=ROOT, timeout=120)
    assert evaluated.returncode == 0, evaluated.stderr[-3000:]
    numbers = json.loads((eval_dir / "eval.json").read_text())
    assert (numbers["err1"], numbers["err5"]) == (results["test"]["err1"], results["test"]["err5"])
    assert numbers["world_size"] == 1  # the run's trainer.devices=2 is not carried over: the whole network, one process
    epochs = len(results["history"])
    resumed = run_script(["src/train.py", f"resume={run_dir}", f"trainer.max_epochs={epochs + 1}"], cwd=ROOT)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    results = json.loads((run_dir / "results.json").read_text())
    assert results["status"] == "finished" and len(results["history"]) == epochs + 1
