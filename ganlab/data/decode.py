"""Turn one image (a file or an array) into a uint8 ``(C, H, W)`` array.

Pipeline for a file: open with PIL -> honour EXIF orientation -> normalise the mode to
``RGB`` or ``L`` -> centre-crop a square -> resize to ``resolution`` (one PIL call,
``reducing_gap=None``, so bilinear/box/Lanczos are properly antialiased when shrinking).

Mode conversions (documented behaviour):

* ``P`` (palette) -> RGB; a palette with a transparent index is treated like RGBA.
* ``RGBA``, ``LA``, ``PA`` (alpha) -> composited onto a **white** background, then RGB/L.
* ``CMYK``, ``YCbCr``, ``LAB``, ``HSV`` -> RGB through PIL's converters.
* ``I;16*`` and ``I`` (16-bit) -> 8-bit by ``round(v * 255 / 65535)``; ``F`` is clipped.
* ``1`` (bilevel) -> L.  ``channels=1`` uses PIL's ITU-R 601-2 luma, ``channels=3`` repeats L.

Without ``crop`` the largest centred square is used (no aspect distortion). ``crop`` is a
side in pixels (``int``) or a fraction of the shorter side (``float`` in ``(0, 1]``), clamped
to the image. Unreadable files raise :class:`DecodeError` with a short reason; callers skip
and count them.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import asdict, dataclass

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

__all__ = [
    "RESIZE_FILTERS",
    "ImageOptions",
    "DecodeError",
    "decode_file",
    "decode_files",
    "transform_image",
    "transform_array",
]

# decoding a W x H image needs about 4*W*H bytes per worker: larger images are skipped with a
# reason (64 Mpx: 256 MB per worker), so a hostile or odd file cannot exhaust memory
MAX_DECODE_PIXELS = 1 << 26

RESIZE_FILTERS = {
    "bilinear": Image.Resampling.BILINEAR,
    "lanczos": Image.Resampling.LANCZOS,
    "box": Image.Resampling.BOX,
    "bicubic": Image.Resampling.BICUBIC,
    "nearest": Image.Resampling.NEAREST,
}

_SIXTEEN_BIT = ("I;16", "I;16L", "I;16B", "I;16N", "I")
_ALPHA = ("RGBA", "LA", "PA", "RGBa", "La")



@dataclass(frozen=True)
class ImageOptions:
    """What every cached image is turned into; part of the cache key."""

    resolution: int = 64
    channels: int = 3
    crop: int | float | None = None
    resize_filter: str = "bilinear"

    def __post_init__(self) -> None:
        if isinstance(self.resolution, bool) or not isinstance(self.resolution, (int, np.integer)):
            raise ValueError(f"resolution must be an int, got {self.resolution!r}")
        if not 4 <= int(self.resolution) <= 4096:
            raise ValueError(f"resolution must be in [4, 4096], got {self.resolution}")
        if self.channels not in (1, 3):
            raise ValueError(f"channels must be 1 (grayscale) or 3 (RGB), got {self.channels!r}")
        if self.resize_filter not in RESIZE_FILTERS:
            raise ValueError(f"resize_filter must be one of {sorted(RESIZE_FILTERS)}, got {self.resize_filter!r}")
        crop = self.crop
        if crop is not None:
            if isinstance(crop, bool) or not isinstance(crop, (int, float, np.integer, np.floating)):
                raise ValueError(f"crop must be None, pixels (int) or a fraction (float), got {crop!r}")
            if isinstance(crop, (float, np.floating)) and not 0.0 < crop <= 1.0:
                raise ValueError(f"a fractional crop must be in (0, 1], got {crop}")
            if isinstance(crop, (int, np.integer)) and crop < 1:
                raise ValueError(f"crop in pixels must be >= 1, got {crop}")

    def as_dict(self) -> dict:
        d = asdict(self)
        d["resolution"] = int(d["resolution"])
        return d


class DecodeError(Exception):
    """A file that cannot be turned into an image; ``reason`` is a short, stable text."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


# -- modes ------------------------------------------------------------------------------
def _sixteen_to_l(img: Image.Image) -> Image.Image:
    a = np.asarray(img).astype(np.int64)
    a = (np.clip(a, 0, 65535) * 255 + 32767) // 65535
    return Image.fromarray(a.astype(np.uint8), "L")


def _float_to_l(img: Image.Image) -> Image.Image:
    a = np.asarray(img, dtype=np.float64)
    return Image.fromarray(np.clip(np.rint(a), 0, 255).astype(np.uint8), "L")


def _on_white(img: Image.Image) -> Image.Image:
    rgba = img.convert("RGBA")
    white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
    return Image.alpha_composite(white, rgba).convert("RGB")


def normalise_mode(img: Image.Image, channels: int) -> Image.Image:
    """Return ``img`` as mode ``L`` (channels=1) or ``RGB`` (channels=3); see module doc."""
    if img.mode in _SIXTEEN_BIT:
        img = _sixteen_to_l(img)
    elif img.mode == "F":
        img = _float_to_l(img)
    elif img.mode == "P":
        img = img.convert("RGBA") if "transparency" in img.info else img.convert("RGB")
    elif img.mode == "1":
        img = img.convert("L")
    if img.mode in _ALPHA:
        img = _on_white(img)
    target = "L" if channels == 1 else "RGB"
    return img if img.mode == target else img.convert(target)


