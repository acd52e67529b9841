"""RSNA Pneumonia loader (SPEC 1.6): DICOM conversion, labels, boxes, masks and the fixed split."""
from __future__ import annotations

import hashlib

import numpy as np
import pytest
import torch

from fixtures_rsna import make_rsna, write_dicom
from xbench.data.dicom import read_dicom, to_uint8
from xbench.data.rsna import RSNA
from xbench.errors import DataError


@pytest.fixture(scope="module")
def rsna(tmp_path_factory):
    root = tmp_path_factory.mktemp("rsnaroot")
    return root, make_rsna(root)


def test_registered_binary_with_boxes():
    from xbench.registry import DATASETS

    e = DATASETS.get("rsna")
    assert e.obj is RSNA and e.spec.task == "binary"
    assert e.spec.annotations == {"object_mask", "boxes"} and e.spec.folder == "rsna-pneumonia-detection-challenge"


def expected_split(target: dict[str, int], frac: float = 0.2) -> dict[str, list[str]]:
    """The documented rule, written out: per label, sort by sha256(patientId), lowest round(frac n) -> test."""
    out = {"train": [], "test": []}
    for label in (0, 1):
        ids = [p for p, t in target.items() if t == label]
        ids.sort(key=lambda p: hashlib.sha256(p.encode()).hexdigest())
        k = round(frac * len(ids))
        out["test"] += ids[:k]
        out["train"] += ids[k:]
    return {s: sorted(v) for s, v in out.items()}


def test_stratified_split_by_rule(rsna):
    root, t = rsna
    ds = RSNA(root)
    want = expected_split(t.target)
    for name in ("train", "test"):
        sp = ds.split(name)
        assert sp.ids == want[name]
        assert sp.labels.tolist() == [t.target[p] for p in want[name]]
    te = ds.split("test").labels
    assert (te == 0).sum() == 2 and (te == 1).sum() == 1          # 20% of 10 negatives, 20% of 5 positives
    assert len(ds.split("train")) == 12
    ds2 = RSNA(root, test_fraction=0.4)
    assert (ds2.split("test").labels == 0).sum() == 4 and (ds2.split("test").labels == 1).sum() == 2
    assert ds2.fingerprint() != ds.fingerprint()


def test_images_boxes_masks(rsna):
    root, t = rsna
    ds = RSNA(root)
    for name in ("train", "test"):
        sp = ds.split(name)
        for j, pid in enumerate(sp.ids):
            img = sp.image(j)
            arr = np.asarray(img)
            assert img.mode == "RGB" and arr.shape == (24, 32, 3)
            assert (arr[..., 0] == t.pixels[pid]).all() and (arr[..., 1] == arr[..., 2]).all()   # 8-bit: exact
            np.testing.assert_allclose(sp.boxes(j), t.boxes[pid].reshape(-1, 4))
            m = sp.object_mask(j)
            assert m.shape == (24, 32) and m.dtype == bool
            if t.target[pid] == 0:
                assert not m.any() and sp.boxes(j).shape == (0, 4)
    # by hand: patient 11 (k = 11) has boxes (4, 3.5, 10 x 6) and (18, 10, 4.5 x 8):
    # columns 4..13 rows 3..9 (3.5 .. 9.5 touches rows 3..9), and columns 18..22 rows 10..17
    pid = sorted(t.target)[11]
    sp = ds.split("train") if pid in ds.split("train").ids else ds.split("test")
    m = sp.object_mask(sp.ids.index(pid))
    expect = np.zeros((24, 32), dtype=bool)
    expect[3:10, 4:14] = True
    expect[10:18, 18:23] = True
    assert (m == expect).all()


