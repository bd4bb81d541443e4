"""The study database (SQLite, WAL mode): images, raters, their shuffled trials and their answers.

One file holds everything a study needs, so the server never touches the image folders after the
study is created, and an image can only ever be reached through its random id in ``images``
(path traversal is impossible by construction: no request is ever mapped to a file path).

Tables
    meta     the study settings (JSON), written once at creation
    sets     one row per image set: the real one, each generated one, the attention-check one
    images   opaque random id, set, original file name (for the report only), sha256, PNG bytes
    raters   opaque random rater id, CSRF token, number (creation order), shuffle seed
    trials   each rater's plan: position -> image, fixed when the rater is created
    answers  one row per answered trial; ``PRIMARY KEY (rater_id, position)`` makes a duplicate
             answer impossible, and each answer is its own ``BEGIN IMMEDIATE ... COMMIT``
             (``synchronous=FULL``), so an acknowledged answer survives ``kill -9`` and power loss.

Balance: each rater gets ``n_per_rater`` images, half of them real and half generated, the
generated half split evenly over the generated sets (a remainder goes to randomly chosen sets);
images are drawn without replacement (each at most once per rater) and shuffled with the rater's
own seed ``SeedSequence([seed, rater number])``; ``attention_n`` attention-check images (obviously
fake ones) are mixed in on top.
"""

from __future__ import annotations

import hmac
import json
import os
import secrets
import sqlite3
import time
from dataclasses import asdict, dataclass, field
from typing import Iterable, Mapping

import numpy as np

from ganlab.humaneval.images import Encoded

SCHEMA = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE sets (
    id INTEGER PRIMARY KEY, name TEXT UNIQUE NOT NULL,
    kind TEXT NOT NULL CHECK (kind IN ('real', 'fake', 'attention')), source TEXT NOT NULL);
CREATE TABLE images (
    id TEXT PRIMARY KEY, set_id INTEGER NOT NULL REFERENCES sets(id), name TEXT NOT NULL,
    sha256 TEXT NOT NULL, data BLOB NOT NULL);
CREATE TABLE raters (
    id TEXT PRIMARY KEY, token TEXT NOT NULL, number INTEGER UNIQUE NOT NULL, seed INTEGER NOT NULL,
    created_at REAL NOT NULL);
CREATE TABLE trials (
    rater_id TEXT NOT NULL REFERENCES raters(id), position INTEGER NOT NULL,
    image_id TEXT NOT NULL REFERENCES images(id),
    PRIMARY KEY (rater_id, position), UNIQUE (rater_id, image_id));
CREATE TABLE answers (
    rater_id TEXT NOT NULL, position INTEGER NOT NULL, image_id TEXT NOT NULL,
    answer TEXT NOT NULL CHECK (answer IN ('real', 'fake')), rt_ms INTEGER, answered_at REAL NOT NULL,
    PRIMARY KEY (rater_id, position),
    FOREIGN KEY (rater_id, position) REFERENCES trials(rater_id, position));
"""

RATER_ALPHABET = "ABCDEFGHJKMNPQRSTUVWXYZ23456789"  # no 0/O, 1/I/L: easy to read back and type
RATER_ID_LEN = 12
ANSWERS = ("real", "fake")


class StudyError(ValueError):
    """A study that cannot be created or opened as asked."""


class AnswerRejected(Exception):
    """A request the study refuses; ``status`` is the HTTP status to answer with."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status, self.message = status, message


@dataclass
class StudySettings:
    n_per_rater: int = 100
    attention_n: int = 0
    exposure_ms: int | None = None
    seed: int = 0
    resolution: int = 64
    encoding: str = "png_stored"
    show_score: bool = True
    sets: dict = field(default_factory=dict)  # name -> {"kind", "source", "count"}

    @property
    def fake_sets(self) -> list[str]:
        return [n for n, s in self.sets.items() if s["kind"] == "fake"]

    @property
    def trials_per_rater(self) -> int:
        return self.n_per_rater + self.attention_n


