"""Aggregate job records into leaderboard tables (mean and std over seeds).

`build_tables(records, published)` is pure: same records (and published rows),
same tables. Choices the SPEC leaves open:

- One table per (dataset, dataset fingerprint, backbone, weights, weights hash,
  profile, protocol): numbers made under different data, weights, profiles or
  evaluation protocols (xbench's, or a paper's reference code's, e.g.
  `funnybirds: reference`) are never averaged together or put in one table. A dataset whose options differ between runs therefore
  gives two tables (their titles carry the fingerprint's short hash).
- Rows are methods. When one method was run with two different hyper-parameter
  sets in the same table, each set is its own row, labelled
  ``method [params <6 hex>]`` (hash of the resolved parameters), never mixed.
- Columns are the metrics that appear in any complete record of the table,
  except those that are n/a for every row (they are listed in
  ``Table.not_applicable`` with the reason, e.g. AUROC on a multi-class
  dataset), grouped by the metric's category (`CATEGORY_ORDER`) then by name; each column
  carries the metric's direction (higher / lower / none) and its display scale
  (`MetricSpec.percent`: shown x100).
- A cell is the mean and the *sample* standard deviation (n - 1; 0 for one
  seed) over the seeds whose value is ``ok``. Statuses: ``ok``; ``n/a`` (the
  metric does not apply, with the reason); ``error`` (computed but failed,
  with the reason); ``failed`` (every job of the row failed); ``missing`` (not
  computed). Only ``ok`` values are averaged; a seed whose metric errored is
  left out of the mean and counted in ``Cell.errors``.
- Best: per column, among ``ok`` cells of at least two rows, the largest mean
  (``higher``) or the smallest (``lower``); ties (within 1e-12) are all
  marked; columns with direction ``none`` have no best.
- Published numbers (`published.py`) that match a (method, dataset, metric)
  cell are attached to the cell (``Cell.published``) and nothing else.
"""
from __future__ import annotations

import hashlib
import json
import math
import re
import statistics
from dataclasses import dataclass, field
from typing import Iterable, Sequence

from ..errors import ResultsError
from ..registry import METRICS
from .published import PublishedValue, match

CATEGORY_ORDER = ["accuracy", "completeness", "correctness", "contrastivity", "explainability", "background",
                  "localisation", "plausibility", "concepts", "compactness", "other"]
STATUSES = ("ok", "n/a", "error", "failed", "missing")


@dataclass
class Cell:
    mean: float | None = None
    std: float | None = None
    n: int = 0
    status: str = "missing"      # ok | n/a | error | failed | missing
    reason: str = ""
    best: bool = False
    values: list[float] = field(default_factory=list)
    errors: int = 0              # seeds whose value errored (left out of the mean)
    published: list[PublishedValue] = field(default_factory=list)


@dataclass
class Table:
    dataset: str
    backbone: str
    weights: str
    weights_kind: str
    profile: str
    methods: list[str]                       # row labels
    metrics: list[str]
    cells: dict[tuple[str, str], Cell]
    seeds: dict[str, list[int]]
    failed: list[dict] = field(default_factory=list)
    records: list[dict] = field(default_factory=list)
    weights_hash: str = ""
    fingerprint: str = ""                    # short hash of the dataset fingerprint
    show_fingerprint: bool = False           # several tables share dataset/backbone/weights/profile
    row_method: dict[str, str] = field(default_factory=dict)   # row label -> registered method name
    extra_meta: dict[str, dict] = field(default_factory=dict)  # columns that are not registered metrics
    kind: str = "dataset"                    # "dataset" or "overall"
    datasets: list[str] = field(default_factory=list)          # overall tables: the datasets averaged
    not_applicable: dict[str, str] = field(default_factory=dict)  # metrics dropped: n/a for every row (reason)
    job_rows: dict[str, str] = field(default_factory=dict)     # job id -> row label
    protocol: str = "xbench"                 # evaluation protocol of every number in the table (jobs.protocol_label)

    @property
    def title(self) -> str:
        if self.kind == "overall":
            ds = f"overall over {len(self.datasets)} dataset(s): {', '.join(self.datasets)}"
        else:
            ds = f"{self.dataset} [data {self.fingerprint}]" if self.show_fingerprint else self.dataset
        return (f"{ds} | backbone {self.backbone} | weights: {self.weights} | profile {self.profile} | "
                f"protocol {self.protocol}")

    @property
    def key(self) -> str:
        """A file-name-safe identifier, unique per table (slug of the dataset + hash of the grouping key)."""
        parts = [self.kind, self.dataset, *self.datasets, self.fingerprint, self.backbone, self.weights,
                 self.weights_hash, self.profile]
        if self.protocol != "xbench":   # (tables of the default protocol keep the keys they always had)
            parts.append(self.protocol)
        h = hashlib.sha1("|".join(parts).encode()).hexdigest()[:8]
        return f"{slug(self.dataset)}-{h}"

    @property
    def untrained_weights(self) -> bool:
        return self.weights_kind in ("random", "weight-free")

    def meta(self, metric: str) -> dict:
        """Direction, category and display scale of a column."""
        return self.extra_meta.get(metric) or metric_meta(metric)

    def method_of(self, row: str) -> str:
        return self.row_method.get(row, row)

    def row_records(self, row: str, complete: bool = True) -> list[dict]:
        """The records of a row, lowest seed first (complete ones only by default)."""
        recs = [r for r in self.records if self.job_rows.get(str(r["job_id"])) == row
                and (not complete or r["status"] == "complete")]
        return sorted(recs, key=lambda r: (seed_of(r), str(r["job_id"])))

    def categories(self) -> list[tuple[str, list[str]]]:
        """The metric columns grouped by category, in column order."""
        groups: list[tuple[str, list[str]]] = []
        for m in self.metrics:
            cat = self.meta(m)["category"]
            if groups and groups[-1][0] == cat:
                groups[-1][1].append(m)
            else:
                groups.append((cat, [m]))
        return groups


