"""Speed options of the GAN step (``model.speed``; ``trainer=gpu`` turns them on).

* ``fused_optimizer``: optimizers that take a ``fused`` argument (Adam, AdamW, SGD, ...) are built
  with ``fused=True`` when their parameters are on CUDA (one kernel for the whole update instead
  of a few per parameter tensor); on CPU, or when the optimizer config sets ``fused``/``foreach``
  itself, they are built exactly as configured.
* ``finite_check_every``: how often the non-finite guard reads its device flag
  (:class:`ganlab.models.finite.FiniteGuard`); 1 is the synchronous check of every batch.

``check_layout`` refuses ``model.compile`` with ``model.channels_last`` (see its message).
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Callable, Iterable

import torch


@dataclass(frozen=True)
class Speed:
    fused_optimizer: bool = False
    finite_check_every: int = 1

    def __post_init__(self) -> None:
        n = self.finite_check_every
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ValueError(f"model.speed.finite_check_every must be an integer >= 1 (1: check every batch), got {n!r}")

    @classmethod
    def of(cls, value: "Speed | Mapping | None") -> "Speed":
        """``None`` (the defaults), a ``Speed``, or a mapping of its fields (a config without ``_target_``)."""
        if value is None:
            return cls()
        if isinstance(value, cls):
            return value
        if isinstance(value, Mapping):
            return cls(**{k: v for k, v in value.items() if k != "_target_"})
        raise TypeError(f"model.speed must be a mapping of {list(cls.__dataclass_fields__)}, got {type(value).__name__}")


def build_optimizer(factory: Callable[..., torch.optim.Optimizer], params: Iterable[torch.nn.Parameter],
                    fused: bool) -> torch.optim.Optimizer:
    """``factory(params)``, plus ``fused=True`` when ``fused`` is asked for, the parameters are on
    CUDA, the optimizer class accepts ``fused`` and the config chose neither ``fused`` nor ``foreach``."""
    params = list(params)
    extra = {"fused": True} if fused and wants_fused(factory, params[0].device if params else None) else {}
    return factory(params, **extra)


def wants_fused(factory: Callable, device: torch.device | None) -> bool:
    if device is None or torch.device(device).type != "cuda":
        return False
    cls, chosen = factory, {}
    if isinstance(factory, functools.partial):  # Hydra's _partial_: true
        cls, chosen = factory.func, factory.keywords
    if "fused" in chosen or "foreach" in chosen:
        return False
    try:
        return "fused" in inspect.signature(cls).parameters
    except (TypeError, ValueError):
        return False


def check_layout(channels_last: bool, compile: bool) -> None:
    if channels_last and compile:
        raise ValueError(
            "model.compile=true cannot be combined with model.channels_last=true: torch.compile's inductor "
            "fails on the generator's first transposed convolution (a 1x1 input whose channels_last strides are "
            "ambiguous; 'expected size 512==512, stride 16==1' on an H100, experiments/gpu/). Set "
            "model.channels_last=false (it was 12% slower there anyway) or model.compile=false."
        )

