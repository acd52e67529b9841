"""Completeness of FunnyBirds (SPEC 5.2): CSDC, PC, DC, D over thresholds, and the threshold choice.

All functions work on whole tensors [N, T, ...] (images x thresholds); every
curve is a float64 tensor [T]. Parts are bitmasks over `dataset.part_names`.

* CSDC (controlled synthetic data check): correctly classified images only,
  target = true class; for each minimal sufficient part set S of the true class
  |S & important| / |S|, the max over S; mean over images. Choice: an image
  whose class has no minimal sufficient set is skipped (cannot happen on
  synthbirds, where every class is distinct).
* PC (preservation): all images, target = prediction; keep only the important
  parts (all parts important = the unchanged image); 1 if the prediction is unchanged.
* DC (deletion): the same, keeping the complement (no part important = the
  unchanged image, which scores 0); 1 if the prediction changes. Predictions
  are argmax, ties to the lowest class index (torch.argmax).
* D (distractibility): target = true class; units = the five parts and the
  image's background objects; irrelevant = not `interventions.lowers_target`;
  per image |important & irrelevant| / |irrelevant|; D = 1 - mean over images
  with at least one irrelevant unit (the others are skipped, and counted).
* Threshold choice: the t maximising (CSDC + PC + DC)/3 + D, the first (smallest
  t) on ties. Choice: a component undefined on this data (no correctly
  classified image for CSDC, no image with an irrelevant unit for D) is left out
  of the objective (it does not depend on t), and is reported as undefined.
"""
from __future__ import annotations

import torch

from .importance import popcount_table


def csdc_scores(bits: torch.Tensor, labels: torch.Tensor, mss: torch.Tensor, mss_valid: torch.Tensor,
                num_parts: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(per-image CSDC [N, T], has a set [N]): max over the true class's minimal sufficient sets S of
    |S & important| / |S|, from important part bits [N, T] of the true-class maps; 0 without a set."""
    pop = popcount_table(num_parts).to(torch.float64)
    sets, ok = mss[labels], mss_valid[labels]                                 # [N, S]
    frac = pop[bits[:, :, None] & sets[:, None, :]] / pop[sets].clamp_min(1)[:, None, :]
    frac = frac.masked_fill(~ok[:, None, :], 0.0).amax(dim=2)                 # [N, T]
    return frac, ok.any(dim=1)


def csdc_curve(bits: torch.Tensor, labels: torch.Tensor, correct: torch.Tensor, mss: torch.Tensor,
               mss_valid: torch.Tensor, num_parts: int) -> tuple[torch.Tensor, int]:
    """(CSDC per threshold [T], images used) from important part bits [N, T] of the true-class maps."""
    frac, has = csdc_scores(bits, labels, mss, mss_valid, num_parts)
    use = correct & has
    n = int(use.sum())
    if n == 0:
        return torch.full((bits.shape[1],), float("nan"), dtype=torch.float64), 0
    return frac[use].mean(dim=0), n


def preservation_outcomes(bits: torch.Tensor, subset_predictions: torch.Tensor, prediction: torch.Tensor) -> torch.Tensor:
    """float64 [N, T]: 1 where keeping only the important parts (bits [N, T] of the predicted-class maps)
    leaves the prediction unchanged."""
    kept = subset_predictions.gather(1, bits)                                 # [N, T]
    return (kept == prediction[:, None]).to(torch.float64)


def deletion_outcomes(bits: torch.Tensor, subset_predictions: torch.Tensor, prediction: torch.Tensor,
                      num_parts: int) -> torch.Tensor:
    """float64 [N, T]: 1 where removing the important parts (keeping the complement) changes the prediction."""
    kept = subset_predictions.gather(1, ((1 << num_parts) - 1) & ~bits)
    return (kept != prediction[:, None]).to(torch.float64)


def preservation_curve(bits: torch.Tensor, subset_predictions: torch.Tensor, prediction: torch.Tensor) -> torch.Tensor:
    """PC per threshold [T]: keep the important parts (bits [N, T] of the predicted-class maps)."""
    return preservation_outcomes(bits, subset_predictions, prediction).mean(dim=0)


def deletion_curve(bits: torch.Tensor, subset_predictions: torch.Tensor, prediction: torch.Tensor,
                   num_parts: int) -> torch.Tensor:
    """DC per threshold [T]: remove the important parts (keep the complement)."""
    return deletion_outcomes(bits, subset_predictions, prediction, num_parts).mean(dim=0)


def distractibility_curve(important: torch.Tensor, irrelevant: torch.Tensor) -> tuple[torch.Tensor, int]:
    """(D per threshold [T], images used) from important [N, T, U] (true-class maps) and irrelevant [N, U]."""
    n_irr = irrelevant.sum(dim=1)
    use = n_irr > 0
    n = int(use.sum())
    if n == 0:
        return torch.full((important.shape[1],), float("nan"), dtype=torch.float64), 0
    hit = (important[use] & irrelevant[use][:, None, :]).sum(dim=2).to(torch.float64)
    return 1.0 - (hit / n_irr[use][:, None]).mean(dim=0), n


def objective(csdc: torch.Tensor, pc: torch.Tensor, dc: torch.Tensor, d: torch.Tensor) -> torch.Tensor:
    """(CSDC + PC + DC)/3 + D per threshold, undefined components left out (module docstring)."""
    first = torch.stack([csdc, pc, dc]).nanmean(dim=0)
    first = torch.nan_to_num(first, nan=0.0)
    return first + torch.nan_to_num(d, nan=0.0)


def choose_threshold(csdc: torch.Tensor, pc: torch.Tensor, dc: torch.Tensor, d: torch.Tensor) -> int:
    """Index of the threshold maximising the objective; the first one on ties."""
    obj = objective(csdc, pc, dc, d)
    best = obj.max()
    return int(torch.nonzero(obj == best)[0, 0])


def completeness(csdc: float, pc: float, dc: float, d: float) -> float:
    """((CSDC + PC + DC)/3 + D) / 2 (nan if any part is undefined)."""
    return ((csdc + pc + dc) / 3.0 + d) / 2.0


__all__ = ["csdc_scores", "csdc_curve", "preservation_outcomes", "deletion_outcomes", "preservation_curve",
           "deletion_curve", "distractibility_curve", "objective",
           "choose_threshold", "completeness"]
