"""The study server as raters (and attackers) meet it: a real uvicorn subprocess on 127.0.0.1."""

from __future__ import annotations

import http.client
import json
import signal
import sqlite3
import threading
import time

import pytest

from ganlab.humaneval import cli
from ganlab.humaneval.client import LOOPBACK, RaterClient, ServerProcess
from _humaneval_helpers import build, png_info, sqlite_answers

pytest.importorskip("uvicorn")
pytest.importorskip("starlette")


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    root = tmp_path_factory.mktemp("humaneval_server")
    db = build(root, fakes=2, n_per_rater=10)
    with ServerProcess(str(db), run_dir=str(root / "run")) as srv:
        yield srv


def raw(port: int, method: str, path: str, body: bytes | None = None, headers: dict | None = None):
    """One request exactly as given (no client-side path normalisation)."""
    c = http.client.HTTPConnection(LOOPBACK, port, timeout=10)
    c.putrequest(method, path, skip_host=True, skip_accept_encoding=True)
    h = {"Host": f"{LOOPBACK}:{port}", **(headers or {})}
    if body is not None and "Content-Length" not in h and "Transfer-Encoding" not in h:
        h["Content-Length"] = str(len(body))
    for k, v in h.items():
        c.putheader(k, v)
    c.endheaders()
    if body is not None:
        c.send(body)
    r = c.getresponse()
    data = r.read()
    c.close()
    return r.status, dict((k.lower(), v) for k, v in r.getheaders()), data


def counts(db: str) -> tuple[int, int]:
    with sqlite3.connect(db) as c:
        return (c.execute("SELECT COUNT(*) FROM raters").fetchone()[0],
                c.execute("SELECT COUNT(*) FROM answers").fetchone()[0])


TRAVERSALS = [
    "/img/../../../../etc/passwd", "/img/..%2f..%2f..%2fetc%2fpasswd", "/img/%2e%2e/%2e%2e/etc/passwd",
    "/img/%252e%252e%252fetc%252fpasswd", "/img//etc/passwd", "/img/%2Fetc%2Fpasswd", "/img/..\\..\\etc\\passwd",
    "/../../../etc/passwd", "//etc/passwd", "/etc/passwd", "/static/../../../../etc/passwd",
    "/static/..%2f..%2fapp.py", "/static/", "/static/index.html", "/static", "/img/", "/img", "/api/",
    "/study.db", "/img/study.db", "/ganlab/humaneval/app.py", "/conf/humaneval.yaml",
    "/img/" + "A" * 22, "/img/" + "A" * 300, "/img/real", "/img/g0",
]


@pytest.mark.parametrize("path", TRAVERSALS)
def test_only_study_images_are_served(server, path):
    status, headers, body = raw(server.port, "GET", path)
    assert 400 <= status < 500, (path, status)
    assert b"root:" not in body and b"import" not in body and b"SQLite" not in body and b"PNG" not in body
    assert headers["x-content-type-options"] == "nosniff" and "server" not in headers


def test_forged_cross_site_requests_store_nothing(server):
    rater = RaterClient(server.port).start()
    trial = rater.trial()
    before = counts(server.db)
    good = json.dumps({"rater": rater.rater, "position": 0, "image": trial["image"], "answer": "real",
                       "rt_ms": 5}).encode()
    base = {"Origin": rater.origin, "Content-Type": "application/json", "X-Rater-Token": rater.token}
    forged = [
        {**base, "Origin": "http://evil.example"},
        {**base, "Origin": "null"},
        {**base, "Origin": f"http://localhost.evil.example:{server.port}"},
        {k: v for k, v in base.items() if k != "Origin"},
        {**base, "Content-Type": "text/plain"},  # what a cross-site <form>/no-preflight fetch can send
        {**base, "Content-Type": "application/x-www-form-urlencoded"},
        {k: v for k, v in base.items() if k != "X-Rater-Token"},
        {**base, "X-Rater-Token": "A" * 22},
        {**base, "Host": "evil.example", "Origin": "http://evil.example"},  # DNS rebinding
    ]
    for h in forged:
        status, _, body = raw(server.port, "POST", "/api/answer", good, h)
        assert 400 <= status < 500, (h, status, body)
        if h.get("X-Rater-Token") == rater.token:  # creating a rater needs no token, only the same origin
            assert 400 <= raw(server.port, "POST", "/api/rater", b"{}", h)[0] < 500, h
    assert counts(server.db) == before
    status, _, _ = raw(server.port, "POST", "/api/answer", good, base)  # the same request, same-origin: stored
    assert status == 200 and counts(server.db) == (before[0], before[1] + 1)


