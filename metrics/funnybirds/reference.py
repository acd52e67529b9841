"""The reference FunnyBirds protocol: what the official evaluation code computes, quirks included.

``metric_options: {funnybirds: {protocol: reference}}`` (or ``--metric-option
funnybirds.protocol=reference``) makes the suite give the numbers of the
FunnyBirds framework (visinf/funnybirds-framework: ``evaluation_protocols.py``,
``explainers/explainer_wrapper.py``, ``datasets/funny_birds.py``,
``evaluate_explainability.py``) on the same model and data. The default
protocol (``xbench``) follows SPEC 5.2 and corrects what follows. Each
behaviour below is stated in words, with why it changes a number:

1. **No minimal sufficient set for the last class.** The framework's search
   for sufficient part sets only records a set when its scan over the other
   classes reaches the last entry of ``classes.json``; for the last class that
   entry is the class itself, which the scan skips, so it never gets a set.
   Its correctly classified images stay in CSDC's denominator with score 0
   (`reference_mss`). An image of any class without a set scores 0 as well
   (xbench skips such images).
2. **Two-colour parts dilated per colour.** Eyes, feet and wings have two
   colours in the part map; the framework dilates each colour's mask on its
   own and adds the two sums, so pixels where the dilated masks overlap count
   twice (`masks.build_unit_cells(colours=True)`; xbench dilates the slot as
   one mask).
3. **Target sensitivity pairs.** The framework takes, per image, the first
   pair of classes (in ``classes.json`` order) that each share exactly two
   parts with the true class and whose shared sets are disjoint, fixed by the
   class alone; when that pair fails the logit condition the image is skipped
   (xbench's default looks for the first pair that passes it). When the class
   has no such pair the loop variables keep what they last held: the last pair
   scanned for this class if it had at least two candidates (shared sets that
   may overlap), otherwise the previous image's pair and shared sets
   (computed for the previous image's class). Before any image has set a pair
   the framework stops with an error; those leading images are skipped here
   and counted (``ts_undefined``). The condition compares logit drops
   ``logit(removed) - logit(original)`` in float32, as the framework does on
   the model's output (`reference_pairs`).
4. **Distractibility.** A unit is irrelevant when ``|drop| < |0.05 logit|``
   or the removal raises the logit (in float64 on the float32 logits, as the
   framework's Python floats). This differs from xbench's rule only for a
   logit of exactly 0 that the removal leaves at 0 (relevant for the
   framework, irrelevant for xbench). Images without an irrelevant unit are
   skipped and D = 1 - sum / (images + 1e-8), so D = 1 when no image has one
   (xbench: undefined). Background independence uses the framework's rule,
   which selects the same objects as xbench's, in float64.
5. **Single deletion** skips images whose Spearman correlation is NaN (as
   xbench does); **importance** is compared against t x the sum of the whole
   map (as SPEC 5.2 says), strictly.
6. **Threshold choice**: the first threshold (smallest t) whose
   ``CSDC/3 + PC/3 + DC/3 + D`` exceeds every earlier one and 0, evaluated in
   that order in float64, with every curve a sequential float64 sum over the
   images in test order (so near-ties break as in the framework). Where the
   framework divides by zero (no correctly classified image for CSDC, no
   background object for BI, no scored image for SD / TS) or finds no
   threshold (every objective <= 0), the number is n/a with that reason.

Precision differences that remain: the framework sums the 256 x 256
attribution in float32 and compares in float32; xbench sums exactly (cell
counts) in float64. Only a part whose importance lies within float32 rounding
of the threshold can differ.
"""
from __future__ import annotations

from dataclasses import replace

import numpy as np
import torch

from xbench.errors import ConfigError

from .classes import ClassStructure, popcount
from .contrastivity import PairChoice
from .interventions import InterventionLogits

#: D's denominator guard in the framework (``len(scores) + 1e-8``)
D_EPS = 1e-8


def check_class_order(dataset) -> None:
    """The framework indexes ``classes.json`` by position; refuse a file whose order is not class_idx order."""
    order = getattr(dataset, "class_file_order", None)
    if order is not None and list(order) != sorted(order):
        raise ConfigError(f"{dataset.spec.name}: classes.json lists the classes out of class_idx order; the "
                          f"FunnyBirds framework indexes it by position, so the reference protocol needs it sorted "
                          f"by class_idx (rewrite the file sorted, or use protocol: xbench)")


def reference_mss(cs: ClassStructure, num_classes: int) -> ClassStructure:
    """The class structure with no minimal sufficient set for the last class (behaviour 1)."""
    valid = cs.mss_valid.clone()
    if num_classes:
        valid[num_classes - 1] = False
    return replace(cs, mss_valid=valid)


def class_pair_rule(agreement: np.ndarray, y: int) -> tuple[int, int] | None:
    """The framework's pair for class y (behaviour 3): (c1, c2), or None when its scan assigns nothing.

    Candidates: classes sharing exactly two slots with y, in index order. The first (c1 < c2 in scan order)
    pair with disjoint shared sets; else the last pair scanned (the two last candidates); else None."""
    row = np.asarray(agreement[y])
    cands = [int(c) for c in np.flatnonzero(popcount(row) == 2) if int(c) != y]
    for a in range(len(cands)):
        for b in range(a + 1, len(cands)):
            if int(row[cands[a]]) & int(row[cands[b]]) == 0:
                return cands[a], cands[b]
    if len(cands) >= 2:
        return cands[-2], cands[-1]
    return None


