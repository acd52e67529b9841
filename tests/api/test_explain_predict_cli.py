"""`xbench explain` (score sheet PNG), `xbench predict` (CSV) and the training patches behind the figure."""
from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import torch
from api_fixtures import run_values, write_folder
from PIL import Image

import xbench
from xbench.cli import main
from xbench.config import build_config
from xbench.explanation import Explanation
from xbench.figures import draw_explanation, top_concepts_for, top_training_patches
from xbench.figures.patches import cell_box
from xbench.methods.base import Batch
from xbench.runner import Runner


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("cli")
    data = write_folder(tmp / "birds", masks=False, parts=False)
    cfg = build_config(cli_values=run_values(tmp, f"folder:{data}", methods="linear-probe-patch,gradcam",
                                             metrics="accuracy"))
    assert len(Runner(cfg).run().done) == 2
    return tmp


def _png(path: Path) -> Image.Image:
    img = Image.open(path)
    assert img.format == "PNG"
    return img


def test_explain_cli_both_forms(run, capsys):
    res, cache, data = run / "results", str(run / "cache"), run / "birds"
    out1 = run / "sheet-run.png"
    assert main(["explain", "--run", str(res / "linear-probe-patch__folder-birds"), "--image",
                 str(data / "test/c02/0004.png"), "--out", str(out1), "--cache", cache, "--quiet"]) == 0
    out2 = run / "sheet-index.png"
    assert main(["explain", "--method", "linear-probe-patch", "--dataset", f"folder:{data}", "--index", "4",
                 "--results", str(res), "--out", str(out2), "--cache", cache, "--quiet"]) == 0
    out3 = run / "sheet-gradcam.png"
    assert main(["explain", "--method", "gradcam", "--dataset", "folder-birds", "--index", "4", "--results", str(res),
                 "--out", str(out3), "--cache", cache, "--target", "c01", "--quiet"]) == 0
    assert "wrote" in capsys.readouterr().out
    a, b, c = _png(out1), _png(out2), _png(out3)
    assert a.size == b.size                      # the same image (test index 4 is test/c02/0004.png), same layout
    assert c.size[1] < a.size[1]                  # Grad-CAM: no concept rows
    assert not list(run.glob(".sheet-*"))        # written atomically: no temporary files left


