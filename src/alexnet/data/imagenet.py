"""ILSVRC-2012 in the ImageFolder layout, with the paper's augmentation and its 10-patch test.

Layout (what ``src/prepare_imagenet.py`` makes from the official archives)::

    <root>/train/<wnid>/*.JPEG   <root>/val/<wnid>/*.JPEG   <root>/classes.tsv

``classes.tsv`` holds ``index, wnid, name`` per class; the index is the position of the wnid in
sorted order, as torchvision's ImageFolder numbers them, so torchvision's weights line up.

The paper's recipe (§4.1): shorter side to 256, the centre 256×256, then a random 227 crop and a
horizontal flip for training; PCA colour noise; evaluation on the centre crop or on the paper's
10 patches (four corners and centre, each flipped too), softmax averaged. JPEGs are decoded at a
reduced size by libjpeg-turbo when the image is much larger than needed (simplejpeg), and images
stay uint8 until the batch reaches the device, where colour noise and normalisation run on the
whole batch.
"""

import csv
import hashlib
import io
import json
import warnings
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import simplejpeg
import torch
import torch.nn.functional as F
from PIL import Image, UnidentifiedImageError
from torch.utils.data import Dataset
from torchvision.io import ImageReadMode, decode_jpeg
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as TF

from alexnet.data.base import ClassificationDataModule, DataError, default_workers

# PCA of ImageNet's RGB pixels in [0, 1] (fb.resnet.torch): eigenvalues and eigenvectors (columns).
PCA_EIGVAL = torch.tensor([0.2175, 0.0188, 0.0045])
PCA_EIGVEC = torch.tensor([[-0.5675, 0.7192, 0.4009], [-0.5808, -0.0045, -0.8140], [-0.5836, -0.6948, 0.4203]])
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
EXTENSIONS = (".jpeg", ".jpg", ".png")
RECIPES = ("paper", "torchvision")
TTAS = ("center", "tencrop")


def decode(path: Path, shorter_side: int | None = None, square: bool = False) -> torch.Tensor:
    """An image file as uint8 RGB ``3×H×W``, its shorter side resized to ``shorter_side`` if given;
    with ``square``, only its central square, resized to ``shorter_side × shorter_side`` (§4.1's
    "central 256×256 patch" in one resampling, without resampling the sides that are cut away).

    JPEGs go to libjpeg-turbo through simplejpeg, straight into an array (PIL's ``tobytes`` copy
    costs a third of a decode); for one at least twice as large as needed, libjpeg decodes at 1/2,
    1/4 or 1/8 scale (never below the target; power-of-two scales are the fast ones). Anything
    else PIL reads (a PNG named .JPEG, a CMYK JPEG) goes through PIL; grey and palette images
    become RGB. EXIF orientation is ignored, as in every ImageNet pipeline.
    """
    data = path.read_bytes()
    pixels = _decode_jpeg(data, shorter_side) if simplejpeg.is_jpeg(data) else None
    if pixels is None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "Corrupt EXIF data" and the like: the pixels are fine
            with Image.open(io.BytesIO(data)) as image:
                if shorter_side is not None and image.format == "JPEG":
                    image.draft("RGB", (shorter_side, shorter_side))  # keeps both sides >= shorter_side
                pixels = TF.pil_to_tensor(image.convert("RGB"))
    return fit(pixels, shorter_side, square)


def fit(pixels: torch.Tensor, shorter_side: int | None, square: bool = False) -> torch.Tensor:
    """A decoded uint8 ``3×H×W`` image with its shorter side resized to ``shorter_side`` (None: as
    it is); with ``square``, its central square, resized to ``shorter_side × shorter_side``."""
    if shorter_side is None:
        return pixels
    if square:
        side = min(pixels.shape[-2:])
        pixels, size = TF.center_crop(pixels, [side, side]), [shorter_side, shorter_side]
    else:
        h, w = pixels.shape[-2:]
        # torchvision's rounding of the longer side (down), so that Resize(256) gives the same size
        size = [shorter_side, int(w * shorter_side / h)] if h <= w else [int(h * shorter_side / w), shorter_side]
    # torch's antialiased bilinear resize (PIL's filter) has a fast uint8 path for channels-last
    # batches: about 5× PIL's resize here.
    batch = pixels[None].contiguous(memory_format=torch.channels_last)
    return F.interpolate(batch, size=size, mode="bilinear", antialias=True, align_corners=False)[0]


