"""Every command and every piece of Python on the documentation pages (docs/*.md) is exercised:

* ``python -m ganlab.{train,evaluate,generate,humaneval}`` lines compose (and resolve) with Hydra,
  exactly as written (a multirun's first combination); ``ganlab.report`` and the ``experiments/``
  scripts exist and take the flags the page gives; ``pip install`` extras exist in pyproject.toml;
* Python blocks run, page by page, in a folder holding a tiny trained run at the path the pages
  use, with a stand-in InceptionV3 and the procedural faces shrunk (sizes only; the calls are the
  page's);
* docs/variant.md runs for real in tests/test_docs_variant.py, docs/api.md's block in
  tests/test_sampling.py (it needs a class-conditional run).

A command this file does not know how to check fails the test: add a check, do not skip it.
"""

from __future__ import annotations

import itertools
import math
import re
import shlex
import tomllib

import numpy as np
import pytest
from omegaconf import OmegaConf

import _docs_snippets as snippets
from _metrics_helpers import StubExtractor, compose_cfg

REPO = snippets.REPO
RUN = "logs/train/runs/2026-01-01_12-00-00"  # the run folder the pages' examples name
OWN_TEST = {"variant.md": "tests/test_docs_variant.py"}
SLURM_CLIENTS = ("scancel", "scontrol", "squeue", "sinfo", "sacct")
PYTHON_ELSEWHERE = {("api.md", 0): ("tests/test_sampling.py", "def test_api_reference_snippet_runs")}
TINY_RUN = ["data.source.num_images=96", "data.resolution=16", "data.batch_size=16", "trainer.accelerator=cpu",
            "model.generator.base_width=8", "model.discriminator.base_width=8", "model.generator.z_dim=16",
            "generator_steps=4", "sample_every=2", "checkpoint_every=2"]


def _pages() -> list[str]:
    return sorted({b.page for b in snippets.blocks()} - set(OWN_TEST))


def _bash_commands(page: str) -> list[str]:
    cmds = []
    for b in snippets.blocks(page):
        if b.lang in ("bash", "sh", "shell"):
            for c in snippets.commands(b.body):
                cmds += [part.strip() for part in c.split(" && ")]
    return cmds


