"""Sample selection in ``ganlab.generate`` (ganlab.selection): truncation as specified (psi = 1 is the
identity), classifier filter and discriminator rejection sampling deterministic, meeting the count,
recording acceptance rates and the selector's sha256, failing clearly; ``ganlab.evaluate fake_dir=``
recursing into the class folders."""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from _cgan_helpers import QUIET, TINY_DCGAN, fashion_overrides, train_tiny, write_fashion_like
from _metrics_helpers import StubExtractor
from ganlab.generate import generate
from ganlab.selection import SelectionError, drs_f, latent, parse_selection, truncation_threshold



def plain_latent(seed: int, index: int, z_dim: int) -> torch.Tensor:
    """The documented noise scheme, written out: randn from a generator seeded by SeedSequence([seed, i])."""
    state = np.random.SeedSequence([seed, index]).generate_state(2, dtype=np.uint32)
    return torch.randn(z_dim, generator=torch.Generator().manual_seed(int(state[0]) << 32 | int(state[1])))


CKPT = ["generator_steps=3", "checkpoint_every=3", "callbacks=[model_checkpoint]"]


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """A tiny class-conditional checkpoint on learnable Fashion-MNIST-like data (16 px)."""
    from conftest import compose_cfg

    base = tmp_path_factory.mktemp("sel")
    root = write_fashion_like(base / "fmnist", n_train=100, n_test=50)
    train_tiny(compose_cfg, base / "cls", "model=cgan", *TINY_DCGAN, *fashion_overrides(root), "data.resolution=16",
               "trainer.accelerator=cpu", *CKPT, *QUIET)
    return {"ckpt": base / "cls" / "run" / "checkpoints" / "last.ckpt", "root": root, "base": base}


def run(setup, out, **kw):
    return generate({"ckpt": str(setup["ckpt"]), "out": str(out), "progress": False, "device": "cpu",
                     "classifier_cache_dir": str(setup["base"] / "clf"), "filter_classifier_steps": 40, **kw})


def files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*.png"))}


# -- truncation -----------------------------------------------------------------------------------------
def test_truncation_threshold_and_psi_one_identity():
    assert truncation_threshold(1.0) == math.inf
    assert truncation_threshold(0.5) == pytest.approx(0.6744897, abs=1e-6)
    assert truncation_threshold(0.9) == pytest.approx(1.6448536, abs=1e-6)
    for i in range(20):
        assert torch.equal(latent(3, i, 32, 1.0), plain_latent(3, i, 32))
    with pytest.raises(SelectionError, match="truncation"):
        parse_selection({"truncation": 0.0})
    with pytest.raises(SelectionError, match="truncation"):
        parse_selection({"truncation": 1.5})


def test_truncation_redraws_exactly_the_components_beyond_the_threshold():
    t = truncation_threshold(0.5)
    full = torch.stack([latent(0, i, 64) for i in range(400)])
    trunc = torch.stack([latent(0, i, 64, 0.5) for i in range(400)])
    assert trunc.abs().max() <= t
    inside = full.abs() <= t
    assert torch.equal(trunc[inside], full[inside])  # kept components unchanged
    assert not torch.equal(trunc, full) and (~inside).float().mean() == pytest.approx(0.5, abs=0.02)
    # each component follows N(0,1) truncated to [-t, t]: variance 1 - 2 t phi(t) / (2 Phi(t) - 1)
    phi = math.exp(-t * t / 2) / math.sqrt(2 * math.pi)
    assert trunc.var().item() == pytest.approx(1 - 2 * t * phi / 0.5, abs=0.01)
    assert torch.equal(trunc, torch.stack([latent(0, i, 64, 0.5) for i in range(400)]))  # deterministic


def test_generate_truncation(setup, tmp_path):
    base = run(setup, tmp_path / "a", per_class=2)
    same = run(setup, tmp_path / "b", per_class=2, truncation=1.0)
    assert files(tmp_path / "a") == files(tmp_path / "b")
    m = run(setup, tmp_path / "c", per_class=2, truncation=0.3)
    assert set(files(tmp_path / "c")) == set(files(tmp_path / "a"))
    assert all(files(tmp_path / "c")[f] != files(tmp_path / "a")[f] for f in files(tmp_path / "a"))
    sel = m["selection"]
    assert sel["truncation"] == 0.3 and sel["truncation_threshold"] == pytest.approx(0.3853205, abs=1e-6)
    assert sel["filter"] is None and same["selection"]["truncation"] == 1.0 and base["num_images"] == 20


