"""Helpers for the data-layer tests: every on-disk layout, built in tmp_path from procedural
faces, in the exact formats the real data sets use; plus a corpus of broken files."""

from __future__ import annotations

import gzip
import os
import struct
from pathlib import Path

import numpy as np
from PIL import Image

from ganlab.data.faces import render_faces

ATTRS = ["5_o_Clock_Shadow", "Eyeglasses", "Male", "Smiling", "Young"]
SHARED_DATA = Path(os.environ.get("GANLAB_DATA") or Path(__file__).resolve().parents[1].parent / "shared" / "data")


def face_images(n: int, seed: int = 0, size: tuple[int, int] = (40, 48)) -> list[Image.Image]:
    """``n`` CelebA-shaped (portrait, W x H) RGB faces."""
    faces, _ = render_faces(n, resolution=size[0], seed=seed)
    out = []
    for f in faces:
        canvas = Image.new("RGB", size, (200, 180, 160))
        canvas.paste(Image.fromarray(f.transpose(1, 2, 0)), (0, (size[1] - size[0]) // 2))
        out.append(canvas)
    return out


def celeba_table(n: int, seed: int = 0) -> tuple[list[str], np.ndarray, np.ndarray]:
    """File names ``000001.jpg``..., a +-1 attribute table and a 0/1/2 partition."""
    rng = np.random.default_rng(seed)
    names = [f"{i:06d}.jpg" for i in range(1, n + 1)]
    values = np.where(rng.random((n, len(ATTRS))) < 0.4, 1, -1)
    partition = np.repeat([0, 1, 2], [n - 2 * (n // 5), n // 5, n // 5])
    return names, values, partition


def write_attr_txt(path: Path, names, values, *, count: int | None = None) -> None:
    lines = [str(len(names) if count is None else count), " ".join(ATTRS)]
    lines += [f"{n} " + " ".join(f"{v:2d}" for v in row) for n, row in zip(names, values)]
    path.write_text("\n".join(lines) + "\n")


def write_celeba(root: Path, layout: str = "official", n: int = 15, seed: int = 0) -> dict:
    """Write a CelebA tree in the given layout; return what the loader should find."""
    names, values, partition = celeba_table(n, seed)
    base = root / "celeba" if layout == "torchvision" else root
    images = base / "img_align_celeba"
    if layout == "kaggle":
        images = images / "img_align_celeba"
    images.mkdir(parents=True)
    for name, img in zip(names, face_images(n, seed)):
        img.save(images / name, quality=95)
    if layout == "kaggle":
        rows = ["image_id," + ",".join(ATTRS)] + [f"{m}," + ",".join(map(str, r)) for m, r in zip(names, values)]
        (base / "list_attr_celeba.csv").write_text("\n".join(rows) + "\n")
        rows = ["image_id,partition"] + [f"{m},{p}" for m, p in zip(names, partition)]
        (base / "list_eval_partition.csv").write_text("\n".join(rows) + "\n")
    else:
        write_attr_txt(base / "list_attr_celeba.txt", names, values)
        (base / "list_eval_partition.txt").write_text("".join(f"{m} {p}\n" for m, p in zip(names, partition)))
        (base / "identity_CelebA.txt").write_text("".join(f"{m} {10 + i % 3}\n" for i, m in enumerate(names)))
    return {"names": names, "values": values, "partition": partition, "images": images}


def write_idx(path: Path, array: np.ndarray, gz: bool) -> None:
    header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    data = header + np.ascontiguousarray(array, dtype=np.uint8).tobytes()
    if gz:
        path = path.with_name(path.name + ".gz")
        path.write_bytes(gzip.compress(data))
    else:
        path.write_bytes(data)


def write_mnist(folder: Path, n_train: int = 30, n_test: int = 10, gz: bool = True, seed: int = 0) -> dict:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    out = {}
    for split, n in (("train", n_train), ("t10k", n_test)):
        x = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        y = (np.arange(n) % 10).astype(np.uint8)
        write_idx(folder / f"{split}-images-idx3-ubyte", x, gz)
        write_idx(folder / f"{split}-labels-idx1-ubyte", y, gz)
        out[split] = (x, y)
    return out


def solid_png(path: Path, value: int, size=(24, 20)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, (value, value, value)).save(path)


def _jpeg_bytes(img: Image.Image, **kw) -> bytes:
    import io

    b = io.BytesIO()
    img.save(b, "JPEG", **kw)
    return b.getvalue()


def write_bad_corpus(folder: Path) -> dict:
    """Good, convertible and broken files; returns the expected outcome."""
    folder.mkdir(parents=True)
    good = face_images(2, seed=3)
    good[0].save(folder / "a01_good.jpg", quality=95)
    good[1].save(folder / "a02_good.png")
    (folder / "b01_zero.jpg").write_bytes(b"")
    data = _jpeg_bytes(good[0])
    (folder / "b02_truncated.jpg").write_bytes(data[: len(data) // 2])
    (folder / "b03_text.png").write_text("this is not an image\n")
    (folder / "notes.txt").write_text("ignored: not an image extension\n")
    pal = Image.new("P", (20, 20), 0)
    pal.putpalette([255, 0, 0] + [0, 0, 255] * 255)
    pal.paste(1, (10, 0, 20, 20))  # left red, right blue
    pal.save(folder / "c01_palette.png")
    rgba = Image.new("RGBA", (20, 20), (255, 0, 0, 255))
    rgba.paste((0, 0, 0, 0), (0, 10, 20, 20))  # bottom half fully transparent
    rgba.save(folder / "c02_rgba.png")
    la = Image.new("LA", (20, 20), (0, 0))  # fully transparent black
    la.save(folder / "c03_la.png")
    Image.new("CMYK", (20, 20), (0, 255, 255, 0)).save(folder / "c04_cmyk.jpg", quality=95)
    sixteen = np.full((20, 20), 65535, dtype=np.uint16)
    sixteen[10:] = 32768
    Image.fromarray(sixteen).save(folder / "c05_sixteen.png")
    wide = Image.new("RGB", (40, 20), (255, 0, 0))
    wide.paste((0, 0, 255), (20, 0, 40, 20))  # left red, right blue
    exif = Image.Exif()
    exif[0x0112] = 6  # display = rotate 90 degrees clockwise
    wide.save(folder / "c06_exif.jpg", exif=exif, quality=95)
    return {
        "rows": ["a01_good.jpg", "a02_good.png", "c01_palette.png", "c02_rgba.png", "c03_la.png",
                 "c04_cmyk.jpg", "c05_sixteen.png", "c06_exif.jpg"],
        "skipped": {"b01_zero.jpg": "empty file", "b02_truncated.jpg": "corrupt or truncated",
                    "b03_text.png": "not an image"},
        "ignored": 1,
    }
