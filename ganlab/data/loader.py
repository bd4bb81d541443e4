"""A resumable batch loader over uint8 image arrays (in memory or memory-mapped).

Why not ``torch.utils.data.DataLoader``: our data is already decoded into one uint8 array,
so a batch is a single fancy-index of that array (about a millisecond), with no per-item
``__getitem__``/collate and no worker processes. The loader is also *stateful*
(``state_dict``/``load_state_dict``), which is what Lightning needs to resume a run
mid-epoch at exactly the next batch.

Order: a permutation per epoch drawn from ``(seed, epoch)``; under DDP every rank draws the
same permutation and takes its own strided share, so shards are disjoint.
Each batch also carries a horizontal-flip mask drawn from the same stream, so augmentation is
reproducible across a resume; the flip itself happens on the device (see GANDataModule).
"""

from __future__ import annotations

from typing import Iterator

import numpy as np
import torch


class ArrayBatchLoader:
    def __init__(
        self,
        images: np.ndarray,
        labels: np.ndarray | None,
        indices: np.ndarray,
        batch_size: int,
        *,
        shuffle: bool = True,
        drop_last: bool = True,
        hflip: bool = False,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        pin_memory: bool = False,
    ) -> None:
        if len(indices) < batch_size * world_size and drop_last:
            raise ValueError(
                f"batch_size={batch_size} x {world_size} process(es) is larger than the split "
                f"({len(indices)} images); lower data.batch_size or use more data."
            )
        self.images = images
        self.labels = labels
        self.indices = np.asarray(indices, dtype=np.int64)
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.drop_last = drop_last
        self.hflip = hflip
        self.seed = seed
        self.rank = rank
        self.world_size = world_size
        self.pin_memory = pin_memory
        self.epoch = 0
        self._position = 0  # batches handed out in the current epoch
        self._resume_at = 0

    def __len__(self) -> int:
        per_rank = len(self.indices) // self.world_size
        if self.drop_last:
            return per_rank // self.batch_size
        return -(-per_rank // self.batch_size)

    def _epoch_order(self, epoch: int) -> tuple[np.ndarray, np.random.Generator]:
        rng = np.random.default_rng([self.seed, epoch])
        order = rng.permutation(self.indices) if self.shuffle else self.indices
        per_rank = len(order) // self.world_size
        return order[self.rank :: self.world_size][:per_rank], rng

    def _epoch_plan(self, epoch: int) -> tuple[np.ndarray, np.ndarray]:
        """This rank's rows of ``epoch`` in order, and their flip mask."""
        order, rng = self._epoch_order(epoch)
        flips = rng.random(len(order)) < 0.5 if self.hflip else np.zeros(len(order), dtype=bool)
        return order, flips

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        n_batches = len(self)
        # the previous epoch was handed out in full: Lightning stops after len(self) batches, so
        # that generator may never have reached its end (and counted the epoch) - count it here
        if self._position >= n_batches:
            self.epoch += 1
            self._position = 0
        if self._resume_at >= n_batches:  # checkpoint taken after an epoch's last batch
            self.epoch += 1
            self._resume_at = 0
        order, flips = self._epoch_plan(self.epoch)
        start, self._resume_at = self._resume_at, 0
        for b in range(start, n_batches):
            rows = order[b * self.batch_size : (b + 1) * self.batch_size]
            self._position = b + 1
            yield self._batch(rows, flips[b * self.batch_size : (b + 1) * self.batch_size])

    def _batch(self, rows: np.ndarray, flip: np.ndarray):
        # sorted rows read a memmap front to back; order inside a batch does not matter
        sort = np.argsort(rows, kind="stable")
        rows, flip = rows[sort], flip[sort]
        x = torch.from_numpy(np.ascontiguousarray(self.images[rows]))
        if self.labels is None:
            y = torch.zeros(len(rows), 0)
        else:
            y = torch.from_numpy(np.ascontiguousarray(self.labels[rows]))
        f = torch.from_numpy(flip)
        if self.pin_memory:
            x, y, f = x.pin_memory(), y.pin_memory(), f.pin_memory()
        return x, y, f

    # Lightning saves/restores these with the checkpoint (mid-epoch resume).
    def state_dict(self) -> dict:
        return {"epoch": self.epoch, "position": self._position, "seed": self.seed}

    def load_state_dict(self, state: dict) -> None:
        self.epoch = int(state["epoch"])
        self._resume_at = int(state["position"])
