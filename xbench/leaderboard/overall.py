"""The overall table: one row per method across the datasets of a setting.

Definition (pure, from the per-dataset tables):

- One overall table per (backbone, weights, weights hash, profile), over every
  per-dataset table made under that setting (at least one).
- Columns: the metrics that are columns of *every* one of those dataset
  tables (a metric that exists on only some datasets is left out: an average
  over different dataset sets would not compare rows), then ``mean_rank``.
- Cell (method, metric): the unweighted mean over datasets of the method's
  per-dataset seed means, shown only when the method has an ``ok`` value on
  every dataset; otherwise ``n/a`` when the metric does not apply to the method
  on any dataset, else ``-`` (missing) with the datasets lacking it. No std is
  shown: the per-dataset tables carry the seed std; a spread across datasets
  would mix dataset difficulty into it.
- ``mean_rank`` (lower is better): for every column with a direction
  (higher / lower) of every dataset table of the setting where at least two
  methods have ``ok`` values, the methods are ranked (1 = best; ties share the
  average rank); a method's mean rank is the mean of its ranks, ``n`` = how
  many columns ranked it. A method is never ranked on a column where it has no
  value (it is neither rewarded nor penalised there).
- Best marks follow the same rule as the dataset tables. Published numbers are
  never part of an overall table.
"""
from __future__ import annotations

import statistics
from typing import Sequence

from .tables import Cell, Table, mark_best

MEAN_RANK = "mean_rank"
MEAN_RANK_META = {"direction": "lower", "category": "rank", "percent": False, "paper": ""}


def _ranks(values: list[tuple[float, str]], direction: str) -> dict[str, float]:
    """Average ranks (1 = best) of (value, row) pairs."""
    order = sorted(values, key=lambda vm: -vm[0] if direction == "higher" else vm[0])
    ranks: dict[str, float] = {}
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and abs(order[j + 1][0] - order[i][0]) <= 1e-12:
            j += 1
        avg = (i + j) / 2 + 1
        for k in range(i, j + 1):
            ranks[order[k][1]] = avg
        i = j + 1
    return ranks


def build_overall(tables: Sequence[Table]) -> list[Table]:
    """Overall tables (see the module docstring) from per-dataset tables."""
    groups: dict[tuple, list[Table]] = {}
    for t in tables:
        if t.kind == "dataset":
            groups.setdefault((t.backbone, t.weights, t.weights_hash, t.profile, t.protocol), []).append(t)
    out = []
    for (backbone, weights, weights_hash, profile, protocol), ts in sorted(groups.items()):
        names = [t.title.split(" | ")[0] for t in ts]
        rows = sorted({r for t in ts for r in t.methods})
        common = [m for m in ts[0].metrics if all(m in t.metrics for t in ts)]
        cells: dict[tuple[str, str], Cell] = {}
        for row in rows:
            for met in common:
                per = [(name, t.cells.get((row, met))) for name, t in zip(names, ts)]
                oks = [c.mean for _, c in per if c is not None and c.status == "ok"]
                if len(oks) == len(ts):
                    cells[(row, met)] = Cell(mean=statistics.fmean(oks), std=None, n=len(oks), status="ok",
                                             values=oks)
                elif per and all(c is not None and c.status == "n/a" for _, c in per):
                    cells[(row, met)] = Cell(status="n/a", reason=per[0][1].reason)
                else:
                    lacking = [name for name, c in per if c is None or c.status != "ok"]
                    cells[(row, met)] = Cell(status="missing", reason="no value on " + ", ".join(lacking))
        ranks: dict[str, list[float]] = {r: [] for r in rows}
        for t in ts:
            for met in t.metrics:
                direction = t.meta(met)["direction"]
                vals = [(t.cells[(r, met)].mean, r) for r in t.methods if t.cells[(r, met)].status == "ok"]
                if direction in ("higher", "lower") and len(vals) >= 2:
                    for r, rk in _ranks(vals, direction).items():
                        ranks[r].append(rk)
        for row in rows:
            rk = ranks[row]
            cells[(row, MEAN_RANK)] = (Cell(mean=statistics.fmean(rk), std=None, n=len(rk), status="ok", values=rk)
                                       if rk else Cell(status="missing", reason="not ranked on any column"))
        metrics = common + [MEAN_RANK]
        mark_best(cells, rows, metrics, {MEAN_RANK: "lower"})
        seeds = {r: sorted({s for t in ts for s in t.seeds.get(r, [])}) for r in rows}
        row_method = {r: m for t in ts for r, m in t.row_method.items()}
        out.append(Table(
            dataset="overall", backbone=backbone, weights=weights, weights_kind=ts[0].weights_kind,
            profile=profile, methods=rows, metrics=metrics, cells=cells, seeds=seeds, failed=[],
            records=[r for t in ts for r in t.records], weights_hash=weights_hash, fingerprint="",
            row_method=row_method, extra_meta={MEAN_RANK: dict(MEAN_RANK_META)}, kind="overall", datasets=names,
            protocol=protocol))
    return out
