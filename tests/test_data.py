"""Data modules: the digits split, CIFAR from files in the official pickle format, batch splitting."""

import pickle
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image
from sklearn.datasets import load_digits, load_sample_images

from alexnet.data import CIFARDataModule, DataError, DigitsDataModule, per_device_batch_size
from alexnet.errors import ConfigError


def write_cifar(root: Path, name: str, per_file: int = 20, classes: int = 10) -> np.ndarray:
    """Write a small CIFAR copy in the "python version" format; return the first train batch's pixels."""
    rng = np.random.default_rng(0)
    if name == "cifar10":
        folder, train, test, meta, label_key, names_key = (
            "cifar-10-batches-py",
            [f"data_batch_{i}" for i in range(1, 6)],
            ["test_batch"],
            "batches.meta",
            "labels",
            "label_names",
        )
    else:
        folder, train, test, meta, label_key, names_key = (
            "cifar-100-python",
            ["train"],
            ["test"],
            "meta",
            "fine_labels",
            "fine_label_names",
        )
    (root / folder).mkdir(parents=True)
    first = None
    for file in [*train, *test]:
        data = rng.integers(0, 256, size=(per_file, 3072), dtype=np.uint8)
        labels = [i % classes for i in range(per_file)]
        with open(root / folder / file, "wb") as f:
            pickle.dump({"data": data, label_key: labels, "batch_label": file}, f)
        first = data if first is None else first
    with open(root / folder / meta, "wb") as f:
        pickle.dump({names_key: [f"class{i}" for i in range(classes)]}, f)
    return first


def digits(**kwargs) -> DigitsDataModule:
    defaults = dict(num_classes=10, image_size=32, batch_size=64, val_size=0.15, test_size=0.15)
    dm = DigitsDataModule(**{**defaults, **kwargs})
    dm.setup("fit")
    return dm


def test_digits_split_is_disjoint_stratified_and_covers_all_1797_images():
    dm = digits()
    sizes = [len(dm.train_set), len(dm.val_set), len(dm.test_set)]
    assert sum(sizes) == 1797 and sizes[2] == 270
    everything = torch.cat([dm.train_set.labels, dm.val_set.labels, dm.test_set.labels])
    overall = torch.bincount(everything, minlength=10) / len(everything)
    for subset in (dm.val_set, dm.test_set):
        share = torch.bincount(subset.labels, minlength=10) / len(subset)
        assert (share - overall).abs().max() <= 1.5 / len(subset)  # stratified: each class within an image
    # Together the splits hold each of scikit-learn's images exactly once (as a multiset).
    ours = sorted(
        tuple(img[0].flatten().tolist()) + (int(y),)
        for s in (dm.train_set, dm.val_set, dm.test_set)
        for img, y in zip(s.images, s.labels)
    )
    source = load_digits()
    pixels = np.round(source.images * 255 / 16).astype(np.uint8).reshape(len(source.images), -1)
    assert ours == sorted(tuple(row.tolist()) + (int(y),) for row, y in zip(pixels, source.target))


def test_digits_split_does_not_depend_on_the_run_seed():
    torch.manual_seed(1)
    first = digits().test_set.labels
    torch.manual_seed(2)
    assert torch.equal(first, digits().test_set.labels)
    assert not torch.equal(first, digits(split_seed=1).test_set.labels)


def test_digits_images_are_resized_three_channel_and_normalised():
    dm = digits(image_size=40)
    image, label = dm.val_set[0]
    assert image.shape == (3, 40, 40) and image.dtype == torch.float32
    batch = torch.stack([dm.train_set[i][0] for i in range(200)])
    assert batch.mean().abs() < 0.2 and 0.7 < batch.std() < 1.3  # train statistics make it ~N(0, 1)
    assert 0 <= int(label) < 10


def test_eval_transform_is_deterministic_and_train_transform_augments():
    dm = digits()
    assert torch.equal(dm.val_set[3][0], dm.val_set[3][0])
    torch.manual_seed(0)
    crops = {tuple(dm.train_set[3][0].flatten().tolist()) for _ in range(8)}
    assert len(crops) > 1


@pytest.mark.parametrize(("name", "classes", "train_images"), [("cifar10", 10, 100), ("cifar100", 100, 200)])
def test_cifar_reads_the_official_pickle_format(tmp_path, name, classes, train_images):
    per_file = 20 if name == "cifar10" else 200
    first = write_cifar(tmp_path, name, per_file=per_file, classes=classes)
    dm = CIFARDataModule(
        name=name,
        root=str(tmp_path),
        download=False,
        checksum=False,  # a small copy in the official format, not the official files
        num_classes=classes,
        image_size=32,
        val_size=classes,
        crop_padding=0,
        flip=False,
        mean=[0, 0, 0],
        std=[1, 1, 1],
    )
    dm.setup("fit")
    assert len(dm.train_set) + len(dm.val_set) == train_images
    assert len(dm.val_set) == classes and len(dm.test_set) == per_file
    assert dm.class_names[:2] == ["class0", "class1"]
    # Pixels come back exactly: rows of 1024 red, then green, then blue values.
    expected = torch.from_numpy(first.reshape(-1, 3, 32, 32))
    images = torch.cat([dm.train_set.images, dm.val_set.images])
    assert any(torch.equal(img, expected[0]) for img in images)
    image, _ = dm.test_set[0]
    assert image.shape == (3, 32, 32) and 0.0 <= image.min() and image.max() <= 1.0


