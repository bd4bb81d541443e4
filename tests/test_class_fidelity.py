"""Per-class label fidelity: the metric, its collapse warning, the in-training callback (issue 20)."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest
import torch
from torch import nn

from _cgan_helpers import QUIET, TINY_DCGAN, fashion_overrides, write_fashion_like
from ganlab.callbacks.class_fidelity import ClassFidelity
from ganlab.metrics.classifier import per_class_fidelity, warn_collapsed, within_class_variety
from ganlab.train import train


class ReadsCornerPixel(nn.Module):
    """A 'classifier' whose answer is written in the image: class = top-left pixel value // 20."""

    def __init__(self, k: int) -> None:
        super().__init__()
        self.k = k
        self.dummy = nn.Parameter(torch.zeros(()))

    def forward(self, x):
        c = torch.round((x[:, 0, 0, 0] + 1.0) * 127.5 / 20.0)
        return -(torch.arange(self.k, dtype=x.dtype) - c[:, None]).abs() + 0 * self.dummy


def kept_by_rule(history):
    """The evaluation best_class_fidelity.ckpt should hold: the highest worst gap, at equal gaps more variety in
    the least varied class, at equal both the first (``max`` returns the first of equals: strict improvement)."""
    return max(history, key=lambda h: (h["worst_gap"], h.get("min_variety") or 0.0))


def test_an_equal_worst_gap_is_kept_only_with_more_variety():
    cb = ClassFidelity()
    assert cb._better(-0.1, None)
    cb.best = {"generator_step": 500, "worst_gap": 0.02, "min_variety": 0.2}
    assert not cb._better(0.01, 0.9) and cb._better(0.03, 0.0)
    assert cb._better(0.02, 0.25) and not cb._better(0.02, 0.2) and not cb._better(0.02, 0.1)
    cb.best = {"generator_step": 500, "worst_gap": 0.02, "ckpt_path": None}  # kept before the variety was recorded
    assert cb._better(0.02, 0.1) and not cb._better(0.02, None)


def test_per_class_fidelity_equals_a_hand_count():
    requested = np.array([0, 0, 0, 1, 1, 2, 2, 2, 2])
    read_as = np.array([0, 1, 0, 1, 1, 2, 0, 2, 1])
    images = np.zeros((9, 1, 4, 4), dtype=np.uint8)
    images[:, 0, 0, 0] = read_as * 20
    fid = per_class_fidelity(ReadsCornerPixel(4), images, requested, ["a", "b", "c", "d"])
    # by hand: a 2 of 3, b 2 of 2, c 2 of 4; d was never requested
    assert fid == {"a": 2 / 3, "b": 1.0, "c": 0.5}


def test_collapse_warning_names_the_classes(caplog):
    with caplog.at_level(logging.WARNING):
        low = warn_collapsed({"Shirt": 0.01, "Trouser": 0.99, "Coat": 0.3}, 0.5, "generator step 7")
    assert low == ["Shirt", "Coat"]
    msg = caplog.text
    assert "generator step 7" in msg and "Shirt 1 %" in msg and "Coat 30 %" in msg and "Trouser" not in msg
    caplog.clear()
    assert warn_collapsed({"Shirt": 0.9}, 0.5) == [] and caplog.text == ""


def test_within_class_variety_is_one_for_the_real_images_and_zero_for_a_repeated_one():
    rng = np.random.default_rng(0)
    real, y = rng.integers(0, 255, (40, 1, 6, 6)).astype(np.uint8), np.arange(40) % 2
    v = within_class_variety(real, y, real, y, ["a", "b"])
    assert v == {"a": 1.0, "b": 1.0}
    same = np.repeat(real[:1], 40, axis=0)
    assert within_class_variety(same, y, real, y, ["a", "b"]) == {"a": 0.0, "b": 0.0}


