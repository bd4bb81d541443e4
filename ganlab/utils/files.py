"""File-system helpers shared across ganlab: content hashes, the one atomic write
(:func:`atomic_write`: temp file beside the target, fsync, ``os.replace``, folder fsync, stale-temp
cleanup; checkpoints, caches, reference features, generate and reports all write through it), telling
whether the process that left a temp file lives, and which file names count as images."""

from __future__ import annotations

import hashlib
import json
import os
import re
from typing import Any, BinaryIO, Callable, Sequence

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


# -- the one atomic write: temp file beside the target, fsync, rename, folder fsync, stale-temp cleanup -------
def temp_path(path: str | os.PathLike) -> str:
    """``<folder>/.<name>.tmp-<pid>``: hidden, beside the target (one filesystem, so the rename is
    atomic), and naming the writer so :func:`remove_stale_temps` knows when it is orphaned."""
    folder, name = os.path.split(os.path.abspath(os.fspath(path)))
    return os.path.join(folder, f".{name}.tmp-{os.getpid()}")


def publish(tmp: str | os.PathLike, path: str | os.PathLike, durable: bool = True) -> None:
    """Rename the finished ``tmp`` over ``path``; ``durable``: fsync the file first and the folder after."""
    if durable:
        fd = os.open(tmp, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    os.replace(tmp, path)
    if durable:
        fsync_dir(os.path.dirname(os.path.abspath(os.fspath(path))))


def remove_stale_temps(folder: str | os.PathLike, name: str = "*") -> list[str]:
    """Delete ``.<name>.tmp-<pid>`` files (every name by default) of processes that no longer run
    (killed mid-write); a live writer's temp file, or this process's, is left alone."""
    import glob

    removed = []
    pattern = os.path.join(glob.escape(os.fspath(folder)), f".{'*' if name == '*' else glob.escape(name)}.tmp-*")
    for p in glob.glob(pattern):
        pid = p.rsplit("-", 1)[-1]
        if pid.isdigit() and int(pid) != os.getpid() and not pid_alive(int(pid)):
            try:
                os.unlink(p)
                removed.append(p)
            except OSError:
                pass
    return removed


def atomic_write(path: str | os.PathLike, write: Callable[[BinaryIO], Any], durable: bool = False) -> str:
    """``write(f)`` into :func:`temp_path` of ``path``, then :func:`publish` it: a reader (or a kill at
    any moment) sees the old file or the new one, never part of one. ``durable``: fsync the file and
    its folder, so the new content also survives a power cut. On any failure the temp file is
    removed and ``path`` keeps its previous content; orphans of killed writers of the same name are
    removed first."""
    path = os.fspath(path)
    folder, name = os.path.split(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    remove_stale_temps(folder, name)
    tmp = temp_path(path)
    try:
        with open(tmp, "wb") as f:
            write(f)
        publish(tmp, path, durable)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def atomic_write_bytes(data: bytes | bytearray | memoryview, path: str | os.PathLike, durable: bool = False) -> str:
    """:func:`atomic_write` of ``data``."""
    return atomic_write(path, lambda f: f.write(data), durable)


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
