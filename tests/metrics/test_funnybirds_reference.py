"""The reference FunnyBirds protocol, quirk by quirk, on hand-built cases computed by hand.

Each test states the FunnyBirds framework's behaviour in words (evaluation_protocols.py,
explainers/explainer_wrapper.py, datasets/funny_birds.py of visinf/funnybirds-framework), builds the
smallest case where that behaviour changes the number, and checks the value worked out in the comments.
The end-to-end agreement of the vectorised suite with the per-image statement of both protocols is in
test_funnybirds_suite.py.
"""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from xbench.data.synthbirds.classes import agreement_masks
from xbench.errors import ConfigError
from xbench.metrics.funnybirds.background import background_independence
from xbench.metrics.funnybirds.classes import ClassStructure, ts_pairs
from xbench.metrics.funnybirds.contrastivity import select_pairs, target_sensitivity
from xbench.metrics.funnybirds.interventions import InterventionLogits, lowers_target
from xbench.metrics.funnybirds.masks import build_unit_cells
from xbench.metrics.funnybirds.per_image import framework_sufficient_sets
from xbench.metrics.funnybirds.reference import (class_pair_rule, reference_distractibility_curve,
                                                 reference_irrelevant, reference_pairs,
                                                 reference_relevant_background, reference_threshold)
from xbench.metrics.funnybirds.suite import parse_suite_options

P, FULL = 5, 31


# 1. the last class of classes.json gets no minimal sufficient set ---------------------------------
def test_framework_scan_gives_the_last_class_no_sufficient_set():
    """Three classes over two slots. Class 0 = (0, 0), class 1 = (0, 1), class 2 = (1, 1).
    By the definition: class 0's sets are {slot 1} (no other class has variant 0 there); class 1's are
    {0, 1} only; class 2's {slot 0}. The framework records a set only when its scan over the classes
    reaches the last class without a hit; for class 2 the last class is itself and is passed over, so
    class 2 gets nothing, while 0 and 1 get their sets."""
    cp = np.array([[0, 0], [0, 1], [1, 1]])
    assert framework_sufficient_sets(cp, 0) == [frozenset({1})]
    assert framework_sufficient_sets(cp, 1) == [frozenset({0, 1})]
    assert framework_sufficient_sets(cp, 2) == []


# 2. two-colour parts are dilated per colour and the sums added ------------------------------------
class _Split:
    """One 12 x 12 test image: eye colour 1 at (5, 4), eye colour 2 at (5, 6), nothing else."""

    labels = np.array([0])

    def __init__(self):
        self.colours = np.zeros((12, 12), np.int32)
        self.colours[5, 4], self.colours[5, 6] = 2, 3          # colour units: 1 beak, 2 / 3 the two eyes, ...

    def __len__(self):
        return 1

    def num_objects(self, i):
        return 0

    def part_map_indexed(self, i):                              # one id per slot: both eye pixels are slot 2
        return np.where(self.colours > 0, 2, 0), None

    def part_colour_map_indexed(self, i):
        return self.colours, None


class _Dataset:
    part_names = ("beak", "eye", "foot", "tail", "wing")
    part_colour_slots = (0, 1, 1, 2, 2, 3, 4, 4)               # the FunnyBirds code: eyes, feet, wings twice

    def split(self, name):
        return _Split()


def test_two_colour_part_overlap_counts_twice():
    """Each eye pixel's 5 x 5 dilation covers 25 pixels; the pixels are 2 apart, so the two squares
    share 5 rows x 3 columns = 15 pixels. One mask for the slot (xbench): 25 + 25 - 15 = 35 pixels;
    the framework dilates each colour and adds: 25 + 25 = 50. With a uniform map of 1 per pixel these
    counts are the eye's importance."""
    ds = _Dataset()
    one = build_unit_cells(ds, "test", (2, 2), workers=0)
    per_colour = build_unit_cells(ds, "test", (2, 2), workers=0, colours=True)
    assert one.weights[0, 1].sum().item() == 35
    assert per_colour.weights[0, 1].sum().item() == 50
    assert torch.equal(one.weights[0, [0, 2, 3, 4]], per_colour.weights[0, [0, 2, 3, 4]])   # all zero
    assert torch.equal(one.pixels, per_colour.pixels)          # the whole map's sum is unchanged


