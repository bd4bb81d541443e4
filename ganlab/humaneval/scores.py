"""HYPE-infinity scores of a study db: markdown, CSV and a bar chart; and the raw answers as CSV.

Scores (Zhou et al. 2019, HYPE-infinity: the raters' error rate with unlimited viewing time), over
the raters kept after the attention check, for each generated set ``s``:

* ``fake_error``  = answers "real" on images of ``s`` / answers on images of ``s``
* ``real_error``  = answers "fake" on real images / answers on real images (the reals are shared
  by every generated set of the study)
* ``hype``        = (fake_error + real_error) / 2: the error rate on a half-real, half-``s`` mix,
  which is HYPE-infinity's pooled error rate when each rater saw as many reals as fakes of ``s``.

95 % confidence intervals: percentile bootstrap over *raters* (resample raters with replacement,
recompute the pooled rates), as in the paper. 50 % is chance; higher means more convincing fakes.

Attention check: images of the attention set are obviously fake; a rater with more than
``attention_max_errors`` wrong answers on them is excluded from every score (and listed).
Attention answers never count in a score.
"""

from __future__ import annotations

import csv
import io
import os
from typing import Any

import numpy as np

from ganlab.humaneval import study as db


class ReportError(ValueError):
    pass


def _rate(wrong: np.ndarray, n: np.ndarray) -> np.ndarray:
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(n > 0, wrong / np.maximum(n, 1), np.nan)


def rater_table(rows: list[dict], settings: db.StudySettings, attention_max_errors: int) -> list[dict]:
    raters: dict[str, dict] = {}
    for r in rows:
        t = raters.setdefault(r["rater"], {"rater": r["rater"], "rater_number": r["rater_number"], "answered": 0,
                                           "scored": 0, "correct": 0, "real_n": 0, "real_wrong": 0,
                                           "attention_n": 0, "attention_errors": 0, "rt": [],
                                           **{f"fake_n:{s}": 0 for s in settings.fake_sets},
                                           **{f"fake_wrong:{s}": 0 for s in settings.fake_sets}})
        t["answered"] += 1
        if r["kind"] == "attention":
            t["attention_n"] += 1
            t["attention_errors"] += 1 - r["correct"]
            continue
        t["scored"] += 1
        t["correct"] += r["correct"]
        if r["rt_ms"] is not None:
            t["rt"].append(r["rt_ms"])
        if r["kind"] == "real":
            t["real_n"] += 1
            t["real_wrong"] += 1 - r["correct"]
        else:
            t[f"fake_n:{r['set']}"] += 1
            t[f"fake_wrong:{r['set']}"] += 1 - r["correct"]
    out = []
    for t in raters.values():
        rt = t.pop("rt")
        t["total"] = settings.trials_per_rater
        t["complete"] = t["answered"] == settings.trials_per_rater
        t["accuracy"] = t["correct"] / t["scored"] if t["scored"] else float("nan")
        t["median_rt_ms"] = float(np.median(rt)) if rt else float("nan")
        t["mean_rt_ms"] = float(np.mean(rt)) if rt else float("nan")
        t["excluded"] = t["attention_errors"] > attention_max_errors
        out.append(t)
    return sorted(out, key=lambda t: t["rater_number"])


