"""Score a trained generator (or any folder of images) against a data set, with the protocol stated.

    python -m ganlab.evaluate ckpt=PATH [metrics.n_fake=10000] [metrics.split=train] \
        [metrics.metrics=[fid,kid,prc]] [metrics=cpu|full] [out=DIR] [device=auto] [data=faces]
    python -m ganlab.evaluate fake_dir=DIR data=faces [...]

The evaluate job and its command line, as :mod:`ganlab.generate` is for generate: a checkpoint is
opened by :func:`ganlab.run.open_run` (the model, the EMA rule, the labels, the device), scored by
:class:`ganlab.metrics.evaluator.Evaluator` under the protocol ``metrics.*`` (``conf/metrics/``, the
same as in training, :mod:`ganlab.metrics.protocol`), then checked for memorisation and, for
conditional models, label fidelity and per-class FID (:mod:`ganlab.metrics.classifier`).
:func:`evaluate_checkpoint` / :func:`evaluate_folder` are the same job from a notebook
(``ganlab.evaluate_checkpoint``).

``fake_dir`` is read recursively; the class folders ``ganlab.generate`` writes (labels from its
``manifest.json``, else the folder names) also give label fidelity, per-class FID and, from the
manifest, the fraction of each class that sample selection kept.

Writes ``<out>/metrics.json`` (values, protocol, memorisation check, timings), ``<out>/metrics.md``
(the same as tables) and ``<out>/memorization_pairs.png`` (the generated samples closest to a
training image, each beside that image). ``out`` defaults to the Hydra run folder
(``logs/evaluate/runs/<time>``).

Which data: ``data=NAME`` picks ``conf/data/NAME.yaml``. Without it, a checkpoint written by
``ganlab.train`` brings its own: the run's ``.hydra/config.yaml`` next to ``checkpoints/`` is read
and its ``data`` node used. Reference features are cached (``$GANLAB_CACHE/metrics/reference``),
so scoring the next checkpoint of the same data costs only the fakes.
"""

from __future__ import annotations

import logging
import os
import sys
import time
import warnings
from collections.abc import Mapping
from typing import Any

import hydra
import numpy as np
from omegaconf import DictConfig, OmegaConf, open_dict

import ganlab  # noqa: F401  (config resolvers)
from ganlab.metrics.evaluator import Evaluator, Scores
from ganlab.metrics.protocol import Protocol
from ganlab.metrics.results import markdown_report, write_json
from ganlab.run import open_run, run_config_for_checkpoint
from ganlab.utils.conf_dir import conf_dir
from ganlab.utils.files import atomic_write_text

log = logging.getLogger(__name__)

NOT_PROTOCOL = ("ckpt", "fake_dir", "out", "device", "data", "paths", "hydra", "trust_checkpoint", "task_name")
REPORT_KEYS = ("memorization", "memorization_pairs", "label_fidelity", "intra_fid", "classifier_cache_dir")


class EvaluateError(ValueError):
    """A bad request (what to score, against which data): one line from ``python -m ganlab.evaluate``, exit 1."""


# -- the job (also from notebooks: ganlab.evaluate_checkpoint / ganlab.evaluate_folder) -------------------
def data_config(data: Any = None, ckpt: str | None = None, trust: bool = False) -> Any:
    """The data config to score against: ``data`` when given, else the ``data`` node of the training
    run's ``.hydra/config.yaml`` next to the checkpoint's ``checkpoints/`` folder."""
    if data is not None:
        return data
    path = run_config_for_checkpoint(ckpt) if ckpt else None
    if path is not None:
        run_cfg = OmegaConf.load(path)
        if run_cfg.get("data") is not None:
            from omegaconf.errors import OmegaConfBaseException

            from ganlab.checkpoints import CheckpointError, check_targets

            if not trust:  # a run folder from elsewhere must not pick the code: checked resolved, as it is built
                try:
                    resolved = OmegaConf.to_container(run_cfg.data, resolve=True)
                except OmegaConfBaseException as err:
                    first = next(iter(str(err).splitlines()), "")
                    raise CheckpointError(f"{path}: its data config does not resolve ({first}); pass data=NAME, or "
                                          "trust_checkpoint=true for a run folder you trust") from None
                check_targets(resolved, path=path, what="data config")
            log.info("data config taken from %s", path)
            return run_cfg.data
    raise EvaluateError("no data set: pass data=NAME (conf/data/NAME.yaml), or a ckpt inside a ganlab.train run folder")


