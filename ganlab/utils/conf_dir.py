"""Where ganlab's Hydra configs are: the one answer for every entry point's ``@hydra.main``.

A source checkout keeps them in ``conf/`` next to the ``ganlab`` package (edited in place, also by
an editable install); a wheel or a non-editable ``pip install .`` ships the same files as
``ganlab/conf`` (``setup.py`` maps that package to ``conf/``). A user's own configs are added on top
with Hydra's search path: ``hydra.searchpath=[file:///my/conf]`` or ``--config-dir /my/conf``.
"""

from __future__ import annotations

from pathlib import Path

_PACKAGE = Path(__file__).resolve().parents[1]


def conf_dir() -> str:
    """Absolute path of the config folder: the checkout's ``conf/`` if there is one, else the
    packaged copy (``train.yaml`` marks a real one, so a stray ``site-packages/conf`` is ignored)."""
    for candidate in (_PACKAGE.parent / "conf", _PACKAGE / "conf"):
        if (candidate / "train.yaml").is_file():
            return str(candidate)
    raise FileNotFoundError(f"ganlab's configs are missing: neither {_PACKAGE.parent / 'conf'} nor "
                            f"{_PACKAGE / 'conf'} holds train.yaml (reinstall ganlab)")
