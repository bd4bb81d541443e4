"""Discriminator augmentation (``model/augment=none|diffaug|ada``): one module applied to every
image D sees, reals and fakes, in the D step, the G step and the regularizers.

- :class:`DiffAugment` (Zhao et al. 2020): colour / translation / cutout, always on;
- :class:`AdaptiveAugment` (Karras et al. 2020, ADA): a geometric + colour pipeline whose
  probability ``p`` follows the overfitting signal ``r_t = E[sign(D(real))]``.
"""

from ganlab.models.augment.ada import AdaptiveAugment
from ganlab.models.augment.base import Augmentation
from ganlab.models.augment.diffaugment import DiffAugment

__all__ = ["AdaptiveAugment", "Augmentation", "DiffAugment"]
