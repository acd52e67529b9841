"""The results store: one JSON record per job, the single source of truth.

Layout of a results folder:

    records/<job_id>.json     one record per job, written atomically
    heads/<job_id>/           the trained head (head.safetensors + head.json)
    .lock                     taken while a job is claimed or a record written
    locks/<job_id>.lock       held while a process runs the job (`job_lock`)

A record is complete, failed, or absent: nothing else is ever on disk under
`records/` (temporary files start with '.' and are ignored; those a killed
writer left behind are removed by the next run). Records carry a schema
version; a record from a newer xbench (`NewerRecord`), or a damaged one
(`DamagedRecord`: truncated, not JSON, not a record), is reported with one
line naming the file. `xbench run` treats a damaged record of a job it is
about to run as no record (it warns and runs the job again, replacing it) but
stops at a newer one, which it must not overwrite.

Records are built here too (`base_record`: identity, config, provenance; `_jsonable` for logs and
extras), for the runner, `xbench.evaluate` and failed executor tasks alike.
"""
from __future__ import annotations

import json
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator

import math

import numpy as np
import torch
from filelock import FileLock

from .atomic import atomic_write_json
from .errors import ResultsError
from .provenance import git_commit, hardware, now, versions

if TYPE_CHECKING:
    from .jobs import Job

SCHEMA_VERSION = 1
REQUIRED = ("schema", "job_id", "status", "method", "dataset", "backbone", "seed", "metrics")


class DamagedRecord(ResultsError):
    """A record that is truncated, not JSON or not a valid record: for a rerun, the same as no record."""


class NewerRecord(ResultsError):
    """A record written by a newer xbench (higher schema version): neither read nor overwritten."""


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
        """Check that the store can be written (one line if not), and remove the temporary files a killed
        writer left in `records/` (every run, pool and Slurm submission starts here)."""
        try:
            self.records_dir.mkdir(parents=True, exist_ok=True)
            probe = self.root / f".write-test-{os.getpid()}"
            probe.write_text("ok")
            probe.unlink()
        except OSError as err:
            raise ResultsError(
                f"results directory {self.root} is not writable ({err.strerror}); pass --results with a writable folder"
            ) from None
        self.remove_stale_temporaries()

    def lock(self, timeout: float = -1) -> FileLock:
        self.root.mkdir(parents=True, exist_ok=True)
        return FileLock(str(self.root / ".lock"), timeout=timeout)

    def path(self, job_id: str) -> Path:
        return self.records_dir / f"{job_id}.json"

    def get(self, job_id: str, redo_damaged: bool = False, warn: bool = True) -> dict | None:
        """The record of `job_id`, or None. With `redo_damaged`, a damaged record counts as none (with `warn`,
        one line on stderr; the caller runs the job again and replaces it); a newer one always raises."""
        p = self.path(job_id)
        if not p.exists():
            return None
        try:
            return read_record(p)
        except DamagedRecord as err:
            if not redo_damaged:
                raise
            if warn:
                problem = str(err).rsplit("; delete it", 1)[0]
                print(f"xbench: warning: {problem}; running job {job_id} again to replace it",
                      file=sys.stderr, flush=True)
            return None

    def remove_stale_temporaries(self) -> int:
        """Delete the temporary files that a killed writer left in `records/` (under the store lock, so no
        live writer's file is touched); returns how many. They are never read, this only tidies."""
        if not self.records_dir.is_dir():
            return 0
        n = 0
        with self.lock():
            for p in self.records_dir.glob(".*.tmp"):
                p.unlink(missing_ok=True)
                n += 1
        return n

    def put(self, record: dict) -> Path:
        validate_record(record, where="record to write")
        p = self.path(record["job_id"])
        with self.lock():
            atomic_write_json(p, record)
        return p

    def records(self, strict: bool = True) -> Iterator[dict]:
        """Every record; a damaged or newer one raises (`strict`) or is skipped with one warning line."""
        if not self.records_dir.is_dir():
            return
        for p in sorted(self.records_dir.glob("*.json")):
            if p.name.startswith("."):
                continue
            try:
                yield read_record(p)
            except ResultsError as err:
                if strict:
                    raise
                print(f"xbench: warning: skipped: {err}", file=sys.stderr, flush=True)


def read_record(path: Path) -> dict:
    """Read and validate one record; every problem is one `ResultsError` line naming `path`."""
    try:
        data = path.read_bytes()
    except OSError as err:
        raise ResultsError(f"results record {path}: cannot read it ({err.strerror})") from None
    try:
        rec = json.loads(data.decode("utf-8"))
    except (ValueError, RecursionError):  # not UTF-8, not JSON (truncated), or nested beyond the parser
        raise DamagedRecord(
            f"results record {path} is truncated or not JSON; delete it and re-run (completed jobs are kept)"
        ) from None
    validate_record(rec, where=f"results record {path}")
    return rec


