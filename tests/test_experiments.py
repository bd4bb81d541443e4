"""Every experiment config composes, resolves, trains two steps on CPU and resumes exactly; one experiment of
every data source, network and loss also runs one fast_dev_run batch with no callbacks.

Data comes from small stand-ins written in a temp dir (CelebA official layout, a face folder
with class subfolders, Fashion-MNIST IDX files), so the test never depends on shared data.
"""

from pathlib import Path

import data_fixtures as fixtures
import pytest
import torch
from omegaconf import ListConfig, OmegaConf

from ganlab.train import train

CONF = Path(__file__).resolve().parents[1] / "conf"

EXPERIMENTS = sorted(p.stem for p in (CONF / "experiment").glob("*.yaml"))


@pytest.fixture(scope="module")
def roots(tmp_path_factory):
    base = tmp_path_factory.mktemp("data")
    fixtures.write_celeba(base / "celeba", n=40)
    for k, cls in enumerate(["with_mask", "without_mask"]):
        (base / "folder" / cls).mkdir(parents=True)
        for i, img in enumerate(fixtures.face_images(20, seed=k, size=(48, 48))):
            img.save(base / "folder" / cls / f"img{i}.png")
    (base / "fashion").mkdir()
    fixtures.write_mnist(base / "fashion", n_train=40, n_test=10)
    return {"CelebA": base / "celeba", "Folder": base / "folder", "FashionMNIST": base / "fashion", "Faces": None}


def data_overrides(source: str, roots: dict) -> list[str]:
    """The stand-in's root, or for the procedural faces a small count (not 20,000 rendered per run)."""
    return ["data.source.num_images=64"] if roots[source] is None else [f"data.root={roots[source]}"]


# fast_dev_run (callbacks=none) on one experiment of every data source and model family; every experiment
# trains, checkpoints and resumes in test_experiment_resumes
FAST_DEV_RUN = {"dcgan_celeba", "mlp_celeba", "cgan_faces_folder", "faces_small", "cgan_fashion_guided", "wgan_gp",
                "cgan_celeba_strong", "cluster_smoke", "lucic_fashion_ns", "cgan_fashion_adc"}


def test_experiments_found():
    assert {"dcgan_celeba", "dcgan_celeba128", "mlp_celeba", "dcgan_faces_folder", "sngan_celeba"} <= set(EXPERIMENTS)
    assert FAST_DEV_RUN <= set(EXPERIMENTS)


def small(cfg):
    """No 20,000-image caps on the stand-ins, and a guided experiment's label classifiers trained 5 steps at
    widths 4-8-16 instead of 1,500 at 16-32-64 (minutes on 2 cores; the guidance itself is tested in test_guidance.py)."""
    if "max_images" in cfg.data:
        cfg.data.max_images = None
    if cfg.model.get("guidance"):
        cfg.model.guidance.steps, cfg.model.guidance.widths = 5, [4, 8, 16]
    return cfg


def narrow(cfg):
    """The resume check is about the experiment's parts (networks, loss, augmentation, EMA, conditioning) and their
    state, not its compute: DCGAN-family networks at base width 8 with the channel cap at 64 (dcgan_celeba128's
    five stages still reach the cap: 8 x 16 = 128 -> 64), the InfoGAN networks of the Lucic experiments at width 8
    and 64 hidden units, the MLP GANs' hidden layers at 32 units each (at full size their checkpoints, written and
    hashed three times per test, cost ~10 s each)."""
    for net in ("generator", "discriminator"):
        for key, value in (("base_width", 8), ("max_width", 64), ("width", 8), ("hidden", 64)):
            if isinstance(cfg.model[net].get(key), int):
                cfg.model[net][key] = value
        if isinstance(cfg.model[net].get("hidden"), ListConfig):
            cfg.model[net].hidden = [32] * len(cfg.model[net].hidden)
    return cfg


@pytest.mark.parametrize("name", EXPERIMENTS)
def test_experiment_header_and_fast_dev_run(name, roots, tmp_path, make_cfg):
    text = (CONF / "experiment" / f"{name}.yaml").read_text().splitlines()
    assert text[0] == "# @package _global_"
    assert text[1].startswith("# ") and len(text[1]) > 20, "each experiment says what it is for"
    source = make_cfg(tmp_path, f"experiment={name}", tiny=False).data.source._target_.rsplit(".", 1)[-1]
    overrides = [f"experiment={name}", "trainer.fast_dev_run=true", "trainer.accelerator=cpu",
                 "data.batch_size=8", "logger=[]", "callbacks=none", "trainer.enable_progress_bar=false"]
    overrides += data_overrides(source, roots)
    cfg = small(make_cfg(tmp_path, *overrides, tiny=False))
    OmegaConf.resolve(cfg.copy())  # every interpolation resolves
    if name in FAST_DEV_RUN:
        metrics, trainer = train(cfg)
        assert trainer.lightning_module.generator_step == 1
        assert all(v == v for v in metrics.values())  # no NaN


@pytest.mark.parametrize("name", EXPERIMENTS)
def test_experiment_resumes(name, roots, tmp_path, make_cfg):
    """Every experiment's checkpoint (labelled ones included) loads with weights_only=True and
    resumes exactly: an uninterrupted 2-step run writes its step-1 checkpoint; a second run folder
    holding only that checkpoint, launched with ckpt_path=auto and ANOTHER seed, must end with
    the uninterrupted run's weights (a fresh start would draw other initial weights and noise)
    and must not rewrite the step-1 checkpoint."""
    import shutil

    from ganlab.checkpoints import load_checkpoint
    from ganlab.models import load_gan

    source = make_cfg(tmp_path, f"experiment={name}", tiny=False).data.source._target_.rsplit(".", 1)[-1]
    base = [f"experiment={name}", "trainer.accelerator=cpu", "data.batch_size=8", "logger=[]",
            "callbacks=[model_checkpoint]", "trainer.enable_progress_bar=false", "checkpoint_every=1",
            "++trainer.enable_model_summary=false", "trainer.deterministic=true", "generator_steps=2"]
    base += data_overrides(source, roots)

    def cfg(folder, *extra):
        return narrow(small(make_cfg(folder, *base, *extra, tiny=False)))

    metrics, _ = train(cfg(tmp_path / "whole", "seed=1"))
    assert metrics and all(v == v for v in metrics.values())  # no NaN
    whole = tmp_path / "whole" / "run" / "checkpoints"
    ckdir = tmp_path / "resumed" / "run" / "checkpoints"
    ckdir.mkdir(parents=True)
    step1 = shutil.copy2(whole / "gstep_000001.ckpt", ckdir / "gstep_000001.ckpt")
    before = Path(step1).stat()
    _, trainer = train(cfg(tmp_path / "resumed", "seed=2", "ckpt_path=auto"))
    assert trainer.lightning_module.generator_step == 2
    after = Path(step1).stat()
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns), "step 1 was trained again"
    ckpt = load_checkpoint(ckdir / "last.ckpt")
    assert ckpt["ganlab"]["generator_step"] == 2
    resumed, uninterrupted = load_gan(ckdir / "last.ckpt").state_dict(), load_gan(whole / "last.ckpt").state_dict()
    assert resumed.keys() == uninterrupted.keys()
    assert all(torch.equal(resumed[k], uninterrupted[k]) for k in resumed), "resume is not exact"
    # num_classes came from the data (no config types it): the stand-in folder has 2 class subfolders
    if name.startswith("cgan"):  # (not dcgan_*)
        assert ckpt["hyper_parameters"]["generator"]["num_classes"] == ckpt["GANDataModule"]["num_classes"] > 0
