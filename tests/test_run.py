"""The one door to a trained run (ganlab.run.open_run): ganlab.load, generate, evaluate and sample
selection open a checkpoint only through it and see the same model, EMA choice, labels and bytes;
opening never serialises the checkpoint again."""

from __future__ import annotations

import hashlib
import json

import pytest
import torch

from _cgan_helpers import QUIET, TINY_DCGAN, fashion_overrides, write_fashion_like
from _metrics_helpers import StubExtractor
from ganlab.checkpoints import CheckpointError
from ganlab.labels import LabelInfo

FASHION = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]


@pytest.fixture(scope="module")
def cls_run(tmp_path_factory):
    """A tiny class-conditional run (10 Fashion-MNIST-like classes, 16 px) and its training config."""
    from conftest import compose_cfg
    from ganlab.train import train

    base = tmp_path_factory.mktemp("door")
    root = write_fashion_like(base / "fmnist", n_train=40, n_test=10)
    cfg = compose_cfg(base, "model=cgan", *TINY_DCGAN, *fashion_overrides(root), "data.resolution=16",
                      "trainer.accelerator=cpu", "generator_steps=2", "checkpoint_every=2",
                      "callbacks=[model_checkpoint]", *QUIET, tiny=False)
    train(cfg)
    return cfg, base / "run" / "checkpoints" / "last.ckpt"


@pytest.fixture
def door(monkeypatch):
    """Every Run the four entry points open (and the Run selection is handed), with torch.save
    forbidden meanwhile: opening must not write the checkpoint into a buffer and read it back."""
    import ganlab.evaluate
    import ganlab.generate
    import ganlab.run

    opened, selected = [], []
    real_open, real_select = ganlab.run.open_run, ganlab.generate.select

    def spy(*args, **kwargs):
        run = real_open(*args, **kwargs)
        opened.append(run)
        return run

    def select_spy(run, *args, **kwargs):
        selected.append(run)
        return real_select(run, *args, **kwargs)

    def no_save(*args, **kwargs):
        raise AssertionError("torch.save called while opening / using a run")

    monkeypatch.setattr(torch, "save", no_save)
    monkeypatch.setattr(ganlab.run, "open_run", spy)  # ganlab.api imports it when load() runs
    for module in (ganlab.generate, ganlab.evaluate):
        monkeypatch.setattr(module, "open_run", spy)
    monkeypatch.setattr(ganlab.generate, "select", select_spy)
    return opened, selected


def _all_four(cfg, ckpt, tmp_path, ema: bool):
    import ganlab
    from ganlab.generate import generate

    sampler = ganlab.load(ckpt, device="cpu", ema=ema)
    manifest = generate({"ckpt": str(ckpt), "out": str(tmp_path / f"gen-{ema}"), "per_class": 2, "classes": [0, 5],
                         "device": "cpu", "ema": ema, "progress": False, "filter": "discriminator",
                         "drs_burn_in": 8, "min_acceptance": 0.01, "batch_size": 8})
    result = ganlab.evaluate_checkpoint(str(ckpt), data=cfg.data, device="cpu", extractor=StubExtractor(),
                                        progress=False, metrics=["fid"], n_fake=8, n_real=20, batch_size=8,
                                        ema=ema, memorization=False, label_fidelity=False,
                                        cache_dir=str(tmp_path / f"ref-{ema}"))
    return sampler, manifest, result


@pytest.mark.parametrize("ema", [True, False])
def test_load_generate_evaluate_and_selection_share_one_door(cls_run, door, tmp_path, ema):
    cfg, ckpt = cls_run
    opened, selected = door
    sampler, manifest, result = _all_four(cfg, ckpt, tmp_path, ema)

    assert len(opened) == 3  # ganlab.load, generate, evaluate: each opened the checkpoint once, through the door
    api_run, gen_run, eval_run = opened
    assert selected == [gen_run] and selected[0] is gen_run  # selection works on generate's opened run
    reference = api_run.model.state_dict()
    for run in opened:
        assert run.path == str(ckpt) and run.sha256 == hashlib.sha256(ckpt.read_bytes()).hexdigest()
        state = run.model.state_dict()
        assert state.keys() == reference.keys() and all(torch.equal(state[k], reference[k]) for k in reference)
        assert run.ema is ema and run.device == torch.device("cpu") and not run.model.training
        assert run.labels == api_run.labels
    assert api_run.labels.num_classes == 10 and api_run.labels.is_class and api_run.labels.class_names == FASHION
    # and each command reports what the door decided
    assert sampler.ema is ema and sampler.class_names == FASHION and sampler.model is api_run.model
    assert manifest["generator"] == ("ema" if ema else "raw") and manifest["class_names"] == FASHION
    assert manifest["checkpoint"]["sha256"] == gen_run.sha256
    assert json.loads(json.dumps(manifest["selection"]))["filter"] == "discriminator"
    assert result["inputs"]["ema"] is ema and result["inputs"]["generator_step"] == gen_run.model.generator_step


def test_open_run_folder_labels_and_errors(cls_run, tmp_path):
    from ganlab.run import open_run

    _, ckpt = cls_run
    from_folder = open_run(ckpt.parent.parent, device="cpu")  # a run folder: its newest loadable checkpoint
    assert from_folder.path == str(ckpt) and from_folder.ema  # EMA present and asked for by default
    assert from_folder.labels == LabelInfo(10, "class", FASHION, from_folder.data_state["label_counts"])
    assert sum(from_folder.labels.counts.values()) == 40
    assert from_folder.data_config["_target_"] == "ganlab.data.datamodule.GANDataModule"
    with pytest.raises(CheckpointError, match="nope.*no such checkpoint file or run folder"):
        open_run(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(CheckpointError, match="no loadable checkpoint"):
        open_run(tmp_path / "empty")
    torch.save({"state_dict": {}}, tmp_path / "other.ckpt")
    with pytest.raises(CheckpointError, match="not a ganlab.train checkpoint"):
        open_run(tmp_path / "other.ckpt")
    with pytest.raises(ValueError, match="device=cuda:0 but CUDA is not available") if not torch.cuda.is_available() \
            else pytest.raises(ValueError, match="device='nonsense'"):
        open_run(ckpt, device="cuda:0" if not torch.cuda.is_available() else "nonsense")


def test_open_run_names_an_empty_checkpoint(tmp_path):
    """open_run reads the bytes itself: load_checkpoint's 0-byte message must still come (not 'corrupted')."""
    from ganlab.run import open_run

    (tmp_path / "empty.ckpt").write_bytes(b"")
    with pytest.raises(CheckpointError, match=r"empty\.ckpt is empty \(0 bytes\)"):
        open_run(tmp_path / "empty.ckpt")
