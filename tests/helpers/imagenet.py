"""ImageNet as its official archives and file tree, made small from scikit-learn's sample photos."""

import importlib.util
import io
import tarfile
from pathlib import Path

import numpy as np
import scipy.io
from PIL import Image
from sklearn.datasets import load_sample_images

from conftest import ROOT

WNIDS = ["n01440764", "n01443537", "n01484850"]


NAMES = ["tench, Tinca tinca", "goldfish, Carassius auratus", "great white shark"]


def photo_tiles(count: int, size: tuple[int, int] = (60, 80)) -> list[np.ndarray]:
    """Real photo content: tiles cut from scikit-learn's two sample photos (427×640 each)."""
    photos = load_sample_images().images
    h, w = size
    tiles = []
    for i in range(count):
        photo = photos[i % 2]
        y, x = (i * 37) % (photo.shape[0] - h), (i * 53) % (photo.shape[1] - w)
        tiles.append(photo[y : y + h, x : x + w])
    return tiles


def jpeg_bytes(pixels: np.ndarray, **kwargs) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="JPEG", quality=90, **kwargs)
    return buffer.getvalue()


def add_to_tar(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


def write_archives(folder: Path, train_per_class: int = 4, val_labels: tuple[int, ...] = (1, 2, 3, 1, 3, 2)) -> None:
    """The three official archives, in their real formats, with tiny JPEGs."""
    folder.mkdir(parents=True, exist_ok=True)
    tiles = iter(photo_tiles(len(WNIDS) * train_per_class + len(val_labels)))
    with tarfile.open(folder / "ILSVRC2012_img_train.tar", "w") as outer:
        for wnid in WNIDS:
            inner_buffer = io.BytesIO()
            with tarfile.open(fileobj=inner_buffer, mode="w") as inner:
                for i in range(train_per_class):
                    add_to_tar(inner, f"{wnid}_{i + 1}.JPEG", jpeg_bytes(next(tiles)))
            add_to_tar(outer, f"{wnid}.tar", inner_buffer.getvalue())
    with tarfile.open(folder / "ILSVRC2012_img_val.tar", "w") as tar:
        for i in range(len(val_labels)):
            add_to_tar(tar, f"ILSVRC2012_val_{i + 1:08d}.JPEG", jpeg_bytes(next(tiles)))
    # meta.mat: IDs 1..3 are the leaf classes; ID 4 is a parent synset, as in the real devkit.
    synsets = np.array(
        [(i + 1, wnid, name, 0) for i, (wnid, name) in enumerate(zip(WNIDS, NAMES))] + [(4, "n00001740", "entity", 3)],
        dtype=[("ILSVRC2012_ID", "O"), ("WNID", "O"), ("words", "O"), ("num_children", "O")],
    )
    meta = io.BytesIO()
    scipy.io.savemat(meta, {"synsets": synsets})
    truth = "".join(f"{label}\n" for label in val_labels).encode()
    with tarfile.open(folder / "ILSVRC2012_devkit_t12.tar.gz", "w:gz") as tar:
        add_to_tar(tar, "ILSVRC2012_devkit_t12/data/meta.mat", meta.getvalue())
        add_to_tar(tar, "ILSVRC2012_devkit_t12/data/ILSVRC2012_validation_ground_truth.txt", truth)


def prepare_script():
    """``src/prepare_imagenet.py`` as a module, to call its ``main`` in this process."""
    spec = importlib.util.spec_from_file_location("prepare_imagenet_script", ROOT / "src" / "prepare_imagenet.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def prepare_shards(archives: Path, root: Path, side: int) -> str:
    """``src/prepare_imagenet.py --format shards`` on the archives, run in this process (litdata's
    writers fork from it), 2 workers; what it printed."""
    from contextlib import redirect_stdout
    from io import StringIO

    args = ["--archives", str(archives), "--root", str(root), "--format", "shards", "--side", str(side)]
    out = StringIO()
    with redirect_stdout(out):
        assert prepare_script().main([*args, "--workers", "2"]) == 0
    return out.getvalue()


def bad_files(folder: Path) -> dict[str, Path]:
    """One real file of each awkward kind ImageNet has, made from a photo."""
    folder.mkdir(parents=True, exist_ok=True)
    pixels = photo_tiles(1, (64, 96))[0]
    files = {}
    files["cmyk"] = folder / "cmyk.JPEG"
    Image.fromarray(pixels).convert("CMYK").save(files["cmyk"], format="JPEG", quality=95)
    files["png_named_jpeg"] = folder / "n02105855_2933.JPEG"
    Image.fromarray(pixels).save(files["png_named_jpeg"], format="PNG")
    files["grey"] = folder / "grey.JPEG"
    Image.fromarray(pixels).convert("L").save(files["grey"], format="JPEG")
    files["palette"] = folder / "palette.JPEG"
    Image.fromarray(pixels).convert("P").save(files["palette"], format="PNG")
    files["odd_exif"] = folder / "odd_exif.JPEG"
    data = jpeg_bytes(pixels)
    garbage_exif = b"\xff\xe1" + (2 + 20).to_bytes(2, "big") + b"Exif\x00\x00" + b"\x00\xff" * 7
    files["odd_exif"].write_bytes(data[:2] + garbage_exif + data[2:])  # an APP1 segment that is not valid EXIF
    return files
