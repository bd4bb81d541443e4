"""experiments/benchmark: the paper's networks have the paper's shapes and parameter counts (counted
here by hand from Lucic et al. 2018's architecture table), the recipes have the paper's budget, and
the runner resumes a killed study without redoing finished jobs."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir

from ganlab.models.networks.infogan import InfoGANDiscriminator, InfoGANGenerator
from ganlab.models.networks.latent import Latent

REPO = Path(__file__).resolve().parents[1]


def n_params(m: torch.nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


# -- the paper's networks ----------------------------------------------------------------------------------
def test_infogan_discriminator_layers_and_parameters():
    d = InfoGANDiscriminator(resolution=28, channels=1)
    conv1 = 1 * 64 * 4 * 4 + 64                 # conv 4x4/2 -> 64 (+ bias), lReLU
    conv2 = 64 * 128 * 4 * 4 + 128 + 2 * 128    # conv 4x4/2 -> 128, BN (scale, shift)
    fc = 128 * 7 * 7 * 1024 + 1024 + 2 * 1024   # FC 1024, BN
    out = 1024 + 1                              # FC 1
    assert n_params(d) == conv1 + conv2 + fc + out == 6_559_169
    shapes = []
    hooks = [m.register_forward_hook(lambda m, i, o: shapes.append(tuple(o.shape)))
             for m in d.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))]
    logits = d(torch.rand(5, 1, 28, 28) * 2 - 1)
    for h in hooks:
        h.remove()
    assert shapes == [(5, 64, 14, 14), (5, 128, 7, 7), (5, 1024), (5, 1)]
    assert logits.shape == (5,)
    acts = [type(m).__name__ for m in d.features]
    assert acts == ["Conv2d", "LeakyReLU", "Conv2d", "BatchNorm2d", "LeakyReLU", "Flatten", "Linear", "BatchNorm1d",
                    "LeakyReLU"]
    assert all(m.negative_slope == 0.2 for m in d.features if isinstance(m, torch.nn.LeakyReLU))
    # WGAN-GP: no batch norm in the critic (compare_gan), so 2 * (128 + 1024) fewer parameters
    assert n_params(InfoGANDiscriminator(norm="none")) == 6_559_169 - 2 * (128 + 1024)


def test_infogan_generator_layers_parameters_and_range():
    g = InfoGANGenerator(z_dim=64, resolution=28, channels=1)
    fc1 = 64 * 1024 + 1024 + 2 * 1024                  # FC 1024, BN, ReLU
    fc2 = 1024 * 7 * 7 * 128 + 7 * 7 * 128 + 2 * 7 * 7 * 128  # FC 7*7*128, BN, ReLU
    up1 = 128 * 64 * 4 * 4 + 64 + 2 * 64               # deconv 4x4/2 -> 64, BN, ReLU
    up2 = 64 * 1 * 4 * 4 + 1                           # deconv 4x4/2 -> 1, sigmoid
    assert n_params(g) == fc1 + fc2 + up1 + up2 == 6_642_241
    shapes = []
    hooks = [m.register_forward_hook(lambda m, i, o: shapes.append(tuple(o.shape)))
             for m in g.modules() if isinstance(m, (torch.nn.ConvTranspose2d, torch.nn.Linear))]
    x = g(torch.randn(6, 64) * 4)
    for h in hooks:
        h.remove()
    assert shapes == [(6, 1024), (6, 6272), (6, 64, 14, 14), (6, 1, 28, 28)]
    assert x.shape == (6, 1, 28, 28) and x.min() > -1 and x.max() < 1
    # the output is the paper's sigmoid rescaled to [-1, 1]
    g.eval()
    logits = g.deconv(g.fc(g.latent(torch.zeros(2, 64))).view(2, 128, 7, 7))
    assert torch.allclose(g(torch.zeros(2, 64)), 2 * torch.sigmoid(logits) - 1, atol=1e-6)


def test_uniform_latent_is_the_normal_cdf_of_ganlab_noise():
    p = torch.linspace(0.001, 0.999, 999, dtype=torch.float64)
    z = torch.special.ndtri(p)  # the normal quantiles
    assert torch.allclose(Latent("uniform")(z), 2 * p - 1, atol=1e-9)  # u = 2 Phi(z) - 1: U(-1, 1)
    u = Latent("uniform")(torch.randn(200_000, generator=torch.Generator().manual_seed(0)))
    assert u.abs().max() < 1 and abs(float(u.mean())) < 0.01 and abs(float(u.var()) - 1 / 3) < 0.005
    z = torch.randn(7, 5)
    assert torch.equal(Latent("normal")(z), z)  # the default leaves ganlab's noise as it is
    with pytest.raises(ValueError, match="latent must be one of"):
        Latent("laplace")


def compose_experiment(name: str, *extra: str):
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        return compose("train", overrides=[f"experiment={name}", *extra])


@pytest.mark.parametrize("name,loss,n_critic,g_steps,d_norm", [
    ("lucic_fashion_ns", "NonSaturatingLoss", 1, 15625, "batch"),
    ("lucic_fashion_lsgan", "LeastSquaresLoss", 1, 15625, "batch"),
    ("lucic_fashion_wgan_gp", "WassersteinLoss", 5, 3125, "none"),
])
def test_paper_rows_use_the_paper_networks_and_budget(name, loss, n_critic, g_steps, d_norm):
    cfg = compose_experiment(name)
    m = cfg.model
    assert m.generator._target_.endswith("InfoGANGenerator") and m.discriminator._target_.endswith("InfoGANDiscriminator")
    assert (m.generator.z_dim, m.generator.latent, cfg.data.batch_size) == (64, "uniform", 64)
    assert m.loss._target_.endswith(loss) and m.discriminator.norm == d_norm
    assert m.n_critic == n_critic and cfg.generator_steps == g_steps
    assert n_critic * g_steps == 15625  # the paper's 15,625 discriminator steps
    assert m.g_optimizer._target_ == "torch.optim.Adam"


@pytest.mark.parametrize("name", ["fashion_ns", "fashion_lsgan", "fashion_wgan_gp", "fashion_hinge_sn", "fashion_best"])
def test_ganlab_fashion_recipes_compose(name):
    cfg = compose_experiment(name)
    assert cfg.model.generator._target_.endswith("DCGANGenerator") and cfg.data.resolution == 28
    if name != "fashion_best":  # the rows compared with the paper get at most its discriminator budget
        assert cfg.model.n_critic * cfg.generator_steps in (15625, 15626)


# -- the runner ---------------------------------------------------------------------------------------------
def runner(work: Path, *args: str) -> subprocess.Popen:
    env = {**os.environ, "GANLAB_CACHE": str(work / "cache"), "WANDB_MODE": "offline", "PYTHONPATH": str(REPO)}
    return subprocess.Popen([sys.executable, str(REPO / "experiments" / "benchmark" / "run.py"), "--table", "smoke",
                             "--work", str(work), "--jobs", "1", "--train-only", "--nice", "0", *args],
                            cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def attempts(job: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted(job.glob("attempt_*.json"))]


def test_runner_resumes_a_killed_study_without_redoing_finished_jobs(tmp_path):
    study = tmp_path / "smoke"
    first, second = study / "ns_s0", study / "hinge_s0"
    # job 1 finishes (6 generator steps); a second runner on the same study refuses to start meanwhile
    p = runner(tmp_path, "--only", "ns:0")
    deadline = time.time() + 120
    while time.time() < deadline and not _read(study / "runner.lock") == str(p.pid):
        time.sleep(0.05)
    rival = runner(tmp_path, "--only", "ns:0")
    rival_out, _ = rival.communicate(timeout=120)
    assert rival.returncode == 1 and "another run.py is running the study" in rival_out
    out, _ = p.communicate(timeout=300)
    assert p.returncode == 0, out[-3000:]
    assert (first / "train.json").exists() and len(attempts(first)) == 1
    done_ckpt = first / "train" / "checkpoints" / "last.ckpt"
    stamp = done_ckpt.stat().st_mtime_ns
    # the whole study (job 1, then job 2 with a longer budget); the runner is killed during job 2
    long = ("--override", "generator_steps=100", "checkpoint_every=2")
    p = runner(tmp_path, *long)
    deadline = time.time() + 240
    while time.time() < deadline and not list((second / "train" / "checkpoints").glob("*.ckpt")):
        time.sleep(0.05)
    os.kill(p.pid, signal.SIGKILL)  # no clean-up in the runner; its training child gets SIGTERM
    p.communicate(timeout=60)
    time.sleep(0.5)
    for _ in range(100):  # the child saves last.ckpt and exits
        if json.loads((second / "attempt_000.json").read_text()).get("started") and not _alive(second):
            break
        time.sleep(0.2)
    assert not (second / "train.json").exists(), "job 2 must have been interrupted (raise its step budget)"
    killed = attempts(second)
    assert len(killed) == 1 and "exit" not in killed[0]
    # rerun the same command: job 1 is skipped, job 2 resumes from its newest checkpoint
    p = runner(tmp_path, *long)
    out, _ = p.communicate(timeout=300)
    assert p.returncode == 0, out[-3000:]
    assert "ns_s0: training" not in out and "hinge_s0: training from generator step" in out and len(attempts(first)) == 1
    assert done_ckpt.stat().st_mtime_ns == stamp
    resumed = attempts(second)
    assert len(resumed) == 2 and resumed[1]["exit"] == 0
    assert resumed[1]["resume_from_step"] >= 2
    log = (second / "job.log").read_text()
    assert "ckpt_path=auto: resuming from" in log
    final = torch.load(second / "train" / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    assert final["ganlab"]["generator_step"] == 100
    cost = json.loads((second / "train.json").read_text())
    assert cost["attempts"] == 2 and math.isclose(cost["train_cpu_seconds"],
                                                  sum(a["cpu_seconds"] for a in resumed), abs_tol=0.2)


def _read(path: Path) -> str:
    try:
        return path.read_text().strip()
    except OSError:
        return ""


def _alive(job: Path) -> bool:
    """Is a ganlab.train of this job folder still running?"""
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                if str(job / "train") in (proc / "cmdline").read_bytes().decode(errors="ignore"):
                    return True
            except OSError:
                pass
    return False


def test_plain_loop_has_the_networks_of_ganlabs_cpu_face_recipe():
    """The faces table compares ganlab's recipe with a hand-written loop on the SAME networks."""
    import importlib.util

    from ganlab.models.networks.dcgan import DCGANDiscriminator, DCGANGenerator

    spec = importlib.util.spec_from_file_location("plain_loop", REPO / "experiments" / "benchmark" / "plain_loop.py")
    plain = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(plain)
    cfg = compose_experiment("faces_cpu30")
    base = cfg.model.generator.base_width
    g, d = plain.networks(base, z_dim=cfg.model.generator.z_dim)
    g_ref = DCGANGenerator(z_dim=cfg.model.generator.z_dim, resolution=64, channels=3, base_width=base)
    d_ref = DCGANDiscriminator(resolution=64, channels=3, base_width=cfg.model.discriminator.base_width)
    shapes = lambda m: sorted(tuple(p.shape) for p in m.parameters())  # noqa: E731  (same tensors, any order)
    assert shapes(g) == shapes(g_ref) and n_params(g) == n_params(g_ref)
    assert shapes(d) == shapes(d_ref) and n_params(d) == n_params(d_ref)
    z = torch.randn(3, cfg.model.generator.z_dim)
    assert g(z[:, :, None, None]).shape == g_ref(z).shape == (3, 3, 64, 64)
    assert d(torch.zeros(3, 3, 64, 64)).numel() == d_ref(torch.zeros(3, 3, 64, 64)).numel() == 3
