"""A training run's random stream, kept apart from what evaluates it."""

from __future__ import annotations

import torch


def untouched_rng(device: torch.device):
    """A context in which torch's random state (CPU and ``device``'s CUDA generator) may be used freely and
    is restored on exit: in-training evaluations (a classifier seeded and trained on first use, networks
    built from a cache or from weights, which draw initial weights) then leave the run's noise and batches
    as they were."""
    return torch.random.fork_rng(devices=[device.index or 0] if device.type == "cuda" else [])


__all__ = ["untouched_rng"]
