"""On-disk layouts: detection from a root, file listing, and the tables that carry labels.

Nothing here decodes an image; everything here is cheap enough to run on every ``prepare``.
"""

from __future__ import annotations

import csv
import os
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ganlab.data.errors import layout_error
from ganlab.data.idx import IDX_NAMES
from ganlab.utils.files import IMAGE_EXTENSIONS, is_image_name  # noqa: F401  (IMAGE_EXTENSIONS re-exported)

__all__ = [
    "IMAGE_EXTENSIONS",
    "CELEBA_LAYOUTS",
    "FileEntry",
    "CelebAFiles",
    "AttributeTable",
    "natural_key",
    "natural_sorted",
    "list_images",
    "detect",
    "celeba_files",
    "find_idx",
    "read_attributes",
    "read_name_table",
    "check_same_images",
]

CELEBA_LAYOUTS = ("official", "kaggle", "torchvision")
IDX_DIRS = ("", "FashionMNIST/raw", "MNIST/raw", "raw")

_DIGITS = re.compile(r"(\d+)")


# -- natural order ----------------------------------------------------------------------
def _name_key(name: str) -> tuple:
    parts = _DIGITS.split(name)
    return tuple(int(p) if i % 2 else p.casefold() for i, p in enumerate(parts)), name


def natural_key(rel: str) -> tuple:
    """Sort key: per path component, digit runs compare as numbers (``img2`` < ``img10``)."""
    return tuple(_name_key(c) for c in rel.split("/"))


def natural_sorted(items) -> list[str]:
    return sorted(items, key=natural_key)


# -- listing ------------------------------------------------------------------------------
@dataclass(frozen=True)
class FileEntry:
    rel: str  # path relative to the listing's base folder, "/"-separated
    size: int
    mtime_ns: int

    def signature(self) -> list:
        return [self.rel, self.size, self.mtime_ns]


def list_images(base: Path, recursive: bool, missing: list[str] | None = None) -> tuple[list[FileEntry], int]:
    """Image files under ``base`` in natural order, and how many other files were ignored.

    Hidden files and folders (leading ``.``) are ignored; symlinked files are followed. Dangling
    symlinks and files that vanish while listing are skipped and appended to ``missing``.
    """
    found: list[FileEntry] = []
    ignored = 0
    stack = [""]
    while stack:
        sub = stack.pop()
        with os.scandir(base / sub if sub else base) as it:
            for e in it:
                if e.name.startswith("."):
                    continue
                rel = f"{sub}/{e.name}" if sub else e.name
                if e.is_dir():
                    if recursive:
                        stack.append(rel)
                elif is_image_name(e.name):
                    try:
                        st = e.stat()
                    except OSError:  # a dangling symlink, or deleted since the listing
                        if missing is not None:
                            missing.append(rel)
                        continue
                    found.append(FileEntry(rel, st.st_size, st.st_mtime_ns))
                else:
                    ignored += 1
    found.sort(key=lambda f: natural_key(f.rel))
    return found, ignored


def _has_images(base: Path) -> bool:
    for _dirpath, dirnames, filenames in os.walk(base):
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]
        if any(is_image_name(f) and not f.startswith(".") for f in filenames):
            return True
    return False


# -- CelebA -------------------------------------------------------------------------------
@dataclass(frozen=True)
class CelebAFiles:
    layout: str
    base: Path  # the folder holding the annotation files
    images: Path  # the folder holding the JPEGs
    attributes: Path
    partition: Path | None
    identity: Path | None

    def metadata(self) -> list[Path]:
        return [p for p in (self.attributes, self.partition, self.identity) if p is not None]


def _celeba_candidate(root: Path, layout: str) -> CelebAFiles:
    if layout == "kaggle":
        base, images, ext = root, root / "img_align_celeba" / "img_align_celeba", ".csv"
    else:
        base = root / "celeba" if layout == "torchvision" else root
        images, ext = base / "img_align_celeba", ".txt"
    part = base / f"list_eval_partition{ext}"
    ident = base / "identity_CelebA.txt"
    return CelebAFiles(
        layout, base, images, base / f"list_attr_celeba{ext}",
        part if part.is_file() else None, ident if ident.is_file() else None,
    )


