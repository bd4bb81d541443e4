"""The one place that decides what a GAN is asked to draw: noise, labels, interpolations.

Everything ganlab generates goes through here: the sample grids and the latent / class
interpolations (``ganlab.callbacks.sample_grid``), the per-class grids of
``ganlab.callbacks.logger_extras``, the fakes of every evaluation (``ganlab.metrics.fakes``,
used by the metrics callback and ``ganlab.evaluate``), ``ganlab.generate`` and its sample
selection (``ganlab.selection``), and the notebook API (``ganlab.api``).

Noise: image ``i`` of a plan with seed ``s`` gets ``z_i = randn(z_dim)`` from a CPU
``torch.Generator`` seeded by ``numpy.random.SeedSequence([s, i])`` (:func:`latent`), so z depends on
``(s, i)`` alone: the first ``n`` images of a plan of ``n + m`` are the same images, and batch size or
device never change a z (it is drawn on the CPU, then moved). Hence image ``i`` of
``python -m ganlab.generate seed=s`` is sample ``i`` of an evaluation with ``seed=s`` and tile ``i``
of an unconditional sample grid with ``seed=s`` (tile ``(row r, column c)`` of a per-class grid is
latent ``c`` with class ``r``, i.e. image ``c`` of ``generate seed=s classes=[r]``).

Label plans (which labels a grid or an evaluation draws; the tensors themselves are built by
:mod:`ganlab.labels`): per-class rows (:func:`class_rows`), and for evaluations labels drawn per image
from ``(s, i)`` too (:func:`evaluation_labels`: uniform over the classes, or following the data's
label frequencies). The truncation trick: :func:`truncation_threshold`.
Class interpolation: :func:`interpolation_labels` with :func:`soft_class_labels`; latent
interpolation: :func:`latent_interpolation` (``lerp`` or ``slerp``) and :func:`latent_walk`
(a closed loop through a few latents, written as a GIF by :func:`write_gif`).
"""

from __future__ import annotations

import contextlib
import math
from pathlib import Path
from typing import Iterable, Iterator, Sequence

import numpy as np
import torch
from torch import nn

from ganlab.labels import CLASS, MULTI_HOT

NOISE_SCHEME = "z_i = torch.randn(z_dim) from a torch.Generator seeded by numpy SeedSequence([seed, i])"
LABEL_STREAM = 2  # evaluation labels of image i come from SeedSequence([seed, i, LABEL_STREAM])
INTERPOLATIONS = ("lerp", "slerp")


# -- noise -------------------------------------------------------------------------------------------------
def stream(seed: int, index: int, *extra: int) -> torch.Generator:
    """The CPU random stream of image ``index`` of plan ``seed`` (``extra`` picks a side stream)."""
    state = np.random.SeedSequence([int(seed), int(index), *map(int, extra)]).generate_state(2, dtype=np.uint32)
    return torch.Generator().manual_seed(int(state[0]) << 32 | int(state[1]))


def truncation_threshold(psi: float) -> float:
    """``Phi^-1((1 + psi) / 2)``: the half-width of N(0, 1)'s central mass ``psi`` (``inf`` at 1).

    The truncation trick (Brock et al. 2019, BigGAN; ``generate truncation=psi``, ``ganlab.load(...)
    .sample(truncation=psi)``) is defined here by the probability mass kept: :func:`latent` redraws every
    component of ``z ~ N(0, 1)`` whose magnitude exceeds ``t = Phi^-1((1 + psi) / 2)`` (the two-sided
    ``psi`` quantile of N(0, 1)) from the same image's random stream until it lies in ``[-t, t]``. So
    each component follows N(0, 1) truncated to the central mass ``psi``: ``psi = 1`` is the identity
    (``t = inf``, nothing is redrawn, the exact same z as without truncation), ``psi = 0.5`` keeps
    ``|z_j| <= 0.674``, ``psi = 0.9`` keeps ``|z_j| <= 1.645``; components already inside ``[-t, t]``
    are unchanged. Smaller psi: higher fidelity, less variety. ``0 < psi <= 1``."""
    if not 0.0 < psi <= 1.0:
        raise ValueError(f"truncation must be in (0, 1], got {psi!r}")
    if psi >= 1.0:
        return math.inf
    return float(torch.special.ndtri(torch.tensor((1.0 + psi) / 2.0, dtype=torch.float64)))


