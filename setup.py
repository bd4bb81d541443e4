"""Packaging beyond pyproject.toml: ship the Hydra configs, kept at the repo's top level in ``conf/``,
inside the wheel as the package ``ganlab.conf`` (pyproject's ``packages.find`` cannot map a folder
outside ``ganlab/``; ``ganlab.utils.conf_dir`` finds either copy at run time)."""

from setuptools import find_packages, setup

setup(
    packages=[*find_packages(include=["ganlab", "ganlab.*"]), "ganlab.conf"],
    package_dir={"ganlab.conf": "conf"},
)
