"""docs/variant.md, done exactly as written: its files (blocks with title="...") become a package
and a config folder in a temporary directory, its commands train, resume, evaluate and export a
GAN whose generator and loss are that package's classes (tiny sizes, a stand-in InceptionV3)."""

from __future__ import annotations

import shlex

import pytest
from omegaconf import OmegaConf

import _docs_snippets as snippets
from _metrics_helpers import StubExtractor, compose_cfg

PAGE = "variant.md"
TINY_RUN = ["data.source.num_images=96", "data.resolution=16", "data.batch_size=16", "trainer.accelerator=cpu",
            "model.generator.base_width=8", "model.discriminator.base_width=8", "model.generator.z_dim=16",
            "sample_every=2", "checkpoint_every=2", "callbacks.sample_grid.walk_path=null"]
STEP_SCALE = 300  # the page's 1,200 / 2,400 generator steps run as 4 / 8


def _page():
    files = [b for b in snippets.blocks(PAGE) if b.title]
    cmds = [c for b in snippets.blocks(PAGE) if b.lang == "bash" for c in snippets.commands(b.body)]
    code = [b.body for b in snippets.blocks(PAGE) if b.lang == "python" and not b.title]
    return files, cmds, code


def _tiny_steps(overrides: list[str]) -> list[str]:
    out = [o for o in overrides if not o.startswith("generator_steps=")]
    given = [int(o.split("=", 1)[1]) for o in overrides if o.startswith("generator_steps=")]
    return out + [f"generator_steps={(given[-1] if given else 1200) // STEP_SCALE}"]


def test_page_has_the_files_and_the_four_commands():
    files, cmds, code = _page()
    assert {f.title for f in files} >= {"mygan/nets.py", "mygan/losses.py", "myconf/model/my_gan.yaml"}
    entry = [snippets.ganlab_command(c)[0] for c in cmds if snippets.ganlab_command(c)]
    assert entry == ["ganlab.train", "ganlab.train", "ganlab.evaluate", "ganlab.generate"]
    assert code and "ganlab.load" in code[0]


def test_own_generator_and_loss_train_resume_evaluate_export(tmp_path, monkeypatch):
    from ganlab.checkpoints import CheckpointError
    from ganlab.evaluate import evaluate
    from ganlab.generate import generate
    from ganlab.train import train

    files, cmds, code = _page()
    for f in files:
        (tmp_path / f.title).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / f.title).write_text(f.body + "\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delenv("GANLAB_TRUSTED_TARGETS", raising=False)

    env, ganlab_cmds = {}, []
    for c in cmds:
        if c.startswith("export "):
            env.update(w.split("=", 1) for w in shlex.split(c)[1:])
        elif snippets.ganlab_command(c):
            ganlab_cmds.append(snippets.ganlab_command(c))
    assert env.get("GANLAB_TRUSTED_TARGETS") == "mygan"
    (_, train1), (_, train2), (_, evaluate_args), (_, generate_args) = ganlab_cmds

    # train, then resume to the doubled step count (ckpt_path=auto: the run folder's newest checkpoint)
    run = tmp_path / "runs" / "my_gan"
    for args, steps in ((train1, 4), (train2, 8)):
        overrides, _ = snippets.hydra_overrides(args, tmp_path)
        cfg = compose_cfg(tmp_path, *TINY_RUN, *_tiny_steps(overrides), tiny=False)
        assert cfg.model.generator._target_ == "mygan.nets.UpsampleGenerator"
        assert cfg.model.loss._target_ == "mygan.losses.SoftHingeLoss"
        assert cfg.model.discriminator._target_ == "mygan.nets.PatchDiscriminator"
        _, trainer = train(cfg)
        (run / ".hydra").mkdir(exist_ok=True)
        OmegaConf.save(cfg, run / ".hydra" / "config.yaml")  # what the CLI's Hydra writes into the run folder
        assert type(trainer.lightning_module.generator).__name__ == "UpsampleGenerator"
        assert type(trainer.lightning_module.loss).__name__ == "SoftHingeLoss"
        assert type(trainer.lightning_module.discriminator).__name__ == "PatchDiscriminator"
        assert trainer.lightning_module.generator_step == steps
    last = run / "checkpoints" / "last.ckpt"
    assert last.is_file()
    history = (run / "losses.csv").read_text().strip().splitlines()
    assert len(history) == 1 + 8  # header + one row per generator step: the resumed run continued at step 5

    def eval_cfg():
        overrides, _ = snippets.hydra_overrides(evaluate_args, tmp_path)
        return compose_cfg(tmp_path, *overrides, "metrics.metrics=[fid]", "metrics.n_fake=48", "memorization=false",
                           tiny=False, config_name="evaluate")

    # not trusted yet: refused with one message that names the variable
    with pytest.raises(CheckpointError, match="GANLAB_TRUSTED_TARGETS"):
        evaluate(eval_cfg(), extractor=StubExtractor())
    for k, v in env.items():
        monkeypatch.setenv(k, v.replace("$PWD", str(tmp_path)))

    result = evaluate(eval_cfg(), extractor=StubExtractor())
    assert result["values"]["fid"] > 0 and result["inputs"]["generator_step"] == 8
    assert (run / "eval" / "metrics.json").is_file()

    overrides, _ = snippets.hydra_overrides(generate_args, tmp_path)
    gen_cfg = compose_cfg(tmp_path, *overrides, tiny=False, config_name="generate")
    manifest = generate(gen_cfg)
    pngs = sorted((tmp_path / "my_fakes").glob("*.png"))
    assert len(pngs) == 100 and (tmp_path / "my_fakes" / "manifest.json").is_file()
    assert manifest

    namespace: dict = {}
    exec(compile(code[0], PAGE, "exec"), namespace)
    assert type(namespace["gan"].model.generator).__name__ == "UpsampleGenerator"
    assert type(namespace["gan"].model.discriminator).__name__ == "PatchDiscriminator"
    from PIL import Image

    assert Image.open(tmp_path / "my_gan_grid.png").size[0] > 16


def test_trusted_targets_come_from_the_environment_only(monkeypatch, tmp_path):
    from ganlab.checkpoints import CheckpointError, check_targets, foreign_targets

    cfg = {"generator": {"_target_": "mygan.nets.UpsampleGenerator"}, "loss": {"_target_": "mygan2.Loss"},
           "hub": {"_target_": "torch.hub.load"}}
    monkeypatch.delenv("GANLAB_TRUSTED_TARGETS", raising=False)
    assert sorted(foreign_targets(cfg)) == ["mygan.nets.UpsampleGenerator", "mygan2.Loss", "torch.hub.load"]
    # a prefix is a whole module path: mygan admits mygan.nets.X, not mygan2; torch's denied list still applies
    monkeypatch.setenv("GANLAB_TRUSTED_TARGETS", " mygan , torch.hub, bad;name ")
    assert sorted(foreign_targets(cfg)) == ["mygan2.Loss", "torch.hub.load"]
    with pytest.raises(CheckpointError, match="outside ganlab, torch, torchvision, mygan, torch.hub"):
        check_targets(cfg, path=tmp_path / "x.ckpt")
