"""Plausibility with dilated masks (SPEC 5.3), on cases computed by hand."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from xbench.cache import TokenStore
from xbench.evaluation import EvalContext
from xbench.explanation import Explanation
from xbench.registry import METRICS
from xbench.specs import DatasetSpec, MethodSpec
from xbench.metrics.plausibility import dilate, grid_masks, mask_to_grid, plausibility_scores


# --------------------------------------------------------------------- pieces


def test_mask_to_grid_samples_patch_centres():
    m = np.zeros((8, 8), dtype=bool)
    m[:4, :4] = True                       # top-left quadrant
    assert mask_to_grid(m, 2).tolist() == [[True, False], [False, False]]
    # cell centres of a 2x2 grid over 8 px sit between pixels 1|2 and 5|6: a mask on row 0 only is missed
    thin = np.zeros((8, 8), dtype=bool)
    thin[0, :] = True
    assert not mask_to_grid(thin, 2).any()
    # ...and one touching a centre's neighbourhood is kept
    thin[2, 5] = True
    assert mask_to_grid(thin, 2).tolist() == [[False, True], [False, False]]
    # identity size is the mask itself
    rnd = np.random.default_rng(0).random((5, 5)) > 0.5
    assert mask_to_grid(rnd, 5).numpy().tolist() == rnd.tolist()


def test_dilate_once_with_3x3_square():
    m = torch.zeros(2, 5, 5, dtype=torch.bool)
    m[0, 2, 2] = True
    m[1, 0, 0] = True
    d = dilate(m)
    want0 = torch.zeros(5, 5, dtype=torch.bool)
    want0[1:4, 1:4] = True
    want1 = torch.zeros(5, 5, dtype=torch.bool)
    want1[:2, :2] = True
    assert torch.equal(d[0], want0) and torch.equal(d[1], want1)


def test_scores_by_hand():
    G = torch.tensor([[[1.0, 2.0], [3.0, 4.0]],
                      [[1.0, 2.0], [3.0, 4.0]],
                      [[7.0, 7.0], [7.0, 7.0]]])
    masks = torch.tensor([[[False, True], [False, False]],
                          [[True, False], [False, True]],
                          [[True, False], [False, False]]])
    # G - min = [[0, 1], [2, 3]], sum 6: image 0 -> 1/6, image 1 -> (0 + 3)/6; image 2 constant -> 0, flagged
    s, zero = plausibility_scores(G, masks)
    assert s.tolist() == pytest.approx([1 / 6, 0.5, 0.0])
    assert zero.tolist() == [False, False, True]
    # negative attributions are shifted, not clipped: [-2, 0; 0, 0] -> [0, 2; 2, 2], sum 6
    s, _ = plausibility_scores(torch.tensor([[[-2.0, 0.0], [0.0, 0.0]]]), torch.tensor([[[True, True], [False, False]]]))
    assert s.item() == pytest.approx(2 / 6)


# ----------------------------------------------------------- through the metric


class _Split:
    def __init__(self, masks: list[np.ndarray], labels: list[int]):
        self.masks = masks
        self._labels = np.asarray(labels)
        self.calls = 0

    def __len__(self) -> int:
        return len(self.masks)

    @property
    def labels(self) -> np.ndarray:
        return self._labels

    def object_mask(self, i: int) -> np.ndarray:
        self.calls += 1
        return self.masks[i]


class _Dataset:
    spec = DatasetSpec(name="toy", description="", annotations=frozenset({"object_mask"}))
    num_classes = 2

    def __init__(self, split: _Split):
        self._split = split

    def split(self, name: str) -> _Split:
        return self._split


class _Extractor:
    def __init__(self, n: int, g: int):
        z = np.zeros((n, g, g, 1), np.float16)
        self._store = TokenStore(Path("."), {}, {"patch": z, "cls": z[:, 0, 0], "reg": np.zeros((n, 0, 1), np.float16)},
                                 np.arange(n), {})

    def store(self, dataset, split, view):
        return self._store


class _MapModel:
    """Attribution of class c = maps[:, c]; logits fixed per image."""

    spec = MethodSpec.build("toy-maps", object, provides={"attribution"})

    def __init__(self, maps: torch.Tensor, logits: torch.Tensor):
        self.maps, self._logits = maps, logits

    def explain(self, batch) -> Explanation:
        idx = torch.as_tensor(batch.index)
        maps, logits = self.maps[idx], self._logits[idx]
        return Explanation(logits=logits, attribution_fn=lambda t: maps[torch.arange(len(t)), t])

    def logits(self, batch) -> torch.Tensor:
        return self._logits[torch.as_tensor(batch.index)]


def test_metric_on_toy_images_by_hand():
    # 3 images, 8x8 px masks, grid g = 4 (2x2 px cells, centres between pixels 2k and 2k+1).
    m0 = np.zeros((8, 8), bool)
    m0[0:2, 0:2] = True      # cell (0, 0) -> dilated: cells (0..1, 0..1)
    m1 = np.zeros((8, 8), bool)
    m1[6:8, 6:8] = True      # cell (3, 3) -> dilated: cells (2..3, 2..3)
    m2 = np.zeros((8, 8), bool)  # no object: skipped
    split = _Split([m0, m1, m2], [0, 1, 0])
    g = 4
    maps = torch.zeros(3, 2, g, g)
    maps[0, 0, 0, 0] = 3.0   # predicted class 0: all mass at (0,0), inside -> 1
    maps[0, 1, 3, 3] = 9.0   # class 1 (not predicted) would score 0
    maps[1, 1] = 1.0         # predicted class 1: constant 1 except one cell
    maps[1, 1, 0, 0] = 0.0   # G - min: 15 ones outside (0, 0); 4 of them in the dilated mask -> 4/15
    logits = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0]])
    ctx = EvalContext(_MapModel(maps, logits), _Dataset(split), _Extractor(3, g), batch_size=2, show_progress=False)
    out = METRICS.get("plausibility").obj(ctx)
    assert out.value == pytest.approx((1.0 + 4 / 15) / 2)
    assert out.extras["images"] == 2 and out.extras["no_object"] == 1 and out.extras["zero_maps"] == 0
    # masks are built once per job
    calls = split.calls
    METRICS.get("plausibility").obj(ctx)
    assert split.calls == calls == 3
    assert torch.equal(grid_masks(split, g)[0, :2, :2], torch.ones(2, 2, dtype=torch.bool))


def test_not_applicable_without_masks_or_attribution():
    spec = METRICS.get("plausibility").spec
    with_attr = MethodSpec.build("a", object, provides={"attribution"})
    cars = DatasetSpec(name="cars", description="", annotations=frozenset({"boxes"}))
    birds = DatasetSpec(name="birds", description="", annotations=frozenset({"object_mask"}))
    assert spec.applicable(with_attr, cars) == "dataset has no object_mask"
    assert spec.applicable(with_attr, birds) is None
    assert spec.applicable(MethodSpec.build("b", object), birds) == "method provides no attribution"
    assert spec.direction == "higher" and spec.percent
