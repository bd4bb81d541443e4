"""Signed distances, anti-aliased compositing and the canvases (crops, face subsets) layers draw on."""

from __future__ import annotations

import dataclasses

import numpy as np

from ganlab.data.faces.params import FaceParams


# --- signed distances and compositing ------------------------------------------------
def _c(v: np.ndarray) -> np.ndarray:
    """Per-face scalar -> (n, 1, 1) for broadcasting against (n, H, W) grids."""
    return v[:, None, None]


def _ellipse(x: np.ndarray, y: np.ndarray, a, b) -> np.ndarray:
    """Signed distance to an axis-aligned ellipse, first-order (exact for circles)."""
    xa, yb = x / a, y / b
    q = np.sqrt(xa * xa + yb * yb)
    ga, gb = xa / a, yb / b
    g = np.sqrt(ga * ga + gb * gb) + 1e-6
    return (q - 1.0) * q / g


def _circle(x: np.ndarray, y: np.ndarray, r) -> np.ndarray:
    return np.sqrt(x * x + y * y) - r


def _box(x: np.ndarray, y: np.ndarray, hx, hy, radius=0.0) -> np.ndarray:
    """Signed distance to a (rounded) box centred at the origin with half-sizes hx, hy."""
    dx = np.abs(x) - (hx - radius)
    dy = np.abs(y) - (hy - radius)
    ox, oy = np.maximum(dx, 0), np.maximum(dy, 0)
    return np.sqrt(ox * ox + oy * oy) + np.minimum(np.maximum(dx, dy), 0) - radius


def _cover(d: np.ndarray, pw) -> np.ndarray:
    """Coverage from signed distance: linear ramp one pixel (``pw``) wide."""
    a = 0.5 - d / pw
    np.clip(a, 0.0, 1.0, out=a)
    return a


def _over(img: np.ndarray, alpha: np.ndarray, colour: np.ndarray) -> None:
    """In place: ``img = img * (1 - alpha) + colour * alpha``.

    img (n, 3, H, W); alpha (n, H, W); colour (n, 3) or (n, 3, H, W).
    """
    if colour.ndim == 2:
        colour = colour[:, :, None, None]
    delta = colour - img
    delta *= alpha[:, None]
    img += delta


# --- canvases: crops and face subsets of a chunk --------------------------------------
@dataclasses.dataclass
class _Canvas:
    """Pixels being drawn plus their face-local coordinates (x right, y down).

    ``img`` is a view of the chunk (crops) or a copy (face subsets, see
    :func:`_subset`). ``u``/``v`` are the image-space centres of its columns/rows.
    """

    img: np.ndarray  # (n, 3, h, w) float32
    x: np.ndarray  # (n, h, w)
    y: np.ndarray  # (n, h, w)
    pw: np.ndarray  # (n, 1, 1): one pixel in face-local units
    p: FaceParams
    u: np.ndarray  # (w,)
    v: np.ndarray  # (h,)
    res: int  # resolution of the full image


_CROP = True  # draw local features only inside their bounding windows (speed)


def _crop(cv: _Canvas, hx, y0, y1, pad: float = 1.5) -> _Canvas | None:
    """Sub-canvas covering the face-local rectangles ``|x| <= hx, y0 <= y <= y1``
    of every face (plus ``pad`` pixels), or None when it is off-image."""
    if not _CROP:
        return cv
    p = cv.p
    cos, sin, s = np.cos(p.rot)[:, None], np.sin(p.rot)[:, None], p.scale[:, None]
    hx, y0, y1 = (np.broadcast_to(v, p.rot.shape)[:, None] for v in (hx, y0, y1))
    xs = np.concatenate([-hx, hx, -hx, hx], axis=1)
    ys = np.concatenate([y0, y0, y1, y1], axis=1)
    us = p.tx[:, None] + s * (cos * xs - sin * ys)
    vs = p.ty[:, None] + s * (sin * xs + cos * ys)
    margin = pad * 2.0 / cv.res
    cols = slice(*np.searchsorted(cv.u, [us.min() - margin, us.max() + margin]))
    rows = slice(*np.searchsorted(cv.v, [vs.min() - margin, vs.max() + margin]))
    if cols.start >= cols.stop or rows.start >= rows.stop:
        return None
    return _Canvas(
        cv.img[:, :, rows, cols], cv.x[:, rows, cols], cv.y[:, rows, cols], cv.pw, p,
        cv.u[cols], cv.v[rows], cv.res,
    )  # fmt: skip


def _subset(cv: _Canvas | None, mask: np.ndarray) -> tuple[_Canvas | None, np.ndarray]:
    """Copy of the canvas restricted to faces where ``mask`` holds (write back with
    :func:`_commit`)."""
    idx = np.nonzero(mask)[0]
    if cv is None or len(idx) == 0:
        return None, idx
    sub = _Canvas(
        cv.img[idx], cv.x[idx], cv.y[idx], cv.pw[idx], cv.p.take(idx), cv.u, cv.v, cv.res
    )
    return sub, idx


def _commit(cv: _Canvas, sub: _Canvas, idx: np.ndarray) -> None:
    cv.img[idx] = sub.img
