"""Transitional conditioning (Shahbazi et al., ICLR 2022, "Collapse by conditioning"): train
unconditionally first and bring the labels in gradually, against the class collapse conditional
GANs show on small data.

The weight ``lambda`` of every label path (G's label embedding and conditional batch norm, D's
concat channels / projection term, and the ADC classifier loss) is 0 up to generator step
``start``, rises linearly to 1 at ``end`` and stays 1. It is a function of the generator step alone,
which the checkpoint holds, so a resumed run continues exactly; :class:`ganlab.models.gan.GAN`
applies it before every step and every sample (``ganlab.models.networks.conditioning.set_condition_weight``).
"""

from __future__ import annotations


class Transition:
    def __init__(self, start: int = 0, end: int = 2000) -> None:
        if not 0 <= start <= end:
            raise ValueError(f"transitional conditioning needs 0 <= start <= end (generator steps), got {start}, {end}")
        self.start, self.end = int(start), int(end)

    def weight(self, step: int) -> float:
        """lambda at generator step ``step``: 0 until ``start``, linear, 1 from ``end`` on."""
        if step <= self.start:
            return 0.0 if step < self.end else 1.0
        if step >= self.end:
            return 1.0
        return (step - self.start) / (self.end - self.start)

    def __repr__(self) -> str:
        return f"Transition(start={self.start}, end={self.end})"
