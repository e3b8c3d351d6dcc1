"""CIFAR-10 and CIFAR-100 from their standard "python version" pickles.

Files are read directly (``cifar-10-batches-py/data_batch_1`` …), so any copy in the official
format works; when files are missing and ``download=true``, torchvision downloads and verifies
the official archive into ``root``.
"""

import pickle
from pathlib import Path

import numpy as np
import torch

from alexnet.data.base import DataError, ImageClassificationDataModule
from alexnet.errors import require

# name -> (folder, train files, test files, meta file, label key, class-name key)
CLASSES = {"cifar10": 10, "cifar100": 100}
LAYOUTS = {
    "cifar10": (
        "cifar-10-batches-py",
        [f"data_batch_{i}" for i in range(1, 6)],
        ["test_batch"],
        "batches.meta",
        "labels",
        "label_names",
    ),
    "cifar100": ("cifar-100-python", ["train"], ["test"], "meta", "fine_labels", "fine_label_names"),
}
ARCHIVES = {"cifar10": "cifar-10-python.tar.gz", "cifar100": "cifar-100-python.tar.gz"}


def unpickle(path: Path) -> dict:
    try:
        with open(path, "rb") as f:
            return pickle.load(f, encoding="latin1")
    except (pickle.UnpicklingError, EOFError, ValueError) as err:
        raise DataError(f"{path} is not a readable CIFAR file ({type(err).__name__}: {err})") from err


def read_batches(paths: list[Path], label_key: str) -> tuple[torch.Tensor, torch.Tensor]:
    images, labels = [], []
    for path in paths:
        batch = unpickle(path)
        images.append(np.asarray(batch["data"], dtype=np.uint8).reshape(-1, 3, 32, 32))
        labels.extend(batch[label_key])
    return torch.from_numpy(np.concatenate(images)), torch.as_tensor(labels, dtype=torch.long)


class CIFARDataModule(ImageClassificationDataModule):
    """CIFAR-10/100: validation carved out of train with a fixed seed; test is the test set."""

    def __init__(
        self, name: str = "cifar10", root: str = "data", download: bool = True, checksum: bool = True, **kwargs
    ) -> None:
        require(name in LAYOUTS, "data.name", name, f"one of {sorted(LAYOUTS)}")
        classes = CLASSES[name]
        num_classes = kwargs.get("num_classes", classes)
        require(num_classes == classes, "data.num_classes", num_classes, f"{classes}, the dataset's class count")
        super().__init__(**kwargs)
        self.name, self.root, self.download, self.checksum = name, Path(root), download, checksum

    @property
    def folder(self) -> Path:
        return self.root / LAYOUTS[self.name][0]

    def missing_files(self) -> list[Path]:
        _, train, test, meta, _, _ = LAYOUTS[self.name]
        return [self.folder / f for f in [*train, *test, meta] if not (self.folder / f).is_file()]

    def prepare_data(self) -> None:
        if not self.missing_files() or not self.download:
            return
        from torchvision.datasets import CIFAR10, CIFAR100

        dataset = CIFAR10 if self.name == "cifar10" else CIFAR100
        try:
            dataset(str(self.root), train=True, download=True)
        except OSError as err:  # URLError is an OSError: no network, proxy, DNS
            raise DataError(f"could not download {self.name} into {self.root}: {err}\n{self._how_to_fix()}") from err

    def load(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        missing = self.missing_files()
        if missing:
            raise DataError(f"{self.name} is incomplete: missing {', '.join(map(str, missing))}\n{self._how_to_fix()}")
        if self.checksum:
            self.verify()
        _, train, test, meta, label_key, names_key = LAYOUTS[self.name]
        try:
            self.class_names = list(unpickle(self.folder / meta)[names_key])
            train_x, train_y = read_batches([self.folder / f for f in train], label_key)
            test_x, test_y = read_batches([self.folder / f for f in test], label_key)
        except DataError as err:
            raise DataError(f"{err}\n{self._how_to_fix()}") from err
        return train_x, train_y, test_x, test_y

    def verify(self) -> None:
        """Compare every file's MD5 with the official one (torchvision's list): under a second."""
        from torchvision.datasets import CIFAR10, CIFAR100
        from torchvision.datasets.utils import calculate_md5

        official = CIFAR10 if self.name == "cifar10" else CIFAR100
        for filename, md5 in [
            *official.train_list,
            *official.test_list,
            (official.meta["filename"], official.meta["md5"]),
        ]:
            path = self.folder / filename
            found = calculate_md5(str(path))
            if found != md5:
                raise DataError(
                    f"{path} is not the official {self.name} file (MD5 {found}, expected {md5}): it is corrupt, "
                    f"truncated or from another copy.\n{self._how_to_fix()} For a copy of your own in the same "
                    f"format, data.checksum=false skips this check."
                )

    def _how_to_fix(self) -> str:
        return (
            f"Fix: put the extracted {ARCHIVES[self.name]} (https://www.cs.toronto.edu/~kriz/cifar.html) "
            f"in {self.root}, so that {self.folder} exists, or point data.root at your copy; "
            f"with network access, delete {self.folder} and data.download=true fetches it again."
        )
