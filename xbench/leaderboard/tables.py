"""Aggregate job records into leaderboard tables (mean and std over seeds).

One table per (dataset, backbone, weights, profile): methods as rows, metrics
as columns (ordered by category), a cell per (method, metric) with the mean and
sample standard deviation over the seeds whose value is ok; "n/a" when the
metric does not apply; the best mean per column is marked using the metric's
direction. Failed jobs are listed, never averaged.
"""
from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from typing import Iterable

from ..registry import METRICS

CATEGORY_ORDER = ["accuracy", "completeness", "correctness", "contrastivity", "explainability", "background",
                  "plausibility", "concepts", "compactness", "other"]


@dataclass
class Cell:
    mean: float | None = None
    std: float | None = None
    n: int = 0
    status: str = "missing"      # ok | n/a | error | missing
    reason: str = ""
    best: bool = False
    values: list[float] = field(default_factory=list)


@dataclass
class Table:
    dataset: str
    backbone: str
    weights: str
    weights_kind: str
    profile: str
    methods: list[str]
    metrics: list[str]
    cells: dict[tuple[str, str], Cell]
    seeds: dict[str, list[int]]
    failed: list[dict] = field(default_factory=list)
    records: list[dict] = field(default_factory=list)

    @property
    def title(self) -> str:
        return f"{self.dataset} | backbone {self.backbone} | weights: {self.weights} | profile {self.profile}"


def metric_meta(name: str) -> dict:
    try:
        spec = METRICS.get(name).spec
        return {"direction": spec.direction, "category": spec.category, "percent": spec.percent}
    except Exception:  # a metric from a plugin that is not installed here
        return {"direction": "none", "category": "other", "percent": False}


def _order_metrics(names: Iterable[str]) -> list[str]:
    def key(n: str) -> tuple[int, str]:
        cat = metric_meta(n)["category"]
        return (CATEGORY_ORDER.index(cat) if cat in CATEGORY_ORDER else len(CATEGORY_ORDER), n)

    return sorted(set(names), key=key)


def build_tables(records: Iterable[dict]) -> list[Table]:
    groups: dict[tuple, list[dict]] = {}
    for r in records:
        key = (r["dataset"], r["backbone"], r.get("weights", "?"), r.get("profile", "?"))
        groups.setdefault(key, []).append(r)
    tables = []
    for (dataset, backbone, weights, profile), recs in sorted(groups.items()):
        ok = [r for r in recs if r["status"] == "complete"]
        failed = [r for r in recs if r["status"] != "complete"]
        methods = sorted({r["method"] for r in recs})
        metrics = _order_metrics(m for r in ok for m in r["metrics"])
        cells: dict[tuple[str, str], Cell] = {}
        seeds: dict[str, list[int]] = {}
        for m in methods:
            mrecs = [r for r in ok if r["method"] == m]
            seeds[m] = sorted({int(r["seed"]) for r in mrecs})
            for met in metrics:
                entries = [r["metrics"].get(met) for r in mrecs if met in r["metrics"]]
                vals = [float(e["value"]) for e in entries if e and e.get("status") == "ok" and e.get("value") is not None]
                if vals:
                    c = Cell(mean=statistics.fmean(vals), std=statistics.stdev(vals) if len(vals) > 1 else 0.0,
                             n=len(vals), status="ok", values=vals)
                elif any(e and e.get("status") == "n/a" for e in entries):
                    reason = next(e.get("reason", "") for e in entries if e and e.get("status") == "n/a")
                    c = Cell(status="n/a", reason=reason)
                elif entries:
                    c = Cell(status="error", reason=next((e.get("reason", "") for e in entries if e), ""))
                else:
                    c = Cell(status="missing")
                cells[(m, met)] = c
        for met in metrics:
            direction = metric_meta(met)["direction"]
            vals = [(cells[(m, met)].mean, m) for m in methods if cells[(m, met)].status == "ok"]
            if direction in ("higher", "lower") and len(vals) > 1:
                best = max(v for v, _ in vals) if direction == "higher" else min(v for v, _ in vals)
                for v, m in vals:
                    if abs(v - best) <= 1e-12:
                        cells[(m, met)].best = True
        kind = next((r.get("weights_kind", "") for r in recs), "")
        tables.append(Table(dataset, backbone, weights, kind, profile, methods, metrics, cells, seeds,
                            [{"method": r["method"], "seed": r["seed"], "error": r.get("error", "")} for r in failed],
                            recs))
    return tables


def format_value(cell: Cell, percent: bool, digits: int = 3) -> str:
    if cell.status != "ok":
        return {"n/a": "n/a", "error": "error", "missing": "-"}[cell.status]
    scale = 100.0 if percent else 1.0
    d = 1 if percent else digits
    s = f"{cell.mean * scale:.{d}f}"
    if cell.n > 1:
        s += f" ± {cell.std * scale:.{d}f}"
    return s