def test_explain_cli_errors_are_one_line(run, capsys):
    res = str(run / "results")
    assert main(["explain", "--run", res, "--out", str(run / "x.png")]) == 2
    assert main(["explain", "--method", "linear-probe", "--dataset", "folder-birds", "--index", "0", "--results", res,
                 "--out", str(run / "x.png")]) == 2
    assert main(["explain", "--method", "gradcam", "--dataset", "folder-birds", "--index", "99", "--results", res,
                 "--out", str(run / "x.png")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        "xbench: error: give either --run RUN --image FILE, or --method M --dataset D --index I",
        f"xbench: error: no completed job of linear-probe on folder-birds (seed 0) in {res}; run it first: xbench run "
        f"--methods linear-probe --datasets folder-birds --seeds 0 --results {res}",
        "xbench: error: --index 99 is out of range: the test split of folder-birds has 10 images (0..9)",
    ]
    assert not (run / "x.png").exists()


def test_predict_cli_rows(run, capsys):
    res, data = run / "results", run / "birds"
    out = run / "preds.csv"
    assert main(["predict", "--run", str(res / "linear-probe-patch__folder"), "--images", str(data / "test"),
                 "--out", str(out), "--batch-size", "4"]) == 0
    rows = list(csv.DictReader(out.open()))
    files = sorted(p.relative_to(data / "test").as_posix() for p in (data / "test").rglob("*.png"))
    assert [r["path"] for r in rows] == files
    model = xbench.load(res / "linear-probe-patch__folder")
    exp = model.explain([data / "test" / f for f in files])
    pred = exp.logits.argmax(dim=1)
    probs = torch.softmax(exp.logits, dim=1)
    for b, r in enumerate(rows):
        c = int(pred[b])
        assert int(r["class_index"]) == c and r["class_name"] == f"c{c:02d}"
        assert float(r["probability"]) == pytest.approx(float(probs[b, c]), abs=1e-6)
        contrib = exp.concept_scores[b] * exp.class_weights[c]
        top = torch.topk(contrib, 3)
        assert [int(r[f"concept_{j}"]) for j in (1, 2, 3)] == top.indices.tolist()
        assert [float(r[f"contribution_{j}"]) for j in (1, 2, 3)] == pytest.approx(top.values.tolist(), rel=1e-5)
    # a method without concepts: no concept columns
    out2 = run / "preds-gradcam.csv"
    assert main(["predict", "--run", str(res / "gradcam__folder"), "--images", str(data / "train/c01"),
                 "--out", str(out2)]) == 0
    lines = out2.read_text().splitlines()
    assert lines[0] == "path,class_index,class_name,probability" and len(lines) == 1 + 4
    (run / "empty").mkdir()
    assert main(["predict", "--run", str(res / "gradcam__folder"), "--images", str(run / "empty"),
                 "--out", str(out2)]) == 2
    assert "no image files in it" in capsys.readouterr().err


def test_top_concepts_by_contribution():
    exp = Explanation(logits=torch.zeros(1, 2), concept_scores=torch.tensor([[1.0, 2.0, -1.0, 3.0, 0.5]]),
                      class_weights=torch.tensor([[1.0, 1.0, 1.0, 1.0, 1.0], [0.5, -1.0, -4.0, 1.0, 0.0]]))
    # class 1: contributions 0.5, -2, 4, 3, 0 -> concepts 2, 3, 0; the zero and negative ones are never shown
    assert [k for k, *_ in top_concepts_for(exp, 1, 5)] == [2, 3, 0]
    k, s, w, c = top_concepts_for(exp, 1, 1)[0]
    assert (k, s, w, c) == (2, -1.0, -4.0, 4.0)
    assert [k for k, *_ in top_concepts_for(exp, 0, 2)] == [3, 1]


def test_cell_box_by_hand():
    assert cell_box(0, 0, 16, 96, 96) == (0, 0, 12, 12)           # 6-px cells, one cell of context, clipped
    assert cell_box(15, 15, 16, 96, 96) == (84, 84, 96, 96)
    assert cell_box(2, 3, 4, 100, 60, context=0) == (75, 30, 100, 45)
    assert cell_box(1, 1, 3, 10, 10, context=0) == (3, 3, 7, 7)   # floor / ceil of 10/3-px cells


def test_training_patches_are_the_brute_force_top_k(run):
    model = xbench.load(run / "results" / "linear-probe-patch__folder", cache=str(run / "cache"))
    ds = model.dataset()
    store = model.train_store(ds)
    concepts = [3, 17, 30]
    got = top_training_patches(model, store, ds.split("train"), k=4, concepts=concepts, batch_size=7)
    maps = model.head.explain(Batch(tokens=store.tokens(slice(None)))).concept_maps   # [N, K, g, g]
    g = maps.shape[-1]
    for k in concepts:
        flat = maps[:, k].flatten(1)
        best, where = flat.max(dim=1)                 # per training image: its best cell
        order = np.argsort(-best.numpy(), kind="stable")[:4]
        assert [p.index for p in got[k]] == order.tolist()
        for p, i in zip(got[k], order):
            assert (p.row, p.col) == divmod(int(where[i]), g)
            assert p.value == pytest.approx(float(best[i]), abs=1e-6)
            assert p.image.size == (96, 96)
    # the first patch is the image's region around that cell, resized for display
    p = got[concepts[0]][0]
    img = ds.split("train").image(p.index)
    crop = img.crop(cell_box(p.row, p.col, g, img.width, img.height)).resize((96, 96), Image.BILINEAR)
    assert np.array_equal(np.asarray(crop), np.asarray(p.image))


def test_score_sheet_grows_with_concepts(run, tmp_path):
    model = xbench.load(run / "results" / "linear-probe-patch__folder", cache=str(run / "cache"))
    img = Image.open(run / "birds/test/c00/0000.png")
    exp = model.explain([img])
    one = draw_explanation(exp, img, model.class_names, tmp_path / "a.png", top_concepts=0)
    three = draw_explanation(exp, img, model.class_names, tmp_path / "b.png", top_concepts=3)
    assert _png(one).size[1] < _png(three).size[1]
