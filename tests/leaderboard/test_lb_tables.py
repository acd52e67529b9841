"""Per-dataset tables from hand-built records: means, sample std, best by direction, n/a, errors, failures."""
from __future__ import annotations

import copy
import math

import pytest
from lb_records import err, na, ok, record

from xbench.errors import ResultsError
from xbench.leaderboard.tables import Cell, build_tables, format_value, slug


def _recs():
    return [
        record("alpha", 0, {"accuracy": ok(0.80), "local_size": ok(4.0), "sid@5": na()}),
        record("alpha", 1, {"accuracy": ok(0.90), "local_size": ok(6.0), "sid@5": na()}),
        record("alpha", 2, {"accuracy": ok(0.70), "local_size": ok(5.0), "sid@5": na()}),
        record("beta", 0, {"accuracy": ok(0.90), "local_size": ok(3.0), "sid@5": ok(0.4)}),
        record("beta", 1, {"accuracy": ok(0.80), "local_size": err("nan"), "sid@5": ok(0.6)}),
        record("gamma", 0, status="failed", error="RuntimeError: out of memory"),
    ]


def test_mean_and_sample_std_over_seeds():
    (t,) = build_tables(_recs())
    c = t.cells[("alpha", "accuracy")]
    assert c.status == "ok" and c.n == 3
    assert c.mean == pytest.approx(0.80)
    # sample std of 0.8, 0.9, 0.7: sqrt(((0)^2 + 0.1^2 + 0.1^2) / 2) = 0.1
    assert c.std == pytest.approx(0.10)
    assert t.seeds == {"alpha": [0, 1, 2], "beta": [0, 1], "gamma": []}


def test_best_follows_direction_and_ties_are_all_marked():
    (t,) = build_tables(_recs())
    # accuracy (higher): alpha 0.80, beta 0.85 -> beta
    assert t.cells[("beta", "accuracy")].best and not t.cells[("alpha", "accuracy")].best
    # local_size (lower is better): alpha mean 5.0, beta 3.0 (its errored seed left out) -> beta
    assert t.cells[("beta", "local_size")].best and not t.cells[("alpha", "local_size")].best
    assert t.cells[("beta", "local_size")].n == 1 and t.cells[("beta", "local_size")].errors == 1
    tie = build_tables([record("a", 0, {"accuracy": ok(0.5)}), record("b", 0, {"accuracy": ok(0.5)}),
                        record("c", 0, {"accuracy": ok(0.4)})])[0]
    assert [tie.cells[(m, "accuracy")].best for m in "abc"] == [True, True, False]


def test_single_row_is_never_best():
    (t,) = build_tables([record("a", 0, {"accuracy": ok(0.5)})])
    assert not t.cells[("a", "accuracy")].best


def test_na_error_failed_and_missing_cells():
    (t,) = build_tables(_recs())
    assert t.cells[("alpha", "sid@5")].status == "n/a"
    assert t.cells[("alpha", "sid@5")].reason == "method provides no concepts"
    assert t.cells[("gamma", "accuracy")].status == "failed"
    assert t.failed == [{"method": "gamma", "seed": 0, "error": "RuntimeError: out of memory",
                         "job_id": t.failed[0]["job_id"]}]
    only_err = build_tables([record("a", 0, {"accuracy": err("x")}), record("b", 0, {"accuracy": ok(0.3)})])[0]
    assert only_err.cells[("a", "accuracy")].status == "error"
    partial = build_tables([record("a", 0, {"accuracy": ok(0.3)}), record("b", 0, {"sid@5": ok(0.3)})])[0]
    assert partial.cells[("a", "sid@5")].status == "missing"


def test_columns_grouped_by_category_and_all_na_columns_dropped():
    recs = [record("a", 0, {"sid@5": ok(0.3), "accuracy": ok(0.5), "auroc": na("metric is for binary tasks"),
                            "completeness": ok(0.5)}),
            record("b", 0, {"sid@5": ok(0.3), "accuracy": ok(0.4), "auroc": na("metric is for binary tasks"),
                            "completeness": ok(0.6)})]
    (t,) = build_tables(recs)
    assert t.metrics == ["accuracy", "completeness", "sid@5"]
    assert t.not_applicable == {"auroc": "metric is for binary tasks"}
    assert [c for c, _ in t.categories()] == ["accuracy", "completeness", "concepts"]


def test_tables_split_by_backbone_weights_profile_and_data():
    recs = [record("a", 0, {"accuracy": ok(0.5)}),
            record("a", 0, {"accuracy": ok(0.9)}, backbone="vit_base_patch14_reg4_dinov2",
                   weights="pretrained:timm:x", weights_kind="pretrained", weights_hash="abc", profile="paper"),
            record("a", 0, {"accuracy": ok(0.7)}, options={"num_classes": 10})]
    ts = build_tables(recs)
    assert len(ts) == 3
    by_val = sorted(t.cells[("a", "accuracy")].mean for t in ts)
    assert by_val == [0.5, 0.7, 0.9]  # nothing averaged across settings
    synth = [t for t in ts if t.backbone == "weight-free"]
    assert all(t.show_fingerprint for t in synth) and synth[0].fingerprint != synth[1].fingerprint
    assert synth[0].untrained_weights and not [t for t in ts if t.weights_kind == "pretrained"][0].untrained_weights


def test_two_parameter_sets_of_one_method_are_two_rows():
    recs = [record("a", 0, {"accuracy": ok(0.5)}, params={"lr": 0.1}),
            record("a", 0, {"accuracy": ok(0.9)}, params={"lr": 0.2})]
    (t,) = build_tables(recs)
    assert len(t.methods) == 2 and all(r.startswith("a [params ") for r in t.methods)
    assert sorted(t.cells[(r, "accuracy")].mean for r in t.methods) == [0.5, 0.9]
    assert {t.method_of(r) for r in t.methods} == {"a"}


def test_build_tables_is_pure():
    recs = _recs()
    before = copy.deepcopy(recs)
    a, b = build_tables(recs), build_tables(list(reversed(recs)))
    assert recs == before
    assert [(t.title, t.methods, t.metrics) for t in a] == [(t.title, t.methods, t.metrics) for t in b]
    for ta, tb in zip(a, b):
        for k in ta.cells:
            ca, cb = ta.cells[k], tb.cells[k]
            assert (ca.status, ca.best, ca.n) == (cb.status, cb.best, cb.n)
            assert ca.mean == cb.mean or (ca.mean is not None and math.isclose(ca.mean, cb.mean))


def test_format_value_scale_and_seed_count():
    c = Cell(mean=0.8766, std=0.0123, n=3, status="ok")
    assert format_value(c, percent=True) == "87.7 ± 1.2"
    assert format_value(c, percent=False) == "0.877 ± 0.012"
    assert format_value(Cell(mean=0.5, std=0.0, n=1, status="ok"), False, seeds=3) == "0.500 (n=1)"
    assert format_value(Cell(status="n/a"), True) == "n/a"
    assert format_value(Cell(status="failed"), True) == "failed"


def test_slug_is_file_name_safe():
    assert slug("../../etc/passwd") == "etc_passwd"
    assert slug("<script>") == "script"
    assert slug("") == "x"


def test_a_record_with_a_bad_seed_is_refused_in_one_line():
    bad = record("a", 0, {"accuracy": ok(0.5)})
    bad["seed"] = "zero"
    with pytest.raises(ResultsError) as e:
        build_tables([bad])
    assert "seed 'zero' is not an integer" in str(e.value) and "\n" not in str(e.value)
