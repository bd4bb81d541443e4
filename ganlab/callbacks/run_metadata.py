"""Run metadata in every checkpoint: the data config, class names and label counts.

Added by :func:`ganlab.train.train` to every run. ``setup`` (after the datamodule's) checks
that a conditional model's ``num_classes``/``label_kind`` match the data's labels; every
checkpoint then carries ``checkpoint["ganlab_data"]`` =
``{"data_config", "class_names", "label_kind", "num_classes", "label_counts", "fingerprint"}``,
which ``ganlab.generate`` and ``ganlab.evaluate`` read. (The GAN module's own
``checkpoint["ganlab"]`` is written after the callbacks', so this is a separate key.)
"""

from __future__ import annotations

from typing import Any

import lightning as L


class RunMetadata(L.Callback):
    """Checks the label spec at setup and stores the run's data metadata in checkpoints."""

    def __init__(self, data_config: dict | None) -> None:
        self.data_config = data_config
        self.meta: dict[str, Any] = {"data_config": data_config}

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        from ganlab.conditional import check_label_spec, label_metadata

        dm = trainer.datamodule
        if dm is None or not hasattr(dm, "label_kind"):
            return
        check_label_spec(pl_module, dm)
        self.meta = {"data_config": self.data_config, **label_metadata(dm)}

    def on_save_checkpoint(self, trainer, pl_module, checkpoint: dict[str, Any]) -> None:
        checkpoint["ganlab_data"] = self.meta
