"""ganlab.humaneval without a server: re-encoding, plans, answer validation, report, export, CLI."""

from __future__ import annotations

import csv
import subprocess
import sys
from collections import Counter

import numpy as np
import pytest
from PIL import Image

from ganlab.humaneval import cli, images, scores, study
from _humaneval_helpers import build, hand_count, png_chunks, png_info, write_faces


def _all_images(db_path):
    conn, settings = study.open_study(str(db_path))
    rows = conn.execute("SELECT s.kind, i.name, i.data FROM images i JOIN sets s ON s.id = i.set_id").fetchall()
    conn.close()
    return settings, rows


@pytest.mark.parametrize("encoding", ["png_stored", "png"])
def test_real_and_fake_are_reencoded_alike(tmp_path, encoding):
    # inputs differ in every way a file can: JPEG 80 px with EXIF + ICC (real) vs PNG 64 px with a text chunk
    db = build(tmp_path, encoding=encoding)
    assert Image.open(next((tmp_path / "real").iterdir())).format == "JPEG"
    settings, rows = _all_images(db)
    assert settings.resolution == 64
    kinds = Counter(k for k, _, _ in rows)
    assert kinds == {"real": 30, "fake": 30}
    for kind, name, data in rows:
        fmt, size, mode, info = png_info(data)
        assert (fmt, size, mode) == ("PNG", (64, 64), "RGB"), name
        assert not {"exif", "icc_profile", "Software", "dpi"} & set(info), (name, info)
        assert set(png_chunks(data)) == {b"IHDR", b"IDAT", b"IEND"}, name
    sizes = {kind: {len(d) for k, _, d in rows if k == kind} for kind in kinds}
    if encoding == "png_stored":  # uncompressed: every file has exactly the same length
        assert sizes["real"] == sizes["fake"] == {len(rows[0][2])}
    else:
        assert all(len(d) < 64 * 64 * 3 for _, _, d in rows)


def test_images_keep_their_pixels(tmp_path):
    folder = write_faces(tmp_path / "f", 2, seed=3, resolution=32, fmt="png")
    pix = images.square_pixels(str(folder / "fake_000.png"), 32)
    back = np.asarray(Image.open(__import__("io").BytesIO(images.encode_pixels(pix))))
    assert np.array_equal(pix, back) and np.array_equal(pix, np.asarray(Image.open(folder / "fake_000.png").convert("RGB")))


def test_plans_are_balanced_unique_and_shuffled_per_rater(tmp_path):
    db = build(tmp_path, fakes=2, n_per_rater=10, attention_n=2)
    conn, settings = study.open_study(str(db))
    pools = study.image_pools(conn)
    set_of = {img: name for name, ids in pools.items() for img in ids}
    orders = []
    for _ in range(6):
        rater, _ = study.create_rater(conn, settings, pools)
        plan = [r[0] for r in conn.execute("SELECT image_id FROM trials WHERE rater_id=? ORDER BY position", (rater,))]
        counts = Counter(set_of[i] for i in plan)
        assert len(plan) == len(set(plan)) == 12
        assert counts["real"] == 5 and counts["attention"] == 2
        assert sorted([counts["g0"], counts["g1"]]) == [2, 3]
        orders.append(tuple(set_of[i] for i in plan))
    assert len(set(orders)) > 1  # shuffled differently per rater
    seeds = [r[0] for r in conn.execute("SELECT seed FROM raters ORDER BY number")]
    assert seeds == [study.rater_seed(0, k) for k in range(6)] and len(set(seeds)) == 6
    assert study.plan_trials(pools, settings, seeds[0]) == study.plan_trials(pools, settings, seeds[0])
    conn.close()


