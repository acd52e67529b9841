"""synthbirds (SPEC 1.1): classes, sufficient part sets, determinism, exact interventions, train split."""
from __future__ import annotations

import itertools
import pickle

import numpy as np
import pytest

from xbench.errors import ConfigError, DataError
from xbench.registry import DATASETS
from xbench.data.synthbirds import SynthBirds
from xbench.data.synthbirds.classes import MAX_CLASSES, agreement_masks, draw_classes, minimal_sufficient_sets
from xbench.data.synthbirds.export import parts_json
from xbench.data.synthbirds.scene import draw_scene

PARTS = ("beak", "eye", "foot", "tail", "wing")
P = len(PARTS)


@pytest.fixture(scope="module")
def ds() -> SynthBirds:
    return SynthBirds(num_classes=12, train_per_class=20, test_per_class=5, resolution=80, max_distractors=5)


# classes -------------------------------------------------------------------------------------
def test_variant_counts_and_parts_json():
    pj = parts_json()
    assert list(pj) == list(PARTS)
    assert [len(pj[p]) for p in PARTS] == [4, 3, 4, 9, 6]
    # tail: 3 shapes x 3 colours, wing: 2 shapes x 3 colours, all entries distinct
    for slot, shapes in (("tail", 3), ("wing", 2)):
        pairs = {(v["model"], v["color"]) for v in pj[slot]}
        assert len(pairs) == len(pj[slot])
        assert len({m for m, _ in pairs}) == shapes and len({c for _, c in pairs}) == 3
    for slot in PARTS:
        assert len({json_key(v) for v in pj[slot]}) == len(pj[slot])


def json_key(v: dict) -> tuple:
    return tuple(sorted(v.items()))


def test_class_draw_distinct_and_deterministic():
    a = draw_classes(50, 0)
    assert a.shape == (50, P)
    assert len({tuple(r) for r in a}) == 50
    assert (a >= 0).all() and (a < np.array([4, 3, 4, 9, 6])).all()
    np.testing.assert_array_equal(a, draw_classes(50, 0))
    np.testing.assert_array_equal(a, SynthBirds().class_parts)
    assert not np.array_equal(a, draw_classes(50, 1))
    assert MAX_CLASSES == 4 * 3 * 4 * 9 * 6
    full = draw_classes(MAX_CLASSES, 0)
    assert len({tuple(r) for r in full}) == MAX_CLASSES


def brute_force_minimal_sets(class_parts: np.ndarray, c: int) -> set[frozenset[str]]:
    def sufficient(subset: tuple[int, ...]) -> bool:
        for other in range(len(class_parts)):
            if other != c and all(class_parts[other, p] == class_parts[c, p] for p in subset):
                return False
        return True

    subsets = [s for r in range(P + 1) for s in itertools.combinations(range(P), r)]
    suff = {s for s in subsets if sufficient(s)}
    minimal = set()
    for s in suff:
        proper = [t for r in range(len(s)) for t in itertools.combinations(s, r)]
        if not any(t in suff for t in proper):
            minimal.add(frozenset(PARTS[p] for p in s))
    return minimal


@pytest.mark.parametrize("num_classes,class_seed", [(50, 0), (50, 7), (400, 3), (2, 1)])
def test_minimal_sufficient_sets_match_brute_force(num_classes, class_seed):
    cp = draw_classes(num_classes, class_seed)
    agree = agreement_masks(cp)
    for c in range(min(num_classes, 60)):
        got = minimal_sufficient_sets(agree[c], c)
        assert len(got) == len(set(got))
        assert set(got) == brute_force_minimal_sets(cp, c), c
        assert got, "every class needs at least one sufficient set"
        assert [len(s) for s in got] == sorted(len(s) for s in got)


