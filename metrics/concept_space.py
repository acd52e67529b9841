"""Concept-space metrics of the QPM family (SPEC 5.5), for any concept model.

A concept model's explanation gives concept maps [B, K, g, g], concept scores
[B, K] and class weights [C, K] (SPEC 4). DINO-QPM's concepts are its 50
selected features; `linear-probe-patch`'s are the D token dimensions (the
paper's "Dense F^froz" row).

* **contrastiveness** (higher is better): per concept, a 2-component Gaussian
  mixture (scikit-learn, ``random_state = ctx.seed``) is fitted to its scores on
  the *training* split; the overlap coefficient of the two components is
  ``OVL = integral of min(N(m1, s1), N(m2, s2))`` of the two *unweighted*
  component densities (the mixing weights are ignored, as in the reference
  implementation, which uses ``statistics.NormalDist.overlap``); score =
  1 - mean OVL over concepts. Each concept's scores are standardised before the
  fit (OVL is invariant to affine maps; this keeps scikit-learn's absolute
  covariance regulariser relative to the data); a concept with fewer than two
  distinct values has OVL 1. ``metric_options: {contrastiveness: {scores:
  raw}}`` fits the raw scores instead, as the reference does
  (``GaussianMixture(n_components=2)`` on the raw training features). That is
  scale dependent: scikit-learn adds ``reg_covar = 1e-6`` to every variance,
  which is nothing for scores of unit spread but swamps a concept whose
  scores vary by 1e-3 or less, pushing its two components together. The
  reference also passes no ``random_state``, so its numbers vary from run to
  run; xbench still seeds the fit with ``ctx.seed`` in both modes so that its
  numbers are reproducible. The extras' ``scores`` says which was used.
* **sid@5** (higher): on the test split, each concept map is divided by its
  mean absolute value (floored at 1e-5) and spatially soft-maxed; for the
  predicted class, the 5 concepts with the largest (signed) class weight are
  taken, the per-pixel max across them summed over pixels and divided by 5;
  mean over images. As in the reference, images whose predicted class has
  fewer than 5 non-zero weights are skipped (counted as ``skipped``).
* **class_independence** (higher): on the training split, concept scores are
  shifted by their training minimum; for concept k and class c,
  ``share[c, k] = sum over images of class c / sum over all images``; score =
  1 - mean over concepts of ``max_c share[c, k]``. Classes are the generating
  labels. A concept that is constant on the training split (sum 0 after the
  shift) has no defined share; it is left out of the mean and counted as
  ``constant`` (``constant: exclude``, the default). ``metric_options:
  {class_independence: {constant: reference}}`` does what the reference code
  does instead: every share is divided by ``max(total, 1e-8)``, so a constant
  concept has share 0 for every class, counts as perfectly independent (its
  ``1 - max share`` is 1) and stays in the mean; a concept whose shifted total
  is below 1e-8 has shares below their true values. The extras'
  ``constant_rule`` says which rule was used.
* **local_size** (lower): on the test split, the importance of concept k for
  the predicted class c is ``|W[c, k] * score_k|`` divided by its max over k;
  local size = the number of concepts with importance > 0.1 (0 when every
  importance is 0); mean over images.
* **global_size** (lower): the number of concepts used by any class, i.e.
  columns of the class weights with any non-zero entry (exact zero test).

Training-split scores and the test-split pass are computed once per job and
shared by the metrics (`EvalContext.memo`).
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass
from statistics import NormalDist

import numpy as np
import torch

from xbench.errors import ConfigError
from xbench.evaluation import EvalContext, MetricValue
from xbench.progress import progress
from xbench.registry import register_metric

__all__ = [
    "normal_overlap", "gmm_overlaps", "sid_at_k", "class_shares", "class_independence_value", "local_sizes",
    "global_size", "SID_K", "IMPORTANCE_THRESHOLD", "CONSTANT_RULES", "SCORE_MODES", "REFERENCE_CLAMP",
]

SID_K = 5
IMPORTANCE_THRESHOLD = 0.1
#: class_independence's treatment of constant concepts: left out (xbench) or the reference code's clamp.
CONSTANT_RULES = ("exclude", "reference")
#: contrastiveness's GMM input: per-concept standardised scores (xbench) or the raw scores (reference).
SCORE_MODES = ("standardised", "raw")
#: the reference's floor on a concept's min-shifted training total (ClassIndependence)
REFERENCE_CLAMP = 1e-8


# --------------------------------------------------------------------- definitions


def normal_overlap(m1: float, s1: float, m2: float, s2: float) -> float:
    """Overlap coefficient (integral of the pointwise min) of N(m1, s1^2) and N(m2, s2^2); s = std."""
    return float(NormalDist(m1, s1).overlap(NormalDist(m2, s2)))


def gmm_overlaps(scores: np.ndarray | torch.Tensor, seed: int, show_progress: bool = False,
                 standardise: bool = True) -> np.ndarray:
    """[K] overlap of the two components of a seeded 2-component GMM per column of scores [N, K].

    ``standardise=False`` fits each column as it is (the reference's ``raw``
    mode; scale dependent through scikit-learn's ``reg_covar``).
    """
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.mixture import GaussianMixture

    x = np.asarray(scores.detach().cpu().numpy() if isinstance(scores, torch.Tensor) else scores, dtype=np.float64)
    out = np.ones(x.shape[1])
    with progress(total=x.shape[1], desc="contrastiveness GMMs", enabled=show_progress, unit="concept") as bar:
        for k in range(x.shape[1]):  # one small 1-D fit per concept (scikit-learn has no batched GMM)
            bar.update(1)
            col = x[:, k]
            sd = col.std()
            if len(np.unique(col)) < 2 or not sd > 0:
                continue  # a constant concept: both components coincide
            z = (((col - col.mean()) / sd) if standardise else col).reshape(-1, 1)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", ConvergenceWarning)
                gmm = GaussianMixture(n_components=2, random_state=seed).fit(z)
            m = gmm.means_.ravel()
            s = np.sqrt(gmm.covariances_.ravel())
            out[k] = normal_overlap(m[0], s[0], m[1], s[1])
    return out


def sid_at_k(maps: torch.Tensor, weights: torch.Tensor, preds: torch.Tensor,
             k: int = SID_K) -> tuple[torch.Tensor, torch.Tensor]:
    """(values [B], valid [B]) of SID@k for maps [B, K, g, g], class weights [C, K], predictions [B].

    valid is False where the predicted class has fewer than k non-zero weights.
    """
    b, K = maps.shape[:2]
    m = maps.double()
    m = m / m.abs().mean(dim=(2, 3), keepdim=True).clamp_min(1e-5)
    s = torch.softmax(m.reshape(b, K, -1), dim=2)                   # [B, K, P]
    w = weights.to(s.device).double()[preds]                        # [B, K]
    top = w.topk(k, dim=1).indices                                  # [B, k]
    picked = torch.gather(s, 1, top[:, :, None].expand(-1, -1, s.shape[2]))
    values = picked.amax(dim=1).sum(dim=1) / k
    valid = (w != 0).sum(dim=1) >= k
    return values, valid


def class_shares(scores: torch.Tensor, labels: torch.Tensor, num_classes: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(share [C, K], constant [K]): per-class share of each min-shifted concept's training total."""
    x = scores.double()
    x = x - x.min(dim=0).values
    total = x.sum(dim=0)
    per_class = torch.zeros(num_classes, x.shape[1], dtype=x.dtype).index_add_(0, labels.long(), x)
    constant = total <= 0
    share = per_class / torch.where(constant, torch.ones_like(total), total)
    return share, constant


def class_independence_value(scores: torch.Tensor, labels: torch.Tensor, num_classes: int,
                             constant_rule: str = "exclude") -> tuple[float | None, int]:
    """(1 - mean over concepts of max_c share[c, k], number of constant concepts).

    ``constant_rule="exclude"``: constant concepts are left out of the mean
    (None when every concept is constant). ``"reference"``: as the reference
    code, shares are ``per-class sum / max(total, 1e-8)`` for every concept, so
    a constant concept has max share 0 and stays in the mean.
    """
    if constant_rule not in CONSTANT_RULES:
        raise ValueError(f"constant_rule must be one of {CONSTANT_RULES}; got {constant_rule!r}")
    share, constant = class_shares(scores, labels, num_classes)
    if constant_rule == "reference":
        if scores.shape[1] == 0:
            return None, 0
        x = scores.double()
        x = x - x.min(dim=0).values
        per_class = torch.zeros(num_classes, x.shape[1], dtype=x.dtype).index_add_(0, labels.long(), x)
        clamped = per_class / x.sum(dim=0).clamp_min(REFERENCE_CLAMP)
        return float(1.0 - clamped.max(dim=0).values.mean()), int(constant.sum())
    if bool(constant.all()):
        return None, int(constant.sum())
    return float(1.0 - share.max(dim=0).values[~constant].mean()), int(constant.sum())


def local_sizes(scores: torch.Tensor, weights: torch.Tensor, preds: torch.Tensor,
                threshold: float = IMPORTANCE_THRESHOLD) -> torch.Tensor:
    """[B]: concepts whose importance |W[c, k] score_k| / max_k(...) for the predicted class c exceeds threshold."""
    imp = (weights.to(scores.device).double()[preds] * scores.double()).abs()
    top = imp.max(dim=1, keepdim=True).values
    rel = imp / torch.where(top > 0, top, torch.ones_like(top))
    return (rel > threshold).sum(dim=1)


def global_size(weights: torch.Tensor) -> int:
    """Concepts used by any class: columns of the class weights with a non-zero entry."""
    return int((weights != 0).any(dim=0).sum())


# ------------------------------------------------------------------ shared passes


@dataclass
class _TestPass:
    sid: torch.Tensor        # [N] SID@5 per image
    sid_valid: torch.Tensor  # [N] bool
    local: torch.Tensor      # [N] local size per image
    weights: torch.Tensor    # [C, K]


def _train_scores(ctx: EvalContext) -> tuple[torch.Tensor, torch.Tensor]:
    """(concept scores [N, K], labels [N]) on the training split, once per job."""

    def run() -> tuple[torch.Tensor, torch.Tensor]:
        out = [exp.concept_scores.detach().double().cpu() for _, exp in ctx.explanations("train")]
        return torch.cat(out), ctx.labels("train")

    return ctx.memo("concept_scores:train", run)


def _test_pass(ctx: EvalContext) -> _TestPass:
    def run() -> _TestPass:
        sid, valid, local, weights = [], [], [], None
        for _, exp in ctx.explanations("test"):
            maps = exp.concept_maps.detach()
            w = exp.class_weights.detach()
            preds = exp.predictions()
            if maps.shape[1] >= SID_K:
                v, ok = sid_at_k(maps, w, preds, SID_K)
            else:
                v, ok = torch.zeros(len(preds)), torch.zeros(len(preds), dtype=torch.bool)
            sid.append(v.cpu())
            valid.append(ok.cpu())
            local.append(local_sizes(exp.concept_scores.detach(), w, preds).cpu())
            weights = w.cpu() if weights is None else weights
        if weights is None:
            return _TestPass(torch.zeros(0), torch.zeros(0, dtype=torch.bool), torch.zeros(0), torch.zeros(0, 0))
        return _TestPass(torch.cat(sid), torch.cat(valid), torch.cat(local), weights)

    return ctx.memo("concept_space:test", run)


# ------------------------------------------------------------------------ options


def _choice(ctx: EvalContext, metric: str, key: str, valid: tuple[str, ...]) -> str:
    value = ctx.option(metric, key, valid[0])
    if value not in valid:
        raise ConfigError(f"metric_options.{metric}.{key}={value!r} is invalid: use one of {', '.join(valid)} "
                          f"(default {valid[0]})")
    return str(value)


def constant_rule(ctx: EvalContext) -> str:
    """``metric_options.class_independence.constant``: "exclude" (default) or "reference"."""
    return _choice(ctx, "class_independence", "constant", CONSTANT_RULES)


def score_mode(ctx: EvalContext) -> str:
    """``metric_options.contrastiveness.scores``: "standardised" (default) or "raw"."""
    return _choice(ctx, "contrastiveness", "scores", SCORE_MODES)


# ------------------------------------------------------------------------ metrics

_CONCEPTS = {"concepts"}


@register_metric("contrastiveness", direction="higher", category="concepts", needs_method=_CONCEPTS, percent=True,
                 cost="moderate", paper="dinoqpm", options=("contrastiveness.scores",),
                 description="1 - mean overlap of a seeded 2-component GMM fitted to each concept's training scores")
def contrastiveness(ctx: EvalContext) -> MetricValue:
    """1 - mean overlap of the two components of a seeded 2-component GMM per concept (training split)."""
    mode = score_mode(ctx)
    scores, _ = _train_scores(ctx)
    if scores.shape[0] < 2 or scores.shape[1] == 0:
        return MetricValue(None, {"reason": "fewer than two training images or no concepts", "scores": mode})
    ovl = gmm_overlaps(scores, ctx.seed, show_progress=ctx.show_progress, standardise=mode == "standardised")
    return MetricValue(float(1.0 - ovl.mean()), {"concepts": int(len(ovl)), "seed": ctx.seed, "scores": mode})


@register_metric("sid@5", direction="higher", category="concepts", needs_method=_CONCEPTS, percent=True,
                 paper="dinoqpm",
                 description="spatial diversity of the predicted class's top-5 concept maps (SID@5)")
def sid_at_5(ctx: EvalContext) -> MetricValue:
    """Spatial diversity of the predicted class's 5 most weighted concept maps (test split)."""
    t = _test_pass(ctx)
    n = int(t.sid_valid.sum())
    extras = {"images": n, "skipped": int((~t.sid_valid).sum())}
    if n == 0:
        return MetricValue(None, {**extras, "reason": f"no predicted class uses {SID_K} or more concepts"})
    return MetricValue(float(t.sid[t.sid_valid].mean()), extras)


@register_metric("class_independence", direction="higher", category="concepts", needs_method=_CONCEPTS,
                 percent=True, paper="dinoqpm", options=("class_independence.constant",),
                 description="1 - mean over concepts of the largest per-class share of its (min-shifted) training total")
def class_independence(ctx: EvalContext) -> MetricValue:
    """1 - mean over concepts of the largest per-class share of the concept's min-shifted training total."""
    rule = constant_rule(ctx)
    scores, labels = _train_scores(ctx)
    value, constant = class_independence_value(scores, labels, ctx.dataset.num_classes, rule)
    extras = {"concepts": int(scores.shape[1]), "constant": constant, "constant_rule": rule}
    if value is None:
        return MetricValue(None, {**extras, "reason": "every concept is constant on the training split"})
    return MetricValue(value, extras)


@register_metric("local_size", direction="lower", category="compactness", needs_method=_CONCEPTS, paper="dinoqpm",
                 description="concepts with importance > 0.1 of the max for the predicted class, mean over test images")
def local_size(ctx: EvalContext) -> MetricValue:
    """Mean number of concepts with importance above 0.1 (relative to the max) for the predicted class."""
    t = _test_pass(ctx)
    if len(t.local) == 0:
        return MetricValue(None, {"reason": "empty test split"})
    return MetricValue(float(t.local.double().mean()), {"threshold": IMPORTANCE_THRESHOLD})


@register_metric("global_size", direction="lower", category="compactness", needs_method=_CONCEPTS, paper="dinoqpm",
                 description="concepts used by any class (class-weight columns with a non-zero entry)")
def global_size_metric(ctx: EvalContext) -> MetricValue:
    """Number of concepts used by any class (class-weight columns with a non-zero entry)."""
    t = _test_pass(ctx)
    if t.weights.numel() == 0:
        return MetricValue(None, {"reason": "empty test split"})
    return MetricValue(float(global_size(t.weights)), {"concepts": int(t.weights.shape[1])})
