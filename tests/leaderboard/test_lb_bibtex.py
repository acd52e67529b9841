"""references.bib: an entry for every `paper` key of the registered specs; leaderboards cite what appears."""
from __future__ import annotations

from lb_records import ok, record

from xbench.leaderboard.bibtex import bib_fields, cite, load_references, parse_bib
from xbench.leaderboard.published import load_published
from xbench.leaderboard.tables import build_tables
from xbench.registry import BACKBONES, DATASETS, METHODS, METRICS


def test_every_paper_key_of_every_registered_spec_has_an_entry():
    refs = load_references()
    used = {}
    for reg in (METHODS, METRICS, DATASETS, BACKBONES):
        for e in reg.entries():
            if e.spec.paper:
                used.setdefault(e.spec.paper, []).append(e.name)
    assert used, "no spec declares a paper key"
    missing = {k: v for k, v in used.items() if k not in refs}
    assert not missing, f"add these keys to xbench/resources/references.bib: {missing}"
    for key in {p.cite for p in load_published()}:
        assert key in refs


def test_entries_have_author_title_year_and_balanced_braces():
    for key, entry in load_references().items():
        f = bib_fields(entry)
        assert {"author", "title", "year"} <= set(f), key
        assert entry.count("{") == entry.count("}"), key
        assert "doi" not in f   # no guessed DOIs


def test_parse_bib_by_hand():
    text = "% c\n@article{k1,\n  title = {A {B} c},\n  year = {2020},\n}\n\n@misc{k2, title={x}}\n"
    refs = parse_bib(text)
    assert list(refs) == ["k1", "k2"]
    assert refs["k1"].startswith("@article{k1,") and refs["k1"].endswith("}")
    assert bib_fields(refs["k1"])["year"] == "{2020}"


def test_cite_picks_what_appears():
    recs = [record("dino-qpm", 0, {"accuracy": ok(0.8), "plausibility": ok(0.5)}, dataset="cub",
                   backbone="vit_base_patch14_reg4_dinov2", weights="pretrained:x", weights_kind="pretrained")]
    c = cite(build_tables(recs, load_published()))
    assert set(c.keys) == {"dinoqpm", "wah2011cub", "dinov2"}
    assert "method dino-qpm" in c.uses["dinoqpm"] and "dataset cub" in c.uses["wah2011cub"]
    assert any(u.startswith("published numbers") for u in c.uses["dinoqpm"])
    assert "@inproceedings{dinoqpm," in c.bibtex and "funnybirds" not in c.bibtex


def test_unknown_key_is_reported_not_invented():
    recs = [record("gradcam", 0, {"accuracy": ok(0.8)})]
    c = cite(build_tables(recs), references={})
    assert c.keys == [] and "gradcam" in c.missing and c.bibtex == ""
