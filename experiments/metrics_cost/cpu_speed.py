"""CPU feature-extraction speed: torch-fidelity's InceptionV3 forward vs ganlab's FastInceptionV3.

    python experiments/metrics_cost/cpu_speed.py --n 32 --batch-sizes 16 64 --repeats 3 \
        --out experiments/metrics_cost/results/cpu_speed

Images: the first ``--n`` Fashion-MNIST training images (set A) and the first ``--n`` test images
(set B), 28x28 grayscale uint8, fed the "Lucic protocol" way (copied to 3 channels, TF1 bilinear to
299x299, pool3) - by both extractors, which are :class:`ganlab.metrics.inception.InceptionExtractor`
with ``cpu_path="fidelity"`` (torch-fidelity's ``FeatureExtractorInceptionV3.forward``, untouched)
and ``cpu_path="fast"`` (ganlab's default CPU path), same weights file, same process.

Timing is interleaved: for each repeat and batch size, the images go through in batches, and each
batch is extracted by one extractor and then the other (which one goes first alternates), so a
change of machine load hits both alike. A repeat's images/s is its images over its summed batch
times; the table gives the median over repeats and the median of the per-repeat ratios.

Equality: per-feature differences (max abs, max abs / max |feature|) and FID, KID and
precision/recall of A vs B computed with torch-fidelity's metric functions from each extractor's
features (ganlab's ``compute_metrics`` calls the same functions), with relative differences.

Writes ``<out>/results.json`` and ``<out>/results.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from ganlab.data.idx import read_idx  # noqa: E402
from ganlab.metrics import compute_metrics  # noqa: E402
from ganlab.metrics.inception import InceptionExtractor  # noqa: E402

METRICS = ("fid", "kid", "precision", "recall")


def fashion_mnist(root: Path, n: int) -> tuple[np.ndarray, np.ndarray]:
    """First ``n`` train and first ``n`` test images as uint8 ``(n, 1, 28, 28)``."""
    out = []
    for split in ("train", "t10k"):
        path = root / f"{split}-images-idx3-ubyte.gz"
        if not path.is_file():
            raise SystemExit(f"cpu_speed: Fashion-MNIST not found: expected {path} (set --data-root)")
        out.append(np.ascontiguousarray(read_idx(path)[:n, None]))
    return out[0], out[1]


def machine() -> dict:
    try:
        model = next(line.split(":", 1)[1].strip() for line in subprocess.run(
            ["lscpu"], capture_output=True, text=True).stdout.splitlines() if line.startswith("Model name"))
    except (OSError, StopIteration):
        model = platform.processor()
    import torch_fidelity

    return {"cpu": model, "cores": os.cpu_count(), "python": platform.python_version(), "torch": torch.__version__,
            "torch_fidelity": torch_fidelity.__version__, "threads": torch.get_num_threads(),
            "platform": platform.platform()}


def timed_interleaved(extractors: dict, images: np.ndarray, batch_size: int, repeat: int) -> dict:
    """Wall and process-CPU seconds per extractor over all ``images`` in batches, alternating which
    extractor goes first."""
    seconds = {name: 0.0 for name in extractors}
    cpu_seconds = {name: 0.0 for name in extractors}
    feats = {name: [] for name in extractors}
    names = list(extractors)
    for b, start in enumerate(range(0, len(images), batch_size)):
        chunk = images[start : start + batch_size]
        order = names if (b + repeat) % 2 == 0 else names[::-1]
        for name in order:
            t0, c0 = time.perf_counter(), time.process_time()
            feats[name].append(extractors[name].extract(chunk, batch_size=batch_size))
            seconds[name] += time.perf_counter() - t0
            cpu_seconds[name] += time.process_time() - c0
    return {"seconds": seconds, "cpu_seconds": cpu_seconds, "features": {k: torch.cat(v) for k, v in feats.items()}}


def metric_values(fa: torch.Tensor, fb: torch.Tensor, n: int) -> dict[str, float]:
    r = compute_metrics(fa, fb, ("fid", "kid", "prc"), kid_subset_size=n)
    return {k: r[k] for k in METRICS}


def rel(a: float, b: float) -> float:
    return abs(a - b) / abs(b) if b != 0 else (0.0 if a == b else float("inf"))


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    default_root = Path(os.environ.get("GANLAB_DATA") or REPO.parent / "shared" / "data") / "fashion-mnist"
    ap.add_argument("--data-root", type=Path, default=default_root, help="folder with the Fashion-MNIST IDX files")
    ap.add_argument("--n", type=int, default=32, help="images per set (A: train, B: test)")
    ap.add_argument("--batch-sizes", type=int, nargs="+", default=[16, 64])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: as started)")
    ap.add_argument("--weights-path", default=None)
    ap.add_argument("--out", type=Path, default=REPO / "experiments" / "metrics_cost" / "results" / "cpu_speed")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    a, b = fashion_mnist(args.data_root, args.n)
    images = np.concatenate([a, b])
    load_start = os.getloadavg()
    t_start = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    t0 = time.perf_counter()
    extractors = {"torch-fidelity": InceptionExtractor(args.weights_path, "cpu", cpu_path="fidelity"),
                  "ganlab-fast": InceptionExtractor(args.weights_path, "cpu", cpu_path="fast")}
    setup_s = time.perf_counter() - t0
    for ext in extractors.values():  # warm-up: allocator, oneDNN primitive caches
        ext.extract(images[:2])

    runs, features = [], None
    for bs in args.batch_sizes:
        for r in range(args.repeats):
            out = timed_interleaved(extractors, images, bs, r)
            rate = {k: len(images) / s for k, s in out["seconds"].items()}
            cpu_rate = {k: len(images) / s for k, s in out["cpu_seconds"].items()}
            runs.append({"batch_size": bs, "repeat": r, "seconds": out["seconds"], "cpu_seconds": out["cpu_seconds"],
                         "images_per_s": rate, "images_per_cpu_s": cpu_rate,
                         "ratio": rate["ganlab-fast"] / rate["torch-fidelity"],
                         "cpu_ratio": cpu_rate["ganlab-fast"] / cpu_rate["torch-fidelity"],
                         "loadavg": os.getloadavg()[0]})
            print(f"batch {bs} repeat {r}: " + ", ".join(f"{k} {v:.2f} images/s" for k, v in rate.items())
                  + f", ratio {runs[-1]['ratio']:.2f} (CPU time {runs[-1]['cpu_ratio']:.2f}), load {runs[-1]['loadavg']:.1f}", flush=True)
            if features is None:
                features = out["features"]
            else:  # every pass gives the same features (deterministic kernels, any batch size)
                for k, f in out["features"].items():
                    runs[-1].setdefault("max_abs_diff_vs_first_pass", {})[k] = float((f - features[k]).abs().max())

    table = []
    for bs in args.batch_sizes:
        mine = [r for r in runs if r["batch_size"] == bs]
        med = {k: statistics.median(r["images_per_s"][k] for r in mine) for k in extractors}
        table.append({"batch_size": bs, "images": len(images), "repeats": len(mine),
                      "median_images_per_s": med, "median_ratio": statistics.median(r["ratio"] for r in mine),
                      "ratio_of_medians": med["ganlab-fast"] / med["torch-fidelity"],
                      "ratios": [r["ratio"] for r in mine],
                      "median_images_per_cpu_s": {k: statistics.median(r["images_per_cpu_s"][k] for r in mine)
                                                  for k in extractors},
                      "median_cpu_ratio": statistics.median(r["cpu_ratio"] for r in mine)})

    ref, fast = features["torch-fidelity"], features["ganlab-fast"]
    diff = (fast - ref).abs()
    n = args.n
    values = {k: metric_values(f[:n], f[n:], n) for k, f in features.items()}
    equality = {
        "features_max_abs_diff": float(diff.max()),
        "features_max_abs": float(ref.abs().max()),
        "features_max_abs_diff_over_max_abs": float(diff.max() / ref.abs().max()),
        "features_mean_abs_diff": float(diff.mean()),
        "metrics": values,
        "metrics_rel_diff": {m: rel(values["ganlab-fast"][m], values["torch-fidelity"][m]) for m in METRICS},
    }
    res = {
        "what": "InceptionV3 pool3 feature extraction on CPU: torch-fidelity's forward vs ganlab's FastInceptionV3",
        "command": "python experiments/metrics_cost/cpu_speed.py " + " ".join(sys.argv[1:] if argv is None else argv),
        "started": t_start, "machine": machine(), "loadavg_start": load_start, "loadavg_end": os.getloadavg(),
        "wall_s": time.perf_counter() - t0, "extractor_setup_s": setup_s,
        "data": {"source": str(args.data_root), "set_a": f"Fashion-MNIST train[:{n}]",
                 "set_b": f"Fashion-MNIST test[:{n}]", "shape": list(a.shape[1:]), "dtype": "uint8",
                 "feeding": "grayscale copied to 3 channels, TF1 bilinear to 299x299, pool3"},
        "weights": extractors["ganlab-fast"].weights.as_dict(),
        "throughput": table, "runs": runs, "equality": equality,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps(res, indent=2))
    (args.out / "results.md").write_text(markdown(res))
    print(markdown(res))
    return res


def markdown(res: dict) -> str:
    m = res["machine"]
    lines = [f"# CPU feature extraction: torch-fidelity vs ganlab fast path ({res['started']})", "",
             f"Command: `{res['command']}`", "",
             f"Machine: {m['cpu']}, {m['cores']} cores, Python {m['python']}, torch {m['torch']}, torch-fidelity "
             f"{m['torch_fidelity']}, {m['threads']} intra-op thread(s); load average "
             f"{res['loadavg_start'][0]:.2f} at the start, {res['loadavg_end'][0]:.2f} at the end; "
             f"wall {res['wall_s']:.0f} s. Images: {res['data']['set_a']} + {res['data']['set_b']}, "
             f"{res['data']['feeding']}.", "",
             "| batch | images x repeats | torch-fidelity images/s (median) | ganlab fast images/s (median) "
             "| ratio (median of per-repeat) | per-repeat ratios | images per CPU-second, torch-fidelity / ganlab "
             "(ratio) |",
             "| ---: | ---: | ---: | ---: | ---: | --- | --- |"]
    for t in res["throughput"]:
        med = t["median_images_per_s"]
        lines.append(f"| {t['batch_size']} | {t['images']} x {t['repeats']} | {med['torch-fidelity']:.2f} | "
                     f"{med['ganlab-fast']:.2f} | **{t['median_ratio']:.2f}** | "
                     + ", ".join(f"{r:.2f}" for r in t["ratios"])
                     + f" | {t['median_images_per_cpu_s']['torch-fidelity']:.2f} / "
                     f"{t['median_images_per_cpu_s']['ganlab-fast']:.2f} ({t['median_cpu_ratio']:.2f}) |")
    e = res["equality"]
    lines += ["", f"Features (all {res['throughput'][0]['images']} images): "
              f"max abs diff {e['features_max_abs_diff']:.2e} (features up to {e['features_max_abs']:.2f}; "
              f"ratio {e['features_max_abs_diff_over_max_abs']:.2e}), mean abs diff {e['features_mean_abs_diff']:.2e}.",
              "", "| metric (A vs B) | torch-fidelity features | ganlab fast features | relative difference |",
              "| --- | ---: | ---: | ---: |"]
    for k in METRICS:
        lines.append(f"| {k} | {e['metrics']['torch-fidelity'][k]:.6g} | {e['metrics']['ganlab-fast'][k]:.6g} | "
                     f"{e['metrics_rel_diff'][k]:.2e} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
