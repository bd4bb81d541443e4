"""What every discriminator augmentation shares: an ``nn.Module`` applied to each image D sees,
drawing its random parameters from its *own* random stream.

The own stream (a ``torch.Generator`` on the images' device, seeded from the run's seed and the
process rank) means turning augmentation on does not shift the global RNG, so the latent noise,
data order and instance noise of a run are the same with and without it (ADA at p = 0 trains
bit-for-bit like no augmentation), and no host round trip is needed to decide anything. Its
state rides in the module's ``state_dict`` as ``_extra_state``, so resume is exact.
"""

from __future__ import annotations

import torch
from torch import nn

# an arbitrary odd constant that separates this stream from the global one seeded with the same seed
_STREAM_SALT = 0x9E3779B97F4A7C15
_DEVICE_TYPES = ("cpu", "cuda", "mps", "xpu")


class Augmentation(nn.Module):
    """Base class: ``forward(images) -> images`` plus the hooks the GAN loop calls."""

    def __init__(self) -> None:
        super().__init__()
        self._generator: torch.Generator | None = None
        self._saved_state: tuple[str, torch.Tensor] | None = None

    # -- hooks the GAN loop calls ---------------------------------------------------------
    def update(self, d_real: torch.Tensor) -> dict[str, torch.Tensor]:
        """Called after every D step with D's (detached) outputs on the augmented reals, already
        shifted so that 0 is the loss's decision boundary; returns scalars to log."""
        return {}

    # -- the random stream ----------------------------------------------------------------
    def random_generator(self, device: torch.device) -> torch.Generator:
        gen = self._generator
        if gen is not None and gen.device == device:
            return gen
        gen = torch.Generator(device=device)
        saved = self._saved_state
        if saved is not None and saved[0] == device.type:
            gen.set_state(saved[1])
        else:  # a fresh run (or a checkpoint from another device type): seed from the run's seed
            rank = torch.distributed.get_rank() if torch.distributed.is_initialized() else 0
            gen.manual_seed((torch.initial_seed() * 1_000_003 + _STREAM_SALT + rank) % 2**63)
        self._generator = gen
        return gen

    # The stream's state is one uint8 tensor (a device-type byte, then the generator state), so
    # the state_dict holds tensors only.
    def get_extra_state(self) -> torch.Tensor:
        if self._generator is not None:
            kind, state = self._generator.device.type, self._generator.get_state()
        elif self._saved_state is not None:
            kind, state = self._saved_state
        else:
            return torch.zeros(0, dtype=torch.uint8)
        return torch.cat([torch.tensor([_DEVICE_TYPES.index(kind)], dtype=torch.uint8), state.cpu()])

    def set_extra_state(self, state: torch.Tensor) -> None:
        self._generator = None  # rebuilt from the saved state at the next forward
        state = state.cpu()
        self._saved_state = (_DEVICE_TYPES[int(state[0])], state[1:].clone()) if state.numel() else None


def uniform(n: int, x: torch.Tensor, gen: torch.Generator, low: float = 0.0, high: float = 1.0) -> torch.Tensor:
    """``n`` draws from U(low, high) in float32 on ``x``'s device."""
    return torch.rand(n, device=x.device, generator=gen) * (high - low) + low


def normal(n: int, x: torch.Tensor, gen: torch.Generator, std: float = 1.0) -> torch.Tensor:
    return torch.randn(n, device=x.device, generator=gen) * std