def _celeba_complete(c: CelebAFiles) -> bool:
    return c.images.is_dir() and c.attributes.is_file()


def celeba_files(root: Path, layout: str = "auto") -> CelebAFiles:
    """Locate CelebA's image folder and annotation files under ``root`` for ``layout``."""
    if layout not in ("auto", *CELEBA_LAYOUTS):
        raise ValueError(f"CelebA layout must be 'auto' or one of {CELEBA_LAYOUTS}, got {layout!r}")
    _require_dir(root, celeba=True)
    for name in CELEBA_LAYOUTS if layout == "auto" else (layout,):
        c = _celeba_candidate(root, name)
        if _celeba_complete(c):
            return c
    if not any(not p.name.startswith(".") for p in root.iterdir()):
        raise layout_error("data root is an empty folder", root, celeba=True)
    what = "no CelebA files found" if layout == "auto" else f"no CelebA {layout} layout found"
    raise layout_error(what + " (need the image folder and list_attr_celeba)", root, celeba=True)


def _require_dir(root: Path | None, *, celeba: bool) -> None:
    if root is None:
        raise layout_error("no data root given", None, celeba=celeba)
    if not root.exists():
        raise layout_error("data root does not exist", root, celeba=celeba)
    if not root.is_dir():
        raise layout_error("data root is not a folder", root, celeba=celeba)


# -- IDX ------------------------------------------------------------------------------------
def _idx_file(folder: Path, stem: str) -> Path | None:
    for name in (stem, stem + ".gz"):
        if (folder / name).is_file():
            return folder / name
    return None


def find_idx(root: Path) -> dict[str, tuple[Path, Path]] | None:
    """``{"train": (images, labels), "test": (...)}`` for the first folder holding a train pair."""
    for sub in IDX_DIRS:
        folder = root / sub if sub else root
        pairs = {}
        for split, (img_stem, lab_stem) in IDX_NAMES.items():
            img, lab = _idx_file(folder, img_stem), _idx_file(folder, lab_stem)
            if img is not None and lab is not None:
                pairs[split] = (img, lab)
        if "train" in pairs:
            return pairs
    return None


# -- detection -------------------------------------------------------------------------------
def detect(root: Path | None) -> tuple[str, str | None]:
    """``(source, layout)`` for a root: mnist_idx, celeba (official/kaggle/torchvision), folder."""
    _require_dir(root, celeba=True)
    if find_idx(root) is not None:
        return "mnist_idx", None
    for name in CELEBA_LAYOUTS:
        if _celeba_complete(_celeba_candidate(root, name)):
            return "celeba", name
    if _has_images(root):
        return "folder", None
    if not any(not p.name.startswith(".") for p in root.iterdir()):
        raise layout_error("data root is an empty folder", root, celeba=True)
    raise layout_error("unrecognised data layout (no images found)", root, celeba=True)


# -- annotation tables ------------------------------------------------------------------------
@dataclass
class AttributeTable:
    path: Path
    names: list[str]  # attribute names, file order
    rows: list[str]  # image file names, file order
    values: np.ndarray  # int8 (len(rows), len(names)), 1 / 0
    index: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.index = {r: i for i, r in enumerate(self.rows)}


def _malformed(path: Path, line: int, what: str):
    return layout_error(f"malformed annotation file, line {line}: {what}", path, celeba=True)


def _read_lines(path: Path) -> list[str]:
    with open(path, encoding="utf-8-sig", newline=None) as f:
        return [ln.strip() for ln in f.read().splitlines()]


def _parse_values(path: Path, line: int, tokens: list[str], n: int) -> list[int]:
    if len(tokens) != n:
        raise _malformed(path, line, f"expected {n} values, found {len(tokens)}")
    try:
        return [1 if int(t) > 0 else 0 for t in tokens]
    except ValueError:
        raise _malformed(path, line, f"values must be 1/-1 (or 1/0), got {' '.join(tokens)[:80]!r}") from None


_SENTINEL = 99  # closes every row in the fast parse; not a valid attribute value


