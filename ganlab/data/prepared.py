"""The object every data source hands to the datamodule: :class:`PreparedData`."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

__all__ = ["PreparedData"]


@dataclass
class PreparedData:
    """Decoded images plus labels, splits and provenance.

    images:      uint8 ``(N, C, H, W)``, usually a read-only ``np.load(..., mmap_mode="r")`` memmap.
    labels:      int64 ``(N,)`` class index, float32 ``(N, K)`` multi-hot 0/1, or ``None``.
    label_kind:  ``"class"``, ``"multi_hot"`` or ``None``.
    class_names: class names (class index) or attribute names (multi-hot); ``[]`` if none.
    splits:      ``"train"``/``"val"``/``"test"`` -> int64 row indices (only the splits that exist).
    fingerprint: hex digest of everything the content depends on (source files, image options,
                 labels, split settings); safe as a key for cached reference statistics.
    manifest:    the cache manifest (source files, options, counts, skipped files and why)
                 plus a ``"prepared"`` section describing labels and splits.
    """

    images: np.ndarray
    labels: np.ndarray | None
    label_kind: str | None
    class_names: list[str]
    splits: dict[str, np.ndarray]
    fingerprint: str
    manifest: dict = field(repr=False)

    def __len__(self) -> int:
        return int(self.images.shape[0])

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return tuple(int(s) for s in self.images.shape[1:])

    @property
    def num_classes(self) -> int:
        """Classes (class index) or attributes (multi-hot); 0 without labels."""
        return len(self.class_names) if self.label_kind else 0

    # A memmap would be pickled as a full copy of its data; send its path instead so that
    # worker processes (spawn/forkserver) re-open the same cache file.
    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        images = state["images"]
        path = getattr(images, "filename", None)
        if isinstance(images, np.memmap) and path:
            state["images"] = ("__memmap__", str(path))
        return state

    def __setstate__(self, state: dict) -> None:
        images = state["images"]
        if isinstance(images, tuple) and len(images) == 2 and images[0] == "__memmap__":
            state["images"] = np.load(images[1], mmap_mode="r")
        self.__dict__.update(state)
