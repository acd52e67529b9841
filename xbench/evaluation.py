"""What a metric sees: the model (through the explanation contract), the dataset, cached views.

`EvalContext` hands metrics batches of explanations and logits for any split
and view (plain test images, interventions, noisy copies, box crops). Tokens
come from the feature cache through the runner's extractor, so every
intervention image goes through the backbone once, in batches, and is shared by
all methods and seeds. Metrics never import a method: they call
`ctx.model.explain(batch)` / `ctx.model.logits(batch)` and read `ctx.dataset`.

A metric family that yields several numbers (the FunnyBirds suite) computes
them once per job through `ctx.memo(name, fn)`. Metrics read a view's items
(`ctx.items`: base image and metadata) and the grid (`ctx.grid`) here, never
from token stores. `score_metric` turns one metric into its record entry (ok,
n/a with the reason, or error) and `check_metric_options` refuses options no
metric reads: the runner and `xbench.evaluate` both call them.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

import numpy as np
import torch

from .cache import TokenStore
from .errors import ConfigError, UserError, unknown_name
from .data.base import Dataset
from .explanation import Explanation
from .progress import progress
from .registry import METRICS
from .results import _jsonable, metric_entry
from .views import PlainView, View
from .views.base import ViewIndex


class ModelLike:
    """The contract a scored model follows (xbench heads, or any object with these methods)."""

    spec: Any

    def explain(self, batch) -> Explanation: ...

    def logits(self, batch) -> torch.Tensor: ...


class NotApplicable(Exception):
    """Raised by a metric that finds at run time that it cannot be computed here (reported as n/a)."""


@dataclass
class MetricValue:
    """A metric's number plus anything worth keeping beside it (chosen threshold, counts...)."""

    value: float | None
    extras: dict = field(default_factory=dict)


class EvalContext:
    def __init__(self, model: Any, dataset: Dataset, extractor: Any, device: torch.device | str = "cpu",
                 seed: int = 0, batch_size: int = 64, options: dict | None = None, show_progress: bool = True,
                 needs_images: bool = False):
        self.model = model
        self.dataset = dataset
        self.extractor = extractor
        self.device = torch.device(device)
        self.seed = int(seed)
        self.batch_size = int(batch_size)
        self.options = options or {}
        self.show_progress = show_progress
        self.needs_images = needs_images
        self._memo: dict[str, Any] = {}
        self.timings: dict[str, float] = {}

    # shared computations -------------------------------------------------------------------
    def memo(self, name: str, fn: Callable[[], Any]) -> Any:
        if name not in self._memo:
            t = time.perf_counter()
            self._memo[name] = fn()
            self.timings[name] = time.perf_counter() - t
        return self._memo[name]

    def option(self, metric: str, key: str, default: Any) -> Any:
        return self.options.get(metric, {}).get(key, default)

    # data ---------------------------------------------------------------------------------------
    def split(self, name: str = "test"):
        return self.dataset.split(name)

    def labels(self, split: str = "test") -> torch.Tensor:
        return torch.as_tensor(np.asarray(self.split(split).labels), dtype=torch.long)

    @property
    def has_tokens(self) -> bool:
        """Whether the extractor gives backbone tokens (False for a model scored on images alone)."""
        return bool(getattr(self.extractor, "has_tokens", True))

    @property
    def grid(self) -> int:
        """g of the g x g token grid the explanations live on (the backbone's, or an external model's; an
        extractor without a backbone attribute: its test store's)."""
        bb = getattr(self.extractor, "backbone", None)
        return int(bb.grid) if bb is not None else int(self.store("test").grid)

    def store(self, split: str = "test", view: View | None = None) -> TokenStore:
        """The cached tokens of a view (models on tokens only; metrics read `items` and `grid`)."""
        view = view or PlainView()
        return self.memo(f"store:{split}:{view.key}", lambda: self.extractor.store(self.dataset, split, view))

    def items(self, split: str = "test", view: View | None = None) -> ViewIndex:
        """The view's items: the split image each comes from (`base`) and per-item metadata (`meta`).

        With tokens, read from the cache entry (the same arrays the tokens were extracted for); without,
        from the view itself (no store, no backbone)."""
        view = view or PlainView()

        def build() -> ViewIndex:
            if self.has_tokens:
                st = self.store(split, view)
                return ViewIndex(np.asarray(st.base), dict(st.index_meta))
            return view.index(self.split(split))

        return self.memo(f"items:{split}:{view.key}", build)

    @property
    def logits_need_images(self) -> bool:
        """Whether `model.logits(batch)` needs the images: models that need images for their explanations
        but read logits from the cached tokens (Grad-CAM's CLS probe) say `logits_need_images = False`, so
        the logits of every intervention come from the cache, with no image rendered."""
        return bool(self.needs_images and getattr(self.model, "logits_need_images", True))

    def batches(self, split: str = "test", view: View | None = None, indices: np.ndarray | None = None,
                desc: str | None = None, images: bool | None = None) -> Iterator[Any]:
        """Model inputs in batches: tokens from the cache; images when `images` (default: models that need
        them)."""
        from .method_api import Batch  # the batch container is shared with heads

        view = view or PlainView()
        store = self.store(split, view) if self.has_tokens else None
        idx = np.arange(len(self.items(split, view))) if indices is None else np.asarray(indices, dtype=np.int64)
        sp = self.split(split)
        vindex = None
        with_images = self.needs_images if images is None else bool(images)
        with progress(total=len(idx), desc=desc or f"eval {split}/{view.kind}", enabled=self.show_progress,
                      unit="img") as bar:
            for s in range(0, len(idx), self.batch_size):
                sel = idx[s:s + self.batch_size]
                images = None
                if with_images:
                    if vindex is None:
                        vindex = view.index(sp)
                        pre = self.extractor.backbone.preprocessing   # the extraction's own rule
                    images = torch.stack(view.load_many(sp, vindex, [int(j) for j in sel], pre))
                    images = images.to(self.device)
                tokens = store.tokens(sel, self.device) if store is not None else None
                yield Batch(tokens=tokens, images=images, index=sel)
                bar.update(len(sel))

    # model outputs ------------------------------------------------------------------------------
    @torch.no_grad()
    def logits(self, split: str = "test", view: View | None = None) -> torch.Tensor:
        """[M, C] logits of every item of the view (memoised)."""
        view = view or PlainView()

        def run() -> torch.Tensor:
            out = [self.model.logits(b).float().cpu() for b in self.batches(split, view, desc=f"logits {split}/{view.kind}",
                                                                       images=self.logits_need_images)]
            return torch.cat(out) if out else torch.zeros(0, self.dataset.num_classes)

        return self.memo(f"logits:{split}:{view.key}", run)

    def explanations(self, split: str = "test", view: View | None = None,
                     indices: np.ndarray | None = None) -> Iterator[tuple[np.ndarray, Explanation]]:
        """(item indices, Explanation) per batch. Gradients are enabled only for models that need them."""
        grad = bool(self.needs_images)
        for b in self.batches(split, view, indices, desc=f"explain {split}"):
            with torch.set_grad_enabled(grad):
                yield b.index, self.model.explain(b)


