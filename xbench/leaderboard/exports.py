"""Machine-readable leaderboards: `leaderboard.json` (everything) and `leaderboard.csv` (one row per cell).

CSV: long format, one row per (table, method, metric) with ``source = xbench``
and one more row per published number shown beside a cell with
``source = published`` (its ``mean`` is the published value as a fraction,
like xbench's). Values are fractions as stored in records (not x100). Text
fields that a spreadsheet would run as a formula get a leading apostrophe.
The banner of the other formats is the ``weights_warning`` column: set on every
row of a table whose backbone weights are random or weight-free.
"""
from __future__ import annotations

import csv
import io
import math
from typing import Any

from .escape import csv_text
from .model import Leaderboard
from .provenance import weights_warning
from .tables import Table

CSV_COLUMNS = ["table", "kind", "dataset", "backbone", "weights", "weights_kind", "weights_hash", "profile",
               "method", "metric", "category", "direction", "percent", "source", "mean", "std", "n", "seeds",
               "status", "reason", "best", "published_by", "published_raw", "published_unit", "note", "weights_warning"]


def table_json(t: Table) -> dict[str, Any]:
    return {
        "key": t.key, "title": t.title, "kind": t.kind, "dataset": t.dataset, "datasets": t.datasets,
        "backbone": t.backbone, "weights": t.weights, "weights_kind": t.weights_kind,
        "weights_hash": t.weights_hash, "profile": t.profile, "protocol": t.protocol, "fingerprint": t.fingerprint,
        "untrained_weights": t.untrained_weights, "metrics": t.metrics, "methods": t.methods,
        "row_method": t.row_method,
        "columns": {m: {k: v for k, v in t.meta(m).items() if k != "paper"} for m in t.metrics},
        "categories": [[c, ms] for c, ms in t.categories()], "seeds": t.seeds,
        "cells": {f"{m}|{met}": {"mean": c.mean, "std": c.std, "n": c.n, "status": c.status, "reason": c.reason,
                                 "best": c.best, "values": c.values, "errors": c.errors,
                                 "published": [p.to_json() for p in c.published]}
                  for (m, met), c in t.cells.items()},
        "failed": t.failed,
    }


def finite(obj: Any) -> Any:
    """`obj` with every NaN / infinity (possible in a hand-edited record's config) as the strings 'nan', 'inf',
    '-inf', so that the JSON is standard JSON."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return "nan" if obj != obj else ("inf" if obj > 0 else "-inf")
    if isinstance(obj, dict):
        return {k: finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [finite(v) for v in obj]
    return obj


def leaderboard_json(lb: Leaderboard) -> dict[str, Any]:
    return finite({
        "schema": 1,
        "banner": lb.banner,
        "warnings": lb.warnings,
        "tables": [table_json(t) for t in lb.tables],
        "overall": [table_json(t) for t in lb.overall],
        "published_reference": [p.to_json() for p in lb.reference],
        "provenance": lb.provenance.to_json(),
        "citations": {"keys": lb.citations.keys, "uses": lb.citations.uses, "missing": lb.citations.missing},
        "bibtex": lb.citations.bibtex,
        "assets": {k: [a.__dict__ for a in v] for k, v in sorted(lb.assets.items())},
        "notes": lb.notes,
    })


def leaderboard_csv(lb: Leaderboard) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(CSV_COLUMNS)
    for t in lb.tables + lb.overall:
        warning = csv_text(weights_warning(t))
        for row in t.methods:
            for met in t.metrics:
                c = t.cells[(row, met)]
                meta = t.meta(met)
                base = [t.key, t.kind, t.dataset, t.backbone, t.weights, t.weights_kind, t.weights_hash, t.profile,
                        row, met, meta["category"], meta["direction"], int(bool(meta["percent"]))]
                seeds = ",".join(map(str, t.seeds.get(row, [])))
                w.writerow([csv_text(x) if isinstance(x, str) else x for x in base] + [
                    "xbench", "" if c.mean is None else repr(c.mean), "" if c.std is None else repr(c.std), c.n,
                    seeds, c.status, csv_text(c.reason), int(c.best), "", "", "", "", warning])
                for p in c.published:
                    w.writerow([csv_text(x) if isinstance(x, str) else x for x in base] + [
                        "published", repr(p.value), "", "", "", "published", "", 0, csv_text(p.source),
                        csv_text(p.raw), p.unit, csv_text(p.note), warning])
    return buf.getvalue()
