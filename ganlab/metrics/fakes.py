"""Features of generated samples: from a GAN (noise and labels planned by :mod:`ganlab.sampling`) or
from a folder of images."""

from __future__ import annotations

import dataclasses
import os
import time
from typing import Iterator, Sequence

import numpy as np
import torch

from ganlab import sampling
from ganlab.data.decode import MAX_DECODE_PIXELS
from ganlab.utils.files import IMAGE_EXTENSIONS, is_image_name


@dataclasses.dataclass
class FakeFeatures:
    features: torch.Tensor  # (n, 2048) float32 CPU
    logits: torch.Tensor | None  # (n, 1008) when the extractor has them and they were asked for
    seconds: float
    image_shape: tuple[int, ...]

    @property
    def n(self) -> int:
        return int(self.features.shape[0])


@dataclasses.dataclass
class GanSamples:
    """Deterministic fake samples of a GAN, planned by :mod:`ganlab.sampling`: sample ``i`` has the
    noise of image ``i`` of ``generate seed=seed`` and a label drawn from ``(seed, i)`` too."""

    model: torch.nn.Module
    z: torch.Tensor  # (n, z_dim), CPU
    labels: torch.Tensor | None  # (n,) long or (n, K) float, CPU
    ema: bool = True

    def __len__(self) -> int:
        return int(self.z.shape[0])

    @classmethod
    def create(cls, model, n: int, *, seed: int = 0, labels_pool=None, ema: bool = True,
               labels: torch.Tensor | None = None) -> "GanSamples":
        """``labels``: explicit labels (one per sample) instead of the evaluation plan's."""
        z = draw_noise(model, int(n), int(seed))
        if labels is None:
            labels = draw_labels(model, int(n), int(seed), labels_pool)
        elif len(labels) != int(n):
            raise ValueError(f"{len(labels)} labels given for {int(n)} samples")
        return cls(model, z, labels, ema)

    def images(self, indices: Sequence[int] | slice) -> torch.Tensor:
        """uint8 ``(k, C, H, W)`` CPU images of the given sample indices."""
        labels = None if self.labels is None else self.labels[indices]
        z = self.z[indices]
        return sampling.render(self.model, z, labels, batch_size=max(1, len(z)), ema=self.ema)

    def batches(self, batch_size: int) -> Iterator[torch.Tensor]:
        for s in range(0, len(self), batch_size):
            yield self.images(slice(s, min(s + batch_size, len(self))))


def draw_noise(model, n: int, seed: int) -> torch.Tensor:
    """The CPU noise ``(n, z_dim)`` of images ``0 .. n-1`` of plan ``seed`` (:func:`ganlab.sampling.latents`)."""
    return sampling.latents(int(seed), int(n), int(model.z_dim))


def draw_labels(model, n: int, seed: int, labels_pool=None) -> torch.Tensor | None:
    """Labels for a conditional model (:func:`ganlab.sampling.evaluation_labels`): with ``labels_pool``
    (the real split's labels) the fakes follow the data's label frequencies, else uniform classes;
    ``None`` for unconditional models."""
    return sampling.evaluation_labels(int(getattr(model, "num_classes", 0) or 0),
                                      getattr(model, "label_kind", None), int(n), int(seed), labels_pool)


def features_of_batches(
    batches, extractor, *, logits: bool = False, batch_size: int | None = None
) -> FakeFeatures:
    """Run ``extractor`` over an iterable of uint8 batches; nothing but the features is kept."""
    t0 = time.perf_counter()
    feats, logs, shape = [], [], ()
    for x in batches:
        shape = tuple(x.shape[1:])
        if logits:
            f, lg = extractor.extract(x, logits=True, batch_size=batch_size)
            logs.append(lg)
        else:
            f = extractor.extract(x, batch_size=batch_size)
        feats.append(f)
    f = torch.cat(feats) if feats else torch.empty(0, 2048)
    lg = torch.cat(logs) if logs else None
    return FakeFeatures(f, lg, time.perf_counter() - t0, shape)


