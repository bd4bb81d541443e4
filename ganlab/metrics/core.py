"""Metrics from feature arrays: one plain function, :func:`compute_metrics`.

The maths is torch-fidelity's (0.4.0), called on features rather than re-implemented:

* ``fid``  - :func:`torch_fidelity.metric_fid.fid_features_to_statistics` (mean, ``np.cov``) and
  :func:`~torch_fidelity.metric_fid.fid_statistics_to_metric` (TTUR's formula, trace of the square
  root via eigenvalues of ``S1 @ S2``);
* ``kid``  - :func:`torch_fidelity.metric_kid.kid_features_to_metric` (unbiased MMD^2, cubic
  polynomial kernel, ``kid_subsets`` subsets of ``kid_subset_size``, seeded with ``seed``);
* ``prc``  - :func:`torch_fidelity.metric_prc.prc_features_to_metric` (Kynkaanniemi et al. 2019,
  k = ``prc_neighborhood`` = 3): ``precision``, ``recall`` and their harmonic mean ``f1``
  (torch-fidelity's ``f_score``);
* ``dc``   - density and coverage (Naeem et al. 2020). Neither torch-fidelity 0.4 nor torchmetrics
  1.9 provides them, so :func:`density_coverage` implements the paper's two formulas in a few lines
  on top of torch-fidelity's batched pairwise-distance helper (``calc_cdist_part``);
* ``is``   - :func:`torch_fidelity.metric_isc.isc_features_to_metric` on the fakes' 1008 unbiased
  logits; only with the original weights file (which has the ``fc`` layer): pass ``fake_logits``.

Argument order follows torch-fidelity's ``calculate_metrics(input1=fake, input2=real)``: fakes are
torch-fidelity's ``features_1`` and reals ``features_2``, so KID's random subsets and the
precision/recall roles are exactly those of ``calculate_metrics`` with the same ``rng_seed``.
Because it takes only features, the same function serves per-class FID: call it again on subsets.
"""

from __future__ import annotations

import warnings
from typing import Iterable, Mapping

import numpy as np
import torch

from ganlab.metrics.protocol import protocol_defaults

#: metric group -> keys it produces
METRIC_KEYS: dict[str, tuple[str, ...]] = {
    "fid": ("fid",),
    "kid": ("kid", "kid_std"),
    "prc": ("precision", "recall", "f1"),
    "dc": ("density", "coverage"),
    "is": ("is", "is_std"),
}
#: metric keys where a higher value is better; every other logged scalar is best when lowest
MAXIMIZE = ("precision", "recall", "f1", "density", "coverage", "is")
_ALIASES = {"pr": "prc", "precision_recall": "prc", "density_coverage": "dc", "isc": "is", "inception_score": "is"}

_PROTOCOL = protocol_defaults()  # the metric parameters' defaults: conf/metrics/default.yaml, read, not repeated
DEFAULTS = {
    **{k: _PROTOCOL[k] for k in ("kid_subsets", "kid_subset_size", "prc_neighborhood", "dc_neighborhood")},
    "seed": _PROTOCOL["metric_seed"],  # torch-fidelity's default rng_seed (2020)
    # how the maths runs, not what it measures (not protocol keys):
    "isc_splits": 10,
    "pairwise_batch_size": 10000,
    "full_distance_matrix_max": 20000,
}


def normalize_metric_names(metrics: Iterable[str] | str) -> list[str]:
    """``"fid,kid"`` / ``["fid", "pr"]`` -> canonical group names, order kept, duplicates dropped."""
    if isinstance(metrics, str):
        metrics = [m for m in metrics.replace(" ", "").split(",") if m]
    out: list[str] = []
    for m in metrics:
        m = _ALIASES.get(str(m).lower(), str(m).lower())
        if m not in METRIC_KEYS:
            raise ValueError(f"unknown metric {m!r}; choose from {sorted(METRIC_KEYS)}")
        if m not in out:
            out.append(m)
    return out


def metric_mode(name: str) -> str:
    """``"max"`` or ``"min"``: which end of a logged scalar is best. ``name`` may carry a logger
    prefix (``metrics/recall``); a ``_std`` key follows its metric (``is_std`` as ``is``). The one
    list that the run summary (:mod:`ganlab.callbacks.summary`) and sweep reports
    (:mod:`ganlab.report`) rank by."""
    key = name.rsplit("/", 1)[-1]
    return "max" if key.removesuffix("_std") in MAXIMIZE else "min"