def _values(path: Path, rests: list[str], k: int, first_line: int) -> np.ndarray:
    """0/1 int8 ``(rows, k)`` from each row's whitespace-separated values.

    Fast path: one ``np.fromstring`` over all rows, each closed by a sentinel that proves it
    had exactly ``k`` values. Any anomaly falls back to a row-by-row parse naming the line.
    """
    n = len(rests)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # fromstring warns when it stops early; we check sizes
        flat = np.fromstring(f" {_SENTINEL} ".join(rests) + f" {_SENTINEL}", dtype=np.int64, sep=" ")
    if flat.size == n * (k + 1):
        table = flat.reshape(n, k + 1)
        values = table[:, :k]
        if (table[:, k] == _SENTINEL).all() and ((values >= -1) & (values <= 1)).all():
            return (values > 0).astype(np.int8)
    vals = [_parse_values(path, first_line + i, r.split(), k) for i, r in enumerate(rests)]
    return np.asarray(vals, dtype=np.int8).reshape(n, k)


def _attributes_txt(path: Path) -> AttributeTable:
    lines = _read_lines(path)
    if len(lines) < 2:
        raise _malformed(path, 1, "expected a count line and a line of attribute names")
    try:
        count = int(lines[0])
    except ValueError:
        raise _malformed(path, 1, f"expected the number of images, got {lines[0][:40]!r}") from None
    names = lines[1].split()
    body = [(ln, text.split(None, 1)) for ln, text in enumerate(lines[2:], start=3) if text]
    if any(len(parts) != 2 for _ln, parts in body) and names:
        ln = next(ln for ln, parts in body if len(parts) != 2)
        raise _malformed(path, ln, f"expected {len(names)} values, found 0")
    if count != len(body):
        raise _malformed(path, 1, f"header says {count} images, the file has {len(body)} rows")
    rows = [parts[0] for _ln, parts in body]
    values = _values(path, [parts[1] for _ln, parts in body], len(names), 3)
    return AttributeTable(path, names, rows, values)


def _attributes_csv(path: Path) -> AttributeTable:
    with open(path, encoding="utf-8-sig", newline="") as f:
        table = [r for r in csv.reader(f) if r]
    if not table or table[0][0].strip() != "image_id":
        raise _malformed(path, 1, "expected a header starting with image_id")
    names = [n.strip() for n in table[0][1:]]
    rows = [r[0].strip() for r in table[1:]]
    values = _values(path, [" ".join(r[1:]) for r in table[1:]], len(names), 2)
    return AttributeTable(path, names, rows, values)


def read_attributes(path: Path) -> AttributeTable:
    """Parse ``list_attr_celeba.txt`` (official) or ``list_attr_celeba.csv`` (Kaggle)."""
    return _attributes_csv(path) if path.suffix.lower() == ".csv" else _attributes_txt(path)


def read_name_table(path: Path) -> dict[str, int]:
    """``name -> int`` from a two-column file (partition, identity): txt or Kaggle csv."""
    out: dict[str, int] = {}
    if path.suffix.lower() == ".csv":
        with open(path, encoding="utf-8-sig", newline="") as f:
            rows = [r for r in csv.reader(f) if r][1:]
        start = 2
    else:
        rows = [ln.split() for ln in _read_lines(path) if ln]
        start = 1
    for ln, r in enumerate(rows, start=start):
        if len(r) != 2:
            raise _malformed(path, ln, f"expected 'name value', got {' '.join(r)[:80]!r}")
        try:
            out[r[0].strip()] = int(r[1])
        except ValueError:
            raise _malformed(path, ln, f"expected an integer, got {r[1][:40]!r}") from None
    return out


def check_same_images(table_path: Path, table_names, images_dir: Path, image_names) -> None:
    """Raise one DataLayoutError when an annotation table and the image folder disagree."""
    rows, files = set(table_names), set(image_names)
    if rows == files:
        return
    no_image = natural_sorted(rows - files)
    no_row = natural_sorted(files - rows)
    parts = [f"{table_path.name} does not match the images in {images_dir}"]
    if no_image:
        parts.append(f"{len(no_image)} row(s) without an image (e.g. {', '.join(no_image[:3])})")
    if no_row:
        parts.append(f"{len(no_row)} image(s) without a row (e.g. {', '.join(no_row[:3])})")
    raise layout_error("; ".join(parts), table_path, celeba=True)
