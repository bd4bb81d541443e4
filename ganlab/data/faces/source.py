"""The procedural faces as a data source (``data=faces``): rendered into the uint8 cache like any
other source, labelled with their attributes, no files needed."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

from ganlab.data.build import chunk_ranges
from ganlab.data.decode import ChunkResult, ImageOptions, transform_array
from ganlab.data.faces.attributes import ATTRIBUTE_NAMES
from ganlab.data.faces.render import render_faces
from ganlab.data.annotations import attribute_label_array
from ganlab.data.sources import Annotation, Source, no_labels_here, seeded_splits


def _render_chunk(job) -> ChunkResult:
    start, count, seed, opts = job
    images, attrs = render_faces(count, resolution=int(opts.resolution), seed=seed, start=start)
    out = transform_array(images, opts)
    return ChunkResult(start, out, np.ones(count, dtype=bool), {}, {"attributes": np.asarray(attrs, np.int8)})


class Faces(Source):
    """``num_images`` faces of the data set ``seed`` (face ``i`` depends on ``(seed, i)`` only)."""

    name = "faces"

    def __init__(self, root: None = None, *, opts: ImageOptions, max_images: int | None, seed: int = 0,
                 num_images: int = 20000) -> None:
        super().__init__(opts, max_images)
        if root not in (None, "", "null", "None"):
            raise ValueError(f"the procedural faces are rendered, not read: data.root must be null, got {root!r}")
        if int(num_images) < 1:
            raise ValueError(f"num_images must be >= 1, got {num_images}")
        self.n_items = int(num_images) if max_images is None else min(int(num_images), int(max_images))
        self.seed = int(seed)
        self.names = list(ATTRIBUTE_NAMES)

    def location(self) -> dict:
        return {"root": None, "n": self.n_items, "seed": self.seed}

    def inputs(self) -> dict:
        package = Path(__file__).parent  # the renderer's code: a change re-renders
        code = hashlib.sha256(b"".join(p.read_bytes() for p in sorted(package.glob("*.py")))).hexdigest()
        return {"renderer": code, "attributes": self.names}

    def jobs(self, workers: int):
        return [(s, e - s, self.seed, self.opts) for s, e in chunk_ranges(self.n_items, workers)], _render_chunk

    def annotate(self, kept, loaded, req):
        splits, info = seeded_splits(len(kept), req)
        if req.labels is None:
            return Annotation(splits=splits, info=info)
        if req.labels in ("class", "identity"):
            raise no_labels_here(self.name, req.labels, "a list of attribute names")
        values = loaded.extras["attributes"]
        y, kind, names = attribute_label_array(values, self.names, req.labels, req.label_mode)
        return Annotation(y, kind, names, splits, {**info, "labels": names, "label_mode": kind})
