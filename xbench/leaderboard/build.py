"""Write a leaderboard folder from a results store."""
from __future__ import annotations

import json
from pathlib import Path

from ..atomic import atomic_write_text
from ..errors import ConfigError
from ..results import ResultsStore
from .markdown import render_markdown
from .tables import build_tables

FORMATS = ("md", "json")


def tables_json(tables) -> dict:
    return {"tables": [
        {"dataset": t.dataset, "backbone": t.backbone, "weights": t.weights, "weights_kind": t.weights_kind,
         "profile": t.profile, "metrics": t.metrics, "methods": t.methods, "seeds": t.seeds,
         "cells": {f"{m}|{met}": {"mean": c.mean, "std": c.std, "n": c.n, "status": c.status, "reason": c.reason,
                                  "best": c.best, "values": c.values}
                   for (m, met), c in t.cells.items()},
         "failed": t.failed} for t in tables]}


def write_leaderboard(store: ResultsStore, out: Path, formats: list[str]) -> list[Path]:
    bad = [f for f in formats if f not in FORMATS]
    if bad:
        raise ConfigError(f"--formats {','.join(bad)}: unknown format (valid: {', '.join(FORMATS)})")
    tables = build_tables(store.records())
    out.mkdir(parents=True, exist_ok=True)
    written = []
    if "md" in formats:
        atomic_write_text(out / "leaderboard.md", render_markdown(tables))
        written.append(out / "leaderboard.md")
    if "json" in formats:
        atomic_write_text(out / "leaderboard.json", json.dumps(tables_json(tables), indent=2, sort_keys=True))
        written.append(out / "leaderboard.json")
    return written