def test_answers_are_validated_and_refusals_store_nothing(tmp_path):
    db = build(tmp_path)
    conn, settings = study.open_study(str(db))
    rater, token = study.create_rater(conn, settings, study.image_pools(conn))
    first, second = study.trial_at(conn, rater, 0), study.trial_at(conn, rater, 1)
    with pytest.raises(study.AnswerRejected) as e:
        study.record_answer(conn, rater, 1, second, "real", 10)  # not reached yet
    assert e.value.status == 409
    with pytest.raises(study.AnswerRejected) as e:
        study.record_answer(conn, rater, 0, second, "real", 10)  # not the image shown there
    assert e.value.status == 400
    assert study.answered_count(conn, rater) == 0
    assert study.record_answer(conn, rater, 0, first, "fake", 10) == 1
    with pytest.raises(study.AnswerRejected) as e:
        study.record_answer(conn, rater, 0, first, "real", 10)  # repeated
    assert e.value.status == 409
    with pytest.raises(study.AnswerRejected) as e:
        study.check_token(conn, rater, "x" * 22)
    assert e.value.status == 403
    assert conn.execute("SELECT position, answer FROM answers").fetchall() == [(0, "fake")]
    for pos in range(1, settings.trials_per_rater):
        study.record_answer(conn, rater, pos, study.trial_at(conn, rater, pos), "real", None)
    with pytest.raises(study.AnswerRejected) as e:
        study.record_answer(conn, rater, settings.trials_per_rater, first, "real", 1)
    assert e.value.status == 409
    assert study.answered_count(conn, rater) == settings.trials_per_rater
    conn.close()


def _simulate(db, n_raters, *, fail_attention=(), partial=(), seed=0):
    conn, settings = study.open_study(str(db))
    pools = study.image_pools(conn)
    kind = {img: name for name, ids in pools.items() for img in ids}
    rng = np.random.default_rng(seed)
    for k in range(n_raters):
        rater, _ = study.create_rater(conn, settings, pools)
        n = settings.trials_per_rater // 2 if k in partial else settings.trials_per_rater
        for pos in range(n):
            img = study.trial_at(conn, rater, pos)
            if kind[img] == "attention":
                ans = "real" if k in fail_attention else "fake"
            else:
                ans = "real" if rng.random() < (0.7 if kind[img] == "real" else 0.4) else "fake"
            study.record_answer(conn, rater, pos, img, ans, int(rng.integers(200, 3000)))
    conn.close()
    return settings


def test_report_matches_a_hand_count(tmp_path):
    db = build(tmp_path, fakes=2, n_per_rater=10, attention_n=2)
    _simulate(db, 7, fail_attention={2}, partial={5})
    res = scores.report(str(db), str(tmp_path / "rep"), n_bootstrap=500, seed=1)
    # hand count, excluding the rater who failed the attention check (rater number 2)
    import sqlite3

    with sqlite3.connect(db) as c:
        excluded = {r[0] for r in c.execute("SELECT id FROM raters WHERE number = 2")}
        rows = c.execute("SELECT a.rater_id, s.kind, s.name, a.answer, a.rt_ms FROM answers a JOIN images i "
                         "ON i.id = a.image_id JOIN sets s ON s.id = i.set_id").fetchall()
    kept = [r for r in rows if r[0] not in excluded and r[1] != "attention"]
    real = [r for r in kept if r[1] == "real"]
    real_err = sum(r[3] == "fake" for r in real) / len(real)
    assert res["n_raters"] == 7 and res["n_excluded"] == 1
    assert [t["excluded"] for t in res["raters"]] == [k == 2 for k in range(7)]
    by_set = {r["set"]: r for r in res["scores"]}
    assert set(by_set) == {"g0", "g1"}
    for s, r in by_set.items():
        fk = [x for x in kept if x[2] == s]
        fake_err = sum(x[3] == "real" for x in fk) / len(fk)
        assert r["fake_answers"] == len(fk) and r["real_answers"] == len(real)
        assert r["fake_error"] == pytest.approx(fake_err) and r["real_error"] == pytest.approx(real_err)
        assert r["hype"] == pytest.approx((fake_err + real_err) / 2)
        for key in ("hype", "fake_error", "real_error"):
            assert 0 <= r[f"{key}_lo"] <= r[key] <= r[f"{key}_hi"] <= 1
        assert r["hype_hi"] - r["hype_lo"] > 0
    # the unfiltered hand count of the helper agrees with the db as a whole
    assert sum(n for n, _ in hand_count(db).values()) == len(rows)
    # per-rater accuracy and the files
    t0 = res["raters"][0]
    mine = [r for r in rows if r[0] == t0["rater"] and r[1] != "attention"]
    correct = sum((r[1] == "real") == (r[3] == "real") for r in mine)
    assert t0["accuracy"] == pytest.approx(correct / len(mine))
    assert t0["median_rt_ms"] == pytest.approx(float(np.median([r[4] for r in mine])))
    assert res["raters"][5]["answered"] == 6 and not res["raters"][5]["complete"]
    with open(tmp_path / "rep" / "hype_scores.csv") as f:
        csv_rows = {r["set"]: r for r in csv.DictReader(f)}
    assert float(csv_rows["g1"]["hype"]) == pytest.approx(by_set["g1"]["hype"])
    md = (tmp_path / "rep" / "hype_report.md").read_text()
    assert f"| g0 | {100 * by_set['g0']['hype']:.1f} % |" in md
    assert Image.open(tmp_path / "rep" / "hype_scores.png").size[0] > 300
    with open(tmp_path / "rep" / "raters.csv") as f:
        assert len(list(csv.DictReader(f))) == 7


