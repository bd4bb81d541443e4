"""A folder of generated images with its labels: what ``python -m ganlab.evaluate fake_dir=DIR`` reads.

The folder is searched recursively (``ganlab.generate`` writes one subfolder per class or attribute
combination). Labels come from ``DIR/manifest.json`` when it is there (``ganlab.generate``'s rows:
``class_index`` or ``attributes``), else from the first-level folder names: a class name (or its
folder-safe form, ``T-shirt_top``) for class data, ``A+B`` / ``none`` for attribute combinations.
Images are read in the data set's channel count (grayscale stays one channel) so the label
classifier and the Inception extractor see the same pixels. The fraction of candidates each class
kept in ``ganlab.generate``'s sample selection is read from the manifest (:func:`kept_fractions`).
"""

from __future__ import annotations

import json
import os
from typing import Any, Sequence

import numpy as np
import torch

from ganlab.labels import CLASS, LabelError, attribute_vector
from ganlab.metrics.fakes import ImageFolder
from ganlab.utils.files import folder_names


class LabelledImageFolder(ImageFolder):
    """:class:`ImageFolder` (recursive, sorted by path) with ``labels`` (``(N,)`` long / ``(N, K)`` float,
    or ``None`` when the folder carries none) and ``manifest`` (or ``None``)."""

    def __init__(self, root: str, *, class_names: Sequence[str] = (), label_kind: str | None = None,
                 channels: int = 3, n: int | None = None) -> None:
        super().__init__(root, recursive=True)
        self.channels = int(channels)
        self.manifest = read_manifest(root)
        self.labels = None
        if label_kind and class_names:
            labels = file_labels(root, self.files, list(class_names), label_kind, self.manifest)
            self.labels = torch.from_numpy(labels)
        if n and n < len(self.files):  # evenly spread over the sorted files, so every class folder keeps its share
            keep = np.unique(np.linspace(0, len(self.files) - 1, int(n)).round().astype(np.int64))
            self.files = [self.files[i] for i in keep]
            if self.labels is not None:
                self.labels = self.labels[torch.from_numpy(keep)]

    @property
    def mode(self) -> str:  # read in the data set's channel count
        return "L" if self.channels == 1 else "RGB"

    def batches(self, batch_size: int):
        """As :meth:`ImageFolder.batches`; the labels of skipped (unreadable) files are dropped too."""
        before = list(self.files)
        yield from super().batches(batch_size)
        if self.labels is not None and len(self.files) != len(before):
            pos = {f: i for i, f in enumerate(before)}
            self.labels = self.labels[torch.tensor([pos[f] for f in self.files], dtype=torch.long)]


def read_manifest(root: str) -> dict | None:
    path = os.path.join(root, "manifest.json")
    if not os.path.isfile(path):
        return None
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError) as err:
        raise ValueError(f"{path} is not a readable ganlab.generate manifest ({err})") from None


def file_labels(root: str, files: Sequence[str], class_names: list[str], label_kind: str,
                manifest: dict | None) -> np.ndarray:
    """The label of each file (``files`` are real paths under ``root``), from the manifest or the folders."""
    real_root = os.path.realpath(root)
    rel = [os.path.relpath(f, real_root).replace(os.sep, "/") for f in files]
    if manifest and manifest.get("images"):
        if list(manifest.get("class_names") or []) != class_names:
            raise ValueError(f"{root}/manifest.json lists classes {manifest.get('class_names')}, but the data set has "
                             f"{class_names}; pass the data= the generator was trained on")
        rows = {str(r["file"]): r for r in manifest["images"]}
        missing = [r for r in rel if r not in rows]
        if missing:
            raise ValueError(f"{root}: {len(missing)} image(s) not listed in manifest.json (e.g. {missing[0]}); "
                             "remove them or the manifest")
        if label_kind == CLASS:
            return np.array([int(rows[r]["class_index"]) for r in rel], dtype=np.int64)
        return np.array([[float(rows[r]["attributes"][a]) for a in class_names] for r in rel], dtype=np.float32)
    top = [r.split("/", 1)[0] if "/" in r else "" for r in rel]
    if label_kind == CLASS:
        lookup = {**{n: i for i, n in enumerate(class_names)}, **{f: i for i, f in enumerate(folder_names(class_names))}}
        bad = sorted({t for t in top if t not in lookup})
        if bad:
            raise ValueError(f"{root}: folder(s) {bad[:5]} are not classes of the data set ({', '.join(class_names)}); "
                             "expected one subfolder per class, as ganlab.generate writes")
        return np.array([lookup[t] for t in top], dtype=np.int64)
    vectors = {}
    for t in sorted(set(top)):  # attribute-combination folders: "Eyeglasses+Male", "none" (as generate writes)
        try:
            vectors[t] = attribute_vector(t, class_names)
        except LabelError as err:
            raise ValueError(f"{root}: folder {t!r}: {err}") from None
    return np.array([vectors[t] for t in top], dtype=np.float32).reshape(len(top), len(class_names))


def kept_fractions(manifest: dict | None) -> dict[str, Any] | None:
    """``{"filter", "truncation", "per_class": {label: fraction of candidates kept}}`` from the manifest."""
    sel = (manifest or {}).get("selection")
    if not sel:
        return None
    return {"filter": sel.get("filter"), "truncation": sel.get("truncation"),
            "selector_sha256": (sel.get("selector") or {}).get("sha256"),
            "per_class": {c: v.get("acceptance_rate") for c, v in (sel.get("per_class") or {}).items()}}


__all__ = ["LabelledImageFolder", "file_labels", "kept_fractions", "read_manifest"]
