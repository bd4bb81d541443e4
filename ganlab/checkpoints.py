"""Checkpoint files: crash-safe writing, safe reading, and finding the one to resume from.

* :class:`AtomicCheckpointIO` (Lightning ``CheckpointIO``, wired in by ``conf/trainer/default.yaml``
  for every trainer, DDP included) writes through :func:`ganlab.utils.files.atomic_write`:
  ``<dir>/.<name>.tmp-<pid>`` *in the checkpoint's own folder*, fsyncs it, renames it over ``<name>`` (atomic on POSIX within one filesystem) and
  fsyncs the folder, so a kill at any moment leaves either the old or the new complete file.
  Lightning's own ``TorchCheckpointIO`` streams the bytes into the final name, so a kill mid-save
  leaves a torn file. Before writing, OmegaConf containers are turned into plain ones (so
  ``weights_only`` loading accepts the file) and a sha256 over the whole content is stored
  (``checkpoint["ganlab_integrity"]``): torch's zip reader does not notice a flipped bit in
  tensor data, this digest does.
* :func:`load_checkpoint` reads with ``torch.load(weights_only=True)`` (plain containers,
  tensors, numbers, strings only: no object of the file's choosing is built, no code runs),
  checks the digest, and turns every failure into one :class:`CheckpointError` naming the file.
  ``trust=True`` (``trust_checkpoint=true`` on the command line) is the explicit opt-in for a
  trusted file written by something else.
* :func:`check_targets` refuses a config from a checkpoint whose ``_target_`` lies outside
  ganlab, torch and torchvision (minus the torch functions that load or compile code), before
  Hydra instantiates anything. Your own modules join the allowlist through the environment of
  the process that loads, never through the file: ``GANLAB_TRUSTED_TARGETS=mypkg,lab.nets``
  (comma-separated module prefixes, see :func:`allowed_target_roots`).
* :func:`resolve_ckpt_path`: ``ckpt_path=auto`` (the run folder of this job) or
  ``ckpt_path=<run folder>`` resumes from the loadable checkpoint there furthest into training
  (``global_step``; the newest file among equals), skipping damaged ones with a warning that names them.
"""

from __future__ import annotations

import hashlib
import logging
import os
import pickle
import re
import warnings
from pathlib import Path
from typing import Any, Callable, Iterable

import torch
from lightning.pytorch.plugins.io import TorchCheckpointIO

from ganlab.utils.files import atomic_write, remove_stale_temps

log = logging.getLogger(__name__)

INTEGRITY_KEY = "ganlab_integrity"
ALLOWED_TARGET_ROOTS = ("ganlab", "torch", "torchvision")
# inside the allowed packages, but they load, download or compile code: never from a checkpoint
DENIED_TARGET_PREFIXES = ("torch.load", "torch.hub", "torch.jit", "torch.package", "torch.utils.cpp_extension",
                          "torch.compile", "torch.serialization", "torch.ops", "torch.library", "torch._")
TRUST_HINT = ("if the _target_ is your own module, add its package to GANLAB_TRUSTED_TARGETS (comma-separated "
              "module prefixes, e.g. GANLAB_TRUSTED_TARGETS=mypkg); if you wrote this file yourself (or trust "
              "whoever did), pass trust_checkpoint=true (load_gan(..., trust=True)) to load it without these checks")
TRUSTED_TARGETS_ENV = "GANLAB_TRUSTED_TARGETS"


class CheckpointError(RuntimeError):
    """A checkpoint that cannot (or must not) be used; the message names the file and the reason."""


