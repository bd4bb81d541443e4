"""Fixtures for the data-layer tests (helpers live in data_fixtures.py)."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(autouse=True)
def _private_cache(tmp_path, monkeypatch):
    """Never touch the user's ~/.cache/ganlab: the default cache dir points into tmp_path."""
    monkeypatch.setenv("GANLAB_CACHE", str(tmp_path / "default-cache"))


@pytest.fixture
def cache_dir(tmp_path) -> Path:
    return tmp_path / "cache"


@pytest.fixture
def celeba_root(tmp_path):
    """An official-layout CelebA tree of 15 faces: ``(root, truth)``."""
    from data_fixtures import write_celeba

    root = tmp_path / "celeba_official"
    return root, write_celeba(root, "official")
