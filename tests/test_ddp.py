"""DDP on CPU: 2 processes on gloo through `python -m ganlab.train trainer=ddp` (Lightning relaunches
the Hydra command for rank 1). Weights stay identical across ranks, each rank draws its own noise,
checkpoints and files are written once, and the ddp config's choices (find_unused_parameters,
no static_graph) are the ones that work with the GAN's D/G phases."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

PROBE = '''
import os, torch, lightning as L

class Probe(L.Callback):
    """Saves each rank's module state (and a fresh noise draw) at the end of training."""
    def __init__(self, out_dir):
        self.out_dir = out_dir
    def on_train_end(self, trainer, pl_module):
        os.makedirs(self.out_dir, exist_ok=True)
        state = {k: v.detach().cpu().clone() for k, v in pl_module.state_dict().items()}
        torch.save({"state": state, "noise": torch.randn(8), "rank": trainer.global_rank,
                    "world_size": trainer.world_size, "generator_step": pl_module.generator_step,
                    "strategy": type(trainer.strategy).__name__,
                    "backend": torch.distributed.get_backend()},
                   os.path.join(self.out_dir, f"rank{trainer.global_rank}.pt"))
'''

TINY = [
    "data.source.num_images=96", "data.resolution=16", "data.batch_size=16",
    "model.generator.base_width=8", "model.discriminator.base_width=8", "model.generator.z_dim=16",
    "trainer.log_every_n_steps=1", "generator_steps=4", "sample_every=2", "checkpoint_every=4",
    "callbacks.rich_progress_bar=null", "callbacks.model_summary=null",
]
DDP_CPU = ["trainer=ddp", "trainer.accelerator=cpu", "trainer.devices=2", "trainer.strategy.process_group_backend=gloo"]


def run_ddp(tmp_path: Path, *overrides: str) -> subprocess.CompletedProcess:
    (tmp_path / "ddp_probe.py").write_text(PROBE)
    env = {**os.environ, "GANLAB_CACHE": str(tmp_path / "cache"), "WANDB_MODE": "offline",
           "PYTHONPATH": os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)}
    cmd = [sys.executable, "-m", "ganlab.train", f"hydra.run.dir={tmp_path / 'run'}", f"paths.root_dir={tmp_path}",
           *TINY, *DDP_CPU, "+callbacks.probe._target_=ddp_probe.Probe", f"+callbacks.probe.out_dir={tmp_path / 'probe'}",
           *overrides]
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=400)


def test_ddp_two_cpu_processes(tmp_path):
    proc = run_ddp(tmp_path)
    assert proc.returncode == 0, proc.stderr[-4000:]
    r0 = torch.load(tmp_path / "probe" / "rank0.pt")
    r1 = torch.load(tmp_path / "probe" / "rank1.pt")
    assert (r0["rank"], r1["rank"]) == (0, 1) and r0["world_size"] == r1["world_size"] == 2
    assert r0["strategy"] == "DDPStrategy" and r0["backend"] == "gloo"
    assert r0["generator_step"] == r1["generator_step"] == 4
    # every parameter (G, D and the EMA generator) is identical on both ranks
    params = [k for k in r0["state"] if "running_" not in k and "num_batches_tracked" not in k]
    assert any(k.startswith("generator_ema.") for k in params) and any(k.startswith("discriminator.") for k in params)
    for k in params:
        assert torch.equal(r0["state"][k], r1["state"][k]), k
    # each rank has its own noise stream (rank_seed callback)
    assert not torch.equal(r0["noise"], r1["noise"])

    run = tmp_path / "run"
    # checkpoints written once (no -v1 copies from a second rank), holding rank 0's weights
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["gstep_000004.ckpt", "last.ckpt"]
    ckpt = torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    for k, v in r0["state"].items():
        assert torch.equal(ckpt["state_dict"][k], v), k
    # rank 0 alone writes the run files and logs
    assert sorted(p.name for p in (run / "samples").iterdir()) == [
        "latent_interpolation.png", "latent_walk.gif", "real.png", "step_000002.png", "step_000004.png"]
    assert len((run / "csv" / "metrics.csv").read_text().strip().splitlines()) == 1 + 4
    import json

    summary = json.loads((run / "final_metrics.json").read_text())
    assert summary["status"] == "completed" and summary["world_size"] == 2 and summary["generator_step"] == 4


@pytest.mark.slow
@pytest.mark.parametrize(("override", "message"), [
    ("trainer.strategy.static_graph=true", "graph has changed"),
    ("trainer.strategy.find_unused_parameters=false", "parameters that were not used"),
])
def test_ddp_config_choices_are_needed(tmp_path, override, message):
    """Why conf/trainer/ddp.yaml sets find_unused_parameters=true and static_graph=false: D steps
    leave G's parameters without gradients and vice versa, so the graph differs between phases."""
    proc = run_ddp(tmp_path, override, "generator_steps=2")
    assert proc.returncode != 0
    assert message in proc.stderr + proc.stdout


def test_slurm_launcher_config(tmp_path):
    """conf/hydra/launcher/slurm.yaml extends the submitit plugin's schema; one SLURM task per device."""
    from hydra import compose, initialize_config_dir

    from conftest import CONF

    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose("train", overrides=["hydra/launcher=slurm", "hydra.launcher.partition=gpu", "trainer=ddp",
                                          "trainer.devices=4", "trainer.num_nodes=2", f"paths.root_dir={tmp_path}"],
                      return_hydra_config=True)
    launcher = cfg.hydra.launcher
    assert launcher._target_ == "hydra_plugins.hydra_submitit_launcher.submitit_launcher.SlurmLauncher"
    assert launcher.partition == "gpu" and launcher.timeout_min > 0 and launcher.mem_gb > 0
    assert (launcher.tasks_per_node, launcher.gpus_per_node, launcher.nodes) == (4, 4, 2)
    assert launcher.cpus_per_task >= 1
