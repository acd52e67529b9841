"""Every output format: hostile strings from results files are escaped; provenance, warning banner and BibTeX
are present; the build is a pure function of the store; plots degrade gracefully."""
from __future__ import annotations

import csv
import io
import json
import re

import numpy as np
import pytest
from lb_records import err, na, ok, record, store_with

from xbench.errors import ConfigError
from xbench.leaderboard.build import parse_formats, write_leaderboard
from xbench.leaderboard.escape import csv_text, esc_md, esc_tex
from xbench.leaderboard.plots import heatmap_values, pareto_front
from xbench.leaderboard.tables import build_tables

EVIL = r"<script>alert(1)</script> & 50% $x$ #1 _a_ {b} ~c ^d \e |p|"
EVIL_ERR = "<img src=x onerror=alert(2)> & \\textbf{x}"
EVIL_CFG = "</script><script>alert(3)</script>"
FORMULA = "=HYPERLINK(\"http://x\")"
FB = {"accuracy": 0.9, "background_independence": 0.8, "csdc": 0.7, "pc": 0.6, "dc": 0.5, "distractibility": 0.4,
      "single_deletion": 0.6, "target_sensitivity": 0.7, "completeness": 0.55, "correctness": 0.6,
      "contrastivity": 0.7, "mean_explainability": 0.62}


def _fb(scale: float, **extra) -> dict:
    m = {k: ok(v * scale) for k, v in FB.items()}
    m.update(extra)
    return m


def _hostile_records():
    hw = {"cpu": "<svg onload=alert(4)>", "cpu_count": 2, "device": "cpu", "platform": "Linux&Co"}
    return [
        record(EVIL, 0, _fb(1.0, **{"sid@5": ok(0.3)}), params={"note": EVIL_CFG, "lr": float("nan")}, hardware=hw),
        record(EVIL, 1, _fb(0.9, **{"sid@5": ok(0.4)}), params={"note": EVIL_CFG, "lr": float("nan")}, hardware=hw),
        record("gradcam", 0, _fb(0.8, **{"sid@5": na("<b>no concepts</b> & more")})),
        record("gradcam", 1, _fb(0.7, **{"sid@5": na("<b>no concepts</b> & more")})),
        record(FORMULA, 0, {"accuracy": ok(0.1), "sid@5": err("<i>bad</i>")}),
        record("broken", 0, status="failed", error=EVIL_ERR),
    ]


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("lb")
    store = store_with(tmp, _hostile_records())
    out = tmp / "out"
    write_leaderboard(store, out, parse_formats("md,tex,csv,json,html"))
    return store, out


def test_html_escapes_every_string_from_results(built):
    _, out = built
    page = (out / "leaderboard.html").read_text()
    for raw in ("<script>alert(1)", "<img src=x", "<svg onload", "</script><script>alert(3)", "<b>no concepts",
                "<i>bad"):
        assert raw not in page, raw
    assert page.count("<script>") == 1  # the page's own sorting script
    assert "&lt;script&gt;alert(1)&lt;/script&gt; &amp; 50% $x$" in page
    assert "&lt;img src=x onerror=alert(2)&gt; &amp;" in page
    assert "&lt;svg onload=alert(4)&gt;" in page and "Linux&amp;Co" in page
    assert 'data-method="&lt;script&gt;' in page   # attributes escaped too


def test_latex_escapes_specials(built):
    _, out = built
    tex = (out / "leaderboard.tex").read_text()
    want = (r"\textless{}script\textgreater{}alert(1)\textless{}/script\textgreater{} \& 50\% \$x\$ \#1 \_a\_ "
            r"\{b\} \textasciitilde{}c \textasciicircum{}d \textbackslash{}e \textbar{}p\textbar{}")
    assert want in tex
    assert EVIL not in tex and "50% " not in tex and "$x$" not in tex
    assert r"\textbackslash{}textbf\{x\}" in tex   # the error's LaTeX is text, not a command
    assert esc_tex("a_b&c") == r"a\_b\&c"
    assert esc_tex("é\U0001F600中") == "é??"   # pdflatex cannot typeset emoji or CJK: the document still compiles


