"""Data-layer throughput on the shared CelebA subset (6,000 JPEGs, 178x218 -> crop 140 -> 64x64).

(a) cache build: ``ganlab.data.sources.prepare`` cold (empty cache dir) vs a plain torchvision
    ``ImageFolder`` pass (PIL decode + CenterCrop + Resize, results thrown away), both with the
    same number of processes;
(b) training batches (64): the lead's ``ArrayBatchLoader`` reading the cache memmap vs a
    ``torch.utils.data.DataLoader`` with 2 workers decoding every step;
(c) peak RSS (VmHWM) of each of those, measured in a fresh process per part.

Usage: python experiments/data_throughput/bench.py [--root DIR] [--procs 2] [--epochs 5]
Nothing is written into the repository: caches go to a temporary folder.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RESOLUTION, CROP, BATCH = 64, 140, 64
REPO = Path(__file__).resolve().parents[2]


def default_root() -> Path:
    data = os.environ.get("GANLAB_DATA") or str(REPO.parent / "shared" / "data")
    return Path(data) / "celeba-subset"


def _status_mb(field: str, pid: str = "self") -> float | None:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def peak_rss_mb() -> float:
    """VmHWM of this process (since start, or since :func:`reset_peak`)."""
    hwm = _status_mb("VmHWM")
    return hwm if hwm is not None else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def reset_peak() -> bool:
    """Restart VmHWM at the current RSS (Linux >= 4.0: write 5 to clear_refs)."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def pss_mb(pids) -> float:
    """Proportional set size summed over processes (shared pages split fairly)."""
    total = 0.0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/smaps_rollup") as f:
                total += next(int(ln.split()[1]) for ln in f if ln.startswith("Pss:")) / 1024
        except (OSError, StopIteration):
            pass
    return total


def loop_memory(start_rss: float, worker_pids=()) -> dict:
    """Memory while iterating: this process's peak over the loop, and PSS of it + its workers now."""
    return {"rss_before": start_rss, "loop_peak": peak_rss_mb(),
            "pss_all": pss_mb(["self", *worker_pids]), "n_procs": 1 + len(worker_pids)}


# -- parts (each runs in its own process) ------------------------------------------------------
def _prepare(root: Path, cache: Path, procs: int):
    from ganlab.data.sources import CelebA, prepare

    return prepare(CelebA, root, resolution=RESOLUTION, crop=CROP, resize_filter="bilinear",
                   cache_dir=cache, num_workers=procs, progress=False)


def part_build(root: Path, cache: Path, procs: int, epochs: int) -> dict:
    import ganlab.data.sources  # noqa: F401  (imports outside the timed region)

    start = _status_mb("VmRSS")
    reset_peak()
    t0 = time.perf_counter()
    d = _prepare(root, cache, procs)
    dt = time.perf_counter() - t0
    return {"images": len(d), "seconds": dt, "rate": len(d) / dt, "unit": "images/s",
            "workers": d.manifest["workers"], **loop_memory(start)}


def _imagefolder(root: Path):
    from torchvision import datasets, transforms

    tf = transforms.Compose([transforms.CenterCrop(CROP), transforms.Resize(RESOLUTION), transforms.PILToTensor()])
    return datasets.ImageFolder(str(root), transform=tf)  # class folder: img_align_celeba


def _dataloader(root: Path, procs: int):
    import torch

    return torch.utils.data.DataLoader(_imagefolder(root), batch_size=BATCH, shuffle=True, num_workers=procs,
                                       drop_last=True, persistent_workers=False)


def part_plain(root: Path, cache: Path, procs: int, epochs: int) -> dict:
    import torch

    dl = torch.utils.data.DataLoader(_imagefolder(root), batch_size=BATCH, num_workers=procs)
    n, dt, mem = _drain(dl, count_images=True)
    return {"images": n, "seconds": dt, "rate": n / dt, "unit": "images/s", "workers": procs, **mem}


def _drain(dl, count_images: bool) -> tuple[int, float, dict]:
    """Iterate a DataLoader once; sample memory (with its worker processes) at the last batch."""
    start = _status_mb("VmRSS")
    reset_peak()
    t0 = time.perf_counter()
    it = iter(dl)
    n, mem = 0, {}
    for i, (x, _y) in enumerate(it):
        n += len(x) if count_images else 1
        if i == len(dl) - 1:
            pids = [w.pid for w in getattr(it, "_workers", [])]  # private, but stable for years
            mem = loop_memory(start, pids)
    return n, time.perf_counter() - t0, mem


def part_cached_batches(root: Path, cache: Path, procs: int, epochs: int) -> dict:
    import numpy as np

    from ganlab.data.loader import ArrayBatchLoader

    d = _prepare(root, cache, procs)  # a cache hit: built by part_build
    assert not d.manifest["cache"]["built"]
    loader = ArrayBatchLoader(d.images, d.labels, np.arange(len(d)), BATCH, hflip=True, seed=0)
    start = _status_mb("VmRSS")
    reset_peak()
    t0 = time.perf_counter()
    n = 0
    for _ in range(epochs):
        for x, _y, _f in loader:
            n += 1
    dt = time.perf_counter() - t0
    return {"batches": n, "seconds": dt, "rate": n / dt, "unit": "batches/s", "epochs": epochs,
            **loop_memory(start)}


