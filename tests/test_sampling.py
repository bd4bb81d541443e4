"""ganlab.sampling: one noise plan (z of image i from (seed, i) alone) shared by the sample grids, the
evaluation fakes, ``ganlab.generate`` and the notebook API; label plans; lerp / slerp; the latent
interpolation grid and walk GIF at the end of training; the API reference's (docs/api.md) snippet."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from _cgan_helpers import QUIET, TINY_DCGAN, fashion_overrides, train_tiny, write_fashion_like
from ganlab import sampling
from ganlab.labels import constant_label_tensor

REPO = Path(__file__).resolve().parents[1]
SEED, PAD = 7, 2
RUN = ["generator_steps=2", "checkpoint_every=2", "sample_every=2", "callbacks=[sample_grid,model_checkpoint]",
       f"callbacks.sample_grid.seed={SEED}", "callbacks.sample_grid.num_samples=9",
       "callbacks.sample_grid.latent_rows=3", "callbacks.sample_grid.latent_steps=5",
       "callbacks.sample_grid.walk_count=2", "callbacks.sample_grid.walk_keys=3", "callbacks.sample_grid.walk_steps=2",
       *QUIET]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Two tiny 16 px runs whose step-2 grid and last.ckpt hold the same weights: unconditional
    (built-in faces) and class-conditional (Fashion-MNIST-like)."""
    from conftest import compose_cfg
    from ganlab.train import train

    base = tmp_path_factory.mktemp("sampling")
    train(compose_cfg(base / "unc", *RUN))
    root = write_fashion_like(base / "fmnist", n_train=40, n_test=10)
    train_tiny(compose_cfg, base / "cls", "model=cgan", *TINY_DCGAN, *fashion_overrides(root), "data.resolution=16",
               "trainer.accelerator=cpu", *RUN)
    return {k: base / k / "run" for k in ("unc", "cls")}


def tiles(png: Path, size: int = 16) -> np.ndarray:
    """The tiles of a grid written by save_grid (padding 2), row-major: (rows * cols, H, W, 3)."""
    a = np.asarray(Image.open(png).convert("RGB"))
    rows, cols = (a.shape[0] - PAD) // (size + PAD), (a.shape[1] - PAD) // (size + PAD)
    return np.stack([a[PAD + r * (size + PAD):][:size, PAD + c * (size + PAD):][:, :size]
                     for r in range(rows) for c in range(cols)])


def hwc(x: torch.Tensor) -> np.ndarray:
    """uint8 (N, C, H, W) -> (N, H, W, 3) as the grid PNGs store it (grey repeated to RGB)."""
    return x.expand(-1, 3, -1, -1).permute(0, 2, 3, 1).numpy() if x.shape[1] == 1 else x.permute(0, 2, 3, 1).numpy()


def generated(out: Path) -> dict[int, np.ndarray]:
    """latent index -> (H, W, 3) of every PNG ganlab.generate wrote under ``out``."""
    found = {}
    for p in out.rglob("*.png"):
        found[int(p.stem)] = np.asarray(Image.open(p).convert("RGB"))
    return found


class Recorder:
    """An extractor that keeps the uint8 batches the evaluation hands it (features: their means)."""

    has_logits = False
    device = "cpu"

    def __init__(self) -> None:
        self.seen: list[torch.Tensor] = []

    def extract(self, images, logits=False, batch_size=None):
        self.seen.append(images.clone())
        return images.float().flatten(1).mean(1, keepdim=True)


def test_grid_evaluation_generate_and_api_share_z(runs, tmp_path):
    """Same checkpoint, same seed -> identical uint8 images for the shared indices: grid tile i ==
    evaluation sample i == generate image i == api sample i (and batch size changes nothing)."""
    import ganlab
    from ganlab.generate import generate
    from ganlab.metrics.fakes import gan_fake_features
    from ganlab.models import load_gan

    run = runs["unc"]
    ckpt = run / "checkpoints" / "last.ckpt"
    grid = tiles(run / "samples" / "step_000002.png")
    assert grid.shape == (9, 16, 16, 3)

    generate({"ckpt": str(ckpt), "out": str(tmp_path / "gen"), "num_images": 12, "seed": SEED, "batch_size": 5,
              "progress": False, "device": "cpu"})
    gen = generated(tmp_path / "gen")

    rec = Recorder()  # the fakes exactly as the metrics callback / ganlab.evaluate extract them
    _, samples = gan_fake_features(load_gan(str(ckpt)), rec, 12, seed=SEED, batch_size=4)
    evaluation = hwc(torch.cat(rec.seen))

    api = hwc(ganlab.load(run, device="cpu").sample(9, seed=SEED, batch_size=2))
    for i in range(9):
        assert np.array_equal(grid[i], gen[i]), i
        assert np.array_equal(evaluation[i], gen[i]), i
        assert np.array_equal(api[i], gen[i]), i
    assert all(np.array_equal(evaluation[i], gen[i]) for i in range(9, 12))  # a longer plan: same first images
    assert len({gen[i].tobytes() for i in range(12)}) == 12  # and they are 12 different images
    assert torch.equal(samples.z, sampling.latents(SEED, 12, samples.z.shape[1]))