# -- classifier filter ------------------------------------------------------------------------------------
def _probabilities(setup, folder: Path, manifest: dict) -> np.ndarray:
    from ganlab.metrics.classifier import CompactCNN

    blob = torch.load(manifest["selection"]["selector"]["path"], weights_only=True)
    clf = CompactCNN(1, 10, blob["info"]["widths"])
    clf.load_state_dict(blob["state_dict"])
    clf.eval()
    x = np.stack([np.asarray(Image.open(folder / r["file"]))[None] for r in manifest["images"]])
    y = torch.tensor([r["class_index"] for r in manifest["images"]])
    with torch.no_grad():
        p = torch.softmax(clf(torch.from_numpy(x).float() / 127.5 - 1), 1)
    return p.gather(1, y[:, None]).squeeze(1).numpy()


def _median_threshold(setup, tmp_path) -> float:
    """A threshold every class passes about half the time: the smallest per-class median score of the
    first 40 candidates (a 3-step GAN's images are far from the classes, so a fixed one is fragile)."""
    from ganlab.metrics.classifier import CompactCNN
    from ganlab.models import load_gan
    from ganlab.selection import classifier_scores

    m = run(setup, tmp_path / "probe", per_class=1, filter="classifier", filter_threshold=0.0)
    blob = torch.load(m["selection"]["selector"]["path"], weights_only=True)
    clf = CompactCNN(1, 10, blob["info"]["widths"])
    clf.load_state_dict(blob["state_dict"])
    score, gan = classifier_scores(clf.eval(), "class"), load_gan(str(setup["ckpt"]))
    medians = []
    for c in range(10):
        z = torch.stack([latent(0, n * 10 + c, gan.z_dim) for n in range(40)])
        labels = torch.full((40,), c)
        medians.append(float(score(gan.sample(z, labels), labels).median()))
    return min(medians)


def test_classifier_filter_meets_count_records_rates_and_is_deterministic(setup, tmp_path):
    thr = _median_threshold(setup, tmp_path)
    kw = {"per_class": 4, "filter": "classifier", "filter_threshold": thr, "min_acceptance": 0.01}
    m = run(setup, tmp_path / "a", batch_size=7, **kw)
    assert m["counts"] == {f: 4 for f in m["counts"]} and m["num_images"] == 40
    sel = m["selection"]
    assert sel["filter"] == "classifier" and sel["threshold"] == thr
    assert sel["selector"]["sha256"] == hashlib.sha256(Path(sel["selector"]["path"]).read_bytes()).hexdigest()
    for name, rec in sel["per_class"].items():
        assert rec["kept"] == 4 and rec["acceptance_rate"] == pytest.approx(4 / rec["candidates"])
    assert any(r["acceptance_rate"] < 1 for r in sel["per_class"].values())  # the filter did reject
    # every written image scores >= the threshold with the recorded classifier
    assert (_probabilities(setup, tmp_path / "a", m) >= thr - 1e-6).all()
    # latent index = n * K + class: each row's index is congruent to its class mod 10
    assert all(r["latent_index"] % 10 == r["class_index"] for r in m["images"])
    m2 = run(setup, tmp_path / "b", batch_size=64, **kw)
    assert files(tmp_path / "a") == files(tmp_path / "b") and m2["selection"]["per_class"] == sel["per_class"]


def test_classifier_filter_fails_clearly_and_writes_nothing(setup, tmp_path):
    with pytest.raises(SelectionError, match=r"label '.+' kept \d+ of \d+ candidates \(acceptance rate"):
        run(setup, tmp_path / "out", per_class=50, filter="classifier", filter_threshold=1.0, min_acceptance=0.5)
    assert not (tmp_path / "out").exists()