def part_decoded_batches(root: Path, cache: Path, procs: int, epochs: int) -> dict:
    n, dt, mem = _drain(_dataloader(root, procs), count_images=False)
    return {"batches": n, "seconds": dt, "rate": n / dt, "unit": "batches/s", "epochs": 1, "workers": procs, **mem}


PARTS = {
    "build": part_build,
    "plain": part_plain,
    "cached_batches": part_cached_batches,
    "decoded_batches": part_decoded_batches,
}


def run_part(name: str, args) -> dict:
    cmd = [sys.executable, __file__, "--part", name, "--root", str(args.root), "--cache", str(args.cache),
           "--procs", str(args.procs), "--epochs", str(args.epochs)]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def median_run(runs: list[dict]) -> dict:
    """The run with the median rate (its memory figures come along), plus all rates."""
    ordered = sorted(runs, key=lambda r: r["rate"])
    return {**ordered[len(ordered) // 2], "all_rates": [round(r["rate"], 1) for r in runs]}


def cpu_model() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
        return next(ln.split(":", 1)[1].strip() for ln in out.splitlines() if ln.startswith("Model name"))
    except (OSError, StopIteration):
        return platform.processor() or "unknown"


def _mem(r: dict) -> str:
    grow = r["loop_peak"] - r["rss_before"]
    text = f"{r['loop_peak']:,.0f} MB (+{grow:,.0f} MB over the {r['rss_before']:,.0f} MB before)"
    if r["n_procs"] > 1:
        text += f"; PSS of all {r['n_procs']} processes {r['pss_all']:,.0f} MB"
    return text


def table(r: dict, args) -> str:
    b, p, c, d = r["build"], r["plain"], r["cached_batches"], r["decoded_batches"]
    rows = [
        (f"(a) cold cache build: ganlab `prepare` ({b['workers']} worker processes)",
         f"{b['rate']:,.0f} images/s ({b['seconds']:.2f} s)", _mem(b)),
        (f"(a) plain torchvision `ImageFolder` pass, DataLoader with {args.procs} workers",
         f"{p['rate']:,.0f} images/s ({p['seconds']:.2f} s)", _mem(p)),
        (f"(b) batches of {BATCH} from the cache: `ArrayBatchLoader` ({c['epochs']} epochs)",
         f"{c['rate']:,.0f} batches/s", _mem(c)),
        (f"(b) batches of {BATCH} decoded per step: DataLoader, {args.procs} workers (1 epoch)",
         f"{d['rate']:,.1f} batches/s", _mem(d)),
    ]
    lines = ["| measurement | throughput | (c) peak RSS of the main process while iterating |",
             "| --- | ---: | --- |"]
    lines += [f"| {a} | {t} | {m} |" for a, t, m in rows]
    lines.append("")
    lines.append(f"cache build vs plain decode pass: {b['rate'] / p['rate']:.2f}x; "
                 f"cached vs per-step-decoded training batches: **{c['rate'] / d['rate']:,.0f}x**")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--root", type=Path, default=default_root())
    ap.add_argument("--procs", type=int, default=2, help="decode processes for both build and DataLoader")
    ap.add_argument("--epochs", type=int, default=5, help="epochs over the cache for (b)")
    ap.add_argument("--repeat", type=int, default=3, help="runs of every part; the table shows medians")
    ap.add_argument("--part", choices=sorted(PARTS))
    ap.add_argument("--cache", type=Path)
    ap.add_argument("--out", type=Path, help="folder for results.json and results.md (the figures the README quotes)")
    args = ap.parse_args()
    if args.part:
        res = PARTS[args.part](args.root, args.cache, args.procs, args.epochs)
        res["process_peak"] = peak_rss_mb() if "loop_peak" not in res else res["loop_peak"]
        print(json.dumps(res))
        return
    if not (args.root / "list_attr_celeba.txt").is_file():
        sys.exit(f"no CelebA subset at {args.root} (set GANLAB_DATA or --root)")
    runs = []
    for _ in range(args.repeat):
        with tempfile.TemporaryDirectory(prefix="ganlab-bench-") as tmp:  # a cold cache each time
            args.cache = Path(tmp)
            runs.append({name: run_part(name, args) for name in PARTS})
    results = {name: median_run([r[name] for r in runs]) for name in PARTS}
    head = (f"machine: {os.cpu_count()} CPU cores ({len(os.sched_getaffinity(0))} usable), {cpu_model()}; "
            f"python {platform.python_version()}; load average after: {os.getloadavg()[0]:.1f}\n"
            f"data: {results['build']['images']} images from {args.root}, {RESOLUTION}x{RESOLUTION}, crop {CROP}, "
            f"bilinear; medians of {args.repeat} runs\n")
    print(head)
    print(table(results, args))
    print("\n" + json.dumps(results, indent=1))
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        meta = {"command": "python " + " ".join(sys.argv), "when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
                "load_average_after": os.getloadavg()}
        (args.out / "results.json").write_text(json.dumps({**meta, "medians": results, "runs": runs}, indent=1))
        (args.out / "results.md").write_text(f"Command: `{meta['command']}` ({meta['when']})\n\n{head}\n"
                                             f"{table(results, args)}\n")


if __name__ == "__main__":
    main()
