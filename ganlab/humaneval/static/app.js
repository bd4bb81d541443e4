// Real-or-fake rater page. Talks to the server only through /api/* (same origin, JSON, with the
// rater's token in X-Rater-Token); the page never learns an image's label.
"use strict";
(function () {
  const KEY = "ganlab.humaneval.rater";
  const $ = (id) => document.getElementById(id);
  let rater = null, token = null, trial = null, shownAt = null, busy = false, maskTimer = null;

  function show(state) {
    document.body.dataset.state = state;
    for (const s of ["start", "trial", "done"]) $(s).hidden = s !== state;
  }
  function fail(msg) { $("error").textContent = msg; $("error").hidden = false; }

  async function post(path, body, withToken) {
    const headers = { "Content-Type": "application/json" };
    if (withToken) headers["X-Rater-Token"] = token;
    const r = await fetch(path, { method: "POST", headers, body: JSON.stringify(body), credentials: "omit" });
    const data = await r.json().catch(() => ({}));
    return { status: r.status, data };
  }

  function remember(d) {
    rater = d.rater; token = d.token;
    localStorage.setItem(KEY, JSON.stringify({ rater, token }));
    for (const el of document.querySelectorAll(".rater-id")) el.textContent = rater;
  }

  function setButtons(on) { $("answer-real").disabled = !on; $("answer-fake").disabled = !on; }

  async function next() {
    const { status, data } = await post("/api/trial", { rater }, true);
    if (status !== 200) {
      if (status === 403 || status === 404) { localStorage.removeItem(KEY); show("start"); }
      fail(data.error || ("error " + status));
      return;
    }
    $("error").hidden = true;
    if (data.done) {
      if (data.score) {
        $("score").textContent = "You were right on " + data.score.correct + " of " + data.score.answered + " images.";
        $("score").hidden = false;
      }
      show("done");
      return;
    }
    trial = data;
    const pct = (100 * data.position / data.total).toFixed(1);
    $("progress-fill").style.width = pct + "%";
    $("progress").setAttribute("aria-valuenow", String(data.position));
    $("progress").setAttribute("aria-valuemax", String(data.total));
    $("progress-text").textContent = "Image " + (data.position + 1) + " of " + data.total;
    setButtons(false);
    $("mask").hidden = true;
    clearTimeout(maskTimer);
    const img = $("stimulus");
    img.style.visibility = "hidden";
    img.onload = () => {
      img.style.visibility = "visible";
      shownAt = performance.now();
      img.dataset.position = String(data.position);
      setButtons(true);
      busy = false;
      if (data.exposure_ms) maskTimer = setTimeout(() => { $("mask").hidden = false; }, data.exposure_ms);
    };
    img.onerror = () => fail("could not load the image; reload the page to continue");
    show("trial");
    img.src = data.src;
  }

  async function answer(choice) {
    if (busy || !trial || shownAt === null) return;
    busy = true;
    setButtons(false);
    const rt = Math.round(performance.now() - shownAt);
    shownAt = null;
    const { status, data } = await post("/api/answer",
      { rater, position: trial.position, image: trial.image, answer: choice, rt_ms: rt }, true);
    if (status !== 200 && status !== 409) { fail(data.error || ("error " + status)); }
    await next();  // 409: already stored (e.g. a double submit); continue from the server's state
  }

  async function begin() {
    const { status, data } = await post("/api/rater", {}, false);
    if (status !== 200) return fail(data.error || ("error " + status));
    remember(data);
    await next();
  }

  async function resume() {
    const id = $("resume-id").value.trim().toUpperCase();
    const { status, data } = await post("/api/resume", { rater: id }, false);
    if (status !== 200) return fail(data.error || ("error " + status));
    remember(data);
    await next();
  }

  document.addEventListener("keydown", (e) => {
    if (document.body.dataset.state !== "trial" || e.repeat || e.target.tagName === "INPUT") return;
    if (e.key === "f" || e.key === "F" || e.key === "ArrowLeft") { e.preventDefault(); answer("real"); }
    else if (e.key === "j" || e.key === "J" || e.key === "ArrowRight") { e.preventDefault(); answer("fake"); }
  });
  $("answer-real").addEventListener("click", () => answer("real"));
  $("answer-fake").addEventListener("click", () => answer("fake"));
  $("begin").addEventListener("click", begin);
  $("resume").addEventListener("click", resume);
  $("resume-id").addEventListener("keydown", (e) => { if (e.key === "Enter") resume(); });

  const saved = JSON.parse(localStorage.getItem(KEY) || "null");
  if (saved && saved.rater && saved.token) { remember(saved); next(); } else { show("start"); }
})();
