"""Issue 14 in one run: ganlab's DCGAN-64 step throughput against hand-written PyTorch loops, and
in-training evaluation time against torch-fidelity, on the same GPU, in the same process.

    python experiments/gpu/bench.py --out $OUT/gpu            # on a GPU: sized for < 8 minutes on an H100/H200
    python experiments/gpu/bench.py --smoke --out /tmp/smoke  # CPU: tiny sizes, a few steps (proves it runs)

Part 1, steps. Everything comes from one composed config, ``experiment=dcgan_celeba`` on the
procedural faces at 64 px (``data=faces data.source.num_images=8192``: no download; same G, D, BCE loss,
Adam 2e-4 / (0.5, 0.999), EMA 0.999 and horizontal flips as the experiment), for each batch
(64 / 128 / 256) and precision (32-true / bf16-mixed):

* ``ganlab trainer=gpu``: ``ganlab.train`` with the fast path (device-resident data, fused Adam, the
  non-finite flag read every 50 steps without waiting, cuDNN benchmark); callbacks and loggers off;
* ``ganlab, fast path off`` (batch 128 only): the same with ``data.device_cache=0
  model.speed.fused_optimizer=false model.speed.finite_check_every=1`` (the path measured before);
* ``plain eager``: a textbook loop with the same networks, loss and optimizers (foreach Adam, the
  default), batches indexed from a host tensor and copied each step, flips on the device, EMA;
* ``plain + tricks``: that loop with the same tricks by hand (data resident on the device with a
  device permutation, fused Adam, cuDNN benchmark, no host sync);
* ``--compile`` rows (batch 128, bf16): ganlab ``model.compile=true`` and the tricks loop with
  ``torch.compile`` of G and D.

Timing: seconds from the end of generator step ``warmup`` to the end of step ``warmup + steps``,
CUDA synchronised at both ends; start-up, data preparation and compilation are excluded. For the
ganlab rows the timed steps also run under ``torch.cuda.set_sync_debug_mode("warn")`` and the
table counts the host syncs it reported (the fast path's own: the read at the last step).
bf16-mixed is ``torch.autocast(bfloat16)`` around the step in the plain loops, Lightning's
``bf16-mixed`` in ganlab.

Part 2, evaluation: ``experiments/metrics_cost/bench.py`` (one in-training evaluation, FID + KID +
precision/recall against cached reference features, vs torch-fidelity's ``calculate_metrics`` on
the same images and weights) for 10k and 50k fakes, in a subprocess, its results copied into ours.

The script stops starting rows after ``--time-limit`` seconds (rows not run are written "not
measured (time limit)"), writes ``<out>/results.json`` and ``<out>/results.md`` after every row.
"""

from __future__ import annotations

import argparse
import copy
import json
import platform
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import hydra
import lightning as L
import numpy as np
import torch

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests"))
sys.path.insert(0, str(REPO))
from conftest import compose_cfg  # noqa: E402

import ganlab  # noqa: E402
from ganlab.train import train  # noqa: E402
from ganlab.utils.pixels import to_float  # noqa: E402

QUIET = ["callbacks=none", "logger=[]", "trainer.enable_progress_bar=false", "trainer.enable_model_summary=false"]
FAST_OFF = ["data.device_cache=0", "model.speed.fused_optimizer=false", "model.speed.finite_check_every=1"]


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


class Clock(L.Callback):
    """Wall time between the end of generator step ``warmup`` and the end of the last step; on CUDA
    also the host syncs in between, as ``torch.cuda.set_sync_debug_mode("warn")`` reports them."""

    def __init__(self, warmup: int):
        self.warmup, self.t0, self.t1, self.n = warmup, None, None, 0
        self.syncs, self._record = None, None

    def on_train_batch_end(self, trainer, pl_module, *args):
        if pl_module.generator_step == self.warmup:
            sync(pl_module.device)
            if pl_module.device.type == "cuda":
                self._record = warnings.catch_warnings(record=True)
                self.syncs = self._record.__enter__()
                warnings.simplefilter("always")
                torch.cuda.set_sync_debug_mode("warn")
            self.t0 = time.perf_counter()
        elif pl_module.generator_step > self.warmup:
            self.n += 1

    def on_train_end(self, trainer, pl_module):
        if self._record is not None:
            torch.cuda.set_sync_debug_mode("default")
            self._record.__exit__(None, None, None)
            self.syncs = sum("synchroniz" in str(w.message) for w in self.syncs)
        sync(pl_module.device)
        self.t1 = time.perf_counter()