def _decode_jpeg(data: bytes, shorter_side: int | None) -> torch.Tensor | None:
    """A JPEG as uint8 ``3×H×W`` (channels-last strides), or None for what simplejpeg cannot read
    (CMYK, say), which PIL then reads. Truncated or corrupt data is left to PIL too, which reports it."""
    try:
        height, width, _, _ = simplejpeg.decode_jpeg_header(data)
        scale = 1
        while shorter_side is not None and scale < 8 and min(height, width) >= 2 * scale * shorter_side:
            scale *= 2
        array = simplejpeg.decode_jpeg(data, "RGB", min_height=-(-height // scale), min_width=-(-width // scale))
    except ValueError:
        return None
    return torch.from_numpy(array).permute(2, 0, 1)


def pca_shift(count: int, std: float, device: torch.device, alphas: torch.Tensor | None = None) -> torch.Tensor:
    """§4.1's PCA colour noise for ``count`` images, ``count×3``: ``eigvec @ (alpha * eigval)``,
    ``alpha ~ N(0, std)`` drawn once per image, in [0, 1] pixel units."""
    if alphas is None:
        alphas = torch.randn(count, 3, device=device) * std
    return (alphas * PCA_EIGVAL.to(device)) @ PCA_EIGVEC.to(device).T


def lighting(images: torch.Tensor, std: float, alphas: torch.Tensor | None = None) -> torch.Tensor:
    """Add the PCA colour noise (:func:`pca_shift`) to every pixel of floats in [0, 1], ``B×3×H×W``."""
    return images + pca_shift(images.shape[0], std, images.device, alphas)[:, :, None, None]


def to_normalised_floats(images: torch.Tensor, pca_std: float = 0.0) -> torch.Tensor:
    """uint8 batch -> floats in [0, 1], PCA colour noise (when ``pca_std`` > 0, single crops only),
    then per-channel normalisation: the work done once per batch, on the device.

    All of it is one per-channel affine map, ``x * 1/(255 std) + (noise - mean)/std``, applied in
    one fused pass over the converted batch."""
    device = images.device
    mean, std = torch.tensor(IMAGENET_MEAN, device=device), torch.tensor(IMAGENET_STD, device=device)
    shift = (
        pca_shift(images.shape[0], pca_std, device)
        if pca_std > 0 and images.ndim == 4
        else torch.zeros(3, device=device)
    )
    offset = ((shift - mean) / std)[..., None, None]  # B×3×1×1, or 3×1×1
    return torch.addcmul(offset, images.float(), (1 / (255 * std))[:, None, None])


def ten_crop(image: torch.Tensor, size: int) -> torch.Tensor:
    """The paper's 10 test patches of a ``3×H×W`` image: 4 corners + centre, then their mirror images."""
    patches = TF.five_crop(image, [size, size])
    return torch.stack([*patches, *(TF.horizontal_flip(p) for p in patches)])


def device_decodable(data: bytes) -> bool:
    """A baseline or progressive JPEG in YCbCr or grey, which ``torchvision.io.decode_jpeg`` decodes
    on a GPU (nvJPEG) as on a CPU; CMYK and YCCK JPEGs and other formats are decoded by the loader."""
    if not simplejpeg.is_jpeg(data):
        return False
    try:
        return simplejpeg.decode_jpeg_header(data)[2] in ("YCbCr", "Gray")
    except ValueError:
        return False


def decode_on_device(
    images: list[torch.Tensor],
    device: torch.device,
    shorter_side: int | None,
    square: bool,
    transform: Callable[[torch.Tensor], torch.Tensor],
) -> torch.Tensor:
    """A batch from :meth:`ImageFolderDataset.collate`: the encoded JPEGs decoded together on
    ``device`` (nvJPEG on a GPU), every image fitted like :func:`decode` and transformed; stacked."""
    encoded = [i for i, image in enumerate(images) if image.ndim == 1]
    decoded = {}
    if encoded:  # a batch of CMYK/PNG files alone has nothing to decode here
        decoded = dict(zip(encoded, decode_jpeg([images[i] for i in encoded], mode=ImageReadMode.RGB, device=device)))
    out = [
        transform(fit(decoded[i], shorter_side, square) if i in decoded else image.to(device))
        for i, image in enumerate(images)
    ]
    return torch.stack(out)


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


def find_bad_images(paths: Sequence[Path], workers: int = 8) -> list[tuple[Path, str]]:
    """Files that cannot be images: unreadable headers, and JPEGs cut short (no end-of-image marker).

    Reads each file's header and last bytes, not its pixels, so a scan of ImageNet takes minutes,
    not an epoch.
    """

    def check(path: Path) -> str | None:
        try:
            with Image.open(path) as image:
                image_format = image.format
            if image_format == "JPEG":
                with open(path, "rb") as f:
                    f.seek(max(0, path.stat().st_size - 64))
                    if b"\xff\xd9" not in f.read():
                        return "truncated: no JPEG end-of-image marker"
            return None
        except (OSError, UnidentifiedImageError, ValueError) as err:
            return f"unreadable: {err}"

    with ThreadPoolExecutor(max_workers=workers) as pool:
        reasons = list(pool.map(check, paths, chunksize=256))
    return [(p, r) for p, r in zip(paths, reasons) if r is not None]


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


def files_digest(paths: list[Path]) -> str:
    """A digest of each file's path, size and modification time: it changes when any file is
    added, removed, replaced or written in place (the scan cache's key)."""
    digest = hashlib.sha256()
    for path in paths:
        stat = path.stat()
        digest.update(f"{path}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()


class ImageNetDataModule(ClassificationDataModule):
    """ILSVRC-2012 from ``root``; validation and test are both the official 50,000 val images
    (the paper reports its val numbers as "test"; ILSVRC's test labels are not public).

    Args:
        root: the prepared folder (``train/``, ``val/``, ``classes.tsv``).
        num_classes: 1000, or the subset prepared; checked against the folders.
        image_size: crop side: 227 for the paper (``model=paper``), 224 for torchvision's recipe.
        recipe: "paper" (256, random crop, flip, PCA noise) or "torchvision" (random resized crop, flip).
        eval_tta: "center" crop or the paper's "tencrop" (softmax averaged over 10 patches).
        pca_std: std of the PCA colour-noise coefficients (§4.1: 0.1; 0 disables it).
        resize: the shorter side before cropping (256).
        bad_images: "error" stops before training at the first unreadable or truncated file, with
            its path; "skip" leaves such files out, counts them and reports them.
        scan: look for bad files before training (headers and JPEG end markers; cached per split,
            until any file's path, size or modification time changes).
        decode: "loader": the loader's workers decode (simplejpeg on the CPU); "device": they only
            read the files, and the trainer's device decodes each batch (``torchvision.io.decode_jpeg``:
            nvJPEG on a GPU), for when the CPU cores cannot keep up with the GPU.
    """

    def __init__(
        self,
        root: str = "data/imagenet",
        num_classes: int = 1000,
        image_size: int = 227,
        batch_size: int = 128,
        num_workers: int | str = "auto",
        recipe: str = "paper",
        eval_tta: str = "center",
        pca_std: float = 0.1,
        resize: int = 256,
        bad_images: str = "error",
        scan: bool = True,
        pin_memory: bool = True,
        decode: str = "loader",
    ) -> None:
        if recipe not in RECIPES or eval_tta not in TTAS or bad_images not in ("error", "skip"):
            raise ValueError(
                f"data.recipe must be one of {RECIPES}, data.eval_tta one of {TTAS}, data.bad_images "
                f"'error' or 'skip'; got {recipe!r}, {eval_tta!r}, {bad_images!r}"
            )
        if decode not in ("loader", "device"):
            raise ValueError(f"data.decode={decode!r}; choose 'loader' (CPU workers) or 'device' (the GPU)")
        if image_size > resize:
            raise ValueError(
                f"data.image_size={image_size} is larger than data.resize={resize}: crops come out of the resized image"
            )
        super().__init__(num_classes, batch_size, num_workers, pin_memory)
        self.root, self.image_size, self.recipe, self.eval_tta = Path(root), image_size, recipe, eval_tta
        self.pca_std, self.resize, self.bad_images, self.scan = pca_std, resize, bad_images, scan
        self.skipped: list[tuple[str, str]] = []
        self.decode = decode

    def build(self) -> None:
        classes = read_classes(self.root)
        self.wnids = [wnid for wnid, _ in classes]
        self.class_names = [name for _, name in classes]
        train = self._samples("train")
        val = self._samples("val")
        train_tf, eval_tf = self.transforms()
        shorter = None if self.recipe == "torchvision" else self.resize  # RandomResizedCrop wants full size
        square = self.recipe == "paper"  # decode straight to the central 256×256
        encoded = self.decode == "device"
        self.train_set = ImageFolderDataset(train, shorter, train_tf, square, encoded)
        self.val_set = ImageFolderDataset(val, self.resize, eval_tf, square, encoded)
        self.test_set = self.val_set

    def evaluation_set(self, split: str) -> ImageFolderDataset:
        dataset = getattr(self, f"{split}_set")
        return ImageFolderDataset(dataset.samples, self.resize, self.transforms(tta="center")[1], dataset.square)

    def transforms(self, tta: str | None = None) -> tuple[Callable, Callable]:
        """(train, eval) transforms of a decoded uint8 image; their outputs stay uint8."""
        size, tta = self.image_size, tta or self.eval_tta
        if self.recipe == "paper":
            train = v2.Compose([v2.CenterCrop(self.resize), v2.RandomCrop(size), v2.RandomHorizontalFlip()])
        else:
            train = v2.Compose([v2.RandomResizedCrop(size, antialias=True), v2.RandomHorizontalFlip()])
        # Both evaluate the image resized to 256 on its shorter side; the paper first takes its centre 256×256.
        square = [v2.CenterCrop(self.resize)] if self.recipe == "paper" else []
        if tta == "tencrop":
            return train, v2.Compose([*square, lambda image: ten_crop(image, size)])
        return train, v2.Compose([*square, v2.CenterCrop(size)])

    def on_before_batch_transfer(self, batch, dataloader_idx: int):
        """With ``decode=device``: decode, fit and transform the batch's JPEGs on the trainer's device."""
        images, labels = batch
        if not isinstance(images, list):
            return batch
        dataset = self.train_set if self.trainer.training else self.val_set
        device = self.trainer.strategy.root_device
        return decode_on_device(images, device, dataset.shorter_side, dataset.square, dataset.transform), labels

    def on_after_batch_transfer(self, batch: tuple[torch.Tensor, torch.Tensor], dataloader_idx: int):
        """uint8 batch (``B×3×H×W``, or ``B×10×3×H×W`` for 10 patches) -> normalised floats, on the device;
        PCA colour noise while training."""
        images, labels = batch
        training = self.trainer is not None and self.trainer.training
        return to_normalised_floats(images, self.pca_std if training else 0.0), labels

    def report(self) -> dict:
        """What ``results.json`` records about the data: the files left out."""
        return {"skipped_images": {"count": len(self.skipped), "files": self.skipped[:100]}} if self.skipped else {}

    def _samples(self, split: str) -> list[tuple[Path, int]]:
        folder = self.root / split
        if not folder.is_dir():
            raise DataError(f"{folder} is missing; prepare ImageNet with src/prepare_imagenet.py or set data.root")
        samples, empty = [], []
        for label, wnid in enumerate(self.wnids):
            files = sorted(p for p in (folder / wnid).glob("*") if p.suffix.lower() in EXTENSIONS)
            if not files:
                empty.append(wnid)
            samples += [(p, label) for p in files]
        if empty:
            raise DataError(
                f"{len(empty)} class folder(s) of {folder} hold no images, e.g. {folder / empty[0]}; "
                "finish preparing the data (src/prepare_imagenet.py resumes where it stopped)"
            )
        if self.scan:
            samples = self._without_bad_files(split, samples)
        return samples

    def _without_bad_files(self, split: str, samples: list[tuple[Path, int]]) -> list[tuple[Path, int]]:
        cache = self.root / f".scan-{split}.json"
        key = {"files": len(samples), "digest": files_digest([p for p, _ in samples])}
        cached = json.loads(cache.read_text()) if cache.is_file() else None
        if cached and cached.get("key") == key:
            bad = [(Path(p), r) for p, r in cached["bad"]]
        else:
            bad = find_bad_images([p for p, _ in samples], workers=default_workers())
            try:
                cache.write_text(json.dumps({"key": key, "bad": [(str(p), r) for p, r in bad]}))
            except OSError:
                pass  # a read-only dataset: scan again next time
        if bad and self.bad_images == "error":
            listing = "\n".join(f"  {p}: {r}" for p, r in bad[:10])
            raise DataError(
                f"{len(bad)} bad image file(s) in {self.root / split}:\n{listing}\n"
                "Fix or remove them, or set data.bad_images=skip to leave them out"
            )
        self.skipped += [(str(p), r) for p, r in bad]
        bad_paths = {p for p, _ in bad}
        return [(p, label) for p, label in samples if p not in bad_paths]
