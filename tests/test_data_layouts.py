"""Layouts: detection, listing order, labels and splits for every source; the clear errors."""

from __future__ import annotations

import numpy as np
import pytest
from data_fixtures import ATTRS, face_images, solid_png, write_celeba, write_mnist
from PIL import Image

from ganlab.data.decode import ImageOptions, decode_file
from ganlab.data.errors import DataLayoutError
from ganlab.data.idx import FASHION_MNIST_CLASSES, MNIST_CLASSES
from ganlab.data.layouts import natural_sorted
from ganlab.data.faces import ATTRIBUTE_NAMES, render_faces
from ganlab.data.faces.source import Faces
from ganlab.data.sources import CelebA, Folder, MNIST, MnistIdx, auto, prepare

pytestmark = pytest.mark.usefixtures("private_cache")

CELEBA_URL = "https://mmlab.ie.cuhk.edu.hk/projects/CelebA.html"


def _prep(source, root, cache_dir, **kw):
    kw.setdefault("resolution", 16)
    return prepare(source, root, cache_dir=cache_dir, num_workers=0, progress=False, **kw)


def test_natural_order():
    names = ["img10.png", "img2.png", "Img1.png", "a/img3.png", "img2b.png", "img02.png"]
    assert natural_sorted(names) == ["a/img3.png", "Img1.png", "img02.png", "img2.png", "img2b.png", "img10.png"]


# -- CelebA ---------------------------------------------------------------------------------
@pytest.mark.parametrize("layout", ["official", "kaggle", "torchvision"])
def test_celeba_layouts(tmp_path, cache_dir, layout):
    root = tmp_path / layout
    truth = write_celeba(root, layout, n=15)
    d = _prep(auto, root, cache_dir, labels=["Male", "Smiling"], crop=36)
    assert d.manifest["source"] == "celeba" and d.manifest["layout"] == layout
    assert d.images.shape == (15, 3, 16, 16) and d.images.dtype == np.uint8
    male, smiling = ATTRS.index("Male"), ATTRS.index("Smiling")
    expected = (truth["values"][:, [male, smiling]] > 0).astype(np.float32)
    assert d.label_kind == "multi_hot" and d.class_names == ["Male", "Smiling"]
    np.testing.assert_array_equal(d.labels, expected)
    assert d.labels.dtype == np.float32
    for code, name in enumerate(["train", "val", "test"]):
        np.testing.assert_array_equal(d.splits[name], np.flatnonzero(truth["partition"] == code))
    # rows are the files in order, decoded with the same options
    opts = ImageOptions(16, 3, 36, "bilinear")
    np.testing.assert_array_equal(d.images[4], decode_file(truth["images"] / truth["names"][4], opts))


def test_celeba_class_mode_and_identity(celeba_root, cache_dir):
    root, truth = celeba_root
    d = _prep(CelebA, root, cache_dir, labels=["Eyeglasses", "Male", "Young"], label_mode="class")
    bits = (truth["values"][:, [1, 2, 4]] > 0).astype(int)
    np.testing.assert_array_equal(d.labels, bits[:, 0] + 2 * bits[:, 1] + 4 * bits[:, 2])
    assert d.labels.dtype == np.int64 and d.label_kind == "class" and len(d.class_names) == 8
    assert d.class_names[5] == "Eyeglasses=1,Male=0,Young=1"
    ids = _prep(CelebA, root, cache_dir, labels="identity")
    assert ids.class_names == ["10", "11", "12"]
    np.testing.assert_array_equal(ids.labels, np.arange(15) % 3)


def test_celeba_explicit_layout_and_unknown_attribute(celeba_root, cache_dir):
    root, _ = celeba_root
    assert _prep(CelebA, root, cache_dir, layout="official").manifest["layout"] == "official"
    with pytest.raises(DataLayoutError, match="no CelebA kaggle layout") as e:
        _prep(CelebA, root, cache_dir, layout="kaggle")
    assert str(root) in str(e.value) and CELEBA_URL in str(e.value) and "kaggle datasets download" in str(e.value)
    with pytest.raises(ValueError, match="unknown attribute 'Bald'.*Eyeglasses"):
        _prep(CelebA, root, cache_dir, labels=["Bald"])


