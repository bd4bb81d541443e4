"""The generated configuration reference (docs/configuration.md) and `python -m ganlab.train --help`
(conf/hydra/help/train.yaml) match conf/, and say what each experiment and group option is for."""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _generator():
    spec = importlib.util.spec_from_file_location("gen_config_reference", REPO / "docs" / "gen_config_reference.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # dataclasses look their module up there
    spec.loader.exec_module(mod)
    return mod


def test_committed_reference_and_help_are_current():
    assert _generator().main(["--check"]) == 0, "run: python docs/gen_config_reference.py"


def test_check_fails_when_a_config_header_changes(tmp_path, monkeypatch, capsys):
    gen = _generator()
    conf = tmp_path / "conf"
    shutil.copytree(REPO / "conf", conf)
    (conf / "model" / "loss" / "hinge.yaml").write_text("# @package model\n# A changed purpose.\nloss:\n  _target_: x\n")
    monkeypatch.setattr(gen, "CONF", conf)
    monkeypatch.setattr(gen, "HELP", conf / "hydra" / "help" / "train.yaml")
    assert gen.main(["--check"]) == 1
    assert "docs/configuration.md" in capsys.readouterr().err
    assert "| `model/loss=hinge` | A changed purpose. |" in gen.page()


def test_every_group_option_and_key_has_a_purpose():
    gen = _generator()
    missing = [f"{g}/{f.name}" for g, files in gen.groups().items() for f in files if not f.purpose]
    assert not missing, f"config files without a header comment: {missing}"
    train = next(c for c in gen.entry_points() if c.name == "train")
    keys = {o.key: o for o in train.options}
    assert keys["generator_steps"].value == "1200" and "Generator updates" in keys["generator_steps"].doc
    assert "GANLAB_TRUSTED_TARGETS" in keys["trust_checkpoint"].doc
    generate = next(c for c in gen.entry_points() if c.name == "generate")
    per_class = next(o for o in generate.options if o.key == "per_class")
    assert "{class name: count}" in per_class.doc  # a comment continued on the next line is kept


def test_first_sentence_skips_abbreviations():
    gen = _generator()
    assert gen.first_sentence("DCGAN (Radford et al. 2016): BCE. More.") == "DCGAN (Radford et al. 2016): BCE."
    assert gen.first_sentence("e.g. 0.5 of it. Next") == "e.g. 0.5 of it."


def test_train_help_lists_experiments_and_groups_with_purpose():
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    out = subprocess.run([sys.executable, "-m", "ganlab.train", "--help"], capture_output=True, text=True, check=False, env=env,
                         cwd=REPO, timeout=120)
    assert out.returncode == 0, out.stderr
    text = " ".join(out.stdout.split())
    gen = _generator()
    for name, files in gen.groups().items():
        if name == "hydra/help":
            continue
        for f in files:
            assert f" {f.name} " in text, f"--help misses {name}={f.name}"
            assert " ".join(f.purpose.split()[:6]) in text, f"--help misses the purpose of {name}={f.name}"
    assert "faces_cpu30 Best faces in 30 minutes of CPU" in text
    assert "${paths.data_dir}/fashion-mnist" in text  # interpolations in a purpose are printed, not resolved
    assert "docs/configuration.md" in text
