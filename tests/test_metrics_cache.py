"""Reference features are computed once per (data, split, n_real, extractor, weights)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from _metrics_helpers import StubExtractor
from ganlab.metrics.reference import reference_features, select_indices


@pytest.fixture
def images():
    return np.random.default_rng(0).integers(0, 256, (60, 3, 8, 8), dtype=np.uint8)


def test_second_evaluation_does_not_recompute(tmp_path, images):
    ext = StubExtractor()
    loads = []

    def source():
        loads.append(1)
        return images

    kw = dict(fingerprint="fp-a", split="train", extractor=ext, n_real=40, cache_dir=str(tmp_path))
    a = reference_features(source, **kw)
    assert not a.from_cache and ext.images_processed == 40 and len(loads) == 1
    b = reference_features(source, **kw)
    assert b.from_cache and ext.images_processed == 40 and len(loads) == 1  # no extraction, no data read
    assert torch.equal(a.features, b.features) and np.array_equal(a.indices, b.indices)
    assert np.allclose(a.fid_stats["sigma"], b.fid_stats["sigma"]) and a.path == b.path


@pytest.mark.parametrize("change", [{"split": "val"}, {"fingerprint": "fp-b"}, {"n_real": 30},
                                    {"subset_seed": 1}, {"extractor": "other"}])
def test_changing_the_key_recomputes(tmp_path, images, change):
    ext = StubExtractor()
    kw = dict(fingerprint="fp-a", split="train", extractor=ext, n_real=40, cache_dir=str(tmp_path))
    reference_features(images, **kw)
    before = ext.images_processed
    if change.get("extractor"):
        ext = StubExtractor(tag="stub-v2")  # a different extractor id / weights
        change = {"extractor": ext}
        before = 0
    c = reference_features(images, **{**kw, **change})
    assert not c.from_cache and ext.images_processed > before
    assert reference_features(images, **{**kw, **change}).from_cache


def test_subset_selection():
    assert np.array_equal(select_indices(10, None, 0), np.arange(10))
    assert np.array_equal(select_indices(10, 50, 0), np.arange(10))
    s = select_indices(1000, 100, 3)
    assert len(np.unique(s)) == 100 and np.all(np.diff(s) > 0) and s.max() > 500
    assert np.array_equal(s, select_indices(1000, 100, 3))


def test_use_cache_false_writes_nothing(tmp_path, images):
    r = reference_features(images, fingerprint="x", split="train", extractor=StubExtractor(),
                           cache_dir=str(tmp_path), use_cache=False)
    assert r.path is None and r.n == 60 and not list(tmp_path.iterdir())