# scoring a metric (the runner and xbench.evaluate alike) --------------------------------------------------
def score_metric(name: str, method_spec, ds: Dataset, ectx: EvalContext, mt: dict) -> dict:
    """The record entry of metric `name` (ok, n/a with the reason, or error, with the metric's version);
    its seconds go into `mt`."""
    m = METRICS.get(name)
    return {**_score(m, method_spec, ds, ectx, mt), "version": int(m.spec.version)}


def _score(m, method_spec, ds: Dataset, ectx: EvalContext, mt: dict) -> dict:
    name = m.name
    reason = m.spec.applicable(method_spec, ds.spec)
    if reason:
        return metric_entry(None, "n/a", reason)
    t = time.perf_counter()
    try:
        out = m.obj(ectx)
    except UserError as err:
        return metric_entry(None, "error", str(err), seconds=time.perf_counter() - t)
    except NotApplicable as err:
        return metric_entry(None, "n/a", str(err))
    dt = time.perf_counter() - t
    mt[name] = round(dt, 3)
    if isinstance(out, MetricValue):
        val, extras = out.value, out.extras
    else:
        val, extras = out, {}
    if val is None:
        return metric_entry(None, "n/a", extras.pop("reason", "undefined on this data"), extras=_jsonable(extras))
    val = float(val)
    if not math.isfinite(val):
        return metric_entry(None, "error", f"value is {val}", seconds=dt)
    return metric_entry(val, "ok", extras=_jsonable(extras), seconds=dt)


def check_metric_options(options: dict) -> None:
    """Refuse `metric_options` groups and keys that no registered metric reads (see `MetricSpec.options`)."""
    if not options:
        return
    declared: dict[str, set[str]] = {}
    for e in METRICS.entries():
        for o in e.spec.options:
            group, _, key = o.rpartition(".")
            declared.setdefault(group, set()).add(key)
    for group, opts in options.items():
        if group not in declared and group not in METRICS:
            raise unknown_name("metric_options group (a metric or an option family)", group,
                               set(declared) | set(METRICS.names()))
        if not isinstance(opts, dict):
            raise ConfigError(f"metric_options.{group} must be a mapping of option names to values")
        bad = sorted(set(opts) - declared.get(group, set()))
        if bad and group in declared:
            raise ConfigError(f"metric_options.{group}: unknown option {bad[0]!r} "
                              f"(valid: {', '.join(sorted(declared[group]))})")
