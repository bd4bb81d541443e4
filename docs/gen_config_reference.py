"""Write the configuration reference from ``conf/``: ``docs/configuration.md`` (every config group,
option and key with its purpose) and the ``python -m ganlab.train --help`` template
(``conf/hydra/help/train.yaml``: the experiments and groups with their one-line purpose).

    python docs/gen_config_reference.py           # rewrite both files
    python docs/gen_config_reference.py --check   # exit 1 if either is stale (tests/test_docs_config.py)

The purpose of a config file is the first sentence of its header comment; the purpose of a key is
the comment above it or at the end of its line. Hand-written on purpose: Hydra keeps no comments,
and a YAML parser that does (ruamel) would be a dependency for these few lines of reading.
"""

from __future__ import annotations

import argparse
import re
import sys
import textwrap
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CONF = REPO / "conf"
PAGE = REPO / "docs" / "configuration.md"
HELP = CONF / "hydra" / "help" / "train.yaml"
DOCS_URL = "docs/ (mkdocs serve), or the pages it builds"
ENTRY_POINTS = ("train", "evaluate", "generate", "humaneval")
NOT_SENTENCE_END = {"al", "e.g", "i.e", "vs", "etc", "cf", "approx", "no", "fig"}
KEY = re.compile(r"^(?P<indent>\s*)(?P<key>[A-Za-z_~][\w.@/-]*)\s*:(?:\s+(?P<value>[^#]*?))?\s*(?:(?P<hash>#)\s?(?P<comment>.*))?$")


@dataclass
class Option:
    key: str
    value: str
    doc: str


@dataclass
class ConfigFile:
    path: Path
    header: str
    prose: str  # the header up to its first indented example or "Usage:" line
    options: list[Option] = field(default_factory=list)

    @property
    def name(self) -> str:
        return self.path.stem

    @property
    def purpose(self) -> str:
        return first_sentence(self.prose)


def first_sentence(text: str) -> str:
    """The text up to the first full stop that ends a sentence (not "et al." or "e.g.")."""
    text = " ".join(text.split())
    for m in re.finditer(r"[.!?](?=\s|$)", text):
        word = re.findall(r"[\w.]+$", text[:m.start()])
        if word and word[0].lower().rstrip(".") in NOT_SENTENCE_END:
            continue
        if m.start() > 0 and text[m.start() - 1].isdigit() and m.end() < len(text) and text[m.end() + 1:m.end() + 2].isdigit():
            continue
        return text[:m.end()]
    return text


def read_config(path: Path) -> ConfigFile:
    """The header comment and every key (dotted, with its value and comment) of one YAML file."""
    lines = path.read_text().splitlines()
    raw, i = [], 0  # header lines, the text after "#"
    while i < len(lines) and lines[i].lstrip().startswith("#"):
        if not lines[i].lstrip().startswith("# @package"):
            raw.append(lines[i].lstrip()[1:])
        i += 1
    header = [h.strip() for h in raw]
    example = next((k for k, h in enumerate(raw) if h.strip().startswith("Usage:") or re.match(r"\s{2,}\S", h)),
                   len(raw))
    conf = ConfigFile(path, " ".join(header), " ".join(header[:example]))
    stack: list[tuple[int, str]] = []
    pending: list[str] = []
    last: tuple[Option, int] | None = None  # the previous key with an end-of-line comment, its '#' column
    in_defaults, block_indent = False, None
    for line in lines[i:]:
        stripped = line.strip()
        if block_indent is not None:  # inside a literal block (key: |): text, not keys
            if not stripped or len(line) - len(line.lstrip()) > block_indent:
                continue
            block_indent = None
        if not stripped:
            pending, last = [], None
            continue
        if stripped.startswith("#"):
            col = len(line) - len(line.lstrip())
            if last and col == last[1]:
                last[0].doc += " " + stripped[1:].strip()
            else:
                pending.append(stripped[1:].strip())
                last = None
            continue
        m = KEY.match(line)
        if not m or stripped.startswith("- "):
            pending, last = [], None
            continue
        indent = len(m["indent"])
        while stack and stack[-1][0] >= indent:
            stack.pop()
        if indent == 0:
            in_defaults = m["key"] == "defaults"
        stack.append((indent, m["key"]))
        if in_defaults:
            pending, last = [], None
            continue
        doc = " ".join(p for p in pending if not p.startswith("---")).strip(" -")
        if m["comment"] is not None:
            doc = "; ".join(d for d in (doc, m["comment"].strip()) if d)
        value = (m["value"] or "").strip()
        if value[:1] in ("|", ">"):
            block_indent = indent
        opt = Option(".".join(k for _, k in stack), value, doc)
        if value or doc:
            conf.options.append(opt)
        last = (opt, line.index("#", len(m["indent"]) + len(m["key"]))) if m["hash"] else None
        pending = []
    return conf


def groups() -> dict[str, list[ConfigFile]]:
    """``{"model/loss": [bce, hinge, ...], ...}`` for every folder of ``conf/`` that holds YAML files."""
    out: dict[str, list[ConfigFile]] = {}
    for d in sorted(p for p in CONF.rglob("*") if p.is_dir() and p.relative_to(CONF).parts[0] != "local"):
        # conf/local/ holds git-ignored, machine-specific files: not part of the reference
        files = sorted(d.glob("*.yaml"))
        if files:
            out[d.relative_to(CONF).as_posix()] = [read_config(f) for f in files]
    return out


def entry_points() -> list[ConfigFile]:
    return [read_config(CONF / f"{n}.yaml") for n in ENTRY_POINTS if (CONF / f"{n}.yaml").is_file()]


