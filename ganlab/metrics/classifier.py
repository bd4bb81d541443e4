"""Label fidelity of a conditional GAN: does an image generated for class c look like class c?

A compact CNN (:class:`CompactCNN`, ~60k parameters: three 3x3 conv blocks with batch norm, a
3x3 adaptive average pool and two linear layers) is trained on the real training split and
applied to generated images per requested label:

* class labels: softmax classifier; ``accuracy`` = fraction of fakes classified as the class they
  were generated for, overall and per class;
* multi-hot attributes: one sigmoid per attribute; per attribute the fraction of fakes asked
  *with* it that show it (``acc_on``), asked *without* it that do not (``acc_off``) and their mean
  (``balanced``); ``accuracy`` = mean of the per-attribute balanced accuracies.

The same numbers on the real held-out split (test, else val) are reported as ``real_heldout``:
the ceiling the fakes are compared to. The trained classifier is cached per data fingerprint (and
training settings) in ``<cache_dir>/classifier/``, so it is trained once per data set.

Per-class FID (intra-FID, Miyato & Koyama 2018) reuses the metrics machinery: the Inception features
already computed for FID are split by label and :func:`ganlab.metrics.core.fid_statistics` /
:func:`~ganlab.metrics.core.fid_from_statistics` applied per class (multi-hot: per attribute,
images that have it). With few images per class it is biased upwards (compare equal sample sizes).

The augmentation study (``experiments/augmentation``) trains this same network with
:func:`train_classifier` on real, real + synthetic and synthetic-only data.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import time
from typing import Any, Iterable, Sequence

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from ganlab.utils.files import atomic_write_bytes

log = logging.getLogger(__name__)

CLASSIFIER_VERSION = 1
DEFAULTS = {"steps": 1500, "batch_size": 128, "lr": 2e-3, "weight_decay": 1e-4, "widths": (16, 32, 64), "seed": 0}


class CompactCNN(nn.Module):
    """conv3x3-BN-ReLU-maxpool x2, conv3x3-BN-ReLU, adaptive avg pool 3x3, dropout, 128, K logits.
    Takes float images in ``[-1, 1]`` of any size >= 12 px and any channel count."""

    def __init__(self, channels: int, num_outputs: int, widths: Sequence[int] = DEFAULTS["widths"]) -> None:
        super().__init__()
        a, b, c = widths
        self.features = nn.Sequential(
            nn.Conv2d(channels, a, 3, padding=1, bias=False), nn.BatchNorm2d(a), nn.ReLU(inplace=True),
            nn.MaxPool2d(2),
            nn.Conv2d(a, b, 3, padding=1, bias=False), nn.BatchNorm2d(b), nn.ReLU(inplace=True), nn.MaxPool2d(2),
            nn.Conv2d(b, c, 3, padding=1, bias=False), nn.BatchNorm2d(c), nn.ReLU(inplace=True),
            nn.AdaptiveAvgPool2d(3),
        )
        self.head = nn.Sequential(nn.Flatten(), nn.Dropout(0.3), nn.Linear(c * 9, 128), nn.ReLU(inplace=True),
                                  nn.Linear(128, num_outputs))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def _as_float(x: np.ndarray | torch.Tensor, device) -> torch.Tensor:
    t = torch.as_tensor(np.asarray(x)) if not torch.is_tensor(x) else x
    return t.to(device=device, dtype=torch.float32) / 127.5 - 1.0


def train_classifier(
    images: np.ndarray,
    labels: np.ndarray,
    *,
    num_classes: int,
    label_kind: str = "class",
    steps: int = DEFAULTS["steps"],
    batch_size: int = DEFAULTS["batch_size"],
    lr: float = DEFAULTS["lr"],
    weight_decay: float = DEFAULTS["weight_decay"],
    widths: Sequence[int] = DEFAULTS["widths"],
    seed: int = DEFAULTS["seed"],
    hflip: bool = False,
    translate: int = 0,
    device: str | torch.device = "cpu",
    sample_weights: np.ndarray | None = None,
    class_weights: Sequence[float] | None = None,
    model: nn.Module | None = None,
) -> nn.Module:
    """Train :class:`CompactCNN` on uint8 ``(N, C, H, W)`` images for a fixed number of ``steps``
    (Adam, cosine learning-rate decay to 0, uniform sampling with replacement - or proportional
    to ``sample_weights``). ``class_weights``: per-class weights of the cross-entropy (class labels only,
    e.g. Cui et al.'s class-balanced weights). Class labels may be soft: ``labels`` of shape ``(N, K)``
    holding class probabilities are the cross-entropy's targets. Classic augmentation: ``hflip`` (random horizontal flips) and
    ``translate=t`` (random crops of the image padded by ``t`` pixels of background, i.e. integer
    shifts of up to ``t`` px each way). Deterministic for a given seed on CPU. ``images`` may be a
    lazy split view (:class:`ganlab.data.datamodule.SplitView`): only each batch's rows are read. ``model``: another
    network (images in ``[-1, 1]`` -> logits) trained the same way instead of a new :class:`CompactCNN`."""
    if not hasattr(images, "shape"):  # a list of arrays; arrays and split views are indexed as they are
        images = np.asarray(images)
    labels = np.asarray(labels)
    if len(images) != len(labels) or len(images) == 0:
        raise ValueError(f"need as many labels as images (got {len(images)} images, {len(labels)} labels)")
    gen = torch.Generator().manual_seed(int(seed))
    torch.manual_seed(int(seed))
    model = (model if model is not None else CompactCNN(images.shape[1], int(num_classes), widths)).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 0.5 * (1 + np.cos(np.pi * min(s, steps) / steps)))
    y_all = torch.from_numpy(np.ascontiguousarray(labels))
    y_all = y_all.long() if label_kind == "class" and y_all.ndim == 1 else y_all.float()
    cw = None if class_weights is None else torch.as_tensor(np.asarray(class_weights), dtype=torch.float32).to(device)
    w = None if sample_weights is None else torch.as_tensor(np.asarray(sample_weights), dtype=torch.float64)
    model.train()
    for _ in range(int(steps)):
        if w is None:
            idx = torch.randint(0, len(images), (batch_size,), generator=gen)
        else:
            idx = torch.multinomial(w, batch_size, replacement=True, generator=gen)
        x = _as_float(torch.from_numpy(np.ascontiguousarray(images[idx.numpy()])), device)
        if hflip:
            flip = (torch.rand(len(idx), generator=gen) < 0.5).to(device)
            x = torch.where(flip[:, None, None, None], x.flip(3), x)
        if translate:
            x = random_translate(x, int(translate), gen)
        y = y_all[idx].to(device)
        out = model(x)
        loss = (F.cross_entropy(out, y, weight=cw) if label_kind == "class"
                else F.binary_cross_entropy_with_logits(out, y))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
    return model.eval()


def random_translate(x: torch.Tensor, t: int, gen: torch.Generator) -> torch.Tensor:
    """Each image shifted by integers in ``[-t, t]`` (both axes), padding with the background value
    -1 (a random ``H x W`` crop of the ``t``-padded image); shifts drawn from ``gen``."""
    n, _, h, w = x.shape
    padded = F.pad(x, (t, t, t, t), value=-1.0)
    dy, dx = (torch.randint(0, 2 * t + 1, (2, n), generator=gen)).tolist()
    return torch.stack([padded[i, :, dy[i] : dy[i] + h, dx[i] : dx[i] + w] for i in range(n)])


@torch.no_grad()
def features(model: CompactCNN, images: np.ndarray, batch_size: int = 512) -> np.ndarray:
    """The 128-d penultimate activations of :class:`CompactCNN` for uint8 images (a cheap feature
    space for precision / recall where Inception on CPU is too slow)."""
    model.eval()
    device = next(model.parameters()).device
    body = nn.Sequential(model.features, *list(model.head.children())[:-1])
    return torch.cat([body(_as_float(images[s : s + batch_size], device)).cpu()
                      for s in range(0, len(images), batch_size)]).numpy()


@torch.no_grad()
def predict(model: nn.Module, images: np.ndarray | torch.Tensor | Iterable, batch_size: int = 512,
            label_kind: str = "class", probabilities: bool = False) -> np.ndarray:
    """Class indices ``(N,)`` (class; ``probabilities``: the softmax ``(N, K)`` instead) or attribute
    probabilities ``(N, K)`` (multi-hot) for uint8 images (an array, or an iterable of uint8 batches)."""
    model.eval()
    device = next(model.parameters()).device
    batches = ([images[s : s + batch_size] for s in range(0, len(images), batch_size)]
               if hasattr(images, "shape") else images)
    outs = []
    for b in batches:
        logits = model(_as_float(b, device))
        if label_kind != "class":
            outs.append(torch.sigmoid(logits).cpu())
        else:
            outs.append(torch.softmax(logits, 1).cpu() if probabilities else logits.argmax(1).cpu())
    if not outs:
        return np.zeros((0,), dtype=np.int64)
    return torch.cat(outs).numpy()


def accuracy_report(pred: np.ndarray, labels: np.ndarray, label_kind: str, class_names: Sequence[str]) -> dict:
    """Overall and per-class (per-attribute) accuracy of predictions against requested labels."""
    pred, labels = np.asarray(pred), np.asarray(labels)
    if label_kind == "class":
        labels = labels.astype(np.int64)
        per = {}
        for c, name in enumerate(class_names):
            m = labels == c
            if m.any():
                per[name] = {"accuracy": float((pred[m] == c).mean()), "n": int(m.sum())}
        return {"accuracy": float((pred == labels).mean()) if len(labels) else float("nan"),
                "per_class": per, "n": int(len(labels))}
    on = labels > 0.5
    has = pred > 0.5
    per = {}
    for a, name in enumerate(class_names):
        m_on, m_off = on[:, a], ~on[:, a]
        acc_on = float(has[m_on, a].mean()) if m_on.any() else float("nan")
        acc_off = float((~has[m_off, a]).mean()) if m_off.any() else float("nan")
        per[name] = {"acc_on": acc_on, "acc_off": acc_off, "balanced": float(np.nanmean([acc_on, acc_off])),
                     "n_on": int(m_on.sum()), "n_off": int(m_off.sum())}
    return {"accuracy": float(np.nanmean([p["balanced"] for p in per.values()])) if per else float("nan"),
            "exact_match": float((has == on).all(1).mean()) if len(on) else float("nan"),
            "per_class": per, "n": int(len(labels))}


def per_class_fidelity(model: nn.Module, images: np.ndarray | torch.Tensor, requested: np.ndarray,
                       class_names: Sequence[str], batch_size: int = 512) -> dict[str, float]:
    """Class labels: ``{class name: share of the images generated for that class that ``model`` reads
    as that class}`` for every class with at least one image (uint8 images, requested class indices)."""
    requested = np.asarray(requested).astype(np.int64)
    pred = predict(model, images, batch_size=batch_size)
    return {name: float((pred[requested == c] == c).mean()) for c, name in enumerate(class_names)
            if (requested == c).any()}


def worst_fidelity_gap(fidelity: dict[str, float], real_accuracy: dict[str, float]) -> tuple[float, str] | None:
    """``(gap, class)``: the lowest over classes of (label fidelity - the classifier's accuracy on that
    class's real held-out images), as a share, and the class where it is lowest (issue 20's target:
    >= -0.05 everywhere). None when ``real_accuracy`` lacks a class (no held-out split)."""
    if not fidelity or any(c not in real_accuracy for c in fidelity):
        return None
    gaps = {c: fidelity[c] - real_accuracy[c] for c in fidelity}
    worst = min(gaps, key=gaps.get)
    return float(gaps[worst]), worst


def warn_collapsed(fidelity: dict[str, float], threshold: float = 0.5, where: str = "evaluation") -> list[str]:
    """Log a warning naming every class whose fidelity is below ``threshold``; returns those classes."""
    low = [n for n, v in fidelity.items() if v < threshold]
    if low:
        log.warning("class fidelity collapsed at %s: %s read as their class below %.0f %% (%s); the generator "
                    "draws them as other classes", where, ", ".join(low), 100 * threshold,
                    ", ".join(f"{n} {100 * fidelity[n]:.0f} %" for n in low))
    return low


def within_class_variety(images: np.ndarray, labels: np.ndarray, real_images: np.ndarray, real_labels: np.ndarray,
                         class_names: Sequence[str], standardize: bool = False) -> dict[str, float]:
    """Per class: the mean per-pixel standard deviation across the class's ``images`` divided by the
    same across its ``real_images`` (uint8 or float alike; 1 = as varied as the real class, near 0 =
    one image repeated). ``standardize``: each image is first shifted and scaled to mean 0, std 1, so
    images that differ only in brightness / contrast count as one shape. Classes missing from either
    set are left out."""
    def spread(x: np.ndarray) -> float:
        x = x.astype(np.float64).reshape(len(x), -1)
        if standardize:
            x = (x - x.mean(1, keepdims=True)) / (x.std(1, keepdims=True) + 1e-8)
        return float(x.std(0).mean())

    images, real_images = np.asarray(images), np.asarray(real_images)
    return {name: spread(images[labels == c]) / spread(real_images[real_labels == c])
            for c, name in enumerate(class_names) if (labels == c).sum() > 1 and (real_labels == c).sum() > 1}


# -- the cached label-fidelity classifier --------------------------------------------------------------
def heldout_split(datamodule) -> str | None:
    splits = getattr(getattr(datamodule, "prepared", None), "splits", {}) or {}
    return next((s for s in ("test", "val") if s in splits and len(splits[s])), None)


def classifier_cache_path(fingerprint: str, split: str, settings: dict, cache_dir: str | None) -> str:
    from ganlab.metrics.inception import ganlab_cache_dir

    folder = cache_dir or os.path.join(ganlab_cache_dir(), "classifier")
    key = json.dumps({"v": CLASSIFIER_VERSION, "fingerprint": fingerprint, "split": split, **settings},
                     sort_keys=True, default=str)
    return os.path.join(folder, f"clf-{fingerprint[:16]}-{hashlib.sha256(key.encode()).hexdigest()[:16]}.pt")


def get_label_classifier(datamodule, *, split: str = "train", cache_dir: str | None = None,
                         device: str | torch.device = "cpu", use_cache: bool = True,
                         **settings: Any) -> tuple[CompactCNN, dict]:
    """The compact CNN trained on ``split`` of ``datamodule``'s labelled data, from the cache when
    possible; returns ``(model, info)`` where ``info`` holds the held-out accuracy and timing."""
    if not datamodule.label_kind:
        raise ValueError("the data set has no labels; the label-fidelity classifier needs data.labels")
    s = {**{k: v for k, v in DEFAULTS.items()}, **settings}
    s["widths"] = list(s["widths"])
    kind, k = datamodule.label_kind, datamodule.num_classes
    hflip = bool(dict(getattr(datamodule, "hparams", None) or {}).get("hflip", False))
    path = classifier_cache_path(datamodule.fingerprint, split, {**s, "hflip": hflip}, cache_dir)
    if use_cache and os.path.isfile(path):
        try:
            blob = torch.load(path, map_location="cpu", weights_only=True)
            model = CompactCNN(datamodule.image_shape[0], k, blob["info"]["widths"])
            model.load_state_dict(blob["state_dict"])
            info = json.loads(blob["info_json"])
            return model.to(device).eval(), {**info, "from_cache": True, "path": path}
        except Exception as err:  # unreadable: retrain and overwrite
            log.warning("label classifier cache %s unreadable (%s); retraining", path, err)
    t0 = time.perf_counter()
    log.info("training the label-fidelity classifier on %s/%s (%d steps)", datamodule.hparams.get("source"),
             split, s["steps"])
    model = train_classifier(datamodule.split_images(split), datamodule.split_labels(split), num_classes=k,
                             label_kind=kind, hflip=hflip, device=device, **s)
    info: dict[str, Any] = {"widths": s["widths"], "settings": {**s, "hflip": hflip}, "train_split": split,
                            "n_train": int(len(datamodule.split_images(split))),
                            "train_seconds": round(time.perf_counter() - t0, 2),
                            "fingerprint": datamodule.fingerprint, "class_names": list(datamodule.class_names),
                            "label_kind": kind}
    held = heldout_split(datamodule)
    if held:
        pred = predict(model, datamodule.split_images(held), label_kind=kind)
        rep = accuracy_report(pred, datamodule.split_labels(held), kind, datamodule.class_names)
        info["real_heldout"] = {"split": held, **rep}
    if use_cache:
        save_classifier(model, path, info)
    return model, {**info, "from_cache": False, "path": path if use_cache else None}


def save_classifier(model: CompactCNN, path: str | os.PathLike, info: dict) -> None:
    """Write ``model`` atomically in the classifier cache's format (what ``get_label_classifier`` reads back and
    ``ganlab.generate filter_classifier=PATH`` accepts); ``info`` must hold its ``widths``."""
    buf = io.BytesIO()
    torch.save({"state_dict": {k_: v.cpu() for k_, v in model.state_dict().items()},
                "info": {"widths": list(info["widths"])}, "info_json": json.dumps(info)}, buf)
    atomic_write_bytes(buf.getbuffer(), str(path))


# -- per-class FID ----------------------------------------------------------------------------------
def _masks(labels: np.ndarray, label_kind: str, class_names: Sequence[str]) -> dict[str, np.ndarray]:
    labels = np.asarray(labels)
    if label_kind == "class":
        return {n: labels.astype(np.int64) == c for c, n in enumerate(class_names)}
    return {n: labels[:, a] > 0.5 for a, n in enumerate(class_names)}


def per_class_fid(real_features, real_labels, fake_features, fake_labels, label_kind: str,
                  class_names: Sequence[str], min_count: int = 2) -> dict[str, Any]:
    """FID between real and fake Inception features of each class (multi-hot: each attribute, images
    that have it); ``mean`` over the classes that had at least ``min_count`` of both."""
    from ganlab.metrics.core import as_features, fid_from_statistics, fid_statistics

    real, fake = as_features(real_features), as_features(fake_features)
    rm, fm = _masks(real_labels, label_kind, class_names), _masks(fake_labels, label_kind, class_names)
    per: dict[str, Any] = {}
    for name in class_names:
        r, f = torch.from_numpy(rm[name]), torch.from_numpy(fm[name])
        n_r, n_f = int(r.sum()), int(f.sum())
        fid = None
        if n_r >= min_count and n_f >= min_count:
            fid = fid_from_statistics(fid_statistics(fake[f]), fid_statistics(real[r]))
        per[name] = {"fid": fid, "n_real": n_r, "n_fake": n_f}
    vals = [p["fid"] for p in per.values() if p["fid"] is not None]
    return {"mean": float(np.mean(vals)) if vals else None, "per_class": per}


def conditional_report(*, datamodule, samples, real_features, real_indices, fake_features, split: str = "train",
                       cache_dir: str | None = None, device: str | torch.device = "cpu", batch_size: int = 256,
                       intra_fid: bool = True, classifier_settings: dict | None = None,
                       collapse_threshold: float = 0.5) -> dict[str, Any]:
    """Label fidelity (classifier accuracy on the fakes per requested label) and per-class FID for
    the fakes of a conditional GAN; classes (class labels) whose fidelity is below
    ``collapse_threshold`` are listed under ``label_fidelity.collapsed`` and named in a warning. ``samples`` is a :class:`ganlab.metrics.fakes.GanSamples`
    (its ``labels`` are the requested labels); ``real_indices`` the rows of ``split`` behind
    ``real_features``."""
    kind, names = datamodule.label_kind, list(datamodule.class_names)
    clf, info = get_label_classifier(datamodule, split="train" if "train" in datamodule.prepared.splits else split,
                                     cache_dir=cache_dir, device=device, **(classifier_settings or {}))
    t0 = time.perf_counter()
    requested = samples.labels.numpy()
    pred = predict(clf, samples.batches(batch_size), label_kind=kind)
    out: dict[str, Any] = {"label_kind": kind, "class_names": names,
                           "label_fidelity": accuracy_report(pred, requested, kind, names),
                           "classifier": {k: v for k, v in info.items() if k not in ("class_names",)}}
    if kind == "class":
        per = {n: p["accuracy"] for n, p in out["label_fidelity"]["per_class"].items()}
        out["label_fidelity"]["collapsed"] = warn_collapsed(per, collapse_threshold, "evaluation")
        out["label_fidelity"]["collapse_threshold"] = collapse_threshold
    if intra_fid:
        real_labels = np.asarray(datamodule.split_labels(split))[np.asarray(real_indices)]
        out["intra_fid"] = per_class_fid(real_features, real_labels, fake_features, requested, kind, names)
    out["seconds"] = round(time.perf_counter() - t0, 3)
    return out


def report_rows(report: dict[str, Any]) -> dict[str, Any]:
    """:func:`conditional_report` flattened into ``{row name: value}`` for a markdown table."""
    fid = report.get("label_fidelity", {})
    rows: dict[str, Any] = {"label fidelity (classifier accuracy on the fakes)": fid.get("accuracy")}
    held = report.get("classifier", {}).get("real_heldout")
    if held:
        rows[f"classifier accuracy on real {held['split']} (ceiling)"] = held.get("accuracy")
    for name, p in fid.get("per_class", {}).items():
        rows[f"accuracy {name}"] = p.get("accuracy", p.get("balanced"))
    if "collapsed" in fid:
        rows[f"classes below {100 * fid['collapse_threshold']:.0f} % fidelity"] = ", ".join(fid["collapsed"]) or "none"
    intra = report.get("intra_fid")
    if intra:
        rows["intra-FID (mean over classes)"] = intra.get("mean")
        for name, p in intra["per_class"].items():
            rows[f"FID {name} ({p['n_fake']} fake / {p['n_real']} real)"] = p["fid"]
    return rows


__all__ = ["CompactCNN", "accuracy_report", "features", "random_translate", "report_rows", "classifier_cache_path", "conditional_report", "get_label_classifier",
           "heldout_split", "per_class_fid", "per_class_fidelity", "warn_collapsed", "within_class_variety", "worst_fidelity_gap", "predict", "save_classifier", "train_classifier"]