# -- discriminator rejection sampling --------------------------------------------------------------------
def test_drs_f():
    f = drs_f(np.array([0.0, -1.0, -5.0]), 0.0)
    assert f[0] == pytest.approx(-math.log1p(-math.exp(-1e-6)), rel=1e-6)  # ~ log(1 / eps) at the max
    assert f[1] == pytest.approx(-1.0 - math.log1p(-math.exp(-1.0 - 1e-6)))
    assert np.all(np.diff(f) < 0)  # F falls with the logit


def test_discriminator_filter_deterministic_counts_and_fails_clearly(setup, tmp_path):
    kw = {"per_class": 3, "filter": "discriminator", "drs_burn_in": 50, "min_acceptance": 0.01, "seed": 1}
    m = run(setup, tmp_path / "a", batch_size=16, **kw)
    sel = m["selection"]
    assert sel["filter"] == "discriminator" and len(sel["selector"]["sha256"]) == 64
    assert m["num_images"] == 30
    for rec in sel["per_class"].values():
        assert rec["kept"] == 3 and 0 < rec["acceptance_rate"] <= 1
        assert rec["final_max_logit"] >= rec["burn_in_max_logit"]
    assert any(r["acceptance_rate"] < 1 for r in sel["per_class"].values())
    run(setup, tmp_path / "b", batch_size=5, **kw)
    assert files(tmp_path / "a") == files(tmp_path / "b")
    with pytest.raises(SelectionError, match="filter=discriminator: label 'T-shirt/top'"):
        run(setup, tmp_path / "c", **{**kw, "drs_gamma": 60.0, "min_acceptance": 0.05})


# -- evaluate fake_dir= -------------------------------------------------------------------------------------
def test_evaluate_recurses_into_class_folders(setup, tmp_path, monkeypatch):
    import ganlab.metrics.classifier as clf_mod
    from ganlab.data.datamodule import GANDataModule
    from ganlab.data.sources import FashionMNIST
    from ganlab.evaluate import evaluate

    monkeypatch.setitem(clf_mod.DEFAULTS, "steps", 40)
    run(setup, tmp_path / "syn", per_class=3, filter="classifier", filter_threshold=_median_threshold(setup, tmp_path),
        min_acceptance=0.01)
    dm = GANDataModule(source=FashionMNIST, root=str(setup["root"]), resolution=16, channels=1, labels="class",
                       cache_dir=str(tmp_path / "cache" / "data"))
    dm.prepare_data()
    cfg = {"ckpt": None, "fake_dir": str(tmp_path / "syn"), "n_fake": None, "n_real": None, "split": "train",
           "metrics": ["fid"], "out": str(tmp_path / "eval"), "batch_size": 16, "seed": 0, "device": "cpu",
           "memorization": False, "cache_dir": str(tmp_path / "cache" / "ref"),
           "classifier_cache_dir": str(tmp_path / "cache" / "clf")}
    res = evaluate(cfg, extractor=StubExtractor(), datamodule=dm)
    assert res["protocol"]["n_fake"] == 30  # all ten class folders, not the (empty) top level
    cond = res["conditional"]
    assert cond["label_fidelity"]["n"] == 30
    assert {n: p["n"] for n, p in cond["label_fidelity"]["per_class"].items()} == {n: 3 for n in dm.class_names}
    assert all(p["n_fake"] == 3 and p["fid"] is not None for p in cond["intra_fid"]["per_class"].values())
    manifest = json.loads((tmp_path / "syn" / "manifest.json").read_text())
    want = {c: v["acceptance_rate"] for c, v in manifest["selection"]["per_class"].items()}
    assert res["selection"]["per_class"] == want and res["selection"]["filter"] == "classifier"
    md = (tmp_path / "eval" / "metrics.md").read_text()
    assert "Sample selection" in md and "kept T-shirt/top" in md and "FID Bag (3 fake" in md
    # without a manifest the labels come from the folder names: the same report
    (tmp_path / "syn" / "manifest.json").unlink()
    res2 = evaluate({**cfg, "out": str(tmp_path / "eval2")}, extractor=StubExtractor(), datamodule=dm)
    assert res2["conditional"]["label_fidelity"] == cond["label_fidelity"] and "selection" not in res2
    Image.new("L", (16, 16)).save(tmp_path / "syn" / "Hats.png")
    with pytest.raises(ValueError, match="not classes of the data set"):
        evaluate({**cfg, "out": str(tmp_path / "eval3")}, extractor=StubExtractor(), datamodule=dm)


