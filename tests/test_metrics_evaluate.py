"""python -m ganlab.evaluate: checkpoints and image folders, reports that state their protocol."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from omegaconf import OmegaConf
from PIL import Image

from _metrics_helpers import REPO, StubExtractor, compose_cfg, session_weights
from ganlab.evaluate import evaluate
from ganlab.train import train

PROTOCOL_KEYS = ("n_real", "n_fake", "reference_split", "resolution_real", "resolution_fake", "resize",
                 "extractor", "weights_sha256", "seed")


def eval_cfg(train_cfg, out, **kw):
    base = {"ckpt": None, "fake_dir": None, "n_fake": 20, "n_real": None, "split": "train",
            "metrics": ["fid", "kid", "prc", "dc"], "out": str(out), "batch_size": 8, "seed": 0, "device": "cpu",
            "kid_subset_size": 10, "memorization": True, "memorization_pairs": 4,
            "cache_dir": f"{train_cfg.paths.cache_dir}/metrics/reference", "paths": train_cfg.paths,
            "data": train_cfg.data}
    base.update(kw)
    return OmegaConf.create(base)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny DCGAN run: its last.ckpt and config."""
    tmp = tmp_path_factory.mktemp("evalrun")
    cfg = compose_cfg(tmp, "logger=csv", "generator_steps=4", "callbacks=[model_checkpoint]")
    train(cfg)
    ckpt = tmp / "run" / "checkpoints" / "last.ckpt"
    assert ckpt.is_file()
    return cfg, ckpt


def test_evaluate_checkpoint_writes_json_markdown_and_pairs(trained, tmp_path):
    cfg, ckpt = trained
    ext = StubExtractor()
    res = evaluate(eval_cfg(cfg, tmp_path / "a", ckpt=str(ckpt)), extractor=ext)
    data = json.loads((tmp_path / "a" / "metrics.json").read_text())
    assert set(data["values"]) == {"fid", "kid", "kid_std", "precision", "recall", "f1", "density", "coverage"}
    p = data["protocol"]
    assert all(p.get(k) is not None for k in PROTOCOL_KEYS)
    assert p["n_fake"] == 20 and p["reference_split"] == "train" and p["resolution_fake"] == "16x16"
    assert p["n_real"] == res["protocol"]["n_real"] > 20 and p["kid"]["subset_size"] == 10
    assert data["inputs"]["generator_step"] == 4 and data["inputs"]["ema"] is True
    md = (tmp_path / "a" / "metrics.md").read_text()
    assert "| fid |" in md and "## Protocol" in md and "weights_sha256" in md and "Memorization" in md
    mem = data["memorization"]
    assert 0 <= mem["frac_closer_than_real_median"] <= 1 and len(mem["closest_pairs"]) == 4
    png = Image.open(tmp_path / "a" / "memorization_pairs.png")
    assert png.size[1] == 16 + 2 * 2  # one row of 4 pairs of 16x16 images
    # second evaluation of the same data: reals come from the cache, only fakes are extracted
    n_before = ext.images_processed
    res2 = evaluate(eval_cfg(cfg, tmp_path / "b", ckpt=str(ckpt)), extractor=ext)
    assert res2["seconds"]["reference_from_cache"] and ext.images_processed - n_before == 20
    assert res2["values"] == res["values"]  # fixed seed: same samples, same numbers


def test_data_config_comes_from_the_training_run(trained, tmp_path):
    cfg, ckpt = trained
    hydra_dir = ckpt.parent.parent / ".hydra"
    hydra_dir.mkdir(exist_ok=True)
    OmegaConf.save(cfg, hydra_dir / "config.yaml")
    c = eval_cfg(cfg, tmp_path, ckpt=str(ckpt), metrics=["fid"], memorization=False)
    c.pop("data")
    res = evaluate(c, extractor=StubExtractor())
    assert res["protocol"]["resolution_real"] == "16x16"
    with pytest.raises(ValueError, match="exactly one"):
        evaluate(eval_cfg(cfg, tmp_path, ckpt=str(ckpt), fake_dir=str(tmp_path)), extractor=StubExtractor())


def test_fake_dir_of_training_copies_is_flagged_as_memorized(trained, tmp_path):
    import hydra

    cfg, _ = trained
    dm = hydra.utils.instantiate(cfg.data)
    dm.setup("fit")
    copies = dm.split_images("train")[:12]
    (tmp_path / "fakes").mkdir()
    for i, im in enumerate(copies):
        Image.fromarray(np.ascontiguousarray(im.transpose(1, 2, 0))).save(tmp_path / "fakes" / f"{i:03d}.png")
    res = evaluate(eval_cfg(cfg, tmp_path / "out", fake_dir=str(tmp_path / "fakes"), n_fake=50,
                            metrics=["fid", "prc"]), extractor=StubExtractor())
    assert res["protocol"]["n_fake"] == 12 and res["inputs"]["fake_dir"].endswith("fakes")
    assert res["memorization"]["frac_closer_than_real_median"] == 1.0
    assert res["memorization"]["fake_nn_min"] == 0.0 and res["values"]["precision"] == 1.0


def test_cli_with_hydra_and_real_inception(trained, tmp_path):
    """`python -m ganlab.evaluate fake_dir=... data=faces ...` end to end (8 + 8 images; KID and
    precision/recall only: FID's 2048x2048 eigendecomposition is covered by the other tests)."""
    cfg, _ = trained
    (tmp_path / "fakes").mkdir()
    rng = np.random.default_rng(0)
    for i in range(8):
        Image.fromarray(rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)).save(tmp_path / "fakes" / f"{i}.png")
    env = {**os.environ, "GANLAB_INCEPTION_WEIGHTS": session_weights().path}
    cmd = [sys.executable, "-m", "ganlab.evaluate", f"fake_dir={tmp_path / 'fakes'}", "data=faces",
           "data.source.num_images=96", "data.resolution=16", f"paths.root_dir={tmp_path}",
           f"paths.cache_dir={cfg.paths.cache_dir}", f"out={tmp_path / 'out'}", "metrics.n_real=8", "metrics.metrics=[kid,prc]",
           "metrics.kid_subset_size=4", "device=cpu", "memorization_pairs=2"]
    r = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "kid:" in r.stdout and "precision:" in r.stdout
    data = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert data["protocol"]["weights_sha256"] == session_weights().sha256
    assert data["protocol"]["n_real"] == 8 and data["protocol"]["n_fake"] == 8
    assert data["values"]["kid"] > 0 and (tmp_path / "out" / "metrics.md").is_file()
    assert (tmp_path / "out" / "memorization_pairs.png").is_file()
