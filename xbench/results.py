"""The results store: one JSON record per job, the single source of truth.

Layout of a results folder:

    records/<job_id>.json     one record per job, written atomically
    heads/<job_id>/           the trained head (head.safetensors + head.json)
    .lock                     taken while a job is claimed or a record written

A record is complete, failed, or absent: nothing else is ever on disk under
`records/` (temporary files start with '.' and are ignored). Records carry a
schema version; a record from a newer xbench, or a damaged one, is reported
with one line naming the file.
"""
from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from filelock import FileLock

from .atomic import atomic_write_json
from .errors import ResultsError

SCHEMA_VERSION = 1
REQUIRED = ("schema", "job_id", "status", "method", "dataset", "backbone", "seed", "metrics")


@dataclass
class ResultsStore:
    root: Path

    def __post_init__(self) -> None:
        self.root = Path(self.root)

    @property
    def records_dir(self) -> Path:
        return self.root / "records"

    def head_dir(self, job_id: str) -> Path:
        return self.root / "heads" / job_id

    def ensure_writable(self) -> None:
        try:
            self.records_dir.mkdir(parents=True, exist_ok=True)
            probe = self.root / f".write-test-{os.getpid()}"
            probe.write_text("ok")
            probe.unlink()
        except OSError as err:
            raise ResultsError(
                f"results directory {self.root} is not writable ({err.strerror}); pass --results with a writable folder"
            ) from None

    def lock(self, timeout: float = -1) -> FileLock:
        self.root.mkdir(parents=True, exist_ok=True)
        return FileLock(str(self.root / ".lock"), timeout=timeout)

    def path(self, job_id: str) -> Path:
        return self.records_dir / f"{job_id}.json"

    def get(self, job_id: str) -> dict | None:
        p = self.path(job_id)
        if not p.exists():
            return None
        return read_record(p)

    def put(self, record: dict) -> Path:
        validate_record(record, where="record to write")
        p = self.path(record["job_id"])
        with self.lock():
            atomic_write_json(p, record)
        return p

    def records(self, strict: bool = True) -> Iterator[dict]:
        if not self.records_dir.is_dir():
            return
        for p in sorted(self.records_dir.glob("*.json")):
            if p.name.startswith("."):
                continue
            try:
                yield read_record(p)
            except ResultsError:
                if strict:
                    raise


def read_record(path: Path) -> dict:
    try:
        text = path.read_text()
    except OSError as err:
        raise ResultsError(f"results record {path}: cannot read it ({err.strerror})") from None
    try:
        rec = json.loads(text)
    except ValueError:
        raise ResultsError(
            f"results record {path} is truncated or not JSON; delete it and re-run (completed jobs are kept)"
        ) from None
    validate_record(rec, where=f"results record {path}")
    return rec


def validate_record(rec: Any, where: str) -> None:
    if not isinstance(rec, dict):
        raise ResultsError(f"{where} is not a JSON object; delete it and re-run")
    schema = rec.get("schema")
    if not isinstance(schema, int):
        raise ResultsError(f"{where} has no schema version; delete it and re-run")
    if schema > SCHEMA_VERSION:
        raise ResultsError(
            f"{where} has schema {schema}, newer than this xbench understands ({SCHEMA_VERSION}); upgrade xbench"
        )
    missing = [k for k in REQUIRED if k not in rec]
    if missing:
        raise ResultsError(f"{where} lacks {', '.join(missing)}; delete it and re-run")
    if not isinstance(rec["metrics"], dict):
        raise ResultsError(f"{where}: 'metrics' is not a mapping; delete it and re-run")
    if rec["status"] not in ("complete", "failed"):
        raise ResultsError(f"{where}: unknown status {rec['status']!r}; delete it and re-run")


def metric_entry(value: float | None, status: str = "ok", reason: str = "", extras: dict | None = None,
                 seconds: float | None = None) -> dict[str, Any]:
    e: dict[str, Any] = {"value": value, "status": status}
    if reason:
        e["reason"] = reason
    if extras:
        e["extras"] = extras
    if seconds is not None:
        e["seconds"] = round(seconds, 3)
    return e


def stamp() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")