def test_in_training_class_fidelity_is_logged_per_class_and_matches_a_recount(make_cfg, tmp_path, caplog):
    import hydra

    from ganlab.models import load_gan

    root = write_fashion_like(tmp_path / "fm")
    cfg = make_cfg(tmp_path, "model=cgan", *TINY_DCGAN, *fashion_overrides(root), "data.resolution=16",
                   "generator_steps=4", "checkpoint_every=4", "sample_every=2",
                   "callbacks=[model_checkpoint,class_fidelity]", "callbacks.class_fidelity.per_class=6",
                   "callbacks.class_fidelity.save_best=true",
                   "callbacks.class_fidelity.classifier_steps=30", "callbacks.class_fidelity.threshold=0.95",
                   "logger=csv", "++trainer.enable_progress_bar=false", "++trainer.enable_model_summary=false",
                   tiny=False)
    with caplog.at_level(logging.WARNING):
        train(cfg)
    run = tmp_path / "run"
    record = json.loads((run / "class_fidelity.json").read_text())
    names = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]
    assert [h["generator_step"] for h in record["history"]] == [2, 4]
    last = record["history"][-1]
    assert set(last) == {"generator_step", "worst_gap", "min_variety", *names}
    # worst_gap: min over classes of fidelity minus the classifier's accuracy on that class's real test images
    real = record["real_accuracy"]
    assert set(real) == set(names)
    for h in record["history"]:
        assert h["worst_gap"] == pytest.approx(min(h[n] - real[n] for n in names))
    best = kept_by_rule(record["history"])
    assert record["best"]["generator_step"] == best["generator_step"]
    assert record["best"]["worst_gap"] == pytest.approx(best["worst_gap"])
    kept = load_gan(run / "checkpoints" / "best_class_fidelity.ckpt")
    assert kept.generator_step == best["generator_step"]
    assert (run / "class_fidelity.png").stat().st_size > 0
    logged = (run / "csv" / "metrics.csv").read_text().splitlines()[0]
    assert all(f"class_fidelity/{n}" in logged for n in names) and "class_fidelity/min" in logged
    assert "class_fidelity/worst_gap" in logged and "class_variety/min" in logged
    # every class under the threshold is named in the step-4 warning
    low = [n for n in names if last[n] < 0.95]
    assert low, "a 4-step generator should not reach 95 % everywhere"
    step4 = [r.getMessage() for r in caplog.records if "generator step 4" in r.getMessage()]
    assert step4 and all(n in step4[0] for n in low)
    # the logged numbers are a recount: the same classifier (from its cache) on the checkpoint's EMA samples
    dm = hydra.utils.instantiate(cfg.data)
    dm.prepare_data()
    dm.setup("fit")
    gan = load_gan(run / "checkpoints" / "last.ckpt")
    again = ClassFidelity(per_class=6, cache_dir=str(tmp_path / "cache" / "classifier"), classifier_steps=30)
    assert again.measure(gan, dm, names) == {n: last[n] for n in names}


def test_variety_floor_never_keeps_a_collapsed_checkpoint_and_variety_is_a_recount(make_cfg, tmp_path):
    """min_variety: an evaluation counts for best_class_fidelity.ckpt only when every class reaches it; the
    logged min_variety is within_class_variety (standardized) of the callback's own images against the
    class's real training images."""
    from ganlab.models import load_gan

    root = write_fashion_like(tmp_path / "fm")

    def run(folder, floor):
        callback = [] if floor is None else [
            "callbacks=[model_checkpoint,class_fidelity]", "callbacks.class_fidelity.per_class=6",
            "callbacks.class_fidelity.save_best=true", f"callbacks.class_fidelity.min_variety={floor}",
            f"callbacks.class_fidelity.cache_dir={tmp_path / 'clf'}", "callbacks.class_fidelity.classifier_steps=30"]
        cfg = make_cfg(folder, "model=cgan", *TINY_DCGAN, *fashion_overrides(root), "data.resolution=16",
                       "generator_steps=4", "checkpoint_every=4", "sample_every=2",
                       *(callback or ["callbacks=[model_checkpoint]"]), "logger=[]",
                       "++trainer.enable_progress_bar=false", "++trainer.enable_model_summary=false", tiny=False)
        train(cfg)
        return cfg, folder / "run", None if floor is None else json.loads((folder / "run" / "class_fidelity.json").read_text())

    cfg, _, free = run(tmp_path / "a", 0.0)  # the classifier trains here, on first use (it seeds torch)
    varieties = [h["min_variety"] for h in free["history"]]
    assert free["best"] is not None and all(0.0 < v < 5.0 for v in varieties)
    # a floor just above the variety of the checkpoint kept without one rules that checkpoint out: the best of
    # the evaluations still admitted is kept instead (or none when none is)
    kept = next(h for h in free["history"] if h["generator_step"] == free["best"]["generator_step"])
    floor = kept["min_variety"] + 1e-6
    _, run_b, floored = run(tmp_path / "b", floor)
    assert [h["min_variety"] for h in floored["history"]] == varieties  # the floor changes the choice, not the run
    admitted = [h for h in floored["history"] if h["min_variety"] >= floor]
    if admitted:
        assert floored["best"]["generator_step"] == kept_by_rule(admitted)["generator_step"]
        assert load_gan(run_b / "checkpoints" / "best_class_fidelity.ckpt").generator_step == floored["best"]["generator_step"]
    else:
        assert floored["best"] is None
    # an unreachable floor keeps nothing
    _, run_c, none = run(tmp_path / "c", 100.0)
    assert none["best"] is None and not (run_c / "checkpoints" / "best_class_fidelity.ckpt").exists()
    # the callback never moves the run's random stream: the classifier trained on first use (a), loaded from its
    # cache (c), or no callback at all end with the same generator
    _, run_d, _ = run(tmp_path / "d", None)
    weights = [load_gan(r / "checkpoints" / "last.ckpt").generator.state_dict()
               for r in (tmp_path / "a" / "run", run_c, run_d)]
    assert all(torch.equal(weights[0][k], w[k]) for w in weights[1:] for k in weights[0])
    # recount: the same images, the same reference rows, the metric function
    import hydra

    dm = hydra.utils.instantiate(cfg.data)
    dm.prepare_data()
    dm.setup("fit")
    gan = load_gan(tmp_path / "a" / "run" / "checkpoints" / "last.ckpt")
    names = list(dm.class_names)
    cb = ClassFidelity(per_class=6)
    images, labels = cb.samples(gan, len(names))
    y = np.asarray(dm.split_labels("train"))
    rows = np.sort(np.concatenate([np.random.default_rng(0).permutation(np.flatnonzero(y == c))[:1000]
                                   for c in range(len(names))]))
    by_hand = within_class_variety(images.numpy(), labels.numpy(), np.asarray(dm.split_images("train")[rows]),
                                   y[rows], names, standardize=True)
    assert free["history"][-1]["min_variety"] == pytest.approx(min(by_hand.values()))


