"""Tables, sample grids and FID curves of a benchmark study from its finished jobs (``result.json``).

Called by ``run.py`` at the end of every run and by ``run.py --table NAME --aggregate``. Every number in
``results.md`` comes from a ``result.json`` of the study folder, which holds the commands, CPU seconds,
load averages, machine and versions; ``results.json`` collects them.
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path
from typing import Any

from experiments.benchmark.run import Table, job_name, machine


def mean_std(values: list[float]) -> str:
    if not values:
        return "not run yet"
    each = " / ".join(f"{v:.1f}" for v in values)
    if len(values) == 1:
        return f"{values[0]:.1f} (1 seed)"
    return f"{statistics.mean(values):.1f} ± {statistics.stdev(values):.1f} ({len(values)} seeds: {each})"


def _fid(result: dict, point: str) -> float | None:
    s = result["scores"].get(point)
    return None if s is None else float(s["values"]["fid"])


def load_results(work: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted(work.glob("*/result.json"))]


def write_results(table: Table, work: Path, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    results = load_results(work)
    (out / "results.json").write_text(json.dumps(
        {"table": table.name, "title": table.title, "protocol": table.protocol, "paper_source": table.paper_source,
         "aggregated_on": machine(), "jobs": results}, indent=2))
    md = fashion_md(table, results, work) if not table.cpu_hours else faces_md(table, results)
    (out / "results.md").write_text(md)
    for r in results:
        sample_grid(table, work / job_name(r["row"], r["seed"]), out / f"samples_{job_name(r['row'], r['seed'])}.png")
    curve_plot(table, results, work, out / "fid_curve.png")
    print(md)


def _cpu_h(results: list[dict], key: str) -> str:
    vals = [r[key] / 3600 for r in results if r.get(key) is not None]
    return "-" if not vals else f"{statistics.mean(vals):.2f}"


def fashion_md(table: Table, results: list[dict], work: Path) -> str:
    lines = [f"# {table.title}", "", f"Protocol: {table.protocol}.", "",
             f"Counts recorded by the evaluations: {recorded_counts(results)}.", "",
             f"Paper column: {table.paper_source}.", "",
             "| networks | loss | paper FID | ours FID (EMA G) | ours FID (raw G) | KID x1e3 (EMA) | "
             "train CPU-h / job | score CPU-h / job | experiment |",
             "|---|---|---:|---:|---:|---:|---:|---:|---|"]
    for row in table.rows:
        rs = sorted((r for r in results if r["row"] == row.name), key=lambda r: r["seed"])
        ema = [f for f in (_fid(r, "ema") for r in rs) if f is not None]
        raw = [f for f in (_fid(r, "raw") for r in rs) if f is not None]
        kid = [1e3 * r["scores"]["ema"]["values"]["kid"] for r in rs if "kid" in r["scores"].get("ema", {}).get("values", {})]
        paper = "-" if row.paper is None else f"{row.paper[0]} ± {row.paper[1]}"
        kid_s = "-" if not kid else f"{statistics.mean(kid):.1f}"
        lines.append(f"| {row.networks} | {row.loss} | {paper} | {mean_std(ema)} | {mean_std(raw)} | {kid_s} | "
                     f"{_cpu_h(rs, 'train_cpu_seconds')} | {_cpu_h(rs, 'score_cpu_seconds')} | "
                     f"`experiment={row.experiment}` |")
    lines += ["", f"Command: `python experiments/benchmark/run.py --table {table.name} --jobs 2`; every job's commands, "
              "CPU seconds, load averages, machine and versions are in results.json. Mean ± sample std over seeds; "
              "the final checkpoint of each run (the paper takes each run's best).",
              "", "FID over training (fid_curve.png): ganlab's in-training metric (callbacks.metrics: "
              f"500 EMA fakes vs 1,000 test images, so higher than the 10k numbers above).", ""]
    return "\n".join(lines) + "\n"


def _num(v: Any) -> str:
    return "-" if v is None else f"{v:.3g}" if isinstance(v, float) else str(v)


def recorded_counts(results: list[dict]) -> str:
    """The image counts the evaluations actually used (from their recorded protocols)."""
    seen = sorted({(s["protocol"].get("n_fake"), s["protocol"].get("n_real"), s["protocol"].get("reference_split"))
                   for r in results for s in r["scores"].values()}, key=str)
    return "; ".join(f"{f} fakes vs {n} real images ({sp} split)" for f, n, sp in seen) or "no evaluation yet"


def faces_md(table: Table, results: list[dict]) -> str:
    marks = [f"{h:g}h" for h in table.cpu_hours]
    lines = [f"# {table.title}", "", f"Protocol: {table.protocol}.", "",
             f"Counts recorded by the evaluations: {recorded_counts(results)}.", "",
             "FID at each budget of training CPU-hours (mean over seeds; each seed in brackets):", "",
             "| arm | " + " | ".join(marks) + " |", "|---|" + "---:|" * len(marks)]
    means: dict[str, dict[str, float]] = {}
    for row in table.rows:
        rs = sorted((r for r in results if r["row"] == row.name), key=lambda r: r["seed"])
        cells = []
        for m in marks:
            vals = [f for f in (_fid(r, m) for r in rs) if f is not None]
            if vals:
                means.setdefault(row.name, {})[m] = statistics.mean(vals)
            cells.append(mean_std(vals))
        lines.append(f"| {row.label} ({row.networks}) | " + " | ".join(cells) + " |")
    if "ganlab" in means and "plain" in means:
        ratio = [f"{means['ganlab'][m] / means['plain'][m]:.2f}" if m in means["ganlab"] and m in means["plain"]
                 else "-" for m in marks]
        lines.append("| FID ratio ganlab / plain | " + " | ".join(ratio) + " |")
    keys = ("median_distance_ratio", "frac_closer_than_real_median", "fake_nn_min", "real_nn_median")
    mem = [f"| {r['row']} s{r['seed']} | {k} | " + " | ".join(_num(v["memorization"].get(m)) for m in keys) + " |"
           for r in results for k, v in r["scores"].items() if v.get("memorization")]
    if mem:
        lines += ["", "Memorisation check of the final generators (nearest training image in pool3 space, "
                  "ganlab.metrics.memorization):", "", "| job | budget | " + " | ".join(keys) + " |",
                  "|---|---|" + "---:|" * len(keys), *mem]
    lines += ["", f"Command: `python experiments/benchmark/run.py --table {table.name} --jobs 2`."]
    return "\n".join(lines) + "\n"


def sample_grid(table: Table, job_dir: Path, path: Path) -> None:
    """64 generated images of the job's final generator (EMA; noise seed 0), 8 x 8."""
    import torch

    from ganlab.sampling import save_grid

    marks = sorted((job_dir / "train" / "marks").glob("cpu_*h"), key=lambda p: float(p.name[4:-1]))
    if marks and marks[-1].is_dir():  # the plain loop's PNGs at its last CPU-hour mark
        from PIL import Image
        import numpy as np

        files = sorted(marks[-1].glob("*.png"))[:64]
        if not files:
            return
        imgs = torch.stack([torch.from_numpy(np.array(Image.open(f).convert("RGB"))).permute(2, 0, 1) for f in files])
    else:
        ckpt = job_dir / "train" / "checkpoints" / "last.ckpt"
        if not ckpt.exists():
            return
        from ganlab.metrics.fakes import GanSamples
        from ganlab.models import load_gan

        imgs = GanSamples.create(load_gan(str(ckpt)), 64, seed=0).images(slice(0, 64))
    save_grid(imgs, path, nrow=8)