def test_celeba_without_partition_uses_seeded_split(celeba_root, cache_dir):
    root, _ = celeba_root
    (root / "list_eval_partition.txt").unlink()
    d = _prep(CelebA, root, cache_dir, val_fraction=0.2, test_fraction=0.2, seed=3)
    assert {k: len(v) for k, v in d.splits.items()} == {"train": 9, "val": 3, "test": 3, "all": 15}


def test_max_images_is_evenly_spaced(celeba_root, cache_dir):
    root, truth = celeba_root
    d = _prep(CelebA, root, cache_dir, max_images=5, labels=["Male"])
    assert len(d) == 5 and [f[0] for f in d.manifest["files"]] == [truth["names"][i] for i in (0, 3, 6, 9, 12)]
    np.testing.assert_array_equal(d.labels[:, 0], truth["values"][[0, 3, 6, 9, 12], ATTRS.index("Male")] > 0)
    assert set(d.splits) == {"train", "val", "test", "all"}


# -- folders ----------------------------------------------------------------------------------
def test_folder_natural_order_and_classes(tmp_path, cache_dir):
    root = tmp_path / "masks"
    files = ["with_mask/img10.png", "with_mask/img2.png", "with_mask/img1.png",
             "without_mask/x/img3.png", "without_mask/img20.png", "without_mask/img9.png"]
    for i, f in enumerate(files):
        solid_png(root / f, 10 * (i + 1))
    d = _prep(auto, root, cache_dir, labels="class", channels=1, val_fraction=0.0)
    order = ["with_mask/img1.png", "with_mask/img2.png", "with_mask/img10.png",
             "without_mask/img9.png", "without_mask/img20.png", "without_mask/x/img3.png"]
    assert [f[0] for f in d.manifest["files"]] == order
    assert d.images.shape == (6, 1, 16, 16)
    assert d.images[:, 0, 8, 8].tolist() == [10 * (files.index(f) + 1) for f in order]
    assert d.class_names == ["with_mask", "without_mask"] and d.labels.tolist() == [0, 0, 0, 1, 1, 1]
    assert list(d.splits) == ["train", "all"]


def test_folder_seeded_ratio_split(tmp_path, cache_dir):
    root = tmp_path / "flat"
    for i in range(20):
        solid_png(root / f"f{i}.png", i)
    a = _prep(Folder, root, cache_dir, val_fraction=0.25, test_fraction=0.1, seed=1)
    b = _prep(Folder, root, cache_dir, val_fraction=0.25, test_fraction=0.1, seed=1)
    c = _prep(Folder, root, cache_dir, val_fraction=0.25, test_fraction=0.1, seed=2)
    assert {k: len(v) for k, v in a.splits.items()} == {"train": 13, "val": 5, "test": 2, "all": 20}
    assert all(np.array_equal(a.splits[k], b.splits[k]) for k in a.splits)
    assert not np.array_equal(a.splits["val"], c.splits["val"])
    assert np.array_equal(np.sort(np.concatenate([a.splits[k] for k in ("train", "val", "test")])), np.arange(20))
    assert np.array_equal(a.splits["all"], np.arange(20))  # split=all: every image once
    assert a.labels is None and a.label_kind is None and a.class_names == []
    assert a.fingerprint == b.fingerprint != c.fingerprint


def test_folder_class_labels_need_subfolders(tmp_path, cache_dir):
    root = tmp_path / "mixed"
    solid_png(root / "cats" / "a.png", 1)
    solid_png(root / "loose.png", 2)
    with pytest.raises(DataLayoutError, match="loose.png") as e:
        _prep(Folder, root, cache_dir, labels="class")
    assert str(root) in str(e.value)


