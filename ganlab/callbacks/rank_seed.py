"""Distinct noise per DDP process.

``ganlab.train`` seeds every process with the same ``seed`` (Lightning's DDP setup re-seeds each
process with it, too), which is what makes the networks start identical - but then every
process would also draw the *same* latent noise, so the generator would see ``devices`` copies
of one fake batch instead of ``devices`` different ones. This callback re-seeds the global RNGs
(torch, CUDA, numpy, random; they drive the noise and instance noise, not the data order,
which the loader draws from ``data.seed`` and shards by rank) of every process but global rank 0
with ``seed + rank * stride + generator_step`` right before its first training batch.

Rank 0 keeps its stream, so a single-process run (where the callback does nothing) and rank 0 of
a resumed run continue exactly as before (the checkpoint holds rank 0's RNG states). Ranks > 0
of a resumed run are re-seeded from the step they resume at: deterministic, but not the
stream an uninterrupted run would have drawn. Weights do not depend on this: DDP broadcasts
rank 0's parameters and buffers when it wraps the model.
"""

from __future__ import annotations

import os
import random

import lightning as L
import numpy as np
import torch


class RankSeed(L.Callback):
    def __init__(self, seed: int | None = None, stride: int = 1_000_003) -> None:
        self.seed = seed
        self.stride = int(stride)
        self._pending = False

    def on_fit_start(self, trainer, pl_module) -> None:
        self._pending = trainer.world_size > 1

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if not self._pending:
            return
        self._pending = False
        rank = int(trainer.global_rank)
        if rank == 0:
            return
        base = self.seed if self.seed is not None else int(os.environ.get("PL_GLOBAL_SEED", 0))
        seed = (int(base) + rank * self.stride + int(pl_module.generator_step)) % 2**32
        torch.manual_seed(seed)  # also seeds every CUDA device
        np.random.seed(seed)
        random.seed(seed)


__all__ = ["RankSeed"]
