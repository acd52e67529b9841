"""Concept-space metrics of the QPM family (SPEC 5.5), on cases computed by hand."""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from xbench.cache import TokenStore
from xbench.evaluation import EvalContext
from xbench.explanation import Explanation
from xbench.registry import METRICS
from xbench.specs import DatasetSpec, MethodSpec
from xbench.metrics.concept_space import (
    class_independence_value,
    class_shares,
    global_size,
    gmm_overlaps,
    local_sizes,
    normal_overlap,
    sid_at_k,
)

NAMES = ("contrastiveness", "sid@5", "class_independence", "local_size", "global_size")


# ------------------------------------------------------------------- contrastiveness


def test_normal_overlap_closed_form():
    # equal variances: OVL = 2 Phi(-|m1 - m2| / (2 s)); d = 1 -> 2 Phi(-0.5) = 0.617075...
    phi = 0.5 * (1 + math.erf(-0.5 / math.sqrt(2)))
    assert normal_overlap(0, 1, 1, 1) == pytest.approx(2 * phi)
    assert normal_overlap(3, 2, 3, 2) == pytest.approx(1.0)
    assert normal_overlap(0, 1, 50, 1) == pytest.approx(0.0, abs=1e-12)


def test_gmm_overlap_separated_identical_constant_and_seeded():
    rng = np.random.default_rng(0)
    separated = np.concatenate([rng.normal(0, 1, 400), rng.normal(20, 1, 400)])
    unimodal = rng.normal(5, 2, 800)
    constant = np.full(800, 3.0)
    x = np.stack([separated, unimodal, constant], axis=1)
    ovl = gmm_overlaps(x, seed=0)
    assert ovl[0] < 1e-6                  # two well-separated modes: contrastiveness of the concept ~ 1
    assert 0.25 < ovl[1] <= 1.0           # one mode split in two: heavy overlap, contrastiveness ~ 0.6 or less
    assert ovl[2] == 1.0                  # constant: the components coincide
    assert np.array_equal(ovl, gmm_overlaps(x, seed=0))
    # an affine change of a concept leaves its overlap unchanged (scores are standardised before the fit)
    assert gmm_overlaps(x[:, :2] * 1e-4 + 7, seed=0) == pytest.approx(ovl[:2], abs=1e-6)


# --------------------------------------------------------------------------- SID@5


def test_sid_at_5_by_hand():
    # 1x2 grid. A map m is divided by mean|m| and soft-maxed over its 2 pixels:
    #   [1, 0] -> [2, 0] -> [p, 1 - p], p = e^2 / (e^2 + 1);  [0, 1] -> [1 - p, p]
    #   [1, 1], [2, 2] -> [1, 1] -> [1/2, 1/2];   [0, 0] -> [0, 0] (floor 1e-5) -> [1/2, 1/2]
    #   [5, 0] -> [2, 0] -> [p, 1 - p]
    maps = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0], [0.0, 0.0], [2.0, 2.0], [5.0, 0.0]])
    maps = maps.reshape(1, 6, 1, 2).repeat(2, 1, 1, 1)
    W = torch.tensor([[1.0, 1.0, 1.0, 1.0, 1.0, 0.0],      # class 0: top 5 = concepts 0..4
                      [0.0, 0.0, 3.0, 2.0, 1.0, 0.0],      # class 1: only 3 non-zero weights
                      [5.0, 4.0, 3.0, 2.0, 1.0, -1.0]])    # class 2: top 5 by signed weight = 0..4
    p = math.exp(2) / (math.exp(2) + 1)
    v, ok = sid_at_k(maps, W, torch.tensor([0, 1]))
    # class 0: per-pixel max over concepts 0..4 = [p, p] -> 2p / 5
    assert v[0].item() == pytest.approx(2 * p / 5)
    assert ok.tolist() == [True, False]
    # a class using concepts 1..5 (concept 0 has weight 0)
    W2 = torch.tensor([[0.0, 1.0, 1.0, 1.0, 1.0, 1.0]])
    v2, ok2 = sid_at_k(maps[:1], W2, torch.tensor([0]))
    # concepts 1..5: pixel 0 max(1-p, 1/2, 1/2, 1/2, p) = p; pixel 1 max(p, 1/2, 1/2, 1/2, 1-p) = p
    assert v2.item() == pytest.approx(2 * p / 5) and ok2.item()
    W3 = torch.tensor([[0.0, 0.0, 1.0, 1.0, 1.0, 1.0]])
    _, ok3 = sid_at_k(maps[:1], W3, torch.tensor([0]))
    assert not ok3.item()                  # only 4 concepts used
    v4, _ = sid_at_k(maps[:1], torch.tensor([[0.0, 0.0, 1.0, 1.0, 1.0, 0.0]]), torch.tensor([0]), k=3)
    assert v4.item() == pytest.approx(1 / 3)  # three flat maps: max 1/2 per pixel, 1/3 after / k


# -------------------------------------------------------------- class-independence


def test_class_independence_by_hand():
    labels = torch.tensor([0, 0, 1, 1])
    scores = torch.tensor([[1.0, 5.0, 2.0],
                           [2.0, 5.0, 1.0],
                           [3.0, 5.0, 2.0],
                           [4.0, 5.0, 1.0]])
    # concept 0: shifted [0, 1, 2, 3], total 6: class 0 -> 1/6, class 1 -> 5/6
    # concept 1: constant -> left out
    # concept 2: shifted [1, 0, 1, 0], total 2: 1/2, 1/2
    share, constant = class_shares(scores, labels, 2)
    assert share[:, 0].tolist() == pytest.approx([1 / 6, 5 / 6])
    assert share[:, 2].tolist() == pytest.approx([0.5, 0.5])
    assert constant.tolist() == [False, True, False]
    value, n_const = class_independence_value(scores, labels, 2)
    assert value == pytest.approx(1 - (5 / 6 + 1 / 2) / 2) and n_const == 1
    # a concept active for one class only is fully class-dependent
    value, _ = class_independence_value(torch.tensor([[0.0], [0.0], [1.0], [3.0]]), labels, 2)
    assert value == pytest.approx(0.0)