# -- geometry -----------------------------------------------------------------------------
def crop_box(width: int, height: int, crop: int | float | None) -> tuple[int, int, int, int]:
    """The centred square ``(left, top, right, bottom)`` that ``crop`` selects."""
    short = min(width, height)
    if crop is None:
        side = short
    elif isinstance(crop, (float, np.floating)):
        side = max(1, int(round(float(crop) * short)))
    else:
        side = min(int(crop), short)
    left = int(round((width - side) / 2.0))
    top = int(round((height - side) / 2.0))
    return left, top, left + side, top + side


def transform_image(img: Image.Image, opts: ImageOptions) -> np.ndarray:
    """Mode-normalise, crop and resize a PIL image; return uint8 ``(C, R, R)``."""
    img = normalise_mode(img, opts.channels)
    box = crop_box(img.width, img.height, opts.crop)
    r = int(opts.resolution)
    if box != (0, 0, r, r) or img.size != (r, r):
        img = img.resize((r, r), RESIZE_FILTERS[opts.resize_filter], box=box, reducing_gap=None)
    a = np.asarray(img, dtype=np.uint8)
    return a[None] if a.ndim == 2 else np.ascontiguousarray(a.transpose(2, 0, 1))


def transform_array(batch: np.ndarray, opts: ImageOptions) -> np.ndarray:
    """Apply :func:`transform_image` to a uint8 ``(N, C, H, W)`` batch (C in 1, 3).

    Arrays already at the target size, uncropped, skip PIL; grayscale -> RGB repeats the plane.
    """
    n, c, h, w = batch.shape
    r = int(opts.resolution)
    untouched = (h, w) == (r, r) and crop_box(w, h, opts.crop) == (0, 0, w, h)
    if untouched and c == opts.channels:
        return np.ascontiguousarray(batch, dtype=np.uint8)
    if untouched and c == 1:
        return np.ascontiguousarray(np.repeat(batch, 3, axis=1), dtype=np.uint8)
    out = np.empty((n, opts.channels, r, r), dtype=np.uint8)
    for i in range(n):
        hwc = batch[i, 0] if c == 1 else batch[i].transpose(1, 2, 0)
        out[i] = transform_image(Image.fromarray(np.ascontiguousarray(hwc)), opts)
    return out


# -- files ----------------------------------------------------------------------------------
def _open_and_transform(path: str, opts: ImageOptions) -> np.ndarray:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # e.g. "Palette images with Transparency" chatter
        with Image.open(path) as img:
            w, h = img.size  # known from the header: refuse before decoding any pixel
            if w * h > MAX_DECODE_PIXELS:
                raise DecodeError(f"too large to decode safely: {w}x{h} pixels > {MAX_DECODE_PIXELS:,} "
                                  "(ganlab.data.decode.MAX_DECODE_PIXELS)")
            img.load()
            img = ImageOps.exif_transpose(img)
            return transform_image(img, opts)


def decode_file(path: str | os.PathLike, opts: ImageOptions) -> np.ndarray:
    """Decode one file to uint8 ``(C, R, R)``; raise :class:`DecodeError` with a reason."""
    path = os.fspath(path)
    try:
        size = os.path.getsize(path)
    except OSError as e:
        raise DecodeError(f"unreadable: {e.strerror or e}") from None
    if size == 0:
        raise DecodeError("empty file: 0 bytes")
    try:
        return _open_and_transform(path, opts)
    except UnidentifiedImageError:
        raise DecodeError("not an image: format not recognised") from None
    except Image.DecompressionBombError as e:
        raise DecodeError(f"too large: {e}") from None
    except (OSError, SyntaxError, ValueError, EOFError, IndexError, TypeError, MemoryError) as e:
        raise DecodeError(f"corrupt or truncated: {e}") from None


@dataclass
class ChunkResult:
    """What a build worker returns for one chunk of items, in item order."""

    start: int  # index of the chunk's first item in the whole job list
    images: np.ndarray  # uint8 (k, C, R, R): the items that succeeded, in order
    ok: np.ndarray  # bool (n_items_in_chunk,)
    reasons: dict  # local item index -> reason, for the failures
    extras: dict  # name -> array (k, ...) aligned with ``images``


def decode_files(job: tuple[int, list[str], ImageOptions]) -> ChunkResult:
    """Build worker: decode a chunk of files (``(start, paths, options)``)."""
    start, paths, opts = job
    r, c = int(opts.resolution), opts.channels
    out = np.empty((len(paths), c, r, r), dtype=np.uint8)
    ok = np.zeros(len(paths), dtype=bool)
    reasons: dict[int, str] = {}
    for i, p in enumerate(paths):
        try:
            out[i] = decode_file(p, opts)
            ok[i] = True
        except DecodeError as e:
            reasons[i] = e.reason
    return ChunkResult(start, out[ok], ok, reasons, {})
