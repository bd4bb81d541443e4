"""Conditional GANs in the one training loop: labels reach G and D for every conditioning style
and both label kinds, the label spec is checked against the data, checkpoints carry the class
names, and the sample grids have one row per class plus a class-interpolation grid."""

from __future__ import annotations

import copy

import pytest
import torch
from PIL import Image

from _cgan_helpers import FACES_MULTI_HOT, QUIET, TINY_DCGAN, TINY_MLP, fashion_overrides, write_fashion_like
from ganlab.models.label_spec import LabelSpecError
from ganlab.sampling import interpolation_labels, soft_class_labels
from ganlab.utils.files import folder_names
from ganlab.checkpoints import stored_data_state
from ganlab.data.idx import FASHION_MNIST_CLASSES
from ganlab.models import load_gan
from ganlab.models.networks.dcgan import DCGANGenerator
from ganlab.train import train


class LabelRecorder:
    """Forward pre-hooks that record the labels each network is called with."""

    def __init__(self, gan) -> None:
        self.seen = {"generator": [], "discriminator": []}
        for name in self.seen:
            getattr(gan, name).register_forward_pre_hook(self._hook(name))

    def _hook(self, name):
        def hook(module, args):
            self.seen[name].append(None if len(args) < 2 or args[1] is None else args[1].detach().clone())
        return hook


def _embedding_params(module) -> torch.Tensor:
    return torch.cat([p.detach().flatten().clone() for n, p in module.named_parameters()
                      if any(k in n for k in ("embed", "project", "gamma", "beta"))])


CASES = [  # (model, generator style, discriminator style, label kind)
    ("cgan", "concat", "concat", "class"),
    ("cgan", "cbn", "projection", "class"),
    ("cgan", "cbn", "concat", "multi_hot"),
    ("cgan", "concat", "projection", "multi_hot"),
    ("cgan_mlp", "concat", "projection", "class"),
]


@pytest.mark.parametrize("model,g_style,d_style,kind", CASES)
def test_labels_flow_through_generator_and_discriminator(make_cfg, tmp_path, model, g_style, d_style, kind):
    import hydra
    import lightning as L

    nets = TINY_DCGAN if model == "cgan" else TINY_MLP
    if kind == "class":
        root = write_fashion_like(tmp_path / "fmnist", n_train=64, n_test=20)
        data = [*fashion_overrides(root), "data.resolution=16" if model == "cgan" else "data.resolution=28"]
        tiny = False
    else:
        data, tiny = FACES_MULTI_HOT, True
    cfg = make_cfg(tmp_path, f"model={model}", *nets, *data, f"model.generator.conditioning={g_style}",
                   f"model.discriminator.conditioning={d_style}", "generator_steps=3", "callbacks=none",
                   "trainer.accelerator=cpu", *QUIET, tiny=tiny)
    k = 10 if kind == "class" else 2
    ref = copy.deepcopy(cfg)
    ref.model.generator.num_classes = k  # what train() derives from the data (num_classes: null)
    L.seed_everything(cfg.seed)
    before = hydra.utils.instantiate(ref.model)
    recorder: dict = {}

    class Attach(L.Callback):
        def on_fit_start(self, trainer, pl_module):
            recorder["r"] = LabelRecorder(pl_module)

    _, trainer = train(cfg, extra_callbacks=[Attach()])
    gan = trainer.lightning_module
    assert (gan.num_classes, gan.label_kind) == (k, kind)
    seen = recorder["r"].seen
    for name in ("generator", "discriminator"):
        assert seen[name] and all(lab is not None for lab in seen[name]), name
        lab = seen[name][0]
        if kind == "class":
            assert lab.dtype == torch.int64 and lab.dim() == 1 and int(lab.max()) < 10
        else:
            assert lab.dtype == torch.float32 and lab.shape[1] == 2 and set(lab.unique().tolist()) <= {0.0, 1.0}
    # D sees real and fake with the same labels; G's labels are the batch's
    assert torch.equal(seen["generator"][0], seen["discriminator"][0])
    # the label parameters of both networks were trained
    assert (_embedding_params(gan.generator) - _embedding_params(before.generator)).abs().max() > 0
    assert (_embedding_params(gan.discriminator) - _embedding_params(before.discriminator)).abs().max() > 0
    # labels change the output
    z = gan.noise(1).repeat(2, 1)
    labels = torch.tensor([0, 1]) if kind == "class" else torch.tensor([[0.0, 0.0], [1.0, 1.0]])
    with soft_class_labels(gan):  # also exercises the soft-label patch with integer labels
        x = gan.sample(z, labels)
    assert not torch.allclose(x[0], x[1])


