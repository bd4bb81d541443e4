"""Fault injection, fast cases: end-of-run last.ckpt, labelled resume, damaged / malicious
checkpoints, ckpt_path=auto fallback, disk full while saving, SIGTERM mid-training, a metric
that was not logged. (The long kill -9 campaign is experiments/faults/.)"""

from __future__ import annotations

import os
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from _cgan_helpers import FACES_MULTI_HOT, QUIET
from ganlab.checkpoints import (AtomicCheckpointIO, CheckpointError, check_targets, load_checkpoint,
                                resolve_ckpt_path, save_atomic)
from ganlab.models import load_gan
from ganlab.train import optimized_value, train

REPO = Path(__file__).resolve().parents[1]
DET = ["trainer.deterministic=true", "callbacks=[model_checkpoint]", *QUIET]


def weights(path) -> dict[str, torch.Tensor]:
    return load_gan(path).state_dict()


def assert_same(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), f"{k} differs"


@pytest.fixture(scope="module")
def run5(tmp_path_factory):
    """5 generator steps, a periodic checkpoint every 2: last.ckpt must still be step 5."""
    from conftest import compose_cfg

    base = tmp_path_factory.mktemp("run5")
    _, trainer = train(compose_cfg(base, "generator_steps=5", "checkpoint_every=2", *DET))
    return base / "run" / "checkpoints", trainer


def test_last_ckpt_is_the_end_of_the_run(run5):
    ckpts, trainer = run5
    assert sorted(p.name for p in ckpts.glob("*.ckpt")) == ["gstep_000002.ckpt", "gstep_000004.ckpt", "last.ckpt"]
    final = {k: v.detach().cpu() for k, v in trainer.lightning_module.state_dict().items()}
    gan = load_gan(ckpts / "last.ckpt")
    assert gan.generator_step == 5 and load_gan(ckpts / "gstep_000004.ckpt").generator_step == 4
    assert_same(gan.state_dict(), final)
    raw = load_checkpoint(ckpts / "last.ckpt")  # weights_only=True, digest checked
    assert raw["global_step"] == 10 and "ganlab_integrity" not in raw
    assert not list(ckpts.glob(".*"))  # no temp files left


def test_labelled_resume_is_exact(tmp_path, make_cfg):
    """Multi-hot labels (ListConfig in the data hparams used to make weights_only loading fail)."""
    labelled = ["model=cgan", "model.generator.base_width=8", "model.discriminator.base_width=8",
                "model.generator.z_dim=16", *FACES_MULTI_HOT, *DET]
    train(make_cfg(tmp_path / "a", "generator_steps=4", "checkpoint_every=4", *labelled))
    train(make_cfg(tmp_path / "b", "generator_steps=2", "checkpoint_every=2", *labelled))
    half = load_checkpoint(tmp_path / "b" / "run" / "checkpoints" / "last.ckpt")
    assert half["datamodule_hyper_parameters"]["labels"] == ["Smiling", "Eyeglasses"]
    assert type(half["datamodule_hyper_parameters"]["labels"]) is list
    train(make_cfg(tmp_path / "b", "generator_steps=4", "checkpoint_every=4", "ckpt_path=auto", *labelled))
    a = tmp_path / "a" / "run" / "checkpoints" / "last.ckpt"
    b = tmp_path / "b" / "run" / "checkpoints" / "last.ckpt"
    assert load_gan(b).generator_step == 4
    assert_same(weights(a), weights(b))


