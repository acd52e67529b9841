"""What each registered thing declares about itself.

A method declares what its explanations provide (SPEC 4); a metric declares
what it needs (from the method and from the dataset), its direction and its
category; a dataset declares its annotations. The runner matches them and
reports pairs that do not fit as "n/a" (with the reason), never as 0.
"""
from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from typing import Any, ClassVar

# What a method's explanation can provide (SPEC 4).
PROVIDES = frozenset({"logits", "attribution", "concepts"})

# Annotation kinds a dataset can declare (SPEC 1 table).
ANNOTATIONS = frozenset(
    {
        "object_mask",     # binary object mask per image (plausibility)
        "part_map",        # integer part label map (0 bg, 1..P part slots, then distractors)
        "keypoints",       # part keypoints per image (x, y, visible)
        "boxes",           # object / lesion / head boxes per image
        "interventions",   # images with part slots / background objects removed
        "class_parts",     # per-class part variants and minimal sufficient part sets
        "multi_target",    # training images with several consistent classes
    }
)

DIRECTIONS = ("higher", "lower", "none")


def _doc_line(obj: Any) -> str:
    doc = inspect.getdoc(obj) or ""
    return doc.strip().splitlines()[0] if doc.strip() else ""


@dataclass(frozen=True)
class MethodSpec:
    name: str
    description: str
    provides: frozenset[str] = frozenset({"logits"})
    paper: str = ""                # BibTeX key in xbench/resources/references.bib
    needs_backbone_graph: bool = False  # explanations need gradients through the backbone
    supports_ddp: bool = False
    uses_views: tuple[str, ...] = ()    # extra cached views the head trains on (e.g. ProtoFM's teacher views)
    #: bump when a change alters what the head learns: records store it, and a rerun retrains heads of an older version
    version: int = 1

    @classmethod
    def build(cls, name: str, obj: Any, **kw: Any) -> "MethodSpec":
        kw.setdefault("description", _doc_line(obj))
        prov = frozenset(kw.pop("provides", {"logits"})) | {"logits"}
        bad = prov - PROVIDES
        if bad:
            raise ValueError(f"method {name!r}: unknown provides {sorted(bad)}; valid: {sorted(PROVIDES)}")
        kw["uses_views"] = tuple(kw.get("uses_views", ()))
        return cls(name=name, provides=prov, **kw)


@dataclass(frozen=True)
class MetricSpec:
    name: str
    description: str
    direction: str = "higher"
    category: str = "other"
    needs_method: frozenset[str] = frozenset({"logits"})   # subset of PROVIDES
    needs_data: frozenset[str] = frozenset()               # subset of ANNOTATIONS (all needed)
    needs_data_any: frozenset[str] = frozenset()           # at least one of these
    task: str = "any"              # "any", "multiclass", "binary"
    percent: bool = False          # shown x100 in leaderboards
    cost: str = "cheap"            # "cheap", "moderate", "expensive"
    paper: str = ""
    in_quickstart: bool = True
    requires_concepts_msg: str = ""
    #: the `metric_options` it reads, as "group.key" (group: the metric's name or a shared family such as
    #: "funnybirds"); the runner refuses any other group or key. A metric that declares none may read any
    #: key of its own name's group.
    options: tuple[str, ...] = ()
    #: bump when a change alters the metric's value: records store it, and a rerun recomputes older values
    version: int = 1

    @classmethod
    def build(cls, name: str, obj: Any, **kw: Any) -> "MetricSpec":
        kw.setdefault("description", _doc_line(obj))
        for key in ("needs_method", "needs_data", "needs_data_any"):
            if key in kw:
                kw[key] = frozenset(kw[key])
        kw["options"] = tuple(kw.get("options", ()))
        if any("." not in o for o in kw["options"]):
            raise ValueError(f"metric {name!r}: options are 'group.key' strings, got {kw['options']}")
        spec = cls(name=name, **kw)
        if spec.direction not in DIRECTIONS:
            raise ValueError(f"metric {name!r}: direction must be one of {DIRECTIONS}")
        if spec.needs_method - PROVIDES:
            raise ValueError(f"metric {name!r}: unknown needs_method {sorted(spec.needs_method - PROVIDES)}")
        unknown = (spec.needs_data | spec.needs_data_any) - ANNOTATIONS
        if unknown:
            raise ValueError(f"metric {name!r}: unknown annotations {sorted(unknown)}")
        return spec

    def applicable(self, method: MethodSpec, dataset: "DatasetSpec") -> str | None:
        """None if the metric can be computed for this pair, else the reason it is n/a."""
        missing = self.needs_method - method.provides
        if missing:
            return f"method provides no {', '.join(sorted(missing))}"
        missing = self.needs_data - dataset.annotations
        if missing:
            return f"dataset has no {', '.join(sorted(missing))}"
        if self.needs_data_any and not (self.needs_data_any & dataset.annotations):
            return f"dataset has none of {', '.join(sorted(self.needs_data_any))}"
        if self.task != "any" and self.task != dataset.task:
            return f"metric is for {self.task} tasks"
        return None


@dataclass(frozen=True)
class DatasetSpec:
    name: str
    description: str
    annotations: frozenset[str] = frozenset()
    task: str = "multiclass"       # or "binary"
    licence: str = ""
    paper: str = ""
    homepage: str = ""
    folder: str = ""               # folder under the data root (official archive name)
    builtin: bool = False          # needs no download (synthbirds)

    @classmethod
    def build(cls, name: str, obj: Any, **kw: Any) -> "DatasetSpec":
        kw.setdefault("description", _doc_line(obj))
        kw["annotations"] = frozenset(kw.get("annotations", ()))
        unknown = kw["annotations"] - ANNOTATIONS
        if unknown:
            raise ValueError(f"dataset {name!r}: unknown annotations {sorted(unknown)}")
        return cls(name=name, **kw)


@dataclass(frozen=True)
class BackboneSpec:
    name: str
    description: str
    family: str = "other"          # "dinov2", "weight-free", "test"
    embed_dim: int | None = None
    patch_size: int = 14
    num_registers: int = 0
    paper: str = ""
    default_weights: str = "auto"

    @classmethod
    def build(cls, name: str, obj: Any, **kw: Any) -> "BackboneSpec":
        kw.setdefault("description", _doc_line(obj))
        return cls(name=name, **kw)


@dataclass
class ParamsBase:
    """Base for method hyper-parameter dataclasses (defaults = the paper's).

    `identity_omits_defaults` names parameters added after jobs were first recorded whose default
    reproduces the earlier behaviour: they enter a job's identity (its id and hash) only when set to
    another value, so a rerun finds the records made before the parameter existed."""

    identity_omits_defaults: ClassVar[tuple[str, ...]] = ()

    def to_dict(self) -> dict[str, Any]:
        from dataclasses import asdict

        return asdict(self)

    def identity_dict(self) -> dict[str, Any]:
        """`to_dict` without the `identity_omits_defaults` parameters that are at their default."""
        d = self.to_dict()
        for name in self.identity_omits_defaults:
            f = getattr(type(self), "__dataclass_fields__", {}).get(name)
            if f is not None and name in d and d[name] == f.default:
                d.pop(name)
        return d


__all__ = [
    "ANNOTATIONS", "PROVIDES", "MethodSpec", "MetricSpec", "DatasetSpec", "BackboneSpec", "ParamsBase", "field",
]
