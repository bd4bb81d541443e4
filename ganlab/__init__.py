"""ganlab: pluggable GANs on PyTorch Lightning 2.x + Hydra.

Flow: ``conf/`` -> :mod:`ganlab.train` -> :mod:`ganlab.data` (LightningDataModule)
-> :mod:`ganlab.models` (GAN LightningModule = networks + loss) -> :mod:`ganlab.callbacks`
-> loggers / checkpoints. :mod:`ganlab.sampling` plans every generated image (grids, metrics,
generate); :func:`ganlab.run.open_run` is the one door to a trained run (used by ``ganlab.load``,
``generate``, ``evaluate`` and sample selection); ``ganlab.load(path)`` (:mod:`ganlab.api`) samples a
checkpoint from a notebook.
"""

__version__ = "0.1.0"

import ganlab.console  # noqa: F401  (entry points: @ganlab.console.user_errors())
from ganlab.utils.resolvers import register_resolvers as _register_resolvers

_register_resolvers()

# the notebook API, imported on first use so `import ganlab` stays light
_API = {"load": "ganlab.api", "Sampler": "ganlab.api",
        "evaluate_checkpoint": "ganlab.evaluate", "evaluate_folder": "ganlab.evaluate"}


def __getattr__(name: str):
    if name in _API:
        import importlib

        return getattr(importlib.import_module(_API[name]), name)
    raise AttributeError(f"module 'ganlab' has no attribute {name!r}")
