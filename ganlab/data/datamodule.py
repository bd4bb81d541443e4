"""One LightningDataModule for every data source ganlab reads.

``prepare_data`` builds (once) a decoded uint8 cache of the chosen source; ``setup`` opens it
memory-mapped; ``train_dataloader`` hands out uint8 batches; ``on_after_batch_transfer``
turns them into float ``[-1, 1]`` and applies the horizontal flip *on the batch's device*.
The GAN module therefore always receives ``(images, labels)``; ``labels`` has shape ``(B, 0)``
for unlabelled data, ``(B,)`` class indices, or ``(B, K)`` multi-hot attributes.
"""

from __future__ import annotations

import functools
import hashlib
from typing import Any, Callable, Sequence

import lightning as L
import numpy as np
import torch

from ganlab.data.loader import ArrayBatchLoader
from ganlab.checkpoints import to_plain
from ganlab.utils.pixels import to_float


class SplitView:
    """Rows ``indices`` of a (memory-mapped) ``(N, C, H, W)`` array, read on indexing only.

    ``len``, ``shape``, ``dtype``, ``view[i]``, ``view[a:b]``, ``view[int_array]`` and
    ``np.asarray(view)`` (which does read everything: for small splits and tests) behave like the
    array ``images[indices]`` would, without materialising it."""

    def __init__(self, images: np.ndarray, indices: np.ndarray) -> None:
        self.images, self.indices = images, np.asarray(indices)

    def __len__(self) -> int:
        return len(self.indices)

    @property
    def shape(self) -> tuple[int, ...]:
        return (len(self.indices), *self.images.shape[1:])

    @property
    def dtype(self) -> np.dtype:
        return self.images.dtype

    @property
    def ndim(self) -> int:
        return self.images.ndim

    def __getitem__(self, key: Any) -> np.ndarray:
        rows = self.indices[key]
        if np.ndim(rows) == 0:
            return np.asarray(self.images[int(rows)])
        order = np.argsort(rows, kind="stable")  # sorted reads are sequential on disk
        out = np.empty((len(rows), *self.images.shape[1:]), dtype=self.images.dtype)
        out[order] = self.images[rows[order]]
        return out

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        arr = self[:]
        return arr if dtype is None else arr.astype(dtype)

    def __iter__(self):
        for i in range(len(self)):
            yield self[i]

    def digest(self, rows_per_read: int = 4096) -> str:
        """sha256 of the rows' shape, dtype and bytes, in order: equal digests = equal pixels, whatever
        the source's metadata, cache key or file layout (the key of cached reference features)."""
        h = hashlib.sha256(f"{self.shape}|{self.dtype.str}|".encode())
        for start in range(0, len(self), rows_per_read):
            h.update(np.ascontiguousarray(self[start:start + rows_per_read]).tobytes())
        return h.hexdigest()


def source_config(source: Any) -> dict:
    """A source class / ``functools.partial`` of one (what Hydra builds from ``_partial_: true``) or
    its config -> the plain config ``{"_target_": ..., "_partial_": True, **options}``."""
    if isinstance(source, functools.partial):
        return {**source_config(source.func), **to_plain(dict(source.keywords))}
    if callable(source):
        return {"_target_": f"{source.__module__}.{source.__qualname__}", "_partial_": True}
    cfg = to_plain(source)
    if not (isinstance(cfg, dict) and isinstance(cfg.get("_target_"), str)):
        raise TypeError(f"data source must be a source class (e.g. ganlab.data.sources.CelebA) or a config with "
                        f"_target_, got {source!r}; see conf/data/*.yaml")
    return {**cfg, "_partial_": True}