def test_minimal_sufficient_sets_adversarial_table():
    # a hand-made table where classes share many parts (the random draw rarely does)
    rng = np.random.default_rng(5)
    rows = {tuple(int(x) for x in rng.integers(0, 2, P)) for _ in range(40)}
    cp = np.array(sorted(rows))
    agree = agreement_masks(cp)
    for c in range(len(cp)):
        assert set(minimal_sufficient_sets(agree[c], c)) == brute_force_minimal_sets(cp, c)


def test_dataset_class_api(ds):
    assert ds.part_names == PARTS and ds.keypoint_names == PARTS
    for c in range(ds.num_classes):
        sets = ds.minimal_sufficient_sets(c)
        assert sets and all(s <= set(PARTS) for s in sets)
        # the full part set of every class is unique
        same = (ds.class_parts == ds.class_parts[c]).all(axis=1)
        assert same.sum() == 1
    with pytest.raises(ConfigError):
        ds.minimal_sufficient_sets(ds.num_classes)


# options, registry -----------------------------------------------------------------------------
@pytest.mark.parametrize("opts,word", [
    ({"num_classes": MAX_CLASSES + 1}, "num_classes"),
    ({"num_classes": 0}, "num_classes"),
    ({"resolution": 16}, "resolution"),
    ({"max_distractors": 51}, "max_distractors"),
    ({"train_removal_fraction": 1.5}, "train_removal_fraction"),
    ({"seed": -1}, "seed"),
    ({"test_per_class": 2.5}, "test_per_class"),
])
def test_bad_options(opts, word):
    with pytest.raises(ConfigError, match=word) as err:
        SynthBirds(**opts)
    assert "\n" not in str(err.value)


