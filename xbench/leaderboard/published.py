"""Published numbers (SPEC 6), carried in the package as `xbench/resources/published.csv`.

The file holds the facts of the project's reference table, one row per
(source, method, dataset, metric, value, note) exactly as published, plus four
columns that make each row usable without guessing:

- ``unit``: ``percent`` or ``fraction``: how the source prints the value. This
  is the explicit per-row scale rule: a ``percent`` row is divided by 100, a
  ``fraction`` row is taken as is, so every loaded value is a fraction like the
  values in xbench's records (accuracy 0.879, never 87.9). DINO-QPM's tables
  print percentages (accuracy 87.9, SID@5 91.8, ...); ProtoFM's FunnyBirds
  scores are fractions (mean explainability 0.92, consistency 0.65, stability
  0.99, PIP-Net consistency 1.0) while its RSNA AUROC is printed as a
  percentage (86.1). The loader refuses a ``percent`` value outside [0, 100]
  and a ``fraction`` outside [0, 1], so a wrong unit cannot pass silently.
  Leaderboards then display a published number exactly like xbench's own
  number for that metric (x100 when the metric's `MetricSpec.percent` is set).
- ``backbone``: the backbone the number was obtained with ('' when the source
  does not say).
- ``setting``: ``main`` (the paper's main configuration) or ``ablation`` (a
  different backbone or configuration).
- ``cite``: the BibTeX key (in ``references.bib``) of the source.

Metric names in the published table are mapped to xbench's registered metric
names in one place, `METRIC_MAP` below. Ablation rows keep their own names in
the file (``accuracy_vits14_reg``) and map to the xbench metric they measure
(``accuracy``); their ``backbone`` says under which backbone.

Matching (`match`): a published row is shown beside an xbench cell when method,
dataset and mapped metric are equal and either the row is a ``main`` row or its
backbone equals the table's backbone. Published numbers are only ever shown,
labelled as published, and never enter a mean, a std, a best mark or a plot's
Pareto front.
"""
from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from ..errors import ResultsError

#: published metric name -> xbench registered metric name (the one place this mapping lives)
METRIC_MAP: dict[str, str] = {
    "accuracy": "accuracy",
    "auroc": "auroc",
    "plausibility": "plausibility",
    "sid@5": "sid@5",
    "class_independence": "class_independence",
    "contrastiveness": "contrastiveness",
    "mean_explainability": "mean_explainability",
    "consistency": "consistency",
    "stability": "stability",
    # DINO-QPM ablations: CUB accuracy under another backbone (see the row's `backbone`)
    "accuracy_vits14_reg": "accuracy",
    "accuracy_vitl14_reg": "accuracy",
    "accuracy_patch_noreg": "accuracy",
}

UNITS = {"percent": 100.0, "fraction": 1.0}
SETTINGS = ("main", "ablation")
COLUMNS = ("source", "method", "dataset", "metric", "value", "note", "unit", "backbone", "setting", "cite")


@dataclass(frozen=True)
class PublishedValue:
    """One published number, normalised to a fraction."""

    source: str
    method: str
    dataset: str
    metric: str          # xbench metric name (mapped)
    published_metric: str  # the name in the source table
    value: float         # fraction (raw / 100 for percent rows)
    raw: str             # the value exactly as published
    unit: str
    note: str = ""
    backbone: str = ""
    setting: str = "main"
    cite: str = ""

    def to_json(self) -> dict:
        return {"source": self.source, "method": self.method, "dataset": self.dataset, "metric": self.metric,
                "published_metric": self.published_metric, "value": self.value, "raw": self.raw,
                "unit": self.unit, "note": self.note, "backbone": self.backbone, "setting": self.setting,
                "cite": self.cite}


def default_path() -> str:
    """Where the packaged table lives (for messages)."""
    return "xbench/resources/published.csv"


def load_published(path: str | Path | None = None) -> list[PublishedValue]:
    """Read published numbers (the packaged table by default) and normalise every value to a fraction.

    Raises `ResultsError` (one line naming the file and row) for an unknown
    metric name, unit or setting, a missing column, or a value out of range for
    its unit.
    """
    if path is None:
        text = resources.files("xbench").joinpath("resources", "published.csv").read_text(encoding="utf-8")
        where = default_path()
    else:
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError as err:
            raise ResultsError(f"published numbers {path}: cannot read it ({err.strerror})") from None
        where = str(path)
    return parse_published(text, where)


def parse_published(text: str, where: str = "published.csv") -> list[PublishedValue]:
    reader = csv.DictReader(io.StringIO(text))
    missing = [c for c in COLUMNS if c not in (reader.fieldnames or [])]
    if missing:
        raise ResultsError(f"{where}: missing column(s) {', '.join(missing)}; expected {','.join(COLUMNS)}")
    out = []
    for line, row in enumerate(reader, start=2):
        name = row["metric"].strip()
        if name not in METRIC_MAP:
            raise ResultsError(f"{where} line {line}: metric {name!r} has no xbench name; add it to "
                               "xbench/leaderboard/published.py:METRIC_MAP")
        unit = row["unit"].strip()
        if unit not in UNITS:
            raise ResultsError(f"{where} line {line}: unit {unit!r} must be 'percent' or 'fraction'")
        setting = row["setting"].strip() or "main"
        if setting not in SETTINGS:
            raise ResultsError(f"{where} line {line}: setting {setting!r} must be 'main' or 'ablation'")
        try:
            raw = float(row["value"])
        except ValueError:
            raise ResultsError(f"{where} line {line}: value {row['value']!r} is not a number") from None
        scale = UNITS[unit]
        if not 0.0 <= raw <= scale:
            raise ResultsError(f"{where} line {line}: value {raw} is outside [0, {scale:g}] for unit {unit}; "
                               "fix the value or the unit")
        out.append(PublishedValue(
            source=row["source"].strip(), method=row["method"].strip(), dataset=row["dataset"].strip(),
            metric=METRIC_MAP[name], published_metric=name, value=raw / scale, raw=row["value"].strip(),
            unit=unit, note=(row.get("note") or "").strip(), backbone=(row.get("backbone") or "").strip(),
            setting=setting, cite=(row.get("cite") or "").strip()))
    return out


def match(published: list[PublishedValue], method: str, dataset: str, metric: str,
          backbone: str) -> list[PublishedValue]:
    """The published values to show beside xbench's (method, dataset, metric) cell of a table on `backbone`."""
    return [p for p in published
            if p.method == method and p.dataset == dataset and p.metric == metric
            and (p.setting == "main" or p.backbone == backbone)]
