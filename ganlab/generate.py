"""Synthetic data sets from a trained (conditional) GAN.

    python -m ganlab.generate ckpt=PATH out=DIR num_images=N [per_class=N] [classes=[A,B]]
        [attributes=[[Eyeglasses],[]]] [balance=uniform|data] [seed=0] [batch_size=256]
        [format=png] [device=auto] [ema=true] [overwrite=false]
        [truncation=psi] [filter=none|classifier|discriminator] [filter_threshold=0.9] [min_acceptance=0.01]

Sample selection (``truncation``, ``filter``; :mod:`ganlab.selection` defines each precisely) is
optional; what was asked, the acceptance rate per class and the selecting model's sha256 are in
the manifest's ``selection`` entry.

Layout (ImageFolder: one subfolder per label, ready for torchvision's ``ImageFolder``):

* class-conditional models: ``out/<class name>/<latent index>.png``; class names come from the
  checkpoint (the datamodule state ``checkpoint["GANDataModule"]``, written by ``ganlab.train``), made safe as folder
  names (``T-shirt/top`` -> ``T-shirt_top``; the manifest keeps the original name);
* multi-hot models (CelebA attributes): one folder per requested attribute *combination*
  (``attributes=[[Eyeglasses],[Eyeglasses,Male],[]]`` -> ``Eyeglasses/``, ``Eyeglasses+Male/``,
  ``none/``; the listed attributes are on, all others off; default: all ``2^K`` combinations),
  and the full attribute vector of each image in the manifest;
* unconditional models: ``out/<latent index>.png`` (flat).

``out/manifest.json`` holds the checkpoint (path, sha256, generator step), ganlab version, the
generate config, the model and data configs, class names and counts, and one row per image
(file, class / attributes, seed, latent index); ``out/manifest.csv`` has the per-image rows.

Determinism: image ``i`` (its latent index, counted over the whole job in folder order) gets
the noise of image ``i`` of :mod:`ganlab.sampling`'s plan of ``seed`` (``z_i = randn(z_dim)`` from a
``torch.Generator`` seeded by ``numpy.random.SeedSequence([seed, i])``), so the same checkpoint,
seed and request give byte-identical files whatever ``batch_size`` (on CPU; CUDA kernels may differ
in the last bit between batch sizes), and image ``i`` is sample ``i`` of an evaluation or of an
unconditional sample grid with the same seed.

Safety: the checkpoint is opened once by :func:`ganlab.run.open_run`, with ``weights_only=True`` and
the model config's ``_target_`` checked (``trust_checkpoint=true`` for trusted files), and the
manifest's sha256 is of exactly the bytes loaded. Everything is written into a staging folder
beside ``out`` (``.<out>.partial-<pid>``) and swapped in at the end, so ``out`` is at every
moment either untouched or the complete new data set: a killed or signalled run leaves ``out``
as it was, and the next run removes its staging folder (or completes an interrupted swap).
A non-empty ``out`` is refused unless ``overwrite=true``, which replaces a previous
``ganlab.generate`` output only (a folder with files its manifest does not list is refused).
"""

from __future__ import annotations

import csv
import io
import json
import logging
import os
import sys
from dataclasses import dataclass
from itertools import product
from typing import Any, Mapping, Sequence

import hydra
import numpy as np
from omegaconf import DictConfig, ListConfig, OmegaConf

import ganlab
from ganlab import sampling
from ganlab.checkpoints import CheckpointError
from ganlab.labels import LabelError, LabelInfo, attribute_vector, class_index, combination_name, label_tensor
from ganlab.run import Run, open_run
from ganlab.selection import SelectionError, parse_selection, select
from ganlab.utils.conf_dir import conf_dir
from ganlab.utils.device import choose_device
from ganlab.utils.files import atomic_write_bytes, folder_names, pid_alive

log = logging.getLogger(__name__)

FORMATS = {"png": "PNG", "jpg": "JPEG", "jpeg": "JPEG", "webp": "WEBP"}
MAX_DEFAULT_COMBINATION_ATTRIBUTES = 6


class GenerateError(ValueError):
    """A bad request: printed as one line by ``python -m ganlab.generate``."""


@dataclass
class Group:
    """One output folder: a class, an attribute combination, or the whole (unconditional) set."""

    name: str  # class name / combination name ("" when unconditional)
    folder: str  # relative folder ("" = out itself)
    label: Any  # int class index, list[float] attribute vector, or None
    count: int = 0


