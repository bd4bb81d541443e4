"""The real data in the shared folder (skipped when absent): CelebA subset and Fashion-MNIST.

Roots: ``$GANLAB_DATA/celeba-subset`` and ``$GANLAB_DATA/fashion-mnist``; ``GANLAB_DATA``
defaults to ``<repo>/../shared/data``. Caches go to tmp; nothing derived is written to the repo.
"""

from __future__ import annotations

import numpy as np
import pytest
from data_fixtures import SHARED_DATA

from ganlab.data.decode import ImageOptions, decode_file
from ganlab.data.sources import CelebA, auto, prepare

pytestmark = pytest.mark.usefixtures("private_cache")

CELEBA = SHARED_DATA / "celeba-subset"
FASHION = SHARED_DATA / "fashion-mnist"

needs_celeba = pytest.mark.skipif(not (CELEBA / "list_attr_celeba.txt").is_file(), reason=f"no {CELEBA}")
needs_fashion = pytest.mark.skipif(not FASHION.is_dir(), reason=f"no {FASHION}")

# Attribute counts over the 6,000 images of the subset (its SOURCE.md lists the same).
SUBSET_COUNTS = {"Male": 1726, "Eyeglasses": 287, "Smiling": 2711, "Young": 4795,
                 "Blond_Hair": 1220, "Black_Hair": 1332, "Wearing_Hat": 198}


@pytest.fixture(scope="module")
def celeba32(tmp_path_factory):
    """All 6,000 images at 32 px (crop 140): about 2 s to build on 2 cores."""
    return prepare(auto, CELEBA, resolution=32, crop=140, labels=list(SUBSET_COUNTS),
                   cache_dir=tmp_path_factory.mktemp("celeba-cache"), progress=False)


@needs_celeba
def test_celeba_subset_loads(celeba32):
    d = celeba32
    assert d.manifest["source"] == "celeba" and d.manifest["layout"] == "official"
    assert d.images.shape == (6000, 3, 32, 32) and d.manifest["counts"]["skipped"] == 0
    assert {k: len(v) for k, v in d.splits.items()} == {"train": 4560, "val": 780, "test": 660, "all": 6000}
    assert dict(zip(d.class_names, d.labels.sum(0).astype(int).tolist())) == SUBSET_COUNTS
    first = decode_file(CELEBA / "img_align_celeba" / "000002.jpg", ImageOptions(32, 3, 140))
    np.testing.assert_array_equal(d.images[0], first)
    # the known duplicate pair decodes identically
    names = [f[0] for f in d.manifest["files"]]
    np.testing.assert_array_equal(d.images[names.index("186574.jpg")], d.images[names.index("197961.jpg")])


@needs_celeba
def test_celeba_subset_cache_hit_and_class_mode(celeba32):
    cache_dir = celeba32.manifest["cache"]["images"].rsplit("/", 1)[0]
    d = prepare(CelebA, CELEBA, resolution=32, crop=140, labels=["Male", "Eyeglasses"], label_mode="class",
                cache_dir=cache_dir, progress=False)
    assert not d.manifest["cache"]["built"]
    counts = np.bincount(d.labels, minlength=4)
    assert counts[1] + counts[3] == 1726 and counts[2] + counts[3] == 287 and counts.sum() == 6000


@needs_celeba
def test_celeba_subset_quick(tmp_path):
    d = prepare(CelebA, CELEBA, resolution=16, crop=108, max_images=600, labels=["Male"],
                cache_dir=tmp_path, progress=False)
    assert d.images.shape == (600, 3, 16, 16)
    assert sum(len(d.splits[k]) for k in ("train", "val", "test")) == 600 and set(d.splits) == {"train", "val", "test", "all"}
    assert d.splits["all"].tolist() == list(range(600))  # split=all: every image once
    assert 0 < d.labels.sum() < 600


@needs_fashion
def test_fashion_mnist(tmp_path):
    d = prepare(auto, FASHION, resolution=28, channels=1, labels="class", cache_dir=tmp_path, progress=False)
    assert d.images.shape == (70000, 1, 28, 28)
    assert d.class_names[0] == "T-shirt/top" and d.class_names[9] == "Ankle boot"
    assert {k: len(v) for k, v in d.splits.items()} == {"train": 60000, "test": 10000, "all": 70000}
    assert np.bincount(d.labels[d.splits["train"]]).tolist() == [6000] * 10
    assert np.bincount(d.labels[d.splits["test"]]).tolist() == [1000] * 10
