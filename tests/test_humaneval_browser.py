"""A scripted rater in a real headless chromium (Debian's package, driven by Playwright for Python).

Skips, with the reason, when chromium or Playwright is missing (``.ci/run`` installs chromium).
Set ``GANLAB_HUMANEVAL_SCREENSHOT=PATH`` to keep the screenshot of the page (the README's).
"""

from __future__ import annotations

import os
import shutil
import sqlite3

import pytest

from ganlab.humaneval import scores
from ganlab.humaneval.client import ServerProcess
from _humaneval_helpers import build, png_info

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
if CHROMIUM is None:
    pytest.skip("no chromium on PATH (apt-get install -y chromium; .ci/run installs it)", allow_module_level=True)
sync_api = pytest.importorskip("playwright.sync_api", reason="Playwright for Python is not installed (pip install -e '.[test]')")

KEYS = ["f", "j", "ArrowLeft", "ArrowRight", "F", "J"]
KEY_ANSWER = {"f": "real", "F": "real", "ArrowLeft": "real", "j": "fake", "J": "fake", "ArrowRight": "fake"}


@pytest.fixture(scope="module")
def browser():
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
        yield b
        b.close()


def _wait_trial(page, position: int) -> str:
    page.wait_for_selector(f'#stimulus[data-position="{position}"]', state="visible", timeout=15000)
    page.wait_for_selector("#answer-real:not([disabled])", timeout=15000)
    return page.get_attribute("#stimulus", "src").rsplit("/", 1)[1]


def test_a_rater_completes_the_study_with_the_keyboard(tmp_path, browser):
    db = build(tmp_path, fakes=2, n_per_rater=10, attention_n=2)
    total = 12
    with sqlite3.connect(db) as c:
        truth = dict(c.execute("SELECT i.id, s.kind || ':' || s.name FROM images i JOIN sets s ON s.id = i.set_id"))
    with ServerProcess(str(db), run_dir=str(tmp_path / "run")) as srv:
        origin = f"http://127.0.0.1:{srv.port}"
        ctx = browser.new_context(viewport={"width": 760, "height": 620})
        page = ctx.new_page()
        page.goto(origin + "/")
        page.wait_for_selector('body[data-state="start"]')
        page.click("#begin")
        _wait_trial(page, 0)
        rater = page.text_content("code.rater-id")
        assert len(rater) == 12
        done: list[tuple[int, str, str]] = []
        for position in range(total):
            image = _wait_trial(page, position)
            assert page.text_content("#progress-text") == f"Image {position + 1} of {total}"
            width = page.eval_on_selector("#progress-fill", "e => e.style.width")
            assert float(width.rstrip("%")) == pytest.approx(100 * position / total, abs=0.05)
            if position == 2:
                shot = tmp_path / "humaneval_page.png"
                page.screenshot(path=str(shot))
                if os.environ.get("GANLAB_HUMANEVAL_SCREENSHOT"):
                    shutil.copy(shot, os.environ["GANLAB_HUMANEVAL_SCREENSHOT"])
            if position == 4:
                page.click("#answer-fake")  # a click works too
                done.append((position, image, "fake"))
                continue
            key = KEYS[position % len(KEYS)]
            if truth[image].startswith("attention:"):  # an attentive rater: noise is fake
                key = {"f": "j", "F": "J", "ArrowLeft": "ArrowRight"}.get(key, key)
            page.keyboard.press(key)
            done.append((position, image, KEY_ANSWER[key]))
            if position == 5:  # reload: the page continues where the rater stopped
                page.wait_for_selector('#stimulus[data-position="6"]', state="visible")
                page.reload()
            if position == 8:  # another browser, no local storage: resume by typing the rater id
                page.wait_for_selector('#stimulus[data-position="9"]', state="visible")
                ctx.close()
                ctx = browser.new_context(viewport={"width": 760, "height": 620})
                page = ctx.new_page()
                page.goto(origin + "/")
                page.wait_for_selector('body[data-state="start"]')
                page.fill("#resume-id", rater.lower())
                page.keyboard.press("Enter")
        page.wait_for_selector('body[data-state="done"]', timeout=15000)
        assert page.is_visible("#score") and page.text_content("#score").endswith(f"of {total - 2} images.")
        # the label never reached the page: the DOM holds no "real"/"fake" marker of the images
        assert "kind" not in page.content() and "g0" not in page.content()
        ctx.close()

    with sqlite3.connect(db) as c:
        stored = c.execute("SELECT position, image_id, answer, rt_ms FROM answers WHERE rater_id = ? "
                           "ORDER BY position", (rater,)).fetchall()
        planned = [r[0] for r in c.execute("SELECT image_id FROM trials WHERE rater_id = ? ORDER BY position", (rater,))]
        n_answers = c.execute("SELECT COUNT(*) FROM answers").fetchone()[0]
    assert [(p, i, a) for p, i, a, _ in stored] == done and [i for _, i, _ in done] == planned
    assert n_answers == total and all(rt is not None and rt >= 0 for *_, rt in stored)

    # the report's numbers against a hand count of the same answers
    res = scores.report(str(db), str(tmp_path / "rep"), n_bootstrap=100)
    hand: dict[str, list[int]] = {}
    for _, image, answer in done:
        k = truth[image]
        if k.startswith("attention:"):
            continue
        wrong = answer == ("fake" if k.startswith("real:") else "real")
        hand.setdefault(k, [0, 0])[0] += 1
        hand[k][1] += wrong
    real_n, real_w = hand["real:real"]
    attention_wrong = sum(a == "real" for _, i, a in done if truth[i].startswith("attention:"))
    assert res["raters"][0]["attention_errors"] == attention_wrong
    assert attention_wrong == 0 and not res["raters"][0]["excluded"]
    assert sum(truth[i].startswith("attention:") for _, i, _ in done) == 2
    for r in res["scores"]:
        n, w = hand[f"fake:{r['set']}"]
        assert (r["fake_answers"], r["real_answers"]) == (n, real_n)
        assert r["fake_error"] == pytest.approx(w / n) and r["real_error"] == pytest.approx(real_w / real_n)
        assert r["hype"] == pytest.approx((w / n + real_w / real_n) / 2)
    correct = sum(n - w for n, w in hand.values())
    assert res["raters"][0]["accuracy"] == pytest.approx(correct / (total - 2))
    assert png_info(shot.read_bytes())[1] == (760, 620)


def test_exposure_time_masks_the_image(tmp_path, browser):
    db = build(tmp_path, n_per_rater=4, exposure_ms=300)
    with ServerProcess(str(db), run_dir=str(tmp_path / "run")) as srv:
        page = browser.new_page()
        page.goto(f"http://127.0.0.1:{srv.port}/")
        page.click("#begin")
        _wait_trial(page, 0)
        page.wait_for_selector("#mask", state="visible", timeout=5000)  # masked after 300 ms
        page.keyboard.press("ArrowRight")  # answering after the mask still counts
        _wait_trial(page, 1)
        assert page.is_hidden("#mask")
        page.close()
    with sqlite3.connect(db) as c:
        assert c.execute("SELECT position, answer FROM answers").fetchall() == [(0, "fake")]