# -- one check per kind of command ------------------------------------------------------------------
def _extras() -> set[str]:
    return set(tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"])


def _first_of_sweeps(overrides: list[str]) -> list[str]:
    """A multirun's first job: ``key=a,b`` -> ``key=a`` (lists and quoted values untouched)."""
    out = []
    for o in overrides:
        key, _, value = o.partition("=")
        if value and "," in value and not value.startswith(("[", "{", "'", '"')) and "(" not in value:
            value = value.split(",")[0]
        out.append(f"{key}={value}" if _ else o)
    return out


def _compose(entry: str, args: list[str], tmp_path) -> None:
    config = {"ganlab.train": "train", "ganlab.evaluate": "evaluate", "ganlab.generate": "generate",
              "ganlab.humaneval": "humaneval"}[entry]
    args = [a for a in args if a not in ("--cfg", "job", "--help")]
    if entry == "ganlab.humaneval":
        from ganlab.humaneval.cli import rewrite_argv

        args = rewrite_argv(args)
    overrides, multirun = snippets.hydra_overrides(args, tmp_path)
    if multirun:
        overrides = _first_of_sweeps(overrides)
    cfg = compose_cfg(tmp_path, *overrides, tiny=False, config_name=config)
    OmegaConf.to_container(cfg, resolve=True)  # every interpolation resolves


def _check_script(words: list[str]) -> None:
    path = REPO / words[1]
    assert path.is_file(), f"{words[1]} does not exist"
    source = path.read_text()
    for flag in (w.split("=")[0] for w in words[2:] if w.startswith("--")):
        assert f'"{flag}"' in source or f"'{flag}'" in source, f"{words[1]} takes no {flag}"


def check_command(cmd: str, tmp_path) -> str:
    """Check one shell command; returns what was checked (for the failure message of the caller)."""
    entry = snippets.ganlab_command(cmd)
    if entry and entry[0] == "ganlab.report":
        _check_script(["python", "ganlab/report.py", *entry[1]])
        return "report flags"
    if entry:
        _compose(*entry, tmp_path)
        return "composed"
    words = shlex.split(cmd)
    while words and re.match(r"^[A-Z_]+=", words[0]):
        words = words[1:]
    if not words or words[0] in ("export", "cd", "."):
        return "shell"
    if words[:2] == ["pip", "install"]:
        for w in words[2:]:
            m = re.fullmatch(r"\.(?:\[([\w,-]+)\])?", w)
            if m and m[1]:
                assert set(m[1].split(",")) <= _extras(), f"unknown extra in {w}"
            elif not (m or w == "-e" or re.fullmatch(r"[\w.-]+==[\w.]+", w)):
                raise AssertionError(f"pip install {w}: not the checkout or a pinned package")
        return "pip"
    if words[:3] == ["python3", "-m", "venv"]:
        return "venv"
    if words[0] == "python" and words[1:2] and words[1].endswith(".py"):
        _check_script(words)
        return "script"
    if words[0] in SLURM_CLIENTS:  # talk to a running cluster: run for real by tests/test_cluster.py
        return "slurm"
    if words[0] in ("bash", "sbatch"):
        assert (REPO / words[1]).is_file(), f"{words[1]} does not exist"
        return "script"
    if words[0] == "mkdocs":
        assert words[1] in ("build", "serve") and (REPO / "mkdocs.yml").is_file()
        return "mkdocs"
    if words[0] == "pytest":
        for w in words[1:]:
            if not w.startswith("-") and w.split("::")[0].endswith(".py"):
                assert (REPO / w.split("::")[0]).is_file(), w
        return "pytest"
    raise AssertionError(f"no check for this command; add one to tests/test_docs_snippets.py: {cmd}")


@pytest.mark.parametrize("page", _pages())
def test_every_command_on_the_page_is_checked(page, tmp_path):
    cmds = _bash_commands(page)
    for cmd in cmds:
        try:
            check_command(cmd, tmp_path)
        except Exception as err:  # name the page and the command
            raise AssertionError(f"docs/{page}: {cmd}\n  -> {type(err).__name__}: {err}") from err


def test_readme_commands_are_checked(tmp_path):
    cmds = _bash_commands("../README.md")
    assert any("pytest" in c for c in cmds) and any(c == "python -m ganlab.train" for c in cmds)
    for cmd in cmds:
        check_command(cmd, tmp_path)


def test_the_checks_can_fail(tmp_path):
    with pytest.raises(Exception, match="Could not|not found|Could not override|Key"):
        check_command("python -m ganlab.train model/loss=no_such_loss", tmp_path)
    with pytest.raises(AssertionError, match="unknown extra"):
        check_command('pip install -e ".[nonexistent]"', tmp_path)
    with pytest.raises(AssertionError, match="takes no --frobnicate"):
        check_command("python experiments/faults/run_faults.py --frobnicate 3", tmp_path)
    with pytest.raises(AssertionError, match="no check"):
        check_command("rm -rf /", tmp_path)
    assert check_command("python -m ganlab.train -m model.g_optimizer.lr=1e-4,2e-4 data.batch_size=32,64",
                         tmp_path) == "composed"


def test_python_elsewhere_is_really_tested_elsewhere():
    for (page, index), (test_file, test_name) in PYTHON_ELSEWHERE.items():
        blocks = [b for b in snippets.blocks(page) if b.lang == "python"]
        assert len(blocks) > index, f"docs/{page} has no Python block {index}"
        source = (REPO / test_file).read_text()
        assert test_name in source and f"docs/{page}" in source.replace('"docs" / "api.md"', "docs/api.md")
    for page, test_file in OWN_TEST.items():
        assert (REPO / test_file).is_file() and f'"{page}"' in (REPO / test_file).read_text()


# -- the Python blocks ------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def sandbox(tmp_path_factory):
    """A folder with a tiny trained run at RUN (and its .hydra/config.yaml, as the CLI writes it) and a
    folder my_fakes/ of 32 px images."""
    from PIL import Image

    from ganlab.train import train

    root = tmp_path_factory.mktemp("docs_sandbox")
    run = root / RUN
    cfg = compose_cfg(root, *TINY_RUN, f"paths.output_dir={run}", tiny=False)
    train(cfg)
    (run / ".hydra").mkdir(parents=True, exist_ok=True)
    OmegaConf.save(cfg, run / ".hydra" / "config.yaml")
    fakes = root / "my_fakes"
    fakes.mkdir()
    rng = np.random.default_rng(0)
    for i in range(40):
        Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(fakes / f"{i}.png")
    return root


class TinyFaces:
    """Stands in for ganlab.data.faces.source.Faces with 96 images instead of 20,000."""

    def __new__(cls, *args, **kwargs):
        from ganlab.data.faces import source

        kwargs.setdefault("num_images", 96)
        return source._OriginalFaces(*args, **kwargs)


def _python_pages() -> list[str]:
    pages = []
    for page in _pages():
        blocks = [i for i, b in enumerate(b for b in snippets.blocks(page) if b.lang == "python")]
        if [i for i in blocks if (page, i) not in PYTHON_ELSEWHERE]:
            pages.append(page)
    return pages


EXPECT = {  # what each page's Python leaves behind, checked after it ran
    "getting-started.md": lambda ns, cwd: (cwd / "grid.png").is_file() and tuple(ns["x"].shape[:1]) == (16,),
    "metrics.md": lambda ns, cwd: math.isfinite(ns["res"]["values"]["fid"]) and ns["res"]["protocol"]["metrics"] == ["fid"],
}


@pytest.mark.parametrize("page", _python_pages())
def test_python_on_the_page_runs(page, sandbox, monkeypatch):
    from ganlab.data.faces import source
    from ganlab.metrics import inception

    monkeypatch.chdir(sandbox)
    monkeypatch.setattr(inception, "get_inception_extractor", lambda *a, **k: StubExtractor())
    monkeypatch.setattr(source, "_OriginalFaces", source.Faces, raising=False)
    monkeypatch.setattr(source, "Faces", TinyFaces)
    namespace: dict = {}
    code = [b for b in snippets.blocks(page) if b.lang == "python"]
    for i, block in enumerate(code):
        if (page, i) in PYTHON_ELSEWHERE:
            continue
        exec(compile(block.body, f"docs/{page} (python block {i})", "exec"), namespace)
    assert page in EXPECT, f"say in EXPECT what docs/{page}'s Python must leave behind"
    assert EXPECT[page](namespace, sandbox)


def test_pages_python_names_one_run_folder():
    """The run folder the pages' Python uses is the one the sandbox trains (else a snippet would not run)."""
    used = set()
    for page in _pages():
        for b in snippets.blocks(page):
            if b.lang == "python":
                used.update(re.findall(r"logs/train/runs/[\w-]+", b.body))
    assert used == {RUN}, used


def test_commands_are_split_like_a_shell():
    assert snippets.commands("a \\\n  b  # note\n\n# only a comment\nc 'x # y'\n") == ["a b", "c 'x # y'"]
    assert list(itertools.chain(*[c.split(" && ") for c in snippets.commands("p && q")])) == ["p", "q"]
