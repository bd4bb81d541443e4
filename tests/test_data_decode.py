"""Bad input: broken files are skipped and counted; odd modes and EXIF convert correctly."""

from __future__ import annotations

import logging

import numpy as np
import pytest
from data_fixtures import write_bad_corpus
from PIL import Image

from ganlab.data.decode import DecodeError, ImageOptions, decode_file
from ganlab.data.sources import Folder, prepare

pytestmark = pytest.mark.usefixtures("private_cache")


@pytest.fixture
def corpus(tmp_path):
    folder = tmp_path / "bad"
    return folder, write_bad_corpus(folder)


def _by_name(d, name):
    rels = [f[0] for f in d.manifest["files"]]
    skipped = {s["file"] for s in d.manifest["skipped"]}
    kept = [r for r in rels if r not in skipped]
    return d.images[kept.index(name)]


def test_bad_files_are_skipped_and_counted(corpus, cache_dir, caplog):
    folder, expect = corpus
    with caplog.at_level(logging.WARNING, logger="ganlab.data"):
        d = prepare(Folder, folder, resolution=16, cache_dir=cache_dir, num_workers=0, progress=False,
                    val_fraction=0.0)
    assert len(d) == len(expect["rows"]) == 8
    m = d.manifest
    assert m["counts"] == {"selected": 11, "images": 8, "skipped": 3}
    assert m["ignored_non_image"] == expect["ignored"]
    reasons = {s["file"]: s["reason"] for s in m["skipped"]}
    assert set(reasons) == set(expect["skipped"])
    for name, prefix in expect["skipped"].items():
        assert reasons[name].startswith(prefix), reasons[name]
    lines = [r.getMessage() for r in caplog.records if r.name == "ganlab.data"]
    assert len(lines) == 1
    assert "skipped 3 of 11 files" in lines[0] and str(folder) in lines[0]
    assert "1 empty file" in lines[0] and "1 not an image" in lines[0] and "1 corrupt or truncated" in lines[0]
    # the cache hit reports nothing new and still knows the skipped files
    caplog.clear()
    again = prepare(Folder, folder, resolution=16, cache_dir=cache_dir, num_workers=0, progress=False)
    assert again.manifest["counts"]["skipped"] == 3 and not caplog.records


def test_mode_conversions(corpus, cache_dir):
    folder, _ = corpus
    d = prepare(Folder, folder, resolution=20, cache_dir=cache_dir, num_workers=0, progress=False)
    pal = _by_name(d, "c01_palette.png")
    assert tuple(pal[:, 10, 2]) == (255, 0, 0) and tuple(pal[:, 10, 17]) == (0, 0, 255)
    rgba = _by_name(d, "c02_rgba.png")  # transparent half composited on white
    assert tuple(rgba[:, 2, 10]) == (255, 0, 0) and tuple(rgba[:, 17, 10]) == (255, 255, 255)
    la = _by_name(d, "c03_la.png")
    assert (la == 255).all()
    cmyk = _by_name(d, "c04_cmyk.jpg")  # C=0, M=Y=255, K=0 is red
    assert cmyk[0, 10, 10] > 240 and cmyk[1, 10, 10] < 15 and cmyk[2, 10, 10] < 15
    sixteen = _by_name(d, "c05_sixteen.png")  # 65535 -> 255, 32768 -> 128
    assert tuple(sixteen[:, 2, 10]) == (255, 255, 255) and tuple(sixteen[:, 17, 10]) == (128, 128, 128)


def test_exif_orientation_is_honoured(corpus, cache_dir):
    folder, _ = corpus
    d = prepare(Folder, folder, resolution=16, cache_dir=cache_dir, num_workers=0, progress=False)
    img = _by_name(d, "c06_exif.jpg")
    # stored 40x20 left red / right blue; orientation 6 shows it rotated clockwise: top red, bottom blue
    top, bottom = img[:, 2, 8].astype(int), img[:, 13, 8].astype(int)
    assert top[0] > 200 and top[2] < 60, top
    assert bottom[2] > 200 and bottom[0] < 60, bottom


def test_decode_file_reasons(tmp_path):
    opts = ImageOptions(8)
    (tmp_path / "z.jpg").write_bytes(b"")
    with pytest.raises(DecodeError, match="empty file"):
        decode_file(tmp_path / "z.jpg", opts)
    with pytest.raises(DecodeError, match="unreadable"):
        decode_file(tmp_path / "missing.jpg", opts)
    Image.new("1", (8, 8), 1).save(tmp_path / "bilevel.png")
    np.testing.assert_array_equal(decode_file(tmp_path / "bilevel.png", ImageOptions(8, 1)), 255)


def test_all_files_broken_is_a_layout_error(tmp_path, cache_dir):
    from ganlab.data.errors import DataLayoutError

    folder = tmp_path / "junk"
    folder.mkdir()
    (folder / "a.jpg").write_bytes(b"")
    (folder / "b.png").write_text("nope")
    with pytest.raises(DataLayoutError, match="none of the 2 image file") as e:
        prepare(Folder, folder, cache_dir=cache_dir, num_workers=0, progress=False)
    assert str(folder) in str(e.value)
    assert not list(cache_dir.glob("*.npy")) and not list(cache_dir.glob("*.tmp-*"))
