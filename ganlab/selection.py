"""Sample selection for synthetic data sets (``python -m ganlab.generate``), each part optional:

* ``truncation=psi`` - the truncation trick for z, defined and implemented in :mod:`ganlab.sampling`
  (:func:`~ganlab.sampling.truncation_threshold`, :func:`~ganlab.sampling.latent`): each component of
  z is N(0, 1) truncated to its central mass ``psi``; ``psi = 1`` is the identity. ``0 < psi <= 1``.
* ``filter=classifier`` - keep a candidate only if a classifier trained on the real labelled data
  gives its intended label probability ``>= filter_threshold`` (class labels: the softmax
  probability of the class; multi-hot: the smallest over the attributes of the probability of the
  requested value). The classifier is ganlab's label-fidelity network
  (:func:`ganlab.metrics.classifier.get_label_classifier`) trained on the training split of the
  data the checkpoint was trained on (its stored data config), cached; or ``filter_classifier=PATH``
  (a file in that cache's format).
* ``filter=discriminator`` - discriminator rejection sampling (Azadi et al. 2019) with the
  checkpoint's own D (eval mode, no augmentation): per label, the first ``drs_burn_in``
  candidates estimate the maximum logit ``D_M``; then each candidate, in index order, raises
  ``D_M`` if its logit is higher and is kept with probability ``sigmoid(F)``,
  ``F = D(x) - D_M - log(1 - exp(D(x) - D_M - eps)) - gamma``, ``eps = 1e-6``;
  ``gamma = drs_gamma`` or, when null, the ``drs_percentile``-th percentile of ``F`` (gamma = 0)
  over the burn-in (the paper's dynamic shift). The uniform draw of candidate ``i`` comes from
  ``(seed, i)``, like its noise.

Determinism: with a filter, candidate ``n`` of label ``c`` has latent index ``i = n * K + c``
(``K`` = number of classes; for attribute combinations / unconditional models ``c`` is the
requested group's position and ``K`` the number of groups) and its noise is image ``i`` of
:mod:`ganlab.sampling`'s plan of ``seed`` (from ``(seed, i)`` alone), so ckpt + seed + options give
the same kept set whatever ``batch_size``. Without a filter the latent indices are generate's usual
``0 .. N-1`` in folder order.

Every label is tried. A label whose acceptance rate falls below ``min_acceptance`` (after
``ceil(count / min_acceptance)`` candidates) fails; the manifest's ``selection.per_class`` says what
each label got (``requested``, ``candidates``, ``kept``, ``passed``, ``written``). By default any
failure is a :class:`SelectionError` naming every failed label, and nothing is written; with
``partial=true`` the labels that passed are written, the failed ones are left out (``written: 0``) and
named in ``selection.failed`` and a warning. Nothing is written before selection has finished.
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import torch

from ganlab.labels import CLASS, label_tensor
from ganlab.run import Run
from ganlab.sampling import latent, latents, stream, truncation_threshold  # noqa: F401  (latent: re-exported)
from ganlab.utils.files import sha256_file

log = logging.getLogger(__name__)

FILTERS = (None, "classifier", "discriminator")
DRS_EPS = 1e-6


class SelectionError(ValueError):
    """A selection request that cannot be met (or is malformed): one clear line."""


@dataclass(frozen=True)
class Selection:
    truncation: float = 1.0
    filter: str | None = None
    threshold: float = 0.9
    min_acceptance: float = 0.01
    drs_burn_in: int = 1000
    drs_gamma: float | None = None
    drs_percentile: float = 95.0
    classifier_path: str | None = None
    classifier_steps: int | None = None
    partial: bool = False

    @property
    def active(self) -> bool:
        return self.truncation < 1.0 or self.filter is not None


def _number(cfg: Mapping, key: str, default, lo: float, hi: float, *, lo_open: bool = False):
    v = cfg.get(key, default)
    if v is None:
        return default
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise SelectionError(f"{key} must be a number, got {v!r}")
    if not ((lo < v) if lo_open else (lo <= v)) or v > hi:
        raise SelectionError(f"{key} must be in {'(' if lo_open else '['}{lo}, {hi}], got {v!r}")
    return v


def parse_selection(cfg: Mapping) -> Selection:
    """The selection options of a generate config (``truncation``, ``filter``, ``filter_*``, ``drs_*``)."""
    filt = cfg.get("filter")
    filt = None if filt in (None, "", "none", "None") else str(filt)
    if filt not in FILTERS:
        raise SelectionError(f"filter must be none, classifier or discriminator, got {cfg.get('filter')!r}")
    gamma = cfg.get("drs_gamma")
    if gamma is not None and (isinstance(gamma, bool) or not isinstance(gamma, (int, float))):
        raise SelectionError(f"drs_gamma must be a number or null, got {gamma!r}")
    steps = cfg.get("filter_classifier_steps")
    if steps is not None and (isinstance(steps, bool) or not isinstance(steps, int) or steps < 1):
        raise SelectionError(f"filter_classifier_steps must be an integer >= 1, got {steps!r}")
    path = cfg.get("filter_classifier")
    if path and not os.path.isfile(str(path)):
        raise SelectionError(f"filter_classifier={path}: no such file")
    partial = cfg.get("partial", False)
    if not isinstance(partial, bool):
        raise SelectionError(f"partial must be true or false, got {partial!r}")
    burn = cfg.get("drs_burn_in", 1000)
    if isinstance(burn, bool) or not isinstance(burn, int) or burn < 1:
        raise SelectionError(f"drs_burn_in must be an integer >= 1, got {burn!r}")
    return Selection(
        truncation=float(_number(cfg, "truncation", 1.0, 0.0, 1.0, lo_open=True)),
        filter=filt,
        threshold=float(_number(cfg, "filter_threshold", 0.9, 0.0, 1.0)),
        min_acceptance=float(_number(cfg, "min_acceptance", 0.01, 0.0, 1.0, lo_open=True)),
        drs_burn_in=int(burn),
        drs_gamma=None if gamma is None else float(gamma),
        drs_percentile=float(_number(cfg, "drs_percentile", 95.0, 0.0, 100.0)),
        classifier_path=str(path) if path else None,
        classifier_steps=steps,
        partial=partial,
    )


# -- noise: ganlab.sampling's plan (candidate i has the z of image i of the plan) ---------------------------
def uniform(seed: int, index: int) -> float:
    """The DRS acceptance draw of candidate ``index``: a stream of its own, from ``(seed, index)``."""
    return float(torch.rand(1, generator=stream(seed, index, 1)))


# -- scorers ----------------------------------------------------------------------------------------------
def state_dict_sha256(module: torch.nn.Module) -> str:
    """sha256 over a module's state_dict (names, dtypes, shapes and bytes, in key order)."""
    h = hashlib.sha256()
    for name, t in module.state_dict().items():
        t = t.detach().cpu().contiguous().reshape(-1)
        h.update(f"{name}|{t.dtype}|{t.numel()}|".encode())
        h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def load_filter_classifier(spec: Selection, run: Run, cache_dir: str | None):
    """``(model, record)``: the label classifier of ``filter=classifier`` and what the manifest says of it.
    The run's stored training data config is instantiated only after the ``_target_`` allowlist
    check (:meth:`ganlab.run.Run.datamodule`; skipped when the run was opened with ``trust``)."""
    from ganlab.checkpoints import CheckpointError
    from ganlab.metrics.classifier import CompactCNN, get_label_classifier

    device, info = run.device, run.labels
    if spec.classifier_path:
        try:
            blob = torch.load(spec.classifier_path, map_location="cpu", weights_only=True)
            model = CompactCNN(_channels(blob), info.num_classes, blob["info"]["widths"])
            model.load_state_dict(blob["state_dict"])
        except Exception as err:
            raise SelectionError(f"filter_classifier={spec.classifier_path} is not a ganlab label classifier "
                                 f"(expected a file from ganlab.metrics.classifier's cache): {err}") from None
        return model.to(device).eval(), {"kind": "classifier", "path": os.path.abspath(spec.classifier_path),
                                         "sha256": sha256_file(spec.classifier_path)}
    data_cfg = run.data_config
    if not data_cfg:
        raise SelectionError("filter=classifier needs the training data config stored in the checkpoint "
                             "(written by ganlab.train), or filter_classifier=PATH")
    try:
        dm = run.datamodule()
    except CheckpointError as err:  # a _target_ outside the allowlist: nothing was instantiated
        raise SelectionError(f"filter=classifier: {err}") from None
    except Exception as err:
        raise SelectionError(f"filter=classifier: the checkpoint's training data "
                             f"({data_cfg.get('root', data_cfg.get('source'))}) could not be loaded to train "
                             f"the classifier: {err}") from None
    if list(dm.class_names) != list(info.class_names):
        raise SelectionError("filter=classifier: the training data's labels differ from the checkpoint's "
                             f"({list(dm.class_names)[:5]} vs {list(info.class_names)[:5]})")
    settings = {"steps": spec.classifier_steps} if spec.classifier_steps else {}
    model, cinfo = get_label_classifier(dm, split="train", cache_dir=cache_dir, device=device, **settings)
    rec = {"kind": "classifier", "trained_on": f"{dm.hparams.get('source')}:{dm.hparams.get('root')} (train split)",
           "n_train": cinfo.get("n_train"), "steps": cinfo.get("settings", {}).get("steps"),
           "path": cinfo.get("path"), "sha256": sha256_file(cinfo["path"]) if cinfo.get("path") else
           state_dict_sha256(model)}
    if cinfo.get("real_heldout"):
        rec["real_heldout_accuracy"] = cinfo["real_heldout"]["accuracy"]
    return model.to(device).eval(), rec