def latent(seed: int, index: int, z_dim: int, psi: float = 1.0) -> torch.Tensor:
    """``z`` of image ``index``: ``randn(z_dim)`` from :func:`stream`; for ``psi < 1`` the components
    beyond :func:`truncation_threshold` are redrawn from the same stream (the truncation trick)."""
    g = stream(seed, index)
    z = torch.randn(int(z_dim), generator=g)
    t = truncation_threshold(psi)
    if t < math.inf:
        out = z.abs() > t
        while out.any():
            z[out] = torch.randn(int(out.sum()), generator=g)
            out = z.abs() > t
    return z


def latents(seed: int, indices: Iterable[int] | int, z_dim: int, psi: float = 1.0) -> torch.Tensor:
    """``(n, z_dim)`` CPU noise of the given image indices (an int ``n``: indices ``0 .. n-1``)."""
    idx = range(int(indices)) if isinstance(indices, (int, np.integer)) else indices
    rows = [latent(seed, i, z_dim, psi) for i in idx]
    return torch.stack(rows) if rows else torch.empty(0, int(z_dim))


def _uniforms(seed: int, index: int, k: int = 1) -> np.ndarray:
    """``k`` uniforms in [0, 1) of image ``index`` from its label stream (numpy, no torch Generator)."""
    state = np.random.SeedSequence([int(seed), int(index), LABEL_STREAM]).generate_state(k, dtype=np.uint64)
    return (state >> np.uint64(11)).astype(np.float64) / float(1 << 53)


# -- labels ------------------------------------------------------------------------------------------------
def class_rows(num_classes: int, label_kind: str | None, per_row: int, max_rows: int = 10) -> torch.Tensor:
    """Labels of a per-class grid: row r is class r (class labels) or one-hot attribute r (multi-hot;
    row 0 of a multi-hot grid is 'no attribute'); each row repeated ``per_row`` times."""
    if label_kind == MULTI_HOT:
        rows = torch.zeros(min(num_classes + 1, max_rows), num_classes)
        for r in range(1, rows.shape[0]):
            rows[r, r - 1] = 1.0
        return rows.repeat_interleave(per_row, dim=0)
    return torch.arange(min(num_classes, max_rows)).repeat_interleave(per_row)


def evaluation_labels(num_classes: int, label_kind: str | None, n: int, seed: int,
                      pool: Sequence | np.ndarray | None = None) -> torch.Tensor | None:
    """Labels of the fakes of an evaluation, image ``i``'s from ``(seed, i)`` alone. With ``pool`` (the
    real split's labels) image i takes row ``floor(u_i * len(pool))`` of it, so the fakes follow the
    data's label frequencies; without, classes are uniform and each attribute is on with p = 1/2.
    ``None`` for unconditional models."""
    k = int(num_classes or 0)
    if k <= 0:
        return None
    kind = label_kind or CLASS
    if pool is not None and len(pool) > 0:
        arr = np.asarray(pool)
        rows = arr[[min(int(_uniforms(seed, i)[0] * len(arr)), len(arr) - 1) for i in range(n)]]
    elif kind == CLASS:
        rows = np.array([min(int(_uniforms(seed, i)[0] * k), k - 1) for i in range(n)], dtype=np.int64)
    else:
        rows = np.stack([_uniforms(seed, i, k) < 0.5 for i in range(n)]) if n else np.zeros((0, k))
    t = torch.from_numpy(np.ascontiguousarray(rows).reshape((n,) if kind == CLASS else (n, k)))
    return t.long() if kind == CLASS else t.float()


# -- class interpolation (soft labels) ---------------------------------------------------------------------
@contextlib.contextmanager
def soft_class_labels(module: nn.Module) -> Iterator[None]:
    """Inside the block, every class-kind ``LabelEmbedding`` of ``module`` also accepts float
    ``(B, K)`` rows and returns ``rows @ embedding_table``: a one-hot row gives exactly the class's
    embedding, ``(1 - t) * onehot_a + t * onehot_b`` the linear interpolation of two embeddings
    (for ``cbn`` generators: of the per-layer scales and shifts). Integer labels work as before."""
    from ganlab.models.networks.conditioning import LabelEmbedding

    patched = []
    for m in module.modules():
        if isinstance(m, LabelEmbedding) and m.label_kind == CLASS:
            def forward(labels: torch.Tensor, _m: LabelEmbedding = m) -> torch.Tensor:
                if labels.is_floating_point() and labels.dim() == 2:
                    return labels.to(_m.embed.weight.dtype) @ _m.embed.weight
                return LabelEmbedding.forward(_m, labels)

            m.forward = forward  # instance attribute shadows the class method
            patched.append(m)
    try:
        yield
    finally:
        for m in patched:
            del m.forward