def test_class_grid_rows_are_generate_per_class(runs, tmp_path):
    """Per-class grid: tile (row r, column c) is latent c with class r == image c of generate classes=[r]."""
    from ganlab.generate import generate

    run = runs["cls"]
    grid = tiles(run / "samples" / "step_000002.png").reshape(10, 8, 16, 16, 3)
    for r, name in ((0, "T-shirt/top"), (7, "Sneaker")):
        out = tmp_path / f"c{r}"
        generate({"ckpt": str(run / "checkpoints" / "last.ckpt"), "out": str(out), "per_class": 8,
                  "classes": [name], "seed": SEED, "progress": False, "device": "cpu"})
        gen = generated(out)
        assert all(np.array_equal(grid[r, c], gen[c]) for c in range(8)), name
    assert not np.array_equal(grid[0, 0], grid[7, 0])  # the class matters, the latent is shared


def test_latent_interpolation_grid_and_walk_gif_at_the_end(runs):
    for kind in ("unc", "cls"):
        samples = runs[kind] / "samples"
        t = tiles(samples / "latent_interpolation.png")
        assert t.shape[0] == 3 * 5  # latent_rows=3 rows of latent_steps=5 columns
        assert not np.array_equal(t[0], t[4])  # the two ends of a row differ
        gif = Image.open(samples / "latent_walk.gif")
        assert gif.size == (2 * (16 + PAD) + PAD, 16 + 2 * PAD) and gif.n_frames == 3 * 2  # keys * steps
    # a row's two ends are images 2r and 2r+1 of the plan (unconditional: generate's images)
    import ganlab

    gan = ganlab.load(runs["unc"], device="cpu")
    ends = hwc(gan.sample(6, seed=SEED))
    t = tiles(runs["unc"] / "samples" / "latent_interpolation.png")
    assert np.array_equal(t[0], ends[0]) and np.array_equal(t[4], ends[1]) and np.array_equal(t[10], ends[4])


def test_noise_depends_on_seed_and_index_only():
    a = sampling.latents(3, 10, 8)
    assert torch.equal(a[:4], sampling.latents(3, 4, 8))  # prefix of a longer plan
    assert torch.equal(a[[7, 2]], sampling.latents(3, [7, 2], 8))  # any order / subset
    assert not torch.equal(a, sampling.latents(4, 10, 8))
    torch.manual_seed(0)
    x = torch.randn(3)
    torch.manual_seed(0)
    sampling.latents(3, 5, 8)  # the global RNG is not touched
    assert torch.equal(torch.randn(3), x)


def test_evaluation_labels_are_per_index_and_follow_the_pool():
    pool = np.array([0] * 90 + [3] * 10)
    lab = sampling.evaluation_labels(4, "class", 3000, seed=1, pool=pool)
    assert lab.dtype == torch.long and torch.equal(lab[:50], sampling.evaluation_labels(4, "class", 50, 1, pool))
    freq = torch.bincount(lab, minlength=4).float() / 3000
    assert freq[0] == pytest.approx(0.9, abs=0.02) and freq[3] == pytest.approx(0.1, abs=0.02) and freq[1] == 0
    uni = torch.bincount(sampling.evaluation_labels(4, "class", 4000, seed=2), minlength=4).float() / 4000
    assert torch.allclose(uni, torch.full((4,), 0.25), atol=0.03)
    mh = sampling.evaluation_labels(3, "multi_hot", 2000, seed=0)
    assert mh.shape == (2000, 3) and mh.dtype == torch.float32 and float(mh.mean()) == pytest.approx(0.5, abs=0.03)
    assert sampling.evaluation_labels(0, None, 5, seed=0) is None


def test_class_rows_and_class_labels():
    assert sampling.class_rows(3, "class", 2).tolist() == [0, 0, 1, 1, 2, 2]
    mh = sampling.class_rows(2, "multi_hot", 1)
    assert mh.tolist() == [[0, 0], [1, 0], [0, 1]]  # none, then each attribute alone
    assert constant_label_tensor(1, 2, 3, "multi_hot").tolist() == [[0, 1, 0], [0, 1, 0]]
    assert constant_label_tensor(2, 3, 5, "class").tolist() == [2, 2, 2]