def _channels(blob: Mapping) -> int:
    w = blob["state_dict"]["features.0.weight"]
    return int(w.shape[1])


def classifier_scores(clf: torch.nn.Module, label_kind: str | None) -> Callable:
    """``score(images in [-1, 1], labels) -> (B,)`` probability of the intended label, scored on the
    images as they will be written (quantised to uint8 first)."""
    from ganlab.utils.pixels import to_uint8

    @torch.no_grad()
    def score(x: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        logits = clf(to_uint8(x).float() / 127.5 - 1.0)
        if label_kind == CLASS:
            return torch.softmax(logits, 1).gather(1, labels.long().view(-1, 1)).squeeze(1)
        p = torch.sigmoid(logits)
        return torch.where(labels > 0.5, p, 1 - p).min(1).values
    return score


def drs_f(logits: np.ndarray, d_max: float) -> np.ndarray:
    """Azadi et al.'s ``F`` before the gamma shift: ``D - D_M - log(1 - exp(D - D_M - eps))``."""
    d = np.asarray(logits, dtype=np.float64) - d_max
    return d - np.log1p(-np.exp(d - DRS_EPS))


# -- the selection loop ------------------------------------------------------------------------------------
def candidate_index(n: int, key: int, stride: int) -> int:
    return int(n) * int(stride) + int(key)


def select(run: Run, groups: Sequence, spec: Selection, *, seed: int, batch_size: int,
           cache_dir: str | None = None) -> tuple[list[list[int]], dict[str, Any]]:
    """The latent indices to write for each group (in order) and the manifest's ``selection`` record.

    ``run``: the opened checkpoint (:func:`ganlab.run.open_run`: model, device, EMA choice, labels);
    ``groups`` are :class:`ganlab.generate.Group` (``name``, ``label``, ``count``)."""
    model, device, ema = run.model, run.device, run.ema
    kind, num_classes = run.labels.kind, run.labels.num_classes
    record: dict[str, Any] = {"truncation": spec.truncation, "truncation_threshold": truncation_threshold(spec.truncation),
                              "filter": spec.filter}
    if spec.filter is None:  # truncation only (or nothing): generate's usual indices, every candidate kept
        indices, start = [], 0
        for g in groups:
            indices.append(list(range(start, start + g.count)))
            start += g.count
        record["per_class"] = {g.name or ".": {"requested": g.count, "candidates": g.count, "kept": g.count,
                                               "acceptance_rate": 1.0, "passed": True, "written": g.count}
                               for g in groups}
        return indices, record

    if spec.filter == "classifier":
        clf, rec = load_filter_classifier(spec, run, cache_dir)
        score = classifier_scores(clf, kind)
        record.update({"threshold": spec.threshold, "selector": rec})
    else:
        d = getattr(model, "discriminator", None)
        if d is None:
            raise SelectionError("filter=discriminator: the checkpoint has no discriminator")
        d.eval()
        record.update({"burn_in": spec.drs_burn_in, "gamma": spec.drs_gamma, "percentile": spec.drs_percentile,
                       "eps": DRS_EPS, "selector": {"kind": "discriminator", "sha256": state_dict_sha256(d)}})
    record["min_acceptance"] = spec.min_acceptance
    by_class = run.labels.is_class
    stride = num_classes if by_class else len(groups)
    record["candidate_index"] = ("latent index = n * %d + %s (candidate n of that label)"
                                 % (stride, "class index" if by_class else "group position"))

    def candidates(key: int, label, start: int, n: int) -> tuple[list[int], torch.Tensor, Any]:
        idx = [candidate_index(j, key, stride) for j in range(start, start + n)]
        z = latents(seed, idx, model.z_dim, spec.truncation).to(device)
        lab = label_tensor(kind, [label] * n)
        lab = None if lab is None else lab.to(device)
        return idx, model.sample(z, lab, ema=ema), lab

    @torch.no_grad()
    def d_logits(x, lab) -> np.ndarray:
        return d(x, lab if num_classes else None).float().flatten().cpu().numpy()

    all_indices: list[list[int]] = []
    per: dict[str, Any] = {}
    failed: list[str] = []
    for pos, g in enumerate(groups):
        key = int(g.label) if by_class else pos
        kept: list[int] = []
        n_seen = 0
        limit = math.ceil(g.count / spec.min_acceptance)
        extra: dict[str, Any] = {}
        if spec.filter == "discriminator" and g.count:
            burn = []
            for s in range(0, spec.drs_burn_in, batch_size):
                _, x, lab = candidates(key, g.label, s, min(batch_size, spec.drs_burn_in - s))
                burn.append(d_logits(x, lab))
            burn = np.concatenate(burn)
            d_max = float(burn.max())
            gamma = spec.drs_gamma if spec.drs_gamma is not None else float(np.percentile(drs_f(burn, d_max),
                                                                                          spec.drs_percentile))
            extra = {"burn_in_max_logit": d_max, "gamma_used": gamma}
        while len(kept) < g.count and n_seen < limit:
            n = min(batch_size, limit - n_seen)
            idx, x, lab = candidates(key, g.label, n_seen, n)
            if spec.filter == "classifier":
                ok = (score(x, lab).cpu().numpy() >= spec.threshold).tolist()
            else:
                ok = []
                for i, logit in zip(idx, d_logits(x, lab)):  # in index order: D_M as the paper updates it
                    d_max = max(d_max, float(logit))
                    p = 1.0 / (1.0 + math.exp(-float(drs_f(np.array([logit]), d_max)[0] - gamma)))
                    ok.append(uniform(seed, i) < p)
            for i, o in zip(idx, ok):
                n_seen += 1
                if o:
                    kept.append(i)
                    if len(kept) == g.count:
                        break
        rate = len(kept) / max(n_seen, 1)
        label = g.name or "."
        passed = len(kept) >= g.count
        if not passed:
            failed.append(label)
        if spec.filter == "discriminator":
            extra["final_max_logit"] = d_max
        written = kept if passed else []
        per[label] = {"requested": g.count, "candidates": n_seen, "kept": len(kept), "acceptance_rate": rate,
                      **extra, "passed": passed, "written": len(written)}
        all_indices.append(written)
    record["per_class"] = per
    record["failed"] = failed
    if failed:
        what = "; ".join(f"label {n!r} kept {per[n]['kept']} of {per[n]['candidates']} candidates (acceptance rate "
                         f"{per[n]['acceptance_rate']:.2%}, {per[n]['requested']} requested)" for n in failed)
        why = (f"filter={spec.filter}: {what}: {len(failed)} of {len(groups)} labels below "
               f"min_acceptance={spec.min_acceptance:g}")
        hint = ("Lower " + ("filter_threshold" if spec.filter == "classifier" else "drs_percentile / set drs_gamma lower")
                + ", lower min_acceptance, or ask fewer images of those labels")
        if not spec.partial or len(failed) == len(groups):
            raise SelectionError(f"{why}. {hint}" + ("" if spec.partial else "; partial=true writes the labels "
                                                     "that passed and leaves these out"))
        log.warning("%s; partial=true: writing the other %d labels without them", why, len(groups) - len(failed))
    return all_indices, record


__all__ = ["Selection", "SelectionError", "candidate_index", "classifier_scores", "drs_f", "latent",
           "parse_selection", "select", "state_dict_sha256", "truncation_threshold", "uniform"]