class GANDataModule(L.LightningDataModule):
    """``source``: a source class or factory (``conf/data/*.yaml`` give it with ``_target_`` and
    ``_partial_: true``; see :mod:`ganlab.data.sources`), called with ``root`` and the image options."""

    def __init__(
        self,
        source: Callable[..., Any],
        root: str | None = None,
        resolution: int = 64,
        channels: int = 3,
        crop: Any = None,
        resize_filter: str = "bilinear",
        max_images: int | None = None,
        labels: Sequence[str] | str | None = None,
        label_mode: str = "multi_hot",
        split: str = "train",
        val_fraction: float = 0.1,
        test_fraction: float = 0.0,
        batch_size: int = 64,
        hflip: bool = False,
        seed: int = 0,
        cache_dir: str | None = None,
        num_workers: int | None = None,
        pin_memory: bool = True,
        device_cache: float = 0.0,
    ) -> None:
        super().__init__()
        source = source_config(source)  # plain (saved from this local), so checkpoints load weights_only
        self.save_hyperparameters(logger=False)
        self.prepared = None
        self._digests: dict[str, str] = {}

    # -- preparation -------------------------------------------------------------------
    def _prepare(self, progress: bool = True):
        import hydra

        from ganlab.data.sources import prepare

        h = self.hparams
        return prepare(
            hydra.utils.instantiate(h.source), h.root, resolution=h.resolution, channels=h.channels,
            crop=h.crop, resize_filter=h.resize_filter, max_images=h.max_images,
            labels=h.labels, label_mode=h.label_mode, val_fraction=h.val_fraction,
            test_fraction=h.test_fraction, seed=h.seed,
            cache_dir=h.cache_dir, num_workers=h.num_workers, progress=progress,
        )

    def prepare_data(self) -> None:
        if self.prepared is None:  # already opened (ganlab.train prepares before building the model)
            self._prepare()

    def setup(self, stage: str | None = None) -> None:
        if self.prepared is None:
            self.prepared = self._prepare(progress=False)
            if self.hparams.split not in self.prepared.splits:
                raise ValueError(
                    f"split {self.hparams.split!r} not available for {self.prepared.manifest.get('source')} "
                    f"(have: {sorted(self.prepared.splits)})"
                )

    # -- what models, callbacks and metrics ask for ------------------------------------
    @property
    def fingerprint(self) -> str:
        return self.prepared.fingerprint

    def split_digest(self, split: str | None = None) -> str:
        """:meth:`SplitView.digest` of a split (read once per process, then remembered)."""
        split = split or self.hparams.split
        if split not in self._digests:
            self._digests[split] = self.split_images(split).digest()
        return self._digests[split]

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return tuple(self.prepared.images.shape[1:])

    @property
    def num_classes(self) -> int:
        return len(self.prepared.class_names) if self.prepared.label_kind else 0

    @property
    def label_kind(self) -> str | None:
        return self.prepared.label_kind

    @property
    def class_names(self) -> list[str]:
        return list(self.prepared.class_names)

    def split_images(self, split: str | None = None) -> "SplitView":
        """The split's images as a lazy view of the memory-mapped cache: indexing it reads only the
        rows asked for (``view[:64]``, ``view[rows]``), so no caller copies the whole split."""
        return SplitView(self.prepared.images, self.prepared.splits[split or self.hparams.split])

    def split_labels(self, split: str | None = None) -> np.ndarray | None:
        if self.prepared.labels is None:
            return None
        return self.prepared.labels[self.prepared.splits[split or self.hparams.split]]

    # -- checkpoints: the data's own state (Lightning stores it under checkpoint["GANDataModule"]) --
    def state_dict(self) -> dict[str, Any]:
        """Labels (names, kind, counts), fingerprint, split and image shape of the data trained on:
        ``ganlab.generate`` names and balances its output with them (plain types only)."""
        from ganlab.data.annotations import label_metadata

        if self.prepared is None:
            return {}
        return {**label_metadata(self), "image_shape": list(self.image_shape)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """On resume: the labels must be the ones the checkpoint was trained with."""
        if not state or self.prepared is None:
            return
        if (state.get("label_kind"), list(state.get("class_names") or [])) != (self.label_kind,
                                                                                 self.class_names if self.label_kind else []):
            raise ValueError(
                f"resuming on data with other labels: the checkpoint was trained on {state.get('label_kind')!r} labels "
                f"{list(state.get('class_names') or [])[:8]}, the data now has {self.label_kind!r} "
                f"{self.class_names[:8]}; resume with the same data.labels (or start a new run)")

    # -- loading -------------------------------------------------------------------------
    def train_dataloader(self) -> ArrayBatchLoader:
        trainer = self.trainer
        rank, world = (trainer.global_rank, trainer.world_size) if trainer else (0, 1)
        on_gpu = bool(trainer and trainer.accelerator.__class__.__name__ == "CUDAAccelerator")
        args = (self.prepared.images, self.prepared.labels, self.prepared.splits[self.hparams.split],
                self.hparams.batch_size)
        kwargs = dict(hflip=self.hparams.hflip, seed=self.hparams.seed, rank=rank, world_size=world)
        if self.hparams.device_cache:  # trainer=gpu: the split resident on the training device, if it fits
            from ganlab.data.device_loader import device_loader

            device = trainer.strategy.root_device if trainer else torch.device("cpu")
            loader = device_loader(*args, device=device, fraction=self.hparams.device_cache, **kwargs)
            if loader is not None:
                return loader
        return ArrayBatchLoader(*args, **kwargs, pin_memory=self.hparams.pin_memory and on_gpu)

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> tuple[torch.Tensor, torch.Tensor]:
        x, y, flip = batch
        x = to_float(x)
        if self.hparams.hflip:  # not flip.any(): that would wait for the device every batch
            x = torch.where(flip[:, None, None, None], x.flip(3), x)
        return x, y
