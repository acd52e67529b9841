"""`xbench.evaluate` on a hand-written image model (a plain nn.Module, not an xbench head)."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from api_fixtures import synthbirds
from torch import nn

import xbench
from xbench.errors import ConfigError, ResultsError
from xbench.explanation import Explanation
from xbench.external import to_grid
from xbench.leaderboard.tables import build_tables
from xbench.results import ResultsStore, validate_record

SIZE = 112          # the model's input size: grid 112 / 14 = 8
GRID = SIZE // 14


class CellModel(nn.Module):
    """Always votes for class 0 (constant logits); its attribution is one grid cell, drawn at twice the grid."""

    provides = {"logits", "attribution"}
    image_size = SIZE

    def __init__(self, num_classes: int, cell: tuple[int, int]):
        super().__init__()
        self.vote = nn.Conv2d(3, num_classes, kernel_size=1)
        with torch.no_grad():
            self.vote.weight.zero_()
            self.vote.bias.zero_()
            self.vote.bias[0] = 1.0
        self.cell = cell
        self.seen: list[tuple[int, ...]] = []

    def logits(self, images: torch.Tensor) -> torch.Tensor:
        self.seen.append(tuple(images.shape))
        return self.vote(images).mean(dim=(2, 3))

    def explain(self, images: torch.Tensor) -> Explanation:
        z = self.logits(images)
        r, c = self.cell

        def attribution(target: torch.Tensor) -> torch.Tensor:
            m = torch.zeros(images.shape[0], 2 * GRID, 2 * GRID)
            m[:, 2 * r:2 * r + 2, 2 * c:2 * c + 2] = 1.0       # averaged onto the 8 x 8 grid: cell (r, c) = 1
            return m

        return Explanation(logits=z, attribution_fn=attribution)


def _hit(mask: np.ndarray, r: int, c: int) -> bool:
    """Whether grid cell (r, c) lies in the mask on the GRID x GRID grid dilated by one cell (SPEC 5.3), by hand.

    A cell is object when the bilinear sample of the mask at its centre is > 0; with 12-pixel cells (96 px
    images, grid 8) the centre of cell i falls halfway between pixels 12 i + 5 and 12 i + 6.
    """
    h, w = mask.shape
    assert h == w == 12 * GRID
    for rr in range(max(r - 1, 0), min(r + 2, GRID)):
        for cc in range(max(c - 1, 0), min(c + 2, GRID)):
            if mask[12 * rr + 5:12 * rr + 7, 12 * cc + 5:12 * cc + 7].any():
                return True
    return False


def test_to_grid_averages_blocks():
    m = torch.arange(16.0).view(1, 4, 4)
    torch.testing.assert_close(to_grid(m, 2), torch.tensor([[[2.5, 4.5], [10.5, 12.5]]]))
    assert to_grid(m, 4) is m


def test_hand_written_model_is_scored_like_a_method(tmp_path):
    ds = synthbirds()
    test = ds.split("test")
    masks = [test.object_mask(i) for i in range(len(test))]
    centre, corner = (GRID // 2, GRID // 2), (0, 0)
    want_centre = np.mean([_hit(m, *centre) for m in masks])
    want_corner = np.mean([_hit(m, *corner) for m in masks])
    assert want_corner < want_centre  # the two cases differ on these images

    metrics = ["accuracy", "plausibility", "background_independence", "consistency"]
    model = CellModel(ds.num_classes, centre)
    rec = xbench.evaluate(model, ds, metrics=metrics, name="cell-centre", results=tmp_path / "res")
    validate_record(rec, where="evaluate")
    m = rec["metrics"]
    # always class 0, 2 test images per class: accuracy = 1 / 5
    assert m["accuracy"]["status"] == "ok" and m["accuracy"]["value"] == pytest.approx(1 / ds.num_classes)
    # all attribution on one cell: the score of an image is 1 if that cell is in its dilated mask, else 0
    assert m["plausibility"]["value"] == pytest.approx(want_centre)
    assert m["plausibility"]["extras"]["grid"] == GRID
    # constant logits: no background object's removal lowers the target logit
    assert m["background_independence"]["value"] == pytest.approx(1.0)
    assert m["consistency"] == {"value": None, "status": "n/a", "reason": "method provides no concepts", "version": 1}
    assert rec["method"] == "cell-centre" and rec["backbone"] == "external" and rec["status"] == "complete"
    assert all(s[1:] == (3, SIZE, SIZE) for s in model.seen)  # images at the model's own input size
    low = xbench.evaluate(CellModel(ds.num_classes, corner), ds, metrics=["plausibility"], name="cell-corner")
    assert low["metrics"]["plausibility"]["value"] == pytest.approx(want_corner)
    # the record is in the results store and the leaderboard reads it
    stored = list(ResultsStore(tmp_path / "res").records())
    assert [r["job_id"] for r in stored] == [rec["job_id"]]
    assert "cell-centre" in repr(build_tables(stored))
    with pytest.raises(ResultsError, match="scored with xbench.evaluate and has no saved head"):
        xbench.load(tmp_path / "res" / "cell-centre")


def test_same_record_shape_as_the_runner():
    ds = synthbirds()
    rec = xbench.evaluate(CellModel(ds.num_classes, (0, 0)), ds, metrics=["accuracy"], name="cell")
    runner_keys = {"schema", "job_id", "status", "method", "dataset", "backbone", "weights", "weights_kind",
                   "weights_hash", "seed", "profile", "protocol", "cache_dtype", "config", "config_hash", "metrics",
                   "provenance", "timings"}
    assert set(rec) == runner_keys
    assert set(rec["provenance"]) >= {"git_commit", "hardware", "date", "dataset", "backbone"}
    assert rec["provenance"]["dataset"] == ds.fingerprint()
    assert rec["job_id"].startswith("cell__synthbirds__s0__")


def test_protocol_errors_are_one_line():
    ds = synthbirds()
    with pytest.raises(ConfigError, match="has no explain"):
        xbench.evaluate(nn.Linear(2, 2), ds, metrics=["accuracy"])
    bad = CellModel(ds.num_classes, (0, 0))
    bad.provides = {"logits", "heatmaps"}
    with pytest.raises(ConfigError, match="unknown entries"):
        xbench.evaluate(bad, ds, metrics=["accuracy"])
    wrong = CellModel(3, (0, 0))
    wrong.num_classes = 3
    with pytest.raises(ConfigError, match="has 3 classes but dataset synthbirds has 5"):
        xbench.evaluate(wrong, ds, metrics=["accuracy"])
    from xbench.methods.base import HeadInfo
    from xbench.methods.linear_probe import LinearProbePatch

    with pytest.raises(ConfigError, match="bare linear-probe-patch head without its backbone"):
        xbench.evaluate(LinearProbePatch(HeadInfo(num_classes=5, grid=16, dim=8)), ds, metrics=["accuracy"])
    with pytest.raises(ConfigError, match="unknown metric"):
        xbench.evaluate(CellModel(5, (0, 0)), ds, metrics=["acuracy"])


def test_dataset_by_name_with_options():
    rec = xbench.evaluate(CellModel(5, (0, 0)), "synthbirds", metrics=["accuracy"],
                          dataset_options={"num_classes": 5, "train_per_class": 0, "test_per_class": 1,
                                           "resolution": 64})
    assert rec["metrics"]["accuracy"]["value"] == pytest.approx(0.2)
    assert rec["provenance"]["dataset"]["options"]["test_per_class"] == 1
    assert np.isfinite(rec["timings"]["total_s"])


def test_an_image_model_has_no_token_store_and_metrics_read_items_from_the_context():
    """No zero-width fake store: the context gives the view's items (base image, metadata) and the model's grid;
    batches carry images and no tokens; asking the images-only extractor for a store is one clear error."""
    from xbench.evaluation import EvalContext
    from xbench.external import ExternalModel, ImagesOnlyExtractor
    from xbench.views import InterventionView

    ds = synthbirds()
    ext = ExternalModel(CellModel(ds.num_classes, (1, 2)))
    ex = ImagesOnlyExtractor(ext.geometry)
    ctx = EvalContext(ext, ds, ex, batch_size=7, show_progress=False, needs_images=True)
    view = InterventionView()
    want = view.index(ds.split("test"))
    items = ctx.items("test", view)
    assert np.array_equal(items.base, want.base) and sorted(items.meta) == sorted(want.meta)
    assert all(np.array_equal(items.meta[k], want.meta[k]) for k in want.meta)
    assert ctx.grid == GRID and not ctx.has_tokens
    b = next(iter(ctx.batches("test")))
    assert b.tokens is None and tuple(b.images.shape) == (7, 3, SIZE, SIZE)
    assert ctx.logits("test", view).shape == (len(want), ds.num_classes)
    with pytest.raises(ConfigError, match="no backbone tokens"):
        ex.store(ds, "test", view)


def test_evaluate_validates_metric_options_as_the_runner_does():
    """A misspelt option is one clear error naming the valid ones, not a silent default (same check as `xbench run`)."""
    ds = synthbirds()
    model = CellModel(ds.num_classes, (0, 0))
    with pytest.raises(ConfigError, match=r"metric_options.funnybirds: unknown option 'protocl' \(valid: .*protocol"):
        xbench.evaluate(model, ds, metrics=["accuracy"], metric_options={"funnybirds": {"protocl": "reference"}})
    with pytest.raises(ConfigError, match="funnybird"):
        xbench.evaluate(model, ds, metrics=["accuracy"], metric_options={"funnybird": {"protocol": "reference"}})
