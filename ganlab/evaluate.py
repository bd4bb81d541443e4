"""Score a trained generator (or any folder of images) against a data set, with the protocol stated.

    python -m ganlab.evaluate ckpt=PATH [metrics.n_fake=10000] [metrics.split=train] \
        [metrics.metrics=[fid,kid,prc]] [metrics=cpu|full] [out=DIR] [device=auto] [data=faces]
    python -m ganlab.evaluate fake_dir=DIR data=faces [...]

A thin command line over :mod:`ganlab.metrics.evaluator` (``evaluate_checkpoint`` /
``evaluate_folder``); the protocol (``metrics.*``) is ``conf/metrics/``, the same as in training.

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
from collections.abc import Mapping
from typing import Any

import hydra
from omegaconf import DictConfig, OmegaConf, open_dict

import ganlab  # noqa: F401  (config resolvers)
from ganlab.metrics.evaluator import data_config, evaluate_checkpoint, evaluate_folder
from ganlab.utils.conf_dir import conf_dir

log = logging.getLogger(__name__)

NOT_PROTOCOL = ("ckpt", "fake_dir", "out", "device", "data", "paths", "hydra", "trust_checkpoint", "task_name")
REPORT_KEYS = ("memorization", "memorization_pairs", "label_fidelity", "intra_fid", "classifier_cache_dir")


def evaluate(cfg: DictConfig | dict, *, extractor: Any = None, datamodule: Any = None) -> dict[str, Any]:
    """Everything ``python -m ganlab.evaluate`` does; returns the ``metrics.json`` content.

    The protocol is ``cfg.metrics`` (a mapping, as composed from ``conf/evaluate.yaml``) or, for a
    plain dict, its top-level protocol keys (``{"metrics": ["fid"], "n_fake": 60, ...}``).
    ``extractor`` / ``datamodule`` replace the configured ones (tests, notebooks).
    """
    if not isinstance(cfg, DictConfig):
        cfg = OmegaConf.create(cfg)
    if bool(cfg.get("ckpt")) == bool(cfg.get("fake_dir")):
        raise ValueError("give exactly one of ckpt=PATH or fake_dir=DIR")
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
    except signals.StopRequested as err:  # a BaseException: console.user_errors does not see it
        log.error("ganlab.evaluate: %s; nothing was written", err)
        signals.finish(err.signum)  # exit 128 + N
    for k, v in result["values"].items():
        print(f"{k}: {v:.6g}")
    print(f"protocol: n_fake {result['protocol']['n_fake']}, n_real {result['protocol']['n_real']} "
          f"({result['protocol']['sizes']})")
    print(f"report: {os.path.join(cfg.out, 'metrics.md')}")


if __name__ == "__main__":
    main()
