"""The decoded-image cache: keying, locking, atomic publication and loading.

An entry is three files in the cache folder, named ``<stem>`` =
``<source>-<slot>-<key>`` where ``slot`` hashes the source location and the image options,
and ``key`` additionally hashes every source file's name, size and mtime:

* ``<stem>.npy``        uint8 ``(N, C, H, W)``, opened with ``mmap_mode="r"``
* ``<stem>.extras.npz`` optional per-row arrays (e.g. the attributes of procedural faces)
* ``<stem>.json``       the manifest; written **last**, so its presence marks a complete entry

Building happens under an exclusive ``fcntl.flock`` on ``<stem>.lock``; each file is written
to ``<stem>.tmp-<pid>-<random>...`` and moved into place with ``os.replace``, so a reader
never sees a torn entry. Temp files left by a killed build are removed by the next build of
the same entry. After a successful build, complete entries of the same slot with another key
(stale: the source changed) are deleted.
"""

from __future__ import annotations

import contextlib
import fcntl
import glob
import hashlib
import json
import os
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from ganlab.utils.files import pid_alive, publish

__all__ = ["CACHE_FORMAT", "default_cache_dir", "digest", "CacheEntry", "Loaded", "get_or_build"]

# Bump when the bytes a build produces for the same inputs change (decode semantics).
CACHE_FORMAT = 1


def default_cache_dir() -> Path:
    """``$GANLAB_CACHE`` if set, else ``~/.cache/ganlab``."""
    env = os.environ.get("GANLAB_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "ganlab"


def digest(obj) -> str:
    """sha256 hex of the canonical JSON of ``obj``."""
    blob = json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str).encode()
    return hashlib.sha256(blob).hexdigest()


@dataclass(frozen=True)
class CacheEntry:
    folder: Path
    source: str
    slot: str
    key: str

    @property
    def stem(self) -> str:
        return f"{self.source}-{self.slot[:10]}-{self.key[:16]}"

    def path(self, suffix: str) -> Path:
        return self.folder / f"{self.stem}{suffix}"

    @property
    def images(self) -> Path:
        return self.path(".npy")

    @property
    def extras(self) -> Path:
        return self.path(".extras.npz")

    @property
    def manifest(self) -> Path:
        return self.path(".json")

    @property
    def lock(self) -> Path:
        return self.path(".lock")

    def temp(self, suffix: str) -> Path:
        # its own temp names (not utils.files.temp_path): the builder writes the images by path for minutes
        # under the entry's lock, and every temp of an entry carries its stem, so _remove_temps finds them
        return self.path(f".tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}{suffix}")


@dataclass
class Loaded:
    images: np.ndarray
    extras: dict[str, np.ndarray]
    manifest: dict
    built: bool  # True when this call built the entry


# -- reading -----------------------------------------------------------------------------
def _try_load(entry: CacheEntry) -> Loaded | None:
    """The entry if it is complete and consistent, else ``None`` (then it gets rebuilt)."""
    try:
        with open(entry.manifest, encoding="utf-8") as f:
            manifest = json.load(f)
        if manifest.get("key") != entry.key or manifest.get("format") != CACHE_FORMAT:
            return None
        images = np.load(entry.images, mmap_mode="r")
        if list(images.shape) != manifest["shape"] or images.dtype != np.uint8:
            return None
        extras: dict[str, np.ndarray] = {}
        if manifest.get("extras"):
            with np.load(entry.extras) as z:
                extras = {k: z[k] for k in z.files}
            if sorted(extras) != sorted(manifest["extras"]):
                return None
        return Loaded(images, extras, manifest, built=False)
    except (OSError, ValueError, KeyError, EOFError):
        return None


# -- writing -----------------------------------------------------------------------------
@contextlib.contextmanager
def _locked(path: Path):
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def _remove_temps(entry: CacheEntry) -> None:
    """Temp files of this entry (we hold its lock), and those of any key of the same slot whose
    builder process is gone (killed while the source was in another state)."""
    for p in glob.glob(glob.escape(str(entry.folder / entry.stem)) + ".tmp-*"):
        with contextlib.suppress(OSError):
            os.remove(p)
    prefix = glob.escape(str(entry.folder / f"{entry.source}-{entry.slot[:10]}-"))
    for p in glob.glob(prefix + "*.tmp-*"):
        pid = p.rsplit(".tmp-", 1)[-1].split("-", 1)[0]
        if pid.isdigit() and not pid_alive(int(pid)):
            with contextlib.suppress(OSError):
                os.remove(p)


def _write_extras(entry: CacheEntry, extras: dict[str, np.ndarray]) -> None:
    tmp = entry.temp(".npz")
    with open(tmp, "wb") as f:
        np.savez(f, **extras)
    publish(tmp, entry.extras)


def _write_manifest(entry: CacheEntry, manifest: dict) -> None:
    tmp = entry.temp(".json")
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(manifest, f, indent=1)
    publish(tmp, entry.manifest)


def _prune_stale(entry: CacheEntry) -> None:
    """Delete complete entries of the same slot built from an older state of the source."""
    prefix = f"{entry.source}-{entry.slot[:10]}-"
    for manifest in entry.folder.glob(glob.escape(prefix) + "*.json"):
        stem = manifest.name[: -len(".json")]
        if stem == entry.stem or ".tmp-" in stem:
            continue
        for suffix in (".json", ".npy", ".extras.npz"):  # manifest first: entry turns incomplete
            with contextlib.suppress(OSError):
                os.remove(entry.folder / f"{stem}{suffix}")


# Builder: called with the temp path to write the ``.npy`` to; returns (manifest, extras).
Builder = Callable[[Path], "tuple[dict, dict[str, np.ndarray]]"]


def get_or_build(entry: CacheEntry, build: Builder) -> Loaded:
    """Load ``entry`` or build it exactly once across concurrent processes."""
    hit = _try_load(entry)
    if hit is not None:
        return hit
    entry.folder.mkdir(parents=True, exist_ok=True)
    with _locked(entry.lock):
        hit = _try_load(entry)  # another process may have built it while we waited
        if hit is not None:
            return hit
        _remove_temps(entry)  # leftovers of a killed build; we hold the lock
        tmp_images = entry.temp(".npy")
        try:
            manifest, extras = build(tmp_images)
            manifest = {**manifest, "format": CACHE_FORMAT, "key": entry.key,
                        "extras": sorted(extras)}
            publish(tmp_images, entry.images)
            if extras:
                _write_extras(entry, extras)
            _write_manifest(entry, manifest)
        finally:
            _remove_temps(entry)
        _prune_stale(entry)
    loaded = _try_load(entry)
    if loaded is None:  # pragma: no cover - only if the folder is tampered with meanwhile
        raise RuntimeError(f"cache entry {entry.manifest} unreadable right after building it")
    loaded.built = True
    return loaded
