"""The evaluation layer (ganlab.metrics.protocol, ganlab.metrics.evaluator, ganlab.evaluate): one protocol for
training and ganlab.evaluate,
CPU-sized counts stated in the record, batch-by-batch progress, and the notebook functions."""

from __future__ import annotations

import json

import numpy as np
import pytest
import yaml
from PIL import Image

from _metrics_helpers import REPO, FakeDataModule, StubExtractor, compose_cfg
from ganlab.evaluate import evaluate_folder
from ganlab.metrics.evaluator import Evaluator, _progress_bar, _Tracked
from ganlab.metrics.protocol import Protocol, protocol_defaults


def test_one_protocol_source_for_training_and_evaluate(tmp_path):
    from ganlab.metrics.core import DEFAULTS

    defaults = yaml.safe_load((REPO / "conf" / "metrics" / "default.yaml").read_text())
    assert protocol_defaults() == defaults
    # the metric maths' defaults are read from the same file, not repeated
    assert {k: DEFAULTS[k] for k in ("kid_subsets", "kid_subset_size", "prc_neighborhood", "dc_neighborhood")} == \
        {k: defaults[k] for k in ("kid_subsets", "kid_subset_size", "prc_neighborhood", "dc_neighborhood")}
    assert DEFAULTS["seed"] == defaults["metric_seed"]
    train = compose_cfg(tmp_path, "callbacks=[metrics]").callbacks.metrics
    ev = compose_cfg(tmp_path, config_name="evaluate", tiny=False).metrics
    for key, value in defaults.items():
        if key == "cache_dir":  # both place it in the run's paths.cache_dir
            assert train[key] == ev[key] == f"{tmp_path / 'cache'}/metrics/reference"
            continue
        assert train[key] == ev[key] == value, key
    p = Protocol.from_config(train)  # the callback's own keys (every_n_steps, ...) are not protocol keys
    assert p.metrics == ("fid", "kid", "prc") and p.n_fake == defaults["n_fake"]
    with pytest.raises(TypeError, match="unknown evaluation protocol key"):
        Protocol.from_config(n_fakes=3)
    with pytest.raises(ValueError, match="sizes="):
        Protocol.from_config(sizes="small")


def test_cpu_sizes_cap_the_counts_and_say_so():
    p = Protocol.from_config(n_fake=10000, n_real=None, cpu_n_fake=500, cpu_n_real=1000)
    cpu, note = p.sized_for("cpu")
    assert (cpu.n_fake, cpu.n_real, cpu.kid_subset_size) == (500, 1000, 500)  # KID's subsets fit the samples
    assert note.startswith("CPU sizes (sizes=auto, device cpu): n_fake 10000 -> 500, n_real all -> 1000")
    assert p.sized_for("cuda")[0] == p  # auto: full counts on a GPU
    assert p.sized_for("cuda")[1] == "as configured (sizes=auto, device cuda)"
    assert Protocol.from_config(sizes="cpu").sized_for("cuda")[0].n_fake == 500
    assert Protocol.from_config(sizes="full").sized_for("cpu")[0].n_fake == 10000
    small = Protocol.from_config(n_fake=24, n_real=16).sized_for("cpu")[0]
    assert (small.n_fake, small.n_real) == (24, 16)  # a cap, never more images


def test_tracked_extractor_moves_the_bar_batch_by_batch():
    ext = StubExtractor()
    images = np.random.default_rng(0).integers(0, 256, (20, 3, 8, 8), dtype=np.uint8)
    with _progress_bar(False) as bar:
        tracked = _Tracked(ext, bar, 20, "test", on_cpu=False)
        feats = tracked.extract(images, batch_size=8)
    assert ext.calls == 3 and bar.tasks[0].completed == 20 and bar.tasks[0].total == 20
    assert np.allclose(feats.numpy(), StubExtractor().extract(images).numpy(), atol=1e-6)


class LabelledFakeData(FakeDataModule):
    class_names = None
    label_kind = None

    @property
    def image_shape(self):
        return tuple(self.images.shape[1:])


def test_evaluate_folder_scores_copies_of_the_data_as_perfect(tmp_path):
    """A folder holding copies of the reference images: precision and recall 1, FID ~0, the CPU
    cap recorded in the protocol; files only when ``out`` is given."""
    images = np.random.default_rng(1).integers(0, 256, (30, 3, 8, 8), dtype=np.uint8)
    for i, im in enumerate(images):
        Image.fromarray(im.transpose(1, 2, 0)).save(tmp_path / f"{i:02d}.png")
    dm = LabelledFakeData(images)
    kw = dict(datamodule=dm, device="cpu", extractor=StubExtractor(), progress=False, metrics=["fid", "prc"],
              cache_dir=str(tmp_path / "cache"), memorization=False, cpu_n_fake=25)
    res = evaluate_folder(str(tmp_path), **kw)
    assert set(res["values"]) == {"fid", "precision", "recall", "f1"}
    assert res["values"]["precision"] == 1.0 and abs(res["values"]["fid"]) < 5.0
    assert res["protocol"]["n_fake"] == 25 and res["protocol"]["n_real"] == 30  # cpu_n_fake caps the folder
    assert "n_fake 10000 -> 25" in res["protocol"]["sizes"]
    assert not (tmp_path / "metrics.json").exists()
    out = tmp_path / "report"
    res2 = evaluate_folder(str(tmp_path), out=str(out), **{**kw, "sizes": "full"})
    assert res2["protocol"]["n_fake"] == 30 and res2["values"]["recall"] == 1.0
    assert json.loads((out / "metrics.json").read_text())["values"] == pytest.approx(res2["values"])
    assert "| fid |" in (out / "metrics.md").read_text()
    with pytest.raises(ValueError, match="pass data="):
        evaluate_folder(str(tmp_path))


