"""GAN models: the training loop (:mod:`ganlab.models.gan`), networks, losses, regularizers."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from ganlab.models.gan import GAN, NonFiniteLossError


def load_gan(ckpt_path: str | Path, map_location: str | torch.device = "cpu", *, trust: bool = False,
             checkpoint: dict[str, Any] | None = None) -> GAN:
    """Rebuild a trained GAN from a checkpoint alone (its model config travels inside it).

    The file is read with ``weights_only=True`` and the stored model config instantiated only if
    every ``_target_`` is inside ganlab/torch/torchvision (:mod:`ganlab.checkpoints`); ``trust=True``
    lifts both checks for a file you trust. ``checkpoint``: the already-loaded dict of ``ckpt_path``.
    Raises :class:`ganlab.checkpoints.CheckpointError` with one message naming the file.
    """
    from ganlab.checkpoints import CheckpointError, instantiate_from_checkpoint, load_checkpoint

    ckpt = checkpoint if checkpoint is not None else load_checkpoint(ckpt_path, map_location, trust=trust)
    cfg = (ckpt.get("ganlab") or {}).get("model_config") if isinstance(ckpt.get("ganlab"), dict) else None
    if cfg is None or "state_dict" not in ckpt:
        raise CheckpointError(f"{ckpt_path} has no ganlab model config; was it written by `python -m ganlab.train`?")
    model: GAN = instantiate_from_checkpoint(cfg, path=ckpt_path, what="model config", trust=trust)
    if not isinstance(model, GAN):
        raise CheckpointError(f"{ckpt_path}: the stored model config builds a {type(model).__name__}, not a ganlab GAN")
    try:
        model.load_state_dict(ckpt["state_dict"])
    except RuntimeError as err:
        raise CheckpointError(f"{ckpt_path}: weights do not fit the stored model config ({str(err)[:300]})") from None
    model.on_load_checkpoint(ckpt)
    model._rng_to_restore = None
    return model.eval()


__all__ = ["GAN", "NonFiniteLossError", "load_gan"]
