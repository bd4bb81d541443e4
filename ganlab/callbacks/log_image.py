"""Send an image to every attached logger that can show one (TensorBoard, wandb; the CSV
logger has no images, so callbacks always write PNG files into the run folder as well)."""

from __future__ import annotations

import numpy as np
import torch
from lightning.pytorch.loggers import TensorBoardLogger, WandbLogger


def log_image(trainer, key: str, grid: torch.Tensor, step: int, caption: str | None = None) -> None:
    """``grid``: uint8 ``(C, H, W)``."""
    for logger in trainer.loggers:
        if isinstance(logger, TensorBoardLogger):
            logger.experiment.add_image(key, grid, global_step=step)
        elif isinstance(logger, WandbLogger):
            hwc = np.ascontiguousarray(grid.permute(1, 2, 0).cpu().numpy())
            # WandbLogger.log_image takes len() of every extra kwarg: pass caption only when set
            extra = {"caption": [caption]} if caption else {}
            logger.log_image(key=key, images=[hwc], step=step, **extra)
