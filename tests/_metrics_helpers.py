"""Stand-ins shared by the tests/test_metrics_*.py files (not a test module)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ganlab.metrics.inception import as_uint8_rgb

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("GANLAB_DATA") or (REPO.parent / "shared" / "data"))
CELEBA = SHARED_DATA / "celeba-subset" / "img_align_celeba"


class StubExtractor:
    """Cheap deterministic features (4x4 average-pooled pixels through a fixed projection) with the
    InceptionExtractor interface; counts its work like the real one."""

    has_logits = False
    device = "cpu"

    def __init__(self, dim: int = 16, tag: str = "stub-v1") -> None:
        g = torch.Generator().manual_seed(0)
        self.proj = torch.randn(48, dim, generator=g) / 48**0.5
        self.tag = tag
        self.calls = 0
        self.images_processed = 0

    def describe(self) -> dict:
        return {"extractor": "stub", "extractor_id": self.tag, "weights_sha256": "0" * 64,
                "weights_source": "none", "resize": "adaptive average pool to 4x4", "dtype": "uint8"}

    def extract(self, images, logits: bool = False, batch_size: int | None = None):
        x = as_uint8_rgb(images).float() / 255.0
        self.calls += 1
        self.images_processed += x.shape[0]
        return F.adaptive_avg_pool2d(x, 4).flatten(1) @ self.proj


class FakeDataModule:
    """split_images / split_labels / fingerprint over an in-memory uint8 array."""

    def __init__(self, images: np.ndarray, fingerprint: str = "fake-data-v1", splits: dict | None = None):
        self.images = images
        self.fingerprint = fingerprint
        self.splits = splits or {"train": np.arange(len(images))}
        self.loaded = 0

    def prepare_data(self):
        pass

    def setup(self, stage=None):
        pass

    def split_images(self, split="train"):
        self.loaded += 1
        return self.images[self.splits[split]]

    def split_labels(self, split="train"):
        return None

    def split_digest(self, split="train"):
        return f"{self.fingerprint}/{split}"


_WEIGHTS = None


def session_weights():
    """The InceptionV3 weights the library resolves by default (converted once per cache)."""
    global _WEIGHTS
    if _WEIGHTS is None:
        from ganlab.metrics.inception import resolve_inception_weights

        _WEIGHTS = resolve_inception_weights()
    return _WEIGHTS


def compose_cfg(*args, **kwargs):
    """tests/conftest.py's ``compose_cfg``, loaded by path: a bare ``import conftest`` may resolve to
    another folder's conftest.py when the whole suite runs."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("_ganlab_tests_conftest", REPO / "tests" / "conftest.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.compose_cfg(*args, **kwargs)
