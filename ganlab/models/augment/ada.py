"""ADA, adaptive discriminator augmentation (Karras et al. 2020): a geometric + colour
pipeline applied to every image D sees, each transform to each image with probability ``p``,
and ``p`` steered by the overfitting signal ``r_t = E[sign(D(real))]`` towards ``target``.

Every ``interval`` D steps, ``p += sign(r_t - target) * images / speed_images`` (clamped to
[0, 1]), where ``images`` is the number of reals seen in the interval (all ranks): with the
paper's ``speed_images=500_000`` p can go from 0 to 1 in 500k images. ``p``, the last ``r_t``
and the interval's accumulator are registered buffers, so they are in every checkpoint and
resume is exact; under DDP each step's sign sum is all-reduced, so every rank holds the same
values; nothing here reads a value back to the host.

Plain torch ops, not kornia: like stylegan2-ada, all geometric transforms are composed into
one matrix per image and the image is resampled once (``affine_grid`` + ``grid_sample``),
colour likewise as one 4x4 matrix; kornia applies and resamples each transform separately and
gates them with the global RNG (base.py explains the own stream). Images whose transform is
the identity are passed through untouched, so ``p = 0`` is exactly no augmentation.
Unlike stylegan2-ada, resampling is plain bilinear with reflection padding (no 2x upsampling
through a wavelet low-pass filter): cheaper, with a little more aliasing. Hue and saturation
act on 3-channel images only; other channel counts get brightness and contrast.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ganlab.models.augment.base import Augmentation

# luma axis for hue rotation / saturation (stylegan2-ada uses the grey axis (1, 1, 1) / sqrt 3)
_LUMA = (1.0 / math.sqrt(3.0),) * 3


class AdaptiveAugment(Augmentation):
    def __init__(
        self,
        p: float = 0.0,
        target: float | None = 0.6,
        speed_images: int = 500_000,
        interval: int = 4,
        # per-transform probability multipliers (0 turns one off): the paper's "bgc" pipeline
        xflip: float = 1.0,
        rotate90: float = 1.0,
        xint: float = 1.0,
        scale: float = 1.0,
        rotate: float = 1.0,
        aniso: float = 1.0,
        xfrac: float = 1.0,
        brightness: float = 1.0,
        contrast: float = 1.0,
        hue: float = 1.0,
        saturation: float = 1.0,
        # strengths (the paper's)
        xint_max: float = 0.125,
        scale_std: float = 0.2,
        rotate_max: float = 1.0,
        aniso_std: float = 0.2,
        xfrac_std: float = 0.125,
        brightness_std: float = 0.2,
        contrast_std: float = 0.5,
        hue_max: float = 1.0,
        saturation_std: float = 1.0,
    ) -> None:
        super().__init__()
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"ADA p must be in [0, 1], got {p}")
        if interval < 1 or speed_images <= 0:
            raise ValueError(f"ADA needs interval >= 1 and speed_images > 0, got {interval}, {speed_images}")
        self.target, self.speed_images, self.interval = target, speed_images, interval
        self.multipliers = dict(xflip=xflip, rotate90=rotate90, xint=xint, scale=scale, rotate=rotate,
                                aniso=aniso, xfrac=xfrac, brightness=brightness, contrast=contrast,
                                hue=hue, saturation=saturation)
        self.xint_max, self.scale_std, self.rotate_max, self.aniso_std = xint_max, scale_std, rotate_max, aniso_std
        self.xfrac_std, self.brightness_std, self.contrast_std = xfrac_std, brightness_std, contrast_std
        self.hue_max, self.saturation_std = hue_max, saturation_std
        self.register_buffer("p", torch.tensor(float(p)))
        self.register_buffer("r_t", torch.tensor(0.0))
        # since the last adjustment: [sum of sign(D(real)), number of reals, number of D steps]
        self.register_buffer("accumulator", torch.zeros(3))

    # -- the adaptive probability ---------------------------------------------------------
    @torch.no_grad()
    def update(self, d_real: torch.Tensor) -> dict[str, torch.Tensor]:
        if self.target is None:  # fixed p
            return {"aug/p": self.p.clone()}
        d_real = d_real.float()
        counts = torch.stack([torch.sign(d_real).sum(), d_real.new_full((), d_real.numel())])
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.all_reduce(counts)
        acc = self.accumulator
        acc[:2] += counts
        acc[2] += 1
        due = acc[2] >= self.interval
        r_t = acc[0] / acc[1].clamp(min=1.0)
        step = torch.sign(r_t - self.target) * acc[1] / self.speed_images
        self.p.copy_(torch.where(due, (self.p + step).clamp(0.0, 1.0), self.p))
        self.r_t.copy_(torch.where(due, r_t, self.r_t))
        acc.mul_((~due).float())
        return {"aug/p": self.p.clone(), "aug/r_t": self.r_t.clone()}

    # -- the pipeline -----------------------------------------------------------------------
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.device.type == "cpu" and not self.p > 0:  # reading p is free on CPU (no device queue)
            return x
        gen = self.random_generator(x.device)
        with torch.autocast(x.device.type, enabled=False):  # grid_sample in float32, also under bf16 AMP
            x = self._geometric(x, gen)
            return self._colour(x, gen)

    def _draws(self, x: torch.Tensor, gen: torch.Generator):
        n, dev = x.shape[0], x.device

        def chance(name: str, prob: torch.Tensor | None = None) -> torch.Tensor:
            prob = self.p * self.multipliers[name] if prob is None else prob
            return torch.rand(n, device=dev, generator=gen) < prob

        def rand(low: float = -1.0, high: float = 1.0) -> torch.Tensor:
            return torch.rand(n, device=dev, generator=gen) * (high - low) + low

        def randn(std: float) -> torch.Tensor:
            return torch.randn(n, device=dev, generator=gen) * std

        return chance, rand, randn

    def _geometric(self, x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        n, _, h, w = x.shape
        chance, rand, randn = self._draws(x, gen)
        zero, one = x.new_zeros(n, dtype=torch.float32), x.new_ones(n, dtype=torch.float32)
        m = torch.eye(3, device=x.device).expand(n, 3, 3)
        # x-flip: with probability p, flip half of the time
        flip = chance("xflip") & (rand(0.0, 1.0) < 0.5)
        m = m @ _scale2d(torch.where(flip, -one, one), one)
        # 90-degree rotations, with exact cos/sin so they move whole pixels
        k = torch.randint(0, 4, (n,), device=x.device, generator=gen)
        k = torch.where(chance("rotate90"), k, torch.zeros_like(k))
        m = m @ _rotate2d((k == 0).float() - (k == 2).float(), (k == 1).float() - (k == 3).float())
        # integer translation (whole pixels), up to xint_max of the size
        on = chance("xint")
        tx = torch.round(rand() * self.xint_max * w) * 2.0 / w
        ty = torch.round(rand() * self.xint_max * h) * 2.0 / h
        m = m @ _translate2d(torch.where(on, tx, zero), torch.where(on, ty, zero))
        # isotropic scaling
        s = torch.exp2(randn(self.scale_std))
        s = torch.where(chance("scale"), s, one)
        m = m @ _scale2d(s, s)
        # arbitrary rotation, before and after the anisotropic scaling; each with the probability
        # that makes "at least one of the two" happen with probability p (as in the paper)
        p_rot = 1.0 - torch.sqrt((1.0 - self.p * self.multipliers["rotate"]).clamp(min=0.0))
        theta = torch.where(chance("rotate", p_rot), rand() * math.pi * self.rotate_max, zero)
        m = m @ _rotate2d(torch.cos(theta), torch.sin(theta))
        s = torch.where(chance("aniso"), torch.exp2(randn(self.aniso_std)), one)
        m = m @ _scale2d(s, 1.0 / s)
        theta = torch.where(chance("rotate", p_rot), rand() * math.pi * self.rotate_max, zero)
        m = m @ _rotate2d(torch.cos(theta), torch.sin(theta))
        # fractional translation
        on = chance("xfrac")
        tx, ty = randn(self.xfrac_std) * 2.0, randn(self.xfrac_std) * 2.0
        m = m @ _translate2d(torch.where(on, tx, zero), torch.where(on, ty, zero))

        identity = (m == torch.eye(3, device=x.device)).all(dim=2).all(dim=1)
        grid = F.affine_grid(m[:, :2, :], list(x.shape), align_corners=False)
        warped = F.grid_sample(x.float(), grid, mode="bilinear", padding_mode="reflection", align_corners=False)
        return torch.where(identity.view(n, 1, 1, 1), x, warped.to(x.dtype))

    def _colour(self, x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        n, c = x.shape[:2]
        chance, rand, randn = self._draws(x, gen)
        zero, one = x.new_zeros(n, dtype=torch.float32), x.new_ones(n, dtype=torch.float32)
        m = torch.eye(4, device=x.device).expand(n, 4, 4)
        b = torch.where(chance("brightness"), randn(self.brightness_std), zero)
        m = m @ _translate3d(b)
        k = torch.where(chance("contrast"), torch.exp2(randn(self.contrast_std)), one)
        m = m @ _scale3d(k)
        if c == 3:  # hue and saturation act on colour: rotation about / scaling off the grey axis
            theta = torch.where(chance("hue"), rand() * math.pi * self.hue_max, zero)
            m = m @ _rotate3d(_LUMA, theta)
            s = torch.where(chance("saturation"), torch.exp2(randn(self.saturation_std)), one)
            m = m @ _saturate3d(_LUMA, s)
        identity = (m == torch.eye(4, device=x.device)).all(dim=2).all(dim=1)
        xf = x.float()
        if c == 3:
            out = torch.einsum("nij,njhw->nihw", m[:, :3, :3], xf) + m[:, :3, 3].view(n, 3, 1, 1)
        else:  # grey (or any other channel count): brightness and contrast per pixel value
            out = xf * m[:, 0, 0].view(n, 1, 1, 1) + m[:, 0, 3].view(n, 1, 1, 1)
        return torch.where(identity.view(n, 1, 1, 1), x, out.to(x.dtype))

    def extra_repr(self) -> str:
        on = [k for k, v in self.multipliers.items() if v]
        return f"target={self.target}, speed_images={self.speed_images}, interval={self.interval}, ops={on}"


# -- batched homogeneous matrices (n, 3, 3) for 2-D and (n, 4, 4) for colour -----------------
def _mat(rows: list[list[torch.Tensor | float]], like: torch.Tensor) -> torch.Tensor:
    full = [[v if torch.is_tensor(v) else torch.full_like(like, v) for v in row] for row in rows]
    return torch.stack([torch.stack(row, dim=-1) for row in full], dim=-2)


def _scale2d(sx: torch.Tensor, sy: torch.Tensor) -> torch.Tensor:
    return _mat([[sx, 0.0, 0.0], [0.0, sy, 0.0], [0.0, 0.0, 1.0]], sx)


def _rotate2d(cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    return _mat([[cos, -sin, 0.0], [sin, cos, 0.0], [0.0, 0.0, 1.0]], cos)


def _translate2d(tx: torch.Tensor, ty: torch.Tensor) -> torch.Tensor:
    return _mat([[1.0, 0.0, tx], [0.0, 1.0, ty], [0.0, 0.0, 1.0]], tx)


def _translate3d(t: torch.Tensor) -> torch.Tensor:
    return _mat([[1.0, 0.0, 0.0, t], [0.0, 1.0, 0.0, t], [0.0, 0.0, 1.0, t], [0.0, 0.0, 0.0, 1.0]], t)


def _scale3d(s: torch.Tensor) -> torch.Tensor:
    return _mat([[s, 0.0, 0.0, 0.0], [0.0, s, 0.0, 0.0], [0.0, 0.0, s, 0.0], [0.0, 0.0, 0.0, 1.0]], s)


def _rotate3d(axis: tuple[float, float, float], theta: torch.Tensor) -> torch.Tensor:
    """Rodrigues: rotation by ``theta`` about the unit ``axis`` (exactly the identity at 0)."""
    (ax, ay, az), cos, sin = axis, torch.cos(theta), torch.sin(theta)
    c1 = 1.0 - cos
    return _mat([
        [cos + ax * ax * c1, ax * ay * c1 - az * sin, ax * az * c1 + ay * sin, 0.0],
        [ay * ax * c1 + az * sin, cos + ay * ay * c1, ay * az * c1 - ax * sin, 0.0],
        [az * ax * c1 - ay * sin, az * ay * c1 + ax * sin, cos + az * az * c1, 0.0],
        [0.0, 0.0, 0.0, 1.0],
    ], theta)


def _saturate3d(axis: tuple[float, float, float], s: torch.Tensor) -> torch.Tensor:
    """Keep the component along the grey ``axis``, scale the rest by ``s`` (exactly the identity at 1)."""
    eye = torch.eye(3, device=s.device)
    outer = torch.stack([torch.stack([torch.full_like(s, a * b) for b in axis], -1) for a in axis], -2)
    m3 = eye + (eye - outer) * (s.view(-1, 1, 1) - 1.0)  # (n, 3, 3)
    m = torch.eye(4, device=s.device).repeat(s.shape[0], 1, 1)
    m[:, :3, :3] = m3
    return m