def test_cifar_missing_files_name_the_path_and_the_fix(tmp_path):
    dm = CIFARDataModule(name="cifar10", root=str(tmp_path), download=False, num_classes=10, image_size=32)
    with pytest.raises(DataError) as err:
        dm.setup("fit")
    message = str(err.value)
    assert str(tmp_path / "cifar-10-batches-py" / "data_batch_1") in message
    assert "cifar-10-python.tar.gz" in message and "data.root" in message


def test_cifar_files_that_are_not_the_official_ones_are_refused_before_training(tmp_path):
    write_cifar(tmp_path, "cifar10")  # right names and format, other contents
    dm = CIFARDataModule(name="cifar10", root=str(tmp_path), download=False, num_classes=10, image_size=32)
    with pytest.raises(DataError) as err:
        dm.setup("fit")
    message = str(err.value)
    assert f"{tmp_path / 'cifar-10-batches-py' / 'data_batch_1'} is not the official cifar10 file" in message
    assert "c99cafc152244af753f735de768cd75f" in message and "data.checksum=false" in message


def test_a_truncated_cifar_file_names_the_folder_and_the_fix(tmp_path):
    write_cifar(tmp_path, "cifar10")
    batch = tmp_path / "cifar-10-batches-py" / "data_batch_3"
    batch.write_bytes(batch.read_bytes()[:1000])
    dm = CIFARDataModule(
        name="cifar10", root=str(tmp_path), download=False, checksum=False, num_classes=10, image_size=32
    )
    with pytest.raises(DataError) as err:
        dm.setup("fit")
    assert f"{batch} is not a readable CIFAR file" in str(err.value) and "Fix: put the extracted" in str(err.value)


def test_cifar_download_without_network_gives_a_clear_error(tmp_path, monkeypatch):
    import torchvision.datasets.utils as tv_utils

    def offline(*args, **kwargs):
        raise OSError("<urlopen error [Errno -3] Temporary failure in name resolution>")

    monkeypatch.setattr(tv_utils, "download_url", offline)
    dm = CIFARDataModule(name="cifar10", root=str(tmp_path), download=True, num_classes=10, image_size=32)
    with pytest.raises(DataError, match="could not download cifar10 into"):
        dm.prepare_data()


def test_wrong_class_count_is_caught_by_the_constructor(tmp_path):
    with pytest.raises(ConfigError, match="data.num_classes=100 is not allowed: 10, the dataset's class count"):
        CIFARDataModule(name="cifar10", root=str(tmp_path), download=False, num_classes=100, image_size=32)


def test_global_batch_is_split_across_processes():
    assert per_device_batch_size(128, processes(2)) == 64
    assert per_device_batch_size(128, None) == 128  # no trainer: one process
    with pytest.raises(ConfigError, match="data.batch_size=100 .* 3 processes .* multiple of 3"):
        per_device_batch_size(100, processes(3))


def processes(n: int) -> SimpleNamespace:
    """A stand-in trainer of ``n`` data-parallel processes, as ``data_shard`` reads one."""
    return SimpleNamespace(
        world_size=n, strategy=SimpleNamespace(distributed_sampler_kwargs={"num_replicas": n, "rank": 0})
    )


def test_val_and_test_shards_cover_each_image_exactly_once_across_processes():
    from alexnet.data.base import UnpaddedShardSampler

    dataset = list(range(23))  # not a multiple of the 4 processes
    shards = [list(UnpaddedShardSampler(dataset, num_replicas=4, rank=r)) for r in range(4)]
    assert sorted(i for shard in shards for i in shard) == dataset
    assert [len(UnpaddedShardSampler(dataset, 4, r)) for r in range(4)] == [6, 6, 6, 5]


def test_prediction_gives_a_file_the_test_loaders_exact_input_and_the_datas_class_names(tmp_path):
    write_cifar(tmp_path, "cifar10")
    dm = CIFARDataModule(root=str(tmp_path), checksum=False, num_classes=10, image_size=32, batch_size=8, val_size=20)
    dm.setup("fit")
    first_test_image = dm.test_set.images[0]
    Image.fromarray(first_test_image.permute(1, 2, 0).numpy()).save(tmp_path / "test0.png")
    photo = Path(load_sample_images().filenames[0])  # 427×640: its central square, at 32×32
    assert dm.predict_on([tmp_path / "test0.png", photo]) == []
    images, indices = next(iter(dm.predict_dataloader()))
    tested, _ = next(iter(dm.test_dataloader()))
    assert torch.equal(images[0], tested[0]) and indices.tolist() == [0, 1]  # the test split's own input
    assert images.shape == (2, 3, 32, 32) and dm.class_names == [f"class{i}" for i in range(10)]

    grey = digits()
    assert grey.predict_on([photo]) == []
    (image,), _ = next(iter(grey.predict_dataloader()))
    assert torch.equal(image[0], image[1]) and torch.equal(image[1], image[2])  # a colour photo, made grey
