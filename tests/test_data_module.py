"""The datamodule on every data config: prepare_data builds the cache, setup only reads it."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from data_fixtures import SHARED_DATA, solid_png
from hydra.utils import instantiate


pytestmark = pytest.mark.usefixtures("private_cache")

needs_shared = pytest.mark.skipif(
    not (SHARED_DATA / "celeba-subset").is_dir() or not (SHARED_DATA / "fashion-mnist").is_dir(),
    reason=f"no shared data under {SHARED_DATA}",
)


def _module(make_cfg, tmp_path, *overrides):
    cfg = make_cfg(tmp_path, *overrides, "data.batch_size=8", tiny=False)
    return cfg, instantiate(cfg.data)


def _first_batch(dm):
    first = dm._prepare(progress=False)  # what prepare_data runs
    built = first.manifest["counts"]["images"] if first.manifest["cache"]["built"] else 0
    dm.setup("fit")
    assert not dm.prepared.manifest["cache"]["built"]  # setup is a cache hit
    x, y, flip = next(iter(dm.train_dataloader()))
    assert x.dtype == torch.uint8
    return dm.on_after_batch_transfer((x, y, flip), 0), built


@needs_shared
def test_celeba_config(make_cfg, tmp_path, monkeypatch):
    monkeypatch.setenv("GANLAB_DATA", str(SHARED_DATA))
    cfg, dm = _module(make_cfg, tmp_path, "data=celeba", "data.resolution=16", "data.max_images=300",
                      "data.labels=[Male,Eyeglasses]")
    assert cfg.data.root == f"{SHARED_DATA}/celeba-subset"
    (x, y), built = _first_batch(dm)
    assert built == 300 and x.shape == (8, 3, 16, 16) and y.shape == (8, 2)
    assert -1.0 <= float(x.min()) and float(x.max()) <= 1.0
    assert dm.class_names == ["Male", "Eyeglasses"] and dm.label_kind == "multi_hot"
    assert str(tmp_path / "cache" / "data") in dm.prepared.manifest["cache"]["images"]


@needs_shared
def test_fashion_mnist_config(make_cfg, tmp_path, monkeypatch):
    monkeypatch.setenv("GANLAB_DATA", str(SHARED_DATA))
    _, dm = _module(make_cfg, tmp_path, "data=fashion_mnist", "data.labels=class", "data.split=test")
    (x, y), _ = _first_batch(dm)
    assert x.shape == (8, 1, 28, 28) and y.dtype == torch.int64 and dm.num_classes == 10
    assert len(dm.split_images("test")) == 10000 and dm.image_shape == (1, 28, 28)


def test_folder_config(make_cfg, tmp_path):
    root = tmp_path / "imgs"
    for i in range(24):
        solid_png(root / ("cats" if i % 2 else "dogs") / f"img{i}.png", 10 * i)
    _, dm = _module(make_cfg, tmp_path, "data=folder", f"data.root={root}", "data.resolution=8",
                    "data.labels=class", "data.val_fraction=0.25")
    (x, y), built = _first_batch(dm)
    assert built == 24 and x.shape == (8, 3, 8, 8) and dm.class_names == ["cats", "dogs"]
    assert len(dm.split_images("train")) == 18 and len(dm.split_labels("val")) == 6
    assert np.isin(y.numpy(), [0, 1]).all()
