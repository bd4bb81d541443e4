"""Rendering: per-face coordinate grids, the layers composited back to front, uint8 output."""

from __future__ import annotations

import numpy as np

from ganlab.data.faces.attributes import ATTRIBUTE_NAMES
from ganlab.data.faces.layers import _LAYERS, _draw_background
from ganlab.data.faces.params import FaceParams, _sample_params
from ganlab.data.faces.shapes import _c, _Canvas


def _render_chunk(p: FaceParams, resolution: int) -> np.ndarray:
    n, r = len(p.tx), resolution
    grid = ((np.arange(r, dtype=np.float32) + 0.5) * (2.0 / r) - 1.0).astype(np.float32)
    u, v = grid[None, None, :], grid[None, :, None]
    cos, sin, s = _c(np.cos(p.rot)), _c(np.sin(p.rot)), _c(p.scale)
    du, dv = u - _c(p.tx), v - _c(p.ty)
    x = ((cos * du + sin * dv) / s).astype(np.float32)
    y = ((cos * dv - sin * du) / s).astype(np.float32)
    pw = ((2.0 / r) / s).astype(np.float32)
    img = np.empty((n, 3, r, r), dtype=np.float32)
    canvas = _Canvas(img, x, y, pw, p, grid, grid, r)
    _draw_background(canvas)
    for layer in _LAYERS:
        layer(canvas)
    img *= (1.0 - 0.08 * (u * u + v * v))[:, None]  # soft vignette
    np.clip(img * 255.0 + 0.5, 0.0, 255.0, out=img)
    return img.astype(np.uint8)


def _chunk_size(resolution: int) -> int:
    return max(1, (1 << 18) // (resolution * resolution))


def sample_attributes(n: int, seed: int = 0, start: int = 0) -> np.ndarray:
    """Attributes of faces ``start .. start+n-1`` without rendering, (n, K) int8."""
    _check(n, 16, seed, start)
    return _sample_params(seed, np.arange(start, start + n)).attributes


def _check(n: int, resolution: int, seed: int, start: int) -> None:
    if n < 0 or start < 0 or seed < 0:
        raise ValueError(f"n, seed and start must be non-negative, got {n=}, {seed=}, {start=}")
    if resolution < 16:
        raise ValueError(f"resolution must be >= 16, got {resolution}")


def render_faces(
    n: int, resolution: int = 64, seed: int = 0, start: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Render faces ``start .. start+n-1`` of the data set defined by ``seed``.

    Returns ``(images, attributes)``: images uint8 (n, 3, resolution, resolution),
    channel-first RGB; attributes int8 (n, len(ATTRIBUTE_NAMES)) with values 0/1.
    Face ``i`` depends only on ``(seed, start + i)``, so any split of a range into
    calls yields the same arrays.
    """
    _check(n, resolution, seed, start)
    images = np.empty((n, 3, resolution, resolution), dtype=np.uint8)
    attributes = np.empty((n, len(ATTRIBUTE_NAMES)), dtype=np.int8)
    step = _chunk_size(resolution)
    for lo in range(0, n, step):
        hi = min(n, lo + step)
        params = _sample_params(seed, np.arange(start + lo, start + hi))
        images[lo:hi] = _render_chunk(params, resolution)
        attributes[lo:hi] = params.attributes
    return images, attributes
