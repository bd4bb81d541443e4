"""experiments/check_figures.py: every results file the READMEs cite is in the repository."""

from __future__ import annotations

import importlib.util
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("check_figures", REPO / "experiments" / "check_figures.py")
check_figures = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(check_figures)


def test_every_cited_results_file_exists():
    assert check_figures.missing(REPO) == []
    # the check looks at something: the READMEs cite results files of several studies
    cited = {t for d in check_figures.documents(REPO) for _, t in check_figures.cited_paths(d.read_text())}
    assert "experiments/faults/results.md" in cited or "results.md" in {Path(t).name for t in cited}
    assert len(cited) >= 20


def test_a_missing_file_is_reported_and_outputs_are_not(tmp_path):
    (tmp_path / "experiments" / "study" / "results").mkdir(parents=True)
    (tmp_path / "experiments" / "study" / "results" / "results.json").write_text("{}")
    (tmp_path / "docs").mkdir()
    (tmp_path / "README.md").write_text(
        "See `experiments/study/results/results.json` and ![plot](experiments/study/results/plot.png),\n"
        "the study folder `experiments/study/`, a gone one `experiments/gone/`; a run writes `csv/metrics.csv`.\n")
    (tmp_path / "experiments" / "study" / "README.md").write_text(
        "Table: `results/results.json`, `results/table.csv`, globs `results/*.json` and `results/*.npz`.\n"
        "Outputs: `$OUT/gpu/results.md`, `/tmp/x/results.json`, `<run>/metrics.json`.\n")
    (tmp_path / "docs" / "page.md").write_text("[numbers](../experiments/study/results/results.json) `docs/gone.md`\n")
    bad = check_figures.missing(tmp_path)
    assert [b.split(": ", 1)[1].split(" ", 1)[0] for b in bad] == [
        "experiments/study/results/plot.png", "experiments/gone/", "docs/gone.md",
        "results/table.csv", "results/*.npz"], bad
    assert bad[0].startswith("README.md:1: ")
    assert check_figures.main(["--root", str(tmp_path)]) == 1