# -- configs and data -------------------------------------------------------------------------
def overrides(args, batch: int, precision: str, extra=()) -> list[str]:
    size = ["data.resolution=16", "data.source.num_images=256", "model.generator.base_width=8",
            "model.discriminator.base_width=8"] if args.smoke else ["data.source.num_images=8192"]
    device = ["trainer.accelerator=cpu", "trainer.benchmark=null"] if args.device == "cpu" else []
    return ["experiment=dcgan_celeba", "data=faces", *size, f"data.batch_size={batch}", "trainer=gpu",
            f"trainer.precision={precision}", f"generator_steps={args.warmup + args.steps}",
            f"paths.cache_dir={args.work / 'cache'}", *device, *QUIET, *extra]


def cfg_for(args, batch, precision, extra=()):
    return compose_cfg(args.work, *overrides(args, batch, precision, extra), tiny=False)


def train_images(args) -> np.ndarray:
    """The uint8 train split ganlab trains on (prepared once, shared by every row)."""
    dm = hydra.utils.instantiate(cfg_for(args, 64, "32-true").data)
    dm.prepare_data()
    dm.setup("fit")
    return np.asarray(dm.split_images("train"))


# -- the rows -----------------------------------------------------------------------------------
def ganlab_row(args, batch, precision, extra=()) -> tuple[float, int | None]:
    clock = Clock(args.warmup)
    with tempfile.TemporaryDirectory(dir=args.work) as tmp:
        cfg = compose_cfg(Path(tmp), *overrides(args, batch, precision, extra), tiny=False)
        train(cfg, extra_callbacks=[clock])
    return clock.n * batch / (clock.t1 - clock.t0), clock.syncs


def plain_row(args, images: np.ndarray, batch: int, precision: str, tricks: bool,
              compile: bool = False) -> tuple[float, None]:
    """The textbook loop (``tricks=False``) or the same loop tuned by hand, built from the same config."""
    cfg = cfg_for(args, batch, precision)
    device = torch.device(args.device)
    torch.manual_seed(0)
    g = hydra.utils.instantiate(cfg.model.generator).to(device)
    d = hydra.utils.instantiate(cfg.model.discriminator).to(device)
    g_ema = copy.deepcopy(g).requires_grad_(False)
    loss = hydra.utils.instantiate(cfg.model.loss)
    fused = {"fused": True} if tricks and device.type == "cuda" else {}
    opt_g = hydra.utils.instantiate(cfg.model.g_optimizer)(g.parameters(), **fused)
    opt_d = hydra.utils.instantiate(cfg.model.d_optimizer)(d.parameters(), **fused)
    torch.backends.cudnn.benchmark = tricks
    g_step, d_step = (torch.compile(g), torch.compile(d)) if compile else (g, d)
    z_dim, n = cfg.model.generator.z_dim, len(images)
    bf16 = precision.startswith("bf16")
    if tricks:  # the whole split on the device, a permutation per epoch drawn there
        data = torch.from_numpy(images).to(device)
        gen = torch.Generator(device=device).manual_seed(0)
    else:
        data, rng = torch.from_numpy(images), np.random.default_rng(0)
    order, pos = None, n
    t0 = None
    for step in range(args.warmup + args.steps):
        if pos + batch > n:
            order = torch.randperm(n, generator=gen, device=device) if tricks else rng.permutation(n)
            pos = 0
        rows, pos = order[pos:pos + batch], pos + batch
        real = to_float(data[rows] if tricks else data[np.sort(rows)].to(device))
        flip = torch.rand(batch, device=device) < 0.5
        real = torch.where(flip[:, None, None, None], real.flip(3), real)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            fake = g_step(torch.randn(batch, z_dim, device=device))
            loss_d = loss.discriminator(d_step(real), d_step(fake.detach()))
        opt_d.zero_grad(set_to_none=True)
        loss_d.backward()
        opt_d.step()
        d.requires_grad_(False)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            loss_g = loss.generator(d_step(fake))
        opt_g.zero_grad(set_to_none=True)
        loss_g.backward()
        opt_g.step()
        d.requires_grad_(True)
        with torch.no_grad():  # EMA of G as ganlab keeps it (parameters averaged, buffers copied)
            torch._foreach_lerp_(list(g_ema.parameters()), list(g.parameters()), 1e-3)
            for b_ema, b in zip(g_ema.buffers(), g.buffers()):
                b_ema.copy_(b)
        if not tricks and step % 10 == 0:
            float(loss_d), float(loss_g)  # the textbook loop prints its losses now and then
        if step == args.warmup - 1:
            sync(device)
            t0 = time.perf_counter()
    sync(device)
    return args.steps * batch / (time.perf_counter() - t0), None


