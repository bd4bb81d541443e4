"""``split: all``: every image of every split (train on / score against a whole small data set)."""

from __future__ import annotations

import numpy as np
import pytest
from data_fixtures import write_celeba

from ganlab.data.datamodule import GANDataModule

from ganlab.data.sources import CelebA, with_all_split

pytestmark = pytest.mark.usefixtures("private_cache")


def test_with_all_split_is_the_sorted_union():
    splits = {"train": np.array([0, 3, 4]), "val": np.array([1]), "test": np.array([2, 5])}
    out = with_all_split(splits)
    np.testing.assert_array_equal(out["all"], np.arange(6))
    assert out["all"].dtype == np.int64 and set(out) == {"train", "val", "test", "all"}
    assert with_all_split({}) == {}


def test_celeba_split_all_covers_the_official_partition(tmp_path):
    truth = write_celeba(tmp_path / "celeba", n=15)
    dm = GANDataModule(source=CelebA, root=str(tmp_path / "celeba"), resolution=16, split="all",
                       cache_dir=str(tmp_path / "cache"), num_workers=1, batch_size=4)
    dm.prepare_data()
    dm.setup("fit")
    parts = {name: dm.split_images(name) for name in ("train", "val", "test") if name in dm.prepared.splits}
    assert sum(len(v) for v in parts.values()) == 15 == len(dm.split_images())
    assert len(parts["train"]) == int(np.sum(np.asarray(truth["partition"]) == 0)) < 15
    # the rows of "all" are the train, val and test rows, each exactly once
    np.testing.assert_array_equal(np.sort(np.concatenate([dm.prepared.splits[k] for k in parts])),
                                  dm.prepared.splits["all"])
    n_batches = sum(1 for _ in dm.train_dataloader())
    assert n_batches == 15 // 4  # the loader trains on all of them (full batches only)
