"""The run directory has one home: RunDir's layout is where the config writes, and results.json
has one schema, written whole, by training and by the sweep launcher alike."""

import json
from pathlib import Path

import pytest
from hydra.utils import instantiate
from omegaconf import OmegaConf

from alexnet.rundir import RESULT_KEYS, RunDir, results_record
from conftest import compose_config
from hydra_plugins.alexnet_launcher.torchrun_launcher import job_return


def test_the_training_config_writes_each_file_where_rundir_reads_it(tmp_path):
    cfg = compose_config([], tmp_path)
    run = RunDir(tmp_path)
    assert Path(cfg.trainer.default_root_dir) == run.path
    assert Path(cfg.callbacks.model_checkpoint.dirpath) == run.checkpoints
    assert cfg.callbacks.model_checkpoint.save_last and run.last_checkpoint.parent == run.checkpoints
    assert instantiate(cfg.callbacks.resume_checkpoint).path == run.resume_checkpoint
    assert Path(instantiate(cfg.logger.csv).log_dir) / "metrics.csv" == run.metrics_csv
    assert Path(cfg.callbacks.conv1_filters.dirpath) == run.visuals
    assert Path(cfg.logger.wandb.save_dir) / "wandb" == run.wandb_id_file.parent


def test_a_results_record_has_every_key_and_is_written_whole(tmp_path):
    run = RunDir(tmp_path / "run")
    history = [{"epoch": 0, "val/err1": 0.5, "val/err5": 0.1}, {"epoch": 1, "val/err1": 0.25, "val/err5": float("nan")}]
    record = results_record("finished", run, world_size=2, history=history, test={"test/err1": 0.3})
    assert list(record) == list(RESULT_KEYS)
    assert record["val"]["best"]["epoch"] == 1 and record["val"]["final"]["err1"] == 0.25
    run.write_results(record)
    written = run.results()
    assert written["val"]["best"] == {"epoch": 1, "err1": 0.25, "err5": None}  # NaN is JSON's null
    assert written["test"] == {"err1": 0.3, "err5": None} and written["world_size"] == 2
    assert not list(run.path.glob("*.tmp-*"))  # the temporary file was renamed over results.json
    with pytest.raises(ValueError, match="lacks"):
        run.write_results({"status": "failed"})
    with pytest.raises(ValueError, match="status"):
        results_record("exploded", run)


def test_the_launcher_records_a_job_that_died_in_the_same_schema(tmp_path):
    sweep_config = OmegaConf.create({"seed": 3, "hydra": {"job": {"name": "train"}}})
    returned = job_return(sweep_config, ["norm=none"], tmp_path, code=137, nproc=2)
    record = json.loads((tmp_path / "results.json").read_text())
    assert list(record) == list(RESULT_KEYS)
    assert record["status"] == "failed" and record["error"] == "the job exited with code 137"
    assert (record["world_size"], record["seed"], record["overrides"]) == (2, 3, ["norm=none"])
    with pytest.raises(RuntimeError, match="failed: the job exited with code 137"):
        _ = returned.return_value  # Hydra raises a failed job's error where a sweep reads its value


def test_a_checkpoint_knows_its_run(tmp_path):
    run = RunDir(tmp_path)
    run.checkpoints.mkdir()
    (run.checkpoints / "best-epoch001-err10.1000.ckpt").write_bytes(b"")
    assert RunDir.of_checkpoint(run.checkpoints / "best-epoch001-err10.1000.ckpt") is None  # no .hydra yet
    run.config_file.parent.mkdir()
    OmegaConf.save(OmegaConf.create({"model": {"width": "${w}"}, "w": 0.5}), run.config_file)
    OmegaConf.save(OmegaConf.create(["model.width=0.5", "resume=x"]), run.overrides_file)
    found = RunDir.of_checkpoint(run.checkpoints / "best-epoch001-err10.1000.ckpt")
    assert found.path == tmp_path.resolve() and found.overrides() == ["model.width=0.5"]
    assert found.resolved("model").width == 0.5 and found.checkpoint("best").name.startswith("best-epoch001")
    with pytest.raises(FileNotFoundError, match="checkpoint=last"):
        found.checkpoint("last")
    (run.checkpoints / "epoch3.ckpt").write_bytes(b"")
    assert found.checkpoint(str(run.checkpoints / "epoch3.ckpt")) == run.checkpoints / "epoch3.ckpt"  # a path
    with pytest.raises(FileNotFoundError, match="a path to a .ckpt file"):
        found.checkpoint(str(run.checkpoints / "epoch4.ckpt"))