def curve_plot(table: Table, results: list[dict], work: Path, path: Path) -> None:
    """Fashion: in-training FID (train/metrics.json history) per job against generator steps.
    Faces: the scored FID of every CPU-hour snapshot against CPU-hours."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    drawn = 0
    if table.cpu_hours:
        for r in results:
            pts = [(h, _fid(r, f"{h:g}h")) for h in table.cpu_hours]
            pts = [(h, f) for h, f in pts if f is not None]
            if pts:
                ax.plot(*zip(*pts), marker="o", label=job_name(r["row"], r["seed"]))
                drawn += 1
        ax.set_xscale("log")
        ax.set_xlabel("training CPU-hours")
        ax.set_ylabel("FID (3,000 fakes vs 6,000 faces)")
    else:
        for d in sorted(work.glob("*/train/metrics.json")):
            hist = json.loads(d.read_text()).get("history", [])
            pts = [(h["generator_step"], h["fid"]) for h in hist if "fid" in h]
            if pts:
                ax.plot(*zip(*pts), marker=".", label=d.parent.parent.name)
                drawn += 1
        ax.set_xlabel("generator steps")
        ax.set_ylabel("in-training FID (500 EMA fakes vs 1,000 test images)")
    if not drawn:
        plt.close(fig)
        return
    ax.set_yscale("log")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7)
    ax.set_title(table.title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


__all__ = ["write_results", "load_results", "mean_std"]
