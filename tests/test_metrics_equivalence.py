"""ganlab's FID / KID / precision-recall equal torch-fidelity's calculate_metrics on real images.

Two halves of the shared CelebA subset (center-cropped, resized to 64x64, written as PNG) are
scored by ganlab (extract once, compute_metrics on features) and by torch-fidelity's own
end-to-end ``calculate_metrics`` (folders in, same weights file, same seed); they must agree to 0.1%.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from _metrics_helpers import CELEBA, session_weights
from ganlab.metrics import compute_metrics
from ganlab.metrics.inception import InceptionExtractor
from ganlab.metrics.fakes import ImageFolder

pytestmark = pytest.mark.skipif(not CELEBA.is_dir(), reason=f"shared CelebA subset absent ({CELEBA})")


def write_half(files, folder):
    folder.mkdir()
    for f in files:
        with Image.open(f) as im:
            im = im.convert("RGB").crop((0, 20, 178, 198)).resize((64, 64), Image.BICUBIC)  # 178x218 -> 178x178
            im.save(folder / (f.stem + ".png"))
    return str(folder)


def test_matches_torch_fidelity_calculate_metrics(tmp_path):
    """2 x 32 images (each pipeline extracts all 64, then one 2048-d FID each)."""
    check_against_torch_fidelity(tmp_path, 32)


@pytest.mark.slow
def test_matches_torch_fidelity_calculate_metrics_2x100(tmp_path):
    check_against_torch_fidelity(tmp_path, 100)


def check_against_torch_fidelity(tmp_path, n_half):
    from torch_fidelity import calculate_metrics

    files = sorted(CELEBA.glob("*.jpg"))[: 2 * n_half]
    fake_dir = write_half(files[:n_half], tmp_path / "fake")
    real_dir = write_half(files[n_half:], tmp_path / "real")
    weights = session_weights()
    kid_size, seed, bs = n_half // 2, 2020, 50

    ext = InceptionExtractor(weights.path, device="cpu", batch_size=bs)
    fake = ext.extract(ImageFolder(fake_dir).images(slice(None)))
    real = ext.extract(ImageFolder(real_dir).images(slice(None)))
    ours = compute_metrics(real, fake, ["fid", "kid", "prc"], kid_subset_size=kid_size, kid_subsets=100, seed=seed)

    ref = calculate_metrics(
        input1=fake_dir, input2=real_dir, fid=True, kid=True, prc=True, cuda=False, batch_size=bs,
        feature_extractor="inception-v3-compat",  # torch-fidelity's default for prc would be VGG16
        feature_extractor_weights_path=weights.path, kid_subset_size=kid_size, kid_subsets=100, rng_seed=seed,
        cache=False, save_cpu_ram=True, verbose=False,
    )
    pairs = {"fid": "frechet_inception_distance", "kid": "kernel_inception_distance_mean",
             "kid_std": "kernel_inception_distance_std", "precision": "precision", "recall": "recall",
             "f1": "f_score"}
    for ours_key, ref_key in pairs.items():
        assert ours[ours_key] == pytest.approx(ref[ref_key], rel=1e-3, abs=1e-9), ours_key
    # a sane regime: two halves of the same faces are close but not identical
    assert 5 < ours["fid"] < 300 and 0 < ours["precision"] <= 1
    assert np.isfinite(real.numpy()).all() and real.shape == (n_half, 2048)
    assert torch.is_tensor(fake)
