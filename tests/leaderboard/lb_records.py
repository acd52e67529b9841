"""Hand-built results records for leaderboard tests (valid per xbench.results.validate_record)."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

from xbench.results import SCHEMA_VERSION, ResultsStore, validate_record


def ok(value: float) -> dict:
    return {"value": value, "status": "ok"}


def na(reason: str = "method provides no concepts") -> dict:
    return {"value": None, "status": "n/a", "reason": reason}


def err(reason: str = "boom") -> dict:
    return {"value": None, "status": "error", "reason": reason}


def record(method: str, seed: int = 0, metrics: dict | None = None, *, dataset: str = "synthbirds",
           status: str = "complete", backbone: str = "weight-free", weights: str = "weight-free",
           weights_kind: str = "weight-free", weights_hash: str = "wf00aa11", profile: str = "quickstart",
           params: dict | None = None, options: dict | None = None, error: str = "",
           date: str = "2026-01-02T03:04:05+0000", commit: str = "0123abcd", hardware: dict | None = None) -> dict:
    fingerprint = {"name": dataset, "version": "1", "options": options or {"num_classes": 6}}
    config = {"method": method, "dataset": dataset, "backbone": backbone, "weights_hash": weights_hash, "seed": seed,
              "params": params or {"epochs": 5}, "dataset_fingerprint": fingerprint, "metric_options": {},
              "profile": profile}
    h = hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest()
    rec = {
        "schema": SCHEMA_VERSION, "job_id": f"{hashlib.sha1(method.encode()).hexdigest()[:8]}__s{seed}__{h[:16]}",
        "status": status, "method": method, "dataset": dataset, "backbone": backbone, "weights": weights,
        "weights_kind": weights_kind, "weights_hash": weights_hash, "seed": seed, "profile": profile,
        "config": config, "config_hash": h, "metrics": metrics or {},
        "provenance": {"xbench": "0.1.0", "torch": "2.4.0", "timm": "1.0.9", "python": "3.11.7",
                       "git_commit": commit, "date": date, "dataset": fingerprint,
                       "hardware": hardware or {"cpu": "x86_64", "cpu_count": 2, "device": "cpu",
                                                "platform": "Linux"},
                       "backbone": {"name": backbone, "weights": weights, "weights_kind": weights_kind,
                                    "weights_hash": weights_hash}},
    }
    if status != "complete":
        rec["error"] = error or "RuntimeError: failed"
    validate_record(rec, where="test record")
    return rec


def store_with(tmp: Path, records: list[dict]) -> ResultsStore:
    store = ResultsStore(tmp / "results")
    store.ensure_writable()
    for r in records:
        store.put(r)
    return store
