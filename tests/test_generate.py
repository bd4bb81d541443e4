"""`ganlab.generate`: ImageFolder layout with the requested counts, a correct manifest,
byte-identical output for any batch size, no overwriting, atomic files, clear errors."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from _cgan_helpers import FACES_MULTI_HOT, QUIET, TINY_DCGAN, fashion_overrides, train_tiny, write_fashion_like
from ganlab import __version__
from ganlab.data.idx import FASHION_MNIST_CLASSES
from ganlab.generate import GenerateError, generate, split_counts

REPO = Path(__file__).resolve().parents[1]
CKPT = ["generator_steps=2", "checkpoint_every=2", "callbacks=[model_checkpoint]"]


@pytest.fixture(scope="module")
def ckpts(tmp_path_factory):
    """Tiny checkpoints: class-conditional (Fashion-MNIST-like IDX), multi-hot (faces), unconditional."""
    from conftest import compose_cfg

    base = tmp_path_factory.mktemp("gen_ckpts")
    root = write_fashion_like(base / "fmnist", n_train=40, n_test=10)
    out = {}
    train_tiny(compose_cfg, base / "cls", "model=cgan", *TINY_DCGAN, *fashion_overrides(root), "data.resolution=16",
               "trainer.accelerator=cpu", *CKPT, *QUIET)
    out["class"] = base / "cls" / "run" / "checkpoints" / "last.ckpt"
    cfg = compose_cfg(base / "mh", "model=cgan", *TINY_DCGAN, *FACES_MULTI_HOT, *CKPT, *QUIET)
    from ganlab.train import train

    train(cfg)
    out["multi_hot"] = base / "mh" / "run" / "checkpoints" / "last.ckpt"
    train(compose_cfg(base / "unc", *CKPT, *QUIET))
    out["none"] = base / "unc" / "run" / "checkpoints" / "last.ckpt"
    return out


def run(ckpt, out, **kw):
    return generate({"ckpt": str(ckpt), "out": str(out), "progress": False, **kw})


def files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*.png"))}


def test_class_folders_counts_and_manifest(ckpts, tmp_path):
    out = tmp_path / "syn"
    m = run(ckpts["class"], out, per_class=3, classes=["T-shirt/top", "Sandal", 9], seed=5)
    got = {d.name: len(list(d.glob("*.png"))) for d in out.iterdir() if d.is_dir()}
    assert got == {"T-shirt_top": 3, "Sandal": 3, "Ankle boot": 3}
    on_disk = json.loads((out / "manifest.json").read_text())
    assert on_disk == json.loads(json.dumps(m))
    assert m["ganlab_version"] == __version__ and m["seed"] == 5 and m["num_images"] == 9
    assert m["checkpoint"]["sha256"] == hashlib.sha256(ckpts["class"].read_bytes()).hexdigest()
    assert m["class_names"] == FASHION_MNIST_CLASSES and m["layout"] == "class_folders"
    assert m["config"]["per_class"] == 3 and m["model_config"]["generator"]["num_classes"] == 10
    assert m["data_config"]["source"]["_target_"] == "ganlab.data.sources.FashionMNIST"
    rows = m["images"]
    assert [r["latent_index"] for r in rows] == list(range(9))
    assert [r["class"] for r in rows] == ["T-shirt/top"] * 3 + ["Sandal"] * 3 + ["Ankle boot"] * 3
    assert [r["class_index"] for r in rows[::3]] == [0, 5, 9]
    for r in rows:
        img = Image.open(out / r["file"])
        assert img.size == (16, 16) and img.mode == "L" and r["seed"] == 5
    csv_lines = (out / "manifest.csv").read_text().splitlines()
    assert csv_lines[0] == "file,class,class_index,seed,latent_index" and len(csv_lines) == 10
    assert not list(out.rglob("*.part"))


def test_balanced_and_data_balance(ckpts, tmp_path):
    m = run(ckpts["class"], tmp_path / "a", num_images=25)
    assert list(m["counts"].values()) == [3] * 5 + [2] * 5
    m = run(ckpts["class"], tmp_path / "b", num_images=20, balance="data")  # the tiny set is balanced
    assert list(m["counts"].values()) == [2] * 10
    assert split_counts(10, [1, 0, 3]) == [3, 0, 7] and split_counts(5, [1, 1, 1]) == [2, 2, 1]


def test_byte_identical_for_any_batch_size(ckpts, tmp_path):
    a = files(tmp_path / "a") if run(ckpts["class"], tmp_path / "a", num_images=23, batch_size=1) else None
    b = files(tmp_path / "b") if run(ckpts["class"], tmp_path / "b", num_images=23, batch_size=7) else None
    c = files(tmp_path / "c") if run(ckpts["class"], tmp_path / "c", num_images=23, batch_size=256) else None
    assert len(a) == 23 and a == b == c
    d = files(tmp_path / "d") if run(ckpts["class"], tmp_path / "d", num_images=23, seed=1) else None
    assert d.keys() == a.keys() and d != a
    # an image's noise depends on (seed, latent index) only: a class subset reuses the indices
    e = files(tmp_path / "e") if run(ckpts["class"], tmp_path / "e", per_class=3, classes=["T-shirt/top"]) else None
    assert all(e[k] == a[k] for k in e)


def test_multi_hot_combination_folders(ckpts, tmp_path):
    out = tmp_path / "mh"
    m = run(ckpts["multi_hot"], out, per_class=2, attributes=[["Eyeglasses"], [], ["smiling", "Eyeglasses"]])
    assert m["counts"] == {"Eyeglasses": 2, "none": 2, "Smiling+Eyeglasses": 2}
    assert m["layout"] == "attribute_combination_folders"
    attrs = [r["attributes"] for r in m["images"]]
    assert attrs[0] == {"Smiling": 0, "Eyeglasses": 1} and attrs[2] == {"Smiling": 0, "Eyeglasses": 0}
    assert attrs[4] == {"Smiling": 1, "Eyeglasses": 1}
    assert (out / "manifest.csv").read_text().splitlines()[0] == "file,combination,Smiling,Eyeglasses,seed,latent_index"
    assert Image.open(out / m["images"][0]["file"]).mode == "RGB"
    m = run(ckpts["multi_hot"], tmp_path / "all", num_images=8)  # default: all 2^K combinations
    assert m["counts"] == {"none": 2, "Eyeglasses": 2, "Smiling": 2, "Smiling+Eyeglasses": 2}


def test_unconditional_is_flat(ckpts, tmp_path):
    m = run(ckpts["none"], tmp_path / "u", num_images=5, format="jpg")
    assert sorted(os.listdir(tmp_path / "u")) == [f"00000{i}.jpg" for i in range(5)] + ["manifest.csv",
                                                                                      "manifest.json"]
    assert m["layout"] == "flat" and m["class_names"] == []


def test_refuses_to_overwrite_and_overwrite_replaces_own_files(ckpts, tmp_path):
    out = tmp_path / "o"
    run(ckpts["class"], out, num_images=20)
    with pytest.raises(GenerateError, match="not empty.*overwrite=true"):
        run(ckpts["class"], out, num_images=3)
    (out / "notes.txt").write_text("mine")  # a file ganlab did not write: overwrite refuses to drop it
    with pytest.raises(GenerateError, match="did not write.*notes.txt"):
        run(ckpts["class"], out, num_images=3, overwrite=True)
    assert (out / "notes.txt").read_text() == "mine" and len(list(out.rglob("*.png"))) == 20
    (out / "notes.txt").unlink()
    run(ckpts["class"], out, num_images=3, overwrite=True)
    pngs = sorted(str(p.relative_to(out)) for p in out.rglob("*.png"))
    assert pngs == ["Pullover/000002.png", "T-shirt_top/000000.png", "Trouser/000001.png"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["o"]  # no staging / backup folder left beside it


def test_never_leaves_a_half_written_file(ckpts, tmp_path, monkeypatch):
    import ganlab.generate as gen

    real_encode, calls = gen._encode, []

    def failing(*a, **k):
        calls.append(1)
        if len(calls) == 4:
            raise KeyboardInterrupt
        return real_encode(*a, **k)

    monkeypatch.setattr(gen, "_encode", failing)
    out = tmp_path / "x"
    with pytest.raises(KeyboardInterrupt):
        run(ckpts["class"], out, num_images=10)
    assert list(tmp_path.iterdir()) == []  # built beside out and dropped: nothing was published
    run(ckpts["class"], out, num_images=4)  # the previous data set survives an interrupted overwrite
    calls.clear()
    with pytest.raises(KeyboardInterrupt):
        run(ckpts["class"], out, num_images=10, overwrite=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x"]
    assert json.loads((out / "manifest.json").read_text())["num_images"] == 4 and len(list(out.rglob("*.png"))) == 4


@pytest.mark.parametrize("which,kw,match", [
    ("class", {}, "exactly one of num_images"),
    ("class", {"num_images": 4, "per_class": 2}, "exactly one of num_images"),
    ("class", {"num_images": 0}, "num_images must be an integer >= 1"),
    ("class", {"per_class": 2, "classes": ["Sweater"]}, "unknown class 'Sweater'.*T-shirt/top"),
    ("class", {"per_class": 2, "attributes": [["Male"]]}, "attributes=... is for multi-hot"),
    ("class", {"num_images": 2, "format": "gif"}, "format must be one of"),
    ("multi_hot", {"per_class": 2, "attributes": [["Male"]]}, "unknown attribute 'Male'"),
    ("multi_hot", {"per_class": 2, "classes": ["Smiling"]}, "classes=... is for class-conditional"),
    ("none", {"per_class": 2}, "needs a conditional checkpoint.*unconditional"),
    ("none", {"num_images": 2, "classes": ["a"]}, "needs a conditional checkpoint"),
])
def test_bad_arguments_fail_clearly(ckpts, tmp_path, which, kw, match):
    with pytest.raises(GenerateError, match=match):
        run(ckpts[which], tmp_path / "bad", **kw)
    assert not (tmp_path / "bad").exists()  # validated before anything is written


def test_missing_or_foreign_checkpoint(tmp_path):
    with pytest.raises(GenerateError, match="no such file"):
        run(tmp_path / "nope.ckpt", tmp_path / "o", num_images=1)
    torch.save({"state_dict": {}}, tmp_path / "other.ckpt")
    with pytest.raises(GenerateError, match="not a ganlab.train checkpoint"):
        run(tmp_path / "other.ckpt", tmp_path / "o", num_images=1)
    with pytest.raises(GenerateError, match="ckpt=PATH is required"):
        generate({"out": str(tmp_path / "o"), "num_images": 1})


def test_cli(ckpts, tmp_path):
    env = {**os.environ, "GANLAB_CACHE": str(tmp_path / "cache")}
    base = [sys.executable, "-m", "ganlab.generate", f"hydra.run.dir={tmp_path / 'hy'}", f"ckpt={ckpts['class']}"]
    ok = subprocess.run([*base, f"out={tmp_path / 'cli'}", "per_class=2", "classes=[Bag,Coat]", "progress=false"],
                        capture_output=True, text=True, env=env, timeout=300)
    assert ok.returncode == 0, ok.stderr[-2000:]
    assert "wrote 4 images" in ok.stdout
    assert sorted(os.listdir(tmp_path / "cli" / "Bag")) == ["000000.png", "000001.png"]
    bad = subprocess.run([*base, f"out={tmp_path / 'cli'}", "num_images=2"], capture_output=True, text=True,
                         env=env, timeout=300)
    assert bad.returncode == 2
    assert bad.stderr.strip().splitlines() == [next(line for line in bad.stderr.splitlines() if "error" in line)]
    assert "not empty" in bad.stderr and "Traceback" not in bad.stderr
    assert np.array_equal(np.asarray(Image.open(tmp_path / "cli" / "Bag" / "000000.png")).shape, (16, 16))


def test_sigterm_publishes_nothing_and_exits_143(ckpts, tmp_path):
    """SIGTERM while writing: exit 128 + 15 through ganlab.signals.finish, ganlab's one line, nothing published."""
    import signal
    import time

    out = tmp_path / "big"
    proc = subprocess.Popen([sys.executable, "-m", "ganlab.generate", f"hydra.run.dir={tmp_path / 'hy'}",
                             f"ckpt={ckpts['none']}", f"out={out}", "num_images=200000", "batch_size=1",
                             "progress=false"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 600
    while not list(tmp_path.glob(".big.partial-*/*.png")) and proc.poll() is None:  # writing has begun
        if time.time() > deadline:
            proc.kill()
            pytest.fail("ganlab.generate wrote no image within 600 s")
        time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signal.SIGTERM, err[-2000:]
    assert "stopped by SIGTERM; nothing was published" in err and "Traceback" not in err
    assert not out.exists() and not list(tmp_path.glob(".big.*"))  # the staging folder is gone too