# -- arguments ---------------------------------------------------------------------------------------
def _plain(x: Any) -> Any:
    return OmegaConf.to_container(x, resolve=True) if isinstance(x, (DictConfig, ListConfig)) else x


def _int_arg(cfg: Mapping, key: str, minimum: int = 1) -> int | None:
    v = cfg.get(key)
    if v is None:
        return None
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or int(v) < minimum:
        raise GenerateError(f"{key} must be an integer >= {minimum}, got {v!r}")
    return int(v)


def split_counts(total: int, weights: Sequence[float]) -> list[int]:
    """``total`` split over groups proportionally to ``weights`` (largest remainder; ties go to the
    earlier group), so uniform weights give ``total // G`` each and one more to the first ones."""
    w = np.asarray(weights, dtype=np.float64)
    if w.sum() <= 0:
        raise GenerateError("balance=data: none of the requested labels occurs in the training data")
    exact = total * w / w.sum()
    counts = np.floor(exact).astype(np.int64)
    order = sorted(range(len(w)), key=lambda i: (-(exact[i] - counts[i]), i))
    for i in order[: total - int(counts.sum())]:
        counts[i] += 1
    return [int(c) for c in counts]


def plan_groups(cfg: Mapping, info: LabelInfo) -> list[Group]:
    """The output folders and how many images each gets, from the request and the checkpoint's labels
    (a bad label name: :class:`ganlab.labels.LabelError`)."""
    k, names = info.num_classes, list(info.class_names)
    num_images, per_class = _int_arg(cfg, "num_images"), _plain(cfg.get("per_class"))
    classes, attributes = _plain(cfg.get("classes")), _plain(cfg.get("attributes"))
    balance = str(cfg.get("balance", "uniform"))
    if balance not in ("uniform", "data"):
        raise GenerateError(f"balance must be 'uniform' or 'data', got {balance!r}")
    if (num_images is None) == (per_class is None):
        raise GenerateError("give exactly one of num_images=N (split over the labels) or per_class=N")

    if not k:
        asked = [a for a in ("per_class", "classes", "attributes") if cfg.get(a) is not None]
        if asked or balance == "data":
            what = ", ".join(asked) or "balance=data"
            raise GenerateError(f"{what} needs a conditional checkpoint, but this one is unconditional (trained "
                                "without labels); use num_images=N")
        return [Group("", "", None, num_images)]

    if info.is_class:
        if attributes is not None:
            raise GenerateError("attributes=... is for multi-hot (attribute) models; this checkpoint has "
                                f"classes ({', '.join(names)}): use classes=[...]")
        if isinstance(per_class, Mapping):
            if classes is not None:
                raise GenerateError("give either classes=[...] or a per_class mapping, not both")
            chosen = [class_index(c, names) for c in per_class]
        else:
            chosen = list(range(k)) if classes is None else [class_index(c, names) for c in classes]
        if len(set(chosen)) != len(chosen):
            raise GenerateError("a class is requested twice")
        folders = folder_names(names)
        groups = [Group(names[c], folders[c], c) for c in chosen]
    else:
        if classes is not None:
            raise GenerateError(f"classes=... is for class-conditional models; this checkpoint is conditioned on "
                                f"attributes ({', '.join(names)}): use attributes=[[A],[A,B],[]]")
        if isinstance(per_class, Mapping):
            combos = [attribute_vector(c, names) for c in per_class]
        elif attributes is not None:
            if not isinstance(attributes, list) or not attributes:
                raise GenerateError("attributes must be a non-empty list of combinations, e.g. [[Eyeglasses],[]]")
            combos = [attribute_vector(c, names) for c in attributes]
        elif k <= MAX_DEFAULT_COMBINATION_ATTRIBUTES:
            combos = [[float(b) for b in bits] for bits in product((0, 1), repeat=k)]
        else:
            raise GenerateError(f"the checkpoint has {k} attributes ({2 ** k} combinations); choose some with "
                                "attributes=[[A],[A,B],[]]")
        cnames = [combination_name(v, names) for v in combos]
        if len(set(cnames)) != len(cnames):
            raise GenerateError("an attribute combination is requested twice")
        groups = [Group(n, f, v) for n, f, v in zip(cnames, folder_names(cnames), combos)]

    if isinstance(per_class, Mapping):
        for g, n in zip(groups, per_class.values()):
            if isinstance(n, bool) or not isinstance(n, int) or n < 0:
                raise GenerateError(f"per_class counts must be integers >= 0, got {n!r} for {g.name!r}")
            g.count = int(n)
    elif per_class is not None:
        if isinstance(per_class, bool) or not isinstance(per_class, int) or per_class < 1:
            raise GenerateError(f"per_class must be an integer >= 1 or a mapping {{class: count}}, got {per_class!r}")
        for g in groups:
            g.count = per_class
    else:
        if balance == "data":
            counts = info.counts
            if not counts:
                raise GenerateError("balance=data needs the training label counts, which this checkpoint does not "
                                    "store (written before ganlab stored them); use balance=uniform")
            weights = [float(counts.get(g.name, 0)) for g in groups]
        else:
            weights = [1.0] * len(groups)
        for g, n in zip(groups, split_counts(num_images, weights)):
            g.count = n
    if sum(g.count for g in groups) < 1:
        raise GenerateError("nothing to generate: every count is 0")
    return groups


