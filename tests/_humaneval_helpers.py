"""Image folders and study dbs for the humaneval tests: procedural faces only (never CelebA)."""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np
from omegaconf import OmegaConf
from PIL import Image

from ganlab.data.faces import render_faces
from ganlab.humaneval import cli


def write_faces(folder: Path, n: int, seed: int, resolution: int, fmt: str, blur: bool = False) -> Path:
    """``n`` procedural faces in ``fmt``; JPEGs carry EXIF and an ICC profile, PNGs a text chunk, so a
    test can check that none of it reaches the page."""
    from PIL import ImageFilter, PngImagePlugin

    folder.mkdir(parents=True, exist_ok=True)
    faces, _ = render_faces(n, resolution=resolution, seed=seed)
    for i, f in enumerate(faces):
        im = Image.fromarray(f.transpose(1, 2, 0))
        if blur:
            im = im.filter(ImageFilter.GaussianBlur(1.2))
        if fmt == "jpg":
            exif = Image.Exif()
            exif[0x010F] = "RealCameraMaker"  # Make
            im.save(folder / f"photo_{i:03d}.jpg", quality=90, exif=exif.tobytes(), icc_profile=b"\0" * 128)
        else:
            info = PngImagePlugin.PngInfo()
            info.add_text("Software", "ganlab.generate fake")
            im.save(folder / f"fake_{i:03d}.png", pnginfo=info)
    return folder


def make_sets(root: Path, n_real: int = 30, n_fake: int = 30, fakes: int = 1) -> dict[str, Path]:
    sets = {"real": write_faces(root / "real", n_real, seed=1, resolution=80, fmt="jpg")}
    for k in range(fakes):
        sets[f"g{k}"] = write_faces(root / f"g{k}", n_fake, seed=10 + k, resolution=64, fmt="png", blur=k == 0)
    return sets


def build(root: Path, *, fakes: int = 1, **overrides) -> Path:
    """A study db in ``root`` (sets from :func:`make_sets`); ``overrides`` are config keys."""
    sets = make_sets(root, fakes=fakes)
    db = root / "study.db"
    cfg = OmegaConf.load(cli.CONF_DIR + "/humaneval.yaml")
    cfg.merge_with({"real": str(sets["real"]), "fake": [str(sets[f"g{k}"]) for k in range(fakes)],
                    "db": str(db), "n_per_rater": 10, **overrides})
    cli.build_study(cfg)
    return db


def png_info(data: bytes) -> tuple[str, tuple[int, int], str, dict]:
    with Image.open(io.BytesIO(data)) as im:
        return im.format, im.size, im.mode, dict(im.info)


def png_chunks(data: bytes) -> list[bytes]:
    """The chunk types of a PNG file, in order."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    out, i = [], 8
    while i < len(data):
        n = int.from_bytes(data[i:i + 4], "big")
        out.append(data[i + 4:i + 8])
        i += 12 + n
    return out


def sqlite_answers(db: str | os.PathLike) -> list[tuple]:
    import sqlite3

    with sqlite3.connect(db) as c:
        return c.execute("SELECT rater_id, position, image_id, answer, rt_ms FROM answers ORDER BY rater_id, position").fetchall()


def hand_count(db: str | os.PathLike) -> dict:
    """Error rates straight from the tables with plain loops (the check on ``report``)."""
    import sqlite3

    with sqlite3.connect(db) as c:
        kind = dict(c.execute("SELECT i.id, s.kind || ':' || s.name FROM images i JOIN sets s ON s.id = i.set_id"))
        answers = c.execute("SELECT rater_id, image_id, answer FROM answers").fetchall()
    counts: dict[str, list[int]] = {}
    for _, image, answer in answers:
        k = kind[image]
        wrong = (answer == "fake") if k.startswith("real:") else (answer == "real")
        n_w = counts.setdefault(k, [0, 0])
        n_w[0] += 1
        n_w[1] += int(wrong)
    return {k: (n, w) for k, (n, w) in counts.items()}


def rng_answers(seed: int) -> np.random.Generator:
    return np.random.default_rng(seed)
