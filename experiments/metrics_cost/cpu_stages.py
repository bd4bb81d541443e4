"""Where InceptionV3 spends CPU time, per stage: torch-fidelity's forward vs ganlab's fast path.

    python experiments/metrics_cost/cpu_stages.py --batch-size 16 --out experiments/metrics_cost/results/cpu_speed

Each stage of torch-fidelity's ``FeatureExtractorInceptionV3.forward`` and of
:class:`ganlab.metrics.inception_cpu.FastInceptionV3` runs alone on the previous stage's output (random 28x28 uint8 images, resized to 299x299), timed in process CPU time (so other
jobs on a shared machine count less than in wall time; best of ``--repeats``; every stage on the
whole batch, i.e. without the fast path's stem chunking); FLOPs from
``torch.utils.flop_counter`` (one multiply-add = 2 FLOPs). Near the core's float32 peak there is
little left for any float32 runtime to gain. Writes ``<out>/stages.json`` and ``<out>/stages.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from ganlab.metrics.inception import InceptionExtractor  # noqa: E402
from ganlab.metrics.inception_cpu import STAGES  # noqa: E402
from torch_fidelity.interpolate_compat_tensorflow import interpolate_bilinear_2d_like_tensorflow1x as tf1  # noqa: E402


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--weights-path", default=None)
    ap.add_argument("--out", type=Path, default=REPO / "experiments" / "metrics_cost" / "results" / "cpu_speed")
    args = ap.parse_args(argv)
    from torch.utils.flop_counter import FlopCounterMode

    ext = InceptionExtractor(args.weights_path, "cpu", cpu_path="fast")
    fast, tf = ext.fast, ext.model
    bs = args.batch_size
    x = torch.randint(0, 256, (bs, 3, 28, 28), generator=torch.Generator().manual_seed(0), dtype=torch.uint8)
    load0 = os.getloadavg()[0]
    paths = {
        "torch-fidelity": [("resize", lambda z: (tf1(z.float(), size=(299, 299), align_corners=False) - 128) / 128)]
        + [(name, getattr(tf, name)) for name in STAGES],
        "ganlab-fast": [("resize", lambda z: fast.resize(z).contiguous(memory_format=torch.channels_last))]
        + [(name, getattr(fast.net, name)) for name in STAGES],
    }
    rows = {name: {"stage": name} for name, _ in paths["ganlab-fast"]}
    with torch.no_grad():
        for path, stages in paths.items():
            y = x
            for name, stage in stages:
                with FlopCounterMode(display=False) as counter:
                    out = stage(y)
                cpu = []
                for _ in range(args.repeats):
                    c0 = time.process_time()
                    stage(y)
                    cpu.append(time.process_time() - c0)
                ms = 1000 * min(cpu) / bs
                gflop = counter.get_total_flops() / bs / 1e9
                rows[name]["gflop_per_image"] = gflop
                rows[name][path] = {"cpu_ms_per_image": ms, "gflop_per_cpu_s": gflop / ms * 1000 if ms > 0 else 0.0}
                y = out
    rows = list(rows.values())
    total = {p: sum(r[p]["cpu_ms_per_image"] for r in rows) for p in paths}
    gflop = sum(r["gflop_per_image"] for r in rows)
    res = {"command": "python experiments/metrics_cost/cpu_stages.py " + " ".join(sys.argv[1:] if argv is None else argv),
           "torch": torch.__version__, "threads": torch.get_num_threads(), "batch_size": bs,
           "loadavg_start": load0, "loadavg_end": os.getloadavg()[0], "stages": rows,
           "total": {"gflop_per_image": gflop, **{p: {"cpu_ms_per_image": ms, "gflop_per_cpu_s": gflop / ms * 1000,
                                                      "images_per_cpu_s": 1000 / ms} for p, ms in total.items()}}}
    lines = [f"Command: `{res['command']}`; torch {res['torch']}, {res['threads']} thread(s), batch {bs}, load average "
             f"{load0:.1f} -> {res['loadavg_end']:.1f}.", "",
             "| stage | GFLOP / image | torch-fidelity CPU-ms / image | ganlab fast CPU-ms / image | ratio "
             "| ganlab fast GFLOP per CPU-second |", "| --- | ---: | ---: | ---: | ---: | ---: |"]
    for r in rows:
        a, b = r["torch-fidelity"]["cpu_ms_per_image"], r["ganlab-fast"]["cpu_ms_per_image"]
        lines.append(f"| {r['stage']} | {r['gflop_per_image']:.3f} | {a:.1f} | {b:.1f} | {a / b if b else 0:.2f} | "
                     f"{r['ganlab-fast']['gflop_per_cpu_s']:.1f} |")
    a, b = total["torch-fidelity"], total["ganlab-fast"]
    lines.append(f"| **total** | {gflop:.2f} | {a:.1f} | {b:.1f} | **{a / b:.2f}** | {gflop / b * 1000:.1f} |")
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "stages.json").write_text(json.dumps(res, indent=2))
    (args.out / "stages.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return res


if __name__ == "__main__":
    main()
