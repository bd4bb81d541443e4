"""The one door to a trained run: :func:`open_run` reads a checkpoint once and returns everything the
commands that use a trained GAN need, decided in one place.

* the bytes: read once; ``sha256`` is of exactly the bytes that were loaded (the manifest of
  ``ganlab.generate`` records it), and the checkpoint is loaded from those bytes safely
  (:func:`ganlab.checkpoints.load_checkpoint`: ``weights_only``, the stored content digest);
* the model: rebuilt from the stored config after the ``_target_`` allowlist check, in eval mode,
  on ``device`` (:func:`ganlab.utils.device.choose_device`: ``auto`` = CUDA when available);
* the generator: the EMA generator when asked for and present, else the raw one (``Run.ema``);
* the labels (:class:`ganlab.labels.LabelInfo`) and the training data's config (``data_config``;
  :meth:`Run.datamodule` rebuilds it through the allowlist).

``ganlab.load`` (:mod:`ganlab.api`), ``ganlab.generate``, ``ganlab.evaluate`` and ``ganlab.selection``
open checkpoints only through here. ``path`` may be a ``.ckpt`` file or a run folder (its loadable
checkpoint furthest into training). ``trust=True`` (``trust_checkpoint=true``) lifts the safety checks for a file
you trust. Every failure is one :class:`ganlab.checkpoints.CheckpointError` naming the file.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ganlab.checkpoints import (CheckpointError, checkpoint_candidates, instantiate_from_checkpoint, load_checkpoint,
                                most_trained_loadable, stored_data_state, stored_model_config, training_progress)
from ganlab.labels import LabelInfo
from ganlab.utils.device import choose_device


@dataclass
class Run:
    """A trained GAN opened by :func:`open_run`."""

    path: str  # the .ckpt file
    sha256: str  # of the bytes loaded
    checkpoint: dict[str, Any]
    model: Any  # ganlab.models.GAN, eval mode, on ``device``
    ema: bool  # sample from the EMA generator (asked for and present)
    device: torch.device
    labels: LabelInfo
    trust: bool = False

    @property
    def model_config(self) -> dict[str, Any] | None:
        return stored_model_config(self.checkpoint)

    @property
    def data_state(self) -> dict[str, Any]:
        """The training data's stored state (:func:`ganlab.checkpoints.stored_data_state`)."""
        return stored_data_state(self.checkpoint)

    @property
    def data_config(self) -> dict[str, Any] | None:
        """The config that rebuilds the training datamodule (``None`` for checkpoints without one)."""
        return self.data_state.get("data_config")

    @property
    def run_config(self) -> str | None:
        return run_config_for_checkpoint(self.path)

    def datamodule(self) -> Any:
        """The training datamodule from :attr:`data_config` (``_target_`` allowlist unless ``trust``),
        prepared and set up."""
        if not self.data_config:
            raise CheckpointError(f"{self.path} stores no training data config (written before ganlab stored it)")
        dm = instantiate_from_checkpoint(dict(self.data_config), path=self.path, what="data config", trust=self.trust)
        dm.prepare_data()
        dm.setup("fit")
        return dm


def run_config_for_checkpoint(ckpt: str | os.PathLike) -> str | None:
    """``<run>/.hydra/config.yaml`` of the training run that wrote ``<run>/checkpoints/x.ckpt``."""
    cfg = Path(ckpt).resolve().parent.parent / ".hydra" / "config.yaml"
    return str(cfg) if cfg.is_file() else None


def _read(path: str, trust: bool) -> tuple[dict[str, Any], str]:
    if not os.path.isfile(path):
        raise CheckpointError(f"checkpoint {path}: no such file")
    with open(path, "rb") as f:
        blob = f.read()
    return load_checkpoint(path, map_location="cpu", trust=trust, data=blob), hashlib.sha256(blob).hexdigest()


def open_run(path: str | os.PathLike, *, device: str | torch.device | None = "auto", ema: bool = True,
             trust: bool = False) -> Run:
    """Open the checkpoint at ``path`` (a ``.ckpt`` file, or a run folder / its ``checkpoints/``: the
    loadable checkpoint there furthest into training) once; see the module docstring."""
    from ganlab.models import load_gan

    p = Path(path)
    if p.is_dir():
        folder = p / "checkpoints" if (p / "checkpoints").is_dir() else p
        found = most_trained_loadable(checkpoint_candidates(folder), lambda c: _read(str(c), trust),
                                      progress=lambda read: training_progress(read[0]))
        if found is None:
            raise CheckpointError(f"{path}: no loadable checkpoint (*.ckpt) in {folder}")
        ckpt_path, (ckpt, sha256) = str(found[0]), found[1]
    elif p.is_file():
        ckpt_path = str(p)
        ckpt, sha256 = _read(ckpt_path, trust)
    else:
        raise CheckpointError(f"{path}: no such checkpoint file or run folder")
    if "state_dict" not in ckpt or not stored_model_config(ckpt):
        raise CheckpointError(f"{ckpt_path} is not a ganlab.train checkpoint (no ganlab model config inside)")
    dev = choose_device(device)
    model = load_gan(ckpt_path, trust=trust, checkpoint=ckpt).to(dev)
    use_ema = bool(ema) and getattr(model, "generator_ema", None) is not None
    return Run(ckpt_path, sha256, ckpt, model, use_ema, dev, LabelInfo.of(model, stored_data_state(ckpt)), trust)


__all__ = ["Run", "open_run", "run_config_for_checkpoint"]