def scores(raters: list[dict], settings: db.StudySettings, n_bootstrap: int, ci: float, seed: int) -> list[dict]:
    kept = [t for t in raters if not t["excluded"]]
    if not kept:
        raise ReportError("no rater left to score (no answers yet, or every rater failed the attention check)")
    real_n = np.array([t["real_n"] for t in kept], dtype=np.float64)
    real_w = np.array([t["real_wrong"] for t in kept], dtype=np.float64)
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(kept), size=(n_bootstrap, len(kept)))
    lo_q, hi_q = 100 * (1 - ci) / 2, 100 * (1 + ci) / 2
    boot_real = _rate(real_w[idx].sum(1), real_n[idx].sum(1))
    out = []
    for s in settings.fake_sets:
        fake_n = np.array([t[f"fake_n:{s}"] for t in kept], dtype=np.float64)
        fake_w = np.array([t[f"fake_wrong:{s}"] for t in kept], dtype=np.float64)
        fake_err = float(_rate(fake_w.sum(), fake_n.sum()))
        real_err = float(_rate(real_w.sum(), real_n.sum()))
        boot_fake = _rate(fake_w[idx].sum(1), fake_n[idx].sum(1))
        boot_hype = (boot_fake + boot_real) / 2
        row: dict[str, Any] = {"set": s, "raters": len(kept), "fake_answers": int(fake_n.sum()),
                               "real_answers": int(real_n.sum()), "fake_error": fake_err, "real_error": real_err,
                               "hype": (fake_err + real_err) / 2}
        for name, boot in (("fake_error", boot_fake), ("real_error", boot_real), ("hype", boot_hype)):
            row[f"{name}_lo"], row[f"{name}_hi"] = (float(v) for v in np.nanpercentile(boot, [lo_q, hi_q]))
        out.append(row)
    return out


def answer_times(rows: list[dict], raters: list[dict], settings: db.StudySettings) -> list[dict]:
    kept = {t["rater"] for t in raters if not t["excluded"]}
    groups = {"real": [], **{s: [] for s in settings.fake_sets}}
    for r in rows:
        if r["rater"] in kept and r["kind"] != "attention" and r["rt_ms"] is not None:
            groups["real" if r["kind"] == "real" else r["set"]].append(r["rt_ms"])
    return [{"images": g, "answers": len(v), "median_rt_ms": float(np.median(v)) if v else float("nan"),
             "mean_rt_ms": float(np.mean(v)) if v else float("nan")} for g, v in groups.items()]


def _pct(x: float) -> str:
    return "n/a" if x != x else f"{100 * x:.1f} %"


def _ms(x: float) -> str:
    return "n/a" if x != x else f"{x:.0f}"


def markdown(result: dict) -> str:
    s, ci = result["settings"], int(round(100 * result["ci"]))
    lines = ["# Human study: HYPE-infinity", "",
             f"db: `{result['db']}`; {result['n_raters']} raters with answers, {result['n_excluded']} excluded by the "
             f"attention check (more than {result['attention_max_errors']} errors on {s.attention_n} attention images); "
             f"{s.n_per_rater} scored images per rater (half real), exposure "
             f"{'unlimited' if s.exposure_ms is None else str(s.exposure_ms) + ' ms'}; {ci} % CIs: percentile "
             f"bootstrap over raters ({result['n_bootstrap']} resamples, seed {result['bootstrap_seed']}).", "",
             "HYPE-infinity = (error on fakes + error on reals) / 2; 50 % = chance (fakes indistinguishable).", "",
             f"| generated set | HYPE-inf | {ci} % CI | error on fakes | {ci} % CI | error on reals | {ci} % CI | "
             "fake answers | real answers |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in result["scores"]:
        lines.append(f"| {r['set']} | {_pct(r['hype'])} | {_pct(r['hype_lo'])} - {_pct(r['hype_hi'])} | "
                     f"{_pct(r['fake_error'])} | {_pct(r['fake_error_lo'])} - {_pct(r['fake_error_hi'])} | "
                     f"{_pct(r['real_error'])} | {_pct(r['real_error_lo'])} - {_pct(r['real_error_hi'])} | "
                     f"{r['fake_answers']} | {r['real_answers']} |")
    lines += ["", "## Answer times (kept raters)", "", "| images | answers | median ms | mean ms |",
              "| --- | --- | --- | --- |"]
    lines += [f"| {t['images']} | {t['answers']} | {_ms(t['median_rt_ms'])} | {_ms(t['mean_rt_ms'])} |"
              for t in result["times"]]
    lines += ["", "## Raters", "", "| # | rater | answered | accuracy | attention errors | median ms | excluded |",
              "| --- | --- | --- | --- | --- | --- | --- |"]
    lines += [f"| {t['rater_number']} | `{t['rater']}` | {t['answered']} / {t['total']} | {_pct(t['accuracy'])} | "
              f"{t['attention_errors']} / {t['attention_n']} | {_ms(t['median_rt_ms'])} | "
              f"{'yes' if t['excluded'] else 'no'} |" for t in result["raters"]]
    return "\n".join(lines) + "\n"


def _csv(rows: list[dict], keys: list[str]) -> str:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=keys, extrasaction="ignore", lineterminator="\n")
    w.writeheader()
    w.writerows(rows)
    return buf.getvalue()