def test_registry_and_fingerprint(ds):
    entry = DATASETS.get("synthbirds")
    assert entry.obj is SynthBirds and entry.spec.builtin
    assert {"part_map", "keypoints", "interventions", "class_parts", "multi_target", "object_mask"} <= entry.spec.annotations
    fp = ds.fingerprint()
    assert fp["name"] == "synthbirds" and fp["options"]["resolution"] == 80 and fp["options"]["class_seed"] == 0
    assert SynthBirds(seed=1).fingerprint() != SynthBirds(seed=0).fingerprint()
    tr, te = ds.split("train"), ds.split("test")
    assert len(tr) == 12 * 20 and len(te) == 12 * 5
    np.testing.assert_array_equal(tr.labels, np.arange(len(tr)) // 20)
    with pytest.raises(ConfigError):
        ds.split("val")
    with pytest.raises(IndexError):
        te.image(len(te))
    assert pickle.loads(pickle.dumps(tr)).render(3).image.tobytes() == tr.render(3).image.tobytes()


# determinism -----------------------------------------------------------------------------------
def test_determinism(ds):
    other = SynthBirds(num_classes=12, train_per_class=20, test_per_class=5, resolution=80, max_distractors=5)
    for split, i in (("train", 0), ("train", 77), ("test", 31)):
        a, b = ds.split(split).render(i), ds.split(split).render(i)
        c = other.split(split).render(i)
        for x in (b, c):
            assert a.image.tobytes() == x.image.tobytes()
            assert a.part_map.tobytes() == x.part_map.tobytes()
            np.testing.assert_array_equal(a.keypoints, x.keypoints)
        assert np.asarray(ds.split(split).image(i)).tobytes() == a.image.tobytes()
    te = ds.split("test")
    assert te.render(0).image.tobytes() != te.render(1).image.tobytes()
    assert ds.split("train").render(0).image.tobytes() != te.render(0).image.tobytes()
    assert SynthBirds(seed=3, resolution=80).split("test").render(0).image.tobytes() != \
        SynthBirds(seed=4, resolution=80).split("test").render(0).image.tobytes()


def test_resolution_is_a_rendering_choice():
    # scenes are resolution independent: same pose, just more pixels
    a = SynthBirds(resolution=64).split("test")
    b = SynthBirds(resolution=256).split("test")
    ka, kb = a.keypoints(5), b.keypoints(5)
    np.testing.assert_allclose(ka[:, :2] * 4, kb[:, :2], atol=3)
    assert a.render(5).image.shape == (64, 64, 3) and b.render(5).image.shape == (256, 256, 3)


# interventions ------------------------------------------------------------------------------------
def test_interventions_are_exact(ds):
    rng = np.random.default_rng(0)
    changed_some = 0
    for trial in range(200):
        split = ds.split("train" if trial % 2 else "test")
        i = int(rng.integers(len(split)))
        orig = split.render(i)
        keep = [p for p in PARTS if rng.random() < 0.5]
        n = split.num_objects(i)
        removed_obj = [j for j in range(n) if rng.random() < 0.5]
        inter = split.render(i, keep, removed_obj)
        present = split.present_parts(i)
        removed_ids = [PARTS.index(p) + 1 for p in present if p not in keep] + [P + 1 + j for j in removed_obj]
        hit = np.isin(orig.part_map, removed_ids)
        # pixels not showing a removed thing are byte-identical, labels included
        np.testing.assert_array_equal(inter.image[~hit], orig.image[~hit])
        np.testing.assert_array_equal(inter.part_map[~hit], orig.part_map[~hit])
        # removed ids are gone from the intervened map
        assert not np.isin(inter.part_map, removed_ids).any()
        # and every visible removed thing changed the labels where it showed
        assert (inter.part_map[hit] != orig.part_map[hit]).all()
        changed_some += bool(hit.any())
        # the PIL intervention is the same image
        assert np.asarray(split.intervention(i, keep, removed_obj)).tobytes() == inter.image.tobytes()
        # removing nothing gives the original
        assert np.asarray(split.intervention(i, PARTS, ())).tobytes() == orig.image.tobytes()
    assert changed_some > 150


def test_interventions_batch_matches_single(ds):
    te = ds.split("test")
    i = next(k for k in range(len(te)) if te.num_objects(k) >= 2)
    reqs = [(frozenset(PARTS), frozenset()), (frozenset({"beak"}), frozenset({1})), (frozenset(), frozenset({0, 1}))]
    batch = te.interventions(i, reqs)
    for (k, r), img in zip(reqs, batch):
        assert np.asarray(img).tobytes() == np.asarray(te.intervention(i, k, r)).tobytes()
    with pytest.raises(ConfigError, match="wingz"):
        te.intervention(i, ["wingz"])
    with pytest.raises(DataError):
        te.intervention(i, PARTS, [te.num_objects(i)])


def test_interventions_change_the_image(ds):
    te = ds.split("test")
    orig = te.render(0)
    for p in PARTS:
        inter = te.render(0, [q for q in PARTS if q != p])
        assert (inter.image != orig.image).any(), p


# train split ------------------------------------------------------------------------------------
def test_train_removal_fraction_and_subsets():
    n, removed = 2000, []
    for i in range(n):
        sc = draw_scene(0, "train", i, 0, max_distractors=4, removal_fraction=0.5)
        removed.append(sc.removed_mask)
        assert sc.removed_mask != (1 << P) - 1  # at least one part visible
        assert draw_scene(0, "test", i, 0, max_distractors=4, removal_fraction=0.5).removed_mask == 0
    frac = np.mean([m != 0 for m in removed])
    assert abs(frac - 0.5) < 0.05
    # every non-empty strict subset size occurs
    assert {bin(m).count("1") for m in removed if m} == {1, 2, 3, 4}
    assert all(draw_scene(0, "train", i, 0, max_distractors=4, removal_fraction=0.0).removed_mask == 0
               for i in range(50))
    assert all(draw_scene(0, "train", i, 0, max_distractors=4, removal_fraction=1.0).removed_mask != 0
               for i in range(50))
    # the removal fraction changes nothing else about the scene
    a = draw_scene(0, "train", 3, 0, max_distractors=4, removal_fraction=0.0)
    b = draw_scene(0, "train", 3, 0, max_distractors=4, removal_fraction=1.0)
    assert (a.angle, a.cx, a.distractors) == (b.angle, b.cx, b.distractors)


def test_multi_targets_match_brute_force(ds):
    tr, te = ds.split("train"), ds.split("test")
    cp = ds.class_parts
    partial = 0
    for i in range(len(tr)):
        c = int(tr.labels[i])
        vis = [PARTS.index(p) for p in tr.present_parts(i)]
        expect = np.array([all(cp[o, p] == cp[c, p] for p in vis) for o in range(ds.num_classes)])
        np.testing.assert_array_equal(tr.targets(i), expect)
        assert tr.targets(i)[c]
        partial += len(vis) < P
    assert 0.35 < partial / len(tr) < 0.65
    for i in range(0, len(te), 7):
        assert te.present_parts(i) == frozenset(PARTS)
        t = te.targets(i)
        assert t.sum() == 1 and t[te.labels[i]]


def test_train_images_lack_their_removed_parts(ds):
    tr = ds.split("train")
    checked = 0
    for i in range(60):
        absent = set(PARTS) - tr.present_parts(i)
        if not absent:
            continue
        r = tr.render(i)
        assert not np.isin(r.part_map, [PARTS.index(p) + 1 for p in absent]).any()
        for p in absent:
            assert r.keypoints[PARTS.index(p), 2] == 0
        # asking to keep an absent part cannot bring it back
        assert tr.render(i, PARTS).image.tobytes() == r.image.tobytes()
        checked += 1
    assert checked > 10


# keypoints and masks ---------------------------------------------------------------------------------
def test_keypoints_and_fg_mask(ds):
    for split in ("train", "test"):
        s = ds.split(split)
        for i in range(0, len(s), 9):
            r = s.render(i)
            res = r.image.shape[0]
            kp = r.keypoints
            assert kp.shape == (P, 3) and kp.dtype == np.float32
            for p, name in enumerate(PARTS):
                x, y, vis = kp[p]
                pix = r.part_map == p + 1
                assert vis == float(name in s.present_parts(i) and pix.any())
                if not vis:
                    continue
                assert 0 <= x <= res - 1 and 0 <= y <= res - 1
                if name == "foot":  # two feet: the keypoint is their midpoint, inside their extent
                    ys, xs = np.nonzero(pix)
                    assert xs.min() - 1 <= x <= xs.max() + 1 and ys.min() - 1 <= y <= ys.max() + 1
                else:
                    yy, xx = int(round(float(y))), int(round(float(x)))
                    assert pix[max(yy - 1, 0):yy + 2, max(xx - 1, 0):xx + 2].any(), (split, i, name)
            # fg mask = body (bird without parts and objects) united with visible part pixels
            body = s.render(i, [], range(s.num_objects(i))).fg_mask
            parts = (r.part_map >= 1) & (r.part_map <= P)
            np.testing.assert_array_equal(r.fg_mask, body | parts)
            assert not (r.fg_mask & (r.part_map > P)).any()
            np.testing.assert_array_equal(s.object_mask(i), r.fg_mask)


def test_keypoints_on_part_pixels_at_256():
    te = SynthBirds(num_classes=50, test_per_class=2, resolution=256).split("test")
    for i in range(len(te)):
        r = te.render(i)
        for p, name in enumerate(PARTS):
            if name == "foot":
                continue
            x, y, vis = r.keypoints[p]
            assert vis == 1
            assert r.part_map[int(round(float(y))), int(round(float(x)))] == p + 1, (i, name)


def test_part_map_ids_and_objects(ds):
    te = ds.split("test")
    seen = set()
    for i in range(len(te)):
        m = te.part_map(i)
        n = te.num_objects(i)
        ids = set(np.unique(m).tolist())
        assert ids <= set(range(P + 1 + n))
        assert set(range(1, P + 1)) <= ids  # test birds show all five parts
        seen |= ids
    assert max(seen) > P  # some distractors are visible
