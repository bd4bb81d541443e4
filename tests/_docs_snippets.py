"""Reading the code on the documentation pages (docs/*.md), for the tests/test_docs_*.py files
(not a test module): fenced blocks, the commands in bash blocks, and a command turned into the
Hydra overrides it composes."""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DOCS = REPO / "docs"

FENCE = re.compile(r"^(?P<indent>[ ]*)```(?P<lang>[\w+-]*)(?P<attrs>[^\n]*)\n(?P<body>.*?)^(?P=indent)```[ ]*$",
                   re.M | re.S)
TITLE = re.compile(r'title="([^"]+)"')
ENTRY_POINTS = {"ganlab.train": "train", "ganlab.evaluate": "evaluate", "ganlab.generate": "generate",
                "ganlab.humaneval": "humaneval", "ganlab.report": None}


@dataclass
class Block:
    page: str
    lang: str
    title: str | None
    body: str


def blocks(page: str | Path | None = None) -> list[Block]:
    """Every fenced code block of one page (``docs/NAME.md``; ``../README.md`` for the README) or of all pages."""
    pages = [DOCS / page] if page else sorted(DOCS.rglob("*.md"))
    out = []
    for p in pages:
        text = Path(p).read_text()
        name = Path(p).resolve().relative_to(DOCS if Path(p).resolve().is_relative_to(DOCS) else REPO).as_posix()
        for m in FENCE.finditer(text):
            body = "\n".join(line[len(m["indent"]):] for line in m["body"].splitlines())
            title = TITLE.search(m["attrs"])
            out.append(Block(name, m["lang"], title and title[1], body))
    return out


def commands(body: str) -> list[str]:
    """The commands of a bash block: continuation lines joined, comments and blank lines dropped."""
    joined = re.sub(r"\s*\\\n\s*", " ", body)
    cmds = []
    for line in joined.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        cmds.append(_strip_comment(line))
    return cmds


def _strip_comment(line: str) -> str:
    """The line without a trailing ``# comment`` (a ``#`` after whitespace, outside quotes)."""
    quote = None
    for i, ch in enumerate(line):
        if quote:
            quote = None if ch == quote else quote
        elif ch in "'\"":
            quote = ch
        elif ch == "#" and (i == 0 or line[i - 1].isspace()):
            return line[:i].rstrip()
    return line


def ganlab_command(cmd: str) -> tuple[str, list[str]] | None:
    """``("train", [overrides])`` for ``[ENV=...] python -m ganlab.train ARGS``; None for other commands."""
    words = shlex.split(cmd)
    while words and re.match(r"^[A-Z_]+=", words[0]):
        words = words[1:]
    if len(words) < 3 or words[:2] != ["python", "-m"] or words[2] not in ENTRY_POINTS:
        return None
    return words[2], words[3:]


def hydra_overrides(args: list[str], config_root: Path | None = None) -> tuple[list[str], bool]:
    """Command-line words as compose() overrides: ``--config-dir D`` becomes ``hydra.searchpath``,
    ``hydra.run.dir=D`` becomes ``paths.output_dir=D`` (compose has no run folder); returns
    (overrides, multirun)."""
    out, multirun, it = [], False, iter(args)
    for a in it:
        if a in ("-m", "--multirun"):
            multirun = True
        elif a in ("--config-dir", "-cd"):
            d = Path(next(it))
            out.append(f"hydra.searchpath=[file://{(config_root / d) if config_root else d}]")
        elif a.startswith("hydra.run.dir="):
            out.append("paths.output_dir=" + a.split("=", 1)[1])
        else:
            out.append(a)
    return out, multirun
