"""What the loggers get besides scalars and sample grids (global rank 0 only):

- at fit start, the model summary: ``<run>/model_summary.txt``, TensorBoard text
  ``model/summary``, and parameter counts in the wandb run summary (``model/params/...``);
- at fit end, per-class sample grids of a conditional model (``samples/class/<name>``: one
  grid per class or attribute, latents ``0 .. n-1`` of :mod:`ganlab.sampling`'s plan of ``seed``
  in every grid, EMA generator; PNGs in ``<run>/samples/classes/``), and the progress GIF written by the sample-grid callback as ``wandb.Video`` (``samples/progress``;
  TensorBoard shows the same progression with the step slider of ``samples/fake``);
- when fitting ends (or fails), the wandb run is finished, so the next job of a multirun that runs
  in the same process (basic / Optuna sweeper) gets its own run instead of reusing this one.

Scalars (losses, D scores, ``metrics/*``) and the config reach every logger through Lightning
and ``ganlab.train``; images go through :func:`ganlab.callbacks.log_image.log_image`.
"""

from __future__ import annotations

from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.loggers import TensorBoardLogger, WandbLogger

from ganlab import sampling
from ganlab.callbacks.log_image import log_image
from ganlab.labels import constant_label_tensor
from ganlab.utils.files import folder_name
from ganlab.sampling import save_grid


class LoggerExtras(L.Callback):
    def __init__(
        self,
        run_dir: str,
        model_summary: bool = True,
        summary_depth: int = 2,
        per_class_grids: bool = True,
        per_class_samples: int = 16,
        max_classes: int = 10,
        seed: int = 4321,
        progress_gif: bool = True,
        finish_wandb: bool = True,
    ) -> None:
        self.run_dir = Path(run_dir)
        self.model_summary = model_summary
        self.summary_depth = summary_depth
        self.per_class_grids = per_class_grids
        self.per_class_samples = per_class_samples
        self.max_classes = max_classes
        self.seed = seed
        self.progress_gif = progress_gif
        self.finish_wandb = finish_wandb

    # -- start ---------------------------------------------------------------------------
    def on_fit_start(self, trainer, pl_module) -> None:
        if not (self.model_summary and trainer.is_global_zero):
            return
        from lightning.pytorch.utilities.model_summary import ModelSummary

        text = str(ModelSummary(pl_module, max_depth=self.summary_depth))
        self.run_dir.mkdir(parents=True, exist_ok=True)
        (self.run_dir / "model_summary.txt").write_text(text + "\n")
        counts = {
            f"model/params/{name}": sum(p.numel() for p in module.parameters())
            for name, module in pl_module.named_children()
            if isinstance(module, torch.nn.Module) and any(True for _ in module.parameters())
        }
        for logger in trainer.loggers:
            if isinstance(logger, TensorBoardLogger):
                body = "\n".join("    " + line for line in text.splitlines())  # markdown code block
                logger.experiment.add_text("model/summary", body, global_step=int(pl_module.generator_step))
            elif isinstance(logger, WandbLogger):
                logger.experiment.summary.update(counts)

    # -- end -------------------------------------------------------------------------------
    def on_fit_end(self, trainer, pl_module) -> None:
        if not trainer.is_global_zero:
            return
        step = int(pl_module.generator_step)
        if self.per_class_grids and getattr(pl_module, "num_classes", 0):
            self._class_grids(trainer, pl_module, step)
        if self.progress_gif:
            gif = next((Path(cb.gif_path) for cb in trainer.callbacks if getattr(cb, "gif_path", None)), None)
            if gif is not None and gif.is_file():
                for logger in trainer.loggers:
                    if isinstance(logger, WandbLogger):
                        import wandb

                        logger.experiment.log({"samples/progress": wandb.Video(str(gif), format="gif"),
                                               "trainer/global_step": step})

    def _class_grids(self, trainer, pl_module, step: int) -> None:
        n, k = self.per_class_samples, int(pl_module.num_classes)
        dm = trainer.datamodule
        names = list(getattr(dm, "class_names", []) or []) if dm is not None else []
        z = sampling.latents(self.seed, n, pl_module.z_dim)  # the same latents 0 .. n-1 for every class
        nrow = max(1, int(n**0.5))
        for c in range(min(k, self.max_classes)):
            images = sampling.render(pl_module, z, constant_label_tensor(c, n, k, pl_module.label_kind))
            name = names[c] if c < len(names) else str(c)
            safe = folder_name(name)
            grid = save_grid(images, self.run_dir / "samples" / "classes" / f"{c:02d}_{safe}.png", nrow)
            log_image(trainer, f"samples/class/{safe}", grid, step, caption=f"{name}, generator step {step}")

    # -- wandb runs end with the fit -----------------------------------------------------------
    def _finish(self, trainer, exit_code: int) -> None:
        if not self.finish_wandb:
            return
        for logger in trainer.loggers:
            if isinstance(logger, WandbLogger) and getattr(logger, "_experiment", None) is not None:
                run = logger._experiment
                if hasattr(run, "finish"):
                    run.finish(exit_code=exit_code)

    def teardown(self, trainer, pl_module, stage: str) -> None:
        if stage == "fit":
            self._finish(trainer, 0)

    def on_exception(self, trainer, pl_module, exception: BaseException) -> None:
        self._finish(trainer, 1)


__all__ = ["LoggerExtras"]