def slug(text: object, limit: int = 40) -> str:
    """A file-name-safe rendering of a string from a results file (never a path separator or a dot-dot)."""
    s = re.sub(r"[^A-Za-z0-9_-]+", "_", str(text)).strip("_")[:limit]
    return s or "x"


def metric_meta(name: str) -> dict:
    """Direction, category and display scale of a metric (from its registered spec)."""
    try:
        spec = METRICS.get(name).spec
        return {"direction": spec.direction, "category": spec.category, "percent": spec.percent,
                "paper": spec.paper}
    except Exception:  # a metric from a plugin that is not installed here
        return {"direction": "none", "category": "other", "percent": False, "paper": ""}


def order_metrics(names: Iterable[str]) -> list[str]:
    def key(n: str) -> tuple[int, str]:
        cat = metric_meta(n)["category"]
        return (CATEGORY_ORDER.index(cat) if cat in CATEGORY_ORDER else len(CATEGORY_ORDER), n)

    return sorted(set(names), key=key)


def seed_of(r: dict) -> int:
    """A record's seed as an int; a record whose seed is not an integer is refused in one line."""
    seed = r.get("seed")
    if isinstance(seed, bool) or not isinstance(seed, (int, str)) or not str(seed).lstrip("-").isdigit():
        raise ResultsError(f"results record {r.get('job_id')}: seed {seed!r} is not an integer; delete the record "
                           "and re-run the job")
    return int(seed)


def _short_hash(obj: object) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:6]


def _fingerprint(r: dict) -> str:
    cfg = r.get("config") if isinstance(r.get("config"), dict) else {}
    fp = cfg.get("dataset_fingerprint") or (r.get("provenance") or {}).get("dataset") or {}
    return _short_hash(fp)


def _params(r: dict) -> dict:
    cfg = r.get("config") if isinstance(r.get("config"), dict) else {}
    return cfg.get("params") if isinstance(cfg.get("params"), dict) else {}


def record_protocol(r: dict) -> str:
    """A record's evaluation protocol (records from before the field: from its metric options)."""
    if isinstance(r.get("protocol"), str):
        return r["protocol"]
    from ..jobs import protocol_label

    cfg = r.get("config") if isinstance(r.get("config"), dict) else {}
    opts = cfg.get("metric_options")
    return protocol_label(opts if isinstance(opts, dict) else {})


def _group_key(r: dict) -> tuple:
    return (str(r["dataset"]), _fingerprint(r), str(r["backbone"]), str(r.get("weights", "?")),
            str(r.get("weights_hash", "")), str(r.get("profile", "?")), record_protocol(r))


def _cell(entries: list[dict | None]) -> Cell:
    good = [e for e in entries if isinstance(e, dict) and e.get("status") == "ok"
            and isinstance(e.get("value"), (int, float)) and math.isfinite(e["value"])]
    vals = [float(e["value"]) for e in good]
    # an "ok" entry without a finite value (a hand-edited record) counts as an error, never as a number
    errors = sum(1 for e in entries if isinstance(e, dict) and (e.get("status") == "error" or
                                                                 (e.get("status") == "ok" and e not in good)))
    if vals:
        return Cell(mean=statistics.fmean(vals), std=statistics.stdev(vals) if len(vals) > 1 else 0.0,
                    n=len(vals), status="ok", values=vals, errors=errors)
    na = [e for e in entries if isinstance(e, dict) and e.get("status") == "n/a"]
    if na:
        return Cell(status="n/a", reason=str(na[0].get("reason", "")))
    if errors:
        err = next(e for e in entries if isinstance(e, dict) and e.get("status") in ("error", "ok"))
        return Cell(status="error", reason=str(err.get("reason", "") or "value is not a finite number"),
                    errors=errors)
    return Cell(status="missing")