def bar_chart(result: dict, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = result["scores"]
    x = np.arange(len(rows))
    fig, ax = plt.subplots(figsize=(max(4.0, 1.8 * len(rows) + 2), 3.6), dpi=120)
    for k, (key, label) in enumerate((("hype", "HYPE-inf"), ("fake_error", "error on fakes"),
                                      ("real_error", "error on reals"))):
        vals = np.array([100 * r[key] for r in rows])
        err = np.array([[100 * (r[key] - r[f"{key}_lo"]) for r in rows], [100 * (r[f"{key}_hi"] - r[key]) for r in rows]])
        ax.bar(x + (k - 1) * 0.27, vals, 0.27, yerr=err, capsize=3, label=label)
    ax.axhline(50, color="grey", lw=0.8, ls="--")
    ax.set_xticks(x, [r["set"] for r in rows])
    ax.set_ylabel("rate (%)")
    ax.set_ylim(0, 100)
    ax.set_title(f"HYPE-inf, {result['n_raters'] - result['n_excluded']} raters, {int(100 * result['ci'])} % bootstrap CI")
    ax.legend(fontsize=8, loc="upper right")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def report(db_path: str, out: str, *, n_bootstrap: int = 2000, ci: float = 0.95, seed: int = 0,
           attention_max_errors: int = 0) -> dict:
    """Score the study in ``db_path``; writes hype_report.md, hype_scores.csv, raters.csv and
    hype_scores.png into ``out`` and returns everything as a dict."""
    if not 0 < ci < 1:
        raise ReportError(f"ci must be in (0, 1), got {ci}")
    if n_bootstrap < 1:
        raise ReportError(f"n_bootstrap must be >= 1, got {n_bootstrap}")
    conn, settings = db.open_study(db_path)
    try:
        rows = db.answer_rows(conn)
    finally:
        conn.close()
    raters = rater_table(rows, settings, attention_max_errors)
    result = {"db": os.path.abspath(db_path), "settings": settings, "ci": ci, "n_bootstrap": n_bootstrap,
              "bootstrap_seed": seed, "attention_max_errors": attention_max_errors, "raters": raters,
              "n_raters": len(raters), "n_excluded": sum(t["excluded"] for t in raters),
              "scores": scores(raters, settings, n_bootstrap, ci, seed), "times": answer_times(rows, raters, settings)}
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, "hype_report.md"), "w") as f:
        f.write(markdown(result))
    with open(os.path.join(out, "hype_scores.csv"), "w") as f:
        f.write(_csv(result["scores"], list(result["scores"][0])))
    rater_keys = ["rater_number", "rater", "answered", "total", "complete", "scored", "correct", "accuracy",
                  "real_n", "real_wrong", *[f"{a}:{s}" for s in settings.fake_sets for a in ("fake_n", "fake_wrong")],
                  "attention_n", "attention_errors", "median_rt_ms", "mean_rt_ms", "excluded"]
    with open(os.path.join(out, "raters.csv"), "w") as f:
        f.write(_csv(raters, rater_keys))
    bar_chart(result, os.path.join(out, "hype_scores.png"))
    return result


EXPORT_KEYS = ["rater", "rater_number", "position", "image_id", "set", "kind", "file", "truth", "answer",
               "correct", "rt_ms", "answered_at"]


def export(db_path: str, path: str) -> int:
    """Every answer (with its image's set, file name and truth) as CSV; returns the row count."""
    conn, _ = db.open_study(db_path)
    try:
        rows = db.answer_rows(conn)
    finally:
        conn.close()
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w") as f:
        f.write(_csv(rows, EXPORT_KEYS))
    return len(rows)
