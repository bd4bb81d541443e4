"""Shared fixtures: compose the real Hydra config with tiny, CPU-sized settings."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig, open_dict

import ganlab  # noqa: F401  (resolvers)

REPO = Path(__file__).resolve().parents[1]
CONF = REPO / "conf"
SHARED_DATA = Path(os.environ.get("GANLAB_DATA", REPO.parent / "shared" / "data"))

# Tiny networks and data so each training test takes seconds on 2 CPU cores.
TINY = [
    "data.source.num_images=96",
    "data.resolution=16",
    "data.batch_size=16",
    "trainer.accelerator=cpu",
    "trainer.log_every_n_steps=1",
]


TINY_NETS = {
    "dcgan": ["model.generator.base_width=8", "model.discriminator.base_width=8", "model.generator.z_dim=16"],
    "mlp_gan": ["model.generator.hidden=[32,64]", "model.discriminator.hidden=[64,32]", "model.generator.z_dim=16"],
}


def compose_cfg(tmp_path: Path, *overrides: str, tiny: bool = True, config_name: str = "train") -> DictConfig:
    paths = [
        f"paths.root_dir={tmp_path}",
        f"paths.output_dir={tmp_path / 'run'}",
        f"paths.cache_dir={tmp_path / 'cache'}",
    ]
    model = next((o.split("=", 1)[1] for o in overrides if o.startswith("model=")), "dcgan")
    small = [*TINY, *TINY_NETS.get(model, [])] if tiny else []
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose(config_name, overrides=[*paths, *small, *overrides])
    with open_dict(cfg):
        cfg.pop("hydra", None)
    return cfg


@pytest.fixture
def tiny_cfg(tmp_path):
    def make(*overrides: str, tiny: bool = True) -> DictConfig:
        return compose_cfg(tmp_path, *overrides, tiny=tiny)

    return make


@pytest.fixture
def make_cfg():
    """``make_cfg(run_dir, *overrides)``: like ``tiny_cfg`` but for any folder."""
    return compose_cfg


# -- data-layer fixtures ------------------------------------------------------------------
@pytest.fixture
def private_cache(tmp_path, monkeypatch):
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


# -- a real SLURM cluster on this host (tests/slurm_cluster.py) ------------------------------
@pytest.fixture(scope="session")
def slurm_cluster(tmp_path_factory):
    """One private SLURM cluster (munged, slurmctld, two slurmd) for the whole session; tests that
    use it skip with the reason when it cannot start (no root, packages missing)."""
    import slurm_cluster as sc

    reason = sc.unavailable()
    if reason:
        pytest.skip(reason)
    cluster = sc.start(tmp_path_factory.mktemp("slurm"))
    try:
        yield cluster
    finally:
        cluster.stop()
