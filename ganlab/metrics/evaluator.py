"""One evaluation layer: a :class:`Protocol` (what is measured, on how many images, how) and the
:class:`Evaluator` that applies it to generated samples, with a progress bar and, on a CPU, the time
the evaluation will take.

The protocol's defaults live in one file, ``conf/metrics/default.yaml``, which both the in-training
callback (:class:`ganlab.callbacks.metrics.Metrics`, keys ``callbacks.metrics.*``) and
``python -m ganlab.evaluate`` (keys ``metrics.*``) include; the Python API reads the same file.
An evaluation

1. binds to a device: the InceptionV3 extractor is loaded there and, on a CPU with ``sizes: auto``,
   ``n_fake`` / ``n_real`` are capped at ``cpu_n_fake`` / ``cpu_n_real`` (stated in the protocol);
2. extracts reference features of the data split once (cached on disk, :mod:`~ganlab.metrics.reference`);
3. extracts features of the fakes batch by batch (:mod:`~ganlab.metrics.sampling`: a GAN's fixed noise
   or a folder) and computes the metrics on features (:func:`~ganlab.metrics.core.compute_metrics`).

:func:`evaluate_checkpoint` and :func:`evaluate_folder` add the memorisation check, the label-fidelity
report of conditional models and the report files: what ``ganlab.evaluate`` does, callable from a notebook.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import os
import time
import warnings
from typing import Any, Mapping

import numpy as np

from ganlab.metrics.core import compute_metrics, normalize_metric_names
from ganlab.metrics.reference import ReferenceFeatures, reference_features
from ganlab.metrics.results import build_protocol, markdown_report, write_json
from ganlab.metrics.sampling import FakeFeatures, GanSamples, features_of_batches

log = logging.getLogger(__name__)

SIZES = ("auto", "full", "cpu")
FIRST_CPU_BATCH = 8  # images in the first (timed) extractor call on a CPU


# -- the protocol -----------------------------------------------------------------------------------
def _conf_dir() -> str:
    here = os.path.dirname(os.path.abspath(__file__))
    for cand in (os.path.join(here, "..", "conf"), os.path.join(here, "..", "..", "conf")):  # packaged / checkout
        if os.path.isfile(os.path.join(cand, "metrics", "default.yaml")):
            return os.path.normpath(cand)
    raise FileNotFoundError(f"conf/metrics/default.yaml not found next to {here} (is ganlab installed with its configs?)")


@functools.lru_cache(maxsize=1)
def protocol_defaults() -> dict[str, Any]:
    """``conf/metrics/default.yaml`` as a dict: the single source of every protocol default."""
    from omegaconf import OmegaConf

    return OmegaConf.to_container(OmegaConf.load(os.path.join(_conf_dir(), "metrics", "default.yaml")))


@dataclasses.dataclass(frozen=True)
class Protocol:
    """Everything that decides an evaluation's numbers (see ``conf/metrics/default.yaml``)."""

    metrics: tuple[str, ...]
    n_fake: int | None
    n_real: int | None
    split: str
    batch_size: int
    seed: int
    ema: bool
    kid_subsets: int
    kid_subset_size: int
    prc_neighborhood: int
    dc_neighborhood: int
    metric_seed: int
    reference_subset_seed: int
    weights_path: str | None
    cache_dir: str | None
    use_cache: bool
    sizes: str
    cpu_n_fake: int
    cpu_n_real: int

    @classmethod
    def from_config(cls, cfg: Mapping[str, Any] | None = None, **overrides: Any) -> "Protocol":
        """The defaults, then the protocol keys of ``cfg`` (other keys are ignored: a callback's or a
        CLI's own), then ``overrides`` (which must all be protocol keys)."""
        names = {f.name for f in dataclasses.fields(cls)}
        bad = sorted(set(overrides) - names)
        if bad:
            raise TypeError(f"unknown evaluation protocol key(s) {bad}; the keys are {sorted(names)}")
        if cfg is not None and not isinstance(cfg, Mapping):
            raise TypeError(f"an evaluation protocol must be a mapping, got {type(cfg).__name__}")
        values = {**protocol_defaults(), **{k: v for k, v in dict(cfg or {}).items() if k in names}, **overrides}
        values["metrics"] = tuple(normalize_metric_names(list(values["metrics"] or [])))
        if values["sizes"] not in SIZES:
            raise ValueError(f"sizes={values['sizes']!r}: expected one of {', '.join(SIZES)}")
        opt = lambda v: None if v is None else int(v)  # noqa: E731
        for k in ("batch_size", "seed", "kid_subsets", "kid_subset_size", "prc_neighborhood", "dc_neighborhood",
                  "metric_seed", "reference_subset_seed", "cpu_n_fake", "cpu_n_real"):
            values[k] = int(values[k])
        values["n_fake"], values["n_real"] = opt(values["n_fake"]), opt(values["n_real"])
        return cls(**values)

    def sized_for(self, device: str) -> tuple["Protocol", str]:
        """The protocol with the counts used on ``device``, and a sentence saying which they are."""
        cap = self.sizes == "cpu" or (self.sizes == "auto" and str(device).startswith("cpu"))
        if not cap:
            return self, f"as configured (sizes={self.sizes}, device {device})"
        n_fake = self.cpu_n_fake if self.n_fake is None else min(self.n_fake, self.cpu_n_fake)
        n_real = self.cpu_n_real if self.n_real is None else min(self.n_real, self.cpu_n_real)
        shown = lambda n: "all" if n is None else str(n)  # noqa: E731
        note = (f"CPU sizes (sizes={self.sizes}, device {device}): n_fake {shown(self.n_fake)} -> {n_fake}, "
                f"n_real {shown(self.n_real)} -> {n_real}; sizes=full keeps the configured counts")
        kid = min(self.kid_subset_size, n_fake, n_real)  # KID's subsets cannot exceed the samples
        return dataclasses.replace(self, n_fake=n_fake, n_real=n_real, kid_subset_size=kid), note


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
        from ganlab.metrics.inception import get_inception_extractor, resolve_device

        self.device = resolve_device(device)
        self.protocol, self.sizes_note = self.requested.sized_for(self.device)
        if self.extractor is None:
            self.extractor = get_inception_extractor(self.protocol.weights_path, self.device, self.protocol.batch_size)
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

    def gan_samples(self, model: Any, datamodule: Any) -> GanSamples:
        """The protocol's fakes of ``model``: ``n_fake`` samples, fixed noise and labels from ``seed``
        (labels drawn from the reference split's for a conditional model)."""
        p = self.protocol if self.device is not None else self.requested
        conditional = int(getattr(model, "num_classes", 0) or 0) > 0
        labels_pool = datamodule.split_labels(p.split) if conditional else None
        return GanSamples.create(model, int(p.n_fake or self.requested.n_fake or 0), seed=p.seed,
                                 labels_pool=labels_pool, ema=p.ema)


