"""Where a leaderboard's numbers came from, read from the records alone.

Per table: backbone, weights (label, kind, hash), the backbone's description,
the dataset fingerprints (name, version, options), the seeds and resolved
hyper-parameters per row, the xbench / torch / timm / python versions, git
commits, hardware and the date range of the runs, and the `xbench run` command
that recreates the jobs. Every value is a distinct value found in the records
(several are listed when runs differ, e.g. two commits), never the
environment of the machine that builds the leaderboard, so the leaderboard
stays a pure function of the results store.

`warnings` lists the tables whose backbone weights are ``random`` or
``weight-free``: every output format shows them as a banner, because such
numbers test the pipeline and say nothing about DINOv2.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Sequence

from .tables import Table, seed_of

VERSION_KEYS = ("xbench", "torch", "timm", "python")


@dataclass
class TableProvenance:
    key: str
    title: str
    dataset: str
    backbone: str
    weights: str
    weights_kind: str
    weights_hash: str
    profile: str
    backbone_info: list[dict] = field(default_factory=list)
    datasets: list[dict] = field(default_factory=list)
    seeds: dict[str, list[int]] = field(default_factory=dict)
    params: dict[str, list[dict]] = field(default_factory=dict)
    versions: dict[str, list[str]] = field(default_factory=dict)
    git_commits: list[str] = field(default_factory=list)
    hardware: list[str] = field(default_factory=list)
    dates: tuple[str, str] = ("", "")
    jobs_complete: int = 0
    jobs_failed: int = 0
    command: str = ""

    def to_json(self) -> dict[str, Any]:
        d = dict(self.__dict__)
        d["dates"] = list(self.dates)
        return d


@dataclass
class Provenance:
    tables: list[TableProvenance]
    versions: dict[str, list[str]]
    git_commits: list[str]
    hardware: list[str]
    dates: tuple[str, str]
    warnings: list[str]

    def to_json(self) -> dict[str, Any]:
        return {"tables": [t.to_json() for t in self.tables], "versions": self.versions,
                "git_commits": self.git_commits, "hardware": self.hardware, "dates": list(self.dates),
                "warnings": self.warnings}


def _distinct(items: list[Any]) -> list[Any]:
    seen, out = set(), []
    for it in items:
        k = json.dumps(it, sort_keys=True, default=str)
        if k not in seen:
            seen.add(k)
            out.append(it)
    return out


def describe_hardware(hw: Any) -> str:
    if not isinstance(hw, dict):
        return str(hw)
    parts = []
    if hw.get("gpu"):
        parts.append(f"GPU {hw['gpu']}")
    parts.append(f"CPU {hw.get('cpu', '?')} x{hw.get('cpu_count', '?')}")
    parts.append(f"device {hw.get('device', '?')}")
    if hw.get("platform"):
        parts.append(str(hw["platform"]))
    return ", ".join(parts)


def weights_argument(weights: str, kind: str) -> str:
    """The `--weights` value that recreates a weights label ('' for the weight-free backbone)."""
    if kind == "weight-free":
        return ""
    if kind == "random":
        return "random"
    if kind == "file" and weights.startswith("file:"):
        return weights[len("file:"):]
    return "auto"


def run_command(t: Table) -> str:
    """The `xbench run` command that recreates a table's jobs (parameters beyond the profile are in `params`)."""
    methods = sorted({t.method_of(r) for r in t.methods})
    seeds = sorted({seed_of(r) for r in t.records})
    parts = ["xbench run", f"--methods {','.join(methods)}", f"--datasets {t.dataset}", f"--backbone {t.backbone}"]
    w = weights_argument(t.weights, t.weights_kind)
    if w:
        parts.append(f"--weights {w}")
    parts += [f"--seeds {','.join(str(s) for s in seeds)}", f"--profile {t.profile}"]
    if t.protocol != "xbench":
        for item in t.protocol.split("; "):
            group, _, value = item.partition(": ")
            parts.append(f"--metric-option {group}.protocol={value}")
    dtypes = sorted({str(r.get("cache_dtype")) for r in t.records if r.get("cache_dtype") not in (None, "float16")})
    if dtypes:
        parts.append(f"--cache-dtype {dtypes[0]}")
    return " ".join(parts)


def table_provenance(t: Table) -> TableProvenance:
    recs = t.records
    prov = [r.get("provenance") if isinstance(r.get("provenance"), dict) else {} for r in recs]
    cfgs = [r.get("config") if isinstance(r.get("config"), dict) else {} for r in recs]
    dates = sorted(str(p["date"]) for p in prov if p.get("date"))
    params: dict[str, list[dict]] = {}
    for row in t.methods:
        ps = [c.get("params", {}) for r, c in zip(recs, cfgs) if str(r["method"]) == t.method_of(row)]
        params[row] = _distinct(ps)
    return TableProvenance(
        key=t.key, title=t.title, dataset=t.dataset, backbone=t.backbone, weights=t.weights,
        weights_kind=t.weights_kind, weights_hash=t.weights_hash, profile=t.profile,
        backbone_info=_distinct([p["backbone"] for p in prov if p.get("backbone")]),
        datasets=_distinct([c.get("dataset_fingerprint") or p.get("dataset") for c, p in zip(cfgs, prov)
                            if c.get("dataset_fingerprint") or p.get("dataset")]),
        seeds=dict(t.seeds), params=params,
        versions={k: sorted({str(p[k]) for p in prov if p.get(k)}) for k in VERSION_KEYS},
        git_commits=sorted({str(p["git_commit"]) for p in prov if p.get("git_commit")}),
        hardware=sorted({describe_hardware(p["hardware"]) for p in prov if p.get("hardware")}),
        dates=(dates[0], dates[-1]) if dates else ("", ""),
        jobs_complete=sum(1 for r in recs if r["status"] == "complete"),
        jobs_failed=sum(1 for r in recs if r["status"] != "complete"),
        command=run_command(t))


def weights_warning(t: Table) -> str:
    if t.weights_kind == "weight-free":
        return (f"{t.title}: backbone weights are WEIGHT-FREE (fixed hand-made descriptors, no DINOv2 weights): "
                "these numbers check the pipeline and are not DINOv2 results")
    if t.weights_kind == "random":
        return (f"{t.title}: backbone weights are RANDOM (untrained): these numbers check the pipeline and are "
                "not DINOv2 results")
    return ""


def collect_provenance(tables: Sequence[Table]) -> Provenance:
    """Provenance of the per-dataset tables (overall tables add nothing new)."""
    tps = [table_provenance(t) for t in tables if t.kind == "dataset"]
    dates = sorted(d for tp in tps for d in tp.dates if d)
    return Provenance(
        tables=tps,
        versions={k: sorted({v for tp in tps for v in tp.versions.get(k, [])}) for k in VERSION_KEYS},
        git_commits=sorted({c for tp in tps for c in tp.git_commits}),
        hardware=sorted({h for tp in tps for h in tp.hardware}),
        dates=(dates[0], dates[-1]) if dates else ("", ""),
        warnings=[w for t in tables if t.kind == "dataset" for w in [weights_warning(t)] if w])
