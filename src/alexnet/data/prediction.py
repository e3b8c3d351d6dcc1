"""Image files a user hands to ``src/predict.py``: found, checked, and those that cannot be read left
out (named, with the reason), before any is decoded for the network."""

import glob
import logging
from collections.abc import Sequence
from pathlib import Path

from PIL import Image

from alexnet.data.imagenet.scan import image_problem
from alexnet.errors import ConfigError

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp")
Skipped = tuple[Path, str]  # a file left out, and why
ORIENTATION = 0x0112  # the EXIF tag: 1 as stored; 3, 6, 8 rotated for display


def find_images(patterns: str | Sequence[str]) -> list[Path]:
    """The image files that ``patterns`` name (one pattern, or several: ``images=[a.jpg,b/]``), in
    order, each once: files as given (whatever their suffix), folders searched recursively for images
    (by suffix), glob patterns (``**`` included) expanded. A pattern that matches nothing is an error
    naming it."""
    found: dict[Path, None] = {}
    for pattern in [patterns] if isinstance(patterns, str) else list(patterns):
        path = Path(pattern).expanduser()
        if path.is_file():
            matches = [path]
        elif path.is_dir():
            matches = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
        else:
            matches = sorted(Path(p) for p in glob.glob(str(path), recursive=True) if Path(p).is_file())
        if not matches:
            what = "holds no images" if path.is_dir() else "matches no file"
            raise ConfigError(
                f"images={pattern}: {what}. Pass image files, folders (searched recursively for "
                f"{', '.join(IMAGE_SUFFIXES)}) or glob patterns, e.g. images=photos/ or images='photos/*.jpg'"
            )
        found.update(dict.fromkeys(matches))
    return list(found)


def readable_images(files: Sequence[Path], smallest_side: int) -> tuple[list[tuple[int, Path]], list[Skipped]]:
    """(``(index, path)`` of the files that can be read, those that cannot with the reason): headers
    and JPEG end markers checked, pixels not decoded. An image whose shorter side is under half of
    ``smallest_side`` (what the network looks at) is predicted with a warning: it is upsampled. So
    is one whose EXIF orientation says it is shown rotated: it is predicted as stored, as the
    loaders read their images."""
    readable, skipped, small, rotated = [], [], [], []
    for index, path in enumerate(files):
        problem = image_problem(path)
        if problem is not None:
            skipped.append((path, problem))
            continue
        with Image.open(path) as image:
            width, height = image.size
            orientation = _orientation(image)
        if 2 * min(width, height) < smallest_side:
            small.append(f"{path} ({width}×{height})")
        if orientation != 1:
            rotated.append(f"{path} (orientation {orientation})")
        readable.append((index, path))
    if small:
        log.warning(
            "%d image(s) far smaller than the network's %d-pixel view, upsampled to it (predictions on them "
            "mean little): %s",
            len(small),
            smallest_side,
            _some(small),
        )
    if rotated:
        log.warning(
            "%d image(s) whose EXIF orientation turns them for display, predicted as stored (as the data "
            "loaders read images); rotate the pixels to predict them upright: %s",
            len(rotated),
            _some(rotated),
        )
    return readable, skipped


def _orientation(image: Image.Image) -> int:
    try:
        return int(image.getexif().get(ORIENTATION, 1))
    except Exception:  # EXIF that PIL cannot parse (ImageNet has such files): shown as stored
        return 1


def _some(items: Sequence[str]) -> str:
    return ", ".join(items[:5]) + (" …" if len(items) > 5 else "")
