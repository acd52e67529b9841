"""Background independence of FunnyBirds (BI, SPEC 5.2); needs logits only, no explanation.

BI = 1 - (background objects whose removal lowers the true-class logit by at
least 5 % of it) / (all background objects), pooled over every object of every
test image; the 5 % rule is `interventions.lowers_target` (drop > 0 and drop >=
0.05 |logit|). Choice: with no background object in the whole test split BI is
undefined (reported n/a).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

from .interventions import RELEVANCE, InterventionLogits, lowers_target


@dataclass
class BackgroundResult:
    value: float            # nan when there is no background object
    objects: int
    relevant: int


def background_independence(il: InterventionLogits, fraction: float = RELEVANCE,
                            relevant: Callable[[torch.Tensor, torch.Tensor, float], torch.Tensor] = lowers_target
                            ) -> BackgroundResult:
    """BI from the intervention logits; `relevant(original, removed, fraction)` is the relevance rule
    (`lowers_target`, or the reference protocol's `reference.reference_relevant_background`)."""
    y = il.labels
    orig = il.target_logit(y)[:, None]
    rel = relevant(orig, il.object_removed(y), fraction) & il.object_valid
    total, relevant = int(il.object_valid.sum()), int(rel.sum())
    value = 1.0 - relevant / total if total else float("nan")
    return BackgroundResult(value=value, objects=total, relevant=relevant)


__all__ = ["BackgroundResult", "background_independence"]
