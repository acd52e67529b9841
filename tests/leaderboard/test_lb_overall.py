"""The overall table: mean of per-dataset means on common metrics, and mean rank, computed by hand."""
from __future__ import annotations

import pytest
from lb_records import na, ok, record

from xbench.leaderboard.overall import MEAN_RANK, _ranks, build_overall
from xbench.leaderboard.tables import build_tables


def _tables():
    d1 = "synthbirds"
    d2 = "cub"
    recs = [
        # dataset 1: accuracy and plausibility
        record("a", 0, {"accuracy": ok(0.6), "plausibility": ok(0.5)}, dataset=d1),
        record("a", 1, {"accuracy": ok(0.8), "plausibility": ok(0.7)}, dataset=d1),   # a: acc 0.7, plaus 0.6
        record("b", 0, {"accuracy": ok(0.9), "plausibility": ok(0.2)}, dataset=d1),   # b: acc 0.9, plaus 0.2
        record("c", 0, {"accuracy": ok(0.7), "plausibility": na("no attribution")}, dataset=d1),
        # dataset 2: accuracy and local_size (lower is better); no plausibility column
        record("a", 0, {"accuracy": ok(0.5), "local_size": ok(3.0)}, dataset=d2),
        record("b", 0, {"accuracy": ok(0.1), "local_size": ok(5.0)}, dataset=d2),
        record("c", 0, {"accuracy": ok(0.5), "local_size": na("no concepts")}, dataset=d2),
    ]
    return build_tables(recs)


def test_overall_mean_over_datasets_on_common_metrics_only():
    (o,) = build_overall(_tables())
    assert o.kind == "overall" and sorted(o.datasets) == ["cub", "synthbirds"]
    assert o.metrics == ["accuracy", MEAN_RANK]  # plausibility and local_size exist on one dataset only
    assert o.cells[("a", "accuracy")].mean == pytest.approx((0.7 + 0.5) / 2)
    assert o.cells[("b", "accuracy")].mean == pytest.approx((0.9 + 0.1) / 2)
    assert o.cells[("c", "accuracy")].mean == pytest.approx((0.7 + 0.5) / 2)
    assert o.cells[("a", "accuracy")].std is None   # no seed std across datasets
    assert o.cells[("a", "accuracy")].best and o.cells[("c", "accuracy")].best   # tie at 0.6
    assert not o.cells[("b", "accuracy")].best


def test_mean_rank_by_hand():
    (o,) = build_overall(_tables())
    # synthbirds accuracy: b 0.9 (1); a 0.7 and c 0.7 tie for ranks 2 and 3 -> 2.5 each
    # synthbirds plausibility: a 0.6 (1), b 0.2 (2); c has none
    # cub accuracy: a 0.5, c 0.5 tie (1.5 each), b 0.1 (3)
    # cub local_size (lower): a 3.0 (1), b 5.0 (2)
    assert o.cells[("a", MEAN_RANK)].mean == pytest.approx((2.5 + 1 + 1.5 + 1) / 4)
    assert o.cells[("b", MEAN_RANK)].mean == pytest.approx((1 + 2 + 3 + 2) / 4)
    assert o.cells[("c", MEAN_RANK)].mean == pytest.approx((2.5 + 1.5) / 2)
    assert o.cells[("c", MEAN_RANK)].n == 2
    assert o.cells[("a", MEAN_RANK)].best  # 1.5 is the lowest


def test_missing_on_one_dataset_is_not_averaged():
    recs = [record("a", 0, {"accuracy": ok(0.5)}, dataset="x"), record("a", 0, {"accuracy": ok(0.7)}, dataset="y"),
            record("b", 0, {"accuracy": ok(0.9)}, dataset="x"), record("b", 0, {"sid@5": ok(0.1)}, dataset="y")]
    (o,) = build_overall(build_tables(recs))
    assert o.cells[("a", "accuracy")].mean == pytest.approx(0.6)
    assert o.cells[("b", "accuracy")].status == "missing" and "y" in o.cells[("b", "accuracy")].reason


def test_one_overall_table_per_setting():
    recs = [record("a", 0, {"accuracy": ok(0.5)}),
            record("a", 0, {"accuracy": ok(0.9)}, weights="random", weights_kind="random", weights_hash="r1",
                   backbone="dinov2-tiny-test")]
    assert len(build_overall(build_tables(recs))) == 2


def test_average_ranks():
    assert _ranks([(0.9, "a"), (0.5, "b"), (0.9, "c")], "higher") == {"a": 1.5, "c": 1.5, "b": 3.0}
    assert _ranks([(2.0, "a"), (1.0, "b")], "lower") == {"b": 1.0, "a": 2.0}
