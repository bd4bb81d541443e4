"""The rater-facing web app (Starlette, served by uvicorn).

Routes (nothing else exists: no static-file mount, no listing)
    GET  /                  the page                 GET /static/app.js, /static/app.css
    GET  /img/{id}          a study image by its random id (looked up in the db, never a path)
    POST /api/rater         {}                  -> {rater, token}        a new rater and plan
    POST /api/resume        {rater}             -> {rater, token}        continue after a reload
    POST /api/trial         {rater}             -> the next image (never its label), or the end
    POST /api/answer        {rater, position, image, answer, rt_ms} -> {next}

Every POST must be same-origin (an ``Origin`` equal to ``http://<Host>``), ``application/json``,
at most ``MAX_BODY`` bytes and exactly the expected fields; ``/api/trial`` and ``/api/answer``
also need the rater's token in ``X-Rater-Token`` (a custom header, which a cross-site page cannot
send without a CORS preflight that this app never grants). ``Host`` must be one of the served
names (DNS-rebinding guard). Anything else is a 4xx and nothing is stored.
"""

from __future__ import annotations

import contextlib
import json
import re
import sqlite3
import threading
from importlib import resources
from typing import Any, Callable

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.middleware import Middleware
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from ganlab.humaneval import study as db

MAX_BODY = 1024
IMAGE_ID = re.compile(r"[A-Za-z0-9_-]{22}")
RATER_ID = re.compile(f"[{db.RATER_ALPHABET}]{{{db.RATER_ID_LEN}}}")
TOKEN = re.compile(r"[A-Za-z0-9_-]{22}")
MAX_RT_MS = 24 * 3600 * 1000
SECURITY_HEADERS = [
    (b"content-security-policy",
     b"default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
     b"form-action 'none'; frame-ancestors 'none'; base-uri 'none'"),
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
    (b"cache-control", b"no-store"),
    (b"cross-origin-resource-policy", b"same-origin"),
]


