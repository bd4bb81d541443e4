"""The configs ship with the package: a wheel trains from any folder, ``conf_dir()`` finds the
checkout's or the packaged configs, and a user's own config folder joins through Hydra's search path."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from conftest import REPO
from ganlab.utils import conf_dir as conf_dir_module
from ganlab.utils.conf_dir import conf_dir

TINY_RUN = ["data.num_images=64", "data.resolution=16", "data.batch_size=16", "trainer.accelerator=cpu",
            "model.generator.base_width=8", "model.discriminator.base_width=8", "model.generator.z_dim=16",
            "generator_steps=2", "sample_every=1", "checkpoint_every=2", "callbacks.model_summary=null"]


def _env(tmp_path: Path, pythonpath: str | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "GANLAB_ROOT", "HYDRA_FULL_ERROR")}
    env.update(OMP_NUM_THREADS="1", GANLAB_CACHE=str(tmp_path / "cache"), WANDB_MODE="disabled")
    if pythonpath:
        env["PYTHONPATH"] = pythonpath
    return env


def test_conf_dir_prefers_the_checkout_then_the_packaged_copy(tmp_path, monkeypatch):
    assert conf_dir() == str(REPO / "conf")
    package = tmp_path / "site" / "ganlab"
    (package / "conf").mkdir(parents=True)
    monkeypatch.setattr(conf_dir_module, "_PACKAGE", package)
    with pytest.raises(FileNotFoundError, match="holds train.yaml"):
        conf_dir()
    (package / "conf" / "train.yaml").write_text("seed: 1\n")
    (tmp_path / "site" / "conf").mkdir()  # some other distribution's top-level conf/: not ours
    assert conf_dir() == str(package / "conf")
    (tmp_path / "site" / "conf" / "train.yaml").write_text("seed: 2\n")
    assert conf_dir() == str(tmp_path / "site" / "conf")


def test_every_entry_point_reads_the_same_config_folder():
    from ganlab import evaluate, generate, train
    from ganlab.humaneval import cli

    assert cli.CONF_DIR == conf_dir()
    for module in (train, evaluate, generate):
        assert "config_path=conf_dir()" in Path(module.__file__).read_text(), module.__name__


@pytest.mark.parametrize("how", ["searchpath", "config_dir"])
def test_a_users_config_folder_adds_experiments(tmp_path, how):
    mine = tmp_path / "my conf"
    (mine / "experiment").mkdir(parents=True)
    (mine / "experiment" / "my_faces.yaml").write_text(
        "# @package _global_\n# my experiment\ndefaults:\n  - override /model/loss: hinge\nseed: 777\n")
    add = [f"hydra.searchpath=[file://{mine}]"] if how == "searchpath" else ["--config-dir", str(mine)]
    proc = subprocess.run([sys.executable, "-m", "ganlab.train", *add, "experiment=my_faces", "--cfg", "job"],
                          cwd=tmp_path, env=_env(tmp_path, str(REPO)), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "seed: 777" in proc.stdout
    assert "ganlab.models.losses.HingeLoss" in proc.stdout
    assert "generator_steps: 1200" in proc.stdout  # the rest still comes from ganlab's train.yaml


@pytest.mark.slow
def test_a_wheel_trains_from_outside_the_checkout(tmp_path):
    # build from a copy, so setuptools' build/ and egg-info never land in the checkout
    src = tmp_path / "src"
    src.mkdir()
    for name in ("ganlab", "conf"):
        shutil.copytree(REPO / name, src / name, ignore=shutil.ignore_patterns("__pycache__", "local"))
    for name in ("setup.py", "pyproject.toml", "README.md"):
        shutil.copy(REPO / name, src / name)
    subprocess.run([sys.executable, "-m", "pip", "wheel", ".", "--no-deps", "--no-build-isolation", "-q",
                    "-w", str(tmp_path / "dist")], cwd=src, check=True, timeout=600)
    wheel = next((tmp_path / "dist").glob("ganlab-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    shipped = {n.removeprefix("ganlab/conf/") for n in names if n.startswith("ganlab/conf/") and n.endswith(".yaml")}
    assert shipped == {str(p.relative_to(REPO / "conf")) for p in (REPO / "conf").rglob("*.yaml")
                       if p.parent.name != "local"}
    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)
    work = tmp_path / "elsewhere"
    work.mkdir()
    env = _env(tmp_path, str(site))
    where = subprocess.run([sys.executable, "-c", "import ganlab.utils.conf_dir as c; print(c.conf_dir())"],
                           cwd=work, env=env, capture_output=True, text=True, check=True)
    assert where.stdout.strip() == str(site / "ganlab" / "conf")
    proc = subprocess.run([sys.executable, "-m", "ganlab.train", *TINY_RUN, "hydra.run.dir=run"],
                          cwd=work, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (work / "run" / "checkpoints" / "last.ckpt").is_file()
    assert (work / "run" / "samples" / "step_000002.png").is_file()
    assert str(REPO) not in (work / "run" / ".hydra" / "hydra.yaml").read_text()