def test_markdown_escapes_and_keeps_table_shape(built):
    _, out = built
    md = (out / "leaderboard.md").read_text()
    assert not re.search(r"(?<!\\)<(script|img|svg|b>|i>)", md)
    assert esc_md(EVIL) in md
    lines = md.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("| method |"))
    block = []
    for line in lines[start:]:
        if not line.startswith("|"):
            break
        block.append(line)
    widths = {len(re.findall(r"(?<!\\)\|", line)) for line in block}
    assert len(widths) == 1, block  # an escaped '|' never splits a cell
    assert esc_md("a|b<c>`d`*e*_f_") == r"a\|b\<c\>\`d\`\*e\*\_f\_"


def test_csv_round_trips_and_defuses_formulas(built):
    _, out = built
    rows = list(csv.DictReader(io.StringIO((out / "leaderboard.csv").read_text())))
    methods = {r["method"] for r in rows}
    assert EVIL in methods
    assert "'" + FORMULA in methods and FORMULA not in methods
    assert csv_text("-1+2") == "'-1+2" and csv_text("ok") == "ok"
    acc = [r for r in rows if r["method"] == "gradcam" and r["metric"] == "accuracy" and r["kind"] == "dataset"][0]
    assert float(acc["mean"]) == pytest.approx((0.72 + 0.63) / 2)   # fractions, not x100
    assert acc["weights_warning"].startswith("synthbirds") and "WEIGHT-FREE" in acc["weights_warning"]


def test_json_round_trips(built):
    _, out = built
    data = json.loads((out / "leaderboard.json").read_text())
    (t,) = data["tables"]
    assert EVIL in t["methods"] and t["untrained_weights"] is True
    assert data["warnings"] and "WEIGHT-FREE" in data["warnings"][0]
    assert t["failed"][0]["error"] == EVIL_ERR
    params = [p for tp in data["provenance"]["tables"] for ps in tp["params"].values() for p in ps]
    assert {"note": EVIL_CFG, "lr": "nan"} in params   # a NaN in a config stays standard JSON


def test_provenance_and_banner_in_every_format(built):
    _, out = built
    files = {ext: (out / f"leaderboard.{ext}").read_text() for ext in ("md", "tex", "html", "json")}
    for ext, text in files.items():
        assert "WARNING" in text and "not DINOv2" in text, ext
        for needle in ("0123abcd", "2.4.0", "1.0.9", "wf00aa11", "2026-01-02T03:04:05+0000", "num\\_classes"
                       if ext == "tex" else "num_classes"):
            assert needle in text or needle.replace("_", "\\_") in text, (ext, needle)
    assert "xbench run --methods" in files["md"] and "--seeds 0,1" in files["md"]
    assert 'id="weights-warning"' in files["html"]


def test_bibtex_block_cites_what_appears(built):
    _, out = built
    bib = (out / "leaderboard.bib").read_text()
    for key in ("gradcam", "funnybirds", "dinoqpm"):
        assert "{" + key + "," in bib, key
    assert "wah2011cub" not in bib
    assert "@inproceedings{funnybirds," in (out / "leaderboard.md").read_text()
    assert r"\nocite{" in (out / "leaderboard.tex").read_text()


def test_plots_written_as_png_and_pdf(built):
    _, out = built
    names = sorted(p.name for p in (out / "plots").iterdir())
    for kind in ("pareto", "heatmap", "spider_gradcam"):
        assert any(kind in n and n.endswith(".png") for n in names), kind
        assert any(kind in n and n.endswith(".pdf") for n in names), kind
    assert not any("<" in n or "/" in n or "$" in n for n in names)
    assert (out / "plots" / "x.png").exists() is False
    assert (out / "plots" / names[-1]).read_bytes()[:4] in (b"\x89PNG", b"%PDF")


def test_same_store_same_bytes(built, tmp_path):
    store, out = built
    again = tmp_path / "again"
    write_leaderboard(store, again, parse_formats("md,tex,csv,json,html"))
    first = sorted(p.relative_to(out) for p in out.rglob("*") if p.is_file())
    second = sorted(p.relative_to(again) for p in again.rglob("*") if p.is_file())
    assert first == second
    for rel in first:
        assert (out / rel).read_bytes() == (again / rel).read_bytes(), rel


