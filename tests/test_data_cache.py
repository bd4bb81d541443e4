"""The cache: reuse, invalidation, concurrent builders, restart after a kill, parallel build."""

from __future__ import annotations

import multiprocessing as mp
import os
import pickle
import signal
import time

import numpy as np
import pytest
from data_fixtures import face_images, write_celeba

from ganlab.data import decode
from ganlab.data.faces.source import Faces
from ganlab.data.sources import CelebA, auto, prepare

pytestmark = pytest.mark.usefixtures("private_cache")


def _prep(root, cache_dir, **kw):
    kw = {"resolution": 16, "num_workers": 0, "progress": False, **kw}
    return prepare(auto, root, cache_dir=cache_dir, **kw)


def _decoded(d) -> int:
    """Images this call decoded/rendered: the cache manifest's count when it built, 0 on a hit."""
    return d.manifest["counts"]["images"] if d.manifest["cache"]["built"] else 0


def _decodes(fn):
    out = fn()
    return out, _decoded(out)


def _entries(cache_dir):
    return sorted(p.name for p in cache_dir.glob("*.npy") if ".tmp-" not in p.name)


def _temps(cache_dir):
    return sorted(p.name for p in cache_dir.glob("*.tmp-*"))


def test_second_prepare_decodes_nothing(celeba_root, cache_dir):
    root, _ = celeba_root
    first, n1 = _decodes(lambda: _prep(root, cache_dir))
    second, n2 = _decodes(lambda: _prep(root, cache_dir, labels=["Male"], val_fraction=0.3))
    assert (n1, n2) == (15, 0)
    assert first.manifest["cache"]["built"] and not second.manifest["cache"]["built"]
    assert isinstance(second.images, np.memmap) and not second.images.flags.writeable
    np.testing.assert_array_equal(first.images, second.images)
    assert first.fingerprint != second.fingerprint  # labels are part of the fingerprint
    assert first.manifest["key"] == second.manifest["key"]  # ... but not of the image cache


def test_source_changes_invalidate(celeba_root, cache_dir):
    root, truth = celeba_root
    d0 = _prep(root, cache_dir)
    f = truth["images"] / truth["names"][3]
    st = f.stat()
    os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns + 5_000_000_000))  # touch: same bytes, new mtime
    d1, n = _decodes(lambda: _prep(root, cache_dir))
    assert n == 15 and d1.fingerprint != d0.fingerprint
    face_images(1, seed=9)[0].save(f, quality=80)  # rewrite: new content and size
    d2, n = _decodes(lambda: _prep(root, cache_dir))
    assert n == 15 and not np.array_equal(d2.images[3], d1.images[3])
    np.testing.assert_array_equal(d2.images[4], d1.images[4])
    assert len(_entries(cache_dir)) == 1  # stale entries of the same options are pruned
    # an annotation change re-labels without decoding
    p = root / "list_eval_partition.txt"
    p.write_text(p.read_text().replace("000001.jpg 0", "000001.jpg 2"))
    d3, n = _decodes(lambda: _prep(root, cache_dir))
    assert n == 0 and 0 in d3.splits["test"] and d3.fingerprint != d2.fingerprint


def test_added_and_removed_files_invalidate(tmp_path, cache_dir):
    root = tmp_path / "imgs"
    root.mkdir()
    faces = face_images(4)
    for i, img in enumerate(faces[:3]):
        img.save(root / f"f{i}.png")
    assert len(_prep(root, cache_dir)) == 3
    faces[3].save(root / "f3.png")
    d, n = _decodes(lambda: _prep(root, cache_dir))
    assert (len(d), n) == (4, 4)
    (root / "f0.png").unlink()
    d, n = _decodes(lambda: _prep(root, cache_dir))
    assert (len(d), n) == (3, 3)


def test_option_changes_get_their_own_entry(celeba_root, cache_dir):
    root, _ = celeba_root
    _prep(root, cache_dir, resolution=16)
    for kw in ({"resolution": 8}, {"channels": 1}, {"crop": 30}, {"resize_filter": "box"}, {"max_images": 5}):
        d, n = _decodes(lambda: _prep(root, cache_dir, **kw))
        assert n == len(d) > 0, kw
    _, n = _decodes(lambda: _prep(root, cache_dir, resolution=16))
    assert n == 0 and len(_entries(cache_dir)) == 6


def _slow_decoding(seconds):
    real = decode.decode_file

    def slow(path, opts):
        time.sleep(seconds)
        return real(path, opts)

    decode.decode_file = slow


