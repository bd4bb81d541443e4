"""Re-encoding of study images so that nothing but the pixels tells real from generated.

Every image, real or fake, goes through the same steps: decode with Pillow, convert to RGB,
centre-crop to a square, resize to the study resolution (Lanczos), build a *fresh* image from the
pixel array (no EXIF, ICC, text chunks or other metadata survive), and encode it as PNG with fixed
settings. With ``compress_level=0`` (the default, ``encoding: png_stored``) the deflate stream is
stored, so every file of a study has exactly the same byte size: neither format, resolution,
compression ratio nor file size can give the answer away.
"""

from __future__ import annotations

import hashlib
import io
import os
from dataclasses import dataclass

import numpy as np
from PIL import Image, UnidentifiedImageError

from ganlab.utils.files import IMAGE_EXTENSIONS, is_image_name

ENCODINGS = {"png_stored": 0, "png": 9}  # name -> PNG compress_level


class ImageSetError(ValueError):
    """A folder of images that cannot be used in a study."""


@dataclass(frozen=True)
class Encoded:
    name: str  # file name relative to its folder (kept for the report, never sent to the page)
    data: bytes
    sha256: str


def list_images(folder: str) -> list[str]:
    """Image files directly in ``folder`` or below it, sorted, relative to ``folder``."""
    if not os.path.isdir(folder):
        raise ImageSetError(f"{folder}: not a folder (expected a folder of .png/.jpg/.webp images)")
    found = []
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for f in filenames:
            if is_image_name(f) and not f.startswith("."):
                found.append(os.path.relpath(os.path.join(dirpath, f), folder))
    if not found:
        raise ImageSetError(f"{folder}: no images found (expected files ending in {', '.join(sorted(IMAGE_EXTENSIONS))})")
    return sorted(found)


def image_size(path: str) -> tuple[int, int]:
    try:
        with Image.open(path) as im:
            return im.size
    except (UnidentifiedImageError, OSError) as err:
        raise ImageSetError(f"{path}: not a readable image ({err})") from None


def square_pixels(path: str, resolution: int) -> np.ndarray:
    """``(resolution, resolution, 3)`` uint8 pixels: RGB, centre-cropped to a square, Lanczos-resized."""
    try:
        with Image.open(path) as im:
            im = im.convert("RGB")
    except (UnidentifiedImageError, OSError) as err:
        raise ImageSetError(f"{path}: not a readable image ({err})") from None
    w, h = im.size
    s = min(w, h)
    left, top = (w - s) // 2, (h - s) // 2
    im = im.crop((left, top, left + s, top + s))
    if s != resolution:
        im = im.resize((resolution, resolution), Image.Resampling.LANCZOS)
    return np.asarray(im, dtype=np.uint8)


def encode_pixels(pixels: np.ndarray, encoding: str = "png_stored") -> bytes:
    """PNG bytes of ``pixels`` from a fresh image (no metadata), with the study's fixed settings."""
    if encoding not in ENCODINGS:
        raise ImageSetError(f"encoding must be one of {', '.join(ENCODINGS)}, got {encoding!r}")
    buf = io.BytesIO()
    fresh = Image.fromarray(np.ascontiguousarray(pixels, dtype=np.uint8), mode="RGB")
    fresh.save(buf, format="PNG", compress_level=ENCODINGS[encoding], optimize=False)
    return buf.getvalue()


def encode_folder(folder: str, resolution: int, encoding: str = "png_stored") -> list[Encoded]:
    out = []
    for name in list_images(folder):
        data = encode_pixels(square_pixels(os.path.join(folder, name), resolution), encoding)
        out.append(Encoded(name, data, hashlib.sha256(data).hexdigest()))
    return out