def test_slerp_keeps_the_norm_and_lerp_shrinks_it():
    z = sampling.latents(0, 2, 512)
    s = sampling.interpolate(z[0], z[1], 9, "slerp")
    l_ = sampling.interpolate(z[0], z[1], 9, "lerp")
    assert torch.equal(s[0], z[0]) and torch.equal(s[-1], z[1])
    assert torch.allclose(l_[4], (z[0] + z[1]) / 2)
    expected = (z[0].norm() + z[1].norm()) / 2  # the norm is interpolated linearly
    assert float(s[4].norm()) == pytest.approx(float(expected), rel=1e-5)
    assert float(l_[4].norm()) < 0.8 * float(expected)  # nearly orthogonal: lerp's midpoint ~ 1/sqrt(2)
    # the direction moves at constant angular speed along the great circle
    u = s / s.norm(dim=1, keepdim=True)
    angles = torch.arccos((u[:-1] * u[1:]).sum(1).clamp(-1, 1))
    assert torch.allclose(angles, angles.mean().expand_as(angles), atol=1e-4)
    with pytest.raises(ValueError, match="lerp, slerp"):
        sampling.interpolate(z[0], z[1], 3, "cubic")
    walk = sampling.latent_walk(0, 512, keys=3, steps=4)
    assert walk.shape == (12, 512) and torch.equal(walk[0], z[0]) and torch.equal(walk[4], z[1])


def test_api_reference_snippet_runs(runs, tmp_path, monkeypatch):
    """The first code block of docs/api.md, with its run folder replaced."""
    text = (REPO / "docs" / "api.md").read_text()
    code = re.search(r"```python\n(.*?)```", text, re.S).group(1)
    assert "ganlab.load(" in code
    code = re.sub(r'ganlab\.load\("[^"]+"', f'ganlab.load("{runs["cls"]}"', code)
    monkeypatch.chdir(tmp_path)
    scope: dict = {}
    exec(compile(code, "docs/api.md", "exec"), scope)
    x, pics, walk = scope["x"], scope["pics"], scope["walk"]
    assert x.dtype == torch.uint8 and x.shape == (16, 1, 16, 16)
    assert len(pics) == 4 and pics[0].size == (16, 16) and pics[0].mode == "L"
    assert walk.shape == (2 * 8, 1, 16, 16)
    assert Image.open(tmp_path / "grid.png").size == (8 * 18 + 2, 8 * 18 + 2)
    gan = scope["gan"]
    assert gan.ema and gan.class_names[7] == "Sneaker"
    sandals = gan.sample(4, seed=0, labels="Sandal")
    assert all(np.array_equal(np.asarray(p), s[0].numpy()) for p, s in zip(pics, sandals))
    assert torch.equal(sandals, gan.sample(4, seed=0, labels=[5, 5, 5, 5]))
    assert not torch.equal(sandals, gan.sample(4, seed=0, labels="Bag"))


def test_api_labels_and_errors(runs, tmp_path):
    import ganlab
    from ganlab.api import Sampler
    from ganlab.checkpoints import CheckpointError
    from ganlab.labels import LabelError

    with pytest.raises(CheckpointError, match="nope.*no such checkpoint file or run folder"):
        ganlab.load(tmp_path / "nope")
    unc = ganlab.load(runs["unc"] / "checkpoints" / "last.ckpt", device="cpu")
    with pytest.raises(ValueError, match="unconditional"):
        unc.sample(2, labels=3)
    cls = ganlab.load(runs["cls"], device="cpu", ema=False)
    assert not cls.ema and cls.labels(3, ["Bag", 0, "sneaker"]).tolist() == [8, 0, 7]
    assert torch.equal(cls.labels(50, None, seed=4), sampling.evaluation_labels(10, "class", 50, 4))
    with pytest.raises(LabelError, match="unknown class 'Sweater'"):
        cls.labels(1, "Sweater")
    mh = Sampler(cls.model, "x", ["Smiling", "Eyeglasses"])
    mh.model.generator.label_kind = "multi_hot"  # only the label parsing is exercised here
    try:
        assert mh.labels(2, "Eyeglasses+Smiling").tolist() == [[1, 1], [1, 1]]
        assert mh.labels(2, []).tolist() == [[0, 0], [0, 0]]
        assert mh.labels(2, [["Smiling"], []]).tolist() == [[1, 0], [0, 0]]
    finally:
        mh.model.generator.label_kind = "class"
