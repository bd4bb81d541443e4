"""Score a trained generator (or any folder of images) against a data set, with the protocol stated.

    python -m ganlab.evaluate ckpt=PATH [n_fake=50000] [split=train] [metrics=[fid,kid,prc]] \
        [out=DIR] [batch_size=64] [seed=0] [device=auto] [data=faces]
    python -m ganlab.evaluate fake_dir=DIR data=faces [...]

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
from typing import Any

import hydra
import numpy as np
from omegaconf import DictConfig, OmegaConf, open_dict

import ganlab  # noqa: F401  (config resolvers)
from ganlab.metrics.core import compute_metrics, normalize_metric_names
from ganlab.metrics.inception import get_inception_extractor, resolve_device
from ganlab.metrics.memorization import memorization_stats, save_pairs_grid
from ganlab.metrics.reference import reference_features
from ganlab.metrics.results import build_protocol, markdown_report, write_json
from ganlab.metrics.fake_folder import LabelledImageFolder, kept_fractions
from ganlab.metrics.sampling import GanSamples, features_of_batches
from ganlab.utils.conf_dir import conf_dir

log = logging.getLogger(__name__)


def run_config_for_checkpoint(ckpt: str) -> str | None:
    """``<run>/.hydra/config.yaml`` of the training run that wrote ``<run>/checkpoints/x.ckpt``."""
    run = os.path.dirname(os.path.dirname(os.path.abspath(ckpt)))
    path = os.path.join(run, ".hydra", "config.yaml")
    return path if os.path.isfile(path) else None


def _data_config(cfg: DictConfig) -> DictConfig:
    if cfg.get("data") is not None:
        return cfg.data
    if cfg.get("ckpt"):
        path = run_config_for_checkpoint(cfg.ckpt)
        if path is not None:
            run_cfg = OmegaConf.load(path)
            if run_cfg.get("data") is not None:
                from ganlab.checkpoints import check_targets

                if not cfg.get("trust_checkpoint", False):  # a run folder from elsewhere must not pick the code
                    check_targets(OmegaConf.to_container(run_cfg.data), path=path, what="data config")
                with open_dict(cfg):
                    cfg.data = run_cfg.data  # interpolations (paths.*) resolve against this config
                log.info("data config taken from %s", path)
                return cfg.data
    raise ValueError("no data set: pass data=NAME (conf/data/NAME.yaml), or a ckpt inside a ganlab.train run folder")


def evaluate(cfg: DictConfig | dict, *, extractor: Any = None, datamodule: Any = None) -> dict[str, Any]:
    """Everything ``python -m ganlab.evaluate`` does; returns the ``metrics.json`` content.

    ``extractor`` / ``datamodule`` replace the configured ones (tests, notebooks).
    """
    if not isinstance(cfg, DictConfig):
        cfg = OmegaConf.create(cfg)
    if bool(cfg.get("ckpt")) == bool(cfg.get("fake_dir")):
        raise ValueError("give exactly one of ckpt=PATH or fake_dir=DIR")
    groups = normalize_metric_names(list(cfg.metrics))
    device = resolve_device(cfg.get("device", "auto"))
    out = cfg.get("out") or os.getcwd()
    os.makedirs(out, exist_ok=True)
    t_start = time.perf_counter()

    if datamodule is None:
        datamodule = hydra.utils.instantiate(_data_config(cfg))
        datamodule.prepare_data()
    datamodule.setup("fit")
    split = cfg.get("split", "train")

    if extractor is None:
        extractor = get_inception_extractor(cfg.get("weights_path"), device, int(cfg.batch_size))
    skipped: dict[str, str] = {}
    if "is" in groups and not getattr(extractor, "has_logits", False):
        skipped["is"] = "needs the original Inception weights file with the logits layer (fc); the weights in use have none"
        warnings.warn(f"Inception Score skipped: {skipped['is']}")
    groups_run = [g for g in groups if g not in skipped]

    t0 = time.perf_counter()
    ref = reference_features(
        lambda: datamodule.split_images(split), fingerprint=datamodule.fingerprint, split=split, extractor=extractor,
        n_real=cfg.get("n_real"), subset_seed=int(cfg.get("reference_subset_seed", 0)),
        cache_dir=cfg.get("cache_dir"), use_cache=bool(cfg.get("use_cache", True)), batch_size=int(cfg.batch_size))
    t_ref = time.perf_counter() - t0

    inputs: dict[str, Any] = {}
    if cfg.get("ckpt"):
        from ganlab.models import load_gan

        model = load_gan(cfg.ckpt, map_location="cpu", trust=bool(cfg.get("trust_checkpoint", False))).to(device)
        labels_pool = datamodule.split_labels(split) if int(getattr(model, "num_classes", 0) or 0) > 0 else None
        source = GanSamples.create(model, int(cfg.n_fake), seed=int(cfg.seed), labels_pool=labels_pool,
                                   ema=bool(cfg.get("ema", True)))
        inputs = {"ckpt": os.path.abspath(cfg.ckpt), "generator_step": int(getattr(model, "generator_step", -1)),
                  "ema": bool(cfg.get("ema", True)) and getattr(model, "generator_ema", None) is not None}
        fake_desc = f"{'EMA ' if inputs['ema'] else ''}generator of {inputs['ckpt']}, noise seed {int(cfg.seed)}"
    else:
        # recursive, labels from manifest.json or the class folders (ganlab.metrics.fake_folder)
        source = LabelledImageFolder(cfg.fake_dir, class_names=list(datamodule.class_names or []),
                                     label_kind=datamodule.label_kind, channels=int(datamodule.image_shape[0]),
                                     n=int(cfg.n_fake) if cfg.get("n_fake") else None)
        if cfg.get("n_fake") and len(source) < int(cfg.n_fake):
            warnings.warn(f"{cfg.fake_dir} holds {len(source)} images, fewer than n_fake={int(cfg.n_fake)}")
        inputs = {"fake_dir": os.path.abspath(cfg.fake_dir)}
        fake_desc = f"images of {inputs['fake_dir']} (sorted by path)"

    want_logits = "is" in groups_run
    fake = features_of_batches(source.batches(int(cfg.batch_size)), extractor, logits=want_logits)
    skipped_files = getattr(source, "skipped", None)
    if skipped_files:
        inputs["skipped_files"] = len(skipped_files)
        inputs["skipped_examples"] = dict(list(skipped_files.items())[:10])
        warnings.warn(f"{cfg.fake_dir}: skipped {len(skipped_files)} unreadable image(s), e.g. "
                      f"{next(iter(skipped_files))}: {next(iter(skipped_files.values()))}")
    t1 = time.perf_counter()
    kw = {k: cfg[k] for k in ("kid_subsets", "kid_subset_size", "prc_neighborhood", "dc_neighborhood") if k in cfg}
    values = compute_metrics(ref.features, fake.features, groups_run, real_fid_stats=ref.fid_stats,
                             fake_logits=fake.logits, seed=int(cfg.get("metric_seed", 2020)), device=device, **kw)
    t_metrics = time.perf_counter() - t1

    result: dict[str, Any] = {"values": values, "skipped": skipped, "inputs": inputs}
    # -- conditional GANs (ganlab.metrics.classifier): label fidelity = accuracy of a compact CNN
    #    trained on the real split (cached per data fingerprint) on the fakes per requested label,
    #    and per-class FID from the features above. Separate from the metrics maths on purpose.
    conditional = (int(getattr(model, "num_classes", 0) or 0) > 0 if cfg.get("ckpt")
                   else getattr(source, "labels", None) is not None)
    if cfg.get("label_fidelity", True) and conditional:
        from ganlab.metrics.classifier import conditional_report, report_rows

        result["conditional"] = conditional_report(
            datamodule=datamodule, samples=source, real_features=ref.features, real_indices=ref.indices,
            fake_features=fake.features, split=split, cache_dir=cfg.get("classifier_cache_dir"), device=device,
            batch_size=int(cfg.batch_size), intra_fid=bool(cfg.get("intra_fid", True)))
        log.info("label fidelity: %.4f", result["conditional"]["label_fidelity"]["accuracy"])
    if cfg.get("fake_dir") and kept_fractions(source.manifest):  # ganlab.generate's sample selection
        result["selection"] = kept_fractions(source.manifest)
    if cfg.get("memorization", True):
        t2 = time.perf_counter()
        mem = memorization_stats(ref.features, fake.features, device=device)
        d_fake, nn_idx = mem.pop("d_fake"), mem.pop("nn_index")
        k = min(int(cfg.get("memorization_pairs", 16)), len(d_fake))
        if k > 0:
            order = np.argsort(d_fake, kind="stable")[:k]
            real_rows = ref.indices[nn_idx[order]]
            reals = np.asarray(datamodule.split_images(split)[real_rows])  # reads only those rows
            grid = save_pairs_grid(source.images([int(i) for i in order]), reals,
                                   os.path.join(out, "memorization_pairs.png"))
            mem["pairs_png"] = grid
            mem["closest_pairs"] = [{"fake_index": int(i), "real_index": int(r), "distance": float(d_fake[i])}
                                    for i, r in zip(order, real_rows)]
        mem["seconds"] = round(time.perf_counter() - t2, 3)
        result["memorization"] = mem

    result["protocol"] = build_protocol(
        metrics=groups, n_real=ref.n, n_fake=fake.n, split=split, real_shape=ref.meta.get("image_shape"),
        fake_shape=fake.image_shape, extractor=extractor.describe(), seed=int(cfg.seed),
        fingerprint=datamodule.fingerprint, reference_subset_seed=int(cfg.get("reference_subset_seed", 0)),
        kid_subsets=int(cfg.get("kid_subsets", 100)), kid_subset_size=int(cfg.get("kid_subset_size", 1000)),
        prc_neighborhood=int(cfg.get("prc_neighborhood", 3)), dc_neighborhood=int(cfg.get("dc_neighborhood", 5)),
        metric_seed=int(cfg.get("metric_seed", 2020)), fake_source=fake_desc, device=device,
        reference_cache=ref.path)
    result["seconds"] = {"reference": round(t_ref, 3), "reference_from_cache": ref.from_cache,
                         "fakes": round(fake.seconds, 3), "metrics": round(t_metrics, 3),
                         "total": round(time.perf_counter() - t_start, 3)}
    write_json(result, os.path.join(out, "metrics.json"))
    mem_section = {k: v for k, v in result.get("memorization", {}).items() if not isinstance(v, list)}
    sections = {"Inputs": inputs, "Memorization (nearest training image, pool3 space)": mem_section}
    if "conditional" in result:  # label fidelity / per-class FID rows (ganlab.metrics.classifier)
        sections["Conditional: label fidelity and per-class FID"] = report_rows(result["conditional"])
    if "selection" in result:
        sel = result["selection"]
        sections["Sample selection (ganlab.generate manifest)"] = {
            "filter": sel["filter"], "truncation": sel["truncation"], "selector sha256": sel["selector_sha256"],
            **{f"kept {c}": v for c, v in sel["per_class"].items()}}
    md = markdown_report(values, result["protocol"], title="ganlab evaluation", skipped=skipped,
                         extra_sections={k: v for k, v in sections.items() if v})
    with open(os.path.join(out, "metrics.md"), "w") as f:
        f.write(md)
    log.info("metrics: %s (written to %s)", values, out)
    return result


@hydra.main(version_base="1.3", config_path=conf_dir(), config_name="evaluate")
@ganlab.console.user_errors()  # a data / option error: ganlab's message alone, exit 1
def main(cfg: DictConfig) -> None:
    from ganlab import signals
    from ganlab.checkpoints import CheckpointError

    signals.install()  # a stop signal ends the job at once (exit 128+N); the feature cache is written atomically
    with open_dict(cfg):
        if not cfg.get("out"):
            cfg.out = cfg.paths.output_dir
    try:
        result = evaluate(cfg)
    except CheckpointError as err:
        print(f"ganlab.evaluate: error: {err}", file=sys.stderr)
        sys.exit(2)
    except signals.StopRequested as err:
        print(f"ganlab.evaluate: {err}", file=sys.stderr)
        sys.exit(128 + err.signum)
    for k, v in result["values"].items():
        print(f"{k}: {v:.6g}")
    print(f"report: {os.path.join(cfg.out, 'metrics.md')}")


if __name__ == "__main__":
    main()
