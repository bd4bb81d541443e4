"""Classifier guidance: a generator-side term from label classifiers trained on the real images.

A conditional generator can draw each class as a narrow corner of the real class that sits on a boundary
between neighbouring classes (issue 20: shirts one classifier reads as shirts and another as T-shirts). This
term adds to G's loss ``weight * mean over the classifiers of CE(classifier(G(z, y)), y)`` (multi-hot
attributes: the binary cross-entropy per attribute): frozen :class:`~ganlab.metrics.classifier.CompactCNN`
label classifiers, trained on the real training split (:func:`~ganlab.metrics.classifier.get_label_classifier`,
cached on disk), pull every generated class towards what they read as that class. The discriminator still
decides what looks real. The same idea as the auxiliary classifier of AC-GAN (Odena et al. 2017), with the
classifier trained once on real data only and never on fakes (it cannot learn to read the fakes' shortcuts),
as pretrained networks are used beside the discriminator in Vision-aided GAN (Kumari et al. CVPR 2022).

The classifiers are not part of the model's ``state_dict``: they are a deterministic function of the data and
their settings, read back from the cache on resume (or retrained, bit-for-bit on CPU), and a checkpoint that
generates needs none of them. Their training seeds its own random stream and leaves the run's as it was.

Read its effect with classifiers that do not guide: a class-fidelity classifier of the same seed, steps and
widths reads the images G was pulled towards, so the in-training class fidelity warns when they coincide.
"""

from __future__ import annotations

import logging
from typing import Any, Sequence

import torch
import torch.nn.functional as F

from ganlab.metrics.classifier import DEFAULTS as CLASSIFIER

log = logging.getLogger(__name__)


class ClassifierGuidance:
    def __init__(self, weight: float = 1.0, seeds: Sequence[int] = (10,), steps: int = CLASSIFIER["steps"],
                 widths: Sequence[int] = CLASSIFIER["widths"], cache_dir: str | None = None) -> None:
        if weight < 0:
            raise ValueError(f"ClassifierGuidance weight must be >= 0, got {weight}")
        seeds = [int(s) for s in seeds]
        if not seeds or len(set(seeds)) != len(seeds):
            raise ValueError(f"ClassifierGuidance seeds must be distinct seeds, at least one; got {list(seeds)}")
        self.weight, self.seeds, self.steps = float(weight), seeds, int(steps)
        self.widths, self.cache_dir = [int(w) for w in widths], cache_dir
        self.classifiers: list[torch.nn.Module] = []
        self.label_kind: str | None = None

    def prepare(self, datamodule: Any, device: torch.device) -> None:
        """Train (or read from the cache) one frozen classifier per seed on ``datamodule``'s labelled training
        split, on ``device``. Called by the GAN module's ``setup``; the run's random state is left as it was."""
        from ganlab.metrics.classifier import get_label_classifier
        from ganlab.utils.rng import untouched_rng

        if datamodule is None or not getattr(datamodule, "label_kind", None):
            raise ValueError("classifier guidance (model.guidance) needs labelled training data from a ganlab "
                             "DataModule (data.labels=...); got "
                             f"{'no data module' if datamodule is None else 'a data module without labels'}")
        self.label_kind = datamodule.label_kind
        self.classifiers = []
        with untouched_rng(torch.device(device)), torch.enable_grad():
            for seed in self.seeds:
                clf, info = get_label_classifier(datamodule, cache_dir=self.cache_dir, device=device,
                                                 steps=self.steps, seed=seed, widths=self.widths)
                self.classifiers.append(clf.eval().requires_grad_(False))
                log.info("classifier guidance: seed %d %s (%s)", seed, "from the cache" if info.get("from_cache")
                         else f"trained in {info.get('train_seconds')} s", info.get("path"))

    def reads_like(self, seed: int, steps: int, widths: Sequence[int]) -> bool:
        """Whether a label classifier of these settings is one of the guiding ones (the same cached network)."""
        return int(seed) in self.seeds and int(steps) == self.steps and [int(w) for w in widths] == self.widths

    def __call__(self, fake: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        if not self.classifiers:
            raise RuntimeError("ClassifierGuidance.prepare(datamodule, device) must run before the first G step")
        losses = []
        for clf in self.classifiers:
            logits = clf(fake)
            losses.append(F.cross_entropy(logits, labels.long().view(-1)) if self.label_kind == "class"
                          else F.binary_cross_entropy_with_logits(logits, labels.float()))
        return self.weight * torch.stack(losses).mean()

    def __repr__(self) -> str:
        return (f"ClassifierGuidance(weight={self.weight}, seeds={self.seeds}, steps={self.steps}, "
                f"widths={self.widths})")


__all__ = ["ClassifierGuidance"]
