"""`xbench run --datasets cub` end to end on a CUB-format fixture (tiny random backbone), and --skip-bad."""
from __future__ import annotations

import json

import pytest

from fixtures_cub import make_cub
from xbench.cli import main


def run_args(data, res, cache, metrics, *extra):
    return ["run", "--datasets", "cub", "--data-root", str(data), "--weights", "random", "--backbone",
            "dinov2-tiny-test", "--methods", "linear-probe-patch", "--metrics", metrics, "--results", str(res),
            "--cache", str(cache), "--quiet", "--no-leaderboard", *extra]


def records(res):
    return [json.loads(p.read_text()) for p in sorted((res / "records").glob("*.json"))]


@pytest.fixture(scope="module")
def cub_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("cubrun")
    make_cub(root, n_classes=3, per_class=4)
    return root


def test_run_end_to_end_on_cub_fixture(cub_root, tmp_path, capsys):
    from xbench.registry import METRICS

    metrics = "accuracy" + (",plausibility" if "plausibility" in METRICS else "")
    assert main(run_args(cub_root, tmp_path / "res", tmp_path / "cache", metrics, "--loader-workers", "0")) == 0
    (rec,) = records(tmp_path / "res")
    assert rec["status"] == "complete" and rec["dataset"] == "cub"
    assert rec["metrics"]["accuracy"]["status"] == "ok"
    assert 0.0 <= rec["metrics"]["accuracy"]["value"] <= 1.0
    if "plausibility" in METRICS:                       # object masks = CUB segmentations (SPEC 5.3)
        assert rec["metrics"]["plausibility"]["status"] == "ok"
        assert 0.0 <= rec["metrics"]["plausibility"]["value"] <= 1.0
    assert "skipped_files" not in rec


def test_corrupt_image_names_the_file_or_is_skipped_and_counted(tmp_path, capsys):
    t = make_cub(tmp_path / "data", n_classes=2, per_class=4)
    bad = t.base / "images" / t.path[3]                  # a training image (k = 2)
    bad.write_bytes(bad.read_bytes()[:250])              # truncated JPEG
    rc = main(run_args(tmp_path / "data", tmp_path / "res", tmp_path / "cache", "accuracy"))
    assert rc != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(bad) in err[0] and "--skip-bad" in err[0]
    rc = main(run_args(tmp_path / "data", tmp_path / "res2", tmp_path / "cache2", "accuracy", "--skip-bad"))
    assert rc == 0
    (rec,) = records(tmp_path / "res2")
    assert rec["status"] == "complete"
    assert rec["skipped_files"] == {"cub/train/plain": [f"cub/train/{t.path[3]}"]}
