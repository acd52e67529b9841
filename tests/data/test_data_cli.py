"""`xbench data check|fetch|export` and the runner's pre-flight on missing data."""
from __future__ import annotations

import json

import numpy as np

from fixtures_cub import make_cub
from fixtures_rsna import make_rsna
from xbench.cli import main


def test_check_good_layout_prints_counts(tmp_path, capsys):
    make_cub(tmp_path)
    assert main(["data", "check", "cub", "--data-root", str(tmp_path), "--quiet"]) == 0
    out = capsys.readouterr().out
    assert f"cub: OK ({tmp_path / 'CUB_200_2011'})" in out
    assert "train: 6 images, 3 of 3 classes" in out and "test: 6 images, 3 of 3 classes" in out


def test_check_lists_every_problem_and_fails(tmp_path, capsys):
    t = make_cub(tmp_path)
    (t.base / "images" / t.path[3]).unlink()
    (t.base / "segmentations" / t.path[5].replace(".jpg", ".png")).unlink()
    bad = t.base / "images" / t.path[6]
    bad.write_bytes(bad.read_bytes()[:200])
    assert main(["data", "check", "cub", "--data-root", str(tmp_path), "--quiet"]) == 1
    cap = capsys.readouterr()
    lines = cap.out.strip().splitlines()
    assert len(lines) == 3
    assert lines[0] == f"{t.base / 'images' / t.path[3]}: image listed in images.txt (id 3) is missing"
    assert lines[1].endswith("segmentation mask of image id 5 is missing")
    assert lines[2].startswith(f"{bad}: cannot read image")
    assert "3 problem(s) in cub" in cap.err
    assert main(["data", "check", "cub", "--data-root", str(tmp_path), "--quiet", "--quick"]) == 1
    assert len(capsys.readouterr().out.strip().splitlines()) == 2          # --quick: no decoding


def test_check_missing_data_is_one_line(tmp_path, capsys):
    assert main(["data", "check", "pets", "--data-root", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert str(tmp_path / "oxford-iiit-pet") in err and f"xbench data fetch pets --data-root {tmp_path}" in err


def test_check_synthbirds_prints_counts(capsys):
    assert main(["data", "check", "synthbirds"]) == 0
    out = capsys.readouterr().out
    assert "train: 5000 images, 50 of 50 classes" in out and "test: 500 images" in out


def test_fetch_account_gated_sets_print_instructions(tmp_path, capsys):
    assert main(["data", "fetch", "cars", "--data-root", str(tmp_path)]) == 1
    out = capsys.readouterr().out
    assert str(tmp_path / "stanford_cars") in out and "kaggle.com" in out and "cars_test_annos_withlabels.mat" in out
    assert main(["data", "fetch", "rsna", "--data-root", str(tmp_path)]) == 1
    out = capsys.readouterr().out
    assert "kaggle competitions download -c rsna-pneumonia-detection-challenge" in out
    assert f"{tmp_path / 'rsna-pneumonia-detection-challenge'}/stage_2_train_images/<patientId>.dcm" in out
    make_rsna(tmp_path, n_neg=2, n_pos=2)
    assert main(["data", "fetch", "rsna", "--data-root", str(tmp_path)]) == 0
    assert "already in place" in capsys.readouterr().out
    assert main(["data", "check", "rsna", "--data-root", str(tmp_path), "--quiet"]) == 0
    assert "positive" in capsys.readouterr().out


def test_export_synthbirds_then_load_as_funnybirds(tmp_path, capsys):
    from xbench.data.funnybirds import FunnyBirds
    from xbench.data.synthbirds import SynthBirds

    out = tmp_path / "FunnyBirds"
    args = ["data", "export", "synthbirds", "--format", "funnybirds", "--out", str(out), "--num-classes", "3",
            "--train-per-class", "1", "--test-per-class", "1", "--seed", "5", "--quiet"]
    assert main(args) == 0
    assert f"--datasets funnybirds --data-root {tmp_path}" in capsys.readouterr().out
    fb, sb = FunnyBirds(tmp_path), SynthBirds(num_classes=3, train_per_class=1, test_per_class=1, seed=5,
                                               resolution=256)
    assert (fb.split("test").labels == sb.split("test").labels).all()
    assert np.array_equal(fb.split("test").part_map(2), sb.split("test").part_map(2))
    assert main(args) == 2                                                   # folder exists and is not empty
    assert "not empty" in capsys.readouterr().err


def test_ls_lists_the_real_datasets(capsys):
    assert main(["ls", "datasets"]) == 0
    out = capsys.readouterr().out
    for name, folder in [("cub", "CUB_200_2011"), ("cars", "stanford_cars"), ("pets", "oxford-iiit-pet"),
                         ("funnybirds", "FunnyBirds"), ("rsna", "rsna-pneumonia-detection-challenge")]:
        assert any(line.split()[0] == name and f"folder {folder}" in line for line in out.splitlines()), name


def test_run_without_data_stops_before_any_work(tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    res, cache = tmp_path / "res", tmp_path / "cache"
    rc = main(["run", "--datasets", "cub", "--data-root", str(empty), "--weights", "random", "--backbone",
               "dinov2-tiny-test", "--methods", "linear-probe-patch", "--results", str(res), "--cache", str(cache),
               "--quiet", "--no-leaderboard"])
    assert rc != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"xbench: error: no CUB-200-2011 data in {empty / 'CUB_200_2011'} (folder not found); "
                   f"run `xbench data fetch cub --data-root {empty}` to download it"]
    assert not [p for p in res.rglob("*") if p.is_file()]                    # no results records
    assert not cache.exists() or not any(cache.iterdir())                    # no cache entries
    assert list(empty.iterdir()) == []


def test_run_with_a_broken_layout_stops_with_the_first_problem(tmp_path, capsys):
    t = make_cub(tmp_path / "data", n_classes=2, per_class=2)
    (t.base / "images" / t.path[1]).unlink()
    (t.base / "images" / t.path[2]).unlink()
    rc = main(["run", "--datasets", "cub", "--data-root", str(tmp_path / "data"), "--weights", "random",
               "--backbone", "dinov2-tiny-test", "--methods", "linear-probe-patch", "--results",
               str(tmp_path / "res"), "--cache", str(tmp_path / "cache"), "--quiet", "--no-leaderboard"])
    assert rc != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "(id 1) is missing (and 1 more; run `xbench data check cub`)" in err[0]
    assert not (tmp_path / "cache").exists() or not any((tmp_path / "cache").iterdir())
    recs = list((tmp_path / "res").rglob("*.json"))
    assert recs == [] or all(json.loads(p.read_text()).get("status") != "complete" for p in recs)
