"""The one error ganlab raises for data it cannot read: :class:`DataLayoutError`.

Every message names the offending path, lists the layouts ganlab understands and, where
CelebA may be what the user wanted, says how to obtain it. ganlab never downloads data.
"""

from __future__ import annotations

import os

__all__ = ["DataLayoutError", "LAYOUTS_HELP", "CELEBA_HELP", "layout_error"]

LAYOUTS_HELP = """\
ganlab understands these layouts under data.root:
  - celeba (official):    ROOT/img_align_celeba/*.jpg, ROOT/list_attr_celeba.txt,
                          ROOT/list_eval_partition.txt [, ROOT/identity_CelebA.txt]
  - celeba (kaggle):      ROOT/img_align_celeba/img_align_celeba/*.jpg, ROOT/list_attr_celeba.csv,
                          ROOT/list_eval_partition.csv
  - celeba (torchvision): ROOT/celeba/ holding the official layout
  - folder:               any images below ROOT (recursive; first-level subfolders are classes)
  - mnist_idx:            ROOT/{train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz]
                          (also ROOT/FashionMNIST/raw/ or ROOT/MNIST/raw/)
  - faces:                procedural faces, no files needed (data=faces)"""

CELEBA_HELP = """\
To obtain CelebA (ganlab never downloads anything): get "Align&Cropped Images" and the
annotation files from https://mmlab.ie.cuhk.edu.hk/projects/CelebA.html, or run
`kaggle datasets download -d jessicali9530/celeba-dataset` and unzip it; point data.root
(or the GANLAB_DATA environment variable) at the unpacked folder."""


class DataLayoutError(ValueError):
    """A data root that is missing, empty, unrecognised or inconsistent.

    ``path`` is the offending file or folder (``None`` when no root was given).
    """

    def __init__(self, message: str, path: str | os.PathLike | None = None) -> None:
        super().__init__(message)
        self.path = None if path is None else os.fspath(path)


def layout_error(problem: str, path: str | os.PathLike | None, *, celeba: bool = False) -> DataLayoutError:
    """Build a :class:`DataLayoutError`: the problem and path, the known layouts, CelebA help."""
    where = "data root is not set (data.root / GANLAB_DATA)" if path is None else os.fspath(path)
    parts = [f"{problem}: {where}", LAYOUTS_HELP]
    if celeba:
        parts.append(CELEBA_HELP)
    return DataLayoutError("\n".join(parts), path)
