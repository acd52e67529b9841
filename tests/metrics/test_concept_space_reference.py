"""The reference code's treatment of concept-space metrics (metric_options), on cases computed by hand.

Reference semantics, in words (DINO-QPM repository, evaluation/metrics):
* Class independence: concept scores shifted by their training minimum; the
  share of class c is (sum over class c) / max(sum over all, 1e-8); score =
  1 - mean over *all* concepts of the largest share. A constant concept thus
  has share 0 everywhere and counts as perfectly independent.
* Contrastiveness: a 2-component GaussianMixture (no random_state) fitted to
  each concept's raw training features; scikit-learn adds reg_covar = 1e-6 to
  every variance, which makes the fit depend on the features' scale.
"""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from xbench.errors import ConfigError
from xbench.evaluation import EvalContext
from xbench.metrics.concept_space import class_independence_value, gmm_overlaps
from xbench.registry import METRICS
from xbench.runner import check_metric_options


def _phi(x: float) -> float:
    return 0.5 * (1 + math.erf(x / math.sqrt(2)))


# -------------------------------------------------------------- class-independence

LABELS = torch.tensor([0, 0, 1, 1])
SCORES = torch.tensor([[1.0, 5.0, 0.0],
                       [2.0, 5.0, 0.0],
                       [3.0, 5.0, 0.0],
                       [4.0, 5.0, 4e-9]], dtype=torch.float64)
# concept 0: shifted [0, 1, 2, 3], total 6 -> shares 1/6, 5/6 -> max 5/6
# concept 1: constant 5 -> shifted [0, 0, 0, 0], total 0
# concept 2: shifted [0, 0, 0, 4e-9], total 4e-9 (below the reference's clamp 1e-8)
EXCLUDE = 1 - (5 / 6 + 1.0) / 2            # concept 1 left out; concept 2: 4e-9 / 4e-9 = 1 -> 1/12
REFERENCE = 1 - (5 / 6 + 0.0 + 0.4) / 3    # concept 1: 0 / 1e-8 = 0; concept 2: 4e-9 / 1e-8 = 0.4 -> 0.588...


def test_class_independence_constant_concept_under_both_rules():
    value, n_const = class_independence_value(SCORES, LABELS, 2)
    assert value == pytest.approx(EXCLUDE, abs=1e-12) and n_const == 1
    value, n_const = class_independence_value(SCORES, LABELS, 2, "reference")
    assert value == pytest.approx(REFERENCE, abs=1e-12) and n_const == 1
    assert value == pytest.approx(0.5888888888888889, abs=1e-12)
    # every concept constant: undefined under exclude, perfectly independent (1 - 0) under reference
    flat = torch.full((4, 2), 3.0, dtype=torch.float64)
    assert class_independence_value(flat, LABELS, 2) == (None, 2)
    assert class_independence_value(flat, LABELS, 2, "reference") == (1.0, 2)


class _Dataset:
    num_classes = 2


def _ctx(options: dict | None, scores: torch.Tensor, labels: torch.Tensor) -> EvalContext:
    ctx = EvalContext(None, _Dataset(), None, seed=0, options=options, show_progress=False)
    ctx.memo("concept_scores:train", lambda: (scores, labels))  # what the metrics read first
    return ctx


def test_class_independence_option_through_the_metric():
    metric = METRICS.get("class_independence")
    assert "class_independence.constant" in metric.spec.options
    out = metric.obj(_ctx(None, SCORES, LABELS))
    assert out.value == pytest.approx(EXCLUDE, abs=1e-12) and out.extras["constant_rule"] == "exclude"
    out = metric.obj(_ctx({"class_independence": {"constant": "reference"}}, SCORES, LABELS))
    assert out.value == pytest.approx(REFERENCE, abs=1e-12)
    assert out.extras["constant_rule"] == "reference" and out.extras["constant"] == 1
    with pytest.raises(ConfigError, match=r"class_independence\.constant='drop'.*exclude, reference"):
        metric.obj(_ctx({"class_independence": {"constant": "drop"}}, SCORES, LABELS))
    check_metric_options({"class_independence": {"constant": "reference"}, "contrastiveness": {"scores": "raw"}})
    with pytest.raises(ConfigError, match="unknown option 'constants'"):
        check_metric_options({"class_independence": {"constants": "reference"}})


# ------------------------------------------------------------------- contrastiveness

# 100 training scores: 50 at 0 and 50 at d = 1e-4 (two point masses).
D = 1e-4
TINY = np.array([0.0] * 50 + [D] * 50)[:, None]


def test_raw_gmm_is_scale_dependent_through_reg_covar():
    # Standardised: the scores become -1 and +1; the EM components sit on the two masses with variance
    # 0 + reg_covar = 1e-6, sd 1e-3: OVL = 2 Phi(-2 / (2 * 1e-3)) = 2 Phi(-1000) = 0 -> contrastiveness 1.
    std = gmm_overlaps(TINY, seed=0)
    assert std[0] < 1e-6
    # Raw: every variance is (weighted variance, at most (d/2)^2 = 2.5e-9) + 1e-6, so both sds lie in
    # [1e-3, 1.0013e-3], and both means lie in [0, d] (weighted means of the data). Two normals with
    # sd ~1e-3 whose means are at most d = 1e-4 apart overlap by at least about
    # 2 Phi(-d / (2 sd)) = 2 Phi(-0.05) = 0.9601 -> contrastiveness about 0.04 or less.
    bound = 2 * _phi(-D / (2 * 1e-3))
    assert bound == pytest.approx(0.960122, abs=1e-6)
    raw = gmm_overlaps(TINY, seed=0, standardise=False)
    assert raw[0] > bound - 0.01
    # scaled up by 1e4 (masses at 0 and 1: sd 1e-3 is 1/1000 of the gap) the raw fit separates them too
    assert gmm_overlaps(TINY * 1e4, seed=0, standardise=False)[0] < 1e-6


def test_contrastiveness_option_through_the_metric():
    metric = METRICS.get("contrastiveness")
    assert "contrastiveness.scores" in metric.spec.options
    scores = torch.as_tensor(TINY)
    labels = torch.tensor([0, 1] * 50)
    out = metric.obj(_ctx(None, scores, labels))
    assert out.value > 1 - 1e-6 and out.extras["scores"] == "standardised"
    out = metric.obj(_ctx({"contrastiveness": {"scores": "raw"}}, scores, labels))
    assert out.value < 1 - (2 * _phi(-0.05) - 0.01) and out.extras["scores"] == "raw"
    with pytest.raises(ConfigError, match=r"contrastiveness\.scores='zscore'.*standardised, raw"):
        metric.obj(_ctx({"contrastiveness": {"scores": "zscore"}}, scores, labels))
