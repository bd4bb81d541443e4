"""GAN models: the training loop (:mod:`ganlab.models.gan`), networks, losses, regularizers."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from ganlab.models.gan import GAN, NonFiniteLossError


def load_gan(ckpt_path: str | Path, map_location: str | torch.device = "cpu", *, trust: bool = False,
             checkpoint: dict[str, Any] | None = None) -> GAN:
    """A trained GAN from a checkpoint alone, in eval mode: :meth:`GAN.load_from_checkpoint` (safe
    reading, ``_target_`` allowlist; ``trust=True`` lifts both for a file you trust).
    ``checkpoint``: the already-loaded dict of ``ckpt_path``. Raises
    :class:`ganlab.checkpoints.CheckpointError` with one message naming the file."""
    model = GAN.load_from_checkpoint(ckpt_path, map_location, trust=trust, checkpoint=checkpoint)
    model._rng_to_restore = None  # global RNG states are for resuming a run, not for sampling
    return model.eval()


__all__ = ["GAN", "NonFiniteLossError", "load_gan"]
