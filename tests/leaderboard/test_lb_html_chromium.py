"""The HTML page in headless Chromium: tables and images present, sorting works, no console errors, no
injected script runs; and the check itself fails on a page with broken JavaScript or a broken image."""
from __future__ import annotations

import pytest
from lb_chromium import chromium_binary, open_page
from lb_records import na, ok, record, store_with

from xbench.leaderboard.build import write_leaderboard

EVIL = "<script>alert(1)</script><img src=x onerror=alert(2)> & {x}"
CHECKS = {
    "tables": "document.querySelectorAll('table.lb').length",
    "dataset_tables": "document.querySelectorAll('section[id^=\"s-cub\"] table.sortable').length",
    "images": "Array.from(document.images).map(i => [i.complete, i.naturalWidth])",
    "scripts": "document.scripts.length",
    "evil_text": "document.body.textContent.includes(" + repr(EVIL) + ")",
    "banner": "!!document.getElementById('weights-warning')",
    "bibtex": "document.querySelector('#bibtex pre').textContent.includes('@inproceedings{dinoqpm,')",
    "published_rows": "document.querySelectorAll('tr.pub').length",
    "sorted": """(() => {
        const t = document.querySelector('section[id^="s-cub"] table.sortable');
        const col = Array.from(t.tHead.rows[1].cells).findIndex(c => c.dataset.metric === 'accuracy');
        const order = () => Array.from(t.tBodies).map(b => b.dataset.method);
        const before = order();
        t.tHead.rows[1].cells[col].click();
        const up = order();
        t.tHead.rows[1].cells[col].click();
        const down = order();
        const pubWithOwner = Array.from(t.tBodies).every(b => b.rows.length === 1 ||
            b.rows[1].classList.contains('pub'));
        return {before, up, down, pubWithOwner};
    })()""",
}


@pytest.fixture(scope="module")
def page(tmp_path_factory):
    chromium_binary()  # fails (never skips) with the apt line when Chromium is missing
    tmp = tmp_path_factory.mktemp("html")
    recs = [
        record("linear-probe", 0, {"accuracy": ok(0.80), "plausibility": na()}, dataset="cub"),
        record("linear-probe", 1, {"accuracy": ok(0.84), "plausibility": na()}, dataset="cub"),
        record("dino-qpm", 0, {"accuracy": ok(0.86), "plausibility": ok(0.9)}, dataset="cub"),
        record(EVIL, 0, {"accuracy": ok(0.10), "plausibility": ok(0.2)}, dataset="cub"),
        record("broken", 0, dataset="cub", status="failed", error=EVIL),
    ]
    out = tmp / "out"
    write_leaderboard(store_with(tmp, recs), out, ["html"])
    return tmp, out / "leaderboard.html"


@pytest.mark.browser
def test_page_in_chromium(page):
    tmp, html = page
    rep = open_page(html, CHECKS, tmp)
    assert rep.errors == [], rep.errors
    v = rep.values
    assert v["tables"] == 3 and v["dataset_tables"] == 1          # cub, overall, published reference
    assert len(v["images"]) >= 2 and all(c and w > 0 for c, w in v["images"]), v["images"]
    assert v["scripts"] == 1 and v["evil_text"] is True and v["banner"] is True and v["bibtex"] is True
    assert v["published_rows"] >= 2   # linear-probe and dino-qpm have published CUB numbers
    s = v["sorted"]
    assert s["up"] == [EVIL, "linear-probe", "dino-qpm", "broken"]        # 0.10, 0.82, 0.86, no value last
    assert s["down"] == ["dino-qpm", "linear-probe", EVIL, "broken"]
    assert s["pubWithOwner"] is True


@pytest.mark.browser
def test_check_fails_on_broken_javascript_images_and_injection(page):
    """The same checks on a damaged copy of the page: each fault must be caught (the check can fail)."""
    tmp, html = page
    text = html.read_text()
    damaged = tmp / "damaged.html"
    text = text.replace("data:image/png;base64,", "data:image/png;base64,AAAA", 1)     # one broken image
    text = text.replace("</body>", "<script>undefinedFunction();</script>"            # an exception
                                   "<script>console.error('bad thing')</script>"        # a console error
                                   "<img src=x onerror=alert(5)></body>")                # an injected handler
    damaged.write_text(text)
    rep = open_page(damaged, {"images": CHECKS["images"]}, tmp)
    assert any("undefinedFunction" in e for e in rep.errors), rep.errors
    assert any("bad thing" in e for e in rep.errors), rep.errors
    assert any("dialog alert called: 5" in e for e in rep.errors), rep.errors
    assert not all(c and w > 0 for c, w in rep.values["images"])


def test_missing_chromium_fails_with_the_apt_line(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))   # no chromium on this PATH
    with pytest.raises(AssertionError) as e:
        chromium_binary()
    assert "apt-get install -y chromium" in str(e.value)