def as_features(x) -> torch.Tensor:
    """numpy / torch ``(N, D)`` -> float32 CPU torch tensor."""
    if isinstance(x, np.ndarray):
        x = torch.from_numpy(x)
    if not torch.is_tensor(x) or x.dim() != 2:
        raise ValueError("features must be a 2-D array (N, D)")
    return x.detach().to("cpu", torch.float32)


# ---------------------------------------------------------------------------------------------
# FID
def fid_statistics(features) -> dict[str, np.ndarray]:
    """torch-fidelity's FID statistics ``{"mu", "sigma"}`` (float32 mean, float64 covariance)."""
    from torch_fidelity.metric_fid import fid_features_to_statistics

    return fid_features_to_statistics(as_features(features))


def fid_from_statistics(stats_1: Mapping, stats_2: Mapping) -> float:
    from torch_fidelity.metric_fid import KEY_METRIC_FID, fid_statistics_to_metric

    s1 = {"mu": np.asarray(stats_1["mu"]), "sigma": np.asarray(stats_1["sigma"])}
    s2 = {"mu": np.asarray(stats_2["mu"]), "sigma": np.asarray(stats_2["sigma"])}
    # torch-fidelity asserts equal dtypes; statistics from fid_statistics() always agree
    if s1["mu"].dtype != s2["mu"].dtype or s1["sigma"].dtype != s2["sigma"].dtype:
        s1 = {k: v.astype(np.float64) for k, v in s1.items()}
        s2 = {k: v.astype(np.float64) for k, v in s2.items()}
    return float(fid_statistics_to_metric(s1, s2, verbose=False)[KEY_METRIC_FID])


# ---------------------------------------------------------------------------------------------
# density / coverage
def density_coverage(real_features, fake_features, k: int = 5, batch_size: int = 10000) -> dict[str, float]:
    """Density and coverage of Naeem et al. 2020 ("Reliable Fidelity and Diversity Metrics").

    With ``r_i`` the distance from real ``X_i`` to its k-th nearest *other* real sample:
    ``density = 1/(k M) * sum_j sum_i 1[||Y_j - X_i|| < r_i]`` over the M fakes ``Y_j``, and
    ``coverage = 1/N * sum_i 1[min_j ||Y_j - X_i|| < r_i]`` over the N reals (strict ``<`` as in the
    authors' ``prdc`` code). Neither torch-fidelity 0.4 nor torchmetrics 1.9 ships these two, so they
    are written here on torch-fidelity's batched ``calc_cdist_part`` (the same Euclidean distances
    its precision/recall uses) instead of adding another dependency.
    """
    from torch_fidelity.metric_prc import calc_cdist_part

    real, fake = as_features(real_features), as_features(fake_features)
    if len(real) <= k:
        raise ValueError(f"density/coverage with k={k} needs more than {k} real samples")
    radii = torch.cat(
        [calc_cdist_part(b, real, batch_size).kthvalue(k + 1, dim=1).values for b in real.split(batch_size)]
    )
    inside_count = torch.zeros(len(real), dtype=torch.float64)  # per real: fakes inside its ball
    covered = torch.zeros(len(real), dtype=torch.bool)
    for fb in fake.split(batch_size):
        d = calc_cdist_part(real, fb, batch_size)  # (N, m)
        inside = d < radii[:, None]
        inside_count += inside.sum(dim=1, dtype=torch.float64)
        covered |= inside.any(dim=1)
    density = float(inside_count.sum() / (k * len(fake)))
    coverage = float(covered.float().mean())
    return {"density": density, "coverage": coverage}


def kid_subset_size_used(n_real: int, n_fake: int, kid_subset_size: int = DEFAULTS["kid_subset_size"]) -> int:
    """KID subset size actually used: torch-fidelity's 1000, capped by the sample counts."""
    return int(min(int(kid_subset_size), int(n_real), int(n_fake)))


