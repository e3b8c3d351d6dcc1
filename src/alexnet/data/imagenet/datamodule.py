"""ILSVRC-2012 in the ImageFolder layout, with the paper's augmentation and its 10-patch test.

Two formats (``data.format``), both made by ``src/prepare_imagenet.py`` from the official archives:

- ``folder``: ``<root>/train/<wnid>/*.JPEG``, ``<root>/val/<wnid>/*.JPEG``, ``<root>/classes.tsv``;
- ``shards``: the paper's 256×256 squares, JPEG-encoded once, in litdata shards at ``data.shards``
  (a folder, or object storage), read by :mod:`.shards`.

``classes.tsv`` holds ``index, wnid, name`` per class; the index is the position of the wnid in
sorted order, as torchvision's ImageFolder numbers them, so torchvision's weights line up.

The paper's recipe (§4.1): shorter side to 256, the centre 256×256, then a random 227 crop and a
horizontal flip for training; PCA colour noise; evaluation on the centre crop or on the paper's
10 patches (four corners and centre, each flipped too), softmax averaged. JPEGs are decoded at a
reduced size by libjpeg-turbo when the image is much larger than needed (simplejpeg), and images
stay uint8 until the batch reaches the device, where colour noise and normalisation run on the
whole batch.
"""

import logging
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path

import torch
from torchvision.transforms import v2

from alexnet.data.base import ClassificationDataModule, DataError, data_shard, default_workers
from alexnet.data.imagenet.decoding import decode_on_device
from alexnet.data.imagenet.folder import ImageFolderDataset, SkipUndecodable, list_samples, read_classes
from alexnet.data.imagenet.scan import find_bad_images_cached
from alexnet.data.imagenet.shards import is_remote, read_prepared, read_shard_classes
from alexnet.data.imagenet.transforms import IMAGENET_MEAN, IMAGENET_STD, ten_crop, to_normalised_floats
from alexnet.data.prediction import Skipped, readable_images
from alexnet.data.seeds import mix
from alexnet.errors import require
from alexnet.lightning_compat import trained_batches

log = logging.getLogger(__name__)

