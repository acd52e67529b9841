"""The leaderboard as data: tables, overall tables, provenance, citations, published numbers.

`build_leaderboard(records, published)` is pure (no files read, no clock, no
environment): the writers render it, and plots / galleries are drawn from it.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable, Sequence

from .bibtex import Citations, cite
from .overall import build_overall
from .provenance import Provenance, collect_provenance
from .published import PublishedValue
from .tables import Table, build_tables, metric_meta

LEGEND = ("mean ± sample std over seeds (n=k: a mean over fewer seeds than the row has); "
          "bold = best in the column; ↑ higher is better, ↓ lower is better; (%) = shown x100; "
          "n/a = the metric does not apply; error = it failed (reason listed); "
          "published rows = numbers from the papers under their own backbone and protocol, "
          "shown for reference only, never averaged or ranked")


BANNER = "WARNING: not DINOv2 results. Some tables use untrained backbone weights (random or weight-free)."


@dataclass
class Asset:
    """A figure written beside the leaderboard (paths relative to the output folder)."""

    kind: str                      # pareto | spider | heatmap | gallery
    title: str
    png: str | None = None
    pdf: str | None = None
    note: str = ""                 # why it was skipped (png is None then)
    group: str = ""                # galleries: the method row the figure belongs to


@dataclass
class Leaderboard:
    tables: list[Table]
    overall: list[Table]
    provenance: Provenance
    citations: Citations
    reference: list[PublishedValue]                 # published rows of the methods that appear (appendix)
    assets: dict[str, list[Asset]] = field(default_factory=dict)   # table key -> figures
    notes: list[str] = field(default_factory=list)

    @property
    def warnings(self) -> list[str]:
        return self.provenance.warnings

    @property
    def banner(self) -> str:
        """The headline of the warning banner ('' when every table uses trained weights)."""
        return BANNER if self.warnings else ""

    def assets_of(self, t: Table) -> list[Asset]:
        return self.assets.get(t.key, [])


def build_leaderboard(records: Iterable[dict], published: Sequence[PublishedValue] = ()) -> Leaderboard:
    tables = build_tables(records, published)
    overall = build_overall(tables)
    methods = {t.method_of(r) for t in tables for r in t.methods}
    reference = [p for p in published if p.method in methods]
    return Leaderboard(tables=tables, overall=overall, provenance=collect_provenance(tables),
                       citations=cite(tables), reference=reference)


def n_a_reasons(t: Table) -> list[str]:
    """One line per distinct (status + reason, rows): why cells are n/a or errored, with the metrics concerned;
    first the metrics dropped from the table because they apply to no row."""
    lines = [f"not applicable to any method here: {met} ({reason})" for met, reason in t.not_applicable.items()]
    per_cell: dict[tuple[str, str], list[str]] = {}
    for row in t.methods:
        for met in t.metrics:
            c = t.cells[(row, met)]
            if c.status in ("n/a", "error") and c.reason:
                per_cell.setdefault((row, f"{c.status}: {c.reason}"), []).append(met)
            elif c.status == "ok" and c.errors:
                per_cell.setdefault((row, f"error on {c.errors} seed(s), left out of the mean"), []).append(met)
    grouped: dict[tuple[str, tuple[str, ...]], list[str]] = {}
    for (row, reason), mets in per_cell.items():
        grouped.setdefault((reason, tuple(mets)), []).append(row)
    lines += [f"{reason}: {', '.join(rows)}: {', '.join(mets)}" for (reason, mets), rows in grouped.items()]
    return lines


def column_label(t: Table, met: str) -> tuple[str, str]:
    """(arrow, unit suffix) of a column."""
    meta = t.meta(met)
    arrow = {"higher": "↑", "lower": "↓"}.get(meta["direction"], "")
    return arrow, (" (%)" if meta["percent"] else "")


__all__ = ["Asset", "Leaderboard", "build_leaderboard", "n_a_reasons", "column_label", "LEGEND", "metric_meta"]
