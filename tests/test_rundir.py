"""The run directory has one home: RunDir's layout is where the config writes, and results.json
has one schema, written whole, by training and by the sweep launcher alike."""

import json
import re
from pathlib import Path

import pytest
from hydra.utils import instantiate
from omegaconf import OmegaConf

from alexnet.run.layout import RunDir
from alexnet.run.results import RESULT_KEYS, results_record
from conftest import compose_config
from hydra_plugins.alexnet_launcher.torchrun_launcher import job_return


def test_the_training_config_writes_each_file_where_rundir_reads_it(tmp_path):
    cfg = compose_config([], tmp_path)
    run = RunDir(tmp_path)
    assert Path(cfg.trainer.default_root_dir) == run.path
    assert Path(cfg.callbacks.model_checkpoint.dirpath) == run.checkpoints
    assert instantiate(cfg.callbacks.last_checkpoint).path == run.last_checkpoint
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


def test_two_ranks_asking_a_fresh_run_for_its_wandb_id_at_once_get_the_same_id(tmp_path, monkeypatch):
    """The interleaving that once failed a DDP sweep job (``Run ID cannot be empty``), forced: both
    ranks find no id and make one (``uuid4``) before either has written its file; then rank 0
    finishes its call, and only then rank 1 goes on."""
    import threading
    import uuid

    rank0_made, rank1_made, rank0_done = threading.Event(), threading.Event(), threading.Event()

    def uuid4() -> uuid.UUID:
        if threading.current_thread().name == "rank0":
            rank0_made.set()
            assert rank1_made.wait(10), "rank 1 never made an id"
            return uuid.UUID(int=0xA0 << 120)
        rank1_made.set()
        rank0_done.wait(10)
        return uuid.UUID(int=0xB1 << 120)

    monkeypatch.setattr(uuid, "uuid4", uuid4)
    ids: dict[str, str] = {}

    def ask(name: str) -> None:
        ids[name] = RunDir(tmp_path).wandb_id()
        if name == "rank0":
            rank0_done.set()

    ranks = [threading.Thread(target=ask, args=(name,), name=name) for name in ("rank0", "rank1")]
    ranks[0].start()
    assert rank0_made.wait(10)  # rank 1 asks once rank 0 has found no id and is making one
    ranks[1].start()
    for rank in ranks:
        rank.join(20)
    assert ids == {"rank0": "a0000000", "rank1": "a0000000"}  # rank 0's, the file's first creator
    assert RunDir(tmp_path).wandb_id() == "a0000000"  # kept: a resumed run logs to the same W&B run
    assert [p.name for p in (tmp_path / "wandb").iterdir()] == ["run-id"]  # no temporary file left


def test_a_wandb_id_file_is_never_seen_empty(tmp_path, monkeypatch):
    """A rank that reads the id while another creates the file reads the whole id: the file appears
    with its text (a hard link of a written file), never empty first."""
    import os

    seen = []
    link = os.link

    def link_and_look(source, target):
        seen.append(Path(target).exists())  # the moment before the file appears
        link(source, target)
        seen.append(Path(target).read_text())  # the moment it appears

    monkeypatch.setattr(os, "link", link_and_look)
    made = RunDir(tmp_path).wandb_id()
    assert len(seen) == 2, "wandb_id no longer creates its file by a hard link: test that it never appears empty"
    assert seen == [False, made + "\n"] and len(made) == 8


@pytest.fixture
def new_process_run_dir(monkeypatch):
    """Composes the default run directory as a new process would, with Hydra's clock (``${now:}``)
    stopped at one second; ``launch_id`` is drawn once per process, so it is forgotten in between."""
    import datetime as dt

    import hydra.core.utils

    from alexnet.run.layout import launch_id

    class OneSecond(dt.datetime):
        @classmethod
        def now(cls, tz=None):
            return cls(2026, 1, 1, 10, 0, 0)

    monkeypatch.setattr(hydra.core.utils, "datetime", OneSecond)

    def compose_in_a_new_process(*overrides: str) -> str:
        launch_id.cache_clear()
        return str(compose_config(list(overrides)).hydra.run.dir)

    yield compose_in_a_new_process
    launch_id.cache_clear()


def test_two_runs_started_in_the_same_second_get_two_directories(new_process_run_dir):
    first, second = new_process_run_dir(), new_process_run_dir()
    assert first != second
    assert re.fullmatch(r"outputs/runs/2026-01-01/10-00-00-[0-9a-f]{6}", first), first


def test_every_rank_of_one_launch_gets_the_same_directory(new_process_run_dir, monkeypatch):
    monkeypatch.setenv("TORCHELASTIC_RUN_ID", "a1b2")  # torchrun gives every rank it starts the same
    torchrun = {new_process_run_dir() for rank in range(2)}
    monkeypatch.delenv("TORCHELASTIC_RUN_ID")
    monkeypatch.setenv("SLURM_JOB_ID", "4242")
    monkeypatch.setenv("SLURM_STEP_ID", "0")  # srun's tasks of one job step
    srun = {new_process_run_dir() for task in range(2)}
    assert len(torchrun) == len(srun) == 1 and torchrun != srun