def test_classifier_filter_refuses_a_foreign_data_target(setup, tmp_path):
    """filter=classifier rebuilds the training data from the checkpoint: a ``_target_`` outside the
    allowlist there stops with one message, before anything is instantiated or written."""
    from ganlab.checkpoints import AtomicCheckpointIO, load_checkpoint

    ckpt = load_checkpoint(setup["ckpt"])
    marker = tmp_path / "PWNED"
    ckpt["datamodule_hyper_parameters"]["source"] = {"_target_": "pathlib.Path.touch", "self": str(marker)}
    bad = tmp_path / "bad_data.ckpt"
    AtomicCheckpointIO().save_checkpoint(ckpt, bad)
    with pytest.raises(SelectionError, match=r"filter=classifier: .*'pathlib.Path.touch'.*outside ganlab, torch"):
        run({**setup, "ckpt": bad, "base": tmp_path}, tmp_path / "out", per_class=2, filter="classifier",
            filter_threshold=0.5)
    assert not marker.exists() and not (tmp_path / "out").exists()


# -- per-class outcomes ---------------------------------------------------------------------------------------
def _half_classifier(path: Path) -> Path:
    """A label classifier (cache format) that answers only classes 0-4, each with probability 1/5: with
    threshold 0.1 every candidate of those passes and none of classes 5-9 does."""
    from ganlab.metrics.classifier import CompactCNN

    clf = CompactCNN(1, 10)
    with torch.no_grad():
        last = clf.head[-1]
        last.weight.zero_()
        last.bias.copy_(torch.tensor([0.0] * 5 + [-30.0] * 5))
    torch.save({"state_dict": clf.state_dict(), "info": {"widths": [16, 32, 64]}, "info_json": "{}"}, path)
    return path


def test_selection_tries_every_class_and_partial_writes_the_passing_ones(setup, tmp_path):
    clf = _half_classifier(tmp_path / "half.pt")
    kw = {"per_class": 3, "filter": "classifier", "filter_classifier": str(clf), "filter_threshold": 0.1,
          "min_acceptance": 0.2}
    names = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]
    # default: one error naming every failed class (not just the first), nothing written
    with pytest.raises(SelectionError) as err:
        run(setup, tmp_path / "strict", **kw)
    assert all(f"label {n!r} kept 0 of 15 candidates" in str(err.value) for n in names[5:])
    assert not any(f"label {n!r}" in str(err.value) for n in names[:5]) and "partial=true" in str(err.value)
    assert not (tmp_path / "strict").exists()
    # partial=true: the passing classes are written, the others named in the manifest
    m = run(setup, tmp_path / "out", partial=True, **kw)
    sel = m["selection"]
    assert sel["failed"] == names[5:]
    assert list(sel["per_class"]) == names  # every class was tried and reported
    outcome = {n: tuple(sel["per_class"][n][k] for k in ("requested", "candidates", "kept", "passed", "written"))
               for n in names}
    assert outcome == {**{n: (3, 3, 3, True, 3) for n in names[:5]}, **{n: (3, 15, 0, False, 0) for n in names[5:]}}
    assert m["num_images"] == 15 and {r["class"] for r in m["images"]} == set(names[:5])
    written = {p.parent.name for p in (tmp_path / "out").rglob("*.png")}
    assert len(written) == 5 and sum(1 for _ in (tmp_path / "out").rglob("*.png")) == 15
    # partial with no class passing: still an error, nothing written
    with pytest.raises(SelectionError, match="10 of 10 labels"):
        run(setup, tmp_path / "none", partial=True, **{**kw, "filter_threshold": 0.5})
    assert not (tmp_path / "none").exists()
    with pytest.raises(SelectionError, match="partial must be true or false"):
        run(setup, tmp_path / "bad", partial="yes", **kw)
