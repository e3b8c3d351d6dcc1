"""Bad image files (unreadable, or JPEGs cut short), found before training from headers and end
markers, and cached until any file changes."""

import hashlib
import json
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from PIL import Image, UnidentifiedImageError

from alexnet.files import write_atomically


def image_problem(path: Path) -> str | None:
    """Why ``path`` cannot be an image (an unreadable header, a JPEG cut short: no end-of-image
    marker), or None. Reads the header and the last bytes, not the pixels."""
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


def find_bad_images(paths: Sequence[Path], workers: int = 8) -> list[tuple[Path, str]]:
    """Files that cannot be images (:func:`image_problem`), with the reason.

    Reads each file's header and last bytes, not its pixels, so a scan of ImageNet takes minutes,
    not an epoch.
    """
    with ThreadPoolExecutor(max_workers=workers) as pool:
        reasons = list(pool.map(image_problem, paths, chunksize=256))
    return [(p, r) for p, r in zip(paths, reasons) if r is not None]


def files_digest(paths: list[Path]) -> str:
    """A digest of each file's path, size and modification time: it changes when any file is
    added, removed, replaced or written in place (the scan cache's key)."""
    digest = hashlib.sha256()
    for path in paths:
        stat = path.stat()
        digest.update(f"{path}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()


def find_bad_images_cached(paths: list[Path], cache: Path, workers: int = 8) -> list[tuple[Path, str]]:
    """:func:`find_bad_images`, remembered in ``cache`` (a JSON file) until any file is added,
    removed or changed (:func:`files_digest`). A read-only dataset is scanned again each time.

    Every rank of a DDP run scans in ``setup`` at once: the cache is written whole (a rename), and
    one that cannot be read is a miss."""
    key = {"files": len(paths), "digest": files_digest(paths)}
    try:
        cached = json.loads(cache.read_text())
    except (OSError, ValueError):  # none yet, unreadable, or written by a tool that did not rename
        cached = None
    if isinstance(cached, dict) and cached.get("key") == key:
        return [(Path(p), r) for p, r in cached["bad"]]
    bad = find_bad_images(paths, workers=workers)
    try:
        write_atomically(cache, json.dumps({"key": key, "bad": [(str(p), r) for p, r in bad]}))
    except OSError:
        pass  # a read-only dataset
    return bad
