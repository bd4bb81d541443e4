"""A scripted rater over HTTP, and a study server in a subprocess: for the load test and the tests.

Loopback only: :class:`ServerProcess` binds ``127.0.0.1`` and :class:`RaterClient` refuses any
other host.
"""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import time
from typing import Any

LOOPBACK = "127.0.0.1"


def free_port() -> int:
    with socket.socket() as s:
        s.bind((LOOPBACK, 0))
        return s.getsockname()[1]


class RaterClient:
    """One rater: a keep-alive connection, the same JSON + Origin + token requests as the page."""

    def __init__(self, port: int, host: str = LOOPBACK, timeout: float = 30.0):
        if host != LOOPBACK:
            raise ValueError("RaterClient talks to 127.0.0.1 only")
        self.host, self.port, self.timeout = host, port, timeout
        self.origin = f"http://{host}:{port}"
        self.conn = http.client.HTTPConnection(host, port, timeout=timeout)
        self.rater: str | None = None
        self.token: str | None = None

    def request(self, method: str, path: str, body: Any = None, headers: dict | None = None) -> tuple[int, Any]:
        h = {"Origin": self.origin, "Content-Type": "application/json"}
        if self.token:
            h["X-Rater-Token"] = self.token
        h.update(headers or {})
        data = None if body is None else (body if isinstance(body, bytes) else json.dumps(body).encode())
        for attempt in (0, 1):  # one reconnect: the server may have closed an idle keep-alive connection
            try:
                self.conn.request(method, path, body=data, headers=h)
                r = self.conn.getresponse()
                raw = r.read()
                break
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
                self.conn.close()
                self.conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
                if attempt:
                    raise
        ctype = r.getheader("content-type", "")
        return r.status, (json.loads(raw) if ctype.startswith("application/json") else raw)

    def start(self) -> "RaterClient":
        status, data = self.request("POST", "/api/rater", {})
        if status != 200:
            raise RuntimeError(f"new rater refused: {status} {data}")
        self.rater, self.token = data["rater"], data["token"]
        return self

    def trial(self) -> dict:
        status, data = self.request("POST", "/api/trial", {"rater": self.rater})
        if status != 200:
            raise RuntimeError(f"trial refused: {status} {data}")
        return data

    def answer(self, trial: dict, answer: str, rt_ms: int | None = 500) -> tuple[int, Any]:
        return self.request("POST", "/api/answer", {"rater": self.rater, "position": trial["position"],
                                                    "image": trial["image"], "answer": answer, "rt_ms": rt_ms})

    def close(self) -> None:
        self.conn.close()


class ServerProcess:
    """``python -m ganlab.humaneval serve db=... <overrides>`` on 127.0.0.1 and a free port."""

    def __init__(self, db: str, *overrides: str, run_dir: str, port: int | None = None, env: dict | None = None):
        self.db, self.overrides, self.run_dir = db, list(overrides), run_dir
        self.port = port or free_port()
        self.env = {**os.environ, **(env or {})}
        self.proc: subprocess.Popen | None = None
        self.log_path = os.path.join(run_dir, f"server_{self.port}.log")

    def start(self, timeout: float = 60.0) -> "ServerProcess":
        os.makedirs(self.run_dir, exist_ok=True)
        cmd = [sys.executable, "-m", "ganlab.humaneval", "serve", f"db={self.db}", f"host={LOOPBACK}",
               f"port={self.port}", f"hydra.run.dir={self.run_dir}", *self.overrides]
        self._log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(cmd, stdout=self._log, stderr=subprocess.STDOUT, env=self.env)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}: {self.log()}")
            try:
                with socket.create_connection((LOOPBACK, self.port), timeout=1):
                    pass
                c = http.client.HTTPConnection(LOOPBACK, self.port, timeout=5)
                c.request("GET", "/")
                if c.getresponse().status == 200:
                    c.close()
                    return self
            except OSError:
                time.sleep(0.1)
        self.kill()
        raise RuntimeError(f"server did not answer within {timeout} s: {self.log()}")

    def log(self) -> str:
        self._log.flush()
        with open(self.log_path, "rb") as f:
            return f.read().decode(errors="replace")[-3000:]

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=20)
        if getattr(self, "_log", None):
            self._log.close()

    def __enter__(self) -> "ServerProcess":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.kill(signal.SIGTERM)
