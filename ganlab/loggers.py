"""Logger factories for ``conf/logger/*.yaml``.

:func:`wandb_logger` builds Lightning's ``WandbLogger`` with ganlab's defaults:

- **never blocks on a login**: ``offline="auto"`` logs online only when credentials exist
  (``WANDB_API_KEY`` or an ``api.wandb.ai`` entry in ``~/.netrc``) and ``WANDB_MODE`` does not say
  otherwise; else the run is written offline to ``<run>/wandb/offline-run-*`` (upload it later
  with ``wandb sync <that folder>``). ``WANDB_MODE=disabled`` turns wandb off entirely;
- **names runs** from the experiment (or ``task_name``) and the command-line overrides, e.g.
  ``dcgan_celeba#3 data.batch_size=64,model.g_optimizer.lr=0.0002``;
- **groups multirun jobs** by sweep: ``group`` is the multirun folder's name (e.g. the
  ``2024-05-01_12-00-00`` of ``logs/train/multiruns/2024-05-01_12-00-00``), ``job_type`` is
  ``multirun`` (``run`` for single runs).

Explicit ``name`` / ``group`` / ``job_type`` / ``offline`` values win over the derived ones.
"""

from __future__ import annotations

import netrc
import os
from typing import Any, Sequence

from lightning.pytorch.loggers import WandbLogger

# override keys that say where things go, not what is trained: left out of run names
_NAME_SKIP = ("hydra.", "paths.", "logger", "trainer.accelerator", "trainer.devices", "callbacks.",
              "hparams_search", "ckpt_path")


def wandb_credentials_available() -> bool:
    if os.environ.get("WANDB_API_KEY"):
        return True
    try:
        path = os.environ.get("NETRC") or os.path.expanduser("~/.netrc")
        if os.path.isfile(path):
            host = os.environ.get("WANDB_BASE_URL", "https://api.wandb.ai").split("://")[-1].split("/")[0]
            return netrc.netrc(path).authenticators(host) is not None
    except (OSError, netrc.NetrcParseError):
        pass
    return False


def resolve_offline(offline: Any = "auto") -> bool:
    """``True``/``False`` as given; ``"auto"`` (or None): offline unless credentials are available
    and ``WANDB_MODE`` is not ``offline``/``dryrun``/``disabled``."""
    if isinstance(offline, bool):
        return offline
    text = str(offline).strip().lower() if offline is not None else "auto"
    if text in ("true", "1", "yes", "offline"):
        return True
    if text in ("false", "0", "no", "online"):
        return False
    mode = os.environ.get("WANDB_MODE", "").strip().lower()
    if mode in ("offline", "dryrun", "disabled"):
        return True
    return not wandb_credentials_available()


def hydra_run_info() -> dict[str, Any]:
    """Experiment name, overrides, multirun folder and job number of the current Hydra job
    (empty outside Hydra, e.g. in tests that compose configs themselves)."""
    try:
        from hydra.core.hydra_config import HydraConfig
        from hydra.types import RunMode
    except ImportError:  # pragma: no cover
        return {}
    if not HydraConfig.initialized():
        return {}
    hc = HydraConfig.get()
    multirun = hc.mode == RunMode.MULTIRUN
    info: dict[str, Any] = {
        "experiment": hc.runtime.choices.get("experiment"),
        "overrides": list(hc.overrides.task),
        "multirun": multirun,
        "job_num": hc.job.get("num") if multirun else None,
        "sweep_dir": str(hc.sweep.dir) if multirun else None,
        "swept_keys": swept_keys(hc) if multirun else [],
    }
    return info


_SWEEP_FUNCTIONS = ("choice(", "range(", "interval(", "tag(", "glob(", "shuffle(", "sort(")


def swept_keys(hc: Any) -> list[str]:
    """Keys a multirun sweeps over: the sweeper's ``params`` (Optuna, or a basic sweeper
    configured in a file) and the command-line overrides with several values (``k=a,b``), which
    the basic sweeper records in ``<sweep dir>/multirun.yaml``."""
    keys = [str(k) for k in (hc.sweeper.get("params") or {})]
    try:
        import yaml

        with open(os.path.join(str(hc.sweep.dir), "multirun.yaml")) as f:
            task = ((yaml.safe_load(f) or {}).get("hydra", {}).get("overrides", {}) or {}).get("task") or []
    except (OSError, ValueError):
        task = []
    for item in task:
        key, _, value = str(item).partition("=")
        if _top_level_comma(value) or value.startswith(_SWEEP_FUNCTIONS):
            keys.append(key.lstrip("+~"))
    return list(dict.fromkeys(keys))


def _top_level_comma(value: str) -> bool:
    """``a,b`` sweeps; ``[a,b]``, ``{a:1,b:2}`` and quoted commas do not."""
    depth, quote = 0, None
    for ch in value:
        if quote:
            quote = None if ch == quote else quote
        elif ch in "'\"":
            quote = ch
        elif ch in "[{(":
            depth += 1
        elif ch in "]})":
            depth -= 1
        elif ch == "," and depth == 0:
            return True
    return False


def run_name(base: str, overrides: Sequence[str] = (), job_num: int | None = None,
             swept: Sequence[str] = (), max_len: int = 120) -> str:
    """``base[#job] k=v,...``: the swept keys' values when known (shortened to their last two
    components), else every override except the ones about paths, devices and logging."""
    pairs = [o.lstrip("+~").partition("=") for o in overrides]
    if swept:
        keep = [f"{'.'.join(k.split('.')[-2:])}={v}" for k, _, v in pairs if k in swept]
    else:
        keep = [f"{k}={v}" for k, _, v in pairs if not k.startswith(_NAME_SKIP) and k != "experiment"]
    name = base if job_num is None else f"{base}#{job_num}"
    if keep:
        name = f"{name} {','.join(sorted(keep))}"
    return name if len(name) <= max_len else name[: max_len - 3] + "..."


def wandb_logger(
    save_dir: str,
    project: str = "ganlab",
    task_name: str = "train",
    name: str | None = None,
    group: str | None = None,
    job_type: str | None = None,
    offline: Any = "auto",
    log_model: bool | str = False,
    tags: Sequence[str] | None = None,
    **kwargs: Any,
) -> WandbLogger:
    info = hydra_run_info()
    base = info.get("experiment") or task_name
    if name is None:
        name = run_name(base, info.get("overrides", ()), info.get("job_num"), info.get("swept_keys", ()))
    if group is None and info.get("sweep_dir"):
        group = os.path.basename(os.path.normpath(info["sweep_dir"]))
    if job_type is None:
        job_type = "multirun" if info.get("multirun") else "run"
    is_offline = resolve_offline(offline)
    if is_offline and log_model:
        log_model = False  # checkpoints cannot be uploaded offline; Lightning would refuse the combination
    os.makedirs(save_dir, exist_ok=True)
    return WandbLogger(
        save_dir=save_dir, project=project, name=name, group=group, job_type=job_type,
        offline=is_offline, log_model=log_model, tags=list(tags) if tags else None, **kwargs,
    )


__all__ = ["hydra_run_info", "resolve_offline", "run_name", "wandb_credentials_available", "wandb_logger"]