# ------------------------------------------------------------------- compactness


def test_local_and_global_size_by_hand():
    W = torch.tensor([[1.0, 2.0, 0.0, -1.0],
                      [0.0, 0.0, 0.0, 3.0]])
    scores = torch.tensor([[1.0, 0.04, 5.0, 0.05],     # class 0: |1|, |0.08|, 0, |-0.05| -> rel 1, .08, 0, .05 -> 1
                           [1.0, 0.1, 1.0, -0.2],      # class 0: 1, .2, 0, .2 -> 3
                           [7.0, 7.0, 7.0, 0.0]])      # class 1: all 0 -> 0
    preds = torch.tensor([0, 0, 1])
    assert local_sizes(scores, W, preds).tolist() == [1, 3, 0]
    assert global_size(W) == 3                       # column 2 is unused


# ---------------------------------------------------------------- through the metrics


class _Split:
    def __init__(self, labels):
        self._labels = np.asarray(labels)

    def __len__(self) -> int:
        return len(self._labels)

    @property
    def labels(self) -> np.ndarray:
        return self._labels


class _Dataset:
    spec = DatasetSpec(name="toy", description="")

    def __init__(self, train_labels, test_labels, C):
        self._splits = {"train": _Split(train_labels), "test": _Split(test_labels)}
        self.num_classes = C

    def split(self, name):
        return self._splits[name]


class _Extractor:
    def __init__(self, sizes: dict[str, int]):
        self.sizes = sizes

    def store(self, dataset, split, view):
        n = self.sizes[split]
        z = np.full((n, 1, 1, 1), 1.0 if split == "train" else 0.0, np.float16)  # the toy model reads the split
        return TokenStore(Path("."), {"split": split}, {"patch": z, "cls": z[:, 0, 0], "reg": z[:, 0, :0]},
                          np.arange(n), {})


class _ConceptModel:
    spec = MethodSpec.build("toy-concepts", object, provides={"concepts", "attribution"})

    def __init__(self, data: dict[str, tuple[torch.Tensor, torch.Tensor]], W: torch.Tensor):
        self.data, self.W = data, W
        self.explained = 0

    def explain(self, batch) -> Explanation:
        split = "train" if batch.tokens.patch[0, 0, 0, 0] == 1 else "test"
        maps, scores = self.data[split]
        idx = torch.as_tensor(batch.index)
        self.explained += len(idx)
        return Explanation(logits=scores[idx] @ self.W.T, concept_maps=maps[idx], concept_scores=scores[idx],
                           class_weights=self.W)


def test_metrics_through_the_context_match_the_definitions():
    rng = np.random.default_rng(0)
    C, K, g = 3, 6, 2
    W = torch.zeros(C, K)
    W[0, :5] = 1.0
    W[1, 1:] = 1.0
    W[2, [0, 2, 4]] = 1.0                                  # concept used by every class; none unused
    tr_labels = np.repeat(np.arange(C), 20)
    tr_scores = torch.as_tensor(rng.normal(size=(60, K)), dtype=torch.float32)
    tr_scores[:, 0] += torch.as_tensor(tr_labels * 10.0)    # concept 0: three separated modes
    te_maps = torch.as_tensor(rng.random((9, K, g, g)), dtype=torch.float32)
    te_scores = te_maps.mean(dim=(2, 3))
    model = _ConceptModel({"train": (torch.zeros(60, K, g, g), tr_scores), "test": (te_maps, te_scores)}, W)
    ctx = EvalContext(model, _Dataset(tr_labels, np.arange(9) % C, C), _Extractor({"train": 60, "test": 9}),
                      seed=3, batch_size=4, show_progress=False)

    out = {n: METRICS.get(n).obj(ctx) for n in NAMES}
    preds = (te_scores @ W.T).argmax(dim=1)
    assert out["contrastiveness"].value == pytest.approx(1 - gmm_overlaps(tr_scores, seed=3).mean())
    sid, ok = sid_at_k(te_maps, W, preds)
    assert out["sid@5"].value == pytest.approx(sid[ok].mean().item())
    assert out["sid@5"].extras["skipped"] == int((~ok).sum())
    ci, _ = class_independence_value(tr_scores, torch.as_tensor(tr_labels), C)
    assert out["class_independence"].value == pytest.approx(ci)
    assert out["local_size"].value == pytest.approx(local_sizes(te_scores, W, preds).double().mean().item())
    assert out["global_size"].value == 6.0
    # one pass per split, shared by the metrics
    assert model.explained == 60 + 9


def test_specs_and_not_applicable_without_concepts():
    plain = MethodSpec.build("p", object, provides={"attribution"})
    concepts = MethodSpec.build("c", object, provides={"concepts"})
    ds = DatasetSpec(name="cars", description="", annotations=frozenset({"boxes"}))
    want = {"contrastiveness": ("higher", "concepts"), "sid@5": ("higher", "concepts"),
            "class_independence": ("higher", "concepts"), "local_size": ("lower", "compactness"),
            "global_size": ("lower", "compactness")}
    for name, (direction, category) in want.items():
        spec = METRICS.get(name).spec
        assert (spec.direction, spec.category) == (direction, category)
        assert spec.applicable(plain, ds) == "method provides no concepts"
        assert spec.applicable(concepts, ds) is None
