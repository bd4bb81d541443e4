"""In-training evaluation: FID / KID / precision-recall (/ density-coverage / IS) every N generator steps.

Every ``every_n_steps`` generator updates (``pl_module.generator_step``; ``trainer.global_step``
counts the discriminator's optimizer steps too) and once at the end of training, the callback

1. draws ``n_fake`` samples from the EMA generator with fixed noise (``seed``: the same z at every
   evaluation, so the curve is not noisier than it must be), converts them with
   :func:`ganlab.utils.pixels.to_uint8` and extracts InceptionV3 pool3 features batch by batch (no
   sample is kept);
2. compares them with the reference features of ``n_real`` images of ``trainer.datamodule``'s
   ``split``, computed once and cached on disk (:mod:`ganlab.metrics.reference`), so from the
   second evaluation on only the fakes cost anything;
3. logs ``metrics/<name>`` to every logger (``logger.log_metrics(..., step=generator_step)``, plus
   ``metrics/generator_step``) and into ``trainer.callback_metrics``;
4. writes ``<run_dir>/metrics.json`` (protocol, history, best) and, when FID improved, saves
   ``<dirpath>/best_fid.ckpt`` with ``trainer.save_checkpoint``.

Distributed runs: the evaluation runs on global rank 0 only; its result is broadcast to the other
ranks (which wait in the broadcast), so every rank agrees on the best FID and all of them enter
``trainer.save_checkpoint`` together, as that call requires. An evaluation longer than the process
group's timeout (Lightning's default: 30 min) would break DDP: keep ``n_fake`` in proportion.
"""

from __future__ import annotations

import logging
import os
import time
import warnings
from typing import Any, Sequence

import lightning as L
import torch

from ganlab import signals

from ganlab.metrics.core import compute_metrics, normalize_metric_names
from ganlab.metrics.reference import reference_features
from ganlab.metrics.results import build_protocol, write_json
from ganlab.metrics.sampling import gan_fake_features

log = logging.getLogger(__name__)


class _CpuEta:
    """The extractor for one pass on CPU (InceptionV3 runs at a few images/s there): after the
    first batch it logs the measured rate and how long the ``total`` images of the pass will take."""

    def __init__(self, extractor: Any, total: int | None, what: str) -> None:
        self._inner, self._total, self._what, self._told = extractor, total, what, False

    def extract(self, x, *args, **kwargs):
        t0 = time.perf_counter()
        out = self._inner.extract(x, *args, **kwargs)
        if not self._told:
            self._told = True
            rate = len(x) / max(time.perf_counter() - t0, 1e-9)
            eta = f", about {_duration(self._total / rate)} in all" if self._total else ""
            log.info("metrics: InceptionV3 on CPU over %s %s at %.1f images/s%s", self._total or "the", self._what, rate, eta)
        return out

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


def _duration(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.0f} min"


