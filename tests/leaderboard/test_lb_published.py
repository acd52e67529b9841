"""Published numbers: the packaged table, its explicit per-row scale, the metric-name map, and how they are shown
(beside xbench's cells, labelled, never averaged, never best)."""
from __future__ import annotations

import pytest
from lb_records import ok, record

from xbench.errors import ResultsError
from xbench.leaderboard.markdown import render_table
from xbench.leaderboard.published import METRIC_MAP, load_published, match, parse_published
from xbench.leaderboard.tables import build_tables
from xbench.registry import METRICS

HEADER = "source,method,dataset,metric,value,note,unit,backbone,setting,cite\n"


def _find(rows, method, dataset, metric):
    (p,) = [p for p in rows if (p.method, p.dataset, p.published_metric) == (method, dataset, metric)]
    return p


def test_packaged_table_normalised_to_fractions():
    rows = load_published()
    assert len(rows) == 57
    # DINO-QPM prints percentages: 87.9 -> 0.879
    p = _find(rows, "linear-probe", "cub", "accuracy")
    assert p.value == pytest.approx(0.879) and p.raw == "87.9" and p.unit == "percent"
    assert _find(rows, "dino-qpm", "cars", "sid@5").value == pytest.approx(0.917)
    # ProtoFM's FunnyBirds scores are fractions: 0.92 stays 0.92
    p = _find(rows, "protofm", "funnybirds", "mean_explainability")
    assert p.value == pytest.approx(0.92) and p.unit == "fraction"
    assert _find(rows, "pip-net", "funnybirds", "consistency").value == pytest.approx(1.0)
    # ... but its RSNA AUROC is printed as a percentage: 86.1 -> 0.861
    assert _find(rows, "protofm", "rsna", "auroc").value == pytest.approx(0.861)
    assert all(0.0 <= p.value <= 1.0 for p in rows)


def test_every_published_metric_maps_to_a_registered_metric():
    for name in {p.published_metric for p in load_published()}:
        assert name in METRIC_MAP
    for xb in set(METRIC_MAP.values()):
        assert xb in METRICS, xb
    ablation = _find(load_published(), "dino-qpm", "cub", "accuracy_vits14_reg")
    assert ablation.metric == "accuracy" and ablation.setting == "ablation"
    assert ablation.backbone == "vit_small_patch14_reg4_dinov2"


@pytest.mark.parametrize("line, needle", [
    ("s,m,cub,accuracy,150,,percent,,main,x", "outside [0, 100]"),
    ("s,m,cub,accuracy,87.9,,fraction,,main,x", "outside [0, 1]"),
    ("s,m,cub,accuracy_top5,80,,percent,,main,x", "no xbench name"),
    ("s,m,cub,accuracy,0.8,,permille,,main,x", "unit 'permille'"),
    ("s,m,cub,accuracy,abc,,percent,,main,x", "not a number"),
])
def test_bad_rows_are_refused_with_one_line(line, needle):
    with pytest.raises(ResultsError) as e:
        parse_published(HEADER + line + "\n", "my.csv")
    assert needle in str(e.value) and "my.csv line 2" in str(e.value) and "\n" not in str(e.value)


def test_match_main_rows_everywhere_ablations_only_on_their_backbone():
    rows = load_published()
    on_base = match(rows, "dino-qpm", "cub", "accuracy", "vit_base_patch14_reg4_dinov2")
    assert [p.raw for p in on_base] == ["88.3"]
    on_small = match(rows, "dino-qpm", "cub", "accuracy", "vit_small_patch14_reg4_dinov2")
    assert sorted(p.raw for p in on_small) == ["83.4", "88.3"]
    assert match(rows, "dino-qpm", "synthbirds", "accuracy", "weight-free") == []


def test_published_beside_cells_never_averaged_or_best():
    rows = load_published()
    recs = [record("linear-probe", s, {"accuracy": ok(v), "consistency": ok(0.5)}, dataset="cub")
            for s, v in ((0, 0.5), (1, 0.7))]
    recs += [record("dino-qpm", 0, {"accuracy": ok(0.55), "consistency": ok(0.4)}, dataset="cub")]
    (t,) = build_tables(recs, rows)
    c = t.cells[("linear-probe", "accuracy")]
    assert c.mean == pytest.approx(0.6) and c.n == 2 and c.values == [0.5, 0.7]   # 0.879 not averaged in
    assert [p.value for p in c.published] == [pytest.approx(0.879)]
    # published dino-qpm 0.883 beats both, but best is decided on xbench's own numbers only
    assert c.best and not t.cells[("dino-qpm", "accuracy")].best
    md = "\n".join(render_table(t))
    assert "↳ *published* (DINO\\-QPM" not in md  # '-' is not escaped
    assert "↳ *published* (DINO-QPM (CVPR 2026) results table)" in md
    assert "*87.9*" in md and "*88.3*" in md            # displayed on the metric's own scale (percent)
    assert "60.0 ± 14.1" in md                           # xbench's own, x100


def test_fraction_metric_shown_as_fraction():
    rows = load_published()
    (t,) = build_tables([record("protofm", 0, {"consistency": ok(0.5)}, dataset="funnybirds")], rows)
    md = "\n".join(render_table(t))
    assert "*0.650*" in md and "0.500" in md


# DINO-QPM's results table (CUB / Cars, percent): the DINO-SLDD and DINO-QSENN rows (issue 18)
SPARSE_BASELINES = {
    "dino-sldd": {("cub", "accuracy"): "84.6", ("cars", "accuracy"): "92.9", ("cub", "plausibility"): "78.0",
                  ("cub", "sid@5"): "88.7", ("cars", "sid@5"): "90.9", ("cub", "class_independence"): "94.4",
                  ("cars", "class_independence"): "93.9", ("cub", "contrastiveness"): "93.0",
                  ("cars", "contrastiveness"): "94.9"},
    "dino-qsenn": {("cub", "accuracy"): "85.4", ("cars", "accuracy"): "93.3", ("cub", "plausibility"): "86.0",
                   ("cub", "sid@5"): "91.5", ("cars", "sid@5"): "92.6", ("cub", "class_independence"): "93.6",
                   ("cars", "class_independence"): "94.0", ("cub", "contrastiveness"): "94.4",
                   ("cars", "contrastiveness"): "94.9"},
}


@pytest.mark.parametrize("method", sorted(SPARSE_BASELINES))
def test_sldd_and_qsenn_rows_with_their_source(method):
    rows = [p for p in load_published() if p.method == method]
    got = {(p.dataset, p.published_metric): p.raw for p in rows}
    assert got == SPARSE_BASELINES[method]
    assert {(p.source, p.cite, p.unit, p.setting) for p in rows} == {
        ("DINO-QPM (CVPR 2026) results table", "dinoqpm", "percent", "main")}
    # shown beside xbench's own cell of that method
    (t,) = build_tables([record(method, 0, {"sid@5": ok(0.8)}, dataset="cub")], load_published())
    (p,) = t.cells[(method, "sid@5")].published
    assert p.raw == SPARSE_BASELINES[method][("cub", "sid@5")]
    assert f"*{p.raw}*" in "\n".join(render_table(t))
