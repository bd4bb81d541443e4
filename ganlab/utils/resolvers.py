"""OmegaConf resolvers used by ``conf/`` (registered on ``import ganlab``).

``${optimizer_steps:G,n_critic}``: Lightning's ``global_step``/``max_steps``/
``every_n_train_steps`` count every optimizer step, and a GAN batch takes ``n_critic`` D steps
plus one G step, so G generator steps are ``G * (n_critic + 1)`` optimizer steps. Configs speak
in generator steps and convert with this resolver.

``${cwd:}``: Hydra's ``runtime.cwd`` (the folder the command ran in; ``paths.root_dir``'s default),
or the working directory where ``${hydra:runtime.cwd}`` cannot resolve: outside a job, e.g. when a
launcher plugin (submitit's ``hydra/launcher=slurm``) resolves ``hydra.sweep.dir`` and with it
``paths.root_dir`` before any job starts.

``${add:a,b}``: an integer sum (resumed Optuna sweeps number job folders after the study's
trials: :mod:`ganlab.resume_study`).
"""

from __future__ import annotations

import os

from omegaconf import OmegaConf


def optimizer_steps(generator_steps: int | None, n_critic: int = 1) -> int:
    if generator_steps is None or int(generator_steps) < 0:
        return -1
    return int(generator_steps) * (int(n_critic) + 1)


def cwd() -> str:
    from hydra.core.hydra_config import HydraConfig

    if HydraConfig.initialized():
        return str(HydraConfig.get().runtime.cwd)
    return os.getcwd()


def register_resolvers() -> None:
    if not OmegaConf.has_resolver("optimizer_steps"):
        OmegaConf.register_new_resolver("optimizer_steps", optimizer_steps)
    if not OmegaConf.has_resolver("cwd"):
        OmegaConf.register_new_resolver("cwd", cwd)
    if not OmegaConf.has_resolver("add"):
        OmegaConf.register_new_resolver("add", lambda *xs: sum(int(x) for x in xs))