def plan(args) -> list[dict]:
    rows = []
    for batch in args.batches:
        for precision in args.precisions:
            base = {"batch": batch, "precision": precision, "compile": False}
            rows += [{**base, "loop": "ganlab trainer=gpu"}, {**base, "loop": "plain eager"},
                     {**base, "loop": "plain + tricks"}]
            if batch == args.batches[len(args.batches) // 2]:
                rows.insert(len(rows) - 2, {**base, "loop": "ganlab, fast path off"})
    if args.compile:
        batch, precision = args.batches[len(args.batches) // 2], args.precisions[-1]
        rows += [{"batch": batch, "precision": precision, "compile": True, "loop": loop}
                 for loop in ("ganlab trainer=gpu", "plain + tricks")]
    return rows


def run_row(args, images, row) -> tuple[float, int | None]:
    batch, precision, comp = row["batch"], row["precision"], row["compile"]
    if row["loop"] == "ganlab trainer=gpu":
        return ganlab_row(args, batch, precision, ["model.compile=true"] if comp else [])
    if row["loop"] == "ganlab, fast path off":
        return ganlab_row(args, batch, precision, FAST_OFF)
    return plain_row(args, images, batch, precision, tricks=row["loop"] == "plain + tricks", compile=comp)


# -- part 2: evaluation ---------------------------------------------------------------------------
def evaluation(args, seconds_left: float) -> dict:
    out = args.out / "metrics_cost"
    if args.smoke:
        sizes = ["--n-real", "32", "--eval-n-fake", "16", "32", "--train-steps", "2", "--batch-size", "16",
                 "--throughput-n", "16",
                 "--data-override", "data.source.num_images=512"]
    else:
        sizes = ["--eval-n-fake", "10000", "50000", "--train-steps", "300", "--batch-size", "500",
                 "--throughput-n", "5000"]
    cmd = [sys.executable, str(REPO / "experiments" / "metrics_cost" / "bench.py"), "--device", args.device,
           *sizes, "--bias-n-fake", "--out", str(out), "--work", str(args.work / "metrics_work")]
    if args.weights_path:
        cmd += ["--weights-path", args.weights_path]
    t0 = time.perf_counter()
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=max(1.0, seconds_left), cwd=REPO)
    except subprocess.TimeoutExpired:
        return {"command": " ".join(cmd), "status": "not measured (time limit)"}
    res = {"command": " ".join(cmd), "seconds": round(time.perf_counter() - t0, 1), "returncode": p.returncode}
    if p.returncode != 0:
        res["status"] = "failed: " + (p.stderr.strip().splitlines() or ["?"])[-1][:300]
        return res
    sub = json.loads((out / "results.json").read_text())
    res["status"] = "ok"
    res["extractor"] = sub.get("extractor")
    res["rows"] = [{k: r.get(k) for k in ("n_fake", "n_real", "ganlab_seconds", "fidelity_seconds",
                                          "ratio_fidelity_over_ganlab")}
                   | {"fid_ganlab": r["ganlab"]["fid"], "fid_fidelity": r.get("fidelity", {}).get("fid")}
                   for r in sub.get("evaluation", [])]
    return res


# -- output -----------------------------------------------------------------------------------------
def machine(device: str) -> str:
    if device == "cuda":
        name = torch.cuda.get_device_name()
    else:
        name = f"CPU ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"
    return f"{name}, torch {torch.__version__}, lightning {L.__version__}, ganlab {ganlab.__version__}, python {platform.python_version()}"


def markdown(res: dict) -> str:
    lines = [f"# {res['label']}", "", f"Machine: {res['machine']}", "", f"Command: `{res['command']}`", "",
             "| batch | precision | compile | loop | img/s | G steps/s | vs plain + tricks | host syncs in the timed steps |",
             "| ---: | --- | --- | --- | ---: | ---: | ---: | ---: |"]
    ref = {(r["batch"], r["precision"], r["compile"]): r.get("img_s") for r in res["steps"]
           if r["loop"] == "plain + tricks"}
    for r in res["steps"]:
        if r.get("img_s") is None:
            lines.append(f"| {r['batch']} | {r['precision']} | {r['compile']} | {r['loop']} | {r['status']} | | | |")
            continue
        base = ref.get((r["batch"], r["precision"], r["compile"]))
        ratio = f"{r['img_s'] / base:.2f}x" if base else ""
        lines.append(f"| {r['batch']} | {r['precision']} | {r['compile']} | {r['loop']} | {r['img_s']:.0f} | "
                     f"{r['img_s'] / r['batch']:.1f} | {ratio} | {'' if r.get('host_syncs') is None else r['host_syncs']} |")
    ev = res.get("evaluation")
    if ev:
        lines += ["", f"Evaluation (`experiments/metrics_cost/bench.py`): {ev['status']}", ""]
        if ev.get("rows"):
            lines += ["| n_fake | n_real | ganlab s | torch-fidelity s | fidelity / ganlab | FID ganlab | FID torch-fidelity |",
                      "| ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
            for r in ev["rows"]:
                lines.append(f"| {r['n_fake']} | {r['n_real']} | {r['ganlab_seconds']} | {r['fidelity_seconds']} | "
                             f"{r['ratio_fidelity_over_ganlab']} | {r['fid_ganlab']:.4f} | {r['fid_fidelity']:.4f} |")
    lines += ["", f"Total: {res.get('total_seconds', '?')} s"]
    return "\n".join(lines) + "\n"


def save(res: dict, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(res, indent=1))
    (out / "results.md").write_text(markdown(res))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--smoke", action="store_true", help="CPU, 16 px, width 8, batches 8/16, 3 steps: proves the script runs")
    p.add_argument("--device", default=None, help="cuda (default when available) or cpu")
    p.add_argument("--steps", type=int, default=None, help="timed generator steps per row (150; smoke 3)")
    p.add_argument("--warmup", type=int, default=None, help="untimed steps first (20; smoke 1)")
    p.add_argument("--batches", type=int, nargs="+", default=None)
    p.add_argument("--precisions", nargs="+", default=["32-true", "bf16-mixed"])
    p.add_argument("--no-compile", dest="compile", action="store_false", help="skip the torch.compile rows")
    p.add_argument("--no-eval", dest="eval", action="store_false", help="skip part 2")
    p.add_argument("--weights-path", default=None, help="InceptionV3 weights for part 2 (else ganlab resolves them)")
    p.add_argument("--time-limit", type=float, default=450.0, help="seconds after which no new row starts")
    p.add_argument("--out", type=Path, default=REPO / "experiments" / "gpu" / "results" / "run")
    p.add_argument("--work", type=Path, default=None, help="data cache and runs (default: a temporary folder)")
    args = p.parse_args()
    args.device = args.device or ("cuda" if torch.cuda.is_available() and not args.smoke else "cpu")
    args.steps = args.steps or (3 if args.smoke else 150)
    args.warmup = args.warmup or (1 if args.smoke else 20)
    args.batches = args.batches or ([8, 16] if args.smoke else [64, 128, 256])
    if args.smoke:
        args.compile = False  # inductor on 2 CPU cores takes minutes per network
    tmp = tempfile.TemporaryDirectory() if args.work is None else None
    args.work = Path(tmp.name) if tmp else args.work
    args.work.mkdir(parents=True, exist_ok=True)
    t_start = time.perf_counter()
    label = "CPU smoke run, not a measurement" if args.smoke or args.device == "cpu" else "GPU measurement"
    res = {"label": label, "machine": machine(args.device), "command": " ".join(["python", *sys.argv]),
           "steps_per_row": args.steps, "warmup": args.warmup, "steps": []}
    images = train_images(args)
    res["data"] = {"train_images": int(len(images)), "shape": list(images.shape[1:])}
    for row in plan(args):
        if time.perf_counter() - t_start > args.time_limit:
            res["steps"].append({**row, "status": "not measured (time limit)"})
            continue
        t0 = time.perf_counter()
        row["img_s"], row["host_syncs"] = run_row(args, images, row)
        row["row_seconds"] = round(time.perf_counter() - t0, 1)
        res["steps"].append(row)
        print(json.dumps(row), flush=True)
        save(res, args.out)
    if args.eval:
        res["evaluation"] = evaluation(args, args.time_limit + 30 - (time.perf_counter() - t_start))
    res["total_seconds"] = round(time.perf_counter() - t_start, 1)
    save(res, args.out)
    print(markdown(res))
    if tmp:
        tmp.cleanup()


if __name__ == "__main__":
    main()
