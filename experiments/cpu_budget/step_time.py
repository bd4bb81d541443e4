"""Seconds per DCGAN training step at base width 64 / 32 / 16 (the micro-benchmark behind
``faces_cpu30``'s base width 16).

    OMP_NUM_THREADS=1 python experiments/cpu_budget/step_time.py [--widths 64 32 16] [--steps 3]

ganlab's DCGAN G and D (``ganlab.models.networks.dcgan``) at 64 px, batch 64, one thread: one D
step (non-saturating BCE on a real and a fake batch) and one G step through a frozen D, each with
Adam(2e-4, 0.5/0.999) (``plain_step`` of ``experiments/overhead/bench.py``), timed for ``--steps`` steps after one warm-up step. Both the process CPU time and the
wall time per step are recorded: on a shared machine the wall time depends on the load, the CPU
time much less. Writes ``results/step_time.json`` and ``results/step_time.md`` beside this file.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "overhead"))
from bench import ADAM, plain_step  # noqa: E402  (experiments/overhead: the same textbook step)

from ganlab.models.networks.dcgan import DCGANDiscriminator, DCGANGenerator  # noqa: E402

RESOLUTION, BATCH, Z = 64, 64, 100


def time_width(width: int, steps: int) -> dict:
    torch.manual_seed(0)
    G = DCGANGenerator(z_dim=Z, resolution=RESOLUTION, base_width=width)
    D = DCGANDiscriminator(resolution=RESOLUTION, base_width=width)
    opt_g, opt_d = ADAM(G.parameters()), ADAM(D.parameters())
    real = torch.rand(BATCH, 3, RESOLUTION, RESOLUTION) * 2 - 1
    plain_step(G, D, opt_g, opt_d, real, torch.randn(BATCH, Z))  # warm-up
    c0, w0 = time.process_time(), time.perf_counter()
    for _ in range(steps):
        plain_step(G, D, opt_g, opt_d, real, torch.randn(BATCH, Z))
    cpu, wall = (time.process_time() - c0) / steps, (time.perf_counter() - w0) / steps
    return {"base_width": width, "cpu_s_per_step": round(cpu, 3), "wall_s_per_step": round(wall, 3),
            "params_g": sum(p.numel() for p in G.parameters()), "params_d": sum(p.numel() for p in D.parameters())}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--widths", type=int, nargs="+", default=[64, 32, 16])
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results")
    args = ap.parse_args()
    torch.set_num_threads(1)
    load_before = os.getloadavg()[0]
    rows = [time_width(w, args.steps) for w in args.widths]
    res = {"command": "OMP_NUM_THREADS=1 python experiments/cpu_budget/step_time.py " + " ".join(sys.argv[1:]),
           "when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "threads": torch.get_num_threads(),
           "resolution": RESOLUTION, "batch": BATCH, "timed_steps": args.steps,
           "load_average_before": load_before, "load_average_after": os.getloadavg()[0], "rows": rows}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "step_time.json").write_text(json.dumps(res, indent=1))
    lines = [f"Command: `{res['command']}` ({res['when']}, 1 thread, load average {load_before:.1f} before, "
             f"{res['load_average_after']:.1f} after)", "",
             "| base width | CPU s / step | wall s / step | G params | D params |", "|---:|---:|---:|---:|---:|"]
    lines += [f"| {r['base_width']} | {r['cpu_s_per_step']} | {r['wall_s_per_step']} | {r['params_g']:,} | "
              f"{r['params_d']:,} |" for r in rows]
    (args.out / "step_time.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
