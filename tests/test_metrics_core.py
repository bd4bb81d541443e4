"""Metric maths on synthetic features: closed forms and brute-force re-derivations."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ganlab.metrics import compute_metrics, density_coverage, fid_from_statistics, fid_statistics
from ganlab.metrics.core import kid_subset_size_used, normalize_metric_names
from ganlab.metrics.memorization import memorization_stats, nearest_neighbors, pairs_grid


def gaussian(n, mu, var, seed, rot=None):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, len(mu))) * np.sqrt(var)
    if rot is not None:
        x = x @ rot.T
    return (x + mu).astype(np.float32)


def test_identical_sets_give_zero_fid_and_perfect_prc():
    x = gaussian(400, np.zeros(16), np.linspace(0.5, 2, 16), 0)
    m = compute_metrics(x, x, ["fid", "prc", "dc"])
    assert abs(m["fid"]) < 1e-3
    assert m["precision"] == m["recall"] == m["f1"] == pytest.approx(1.0)
    assert m["density"] == pytest.approx(1.0) and m["coverage"] == 1.0


def test_fid_closed_form_diagonal_and_rotated_covariances():
    mu1, mu2 = np.array([0.0, 1.0, -2.0, 0.5]), np.array([1.0, 1.0, 0.0, 0.0])
    a, b = np.array([1.0, 2.0, 0.5, 3.0]), np.array([4.0, 0.5, 0.5, 1.0])
    want = np.sum((mu1 - mu2) ** 2) + np.sum(a + b - 2 * np.sqrt(a * b))
    got = fid_from_statistics({"mu": mu1, "sigma": np.diag(a)}, {"mu": mu2, "sigma": np.diag(b)})
    assert got == pytest.approx(want, rel=1e-10)
    # S1 = c I, S2 = R diag(b) R^T: tr sqrt(S1 S2) = sum sqrt(c b)
    rot, _ = np.linalg.qr(np.random.default_rng(1).normal(size=(4, 4)))
    c = 2.0
    s2 = rot @ np.diag(b) @ rot.T
    want = np.sum((mu1 - mu2) ** 2) + np.sum(c + b - 2 * np.sqrt(c * b))
    got = fid_from_statistics({"mu": mu1, "sigma": c * np.eye(4)}, {"mu": mu2, "sigma": s2})
    assert got == pytest.approx(want, rel=1e-8)


def test_fid_from_samples_approaches_closed_form():
    mu1, mu2 = np.array([0.0, 1.0, -2.0, 0.5]), np.array([1.0, 1.0, 0.0, 0.0])
    a, b = np.array([1.0, 2.0, 0.5, 3.0]), np.array([4.0, 0.5, 0.5, 1.0])
    want = np.sum((mu1 - mu2) ** 2) + np.sum(a + b - 2 * np.sqrt(a * b))
    real, fake = gaussian(40000, mu1, a, 2), gaussian(40000, mu2, b, 3)
    got = compute_metrics(real, fake, ["fid"])["fid"]
    assert got == pytest.approx(want, rel=0.02)
    # cached real statistics give the identical number
    assert compute_metrics(real, fake, "fid", real_fid_stats=fid_statistics(real))["fid"] == got


def _poly_mmd_unbiased(x, y):
    d = x.shape[1]
    k = lambda p, q: (p @ q.T / d + 1.0) ** 3  # noqa: E731
    m = len(x)
    kxx, kyy, kxy = k(x, x), k(y, y), k(x, y)
    return ((kxx.sum() - np.trace(kxx)) + (kyy.sum() - np.trace(kyy))) / (m * (m - 1)) - 2 * kxy.mean()


def test_kid_matches_direct_unbiased_mmd():
    x = gaussian(120, np.zeros(8), np.ones(8), 4).astype(np.float64)
    y = gaussian(120, np.full(8, 0.3), np.ones(8) * 1.5, 5).astype(np.float64)
    m = compute_metrics(x, y, ["kid"], kid_subsets=1, kid_subset_size=120)
    # a subset of all samples is a permutation: the estimate is the full-sample one
    assert m["kid"] == pytest.approx(_poly_mmd_unbiased(y, x), rel=1e-4)
    assert m["kid_std"] == 0.0
    assert kid_subset_size_used(120, 50, 1000) == 50


def test_precision_recall_roles_and_values_brute_force():
    real = gaussian(150, np.zeros(6), np.ones(6), 6)
    fake = gaussian(100, np.full(6, 0.7), np.ones(6) * 0.5, 7)
    m = compute_metrics(real, fake, ["prc"])
    d = lambda p, q: np.linalg.norm(p[:, None] - q[None], axis=-1)  # noqa: E731
    r_real = np.sort(d(real, real), axis=1)[:, 3]
    r_fake = np.sort(d(fake, fake), axis=1)[:, 3]
    precision = np.mean((d(fake, real) <= r_real[None]).any(1))
    recall = np.mean((d(real, fake) <= r_fake[None]).any(1))
    assert m["precision"] == pytest.approx(precision) and m["recall"] == pytest.approx(recall)
    assert m["f1"] == pytest.approx(2 * precision * recall / (precision + recall))
    assert m["precision"] != pytest.approx(m["recall"])  # the roles matter and are not swapped


def test_density_coverage_brute_force():
    real = gaussian(120, np.zeros(5), np.ones(5), 8)
    fake = gaussian(90, np.full(5, 0.5), np.ones(5), 9)
    k = 5
    d_rr = np.linalg.norm(real[:, None] - real[None], axis=-1)
    radii = np.sort(d_rr, axis=1)[:, k]
    d_rf = np.linalg.norm(real[:, None] - fake[None], axis=-1)
    density = (d_rf < radii[:, None]).sum() / (k * len(fake))
    coverage = (d_rf.min(axis=1) < radii).mean()
    got = density_coverage(real, fake, k=k, batch_size=32)  # small batches: exercises the batching
    assert got["density"] == pytest.approx(density, rel=1e-6)
    assert got["coverage"] == pytest.approx(coverage)


def test_inception_score_needs_logits():
    x = gaussian(50, np.zeros(4), np.ones(4), 10)
    with pytest.warns(UserWarning, match="Inception Score skipped"):
        m = compute_metrics(x, x, ["fid", "is"])
    assert "is" not in m and "fid" in m
    logits = torch.zeros(40, 1008)  # uniform class posteriors: IS = 1
    m = compute_metrics(x, x, ["is"], fake_logits=logits)
    assert m["is"] == pytest.approx(1.0)


def test_metric_names():
    assert normalize_metric_names("fid,pr,density_coverage,fid") == ["fid", "prc", "dc"]
    with pytest.raises(ValueError, match="unknown metric"):
        normalize_metric_names(["fid", "lpips"])


def test_memorization_flags_copies_but_not_fresh_samples():
    real = gaussian(400, np.zeros(8), np.ones(8), 11)
    fresh = gaussian(400, np.zeros(8), np.ones(8), 12)
    copies = real[:200] + 1e-3 * gaussian(200, np.zeros(8), np.ones(8), 13)
    m_fresh = memorization_stats(real, fresh)
    m_copy = memorization_stats(real, copies)
    assert 0.3 < m_fresh["frac_closer_than_real_median"] < 0.7
    assert m_fresh["frac_closer_than_real_p01"] < 0.05
    assert 0.8 < m_fresh["median_distance_ratio"] < 1.25
    assert m_copy["frac_closer_than_real_median"] == 1.0 and m_copy["frac_closer_than_real_p01"] == 1.0
    assert (m_copy["nn_index"] == np.arange(200)).all()
    d, i = nearest_neighbors(real, real, exclude_self=True, batch_size=64)
    assert (i != torch.arange(400)).all() and (d > 0).all()


def test_pairs_grid_layout():
    f = np.zeros((5, 1, 8, 6), np.uint8)
    r = np.full((5, 3, 8, 6), 255, np.uint8)
    g = pairs_grid(f, r, pairs_per_row=2, pad=2)
    assert g.dtype == np.uint8 and g.shape == (3 * 8 + 4 * 2, 2 * (2 * 6 + 2) + 6 + 4, 3)
    assert g[2, 2].tolist() == [0, 0, 0] and g[2, 2 + 6 + 2].tolist() == [255, 255, 255]