# 3. target sensitivity: the class's first pair, the loop's leftover variables ---------------------
# Slots 0..4. Classes (variants per slot):
#   0 A = 0 0 0 0 0     1 B = 0 0 1 1 1     2 C = 1 1 1 0 0     3 D = 2 2 2 2 2     4 F = 0 0 5 5 5
# Classes sharing exactly two slots (candidates), in index order:
#   A: B {0,1}, C {3,4}, F {0,1}  -> first disjoint pair (B, C), P1 = {0,1} = 3, P2 = {3,4} = 24
#   B: A {0,1}, F {0,1}           -> no disjoint pair: the last pair scanned, (A, F), P1 = P2 = {0,1}
#   C: A {3,4}                    -> fewer than two candidates: the loop variables keep their values
#   D: none                       -> likewise
CLASSES = np.array([[0, 0, 0, 0, 0], [0, 0, 1, 1, 1], [1, 1, 1, 0, 0], [2, 2, 2, 2, 2], [0, 0, 5, 5, 5]])
#: evidence per class and slot: B lives on slots 0, 1 and C on slots 3, 4
W = torch.tensor([[1., 1, 1, 1, 1], [1, 1, 0, 0, 0], [0, 0, 0, 1, 1], [0, 0, 0, 0, 0], [0, 0, 0, 0, 0]])


def _logits(labels: list[int]) -> InterventionLogits:
    """logit_c(image, keep) = sum over kept slots p of W[c, p] (the same for every image)."""
    keep = torch.arange(FULL + 1)
    bits = ((keep[:, None] >> torch.arange(P)) & 1).float()     # [32, P]
    sub = (bits @ W.T)[None].repeat(len(labels), 1, 1)          # [N, 32, C]
    return InterventionLogits(original=sub[:, FULL].clone(), subsets=sub, objects=torch.zeros(len(labels), 0, 5),
                              object_valid=torch.zeros(len(labels), 0, dtype=torch.bool),
                              labels=torch.tensor(labels), num_parts=P)


def _structure() -> ClassStructure:
    """xbench's class structure of CLASSES (structural pairs per class in scan order; no sets needed)."""
    agree = agreement_masks(CLASSES)
    pairs = [ts_pairs(agree, k) for k in range(5)]
    k_max = max(max(len(p) for p in pairs), 1)
    pt = torch.zeros(5, k_max, 2, dtype=torch.long)
    pv = torch.zeros(5, k_max, dtype=torch.bool)
    for k, p in enumerate(pairs):
        pt[k, :len(p)] = torch.from_numpy(p)
        pv[k, :len(p)] = True
    return ClassStructure(agreement=torch.from_numpy(agree), mss=torch.zeros(5, 1, dtype=torch.long),
                          mss_valid=torch.zeros(5, 1, dtype=torch.bool), pairs=pt, pair_valid=pv)


def test_class_pair_rule_by_hand():
    agree = agreement_masks(CLASSES)
    assert class_pair_rule(agree, 0) == (1, 2)
    assert class_pair_rule(agree, 1) == (0, 4)
    assert class_pair_rule(agree, 2) is None and class_pair_rule(agree, 3) is None


