"""The :class:`Evaluator`: applies a :class:`~ganlab.metrics.protocol.Protocol` (what is measured, on
how many images, how) to generated samples, with a progress bar and, on a CPU, the time the
evaluation will take. It serves the in-training callback (:class:`ganlab.callbacks.metrics.Metrics`)
and ``python -m ganlab.evaluate`` (:mod:`ganlab.evaluate`, which adds memorisation, label fidelity and
the report files). An evaluation

1. binds to a device: the InceptionV3 extractor is loaded there and, on a CPU with ``sizes: auto``,
   ``n_fake`` / ``n_real`` are capped at ``cpu_n_fake`` / ``cpu_n_real`` (stated in the protocol);
2. extracts reference features of the data split once (cached on disk, :mod:`~ganlab.metrics.reference`);
3. extracts features of the fakes batch by batch (:mod:`~ganlab.metrics.fakes`: a GAN's fixed noise
   or a folder) and computes the metrics on features (:func:`~ganlab.metrics.core.compute_metrics`).
"""

from __future__ import annotations

import dataclasses
import logging
import time
import warnings
from typing import Any

from ganlab.metrics.core import compute_metrics
from ganlab.metrics.fakes import FakeFeatures, GanSamples, features_of_batches
from ganlab.metrics.protocol import Protocol
from ganlab.metrics.reference import ReferenceFeatures, reference_features
from ganlab.metrics.results import build_protocol

log = logging.getLogger(__name__)

FIRST_CPU_BATCH = 8  # images in the first (timed) extractor call on a CPU


class OverBudget(Exception):
    """An evaluation on a CPU would take longer than the time it was allowed (told after its first batch)."""

    def __init__(self, seconds: float, images: int, rate: float, budget_s: float) -> None:
        super().__init__(f"it would take about {_duration(seconds)} ({images} images at {rate:.1f} images/s), "
                         f"more than the {_duration(budget_s)} allowed")
        self.seconds, self.images, self.rate, self.budget_s = seconds, images, rate, budget_s


# -- progress ---------------------------------------------------------------------------------------
def _duration(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.0f} min"


class _Tracked:
    """The extractor over one evaluation: advances a Rich progress bar (images, rate, ETA) and, on a
    CPU, logs after its first batch the measured rate and how long the ``total`` images will take."""

    def __init__(self, extractor: Any, progress: Any, total: int, what: str, on_cpu: bool,
                 budget_s: float | None = None) -> None:
        self._inner, self._progress, self._total, self._what, self._on_cpu = extractor, progress, total, what, on_cpu
        self._budget_s = budget_s
        self._task = progress.add_task(f"metrics ({what})", total=total)
        self._told = False

    def add(self, n: int) -> None:
        self._total += int(n)
        self._progress.update(self._task, total=self._total)

    def extract(self, x, logits: bool = False, batch_size: int | None = None):
        import torch

        bs = int(batch_size or getattr(self._inner, "batch_size", 0) or 64)
        feats, logs = [], []
        # batch by batch, so the bar moves (the reference comes in chunks of thousands); on a CPU the
        # first batch is small, so the rate and the time of the evaluation are told within seconds
        first = min(bs, FIRST_CPU_BATCH) if self._on_cpu and not self._told else bs
        bounds = [0, *range(first, len(x), bs), len(x)] if len(x) else [0]
        for start, stop in zip(bounds[:-1], bounds[1:]):
            chunk = x[start:stop]
            t0 = time.perf_counter()
            out = self._inner.extract(chunk, logits=True, batch_size=bs) if logits else \
                self._inner.extract(chunk, batch_size=bs)
            f, lg = out if logits else (out, None)
            feats.append(f)
            logs.append(lg)
            if self._on_cpu and not self._told:
                self._told = True
                rate = len(chunk) / max(time.perf_counter() - t0, 1e-9)
                log.info("metrics (%s): InceptionV3 on CPU at %.1f images/s, about %s for all %d images",
                         self._what, rate, _duration(self._total / rate), self._total)
                if self._budget_s is not None and self._total / rate > self._budget_s:
                    raise OverBudget(self._total / rate, self._total, rate, self._budget_s)
            self._progress.advance(self._task, len(chunk))
            self._progress.refresh()  # inside the training bar's display (nested) nothing refreshes by itself
        f = torch.cat(feats) if feats else torch.empty(0, 2048)
        return (f, torch.cat(logs) if logs else torch.empty(0, 1008)) if logits else f

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


