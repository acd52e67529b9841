"""CUB-200-2011 loader (SPEC 1.3) against a tiny fixture in the official layout."""
from __future__ import annotations

import shutil

import numpy as np
import pytest
from PIL import Image

from fixtures_cub import PART_NAMES, class_colour, make_cub
from xbench.data.cub import CUB
from xbench.errors import ConfigError, DataError


@pytest.fixture(scope="module")
def cub(tmp_path_factory):
    root = tmp_path_factory.mktemp("cubroot")
    return root, make_cub(root)


def test_registered_with_annotations():
    from xbench.registry import DATASETS

    e = DATASETS.get("cub")
    assert e.obj is CUB
    assert e.spec.annotations == {"object_mask", "keypoints", "boxes"}
    assert e.spec.folder == "CUB_200_2011" and e.spec.task == "multiclass"


def test_counts_labels_and_splits(cub):
    root, t = cub
    ds = CUB(root)
    assert ds.num_classes == 3
    assert ds.class_names == ["Fixture Bird 0", "Fixture Bird 1", "Fixture Bird 2"]
    assert ds.keypoint_names == tuple(PART_NAMES) and len(ds.keypoint_names) == 15
    for name in ("train", "test"):
        sp = ds.split(name)
        ids = t.split_ids(name)                      # is_train = (k % 2 == 0): 2 of 4 per class each
        assert len(sp) == len(ids) == 6
        assert list(sp.image_ids) == ids             # increasing image id
        assert sp.labels.tolist() == [t.label[i] for i in ids]
        assert [sp.item_id(j) for j in range(len(sp))] == [f"cub/{name}/{t.path[i]}" for i in ids]
    assert ds.split("train").labels.tolist() == [0, 0, 1, 1, 2, 2]


def test_images_masks_keypoints_boxes_in_native_pixels(cub):
    root, t = cub
    sp = CUB(root).split("test")
    for j, i in enumerate(t.split_ids("test")):
        img = sp.image(j)
        assert img.mode == "RGB" and img.size == t.size[i]
        mean = np.asarray(img, dtype=np.float64).reshape(-1, 3).mean(0)
        assert np.abs(mean - class_colour(t.label[i])).max() < 12   # the JPEG the fixture wrote
        m = sp.object_mask(j)
        assert m.dtype == bool and m.shape == (t.size[i][1], t.size[i][0])
        assert (m == t.mask[i]).all()
        assert m[1, 1] and m[2, t.size[i][0] - 3]                   # soft values 51 and 153 count as object
        kp = sp.keypoints(j)
        assert kp.shape == (15, 3) and kp.dtype == np.float32
        np.testing.assert_allclose(kp, t.kp[i], atol=1e-5)
        x, y, w, h = t.box[i]
        np.testing.assert_allclose(sp.boxes(j), [[x, y, x + w, y + h]])


def test_keypoints_by_hand(cub):
    root, _ = cub
    sp = CUB(root).split("train")
    # image id 1: k = 0; part p visible iff (p + 1) % 3 != 0 -> parts 1, 2 visible, part 3 (index 2) not
    kp = sp.keypoints(0)
    np.testing.assert_allclose(kp[0], [6.0, 5.0, 1.0])
    np.testing.assert_allclose(kp[1], [7.0, 6.0, 1.0])
    np.testing.assert_allclose(kp[2], [0.0, 0.0, 0.0])
    np.testing.assert_allclose(kp[13], [19.0, 11.0, 1.0])  # p = 13: x = 6 + 13, y = 5 + 13 % 7
    np.testing.assert_allclose(kp[14], [0.0, 0.0, 0.0])    # (14 + 1) % 3 == 0: invisible


def test_box_crop_option(cub):
    root, t = cub
    full, crop = CUB(root).split("train"), CUB(root, crop="box").split("train")
    # image id 1: 48 x 40, box (2.5, 3, 38, 30.5): x1 = round(2.5) = 2, y1 = 3, x2 = round(40.5) = 40,
    # y2 = round(33.5) = 34 (Python rounds halves to even, like BoxCropView)
    assert crop.crop_box(0, (48, 40)) == (2, 3, 40, 34)
    img = crop.image(0)
    assert img.size == (38, 31)
    assert np.array_equal(np.asarray(img), np.asarray(full.image(0))[3:34, 2:40])
    assert (crop.object_mask(0) == t.mask[1][3:34, 2:40]).all()
    kp = crop.keypoints(0)
    np.testing.assert_allclose(kp[0], [4.0, 2.0, 1.0])      # (6, 5) - (2, 3)
    np.testing.assert_allclose(kp[2], [0.0, 0.0, 0.0])      # invisible stays (0, 0, 0)
    np.testing.assert_allclose(crop.boxes(0), [[0, 0, 38, 31]])
    assert CUB(root, crop="box").fingerprint() != CUB(root).fingerprint()
    with pytest.raises(ConfigError, match="crop"):
        CUB(root, crop="centre")


