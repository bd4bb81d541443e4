"""Visual progress: a grid of real training images at the start, a fixed-noise sample grid
every N generator steps and at each epoch end (from the EMA generator), a progress GIF built from
those grids, and latent / class interpolations at the end of training.

Files: ``<run>/samples/real.png``, ``<run>/samples/step_000100.png`` ..., ``<run>/progress.gif``,
``<run>/samples/latent_interpolation.png``, ``<run>/samples/latent_walk.gif`` and (conditional
models) ``<run>/samples/class_interpolation.png``. Grids also go to every logger that shows images.

The noise is :mod:`ganlab.sampling`'s plan of ``seed``: tile ``i`` of an unconditional grid is image
``i`` of ``python -m ganlab.generate seed=<seed>``. Conditional models get one row per class (the
same 8 latents ``0 .. 7`` in every row), so each row shows how one class evolves.
End of training (each switchable in ``conf/callbacks/sample_grid.yaml``):

* ``latent_interpolation.png``: row r walks from latent ``2r`` to latent ``2r + 1`` in
  ``latent_steps`` columns, spherically (``slerp``) or linearly (``lerp``); conditional models keep
  one class per row;
* ``latent_walk.gif``: ``walk_count`` tiles, each a closed loop through ``walk_keys`` latents;
* ``class_interpolation.png``: one fixed latent per row, the label moving linearly from class r to
  class r+1 (multi-hot: from no attribute to attribute r), i.e. a linear interpolation of the class
  embeddings.
"""

from __future__ import annotations

import math
from pathlib import Path

import lightning as L
import torch

from ganlab import sampling, signals
from ganlab.callbacks.log_image import log_image
from ganlab.sampling import save_grid, write_gif  # noqa: F401  (kept importable from here)


