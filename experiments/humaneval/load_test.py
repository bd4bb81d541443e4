"""Load test of the humaneval server: N concurrent raters x M answers against one uvicorn process.

    python experiments/humaneval/load_test.py --raters 50 --answers 100 [--time-limit 600] \
        [--out experiments/humaneval/results/load_50x100.json]

Loopback only (the server binds 127.0.0.1, the clients talk to 127.0.0.1). Each rater is a thread
with its own keep-alive connection that does what the page does per image: ask for the trial,
fetch the image, post the answer. Bounded: the threads stop at ``--time-limit`` seconds whatever
is left. Afterwards the db is checked against the clients' acknowledgements: lost = acknowledged
but not stored, duplicated = stored twice or stored without an acknowledgement.
Images: ganlab's procedural faces (real) and the same renderer with other seeds, blurred (fake).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import sqlite3
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from ganlab.humaneval.client import RaterClient, ServerProcess  # noqa: E402


def make_study(root: Path, n_images: int, n_per_rater: int) -> Path:
    from omegaconf import OmegaConf
    from PIL import Image, ImageFilter

    from ganlab.data.faces import render_faces
    from ganlab.humaneval import cli

    for name, seed, blur in (("real", 1, False), ("fake", 2, True)):
        (root / name).mkdir(parents=True, exist_ok=True)
        faces, _ = render_faces(n_images, resolution=64, seed=seed)
        for i, f in enumerate(faces):
            im = Image.fromarray(f.transpose(1, 2, 0))
            (im.filter(ImageFilter.GaussianBlur(1.0)) if blur else im).save(root / name / f"{i:04d}.png")
    db = root / "study.db"
    cfg = OmegaConf.load(cli.CONF_DIR + "/humaneval.yaml")
    cfg.merge_with({"real": str(root / "real"), "fake": str(root / "fake"), "db": str(db), "n_per_rater": n_per_rater})
    cli.build_study(cfg)
    return db


def run_load(raters: int, answers: int, time_limit: float, workdir: str | None = None) -> dict:
    if answers % 2:
        raise SystemExit("--answers must be even (half real, half fake)")
    tmp = tempfile.TemporaryDirectory(prefix="humaneval_load_") if workdir is None else None
    root = Path(workdir or tmp.name)
    db = make_study(root, max(answers // 2 + 10, 60), answers)
    srv = ServerProcess(str(db), run_dir=str(root / "run")).start()
    acked: dict[int, list[tuple[str, int, str, str]]] = {}
    lat_answer: list[float] = []
    lat_trial: list[float] = []
    lat_image: list[float] = []
    errors: list[str] = []
    lock = threading.Lock()
    barrier = threading.Barrier(raters)
    deadline = [0.0]

    def rater(k: int) -> None:
        rng = np.random.default_rng(k)
        mine, la, lt, li = [], [], [], []
        try:
            c = RaterClient(srv.port, timeout=60).start()
            barrier.wait()
            for _ in range(answers):
                if time.monotonic() > deadline[0]:
                    break
                t0 = time.perf_counter()
                trial = c.trial()
                t1 = time.perf_counter()
                status, _ = c.request("GET", trial["src"])
                t2 = time.perf_counter()
                if status != 200:
                    raise RuntimeError(f"image {status}")
                ans = "real" if rng.random() < 0.5 else "fake"
                status, resp = c.answer(trial, ans, rt_ms=int(rng.integers(300, 3000)))
                t3 = time.perf_counter()
                if status != 200:
                    raise RuntimeError(f"answer {status}: {resp}")
                mine.append((c.rater, trial["position"], trial["image"], ans))
                lt.append(t1 - t0)
                li.append(t2 - t1)
                la.append(t3 - t2)
            c.close()
        except Exception as err:  # recorded, and the run fails below
            with lock:
                errors.append(f"rater {k}: {err!r}")
        with lock:
            acked[k] = mine
            lat_answer.extend(la)
            lat_trial.extend(lt)
            lat_image.extend(li)

    threads = [threading.Thread(target=rater, args=(k,)) for k in range(raters)]
    deadline[0] = time.monotonic() + time_limit
    t_start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=time_limit + 60)
    wall = time.perf_counter() - t_start
    srv.kill(signal.SIGTERM)

    with sqlite3.connect(db) as conn:
        stored = conn.execute("SELECT rater_id, position, image_id, answer FROM answers").fetchall()
        n_raters_db = conn.execute("SELECT COUNT(*) FROM raters").fetchone()[0]
    acked_set = {a for v in acked.values() for a in v}
    stored_set = set(stored)
    n_acked = sum(len(v) for v in acked.values())

    def pct(x: list[float], q: float) -> float:
        return round(1000 * float(np.percentile(x, q)), 2) if x else float("nan")

    result = {
        "command": f"python experiments/humaneval/load_test.py --raters {raters} --answers {answers} "
                   f"--time-limit {time_limit:g}",
        "raters": raters, "answers_per_rater": answers, "time_limit_s": time_limit,
        "acknowledged": n_acked, "stored": len(stored), "raters_in_db": n_raters_db,
        "lost": len(acked_set - stored_set), "duplicated": (len(stored) - len(stored_set)) + len(stored_set - acked_set)
        + (n_acked - len(acked_set)),
        "complete": n_acked == raters * answers, "errors": errors[:10],
        "wall_s": round(wall, 2), "answers_per_s": round(n_acked / wall, 1),
        "answer_latency_ms": {"p50": pct(lat_answer, 50), "p90": pct(lat_answer, 90), "p99": pct(lat_answer, 99),
                              "max": pct(lat_answer, 100)},
        "trial_latency_ms": {"p50": pct(lat_trial, 50), "p99": pct(lat_trial, 99)},
        "image_latency_ms": {"p50": pct(lat_image, 50), "p99": pct(lat_image, 99)},
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()},
        "sqlite": sqlite3.sqlite_version,
    }
    if tmp is not None:
        tmp.cleanup()
    return result


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--raters", type=int, default=50)
    p.add_argument("--answers", type=int, default=100)
    p.add_argument("--time-limit", type=float, default=600.0, help="seconds; the raters stop then")
    p.add_argument("--out", default=None, help="write the result as JSON here")
    a = p.parse_args()
    if not (1 <= a.raters <= 200 and 2 <= a.answers <= 1000 and 0 < a.time_limit <= 1800):
        raise SystemExit("bounded load only: 1..200 raters, 2..1000 answers, time limit <= 1800 s")
    res = run_load(a.raters, a.answers, a.time_limit)
    print(json.dumps(res, indent=1))
    if a.out:
        os.makedirs(os.path.dirname(os.path.abspath(a.out)), exist_ok=True)
        with open(a.out, "w") as f:
            json.dump(res, f, indent=1)
    if res["lost"] or res["duplicated"] or res["errors"] or not res["complete"]:
        sys.exit(1)


if __name__ == "__main__":
    main()
