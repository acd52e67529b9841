"""FunnyBirds loader (SPEC 1.2): a hand-made official layout, and synthbirds' export read back."""
from __future__ import annotations

import json

import numpy as np
import pytest

from fixtures_funnybirds import (PART_MAP_PIXELS, PARTS, SIZE, all_subsets, image_colour, intervention_colour,
                                 make_funnybirds)
from xbench.data.funnybirds import FunnyBirds
from xbench.errors import DataError


@pytest.fixture(scope="module")
def fb(tmp_path_factory):
    root = tmp_path_factory.mktemp("fbroot")
    make_funnybirds(root)
    return root


def test_registered_with_annotations():
    from xbench.registry import DATASETS

    e = DATASETS.get("funnybirds")
    assert e.obj is FunnyBirds and e.spec.folder == "FunnyBirds"
    assert {"part_map", "interventions", "class_parts", "object_mask"} <= e.spec.annotations


def test_labels_images_alpha_dropped(fb):
    ds = FunnyBirds(fb)
    assert ds.num_classes == 3 and ds.part_names == tuple(PARTS)
    tr, te = ds.split("train"), ds.split("test")
    assert tr.labels.tolist() == [0, 1, 2] and te.labels.tolist() == [0, 2]
    img = np.asarray(tr.image(0))                   # alpha 128 in the file: dropped, not composited
    assert img.shape == (SIZE, SIZE, 3) and (img == image_colour("train", 0)).all()
    assert tr.item_id(2) == "funnybirds/train/2/000002"
    assert ds.check(deep=True, show=False) == []


def test_part_map_decoding_by_hand(fb):
    sp = FunnyBirds(fb).split("test")
    pm, mask = sp.part_map(0), sp.object_mask(0)
    assert pm.shape == (SIZE, SIZE)
    for (r, c), (_, want) in PART_MAP_PIXELS.items():
        assert pm[r, c] == want, (r, c)
    assert (pm[4:] == 0).all()                                   # black background
    bird = {(r, c) for (r, c), (_, i) in PART_MAP_PIXELS.items() if 1 <= i <= 5} | {(2, 1)}   # parts + body
    assert {tuple(p) for p in np.argwhere(mask)} == bird


def test_present_parts_targets_objects(fb):
    tr = FunnyBirds(fb).split("train")
    assert tr.present_parts(0) == frozenset(PARTS)
    assert tr.present_parts(1) == frozenset(PARTS) - {"wing"}
    assert tr.present_parts(2) == frozenset({"beak", "foot", "tail"})
    # class 1 without its wing: only class 1 has beak 1 + eye 0; class 2 without eye/wing: classes 1 and 2 agree
    assert tr.targets(1).tolist() == [False, True, False]
    assert tr.targets(2).tolist() == [False, True, True]
    assert [tr.num_objects(i) for i in range(3)] == [2, 0, 1]


def test_minimal_sufficient_sets_by_hand(fb):
    ds = FunnyBirds(fb)
    assert ds.class_parts.tolist() == [[0, 0, 0, 0, 0], [1, 0, 0, 0, 0], [1, 1, 0, 0, 1]]
    assert ds.minimal_sufficient_sets(0) == [frozenset({"beak"})]
    assert set(ds.minimal_sufficient_sets(1)) == {frozenset({"beak", "eye"}), frozenset({"beak", "wing"})}
    assert set(ds.minimal_sufficient_sets(2)) == {frozenset({"eye"}), frozenset({"wing"})}


def test_interventions_read_the_prerendered_files(fb):
    sp = FunnyBirds(fb).split("test")
    for i in range(2):
        for keep in all_subsets():
            m = sum(1 << PARTS.index(p) for p in keep)
            assert (np.asarray(sp.intervention(i, keep)) == intervention_colour(i, m)).all(), (i, keep)
    assert (np.asarray(sp.intervention(0, PARTS, {0})) == (0, 200, 10)).all()
    assert sp.has_intervention(frozenset({"beak"}), frozenset())
    assert sp.has_intervention(frozenset(PARTS), frozenset({0}))
    assert not sp.has_intervention(frozenset({"beak"}), frozenset({0}))
    with pytest.raises(DataError, match="no pre-rendered intervention"):
        sp.intervention(0, {"beak"}, {0})
    with pytest.raises(DataError, match="cannot remove object 1"):
        sp.intervention(0, PARTS, {1})
    tr = FunnyBirds(fb).split("train")
    assert not tr.has_intervention(frozenset(PARTS), frozenset())
    with pytest.raises(DataError):
        tr.intervention(0, PARTS)