# -- plain containers and the content digest ---------------------------------------------------
def to_plain(obj: Any) -> Any:
    """OmegaConf containers -> dict/list, numpy scalars -> Python numbers, recursively (tensors kept)."""
    from omegaconf import DictConfig, ListConfig, OmegaConf

    if isinstance(obj, (DictConfig, ListConfig)):
        return OmegaConf.to_container(obj, resolve=True)
    if isinstance(obj, dict):
        return {k: to_plain(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [to_plain(v) for v in obj]
    if isinstance(obj, tuple) and not hasattr(obj, "_fields"):
        return tuple(to_plain(v) for v in obj)
    if type(obj).__module__ == "numpy" and hasattr(obj, "item") and getattr(obj, "ndim", 1) == 0:
        return obj.item()
    return obj


def content_digest(obj: Any) -> str:
    """sha256 over a canonical walk of the checkpoint: structure, keys, scalars and every tensor's bytes."""
    h = hashlib.sha256()

    def walk(x: Any) -> None:
        if isinstance(x, torch.Tensor):
            t = x.detach().cpu().reshape(-1).contiguous()
            h.update(f"T{t.dtype}{tuple(x.shape)}:".encode())
            h.update(t.view(torch.uint8).numpy())
        elif isinstance(x, dict):
            h.update(b"{")
            for k, v in x.items():
                walk(k)
                walk(v)
            h.update(b"}")
        elif isinstance(x, (list, tuple)):
            h.update(b"[" if isinstance(x, list) else b"(")
            for v in x:
                walk(v)
            h.update(b"]")
        else:
            h.update(f"{type(x).__name__}:{x!r};".encode())

    walk(obj)
    return h.hexdigest()


# -- writing ---------------------------------------------------------------------------------------
def save_atomic(obj: Any, path: str | os.PathLike, *, write: Callable[[Any, Any], None] = torch.save) -> None:
    """``write(obj, file)`` through :func:`ganlab.utils.files.atomic_write` (durable: file and folder
    fsynced). A failed write leaves ``path`` as it was and raises one :class:`CheckpointError`."""
    try:
        atomic_write(path, lambda f: write(obj, f), durable=True)
    except BaseException as err:
        cause = err if isinstance(err, OSError) else err.__context__  # torch wraps a failed write
        if isinstance(cause, OSError):
            raise CheckpointError(f"could not write checkpoint {os.fspath(path)}: {cause.strerror or cause} "
                                  "(the previous file of that name, if any, is intact)") from err
        raise


class AtomicCheckpointIO(TorchCheckpointIO):
    """Crash-safe ``save_checkpoint`` and safe ``load_checkpoint`` for Lightning (see module docstring).

    trust: load with ``weights_only=False`` (arbitrary pickles; only for files you trust).
    """

    def __init__(self, trust: bool = False) -> None:
        self.trust = bool(trust)

    def save_checkpoint(self, checkpoint: dict[str, Any], path, storage_options: Any = None) -> None:
        if storage_options is not None:
            raise TypeError(f"{type(self).__name__} does not take storage_options")
        plain = to_plain({k: v for k, v in checkpoint.items() if k != INTEGRITY_KEY})
        plain[INTEGRITY_KEY] = {"sha256": content_digest(plain), "scheme": 1}
        remove_stale_temps(os.path.dirname(os.path.abspath(path)))
        save_atomic(plain, path)

    def load_checkpoint(self, path, map_location: Any = None, weights_only: bool | None = None) -> dict[str, Any]:
        return load_checkpoint(path, map_location=map_location, trust=self.trust)


# -- reading ---------------------------------------------------------------------------------------
def load_checkpoint(path: str | os.PathLike, map_location: Any = "cpu", *, trust: bool = False,
                    data: bytes | None = None) -> dict[str, Any]:
    """The checkpoint dict, read safely; one :class:`CheckpointError` naming ``path`` otherwise.

    ``data``: the file's bytes, already read (so a caller can hash exactly what was loaded).
    """
    import io

    path = os.fspath(path)
    if data is None and not os.path.isfile(path):
        raise CheckpointError(f"checkpoint {path}: no such file")
    if (len(data) if data is not None else os.path.getsize(path)) == 0:  # also bytes read by ganlab.run
        raise CheckpointError(f"checkpoint {path} is empty (0 bytes): its write was interrupted")
    source = io.BytesIO(data) if data is not None else path
    try:
        ckpt = torch.load(source, map_location=map_location, weights_only=not trust)
    except pickle.UnpicklingError as err:
        text = str(err)
        found = re.search(r"GLOBAL ([\w.]+)", text)
        if found:
            what = f"`{found.group(1)}`"
            raise CheckpointError(
                f"refusing to load checkpoint {path}: it asks to build {what}, which is not one of the plain types "
                f"ganlab checkpoints hold (a pickle payload, or a file written by other code); nothing in it was "
                f"executed. {TRUST_HINT}") from None
        raise CheckpointError(f"checkpoint {path} is damaged (not a readable checkpoint: {_first_line(text)})") from None
    except Exception as err:  # zip reader, EOF, unicode ... : a torn or corrupted file
        raise CheckpointError(f"checkpoint {path} is truncated or corrupted ({type(err).__name__}: "
                              f"{_first_line(str(err))})") from None
    if not isinstance(ckpt, dict):
        raise CheckpointError(f"checkpoint {path} holds a {type(ckpt).__name__}, not a checkpoint dict")
    stamp = ckpt.pop(INTEGRITY_KEY, None)
    if isinstance(stamp, dict) and stamp.get("sha256") != content_digest(ckpt):
        raise CheckpointError(f"checkpoint {path} is corrupted: its content does not match the sha256 stored "
                              "when it was written (a flipped bit or a partial overwrite)")
    return ckpt


def _first_line(text: str) -> str:
    line = next((s for s in text.strip().splitlines() if s.strip()), "")
    return line[:200]


def check_targets(cfg: Any, *, path: str | os.PathLike, what: str = "config") -> None:
    """Raise one :class:`CheckpointError` if any ``_target_`` in ``cfg`` is outside the allowlist, or
    any value is an interpolation (:func:`interpolations`); ``cfg`` is checked as it will be built,
    so pass it resolved (``OmegaConf.to_container(node, resolve=True)``)."""
    bad, hidden = sorted(set(foreign_targets(cfg))), sorted(set(interpolations(cfg)))
    if bad:
        why = (f"its _target_ {', '.join(map(repr, bad))} is outside {', '.join(allowed_target_roots())} "
               "(a checkpoint must not choose what code runs)")
    elif hidden:
        why = (f"it holds the interpolation(s) {', '.join(repr(h[:80]) for h in hidden[:3])}, which instantiating "
               "would resolve into values no _target_ check saw (e.g. ${oc.create:...}); ganlab stores its configs "
               "resolved")
    else:
        return
    raise CheckpointError(f"refusing to instantiate the {what} stored in checkpoint {path}: {why}. {TRUST_HINT}")


def foreign_targets(cfg: Any) -> Iterable[str]:
    if isinstance(cfg, dict) or hasattr(cfg, "items"):
        for k, v in cfg.items():
            if k == "_target_":
                if not _allowed_target(v):
                    yield str(v)
            else:
                yield from foreign_targets(v)
    elif isinstance(cfg, (list, tuple)):
        for v in cfg:
            yield from foreign_targets(v)


def interpolations(cfg: Any) -> Iterable[str]:
    """String values (and keys) of ``cfg`` that hold an OmegaConf interpolation ``${...}``: Hydra
    resolves them when it instantiates, so they could build objects :func:`foreign_targets` never saw."""
    if isinstance(cfg, str):
        if "${" in cfg:
            yield cfg
    elif isinstance(cfg, dict) or hasattr(cfg, "items"):
        for k, v in cfg.items():
            yield from interpolations(k)
            yield from interpolations(v)
    elif isinstance(cfg, (list, tuple)):
        for v in cfg:
            yield from interpolations(v)


def allowed_target_roots() -> tuple[str, ...]:
    """ganlab, torch, torchvision, plus the module prefixes in ``$GANLAB_TRUSTED_TARGETS``
    (comma-separated, e.g. ``mypkg,lab.nets``): the user's own modules, trusted by the user's
    environment rather than by anything a checkpoint says. ganlab's denied torch prefixes still apply."""
    extra = (p.strip() for p in os.environ.get(TRUSTED_TARGETS_ENV, "").split(","))
    return ALLOWED_TARGET_ROOTS + tuple(p for p in extra if p and p.replace(".", "").replace("_", "").isalnum())


def _allowed_target(target: Any) -> bool:
    if not isinstance(target, str) or not target.replace(".", "").replace("_", "").isalnum():
        return False
    if not any(target == r or target.startswith(r + ".") for r in allowed_target_roots()):
        return False
    return not any(target == d or target.startswith(d + ".") or (d.endswith("_") and target.startswith(d))
                   for d in DENIED_TARGET_PREFIXES)


def instantiate_from_checkpoint(cfg: Any, *, path: str | os.PathLike, what: str, trust: bool = False) -> Any:
    """``hydra.utils.instantiate(cfg)`` after :func:`check_targets` (skipped when ``trust``)."""
    import hydra

    if not trust:
        check_targets(cfg, path=path, what=what)
    return hydra.utils.instantiate(cfg)


# -- what a checkpoint says: the model's hyperparameters, the data's state --------------------------------
DATA_STATE_KEY = "GANDataModule"  # Lightning stores LightningDataModule.state_dict() under the class name
LEGACY_MODEL_KEY, LEGACY_DATA_KEY = "ganlab", "ganlab_data"  # checkpoints written before save_hyperparameters


def stored_model_config(ckpt: dict[str, Any]) -> dict[str, Any] | None:
    """The model's Hydra config (``_target_`` + the GAN's init arguments) a checkpoint rebuilds from:
    Lightning's ``hyper_parameters``, or the ``model_config`` of an older ganlab checkpoint."""
    hparams = ckpt.get("hyper_parameters")
    if hparams:
        return {"_target_": "ganlab.models.gan.GAN", **dict(hparams)}
    legacy = ckpt.get(LEGACY_MODEL_KEY)
    return legacy.get("model_config") if isinstance(legacy, dict) else None


def stored_data_state(ckpt: dict[str, Any]) -> dict[str, Any]:
    """What the training data was: ``data_config`` (rebuilds the datamodule), ``class_names``,
    ``label_kind``, ``num_classes``, ``label_counts``, ``fingerprint``, ``split`` (empty if unknown)."""
    if DATA_STATE_KEY in ckpt:
        state = dict(ckpt[DATA_STATE_KEY])
        hparams = ckpt.get("datamodule_hyper_parameters")
        if hparams:
            state["data_config"] = {"_target_": "ganlab.data.datamodule.GANDataModule", **dict(hparams)}
        return state
    return dict(ckpt.get(LEGACY_DATA_KEY) or {})


def rebuild_module(cls: type, ckpt: dict[str, Any], *, path: str | os.PathLike, trust: bool = False,
                   **kwargs: Any) -> Any:
    """The LightningModule ``cls`` rebuilt from an already safely loaded ``ckpt``, after
    :func:`check_targets` on its stored config: ``cls(**hyper_parameters, **kwargs)``, then
    ``on_load_checkpoint(ckpt)``, then the weights (strict) - the steps of Lightning's
    ``load_from_checkpoint``, which only reads files, so the dict is not serialised again.
    Older ganlab checkpoints keep their config under ``ganlab`` (:func:`stored_model_config`)."""
    config = stored_model_config(ckpt)
    if not config or "state_dict" not in ckpt:
        raise CheckpointError(f"{path} has no ganlab model config; was it written by `python -m ganlab.train`?")
    if not trust:
        check_targets(config, path=path, what="model config")
    if config.get("_target_") != f"{cls.__module__}.{cls.__qualname__}":
        raise CheckpointError(f"{path}: the stored model config builds {config.get('_target_')}, not {cls.__qualname__}")
    hparams = {k: v for k, v in config.items() if k != "_target_"}
    try:
        model = cls(**{**hparams, **kwargs})
        model.on_load_checkpoint(ckpt)
        model.load_state_dict(ckpt["state_dict"], strict=True)
    except RuntimeError as err:
        raise CheckpointError(f"{path}: weights do not fit the stored model config ({str(err)[:300]})") from None
    return model


# -- resuming ----------------------------------------------------------------------------------------
def checkpoint_candidates(folder: str | os.PathLike) -> list[Path]:
    """``*.ckpt`` in ``folder``, newest first (modification time; ``last.ckpt`` wins a tie)."""
    files = [p for p in Path(folder).glob("*.ckpt") if p.is_file()]
    return sorted(files, key=lambda p: (p.stat().st_mtime_ns, p.name == "last.ckpt"), reverse=True)


def training_progress(ckpt: dict[str, Any]) -> int:
    """How far training had gone when ``ckpt`` was written: Lightning's ``global_step`` (-1 if absent)."""
    return int(ckpt.get("global_step", -1)) if isinstance(ckpt, dict) else -1


def most_trained_loadable(paths: Iterable[Path], load: Callable[[Path], Any],
                          progress: Callable[[Any], int] = training_progress) -> tuple[Path, Any] | None:
    """``(path, load(path))`` of the loadable checkpoint furthest into training (``progress``); among
    equals the first in ``paths`` (``checkpoint_candidates``: the newest file). Progress, not file time,
    decides, so a copied-in or re-touched older checkpoint is never resumed over a newer state. Damaged
    files (a :class:`CheckpointError`) are warned about by name and skipped; only the best one is kept
    in memory."""
    best: tuple[int, Path, Any] | None = None
    for p in paths:
        try:
            loaded = load(p)
        except CheckpointError as err:
            warnings.warn(f"skipping a damaged checkpoint: {err}")
            log.warning("skipping a damaged checkpoint: %s", err)
            continue
        step = progress(loaded)
        if best is None or step > best[0]:
            best = (step, p, loaded)
    return None if best is None else (best[1], best[2])


def newest_loadable(folder: str | os.PathLike, *, trust: bool = False) -> Path | None:
    """The loadable checkpoint in ``folder`` furthest into training (:func:`most_trained_loadable`)."""
    found = most_trained_loadable(checkpoint_candidates(folder), lambda p: load_checkpoint(p, trust=trust))
    return None if found is None else found[0]


def resolve_ckpt_path(ckpt_path: str | None, run_dir: str | os.PathLike, *, trust: bool = False) -> str | None:
    """What to hand ``trainer.fit(ckpt_path=...)``.

    * ``None`` / ``""``: start fresh;
    * ``auto``: the loadable checkpoint in ``<run_dir>/checkpoints`` furthest into training (this job's run
      folder, ``paths.output_dir``), or a fresh start when there is none (a first launch and a
      requeued job use the same command);
    * a folder (a run folder or its ``checkpoints/``): its loadable checkpoint furthest into training,
      else an error;
    * a file: that file (a damaged file is an error: an explicit request never silently falls back);
    * ``last`` / ``best`` / ``hpc``: Lightning's own meanings.
    """
    if ckpt_path in (None, "", "null"):
        return None
    ckpt_path = str(ckpt_path)
    if ckpt_path in ("last", "best", "hpc", "registry"):
        return ckpt_path
    if ckpt_path == "auto":
        folder = Path(run_dir) / "checkpoints"
        found = newest_loadable(folder, trust=trust) if folder.is_dir() else None
        if found is None:
            log.info("ckpt_path=auto: no loadable checkpoint in %s, starting from scratch", folder)
            return None
        log.info("ckpt_path=auto: resuming from %s", found)
        return str(found)
    p = Path(ckpt_path)
    if p.is_dir():
        folder = p / "checkpoints" if (p / "checkpoints").is_dir() else p
        found = newest_loadable(folder, trust=trust)
        if found is None:
            raise CheckpointError(f"ckpt_path={ckpt_path}: no loadable checkpoint (*.ckpt) in {folder}")
        log.info("resuming from %s (newest loadable checkpoint of %s)", found, folder)
        return str(found)
    load_checkpoint(p, trust=trust)  # fail here, with one message, not deep inside Lightning
    return str(p)


__all__ = ["AtomicCheckpointIO", "CheckpointError", "check_targets", "content_digest", "most_trained_loadable",
           "instantiate_from_checkpoint",
           "load_checkpoint", "newest_loadable", "rebuild_module", "resolve_ckpt_path", "save_atomic",
           "stored_data_state", "stored_model_config", "to_plain"]
