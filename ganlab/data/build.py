"""Parallel, chunked production of the cached image array, with a progress bar.

Workers (a ``ProcessPoolExecutor``) each turn one chunk of items into a
:class:`~ganlab.data.decode.ChunkResult`; the parent consumes results *in order* and appends
the successful rows to a ``.npy`` opened with ``open_memmap``, so memory stays bounded by the
chunks in flight. Failed items are reported by global index with their reason.
"""

from __future__ import annotations

import contextlib
import multiprocessing as mp
import os
import sys
from collections import deque
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path
from typing import Callable, Iterable, Iterator, Sequence

import numpy as np

from ganlab.data.decode import ChunkResult

__all__ = ["available_cpus", "resolve_workers", "chunk_ranges", "BuildOutcome", "run_chunks"]


def available_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def resolve_workers(num_workers: int | None, n_items: int) -> int:
    """Worker processes to use; 0 means in this process."""
    n = min(available_cpus(), 16) if num_workers is None else int(num_workers)
    if n <= 1 or n_items < 64:
        return 0
    return n


def chunk_ranges(n_items: int, workers: int) -> list[tuple[int, int]]:
    """``(start, stop)`` chunks: small enough to balance and report progress, big enough to amortise."""
    size = 256 if workers == 0 else max(16, min(256, n_items // max(1, workers * 8)))
    return [(s, min(n_items, s + size)) for s in range(0, n_items, size)]


@dataclass
class BuildOutcome:
    count: int  # rows written
    failures: dict[int, str] = field(default_factory=dict)  # global item index -> reason
    extras: dict[str, np.ndarray] = field(default_factory=dict)


def _context():
    methods = mp.get_all_start_methods()
    torch = sys.modules.get("torch")
    cuda_live = bool(torch is not None and torch.cuda.is_initialized())
    if "fork" in methods and not cuda_live:
        return mp.get_context("fork")  # cheap start; no CUDA context to inherit
    return mp.get_context("forkserver" if "forkserver" in methods else "spawn")


def _die_with_parent(parent: int) -> None:
    """Pool worker initializer: exit when the building process dies (``kill -9``). Otherwise an
    orphaned worker (blocked on the task queue, whose other ends its siblings keep open) lives on
    and keeps the cache lock it inherited, and the next build waits on that lock forever."""
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, 9)  # PR_SET_PDEATHSIG = 1, SIGKILL = 9 (Linux)
    except (OSError, AttributeError):  # pragma: no cover - not Linux
        return
    if os.getppid() != parent:  # the parent died before prctl took effect
        os._exit(1)


@contextlib.contextmanager
def _executor(workers: int):
    """A process pool (or ``None`` for in-process work) that cancels pending chunks on errors."""
    if workers == 0:
        yield None
        return
    ex = ProcessPoolExecutor(max_workers=workers, mp_context=_context(), initializer=_die_with_parent,
                             initargs=(os.getpid(),))
    try:
        yield ex
    finally:
        ex.shutdown(wait=True, cancel_futures=True)


def _ordered(jobs: Sequence, worker: Callable, ex: ProcessPoolExecutor | None, workers: int) -> Iterator[ChunkResult]:
    """Results in job order. The first window is submitted right away, so worker processes are
    forked here, before any progress-bar thread exists; at most ``2 * workers`` chunks in flight."""
    if ex is None:
        return (worker(job) for job in jobs)
    it = iter(jobs)
    pending = deque(ex.submit(worker, j) for j in islice(it, 2 * workers))

    def drain() -> Iterator[ChunkResult]:
        while pending:
            res = pending.popleft().result()
            nxt = next(it, None)
            if nxt is not None:
                pending.append(ex.submit(worker, nxt))
            yield res

    return drain()


def _progress(enabled: bool, description: str, total: int):
    from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TaskProgressColumn,
                               TextColumn, TimeElapsedColumn, TimeRemainingColumn)

    bar = Progress(
        TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
        TaskProgressColumn(), TimeElapsedColumn(), TimeRemainingColumn(), disable=not enabled,
    )
    return bar, bar.add_task(description, total=total)


class CacheSpaceError(OSError):
    """The disk cannot hold the image cache: raised before any row is written."""

    def __str__(self) -> str:
        return str(self.strerror)


def open_reserved(path: Path, shape: tuple[int, ...]) -> np.ndarray:
    """A new uint8 ``.npy`` memmap whose blocks are allocated up front (``posix_fallocate``).

    A sparse memmap on a full disk fails later with SIGBUS on the first page that has no block;
    reserving first turns that into one clear error before anything is decoded."""
    nbytes = int(np.prod(shape))
    try:
        arr = np.lib.format.open_memmap(path, mode="w+", dtype=np.uint8, shape=shape)
        fd = os.open(path, os.O_RDWR)
        try:
            os.posix_fallocate(fd, 0, os.fstat(fd).st_size)
        finally:
            os.close(fd)
    except OSError as e:
        with contextlib.suppress(OSError):
            os.remove(path)
        raise CacheSpaceError(
            e.errno, f"cannot reserve {nbytes / 1e6:.1f} MB for the image cache in {path.parent}: "
            f"{e.strerror or e}; free space there or point GANLAB_CACHE (data.cache_dir) at a larger disk") from None
    return arr


def _compact(path: Path, count: int) -> None:
    """Rewrite ``path`` keeping only its first ``count`` rows (after skipped items)."""
    src = np.load(path, mmap_mode="r")
    tmp = path.with_name(path.name + ".compact")  # a temp of the cache's own temp, published by cache.get_or_build
    dst = open_reserved(tmp, (count, *src.shape[1:]))
    step = 4096
    for s in range(0, count, step):
        dst[s : s + step] = src[s : min(count, s + step)]
    dst.flush()
    del dst, src
    os.replace(tmp, path)


def _consume(results, out: np.ndarray, outcome: BuildOutcome, parts: dict, bar, task) -> None:
    for res in results:
        k = len(res.images)
        out[outcome.count : outcome.count + k] = res.images
        outcome.count += k
        outcome.failures.update({res.start + i: r for i, r in res.reasons.items()})
        for name, arr in res.extras.items():
            parts.setdefault(name, []).append(arr)
        bar.advance(task, len(res.ok))


def run_chunks(
    jobs: Iterable,
    worker: Callable,
    *,
    out_path: Path,
    n_items: int,
    item_shape: tuple[int, ...],
    workers: int,
    progress: bool,
    description: str,
) -> BuildOutcome:
    """Run ``worker`` over ``jobs`` and write the successful rows to ``out_path`` (``.npy``)."""
    jobs = list(jobs)
    out = open_reserved(out_path, (n_items, *item_shape))
    outcome = BuildOutcome(0)
    parts: dict[str, list[np.ndarray]] = {}
    with _executor(workers) as ex:
        results = _ordered(jobs, worker, ex, workers)
        bar, task = _progress(progress, description, n_items)
        with bar:
            _consume(results, out, outcome, parts, bar, task)
    out.flush()
    del out
    if 0 < outcome.count < n_items:
        _compact(out_path, outcome.count)
    outcome.extras = {k: np.concatenate(v) for k, v in parts.items()}
    return outcome
