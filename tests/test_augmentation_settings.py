"""The issue-20 synthetic-data settings study (experiments/augmentation/settings.py): its splits, weights,
resumable runner and tables, on small synthetic label arrays (no shared data needed)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "experiments" / "augmentation"))
import settings  # noqa: E402


def labels(per_class: int = 40, classes: int = 10) -> np.ndarray:
    return np.random.default_rng(123).permutation(np.repeat(np.arange(classes), per_class))


def test_few_labels_split_keeps_exactly_k_labels_per_class():
    y = labels()
    for k, seed in ((1, 0), (7, 3), (40, 1)):
        idx = settings.labelled_indices(y, k, seed)
        assert np.bincount(y[idx], minlength=10).tolist() == [k] * 10
        assert len(np.unique(idx)) == len(idx)  # without replacement
    assert not np.array_equal(settings.labelled_indices(y, 7, 0), settings.labelled_indices(y, 7, 1))


def test_pseudo_labels_only_above_the_threshold_hand_count():
    probs = np.array([[0.95, 0.05, 0.00],   # kept, class 0
                      [0.50, 0.40, 0.10],   # not kept
                      [0.10, 0.00, 0.90],   # kept at exactly the threshold, class 2
                      [0.20, 0.79, 0.01],   # not kept (0.79 < 0.9)
                      [0.00, 1.00, 0.00]])  # kept, class 1
    keep, lab = settings.pseudo_labels(probs, 0.9)
    assert keep.tolist() == [0, 2, 4]
    assert lab.tolist() == [0, 2, 1]
    keep, lab = settings.pseudo_labels(probs, 0.5)
    assert keep.tolist() == [0, 1, 2, 3, 4] and lab.tolist() == [0, 0, 2, 1, 1]
    assert settings.pseudo_labels(probs, 1.01)[0].tolist() == []


def test_imbalanced_split_cuts_exactly_the_drawn_classes_and_records_them():
    y = labels(per_class=50)
    for seed in (0, 1, 2):
        idx, minority = settings.imbalanced_split(y, 12, seed, 3)
        expected = sorted(np.random.default_rng(seed).choice(np.arange(10), 3, replace=False).tolist())
        assert minority == expected
        counts = np.bincount(y[idx], minlength=10)
        assert [c for c in range(10) if counts[c] == 12] == minority
        assert all(counts[c] == 50 for c in range(10) if c not in minority)
        assert len(np.unique(idx)) == len(idx)


def test_class_balanced_weights_equal_cuis_formula():
    counts, beta = [6000, 6000, 20, 100, 6000], 0.999
    by_hand = [(1 - beta) / (1 - beta ** n) for n in counts]
    by_hand = [w * len(counts) / sum(by_hand) for w in by_hand]
    assert np.allclose(settings.class_balanced_weights(counts, beta), by_hand)
    # beta -> 0: every class weighs the same; beta -> 1: inverse class frequency
    assert np.allclose(settings.class_balanced_weights(counts, 0.0), 1.0)
    inv = np.array([1 / n for n in counts])
    assert np.allclose(settings.class_balanced_weights(counts, 1 - 1e-12), inv * 5 / inv.sum(), rtol=1e-3)


def test_recall_metrics_balanced_accuracy_and_minority_recall():
    from ganlab.metrics.classifier import accuracy_report

    names = ["a", "b", "c"]
    y = np.array([0, 0, 0, 0, 1, 1, 2, 2])
    pred = np.array([0, 0, 0, 0, 1, 0, 2, 1])
    out = settings.recall_metrics(accuracy_report(pred, y, "class", names), names, minority=[1, 2])
    assert out["accuracy"] == pytest.approx(6 / 8)
    assert out["balanced_accuracy"] == pytest.approx((1 + 0.5 + 0.5) / 3)
    assert out["minority_recall"] == pytest.approx(0.5)


def test_class_weights_and_soft_targets_reach_the_classifier_loss():
    from ganlab.metrics.classifier import train_classifier

    rng = np.random.default_rng(0)
    x = rng.integers(0, 255, (32, 1, 12, 12), dtype=np.uint8)
    y = np.arange(32) % 2
    plain = train_classifier(x, y, num_classes=2, steps=3, batch_size=8)
    weighted = train_classifier(x, y, num_classes=2, steps=3, batch_size=8, class_weights=[1.0, 5.0])
    soft = train_classifier(x, np.eye(2, dtype=np.float32)[y], num_classes=2, steps=3, batch_size=8)
    p, w, s = (dict(m.named_parameters())["head.4.weight"].detach() for m in (plain, weighted, soft))
    assert not np.allclose(p.numpy(), w.numpy())
    assert np.allclose(p.numpy(), s.numpy(), atol=1e-6)  # one-hot soft targets = hard labels
    soft_w = train_classifier(x, np.eye(2, dtype=np.float32)[y], num_classes=2, steps=3, batch_size=8,
                              class_weights=[1.0, 5.0])  # soft targets and class weights together (imbalanced arm)
    assert not np.allclose(dict(soft_w.named_parameters())["head.4.weight"].detach().numpy(), s.numpy())


def fake_job(setting: str, k: int, seed: int, acc: dict[str, float]) -> dict:
    arms = {a: {"accuracy": v, "balanced_accuracy": v, "minority_recall": v / 2, "per_class": {"a": v, "b": v}}
            for a, v in acc.items()}
    return {"setting": setting, "k": k, "seed": seed, "options": settings.options(settings.parser().parse_args(
        [setting])), "arms": arms, "cpu_seconds": 10.0, "wall_seconds": 12.0,
            "loadavg": {"start": [1.0, 1, 1], "end": [2.0, 1, 1]}, "split": {"minority_names": ["b"]},
            "gan_label_fidelity": {"a": 0.5 + seed / 10, "b": 1.0}}


def write_jobs(work: Path, setting: str, jobs: list[dict]) -> None:
    d = work / setting / "jobs"
    d.mkdir(parents=True, exist_ok=True)
    for j in jobs:
        (d / f"{settings.job_name(setting, j['k'], j['seed'])}.json").write_text(json.dumps(j))


def test_runner_skips_finished_jobs_on_rerun(tmp_path, monkeypatch):
    arms = settings.SETTINGS["imbalanced"]["arms"]
    argv = ["imbalanced", "--ks", "20", "--seeds", "0", "1", "--work", str(tmp_path), "--out", str(tmp_path / "out"),
            "--gan-steps", "7", "--gan-override"]
    done = fake_job("imbalanced", 20, 0, dict.fromkeys(arms, 0.8))
    done["options"] = settings.options(settings.parser().parse_args(argv))
    partial = fake_job("imbalanced", 20, 1, dict.fromkeys(arms[:2], 0.8))  # synthetic arms missing: not finished
    write_jobs(tmp_path, "imbalanced", [done, partial])
    jobs_dir = tmp_path / "imbalanced" / "jobs"
    assert settings.pending("imbalanced", [20, 100], [0, 1], jobs_dir) == [(20, 1), (100, 0), (100, 1)]
    assert settings.pending("imbalanced", [20], [0, 1], jobs_dir, fresh=True) == [(20, 0), (20, 1)]
    started = []  # main() hands only the unfinished jobs to the lanes, with the options it was given
    monkeypatch.setattr(settings, "run_lanes", lambda commands, *a, **kw: started.extend(commands))
    settings.main(argv)
    assert [name for name, _ in started] == ["imbalanced_k20_s1"]
    argv = started[0][1]
    assert argv[argv.index("--gan-steps") + 1] == "7" and argv[-3:] == ["--only", "20", "1"]
    i = argv.index("--gan-override")
    assert argv[i + 1].startswith("--")  # an empty override list stays empty in the job


def test_tables_are_written_from_the_results_files_only(tmp_path):
    arms = settings.SETTINGS["imbalanced"]["arms"]
    accs = [{"oversample+classic": 0.80, "class-balanced": 0.82, "synthetic": 0.85, "synthetic+class-balanced": 0.81},
            {"oversample+classic": 0.70, "class-balanced": 0.71, "synthetic": 0.74, "synthetic+class-balanced": 0.70},
            {"oversample+classic": 0.75, "class-balanced": 0.74, "synthetic": 0.77, "synthetic+class-balanced": 0.76}]
    write_jobs(tmp_path, "imbalanced", [fake_job("imbalanced", 20, s, a) for s, a in enumerate(accs)])
    out = tmp_path / "out"
    summary = settings.aggregate_setting("imbalanced", [20, 100], [0, 1, 2], tmp_path, out)
    assert summary["not_run"] == ["imbalanced_k100_s0", "imbalanced_k100_s1", "imbalanced_k100_s2"]
    row = summary["rows"][0]
    # baseline: the classic arm with the better mean (class-balanced 75.67 > oversample 75.0)
    assert row["baseline"]["accuracy"] == "class-balanced"
    gain = row["gain"]["accuracy"]["synthetic"]
    diffs = [a["synthetic"] - a["class-balanced"] for a in accs]
    assert gain["mean"] == pytest.approx(np.mean(diffs))
    from scipy import stats

    assert gain["ci95"] == pytest.approx(stats.t.ppf(0.975, 2) * np.std(diffs, ddof=1) / np.sqrt(3))
    md = (out / "results.md").read_text()
    assert "| synthetic | 78.7 ± " in md and f"{100 * np.mean(diffs):+.1f} ± " in md
    assert "75.7 ± " in md and "*" in md  # the baseline's cell is marked
    assert json.loads((out / "results.json").read_text())["rows"][0]["gan_label_fidelity"]["a"]["min"] == 0.5
    assert (out / "gains.png").stat().st_size > 0
    assert set(arms) <= set(row["metrics"]["accuracy"])
    # the same files, aggregated again: identical tables (nothing but the job files feeds them)
    first = md
    settings.aggregate_setting("imbalanced", [20, 100], [0, 1, 2], tmp_path, out)
    assert (out / "results.md").read_text() == first


def fake_fashion(root: Path, per_class: int = 12, seed: int = 0, full_test: bool = False) -> None:
    """A Fashion-MNIST-shaped data set in its IDX layout: class c is a bright square at a class-specific place
    (test split: its first 10 images, or with ``full_test`` all of them, so every class has a recall)."""
    from run import write_fashion_subset

    rng = np.random.default_rng(seed)
    y = np.repeat(np.arange(10), per_class)
    x = rng.integers(0, 40, (len(y), 1, 28, 28), dtype=np.uint8)
    for i, c in enumerate(y):
        r, col = divmod(int(c), 5)
        x[i, 0, 2 + 12 * r : 12 + 12 * r, 1 + 5 * col : 6 + 5 * col] = 230
    write_fashion_subset(root, x, y, x, y, n_test=None if full_test else 10)


TINY_GAN = ["--gan-override", "model.generator.base_width=8", "model.discriminator.base_width=8",
            "model.generator.z_dim=16", "data.batch_size=16"]


def test_a_few_labels_job_end_to_end_and_its_rerun(tmp_path, monkeypatch):
    """One tiny few-labels job: every arm trained on what the design says (k labelled, + the kept pseudo-labels,
    + the filtered synthetic images), the job file written, and a rerun with the finished file starts nothing."""
    fake_fashion(tmp_path / "fashion")
    argv = ["few-labels", "--ks", "2", "--seeds", "0", "--data", str(tmp_path / "fashion"), "--work",
            str(tmp_path / "work"), "--out", str(tmp_path / "out"), "--gan-steps", "2", "--clf-steps", "3",
            "--m", "3", "--pseudo-threshold", "0.0", "--filter-threshold", "0.0", *TINY_GAN]
    args = settings.parser().parse_args(argv)
    res = settings.run_job(args, "few-labels", 2, 0)
    n_lab, ps = 20, res["pseudo"]
    assert ps["pool"] == 120 - n_lab and ps["kept"] == ps["pool"]  # threshold 0 keeps every pseudo-label
    assert sum(ps["kept_per_class"]) == ps["kept"]
    assert res["gan_images"]["n"] == n_lab + ps["kept"]
    arms = res["arms"]
    assert arms["real+classic"]["n_train"] == n_lab
    assert arms["pseudo"]["n_train"] == n_lab + ps["kept"]
    written = sum(v["written"] for v in res["filter"]["per_class"].values())
    assert written == 30  # 3 per class, every candidate passes a 0 threshold
    assert arms["real+synthetic"]["n_train"] == n_lab + written
    assert arms["pseudo+synthetic"]["n_train"] == n_lab + ps["kept"] + written
    assert len(res["gan_label_fidelity"]) == 10  # every class read, from m plain samples each
    assert res["cpu_seconds"] > 0 and len(res["loadavg"]["start"]) == 3
    assert "gan_train" in res["seconds"]
    again = settings.run_job(args, "few-labels", 2, 0)  # an interrupted job rerun: the GAN is reused, same numbers
    assert "gan_train" not in again["seconds"]
    assert {a: v["accuracy"] for a, v in again["arms"].items()} == {a: v["accuracy"] for a, v in arms.items()}
    other = settings.parser().parse_args([*argv, "--pseudo-threshold", "0.99"])
    assert "gan_train" in settings.run_job(other, "few-labels", 2, 0)["seconds"]  # other GAN images: retrained
    jobs_dir = tmp_path / "work" / "few-labels" / "jobs"
    jobs_dir.mkdir(parents=True, exist_ok=True)
    (jobs_dir / "few-labels_k2_s0.json").write_text(json.dumps(res))
    started = []
    monkeypatch.setattr(settings, "run_lanes", lambda commands, *a, **kw: started.extend(commands))
    settings.main(argv)
    assert started == []
    assert "| pseudo+synthetic | " in (tmp_path / "out" / "results.md").read_text()


def test_gan_oversampling_repeats_only_the_minority_images():
    y = np.array([0, 0, 0, 0, 1, 2, 2])
    x = np.arange(len(y))[:, None] * 10
    xo, yo = settings.gan_oversampled(x, y, [1, 2], 4)
    assert np.bincount(yo).tolist() == [4, 4, 4]
    assert sorted(xo[yo == 2, 0].tolist()) == [50, 50, 60, 60] and xo[yo == 1, 0].tolist() == [40] * 4
    assert settings.gan_oversampled(x, y, [1, 2], 0)[1].tolist() == y.tolist()


def test_a_rerun_with_other_options_is_refused_not_mixed(tmp_path, monkeypatch):
    arms = settings.SETTINGS["imbalanced"]["arms"]
    write_jobs(tmp_path, "imbalanced", [fake_job("imbalanced", 20, 0, dict.fromkeys(arms, 0.8))])
    monkeypatch.setattr(settings, "run_lanes", lambda commands, *a, **kw: commands and pytest.fail("no job may start"))
    base = ["imbalanced", "--ks", "20", "--seeds", "0", "--work", str(tmp_path), "--out", str(tmp_path / "out")]
    with pytest.raises(SystemExit, match=r"imbalanced_k20_s0: target 2000 -> 500"):
        settings.main([*base, "--target", "500"])
    settings.main(base)  # the same options: nothing to run, the tables are written
    assert (tmp_path / "out" / "results.md").exists()


def test_share_weights_give_the_filled_classes_synthetic_images_their_share_hand_count():
    y = np.array([0, 0, 0, 1, 1, 1, 1, 1, 2])  # class 1: 1 real + 4 synthetic; class 2: synthetic only
    syn = np.array([0, 0, 0, 0, 1, 1, 1, 1, 1], dtype=bool)
    w = settings.share_weights(y, syn, 0.25)
    assert w[:3].tolist() == pytest.approx([1 / 3] * 3)  # a class with no synthetic image: uniform, total 1
    assert w[3] == pytest.approx(0.75) and w[4:8].tolist() == pytest.approx([0.25 / 4] * 4)
    assert w[8] == pytest.approx(1.0)  # only synthetic images: they carry the whole class
    for c in range(3):  # every class drawn equally often
        assert w[y == c].sum() == pytest.approx(1.0)
    # the share the `synthetic` arm gets implicitly (by count: 4 of 5) gives 1 / class count, its own weights
    assert settings.share_weights(y, syn, 0.8)[3:8].tolist() == pytest.approx([0.2] * 5)


def test_fill_share_arms_are_part_of_a_finished_job_and_of_its_table(tmp_path):
    argv = ["imbalanced", "--fill-shares", "0.5", "0.2"]
    opts = settings.options(settings.parser().parse_args(argv))
    arms = settings.arms_of("imbalanced", opts)
    assert arms[-2:] == ["synthetic@0.5", "synthetic@0.2"]
    job = fake_job("imbalanced", 20, 0, dict.fromkeys(arms[:-1], 0.8))
    job["options"] = opts
    write_jobs(tmp_path, "imbalanced", [job])
    path = tmp_path / "imbalanced" / "jobs" / "imbalanced_k20_s0.json"
    assert not settings.job_done(path, "imbalanced")  # synthetic@0.2 missing: not finished
    job["arms"]["synthetic@0.2"] = dict(job["arms"]["synthetic"], accuracy=0.9)
    write_jobs(tmp_path, "imbalanced", [job])
    assert settings.job_done(path, "imbalanced")
    settings.aggregate_setting("imbalanced", [20], [0], tmp_path, tmp_path / "out")
    md = (tmp_path / "out" / "results.md").read_text()
    assert "| synthetic@0.2 | 90.0 (1 seed) " in md and "| synthetic@0.5 | 80.0 (1 seed) " in md


def test_an_imbalanced_job_with_fill_shares_and_the_kept_gan_checkpoint(tmp_path):
    """One tiny imbalanced job: the GAN keeps its best class-fidelity checkpoint and the job samples from it; every
    fill-share arm trains on the same filled set as `synthetic`."""
    fake_fashion(tmp_path / "fashion", full_test=True)
    argv = ["imbalanced", "--ks", "2", "--seeds", "0", "--data", str(tmp_path / "fashion"), "--work",
            str(tmp_path / "work"), "--gan-steps", "2", "--clf-steps", "3", "--m", "3", "--target", "5",
            "--gan-oversample", "6", "--filter-threshold", "0.0", "--gan-keep-best", "1", "--fill-shares", "0.5",
            *TINY_GAN, "callbacks.class_fidelity.classifier_steps=3", "callbacks.class_fidelity.per_class=2"]
    res = settings.run_job(settings.parser().parse_args(argv), "imbalanced", 2, 0)
    assert res["gan_checkpoint"]["file"] == "best_class_fidelity.ckpt"
    kept = json.loads((tmp_path / "work" / "imbalanced" / "imbalanced_k2_s0" / "gan" / "class_fidelity.json").read_text())
    assert res["gan_checkpoint"]["generator_step"] == kept["best"]["generator_step"] in (1, 2)  # a step it scored
    arms = res["arms"]
    assert sum(res["synthetic_counts"]) == 3 * (5 - 2)  # three minority classes filled from 2 to 5
    assert arms["synthetic@0.5"]["n_train"] == arms["synthetic"]["n_train"] == arms["oversample+classic"]["n_train"] + 9


def test_kshot_gains_are_paired_over_the_stronger_classic_arm():
    import run

    accs = [{"real": 0.80, "real+classic": 0.77, "real+classic+synth 0.25": 0.78},
            {"real": 0.79, "real+classic": 0.78, "real+classic+synth 0.25": 0.81}]
    base, gains = run.gains_over_stronger_classic([{"accuracy": a} for a in accs])
    assert base == "real"  # mean 79.5 > 77.5
    assert gains["real+classic+synth 0.25"]["mean"] == pytest.approx(((0.78 - 0.80) + (0.81 - 0.79)) / 2)
    assert gains["real+classic"]["mean"] == pytest.approx(-0.02)
    assert "real" not in gains and "synth only (CAS)" not in gains  # arms the jobs lack are left out