def test_grayscale_filters_and_fractional_crop(tmp_path, cache_dir):
    root = tmp_path / "faces"
    root.mkdir()
    img = face_images(1, seed=5, size=(60, 72))[0]
    img.save(root / "one.png")
    for filt, pil in (("bilinear", Image.Resampling.BILINEAR), ("lanczos", Image.Resampling.LANCZOS),
                      ("box", Image.Resampling.BOX)):
        d = _prep(Folder, root, cache_dir, channels=1, crop=0.5, resize_filter=filt, val_fraction=0.0)
        want = img.convert("L").resize((16, 16), pil, box=(15, 21, 45, 51), reducing_gap=None)
        np.testing.assert_array_equal(d.images[0, 0], np.asarray(want))


# -- IDX --------------------------------------------------------------------------------------
@pytest.mark.parametrize("gz", [True, False])
def test_mnist_idx_torchvision_placement(tmp_path, cache_dir, gz):
    root = tmp_path / "fm"
    truth = write_mnist(root / "FashionMNIST" / "raw", gz=gz)
    d = _prep(auto, root, cache_dir, resolution=28, channels=1, labels="class")
    assert d.manifest["source"] == "mnist_idx" and d.images.shape == (40, 1, 28, 28)
    np.testing.assert_array_equal(d.images[:30, 0], truth["train"][0])
    np.testing.assert_array_equal(d.images[30:, 0], truth["t10k"][0])
    assert d.class_names == FASHION_MNIST_CLASSES
    np.testing.assert_array_equal(d.labels, np.concatenate([truth["train"][1], truth["t10k"][1]]))
    np.testing.assert_array_equal(d.splits["train"], np.arange(30))
    np.testing.assert_array_equal(d.splits["test"], np.arange(30, 40))


def test_mnist_resized_rgb_and_alias(tmp_path, cache_dir):
    root = tmp_path / "digits"
    truth = write_mnist(root, n_train=12, n_test=4)
    d = _prep(MNIST, root, cache_dir, resolution=32, channels=3, labels="class")
    assert d.images.shape == (16, 3, 32, 32) and d.class_names == MNIST_CLASSES
    want = Image.fromarray(truth["train"][0][3]).resize((32, 32), Image.Resampling.BILINEAR, reducing_gap=None)
    np.testing.assert_array_equal(d.images[3, 1], np.asarray(want))
    np.testing.assert_array_equal(d.images[3, 0], d.images[3, 2])


def test_truncated_idx_is_a_layout_error(tmp_path, cache_dir):
    root = tmp_path / "bad_idx"
    write_mnist(root, gz=False)
    p = root / "train-images-idx3-ubyte"
    p.write_bytes(p.read_bytes()[:-100])
    with pytest.raises(DataLayoutError, match="truncated") as e:
        _prep(MnistIdx, root, cache_dir, resolution=28, channels=1)
    assert str(p) in str(e.value)


# -- procedural faces -------------------------------------------------------------------------
def test_faces_source_matches_renderer(cache_dir):
    d = prepare(Faces, None, resolution=24, num_images=70, seed=4, labels=["Smiling", "Eyeglasses"],
                cache_dir=cache_dir, num_workers=0, progress=False, val_fraction=0.1)
    images, attrs = render_faces(70, resolution=24, seed=4)
    np.testing.assert_array_equal(d.images, images)
    cols = [ATTRIBUTE_NAMES.index("Smiling"), ATTRIBUTE_NAMES.index("Eyeglasses")]
    np.testing.assert_array_equal(d.labels, attrs[:, cols].astype(np.float32))
    assert {k: len(v) for k, v in d.splits.items()} == {"train": 63, "val": 7, "all": 70}
    gray = prepare(Faces, None, resolution=24, num_images=70, seed=4, channels=1, max_images=10,
                   cache_dir=cache_dir, num_workers=0, progress=False)
    assert gray.images.shape == (10, 1, 24, 24)
    want = Image.fromarray(images[2].transpose(1, 2, 0)).convert("L")
    np.testing.assert_array_equal(gray.images[2, 0], np.asarray(want))


