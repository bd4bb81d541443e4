"""Reader for the IDX format of MNIST and Fashion-MNIST (``.gz`` or raw).

Header: two zero bytes, a type code, the number of dimensions, then each dimension as a
big-endian uint32; the data follows in C order.
"""

from __future__ import annotations

import gzip
import os

import numpy as np

from ganlab.data.errors import DataLayoutError

__all__ = ["read_idx", "IDX_NAMES", "FASHION_MNIST_CLASSES", "MNIST_CLASSES"]

_TYPES = {0x08: "u1", 0x09: "i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}

# split -> (images stem, labels stem); the files may carry a ".gz" suffix
IDX_NAMES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}

FASHION_MNIST_CLASSES = [
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
]
MNIST_CLASSES = [str(d) for d in range(10)]


def _read_bytes(path: str) -> bytes:
    with open(path, "rb") as f:
        head = f.read(2)
    opener = gzip.open if head == b"\x1f\x8b" else open
    try:
        with opener(path, "rb") as f:
            return f.read()
    except (OSError, EOFError) as e:
        raise DataLayoutError(f"cannot read IDX file ({e}): {path}", path) from None


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Return the array stored in an IDX file (gzip detected from its magic bytes)."""
    path = os.fspath(path)
    data = _read_bytes(path)
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] not in _TYPES:
        raise DataLayoutError(f"not an IDX file (bad magic number): {path}", path)
    ndim = data[3]
    header = 4 + 4 * ndim
    shape = tuple(int(v) for v in np.frombuffer(data, dtype=">u4", count=ndim, offset=4))
    dtype = np.dtype(_TYPES[data[2]])
    expected = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if len(data) - header != expected:
        raise DataLayoutError(
            f"IDX file is truncated or malformed (header says {shape}, "
            f"{expected} bytes; found {len(data) - header}): {path}",
            path,
        )
    return np.frombuffer(data, dtype=dtype, offset=header).reshape(shape).astype(dtype.newbyteorder("="))