class Payload:
    """Unpickling this would run os.system: the marker file must never appear."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def damaged_copies(src: Path, folder: Path) -> dict[str, Path]:
    data = src.read_bytes()
    folder.mkdir(parents=True, exist_ok=True)
    out = {}
    out["truncated"] = folder / "truncated.ckpt"
    out["truncated"].write_bytes(data[: len(data) // 2])
    out["empty"] = folder / "empty.ckpt"
    out["empty"].write_bytes(b"")
    flipped = bytearray(data)
    flipped[len(data) // 2] ^= 0x10  # inside tensor bytes: torch.load alone would not notice
    out["bitflip"] = folder / "bitflip.ckpt"
    out["bitflip"].write_bytes(bytes(flipped))
    out["pickle"] = folder / "pickle.ckpt"
    torch.save({"state_dict": {}, "ganlab": {"x": Payload(str(folder / "PWNED"))}}, out["pickle"])
    foreign = load_checkpoint(src)
    foreign["hyper_parameters"]["generator"]["_target_"] = "os.system"
    out["target"] = folder / "target.ckpt"
    AtomicCheckpointIO().save_checkpoint(foreign, out["target"])
    smuggled = load_checkpoint(src)  # an allowed _target_ whose argument Hydra would resolve into os.system
    smuggled["hyper_parameters"]["generator"]["z_dim"] = "${oc.create:{_target_: os.system, _args_: [exit 3]}}"
    out["interpolation"] = folder / "interpolation.ckpt"
    AtomicCheckpointIO().save_checkpoint(smuggled, out["interpolation"])
    return out


@pytest.mark.parametrize("kind,match", [
    ("truncated", "truncated or corrupted"), ("empty", "empty \\(0 bytes\\)"),
    ("bitflip", "corrupted: its content does not match"), ("pickle", "refusing to load.*nothing in it was executed"),
    ("target", "refusing to instantiate the model config.*'os.system'.*trust_checkpoint=true"),
    ("interpolation", "refusing to instantiate the model config.*interpolation.*oc.create"),
])
def test_damaged_and_malicious_checkpoints_fail_clearly(run5, tmp_path, kind, match):
    path = damaged_copies(run5[0] / "last.ckpt", tmp_path)[kind]
    with pytest.raises(CheckpointError, match=match) as err:
        load_gan(path)
    assert str(path) in str(err.value) and "\n" not in str(err.value)
    assert not (tmp_path / "PWNED").exists()


def _as_written_by_older_ganlab(ckpt: dict) -> dict:
    """The checkpoint layout before save_hyperparameters: model config in ckpt["ganlab"], data
    metadata in ckpt["ganlab_data"], no Lightning hyper_parameters / datamodule state."""
    old = {k: v for k, v in ckpt.items() if k not in ("hyper_parameters", "GANDataModule", "datamodule_hyper_parameters")}
    old["ganlab"] = {**ckpt["ganlab"], "model_config": {"_target_": "ganlab.models.gan.GAN", **ckpt["hyper_parameters"]}}
    old["ganlab_data"] = {**ckpt["GANDataModule"], "data_config": {"_target_": "ganlab.data.datamodule.GANDataModule",
                                                                  **ckpt["datamodule_hyper_parameters"]}}
    return old


def test_checkpoints_rebuild_from_hyperparameters_and_older_layout_still_loads(run5, tmp_path):
    from ganlab.checkpoints import stored_data_state
    from ganlab.models.gan import GAN

    ckpt = load_checkpoint(run5[0] / "last.ckpt")
    assert "model_config" not in ckpt["ganlab"] and "ganlab_data" not in ckpt
    assert ckpt["hyper_parameters"]["generator"]["_target_"] == "ganlab.models.networks.dcgan.DCGANGenerator"
    assert ckpt["GANDataModule"]["image_shape"] == [3, 16, 16]
    new = GAN.load_from_checkpoint(run5[0] / "last.ckpt")
    assert new.generator_step == 5
    old_path = tmp_path / "old.ckpt"
    AtomicCheckpointIO().save_checkpoint(_as_written_by_older_ganlab(ckpt), old_path)
    old = load_gan(old_path)
    assert_same(old.state_dict(), new.state_dict())
    assert old.generator_step == 5
    assert stored_data_state(load_checkpoint(old_path)) == stored_data_state(ckpt)
    bare = {k: v for k, v in ckpt.items() if k != "hyper_parameters"}
    AtomicCheckpointIO().save_checkpoint(bare, tmp_path / "bare.ckpt")
    with pytest.raises(CheckpointError, match="has no ganlab model config"):
        load_gan(tmp_path / "bare.ckpt")


def test_generate_and_evaluate_refuse_foreign_targets(run5, tmp_path):
    from ganlab.generate import GenerateError, generate

    bad = damaged_copies(run5[0] / "last.ckpt", tmp_path)["target"]
    with pytest.raises(GenerateError, match="outside ganlab, torch, torchvision"):
        generate({"ckpt": str(bad), "out": str(tmp_path / "o"), "num_images": 1, "progress": False})
    assert not (tmp_path / "o").exists()
    with pytest.raises(CheckpointError, match="torch.hub.load"):
        check_targets({"a": [{"_target_": "torch.hub.load"}]}, path="x")
    check_targets({"_target_": "torch.optim.Adam", "b": {"_target_": "ganlab.models.gan.GAN"}}, path="x")


def test_auto_resume_skips_damaged_newest(run5, tmp_path):
    folder = tmp_path / "run" / "checkpoints"
    folder.mkdir(parents=True)
    good = folder / "gstep_000004.ckpt"
    good.write_bytes((run5[0] / "gstep_000004.ckpt").read_bytes())
    time.sleep(0.01)
    (folder / "last.ckpt").write_bytes((run5[0] / "last.ckpt").read_bytes()[:5000])  # torn, and newer
    with pytest.warns(UserWarning, match="skipping a damaged checkpoint.*last.ckpt"):
        assert resolve_ckpt_path("auto", tmp_path / "run") == str(good)
    assert resolve_ckpt_path("auto", tmp_path / "fresh") is None  # nothing there yet: a fresh start
    with pytest.raises(CheckpointError, match="truncated"):
        resolve_ckpt_path(str(folder / "last.ckpt"), tmp_path)  # an explicit file never falls back


def test_auto_resume_takes_the_most_trained_not_the_newest_file(run5, tmp_path):
    """An older checkpoint copied into the folder later (newest mtime) must not be resumed over step 5."""
    from ganlab.run import open_run

    folder = tmp_path / "run" / "checkpoints"
    folder.mkdir(parents=True)
    (folder / "last.ckpt").write_bytes((run5[0] / "last.ckpt").read_bytes())  # generator step 5
    time.sleep(0.01)
    (folder / "best_fid.ckpt").write_bytes((run5[0] / "gstep_000002.ckpt").read_bytes())  # step 2, newer file
    assert resolve_ckpt_path("auto", tmp_path / "run") == str(folder / "last.ckpt")
    assert resolve_ckpt_path(str(tmp_path / "run"), tmp_path) == str(folder / "last.ckpt")
    assert open_run(tmp_path / "run", device="cpu").path == str(folder / "last.ckpt")
    # equal progress: the newer file wins (so a same-step best_fid.ckpt written after last.ckpt is fine)
    time.sleep(0.01)
    (folder / "copy.ckpt").write_bytes((run5[0] / "last.ckpt").read_bytes())
    assert resolve_ckpt_path("auto", tmp_path / "run") == str(folder / "copy.ckpt")


def test_disk_full_keeps_the_previous_checkpoint(run5, tmp_path):
    ckpt = load_checkpoint(run5[0] / "last.ckpt")
    target = tmp_path / "last.ckpt"
    AtomicCheckpointIO().save_checkpoint(ckpt, target)
    before = target.read_bytes()
    ckpt["big"] = torch.zeros(4_000_000)  # 16 MB > the 1 MB file-size limit below
    old_limit = resource.getrlimit(resource.RLIMIT_FSIZE)
    old_handler = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # EFBIG instead of a kill
    resource.setrlimit(resource.RLIMIT_FSIZE, (1 << 20, old_limit[1]))
    try:
        with pytest.raises(CheckpointError, match="could not write checkpoint .*last.ckpt.*previous file .* intact"):
            AtomicCheckpointIO().save_checkpoint(ckpt, target)
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, old_limit)
        signal.signal(signal.SIGXFSZ, old_handler)
    assert target.read_bytes() == before and sorted(os.listdir(tmp_path)) == ["last.ckpt"]


def test_sigterm_saves_and_resume_is_exact(tmp_path, make_cfg):
    """SIGTERM in the middle of a run: exit 143 within seconds, last.ckpt at the step reached,
    ckpt_path=auto finishes the run with the weights of an uninterrupted one."""
    common = ["trainer.deterministic=true", "callbacks=[model_checkpoint]", *QUIET, "data.source.num_images=96",
              "data.resolution=16", "data.batch_size=16", "trainer.accelerator=cpu", "model.generator.base_width=8",
              "model.discriminator.base_width=8", "model.generator.z_dim=16", "checkpoint_every=1000",
              "trainer.log_every_n_steps=1"]
    run = tmp_path / "b" / "run"
    env = {**os.environ, "GANLAB_CACHE": str(tmp_path / "cache"), "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "ganlab.train", f"hydra.run.dir={run}", f"paths.root_dir={tmp_path}",
           f"paths.cache_dir={tmp_path / 'cache'}", "generator_steps=100000", *common,
           # a slow step so the signal lands mid-run: the loss history callback logs every step
           "+callbacks.loss_history._target_=ganlab.callbacks.loss_history.LossHistory",
           f"+callbacks.loss_history.csv_path={run}/losses.csv", f"+callbacks.loss_history.plot_path={run}/l.png",
           "+callbacks.loss_history.every_n_steps=1"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, cwd=REPO)
    csv = run / "losses.csv"
    deadline = time.time() + 120
    while time.time() < deadline and (not csv.exists() or len(csv.read_text().splitlines()) < 6):
        time.sleep(0.2)
    assert proc.poll() is None, proc.stdout.read()[-3000:]
    t0 = time.time()
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=60)
    elapsed = time.time() - t0
    assert proc.returncode == 143, out[-3000:]
    assert elapsed < 10, f"took {elapsed:.1f} s to stop"
    stopped = load_gan(run / "checkpoints" / "last.ckpt").generator_step
    assert 5 <= stopped < 100000 and "stopped by SIGTERM" in out
    n = stopped + 3
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as the subprocess (OMP_NUM_THREADS=1): bit-equality needs equal reduction orders
    try:
        train(make_cfg(tmp_path / "b", f"generator_steps={n}", "ckpt_path=auto", *common))
        train(make_cfg(tmp_path / "a", f"generator_steps={n}", *common))
    finally:
        torch.set_num_threads(threads)
    assert load_gan(run / "checkpoints" / "last.ckpt").generator_step == n
    assert_same(weights(tmp_path / "a" / "run" / "checkpoints" / "last.ckpt"), weights(run / "checkpoints" / "last.ckpt"))


def test_unlogged_metric_warns_and_returns_none(caplog):
    from omegaconf import OmegaConf

    cfg = OmegaConf.create({"optimized_metric": "metrics/fid"})
    assert optimized_value(cfg, {"loss/g": 1.0}) is None
    assert "was not logged" in caplog.text
    assert optimized_value(cfg, {"metrics/fid": 3.5}) == 3.5


def test_save_atomic_cleans_up_after_an_interrupt(tmp_path):
    target = tmp_path / "x.ckpt"
    save_atomic({"a": 1}, target)

    def boom(obj, f):
        f.write(b"partial")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        save_atomic({"a": 2}, target, write=boom)
    assert load_checkpoint(target) == {"a": 1} and os.listdir(tmp_path) == ["x.ckpt"]


RSS_SCRIPT = r'''
import resource, sys
import numpy as np
sys.path.insert(0, sys.argv[2])
from pathlib import Path
from conftest import compose_cfg
from ganlab.data.datamodule import GANDataModule
from ganlab.data.prepared import PreparedData
from ganlab.metrics.classifier import train_classifier
from ganlab.metrics.reference import reference_features
from ganlab.train import train
import torch

tmp = Path(sys.argv[1])
n = 60000  # 60,000 x 3 x 64 x 64 uint8 = 737 MB, a sparse file: no disk used, no page read unless asked
np.lib.format.open_memmap(tmp / "big.npy", mode="w+", dtype=np.uint8, shape=(n, 3, 64, 64)).flush()
images = np.load(tmp / "big.npy", mmap_mode="r")
labels = (np.arange(n)[:, None] % np.array([2, 3, 5]) == 0).astype(np.float32)
prepared = PreparedData(images, labels, "multi_hot", ["a", "b", "c"], {"train": np.arange(n)}, "big" * 8, {})
GANDataModule._prepare = lambda self, progress=True: prepared
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
cfg = compose_cfg(tmp, "model=cgan", "model.generator.base_width=8", "model.discriminator.base_width=8",
                  "model.generator.z_dim=16", "model.generator.num_classes=3", "model.generator.label_kind=multi_hot",
                  "data.resolution=64", "generator_steps=3", "checkpoint_every=2", "sample_every=2",
                  "callbacks=[model_checkpoint,sample_grid]", "logger=[]", "++trainer.enable_progress_bar=false")
_, trainer = train(cfg)
dm = trainer.datamodule
class Extractor:
    def describe(self):
        return {"extractor_id": "mean", "weights_sha256": "0"}
    def extract(self, x, batch_size=None):
        return torch.from_numpy(np.asarray(x, dtype=np.float32).reshape(len(x), 3, -1).mean(2)).repeat(1, 683)[:, :2048]
reference_features(lambda: dm.split_images(), fingerprint="big", split="train", extractor=Extractor(), n_real=512,
                   cache_dir=str(tmp / "ref"))
train_classifier(dm.split_images(), dm.split_labels(), num_classes=3, label_kind="multi_hot", steps=3, batch_size=64)
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print("RSS_MB", round(base / 1024), round(peak / 1024))
'''


def test_rss_stays_bounded_on_a_large_memmap(tmp_path):
    """Training (sample grid included), reference features and the label classifier on a 737 MB
    memory-mapped split: peak RSS grows by far less than the split (a full copy would add 737 MB)."""
    (tmp_path / "rss.py").write_text(RSS_SCRIPT)
    env = {**os.environ, "GANLAB_CACHE": str(tmp_path / "cache"), "OMP_NUM_THREADS": "1"}
    p = subprocess.run([sys.executable, str(tmp_path / "rss.py"), str(tmp_path), str(REPO / "tests")],
                       capture_output=True, text=True, env=env, cwd=REPO, timeout=300)
    line = next((ln for ln in p.stdout.splitlines() if ln.startswith("RSS_MB")), None)
    assert line, p.stdout[-2000:] + p.stderr[-3000:]
    base, peak = map(int, line.split()[1:])
    assert peak - base < 250, f"peak RSS {peak} MB, {peak - base} MB above the {base} MB after imports"


NAN_PROBE = '''
import lightning as L

class NaNOnRank1(L.Callback):
    """Rank 1's generator loss alone is NaN at generator step 3 (rank 0's is finite there: its D and G
    losses are computed before the gradient all-reduce that carries the NaN over)."""
    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if trainer.global_rank == 1 and pl_module.generator_step == 2:
            g = pl_module.loss.generator
            pl_module.loss.generator = lambda *a, **k: g(*a, **k) * float("nan")
'''


@pytest.mark.slow
def test_ddp_non_finite_on_one_rank_stops_every_rank(tmp_path):
    """2 gloo processes; a non-finite loss on rank 1 only: both ranks stop after the same step with
    exit code 1 (rank 0 names 'another rank's' loss), no hang, last.ckpt from step 2 intact."""
    from test_ddp import DDP_CPU, TINY as DDP_TINY

    (tmp_path / "nan_probe.py").write_text(NAN_PROBE)
    env = {**os.environ, "GANLAB_CACHE": str(tmp_path / "cache"), "PYTHONPATH": f"{tmp_path}{os.pathsep}{REPO}"}
    cmd = [sys.executable, "-m", "ganlab.train", f"hydra.run.dir={tmp_path / 'run'}", f"paths.root_dir={tmp_path}",
           *DDP_TINY, *DDP_CPU, "checkpoint_every=2", "callbacks.logger_extras=null",
           "+callbacks.nan._target_=nan_probe.NaNOnRank1"]
    t0 = time.time()
    p = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300, cwd=REPO)
    out = p.stdout + p.stderr
    assert p.returncode == 1, out[-4000:]
    assert "non-finite another rank's loss (nan) at generator step 3" in out, out[-4000:]  # rank 0
    assert "non-finite generator loss (nan) at generator step 3" in out  # rank 1
    assert time.time() - t0 < 200
    assert load_gan(tmp_path / "run" / "checkpoints" / "last.ckpt").generator_step == 2


