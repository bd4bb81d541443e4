"""The device-resident batch loader of ``trainer=gpu`` (``data.device_cache``).

The train split is copied once, as uint8, into one tensor on the training device (in chunks, so a
memory-mapped cache is never read into host RAM whole); from then on a batch is one index on the
device, with no host work and no host-to-device copy per step.

Sampling semantics, the same as :class:`ganlab.data.loader.ArrayBatchLoader` (it is a subclass and
shares its epoch / mid-epoch-resume bookkeeping and ``state_dict``): every epoch is a permutation
of the split drawn from ``(seed, epoch)`` alone, so a resumed run continues with exactly the batches
it would have seen; every image once per epoch; incomplete last batch dropped; under DDP every rank
draws the same permutation and takes its strided share; a horizontal-flip mask with probability
0.5 per image from the same stream. What differs is the random stream: ``torch.randperm`` and
``torch.rand`` with a ``torch.Generator`` on the device instead of NumPy's, so the order is not the
host loader's order, and on CUDA it is not the order the same seed gives on CPU (CUDA and CPU
generators differ); on one device type it is deterministic.
"""

from __future__ import annotations

import logging

import numpy as np
import torch

from ganlab.data.loader import ArrayBatchLoader

log = logging.getLogger(__name__)

CHUNK_ROWS = 8192  # rows per host -> device copy while uploading


class DeviceBatchLoader(ArrayBatchLoader):
    def __init__(self, images: np.ndarray, labels: np.ndarray | None, indices: np.ndarray, batch_size: int, *,
                 device: torch.device | str, **kwargs) -> None:
        super().__init__(images, labels, indices, batch_size, **kwargs)
        self.device = torch.device(device)
        self.device_images = upload(images, self.indices, self.device)
        self.device_labels = None if labels is None else upload(labels, self.indices, self.device)

    def _epoch_plan(self, epoch: int) -> tuple[torch.Tensor, torch.Tensor]:
        gen = torch.Generator(device=self.device)
        gen.manual_seed(epoch_seed(self.seed, epoch))
        n = len(self.indices)
        order = torch.randperm(n, generator=gen, device=self.device) if self.shuffle else \
            torch.arange(n, device=self.device)
        order = order[self.rank :: self.world_size][: n // self.world_size]
        if self.hflip:
            flips = torch.rand(len(order), generator=gen, device=self.device) < 0.5
        else:
            flips = torch.zeros(len(order), dtype=torch.bool, device=self.device)
        return order, flips

    def _batch(self, rows: torch.Tensor, flip: torch.Tensor):
        x = self.device_images.index_select(0, rows)
        if self.device_labels is None:
            y = torch.zeros(len(rows), 0, device=self.device)
        else:
            y = self.device_labels.index_select(0, rows)
        return x, y, flip


def epoch_seed(seed: int, epoch: int) -> int:
    """A 63-bit seed for the device generator from ``(seed, epoch)``, like ``default_rng([seed, epoch])``."""
    return int(np.random.SeedSequence([seed, epoch]).generate_state(1, np.uint64)[0] >> np.uint64(1))


def upload(array: np.ndarray, indices: np.ndarray, device: torch.device) -> torch.Tensor:
    out = torch.empty((len(indices), *array.shape[1:]), dtype=torch.from_numpy(np.empty(0, array.dtype)).dtype,
                      device=device)
    for start in range(0, len(indices), CHUNK_ROWS):
        rows = indices[start : start + CHUNK_ROWS]
        out[start : start + len(rows)].copy_(torch.from_numpy(np.ascontiguousarray(array[rows])))
    return out


def fits(nbytes: int, device: torch.device, fraction: float) -> tuple[bool, str]:
    """Whether ``nbytes`` fit in ``fraction`` of the device's free memory (always on CPU), and why not."""
    if device.type != "cuda":
        return True, ""
    free, _total = torch.cuda.mem_get_info(device)
    if nbytes <= fraction * free:
        return True, ""
    return False, (f"data.device_cache={fraction}: the train split needs {nbytes / 2**30:.2f} GiB on {device}, more "
                   f"than {fraction} x {free / 2**30:.2f} GiB free; using the host loader")


def device_loader(images: np.ndarray, labels: np.ndarray | None, indices: np.ndarray, batch_size: int, *,
                  device: torch.device | str, fraction: float, **kwargs) -> DeviceBatchLoader | None:
    """A :class:`DeviceBatchLoader` when the split fits ``fraction`` of free device memory, else
    ``None`` after one log line saying why (the caller then uses the host loader)."""
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"data.device_cache must be in (0, 1] (a fraction of free GPU memory) or 0 to turn it off, "
                         f"got {fraction}")
    device = torch.device(device)
    row_bytes = int(np.prod(images.shape[1:])) * np.dtype(images.dtype).itemsize
    if labels is not None:
        row_bytes += int(np.prod(labels.shape[1:])) * np.dtype(labels.dtype).itemsize
    ok, why = fits(row_bytes * len(indices), device, fraction)
    if not ok:
        log.warning(why)
        return None
    loader = DeviceBatchLoader(images, labels, indices, batch_size, device=device, **kwargs)
    log.info("data.device_cache: %d images (%.2f GiB) resident on %s", len(indices), row_bytes * len(indices) / 2**30,
             device)
    return loader