def test_segmentations_beside_the_folder(tmp_path):
    t = make_cub(tmp_path, n_classes=2, per_class=2, seg="beside")
    ds = CUB(tmp_path)
    assert ds.segmentation_dir() == tmp_path / "segmentations"
    assert ds.check(deep=True, show=False) == []
    i = t.split_ids("train")[0]
    assert (ds.split("train").object_mask(0) == t.mask[i]).all()


def test_missing_data_names_folder_and_command(tmp_path):
    with pytest.raises(DataError) as e:
        CUB(tmp_path)
    msg = str(e.value)
    assert "\n" not in msg
    assert str(tmp_path / "CUB_200_2011") in msg
    assert f"xbench data fetch cub --data-root {tmp_path}" in msg


def test_fingerprint_same_on_copies_and_follows_content(cub, tmp_path):
    root, _ = cub
    copy = tmp_path / "elsewhere"
    shutil.copytree(root, copy)
    assert CUB(copy).fingerprint() == CUB(root).fingerprint()
    p = copy / "CUB_200_2011" / "bounding_boxes.txt"
    p.write_text(p.read_text().replace("1 2.5 3.0", "1 2.0 3.0", 1))
    assert CUB(copy).fingerprint() != CUB(root).fingerprint()


def test_check_names_every_problem_one_line_each(tmp_path):
    t = make_cub(tmp_path)
    b = t.base
    assert CUB(tmp_path).check(deep=True, show=False) == []
    (b / "images" / t.path[2]).unlink()                                        # listed image missing
    with open(b / "images.txt", "a") as f:
        f.write("99 001.Fixture_Bird_0/ghost.jpg\n")                          # id with no image (and no label)
    lab = b / "image_class_labels.txt"
    lab.write_text(lab.read_text().replace("3 1\n", "3 7\n"))                  # class id out of range
    (b / "segmentations" / t.path[4].replace(".jpg", ".png")).unlink()          # mask missing
    box = b / "bounding_boxes.txt"
    box.write_text(box.read_text() + "oops\n")                                 # malformed line
    locs = b / "parts" / "part_locs.txt"
    locs.write_text("\n".join(l for l in locs.read_text().splitlines() if not l.startswith("5 15 ")) + "\n")
    problems = CUB(tmp_path).check(show=False)
    text = "\n".join(problems)
    assert all("\n" not in p for p in problems)
    assert f"{b / 'images' / t.path[2]}: image listed in images.txt (id 2) is missing" in problems
    assert f"{b / 'images' / '001.Fixture_Bird_0/ghost.jpg'}: image listed in images.txt (id 99) is missing" in problems
    assert f"{lab}:3: class id 7 out of range 1..3" in problems
    assert f"{b / 'segmentations' / t.path[4].replace('.jpg', '.png')}: segmentation mask of image id 4 is missing" in problems
    assert f"{box}:13: malformed line 'oops' (expected 'image_id x y w h')" in problems
    assert any(p.startswith(f"{locs}: image id 5 ") and "14 of 15 part locations" in p for p in problems)
    assert "image id 99 (001.Fixture_Bird_0/ghost.jpg) has no class label" in text
    assert len(problems) == len(set(problems))
    with pytest.raises(DataError):
        CUB(tmp_path).split("train")


def test_unreadable_image_raises_data_error_naming_the_file(tmp_path):
    t = make_cub(tmp_path, n_classes=1, per_class=2)
    bad = t.base / "images" / t.path[1]
    data = bad.read_bytes()
    bad.write_bytes(data[: len(data) // 3])                                     # truncated JPEG
    ds = CUB(tmp_path)
    assert ds.check(show=False) == []                                           # the quick check does not decode
    deep = ds.check(deep=True, show=False)
    assert len(deep) == 1 and deep[0].startswith(f"{bad}: cannot read image")
    with pytest.raises(DataError, match=str(bad)):
        ds.split("train").image(0)
    seg = t.base / "segmentations" / t.path[2].replace(".jpg", ".png")
    seg.write_bytes(b"not a png")
    with pytest.raises(DataError, match=str(seg)):
        ds.split("test").object_mask(0)


def test_greyscale_and_cmyk_images_come_out_rgb(tmp_path):
    t = make_cub(tmp_path, n_classes=1, per_class=2)
    p1, p2 = t.base / "images" / t.path[1], t.base / "images" / t.path[2]
    Image.open(p1).convert("L").save(p1)
    Image.open(p2).convert("CMYK").save(p2)
    ds = CUB(tmp_path)
    assert ds.split("train").image(0).mode == "RGB"
    assert ds.split("test").image(0).mode == "RGB"
