"""ImageNet as streaming shards (``data.format=shards``): preparation from the official archives
with every kind of awkward file, the shards' disjointness across ranks and exactly-once evaluation,
training, 10-crop evaluation, and a mid-epoch kill resumed exactly with one process and with two."""

import hashlib
import io
import json
import os
import tarfile
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from alexnet.data import DataError, ImageNetDataModule
from alexnet.data.imagenet.shard_reader import ShardLoader, TrainShards, collate_crops, crop_and_flip
from alexnet.data.imagenet.shards import read_prepared
from alexnet.errors import ConfigError
from conftest import ROOT, TESTS_ON_PATH, run_script
from helpers.imagenet import WNIDS, add_to_tar, bad_files, jpeg_bytes, photo_tiles, prepare_shards, write_archives
from helpers.runs import assert_same_run, ddp_stage, finish, results, train_cli

SIDE = 40  # the stored squares' side (the paper's 256, shrunk for speed); crops of 32
TRAIN_PER_CLASS = 16  # 48 images, + 5 awkward ones that train, - 1 truncated one left out


def add_awkward_files(archives: Path) -> None:
    """Into class 0's tar: a CMYK JPEG, a PNG named .JPEG, grey, palette, odd EXIF (all usable),
    and a JPEG cut short (unusable)."""
    outer_path = archives / "ILSVRC2012_img_train.tar"
    with tarfile.open(outer_path) as outer:
        members = {m.name: outer.extractfile(m).read() for m in outer.getmembers()}
    inner_buffer = io.BytesIO(members[f"{WNIDS[0]}.tar"])
    with tarfile.open(fileobj=inner_buffer) as inner:
        images = {m.name: inner.extractfile(m).read() for m in inner.getmembers()}
    for kind, path in bad_files(archives / "awkward").items():
        images[f"{WNIDS[0]}_{kind}.JPEG"] = path.read_bytes()
    cut = jpeg_bytes(photo_tiles(1)[0])
    images[f"{WNIDS[0]}_cut.JPEG"] = cut[: len(cut) // 2]
    rebuilt = io.BytesIO()
    with tarfile.open(fileobj=rebuilt, mode="w") as inner:
        for name, data in images.items():
            add_to_tar(inner, name, data)
    members[f"{WNIDS[0]}.tar"] = rebuilt.getvalue()
    with tarfile.open(outer_path, "w") as outer:
        for name, data in members.items():
            add_to_tar(outer, name, data)


@pytest.fixture(scope="module")
def prepared(tmp_path_factory) -> tuple[Path, str]:
    """``src/prepare_imagenet.py --format shards`` on the official archives: (root, its output)."""
    tmp = tmp_path_factory.mktemp("shards")
    write_archives(tmp / "archives", train_per_class=TRAIN_PER_CLASS, val_labels=(1, 2, 3) * 4)
    add_awkward_files(tmp / "archives")
    root = tmp / "imagenet"
    return root, prepare_shards(tmp / "archives", root, SIDE)


def test_preparation_writes_shards_reports_what_it_wrote_and_the_bad_file(prepared):
    root, out = prepared
    train_images = 3 * TRAIN_PER_CLASS + 5
    assert f"train: {train_images} images in " in out and "1 file(s) left out" in out and "val: 12 images" in out
    assert "1 bad image file(s) left out" in out and f"train/{WNIDS[0]}/{WNIDS[0]}_cut.JPEG: " in out
    assert "of the archives" in out and "data.format=shards" in out and f"data.resize={SIDE}" in out
    assert f"the file tree they were written from, {root / 'train'} and {root / 'val'} (" in out
    assert "may now be deleted" in out
    record = read_prepared(root / "shards")
    assert record["side"] == SIDE and record["splits"]["train"]["images"] == train_images
    assert record["splits"]["train"]["bytes"] > 0 and record["splits"]["val"]["skipped"] == []
    # A second run finds both splits written and writes nothing.
    index = (root / "shards" / "train" / "index.json").stat().st_mtime_ns
    from alexnet.data.imagenet.shard_writer import write_shards

    logged = []
    again = write_shards(root, root / "shards", side=SIDE, workers=1, log=logged.append)
    assert logged == [f"train: already written ({train_images} images)", "val: already written (12 images)"]
    assert again.splits["train"].images == train_images
    assert (root / "shards" / "train" / "index.json").stat().st_mtime_ns == index


def test_an_interrupted_preparation_keeps_its_finished_parts(tmp_path, monkeypatch):
    """Parts of ``part_size`` images are kept once complete; a rerun writes only the rest."""
    from alexnet.data.imagenet.prepare import prepare
    from alexnet.data.imagenet.shard_writer import write_shards

    write_archives(tmp_path / "archives", train_per_class=4)
    prepare(tmp_path / "archives", tmp_path / "imagenet", log=lambda *_: None)
    root, out = tmp_path / "imagenet", tmp_path / "imagenet" / "shards"
    import alexnet.data.imagenet.shard_writer as shards

    real = shards.optimize_part
    parts = []

    def dies_in_part_two(*args, **kwargs):
        parts.append(args)
        if len(parts) == 2:
            real(*args, **kwargs)  # written, but stopped before it is marked complete
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(shards, "optimize_part", dies_in_part_two)
    with pytest.raises(KeyboardInterrupt):
        write_shards(root, out, side=SIDE, workers=1, part_size=5, log=lambda *_: None)
    monkeypatch.setattr(shards, "optimize_part", real)
    assert (out / ".train-parts" / "00000" / ".complete").is_file()
    first = (out / ".train-parts" / "00000" / "index.json").read_text()
    logged = []
    report = write_shards(root, out, side=SIDE, workers=1, part_size=5, log=logged.append)
    assert report.splits["train"].images == 12 and not any("train: part 1 of" in line for line in logged)
    assert any("train: part 2 of 3" in line for line in logged)  # part 1 was kept, part 2 written again
    assert "part 3 of 3" in " ".join(logged) and first


def datamodule(root: Path, rank: int = 0, replicas: int = 1, **kwargs) -> ImageNetDataModule:
    dm = ImageNetDataModule(
        root=str(root), num_classes=3, image_size=32, resize=SIDE, num_workers=0, format="shards", **kwargs
    )
    kw = {"rank": rank, "num_replicas": replicas} if replicas > 1 else None
    dm.trainer = SimpleNamespace(
        training=False,
        current_epoch=0,
        strategy=SimpleNamespace(root_device=torch.device("cpu"), distributed_sampler_kwargs=kw),
        num_devices=replicas,
        world_size=replicas,
        fit_loop=SimpleNamespace(
            epoch_loop=SimpleNamespace(batch_progress=SimpleNamespace(current=SimpleNamespace(completed=0)))
        ),
    )
    dm.setup("fit")
    return dm


def digest(data: torch.Tensor) -> str:
    return hashlib.sha1(data.numpy().tobytes()).hexdigest()


def test_two_ranks_train_on_disjoint_shards_and_evaluate_every_image_once(prepared):
    root, _ = prepared
    seen = {"train": [], "val": []}
    batches = []
    for rank in (0, 1):
        dm = datamodule(root, rank, 2, batch_size=8, decode="device")  # bytes: each stored image's identity
        train = [digest(x) for images, _ in dm.train_dataloader() for x in images]
        batches.append(len(train) // 4)
        seen["train"].append(train)
        seen["val"].append([digest(x) for images, _ in dm.val_dataloader() for x in images])
    total = datamodule(root).train_set
    assert batches[0] == batches[1]  # the same number of steps on both ranks
    assert not set(seen["train"][0]) & set(seen["train"][1])
    assert len(seen["train"][0]) + len(seen["train"][1]) >= len(total) - 2 * 4  # at most a batch a rank dropped
    assert sorted(seen["val"][0] + seen["val"][1]) == sorted(set(seen["val"][0] + seen["val"][1]))
    assert len(seen["val"][0] + seen["val"][1]) == 12  # every val image, once, no padding


def test_training_crops_come_from_the_stored_square_by_hash_not_by_worker():
    assert crop_and_flip(0, 1, 17, 8, 8) == crop_and_flip(0, 1, 17, 8, 8)
    draws = [crop_and_flip(0, 1, i, 8, 8) for i in range(2000)]
    assert {d[0] for d in draws} == set(range(9)) and {d[1] for d in draws} == set(range(9))
    assert 0.45 < sum(d[2] for d in draws) / len(draws) < 0.55
    assert [crop_and_flip(0, 2, i, 8, 8) for i in range(50)] != draws[:50]  # a new epoch, new crops


def test_a_loader_told_of_trained_batches_skips_exactly_those(prepared):
    """The resume mechanism itself: a pass that starts after k trained batches yields what an
    uninterrupted pass yields after its first k, with 0 and 2 workers."""
    root, _ = prepared
    for workers in (0, 2):
        dataset = TrainShards(str(root / "shards" / "train"), 32, 0, (0, 1))
        whole = [
            torch.cat([x.flatten(), y])
            for x, y in ShardLoader(dataset, 4, workers, lambda: 3, lambda: 0, collate_crops)
        ]
        dataset = TrainShards(str(root / "shards" / "train"), 32, 0, (0, 1))
        rest = [
            torch.cat([x.flatten(), y])
            for x, y in ShardLoader(dataset, 4, workers, lambda: 3, lambda: 5, collate_crops)
        ]
        assert len(rest) == len(whole) - 5 and all(torch.equal(a, b) for a, b in zip(rest, whole[5:])), workers


def test_the_private_parts_of_litdata_used_here_are_still_there(prepared):
    import litdata
    from litdata.utilities.env import _DistributedEnv

    from alexnet.data.imagenet.shards import LITDATA_TESTED

    upgraded = f"litdata {litdata.__version__} (shards.py was written for {LITDATA_TESTED})"
    root, _ = prepared
    loader = ShardLoader(TrainShards(str(root / "shards" / "train"), 32, 0, (0, 1)), 4, 0, lambda: 0, lambda: 0)
    for name in ("_num_samples_yielded_streaming", "_latest_worker_idx", "_worker_idx", "_worker_idx_iter", "restore"):
        assert hasattr(loader, name), f"{upgraded}: StreamingDataLoader has no {name}"
    for name in ("reset_state_dict", "set_epoch", "load_state_dict", "state_dict", "distributed_env"):
        assert hasattr(loader.dataset, name), f"{upgraded}: StreamingDataset has no {name}"
    env = _DistributedEnv.detect()
    assert (env.world_size, env.global_rank) == (1, 0), upgraded
    replica = _DistributedEnv(2, 1, 1)  # TrainShards builds one per replica: (world size, rank, nodes)
    assert (replica.world_size, replica.global_rank, replica.num_nodes) == (2, 1, 1), upgraded
    fresh = litdata.StreamingDataset(str(root / "shards" / "val"))
    assert getattr(fresh, "_on_demand_bytes", None) is True, f"{upgraded}: StreamingDataset has no _on_demand_bytes"


def test_shards_of_another_side_or_missing_say_what_to_set(prepared, tmp_path):
    root, _ = prepared
    with pytest.raises(DataError, match=f"hold {SIDE}×{SIDE} squares but data.resize=48; set data.resize={SIDE}"):
        ImageNetDataModule(root=str(root), num_classes=3, image_size=32, resize=48, format="shards").setup("fit")
    (tmp_path / "classes.tsv").write_text((root / "classes.tsv").read_text())
    with pytest.raises(DataError, match="no shards at .*--format shards"):
        ImageNetDataModule(root=str(tmp_path), num_classes=3, image_size=32, resize=SIDE, format="shards").setup("fit")
    with pytest.raises(ConfigError, match="data.recipe='torchvision' is not allowed: paper with data.format=shards"):
        ImageNetDataModule(root=str(root), format="shards", recipe="torchvision")


# Two epochs of 13 steps (53 images, batch 4), a resume checkpoint every 3 steps; the default
# callbacks, loggers and pictures, as users run it.
def run_args(root: Path, batch: int = 4) -> list[str]:
    return [
        "data=imagenet",
        f"data.root={root}",
        "data.format=shards",
        "data.num_classes=3",
        f"data.resize={SIDE}",
        f"data.batch_size={batch}",
        "data.num_workers=2",
        "model=cifar",
        "model.width=0.125",
        "trainer.accelerator=cpu",
        "trainer.max_epochs=2",
        "callbacks.resume_checkpoint.every_n_steps=3",
        "+callbacks.signal._target_=planted.SignalAt",
    ]


@pytest.mark.slow
def test_on_shards_a_killed_run_resumes_exactly_then_evaluates_with_ten_crops(prepared, tmp_path):
    root, _ = prepared
    args = run_args(root)
    whole = train_cli([*args, "hydra.run.dir=whole"], tmp_path)
    assert whole.returncode == 0, whole.stderr[-3000:]
    # Mid-way through epoch 0: the resumed run crosses into epoch 1, where a loader iterator made at
    # another moment than in the uninterrupted run once moved dropout's random numbers.
    killed = train_cli([*args, "hydra.run.dir=run"], tmp_path, fault=("KILL", 8))
    assert killed.returncode == -9 and not (tmp_path / "run" / "results.json").exists()
    finish(tmp_path / "run", tmp_path)
    assert_same_run(tmp_path / "whole", tmp_path / "run")
    assert results(tmp_path / "run")["skipped_images"]["count"] == 1  # the cut file, from preparation

    checkpoint = next((tmp_path / "whole" / "checkpoints").glob("best-*.ckpt"))
    common = [a for a in args if a.startswith(("data.", "model"))]
    result = run_script(
        [str(ROOT / "src" / "eval.py"), f"ckpt_path={checkpoint}", "data=imagenet", "tta=tencrop", *common],
        cwd=tmp_path,
        env=TESTS_ON_PATH,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "test (12 images, tencrop)" in result.stdout


@pytest.mark.slow
def test_on_object_storage_shards_two_processes_killed_resume_exactly(prepared, tmp_path):
    """Two processes reading the shards through litdata's object-storage path (``local:``, its local
    stand-in for ``s3://``, with a cache), killed mid-epoch, resumed."""
    root, _ = prepared
    args = [*run_args(root, batch=8), "trainer.devices=2", f"data.shards=local:{root / 'shards'}"]
    whole = train_cli([*args, f"data.cache_dir={tmp_path / 'cache-whole'}", "hydra.run.dir=whole"], tmp_path)
    assert whole.returncode == 0, whole.stderr[-3000:]
    marker = f"shards-{os.getpid()}"
    cached = [*args, f"data.cache_dir={tmp_path / 'cache'}"]
    killed = ddp_stage([*cached, f"hydra.run.dir={marker}"], tmp_path, marker, ("KILL", 8, 0))
    assert killed.returncode == -9
    assert torch.load(tmp_path / marker / "checkpoints" / "resume.ckpt", weights_only=True)["global_step"] == 6
    finish(tmp_path / marker, tmp_path)
    assert_same_run(tmp_path / "whole", tmp_path / marker)
    assert any((tmp_path / "cache").rglob("*.bin"))  # read through the cache, not in place
    assert json.loads((tmp_path / marker / "results.json").read_text())["status"] == "finished"


def test_device_decoding_of_shards_gives_the_loaders_batches(prepared):
    root, _ = prepared
    loader = datamodule(root, batch_size=64)
    device = datamodule(root, batch_size=64, decode="device")
    expected, labels = next(iter(loader.val_dataloader()))
    raw, raw_labels = next(iter(device.val_dataloader()))
    assert isinstance(raw, list) and all(x.ndim == 1 for x in raw) and torch.equal(raw_labels, labels)
    images, _ = device.on_before_batch_transfer((raw, raw_labels), 0)
    assert images.shape == expected.shape == (12, 3, 32, 32)
    assert (images.int() - expected.int()).abs().max() <= 1  # TorchCodec and simplejpeg: both libjpeg-turbo


def test_files_that_fail_to_decode_are_reported_by_the_writers_without_reading_the_shards_back(tmp_path, monkeypatch):
    """A PNG cut short, named .JPEG: its header passes the scan, its pixels do not decode. The writer
    processes say so themselves; nothing is read back from the written shards (on ImageNet, 25 GB)."""
    from litdata import StreamingDataset
    from PIL import Image

    from alexnet.data.imagenet.prepare import prepare
    from alexnet.data.imagenet.shard_writer import write_shards

    write_archives(tmp_path / "archives", train_per_class=4)
    root = tmp_path / "imagenet"
    prepare(tmp_path / "archives", root, log=lambda *_: None)
    png = io.BytesIO()
    Image.effect_noise((64, 48), 60).convert("RGB").save(png, "PNG")
    (root / "train" / WNIDS[1] / "broken.JPEG").write_bytes(png.getvalue()[: len(png.getvalue()) // 2])
    read_back = []
    monkeypatch.setattr(StreamingDataset, "__getitem__", lambda self, index: read_back.append(index))
    report = write_shards(root, root / "shards", side=SIDE, workers=2, part_size=5, log=lambda *_: None)
    assert read_back == []
    train = report.splits["train"]
    assert train.images == 3 * 4  # three parts of 5 images, one left out
    assert [(Path(path).name, reason.split(":")[0]) for path, reason in train.skipped] == [
        ("broken.JPEG", "unreadable")
    ]
    assert read_prepared(root / "shards")["splits"]["train"]["skipped"] == [list(s) for s in train.skipped]