def test_reference_pairs_carry_the_previous_image_state():
    """Test images in order: D, A, C, B, D.
    image 0 (D): no pair has been set yet: the framework stops with an error; skipped, counted undefined.
    image 1 (A): (B, C) with P1 = {0,1}, P2 = {3,4}. Removing P1 drops logit B by 2 and removing P2 by 0
                 (-2 < 0), and logit C drops by 2 when P2 goes, 0 when P1 goes: the condition holds.
    image 2 (C): no pair of its own: reuses image 1's (B, C, {0,1}, {3,4}): the condition holds again.
    image 3 (B): (A, F), P1 = P2 = {0,1}: the two drops are equal, so the strict condition fails.
    image 4 (D): reuses image 3's pair and fails the same way."""
    il = _logits([3, 0, 2, 1, 3])
    choice, undefined = reference_pairs(il, agreement_masks(CLASSES))
    assert undefined == 1
    assert choice.ok.tolist() == [False, True, True, False, False]
    assert choice.c1.tolist()[1:] == [1, 1, 0, 0] and choice.c2.tolist()[1:] == [2, 2, 4, 4]
    assert choice.p1.tolist()[1:] == [3, 3, 3, 3] and choice.p2.tolist()[1:] == [24, 24, 3, 3]
    assert choice.failed.tolist() == [False, False, False, True, True]
    # xbench's default: only image 1 (A) has a pair of its own that passes
    cs = _structure()
    assert select_pairs(il, cs).ok.tolist() == [False, True, False, False, False]
    # TS: maps put B's evidence on slots 0, 1 and C's on 3, 4 for image 1 (both outcomes 1) but the other
    # way round for image 2 (both 0): the framework scores 2 of 4 outcomes, xbench 2 of 2
    imp_b = torch.tensor([[1., 1, 0, 0, 0]] * 5)
    imp_c = torch.tensor([[0., 0, 0, 1, 1]] * 5)
    imp_b[2], imp_c[2] = imp_c[2].clone(), imp_b[2].clone()
    assert target_sensitivity(imp_b, imp_c, choice, P) == (0.5, 2)
    assert target_sensitivity(imp_b, imp_c, select_pairs(il, cs), P) == (1.0, 1)


def test_reference_pairs_condition_is_on_float32_drops():
    """Image of class A with pair (B, C). Logit B is 1e8 on the image, 1.0 with P1 removed and
    1.00000012 (the next float32 after 1) with P2 removed. Compared directly, 1.0 < 1.00000012: the
    condition for B holds (xbench). The framework compares the drops in float32: 1.0 - 1e8 and
    1.00000012 - 1e8 both round to -1e8, equal, so the strict condition fails and the image is skipped."""
    il = _logits([0])
    sub = il.subsets.clone()
    sub[0, FULL, 1] = 1e8
    sub[0, FULL & ~3, 1] = 1.0
    sub[0, FULL & ~24, 1] = float(np.nextafter(np.float32(1.0), np.float32(2.0)))
    il = InterventionLogits(original=sub[:, FULL].clone(), subsets=sub, objects=il.objects,
                            object_valid=il.object_valid, labels=il.labels, num_parts=P)
    choice, _ = reference_pairs(il, agreement_masks(CLASSES))
    assert not bool(choice.ok[0]) and bool(choice.failed[0])
    assert bool(select_pairs(il, _structure()).ok[0])


# 4. distractibility and background independence ----------------------------------------------------
def test_irrelevance_rule():
    """Irrelevant for the framework: |logit - logit(removed)| < |0.05 logit|, or the removal raises the
    logit. xbench's default: not (drop > 0 and drop >= 0.05 |logit|). They differ only where the logit is 0
    and the removal leaves it 0: 0 < 0 and 0 < 0 are both false, so the framework calls that unit
    *relevant*; xbench calls a removal that takes nothing away irrelevant. Elsewhere they agree:
    logit 10, removed 9.8 (drop 0.2 < 0.5): irrelevant; removed 9 (drop 1): relevant; removed 11: irrelevant;
    logit -10, removed -10.4 (drop 0.4 < 0.5): irrelevant."""
    orig = torch.tensor([0.0, 10.0, 10.0, 10.0, -10.0], dtype=torch.float64)
    removed = torch.tensor([0.0, 9.8, 9.0, 11.0, -10.4], dtype=torch.float64)
    assert reference_irrelevant(orig, removed, 0.05).tolist() == [False, True, False, True, True]
    assert (~lowers_target(orig, removed, 0.05)).tolist() == [True, True, False, True, True]