# -- whole evaluations (ganlab.evaluate, notebooks) --------------------------------------------------
def run_config_for_checkpoint(ckpt: str) -> str | None:
    """``<run>/.hydra/config.yaml`` of the training run that wrote ``<run>/checkpoints/x.ckpt``."""
    run = os.path.dirname(os.path.dirname(os.path.abspath(ckpt)))
    path = os.path.join(run, ".hydra", "config.yaml")
    return path if os.path.isfile(path) else None


def data_config(data: Any = None, ckpt: str | None = None, trust: bool = False) -> Any:
    """The data config to score against: ``data`` when given, else the ``data`` node of the training
    run's ``.hydra/config.yaml`` next to the checkpoint's ``checkpoints/`` folder."""
    from omegaconf import OmegaConf

    if data is not None:
        return data
    path = run_config_for_checkpoint(ckpt) if ckpt else None
    if path is not None:
        run_cfg = OmegaConf.load(path)
        if run_cfg.get("data") is not None:
            from ganlab.checkpoints import check_targets

            if not trust:  # a run folder from elsewhere must not pick the code
                check_targets(OmegaConf.to_container(run_cfg.data), path=path, what="data config")
            log.info("data config taken from %s", path)
            return run_cfg.data
    raise ValueError("no data set: pass data=NAME (conf/data/NAME.yaml), or a ckpt inside a ganlab.train run folder")