def test_evaluator_reuses_the_reference_between_evaluations():
    images = np.random.default_rng(2).integers(0, 256, (20, 3, 8, 8), dtype=np.uint8)
    dm, ext = FakeDataModule(images), StubExtractor()
    ev = Evaluator(Protocol.from_config(metrics=["fid"], n_fake=8, use_cache=False), extractor=ext, progress=False)
    ev.bind("cpu")

    class Source:
        def __len__(self):
            return 8

        def batches(self, bs):
            yield images[:8]

    a = ev.score(dm, Source(), fake_source="test")
    b = ev.score(dm, Source(), fake_source="test")
    assert dm.loaded == 1 and ext.images_processed == 20 + 8 + 8
    assert a.values == b.values and b.seconds["reference_from_cache"] is True


def test_one_list_of_metrics_to_maximise():
    from ganlab.callbacks.summary import Summary
    from ganlab.metrics.core import metric_mode
    from ganlab.report import mode_of

    want = {"metrics/fid": "min", "metrics/kid": "min", "metrics/kid_std": "min", "metrics/precision": "max",
            "metrics/recall": "max", "metrics/f1": "max", "metrics/density": "max", "metrics/coverage": "max",
            "metrics/is": "max", "metrics/is_std": "max", "loss/g": "min"}
    summary = Summary(path="unused.json")
    for key, mode in want.items():
        assert metric_mode(key) == summary.mode(key) == mode_of(key) == mode, key
    assert Summary(path="x", maximize=["loss/*"]).mode("loss/g") == "max"


def test_notebook_api_reexports_the_evaluate_job():
    import ganlab
    from ganlab import evaluate

    assert ganlab.evaluate_folder is evaluate.evaluate_folder
    assert ganlab.evaluate_checkpoint is evaluate.evaluate_checkpoint
    with pytest.raises(AttributeError):
        ganlab.no_such_function


class _EightFakes:
    def __init__(self, images):
        self.images = images

    def __len__(self):
        return 8

    def batches(self, bs):
        yield self.images[:8]


def test_reference_cache_follows_the_pixels_not_the_metadata(tmp_path):
    """Cached reference features are keyed by the split's pixels: the same images under another data
    fingerprint (a rebuilt cache, changed source metadata) are served from disk; one changed
    pixel recomputes them."""
    from ganlab.data.datamodule import SplitView

    class PixelKeyed(FakeDataModule):
        def split_digest(self, split="train"):
            return SplitView(self.images, self.splits[split]).digest()

    images = np.random.default_rng(3).integers(0, 256, (20, 3, 8, 8), dtype=np.uint8)
    ext = StubExtractor()

    def score(dm):
        ev = Evaluator(Protocol.from_config(metrics=["fid"], n_fake=8, cache_dir=str(tmp_path)), extractor=ext,
                       progress=False)
        return ev.bind("cpu").score(dm, _EightFakes(images), fake_source="test")

    first = score(PixelKeyed(images, "meta-a"))
    assert ext.images_processed == 20 + 8 and not first.seconds["reference_from_cache"]
    again = score(PixelKeyed(images.copy(), "meta-b"))
    assert ext.images_processed == 20 + 8 + 8 and again.seconds["reference_from_cache"]
    assert again.values == first.values
    changed = images.copy()
    changed[3, 0, 0, 0] ^= 1
    assert not score(PixelKeyed(changed, "meta-a")).seconds["reference_from_cache"]
    assert ext.images_processed == 20 + 8 + 8 + 20 + 8


def test_split_digest_is_the_pixels_in_order():
    from ganlab.data.datamodule import SplitView

    images = np.random.default_rng(4).integers(0, 256, (50, 3, 4, 4), dtype=np.uint8)
    rows = np.array([7, 3, 40, 41, 0])
    d = SplitView(images, rows).digest()
    assert d == SplitView(images, rows).digest(rows_per_read=2) == SplitView(images[rows], np.arange(5)).digest()
    assert d != SplitView(images, rows[::-1]).digest()  # order is part of the split
    assert d != SplitView(images, rows[:4]).digest()
    assert d != SplitView(images.astype(np.int16), rows).digest()