class Metrics(L.Callback):
    """See the module docstring. Arguments:

    every_n_steps: generator steps between evaluations (0: only at the end of training).
    n_fake / n_real: sample counts (``n_real=None``: the whole split). Reported with every number.
    split: reference split of the datamodule (``train`` is the usual choice for FID).
    metrics: any of ``fid``, ``kid``, ``prc`` (precision, recall, f1), ``dc`` (density, coverage),
        ``is`` (needs the original Inception weights; skipped with a warning otherwise).
    at_train_end: evaluate once more when training ends (unless that step was just evaluated).
    batch_size: generator / extractor batch size. seed: noise (and label) seed of the fakes.
    ema: sample from the EMA generator. kid_*, prc_neighborhood, dc_neighborhood, metric_seed:
        the metrics' parameters (torch-fidelity's defaults). weights_path: explicit Inception weights.
    device: extractor device (None: the module's device). cache_dir: reference-feature cache
        (None: ``$GANLAB_CACHE/metrics/reference``). run_dir: where ``metrics.json`` goes (None:
        ``trainer.default_root_dir``). dirpath: where ``best_fid.ckpt`` goes (None: the
        ModelCheckpoint's folder, else ``<run_dir>/checkpoints``). save_best: keep that checkpoint.
    extractor: a ready feature extractor (tests / custom features); default InceptionV3.
    """

    def __init__(
        self,
        every_n_steps: int = 5000,
        n_fake: int = 10000,
        n_real: int | None = 10000,
        split: str = "train",
        metrics: Sequence[str] | str = ("fid", "kid", "prc"),
        at_train_end: bool = True,
        batch_size: int = 64,
        seed: int = 0,
        ema: bool = True,
        kid_subsets: int = 100,
        kid_subset_size: int = 1000,
        prc_neighborhood: int = 3,
        dc_neighborhood: int = 5,
        metric_seed: int = 2020,
        reference_subset_seed: int = 0,
        weights_path: str | None = None,
        device: str | None = None,
        cache_dir: str | None = None,
        run_dir: str | None = None,
        dirpath: str | None = None,
        save_best: bool = True,
        best_ckpt_name: str = "best_fid.ckpt",
        json_name: str = "metrics.json",
        log_prefix: str = "metrics/",
        extractor: Any = None,
    ) -> None:
        self.every_n_steps = int(every_n_steps or 0)
        self.n_fake = int(n_fake)
        self.n_real = None if n_real is None else int(n_real)
        self.split = split
        self.metrics = normalize_metric_names(metrics)
        self.at_train_end = at_train_end
        self.batch_size = int(batch_size)
        self.seed = int(seed)
        self.ema = ema
        self.kid_subsets, self.kid_subset_size = int(kid_subsets), int(kid_subset_size)
        self.prc_neighborhood, self.dc_neighborhood = int(prc_neighborhood), int(dc_neighborhood)
        self.metric_seed = int(metric_seed)
        self.reference_subset_seed = int(reference_subset_seed)
        self.weights_path = weights_path
        self.device = device
        self.cache_dir = cache_dir
        self.run_dir = run_dir
        self.dirpath = dirpath
        self.save_best = save_best
        self.best_ckpt_name = best_ckpt_name
        self.json_name = json_name
        self.log_prefix = log_prefix
        self.extractor = extractor
        self.history: list[dict[str, Any]] = []
        self.best: dict[str, Any] | None = None
        self.protocol: dict[str, Any] | None = None
        self._last_step = -1
        self._reference = None
        self._skipped: dict[str, str] = {}
        if "fid" not in self.metrics and save_best:
            warnings.warn("Metrics: no 'fid' in metrics, so no best_fid.ckpt will be kept")

    # -- paths -------------------------------------------------------------------------------
    def _run_dir(self, trainer) -> str:
        return self.run_dir or trainer.default_root_dir

    def _ckpt_dir(self, trainer) -> str:
        if self.dirpath:
            return self.dirpath
        cb = trainer.checkpoint_callback
        if cb is not None and getattr(cb, "dirpath", None):
            return cb.dirpath
        return os.path.join(self._run_dir(trainer), "checkpoints")

    @property
    def best_ckpt_path(self) -> str | None:
        return None if self.best is None else self.best.get("ckpt_path")

    # -- lifecycle ---------------------------------------------------------------------------
    def setup(self, trainer, pl_module, stage: str) -> None:
        if stage != "fit" or not trainer.is_global_zero:
            return
        if self.extractor is None:  # fail fast: find (or convert) the weights before training starts
            from ganlab.metrics.inception import get_inception_extractor

            # the module is moved to its device only after setup hooks: ask the strategy
            dev = self.device or str(trainer.strategy.root_device)
            self.extractor = get_inception_extractor(self.weights_path, dev, self.batch_size)
        if "is" in self.metrics and not getattr(self.extractor, "has_logits", False):
            self._skipped["is"] = ("Inception Score needs the original weights file with the logits layer; "
                                   "the weights in use have none")
            warnings.warn(f"Metrics: {self._skipped['is']} - IS is skipped")

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        step = int(pl_module.generator_step)
        if self.every_n_steps and step > 0 and step % self.every_n_steps == 0 and step != self._last_step:
            self.evaluate(trainer, pl_module)

    def on_train_end(self, trainer, pl_module) -> None:
        if signals.requested() is not None:  # stopping for a signal: save and go, no final evaluation
            return
        if self.at_train_end and int(pl_module.generator_step) != self._last_step:
            self.evaluate(trainer, pl_module)

    # -- the evaluation ----------------------------------------------------------------------
    def evaluate(self, trainer, pl_module) -> dict[str, float] | None:
        step = int(pl_module.generator_step)
        self._last_step = step
        record = None
        if trainer.is_global_zero:
            try:  # a stop signal abandons the evaluation at once (the step's checkpoint follows)
                with signals.immediate():
                    record = self._compute(trainer, pl_module)
            except signals.StopRequested as err:
                log.warning("metrics evaluation at generator step %d abandoned: %s", step, err)
        if trainer.world_size > 1:
            record = trainer.strategy.broadcast(record, src=0)
        if record is None:
            return None
        values = record["values"]
        improved = "fid" in values and (self.best is None or values["fid"] < self.best["fid"])
        entry = {"generator_step": step, "global_step": int(trainer.global_step),
                 "epoch": int(trainer.current_epoch), **values, "seconds": record["seconds"]}
        self.history.append(entry)
        prefixed = {f"{self.log_prefix}{k}": float(v) for k, v in values.items()}
        for k, v in prefixed.items():
            trainer.callback_metrics[k] = torch.tensor(v)
        if trainer.is_global_zero:
            for logger in trainer.loggers:
                logger.log_metrics({**prefixed, f"{self.log_prefix}generator_step": float(step)}, step=step)
                logger.save()
        if improved and self.save_best:
            path = os.path.join(self._ckpt_dir(trainer), self.best_ckpt_name)
            self.best = {"generator_step": step, "fid": values["fid"], "ckpt_path": path,
                         **{k: v for k, v in values.items() if k != "fid"}}
            trainer.save_checkpoint(path)  # every rank: the call synchronises them
        elif improved:
            self.best = {"generator_step": step, "fid": values["fid"], "ckpt_path": None}
        if trainer.is_global_zero:
            self._write_json(trainer)
        return values

    def _compute(self, trainer, pl_module) -> dict[str, Any]:
        dm = trainer.datamodule
        if dm is None or not hasattr(dm, "split_images"):
            raise RuntimeError("Metrics needs trainer.datamodule with split_images()/fingerprint")
        if self.extractor is None:
            self.setup(trainer, pl_module, "fit")
        on_cpu = str(self.device or pl_module.device).startswith("cpu")
        if on_cpu:
            log.info("metrics at generator step %d: %d generated images%s through InceptionV3 on CPU "
                     "(rate and time follow after the first batch)", int(pl_module.generator_step), self.n_fake,
                     "" if self._reference is not None else f" and {self.n_real or 'all'} real ones (once, unless cached)")
        t0 = time.perf_counter()
        extracted_now = False
        if self._reference is None:
            self._reference = reference_features(
                lambda: dm.split_images(self.split), fingerprint=dm.fingerprint, split=self.split,
                extractor=_CpuEta(self.extractor, self.n_real, "real images") if on_cpu else self.extractor,
                n_real=self.n_real, subset_seed=self.reference_subset_seed,
                cache_dir=self.cache_dir, batch_size=self.batch_size)
            extracted_now = not self._reference.from_cache
        t_ref = time.perf_counter() - t0
        labels_pool = dm.split_labels(self.split) if int(getattr(pl_module, "num_classes", 0) or 0) > 0 else None
        want_logits = "is" in self.metrics and "is" not in self._skipped
        extractor = _CpuEta(self.extractor, self.n_fake, "generated images") if on_cpu else self.extractor
        fake, _ = gan_fake_features(pl_module, extractor, self.n_fake, seed=self.seed,
                                    batch_size=self.batch_size, labels_pool=labels_pool, ema=self.ema,
                                    logits=want_logits)
        t1 = time.perf_counter()
        groups = [m for m in self.metrics if m not in self._skipped]
        values = compute_metrics(
            self._reference.features, fake.features, groups, real_fid_stats=self._reference.fid_stats,
            fake_logits=fake.logits, kid_subsets=self.kid_subsets, kid_subset_size=self.kid_subset_size,
            prc_neighborhood=self.prc_neighborhood, dc_neighborhood=self.dc_neighborhood,
            seed=self.metric_seed, device=self.device or pl_module.device)
        t_metrics = time.perf_counter() - t1
        if self.protocol is None:
            desc = self.extractor.describe()
            self.protocol = build_protocol(
                metrics=self.metrics, n_real=self._reference.n, n_fake=fake.n, split=self.split,
                real_shape=self._reference.meta.get("image_shape"), fake_shape=fake.image_shape, extractor=desc,
                seed=self.seed, fingerprint=dm.fingerprint, reference_subset_seed=self.reference_subset_seed,
                kid_subsets=self.kid_subsets, kid_subset_size=self.kid_subset_size,
                prc_neighborhood=self.prc_neighborhood, dc_neighborhood=self.dc_neighborhood,
                metric_seed=self.metric_seed, fake_source=f"{'EMA ' if self.ema else ''}generator, fixed noise",
                device=str(getattr(self.extractor, "device", self.device)),
                skipped=dict(self._skipped), reference_cache=self._reference.path)
        return {"values": values,
                "seconds": {"reference": round(t_ref, 3), "fakes": round(fake.seconds, 3),
                            "metrics": round(t_metrics, 3), "total": round(time.perf_counter() - t0, 3),
                            "reference_extracted": extracted_now}}

    def _write_json(self, trainer) -> None:
        write_json({"protocol": self.protocol, "best": self.best, "history": self.history},
                   os.path.join(self._run_dir(trainer), self.json_name))

    # -- resume ------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {"history": list(self.history), "best": self.best, "last_step": self._last_step}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.history = list(state_dict.get("history", []))
        self.best = state_dict.get("best")
        self._last_step = int(state_dict.get("last_step", -1))


__all__ = ["Metrics"]
