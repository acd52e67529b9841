"""Registered metrics of the FunnyBirds suite (SPEC 5.2); all read the memoised family of `suite`.

Threshold-dependent metrics report the chosen threshold (and its index) as an
extra; `completeness` also carries the per-threshold curves. A number that is
undefined on the data (e.g. CSDC with no correctly classified image) is
reported as n/a with the reason, never as 0.
"""
from __future__ import annotations

import math
from typing import Callable

from xbench.evaluation import EvalContext, MetricValue
from xbench.registry import register_metric

from .suite import SuiteResult, funnybirds_background, funnybirds_suite, suite_options

_OPTIONS = ("funnybirds.protocol", "funnybirds.thresholds", "funnybirds.relevance",
            "funnybirds.pairs")  # suite.parse_suite_options
_EXPLAINED = dict(needs_method={"attribution"}, needs_data={"interventions", "part_map", "class_parts"},
                  cost="expensive", paper="funnybirds", options=_OPTIONS)

_REASONS = {
    "csdc": "no correctly classified test image",
    "distractibility": "no test image has an irrelevant part or background object",
    "single_deletion": "the Spearman correlation is undefined on every test image",
    "target_sensitivity": "no test image has a valid class pair",
}

_DEPENDS = {
    "csdc": ("csdc",), "distractibility": ("distractibility",), "completeness": ("csdc", "distractibility"),
    "single_deletion": ("single_deletion",), "target_sensitivity": ("target_sensitivity",),
    "mean_explainability": ("csdc", "distractibility", "single_deletion", "target_sensitivity"),
}


def _value(result: SuiteResult, name: str, extras: dict) -> MetricValue:
    v = result.values()[name]
    extras = {**extras, "protocol": result.protocol}
    if math.isnan(v):
        if name in result.reasons:
            return MetricValue(None, {**extras, "reason": result.reasons[name]})
        missing = [k for k in _DEPENDS.get(name, ()) if math.isnan(result.values()[k])]
        reason = "; ".join(_REASONS[k] for k in missing) or "undefined on this data"
        return MetricValue(None, {**extras, "reason": reason})
    return MetricValue(v, extras)


def _threshold_extras(r: SuiteResult) -> dict:
    return {"threshold": r.threshold, "threshold_index": r.index}


def _counts(r: SuiteResult, *keys: str) -> dict:
    return {k: r.counts[k] for k in keys}


def _metric(name: str, extras: Callable[[SuiteResult], dict]) -> Callable[[EvalContext], MetricValue]:
    def fn(ctx: EvalContext) -> MetricValue:
        r = funnybirds_suite(ctx)
        return _value(r, name, extras(r))

    return fn


@register_metric("csdc", direction="higher", category="completeness", **_EXPLAINED,
                 description="controlled synthetic data check: share of a minimal sufficient part set marked important")
def csdc(ctx: EvalContext) -> MetricValue:
    """Controlled synthetic data check (FunnyBirds completeness, at the chosen threshold)."""
    return _metric("csdc", lambda r: {**_threshold_extras(r), **_counts(r, "csdc_images")})(ctx)


@register_metric("pc", direction="higher", category="completeness", **_EXPLAINED,
                 description="preservation check: prediction unchanged when only the important parts are kept")
def pc(ctx: EvalContext) -> MetricValue:
    """Preservation check (FunnyBirds completeness, at the chosen threshold)."""
    return _metric("pc", lambda r: {**_threshold_extras(r), **_counts(r, "pc_images")})(ctx)


@register_metric("dc", direction="higher", category="completeness", **_EXPLAINED,
                 description="deletion check: prediction changes when the important parts are removed")
def dc(ctx: EvalContext) -> MetricValue:
    """Deletion check (FunnyBirds completeness, at the chosen threshold)."""
    return _metric("dc", lambda r: {**_threshold_extras(r), **_counts(r, "dc_images")})(ctx)


@register_metric("distractibility", direction="higher", category="completeness", **_EXPLAINED,
                 description="1 - share of irrelevant parts / background objects marked important")
def distractibility(ctx: EvalContext) -> MetricValue:
    """Distractibility D (FunnyBirds completeness, at the chosen threshold)."""
    return _metric("distractibility",
                   lambda r: {**_threshold_extras(r), **_counts(r, "d_images", "d_skipped")})(ctx)


@register_metric("completeness", direction="higher", category="completeness", **_EXPLAINED,
                 description="((CSDC + PC + DC)/3 + D) / 2 at the threshold that maximises it")
