"""Contrastivity of FunnyBirds: target sensitivity (TS, SPEC 5.2).

For test image n of class y, a pair (c1, c2) from `classes.ts_pairs` (each
shares exactly two slots with y, P1 = shared(y, c1) and P2 = shared(y, c2)
disjoint) is *valid for the image* iff

    logit_c1(P1 removed) < logit_c1(P2 removed)   and   logit_c2(P2 removed) < logit_c2(P1 removed),

i.e. removing P1 lowers logit c1 more than removing P2 does (both drops are
taken from the same unchanged image, so comparing the logits after removal is
the same), and vice versa; strict inequalities. The pairs are scanned in index
order (c1 ascending, then c2 ascending) and the first valid one is used.
Choice (`pairs="image"`, the default): validity includes the image's logit
condition, so an image is kept whenever any pair qualifies; FunnyBirds'
reference code instead fixes the first structurally valid pair of the class
and drops the image if that pair fails the condition (`pairs="class"`). An
image without a valid pair is skipped; the counts of images whose class has
no structural pair and of images whose pairs all fail are reported.

Score per kept image, two 0/1 outcomes: 1 if importance(P1) under the map for
c1 > importance(P1) under the map for c2, and 1 if importance(P2) under c2's
map > importance(P2) under c1's map; importance of a set = the sum of its
parts' importances (raw, unnormalised, strict comparisons). TS = the mean over
all outcomes.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from .classes import ClassStructure
from .importance import bits_to_bool
from .interventions import InterventionLogits

PAIR_MODES = ("image", "class")


@dataclass
class PairChoice:
    c1: torch.Tensor          # long [N] (the true class where no pair)
    c2: torch.Tensor          # long [N]
    p1: torch.Tensor          # long [N]: bitmask shared(y, c1)
    p2: torch.Tensor          # long [N]
    ok: torch.Tensor          # bool [N]: the image is scored
    no_pair: torch.Tensor     # bool [N]: the class has no structural pair
    failed: torch.Tensor      # bool [N]: it has pairs, but none valid for the image


def select_pairs(il: InterventionLogits, cs: ClassStructure, mode: str = "image") -> PairChoice:
    """The (c1, c2) of every test image (module docstring), vectorised over images and pairs."""
    if mode not in PAIR_MODES:
        raise ValueError(f"pairs must be one of {PAIR_MODES}")
    y = il.labels
    n = len(y)
    pairs, valid = cs.pairs[y], cs.pair_valid[y]                         # [N, K, 2], [N, K]
    a, b = pairs[..., 0], pairs[..., 1]
    sa = cs.agreement[y[:, None], a]                                    # [N, K]
    sb = cs.agreement[y[:, None], b]
    rm_a, rm_b = il.full & ~sa, il.full & ~sb                           # keep masks: P1 / P2 removed
    rows = torch.arange(n)[:, None]
    a_wo_a, a_wo_b = il.subsets[rows, rm_a, a], il.subsets[rows, rm_b, a]
    b_wo_b, b_wo_a = il.subsets[rows, rm_b, b], il.subsets[rows, rm_a, b]
    cond = valid & (a_wo_a < a_wo_b) & (b_wo_b < b_wo_a)
    has = valid.any(dim=1)
    if mode == "image":
        first = torch.argmax(cond.to(torch.int8), dim=1)                # first True (0 if none)
        ok = cond.any(dim=1)
    else:
        first = torch.zeros(n, dtype=torch.long)                        # the class's first structural pair
        ok = has & cond[torch.arange(n), first]
    pick = lambda t: t.gather(1, first[:, None])[:, 0]                  # noqa: E731
    c1 = torch.where(ok, pick(a), y)
    c2 = torch.where(ok, pick(b), y)
    p1 = torch.where(ok, pick(sa), torch.zeros_like(y))
    p2 = torch.where(ok, pick(sb), torch.zeros_like(y))
    return PairChoice(c1=c1, c2=c2, p1=p1, p2=p2, ok=ok, no_pair=~has, failed=has & ~ok)


def target_sensitivity(imp_c1: torch.Tensor, imp_c2: torch.Tensor, choice: PairChoice,
                       num_parts: int) -> tuple[float, int]:
    """(TS, images scored) from part importances [N, >=P] under the maps for c1 and c2."""
    m1 = bits_to_bool(choice.p1, num_parts).to(torch.float64)
    m2 = bits_to_bool(choice.p2, num_parts).to(torch.float64)
    i1, i2 = imp_c1[:, :num_parts].to(torch.float64), imp_c2[:, :num_parts].to(torch.float64)
    out1 = (i1 * m1).sum(dim=1) > (i2 * m1).sum(dim=1)
    out2 = (i2 * m2).sum(dim=1) > (i1 * m2).sum(dim=1)
    ok = choice.ok
    n = int(ok.sum())
    if n == 0:
        return float("nan"), 0
    return float(torch.cat([out1[ok], out2[ok]]).to(torch.float64).mean()), n


__all__ = ["PAIR_MODES", "PairChoice", "select_pairs", "target_sensitivity"]