def test_malformed_and_oversized_bodies_store_nothing(server):
    rater = RaterClient(server.port).start()
    trial = rater.trial()
    ok = {"rater": rater.rater, "position": 0, "image": trial["image"], "answer": "fake", "rt_ms": 5}
    bad = [b"", b"not json", b"[1,2]", b"\xff\xfe{}", b'{"rater": 1}', json.dumps({**ok, "extra": 1}).encode(),
           json.dumps({k: v for k, v in ok.items() if k != "rt_ms"}).encode(),
           json.dumps({**ok, "position": "0"}).encode(), json.dumps({**ok, "position": True}).encode(),
           json.dumps({**ok, "position": -1}).encode(), json.dumps({**ok, "position": 10 ** 30}).encode(),
           json.dumps({**ok, "answer": "maybe"}).encode(), json.dumps({**ok, "answer": "REAL"}).encode(),
           json.dumps({**ok, "rt_ms": -3}).encode(), json.dumps({**ok, "rt_ms": 1.5}).encode(),
           json.dumps({**ok, "rt_ms": 10 ** 12}).encode(), json.dumps({**ok, "image": "../../etc/passwd"}).encode(),
           json.dumps({**ok, "image": "B" * 22}).encode(), json.dumps({**ok, "rater": "../x"}).encode(),
           json.dumps({**ok, "rater": "A" * 12}).encode(), json.dumps({**ok, "position": 3}).encode(),
           json.dumps({**ok, "pad": "x" * 5000}).encode()]
    before = counts(server.db)
    for body in bad:
        status, resp = rater.request("POST", "/api/answer", body)
        assert 400 <= status < 500, (body[:60], status, resp)
    # oversized with a lying / absent Content-Length (chunked)
    big = json.dumps({**ok, "rt_ms": 1, "rater": rater.rater + " " * 4000}).encode()
    h = {"Origin": rater.origin, "Content-Type": "application/json", "X-Rater-Token": rater.token}
    assert raw(server.port, "POST", "/api/answer", big, h)[0] == 413
    chunked = f"{len(big):x}\r\n".encode() + big + b"\r\n0\r\n\r\n"
    assert raw(server.port, "POST", "/api/answer", chunked, {**h, "Transfer-Encoding": "chunked"})[0] == 413
    assert raw(server.port, "GET", "/api/answer")[0] == 405
    assert counts(server.db) == before
    status, resp = rater.answer(trial, "fake")
    assert status == 200 and resp == {"ok": True, "next": 1, "done": False}
    status, resp = rater.answer(trial, "real")  # a repeated answer
    assert status == 409 and counts(server.db) == (before[0], before[1] + 1)
    assert [a[1:4] for a in sqlite_answers(server.db) if a[0] == rater.rater] == [(0, trial["image"], "fake")]


def test_the_page_never_gets_a_label_and_files_look_alike(server):
    rater = RaterClient(server.port).start()
    with sqlite3.connect(server.db) as c:
        kind = dict(c.execute("SELECT i.id, s.kind FROM images i JOIN sets s ON s.id = i.set_id"))
    seen = {"real": set(), "fake": set()}
    for _ in range(10):
        trial = rater.trial()
        assert set(trial) == {"done", "position", "total", "image", "src", "exposure_ms"}
        assert trial["src"] == f"/img/{trial['image']}" and trial["image"] not in json.dumps(
            {k: v for k, v in trial.items() if k not in ("image", "src")})
        status, headers, data = raw(server.port, "GET", trial["src"])
        assert status == 200
        fmt, size, mode, info = png_info(data)
        seen[kind[trial["image"]]].add((headers["content-type"], headers["content-length"], fmt, size, mode,
                                        tuple(sorted(info))))
        status, resp = rater.answer(trial, "real")
        assert status == 200 and set(resp) == {"ok", "next", "done"}
    assert len(seen["real"]) == len(seen["fake"]) == 1 and seen["real"] == seen["fake"]
    end = rater.trial()
    assert end["done"] is True and end["score"]["answered"] == 10


