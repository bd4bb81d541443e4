"""Check that every results file the READMEs cite exists in the repository.

    python experiments/check_figures.py [--root REPO]      # exit 1 and one line per missing file

Reads ``README.md``, ``docs/**/*.md`` and ``experiments/*/README.md`` (and any ``*.md`` directly in
an experiment's folder, e.g. a ``results.md`` that points at figures). A cited file is a path
written in backticks, a Markdown link or an image, ending in ``.json``, ``.md``, ``.csv``,
``.png``, ``.txt``, ``.jsonl`` or ``.npz``:

* ``experiments/...`` and ``docs/...`` paths are relative to the repository root;
* in an experiment's own Markdown, a relative path with a folder in it (``results/results.json``)
  is relative to that file's folder; in README.md and docs/ such names are a run's outputs
  (``samples/real.png``) and only link / image targets are resolved (relative to the page);
* a study's folder (``experiments/faults/``) must exist;
* glob patterns (``results/*.json``) must match at least one file;
* paths with placeholders (``$OUT``, ``<run>``, ``DIR``, ``~``) or absolute paths (``/tmp/...``) are
  outputs of a command, not files of the repository, and are skipped.

Run by ``tests/test_check_figures.py`` in the default suite.
"""

from __future__ import annotations

import argparse
import glob
import re
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
EXTENSIONS = ("json", "jsonl", "md", "csv", "png", "txt", "npz")
# a path-like token inside `backticks`, (link targets) or ![images](...)
_TOKEN = re.compile(r"`([^`\s]+)`|\]\(([^)\s]+)\)")
_PATH = re.compile(r"^[\w./*\-+]+\.(?:" + "|".join(EXTENSIONS) + r")$")
_FOLDER = re.compile(r"^experiments/[\w\-]+(?:/[\w\-]+)*/$")  # `experiments/faults/`: the study's folder
_PLACEHOLDER = re.compile(r"[$<>~{}]|\bDIR\b|\bPATH\b")


def documents(root: Path) -> list[Path]:
    """README.md, docs/**/*.md, and every experiments/<name>/*.md."""
    docs = [root / "README.md", *sorted((root / "docs").rglob("*.md"))]
    docs += sorted((root / "experiments").glob("*/*.md"))
    return [d for d in docs if d.is_file()]


def cited_paths(text: str, *, links_only: bool = False) -> list[tuple[int, str]]:
    """(line number, path) for every results-file-like path cited in ``text`` (``links_only``: only
    Markdown link and image targets, not names in backticks)."""
    found = []
    for lineno, line in enumerate(text.splitlines(), 1):
        for m in _TOKEN.finditer(line):
            token = (m.group(1) or m.group(2)).split("#", 1)[0].split("::", 1)[0].rstrip(".,;:")
            top = token.startswith(TOP)
            if links_only and m.group(1) and not top:
                continue
            if _FOLDER.match(token) or ("/" in token and _PATH.match(token) and not _PLACEHOLDER.search(token)
                                        and not token.startswith("/")):
                found.append((lineno, token))
    return found


TOP = ("experiments/", "docs/", "tests/", "ganlab/", "conf/")


def resolve(doc: Path, token: str, root: Path) -> Path | None:
    """Where ``token`` cited in ``doc`` should be, or None when it is not a repository file."""
    if token.startswith(TOP):
        return root / token
    if doc.parent.parent == root / "experiments" or doc.parent.is_relative_to(root / "docs"):
        return doc.parent / token.removeprefix("./")
    return None  # README.md: a relative name without a known top folder is an output name (e.g. csv/metrics.csv)


def citations(doc: Path, root: Path) -> list[tuple[int, str]]:
    """An experiment's Markdown cites its own files by relative names (`results/results.json`); the
    README and docs pages name a run's outputs that way (`samples/real.png`), so there only repository
    paths (`experiments/...`) and link targets count."""
    own_study = doc.parent.parent == root / "experiments"
    return cited_paths(doc.read_text(encoding="utf-8"), links_only=not own_study)


def exists(path: Path) -> bool:
    if str(path).endswith("/") or path.suffix == "":
        return path.is_dir()
    if any(c in path.name for c in "*?["):
        return bool(glob.glob(str(path)))
    return path.is_file()


def missing(root: Path = REPO) -> list[str]:
    """``doc:line: path`` for every cited results file that is not in the tree."""
    out = []
    for doc in documents(root):
        for lineno, token in citations(doc, root):
            target = resolve(doc, token, root)
            if target is not None and not exists(target):
                out.append(f"{doc.relative_to(root)}:{lineno}: {token} (no file {target.relative_to(root)})")
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--root", default=str(REPO))
    root = Path(ap.parse_args(argv).root).resolve()
    bad = missing(root)
    for line in bad:
        print(line)
    n = sum(len(citations(d, root)) for d in documents(root))
    print(f"{n} cited paths in {len(documents(root))} files, {len(bad)} missing", file=sys.stderr)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