def test_intervention_view_covers_all_subsets_and_objects(fb):
    from xbench.views.interventions import InterventionView

    idx = InterventionView().index(FunnyBirds(fb).split("test"))
    assert len(idx.base) == 2 * 32 + 1 + 0
    assert (idx.meta["removed_object"] >= 0).sum() == 1


def test_check_names_missing_and_inconsistent_files(tmp_path):
    base = make_funnybirds(tmp_path)
    (base / "test_interventions" / "2" / "000001" / "body_beak_eye.png").unlink()
    (base / "train_part_map" / "1" / "000001.png").unlink()
    recs = json.loads((base / "dataset_train.json").read_text())
    recs[0]["tail_color"] = "green"
    recs.append(dict(recs[1], class_idx=7))
    (base / "dataset_train.json").write_text(json.dumps(recs))
    problems = FunnyBirds(tmp_path).check(show=False)
    assert f"{base / 'test_interventions/2/000001/body_beak_eye.png'}: intervention of test record 1 is missing" in problems
    assert f"{base / 'train_part_map/1/000001.png'}: part map of record 1 is missing" in problems
    assert any(p.startswith(f"{base / 'dataset_train.json'}: record 0: tail fields") for p in problems)
    assert f"{base / 'dataset_train.json'}: record 3: class id 7 out of range 0..2" in problems
    with pytest.raises(DataError):
        FunnyBirds(tmp_path).split("train")


def test_missing_data(tmp_path):
    with pytest.raises(DataError, match=f"{tmp_path / 'FunnyBirds'}.*xbench data fetch funnybirds --data-root"):
        FunnyBirds(tmp_path)


def test_reads_synthbirds_export_identically(tmp_path):
    """Round trip: export a tiny synthbirds, load it as funnybirds, compare with synthbirds' own answers."""
    from xbench.data.synthbirds import SynthBirds, export_funnybirds

    sb = SynthBirds(num_classes=3, train_per_class=2, test_per_class=1, max_distractors=2, seed=3)
    export_funnybirds(sb, tmp_path / "FunnyBirds", progress=False)
    fb = FunnyBirds(tmp_path)
    ref = sb.with_options(resolution=256)                  # the export is rendered at 256 px
    assert fb.check(deep=True, show=False) == []
    assert (fb.class_parts == sb.class_parts).all()
    for c in range(3):
        assert fb.minimal_sufficient_sets(c) == sb.minimal_sufficient_sets(c)
    for s in ("train", "test"):
        a, b = fb.split(s), ref.split(s)
        assert (a.labels == b.labels).all()
        for i in range(len(a)):
            assert np.array_equal(np.asarray(a.image(i)), np.asarray(b.image(i)))
            assert np.array_equal(a.part_map(i), b.part_map(i))
            assert np.array_equal(a.object_mask(i), b.object_mask(i))
            assert a.present_parts(i) == b.present_parts(i) and a.num_objects(i) == b.num_objects(i)
            assert np.array_equal(a.targets(i), b.targets(i))
    a, b = fb.split("test"), ref.split("test")
    assert sum(a.num_objects(i) for i in range(len(a))) > 0        # background interventions are exercised
    for i in range(len(a)):
        for keep in all_subsets():
            assert np.array_equal(np.asarray(a.intervention(i, keep)), np.asarray(b.intervention(i, keep))), keep
        for n in range(a.num_objects(i)):
            assert np.array_equal(np.asarray(a.intervention(i, PARTS, {n})), np.asarray(b.intervention(i, PARTS, {n})))
