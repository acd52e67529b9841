"""Consistency and stability of concepts (SPEC 5.4), both protocols, with hand-made concept models.

A tiny in-test dataset of flat grey images carries hand-placed keypoints, boxes and
part maps; a tiny in-test backbone gives per-patch pixel statistics (so a model can
tell a noisy copy from the clean one); hand-made concept models place one-hot
concept maps on cells chosen per image, so every hit, ratio and agreement is known.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

import xbench.methods  # noqa: F401
import xbench.metrics  # noqa: F401
from xbench.backbones.base import Backbone
from xbench.cache import FeatureCache
from xbench.data.base import Dataset, Split
from xbench.evaluation import EvalContext, NotApplicable
from xbench.explanation import Explanation, concept_attribution
from xbench.extract import Extractor
from xbench.metrics.concepts_consistency.common import choose_protocol
from xbench.metrics.concepts_consistency.keypoints import (
    KeypointHits, keypoint_consistency, keypoint_stability, map_keypoints, peak_pixels, square_hits, used_concepts)
from xbench.metrics.concepts_consistency.partmasks import (
    PartHits, class_importance, part_consistency, part_stability)
from xbench.registry import DATASETS, METHODS, METRICS
from xbench.specs import DatasetSpec, MethodSpec
from xbench.tokens import Tokens

NATIVE = 112                   # native image side; the 224 input makes 7 native pixels per token cell
BOX = (16, 8, 96, 88)          # crop box (80 x 80): crop frame = (x - x1) * 2.8
KP = ((28, 20), (80, 72))      # keypoints (native): crop frame (33, 33) -> cell (2, 2); (179, 179) -> cell (12, 12)
RECT = ((14, 28), (77, 91))    # part slots 1, 2 as squares [a, b) x [a, b) (native): cells 2..3 and 11..12
N_PER_CLASS = 4


# -- the in-test dataset, backbone and models -------------------------------------------------------
class _BlocksSplit(Split):
    def __init__(self, ds: "Blocks"):
        super().__init__(ds, "test")
        self._labels = np.repeat(np.arange(2), N_PER_CLASS)

    def __len__(self) -> int:
        return len(self._labels)

    @property
    def labels(self) -> np.ndarray:
        return self._labels

    def image(self, i: int) -> Image.Image:
        return Image.new("RGB", (NATIVE, NATIVE), (128, 128, 128))

    def keypoints(self, i: int) -> np.ndarray:
        kp = np.array([[*KP[0], 1.0], [*KP[1], 1.0]], dtype=np.float32)
        kp[1, 2] = float(self.dataset.present[i, 1])          # slot 2 invisible where absent
        return kp

    def boxes(self, i: int) -> np.ndarray:
        return np.array([BOX], dtype=np.float32)

    def part_map(self, i: int) -> np.ndarray:
        pm = np.zeros((NATIVE, NATIVE), dtype=np.int64)
        for p, (a, b) in enumerate(RECT):
            if self.dataset.present[i, p]:
                pm[a:b, a:b] = p + 1
        return pm

    def num_objects(self, i: int) -> int:
        return 0


class Blocks(Dataset):
    """2 classes x 4 flat test images; part slot 2 is absent / invisible on image 4 (class 1's first)."""

    part_names = ("head", "tail")
    keypoint_names = ("head", "tail")

    def __init__(self, annotations: set[str], variant: str):
        super().__init__(None, variant=variant)
        self.spec = DatasetSpec.build("blocks-test", None, description="hand-made blocks", annotations=annotations)
        self.present = np.ones((2 * N_PER_CLASS, 2), dtype=bool)
        self.present[N_PER_CLASS, 1] = False
        self._split = _BlocksSplit(self)

    @property
    def num_classes(self) -> int:
        return 2

    def split(self, name: str) -> Split:
        return self._split


class PatchStats(Backbone):
    """Tokens: per-patch mean of the 3 normalised channels and their mean per-patch std (the noise detector)."""

    def __init__(self):
        super().__init__()
        self.name, self.embed_dim, self.weights_kind = "patch-stats-test", 4, "weight-free"

    def hash_extra(self) -> str:
        return "patch-stats-2"

    def _tokens(self, images, anchor):
        b, g, p = images.shape[0], self.grid, self.patch_size
        x = images.reshape(b, 3, g, p, g, p).permute(0, 2, 4, 1, 3, 5).reshape(b, g, g, 3, p * p)
        patch = torch.cat([x.mean(dim=4), x.std(dim=4).mean(dim=3, keepdim=True)], dim=3)
        return Tokens(patch=patch, cls=patch.mean(dim=(1, 2)), reg=patch.new_zeros(b, 0, 4))


class HandConcepts:
    """Concept k of item i is a one-hot map at cell loc[i, k] (clean) or noisy_loc[i, k] (noisy copy); -1: empty."""

    spec = MethodSpec.build("hand-concepts", None, provides={"attribution", "concepts"}, description="hand-made")

    def __init__(self, loc: np.ndarray, weights: np.ndarray, scores: np.ndarray, noisy_loc: np.ndarray | None = None):
        self.loc = torch.as_tensor(loc, dtype=torch.long)                 # [N, K, 2]
        self.noisy_loc = self.loc if noisy_loc is None else torch.as_tensor(noisy_loc, dtype=torch.long)
        self.w = torch.as_tensor(weights, dtype=torch.float32)           # [C, K]
        self.s = torch.as_tensor(scores, dtype=torch.float32)            # [K]

    def explain(self, batch) -> Explanation:
        idx = torch.as_tensor(batch.index, dtype=torch.long)
        noisy = batch.tokens.patch[..., 3].mean(dim=(1, 2)) > 0.05
        loc = torch.where(noisy[:, None, None], self.noisy_loc[idx], self.loc[idx])      # [B, K, 2]
        b, k, g = len(idx), self.w.shape[1], batch.tokens.grid
        maps = torch.zeros(b, k, g * g)
        ok = loc[..., 0] >= 0
        maps.scatter_(2, (loc[..., 0] * g + loc[..., 1]).clamp_min(0)[..., None], ok[..., None].float())
        maps = maps.view(b, k, g, g)
        scores = self.s.expand(b, k)
        return Explanation(logits=scores @ self.w.T, attribution_fn=concept_attribution(maps, self.w),
                           concept_maps=maps, concept_scores=scores, class_weights=self.w)

    def logits(self, batch) -> torch.Tensor:
        return self.explain(batch).logits


def _ctx(tmp_path, model, annotations: set[str], variant: str) -> EvalContext:
    ds = Blocks(annotations, variant)
    ex = Extractor(PatchStats(), FeatureCache(tmp_path / "cache"), "cpu", batch_size=8, num_workers=0,
                   show_progress=False)
    return EvalContext(model, ds, ex, device="cpu", batch_size=3, show_progress=False)   # batches of 3 across classes


def _metric(name: str, ctx: EvalContext):
    return METRICS.get(name).obj(ctx)


A, B, NONE = (2, 2), (12, 12), (-1, -1)     # crop-frame cells of keypoint 1 and 2 (protocol a)
P1, P2, BG = (3, 3), (12, 12), (7, 7)       # cells inside part slot 1, slot 2, and in the background (protocol b)


# -- protocol (a): keypoints in box crops ---------------------------------------------------------------
def _kp_model(jumping: bool = False) -> HandConcepts:
    """Concepts: 0 steady on keypoint 1; 1 wanders (kp 1 on images 0, 1 of a class, kp 2 on 2, 3); 2 unused;
    3 used by class 1 only, always on keypoint 2 (invisible on class 1's first image)."""
    n, k = 2 * N_PER_CLASS, 4
    loc = np.zeros((n, k, 2), dtype=np.int64)
    for i in range(n):
        j = i % N_PER_CLASS
        loc[i] = [A, A if j < 2 else B, A, B]
    noisy = loc.copy()
    if jumping:
        noisy[:, 1] = np.where(loc[:, 1] == np.array(A), np.array(B), np.array(A))   # concept 1 jumps under noise
    w = np.array([[1.0, 1.0, 0.0, 0.0], [1.0, 1.0, 0.0, 1.0]])
    return HandConcepts(loc, w, np.ones(k), noisy)


def test_protocol_a_consistency_by_hand(tmp_path):
    ctx = _ctx(tmp_path, _kp_model(), {"keypoints", "boxes"}, "a")
    assert choose_protocol(ctx, "consistency") == "keypoints"
    out = _metric("consistency", ctx)
    # pairs: class 0 {c0 consistent, c1 wandering}; class 1 {c0, c1 wandering, c3: 3 hits / 3 visible = 1 >= 0.8}
    assert out.extras["protocol"] == "keypoints" and out.extras["pairs"] == 5
    assert out.value == pytest.approx(3 / 5)


def test_protocol_a_stability(tmp_path):
    ctx = _ctx(tmp_path, _kp_model(), {"keypoints", "boxes"}, "a")
    assert _metric("stability", ctx).value == pytest.approx(1.0)            # maps ignore the noise
    ctx = _ctx(tmp_path, _kp_model(jumping=True), {"keypoints", "boxes"}, "a")
    out = _metric("stability", ctx)
    # concept 1's hit vector changes on every image (also where kp 2 is invisible: [1,0] -> [0,0]); the others never
    assert out.value == pytest.approx(3 / 5)
    assert out.extras["pairs"] == 5


def test_keypoint_mapping_peak_and_square_by_hand():
    f = map_keypoints(np.array([[[28.0, 20.0, 1.0], [200.0, 5.0, 0.0]]]), np.array([BOX], dtype=np.float32), 224)
    assert f.xy[0, 0].tolist() == [33, 33] and f.visible.tolist() == [[True, False]]   # (28-16)*2.8 = 33.6 -> 33
    maps = torch.zeros(1, 2, 16, 16)
    maps[0, 0, 2, 2] = 1.0
    maps[0, 1, 15, 0] = 1.0
    r, c = peak_pixels(maps, 224)
    assert 28 <= int(r[0, 0]) < 42 and 28 <= int(c[0, 0]) < 42                          # inside cell (2, 2)
    # square [r-36, r+36] inclusive, clipped to the image
    xy = torch.tensor([[[10, 10], [46, 46], [47, 46], [0, 223]]])
    vis = torch.tensor([[True, True, True, True]])
    h = square_hits(torch.tensor([[10, 223]]), torch.tensor([[10, 0]]), xy, vis, 224)
    assert h[0, 0].tolist() == [True, True, False, False]
    assert h[0, 1].tolist() == [False, False, False, True]


def test_used_concepts_and_top_k():
    w = torch.tensor([[0.5, 0.0, 2.0, -1.0], [0.0, 0.0, 0.0, 0.0]])
    idx, ok = used_concepts(w)
    assert idx[0, :2].tolist() == [2, 0] and ok.tolist() == [[True, True], [False, False]]
    idx, ok = used_concepts(w, top_k=1)
    assert idx[:, 0].tolist()[0] == 2 and ok.tolist() == [[True], [False]]


def test_keypoint_consistency_threshold_and_zero_visible():
    # one class, 5 images, 2 used concepts, 2 parts; part 2 never visible
    vis = torch.tensor([[True, False]] * 5)
    hits = torch.zeros(5, 2, 2, dtype=torch.bool)
    hits[:4, 0, 0] = True                    # concept 0: 4/5 = 0.8 -> consistent (>= 0.8)
    hits[:3, 1, 0] = True                    # concept 1: 3/5 = 0.6; on part 2: 0 hits / 0 visible := 0
    h = KeypointHits(hits=hits, used_idx=torch.tensor([[0, 1]]), used_ok=torch.tensor([[True, True]]),
                     labels=torch.zeros(5, dtype=torch.long), visible=vis)
    assert keypoint_consistency(h) == (0.5, 1 * 2)
    noisy = hits.clone()
    noisy[0, 1, 1] = True                    # one changed hit vector of concept 1
    n = KeypointHits(hits=noisy, used_idx=h.used_idx, used_ok=h.used_ok, labels=h.labels, visible=vis)
    value, pairs = keypoint_stability(h, n)
    assert pairs == 2 and value == pytest.approx((1.0 + 4 / 5) / 2)


# -- protocol (b): part masks ---------------------------------------------------------------------------
def _part_model(jumping: bool = False) -> HandConcepts:
    """Concepts: 0 steady on slot 1; 1 wanders (slot 1 on images 0, 1 of a class, slot 2 on 2, 3); 2 too
    unimportant (relative importance 0.05 < 0.1); 3 (class 1 only) on slot 2, in the background where slot 2 is absent."""
    n, k = 2 * N_PER_CLASS, 4
    loc = np.zeros((n, k, 2), dtype=np.int64)
    for i in range(n):
        j = i % N_PER_CLASS
        loc[i] = [P1, P1 if j < 2 else P2, P1, P2 if i != N_PER_CLASS else BG]
    noisy = loc.copy()
    if jumping:   # concept 1 goes to slot 2 under noise (hits nothing where slot 2 is absent)
        noisy[:, 1] = np.array(P2)
        noisy[:, 1][loc[:, 1, 0] == P2[0]] = np.array(P1)
    w = np.array([[1.0, 1.0, 1.0, 0.0], [1.0, 1.0, 1.0, 1.0]])
    return HandConcepts(loc, w, np.array([1.0, 0.5, 0.05, 1.0]), noisy)


def test_protocol_b_consistency_by_hand(tmp_path):
    ctx = _ctx(tmp_path, _part_model(), {"part_map", "keypoints"}, "b")      # keypoints but no boxes: protocol b
    assert choose_protocol(ctx, "consistency") == "part_masks"
    out = _metric("consistency", ctx)
    # class 0: c0 (4/4) consistent, c1 (2/4, 2/4) not, c2 never hits, c3 weight 0;
    # class 1: c0 consistent, c1 not, c3 slot 2: 3 hits / 3 presences = 1 > 0.8 consistent
    assert out.extras["protocol"] == "part_masks" and out.extras["pairs"] == 5
    assert out.value == pytest.approx(3 / 5)


def test_protocol_b_stability_by_hand(tmp_path):
    ctx = _ctx(tmp_path, _part_model(), {"part_map"}, "b")
    assert _metric("stability", ctx).value == pytest.approx(1.0)
    ctx = _ctx(tmp_path, _part_model(jumping=True), {"part_map"}, "b")
    out = _metric("stability", ctx)
    # class 0 (4 images): c0 agrees on 2/2 entries, c1 [1,0]<->[0,1] on 0/2       -> 8 of 16
    # class 1 image 4 (slot 2 absent): c0 2/2, c1 [1,0]->[0,0] 1/2, c3 inactive  -> 3 of 4
    # class 1 images 5..7: c0 2/2, c1 0/2, c3 2/2                                   -> 12 of 18
    assert out.value == pytest.approx(23 / 38)
    assert out.extras["entries"] == 38


def test_class_importance_normalisation():
    s = torch.tensor([[2.0, 1.0, 0.1, -1.0]])
    w = torch.tensor([[1.0, 1.0, 1.0, 1.0]])
    y = torch.tensor([0])
    torch.testing.assert_close(class_importance(s, w, y, "max"), torch.tensor([[1.0, 0.5, 0.0, 0.0]]))
    torch.testing.assert_close(class_importance(s, w, y, "sum"), torch.tensor([[2 / 3.1, 1 / 3.1, 0.0, 0.0]]))
    torch.testing.assert_close(class_importance(s, w, y, "none"), torch.tensor([[2.0, 1.0, 0.1, 0.0]]))  # 0.1 is not below 0.1


def test_part_consistency_is_strict_and_stability_counts_active_only():
    hits = torch.zeros(5, 2, 1, dtype=torch.bool)
    hits[:4, 0, 0] = True                    # 4/5 = 0.8: not > 0.8
    h = PartHits(hits=hits, labels=torch.zeros(5, dtype=torch.long), presence=torch.ones(5, 1, dtype=torch.bool))
    assert part_consistency(h, 1) == (0.0, 1)                     # concept 1 never hits: not counted
    noisy = hits.clone()
    noisy[4, 0, 0] = True
    n = PartHits(hits=noisy, labels=h.labels, presence=h.presence)
    assert part_stability(h, n) == (4 / 5, 5)                     # concept 1 inactive in both runs


# -- applicability ----------------------------------------------------------------------------------------
def test_not_applicable_without_concepts_or_annotations(tmp_path):
    for name in ("consistency", "stability"):
        spec = METRICS.get(name).spec
        for method in ("linear-probe", "gradcam"):
            assert "concepts" in spec.applicable(METHODS.get(method).spec, DATASETS.get("synthbirds").spec)
        assert spec.applicable(METHODS.get("linear-probe-patch").spec, DATASETS.get("synthbirds").spec) is None
    ctx = _ctx(tmp_path, _kp_model(), {"keypoints"}, "none")       # keypoints without boxes, no part maps
    with pytest.raises(NotApplicable):
        _metric("consistency", ctx)