def test_bootstrap_ci_collapses_when_raters_agree(tmp_path):
    db = build(tmp_path, n_per_rater=10)
    conn, settings = study.open_study(str(db))
    pools = study.image_pools(conn)
    real = set(pools["real"])
    for _ in range(4):  # every rater: all reals right, all fakes wrong -> fake error 1, real error 0
        rater, _ = study.create_rater(conn, settings, pools)
        for pos in range(10):
            img = study.trial_at(conn, rater, pos)
            study.record_answer(conn, rater, pos, img, "real", 100)
    conn.close()
    r = scores.report(str(db), str(tmp_path / "rep"), n_bootstrap=200)["scores"][0]
    assert (r["fake_error"], r["real_error"], r["hype"]) == (1.0, 0.0, 0.5)
    assert r["hype_lo"] == r["hype_hi"] == 0.5
    assert len(real) == 30


def test_export_writes_every_answer(tmp_path):
    db = build(tmp_path)
    _simulate(db, 3)
    n = scores.export(str(db), str(tmp_path / "out" / "answers.csv"))
    with open(tmp_path / "out" / "answers.csv") as f:
        rows = list(csv.DictReader(f))
    assert n == len(rows) == 30
    assert list(rows[0]) == scores.EXPORT_KEYS
    for r in rows:
        assert r["truth"] == ("real" if r["kind"] == "real" else "fake")
        assert r["correct"] == str(int(r["truth"] == r["answer"]))


def test_report_refuses_an_empty_study(tmp_path):
    db = build(tmp_path)
    with pytest.raises(scores.ReportError, match="no rater"):
        scores.report(str(db), str(tmp_path / "rep"))


def test_argv_rewrite():
    assert cli.rewrite_argv(["serve", "fake=a", "db=x", "fake=b/c"]) == ["db=x", "fake=['a','b/c']", "command=serve"]
    assert cli.rewrite_argv(["command=report", "db=x"]) == ["command=report", "db=x"]
    with pytest.raises(cli.HumanEvalError, match="unknown command 'serv'"):
        cli.rewrite_argv(["serv", "db=x"])
    assert cli.fake_sets(["/x/ckpt10k", "/y/ckpt20k"]) == {"ckpt10k": "/x/ckpt10k", "ckpt20k": "/y/ckpt20k"}
    assert cli.fake_sets({"a": "/x"}) == {"a": "/x"}


def test_bad_studies_are_refused_with_the_path(tmp_path):
    db = build(tmp_path)
    cfg = {"real": str(tmp_path / "real"), "fake": str(tmp_path / "g0"), "db": str(tmp_path / "b.db")}
    with pytest.raises(images.ImageSetError, match="nope: not a folder"):
        cli.build_study({**cfg, "real": str(tmp_path / "nope"), "n_per_rater": 10, "attention_n": 0, "seed": 0})
    with pytest.raises(cli.HumanEvalError, match="30 images, but each rater needs 50"):
        cli.build_study({**cfg, "n_per_rater": 100, "attention_n": 0, "seed": 0})
    with pytest.raises(cli.HumanEvalError, match="must be even"):
        cli.build_study({**cfg, "n_per_rater": 9, "attention_n": 0, "seed": 0})
    conn, settings = study.open_study(str(db))
    conn.close()
    with pytest.raises(cli.HumanEvalError, match="already holds a study with other images"):
        cli.check_same_study({"db": str(db), "real": str(tmp_path / "g0")}, settings)
    cli.check_same_study({"db": str(db), "real": str(tmp_path / "real"), "fake": str(tmp_path / "g0")}, settings)
    assert not (tmp_path / "b.db").exists()


def test_cli_one_line_errors(tmp_path):
    r = subprocess.run([sys.executable, "-m", "ganlab.humaneval", "report", f"db={tmp_path / 'none.db'}",
                        f"hydra.run.dir={tmp_path / 'run'}"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 2
    assert r.stderr.strip().splitlines()[-1] == f"ganlab.humaneval: error: db={tmp_path / 'none.db'}: no such file"
