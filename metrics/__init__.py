"""Metrics (installed as xbench.metrics). Importing this package registers the built-in metrics.

A metric is a function `fn(ctx: xbench.evaluation.EvalContext) -> float | MetricValue`
registered with `@register_metric(name, direction=..., category=..., needs_method=...,
needs_data=...)`; the runner reports it as n/a where its needs are not met.
"""
from __future__ import annotations

from . import accuracy as _accuracy  # noqa: F401
from .funnybirds import register as _funnybirds  # noqa: F401
from . import plausibility as _plausibility  # noqa: F401
from . import concept_space as _concept_space  # noqa: F401
from .concepts_consistency import register as _concepts_consistency  # noqa: F401
