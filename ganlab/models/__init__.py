"""GAN models: the training loop (:mod:`ganlab.models.gan`), networks, losses, regularizers."""

from __future__ import annotations

from pathlib import Path

import torch

from ganlab.models.gan import GAN, NonFiniteLossError


def load_gan(ckpt_path: str | Path, map_location: str | torch.device = "cpu") -> GAN:
    """Rebuild a trained GAN from a checkpoint alone (its model config travels inside it)."""
    import hydra

    ckpt = torch.load(ckpt_path, map_location=map_location, weights_only=False)
    cfg = ckpt.get("ganlab", {}).get("model_config")
    if cfg is None:
        raise ValueError(f"{ckpt_path} has no ganlab model config; was it written by `python -m ganlab.train`?")
    model: GAN = hydra.utils.instantiate(cfg)
    model.load_state_dict(ckpt["state_dict"])
    model.on_load_checkpoint(ckpt)
    model._rng_to_restore = None
    return model.eval()


__all__ = ["GAN", "NonFiniteLossError", "load_gan"]