RECIPES = ("paper", "torchvision")
TTAS = ("center", "tencrop")
FORMATS = ("folder", "shards")


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
            read the files, and the trainer's device decodes each batch (TorchCodec's ``decode_jpeg``:
            nvJPEG on a GPU; on the CPU where it cannot), for when the CPU cores cannot keep up.
        format: "folder" (the file tree at ``root``) or "shards" (the prepared squares at ``shards``).
        shards: where the shards are: a folder, or ``s3://…``, ``gs://…`` (read through litdata,
            cached in ``cache_dir``; litdata's default cache when None).
        seed: the training order and crops on shards (the run's seed).
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
        format: str = "folder",
        shards: str | None = None,
        cache_dir: str | None = None,
        seed: int = 0,
    ) -> None:
        require(recipe in RECIPES, "data.recipe", recipe, f"one of {list(RECIPES)}")
        require(eval_tta in TTAS, "data.eval_tta", eval_tta, f"one of {list(TTAS)}")
        require(bad_images in ("error", "skip"), "data.bad_images", bad_images, "'error' or 'skip'")
        require(decode in ("loader", "device"), "data.decode", decode, "'loader' (CPU workers) or 'device' (the GPU)")
        require(format in FORMATS, "data.format", format, "'folder' (the file tree) or 'shards' (prepared shards)")
        squares = (
            "paper with data.format=shards, whose stored central squares the torchvision recipe's random resized "
            "crops cannot use (or data.format=folder)"
        )
        require(format != "shards" or recipe == "paper", "data.recipe", recipe, squares)
        within = f"at most data.resize={resize}: crops come out of the resized image"
        require(image_size <= resize, "data.image_size", image_size, within)
        super().__init__(num_classes, batch_size, num_workers, pin_memory)
        self.root, self.image_size, self.recipe, self.eval_tta = Path(root), image_size, recipe, eval_tta
        self.pca_std, self.resize, self.bad_images, self.scan = pca_std, resize, bad_images, scan
        self.skipped: list[tuple[str, str]] = []
        self.decode, self.format, self.seed, self.cache_dir = decode, format, seed, cache_dir
        self.shards = str(shards) if shards else str(self.root / "shards")
        self.mean, self.std = list(IMAGENET_MEAN), list(IMAGENET_STD)  # what on_after_batch_transfer applies

    def build(self) -> None:
        if self.format == "shards":
            return self._build_shards()
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

    def _build_shards(self) -> None:
        classes = read_shard_classes(self.root, self.shards)
        self.wnids = [wnid for wnid, _ in classes]
        self.class_names = [name for _, name in classes]
        prepared = read_prepared(self.shards)
        if prepared is not None and prepared["side"] != self.resize:
            raise DataError(
                f"the shards in {self.shards} hold {prepared['side']}×{prepared['side']} squares but "
                f"data.resize={self.resize}; set data.resize={prepared['side']}, or prepare them again with --side"
            )
        if prepared is not None:
            self.skipped += [tuple(s) for split in prepared["splits"].values() for s in split["skipped"]]
        for split in ("train", "val"):
            if not self._shard_split_exists(split):
                raise DataError(
                    f"no shards at {self.shards}/{split} (index.json missing); write them with `python "
                    f"src/prepare_imagenet.py --archives <folder> --root {self.root} --format shards`, "
                    "or set data.shards"
                )
        from alexnet.data.imagenet.shard_reader import EvalShards, TrainShards  # litdata: seconds to import

        train_tf, eval_tf = self.transforms()
        encoded = self.decode == "device"
        self.train_set = TrainShards(
            f"{self.shards}/train",
            self.image_size,
            self.seed,
            data_shard(self.trainer),
            encoded,
            train_tf,
            self._cache("train"),
        )
        self.val_set = EvalShards(f"{self.shards}/val", eval_tf, encoded, self._cache("val"))
        self.test_set = self.val_set

    def _cache(self, split: str) -> str | None:
        """A cache folder per split (litdata names every dataset's chunks alike)."""
        return f"{self.cache_dir}/{split}" if self.cache_dir else None

    def _shard_split_exists(self, split: str) -> bool:
        return is_remote(self.shards) or (Path(self.shards) / split / "index.json").is_file()

    def train_dataloader(self):
        if self.format != "shards":
            return super().train_dataloader()
        from alexnet.data.imagenet.shard_reader import EvalShards, ShardLoader, collate_crops

        trainer = self.trainer
        return ShardLoader(
            self.train_set,
            self.batch_size_per_device,
            self.num_workers,
            epoch=(lambda: trainer.current_epoch) if trainer is not None else (lambda: 0),
            progress=partial(trained_batches, trainer) if trainer is not None else (lambda: 0),
            collate_fn=EvalShards.collate if self.decode == "device" else collate_crops,
            pin_memory=self.pin_memory and torch.cuda.is_available(),
        )

    def evaluation_set(self, split: str):
        if self.format == "shards":
            from alexnet.data.imagenet.shard_reader import EvalShards

            center = self.transforms(tta="center")[1]
            if split == "train":
                return EvalShards(f"{self.shards}/train", center, cache_dir=self._cache("train-eval"))
            return self.val_set.with_transform(center)
        dataset = getattr(self, f"{split}_set")
        return ImageFolderDataset(dataset.samples, self.resize, self.transforms(tta="center")[1], dataset.square)

    def predict_on(self, files: Sequence[Path]) -> list[Skipped]:
        """Each file decoded and fitted as the validation images are (shorter side to ``resize``; the
        paper's recipe: its central square), then the evaluation transform (``eval_tta``), by the
        loader's workers. Class names from ``classes.tsv``; without one, a 1,000-class network gets
        torchvision's ImageNet names (the same sorted-wnid order)."""
        self.class_names = self._class_names()
        if len(self.class_names) != self.num_classes:
            raise DataError(
                f"the class table of {self.root} has {len(self.class_names)} classes but the network "
                f"{self.num_classes}; point data.root at the data the network was trained on"
            )
        readable, skipped = readable_images(files, self.image_size)
        transform = self.transforms()[1]
        # Decoded by the loader even with decode=device: a file that fails is then left out, not fatal.
        dataset = ImageFolderDataset([(p, i) for i, p in readable], self.resize, transform, self.recipe == "paper")
        blank = transform(torch.zeros(3, self.resize, self.resize, dtype=torch.uint8))
        self.predict_set = SkipUndecodable(dataset, blank) if readable else None
        return skipped

    def preprocessing(self) -> str:
        square = f", its central {self.resize}×{self.resize}" if self.recipe == "paper" else ""
        crop = (
            "the paper's 10 patches"
            if self.eval_tta == "tencrop"
            else f"the central {self.image_size}×{self.image_size}"
        )
        resized = f"shorter side resized to {self.resize} (bilinear, antialiased)"
        return f"RGB; {resized}{square}; {crop}; /255, minus mean, over std"

    def _class_names(self) -> list[str]:
        try:
            classes = read_shard_classes(self.root, self.shards) if self.format == "shards" else read_classes(self.root)
        except DataError as err:
            if self.num_classes != 1000:
                raise
            from torchvision.models import AlexNet_Weights

            log.warning("%s; naming the 1,000 classes as torchvision's ImageNet weights do", str(err).split(";")[0])
            return list(AlexNet_Weights.IMAGENET1K_V1.meta["categories"])
        return [name for _, name in classes]

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
            return train, v2.Compose([*square, partial(ten_crop, size=size)])
        return train, v2.Compose([*square, v2.CenterCrop(size)])

    def on_before_batch_transfer(self, batch, dataloader_idx: int):
        """With ``decode=device``: decode, fit and transform the batch's JPEGs on the trainer's device."""
        images, labels = batch
        if not isinstance(images, list):
            return batch
        dataset = self.train_set if self.trainer.training else self.val_set
        device = self.trainer.strategy.root_device
        transform = getattr(dataset, "transform_on_device", None) or dataset.transform
        return decode_on_device(images, device, dataset.shorter_side, dataset.square, transform), labels

    def on_after_batch_transfer(self, batch: tuple[torch.Tensor, torch.Tensor], dataloader_idx: int):
        """uint8 batch (``B×3×H×W``, or ``B×10×3×H×W`` for 10 patches) -> normalised floats, on the device;
        PCA colour noise while training, drawn from a generator seeded by (seed, step, data shard), not
        from the global one: a resumed run draws a step's noise before its generators are restored."""
        images, labels = batch
        training = self.trainer is not None and self.trainer.training
        generator = None
        if training and self.pca_std > 0:
            generator = torch.Generator(device=images.device)
            generator.manual_seed(mix(self.seed, self.trainer.global_step, data_shard(self.trainer)[0]) >> 1)
        return to_normalised_floats(images, self.pca_std if training else 0.0, generator), labels

    def report(self) -> dict:
        """What ``results.json`` records about the data: the files left out."""
        return {"skipped_images": {"count": len(self.skipped), "files": self.skipped[:100]}} if self.skipped else {}

    def _samples(self, split: str) -> list[tuple[Path, int]]:
        samples = list_samples(self.root / split, self.wnids)
        if not self.scan:
            return samples
        cache = self.root / f".scan-{split}.json"
        bad = find_bad_images_cached([p for p, _ in samples], cache, workers=default_workers())
        if bad and self.bad_images == "error":
            listing = "\n".join(f"  {p}: {r}" for p, r in bad[:10])
            raise DataError(
                f"{len(bad)} bad image file(s) in {self.root / split}:\n{listing}\n"
                "Fix or remove them, or set data.bad_images=skip to leave them out"
            )
        self.skipped += [(str(p), r) for p, r in bad]
        bad_paths = {p for p, _ in bad}
        return [(p, label) for p, label in samples if p not in bad_paths]