# ---------------------------------------------------------------------------------------------
def compute_metrics(
    real_features,
    fake_features,
    metrics: Iterable[str] | str = ("fid", "kid", "prc"),
    *,
    real_fid_stats: Mapping | None = None,
    fake_logits=None,
    kid_subsets: int = DEFAULTS["kid_subsets"],
    kid_subset_size: int = DEFAULTS["kid_subset_size"],
    prc_neighborhood: int = DEFAULTS["prc_neighborhood"],
    dc_neighborhood: int = DEFAULTS["dc_neighborhood"],
    isc_splits: int = DEFAULTS["isc_splits"],
    seed: int = DEFAULTS["seed"],
    device: str | torch.device | None = None,
    pairwise_batch_size: int = DEFAULTS["pairwise_batch_size"],
) -> dict[str, float]:
    """All requested metrics from ``(N, D)`` real and ``(M, D)`` fake feature arrays.

    ``metrics``: any of ``fid``, ``kid``, ``prc``, ``dc``, ``is`` (see :data:`METRIC_KEYS` for the
    keys each adds). ``real_fid_stats`` (``{"mu", "sigma"}`` from :func:`fid_statistics`) skips
    recomputing the real covariance. KID's subset size is capped at ``min(N, M)``
    (:func:`kid_subset_size_used` tells reports the value). ``device`` only moves the pairwise distances of
    precision/recall and density/coverage (e.g. to CUDA); results stay floats. ``is`` without
    ``fake_logits`` is skipped with a warning (the converted weights have no logits layer).
    """
    groups = normalize_metric_names(metrics)
    real, fake = as_features(real_features), as_features(fake_features)
    if real.shape[1] != fake.shape[1]:
        raise ValueError(f"feature sizes differ: real {tuple(real.shape)}, fake {tuple(fake.shape)}")
    out: dict[str, float] = {}
    if "fid" in groups:
        r_stats = real_fid_stats if real_fid_stats is not None else fid_statistics(real)
        out["fid"] = fid_from_statistics(fid_statistics(fake), r_stats)
    if "kid" in groups:
        from torch_fidelity.metric_kid import KEY_METRIC_KID_MEAN, KEY_METRIC_KID_STD, kid_features_to_metric

        size = kid_subset_size_used(len(real), len(fake), kid_subset_size)
        if size < int(kid_subset_size):
            warnings.warn(f"KID subset size lowered from {kid_subset_size} to {size} (only {len(real)} real / "
                          f"{len(fake)} fake samples)", stacklevel=2)
        r = kid_features_to_metric(fake, real, kid_subsets=int(kid_subsets), kid_subset_size=size,
                                   rng_seed=int(seed), verbose=False)
        out["kid"] = float(r[KEY_METRIC_KID_MEAN])
        out["kid_std"] = float(r[KEY_METRIC_KID_STD])
    dev = torch.device(device) if device is not None else torch.device("cpu")
    if "prc" in groups:
        from torch_fidelity.metric_prc import KEY_METRIC_F_SCORE, KEY_METRIC_PRECISION, KEY_METRIC_RECALL
        from torch_fidelity.metric_prc import prc_features_to_metric

        big = max(len(real), len(fake)) > DEFAULTS["full_distance_matrix_max"]
        r = prc_features_to_metric(fake.to(dev), real.to(dev), prc_neighborhood=int(prc_neighborhood),
                                   prc_batch_size=int(pairwise_batch_size), save_cpu_ram=big, verbose=False)
        out["precision"] = float(r[KEY_METRIC_PRECISION])
        out["recall"] = float(r[KEY_METRIC_RECALL])
        out["f1"] = float(r[KEY_METRIC_F_SCORE])
    if "dc" in groups:
        out.update(density_coverage(real.to(dev), fake.to(dev), k=int(dc_neighborhood),
                                    batch_size=int(pairwise_batch_size)))
    if "is" in groups:
        if fake_logits is None:
            warnings.warn("Inception Score skipped: the InceptionV3 weights in use have no logits layer "
                          "(converted TorchScript copy); supply the original "
                          "weights-inception-2015-12-05-6726825d.pth to get it", stacklevel=2)
        else:
            from torch_fidelity.metric_isc import KEY_METRIC_ISC_MEAN, KEY_METRIC_ISC_STD, isc_features_to_metric

            r = isc_features_to_metric(as_features(fake_logits), splits=int(isc_splits), shuffle=True,
                                       rng_seed=int(seed))
            out["is"] = float(r[KEY_METRIC_ISC_MEAN])
            out["is_std"] = float(r[KEY_METRIC_ISC_STD])
    return out


__all__ = [
    "MAXIMIZE",
    "METRIC_KEYS",
    "compute_metrics",
    "density_coverage",
    "fid_from_statistics",
    "fid_statistics",
    "kid_subset_size_used",
    "metric_mode",
    "normalize_metric_names",
]
