"""FunnyBirds suite (SPEC 5.2): the tensor functions on hand-built inputs whose answers are computed by hand."""
from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy import ndimage, stats

from xbench.errors import DataError
from xbench.metrics.funnybirds.background import background_independence
from xbench.metrics.funnybirds.classes import ClassStructure, agreement_masks, ts_pairs
from xbench.metrics.funnybirds.completeness import (choose_threshold, csdc_curve, deletion_curve,
                                                    distractibility_curve, preservation_curve)
from xbench.metrics.funnybirds.contrastivity import select_pairs, target_sensitivity
from xbench.metrics.funnybirds.correctness import average_ranks, single_deletion, spearman
from xbench.metrics.funnybirds.importance import (bits_to_bool, important_units, part_bits, popcount_table,
                                                  thresholds, unit_importance)
from xbench.metrics.funnybirds.interventions import InterventionLogits, lowers_target, scatter_intervention_logits
from xbench.metrics.funnybirds.masks import cell_index, cells_of_maps, dilate

P = 5
FULL = (1 << P) - 1
BEAK, EYE, FOOT, TAIL, WING = (1 << p for p in range(P))


# thresholds and importance -------------------------------------------------------------------
def test_thresholds_are_the_spec_grid():
    t = thresholds()
    assert t.shape == (80,) and t.dtype == torch.float64
    np.testing.assert_allclose(t.numpy(), np.linspace(0.01, 0.5, 80), rtol=0, atol=1e-15)