def _datamodule(datamodule: Any, data: Any, ckpt: str | None, trust: bool) -> Any:
    if datamodule is None:
        import hydra

        datamodule = hydra.utils.instantiate(data_config(data, ckpt, trust))
        datamodule.prepare_data()
    datamodule.setup("fit")
    return datamodule


def evaluate_checkpoint(ckpt: str, *, data: Any = None, datamodule: Any = None, out: str | None = None,
                        device: str = "auto", trust_checkpoint: bool = False, extractor: Any = None,
                        progress: bool = True, **options: Any) -> dict[str, Any]:
    """Score a ganlab checkpoint: ``{"values", "protocol", "inputs", "seconds", ...}`` (what
    ``metrics.json`` holds). ``data``: a data config (``conf/data/NAME.yaml`` content) or None for
    the training run's own; ``out``: also write ``metrics.json`` / ``metrics.md`` there.
    ``options``: protocol keys (``n_fake=2000``, ``metrics=["fid"]``, ...) and the report's
    (``memorization``, ``memorization_pairs``, ``label_fidelity``, ``intra_fid``, ``classifier_cache_dir``)."""
    from ganlab.models import load_gan

    dm = _datamodule(datamodule, data, ckpt, trust_checkpoint)
    ev = Evaluator(Protocol.from_config(options), extractor=extractor, progress=progress).bind(device)
    model = load_gan(ckpt, map_location="cpu", trust=trust_checkpoint).to(ev.device)
    source = ev.gan_samples(model, dm)
    ema = ev.protocol.ema and getattr(model, "generator_ema", None) is not None
    inputs = {"ckpt": os.path.abspath(ckpt), "generator_step": int(getattr(model, "generator_step", -1)), "ema": ema}
    desc = f"{'EMA ' if ema else ''}generator of {inputs['ckpt']}, noise seed {ev.protocol.seed}"
    conditional = int(getattr(model, "num_classes", 0) or 0) > 0
    return _report(ev, dm, source, desc, inputs, conditional, out, options)


def evaluate_folder(path: str, *, data: Any = None, datamodule: Any = None, out: str | None = None,
                    device: str = "auto", extractor: Any = None, progress: bool = True,
                    **options: Any) -> dict[str, Any]:
    """Score a folder of generated images (read recursively; class folders or ``ganlab.generate``'s
    manifest give labels) against ``data`` / ``datamodule``. Returns what ``metrics.json`` holds;
    ``options`` as for :func:`evaluate_checkpoint` (``n_fake``: at most this many, null: all)."""
    from ganlab.metrics.fake_folder import LabelledImageFolder, kept_fractions

    if data is None and datamodule is None:
        raise ValueError(f"evaluate_folder({path!r}): pass data= (a data config) or datamodule= to score against")
    dm = _datamodule(datamodule, data, None, False)
    ev = Evaluator(Protocol.from_config(options), extractor=extractor, progress=progress).bind(device)
    n = ev.protocol.n_fake
    source = LabelledImageFolder(path, class_names=list(dm.class_names or []), label_kind=dm.label_kind,
                                 channels=int(dm.image_shape[0]), n=n)
    if n and len(source) < n:
        warnings.warn(f"{path} holds {len(source)} images, fewer than n_fake={n}")
    inputs: dict[str, Any] = {"fake_dir": os.path.abspath(path)}
    result = _report(ev, dm, source, f"images of {inputs['fake_dir']} (sorted by path)", inputs,
                     source.labels is not None, out, options, selection=kept_fractions(source.manifest))
    return result


