"""BibTeX for a leaderboard: the packaged `xbench/resources/references.bib`, cited by key.

A leaderboard cites the `paper` keys of the specs of everything that appears in
it: each row's method, each column's metric, each table's dataset and backbone,
plus the source (``cite`` column) of every published number shown beside a
cell. A key without an entry in the file (a plugin's paper) is reported in
`Citations.missing`, never invented.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from importlib import resources
from typing import Sequence

from ..registry import BACKBONES, DATASETS, METHODS
from .tables import Table

_ENTRY = re.compile(r"@(\w+)\s*\{\s*([^,\s]+)\s*,")


def parse_bib(text: str) -> dict[str, str]:
    """{key: entry text} of every `@type{key, ...}` entry (balanced braces); comments outside entries ignored."""
    out: dict[str, str] = {}
    pos = 0
    while True:
        m = _ENTRY.search(text, pos)
        if not m:
            return out
        depth, i = 0, text.index("{", m.start())
        while i < len(text):
            if text[i] == "{":
                depth += 1
            elif text[i] == "}":
                depth -= 1
                if depth == 0:
                    break
            i += 1
        if depth != 0:
            raise ValueError(f"references.bib: entry {m.group(2)!r} has unbalanced braces")
        out[m.group(2)] = text[m.start():i + 1]
        pos = i + 1


def bib_fields(entry: str) -> dict[str, str]:
    """The field names of one entry, lower-cased, mapped to their raw values (enough for checks)."""
    return {k.lower(): v.strip() for k, v in re.findall(r"^\s*(\w+)\s*=\s*(.+?),?\s*$", entry, flags=re.M)}


def load_references() -> dict[str, str]:
    text = resources.files("xbench").joinpath("resources", "references.bib").read_text(encoding="utf-8")
    return parse_bib(text)


def _spec_paper(registry, name: str) -> str:
    try:
        return registry.get(name).spec.paper or ""
    except Exception:  # not installed here
        return ""


@dataclass
class Citations:
    keys: list[str]                              # cited keys with an entry, in first-use order
    uses: dict[str, list[str]]                   # key -> what cites it ("method dino-qpm", ...)
    missing: dict[str, list[str]] = field(default_factory=dict)   # keys without an entry
    entries: dict[str, str] = field(default_factory=dict)

    @property
    def bibtex(self) -> str:
        return "\n\n".join(self.entries[k] for k in self.keys) + ("\n" if self.keys else "")


def cite(tables: Sequence[Table], references: dict[str, str] | None = None) -> Citations:
    """The BibTeX keys for the methods, metrics, datasets, backbones and published sources in `tables`."""
    refs = load_references() if references is None else references
    uses: dict[str, list[str]] = {}

    def use(key: str, what: str) -> None:
        if key:
            lst = uses.setdefault(key, [])
            if what not in lst:
                lst.append(what)

    from .tables import metric_meta

    for t in tables:
        use(_spec_paper(DATASETS, t.dataset), f"dataset {t.dataset}")
        use(_spec_paper(BACKBONES, t.backbone), f"backbone {t.backbone}")
        for row in t.methods:
            use(_spec_paper(METHODS, t.method_of(row)), f"method {t.method_of(row)}")
        for met in t.metrics:
            use(t.meta(met).get("paper", "") or metric_meta(met).get("paper", ""), f"metric {met}")
        for c in t.cells.values():
            for p in c.published:
                use(p.cite, f"published numbers ({p.source})")
    keys = [k for k in uses if k in refs]
    return Citations(keys=keys, uses={k: uses[k] for k in keys},
                     missing={k: v for k, v in uses.items() if k not in refs},
                     entries={k: refs[k] for k in keys})