@pytest.mark.parametrize("res", [128, 100, 37])
def test_cell_counts_equal_explicit_upsample_and_dilation(res):
    """importance via cell counts == sum of the nearest-upsampled map inside the 5x5-dilated mask."""
    g = torch.Generator().manual_seed(res)
    pm = torch.randint(0, 4, (2, res, res), generator=g)
    pm[:, : res // 3] = 0                                          # some background
    maps = torch.randn(2, 16, 16, generator=g)
    w = cells_of_maps(pm.numpy(), np.array([1, 2, 3, 9]), (16, 16)).double()
    pixels = torch.bincount(cell_index(res, res, (16, 16)), minlength=256).double().expand(2, -1)
    imp, total = unit_importance(maps, w, pixels)
    up = F.interpolate(maps[:, None].double(), size=(res, res), mode="nearest")[:, 0].numpy()
    for b in range(2):
        for u, uid in enumerate((1, 2, 3, 9)):
            dil = ndimage.binary_dilation(pm[b].numpy() == uid, structure=np.ones((5, 5)))
            assert imp[b, u].item() == pytest.approx(float((up[b] * dil).sum()), rel=1e-12, abs=1e-9)
        assert total[b].item() == pytest.approx(float(up[b].sum()), rel=1e-12)
    assert (imp[:, 3] == 0).all()                                  # absent id: empty mask


def test_dilation_is_a_5x5_square():
    m = np.zeros((1, 1, 9, 9), dtype=bool)
    m[0, 0, 4, 4] = True
    d = dilate(m)[0, 0]
    assert d.sum() == 25 and d[2:7, 2:7].all()
    m[0, 0, 4, 4], m[0, 0, 0, 0] = False, True                     # at the border: clipped, no wrap
    assert dilate(m)[0, 0].sum() == 9
    rng = np.random.default_rng(0)
    r = rng.random((2, 3, 20, 17)) < 0.05                           # against max_pool2d(5, stride 1, padding 2)
    ref = F.max_pool2d(torch.from_numpy(r).float(), 5, stride=1, padding=2).numpy()
    np.testing.assert_array_equal(dilate(r), ref)


def test_important_units_strict_and_signed():
    imp = torch.tensor([[5.0, 2.0, 0.0, 1.0]], dtype=torch.float64)
    total = torch.tensor([10.0], dtype=torch.float64)
    ts = torch.tensor([0.1, 0.2, 0.5], dtype=torch.float64)
    valid = torch.tensor([[True, True, True, False]])
    got = important_units(imp, total, ts, valid)[0]
    # 5 > 1, 2 > 1, 0 !> 1 ; at 0.2: 5 > 2, 2 !> 2 (strict) ; at 0.5: 5 !> 5 ; padding never
    assert got.tolist() == [[True, True, False, False], [True, False, False, False], [False, False, False, False]]
    neg = important_units(imp, torch.tensor([-10.0], dtype=torch.float64), ts, valid)[0]
    assert neg[:, :3].all() and not neg[:, 3].any()                # negative map sum: literal rule, all above


def test_bit_helpers():
    imp = torch.tensor([[True, False, True, False, True, True]])
    assert part_bits(imp, 5).item() == BEAK | FOOT | WING
    assert popcount_table(5).tolist() == [bin(m).count("1") for m in range(32)]
    assert bits_to_bool(torch.tensor([BEAK | TAIL]), 5).tolist() == [[True, False, False, True, False]]


# the 5 % rule --------------------------------------------------------------------------------
def test_lowers_target_rule():
    o = torch.tensor([10.0, 10.0, 10.0, -10.0, -10.0, 0.0, 0.0, 2.0])
    r = torch.tensor([9.6, 9.5, 11.0, -10.5, -9.0, 0.0, -1.0, 1.95])
    # drop 0.4 < 0.5 no ; 0.5 >= 0.5 yes ; raise no ; -10 -> -10.5 drops 0.5 = 5% of |-10| yes ;
    # raise no ; no change at 0 no ; 0 -> -1 drops 1 yes ; 0.05 >= 0.1 no
    assert lowers_target(o, r).tolist() == [False, True, False, True, False, False, True, False]


# interventions ---------------------------------------------------------------------------------
def _view_rows(n_obj: list[int]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    base, keep, rem = [], [], []
    for i, k in enumerate(n_obj):
        for m in range(32):
            base.append(i), keep.append(m), rem.append(-1)
        for o in range(k):
            base.append(i), keep.append(FULL), rem.append(o)
    return np.array(base), np.array(keep), np.array(rem)


def test_scatter_intervention_logits_roundtrip_and_errors():
    base, keep, rem = _view_rows([2, 0, 1])
    logits = torch.stack([torch.tensor([b * 1000.0 + k, r * 1.0]) for b, k, r in zip(base, keep, rem)])
    il = scatter_intervention_logits(logits, base, keep, rem, torch.zeros(3, 2), torch.tensor([0, 1, 0]), P)
    assert il.subsets.shape == (3, 32, 2) and il.objects.shape == (3, 2, 2)
    assert il.subsets[2, 7, 0] == 2007 and il.subsets[1, 31, 1] == -1
    assert il.object_valid.tolist() == [[True, True], [False, False], [True, False]]
    assert il.objects[0, 1].tolist() == [31.0, 1.0] and il.objects[2, 0].tolist() == [2031.0, 0.0]
    # single-part removals of class 0: keep = FULL without bit p
    assert il.single_part_removed(torch.tensor([0, 0, 0]))[2].tolist() == [2000.0 + (FULL & ~(1 << p)) for p in range(5)]
    with pytest.raises(DataError):
        scatter_intervention_logits(logits[1:], base[1:], keep[1:], rem[1:], torch.zeros(3, 2), torch.zeros(3).long(), P)


# completeness ------------------------------------------------------------------------------------
def test_csdc_by_hand():
    mss = torch.tensor([[BEAK | EYE, TAIL, 0], [WING | FOOT | EYE, 0, 0]])
    valid = torch.tensor([[True, True, False], [True, False, False]])
    bits = torch.tensor([[BEAK, BEAK | TAIL],        # class 0: max(1/2, 0) ; max(1/2, 1)
                         [EYE | FOOT, 0],            # class 1: 2/3 ; 0
                         [FULL, FULL]])              # misclassified: excluded
    labels = torch.tensor([0, 1, 1])
    correct = torch.tensor([True, True, False])
    curve, n = csdc_curve(bits, labels, correct, mss, valid, P)
    assert n == 2
    np.testing.assert_allclose(curve.numpy(), [(0.5 + 2 / 3) / 2, (1.0 + 0.0) / 2])
    nan, n0 = csdc_curve(bits, labels, torch.zeros(3, dtype=torch.bool), mss, valid, P)
    assert n0 == 0 and torch.isnan(nan).all()


def test_preservation_and_deletion_by_hand():
    # image 0's prediction (class 1) survives iff the beak is kept; image 1 always predicts 0
    subset_pred = torch.zeros(2, 32, dtype=torch.long)
    subset_pred[0] = torch.tensor([1 if m & BEAK else 2 for m in range(32)])
    pred = torch.tensor([1, 0])
    bits = torch.tensor([[BEAK | EYE, EYE, 0], [BEAK, FULL, 0]])
    pc = preservation_curve(bits, subset_pred, pred)
    dc = deletion_curve(bits, subset_pred, pred, P)
    # PC: keep {beak,eye} -> 1 ; keep {eye} -> 0 ; keep {} -> 0 ; image 1 always 1
    np.testing.assert_allclose(pc.numpy(), [1.0, 0.5, 0.5])
    # DC: remove {beak,eye} -> changes ; remove {eye} -> same ; remove {} -> same ; image 1 never changes
    np.testing.assert_allclose(dc.numpy(), [0.5, 0.0, 0.0])


def test_distractibility_by_hand():
    important = torch.tensor([[[True, False, True, False], [False, False, False, False]],
                              [[True, True, True, True], [True, True, False, False]],
                              [[True, True, True, True], [True, True, True, True]]])
    irrelevant = torch.tensor([[False, False, True, True], [False, True, True, True], [False, False, False, False]])
    d, n = distractibility_curve(important, irrelevant)
    assert n == 2                                                  # image 2 has no irrelevant unit
    np.testing.assert_allclose(d.numpy(), [1 - (1 / 2 + 3 / 3) / 2, 1 - (0 + 1 / 3) / 2])


def test_threshold_choice_first_max_and_undefined_parts():
    csdc = torch.tensor([1.0, 1.0, 0.5], dtype=torch.float64)
    pc = torch.tensor([1.0, 1.0, 1.0], dtype=torch.float64)
    dc = torch.tensor([0.5, 0.5, 1.0], dtype=torch.float64)
    d = torch.tensor([0.5, 0.5, 0.4], dtype=torch.float64)
    assert choose_threshold(csdc, pc, dc, d) == 0                   # tie between 0 and 1: the first
    nan = torch.full((3,), float("nan"), dtype=torch.float64)
    assert choose_threshold(nan, pc, dc, d) == 2                    # (1+1)/2 + 0.4 beats (1+.5)/2 + .5
    assert choose_threshold(csdc, pc, dc, nan) == 0


# correctness -------------------------------------------------------------------------------------
def test_spearman_by_hand_and_against_scipy():
    x = torch.tensor([[1.0, 2, 3, 4, 5], [1.0, 2, 3, 4, 5], [1.0, 1, 1, 1, 1], [3.0, 1, 2, 2, 5]])
    y = torch.tensor([[5.0, 4, 3, 2, 1], [2.0, 1, 4, 3, 5], [1.0, 2, 3, 4, 5], [1.0, 2, 3, 4, 5]])
    rho, ok = spearman(x, y)
    assert ok.tolist() == [True, True, False, True]
    assert rho[0].item() == pytest.approx(-1.0)
    assert rho[1].item() == pytest.approx(1 - 6 * 4 / (5 * 24))     # sum d^2 = 4 -> 0.8
    assert rho[3].item() == pytest.approx(stats.spearmanr([3, 1, 2, 2, 5], [1, 2, 3, 4, 5])[0])
    g = torch.Generator().manual_seed(0)
    a, b = torch.randint(0, 4, (50, 5), generator=g).double(), torch.randn(50, 5, generator=g).double()
    r, ok = spearman(a, b)
    for i in range(50):
        ref = stats.spearmanr(a[i].numpy(), b[i].numpy())[0]
        assert ok[i].item() == (not np.isnan(ref))
        if ok[i]:
            assert r[i].item() == pytest.approx(ref, abs=1e-12)
    np.testing.assert_allclose(average_ranks(a).numpy(), np.stack([stats.rankdata(v) for v in a.numpy()]))


def test_single_deletion_score():
    imp = torch.tensor([[1.0, 2, 3, 4, 5], [1.0, 2, 3, 4, 5], [0.0, 0, 0, 0, 0]])
    drops = torch.tensor([[5.0, 4, 3, 2, 1], [2.0, 1, 4, 3, 5], [1.0, 2, 3, 4, 5]])
    sd, n, skipped = single_deletion(imp, drops)
    assert (n, skipped) == (2, 1)
    assert sd == pytest.approx(((0.5 * -1 + 0.5) + (0.5 * 0.8 + 0.5)) / 2)


def test_random_explainer_expectations():
    """Importance independent of the model: SD -> 0.5, TS -> 0.5, CSDC -> its exact expectation."""
    g = torch.Generator().manual_seed(1)
    n = 20000
    sd, _, _ = single_deletion(torch.rand(n, 5, generator=g), torch.rand(n, 5, generator=g))
    assert sd == pytest.approx(0.5, abs=0.01)
    # CSDC with each part important independently with probability q; sets {beak,eye} and {tail}
    q = 0.3
    bits = part_bits(torch.rand(n, 1, 5, generator=g) < q, 5)
    mss = torch.tensor([[BEAK | EYE, TAIL]])
    curve, _ = csdc_curve(bits, torch.zeros(n, dtype=torch.long), torch.ones(n, dtype=torch.bool), mss,
                          torch.ones(1, 2, dtype=torch.bool), 5)
    expect = 0.0
    for b, e, t in itertools.product((0, 1), repeat=3):
        pr = np.prod([q if v else 1 - q for v in (b, e, t)])
        expect += pr * max((b + e) / 2, t)
    assert curve.item() == pytest.approx(expect, abs=0.01)


# contrastivity -----------------------------------------------------------------------------------
CLASS_PARTS = np.array([
    [0, 0, 0, 0, 0],    # 0: target
    [0, 0, 1, 1, 1],    # 1: shares beak, eye
    [1, 1, 0, 0, 1],    # 2: shares foot, tail
    [1, 1, 1, 0, 0],    # 3: shares tail, wing
    [0, 1, 1, 1, 0],    # 4: shares beak, wing
    [0, 0, 0, 1, 1],    # 5: shares three
    [2, 2, 2, 2, 2],    # 6: shares none
])


def _brute_force_pairs(cp: np.ndarray, y: int) -> list[tuple[int, int]]:
    shared = lambda c: {p for p in range(cp.shape[1]) if cp[c, p] == cp[y, p]}  # noqa: E731
    cands = [c for c in range(len(cp)) if c != y and len(shared(c)) == 2]
    return [(a, b) for i, a in enumerate(cands) for b in cands[i + 1:] if not shared(a) & shared(b)]


def test_ts_pairs_match_brute_force():
    ag = agreement_masks(CLASS_PARTS)
    assert ts_pairs(ag, 0).tolist() == [[1, 2], [1, 3], [2, 4]] == [list(p) for p in _brute_force_pairs(CLASS_PARTS, 0)]
    rng = np.random.default_rng(0)
    cp = rng.integers(0, 3, size=(40, 5))
    ag = agreement_masks(cp)
    for y in range(40):
        assert [tuple(p) for p in ts_pairs(ag, y).tolist()] == _brute_force_pairs(cp, y)


def _structure(cp: np.ndarray) -> ClassStructure:
    ag = agreement_masks(cp)
    lists = [ts_pairs(ag, y) for y in range(len(cp))]
    k = max(len(x) for x in lists)
    pairs = torch.zeros(len(cp), k, 2, dtype=torch.long)
    valid = torch.zeros(len(cp), k, dtype=torch.bool)
    for y, x in enumerate(lists):
        pairs[y, :len(x)], valid[y, :len(x)] = torch.from_numpy(x), True
    return ClassStructure(torch.from_numpy(ag), torch.zeros(len(cp), 1).long(), torch.zeros(len(cp), 1).bool(),
                          pairs, valid)


def _shared_logit_model(cp: np.ndarray, weights: list[float], labels: list[int]) -> InterventionLogits:
    """logit_c(image of class y, kept parts K) = sum over kept slots p where c and y agree of weights[p]."""
    n, c = len(labels), len(cp)
    subsets = torch.zeros(n, 32, c)
    for i, y in enumerate(labels):
        for m in range(32):
            for k in range(c):
                subsets[i, m, k] = sum(weights[p] for p in range(5) if m >> p & 1 and cp[k, p] == cp[y, p])
    return InterventionLogits(original=subsets[:, FULL].clone(), subsets=subsets, objects=torch.zeros(n, 0, c),
                              object_valid=torch.zeros(n, 0, dtype=torch.bool), labels=torch.tensor(labels),
                              num_parts=5)


def test_select_pairs_first_valid_and_counts():
    cs = _structure(CLASS_PARTS)
    # all weights positive: every structural pair satisfies the logit condition -> the first, (1, 2)
    il = _shared_logit_model(CLASS_PARTS, [1, 1, 1, 1, 1], [0, 6])
    ch = select_pairs(il, cs)
    assert (ch.c1[0].item(), ch.c2[0].item()) == (1, 2)
    assert (ch.p1[0].item(), ch.p2[0].item()) == (BEAK | EYE, FOOT | TAIL)
    assert ch.ok.tolist() == [True, False] and ch.no_pair.tolist() == [False, True] and not ch.failed.any()
    # beak and eye weigh nothing: removing {beak, eye} does not lower logit 1 -> (1, 2), (1, 3) fail; (2, 4) used
    il = _shared_logit_model(CLASS_PARTS, [0, 0, 1, 1, 1], [0])
    ch = select_pairs(il, cs, "image")
    assert (ch.c1.item(), ch.c2.item(), ch.ok.item()) == (2, 4, True)
    ch = select_pairs(il, cs, "class")                              # FunnyBirds' reference: first pair only
    assert (ch.ok.item(), ch.failed.item()) == (False, True)
    # only the beak counts: {beak, wing} of class 4 lowers logit 4, but (2, 4) needs foot/tail for class 2
    il = _shared_logit_model(CLASS_PARTS, [1, 0, 0, 0, 0], [0])
    ch = select_pairs(il, cs)
    assert (ch.ok.item(), ch.failed.item(), ch.no_pair.item()) == (False, True, False)


def test_target_sensitivity_by_hand():
    cs = _structure(CLASS_PARTS)
    il = _shared_logit_model(CLASS_PARTS, [1, 1, 1, 1, 1], [0, 0, 0, 6])
    ch = select_pairs(il, cs)                                       # images 0-2: c1 = 1 (P1 beak+eye), c2 = 2 (foot+tail)
    imp_c1 = torch.tensor([[3.0, 1, 0, 0, 9], [0.0, 0, 2, 2, 0], [1.0, 1, 1, 1, 0], [9.0, 9, 9, 9, 9]])
    imp_c2 = torch.tensor([[1.0, 1, 1, 1, 0], [1.0, 1, 1, 1, 0], [1.0, 1, 1, 1, 0], [0.0, 0, 0, 0, 0]])
    ts, n = target_sensitivity(imp_c1, imp_c2, ch, 5)
    # image 0: P1 under c1 = 4 > 2 under c2 -> 1 ; P2 under c2 = 2 > 0 under c1 -> 1
    # image 1: P1 under c1 = 0 < 2 -> 0 ; P2 under c2 = 2 !> 4 -> 0 ; image 2: ties -> 0, 0 ; image 3 has no pair
    assert n == 3 and ts == pytest.approx(2 / 6)


# background independence ---------------------------------------------------------------------
def test_background_independence_by_hand():
    orig = torch.tensor([[10.0, 0.0], [4.0, 1.0]])
    objects = torch.tensor([[[9.0, 0.0], [10.0, 0.0], [0.0, 0.0]],      # drop 1 >= 0.5 ; none ; (padding)
                            [[0.0, 3.99], [0.0, 0.0], [0.0, 0.0]]])     # class 1: 1 -> 3.99 raises
    il = InterventionLogits(original=orig, subsets=torch.zeros(2, 32, 2), objects=objects,
                            object_valid=torch.tensor([[True, True, False], [True, False, False]]),
                            labels=torch.tensor([0, 1]), num_parts=5)
    r = background_independence(il)
    assert (r.objects, r.relevant) == (3, 1) and r.value == pytest.approx(1 - 1 / 3)


def test_bitmask_cell_counts_equal_the_one_hot_dilation_on_random_maps():
    """The fast path (one bit per unit, OR-dilation, one bincount) counts exactly what dilating each unit's
    one-hot mask counts, including labels that are no unit, units absent from an image, and grids that do
    not divide the image."""
    import numpy as np
    import torch

    from xbench.metrics.funnybirds import masks as M

    rng = np.random.default_rng(0)
    for _ in range(40):
        h, w = (int(v) for v in rng.integers(3, 40, 2))
        grid = (int(rng.integers(1, 6)), int(rng.integers(1, 6)))
        maps = rng.integers(0, 9, (int(rng.integers(1, 4)), h, w))
        ids = np.sort(rng.choice(np.arange(0, 11), int(rng.integers(1, 9)), replace=False))
        fast = M.cells_of_maps(maps, ids, grid)
        ref = M._cells_of_maps_onehot(maps, ids, grid)
        assert torch.equal(fast, ref)
    # the public function takes the fast path for small label sets and the one-hot path otherwise
    maps = rng.integers(0, 20, (2, 12, 12))
    assert torch.equal(M.cells_of_maps(maps, np.arange(1, 15), (3, 3)),
                       M._cells_of_maps_onehot(maps, np.arange(1, 15), (3, 3)))


def test_unit_masks_are_stored_beside_the_cache_and_read_back_by_another_process(tmp_path, monkeypatch):
    """The masks are built once per dataset content: a second process (the memo cleared) reads the file;
    a damaged file is rebuilt, never trusted."""
    import torch

    from xbench.data.synthbirds import SynthBirds
    from xbench.metrics.funnybirds import masks as M

    ds = SynthBirds(num_classes=4, train_per_class=1, test_per_class=3, resolution=64)
    M.clear_shared()
    first = M.unit_cells(ds, "test", (4, 4), cache_root=tmp_path)
    files = list((tmp_path / "annotations").glob("unitcells-*.npz"))
    assert len(files) == 1

    built = []
    real_build = M.build_unit_cells
    monkeypatch.setattr(M, "build_unit_cells", lambda *a, **k: built.append(1) or real_build(*a, **k))
    M.clear_shared()
    again = M.unit_cells(ds, "test", (4, 4), cache_root=tmp_path)
    assert built == []                                   # read from disk, nothing rendered
    for name in ("weights", "pixels", "valid"):
        assert torch.equal(getattr(first, name), getattr(again, name))
    assert again.num_parts == first.num_parts and again.grid == first.grid

    files[0].write_bytes(b"not a zip")                   # damaged: rebuilt and rewritten
    M.clear_shared()
    rebuilt = M.unit_cells(ds, "test", (4, 4), cache_root=tmp_path)
    assert built == [1] and torch.equal(rebuilt.weights, first.weights)
    M.clear_shared()
    M.unit_cells(ds, "test", (4, 4), cache_root=tmp_path)
    assert built == [1]                                  # the rewritten file is good

    other = SynthBirds(num_classes=4, train_per_class=1, test_per_class=2, resolution=64)  # other content
    M.clear_shared()
    M.unit_cells(other, "test", (4, 4), cache_root=tmp_path)
    assert built == [1, 1] and len(list((tmp_path / "annotations").glob("*.npz"))) == 2
    from xbench.cache import FeatureCache

    FeatureCache(tmp_path).clear()                       # `xbench cache clear` drops them too
    assert not (tmp_path / "annotations").exists()


def test_parallel_and_serial_mask_builds_equal_the_one_hot_definition():
    """The forked build (chunks counted by two worker processes) and the in-process build give the same
    counts, and both equal dilating each unit's one-hot mask of `part_map` (the SPEC's max-pool recipe)."""
    import numpy as np
    import torch

    from xbench.data.synthbirds import SynthBirds
    from xbench.metrics.funnybirds import masks as M

    ds = SynthBirds(num_classes=5, train_per_class=1, test_per_class=4, resolution=72)
    sp = ds.split("test")
    for i in range(len(sp)):                      # the palette form is the part map
        index, table = sp.part_map_indexed(i)
        assert index.dtype == np.uint8 and np.array_equal(table[index], sp.part_map(i))
    for grid in ((4, 4), (5, 7)):
        serial = M.build_unit_cells(ds, "test", grid, workers=0)
        forked = M.build_unit_cells(ds, "test", grid, workers=2)
        maps = np.stack([sp.part_map(i) for i in range(len(sp))])
        ref = M._cells_of_maps_onehot(maps, np.arange(1, serial.num_units + 1), grid).double()
        for name in ("weights", "pixels", "valid"):
            assert torch.equal(getattr(serial, name), getattr(forked, name))
        assert torch.equal(serial.weights, ref)
        assert serial.weights.sum() > 0


def test_unit_bits_through_a_palette_equal_unit_bits_of_the_labels():
    import numpy as np

    from xbench.metrics.funnybirds.masks import unit_bits

    rng = np.random.default_rng(1)
    table = rng.integers(0, 12, 40)
    index = rng.integers(0, 40, (9, 11)).astype(np.uint8)
    ids = np.array([1, 3, 4, 11])
    got = unit_bits(index, ids, table)
    want = np.zeros((9, 11), np.uint16)
    for j, u in enumerate(ids):
        want[table[index] == u] |= 1 << j
    assert np.array_equal(got, want) and np.array_equal(unit_bits(table[index], ids), want)
    # labels no small table can index take the comparison path
    assert np.array_equal(unit_bits(table[index].astype(np.int64) - 100, ids - 100), want)


def test_a_bad_part_map_in_a_forked_worker_stops_the_build_with_its_message(monkeypatch):
    import pytest

    from xbench.data.synthbirds import SynthBirds
    from xbench.data.synthbirds.dataset import SynthBirdsSplit
    from xbench.errors import DataError
    from xbench.metrics.funnybirds import masks as M

    real = SynthBirdsSplit.part_map_indexed

    def broken(self, i):
        if i == 5:
            raise DataError("parts/000005.png: truncated PNG; fetch the dataset again")
        return real(self, i)

    monkeypatch.setattr(SynthBirdsSplit, "part_map_indexed", broken)
    ds = SynthBirds(num_classes=4, train_per_class=1, test_per_class=3, resolution=48)
    for workers in (0, 2):
        with pytest.raises(DataError, match="000005.png: truncated"):
            M.build_unit_cells(ds, "test", (4, 4), workers=workers)