# -- files -------------------------------------------------------------------------------------------------
def _encode(img: np.ndarray, fmt: str, quality: int) -> bytes:
    from PIL import Image

    arr = img[0] if img.shape[0] == 1 else img.transpose(1, 2, 0)
    buf = io.BytesIO()
    kw = {"quality": int(quality)} if fmt in ("JPEG", "WEBP") else {}
    Image.fromarray(np.ascontiguousarray(arr)).save(buf, format=fmt, **kw)
    return buf.getvalue()


def _sibling(out: str, kind: str, pid: int | None = None) -> str:
    parent, name = os.path.split(os.path.abspath(out))
    return os.path.join(parent, f".{name}.{kind}-{os.getpid() if pid is None else pid}")


def recover_out(out: str) -> None:
    """Clean up after a killed run: drop its half-built folder, finish (or undo) an interrupted swap."""
    import glob
    import shutil

    parent, name = os.path.split(os.path.abspath(out))
    for kind in ("partial", "old"):
        for p in sorted(glob.glob(os.path.join(glob.escape(parent), f".{glob.escape(name)}.{kind}-*"))):
            pid = p.rsplit("-", 1)[-1]
            if not pid.isdigit() or pid_alive(int(pid)):
                continue
            if kind == "old" and not os.path.exists(out):
                os.replace(p, out)  # killed between the two renames: the previous data set comes back
            else:
                shutil.rmtree(p, ignore_errors=True)


def prepare_out(out: str, overwrite: bool) -> str:
    """Validate ``out`` and return the empty staging folder beside it that the job writes into.

    ``overwrite=true`` replaces a previous ``ganlab.generate`` output only: a folder without a
    ``manifest.json``, or with files that manifest does not list, is refused (an atomic swap of
    the folder could not keep them)."""
    recover_out(out)
    if os.path.exists(out) and not os.path.isdir(out):
        raise GenerateError(f"out={out} exists and is not a folder")
    entries = os.listdir(out) if os.path.isdir(out) else []
    if entries and not overwrite:
        raise GenerateError(f"out={out} is not empty ({len(entries)} entries); pass overwrite=true to replace a "
                            "previous ganlab.generate output there, or choose an empty folder")
    if entries:
        try:
            with open(os.path.join(out, "manifest.json")) as f:
                listed = {os.path.normpath(str(r.get("file", ""))) for r in json.load(f).get("images", [])}
        except (OSError, ValueError, AttributeError):
            raise GenerateError(f"out={out} has no readable manifest.json, so it is not a ganlab.generate output; "
                                "overwrite=true only replaces those: choose an empty folder") from None
        foreign = [os.path.relpath(os.path.join(d, f), out) for d, _, fs in os.walk(out) for f in fs]
        foreign = sorted(f for f in foreign if f not in listed and f not in ("manifest.json", "manifest.csv"))
        if foreign:
            raise GenerateError(f"out={out} holds {len(foreign)} file(s) ganlab.generate did not write "
                                f"({', '.join(foreign[:5])}); overwrite=true replaces the whole folder at once, so "
                                "move them out first or choose another folder")
    stage = _sibling(out, "partial")
    os.makedirs(stage)
    return stage


