"""Helpers for the conditional-GAN tests (not a test module): a tiny Fashion-MNIST-like IDX data set
and tiny conditional training runs."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np

from ganlab.train import train

QUIET = ["logger=[]", "++trainer.enable_progress_bar=false", "++trainer.enable_model_summary=false"]
TINY_DCGAN = ["model.generator.base_width=8", "model.discriminator.base_width=8", "model.generator.z_dim=16"]
TINY_MLP = ["model.generator.hidden=[32,64]", "model.discriminator.hidden=[64,32]", "model.generator.z_dim=16"]
FACES_MULTI_HOT = ["data.labels=[Smiling,Eyeglasses]", "model.generator.label_kind=multi_hot"]  # num_classes: data


def _write_idx(path: Path, array: np.ndarray) -> None:
    header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    path.write_bytes(gzip.compress(header + np.ascontiguousarray(array, dtype=np.uint8).tobytes()))


def pattern_images(labels: np.ndarray, seed: int) -> np.ndarray:
    """28x28 images whose class is visible: class c lights a bright bar at rows 2c+3..2c+5, plus noise."""
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 60, (len(labels), 28, 28)).astype(np.int64)
    for i, c in enumerate(labels):
        x[i, 2 * int(c) + 3 : 2 * int(c) + 6, 4:24] += 180
    return x.clip(0, 255).astype(np.uint8)


def write_fashion_like(folder: Path, n_train: int = 200, n_test: int = 100) -> Path:
    """Official Fashion-MNIST file names (.gz IDX) with 10 balanced, learnable classes."""
    folder.mkdir(parents=True, exist_ok=True)
    for split, n, seed in (("train", n_train, 0), ("t10k", n_test, 1)):
        y = (np.arange(n) % 10).astype(np.uint8)
        _write_idx(folder / f"{split}-images-idx3-ubyte.gz", pattern_images(y, seed))
        _write_idx(folder / f"{split}-labels-idx1-ubyte.gz", y)
    return folder


def fashion_overrides(root: Path) -> list[str]:
    return ["data=fashion_mnist", f"data.root={root}", "data.labels=class", "data.batch_size=16",
            "data.resolution=28"]  # model.generator.num_classes: from the data (10)


def train_tiny(make_cfg, run_dir: Path, *overrides: str):
    """A few generator steps of a tiny conditional model; returns the trainer."""
    cfg = make_cfg(run_dir, *overrides, tiny=False)
    _, trainer = train(cfg)
    return trainer

CKPT_OVERRIDES = ["generator_steps=2", "checkpoint_every=2", "callbacks=[model_checkpoint]"]
