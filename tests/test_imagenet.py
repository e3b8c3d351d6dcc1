"""ImageNet: preparation from (fake) official archives, the paper's augmentation by value, the
10-patch test, every kind of bad file, and evaluation of checkpoints."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision
from PIL import Image
from sklearn.datasets import load_sample_images
from torchvision.transforms.v2 import functional as TF

from alexnet.data import DataError, ImageNetDataModule
from alexnet.data.imagenet import prepare as prepare_imagenet
from alexnet.data.imagenet.decoding import decode
from alexnet.data.imagenet.prepare import Prepared, prepare
from alexnet.data.imagenet.transforms import PCA_EIGVAL, PCA_EIGVEC, lighting, ten_crop
from alexnet.models import AlexNet
from alexnet.models.scores import class_scores
from alexnet.training.evaluation import load_any_checkpoint
from conftest import ROOT, run_script
from helpers.imagenet import NAMES, WNIDS, bad_files, jpeg_bytes, photo_tiles, prepare_script, write_archives
from helpers.wandb_files import offline_runs


@pytest.fixture
def imagenet(tmp_path) -> Path:
    write_archives(tmp_path / "archives")
    prepare(tmp_path / "archives", tmp_path / "imagenet", log=lambda *_: None)
    return tmp_path / "imagenet"


def test_prepare_makes_the_layout_from_the_official_archives(imagenet):
    assert sorted(p.name for p in (imagenet / "train").iterdir()) == WNIDS
    assert [len(list((imagenet / "train" / w).glob("*.JPEG"))) for w in WNIDS] == [4, 4, 4]
    # val images go to the class the devkit's ground truth names (IDs 1, 2, 3, 1, 3, 2)
    assert sorted(p.name for p in (imagenet / "val" / WNIDS[0]).glob("*.JPEG")) == [
        "ILSVRC2012_val_00000001.JPEG",
        "ILSVRC2012_val_00000004.JPEG",
    ]
    lines = (imagenet / "classes.tsv").read_text().splitlines()
    assert lines[0] == "index\twnid\tname" and lines[1] == f"0\t{WNIDS[0]}\t{NAMES[0]}" and len(lines) == 4


def test_prepare_resumes_without_rewriting_and_reports_shortfalls(imagenet, tmp_path):
    before = {p: p.stat().st_mtime_ns for p in imagenet.rglob("*.JPEG")}
    written = []
    result = prepare(tmp_path / "archives", imagenet, log=written.append)
    assert written == [] and result.problems == [] and (result.train, result.val) == (12, 6)
    assert {p: p.stat().st_mtime_ns for p in imagenet.rglob("*.JPEG")} == before

    (imagenet / "train" / WNIDS[1] / f"{WNIDS[1]}_2.JPEG").unlink()
    result = prepare(tmp_path / "archives", imagenet, log=lambda *_: None)
    assert result.problems == [f"train/{WNIDS[1]}: 3 of 4 images"]


def test_prepare_a_subset_and_the_model_must_agree(tmp_path):
    write_archives(tmp_path / "archives")
    result = prepare(tmp_path / "archives", tmp_path / "sub", num_classes=2, log=lambda *_: None)
    assert (result.classes, result.train, result.val, result.problems) == (2, 8, 4, [])
    dm = ImageNetDataModule(root=str(tmp_path / "sub"), num_classes=1000, image_size=32, resize=40)
    with pytest.raises(DataError, match="data.num_classes=1000 but .* 2 classes"):
        dm.setup("fit")


def test_prepare_the_classes_named_on_the_command_line(tmp_path, capsys):
    write_archives(tmp_path / "archives")
    script, archives, root = prepare_script(), str(tmp_path / "archives"), str(tmp_path / "sub")
    assert script.main(["--archives", archives, "--root", root, "--classes", f"{WNIDS[2]},{WNIDS[0]}"]) == 0
    assert sorted(p.name for p in (tmp_path / "sub" / "train").iterdir()) == [WNIDS[0], WNIDS[2]]
    out = capsys.readouterr().out
    assert "2 classes, 8 train images, 4 val images" in out and "data.num_classes=2" in out  # val IDs 1,3,1,3
    assert script.main(["--archives", archives, "--root", root, "--classes", "n99999999"]) == 2
    assert "not ILSVRC-2012 classes: n99999999" in capsys.readouterr().err


def test_prepare_compares_a_full_preparation_with_the_ilsvrc_totals(tmp_path, capsys, monkeypatch):
    write_archives(tmp_path / "archives")
    script = prepare_script()
    # The three generated classes stand for the 1,000: all classes prepared, but too few images.
    monkeypatch.setattr(script, "OFFICIAL", {"classes": 3, "train": 1_281_167, "val": 50_000})
    assert script.main(["--archives", str(tmp_path / "archives"), "--root", str(tmp_path / "all")]) == 0
    note = "note: ILSVRC-2012 has 1,281,167 train and 50,000 val images; your archives differ"
    assert note in capsys.readouterr().err
    monkeypatch.setattr(prepare_imagenet, "OFFICIAL", {"classes": 3, "train": 12, "val": 6})
    assert Prepared(3, 12, 6).summary() == "3 classes, 12 train images, 6 val images: the full ILSVRC-2012"
    assert Prepared(3, 11, 6).summary() == "3 classes, 11 train images, 6 val images"


def test_prepare_names_missing_archives(tmp_path):
    result = run_script(
        [str(ROOT / "src" / "prepare_imagenet.py"), "--archives", str(tmp_path), "--root", str(tmp_path / "out")],
        cwd=tmp_path,
    )
    assert result.returncode == 2 and "ILSVRC2012_img_train.tar" in result.stderr


def coordinate_image(h: int = 300, w: int = 400) -> torch.Tensor:
    """uint8 image whose R and G channels encode x and y (mod 256), to locate any crop of it."""
    y, x = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    return torch.stack([x % 256, y % 256, (x // 256) * 100 + (y // 256) * 50]).to(torch.uint8)


def position(image: torch.Tensor, row: int, col: int) -> tuple[int, int]:
    """(y, x) in the original image of a pixel of a ``coordinate_image`` (or a crop of it)."""
    r, g, b = (int(v) for v in image[:, row, col])
    return g + 256 * ((b % 100) // 50), r + 256 * (b // 100)


def test_paper_training_crop_is_a_227_window_of_the_central_256_square_maybe_mirrored():
    dm = ImageNetDataModule(root="unused", image_size=227, resize=256)
    train, _ = dm.transforms()
    image = coordinate_image(256, 300)  # already 256 on its shorter side
    centre = TF.center_crop(image, [256, 256])
    flips = 0
    for _ in range(20):
        crop = train(image)
        assert crop.shape == (3, 227, 227) and crop.dtype == torch.uint8
        flipped = position(crop, 0, 0)[1] > position(crop, 0, -1)[1]
        flips += int(flipped)
        if flipped:
            crop = TF.horizontal_flip(crop)
        (y, x), (y0, x0) = position(crop, 0, 0), position(centre, 0, 0)
        top, left = y - y0, x - x0
        assert 0 <= top <= 29 and 0 <= left <= 29
        assert torch.equal(crop, centre[:, top : top + 227, left : left + 227])
    assert 0 < flips < 20


def test_evaluation_takes_the_centre_227_of_the_centre_256():
    dm = ImageNetDataModule(root="unused", image_size=227, resize=256)
    _, evaluate = dm.transforms()
    image = coordinate_image(256, 300)
    expected = TF.center_crop(TF.center_crop(image, [256, 256]), [227, 227])
    assert torch.equal(evaluate(image), expected)


def test_decode_resizes_the_shorter_side_with_reduced_size_jpeg_decoding(tmp_path):
    path = tmp_path / "big.JPEG"
    big = np.asarray(Image.fromarray(load_sample_images().images[0]).resize((1280, 854)))
    path.write_bytes(jpeg_bytes(big))
    image = decode(path, shorter_side=256)
    assert image.shape == (3, 256, 383)  # 1280 × 256/854, rounded down as torchvision's resize does
    reference = TF.pil_to_tensor(Image.open(path).convert("RGB").resize((383, 256), Image.BILINEAR))
    assert (image.float() - reference.float()).abs().mean() < 6  # same picture, within resize tolerance


def test_pca_colour_noise_adds_eigvec_times_alpha_times_eigval_to_every_pixel():
    images = torch.rand(2, 3, 4, 5)
    alphas = torch.tensor([[0.1, -0.2, 0.05], [0.0, 0.3, -0.1]])
    out = lighting(images, std=0.1, alphas=alphas)
    for b in range(2):
        shift = sum(PCA_EIGVEC[:, i] * alphas[b, i] * PCA_EIGVAL[i] for i in range(3))
        torch.testing.assert_close(out[b] - images[b], shift[:, None, None].expand(3, 4, 5))


def test_ten_crop_scores_are_the_mean_softmax_of_the_ten_manual_patches():
    torch.manual_seed(0)
    net = AlexNet(num_classes=5, input_size=32, stem="cifar", width=0.125, init="kaiming").eval()
    image = torch.rand(3, 40, 40)
    s = 32
    corners = [(0, 0), (0, 40 - s), (40 - s, 0), (40 - s, 40 - s), (4, 4)]  # TL, TR, BL, BR, centre
    patches = [image[:, top : top + s, left : left + s] for top, left in corners]
    patches += [p.flip(-1) for p in patches]
    expected = torch.stack([net(p[None]).softmax(-1)[0] for p in patches]).mean(0)
    with torch.no_grad():
        scores = class_scores(net, ten_crop(image, s)[None])
    torch.testing.assert_close(scores.softmax(-1)[0], expected, rtol=1e-5, atol=1e-6)


def test_every_awkward_file_kind_decodes_to_rgb(tmp_path):
    original = torch.from_numpy(photo_tiles(1, (64, 96))[0].copy()).permute(2, 0, 1).float()
    for kind, path in bad_files(tmp_path).items():
        image = decode(path, shorter_side=64)
        assert image.shape == (3, 64, 96) and image.dtype == torch.uint8, kind
        if kind in ("cmyk", "png_named_jpeg", "odd_exif"):
            assert (image.float() - original).abs().mean() < 12, kind  # the same picture


def small_imagenet(tmp_path: Path, truncated: bool) -> Path:
    root = tmp_path / "small"
    tiles = iter(photo_tiles(13))
    for split, per_class in (("train", 3), ("val", 1)):
        for wnid in WNIDS:
            folder = root / split / wnid
            folder.mkdir(parents=True)
            for i in range(per_class):
                (folder / f"{i}.JPEG").write_bytes(jpeg_bytes(next(tiles)))
    bad_files(root / "train" / WNIDS[0])  # the awkward-but-valid kinds train fine
    if truncated:
        data = jpeg_bytes(next(tiles))
        (root / "train" / WNIDS[1] / "cut.JPEG").write_bytes(data[: len(data) // 2])
    return root


def test_a_truncated_file_stops_setup_with_its_path(tmp_path):
    root = small_imagenet(tmp_path, truncated=True)
    dm = ImageNetDataModule(root=str(root), num_classes=3, image_size=32, resize=40)
    with pytest.raises(DataError) as err:
        dm.setup("fit")
    assert str(root / "train" / WNIDS[1] / "cut.JPEG") in str(err.value) and "bad_images=skip" in str(err.value)


def test_skip_leaves_bad_files_out_and_reports_them(tmp_path):
    root = small_imagenet(tmp_path, truncated=True)
    (root / "train" / WNIDS[2] / "garbage.JPEG").write_bytes(b"not an image at all")
    dm = ImageNetDataModule(root=str(root), num_classes=3, image_size=32, resize=40, bad_images="skip")
    dm.setup("fit")
    assert len(dm.train_set) == 9 + 5  # 3 per class + the five awkward kinds; the two bad ones are out
    report = dm.report()["skipped_images"]
    assert report["count"] == 2 and {Path(p).name for p, _ in report["files"]} == {"cut.JPEG", "garbage.JPEG"}
    assert all(dm.train_set[i][0].shape == (3, 32, 32) for i in range(len(dm.train_set)))


def test_the_scan_cache_sees_a_file_corrupted_in_place(tmp_path):
    root = small_imagenet(tmp_path, truncated=False)
    ImageNetDataModule(root=str(root), num_classes=3, image_size=32, resize=40).setup("fit")  # scanned, cached
    victim = root / "train" / WNIDS[2] / "0.JPEG"
    data = victim.read_bytes()
    with open(victim, "r+b") as f:  # truncated in place: same count of files, same folder mtime
        f.truncate(len(data) // 2)
    with pytest.raises(DataError, match="0.JPEG"):
        ImageNetDataModule(root=str(root), num_classes=3, image_size=32, resize=40).setup("fit")


def test_empty_class_folder_is_named(tmp_path):
    root = small_imagenet(tmp_path, truncated=False)
    for path in (root / "val" / WNIDS[2]).iterdir():
        path.unlink()
    dm = ImageNetDataModule(root=str(root), num_classes=3, image_size=32, resize=40)
    with pytest.raises(DataError, match=f"{WNIDS[2]}"):
        dm.setup("fit")


def test_torchvision_weights_and_repo_checkpoints_load_as_tensors_only(tmp_path):
    reference = torchvision.models.alexnet()
    torch.save(reference.state_dict(), tmp_path / "alexnet.pth")
    ours = AlexNet(
        input_size=224,
        stem="torchvision",
        columns=1,
        channels=(64, 192, 384, 256, 256),
        norm=None,
        dropout_position="before",
        init="torch",
    )
    assert load_any_checkpoint(ours, tmp_path / "alexnet.pth") == "torchvision"
    torch.testing.assert_close(ours.classifier.fc8.weight, reference.classifier[6].weight)
    torch.save({"not": "weights"}, tmp_path / "other.pth")
    with pytest.raises(ValueError, match="neither"):
        load_any_checkpoint(ours, tmp_path / "other.pth")


@pytest.mark.slow
def test_train_then_evaluate_with_ten_crops(tmp_path):
    root = small_imagenet(tmp_path, truncated=True)
    common = [
        f"data.root={root}",
        "data.num_classes=3",
        "data.resize=40",
        "data.bad_images=skip",
        "data.batch_size=4",
        "model=cifar",
        "model.width=0.125",
        "trainer.accelerator=cpu",
    ]
    offline = {"WANDB_MODE": "offline"}  # as for a user without a W&B login
    train = [str(ROOT / "src" / "train.py"), "data=imagenet", "debug=smoke", *common]
    run = run_script(train, cwd=tmp_path, env=offline)
    assert run.returncode == 0, run.stderr[-3000:]
    (run_dir,) = (tmp_path / "outputs" / "runs").glob("*/*")
    results = json.loads((run_dir / "results.json").read_text())
    assert results["status"] == "finished" and results["skipped_images"]["count"] == 1

    checkpoint = next((run_dir / "checkpoints").glob("best-*.ckpt"))
    for tta in ("center", "tencrop"):
        result = run_script(
            [str(ROOT / "src" / "eval.py"), f"ckpt_path={checkpoint}", "data=imagenet", f"tta={tta}", *common],
            cwd=tmp_path,
            env=offline,
        )
        assert result.returncode == 0, result.stderr[-3000:]
        assert f"test (3 images, {tta})" in result.stdout
    evals = sorted((tmp_path / "outputs" / "evals").glob("*/*/eval.json"))
    summary = json.loads(evals[-1].read_text())
    assert summary["tta"] == "tencrop" and summary["kind"] == "lightning" and 0 <= summary["err1"] <= 1
    assert len((evals[-1].parent / "per_class.csv").read_text().splitlines()) == 4
    # Both evaluations are in the run's own W&B run, under their own names.
    run_id = (run_dir / "wandb" / "run-id").read_text().strip()
    trained, *evaluated = offline_runs(run_dir)
    assert {attempt.id for attempt in (trained, *evaluated)} == {run_id}
    added = {key: value for attempt in evaluated for key, value in attempt.summary.items()}
    assert added["eval/test-tencrop/err1"] == pytest.approx(summary["err1"])
    assert added["eval/test-center/images"] == added["eval/test-tencrop/images"] == 3

    # Predict on real photos with the run: the awkward-but-valid kinds predicted, a truncated one skipped.
    photos = tmp_path / "photos"
    photos.mkdir()
    for file in load_sample_images().filenames:  # china.jpg, flower.jpg: 427×640
        shutil.copy(file, photos)
    data = (photos / "china.jpg").read_bytes()
    (photos / "cut.jpg").write_bytes(data[: len(data) // 2])
    bad_files(photos / "kinds")  # CMYK, grey, palette, a PNG named .JPEG, odd EXIF
    Image.fromarray(photo_tiles(1, (8, 8))[0]).save(photos / "tiny.png")  # far smaller than the 32-pixel view
    exif = Image.Exif()
    exif[0x0112] = 6  # shown turned 90° clockwise, as a phone writes a portrait photo
    Image.fromarray(photo_tiles(1, (64, 96))[0]).save(photos / "portrait.jpg", exif=exif)
    predicted = {}
    for tta in ("center", "tencrop"):
        out = tmp_path / f"predicted-{tta}.json"
        args = [str(ROOT / "src" / "predict.py"), f"ckpt_path={run_dir}", f"images={photos}", f"tta={tta}"]
        result = run_script([*args, f"output={out}"], cwd=tmp_path)
        assert result.returncode == 3, result.stdout[-2000:] + result.stderr[-3000:]  # some skipped
        assert f"skipped {photos / 'cut.jpg'}: truncated" in result.stderr
        said = result.stdout + result.stderr
        assert "far smaller than the network's 32-pixel view" in said and "tiny.png (8×8)" in said
        assert "predicted as stored" in said and "portrait.jpg (orientation 6)" in said
        record = json.loads(out.read_text())
        assert record["skipped"] == [
            {"file": str(photos / "cut.jpg"), "reason": "truncated: no JPEG end-of-image marker"}
        ]
        names = sorted(Path(p["file"]).name for p in record["predictions"])
        kinds = ["cmyk.JPEG", "grey.JPEG", "n02105855_2933.JPEG", "odd_exif.JPEG", "palette.JPEG"]
        assert names == sorted(["china.jpg", "flower.jpg", "portrait.jpg", "tiny.png", *kinds])
        for p in record["predictions"]:
            assert len(p["top_k"]) == 3 and sum(c["prob"] for c in p["top_k"]) == pytest.approx(1, abs=1e-4)
            assert {c["name"] for c in p["top_k"]} == set(WNIDS)  # the data's class table (no classes.tsv: folders)
        predicted[tta] = [c["prob"] for p in record["predictions"] for c in p["top_k"]]
    assert predicted["center"] != predicted["tencrop"]  # ten patches, not the centre again


def test_ten_crop_on_digits_is_refused_with_a_reason(tmp_path):
    fake = tmp_path / "x.ckpt"
    torch.save({"state_dict": {}}, fake)
    result = run_script([str(ROOT / "src" / "eval.py"), f"ckpt_path={fake}", "tta=tencrop"], cwd=tmp_path)
    assert result.returncode != 0 and "tta=tencrop needs data=imagenet" in result.stderr


def test_square_decoding_equals_resize_then_centre_crop_within_resize_tolerance(tmp_path):
    path = tmp_path / "photo.JPEG"
    path.write_bytes(jpeg_bytes(load_sample_images().images[1]))  # 427×640
    square = decode(path, shorter_side=256, square=True)
    reference = TF.center_crop(decode(path, shorter_side=256), [256, 256])
    assert square.shape == (3, 256, 256)
    # The two crops differ by under a pixel in where the centre falls, on a detailed photo.
    assert (square.float() - reference.float()).abs().mean() < 6


def test_jpeg_decoding_gives_pils_pixels_exactly(tmp_path):
    for i, photo in enumerate(load_sample_images().images):
        path = tmp_path / f"{i}.JPEG"
        path.write_bytes(jpeg_bytes(photo))
        reference = TF.pil_to_tensor(Image.open(path).convert("RGB"))
        assert torch.equal(decode(path), reference)  # both are libjpeg-turbo with the same settings


def test_device_decoding_gives_the_loaders_batches(tmp_path):
    """data.decode=device: the loader sends bytes (and decoded CMYK/PNG files), the device decodes;
    evaluation batches come out as the loader would have made them."""
    from types import SimpleNamespace

    from alexnet.data.imagenet.decoding import decode_on_device

    root = small_imagenet(tmp_path, truncated=False)  # train class 0 holds CMYK, PNG, grey, palette files
    modules = {}
    for mode in ("loader", "device"):
        dm = ImageNetDataModule(
            root=str(root), num_classes=3, image_size=32, resize=40, batch_size=64, num_workers=0, decode=mode
        )
        dm.trainer = SimpleNamespace(
            training=False, strategy=SimpleNamespace(root_device=torch.device("cpu")), world_size=1, global_rank=0
        )
        dm.setup("fit")
        modules[mode] = dm
    dm = modules["device"]
    dm.train_set.transform, dm.val_set.transform = dm.val_set.transform, dm.val_set.transform  # no randomness
    modules["loader"].train_set.transform = dm.val_set.transform

    def first_batch(module, split):
        torch.manual_seed(0)  # the same shuffled order from both
        return next(iter(getattr(module, f"{split}_dataloader")()))

    for split in ("train", "val"):
        expected, labels = first_batch(modules["loader"], split)
        raw, raw_labels = first_batch(dm, split)
        assert isinstance(raw, list) and any(x.ndim == 1 for x in raw) and torch.equal(raw_labels, labels)
        if split == "train":
            assert any(x.ndim == 3 for x in raw)  # the files device decoding leaves to the loader
        images, _ = dm.on_before_batch_transfer((raw, raw_labels), 0)
        assert images.shape == expected.shape and images.dtype == torch.uint8
        assert (images.int() - expected.int()).abs().max() <= 1  # both libjpeg-turbo, the same resize
    only_decoded = [torch.zeros(3, 40, 50, dtype=torch.uint8)]  # nothing left to decode; the workers fitted it
    assert decode_on_device(only_decoded, torch.device("cpu"), 40, True, lambda x: x[:, :, :40]).shape == (1, 3, 40, 40)


def test_a_run_trains_with_device_decoding(tmp_path, smoke_overrides):
    from alexnet.run.train import train
    from conftest import compose_config

    root = small_imagenet(tmp_path, truncated=False)
    cfg = compose_config(
        [
            *smoke_overrides,
            "data=imagenet",
            f"data.root={root}",
            "data.num_classes=3",
            "data.resize=40",
            "data.decode=device",
            "data.num_workers=0",
            "data.batch_size=4",
            "model=cifar",
            "model.width=0.125",
        ],
        tmp_path,
    )
    train(cfg)
    assert json.loads((tmp_path / "results.json").read_text())["status"] == "finished"


def test_device_decoding_is_torchcodecs_and_falls_back_to_the_cpu_where_it_cannot(tmp_path, monkeypatch, caplog):
    import torchcodec.decoders

    from alexnet.data.imagenet import decoding

    photos = [torch.frombuffer(bytearray(jpeg_bytes(p)), dtype=torch.uint8) for p in photo_tiles(3, (48, 64))]
    expected = [torch.from_numpy(simplejpeg_rgb(p)).permute(2, 0, 1) for p in photos]
    calls = []
    real = torchcodec.decoders.decode_jpeg
    monkeypatch.setattr(torchcodec.decoders, "decode_jpeg", lambda *a, **k: calls.append(k) or real(*a, **k))
    monkeypatch.setattr(decoding, "_fallback_reason", None)
    decoded = decoding.decode_jpegs(photos, torch.device("cpu"))
    assert calls == [{"mode": "RGB", "device": torch.device("cpu")}]  # one batched TorchCodec call
    assert all((a.int() - b.int()).abs().max() <= 1 for a, b in zip(decoded, expected))

    def no_nvjpeg(*args, **kwargs):
        raise RuntimeError("nvJPEG is not available")

    monkeypatch.setattr(torchcodec.decoders, "decode_jpeg", no_nvjpeg)
    with caplog.at_level("WARNING"):
        fallback = decoding.decode_jpegs(photos, torch.device("cpu"))
    assert "decoding them on the CPU" in caplog.text and "nvJPEG is not available" in caplog.text
    assert all(torch.equal(a, b) for a, b in zip(fallback, expected))


def simplejpeg_rgb(data: torch.Tensor) -> np.ndarray:
    import simplejpeg

    return simplejpeg.decode_jpeg(data.numpy().tobytes(), "RGB")


def test_a_rank_that_reads_the_scan_cache_while_another_writes_it_scans_instead_of_failing(tmp_path):
    """Every rank scans in ``setup`` at once: one may read the cache another is writing. What it
    reads then (half a JSON file) is a miss, not an error; and the cache is written by a rename."""
    root = small_imagenet(tmp_path, truncated=True)
    ImageNetDataModule(root=str(root), num_classes=3, image_size=32, resize=40, bad_images="skip").setup("fit")
    cache = root / ".scan-train.json"
    whole = cache.read_text()
    cache.write_text(whole[: len(whole) // 2])  # what a reader sees mid-write without a rename
    dm = ImageNetDataModule(root=str(root), num_classes=3, image_size=32, resize=40, bad_images="skip")
    dm.setup("fit")
    assert [Path(p).name for p, _ in dm.report()["skipped_images"]["files"]] == ["cut.JPEG"]
    assert cache.read_text() == whole and not list(root.glob(".scan-*.tmp-*"))  # written again, whole
