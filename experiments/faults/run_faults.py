"""Fault-injection campaign for ganlab's checkpoints, caches and generate (issue 11).

    python experiments/faults/run_faults.py [--trials 20] [--seed 0] [--work /tmp/ganlab-faults]

Writes ``experiments/faults/results.json`` and ``results.md`` (the table the README quotes).

1. ``kill -9`` of a tiny deterministic CPU training run (30 generator steps, a checkpoint every
   4), ``--trials`` times, always mid-training after at least one checkpoint exists: each trial
   draws a periodic checkpoint that is not the run's last (``gstep_000004`` .. ``gstep_000024``)
   and waits for it to appear; then even trials (``between_saves``) kill after a random delay
   below one save interval, odd trials (``during_write``) the moment the next checkpoint temp
   file appears (so at least half land during a checkpoint write; the temp file the killed
   process leaves behind is the evidence). ``$TMPDIR`` on the run folder's filesystem (disk) or
   on another one (``/dev/shm``, tmpfs); then ``ckpt_path=auto`` until the run ends. Each row
   records the newest loadable checkpoint at the kill (what the resume starts from), the temp
   file left, where ``train.log`` says it resumed from; each must end with weights identical
   (``torch.equal``) to an uninterrupted run, and no temp file may be left.
2. ``kill -9`` during a cache build and during ``generate`` (fresh and ``overwrite=true``); the
   rerun must succeed and leave no stray file.
3. Disk full: a file-size limit (``RLIMIT_FSIZE``) and small tmpfs mounts (needs root for
   ``mount``; skipped otherwise) for a checkpoint save and a cache build.
4. Truncated / zero-byte / bit-flipped / malicious (pickle payload, foreign ``_target_``)
   checkpoints through ``generate`` (one error line, exit 2, payload not executed) and through
   ``ckpt_path=auto`` (falls back to the older checkpoint).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

import torch  # noqa: E402

STEPS, EVERY = 30, 4
TINY = ["data.source.num_images=96", "data.resolution=16", "data.batch_size=16", "trainer.accelerator=cpu",
        "model.generator.base_width=8", "model.discriminator.base_width=8", "model.generator.z_dim=16",
        "trainer.deterministic=true", "callbacks=[model_checkpoint]", "logger=[]",
        "++trainer.enable_progress_bar=false", "++trainer.enable_model_summary=false", "data.hflip=true",
        "model.instance_noise=0.1", f"generator_steps={STEPS}", f"checkpoint_every={EVERY}"]


def env(tmpdir: str, cache: Path) -> dict:
    return {**os.environ, "TMPDIR": tmpdir, "GANLAB_CACHE": str(cache), "OMP_NUM_THREADS": "1",
            "PYTHONPATH": str(REPO)}


def train_cmd(run: Path, cache: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "ganlab.train", f"hydra.run.dir={run}", f"paths.root_dir={run.parent}",
            f"paths.cache_dir={cache}", *TINY, *extra]


def load_gan(ckpt: Path):
    from ganlab.models import load_gan as load

    return load(ckpt)


def weights(ckpt: Path) -> dict:
    return load_gan(ckpt).state_dict()


def same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def temps(folder: Path) -> list[str]:
    """Temp / staging files: hidden names (``.<name>.tmp-<pid>``) or any name with tmp / partial / old in it."""
    return sorted(p.name for p in folder.rglob("*") if ".hydra" not in p.parts
                  and (p.name.startswith(".") or any(m in p.name for m in (".tmp", "tmp-", ".partial-", ".old-"))))


def run_to_end(run: Path, cache: Path, tmpdir: str, limit: int = 4) -> tuple[int, list[str]]:
    """Resume with ckpt_path=auto until exit 0; returns (launches, warnings about damaged files)."""
    skipped = []
    for i in range(limit):
        p = subprocess.run(train_cmd(run, cache, "ckpt_path=auto"), capture_output=True, text=True,
                           env=env(tmpdir, cache), cwd=REPO)
        skipped += [ln for ln in (p.stdout + p.stderr).splitlines() if "skipping a damaged checkpoint" in ln]
        if p.returncode == 0:
            return i + 1, skipped
    raise RuntimeError(f"{run}: did not finish after {limit} resumes:\n{p.stderr[-2000:]}")


def periodic(step: int) -> str:
    return f"gstep_{step:06d}.ckpt"


def save_interval(run: Path) -> float:
    """Seconds between two periodic checkpoints of a finished run (mtimes of the top-3 it keeps)."""
    t = sorted(p.stat().st_mtime for p in (run / "checkpoints").glob("gstep_*.ckpt"))
    return (t[-1] - t[0]) / (len(t) - 1)


def kill_training(run: Path, cache: Path, tmpdir: str, mode: str, after: int, delay: float) -> dict:
    """Start a run, wait for its periodic checkpoint ``gstep_<after>`` to exist, then SIGKILL it:

    * ``between_saves``: ``delay`` seconds later (drawn below one save interval);
    * ``during_write``: the moment a checkpoint temp file appears after that (the next write:
      ``last.ckpt`` of the same step, or the next periodic save).
    """
    proc = subprocess.Popen(train_cmd(run, cache), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env=env(tmpdir, cache), cwd=REPO)
    t0 = time.time()
    ckdir = run / "checkpoints"
    target = ckdir / periodic(after)
    while proc.poll() is None and not target.exists() and time.time() - t0 < 3600:  # a loaded machine is slow
        time.sleep(0.002)
    t_ck = time.time()
    if mode == "during_write":
        while proc.poll() is None and time.time() - t_ck < 120 and not temps(ckdir):
            time.sleep(0.0005)
    else:
        while proc.poll() is None and time.time() - t_ck < delay:
            time.sleep(0.002)
    seen = temps(ckdir) if ckdir.is_dir() else []
    finished = proc.poll() is not None
    if not finished:
        proc.send_signal(signal.SIGKILL)
    proc.wait()
    t_kill = time.time()
    left = temps(ckdir) if ckdir.is_dir() else []  # a temp file the dead process left: the kill was mid-write
    from ganlab.checkpoints import newest_loadable

    newest = newest_loadable(ckdir) if ckdir.is_dir() else None
    newest_step = load_gan(newest).generator_step if newest else 0
    return {"killed_at_s": round(t_kill - t0, 3), "killed_s_after_target_ckpt": round(t_kill - t_ck, 3),
            "finished_before_kill": finished, "temp_seen_before_kill": seen, "temp_left_by_kill": left,
            "checkpoints_after_kill": sorted(p.name for p in ckdir.glob("*.ckpt")) if ckdir.is_dir() else [],
            "newest_loadable_at_kill": newest.name if newest else None, "newest_step_at_kill": newest_step,
            "mid_run_after_a_checkpoint": not finished and EVERY <= newest_step < STEPS}


def training_trials(args, work: Path, reference: dict, cache: Path, interval: float) -> list[dict]:
    rng = random.Random(args.seed)
    rows = []
    for i in range(args.trials):
        mode = "during_write" if i % 2 else "between_saves"
        tmp_fs = "/dev/shm (tmpfs, other fs)" if (i // 2) % 2 else "run folder's disk (same fs)"
        tmpdir = "/dev/shm" if (i // 2) % 2 else str(work)
        run = work / f"trial{i:02d}"
        shutil.rmtree(run, ignore_errors=True)
        after = EVERY * rng.randint(1, STEPS // EVERY - 1)  # a periodic save that is not the run's last one
        delay = rng.uniform(0.0, interval)
        kill = f"{delay:.2f} s after {periodic(after)}" if mode == "between_saves" else f"next write after {periodic(after)}"
        if args.only_trials and i not in args.only_trials:
            continue  # the same draws as a full run: trial i is placed as it was there
        row = {"trial": i, "mode": mode, "kill": kill, "tmpdir": tmp_fs,
               **kill_training(run, cache, tmpdir, mode, after, delay)}
        launches, skipped = run_to_end(run, cache, tmpdir)
        row["resumed_from"] = _resume_point(run)
        row["launches_to_finish"] = launches
        row["damaged_skipped"] = len(skipped)
        row["final_step"] = load_gan(run / "checkpoints" / "last.ckpt").generator_step
        row["identical_to_uninterrupted"] = same(weights(run / "checkpoints" / "last.ckpt"), reference)
        row["stray_files_after"] = temps(run / "checkpoints")
        rows.append(row)
        print(json.dumps(row), flush=True)
    return rows


def _resume_point(run: Path) -> str:
    log = run / "train.log"
    text = log.read_text() if log.exists() else ""
    marks = [ln.split("resuming from", 1)[1].strip() for ln in text.splitlines() if "ckpt_path=auto: resuming from" in ln]
    return Path(marks[-1]).name if marks else "scratch"


def cache_trials(work: Path, n: int, rng: random.Random) -> list[dict]:
    rows = []
    for i in range(n):
        cache = work / f"cache_kill{i}"
        run = work / f"cache_run{i}"
        shutil.rmtree(cache, ignore_errors=True)
        shutil.rmtree(run, ignore_errors=True)
        big = ["data.source.num_images=6000", "data.resolution=32", "generator_steps=1", "checkpoint_every=1"]
        proc = subprocess.Popen(train_cmd(run, cache, *big), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                env=env(str(work), cache), cwd=REPO)
        t0 = time.time()
        while proc.poll() is None and time.time() - t0 < 120 and not any(".tmp-" in q.name for q in cache.rglob("*")):
            time.sleep(0.01)  # wait for the build to start (its temp file), then kill at a random moment of it
        time.sleep(rng.uniform(0.0, 1.0))
        delay = time.time() - t0
        during = proc.poll() is None and any(".tmp-" in q.name for q in cache.rglob("*"))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        left_after_kill = temps(cache)
        p = subprocess.run(train_cmd(run, cache, *big), capture_output=True, text=True, env=env(str(work), cache),
                           cwd=REPO)
        rows.append({"case": f"kill -9 during cache build #{i}", "killed_at_s_after_start": round(delay, 2),
                     "temp_files_at_kill": len(left_after_kill), "kill_landed_mid_build": during,
                     "rerun_exit": p.returncode, "stray_files_after_rerun": temps(cache)})
        print(json.dumps(rows[-1]), flush=True)
    return rows


def generate_trials(work: Path, ckpt: Path, rng: random.Random) -> list[dict]:
    rows = []
    for i, overwrite in enumerate([False, False, True]):
        out = work / f"gen{i}"
        shutil.rmtree(out, ignore_errors=True)
        for p in work.glob(f".gen{i}.*"):
            shutil.rmtree(p, ignore_errors=True)
        cmd = [sys.executable, "-m", "ganlab.generate", f"hydra.run.dir={work / 'gen_hydra'}", f"ckpt={ckpt}",
               f"out={out}", "progress=false"]
        before = None
        if overwrite:
            subprocess.run([*cmd, "num_images=7"], check=True, capture_output=True, env=env(str(work), work / "c"),
                           cwd=REPO)
            before = json.loads((out / "manifest.json").read_text())["num_images"]
        proc = subprocess.Popen([*cmd, "num_images=200000", f"overwrite={str(overwrite).lower()}"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env(str(work), work / "c"),
                                cwd=REPO)
        t0 = time.time()
        while proc.poll() is None and time.time() - t0 < 120 and not list(work.glob(f".gen{i}.partial-*/**/*.png")):
            time.sleep(0.01)  # wait until images are being written, then kill at a random moment
        time.sleep(rng.uniform(0.0, 2.0))
        delay = time.time() - t0
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        out_after_kill = ("absent" if not out.exists() else
                          f"previous data set ({json.loads((out / 'manifest.json').read_text())['num_images']} images)")
        staging = len(list(work.glob(f".gen{i}.partial-*")))
        p = subprocess.run([*cmd, "num_images=50", "overwrite=true"], capture_output=True, text=True,
                           env=env(str(work), work / "c"), cwd=REPO)
        m = json.loads((out / "manifest.json").read_text())
        on_disk = sorted(str(f.relative_to(out)) for f in out.rglob("*") if f.is_file())
        listed = sorted([r["file"] for r in m["images"]] + ["manifest.csv", "manifest.json"])
        rows.append({"case": f"kill -9 during generate{' overwrite=true' if overwrite else ''}",
                     "killed_at_s_after_start": round(delay, 2), "out_after_kill": out_after_kill, "expected_before": before,
                     "staging_folders_left_by_kill": staging, "rerun_exit": p.returncode,
                     "files_equal_manifest": on_disk == listed,
                     "stray_after_rerun": [q.name for q in work.glob(f".gen{i}.*")]})
        print(json.dumps(rows[-1]), flush=True)
    return rows


def _fsize_limit(nbytes: int):
    def apply():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (nbytes, nbytes))
    return apply


def _mount_tmpfs(path: Path, size: str) -> bool:
    path.mkdir(parents=True, exist_ok=True)
    return subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
                          capture_output=True).returncode == 0


def _error_line(text: str, needle: str) -> str:
    return next((ln.strip()[:300] for ln in text.splitlines() if needle in ln), "(no such line)")


def disk_full_trials(work: Path, cache: Path, ref_run: Path) -> list[dict]:
    from ganlab.checkpoints import load_checkpoint

    rows = []
    # (a) a file-size limit below the checkpoint size, resuming a finished 30-step run to 34 steps
    run = work / "fsize_run"
    shutil.rmtree(run, ignore_errors=True)
    shutil.copytree(ref_run, run)
    last = run / "checkpoints" / "last.ckpt"
    before = last.read_bytes()
    p = subprocess.run(train_cmd(run, cache, "ckpt_path=auto", f"generator_steps={STEPS + EVERY}"),
                       capture_output=True, text=True, env=env(str(work), cache), cwd=REPO,
                       preexec_fn=_fsize_limit(64 * 1024))
    rows.append({"case": "RLIMIT_FSIZE 64 KiB during a checkpoint save", "exit": p.returncode,
                 "error": _error_line(p.stdout + p.stderr, "could not write checkpoint"),
                 "previous_last_ckpt_intact": last.read_bytes() == before and bool(load_checkpoint(last)),
                 "stray_files": temps(run)})
    # (b) a 300 KiB tmpfs as the run folder: the first save fits, the temp file of the next does not
    mnt = work / "tmpfs_run"
    if _mount_tmpfs(mnt, "300k"):
        try:
            p = subprocess.run(train_cmd(mnt / "r", cache, "generator_steps=12"), capture_output=True, text=True,
                               env=env(str(work), cache), cwd=REPO)
            ck = mnt / "r" / "checkpoints"
            names = sorted(x.name for x in ck.glob("*.ckpt")) if ck.is_dir() else []
            ok = all(bool(load_checkpoint(ck / n)) for n in names)
            rows.append({"case": "300 KiB tmpfs run folder (disk full on the 2nd save)", "exit": p.returncode,
                         "error": _error_line(p.stdout + p.stderr, "could not write checkpoint"),
                         "checkpoints_left": names, "all_load": ok, "stray_files": temps(mnt)})
        finally:
            subprocess.run(["umount", str(mnt)])
        # (c) a 1 MiB tmpfs as the image cache of a 12 MB data set
        if _mount_tmpfs(mnt, "1m"):
            try:
                p = subprocess.run(train_cmd(work / "tmpfs_cache_run", mnt, "data.source.num_images=4000",
                                             "data.resolution=32"), capture_output=True, text=True,
                                   env=env(str(work), mnt), cwd=REPO)
                rows.append({"case": "1 MiB tmpfs image cache (12 MB needed)", "exit": p.returncode,
                             "error": _error_line(p.stdout + p.stderr, "cannot reserve"),
                             "files_left_in_cache": sorted(x.name for x in mnt.rglob("*") if x.is_file())})
            finally:
                subprocess.run(["umount", str(mnt)])
    else:
        rows.append({"case": "tmpfs mounts", "skipped": "mount -t tmpfs not permitted here"})
    for r in rows:
        print(json.dumps(r), flush=True)
    return rows


class _Payload:
    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def damaged_trials(work: Path, cache: Path, ref_run: Path) -> list[dict]:
    from ganlab.checkpoints import AtomicCheckpointIO, load_checkpoint

    folder = work / "damaged"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir()
    src = ref_run / "checkpoints" / "last.ckpt"
    data = src.read_bytes()
    marker = folder / "PAYLOAD_RAN"
    files = {"truncated": data[: len(data) // 2], "zero-byte": b""}
    flipped = bytearray(data)
    flipped[len(data) // 2] ^= 0x10
    files["bit-flipped (tensor bytes)"] = bytes(flipped)
    for name, blob in files.items():
        (folder / f"{name.split()[0]}.ckpt").write_bytes(blob)
    torch.save({"state_dict": {}, "ganlab": {"model_config": {"x": _Payload(str(marker))}}}, folder / "pickle.ckpt")
    foreign = load_checkpoint(src)
    foreign["hyper_parameters"]["generator"]["_target_"] = "subprocess.call"
    AtomicCheckpointIO().save_checkpoint(foreign, folder / "target.ckpt")
    cases = {"truncated": "truncated.ckpt", "zero-byte": "zero-byte.ckpt", "bit-flipped": "bit-flipped.ckpt",
             "pickle payload (os.system)": "pickle.ckpt", "foreign _target_ (subprocess.call)": "target.ckpt"}
    rows = []
    for case, fname in cases.items():
        p = subprocess.run([sys.executable, "-m", "ganlab.generate", f"hydra.run.dir={work / 'dmg_hydra'}",
                            f"ckpt={folder / fname}", f"out={folder / 'out'}", "num_images=2", "progress=false"],
                           capture_output=True, text=True, env=env(str(work), cache), cwd=REPO)
        err = [ln for ln in p.stderr.splitlines() if ln.strip()]
        rows.append({"case": f"generate ckpt=<{case}>", "exit": p.returncode, "stderr_lines": len(err),
                     "error": err[-1][:260] if err else "", "payload_executed": marker.exists(),
                     "out_created": (folder / "out").exists()})
    # fallback: a torn last.ckpt beside an older good checkpoint
    run = work / "fallback_run"
    shutil.rmtree(run, ignore_errors=True)
    shutil.copytree(ref_run, run)
    (run / "checkpoints" / "last.ckpt").write_bytes(data[:4096])
    os.utime(run / "checkpoints" / "last.ckpt")
    p = subprocess.run(train_cmd(run, cache, "ckpt_path=auto"), capture_output=True, text=True,
                       env=env(str(work), cache), cwd=REPO)
    ref = weights(src)
    rows.append({"case": "ckpt_path=auto, torn last.ckpt", "exit": p.returncode,
                 "warning": _error_line(p.stdout + p.stderr, "skipping a damaged checkpoint"),
                 "resumed_from": _resume_point(run),
                 "identical_to_uninterrupted": same(weights(run / "checkpoints" / "last.ckpt"), ref)})
    for r in rows:
        print(json.dumps(r), flush=True)
    return rows


def distribution(t: list[dict]) -> list[str]:
    """The placement and outcome counts the README quotes."""
    n = len(t)
    mid = sum(r["mid_run_after_a_checkpoint"] for r in t)
    mid_ok = sum(r["mid_run_after_a_checkpoint"] and r["identical_to_uninterrupted"] and not r["stray_files_after"]
                 and r["resumed_from"] != "scratch" for r in t)
    writes = sum(bool(r["temp_left_by_kill"]) for r in t)
    steps = sorted({r["newest_step_at_kill"] for r in t})
    by_step = ", ".join(f"step {s}: {sum(r['newest_step_at_kill'] == s for r in t)}" for s in steps)
    sources = sorted({r["resumed_from"] for r in t})
    by_source = ", ".join(f"{s}: {sum(r['resumed_from'] == s for r in t)}" for s in sources)
    return [f"- killed mid-run after at least one checkpoint existed: **{mid}/{n}** "
            f"(finished before the kill: {sum(r['finished_before_kill'] for r in t)}; no checkpoint yet: "
            f"{sum(r['newest_step_at_kill'] == 0 for r in t)})",
            f"- killed during a checkpoint write (the killed process left its temp file): **{writes}/{n}** "
            f"(during_write mode: {sum(bool(r['temp_left_by_kill']) for r in t if r['mode'] == 'during_write')}"
            f"/{sum(r['mode'] == 'during_write' for r in t)}; between_saves mode: "
            f"{sum(bool(r['temp_left_by_kill']) for r in t if r['mode'] == 'between_saves')}"
            f"/{sum(r['mode'] == 'between_saves' for r in t)})",
            f"- newest checkpoint at the kill (what `ckpt_path=auto` resumes): {by_step}",
            f"- resumed from (train.log): {by_source}",
            f"- **{mid_ok}/{mid}** mid-run kills resumed from a checkpoint and ended with weights identical "
            f"(`torch.equal`) to the uninterrupted run, no stray file in `checkpoints/`; "
            f"{sum(r['identical_to_uninterrupted'] for r in t)}/{n} identical overall"]


def markdown(res: dict) -> str:
    t = res["training"]
    lines = ["# Fault-injection results", "", f"Command: `{res['command']}`  ", f"Measured: {res['when']}, "
             f"{res['seconds']:.0f} s wall on the shared 2-core CPU.", ""]
    if "sections_2_4_from" in res:
        r = res["sections_2_4_from"]
        lines += [f"Sections after the training table are from an earlier run (`{r['command']}`, {r['when']}"
                  + (f"; rerun `{r['rerun_of_sections_2_4']['command']}` at {r['rerun_of_sections_2_4']['when']}"
                     if r.get("rerun_of_sections_2_4") else "") + "), not rerun with this one.", ""]
    elif "rerun_of_sections_2_4" in res:
        r = res["rerun_of_sections_2_4"]
        lines += [f"Sections after the training table rerun with `{r['command']}` at {r['when']} "
                  f"({res.get('rerun_seconds', 0):.0f} s).", ""]
    lines += [
             f"## kill -9 during training ({len(t)} trials, {STEPS} generator steps, checkpoint every {EVERY}, "
             f"one save interval ~{res.get('save_interval_s', float('nan')):.2f} s)", "",
             "| # | kill | TMPDIR | killed at (s) | newest checkpoint at kill | temp file left by kill | "
             "resumed from | launches | final step | identical | stray files |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in t:
        lines.append(f"| {r['trial']} | {r['kill']} | {r['tmpdir']} | {r['killed_at_s']} | "
                     f"{r['newest_loadable_at_kill']} (step {r['newest_step_at_kill']}) | "
                     f"{', '.join(r['temp_left_by_kill']) or '-'} | {r['resumed_from']} | {r['launches_to_finish']} | "
                     f"{r['final_step']} | {r['identical_to_uninterrupted']} | {len(r['stray_files_after'])} |")
    lines += [""] + distribution(t) + [""]
    for r in res.get("superseded_rows", []):
        lines += [f"Trial {r['trial']} was run again with the same draws (its row above is from `{r['superseded_by']}`); "
                  f"the first attempt: killed at {r['killed_at_s']} s, newest checkpoint at the kill "
                  f"{r['newest_loadable_at_kill']} (step {r['newest_step_at_kill']}), mid-run after a checkpoint: "
                  f"{r['mid_run_after_a_checkpoint']}, resumed from {r['resumed_from']}, identical: "
                  f"{r['identical_to_uninterrupted']}.", ""]
    for title, key in (("kill -9 during a cache build / generate", "other_kills"), ("Disk full", "disk_full"),
                       ("Damaged and malicious checkpoints", "damaged")):
        lines += [f"## {title}", ""]
        for r in res[key]:
            lines.append("- " + "; ".join(f"{k}: `{v}`" for k, v in r.items()))
        lines.append("")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--trials", type=int, default=20)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--work", default="/tmp/ganlab-faults")
    ap.add_argument("--out", default=str(Path(__file__).parent))
    ap.add_argument("--skip-training", action="store_true",
                    help="rerun sections 2-4 only, keeping section 1 of an existing results.json")
    ap.add_argument("--training-only", action="store_true",
                    help="rerun section 1 only, keeping sections 2-4 of an existing results.json")
    ap.add_argument("--rows-from", metavar="LOG", nargs="+",
                    help="no new trials: section 1 from the rows runs printed to LOGs (a later log's row replaces "
                         "the same trial's; --work still holds reference/ and timing/); with --training-only")
    ap.add_argument("--only-trials", type=int, nargs="+",
                    help="run just these trials of section 1 (same draws as the full run), reusing --work's "
                         "reference/ and timing/; prints the rows, writes no results")
    ap.add_argument("--markdown-only", action="store_true", help="rewrite results.md from results.json")
    args = ap.parse_args()
    if args.markdown_only:
        out = Path(args.out)
        (out / "results.md").write_text(markdown(json.loads((out / "results.json").read_text())))
        return
    work = Path(args.work)
    if not (args.skip_training or args.rows_from or args.only_trials):
        shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True, exist_ok=True)
    cache = work / "cache"
    t0 = time.time()
    ref_run = work / "reference"
    out = Path(args.out)
    rng = random.Random(args.seed + 1)
    if args.skip_training:
        res = json.loads((out / "results.json").read_text())
        res["rerun_of_sections_2_4"] = {"command": "python experiments/faults/run_faults.py " + " ".join(sys.argv[1:]),
                                       "when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
    elif args.only_trials:
        training_trials(args, work, weights(ref_run / "checkpoints" / "last.ckpt"), cache, save_interval(work / "timing"))
        return
    elif args.rows_from:
        rows: dict[int, dict] = {}
        superseded = []
        for log in args.rows_from:
            for ln in Path(log).read_text().splitlines():
                if ln.startswith('{"trial"'):
                    row = json.loads(ln)
                    if row["trial"] in rows:
                        superseded.append({**rows[row["trial"]], "superseded_by": log})
                    rows[row["trial"]] = {**row, "log": log}
        res = {"command": "rows printed by: " + "; ".join(args.rows_from), "when": time.strftime(
            "%Y-%m-%d %H:%M UTC", time.gmtime(Path(args.rows_from[0]).stat().st_mtime)), "run_seconds": None,
            "save_interval_s": round(save_interval(work / "timing"), 3),
            "training": [rows[i] for i in sorted(rows)], "superseded_rows": superseded}
    else:
        subprocess.run(train_cmd(ref_run, cache), check=True, capture_output=True, env=env(str(work), cache),
                       cwd=REPO)
        t1 = time.time()
        subprocess.run(train_cmd(work / "timing", cache), check=True, capture_output=True,
                       env=env(str(work), cache), cwd=REPO)
        total_s = time.time() - t1  # one warm run
        interval = save_interval(work / "timing")  # between_saves kills are drawn below one save interval
        reference = weights(ref_run / "checkpoints" / "last.ckpt")
        res = {"command": "python experiments/faults/run_faults.py " + " ".join(sys.argv[1:]),
               "when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "run_seconds": round(total_s, 2),
               "save_interval_s": round(interval, 3)}
        res["training"] = training_trials(args, work, reference, cache, interval)
    if args.training_only:
        old = json.loads((out / "results.json").read_text())
        res.update({k: old[k] for k in ("other_kills", "disk_full", "damaged")})
        res["sections_2_4_from"] = {k: old.get(k) for k in ("command", "when", "rerun_of_sections_2_4")}
    else:
        res["other_kills"] = cache_trials(work, 2, rng) + generate_trials(work, ref_run / "checkpoints" / "last.ckpt", rng)
        res["disk_full"] = disk_full_trials(work, cache, ref_run)
        res["damaged"] = damaged_trials(work, cache, ref_run)
    res["seconds" if not args.skip_training else "rerun_seconds"] = time.time() - t0
    if args.rows_from:  # the stopped run's section 1: from its reference run to its last printed row
        res["seconds"] = Path(args.rows_from[0]).stat().st_mtime - (work / "reference").stat().st_mtime
    (out / "results.json").write_text(json.dumps(res, indent=1))
    (out / "results.md").write_text(markdown(res))
    print(markdown(res))


if __name__ == "__main__":
    main()
