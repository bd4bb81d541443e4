"""Shapes, conditioning and initialisation of the networks."""

import pytest
import torch
from torch.nn.utils import parametrize

from ganlab.models.networks.conditioning import ConditionalBatchNorm2d
from ganlab.models.networks.dcgan import DCGANDiscriminator, DCGANGenerator, start_size
from ganlab.models.networks.mlp import MLPDiscriminator, MLPGenerator


@pytest.mark.parametrize("resolution,channels", [(28, 1), (32, 3), (48, 3), (64, 3), (128, 1)])
def test_dcgan_shapes(resolution, channels):
    g = DCGANGenerator(z_dim=16, resolution=resolution, channels=channels, base_width=8)
    d = DCGANDiscriminator(resolution=resolution, channels=channels, base_width=8)
    x = g(torch.randn(2, 16))
    assert x.shape == (2, channels, resolution, resolution)
    assert x.min() >= -1 and x.max() <= 1
    assert d(x).shape == (2,)


def test_dcgan_start_sizes_and_bad_resolution():
    assert start_size(28) == (7, 2) and start_size(64) == (4, 4) and start_size(48) == (6, 3)
    with pytest.raises(ValueError, match="resolution"):
        start_size(30)


def test_dcgan_widths_follow_the_paper_at_64px():
    g = DCGANGenerator(resolution=64, base_width=64)
    assert [c.out_channels for c in g.convs] == [512, 256, 128, 64]
    d = DCGANDiscriminator(resolution=64, base_width=64)
    convs = [m for m in d.features if isinstance(m, torch.nn.Conv2d)]
    assert [c.out_channels for c in convs] == [64, 128, 256, 512]


def test_dcgan_init_statistics():
    g = DCGANGenerator(resolution=64, base_width=64)
    w = torch.cat([c.weight.flatten() for c in g.convs])
    assert abs(w.std().item() - 0.02) < 0.002 and abs(w.mean().item()) < 0.001
    bn = torch.cat([n.weight for n in g.norms])
    assert abs(bn.mean().item() - 1.0) < 0.01


@pytest.mark.parametrize("resolution,channels", [(28, 1), (32, 3), (48, 3)])
def test_mlp_shapes(resolution, channels):
    g = MLPGenerator(z_dim=16, resolution=resolution, channels=channels, hidden=(32, 64))
    d = MLPDiscriminator(resolution=resolution, channels=channels, hidden=(64, 32))
    x = g(torch.randn(3, 16))
    assert x.shape == (3, channels, resolution, resolution)
    assert d(x).shape == (3,)


def test_spectral_norm_flag():
    d = DCGANDiscriminator(resolution=32, base_width=8, spectral_norm=True, norm="none")
    convs = [m for m in d.modules() if isinstance(m, torch.nn.Conv2d)]
    assert convs and all(parametrize.is_parametrized(c, "weight") for c in convs)
    m = MLPDiscriminator(resolution=16, hidden=(32,), spectral_norm=True)
    assert parametrize.is_parametrized(m.to_logit, "weight")


@pytest.mark.parametrize("kind", ["class", "multi_hot"])
@pytest.mark.parametrize("g_style,d_style", [("concat", "projection"), ("cbn", "concat"), ("concat+cbn", "projection")])
def test_conditional_labels_change_outputs(kind, g_style, d_style):
    torch.manual_seed(0)
    k = 4
    g = DCGANGenerator(z_dim=8, resolution=32, base_width=8, num_classes=k, label_kind=kind, conditioning=g_style)
    d = DCGANDiscriminator(resolution=32, base_width=8, num_classes=k, label_kind=kind, conditioning=d_style)
    if g_style == "concat+cbn":  # both paths: an embedding joined to z and label-driven BN scales
        assert hasattr(g, "embed") and g.convs[0].in_channels == 8 + 8
        assert all(isinstance(n, ConditionalBatchNorm2d) for n in g.norms)
    if g_style == "cbn":  # zero-initialised label scales: give them values so labels matter
        for n in g.norms:
            torch.nn.init.normal_(n.gamma.embed.weight, 0, 0.5)
    g.eval()
    z = torch.randn(2, 8).repeat(2, 1)
    if kind == "class":
        y = torch.tensor([0, 0, 1, 1])
    else:
        y = torch.tensor([[1, 0, 0, 0], [1, 0, 0, 0], [0, 1, 1, 0], [0, 1, 1, 0]], dtype=torch.float32)
    x = g(z, y)
    assert not torch.allclose(x[:2], x[2:])  # same noise, other label -> other image
    out = d(x.detach(), y)
    assert out.shape == (4,)
    out.sum().backward()  # gradient reaches the label embedding
    emb = d.project if hasattr(d, "project") else d.embed
    assert emb.embed.weight.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="needs labels"):
        g(z)


def test_mlp_conditional():
    g = MLPGenerator(z_dim=8, resolution=28, channels=1, hidden=(16,), num_classes=10)
    d = MLPDiscriminator(resolution=28, channels=1, hidden=(16,), num_classes=10, conditioning="concat")
    y = torch.arange(4)
    assert d(g(torch.randn(4, 8), y), y).shape == (4,)


@pytest.mark.parametrize("make", [
    lambda: DCGANDiscriminator(resolution=32, base_width=8, num_classes=10, conditioning="projection"),
    lambda: MLPDiscriminator(resolution=16, hidden=(32,), num_classes=10, conditioning="projection"),
])
def test_projection_embedding_starts_small(make):
    """nn.Embedding's default N(0, 1) made the projection term dominate D's first logits
    (a first D loss of ~68 with BCE); it starts at N(0, 0.02) like the other layers."""
    w = make().project.embed.weight
    assert abs(w.std().item() - 0.02) < 0.01


def test_unknown_generator_conditioning_is_refused():
    with pytest.raises(ValueError, match="'concat', 'cbn' or 'concat\\+cbn'"):
        DCGANGenerator(z_dim=8, resolution=16, base_width=8, num_classes=3, conditioning="film")


@pytest.mark.parametrize("make", [lambda **kw: DCGANDiscriminator(resolution=16, channels=1, base_width=8, **kw),
                                  lambda **kw: MLPDiscriminator(resolution=8, channels=1, hidden=(16, 8), **kw)])
def test_shared_label_head_concat_and_projection(make):
    """Both discriminators use the one label head: projection adds <embed(y), sum_xy h> to the
    unconditional logit; concat joins the embedding to the input (a different logit per label)."""
    torch.manual_seed(0)
    d = make(num_classes=4, conditioning="projection").eval()
    x, y = torch.randn(3, 1, *(16, 16) if isinstance(d, DCGANDiscriminator) else (8, 8)), torch.tensor([0, 2, 3])
    feats = {}
    layer = d.features if isinstance(d, DCGANDiscriminator) else d.body
    layer.register_forward_hook(lambda m, i, o: feats.setdefault("h", o))
    logit = d(x, y)
    h = feats["h"]
    pooled = h.sum(dim=(2, 3)) if h.dim() == 4 else h
    plain = d.to_logit(h).flatten(1).squeeze(1)
    torch.testing.assert_close(logit, plain + (d.project.embed.weight[y] * pooled).sum(1))
    c = make(num_classes=4, conditioning="concat").eval()
    assert not hasattr(c, "project") and c.embed.embed.weight.shape[0] == 4
    outs = torch.stack([c(x[:1], torch.tensor([k])) for k in range(4)]).flatten()
    assert outs.unique().numel() == 4
    with pytest.raises(ValueError, match="'concat', 'projection' or 'adc'"):
        make(num_classes=4, conditioning="film")