def completeness(ctx: EvalContext) -> MetricValue:
    """FunnyBirds completeness: ((CSDC + PC + DC)/3 + D) / 2."""
    return _metric("completeness", lambda r: {**_threshold_extras(r), "counts": dict(r.counts),
                                              "curves": r.curves()})(ctx)


@register_metric("single_deletion", direction="higher", category="correctness", **_EXPLAINED, in_quickstart=False,
                 description="(same number as `correctness`, which the default run reports) "
                             "single deletion: 0.5 Spearman(part importance, logit drop) + 0.5")
def single_deletion(ctx: EvalContext) -> MetricValue:
    """Single deletion SD (FunnyBirds correctness)."""
    return _metric("single_deletion", lambda r: _counts(r, "sd_images", "sd_skipped"))(ctx)


@register_metric("correctness", direction="higher", category="correctness", **_EXPLAINED,
                 description="FunnyBirds correctness = single deletion")
def correctness(ctx: EvalContext) -> MetricValue:
    """FunnyBirds correctness (= single deletion)."""
    return _metric("single_deletion", lambda r: _counts(r, "sd_images", "sd_skipped"))(ctx)


_TS_COUNTS = ("ts_images", "ts_skipped", "ts_no_pair", "ts_failed_condition", "ts_pairs")


@register_metric("target_sensitivity", direction="higher", category="contrastivity", **_EXPLAINED,
                 in_quickstart=False,
                 description="(same number as `contrastivity`, which the default run reports) "
                             "target sensitivity: the parts two similar classes share get more importance for them")
def target_sensitivity(ctx: EvalContext) -> MetricValue:
    """Target sensitivity TS (FunnyBirds contrastivity)."""
    return _metric("target_sensitivity", lambda r: _counts(r, *_TS_COUNTS))(ctx)


@register_metric("contrastivity", direction="higher", category="contrastivity", **_EXPLAINED,
                 description="FunnyBirds contrastivity = target sensitivity")
def contrastivity(ctx: EvalContext) -> MetricValue:
    """FunnyBirds contrastivity (= target sensitivity)."""
    return _metric("target_sensitivity", lambda r: _counts(r, *_TS_COUNTS))(ctx)


@register_metric("fb_threshold", direction="none", category="completeness", **_EXPLAINED,
                 description="the importance threshold t chosen for this method (maximises (CSDC+PC+DC)/3 + D)")
def fb_threshold(ctx: EvalContext) -> MetricValue:
    """The FunnyBirds threshold choice: t in linspace(0.01, 0.5, 80) maximising (CSDC + PC + DC)/3 + D."""
    r = funnybirds_suite(ctx)
    if math.isnan(r.completeness):
        reason = r.reasons.get("completeness", "completeness is undefined on this data")
        return MetricValue(None, {"reason": reason, "protocol": r.protocol})
    return MetricValue(r.threshold, {"threshold_index": r.index, "protocol": r.protocol})


@register_metric("mean_explainability", direction="higher", category="explainability", **_EXPLAINED,
                 description="mean of FunnyBirds completeness, correctness and contrastivity")
def mean_explainability(ctx: EvalContext) -> MetricValue:
    """Mean of completeness, correctness and contrastivity (FunnyBirds)."""
    return _metric("mean_explainability", lambda r: {**_threshold_extras(r), "completeness": r.completeness,
                                                     "correctness": r.sd, "contrastivity": r.ts})(ctx)


@register_metric("background_independence", direction="higher", category="background",
                 needs_method={"logits"}, needs_data={"interventions"}, cost="moderate", paper="funnybirds",
                 options=_OPTIONS,
                 description="1 - share of background objects whose removal lowers the true-class logit by >= 5%")
def background_independence(ctx: EvalContext) -> MetricValue:
    """Background independence BI (FunnyBirds; needs no explanation)."""
    r = funnybirds_background(ctx)
    extras = {"objects": r.objects, "relevant_objects": r.relevant,
              "protocol": suite_options(ctx).protocol}
    if math.isnan(r.value):
        return MetricValue(None, {**extras, "reason": "no background object in the test split"})
    return MetricValue(r.value, extras)


__all__ = ["csdc", "pc", "dc", "distractibility", "completeness", "fb_threshold", "single_deletion", "correctness",
           "target_sensitivity", "contrastivity", "mean_explainability", "background_independence"]