def test_interpolations_cannot_smuggle_a_target(tmp_path):
    """A stored config's string ``${oc.create:{_target_: ...}}`` (or a run folder's ``${node}``) is
    resolved by Hydra only when it instantiates: the check refuses it before anything is built."""
    from ganlab.checkpoints import instantiate_from_checkpoint
    from ganlab.evaluate import data_config

    smuggled = {"_target_": "torch.nn.Identity", "x": "${oc.create:{_target_: builtins.print, _args_: [built]}}"}
    with pytest.raises(CheckpointError, match="interpolation"):
        instantiate_from_checkpoint(smuggled, path=tmp_path / "x.ckpt", what="data config")
    instantiate_from_checkpoint(smuggled, path=tmp_path / "x.ckpt", what="data config", trust=True)  # trusted: built

    run = tmp_path / "run"
    (run / ".hydra").mkdir(parents=True)
    (run / ".hydra" / "config.yaml").write_text(
        "evil:\n  _target_: builtins.print\ndata:\n  _target_: torch.nn.Identity\n  x: ${evil}\n")
    with pytest.raises(CheckpointError, match="'builtins.print' is outside"):
        data_config(None, str(run / "checkpoints" / "last.ckpt"))
    (run / ".hydra" / "config.yaml").write_text("data:\n  _target_: torch.nn.Identity\n  x: \\${evil}\n")
    with pytest.raises(CheckpointError, match="interpolation"):  # escaped: a literal ${evil} after resolving
        data_config(None, str(run / "checkpoints" / "last.ckpt"))
    assert data_config(None, str(run / "checkpoints" / "last.ckpt"), trust=True)._target_ == "torch.nn.Identity"
