"""ILSVRC-2012 as files: the class table, the samples of a split, and a dataset that decodes them."""

import csv
from collections.abc import Callable, Sequence
from pathlib import Path

import torch
from PIL import UnidentifiedImageError
from torch.utils.data import Dataset

from alexnet.data.base import DataError
from alexnet.data.imagenet.decoding import decode, device_decodable

EXTENSIONS = (".jpeg", ".jpg", ".png")


class ImageFolderDataset(Dataset):
    """``(path, label)`` samples decoded on demand; ``transform`` maps uint8 ``3×H×W`` to the sample.

    With ``encoded``, a sample is the file's bytes (a 1-D uint8 tensor) for the trainer's device to
    decode (:func:`decode_on_device`), untransformed; files that device decoding does not take
    (CMYK JPEGs, PNGs) come decoded and fitted, as 3-D tensors. Batch them with :meth:`collate`.
    """

    def __init__(
        self,
        samples: Sequence[tuple[Path, int]],
        shorter_side: int | None,
        transform: Callable[[torch.Tensor], torch.Tensor],
        square: bool = False,
        encoded: bool = False,
    ) -> None:
        self.samples, self.shorter_side, self.transform = list(samples), shorter_side, transform
        self.square, self.encoded = square, encoded
        self.labels = torch.tensor([label for _, label in self.samples], dtype=torch.long)

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        path, label = self.samples[index]
        try:
            if self.encoded:
                data = path.read_bytes()
                if device_decodable(data):
                    return torch.frombuffer(bytearray(data), dtype=torch.uint8), self.labels[index]
            image = decode(path, self.shorter_side, self.square)
        except (OSError, UnidentifiedImageError, ValueError) as err:
            raise DataError(
                f"cannot decode {path}: {err}. Remove the file, or rescan (data.scan=true) with "
                "data.bad_images=skip to leave such files out"
            ) from err
        return (image if self.encoded else self.transform(image)), self.labels[index]

    @staticmethod
    def collate(batch: list[tuple[torch.Tensor, torch.Tensor]]) -> tuple[list[torch.Tensor], torch.Tensor]:
        """Encoded samples: (a list of byte or image tensors, the labels)."""
        return [image for image, _ in batch], torch.stack([label for _, label in batch])

    def raw(self, index: int) -> torch.Tensor:
        """The image as evaluated (the central square at 256×256), uint8, for display."""
        return decode(self.samples[index][0], 256, square=True)


class SkipUndecodable(Dataset):
    """``dataset``'s samples ``(image, file index)``; a file that fails to decode even so gives
    ``(blank, -1 - index)``, so that one bad file does not end the others' prediction."""

    def __init__(self, dataset: Dataset, blank: torch.Tensor) -> None:
        self.dataset, self.blank = dataset, blank

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        try:
            return self.dataset[index]
        except DataError:
            return self.blank, -1 - self.dataset.labels[index]


def read_classes(root: Path) -> list[tuple[str, str]]:
    """``(wnid, name)`` per class in index order, from ``classes.tsv`` or else the train folders."""
    table = root / "classes.tsv"
    if table.is_file():
        with open(table, newline="") as f:
            return [(row["wnid"], row["name"]) for row in csv.DictReader(f, delimiter="\t")]
    train = root / "train"
    if not train.is_dir():
        raise DataError(
            f"{train} is missing. Prepare ImageNet with `python src/prepare_imagenet.py "
            f"--archives <folder with the ILSVRC2012 tars> --root {root}` or point data.root at it"
        )
    return [(d.name, d.name) for d in sorted(train.iterdir()) if d.is_dir()]


def list_samples(folder: Path, wnids: Sequence[str]) -> list[tuple[Path, int]]:
    """``(path, label)`` of every image in ``folder/<wnid>/``, the label being the wnid's index."""
    if not folder.is_dir():
        raise DataError(f"{folder} is missing; prepare ImageNet with src/prepare_imagenet.py or set data.root")
    samples, empty = [], []
    for label, wnid in enumerate(wnids):
        files = sorted(p for p in (folder / wnid).glob("*") if p.suffix.lower() in EXTENSIONS)
        if not files:
            empty.append(wnid)
        samples += [(p, label) for p in files]
    if empty:
        raise DataError(
            f"{len(empty)} class folder(s) of {folder} hold no images, e.g. {folder / empty[0]}; "
            "finish preparing the data (src/prepare_imagenet.py resumes where it stopped)"
        )
    return samples
