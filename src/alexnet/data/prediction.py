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


def find_images(patterns: Sequence[str]) -> list[Path]:
    """The image files that ``patterns`` name, in order, each once: files as given (whatever their
    suffix), folders searched recursively for images (by suffix), glob patterns (``**`` included)
    expanded. A pattern that matches nothing is an error naming it."""
    found: dict[Path, None] = {}
    for pattern in patterns:
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
    ``smallest_side`` (what the network looks at) is predicted with a warning: it is upsampled."""
    readable, skipped, small = [], [], []
    for index, path in enumerate(files):
        problem = image_problem(path)
        if problem is not None:
            skipped.append((path, problem))
            continue
        with Image.open(path) as image:
            width, height = image.size
        if 2 * min(width, height) < smallest_side:
            small.append(f"{path} ({width}×{height})")
        readable.append((index, path))
    if small:
        log.warning(
            "%d image(s) far smaller than the network's %d-pixel view, upsampled to it (predictions on them "
            "mean little): %s",
            len(small),
            smallest_side,
            ", ".join(small[:5]) + (" …" if len(small) > 5 else ""),
        )
    return readable, skipped