def test_a_panel_of_classifiers_keeps_only_what_every_member_reads_as_its_class(make_cfg, tmp_path):
    """classifier_seeds=[0, 1]: the logged fidelity is the two classifiers' mean, worst_gap the lower of their
    own worst gaps (each against its own real accuracy), recounted here with the two cached classifiers."""
    import hydra

    from ganlab.metrics.classifier import get_label_classifier, worst_fidelity_gap
    from ganlab.models import load_gan

    root = write_fashion_like(tmp_path / "fm")
    cache = tmp_path / "clf"
    cfg = make_cfg(tmp_path, "model=cgan", *TINY_DCGAN, *fashion_overrides(root), "data.resolution=16",
                   "generator_steps=4", "checkpoint_every=2", "sample_every=2",
                   "callbacks=[model_checkpoint,class_fidelity]", "callbacks.class_fidelity.per_class=6",
                   "callbacks.class_fidelity.save_best=true", "callbacks.class_fidelity.classifier_seeds=[0,1]",
                   f"callbacks.class_fidelity.cache_dir={cache}", "callbacks.class_fidelity.classifier_steps=30",
                   "logger=[]", "++trainer.enable_progress_bar=false", "++trainer.enable_model_summary=false", tiny=False)
    train(cfg)
    run = tmp_path / "run"
    record = json.loads((run / "class_fidelity.json").read_text())
    assert record["classifier_seeds"] == [0, 1] and set(record["real_accuracy"]) == {"0", "1"}
    dm = hydra.utils.instantiate(cfg.data)
    dm.prepare_data()
    dm.setup("fit")
    names = list(dm.class_names)
    panel = [get_label_classifier(dm, cache_dir=str(cache), steps=30, seed=s) for s in (0, 1)]
    assert all(info["from_cache"] for _, info in panel)

    disagree = False
    for h in record["history"]:
        gan = load_gan(run / "checkpoints" / f"gstep_{h['generator_step']:06d}.ckpt")
        images, labels = ClassFidelity(per_class=6).samples(gan, len(names))
        readings = [per_class_fidelity(clf, images, labels.numpy(), names) for clf, _ in panel]
        real = [{n: r["accuracy"] for n, r in info["real_heldout"]["per_class"].items()} for _, info in panel]
        gaps = [worst_fidelity_gap(f, r)[0] for f, r in zip(readings, real)]
        assert h["worst_gap_by_seed"] == pytest.approx(gaps)
        assert h["worst_gap"] == pytest.approx(min(gaps))
        assert all(h[n] == pytest.approx((readings[0][n] + readings[1][n]) / 2) for n in names)
        disagree = disagree or readings[0] != readings[1]
    assert disagree, "the two members read the images alike: the test could not tell a panel from one classifier"
    best = kept_by_rule(record["history"])
    assert record["best"]["generator_step"] == best["generator_step"]
    with pytest.raises(ValueError, match="distinct seeds"):
        ClassFidelity(classifier_seeds=[3, 3])