def publish_out(stage: str, out: str) -> None:
    """Swap the finished ``stage`` folder in as ``out`` (two renames; :func:`recover_out` completes a
    swap that a kill interrupted), then delete the previous data set."""
    import shutil

    from ganlab.utils.files import fsync_dir

    old = None
    if os.path.isdir(out) and os.listdir(out):
        old = _sibling(out, "old")
        os.replace(out, old)
    elif os.path.isdir(out):
        os.rmdir(out)
    os.replace(stage, out)
    fsync_dir(os.path.dirname(os.path.abspath(out)))
    if old:
        shutil.rmtree(old, ignore_errors=True)


# -- the job ----------------------------------------------------------------------------------------------
def generate(cfg: DictConfig | Mapping) -> dict[str, Any]:
    """Everything ``python -m ganlab.generate`` does; returns the manifest (also written to out/)."""
    if not isinstance(cfg, DictConfig):
        cfg = OmegaConf.create(dict(cfg))
    ckpt_path, out = cfg.get("ckpt"), cfg.get("out")
    if not ckpt_path:
        raise GenerateError("ckpt=PATH is required (a checkpoint written by python -m ganlab.train)")
    if not out:
        raise GenerateError("out=DIR is required (the folder to write the data set into)")
    if not os.path.isfile(str(ckpt_path)):
        raise GenerateError(f"ckpt={ckpt_path}: no such file")
    fmt_name = str(cfg.get("format", "png")).lower()
    if fmt_name not in FORMATS:
        raise GenerateError(f"format must be one of {', '.join(FORMATS)}, got {cfg.get('format')!r}")
    fmt, ext = FORMATS[fmt_name], "jpg" if fmt_name == "jpeg" else fmt_name
    seed = _int_arg(cfg, "seed", minimum=0) or 0
    batch_size = _int_arg(cfg, "batch_size") or 256
    try:
        device = choose_device(cfg.get("device", "auto"))
    except ValueError as err:
        raise GenerateError(str(err)) from None
    try:  # the one door: bytes read once (the manifest's sha256 is of exactly those), model, EMA rule, labels
        run = open_run(str(ckpt_path), device=device, ema=bool(cfg.get("ema", True)),
                       trust=bool(cfg.get("trust_checkpoint", False)))
    except CheckpointError as err:
        raise GenerateError(f"ckpt={ckpt_path}: {err}") from None
    try:
        groups = plan_groups(cfg, run.labels)  # validates the request before anything is written
    except LabelError as err:
        raise GenerateError(str(err)) from None
    spec = parse_selection(cfg)
    # sample selection (ganlab.selection): the latent indices to write, chosen before anything is written
    kept, selection = select(run, groups, spec, seed=seed, batch_size=batch_size,
                             cache_dir=cfg.get("classifier_cache_dir"))
    for g, idx in zip(groups, kept):  # partial=true: a label that failed selection writes nothing
        g.count = len(idx)
    final_out = str(out)
    stage = prepare_out(final_out, bool(cfg.get("overwrite", False)))
    try:  # everything is written beside the target, then swapped in (publish_out)
        return _write_all(cfg, run, groups, stage, final_out, fmt, ext, seed, batch_size, spec, kept, selection)
    except BaseException:
        import shutil

        shutil.rmtree(stage, ignore_errors=True)
        raise


