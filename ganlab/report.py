"""``python -m ganlab.report <multirun dir>``: one table for a sweep.

For every job folder below the multirun folder (a folder with ``.hydra/overrides.yaml``) it reads

- the job's overrides (``.hydra/overrides.yaml``; the keys whose values differ between jobs
  become columns, the shared ones are listed above the table),
- its final and best metrics (``final_metrics.json``, written by the summary callback; a job
  without one - killed, or from an older ganlab - falls back to ``csv/metrics.csv``),

sorts the jobs by the optimized metric (``optimized_metric`` of the jobs' config, else
``metrics/fid``, else ``loss/g``; ``--metric`` chooses another, ``--mode`` its direction) and
writes, into the multirun folder (or ``--out``):

- ``sweep_report.md`` (also printed) and ``sweep_report.csv``: the table;
- ``sweep_<metric>.png``: the metric (``--plot-metric``; default the sort metric) over generator
  steps for all jobs, from each job's ``csv/metrics.csv``.

Jobs that failed (e.g. a non-finite loss) or have no value are listed last. For Optuna sweeps,
the sweeper's ``optimization_results.yaml`` (best parameters and value) is quoted as well.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import re
import sys
from pathlib import Path
from typing import Any, Iterable, Sequence

import yaml

from ganlab.data.layouts import natural_key
LOSS_KEYS = ("loss/d", "loss/g")
STEP_COLUMNS = ("metrics/generator_step", "generator_step", "step", "epoch")


# -- reading one job --------------------------------------------------------------------------
def find_jobs(root: Path) -> list[Path]:
    """Job folders below ``root`` (at any depth up to 4), in natural order (0, 1, 2, ..., 10)."""
    jobs = []
    for overrides in root.glob("**/.hydra/overrides.yaml"):
        job = overrides.parent.parent
        rel = job.relative_to(root)
        if len(rel.parts) <= 4 and not any(p.startswith(".") for p in rel.parts):
            jobs.append(job)
    return sorted(jobs, key=lambda p: natural_key(p.relative_to(root).as_posix()))


def read_overrides(job: Path) -> dict[str, str]:
    items = yaml.safe_load((job / ".hydra" / "overrides.yaml").read_text()) or []
    out = {}
    for item in items:
        key, _, value = str(item).partition("=")
        out[key] = value
    return out


def read_job_config(job: Path) -> dict:
    path = job / ".hydra" / "config.yaml"
    if not path.is_file():
        return {}
    try:
        return yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError:
        return {}


def read_metrics_csv(path: Path) -> list[dict[str, float]]:
    """Rows of a Lightning CSV log with the empty cells dropped and numbers parsed."""
    if not path.is_file():
        return []
    rows = []
    with open(path, newline="") as f:
        for row in csv.DictReader(f):
            parsed = {}
            for k, v in row.items():
                if k is None or v in (None, ""):
                    continue
                try:
                    parsed[k] = float(v)
                except ValueError:
                    continue
            rows.append(parsed)
    return rows


def job_csv(job: Path) -> Path:
    default = job / "csv" / "metrics.csv"
    if default.is_file():
        return default
    found = [p for p in job.glob("**/metrics.csv") if "wandb" not in p.parts]
    return found[0] if found else default


def mode_of(metric: str, explicit: str | None = None) -> str:
    if explicit:
        return explicit
    from ganlab.metrics.core import metric_mode

    return metric_mode(metric)


def summary_from_csv(rows: list[dict[str, float]]) -> dict[str, Any]:
    """A ``final_metrics.json``-like summary for a job that has none (last and best values)."""
    final: dict[str, float] = {}
    best: dict[str, dict] = {}
    for row in rows:
        step = row.get("generator_step", row.get("metrics/generator_step", row.get("step", 0.0)))
        for k, v in row.items():
            if k in STEP_COLUMNS or math.isnan(v):
                continue
            final[k] = v
            mode = mode_of(k)
            b = best.get(k)
            if b is None or (v > b["value"] if mode == "max" else v < b["value"]):
                best[k] = {"value": v, "generator_step": int(step), "mode": mode}
    steps = [r["generator_step"] for r in rows if "generator_step" in r]
    return {"status": "no summary", "generator_step": int(max(steps)) if steps else None,
            "final": final, "best": best}


class Job:
    def __init__(self, root: Path, path: Path) -> None:
        self.path = path
        self.name = str(path.relative_to(root)) or "."
        self.overrides = read_overrides(path)
        self.config = read_job_config(path)
        summary_path = path / "final_metrics.json"
        self.summary = json.loads(summary_path.read_text()) if summary_path.is_file() else None
        self.rows = read_metrics_csv(job_csv(path))
        if self.summary is None:
            self.summary = summary_from_csv(self.rows)
            if not self.rows:
                self.summary["status"] = "no results"

    @property
    def status(self) -> str:
        return str(self.summary.get("status", "?"))

    def final(self, key: str) -> float | None:
        return _clean(self.summary.get("final", {}).get(key))

    def best(self, key: str) -> float | None:
        return _clean(self.summary.get("best", {}).get(key, {}).get("value"))

    def best_step(self, key: str) -> int | None:
        return self.summary.get("best", {}).get(key, {}).get("generator_step")

    def keys(self) -> set[str]:
        return set(self.summary.get("final", {})) | set(self.summary.get("best", {}))

    def curve(self, metric: str) -> tuple[list[float], list[float]]:
        xs, ys = [], []
        for row in self.rows:
            if metric not in row:
                continue
            prefix = metric.rsplit("/", 1)[0] + "/" if "/" in metric else ""
            for col in (f"{prefix}generator_step", *STEP_COLUMNS):
                if col in row:
                    xs.append(row[col])
                    ys.append(row[metric])
                    break
        return xs, ys


def _clean(v: Any) -> float | None:
    if v is None:
        return None
    try:
        x = float(v)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(x) else x


# -- the table -----------------------------------------------------------------------------------
def default_metric(jobs: Sequence[Job]) -> str:
    for job in jobs:
        name = job.config.get("optimized_metric")
        if name:
            return str(name)
    keys = set().union(*(j.keys() for j in jobs)) if jobs else set()
    return "metrics/fid" if "metrics/fid" in keys else "loss/g"


def split_overrides(jobs: Sequence[Job]) -> tuple[list[str], dict[str, str]]:
    """(keys whose value differs between jobs, {shared key: value})."""
    keys: list[str] = []
    for job in jobs:
        keys += [k for k in job.overrides if k not in keys]
    varying = [k for k in keys if len({job.overrides.get(k) for job in jobs}) > 1]
    shared = {k: jobs[0].overrides[k] for k in keys if k not in varying and jobs}
    if len(jobs) == 1:  # a single job: show what was set for it
        varying, shared = keys, {}
    return varying, shared


def build_table(jobs: Sequence[Job], metric: str, mode: str, keys: Sequence[str] | None = None,
                by: str = "final") -> tuple[list[str], list[list[Any]], list[str], dict[str, str]]:
    varying, shared = split_overrides(jobs)
    all_keys = set().union(*(j.keys() for j in jobs)) if jobs else set()
    if keys is None:
        others = sorted(k for k in all_keys if k.startswith("metrics/") and k != metric)
        keys = [k for k in (*others, *LOSS_KEYS) if k in all_keys and k != metric]
    header = ["rank", "job", *varying, f"final {metric}", f"best {metric}", "best step"]
    for k in keys:
        header += [f"final {k}", f"best {k}"] if k.startswith("metrics/") else [f"final {k}"]
    header += ["generator steps", "seconds", "status"]

    def sort_key(job: Job):  # finished jobs by value, then jobs without one, then failed jobs
        v = job.final(metric) if by == "final" else job.best(metric)
        failed = job.status not in ("completed", "no summary")
        if v is None:
            return (failed, 1, 0.0)
        return (failed, 0, -v if mode == "max" else v)

    rows = []
    for rank, job in enumerate(sorted(jobs, key=sort_key), start=1):
        row: list[Any] = [rank, job.name, *(job.overrides.get(k, "") for k in varying),
                          job.final(metric), job.best(metric), job.best_step(metric)]
        for k in keys:
            row += [job.final(k), job.best(k)] if k.startswith("metrics/") else [job.final(k)]
        row += [job.summary.get("generator_step"), job.summary.get("seconds"), job.status]
        rows.append(row)
    return header, rows, varying, shared


def _fmt(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.4g}"
    text = str(v)
    if len(text) > 8 and re.fullmatch(r"[-+]?\d*\.?\d+(e[-+]?\d+)?", text):  # long numbers from Optuna
        text = f"{float(text):.4g}"
    return text.replace("|", "\\|")


def to_markdown(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(" --- " for _ in header) + "|"]
    lines += ["| " + " | ".join(_fmt(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def write_csv(path: Path, header: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows([["" if v is None else v for v in row] for row in rows])


# -- the plot --------------------------------------------------------------------------------------
def plot_curves(jobs: Sequence[Job], metric: str, varying: Sequence[str], path: Path) -> bool:
    curves = [(job, *job.curve(metric)) for job in jobs]
    curves = [c for c in curves if c[1]]
    if not curves:
        return False
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5))
    for job, xs, ys in curves:
        label = ", ".join(f"{k.split('.')[-1]}={job.overrides.get(k, '')}" for k in varying) or job.name
        ax.plot(xs, ys, marker="o" if len(xs) < 30 else None, markersize=4, linewidth=1.2,
                label=f"{job.name}: {label}" if varying else label)
    ax.set_xlabel("generator step")
    ax.set_ylabel(metric)
    ax.set_title(f"{metric} per job")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="best")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return True


# -- the report ------------------------------------------------------------------------------------
def make_report(root: str | Path, metric: str | None = None, mode: str | None = None, out: str | Path | None = None,
                plot_metric: str | None = None, keys: Sequence[str] | None = None, by: str = "final") -> dict[str, Any]:
    root = Path(root)
    jobs = [Job(root, p) for p in find_jobs(root)]
    if not jobs:
        raise FileNotFoundError(f"no job folders (with .hydra/overrides.yaml) under {root}")
    metric = metric or default_metric(jobs)
    mode = mode_of(metric, mode)
    header, rows, varying, shared = build_table(jobs, metric, mode, keys, by)
    out = Path(out) if out else root
    out.mkdir(parents=True, exist_ok=True)
    plot_metric = plot_metric or metric
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", plot_metric)
    plot_path = out / f"sweep_{safe}.png"
    plotted = plot_curves(jobs, plot_metric, varying, plot_path)

    md = [f"# Sweep report: `{root}`", "",
          f"{len(jobs)} job(s), sorted by the {by} `{metric}` ({'lower' if mode == 'min' else 'higher'} is better).", ""]
    if shared:
        md += ["Shared overrides: " + ", ".join(f"`{k}={v}`" for k, v in shared.items()), ""]
    md += [to_markdown(header, rows), ""]
    optuna = root / "optimization_results.yaml"
    if optuna.is_file():
        res = yaml.safe_load(optuna.read_text()) or {}
        md += ["Optuna (`optimization_results.yaml`): best value "
               f"{_fmt(_clean(res.get('best_value')))}, best params "
               + ", ".join(f"`{k}={v}`" for k, v in (res.get("best_params") or {}).items()), ""]
    if plotted:
        md += [f"![{plot_metric}]({plot_path.name})", ""]
    else:
        md += [f"(no `{plot_metric}` values in the jobs' csv/metrics.csv: no plot)", ""]
    text = "\n".join(md)
    (out / "sweep_report.md").write_text(text)
    write_csv(out / "sweep_report.csv", header, rows)
    return {"markdown": text, "header": header, "rows": rows, "metric": metric, "mode": mode,
            "jobs": jobs, "plot": plot_path if plotted else None, "out": out}


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m ganlab.report", description=__doc__.split("\n\n")[0])
    p.add_argument("multirun_dir", help="a Hydra multirun folder (e.g. logs/train/multiruns/<date_time>)")
    p.add_argument("--metric", help="sort by this metric (default: the jobs' optimized_metric, else metrics/fid, else loss/g)")
    p.add_argument("--mode", choices=("min", "max"), help="direction of --metric (default: max for precision/recall/..., else min)")
    p.add_argument("--by", choices=("final", "best"), default="final", help="sort by the final or the best value")
    p.add_argument("--plot-metric", help="metric to plot over generator steps (default: the sort metric)")
    p.add_argument("--keys", help="comma-separated extra metric columns (default: all metrics/* and losses)")
    p.add_argument("--out", help="output folder (default: the multirun folder)")
    args = p.parse_args(argv)
    keys = [k.strip() for k in args.keys.split(",") if k.strip()] if args.keys else None
    try:
        rep = make_report(args.multirun_dir, args.metric, args.mode, args.out, args.plot_metric, keys, args.by)
    except FileNotFoundError as err:
        print(f"ganlab.report: {err}", file=sys.stderr)
        return 2
    print(rep["markdown"])
    print(f"wrote {rep['out'] / 'sweep_report.md'}, {rep['out'] / 'sweep_report.csv'}"
          + (f", {rep['plot']}" if rep["plot"] else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