def _datamodule(datamodule: Any, data: Any, ckpt: str | None, trust: bool) -> Any:
    if datamodule is None:
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
    protocol = Protocol.from_config(options)
    run = open_run(ckpt, device=device, ema=protocol.ema, trust=trust_checkpoint)  # the one door
    dm = _datamodule(datamodule, data, run.path, run.trust)
    ev = Evaluator(protocol, extractor=extractor, progress=progress).bind(run.device)
    source = ev.gan_samples(run.model, dm, ema=run.ema)
    inputs = {"ckpt": os.path.abspath(run.path), "generator_step": int(getattr(run.model, "generator_step", -1)),
              "ema": run.ema}
    desc = f"{'EMA ' if run.ema else ''}generator of {inputs['ckpt']}, noise seed {ev.protocol.seed}"
    return _report(ev, dm, source, desc, inputs, run.labels.conditional, out, options)


def evaluate_folder(path: str, *, data: Any = None, datamodule: Any = None, out: str | None = None,
                    device: str = "auto", extractor: Any = None, progress: bool = True,
                    **options: Any) -> dict[str, Any]:
    """Score a folder of generated images (read recursively; class folders or ``ganlab.generate``'s
    manifest give labels) against ``data`` / ``datamodule``. Returns what ``metrics.json`` holds;
    ``options`` as for :func:`evaluate_checkpoint` (``n_fake``: at most this many, null: all)."""
    from ganlab.metrics.fake_folder import LabelledImageFolder, kept_fractions

    if data is None and datamodule is None:
        raise EvaluateError(f"evaluate_folder({path!r}): pass data= (a data config) or datamodule= to score against")
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
    atomic_write_text(md, os.path.join(out, "metrics.md"))  # as metrics.json: complete or absent


def evaluate(cfg: DictConfig | dict, *, extractor: Any = None, datamodule: Any = None) -> dict[str, Any]:
    """Everything ``python -m ganlab.evaluate`` does; returns the ``metrics.json`` content.

    The protocol is ``cfg.metrics`` (a mapping, as composed from ``conf/evaluate.yaml``) or, for a
    plain dict, its top-level protocol keys (``{"metrics": ["fid"], "n_fake": 60, ...}``).
    ``extractor`` / ``datamodule`` replace the configured ones (tests, notebooks).
    """
    if not isinstance(cfg, DictConfig):
        cfg = OmegaConf.create(cfg)
    if bool(cfg.get("ckpt")) == bool(cfg.get("fake_dir")):
        raise EvaluateError("give exactly one of ckpt=PATH or fake_dir=DIR")
    if isinstance(cfg.get("metrics"), Mapping):
        protocol = OmegaConf.to_container(cfg.metrics, resolve=True)
    else:
        protocol = {k: v for k, v in OmegaConf.to_container(cfg, resolve=False).items() if k not in NOT_PROTOCOL}
    options = {**protocol, **{k: cfg[k] for k in REPORT_KEYS if cfg.get(k) is not None}}
    common = dict(out=cfg.get("out") or os.getcwd(), device=cfg.get("device", "auto"), extractor=extractor,
                  datamodule=datamodule, **options)
    if cfg.get("ckpt"):
        data = None if datamodule is not None else _data(cfg, cfg.ckpt)
        return evaluate_checkpoint(cfg.ckpt, data=data, trust_checkpoint=bool(cfg.get("trust_checkpoint", False)),
                                   **common)
    return evaluate_folder(cfg.fake_dir, data=None if datamodule is not None else _data(cfg, None), **common)


def _data(cfg: DictConfig, ckpt: str | None) -> DictConfig:
    """The data config, with a training run's ``data`` node placed in ``cfg`` so that its
    interpolations (``paths.*``) resolve against this job's config."""
    data = data_config(cfg.get("data"), ckpt, bool(cfg.get("trust_checkpoint", False)))
    with open_dict(cfg):
        cfg.data = data
    return cfg.data


@hydra.main(version_base="1.3", config_path=conf_dir(), config_name="evaluate")
@ganlab.console.user_errors()  # data / option errors exit 1, an unreadable checkpoint 2: ganlab's message alone
def main(cfg: DictConfig) -> None:
    from ganlab import signals

    signals.install()  # a stop signal ends the job at once; the feature cache is written atomically
    with open_dict(cfg):
        if not cfg.get("out"):
            cfg.out = cfg.paths.output_dir
    try:
        result = evaluate(cfg)
    except EvaluateError as err:  # a bad request: one line, no traceback (console's exit code for options)
        print(f"ganlab.evaluate: error: {err}", file=sys.stderr)
        sys.exit(1)
    except signals.StopRequested as err:  # a BaseException: console.user_errors does not see it
        log.error("ganlab.evaluate: %s; nothing was written", err)
        signals.finish(err.signum)  # exit 128 + N
    for k, v in result["values"].items():
        print(f"{k}: {v:.6g}")
    print(f"protocol: n_fake {result['protocol']['n_fake']}, n_real {result['protocol']['n_real']} "
          f"({result['protocol']['sizes']})")
    print(f"report: {os.path.join(cfg.out, 'metrics.md')}")


__all__ = ["EvaluateError", "data_config", "evaluate", "evaluate_checkpoint", "evaluate_folder", "write_report"]


if __name__ == "__main__":
    main()
