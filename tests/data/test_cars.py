"""Stanford Cars loader (SPEC 1.4) against tiny devkit .mat files written with scipy."""
from __future__ import annotations

import numpy as np
import pytest

from fixtures_pets_cars import CAR_NAMES, make_cars, write_annos
from xbench.data.cars import Cars
from xbench.errors import DataError


def test_registered_with_annotations():
    from xbench.registry import DATASETS

    e = DATASETS.get("cars")
    assert e.obj is Cars and e.spec.annotations == {"boxes"} and e.spec.folder == "stanford_cars"


@pytest.mark.parametrize("nested,test_in_devkit", [(False, False), (True, True)])
def test_splits_labels_boxes(tmp_path, nested, test_in_devkit):
    t = make_cars(tmp_path, nested=nested, test_in_devkit=test_in_devkit)
    ds = Cars(tmp_path)
    assert ds.num_classes == 3 and ds.class_names == CAR_NAMES
    for name in ("train", "test"):
        sp = ds.split(name)
        assert len(sp) == 6
        assert sp.labels.tolist() == t.labels[name] == [0, 0, 1, 1, 2, 2]   # class 1-based in the file
        assert sp.ids == t.fnames[name]
        for j in range(len(sp)):
            np.testing.assert_allclose(sp.boxes(j), t.boxes[name][j][None])
        assert sp.image(5).size == (42, 31)
    # by hand: record 1 is (x1 3, y1 2, x2 30, y2 25), MATLAB 1-based inclusive -> (2, 1, 30, 25)
    np.testing.assert_allclose(ds.split("train").boxes(0), [[2, 1, 30, 25]])
    assert ds.check(deep=True, show=False) == []


def test_check_names_problems_and_missing_data(tmp_path):
    with pytest.raises(DataError) as e:
        Cars(tmp_path)
    assert "kaggle.com" in str(e.value) and str(tmp_path / "stanford_cars") in str(e.value)
    t = make_cars(tmp_path)
    write_annos(t.base / "devkit" / "cars_train_annos.mat",
                [(3, 2, 30, 25, 1, "00001.jpg"), (3, 2, 30, 25, 4, "00002.jpg"), (3, 2, 30, 25, 2, "99999.jpg")])
    (t.base / "cars_test_annos_withlabels.mat").unlink()
    problems = Cars(tmp_path).check(show=False)
    ann = t.base / "devkit" / "cars_train_annos.mat"
    assert f"{ann}: record 2 (00002.jpg) has class 4, out of range 1..3" in problems
    assert f"{t.base / 'cars_train' / '99999.jpg'}: image listed in cars_train_annos.mat (record 3) is missing" in problems
    assert any(p.startswith(f"{t.base / 'cars_test_annos_withlabels.mat'}: file is missing") for p in problems)
    with pytest.raises(DataError, match="out of range"):
        Cars(tmp_path).split("train")


def test_test_annotations_without_class_are_refused(tmp_path):
    import scipy.io

    t = make_cars(tmp_path)
    arr = np.zeros(1, dtype=[(f, "O") for f in ("bbox_x1", "bbox_y1", "bbox_x2", "bbox_y2", "fname")])
    arr[0] = (1, 1, 5, 5, "00001.jpg")
    scipy.io.savemat(str(t.base / "cars_test_annos_withlabels.mat"), {"annotations": arr.reshape(1, -1)})
    with pytest.raises(DataError, match="lack field"):
        Cars(tmp_path).split("test")
    (t.base / "devkit" / "cars_meta.mat").write_bytes(b"garbage")
    with pytest.raises(DataError, match="cars_meta.mat"):
        Cars(tmp_path).num_classes
