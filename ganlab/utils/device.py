"""The one device rule of every entry point (``device=auto|cpu|cuda|cuda:N``)."""

from __future__ import annotations

import torch


def choose_device(name: str | torch.device | None = "auto") -> torch.device:
    """``auto`` / ``None``: CUDA when available, else the CPU; otherwise that device, refused with
    one :class:`ValueError` naming it when it is malformed or CUDA is absent."""
    if name is None or str(name) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(str(name))
    except RuntimeError as err:
        raise ValueError(f"device={name!r}: {err}") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device={name} but CUDA is not available; use device=cpu")
    return dev


__all__ = ["choose_device"]
