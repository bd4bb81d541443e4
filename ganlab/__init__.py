"""ganlab: pluggable GANs on PyTorch Lightning 2.x + Hydra.

Flow: ``conf/`` -> :mod:`ganlab.train` -> :mod:`ganlab.data` (LightningDataModule)
-> :mod:`ganlab.models` (GAN LightningModule = networks + loss) -> :mod:`ganlab.callbacks`
-> loggers / checkpoints.
"""

__version__ = "0.1.0"

import ganlab.console  # noqa: F401  (entry points: @ganlab.console.user_errors())
from ganlab.utils.resolvers import register_resolvers as _register_resolvers

_register_resolvers()