# -- clear errors -------------------------------------------------------------------------------
def _layout_error(source, root, cache_dir, **kw) -> str:
    with pytest.raises(DataLayoutError) as e:
        _prep(source, root, cache_dir, **kw)
    msg = str(e.value)
    assert "ganlab understands these layouts" in msg and "celeba (kaggle)" in msg and "folder" in msg
    assert e.value.__cause__ is None and (e.value.__context__ is None or e.value.__suppress_context__)
    return msg


def test_missing_root(tmp_path, cache_dir):
    root = tmp_path / "nowhere"
    for source in (auto, CelebA, Folder, MnistIdx):
        msg = _layout_error(source, root, cache_dir)
        assert "does not exist" in msg and str(root) in msg
    msg = _layout_error(CelebA, root, cache_dir)
    assert CELEBA_URL in msg and "kaggle datasets download -d jessicali9530/celeba-dataset" in msg
    assert "data root is not set" in _layout_error(auto, None, cache_dir)


def test_empty_and_unrecognised_roots(tmp_path, cache_dir):
    empty = tmp_path / "empty"
    empty.mkdir()
    msg = _layout_error(auto, empty, cache_dir)
    assert "empty folder" in msg and str(empty) in msg and CELEBA_URL in msg
    assert "empty folder" in _layout_error(Folder, empty, cache_dir)
    odd = tmp_path / "odd"
    (odd / "sub").mkdir(parents=True)
    (odd / "sub" / "readme.md").write_text("hi")
    msg = _layout_error(auto, odd, cache_dir)
    assert "unrecognised data layout" in msg and str(odd) in msg
    assert "no image files" in _layout_error(Folder, odd, cache_dir)
    assert "IDX" in _layout_error(MnistIdx, odd, cache_dir)


def test_attribute_rows_must_match_images(tmp_path, cache_dir):
    root = tmp_path / "c"
    truth = write_celeba(root, "official", n=6)
    (truth["images"] / "000002.jpg").unlink()
    face_images(1)[0].save(truth["images"] / "000099.jpg")
    msg = _layout_error(auto, root, cache_dir)
    assert str(root / "list_attr_celeba.txt") in msg
    assert "1 row(s) without an image (e.g. 000002.jpg)" in msg and "1 image(s) without a row (e.g. 000099.jpg)" in msg


def test_malformed_attribute_file(tmp_path, cache_dir):
    root = tmp_path / "m"
    write_celeba(root, "official", n=4)
    p = root / "list_attr_celeba.txt"
    lines = p.read_text().splitlines()
    p.write_text("\n".join([*lines[:3], lines[3] + " 1", *lines[4:]]) + "\n")
    assert "line 4: expected 5 values, found 6" in _layout_error(CelebA, root, cache_dir)
    p.write_text("\n".join(["7", *lines[1:]]) + "\n")
    assert "header says 7 images, the file has 4 rows" in _layout_error(CelebA, root, cache_dir)


def test_bad_arguments(tmp_path, cache_dir):
    with pytest.raises(ValueError, match="resolution"):
        _prep(Faces, None, cache_dir, resolution=2)
    with pytest.raises(ValueError, match="channels"):
        _prep(Faces, None, cache_dir, channels=2)
    with pytest.raises(ValueError, match="resize_filter"):
        _prep(Faces, None, cache_dir, resize_filter="cubic-ish")
    with pytest.raises(ValueError, match="label_mode"):
        _prep(Faces, None, cache_dir, label_mode="onehot")
    with pytest.raises(TypeError, match="source must be a source class"):
        _prep("imagenet", tmp_path, cache_dir)  # names were the old string dispatch: classes now
    with pytest.raises(ValueError, match="not available for source 'faces'"):
        _prep(Faces, None, cache_dir, labels="class", num_images=8)
