"""``python -m ganlab.train [experiment=NAME] [key=value ...]``: compose ``conf/train.yaml``
with Hydra, build datamodule, GAN, callbacks, loggers and trainer, fit (optionally resuming
from ``ckpt_path``: a file, a run folder or ``auto``, see :func:`ganlab.checkpoints.resolve_ckpt_path`),
and return ``optimized_metric`` for sweepers.

Exit codes: 0 done; 1 non-finite loss (single runs), a data path or layout ganlab cannot read, or
a bad option value; 2 a checkpoint that cannot be read or written, or no disk space for the image
cache; 128+N stopped by signal N after saving
``last.ckpt`` (143 SIGTERM, 130 SIGINT, 138 SIGUSR1, 140 SIGUSR2). Errors print ganlab's one message
(:func:`ganlab.console.user_errors`; ``HYDRA_FULL_ERROR=1`` adds the traceback); the last line of a
run says where its folder, samples and last checkpoint are.
"""

from __future__ import annotations

import logging
import signal
import sys
from typing import Any

import hydra
import lightning as L
from omegaconf import DictConfig, OmegaConf

import ganlab  # noqa: F401  (registers the config resolvers)
from ganlab import console, signals
from ganlab.callbacks.sample_grid import SampleGrid
from ganlab.checkpoints import resolve_ckpt_path
from ganlab.models.gan import NonFiniteLossError
from ganlab.utils.conf_dir import conf_dir
from ganlab.models.label_spec import check_label_spec, fill_num_classes

log = logging.getLogger(__name__)


def instantiate_group(group: DictConfig | None) -> list[Any]:
    """Instantiate every entry of a config group that has a ``_target_`` (callbacks, loggers)."""
    if not group:
        return []
    return [hydra.utils.instantiate(c) for c in group.values() if isinstance(c, DictConfig) and "_target_" in c]


def train(cfg: DictConfig, extra_callbacks: list[L.Callback] = ()) -> tuple[dict[str, float], L.Trainer]:
    """Fit one run; returns the final logged metrics and the trainer (``signals.requested()`` tells
    whether a stop signal ended it early)."""
    console.quiet_library_noise()
    signals.reset()
    signals.install()  # until training starts a signal stops at once (cache build, setup)
    ckpt_path = resolve_ckpt_path(cfg.get("ckpt_path"), cfg.paths.output_dir, trust=bool(cfg.get("trust_checkpoint")))
    L.seed_everything(cfg.seed, workers=True)
    datamodule: L.LightningDataModule = hydra.utils.instantiate(cfg.data)
    model = build_model(cfg.model, datamodule)
    callbacks = instantiate_group(cfg.get("callbacks")) + list(extra_callbacks)
    loggers = instantiate_group(cfg.get("logger"))
    trainer: L.Trainer = hydra.utils.instantiate(cfg.trainer, callbacks=callbacks, logger=loggers or False)
    for lg in loggers:
        lg.log_hyperparams(OmegaConf.to_container(cfg, resolve=True))
    trainer.fit(model, datamodule=datamodule, ckpt_path=ckpt_path)
    metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if v.numel() == 1}
    return metrics, trainer


def build_model(model_cfg: DictConfig, datamodule: L.LightningDataModule) -> L.LightningModule:
    """The GAN from its config, its parts passed as configs (they become its hyperparameters, so
    ``GAN.load_from_checkpoint`` rebuilds it); the data is prepared first so that
    ``num_classes: null`` takes the data's label count and a configured one is checked against it."""
    labelled = hasattr(type(datamodule), "label_kind")  # a GANDataModule (or one like it)
    if labelled:
        datamodule.prepare_data()  # a cache hit after the first run; the trainer's own call is then free
        datamodule.setup("fit")
        fill_num_classes(model_cfg, datamodule)  # in the run's config, so loggers record the number used
    model = hydra.utils.instantiate(OmegaConf.to_container(model_cfg, resolve=True), _recursive_=False,
                                    _convert_="all")
    if labelled:
        check_label_spec(model, datamodule)
    return model


def where_things_are(trainer: L.Trainer) -> str:
    """One line naming the run folder, the samples folder and the last checkpoint."""
    parts = [f"run folder {trainer.default_root_dir}"]
    for cb in trainer.callbacks:
        if isinstance(cb, SampleGrid):
            parts.append(f"samples {cb.dirpath}")
    ckpt = trainer.checkpoint_callback
    last = getattr(ckpt, "last_model_path", "") or getattr(ckpt, "best_model_path", "")
    parts.append(f"last checkpoint {last}" if last else "no checkpoint written")
    return "; ".join(parts)


def optimized_value(cfg: DictConfig, metrics: dict[str, float]) -> float | None:
    name = cfg.get("optimized_metric")
    if not name:
        return None
    if name not in metrics:  # e.g. metrics turned off: the run itself succeeded
        log.warning("optimized_metric %r was not logged (logged: %s); returning nothing", name, sorted(metrics))
        return None
    return metrics[name]


@hydra.main(version_base="1.3", config_path=conf_dir(), config_name="train")
def main(cfg: DictConfig) -> float | None:
    console.route_logs_to_run_folder()
    with console.user_errors():
        return _main(cfg)


def _main(cfg: DictConfig) -> float | None:
    log.info("run folder: %s", cfg.paths.output_dir)
    try:
        metrics, trainer = train(cfg)
    except (signals.StopRequested, KeyboardInterrupt) as err:
        signum = getattr(err, "signum", None) or signals.requested() or 2
        log.error("stopped by %s (a second signal, or one before training started): nothing saved from the "
                  "current step", signal.Signals(signum).name)
        signals.finish(signum)
    except NonFiniteLossError as err:
        log.error("training stopped: %s", err)
        # [sweeps] in a multirun, a diverged job must not end the whole sweep (sys.exit would):
        # it reports the worst possible value (Optuna records a completed, worst trial, so TPE
        # learns to avoid that region; NaN or an exception would abort the study), its
        # final_metrics.json says status "failed" and ganlab.report lists it last.
        from hydra.core.hydra_config import HydraConfig
        from hydra.types import RunMode

        if HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN:
            direction = str(HydraConfig.get().sweeper.get("direction", "minimize"))
            return float("-inf") if direction.endswith("maximize") else float("inf")
        sys.exit(1)
    log.info("finished at generator step %d: %s", trainer.lightning_module.generator_step, where_things_are(trainer))
    if signals.requested() is not None:
        signals.finish(signals.requested())  # last.ckpt was written; chain to submitit / exit 128+N
    return optimized_value(cfg, metrics)


if __name__ == "__main__":
    main()