def _progress_bar(enabled: bool):
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
    from rich.progress import TimeRemainingColumn

    return Progress(TextColumn("[progress.description]{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TextColumn("images"), TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(),
                    transient=True, disable=not enabled, speed_estimate_period=3600)  # batches take minutes on a CPU


# -- the evaluator ----------------------------------------------------------------------------------
@dataclasses.dataclass
class Scores:
    """One evaluation: the values, the protocol record, the features (for per-class or memorisation
    checks) and where the time went."""

    values: dict[str, float]
    protocol: dict[str, Any]
    fake: FakeFeatures
    reference: ReferenceFeatures
    seconds: dict[str, Any]


class Evaluator:
    """Applies a :class:`Protocol`. ``extractor``: a ready feature extractor (tests, custom features;
    default InceptionV3 on the bound device). ``progress``: show a progress bar."""

    def __init__(self, protocol: Protocol, *, extractor: Any = None, progress: bool = True) -> None:
        self.requested = protocol
        self.protocol = protocol
        self.sizes_note = ""
        self.extractor = extractor
        self.progress = progress
        self.device: str | None = None
        self.skipped: dict[str, str] = {}
        self._reference: ReferenceFeatures | None = None
        self._reference_key: tuple | None = None

    @property
    def enabled(self) -> bool:
        return bool(self.requested.metrics)

    def bind(self, device: Any = "auto") -> "Evaluator":
        """Choose the device (``auto``: CUDA when available), the counts for it, and load the extractor."""
        from ganlab.metrics.inception import get_inception_extractor
        from ganlab.utils.device import choose_device

        self.device = str(choose_device(device))
        self.protocol, self.sizes_note = self.requested.sized_for(self.device)
        if self.extractor is None:
            self.extractor = get_inception_extractor(self.protocol.weights_path, self.device, self.protocol.batch_size,
                                                     self.protocol.cpu_path)
        if "is" in self.protocol.metrics and not getattr(self.extractor, "has_logits", False):
            self.skipped["is"] = ("Inception Score needs the original weights file with the logits layer (fc); "
                                  "the weights in use have none")
            warnings.warn(f"metrics: {self.skipped['is']} - IS is skipped")
        return self

    @property
    def on_cpu(self) -> bool:
        return str(self.device).startswith("cpu")

    def score(self, datamodule: Any, source: Any, *, fake_source: str, what: str = "evaluation",
              cpu_budget_s: float | None = None) -> Scores:
        """Metrics of ``source`` (``batches(batch_size)`` of uint8 images: :class:`GanSamples`, a folder)
        against the reference split of ``datamodule`` (``split_images``, ``fingerprint``, ``split_digest``).
        ``cpu_budget_s``: on a CPU, raise :class:`OverBudget` after the first batch when the images
        would take longer than that."""
        if self.device is None:
            self.bind()
        p = self.protocol
        ref_cached = self._reference is not None and self._reference_key == (datamodule.fingerprint, p.split)
        if self.on_cpu:
            reals = "" if ref_cached else f" and {p.n_real or 'all'} real"
            log.info("metrics (%s): %d generated%s images through InceptionV3 on CPU; %s; rate and time follow "
                     "after the first batch", what, len(source), reals, self.sizes_note)
        t0 = time.perf_counter()
        with _progress_bar(self.progress) as bar:
            tracked = _Tracked(self.extractor, bar, len(source), what, self.on_cpu, cpu_budget_s)

            def split_images():  # called on a cache miss only: then the real images count too
                arr = datamodule.split_images(p.split)
                tracked.add(len(arr) if p.n_real is None else min(len(arr), p.n_real))
                return arr

            if not ref_cached:
                self._reference = reference_features(
                    split_images, fingerprint=datamodule.split_digest(p.split), split=p.split,
                    extractor=tracked, n_real=p.n_real, subset_seed=p.reference_subset_seed,
                    cache_dir=p.cache_dir, use_cache=p.use_cache, batch_size=p.batch_size)
                self._reference_key = (datamodule.fingerprint, p.split)
            t_ref = time.perf_counter() - t0
            groups = [m for m in p.metrics if m not in self.skipped]
            fake = features_of_batches(source.batches(p.batch_size), tracked, logits="is" in groups)
        ref = self._reference
        t1 = time.perf_counter()
        values = compute_metrics(
            ref.features, fake.features, groups, real_fid_stats=ref.fid_stats, fake_logits=fake.logits,
            kid_subsets=p.kid_subsets, kid_subset_size=p.kid_subset_size, prc_neighborhood=p.prc_neighborhood,
            dc_neighborhood=p.dc_neighborhood, seed=p.metric_seed, device=self.device)
        t_metrics = time.perf_counter() - t1
        record = build_protocol(
            p, n_real=ref.n, n_fake=fake.n, real_shape=ref.meta.get("image_shape"), fake_shape=fake.image_shape,
            extractor=self.extractor.describe(), fingerprint=datamodule.fingerprint, fake_source=fake_source,
            sizes=self.sizes_note, device=str(getattr(self.extractor, "device", self.device)),
            skipped=dict(self.skipped), reference_cache=ref.path)
        seconds = {"reference": round(t_ref, 3), "reference_from_cache": bool(ref_cached or ref.from_cache),
                   "fakes": round(fake.seconds, 3), "metrics": round(t_metrics, 3),
                   "total": round(time.perf_counter() - t0, 3)}
        return Scores(values, record, fake, ref, seconds)

    def gan_samples(self, model: Any, datamodule: Any, ema: bool | None = None) -> GanSamples:
        """The protocol's fakes of ``model``: ``n_fake`` samples, fixed noise and labels from ``seed``
        (labels drawn from the reference split's for a conditional model); ``ema``: the generator
        chosen by :func:`ganlab.run.open_run` (default: the protocol's ``ema``)."""
        p = self.protocol if self.device is not None else self.requested
        conditional = int(getattr(model, "num_classes", 0) or 0) > 0
        labels_pool = datamodule.split_labels(p.split) if conditional else None
        return GanSamples.create(model, int(p.n_fake or self.requested.n_fake or 0), seed=p.seed,
                                 labels_pool=labels_pool, ema=p.ema if ema is None else ema)


__all__ = ["Evaluator", "OverBudget", "Scores"]