def reference_pairs(il: InterventionLogits, agreement: np.ndarray) -> tuple[PairChoice, int]:
    """(the PairChoice of every test image in the framework's loop order, images before any pair is set).

    ``ok`` marks the scored images: a pair is known and the float32 drop condition holds."""
    y = il.labels
    n = len(y)
    agreement = np.asarray(agreement)
    per_class: dict[int, tuple[int, int] | None] = {}
    c1 = torch.zeros(n, dtype=torch.long)
    c2 = torch.zeros(n, dtype=torch.long)
    p1 = torch.zeros(n, dtype=torch.long)
    p2 = torch.zeros(n, dtype=torch.long)
    known = torch.zeros(n, dtype=torch.bool)
    own = torch.zeros(n, dtype=torch.bool)       # the pair was set by this image's class (not carried over)
    state: tuple[int, int, int, int] | None = None
    for i in range(n):                           # the framework's loop over the test set, in order
        yi = int(y[i])
        if yi not in per_class:
            per_class[yi] = class_pair_rule(agreement, yi)
        pair = per_class[yi]
        if pair is not None:
            state = (pair[0], pair[1], int(agreement[yi, pair[0]]), int(agreement[yi, pair[1]]))
            own[i] = True
        if state is None:
            continue
        c1[i], c2[i], p1[i], p2[i] = state
        known[i] = True
    full = il.full
    rows = torch.arange(n)
    keep1, keep2 = full & ~p1, full & ~p2                      # keep masks with P1 / P2 removed
    orig = il.original.float()
    rm1, rm2 = il.subsets[rows, keep1].float(), il.subsets[rows, keep2].float()   # [N, C]
    g = lambda t, c: t.gather(1, c[:, None])[:, 0]              # noqa: E731
    d11, d12 = g(rm1, c1) - g(orig, c1), g(rm2, c1) - g(orig, c1)
    d22, d21 = g(rm2, c2) - g(orig, c2), g(rm1, c2) - g(orig, c2)
    cond = (d11 < d12) & (d22 < d21)
    ok = known & cond
    has_structural = torch.tensor([per_class[int(v)] is not None for v in y.tolist()], dtype=torch.bool) \
        if n else torch.zeros(0, dtype=torch.bool)
    choice = PairChoice(c1=torch.where(known, c1, y), c2=torch.where(known, c2, y), p1=p1, p2=p2, ok=ok,
                        no_pair=~has_structural, failed=known & ~cond)
    return choice, int((~known).sum())


def _as64(t: torch.Tensor) -> torch.Tensor:
    return t.float().double()


def reference_irrelevant(orig: torch.Tensor, removed: torch.Tensor, fraction: float) -> torch.Tensor:
    """bool: |logit - logit(removed)| < |fraction * logit| or the removal raises the logit (behaviour 4)."""
    o, r = _as64(orig), _as64(removed)
    return ((o - r).abs() < (o * fraction).abs()) | (o < r)


def reference_relevant_background(orig: torch.Tensor, removed: torch.Tensor, fraction: float) -> torch.Tensor:
    """bool: |drop| >= |fraction * logit| and the removal lowers the logit (the framework's BI rule)."""
    o, r = _as64(orig), _as64(removed)
    return ((o - r).abs() >= (o * fraction).abs()) & (o > r)


def sequential_mean(values: torch.Tensor, use: torch.Tensor | None = None) -> torch.Tensor:
    """float64 [T]: sum over the images (dim 0) in test order, one after the other, divided by their count,
    as the framework's ``sum(list) / len(list)`` (nan where no image is used)."""
    v = values.double().numpy()
    if use is not None:
        v = v[use.numpy()]
    if v.shape[0] == 0:
        return torch.full(values.shape[1:], float("nan"), dtype=torch.float64)
    return torch.from_numpy(np.cumsum(v, axis=0)[-1] / v.shape[0])


def reference_distractibility_curve(important: torch.Tensor, irrelevant: torch.Tensor) -> tuple[torch.Tensor, int]:
    """(D per threshold [T], images used): 1 - sum / (images + 1e-8) over images with an irrelevant unit."""
    n_irr = irrelevant.sum(dim=1)
    use = n_irr > 0
    n = int(use.sum())
    hit = (important & irrelevant[:, None, :]).sum(dim=2).to(torch.float64)          # [N, T]
    frac = hit / n_irr.clamp_min(1)[:, None]
    v = frac[use].numpy()
    total = np.cumsum(v, axis=0)[-1] if n else np.zeros(important.shape[1])
    return torch.from_numpy(1.0 - total / (n + D_EPS)), n


def reference_threshold(csdc: torch.Tensor, pc: torch.Tensor, dc: torch.Tensor, d: torch.Tensor) -> int | None:
    """Index of the framework's threshold (behaviour 6), or None where it finds none or cannot compute it."""
    best, index = 0.0, None
    for t in range(len(csdc)):
        score = float(csdc[t]) / 3.0 + float(pc[t]) / 3.0 + float(dc[t]) / 3.0 + float(d[t])
        if score != score:    # nan: a component the framework cannot compute (it stops with an error)
            return None
        if score > best:
            best, index = score, t
    return index


__all__ = ["D_EPS", "check_class_order", "reference_mss", "class_pair_rule", "reference_pairs",
           "reference_irrelevant", "reference_relevant_background", "sequential_mean",
           "reference_distractibility_curve", "reference_threshold"]