def mark_best(cells: dict[tuple[str, str], Cell], rows: Sequence[str], metrics: Sequence[str],
              directions: dict[str, str] | None = None) -> None:
    """Mark the best mean per column (see the module docstring)."""
    for met in metrics:
        direction = (directions or {}).get(met) or metric_meta(met)["direction"]
        vals = [(cells[(m, met)].mean, m) for m in rows if cells[(m, met)].status == "ok"]
        if direction not in ("higher", "lower") or len(vals) < 2:
            continue
        best = max(v for v, _ in vals) if direction == "higher" else min(v for v, _ in vals)
        for v, m in vals:
            if abs(v - best) <= 1e-12:
                cells[(m, met)].best = True


def build_tables(records: Iterable[dict], published: Sequence[PublishedValue] = ()) -> list[Table]:
    """Group records into tables and aggregate over seeds (pure; see the module docstring)."""
    groups: dict[tuple, list[dict]] = {}
    for r in records:
        groups.setdefault(_group_key(r), []).append(r)
    shared = {}
    for (dataset, fp, backbone, weights, _wh, profile, protocol) in groups:
        shared.setdefault((dataset, backbone, weights, profile, protocol), set()).add(fp)
    tables = []
    for gkey, recs in sorted(groups.items()):
        dataset, fp, backbone, weights, weights_hash, profile, protocol = gkey
        ok = [r for r in recs if r["status"] == "complete"]
        # rows: one per (method, parameter set); the label carries the parameter hash only when needed
        variants: dict[str, set[str]] = {}
        for r in recs:
            variants.setdefault(str(r["method"]), set()).add(_short_hash(_params(r)))

        def row_of(r: dict) -> str:
            m = str(r["method"])
            return m if len(variants[m]) == 1 else f"{m} [params {_short_hash(_params(r))}]"

        rows = sorted({row_of(r) for r in recs})
        row_method = {row_of(r): str(r["method"]) for r in recs}
        metrics = order_metrics(str(m) for r in ok for m in r["metrics"])
        cells: dict[tuple[str, str], Cell] = {}
        seeds: dict[str, list[int]] = {}
        for row in rows:
            rrecs = [r for r in ok if row_of(r) == row]
            seeds[row] = sorted({seed_of(r) for r in rrecs})
            for met in metrics:
                if rrecs:
                    c = _cell([r["metrics"].get(met) for r in rrecs if met in r["metrics"]])
                else:
                    c = Cell(status="failed", reason="every job of this row failed")
                c.published = match(list(published), row_method[row], dataset, met, backbone)
                cells[(row, met)] = c
        not_applicable = {met: cells[(rows[0], met)].reason for met in metrics
                          if rows and all(cells[(r, met)].status == "n/a" for r in rows)}
        metrics = [m for m in metrics if m not in not_applicable]
        cells = {k: c for k, c in cells.items() if k[1] not in not_applicable}
        mark_best(cells, rows, metrics)
        kind = next((str(r.get("weights_kind", "")) for r in recs), "")
        failed = [{"method": str(r["method"]), "seed": r["seed"], "error": str(r.get("error", "")),
                   "job_id": str(r["job_id"])} for r in recs if r["status"] != "complete"]
        tables.append(Table(dataset, backbone, weights, kind, profile, rows, metrics, cells, seeds, failed, recs,
                            weights_hash=weights_hash, fingerprint=fp,
                            show_fingerprint=len(shared[(dataset, backbone, weights, profile, protocol)]) > 1,
                            row_method=row_method, not_applicable=not_applicable,
                            job_rows={str(r["job_id"]): row_of(r) for r in recs}, protocol=protocol))
    return tables


def display_scale(metric: str) -> float:
    return 100.0 if metric_meta(metric)["percent"] else 1.0


def format_number(value: float, percent: bool, digits: int = 3) -> str:
    """A value (a fraction for percent metrics) as displayed: x100 with one decimal, else `digits` decimals."""
    return f"{value * 100.0:.1f}" if percent else f"{value:.{digits}f}"


def format_value(cell: Cell, percent: bool, digits: int = 3, seeds: int | None = None) -> str:
    """A cell as text: 'mean ± std' (std only with more than one seed), or its status.

    With `seeds` (the row's number of complete seeds) a mean over fewer seeds
    says so: '0.500 (n=1)'.
    """
    if cell.status != "ok":
        return {"n/a": "n/a", "error": "error", "missing": "-", "failed": "failed"}[cell.status]
    s = format_number(cell.mean, percent, digits)
    if cell.n > 1 and cell.std is not None:
        s += " ± " + format_number(cell.std, percent, digits)
    if seeds is not None and cell.n < seeds:
        s += f" (n={cell.n})"
    return s


def format_published(cell: Cell, percent: bool, digits: int = 3) -> str:
    """The published values of a cell as displayed (same scale as xbench's number), '' when none."""
    return " / ".join(format_number(p.value, percent, digits) for p in cell.published)
