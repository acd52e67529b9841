"""Oxford-IIIT Pet loader (SPEC 1.5) against a tiny fixture in the official layout."""
from __future__ import annotations

import numpy as np
import pytest

from fixtures_pets_cars import make_pets
from xbench.data.pets import Pets
from xbench.errors import DataError


@pytest.fixture(scope="module")
def pets(tmp_path_factory):
    root = tmp_path_factory.mktemp("petsroot")
    return root, make_pets(root)


def test_registered_with_annotations():
    from xbench.registry import DATASETS

    e = DATASETS.get("pets")
    assert e.obj is Pets and e.spec.annotations == {"object_mask", "boxes"} and e.spec.folder == "oxford-iiit-pet"


def test_splits_labels_and_class_names(pets):
    root, t = pets
    ds = Pets(root)
    assert ds.num_classes == 3
    assert ds.class_names == ["Abyssinian", "american bulldog", "Bengal"]
    for name in ("train", "test"):
        sp = ds.split(name)
        assert sp.names == t.splits[name]                    # file order of trainval.txt / test.txt
        assert sp.labels.tolist() == [t.label[n] for n in t.splits[name]]
        assert sp.item_id(0) == f"pets/{name}/{t.splits[name][0]}"
    assert ds.split("train").labels.tolist() == [0, 0, 1, 1, 2, 2]


def test_trimap_mask_is_classes_1_and_3(pets):
    root, t = pets
    sp = Pets(root).split("test")
    for j, n in enumerate(sp.names):
        m = sp.object_mask(j)
        assert m.dtype == bool and (m == t.mask[n]).all()
        assert sp.image(j).size == (m.shape[1], m.shape[0])
    # by hand: first test image of class 0 (k = 2): border rows 4..15, columns 5..17; background elsewhere
    m = sp.object_mask(0)
    assert m[4, 5] and m[15, 17] and not m[3, 5] and not m[4, 18] and m.sum() == 12 * 13


def test_head_boxes_from_xmls_converted_to_zero_based(pets):
    root, _ = pets
    ds = Pets(root)
    tr, te = ds.split("train"), ds.split("test")
    # VOC (xmin 6, ymin 5, xmax 17, ymax 12), 1-based inclusive -> (5, 4, 17, 12)
    np.testing.assert_allclose(tr.boxes(0), [[5, 4, 17, 12]])
    np.testing.assert_allclose(tr.boxes(1), [[5, 4, 17, 12], [1, 1, 4, 5]])   # two heads
    assert tr.boxes(0).dtype == np.float32
    assert te.boxes(0).shape == (0, 4)                                         # no xml: no box


def test_check_and_missing_data(tmp_path):
    with pytest.raises(DataError, match="xbench data fetch pets --data-root"):
        Pets(tmp_path)
    t = make_pets(tmp_path)
    assert Pets(tmp_path).check(deep=True, show=False) == []
    (t.base / "images" / "Bengal_2.jpg").unlink()
    (t.base / "annotations" / "trimaps" / "Abyssinian_3.png").unlink()
    tv = t.base / "annotations" / "trainval.txt"
    tv.write_text(tv.read_text() + "Bengal_9 9 1 9\nbroken line\n")
    (t.base / "annotations" / "xmls" / "Abyssinian_1.xml").write_text("<annotation><object>")
    problems = Pets(tmp_path).check(deep=True, show=False)
    assert f"{t.base / 'images' / 'Bengal_2.jpg'}: image listed in trainval.txt (line 6) is missing" in problems
    assert f"{t.base / 'annotations' / 'trimaps' / 'Abyssinian_3.png'}: trimap of Abyssinian_3 is missing" in problems
    assert f"{tv}:8: malformed line 'broken line' (expected 'name class_id species breed_id')" in problems
    assert f"{tv}:7: breed 'Bengal' has class id 9 here but 3 at {tv}:5" in problems
    assert any("class ids must be 1..K without gaps; class id 9 out of range 1..4" in p for p in problems)
    assert any(p.startswith(str(t.base / "annotations" / "xmls" / "Abyssinian_1.xml")) for p in problems)
    assert all("\n" not in p for p in problems)
    with pytest.raises(DataError):
        Pets(tmp_path).split("train")
