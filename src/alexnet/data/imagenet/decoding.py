"""Decoding image files to uint8 RGB tensors: on the CPU (libjpeg-turbo through simplejpeg, PIL for
the rest) or, for a batch, on the trainer's device (TorchCodec's ``decode_jpeg``: nvJPEG on a GPU;
torchvision 0.29 deprecates its own ``decode_jpeg`` in its favour), on the CPU where it cannot.

Both fit an image the paper's way (§2): its shorter side resized, or its central square, in one
resampling.
"""

import io
import logging
import os
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import simplejpeg
import torch
import torch.nn.functional as F
from PIL import Image, UnidentifiedImageError
from torchvision.transforms.v2 import functional as TF

log = logging.getLogger(__name__)


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


def device_decodable(data: bytes) -> bool:
    """A baseline or progressive JPEG in YCbCr or grey, which TorchCodec decodes on a GPU (nvJPEG) as
    on a CPU; CMYK and YCCK JPEGs and other formats are decoded by the loader."""
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
        decoded = dict(zip(encoded, decode_jpegs([images[i] for i in encoded], device)))
    out = [
        transform(fit(decoded[i], shorter_side, square) if i in decoded else image.to(device))
        for i, image in enumerate(images)
    ]
    return torch.stack(out)


_fallback_reason: str | None = None


def decode_jpegs(data: list[torch.Tensor], device: torch.device) -> list[torch.Tensor]:
    """JPEGs (1-D uint8 tensors) -> uint8 RGB ``3×H×W`` on ``device``: one batched TorchCodec call
    (nvJPEG on a GPU). Where TorchCodec cannot (not installed, no nvJPEG, a build that does not match
    torch), the CPU decodes them (simplejpeg) and the batch is copied to ``device``; said once."""
    global _fallback_reason
    if _fallback_reason is None:
        try:
            from torchcodec.decoders import decode_jpeg

            return decode_jpeg(data, mode="RGB", device=device)
        except (ImportError, OSError, RuntimeError) as err:
            _fallback_reason = f"{type(err).__name__}: {err}"
            log.warning("TorchCodec cannot decode JPEGs on %s (%s); decoding them on the CPU", device, _fallback_reason)
    return [_decode_jpeg(t.numpy().tobytes(), None).to(device) for t in data]


def encode_square(
    sample: tuple[Path, int, str], side: int, quality: int, failures: Path | None = None
) -> dict[str, Any] | None:
    """One image file -> ``{"image", "label", "name"}``, the image being its central square at
    ``side``×``side``, JPEG-encoded once (§2, the shard writer's work); None for a file that cannot
    be decoded, which is recorded with the reason as a line ``<path>\t<reason>`` in
    ``<failures>/<pid>.tsv`` (one file per worker process, so no two write one file). (Here, not
    in :mod:`.shards`: the writer's worker processes import only this.)"""
    path, label, name = sample
    if torch.get_num_threads() != 1:
        torch.set_num_threads(1)  # a forked worker: one thread each (as DataLoader workers), no OpenMP pool
    try:
        image = decode(path, side, square=True)
    except (OSError, UnidentifiedImageError, ValueError) as err:
        if failures is not None:
            failures.mkdir(parents=True, exist_ok=True)
            reason = " ".join(f"unreadable: {err}".split())  # one line, no tabs
            with open(failures / f"{os.getpid()}.tsv", "a") as f:
                f.write(f"{path}\t{reason}\n")
        return None
    pixels = np.ascontiguousarray(image.permute(1, 2, 0).numpy())
    # 4:2:0, as most of ImageNet's own JPEGs: against 4:4:4, 22% fewer bytes and a third less decoding
    # time, for 0.6 more grey level of mean error (bench/README.md's quality table)
    data = simplejpeg.encode_jpeg(pixels, quality=quality, colorspace="RGB", colorsubsampling="420")
    return {"image": data, "label": label, "name": name}
