"""`--datasets folder:PATH`: a folder of your own images, with and without masks / parts.json."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from api_fixtures import run_values, synthbirds, write_folder
from PIL import Image

from xbench.cli import main
from xbench.config import build_config
from xbench.data.userfolder import UserFolder, parse_dataset_arg
from xbench.errors import DataError
from xbench.results import ResultsStore
from xbench.runner import Runner

METRICS = "accuracy,plausibility,consistency"


def test_parse_dataset_arg():
    assert parse_dataset_arg("folder:/x/y") == ("folder", {"path": "/x/y"})
    assert parse_dataset_arg("synthbirds") == ("synthbirds", {})
    with pytest.raises(DataError, match="needs a path"):
        parse_dataset_arg("folder:")


def test_items_classes_annotations_follow_the_folder(tmp_path):
    root = write_folder(tmp_path / "birds")
    ds = UserFolder(path=root)
    sb = synthbirds()
    assert ds.spec.name == "folder-birds"
    assert ds.spec.annotations == {"object_mask", "keypoints", "boxes"}
    assert ds.class_names == ["c00", "c01", "c02", "c03", "c04"]
    assert ds.keypoint_names == sb.keypoint_names
    for split in ("train", "test"):
        a, b = ds.split(split), sb.split(split)
        assert len(a) == len(b)
        np.testing.assert_array_equal(a.labels, b.labels)
        assert np.array_equal(np.asarray(a.image(1)), np.asarray(b.image(1)))  # PNG is lossless
    t, st = ds.split("test"), sb.split("test")
    np.testing.assert_array_equal(t.object_mask(3), st.object_mask(3))
    np.testing.assert_allclose(t.keypoints(3), st.keypoints(3), rtol=0, atol=1e-4)
    assert t.boxes(3).shape == (0, 4)  # no box given: BoxCropView uses the whole image
    assert t.item_id(0) == "folder-birds/test/c00/0000.png"
    assert ds.check(deep=True, show=False) == []
    # without the optional files, nothing is declared
    shutil.rmtree(root / "masks")
    (root / "parts.json").unlink()
    bare = UserFolder(path=root)
    assert bare.spec.annotations == frozenset()
    with pytest.raises(DataError, match="no object_mask"):
        bare.split("test").object_mask(0)


def test_index_csv_layout_and_classes_txt(tmp_path):
    root = write_folder(tmp_path / "csv", layout="csv", masks=False, parts=False)
    ds = UserFolder(path=root)
    assert ds.check(deep=True, show=False) == []
    sb = synthbirds()
    np.testing.assert_array_equal(ds.split("train").labels, sb.split("train").labels)
    assert ds.split("test").ids[0] == "images/test-0000.png"
    # classes.txt sets the label order
    (root / "classes.txt").write_text("c04\nc03\nc02\nc01\nc00\n")
    ds2 = UserFolder(path=root)
    np.testing.assert_array_equal(ds2.split("train").labels, 4 - sb.split("train").labels)


def test_fingerprint_follows_content(tmp_path):
    root = write_folder(tmp_path / "fp")
    fp = UserFolder(path=root).fingerprint()
    assert fp["name"] == "folder" and fp["classes"] == ["c00", "c01", "c02", "c03", "c04"]
    assert UserFolder(path=root).fingerprint() == fp  # deterministic
    doc = json.loads((root / "parts.json").read_text())
    first = next(iter(doc["images"]))
    doc["images"][first]["box"] = [0, 0, 50, 50]
    (root / "parts.json").write_text(json.dumps(doc))
    fp2 = UserFolder(path=root).fingerprint()
    assert fp2["content"] != fp["content"]
    img = root / "train/c00/0000.png"
    Image.new("RGB", (7, 7)).save(img)  # another file (another size)
    assert UserFolder(path=root).fingerprint()["content"] != fp2["content"]
    assert UserFolder(path=root).split("test").boxes(0).tolist() == [[0, 0, 50, 50]]


def _metrics(results: Path) -> dict[str, dict]:
    return {r["dataset"]: r["metrics"] for r in ResultsStore(results).records()}


def test_runner_scores_a_folder_and_reports_na_without_annotations(tmp_path):
    full = write_folder(tmp_path / "full")
    bare = write_folder(tmp_path / "bare", masks=False, parts=False)
    cfg = build_config(cli_values=run_values(tmp_path, f"synthbirds,folder:{full},folder:{bare}", metrics=METRICS))
    summary = Runner(cfg).run()
    assert not summary.failed and len(summary.done) == 3
    m = _metrics(tmp_path / "results")
    # same images and masks as synthbirds (one-hot training targets): the same head, the same numbers
    assert m["folder-full"]["accuracy"]["value"] == m["synthbirds"]["accuracy"]["value"]
    assert m["folder-full"]["plausibility"]["status"] == "ok"
    assert m["folder-full"]["plausibility"]["value"] == pytest.approx(m["synthbirds"]["plausibility"]["value"],
                                                                      abs=1e-12)
    assert m["folder-full"]["consistency"]["status"] == "ok"
    assert m["folder-full"]["consistency"]["extras"]["protocol"] == "keypoints"
    assert m["folder-bare"]["accuracy"]["status"] == "ok"
    assert m["folder-bare"]["plausibility"] == {"value": None, "status": "n/a", "reason": "dataset has no object_mask",
                                            "version": 1}
    assert m["folder-bare"]["consistency"]["status"] == "n/a"
    rec = next(r for r in ResultsStore(tmp_path / "results").records() if r["dataset"] == "folder-full")
    assert rec["provenance"]["dataset"]["options"]["path"] == str(full.resolve())


def _break(root: Path) -> dict[str, str]:
    """Damage a good folder in one way per problem kind; returns kind -> text expected in its line."""
    (root / "test/c00/0000.png").write_bytes(b"not an image")                      # unreadable image
    (root / "masks/test/c01/0003.png").unlink()                                      # mask missing
    Image.new("L", (10, 12)).save(root / "masks/test/c02/0004.png")                 # mask size mismatch
    (root / "test/zz").mkdir()
    Image.new("RGB", (8, 8)).save(root / "test/zz/x.png")                          # label not in classes
    doc = json.loads((root / "parts.json").read_text())
    doc["images"]["test/c03/0006.png"]["keypoints"]["beak"] = [1, "a"]              # malformed keypoint
    doc["images"]["test/nope.png"] = {}                                             # unknown image
    (root / "parts.json").write_text(json.dumps(doc))
    return {
        "unreadable": "test/c00/0000.png: cannot read image",
        "missing mask": "mask of test image test/c01/0003.png is missing",
        "size": "mask is 10x12 but its image 0004.png is 96x96",
        "label": "test/zz: class 'zz' (1 test image) is not a training class",
        "keypoint": "images['test/c03/0006.png'].keypoints['beak']: [1, 'a'] is not [x, y]",
        "unknown image": "images['test/nope.png']: no such image in the dataset",
    }


def test_data_check_lists_every_problem_one_line_each(tmp_path, capsys):
    root = write_folder(tmp_path / "good")
    assert main(["data", "check", f"folder:{root}", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert f"folder:{root}: OK" in out and "test: 10 images, 5 of 5 classes" in out
    expected = _break(root)
    assert main(["data", "check", f"folder:{root}", "--quiet"]) == 1
    cap = capsys.readouterr()
    lines = cap.out.strip().splitlines()
    for kind, text in expected.items():
        hits = [ln for ln in lines if text in ln]
        assert len(hits) == 1, (kind, lines)
    assert len(lines) == len(expected)
    assert "6 problem(s)" in cap.err


def test_malformed_index_csv_lines(tmp_path, capsys):
    root = write_folder(tmp_path / "c", layout="csv", masks=False, parts=False)
    text = (root / "index.csv").read_text().splitlines()
    text += ["images/train-0000.png,c00,train",      # line n+1: duplicate
             "images/nope.png,c00,test",             # missing file
             "images/test-0001.png,c00",             # field count
             "images/test-0002.png,c00,val",         # split
             "../outside.png,c00,test",              # escapes the folder
             "images/extra.png,qq,test"]             # label that is no training class
    Image.new("RGB", (8, 8)).save(root / "images/extra.png")
    (root / "index.csv").write_text("\n".join(text) + "\n")
    n = len(text) - 1
    assert main(["data", "check", f"folder:{root}", "--quick", "--quiet"]) == 1
    lines = capsys.readouterr().out.strip().splitlines()
    csv = root / "index.csv"
    assert lines == [
        f"{csv}:{n - 4}: images/train-0000.png is listed twice (first on line 2)",
        f"{root / 'images/nope.png'}: image listed on {csv}:{n - 3} is missing",
        f"{csv}:{n - 2}: expected 3 fields, found 2",
        f"{csv}:{n - 1}: split 'val' is not train or test",
        f"{csv}:{n}: path '../outside.png' must be relative to {root} and stay inside it",
        f"{csv}:{n + 1}: label 'qq' of test image images/extra.png is not a training class",
    ]


def test_runner_stops_on_a_broken_folder_with_one_line(tmp_path, capsys):
    root = write_folder(tmp_path / "broken", parts=False)
    (root / "masks/test/c01/0003.png").unlink()
    rc = main(["run", "--datasets", f"folder:{root}", "--methods", "linear-probe", "--backbone", "dinov2-tiny-test",
               "--weights", "random", "--results", str(tmp_path / "r"), "--cache", str(tmp_path / "cache"),
               "--quiet", "--no-leaderboard"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1
    assert "mask of test image test/c01/0003.png is missing" in err[0]
    assert not (tmp_path / "r" / "records").exists()


def test_missing_or_empty_folder_is_one_line(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        UserFolder(path=tmp_path / "nothing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="neither train/ and test/ class folders nor an index.csv"):
        UserFolder(path=tmp_path / "empty")



def test_parts_json_problems_by_hand(tmp_path):
    from xbench.data.userparts import parse_parts

    p = tmp_path / "parts.json"
    p.write_text('{"keypoint_names": ["a", "b"],\n "images": {"x.png": {"keypoints": {"a": [1, 2], "c": [0, 0], '
                 '"b": [3, 4, 2]}, "box": [5, 5, 2, 9], "extra": 1}, "y.png": {"box": [0, 0, 4, 3]}}}')
    problems: list[str] = []
    parts = parse_parts(p, {"x.png", "y.png"}, tmp_path, problems)
    where = f"{p}: images['x.png']"
    assert problems == [
        f"{where}: unknown key 'extra' (valid: keypoints, box)",
        f"{where}.keypoints: unknown keypoint 'c' (keypoint_names: a, b)",
        f"{where}.keypoints['b']: [3, 4, 2] is not [x, y] or [x, y, visible] with visible 0 or 1",
        f"{where}.box: [5, 5, 2, 9] is not [x1, y1, x2, y2] with x2 > x1 and y2 > y1",
    ]
    assert parts.keypoints["x.png"].tolist() == [[1, 2, 1], [0, 0, 0]]   # listed: visible; unlisted: invisible
    assert parts.boxes["y.png"].tolist() == [[0, 0, 4, 3]] and "x.png" not in parts.boxes
    p.write_text('{"keypoint_names": ["a"],\n "images": {,}}')
    problems = []
    assert parse_parts(p, set(), tmp_path, problems) is None
    assert problems == [f"{p}:2:13: not valid JSON (Expecting property name enclosed in double quotes)"]
