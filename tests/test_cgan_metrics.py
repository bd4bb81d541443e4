"""Label fidelity and per-class FID (ganlab.metrics.classifier), through `ganlab.evaluate` for a
conditional checkpoint; and the classifier's accuracy on real Fashion-MNIST (slow, shared data)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from _cgan_helpers import CKPT_OVERRIDES, QUIET, TINY_DCGAN, fashion_overrides, pattern_images, write_fashion_like
from _metrics_helpers import StubExtractor
from ganlab.metrics.classifier import (accuracy_report, get_label_classifier, per_class_fid, predict,
                                       train_classifier)

SHARED_FMNIST = Path(os.environ.get("GANLAB_DATA", Path(__file__).resolve().parents[2] / "shared" / "data")) / "fashion-mnist"


def test_classifier_learns_the_pattern_classes():
    torch.manual_seed(0)
    y = np.arange(400) % 10
    x = pattern_images(y, seed=0)[:, None]
    clf = train_classifier(x, y, num_classes=10, steps=60, batch_size=64, seed=0)
    y_test = np.arange(200) % 10
    rep = accuracy_report(predict(clf, pattern_images(y_test, seed=5)[:, None]), y_test, "class",
                          [f"c{i}" for i in range(10)])
    assert rep["accuracy"] > 0.95 and set(rep["per_class"]) == {f"c{i}" for i in range(10)}
    assert rep["per_class"]["c3"]["n"] == 20


def test_multi_hot_report():
    labels = np.array([[1, 0], [1, 1], [0, 0], [0, 1]], dtype=np.float32)
    probs = np.array([[0.9, 0.2], [0.2, 0.8], [0.1, 0.1], [0.3, 0.4]])
    rep = accuracy_report(probs, labels, "multi_hot", ["A", "B"])
    assert rep["per_class"]["A"] == {"acc_on": 0.5, "acc_off": 1.0, "balanced": 0.75, "n_on": 2, "n_off": 2}
    assert rep["per_class"]["B"]["acc_on"] == 0.5 and rep["exact_match"] == 0.5
    assert rep["accuracy"] == pytest.approx(0.75)


def test_per_class_fid_is_zero_for_identical_classes_and_large_for_swapped():
    rng = np.random.default_rng(0)
    feats = np.concatenate([rng.normal(0, 1, (50, 4)), rng.normal(5, 1, (50, 4))]).astype(np.float32)
    labels = np.repeat([0, 1], 50)
    same = per_class_fid(feats, labels, feats, labels, "class", ["a", "b"])
    assert same["per_class"]["a"]["fid"] == pytest.approx(0.0, abs=1e-3) and same["mean"] == pytest.approx(0, abs=1e-3)
    swapped = per_class_fid(feats, labels, feats, 1 - labels, "class", ["a", "b"])
    assert swapped["mean"] > 50 and swapped["per_class"]["b"]["n_fake"] == 50


def test_evaluate_reports_label_fidelity_and_intra_fid(make_cfg, tmp_path, monkeypatch):
    import ganlab.metrics.classifier as clf_mod
    from ganlab.data.datamodule import GANDataModule
    from ganlab.data.sources import FashionMNIST
    from ganlab.evaluate import evaluate
    from ganlab.train import train

    monkeypatch.setitem(clf_mod.DEFAULTS, "steps", 80)  # the pattern classes need few steps
    root = write_fashion_like(tmp_path / "fmnist", n_train=200, n_test=100)
    train(make_cfg(tmp_path, "model=cgan", *TINY_DCGAN, *fashion_overrides(root), "data.resolution=16",
                   "trainer.accelerator=cpu", *CKPT_OVERRIDES, *QUIET, tiny=False))
    dm = GANDataModule(source=FashionMNIST, root=str(root), resolution=16, channels=1, labels="class",
                       cache_dir=str(tmp_path / "cache" / "data"))
    dm.prepare_data()
    cfg = {"ckpt": str(tmp_path / "run" / "checkpoints" / "last.ckpt"), "n_fake": 60, "n_real": None, "split": "train",
           "metrics": ["fid"], "out": str(tmp_path / "eval"), "batch_size": 32, "seed": 0, "device": "cpu",
           "memorization": False, "cache_dir": str(tmp_path / "cache" / "ref"),
           "classifier_cache_dir": str(tmp_path / "cache" / "clf")}
    result = evaluate(cfg, extractor=StubExtractor(), datamodule=dm)
    cond = result["conditional"]
    assert cond["label_kind"] == "class" and cond["label_fidelity"]["n"] == 60
    assert 0.0 <= cond["label_fidelity"]["accuracy"] <= 1.0
    held = cond["classifier"]["real_heldout"]
    assert held["split"] == "test" and held["accuracy"] > 0.9  # the pattern classes are easy
    assert sum(p["n_fake"] for p in cond["intra_fid"]["per_class"].values()) == 60
    assert cond["intra_fid"]["mean"] is not None
    md = open(tmp_path / "eval" / "metrics.md").read()
    assert "label fidelity (classifier accuracy on the fakes)" in md and "intra-FID" in md
    assert json.load(open(tmp_path / "eval" / "metrics.json"))["conditional"]["label_fidelity"]["n"] == 60
    # the classifier is cached per data fingerprint: a second evaluation reuses it
    result = evaluate({**cfg, "out": str(tmp_path / "eval2")}, extractor=StubExtractor(), datamodule=dm)
    assert result["conditional"]["classifier"]["from_cache"] is True


@pytest.mark.slow
@pytest.mark.skipif(not SHARED_FMNIST.is_dir(), reason="shared Fashion-MNIST not present")
def test_label_fidelity_classifier_on_real_fashion_mnist(tmp_path):
    """The default classifier (1,500 steps of batch 128 on the 60,000 training images) scores
    >= 89% on the 10,000 real test images (measured: 90.1%, 80 s of CPU on one thread)."""
    from ganlab.data.datamodule import GANDataModule

    torch.set_num_threads(1)
    dm = GANDataModule(source=FashionMNIST, root=str(SHARED_FMNIST), resolution=28, channels=1, labels="class",
                       cache_dir=str(tmp_path / "data"))
    dm.prepare_data()
    dm.setup()
    _, info = get_label_classifier(dm, cache_dir=str(tmp_path / "clf"))
    held = info["real_heldout"]
    assert held["split"] == "test" and held["n"] == 10000
    assert held["accuracy"] >= 0.89, held
    assert os.path.isfile(info["path"])


def test_random_translate_shifts_within_range_with_background_fill():
    from ganlab.metrics.classifier import random_translate

    x = torch.full((64, 1, 8, 8), -1.0)
    x[:, :, 3, 3] = 1.0  # one bright pixel
    out = random_translate(x, 2, torch.Generator().manual_seed(0))
    assert out.shape == x.shape and ((out == 1.0).sum((1, 2, 3)) == 1).all()  # never cropped away at t=2
    pos = torch.nonzero(out[:, 0] == 1.0)[:, 1:]
    assert pos.min() >= 1 and pos.max() <= 5 and len({tuple(p) for p in pos.tolist()}) > 10
    assert set(out.unique().tolist()) == {-1.0, 1.0}
    assert torch.equal(out, random_translate(x, 2, torch.Generator().manual_seed(0)))