def connect(path: str) -> sqlite3.Connection:
    """A connection in autocommit mode (transactions are explicit), WAL journal, full sync."""
    conn = sqlite3.connect(path, timeout=30.0, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute("PRAGMA foreign_keys=ON")
    conn.execute("PRAGMA busy_timeout=30000")
    return conn


def new_id(nbytes: int = 16) -> str:
    return secrets.token_urlsafe(nbytes)


def new_rater_id() -> str:
    return "".join(secrets.choice(RATER_ALPHABET) for _ in range(RATER_ID_LEN))


def fake_share(n_per_rater: int, n_fake_sets: int) -> int:
    """The most images one generated set contributes to a rater (the remainder goes to some sets)."""
    n_fake = n_per_rater - n_per_rater // 2
    return -(-n_fake // n_fake_sets)


def create_study(path: str, settings: StudySettings, image_sets: Mapping[str, tuple[str, str, Iterable[Encoded]]]) -> None:
    """Write a new study db at ``path``. ``image_sets``: name -> (kind, source folder, encoded images)."""
    if os.path.exists(path):
        raise StudyError(f"db={path} already exists")
    tmp = f"{path}.creating"  # not utils.files.atomic_write: SQLite builds the file (and its -wal/-shm) by path
    for p in (tmp, tmp + "-wal", tmp + "-shm"):
        if os.path.exists(p):
            os.remove(p)
    conn = connect(tmp)
    try:
        conn.executescript(SCHEMA)
        conn.execute("BEGIN IMMEDIATE")
        sets = {}
        for set_id, (name, (kind, source, images)) in enumerate(image_sets.items(), start=1):
            conn.execute("INSERT INTO sets VALUES (?, ?, ?, ?)", (set_id, name, kind, os.path.abspath(source)))
            n = 0
            for img in images:
                conn.execute("INSERT INTO images VALUES (?, ?, ?, ?, ?)", (new_id(), set_id, img.name, img.sha256, img.data))
                n += 1
            sets[name] = {"kind": kind, "source": os.path.abspath(source), "count": n}
        settings.sets = sets
        conn.execute("INSERT INTO meta VALUES ('settings', ?)", (json.dumps(asdict(settings)),))
        conn.execute("COMMIT")
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        conn.close()
    os.replace(tmp, path)
    for p in (tmp + "-wal", tmp + "-shm"):
        if os.path.exists(p):
            os.remove(p)


def load_settings(conn: sqlite3.Connection) -> StudySettings:
    try:
        row = conn.execute("SELECT value FROM meta WHERE key = 'settings'").fetchone()
    except sqlite3.DatabaseError as err:
        raise StudyError(f"not a ganlab.humaneval study db ({err})") from None
    if row is None:
        raise StudyError("not a ganlab.humaneval study db (no settings row)")
    return StudySettings(**json.loads(row[0]))


def open_study(path: str) -> tuple[sqlite3.Connection, StudySettings]:
    if not os.path.isfile(path):
        raise StudyError(f"db={path}: no such file")
    conn = connect(path)
    try:
        return conn, load_settings(conn)
    except StudyError as err:
        conn.close()
        raise StudyError(f"db={path}: {err}") from None


# -- raters and their plans ---------------------------------------------------------------------------
def rater_seed(study_seed: int, number: int) -> int:
    return int(np.random.SeedSequence([int(study_seed), int(number)]).generate_state(1, dtype=np.uint32)[0])


def plan_trials(pools: Mapping[str, list[str]], settings: StudySettings, seed: int) -> list[str]:
    """The image ids one rater sees, in order: balanced real/fake, no repeats, shuffled by ``seed``."""
    rng = np.random.default_rng(seed)
    real = [n for n, s in settings.sets.items() if s["kind"] == "real"]
    fakes = settings.fake_sets
    attention = [n for n, s in settings.sets.items() if s["kind"] == "attention"]
    n_real = settings.n_per_rater // 2
    n_fake = settings.n_per_rater - n_real
    per_set = [n_fake // len(fakes)] * len(fakes)
    for i in rng.permutation(len(fakes))[: n_fake % len(fakes)]:
        per_set[int(i)] += 1
    wanted = [(real[0], n_real), *zip(fakes, per_set)]
    if settings.attention_n:
        wanted.append((attention[0], settings.attention_n))
    chosen: list[str] = []
    for name, k in wanted:
        pool = pools[name]
        chosen += [pool[int(i)] for i in rng.choice(len(pool), size=k, replace=False)]
    return [chosen[int(i)] for i in rng.permutation(len(chosen))]


def image_pools(conn: sqlite3.Connection) -> dict[str, list[str]]:
    pools: dict[str, list[str]] = {}
    for name, image_id in conn.execute(
            "SELECT s.name, i.id FROM images i JOIN sets s ON s.id = i.set_id ORDER BY s.id, i.name, i.id"):
        pools.setdefault(name, []).append(image_id)
    return pools


def create_rater(conn: sqlite3.Connection, settings: StudySettings, pools: Mapping[str, list[str]]) -> tuple[str, str]:
    """A new rater with a fresh plan, in one transaction; returns ``(rater id, token)``."""
    rater, token = new_rater_id(), new_id()
    conn.execute("BEGIN IMMEDIATE")
    try:
        number = conn.execute("SELECT COALESCE(MAX(number), -1) + 1 FROM raters").fetchone()[0]
        seed = rater_seed(settings.seed, number)
        conn.execute("INSERT INTO raters VALUES (?, ?, ?, ?, ?)", (rater, token, number, seed, time.time()))
        conn.executemany("INSERT INTO trials VALUES (?, ?, ?)",
                         [(rater, pos, img) for pos, img in enumerate(plan_trials(pools, settings, seed))])
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    return rater, token


def rater_token(conn: sqlite3.Connection, rater: str) -> str | None:
    row = conn.execute("SELECT token FROM raters WHERE id = ?", (rater,)).fetchone()
    return None if row is None else row[0]


def check_token(conn: sqlite3.Connection, rater: str, token: str) -> None:
    expected = rater_token(conn, rater)
    if expected is None:
        raise AnswerRejected(404, "unknown rater id")
    if not hmac.compare_digest(expected.encode(), str(token).encode()):
        raise AnswerRejected(403, "bad rater token")


def answered_count(conn: sqlite3.Connection, rater: str) -> int:
    return conn.execute("SELECT COUNT(*) FROM answers WHERE rater_id = ?", (rater,)).fetchone()[0]


def trial_at(conn: sqlite3.Connection, rater: str, position: int) -> str | None:
    row = conn.execute("SELECT image_id FROM trials WHERE rater_id = ? AND position = ?", (rater, position)).fetchone()
    return None if row is None else row[0]


def record_answer(conn: sqlite3.Connection, rater: str, position: int, image: str, answer: str,
                  rt_ms: int | None) -> int:
    """Store one answer in its own transaction; returns the next position. Refuses (and stores
    nothing for) repeated, out-of-order or mismatched answers."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        expected = answered_count(conn, rater)
        if position != expected:
            what = "already answered" if position < expected else "not reached yet"
            raise AnswerRejected(409, f"position {position} is {what}; the next one is {expected}")
        planned = trial_at(conn, rater, position)
        if planned is None:
            raise AnswerRejected(409, "this rater has answered every image")
        if not hmac.compare_digest(planned.encode(), image.encode()):
            raise AnswerRejected(400, f"image is not the one shown at position {position}")
        conn.execute("INSERT INTO answers VALUES (?, ?, ?, ?, ?, ?)",
                     (rater, position, image, answer, rt_ms, time.time()))
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    return position + 1


def image_data(conn: sqlite3.Connection, image_id: str) -> bytes | None:
    row = conn.execute("SELECT data FROM images WHERE id = ?", (image_id,)).fetchone()
    return None if row is None else bytes(row[0])


def rater_score(conn: sqlite3.Connection, rater: str) -> dict:
    """The rater's own accuracy (for the end page, after every answer is in)."""
    rows = conn.execute(
        "SELECT s.kind, a.answer FROM answers a JOIN images i ON i.id = a.image_id JOIN sets s ON s.id = i.set_id "
        "WHERE a.rater_id = ? AND s.kind != 'attention'", (rater,)).fetchall()
    correct = sum((kind == "real") == (answer == "real") for kind, answer in rows)
    return {"correct": int(correct), "answered": len(rows)}


def answer_rows(conn: sqlite3.Connection) -> list[dict]:
    """Every answer with its truth, in (rater number, position) order: the input of report/export."""
    cur = conn.execute(
        "SELECT r.id, r.number, a.position, a.image_id, s.name, s.kind, i.name, a.answer, a.rt_ms, a.answered_at "
        "FROM answers a JOIN raters r ON r.id = a.rater_id JOIN images i ON i.id = a.image_id "
        "JOIN sets s ON s.id = i.set_id ORDER BY r.number, a.position")
    keys = ("rater", "rater_number", "position", "image_id", "set", "kind", "file", "answer", "rt_ms", "answered_at")
    rows = []
    for values in cur:
        row = dict(zip(keys, values))
        row["truth"] = "real" if row["kind"] == "real" else "fake"
        row["correct"] = int(row["answer"] == row["truth"])
        rows.append(row)
    return rows
