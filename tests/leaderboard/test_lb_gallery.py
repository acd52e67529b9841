"""Explanation galleries from real (tiny) trained heads: one score sheet per method and test image, embedded in
the page; a job that cannot be reloaded becomes a note, never an error."""
from __future__ import annotations

import json
import shutil

import pytest
from PIL import Image

from xbench.cli import main
from xbench.config import build_config
from xbench.leaderboard.build import write_leaderboard
from xbench.leaderboard.gallery import gallery_indices, make_gallery
from xbench.results import ResultsStore
from xbench.runner import Runner

TINY = {"num_classes": 4, "train_per_class": 4, "test_per_class": 2, "resolution": 64}


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("gallery")
    cfg = build_config(cli_values={
        "methods": "linear-probe,linear-probe-patch,gradcam", "datasets": "synthbirds", "metrics": "accuracy",
        "backbone": "dinov2-tiny-test", "weights": "random", "results": str(tmp / "results"),
        "cache": str(tmp / "cache"), "quiet": True, "loader_workers": 0, "batch_size": 16,
        "dataset_options": {"synthbirds": dict(TINY)},
        "params": {"linear-probe": {"epochs": 3}, "linear-probe-patch": {"epochs": 3}, "gradcam": {"epochs": 3}},
    })
    summary = Runner(cfg).run()
    assert not summary.failed, summary.failed
    return tmp


def test_gallery_indices_by_hand():
    assert gallery_indices(10, 3) == [0, 4, 9]      # round(0), round(4.5) = 4 (banker's), round(9)
    assert gallery_indices(2, 3) == [0, 1]
    assert gallery_indices(5, 1) == [0]
    assert gallery_indices(0, 3) == []


def test_gallery_per_method_embedded(results, monkeypatch):
    monkeypatch.setenv("XBENCH_CACHE", str(results / "cache"))
    store = ResultsStore(results / "results")
    out = results / "lb"
    write_leaderboard(store, out, ["md", "html", "json"], plots=False,
                      gallery=make_gallery(store, per_method=2, patches=2, cache=str(results / "cache")))
    data = json.loads((out / "leaderboard.json").read_text())
    (key,) = [t["key"] for t in data["tables"]]
    gal = [a for a in data["assets"][key] if a["kind"] == "gallery"]
    assert sorted({a["group"] for a in gal}) == ["gradcam", "linear-probe", "linear-probe-patch"]
    assert all(a["png"] for a in gal) and len(gal) == 6, gal
    for a in gal:
        with Image.open(out / a["png"]) as im:
            assert im.format == "PNG" and im.width > 200
    page = (out / "leaderboard.html").read_text()
    assert page.count('<div class="figs gallery">') == 3 and "Explanation gallery" in page
    assert "Explanation gallery" in (out / "leaderboard.md").read_text()


def test_unloadable_job_becomes_a_note(results, tmp_path):
    src = ResultsStore(results / "results")
    root = tmp_path / "copy"
    shutil.copytree(src.root, root, ignore=shutil.ignore_patterns("locks", ".lock"))
    store = ResultsStore(root)
    (rec,) = [r for r in store.records() if r["method"] == "linear-probe"]
    shutil.rmtree(root / rec["head"])                 # its head is gone
    write_leaderboard(store, tmp_path / "lb", ["md", "json"], plots=False,
                      gallery=make_gallery(store, per_method=1, patches=0, cache=str(results / "cache")))
    data = json.loads((tmp_path / "lb" / "leaderboard.json").read_text())
    notes = [a for assets in data["assets"].values() for a in assets if a["kind"] == "gallery" and a["note"]]
    assert len(notes) == 1 and notes[0]["group"] == "linear-probe" and "head" in notes[0]["note"]
    assert "linear-probe: gallery: skipped" in (tmp_path / "lb" / "leaderboard.md").read_text()


def test_cli_writes_only_the_asked_formats(results, capsys, tmp_path):
    out = tmp_path / "cli"
    code = main(["leaderboard", "--results", str(results / "results"), "--out", str(out), "--formats", "md,csv",
                 "--gallery", "0", "--no-plots"])
    assert code == 0
    assert sorted(p.name for p in out.iterdir()) == ["leaderboard.csv", "leaderboard.md"]
    capsys.readouterr()
    code = main(["leaderboard", "--results", str(results / "results"), "--formats", "md,docx"])
    err = capsys.readouterr().err
    assert code != 0 and "docx" in err and err.count("\n") == 1
    code = main(["leaderboard", "--results", str(tmp_path / "nothing")])
    err = capsys.readouterr().err
    assert code != 0 and "no results in" in err and err.count("\n") == 1
    code = main(["leaderboard", "--results", str(results / "results")])
    assert code == 0 and "| linear-probe-patch |" in capsys.readouterr().out