def gan_fake_features(
    model, extractor, n: int, *, seed: int = 0, batch_size: int = 64, labels_pool=None, ema: bool = True,
    logits: bool = False,
) -> tuple[FakeFeatures, GanSamples]:
    """Features of ``n`` samples of ``model`` (fixed noise from ``seed``: same z every evaluation)."""
    samples = GanSamples.create(model, n, seed=seed, labels_pool=labels_pool, ema=ema)
    return features_of_batches(samples.batches(batch_size), extractor, logits=logits), samples


# ---------------------------------------------------------------------------------------------
class ImageFolder:
    """Images of a folder (sorted by path, like torch-fidelity), read with PIL as uint8 in PIL
    ``mode`` (RGB; a subclass may read grayscale as ``"L"``)."""

    mode = "RGB"

    def __init__(self, root: str, n: int | None = None, recursive: bool = False) -> None:
        files = []
        for dirpath, _, names in os.walk(root):
            if not recursive and os.path.realpath(dirpath) != os.path.realpath(root):
                continue
            files += [os.path.join(dirpath, f) for f in names if is_image_name(f)]
        files = sorted(os.path.realpath(f) for f in files)
        if not files:
            raise FileNotFoundError(f"no images ({', '.join(sorted(IMAGE_EXTENSIONS))}) in {root}")
        self.root = root
        self.files = files[: int(n)] if n else files
        self.skipped: dict[str, str] = {}

    def __len__(self) -> int:
        return len(self.files)

    def _read(self, path: str) -> np.ndarray:
        from PIL import Image

        with Image.open(path) as im:
            w, h = im.size
            if w * h > MAX_DECODE_PIXELS:
                raise ValueError(f"too large to decode safely: {w}x{h} pixels")
            a = np.asarray(im.convert(self.mode), dtype=np.uint8)
        return a[None] if a.ndim == 2 else a.transpose(2, 0, 1)

    def images(self, indices: Sequence[int] | slice) -> torch.Tensor:
        files = self.files[indices] if isinstance(indices, slice) else [self.files[i] for i in indices]
        arrs = [self._read(f) for f in files]
        shapes = {a.shape for a in arrs}
        if len(shapes) > 1:
            raise ValueError(f"images in {self.root} differ in size: {sorted(shapes)[:3]}")
        return torch.from_numpy(np.stack(arrs))

    def batches(self, batch_size: int) -> Iterator[torch.Tensor]:
        """Readable images in order; a file that cannot be decoded (truncated, not an image, a
        dangling link, gone, too large, another size than the first) is skipped and recorded in
        ``self.skipped`` (path -> reason). Afterwards ``self.files`` lists the images used, so
        ``images(i)`` matches the i-th feature row."""
        used: list[str] = []
        buf: list[np.ndarray] = []
        shape = None
        for f in list(self.files):
            try:
                a = self._read(f)
            except (OSError, ValueError, SyntaxError, EOFError) as err:
                self.skipped[f] = f"{type(err).__name__}: {str(err)[:120]}"
                continue
            if shape is None:
                shape = a.shape
            if a.shape != shape:
                self.skipped[f] = f"size {a.shape[2]}x{a.shape[1]} differs from the first image's {shape[2]}x{shape[1]}"
                continue
            used.append(f)
            buf.append(a)
            if len(buf) == batch_size:
                yield torch.from_numpy(np.stack(buf))
                buf = []
        if buf:
            yield torch.from_numpy(np.stack(buf))
        self.files = used
        if not used:
            raise FileNotFoundError(f"none of the images in {self.root} could be read ({len(self.skipped)} skipped)")


__all__ = ["FakeFeatures", "GanSamples", "ImageFolder", "draw_labels", "draw_noise", "features_of_batches",
           "gan_fake_features"]