def interpolation_labels(num_classes: int, label_kind: str | None, steps: int,
                         max_rows: int = 10) -> tuple[torch.Tensor, list[tuple[str, str]]]:
    """Soft labels ``(rows * steps, K)`` for a class-interpolation grid and the (from, to) of each
    row as indices/strings. Class labels: row r goes from class r to class r+1 (wrapping);
    multi-hot: row r goes from "no attribute" to attribute r alone."""
    k = int(num_classes)
    t = torch.linspace(0.0, 1.0, steps)[:, None]
    rows, ends = [], []
    for r in range(min(k, max_rows)):
        a, b = torch.zeros(k), torch.zeros(k)
        if label_kind == MULTI_HOT:
            b[r] = 1.0
            ends.append(("none", str(r)))
        else:
            a[r], b[(r + 1) % k] = 1.0, 1.0
            ends.append((str(r), str((r + 1) % k)))
        rows.append((1 - t) * a + t * b)
    return torch.cat(rows), ends


# -- latent interpolation ----------------------------------------------------------------------------------
def lerp(a: torch.Tensor, b: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """``(1 - t) a + t b`` for each ``t`` (``(T,)``) -> ``(T, z_dim)``."""
    t = t.reshape(-1, 1).to(a.dtype)
    return (1 - t) * a + t * b


def slerp(a: torch.Tensor, b: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Spherical interpolation (Shoemake 1985; for GAN latents White 2016): along the great circle
    between the directions of ``a`` and ``b``, the norm interpolated linearly, so intermediate
    points keep the typical norm of Gaussian noise instead of shrinking towards 0 as ``lerp``'s do.
    Falls back to ``lerp`` for (anti)parallel vectors."""
    t = t.reshape(-1, 1).to(a.dtype)
    na, nb = a.norm(), b.norm()
    cos = torch.clamp(torch.dot(a / na, b / nb), -1.0, 1.0)
    omega = torch.arccos(cos)
    if float(torch.sin(omega).abs()) < 1e-6:
        return lerp(a, b, t)
    direction = (torch.sin((1 - t) * omega) * (a / na) + torch.sin(t * omega) * (b / nb)) / torch.sin(omega)
    return direction * ((1 - t) * na + t * nb)


def interpolate(a: torch.Tensor, b: torch.Tensor, steps: int, mode: str = "slerp") -> torch.Tensor:
    """``steps`` latents from ``a`` to ``b`` (both ends included, exactly)."""
    if mode not in INTERPOLATIONS:
        raise ValueError(f"interpolation must be one of {', '.join(INTERPOLATIONS)}, got {mode!r}")
    t = torch.linspace(0.0, 1.0, int(steps))
    out = (slerp if mode == "slerp" else lerp)(a, b, t)
    out[0], out[-1] = a, b  # the ends exactly (slerp's trigonometry is off in the last bits)
    return out


def latent_interpolation(seed: int, z_dim: int, rows: int, steps: int, mode: str = "slerp",
                         psi: float = 1.0) -> torch.Tensor:
    """``(rows * steps, z_dim)``: row r goes from latent ``2r`` to latent ``2r + 1`` of plan ``seed``
    (its two ends are images ``2r`` and ``2r + 1`` of ``generate seed=seed``)."""
    ends = latents(seed, range(2 * int(rows)), z_dim, psi)
    return torch.cat([interpolate(ends[2 * r], ends[2 * r + 1], steps, mode) for r in range(int(rows))])


def latent_walk(seed: int, z_dim: int, keys: int = 4, steps: int = 8, mode: str = "slerp",
                first: int = 0) -> torch.Tensor:
    """``(keys * steps, z_dim)``: a closed loop through latents ``first .. first + keys - 1`` of plan
    ``seed`` (``steps`` frames from each key to the next, the last key back to the first)."""
    z = latents(seed, range(int(first), int(first) + int(keys)), z_dim)
    legs = [interpolate(z[k], z[(k + 1) % len(z)], int(steps) + 1, mode)[:-1] for k in range(len(z))]
    return torch.cat(legs)


# -- rendering ---------------------------------------------------------------------------------------------
def model_device(model) -> torch.device:
    dev = getattr(model, "device", None)
    if dev is not None:
        return torch.device(dev)
    try:
        return next(model.parameters()).device
    except StopIteration:
        return torch.device("cpu")


@torch.no_grad()
def render(model, z: torch.Tensor, labels: torch.Tensor | None = None, *, batch_size: int = 256,
           ema: bool = True) -> torch.Tensor:
    """uint8 ``(n, C, H, W)`` CPU images of ``model.sample(z, labels)`` in batches on the model's
    device. Float ``(n, K)`` labels of a class-kind model are soft labels (class interpolation)."""
    from ganlab.utils.pixels import to_uint8

    dev = model_device(model)
    soft = (labels is not None and labels.is_floating_point() and labels.dim() == 2
            and getattr(model, "label_kind", None) == CLASS)
    out = []
    with soft_class_labels(model) if soft else contextlib.nullcontext():
        for s in range(0, len(z), int(batch_size)):
            zl = z[s : s + batch_size].to(dev)
            ll = None if labels is None else labels[s : s + batch_size].to(dev)
            out.append(to_uint8(model.sample(zl, ll, ema=ema)).cpu())
    return torch.cat(out) if out else torch.empty(0, dtype=torch.uint8)


def grid_image(images_uint8: torch.Tensor, nrow: int, padding: int = 2) -> torch.Tensor:
    """uint8 ``(C, H', W')`` grid of ``images_uint8`` (torchvision's ``make_grid``, black padding)."""
    from torchvision.utils import make_grid

    return make_grid(images_uint8, nrow=max(1, int(nrow)), padding=padding, pad_value=0)


def to_pil(image_uint8: torch.Tensor):
    """A ``(C, H, W)`` uint8 tensor as a PIL image (grayscale for one channel)."""
    from PIL import Image

    return Image.fromarray(image_uint8.permute(1, 2, 0).cpu().numpy().squeeze(-1 if image_uint8.shape[0] == 1
                                                                                else None))


def save_grid(images_uint8: torch.Tensor, path: Path | str, nrow: int) -> torch.Tensor:
    """Write the grid of ``images_uint8`` as a PNG at ``path``; returns the grid tensor."""
    grid = grid_image(images_uint8, nrow)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    to_pil(grid).save(path)
    return grid


def write_gif(frames: Sequence, path: Path | str, frame_ms: int = 200, hold_last: int = 3) -> None:
    """Animated GIF (Pillow) of ``frames`` (image paths, PIL images or uint8 ``(C, H, W)`` tensors),
    looping; the last frame is shown ``hold_last`` times longer."""
    from PIL import Image

    if not len(frames):
        return
    images = [to_pil(f) if isinstance(f, torch.Tensor) else f if isinstance(f, Image.Image)
              else Image.open(f) for f in frames]
    images = [im.convert("RGB") for im in images]
    durations = [int(frame_ms)] * (len(images) - 1) + [int(frame_ms) * int(hold_last)]
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    images[0].save(path, save_all=True, append_images=images[1:], duration=durations, loop=0, optimize=False)


def walk_labels(num_classes: int, label_kind: str | None, rows: int, per_row: int) -> torch.Tensor | None:
    """Labels of a latent interpolation / walk: row r keeps class ``r % K`` (multi-hot: the rows of
    :func:`class_rows`, cycling); ``None`` for unconditional models."""
    if not num_classes:
        return None
    base = class_rows(num_classes, label_kind, 1, max_rows=num_classes + 1)
    pick = base[[r % len(base) for r in range(int(rows))]]
    return pick.repeat_interleave(int(per_row), dim=0)


__all__ = ["INTERPOLATIONS", "LABEL_STREAM", "NOISE_SCHEME", "class_rows",
           "evaluation_labels", "grid_image", "interpolate", "interpolation_labels", "latent", "latent_interpolation",
           "latent_walk", "latents", "lerp", "model_device", "render", "save_grid", "slerp", "soft_class_labels",
           "stream", "to_pil", "truncation_threshold", "walk_labels", "write_gif"]