def test_dicom_conversion_rules(tmp_path):
    px = np.array([[0, 10, 255], [128, 64, 1]], dtype=np.uint8)
    write_dicom(tmp_path / "m1.dcm", px, photometric="MONOCHROME1")
    assert (np.asarray(read_dicom(tmp_path / "m1.dcm"))[..., 0] == 255 - px).all()
    px12 = np.array([[0, 4095, 2048], [1, 100, 4000]], dtype=np.uint16)
    write_dicom(tmp_path / "b12.dcm", px12, bits_stored=12, slope=2.0, intercept=-100.0)
    # the window is the rescaled stored range [-100, 8090]; rescale is linear, so x = s / 4095
    want = np.round(px12 / 4095 * 255).astype(np.uint8)
    assert (np.asarray(read_dicom(tmp_path / "b12.dcm"))[..., 0] == want).all()
    assert to_uint8(np.array([0, 255]), slope=-1.0, intercept=255.0).tolist() == [255, 0]
    img = (np.arange(24 * 32).reshape(24, 32) % 200).astype(np.uint8)
    write_dicom(tmp_path / "j.dcm", img, jpeg=True)                      # JPEG baseline, as the RSNA files
    dec = np.asarray(read_dicom(tmp_path / "j.dcm"))[..., 0].astype(int)
    assert np.abs(dec - img).mean() < 6


def test_bad_dicoms_raise_data_error_naming_the_file(tmp_path):
    write_dicom(tmp_path / "nopix.dcm", None)
    with pytest.raises(DataError, match=f"{tmp_path / 'nopix.dcm'}: cannot read DICOM \\(no pixel data\\)"):
        read_dicom(tmp_path / "nopix.dcm")
    (tmp_path / "junk.dcm").write_bytes(b"\0" * 50)
    with pytest.raises(DataError, match=str(tmp_path / "junk.dcm")):
        read_dicom(tmp_path / "junk.dcm")
    with pytest.raises(DataError, match="missing"):
        read_dicom(tmp_path / "absent.dcm")


def test_skip_bad_counts_a_dicom_without_pixel_data(tmp_path):
    """The extractor's item loader substitutes and reports the file instead of failing (--skip-bad)."""
    from xbench.extract import _Items
    from xbench.preprocessing import Preprocessing
    from xbench.views.plain import PlainView

    t = make_rsna(tmp_path, n_neg=5, n_pos=5)
    ds = RSNA(tmp_path)
    sp = ds.split("train")
    write_dicom(sp.files[1], None)
    view = PlainView()
    index = view.index(sp)
    pre = Preprocessing(28, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5))
    js, x, bad = _Items(view, sp, index, pre, skip_bad=True)[[0, 1, 2]]
    assert js == [0, 1, 2] and bad == [1] and x.shape == (3, 3, 28, 28)
    assert torch.count_nonzero(x[1]) == 0 and torch.count_nonzero(x[0]) > 0
    with pytest.raises(DataError, match=str(sp.files[1])):
        _Items(view, sp, index, pre, skip_bad=False)[[0, 1, 2]]
    deep = ds.check(deep=True, show=False)
    assert deep == [f"{sp.files[1]}: cannot read DICOM (no pixel data)"]
    assert t.base.name == "rsna-pneumonia-detection-challenge"


def test_check_labels_csv_problems_and_missing_data(tmp_path):
    with pytest.raises(DataError, match="kaggle competitions download -c rsna-pneumonia-detection-challenge"):
        RSNA(tmp_path)
    t = make_rsna(tmp_path, n_neg=3, n_pos=2)
    csv = t.base / "stage_2_train_labels.csv"
    pids = sorted(t.target)
    (t.base / "stage_2_train_images" / f"{pids[0]}.dcm").unlink()
    csv.write_text(csv.read_text() + f"{pids[1]},1,2,3,4,1\nnewpatient,,,,,2\nshort,row\n")
    problems = RSNA(tmp_path).check(show=False)
    assert any(p.startswith(f"{t.base / 'stage_2_train_images' / (pids[0] + '.dcm')}: DICOM of patient") for p in problems)
    assert f"{csv}:8: patient {pids[1]} has Target 1 here and 0 on line 3" in problems
    assert f"{csv}:9: Target '2' must be 0 or 1 (patient 'newpatient')" in problems
    assert any(p.startswith(f"{csv}:10: malformed row") for p in problems)
    with pytest.raises(DataError):
        RSNA(tmp_path).split("train")