def _write_all(cfg, run: Run, groups, out, final_out, fmt, ext, seed, batch_size, spec, kept,
               selection) -> dict[str, Any]:
    stage, model, info = out, run.model, run.labels
    kind = info.kind

    total = sum(g.count for g in groups)
    jobs: list[tuple[int, Group]] = [(i, g) for g, idx in zip(groups, kept) for i in idx]
    width = max(6, len(str(max(i for i, _ in jobs))))
    for g in groups:
        if g.count:
            os.makedirs(os.path.join(str(out), g.folder), exist_ok=True)

    rows: list[dict[str, Any]] = []
    quality = int(cfg.get("jpeg_quality", 95))
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    progress = Progress(TextColumn("ganlab.generate"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                        disable=not bool(cfg.get("progress", True)))
    with progress:
        task = progress.add_task("images", total=total)
        for s in range(0, total, batch_size):
            chunk = jobs[s : s + batch_size]
            z = sampling.latents(seed, [i for i, _ in chunk], model.z_dim, spec.truncation)
            labels = label_tensor(kind, [g.label for _, g in chunk])
            images = sampling.render(model, z, labels, batch_size=len(chunk), ema=run.ema).numpy()
            for (i, g), img in zip(chunk, images):
                rel = f"{g.folder}/{i:0{width}d}.{ext}" if g.folder else f"{i:0{width}d}.{ext}"
                # a plain write: the staging folder is private and published whole by publish_out (an
                # atomic_write per image would list the folder for stale temps each time: quadratic)
                with open(os.path.join(str(out), rel), "wb") as f:
                    f.write(_encode(img, fmt, quality))
                row: dict[str, Any] = {"file": rel, "latent_index": i, "seed": seed}
                if info.is_class:
                    row.update({"class": g.name, "class_index": g.label})
                elif info.is_multi_hot:
                    row.update({"combination": g.name,
                                "attributes": {a: int(v) for a, v in zip(info.class_names, g.label)}})
                rows.append(row)
            progress.advance(task, len(chunk))

    manifest: dict[str, Any] = {
        "ganlab_version": ganlab.__version__,
        "checkpoint": {"path": os.path.abspath(run.path), "sha256": run.sha256,
                       "generator_step": int(getattr(model, "generator_step", -1))},
        "generator": "ema" if run.ema else "raw",
        "seed": seed,
        "noise": sampling.NOISE_SCHEME + " (i = latent_index; ganlab.sampling)" + ("" if spec.truncation >= 1 else "; components with |z| > "
                                          "selection.truncation_threshold redrawn from the same generator"),
        "selection": selection,
        "layout": {"class": "class_folders", "multi_hot": "attribute_combination_folders"}.get(kind, "flat"),
        "label_kind": kind,
        "class_names": list(info.class_names),
        "counts": {(g.folder or "."): g.count for g in groups},
        "class_folders": {g.name: g.folder for g in groups} if kind else {},
        "num_images": total,
        "image_shape": [int(model.generator.channels), int(model.generator.resolution),
                        int(model.generator.resolution)],
        "format": ext,
        "config": {k: _plain(v) for k, v in cfg.items() if k not in ("paths", "hydra")},
        "model_config": run.model_config,
        "data_config": run.data_config,
        "training_label_counts": info.counts,
        "images": rows,
    }
    atomic_write_bytes(_manifest_csv(rows, info), os.path.join(str(out), "manifest.csv"))
    atomic_write_bytes(json.dumps(manifest, indent=1, sort_keys=False, default=str).encode(),
                       os.path.join(str(out), "manifest.json"))
    publish_out(stage, final_out)
    return manifest


def _manifest_csv(rows: list[dict], info: LabelInfo) -> bytes:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    if info.is_class:
        w.writerow(["file", "class", "class_index", "seed", "latent_index"])
        w.writerows([r["file"], r["class"], r["class_index"], r["seed"], r["latent_index"]] for r in rows)
    elif info.is_multi_hot:
        w.writerow(["file", "combination", *info.class_names, "seed", "latent_index"])
        w.writerows([r["file"], r["combination"], *r["attributes"].values(), r["seed"], r["latent_index"]]
                    for r in rows)
    else:
        w.writerow(["file", "seed", "latent_index"])
        w.writerows([r["file"], r["seed"], r["latent_index"]] for r in rows)
    return buf.getvalue().encode()


@hydra.main(version_base="1.3", config_path=conf_dir(), config_name="generate")
@ganlab.console.user_errors()  # data / option / checkpoint errors: ganlab's message alone (console's exit codes)
def main(cfg: DictConfig) -> None:
    from ganlab import signals

    signals.install()  # SIGTERM / SIGINT / SIGUSR1/2: drop the half-built folder and exit 128+N
    try:
        manifest = generate(cfg)
    except (GenerateError, SelectionError) as err:  # a bad request: exit 2, like a bad checkpoint in console
        print(f"ganlab.generate: error: {err}", file=sys.stderr)
        sys.exit(2)
    except signals.StopRequested as err:
        print(f"ganlab.generate: {err}; nothing was published (out is as before), rerun to generate",
              file=sys.stderr)
        signals.finish(err.signum)  # the one signal exit path: a previous handler, then 128 + N
    print(f"wrote {manifest['num_images']} images to {os.path.abspath(str(cfg.out))}")
    for folder, n in manifest["counts"].items():
        print(f"  {folder}: {n}")
    print(f"manifest: {os.path.join(os.path.abspath(str(cfg.out)), 'manifest.json')}")


if __name__ == "__main__":
    main()
