"""Pixel conventions shared by data, models, callbacks and metrics.

Images travel as uint8 ``(N, C, H, W)`` until they reach the device, where they become
float in ``[-1, 1]``; samples go back to uint8 the way the reference FID implementations
expect (``x * 127.5 + 128``, clamped, truncated: StyleGAN's convention).
"""

from __future__ import annotations

import torch


def to_float(x: torch.Tensor) -> torch.Tensor:
    """uint8 ``[0, 255]`` -> float32 ``[-1, 1]`` (on the tensor's device)."""
    return x.to(torch.float32) / 127.5 - 1.0


def to_uint8(x: torch.Tensor) -> torch.Tensor:
    """float ``[-1, 1]`` -> uint8 ``[0, 255]``."""
    return (x.detach().float() * 127.5 + 128.0).clamp_(0, 255).to(torch.uint8)