def validate_record(rec: Any, where: str) -> None:
    """Raise `NewerRecord` / `DamagedRecord` (one line, starting with `where`) unless `rec` is a record that
    this xbench can read: the required keys, a known status, an integer seed, metric entries that are
    mappings with a known status and a numeric or null value, and mappings where a record has mappings."""
    if not isinstance(rec, dict):
        raise DamagedRecord(f"{where} is not a JSON object; delete it and re-run")
    schema = rec.get("schema")
    if not isinstance(schema, int) or isinstance(schema, bool):
        raise DamagedRecord(f"{where} has no schema version; delete it and re-run")
    if schema > SCHEMA_VERSION:
        raise NewerRecord(
            f"{where} has schema {schema}, newer than this xbench understands ({SCHEMA_VERSION}); upgrade xbench"
        )
    missing = [k for k in REQUIRED if k not in rec]
    if missing:
        raise DamagedRecord(f"{where} lacks {', '.join(missing)}; delete it and re-run")
    for k in ("job_id", "method", "dataset", "backbone"):
        if not isinstance(rec[k], str) or not rec[k]:
            raise DamagedRecord(f"{where}: {k!r} is not a non-empty string; delete it and re-run")
    if not isinstance(rec["seed"], int) or isinstance(rec["seed"], bool):
        raise DamagedRecord(f"{where}: seed {_short(rec['seed'])} is not an integer; delete it and re-run")
    if not isinstance(rec["metrics"], dict):
        raise DamagedRecord(f"{where}: 'metrics' is not a mapping; delete it and re-run")
    for k in OBJECT_FIELDS:
        if k in rec and not isinstance(rec[k], dict):
            raise DamagedRecord(f"{where}: {k!r} is not a mapping; delete it and re-run")
    if "head" in rec and not isinstance(rec["head"], str):
        raise DamagedRecord(f"{where}: 'head' is not a path; delete it and re-run")
    if not isinstance(rec["status"], str) or rec["status"] not in ("complete", "failed"):
        raise DamagedRecord(f"{where}: unknown status {_short(rec['status'])}; delete it and re-run")
    for name, e in rec["metrics"].items():
        if not isinstance(e, dict) or e.get("status") not in METRIC_STATUSES:
            raise DamagedRecord(f"{where}: metric {_short(name)} is not an entry with a status "
                                f"({', '.join(METRIC_STATUSES)}); delete it and re-run")
        v = e.get("value")
        if v is not None and (not isinstance(v, (int, float)) or isinstance(v, bool)):
            raise DamagedRecord(f"{where}: metric {_short(name)} has a non-numeric value; delete it and re-run")


METRIC_STATUSES = ("ok", "n/a", "error")
OBJECT_FIELDS = ("config", "provenance", "timings", "training", "skipped_files")  # mappings when present


def _short(v: Any) -> str:
    """A value for a one-line message: repr, newlines escaped, at most 60 characters."""
    try:
        r = repr(v).replace("\n", "\\n")
    except RecursionError:
        r = f"<deeply nested {type(v).__name__}>"
    return r if len(r) <= 60 else r[:57] + "..."


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


# building records (the runner, xbench.evaluate, failed tasks) and the per-job lock -------------------------
def job_lock(store: ResultsStore, job_id: str) -> FileLock:
    """The per-job lock a process holds while it runs (or records the failure of) job `job_id`."""
    (store.root / "locks").mkdir(parents=True, exist_ok=True)
    return FileLock(str(store.root / "locks" / f"{job_id}.lock"))


def base_record(job: Job, previous: dict | None, weights_kind: str, backbone: dict, device: torch.device) -> dict:
    """A job's record before training and scoring (status 'failed' until it completes); keeps `previous`'s results."""
    rec = {
        "schema": SCHEMA_VERSION, "job_id": job.job_id, "status": "failed", "method": job.method,
        "dataset": job.dataset, "backbone": job.backbone, "weights": job.weights,
        "weights_kind": weights_kind, "weights_hash": job.weights_hash, "seed": job.seed,
        "profile": job.profile, "protocol": job.protocol, "cache_dtype": job.cache_dtype,
        "config": job.identity(), "config_hash": job.config_hash,
        "metrics": dict(previous.get("metrics", {})) if previous else {},
        "provenance": {**versions(), "git_commit": git_commit(), "hardware": hardware(device),
                       "date": now(), "dataset": job.dataset_fingerprint, "backbone": backbone},
    }
    if previous:
        for k in ("training", "head", "extras"):
            if k in previous:
                rec[k] = previous[k]
    return rec


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, torch.Tensor):
        return _jsonable(obj.detach().cpu().tolist())
    if isinstance(obj, np.ndarray):
        return _jsonable(obj.tolist())
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (np.floating,)):
        f = float(obj)
        return f if math.isfinite(f) else None
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    return obj