def _child(root, cache_dir, barrier, queue):
    _slow_decoding(0.02)  # a build of ~0.3 s: the second process must wait on the lock
    barrier.wait()
    d = _prep(root, cache_dir)
    queue.put((_decoded(d), int(np.asarray(d.images, dtype=np.int64).sum())))


def test_two_concurrent_prepares_build_once(celeba_root, cache_dir):
    root, _ = celeba_root
    ctx = mp.get_context("fork")
    barrier, queue = ctx.Barrier(2), ctx.Queue()
    procs = [ctx.Process(target=_child, args=(root, cache_dir, barrier, queue)) for _ in range(2)]
    for p in procs:
        p.start()
    results = [queue.get(timeout=30) for _ in procs]
    for p in procs:
        p.join(timeout=30)
        assert p.exitcode == 0
    assert sorted(n for n, _ in results) == [0, 15]
    assert results[0][1] == results[1][1]
    assert len(_entries(cache_dir)) == 1 and not _temps(cache_dir)
    assert not _prep(root, cache_dir).manifest["cache"]["built"]


def _slow_child(root, cache_dir):
    _slow_decoding(0.2)
    _prep(root, cache_dir)


def test_restart_after_kill(celeba_root, cache_dir):
    root, _ = celeba_root
    proc = mp.get_context("fork").Process(target=_slow_child, args=(root, cache_dir))
    proc.start()
    deadline = time.monotonic() + 30
    while not _temps(cache_dir) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert _temps(cache_dir), "the child never started writing"
    os.kill(proc.pid, signal.SIGKILL)
    proc.join()
    assert not _entries(cache_dir) and _temps(cache_dir)  # nothing half-written was published
    d, n = _decodes(lambda: _prep(root, cache_dir))
    assert n == 15 and len(d) == 15 and not _temps(cache_dir)


def test_damaged_entry_is_rebuilt(celeba_root, cache_dir):
    root, _ = celeba_root
    d = _prep(root, cache_dir)
    images = d.manifest["cache"]["images"]
    del d
    with open(images, "r+b") as f:  # torn by hand: the header no longer matches the manifest
        f.truncate(200)
    (cache_dir / "leftover.tmp-1-x.npy").write_bytes(b"junk")  # someone else's temp: left alone
    d, n = _decodes(lambda: _prep(root, cache_dir))
    assert n == 15 and d.images.shape == (15, 3, 16, 16)


def test_parallel_build_matches_serial(tmp_path):
    root = tmp_path / "c"
    write_celeba(root, "official", n=80)
    serial = _prep(root, tmp_path / "a", num_workers=0)
    parallel = _prep(root, tmp_path / "b", num_workers=2, progress=True)
    assert parallel.manifest["workers"] == 2 and serial.manifest["workers"] == 0
    np.testing.assert_array_equal(serial.images, parallel.images)


def test_default_cache_dir_and_pickling(celeba_root, tmp_path, monkeypatch):
    root, _ = celeba_root
    monkeypatch.setenv("GANLAB_CACHE", str(tmp_path / "envcache"))
    d = prepare(CelebA, root, resolution=16, num_workers=0, progress=False, labels=["Male"])
    assert d.manifest["cache"]["images"].startswith(str(tmp_path / "envcache"))
    blob = pickle.dumps(d)
    assert len(blob) < d.images.nbytes  # the memmap travels as its path
    back = pickle.loads(blob)
    assert isinstance(back.images, np.memmap)
    np.testing.assert_array_equal(back.images, d.images)
    np.testing.assert_array_equal(back.labels, d.labels)


@pytest.mark.parametrize("source", [Faces])
def test_faces_are_rendered_once(cache_dir, source):
    kw = {"resolution": 16, "num_images": 40, "seed": 2, "labels": ["Male"]}
    a, n1 = _decodes(lambda: prepare(source, None, cache_dir=cache_dir, num_workers=0, progress=False, **kw))
    b, n2 = _decodes(lambda: prepare(source, None, cache_dir=cache_dir, num_workers=0, progress=False, **kw))
    assert (n1, n2) == (40, 0)
    np.testing.assert_array_equal(a.labels, b.labels)
    c, n3 = _decodes(lambda: prepare(source, None, cache_dir=cache_dir, num_workers=0, progress=False,
                                     **{**kw, "seed": 3}))
    assert n3 == 40 and not np.array_equal(a.images, c.images)