def test_label_spec_is_checked_against_the_data(make_cfg, tmp_path):
    base = [*TINY_DCGAN, "model=cgan", "generator_steps=1", "callbacks=none", *QUIET]
    cfg = make_cfg(tmp_path, *base, "data.labels=[Smiling,Eyeglasses]", "model.generator.num_classes=3",
                   "model.generator.label_kind=multi_hot")
    with pytest.raises(LabelSpecError, match=r"model.generator.num_classes=2 model.generator.label_kind=multi_hot"):
        train(cfg)
    cfg = make_cfg(tmp_path, *base, "model.generator.num_classes=2")  # faces without labels
    with pytest.raises(LabelSpecError, match="data has no labels"):
        train(cfg)
    with pytest.raises(LabelSpecError, match=r"num_classes: null = from the data.*data has no labels"):
        train(make_cfg(tmp_path, *base))  # num_classes left to the data, which has none


def test_checkpoint_carries_class_names_and_counts(make_cfg, tmp_path):
    root = write_fashion_like(tmp_path / "fmnist", n_train=40, n_test=10)
    cfg = make_cfg(tmp_path, "model=cgan", *TINY_DCGAN, *fashion_overrides(root), "data.resolution=16",
                   "generator_steps=2", "checkpoint_every=2", "callbacks=[model_checkpoint]",
                   "trainer.accelerator=cpu", *QUIET, tiny=False)
    train(cfg)
    path = tmp_path / "run" / "checkpoints" / "last.ckpt"
    ckpt = torch.load(path, weights_only=False)
    assert ckpt["hyper_parameters"]["generator"]["num_classes"] == 10  # no config typed it: the data's 10 classes
    meta = stored_data_state(ckpt)
    assert meta["class_names"] == FASHION_MNIST_CLASSES and meta["label_kind"] == "class"
    assert meta["label_counts"] == {n: 4 for n in FASHION_MNIST_CLASSES}
    assert meta["data_config"]["source"]["_target_"] == "ganlab.data.sources.FashionMNIST" and meta["fingerprint"]
    gan = load_gan(path)
    assert gan.num_classes == 10


def test_sample_grids_have_a_row_per_class_and_an_interpolation_grid(make_cfg, tmp_path):
    res, pad = 16, 2
    cfg = make_cfg(tmp_path, "model=cgan", *TINY_DCGAN, *FACES_MULTI_HOT, "generator_steps=2", "sample_every=2",
                   "callbacks=[sample_grid]", "callbacks.sample_grid.interpolation_steps=5", *QUIET)
    train(cfg)
    samples = tmp_path / "run" / "samples"
    w, h = Image.open(samples / "step_000002.png").size
    # multi-hot: row 0 = no attribute, then one row per attribute; 8 fixed-noise columns
    assert (w, h) == (8 * (res + pad) + pad, 3 * (res + pad) + pad)
    w, h = Image.open(samples / "class_interpolation.png").size
    assert (w, h) == (5 * (res + pad) + pad, 2 * (res + pad) + pad)


def test_class_rows_for_ten_classes(make_cfg, tmp_path):
    root = write_fashion_like(tmp_path / "fmnist", n_train=40, n_test=10)
    cfg = make_cfg(tmp_path, "model=cgan", *TINY_DCGAN, *fashion_overrides(root), "data.resolution=16",
                   "generator_steps=1", "sample_every=1", "callbacks=[sample_grid]", "trainer.accelerator=cpu",
                   *QUIET, tiny=False)
    train(cfg)
    w, h = Image.open(tmp_path / "run" / "samples" / "step_000001.png").size
    assert (w, h) == (8 * 18 + 2, 10 * 18 + 2)
    w, h = Image.open(tmp_path / "run" / "samples" / "class_interpolation.png").size
    assert (w, h) == (8 * 18 + 2, 10 * 18 + 2)


@pytest.mark.parametrize("style", ["concat", "cbn"])
def test_soft_one_hot_labels_equal_integer_labels_and_interpolate(style):
    torch.manual_seed(0)
    g = DCGANGenerator(z_dim=8, resolution=16, channels=1, base_width=8, num_classes=4, conditioning=style).eval()
    if style == "cbn":  # CBN embeddings start at 0 (identity); make them class-specific
        for m in g.modules():
            if hasattr(m, "gamma"):
                torch.nn.init.normal_(m.gamma.embed.weight, std=0.5)
                torch.nn.init.normal_(m.beta.embed.weight, std=0.5)
    z = torch.randn(4, 8)
    hard = g(z, torch.arange(4))
    with soft_class_labels(g):
        soft = g(z, torch.eye(4))
        mid = g(z[:1], torch.tensor([[0.5, 0.5, 0.0, 0.0]]))
    assert torch.allclose(hard, soft, atol=1e-6)
    assert not torch.allclose(mid[0], hard[0]) and not torch.allclose(mid[0], hard[1])
    from ganlab.models.networks.conditioning import LabelEmbedding

    # the patch is undone on exit
    assert not any("forward" in vars(m) for m in g.modules() if isinstance(m, LabelEmbedding))
    labels, ends = interpolation_labels(4, "class", 3)
    assert labels.shape == (12, 4) and ends[3] == ("3", "0")
    assert torch.allclose(labels[1], torch.tensor([0.5, 0.5, 0.0, 0.0]))


def test_class_folder_names_are_safe_and_unique():
    assert folder_names(["T-shirt/top", "a:b", "A:b", ".."]) == ["T-shirt_top", "a_b", "A_b_2", "_"]