def _cell(text: str) -> str:
    """Text from a YAML comment as literal Markdown (no links, emphasis or HTML); `code spans` kept."""
    parts = re.split(r"(`[^`]*`)", text)
    for i in range(0, len(parts), 2):  # outside the code spans
        for ch in "\\[]*|":
            parts[i] = parts[i].replace(ch, "\\" + ch)
        parts[i] = parts[i].replace("<", "&lt;").replace(">", "&gt;")
    return "".join(parts)


def _code(text: str) -> str:
    return f"`{text}`" if text else ""


def _options_table(conf: ConfigFile) -> list[str]:
    if not conf.options:
        return []
    rows = ["| key | default | what it is |", "| --- | --- | --- |"]
    rows += [f"| `{o.key}` | {_code(o.value)} | {_cell(o.doc)} |" for o in conf.options]
    return rows + [""]


def page() -> str:
    out = [
        "# Configuration reference",
        "",
        ("<!-- GENERATED by docs/gen_config_reference.py from conf/: do not edit by hand; "
         "tests/test_docs_config.py fails when this page is stale. -->"),
        "",
        "*Which config groups and options exist, and what is each for?*",
        "",
        ("Every option below is a YAML file under `conf/` (shipped in the wheel as `ganlab/conf`); pick one "
         "on the command line with `GROUP=OPTION` (e.g. `model/loss=hinge`), change one key with "
         "`KEY=VALUE` (e.g. `model.g_optimizer.lr=1e-4`). The purpose of each file is the first sentence "
         "of its header comment, the purpose of each key its comment in the file. Composing and overriding "
         "are explained in [Training](training.md)."),
        "",
        "## Entry points",
        "",
    ]
    for conf in entry_points():
        out += [f"### `{conf.name}.yaml`", "", _cell(conf.header), "", *_options_table(conf)]
    out += ["## Config groups", "", "| group | options |", "| --- | --- |"]
    all_groups = groups()
    for name, files in all_groups.items():
        anchor = "group-" + name.replace("/", "-")
        out.append(f"| [`{name}`](#{anchor}) | {', '.join(f.name for f in files)} |")
    out.append("")
    for name, files in all_groups.items():
        anchor = "group-" + name.replace("/", "-")
        out += [f"### `{name}` {{#{anchor}}}", "", "| option | purpose |", "| --- | --- |"]
        out += [f"| `{name}={f.name}` | {_cell(f.purpose)} |" for f in files]
        out.append("")
        for f in files:
            table = _options_table(f)
            if table:
                out += [f"#### `{name}/{f.name}.yaml`", "", _cell(f.header), "", *table]
    return "\n".join(out).rstrip() + "\n"


def _yaml_block(text: str, indent: int = 2) -> str:
    return "\n".join((" " * indent + line) if line else "" for line in text.splitlines())


def _wrapped(first: str, text: str, width: int = 110) -> list[str]:
    return textwrap.wrap(text, width, initial_indent=first, subsequent_indent=" " * len(first)) or [first.rstrip()]


def help_template() -> str:
    all_groups = groups()
    lines = ["ganlab.train: train a GAN (Lightning + Hydra). Usage:", "",
             "  python -m ganlab.train [experiment=NAME] [GROUP=OPTION ...] [KEY=VALUE ...]",
             "", "With no experiment it trains the built-in demo (DCGAN on the embedded procedural faces).", "",
             "Experiments (experiment=NAME):"]
    width = max(len(f.name) for fs in all_groups.values() for f in fs) + 2
    for f in all_groups.get("experiment", []):
        lines += _wrapped(f"  {f.name:<{width}}", f.purpose)
    lines += ["", "Config groups (GROUP=OPTION):"]
    for name, files in all_groups.items():
        if name in ("experiment", "hydra/help"):
            continue
        lines.append(f"  {name}")
        for f in files:
            lines += _wrapped(f"    {f.name:<{width - 2}}", f.purpose)
    lines += ["", "Examples:",
              "  python -m ganlab.train experiment=faces_cpu30 data.root=/path/to/faces",
              "  python -m ganlab.train model/loss=hinge model/augment=diffaug generator_steps=5000",
              "  python -m ganlab.train ckpt_path=auto hydra.run.dir=runs/mine      # resume",
              "  python -m ganlab.train experiment=dcgan_celeba --cfg job          # print the composed config",
              "", "Every option and key with its purpose: docs/configuration.md (the documentation site, built",
              "with `mkdocs build`; its source is docs/ in the repository). Hydra's own flags: --hydra-help."]
    # Hydra's template is an OmegaConf string (${...} interpolates; \${ escapes) read by string.Template
    # ($NAME expands; $$ is one $): "${x}" must come out as "$" + "\${x}", any other "$" as "$$"
    body = re.sub(r"\$(?!\{)", "$$$$", "\n".join(lines)).replace("${", "$\\${")
    return ("# `python -m ganlab.train --help`. GENERATED by docs/gen_config_reference.py from the header comments\n"
            "# of conf/ (do not edit by hand; tests/test_docs_config.py fails when it is stale).\n"
            "app_name: ganlab.train\n"
            "header: ''\n"
            "footer: ''\n"
            "template: |-\n" + _yaml_block(body) + "\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if a generated file is stale")
    args = parser.parse_args(argv)
    stale = []
    for path, text in ((PAGE, page()), (HELP, help_template())):
        if args.check:
            if not path.is_file() or path.read_text() != text:
                stale.append(path.relative_to(REPO).as_posix() if path.is_relative_to(REPO) else str(path))
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
    if stale:
        print(f"stale: {', '.join(stale)}; run: python docs/gen_config_reference.py", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