def test_resume_by_rater_id(server):
    a = RaterClient(server.port).start()
    for _ in range(3):
        assert a.answer(a.trial(), "fake")[0] == 200
    b = RaterClient(server.port)
    status, data = b.request("POST", "/api/resume", {"rater": a.rater})
    assert status == 200 and data == {"rater": a.rater, "token": a.token}
    b.rater, b.token = data["rater"], data["token"]
    assert b.trial()["position"] == 3
    assert b.request("POST", "/api/resume", {"rater": "Z" * 12})[0] == 404


def test_non_loopback_host_warns(tmp_path, monkeypatch, capsys):
    import uvicorn

    db = build(tmp_path)
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: None)  # never bind anything but loopback in tests
    assert cli.is_loopback("127.0.0.1") and cli.is_loopback("localhost") and not cli.is_loopback("0.0.0.0")
    cli.serve({"db": str(db), "host": "192.0.2.1", "port": 8765})
    assert "WARNING: serving on 192.0.2.1" in capsys.readouterr().err
    cli.serve({"db": str(db), "host": "127.0.0.1", "port": 8765})
    assert "WARNING" not in capsys.readouterr().err


def test_kill_9_keeps_every_acknowledged_answer(tmp_path):
    db = build(tmp_path, n_per_rater=20)
    srv = ServerProcess(str(db), run_dir=str(tmp_path / "run")).start()
    acked: dict[str, list[tuple[int, str, str]]] = {}
    stop = threading.Event()
    raters = [RaterClient(srv.port, timeout=5).start() for _ in range(4)]

    def rate(r: RaterClient) -> None:
        mine = acked.setdefault(r.rater, [])
        try:
            while not stop.is_set():
                t = r.trial()
                if t["done"]:
                    return
                answer = "real" if (t["position"] * 7) % 3 else "fake"
                status, _ = r.answer(t, answer, rt_ms=t["position"])
                if status == 200:
                    mine.append((t["position"], t["image"], answer))
        except (OSError, RuntimeError, http.client.HTTPException):
            return  # the server died under us

    threads = [threading.Thread(target=rate, args=(r,)) for r in raters]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 30
    while sum(map(len, acked.values())) < 12 and time.monotonic() < deadline:
        time.sleep(0.01)
    srv.kill(signal.SIGKILL)  # mid-flight: requests are being answered right now
    stop.set()
    for t in threads:
        t.join(timeout=30)
    assert srv.proc.returncode == -signal.SIGKILL
    stored = {}
    for rater, pos, image, answer, rt in sqlite_answers(db):
        stored.setdefault(rater, []).append((pos, image, answer))
    n_acked = 0
    for rater, mine in acked.items():
        got = stored.get(rater, [])
        assert got[: len(mine)] == mine, rater  # every acknowledged answer is there, in order
        assert len(got) - len(mine) <= 1  # at most the one in flight when the server died
        n_acked += len(mine)
    assert n_acked >= 12
    # restart on the same db (no folders needed) and finish one rater after a "reload"
    srv2 = ServerProcess(str(db), run_dir=str(tmp_path / "run")).start()
    try:
        r = RaterClient(srv2.port)
        status, data = r.request("POST", "/api/resume", {"rater": raters[0].rater})
        assert status == 200
        r.rater, r.token = data["rater"], data["token"]
        t = r.trial()
        assert t["position"] == len(stored.get(r.rater, []))
        while not t["done"]:
            assert r.answer(t, "fake")[0] == 200
            t = r.trial()
        assert len([a for a in sqlite_answers(db) if a[0] == r.rater]) == 20
    finally:
        srv2.kill(signal.SIGTERM)