def _report(ev: Evaluator, dm: Any, source: Any, fake_desc: str, inputs: dict, conditional: bool,
            out: str | None, options: Mapping[str, Any], selection: dict | None = None) -> dict[str, Any]:
    t_start = time.perf_counter()
    if out:
        os.makedirs(out, exist_ok=True)
    scores = ev.score(dm, source, fake_source=fake_desc)
    skipped_files = getattr(source, "skipped", None)
    if skipped_files:
        inputs["skipped_files"] = len(skipped_files)
        inputs["skipped_examples"] = dict(list(skipped_files.items())[:10])
        first = next(iter(skipped_files))
        warnings.warn(f"{inputs.get('fake_dir')}: skipped {len(skipped_files)} unreadable image(s), e.g. "
                      f"{first}: {skipped_files[first]}")
    result: dict[str, Any] = {"values": scores.values, "skipped": dict(ev.skipped), "inputs": inputs}
    split = ev.protocol.split
    # conditional GANs (ganlab.metrics.classifier): label fidelity = accuracy of a compact CNN trained on
    # the real split (cached per data fingerprint), and per-class FID from the features above
    if options.get("label_fidelity", True) and conditional:
        from ganlab.metrics.classifier import conditional_report

        result["conditional"] = conditional_report(
            datamodule=dm, samples=source, real_features=scores.reference.features,
            real_indices=scores.reference.indices, fake_features=scores.fake.features, split=split,
            cache_dir=options.get("classifier_cache_dir"), device=ev.device, batch_size=ev.protocol.batch_size,
            intra_fid=bool(options.get("intra_fid", True)))
        log.info("label fidelity: %.4f", result["conditional"]["label_fidelity"]["accuracy"])
    if selection:  # ganlab.generate's sample selection
        result["selection"] = selection
    if options.get("memorization", True):
        result["memorization"] = _memorization(ev, dm, source, scores, out, int(options.get("memorization_pairs", 16)))
    result["protocol"] = scores.protocol
    result["seconds"] = {**scores.seconds, "total": round(time.perf_counter() - t_start, 3)}
    if out:
        write_report(result, out)
    return result


def _memorization(ev: Evaluator, dm: Any, source: Any, scores: Scores, out: str | None, pairs: int) -> dict:
    from ganlab.metrics.memorization import memorization_stats, save_pairs_grid

    t0 = time.perf_counter()
    ref = scores.reference
    mem = memorization_stats(ref.features, scores.fake.features, device=ev.device)
    d_fake, nn_idx = mem.pop("d_fake"), mem.pop("nn_index")
    k = min(pairs, len(d_fake))
    if k > 0:
        order = np.argsort(d_fake, kind="stable")[:k]
        real_rows = ref.indices[nn_idx[order]]
        if out:
            reals = np.asarray(dm.split_images(ev.protocol.split)[real_rows])  # reads only those rows
            mem["pairs_png"] = save_pairs_grid(source.images([int(i) for i in order]), reals,
                                               os.path.join(out, "memorization_pairs.png"))
        mem["closest_pairs"] = [{"fake_index": int(i), "real_index": int(r), "distance": float(d_fake[i])}
                                for i, r in zip(order, real_rows)]
    mem["seconds"] = round(time.perf_counter() - t0, 3)
    return mem


def write_report(result: Mapping[str, Any], out: str) -> None:
    """``<out>/metrics.json`` and ``<out>/metrics.md`` of an evaluation result."""
    from ganlab.metrics.classifier import report_rows

    os.makedirs(out, exist_ok=True)
    write_json(result, os.path.join(out, "metrics.json"))
    mem_section = {k: v for k, v in result.get("memorization", {}).items() if not isinstance(v, list)}
    sections: dict[str, Any] = {"Inputs": result["inputs"], "Memorization (nearest training image, pool3 space)": mem_section}
    if "conditional" in result:  # label fidelity / per-class FID rows (ganlab.metrics.classifier)
        sections["Conditional: label fidelity and per-class FID"] = report_rows(result["conditional"])
    if "selection" in result:
        sel = result["selection"]
        sections["Sample selection (ganlab.generate manifest)"] = {
            "filter": sel["filter"], "truncation": sel["truncation"], "selector sha256": sel["selector_sha256"],
            **{f"kept {c}": v for c, v in sel["per_class"].items()}}
    md = markdown_report(result["values"], result["protocol"], title="ganlab evaluation", skipped=result["skipped"],
                         extra_sections={k: v for k, v in sections.items() if v})
    with open(os.path.join(out, "metrics.md"), "w") as f:
        f.write(md)


__all__ = ["Evaluator", "OverBudget", "Protocol", "Scores", "data_config", "evaluate_checkpoint", "evaluate_folder",
           "protocol_defaults", "run_config_for_checkpoint", "write_report"]
