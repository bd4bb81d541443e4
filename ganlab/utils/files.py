"""File-system helpers shared across ganlab: content hashes, atomic writes (temp file beside the
target, then ``os.replace``: a reader sees the old file or the new one, never half of one), flushing
a folder's entries to disk, telling whether the process that left a temp file lives, and which
file names count as images."""

from __future__ import annotations

import hashlib
import json
import os
import re
from typing import Sequence
from typing import Any

#: suffixes every reader of image folders accepts (lower case; Pillow opens all of them)
IMAGE_EXTENSIONS = frozenset(
    {".jpg", ".jpeg", ".jfif", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff",
     ".ppm", ".pgm", ".pbm", ".pnm"}
)


def is_image_name(name: str) -> bool:
    """Whether a file name has an image suffix (case-insensitive)."""
    return os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 22) -> str:
    """Hex sha256 of a file's bytes, read in chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def fsync_dir(folder: str | os.PathLike) -> None:
    """Make a rename/unlink inside ``folder`` durable (POSIX: fsync the directory itself)."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write_bytes(data: bytes | bytearray | memoryview, path: str | os.PathLike, durable: bool = False) -> str:
    """Write ``data`` to ``path`` atomically; ``durable``: fsync the file and its folder too."""
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    tmp = f"{path}.tmp.{os.getpid()}"
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            if durable:
                f.flush()
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    if durable:
        fsync_dir(folder)
    return path


def atomic_write_text(text: str, path: str | os.PathLike, durable: bool = False) -> str:
    return atomic_write_bytes(text.encode("utf-8"), path, durable)


def atomic_write_json(obj: Any, path: str | os.PathLike, durable: bool = False, **dump_kwargs: Any) -> str:
    """``json.dump(obj, indent=2)`` plus a final newline, written atomically."""
    dump_kwargs.setdefault("indent", 2)
    return atomic_write_text(json.dumps(obj, **dump_kwargs) + "\n", path, durable)


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` exists (one we may not signal counts as alive)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


# -- file-system names: class names as folder names (generate writes them, evaluate and the loggers read them)
_UNSAFE = re.compile(r'[\\/:*?"<>|\x00-\x1f]')


def folder_name(name: str) -> str:
    """A class name as a folder name: path separators and characters Windows forbids -> ``_``."""
    safe = _UNSAFE.sub("_", str(name)).strip().strip(".")
    return safe or "_"


def folder_names(names: Sequence[str]) -> list[str]:
    """:func:`folder_name` of each, made unique (``name``, ``name_2`` ...) and case-insensitively distinct."""
    out: list[str] = []
    seen: set[str] = set()
    for n in names:
        base = cand = folder_name(n)
        i = 2
        while cand.casefold() in seen:
            cand = f"{base}_{i}"
            i += 1
        seen.add(cand.casefold())
        out.append(cand)
    return out