class Refused(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status, self.message = status, message


def _static(name: str) -> bytes:
    return resources.files("ganlab.humaneval").joinpath("static", name).read_bytes()


class SecurityHeaders:
    """Pure ASGI middleware: the same hardening headers on every response (errors included)."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)

        async def send_with_headers(message):
            if message["type"] == "http.response.start":
                message.setdefault("headers", [])
                message["headers"] = [h for h in message["headers"] if h[0].lower() != b"server"] + SECURITY_HEADERS
            await send(message)

        await self.app(scope, receive, send_with_headers)


class StudyApp:
    """Holds the db path, the study settings and one SQLite connection per worker thread."""

    def __init__(self, db_path: str):
        self.db_path = db_path
        conn, self.settings = db.open_study(db_path)
        self.pools = db.image_pools(conn)
        conn.close()
        self._local = threading.local()
        self._conns: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        # one writer at a time inside this process: SQLite's own busy handler would make competing
        # writers sleep with back-off (long tail latencies); a lock just queues them
        self.write_lock = threading.Lock()

    def conn(self) -> sqlite3.Connection:
        c = getattr(self._local, "conn", None)
        if c is None:
            c = self._local.conn = db.connect(self.db_path)
            with self._lock:
                self._conns.append(c)
        return c

    def close(self) -> None:
        with self._lock:
            for c in self._conns:
                c.close()
            self._conns.clear()

    async def in_db(self, fn: Callable[..., Any], *args) -> Any:
        return await run_in_threadpool(lambda: fn(self.conn(), *args))

    async def write(self, fn: Callable[..., Any], *args) -> Any:
        def locked():
            with self.write_lock:
                return fn(self.conn(), *args)
        return await run_in_threadpool(locked)


# -- request validation ----------------------------------------------------------------------------
async def json_body(request: Request, fields: dict[str, type | tuple]) -> dict:
    origin = request.headers.get("origin")
    if origin is None or origin != f"http://{request.headers.get('host', '')}":
        raise Refused(403, "cross-origin request refused (Origin must be this server)")
    if request.headers.get("content-type", "").split(";")[0].strip().lower() != "application/json":
        raise Refused(415, "Content-Type must be application/json")
    body = await request.body()  # Starlette's max_body_size answers 413 beyond MAX_BODY bytes
    try:
        data = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise Refused(400, "body is not valid JSON") from None
    if not isinstance(data, dict) or set(data) != set(fields):
        raise Refused(400, f"body must be a JSON object with exactly the fields {sorted(fields)}")
    for key, kind in fields.items():
        value = data[key]
        if isinstance(value, bool) or not isinstance(value, kind):
            raise Refused(400, f"field {key!r} has the wrong type")
    return data


def _rater_field(data: dict) -> str:
    if not RATER_ID.fullmatch(data["rater"]):
        raise Refused(400, "malformed rater id")
    return data["rater"]


def _token(request: Request) -> str:
    token = request.headers.get("x-rater-token", "")
    if not TOKEN.fullmatch(token):
        raise Refused(403, "missing or malformed X-Rater-Token")
    return token


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


def guarded(handler):
    async def endpoint(request: Request):
        try:
            return await handler(request)
        except (Refused, db.AnswerRejected) as err:
            return _error(err.status, err.message)
    return endpoint


# -- the app -----------------------------------------------------------------------------------------------
def create_app(db_path: str, allowed_hosts: list[str] | None = None) -> Starlette:
    study = StudyApp(db_path)
    s = study.settings
    page, script, style = _static("index.html"), _static("app.js"), _static("app.css")

    async def index(request: Request) -> Response:
        return Response(page, media_type="text/html; charset=utf-8")

    async def js(request: Request) -> Response:
        return Response(script, media_type="text/javascript; charset=utf-8")

    async def css(request: Request) -> Response:
        return Response(style, media_type="text/css; charset=utf-8")

    async def image(request: Request) -> Response:
        image_id = request.path_params["image_id"]
        data = await study.in_db(db.image_data, image_id) if IMAGE_ID.fullmatch(image_id) else None
        if data is None:
            return _error(404, "no such image")
        return Response(data, media_type="image/png")

    async def new_rater(request: Request) -> Response:
        await json_body(request, {})
        rater, token = await study.write(db.create_rater, s, study.pools)
        return JSONResponse({"rater": rater, "token": token})

    async def resume(request: Request) -> Response:
        rater = _rater_field(await json_body(request, {"rater": str}))
        token = await study.in_db(db.rater_token, rater)
        if token is None:
            raise Refused(404, "unknown rater id")
        return JSONResponse({"rater": rater, "token": token})

    def _trial(conn, rater: str, token: str) -> dict:
        db.check_token(conn, rater, token)
        position = db.answered_count(conn, rater)
        image_id = db.trial_at(conn, rater, position)
        total = s.trials_per_rater
        if image_id is None:
            out = {"done": True, "total": total}
            if s.show_score:
                out["score"] = db.rater_score(conn, rater)
            return out
        return {"done": False, "position": position, "total": total, "image": image_id,
                "src": f"/img/{image_id}", "exposure_ms": s.exposure_ms}

    async def trial(request: Request) -> Response:
        token = _token(request)
        rater = _rater_field(await json_body(request, {"rater": str}))
        return JSONResponse(await study.in_db(_trial, rater, token))

    def _answer(conn, data: dict, token: str) -> dict:
        db.check_token(conn, data["rater"], token)
        nxt = db.record_answer(conn, data["rater"], data["position"], data["image"], data["answer"], data["rt_ms"])
        return {"ok": True, "next": nxt, "done": nxt >= s.trials_per_rater}

    async def answer(request: Request) -> Response:
        token = _token(request)
        data = await json_body(request, {"rater": str, "position": int, "image": str, "answer": str,
                                         "rt_ms": (int, type(None))})
        _rater_field(data)
        if not IMAGE_ID.fullmatch(data["image"]):
            raise Refused(400, "malformed image id")
        if data["answer"] not in db.ANSWERS:
            raise Refused(400, "answer must be 'real' or 'fake'")
        if not 0 <= data["position"] < s.trials_per_rater:
            raise Refused(400, "position out of range")
        if data["rt_ms"] is not None and not 0 <= data["rt_ms"] <= MAX_RT_MS:
            raise Refused(400, "rt_ms out of range")
        return JSONResponse(await study.write(_answer, data, token))

    routes = [
        Route("/", index, methods=["GET"]),
        Route("/static/app.js", js, methods=["GET"]),
        Route("/static/app.css", css, methods=["GET"]),
        Route("/img/{image_id}", image, methods=["GET"]),
        Route("/api/rater", guarded(new_rater), methods=["POST"]),
        Route("/api/resume", guarded(resume), methods=["POST"]),
        Route("/api/trial", guarded(trial), methods=["POST"]),
        Route("/api/answer", guarded(answer), methods=["POST"]),
    ]
    hosts = allowed_hosts or ["127.0.0.1", "localhost"]

    @contextlib.asynccontextmanager
    async def lifespan(app):
        yield
        study.close()

    app = Starlette(routes=routes, middleware=[Middleware(SecurityHeaders),
                                              Middleware(TrustedHostMiddleware, allowed_hosts=hosts)],
                    lifespan=lifespan, max_body_size=MAX_BODY)
    app.state.study = study
    return app