class SampleGrid(L.Callback):
    def __init__(
        self,
        dirpath: str,
        every_n_steps: int = 500,
        num_samples: int = 64,
        seed: int = 1234,
        on_epoch_end: bool = True,
        gif_path: str | None = None,
        gif_frame_ms: int = 200,
        log_to_loggers: bool = True,
        interpolation_steps: int = 8,
        latent_interpolation: str | None = "slerp",
        latent_rows: int = 8,
        latent_steps: int = 8,
        walk_path: str | None = None,
        walk_count: int = 4,
        walk_keys: int = 4,
        walk_steps: int = 8,
    ) -> None:
        self.dirpath = Path(dirpath)
        self.every_n_steps = every_n_steps
        self.num_samples = num_samples
        self.seed = seed
        self.on_epoch_end_enabled = on_epoch_end
        self.gif_path = Path(gif_path) if gif_path else None
        self.gif_frame_ms = gif_frame_ms
        self.log_to_loggers = log_to_loggers
        self.interpolation_steps = interpolation_steps  # 0: no class-interpolation grid
        if latent_interpolation not in (None, *sampling.INTERPOLATIONS):
            raise ValueError(f"latent_interpolation must be null, lerp or slerp, got {latent_interpolation!r}")
        self.latent_interpolation = latent_interpolation
        self.latent_rows, self.latent_steps = int(latent_rows), int(latent_steps)
        self.walk_path = Path(walk_path) if walk_path else None
        self.walk_count, self.walk_keys, self.walk_steps = int(walk_count), int(walk_keys), int(walk_steps)
        self._last_step = -1

    def fixed_inputs(self, pl_module) -> tuple[torch.Tensor, torch.Tensor | None, int]:
        """(z, labels, images per row) of the progress grids, from the sampling plan of ``seed``."""
        if pl_module.num_classes:
            nrow = 8
            labels = sampling.class_rows(pl_module.num_classes, pl_module.label_kind, nrow)
            z = sampling.latents(self.seed, nrow, pl_module.z_dim).repeat(labels.shape[0] // nrow, 1)
            return z, labels, nrow
        nrow = int(math.sqrt(self.num_samples)) or 1
        return sampling.latents(self.seed, self.num_samples, pl_module.z_dim), None, nrow

    def on_train_start(self, trainer, pl_module) -> None:
        if not trainer.is_global_zero:
            return
        dm = trainer.datamodule
        if dm is not None and hasattr(dm, "split_images"):
            real = torch.from_numpy(dm.split_images()[: self.num_samples].copy())
            grid = save_grid(real, self.dirpath / "real.png", int(math.sqrt(len(real))) or 1)
            if self.log_to_loggers:
                log_image(trainer, "samples/real", grid, pl_module.generator_step)

    def _write(self, trainer, pl_module) -> None:
        step = pl_module.generator_step
        if step == self._last_step or not trainer.is_global_zero:
            return
        self._last_step = step
        z, labels, nrow = self.fixed_inputs(pl_module)
        grid = save_grid(sampling.render(pl_module, z, labels), self.dirpath / f"step_{step:06d}.png", nrow)
        if self.log_to_loggers:
            log_image(trainer, "samples/fake", grid, step, caption=f"generator step {step}")

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if self.every_n_steps and pl_module.generator_step % self.every_n_steps == 0:
            self._write(trainer, pl_module)

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        if self.on_epoch_end_enabled:
            self._write(trainer, pl_module)

    def on_train_end(self, trainer, pl_module) -> None:
        self._write(trainer, pl_module)
        if signals.requested() is not None or not trainer.is_global_zero:  # a signal: the extras wait for the real end
            return
        step = pl_module.generator_step
        extras = []
        if self.interpolation_steps and pl_module.num_classes:
            extras.append(("class_interpolation", class_interpolation_grid(
                pl_module, self.dirpath / "class_interpolation.png", self.interpolation_steps, self.seed)))
        if self.latent_interpolation and self.latent_rows and self.latent_steps:
            extras.append(("latent_interpolation", latent_interpolation_grid(
                pl_module, self.dirpath / "latent_interpolation.png", self.latent_rows, self.latent_steps,
                self.seed, self.latent_interpolation)))
        if self.log_to_loggers:
            for name, grid in extras:
                log_image(trainer, f"samples/{name}", grid, step)
        if self.walk_path and self.walk_count and self.walk_keys and self.walk_steps:
            latent_walk_gif(pl_module, self.walk_path, count=self.walk_count, keys=self.walk_keys,
                            steps=self.walk_steps, seed=self.seed, mode=self.latent_interpolation or "slerp",
                            frame_ms=self.gif_frame_ms // 2 or 1)
        if self.gif_path:
            write_gif(sorted(self.dirpath.glob("step_*.png")), self.gif_path, self.gif_frame_ms)


def class_interpolation_grid(pl_module, path: Path, steps: int = 8, seed: int = 1234) -> torch.Tensor:
    """Write the class-interpolation grid of a conditional GAN (EMA generator) to ``path``: row r
    has latent r of the plan ``seed`` and soft labels from class r to class r+1."""
    labels, _ = sampling.interpolation_labels(pl_module.num_classes, pl_module.label_kind, steps)
    rows = labels.shape[0] // steps
    z = sampling.latents(seed, rows, pl_module.z_dim).repeat_interleave(steps, dim=0)
    return save_grid(sampling.render(pl_module, z, labels), path, steps)


def latent_interpolation_grid(pl_module, path: Path, rows: int = 8, steps: int = 8, seed: int = 1234,
                              mode: str = "slerp") -> torch.Tensor:
    """Write the latent-interpolation grid (:func:`ganlab.sampling.latent_interpolation`) to ``path``."""
    z = sampling.latent_interpolation(seed, pl_module.z_dim, rows, steps, mode)
    labels = sampling.walk_labels(pl_module.num_classes, pl_module.label_kind, rows, steps)
    return save_grid(sampling.render(pl_module, z, labels), path, steps)


def latent_walk_gif(pl_module, path: Path, *, count: int = 4, keys: int = 4, steps: int = 8, seed: int = 1234,
                    mode: str = "slerp", frame_ms: int = 100) -> None:
    """Write a looping GIF: ``count`` tiles side by side, tile j a closed walk through latents
    ``j * keys .. (j + 1) * keys - 1`` of the plan ``seed`` (conditional: tile j keeps class j)."""
    walks = [sampling.latent_walk(seed, pl_module.z_dim, keys, steps, mode, first=j * keys) for j in range(count)]
    frames = len(walks[0])
    z = torch.stack(walks, dim=1).reshape(frames * count, -1)  # frame-major: frame t = tiles 0 .. count-1
    labels = sampling.walk_labels(pl_module.num_classes, pl_module.label_kind, count, 1)
    if labels is not None:
        labels = labels.repeat(frames, *([1] * (labels.dim() - 1)))
    images = sampling.render(pl_module, z, labels)
    images = images.reshape(frames, count, *images.shape[1:])
    write_gif([sampling.grid_image(images[t], count) for t in range(frames)], path, frame_ms, hold_last=1)
