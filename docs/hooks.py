"""MkDocs hook: the result images committed under experiments/ (sample grids of generated images,
FID curves, the study page) are served at the same paths in the site, so pages show the very files
the studies wrote, without copies in docs/. Only git-tracked images are taken, never a local run's."""

from __future__ import annotations

import subprocess
from pathlib import Path

from mkdocs.structure.files import File

REPO = Path(__file__).resolve().parents[1]
IMAGES = (".png", ".gif", ".jpg", ".svg")


def tracked_images() -> list[str]:
    out = subprocess.run(["git", "ls-files", "experiments"], cwd=REPO, capture_output=True, text=True, check=False)
    if out.returncode == 0 and out.stdout.strip():
        return [p for p in out.stdout.split() if p.endswith(IMAGES)]
    # not a git checkout (an sdist): every image under experiments/
    return sorted(p.relative_to(REPO).as_posix() for p in (REPO / "experiments").rglob("*") if p.suffix in IMAGES)


def on_files(files, config):
    for path in tracked_images():
        files.append(File(path, str(REPO), config["site_dir"], config["use_directory_urls"]))
    return files
