"""Protocol records and report files: every number ships with how it was obtained."""

from __future__ import annotations

import math
import os
import platform
from typing import Any, Mapping, Sequence

import numpy as np
import torch

from ganlab.metrics.core import kid_subset_size_used
from ganlab.utils.files import atomic_write_json

#: what each reported key means, for the markdown tables
DESCRIPTIONS = {
    "fid": "Frechet Inception Distance (lower is better)",
    "kid": "Kernel Inception Distance, mean over subsets (lower is better)",
    "kid_std": "KID standard deviation over subsets",
    "precision": "Precision, Kynkaanniemi et al. 2019 (k=3)",
    "recall": "Recall, Kynkaanniemi et al. 2019 (k=3)",
    "f1": "Harmonic mean of precision and recall",
    "density": "Density, Naeem et al. 2020",
    "coverage": "Coverage, Naeem et al. 2020",
    "is": "Inception Score (higher is better)",
    "is_std": "Inception Score standard deviation over splits",
}


def build_protocol(
    protocol: Any,
    *,
    n_real: int,
    n_fake: int,
    real_shape: Sequence[int] | None,
    fake_shape: Sequence[int] | None,
    extractor: Mapping[str, Any],
    fingerprint: str | None = None,
    fake_source: str | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """The record written beside every number: ``protocol`` (a :class:`ganlab.metrics.protocol.Protocol`)
    with the counts actually used, the images' shapes, the extractor and the versions."""
    import torch_fidelity

    p = protocol
    metrics, split, seed = p.metrics, p.split, p.seed
    reference_subset_seed, kid_subsets, kid_subset_size = p.reference_subset_seed, p.kid_subsets, p.kid_subset_size
    prc_neighborhood, dc_neighborhood, metric_seed = p.prc_neighborhood, p.dc_neighborhood, p.metric_seed

    res = lambda s: "x".join(str(v) for v in s[-2:]) if s else None  # noqa: E731 - HxW
    proto: dict[str, Any] = {
        "metrics": list(metrics),
        "n_real": int(n_real),
        "n_fake": int(n_fake),
        "reference_split": split,
        "reference_fingerprint": fingerprint,
        "reference_subset": ("whole split" if reference_subset_seed is None
                             else f"seeded uniform subset (seed {reference_subset_seed}) when n_real < split size"),
        "resolution_real": res(real_shape),
        "resolution_fake": res(fake_shape),
        "channels_real": int(real_shape[0]) if real_shape else None,
        "channels_fake": int(fake_shape[0]) if fake_shape else None,
        "fake_source": fake_source,
        "seed": int(seed),
        "extractor": extractor.get("extractor"),
        "weights_sha256": extractor.get("weights_sha256"),
        "weights_source": extractor.get("weights_source"),
        "resize": extractor.get("resize"),
        "input_dtype": extractor.get("dtype"),
        "torch_fidelity": torch_fidelity.__version__,
        "torch": torch.__version__,
    }
    groups = set(metrics)
    if "kid" in groups:
        proto["kid"] = {"subsets": int(kid_subsets), "subset_size": kid_subset_size_used(n_real, n_fake, kid_subset_size),
                        "kernel": "poly degree 3, gamma 1/d, coef0 1", "estimator": "unbiased",
                        "rng_seed": int(metric_seed)}
    if "prc" in groups:
        proto["prc"] = {"neighborhood": int(prc_neighborhood), "features": "InceptionV3 pool3 (torch-fidelity's "
                        "default for prc is VGG16; numbers equal calculate_metrics(feature_extractor="
                        "'inception-v3-compat'))"}
    if "dc" in groups:
        proto["dc"] = {"neighborhood": int(dc_neighborhood)}
    if "is" in groups:
        proto["is"] = {"splits": 10, "logits": "logits_unbiased (1008)", "rng_seed": int(metric_seed)}
    proto["machine"] = {"python": platform.python_version(), "platform": platform.platform(),
                        "device": extra.pop("device", None)}
    proto.update(extra)
    return proto


def to_jsonable(obj: Any) -> Any:
    if isinstance(obj, Mapping):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, (np.floating, float)):
        v = float(obj)
        return v if math.isfinite(v) else None
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, np.ndarray):
        return to_jsonable(obj.tolist())
    if torch.is_tensor(obj):
        return to_jsonable(obj.tolist())
    return obj


def write_json(obj: Any, path: str) -> str:
    """``obj`` as JSON (numpy / torch values converted, non-finite floats as null), written atomically."""
    return atomic_write_json(to_jsonable(obj), path)


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.6g}" if abs(v) >= 1e-3 or v == 0 else f"{v:.3e}"
    return str(v)


def markdown_report(
    values: Mapping[str, float], protocol: Mapping[str, Any], *, title: str = "ganlab evaluation",
    skipped: Mapping[str, str] | None = None, extra_sections: Mapping[str, Mapping[str, Any]] | None = None,
) -> str:
    lines = [f"# {title}", "", "| metric | value | meaning |", "| --- | --- | --- |"]
    for k, v in values.items():
        lines.append(f"| {k} | {_fmt(v)} | {DESCRIPTIONS.get(k, '')} |")
    for k, why in (skipped or {}).items():
        lines.append(f"| {k} | skipped | {why} |")
    for name, section in (extra_sections or {}).items():
        lines += ["", f"## {name}", "", "| key | value |", "| --- | --- |"]
        lines += [f"| {k} | {_fmt(v)} |" for k, v in section.items()]
    lines += ["", "## Protocol", "", "| key | value |", "| --- | --- |"]
    for k, v in protocol.items():
        if isinstance(v, Mapping):
            v = ", ".join(f"{kk}={_fmt(vv)}" for kk, vv in v.items())
        lines.append(f"| {k} | {_fmt(v)} |")
    return "\n".join(lines) + "\n"


__all__ = ["build_protocol", "markdown_report", "to_jsonable", "write_json"]
