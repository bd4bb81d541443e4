"""The documentation site builds with `mkdocs build --strict` (broken links, missing pages, API
names that do not resolve and unknown anchors fail it), offline, from the checkout."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def test_mkdocs_build_strict(tmp_path):
    pytest.importorskip("mkdocs", reason="the docs extra is not installed: pip install -e '.[docs]'")
    pytest.importorskip("mkdocstrings")
    pytest.importorskip("material")
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1", "PYTHONPATH": str(REPO)}
    # no network: fail fast instead of waiting if anything tried to download
    env.update({"HTTP_PROXY": "http://127.0.0.1:9", "HTTPS_PROXY": "http://127.0.0.1:9", "NO_PROXY": ""})
    out = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "-d", str(tmp_path / "site")],
                         cwd=REPO, env=env, capture_output=True, text=True, check=False, timeout=300)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-6000:]
    site = tmp_path / "site"
    for page in ("index", "getting-started", "recipes", "configuration", "training", "metrics", "synthetic",
                 "humaneval", "cluster", "gpu", "reliability", "benchmarks", "variant", "api"):
        assert (site / f"{page}.html").is_file(), page
    api = (site / "api.html").read_text()
    for name in ("ganlab.api.load", "evaluate_checkpoint", "evaluate_folder", "GANDataModule", "ganlab.sampling"):
        assert name in api, f"API reference misses {name}"
    # the result images of experiments/ are served at their own paths
    assert (site / "experiments" / "cpu_budget" / "samples_ganlab.png").is_file()
    assert (site / "img" / "demo_losses.png").is_file()