def test_missing_metrics_skip_plots_with_a_note(tmp_path):
    store = store_with(tmp_path, [record("a", 0, {"accuracy": ok(0.5)}), record("b", 0, {"local_size": ok(2.0)})])
    out = tmp_path / "out"
    write_leaderboard(store, out, ["md", "html"])
    md = (out / "leaderboard.md").read_text()
    assert "skipped: no method has both accuracy and mean\\_explainability" in md
    assert "skipped: fewer than three FunnyBirds scores" in md
    assert list((out / "plots").glob("*heatmap.png"))
    empty = store_with(tmp_path / "empty", [])
    write_leaderboard(empty, tmp_path / "out2", ["md", "html", "json"])
    assert "No results yet" in (tmp_path / "out2" / "leaderboard.md").read_text()


def test_stale_plots_removed_user_files_kept(tmp_path):
    out = tmp_path / "out"
    s1 = store_with(tmp_path / "one", [record("a", 0, _fb(1.0)), record("b", 0, _fb(0.5))])
    write_leaderboard(s1, out, ["md"])
    assert len(list((out / "plots").glob("*spider_b_*.png"))) == 1
    (out / "plots" / "mine.png").write_bytes(b"user file")
    s2 = store_with(tmp_path / "two", [record("a", 0, _fb(1.0))])
    write_leaderboard(s2, out, ["md"])
    assert not list((out / "plots").glob("*spider_b_*"))
    assert list((out / "plots").glob("*spider_a_*.png"))
    assert (out / "plots" / "mine.png").read_bytes() == b"user file"


def test_unknown_format_is_one_line():
    with pytest.raises(ConfigError) as e:
        parse_formats("md,docx")
    assert "docx" in str(e.value) and "\n" not in str(e.value)


def test_pareto_front_by_hand():
    pts = [(0.5, 0.9), (0.8, 0.6), (0.4, 0.5), (0.8, 0.7), (0.9, 0.2)]
    assert pareto_front(pts) == [0, 3, 4]
    assert pareto_front([(0.5, 0.5), (0.5, 0.5)]) == [0, 1]   # equal points do not dominate each other


def test_heatmap_scores_by_hand():
    recs = [record("a", 0, {"accuracy": ok(0.5), "local_size": ok(3.0)}),
            record("b", 0, {"accuracy": ok(0.7), "local_size": ok(5.0)}),
            record("c", 0, {"accuracy": ok(0.9), "local_size": na()})]
    (t,) = build_tables(recs)
    cols, score, notes = heatmap_values(t)
    assert cols == ["accuracy", "local_size"]
    np.testing.assert_allclose(score[:, 0], [0.0, 0.5, 1.0])
    np.testing.assert_allclose(score[:2, 1], [1.0, 0.0])   # lower is better
    assert np.isnan(score[2, 1]) and notes[2][1] == "n/a" and notes[0][0] == "50.0"


def test_spider_axes_read_sd_and_ts_under_either_name(tmp_path):
    from xbench.leaderboard.plots import spider_axes, spider_plots

    m = {k: ok(v) for k, v in FB.items() if k not in ("single_deletion", "target_sensitivity")}
    (t,) = build_tables([record("a", 0, m), record("b", 0, {"accuracy": ok(0.5), "csdc": ok(0.5)})])
    assert spider_axes(t) == [("accuracy", "Acc."), ("background_independence", "BI"), ("csdc", "CSDC"),
                              ("pc", "PC"), ("dc", "DC"), ("distractibility", "D"), ("correctness", "SD"),
                              ("contrastivity", "TS")]
    assets = spider_plots(t, tmp_path)
    assert [a.png is not None for a in assets] == [True, False]   # b has two scores only: skipped with a note
    assert "fewer than three" in assets[1].note
    assert (tmp_path / assets[0].png).exists() and (tmp_path / assets[0].pdf).exists()
