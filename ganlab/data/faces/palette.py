"""Colour palettes and colour ramps of the procedural faces (RGB in [0, 1])."""

from __future__ import annotations

import numpy as np

# --- palettes (linear-ish RGB in [0, 1]) -----------------------------------------
_SKIN_PALETTE = np.array(
    [
        [0.99, 0.90, 0.84],  # pale
        [0.96, 0.80, 0.69],
        [0.88, 0.68, 0.54],
        [0.76, 0.56, 0.40],
        [0.60, 0.42, 0.29],
        [0.42, 0.28, 0.19],  # deep
    ],
    dtype=np.float32,
)
_HAIR_PALETTE = np.array(
    [
        [0.09, 0.08, 0.08],  # black
        [0.36, 0.23, 0.13],  # brown
        [0.88, 0.74, 0.44],  # blond
        [0.72, 0.72, 0.72],  # gray
        [0.58, 0.24, 0.12],  # red / auburn (unlabelled)
    ],
    dtype=np.float32,
)
_IRIS_PALETTE = np.array(
    [
        [0.30, 0.18, 0.08],  # brown
        [0.16, 0.10, 0.06],  # dark brown
        [0.25, 0.45, 0.75],  # blue
        [0.30, 0.50, 0.30],  # green
        [0.50, 0.40, 0.20],  # hazel
        [0.45, 0.52, 0.58],  # gray
    ],
    dtype=np.float32,
)
_FRAME_PALETTE = np.array(
    [[0.05, 0.05, 0.05], [0.30, 0.18, 0.10], [0.55, 0.55, 0.58], [0.70, 0.55, 0.20]],
    dtype=np.float32,
)


def _palette(palette: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Piecewise-linear colour ramp through ``palette`` rows at positions t in [0, 1]."""
    pos = np.clip(t, 0.0, 1.0) * (len(palette) - 1)
    i0 = np.minimum(pos.astype(int), len(palette) - 2)
    w = (pos - i0)[:, None].astype(np.float32)
    return palette[i0] * (1 - w) + palette[i0 + 1] * w


def _random_colour(u3: np.ndarray, lo: float, hi: float, grey_mix: float) -> np.ndarray:
    rgb = lo + (hi - lo) * u3.astype(np.float32)
    return rgb * (1 - grey_mix) + rgb.mean(axis=1, keepdims=True) * grey_mix


def _u3(u) -> np.ndarray:
    return np.stack([u(), u(), u()], axis=1).astype(np.float32)


def _pick(palette: np.ndarray, u: np.ndarray) -> np.ndarray:
    return palette[np.minimum((u * len(palette)).astype(int), len(palette) - 1)]
