"""Read a wandb offline run file (``offline-run-*/run-*.wandb``) without wandb's service (not a test
module). The file is a LevelDB-style log: a 7-byte header (``:W&B``, magic, version), then 32 KiB
blocks of records, each ``crc32 (4) | length (2) | type (1) | data``; type 1 is a whole record,
2/3/4 the first/middle/last piece of one that spans blocks. Each record is a wandb ``Record``
protobuf."""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any, Iterator

BLOCK = 32768
HEADER = 7


def records(path: str | Path) -> Iterator[Any]:
    from wandb.proto import wandb_internal_pb2 as pb

    data = Path(path).read_bytes()
    assert data[:4] == b":W&B", f"{path} is not a wandb run file"
    pos, buf = HEADER, b""
    while pos + HEADER <= len(data):
        if BLOCK - pos % BLOCK < HEADER:  # block trailer padding
            pos += BLOCK - pos % BLOCK
            continue
        _, length, kind = struct.unpack("<IHB", data[pos : pos + HEADER])
        pos += HEADER
        chunk, pos = data[pos : pos + length], pos + length
        if kind in (1, 2):
            buf = chunk
        elif kind in (3, 4):
            buf += chunk
        else:  # zero padding at the end of a partially written block
            break
        if kind in (1, 4):
            record = pb.Record()
            record.ParseFromString(buf)
            yield record


def _key(item) -> str:
    return item.key or "/".join(item.nested_key)


def summarize(path: str | Path) -> dict[str, Any]:
    """{"run": run record, "history": [{key: value}], "summary": {key: value}, "config": {key: value},
    "exit_code": int | None}"""
    out: dict[str, Any] = {"run": None, "history": [], "summary": {}, "config": {}, "exit_code": None}
    for r in records(path):
        kind = r.WhichOneof("record_type")
        if kind == "run":
            out["run"] = r.run
            out["config"].update({i.key: json.loads(i.value_json) for i in r.run.config.update})
        elif kind == "config":
            out["config"].update({i.key: json.loads(i.value_json) for i in r.config.update})
        elif kind == "history":
            out["history"].append({_key(i): json.loads(i.value_json) for i in r.history.item})
        elif kind == "summary":
            out["summary"].update({_key(i): json.loads(i.value_json) for i in r.summary.update})
        elif kind == "exit":
            out["exit_code"] = r.exit.exit_code
    return out


def offline_runs(run_dir: str | Path) -> list[Path]:
    """The ``.wandb`` files of the offline runs under ``<run_dir>/wandb``."""
    return sorted(Path(run_dir).glob("wandb/offline-run-*/run-*.wandb"))
