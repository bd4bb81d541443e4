"""Classifier guidance: the term is the frozen classifiers' mean cross-entropy times its weight, its gradient
reaches G and never the classifiers; in the GAN loop it trains with labels, leaves the run's random stream as
it was (weight 0 is bit-for-bit the run without it) and resumes exactly."""

import logging

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from _cgan_helpers import QUIET, TINY_DCGAN, fashion_overrides, write_fashion_like
from ganlab.models import load_gan
from ganlab.models.guidance import ClassifierGuidance
from ganlab.train import train


def _ready(guide: ClassifierGuidance, classifiers, label_kind: str) -> ClassifierGuidance:
    guide.classifiers, guide.label_kind = [c.eval().requires_grad_(False) for c in classifiers], label_kind
    return guide


def test_term_is_the_classifiers_mean_cross_entropy_and_only_g_learns_from_it():
    torch.manual_seed(0)
    a, b = nn.Linear(4, 3), nn.Linear(4, 3)
    before = [p.clone() for p in (*a.parameters(), *b.parameters())]
    fake = torch.randn(6, 4, requires_grad=True)
    y = torch.tensor([0, 1, 2, 0, 1, 2])
    term = _ready(ClassifierGuidance(weight=0.3, seeds=[3, 4]), [a, b], "class")(fake, y)
    expected = 0.3 * (F.cross_entropy(a(fake), y) + F.cross_entropy(b(fake), y)) / 2
    assert term.item() == pytest.approx(expected.item(), rel=1e-6)
    term.backward()
    assert fake.grad is not None and fake.grad.abs().sum() > 0
    assert all(p.grad is None for p in (*a.parameters(), *b.parameters()))
    assert all(torch.equal(p, q) for p, q in zip((*a.parameters(), *b.parameters()), before))
    # a step along the gradient makes the fakes more their class for the classifiers
    with torch.no_grad():
        moved = fake - 0.5 * fake.grad
    assert _ready(ClassifierGuidance(weight=0.3, seeds=[3, 4]), [a, b], "class")(moved, y) < term

    multi = torch.tensor([[1.0, 0.0, 1.0]] * 6)  # multi-hot attributes: binary cross-entropy per attribute
    term = _ready(ClassifierGuidance(weight=2.0, seeds=[1]), [a], "multi_hot")(fake.detach(), multi)
    assert term.item() == pytest.approx(2.0 * F.binary_cross_entropy_with_logits(a(fake), multi).item(), rel=1e-6)


def test_bad_settings_and_use_before_prepare_say_what_is_wrong():
    with pytest.raises(ValueError, match="weight"):
        ClassifierGuidance(weight=-1.0)
    with pytest.raises(ValueError, match="distinct"):
        ClassifierGuidance(seeds=[1, 1])
    with pytest.raises(RuntimeError, match="prepare"):
        ClassifierGuidance()(torch.zeros(2, 1, 8, 8), torch.zeros(2))
    with pytest.raises(ValueError, match="labelled training data"):
        ClassifierGuidance().prepare(None, torch.device("cpu"))


CGAN = ["model=cgan", *TINY_DCGAN, "data.resolution=16", "trainer.accelerator=cpu", "trainer.log_every_n_steps=1",
        "trainer.deterministic=true", "callbacks=[model_checkpoint]", *QUIET]
GUIDED = [*CGAN, "model/guidance=classifier", "model.guidance.steps=30", "model.guidance.weight=0.5",
          "model.guidance.seeds=[3,4]"]


def _run(make_cfg, folder, steps: int, *overrides: str):
    return train(make_cfg(folder, f"generator_steps={steps}", f"checkpoint_every={steps}", *overrides, tiny=False))


def _weights(folder):
    return load_gan(folder / "run" / "checkpoints" / "last.ckpt").state_dict()


def test_trains_with_labels_leaves_the_random_stream_and_resumes_exactly(tmp_path, make_cfg):
    data = fashion_overrides(write_fashion_like(tmp_path / "fm"))
    metrics, trainer = _run(make_cfg, tmp_path / "a", 6, *data, *GUIDED)
    module = trainer.lightning_module
    assert metrics["class/guidance"] > 0 and module.guidance.weight == 0.5 and len(module.guidance.classifiers) == 2
    # the classifiers are frozen: after training they are still the cached networks, and not in the checkpoint
    from ganlab.metrics.classifier import get_label_classifier

    cached, info = get_label_classifier(trainer.datamodule, cache_dir=str(tmp_path / "a" / "cache" / "classifier"),
                                        steps=30, seed=4)
    assert info["from_cache"]
    assert all(torch.equal(p, q) for p, q in zip(module.guidance.classifiers[1].state_dict().values(),
                                                 cached.state_dict().values()))
    a = _weights(tmp_path / "a")
    assert not any("guidance" in k for k in a)

    # resume: 3 steps, then 3 more from the checkpoint, equal the 6 steps bit for bit
    _run(make_cfg, tmp_path / "b", 3, *data, *GUIDED)
    half = tmp_path / "b" / "run" / "checkpoints" / "last.ckpt"
    _run(make_cfg, tmp_path / "b", 6, f"ckpt_path={half}", *data, *GUIDED)
    b = _weights(tmp_path / "b")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)

    # weight 0: training the classifiers moved nothing of the run; the same weights as without guidance
    _run(make_cfg, tmp_path / "zero", 6, *data, *GUIDED, "model.guidance.weight=0.0")
    _run(make_cfg, tmp_path / "none", 6, *data, *CGAN)
    zero, none = _weights(tmp_path / "zero"), _weights(tmp_path / "none")
    assert all(torch.equal(zero[k], none[k]) for k in none)
    assert not all(torch.equal(a[k], none[k]) for k in none)  # and weight 0.5 did change G


def test_needs_a_conditional_model_and_the_fidelity_panel_warns_when_it_reads_a_guide(tmp_path, make_cfg, caplog):
    with pytest.raises(Exception, match="conditional generator"):
        _run(make_cfg, tmp_path / "u", 2, "model=dcgan", *TINY_DCGAN, "+model/guidance=classifier", "data.resolution=16",
             "data.source.num_images=32", *QUIET)
    data = fashion_overrides(write_fashion_like(tmp_path / "fm"))
    with caplog.at_level(logging.WARNING, logger="ganlab.callbacks.class_fidelity"):
        _run(make_cfg, tmp_path / "w", 2, *data, *GUIDED, "callbacks=[class_fidelity]", "callbacks.class_fidelity.classifier_steps=30",
             "callbacks.class_fidelity.classifier_seeds=[0,4]", "callbacks.class_fidelity.per_class=2")
    shared = [r.getMessage() for r in caplog.records if "also guide" in r.getMessage()]
    assert len(shared) == 1 and "[4]" in shared[0]
