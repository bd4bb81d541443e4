"""Visual progress: a grid of real training images at the start, a fixed-noise sample grid
every N generator steps and at each epoch end (from the EMA generator), and a progress GIF
built from those grids at the end of training.

Files: ``<run>/samples/real.png``, ``<run>/samples/step_000100.png`` ..., ``<run>/progress.gif``.
Grids also go to every logger that shows images. Conditional models get one row per class
(fixed noise per column), so each row shows how one class evolves, and at the end of training
``<run>/samples/class_interpolation.png``: one fixed noise vector per row, the label moving
linearly from class r to class r+1 (multi-hot: from no attribute to attribute r) across the
columns, i.e. a linear interpolation of the class embeddings.
"""

from __future__ import annotations

import math
from pathlib import Path

import lightning as L
import torch
from PIL import Image
from torchvision.utils import make_grid

from ganlab import signals
from ganlab.callbacks.log_image import log_image
from ganlab.utils.pixels import to_uint8


def class_rows(num_classes: int, label_kind: str | None, per_row: int, max_rows: int = 10) -> torch.Tensor:
    """Labels for a per-class grid: row r is class r (class labels) or one-hot attribute r
    (multi-hot labels; row 0 of a multi-hot grid is 'no attribute')."""
    if label_kind == "multi_hot":
        rows = torch.zeros(min(num_classes + 1, max_rows), num_classes)
        for r in range(1, rows.shape[0]):
            rows[r, r - 1] = 1.0
        return rows.repeat_interleave(per_row, dim=0)
    return torch.arange(min(num_classes, max_rows)).repeat_interleave(per_row)


def save_grid(images_uint8: torch.Tensor, path: Path, nrow: int) -> torch.Tensor:
    grid = make_grid(images_uint8, nrow=nrow, padding=2, pad_value=0)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(grid.permute(1, 2, 0).cpu().numpy().squeeze()).save(path)
    return grid


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
        self._last_step = -1

    def _fixed_inputs(self, pl_module) -> tuple[torch.Tensor, torch.Tensor | None, int]:
        gen = torch.Generator().manual_seed(self.seed)
        if pl_module.num_classes:
            nrow = 8
            labels = class_rows(pl_module.num_classes, pl_module.label_kind, nrow)
            z = torch.randn(nrow, pl_module.z_dim, generator=gen).repeat(labels.shape[0] // nrow, 1)
            return z, labels, nrow
        nrow = int(math.sqrt(self.num_samples)) or 1
        return torch.randn(self.num_samples, pl_module.z_dim, generator=gen), None, nrow

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
        z, labels, nrow = self._fixed_inputs(pl_module)
        fakes = []
        for i in range(0, len(z), 256):
            zl = z[i : i + 256].to(pl_module.device)
            ll = labels[i : i + 256].to(pl_module.device) if labels is not None else None
            fakes.append(to_uint8(pl_module.sample(zl, ll)).cpu())
        grid = save_grid(torch.cat(fakes), self.dirpath / f"step_{step:06d}.png", nrow)
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
        if signals.requested() is not None:  # stopping for a signal: the GIF waits for the real end
            return
        if self.interpolation_steps and pl_module.num_classes and trainer.is_global_zero:
            grid = class_interpolation_grid(pl_module, self.dirpath / "class_interpolation.png",
                                            self.interpolation_steps, self.seed)
            if self.log_to_loggers:
                log_image(trainer, "samples/class_interpolation", grid, pl_module.generator_step)
        if self.gif_path and trainer.is_global_zero:
            write_gif(sorted(self.dirpath.glob("step_*.png")), self.gif_path, self.gif_frame_ms)


@torch.no_grad()
def class_interpolation_grid(pl_module, path: Path, steps: int = 8, seed: int = 1234) -> torch.Tensor:
    """Write the class-interpolation grid of a conditional GAN (EMA generator) to ``path``."""
    from ganlab.conditional import interpolation_labels, soft_class_labels

    labels, _ = interpolation_labels(pl_module.num_classes, pl_module.label_kind, steps)
    rows = labels.shape[0] // steps
    gen = torch.Generator().manual_seed(seed)
    z = torch.randn(rows, pl_module.z_dim, generator=gen).repeat_interleave(steps, dim=0)
    with soft_class_labels(pl_module):
        fakes = pl_module.sample(z.to(pl_module.device), labels.to(pl_module.device))
    return save_grid(to_uint8(fakes).cpu(), path, steps)


def write_gif(frames: list[Path], path: Path, frame_ms: int = 200) -> None:
    """Animated GIF of the sample grids (Pillow); the last frame is held three times longer."""
    if not frames:
        return
    images = [Image.open(f).convert("RGB") for f in frames]
    durations = [frame_ms] * (len(images) - 1) + [frame_ms * 3]
    path.parent.mkdir(parents=True, exist_ok=True)
    images[0].save(path, save_all=True, append_images=images[1:], duration=durations, loop=0, optimize=False)