def test_distractibility_is_one_without_irrelevant_units_and_keeps_the_guard():
    """Images with no irrelevant unit are skipped and D = 1 - sum / (images + 1e-8).
    - no image has one: 1 - 0 / 1e-8 = 1 (xbench: undefined);
    - one image, 1 of 2 irrelevant units important: 1 - 0.5 / (1 + 1e-8) = 0.500000005."""
    imp = torch.tensor([[[True, True]]])                      # [N=1, T=1, U=2]
    d, n = reference_distractibility_curve(imp, torch.tensor([[False, False]]))
    assert (d.tolist(), n) == ([1.0], 0)
    d, n = reference_distractibility_curve(torch.tensor([[[True, False]]]), torch.tensor([[True, True]]))
    assert n == 1 and d.item() == 1 - 0.5 / (1 + 1e-8) and d.item() != 0.5


def test_background_rule_matches_the_framework():
    """The framework's BI counts an object as relevant when |drop| >= |0.05 logit| and the removal lowers
    the logit: the same set as xbench's rule (drop > 0 and drop >= 0.05 |logit|), computed in float64.
    Logit 10 with the object removed: 9.5 (drop 0.5) relevant, 9.6 not, 10 not, 12 not; logit 0, removed
    -1: relevant (drop 1 >= 0); logit 0, removed 0: not. One image with the first four: BI = 1 - 1 / 4."""
    orig = torch.tensor([[10.0, 10.0, 10.0, 10.0, 0.0, 0.0]])
    rem = torch.tensor([[9.5, 9.6, 10.0, 12.0, -1.0, 0.0]])
    assert reference_relevant_background(orig, rem, 0.05).tolist() == [[True, False, False, False, True, False]]
    assert torch.equal(reference_relevant_background(orig, rem, 0.05), lowers_target(orig, rem, 0.05))
    il = InterventionLogits(original=torch.tensor([[10.0]]), subsets=torch.zeros(1, 32, 1),
                            objects=torch.tensor([[[9.5], [9.6], [10.0], [12.0]]]),
                            object_valid=torch.ones(1, 4, dtype=torch.bool), labels=torch.tensor([0]), num_parts=P)
    assert background_independence(il, 0.05, reference_relevant_background).value == pytest.approx(0.75)


# 6. the threshold ------------------------------------------------------------------------------------
def test_threshold_is_the_first_strict_running_maximum_above_zero():
    """score(t) = CSDC/3 + PC/3 + DC/3 + D; the framework keeps t when score > the best so far (from 0).
    Scores 0.0, 0.9, 0.9, 0.5: index 1 (the later equal score does not replace it). All scores 0:
    no threshold (the framework stops with a KeyError); a nan component: no threshold either."""
    z = torch.zeros(4, dtype=torch.float64)
    assert reference_threshold(z, z, z, torch.tensor([0.0, 0.9, 0.9, 0.5], dtype=torch.float64)) == 1
    assert reference_threshold(z, z, z, z) is None
    nan = torch.full((4,), math.nan, dtype=torch.float64)
    assert reference_threshold(nan, z, z, torch.ones(4, dtype=torch.float64)) is None


def test_protocol_option_is_validated():
    assert parse_suite_options({"protocol": "reference"}).protocol == "reference"
    assert parse_suite_options({}).protocol == "xbench"
    with pytest.raises(ConfigError, match="protocol"):
        parse_suite_options({"protocol": "official"})
    with pytest.raises(ConfigError, match="pairs"):
        parse_suite_options({"protocol": "reference", "pairs": "image"})
