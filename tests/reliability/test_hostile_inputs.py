"""Hostile inputs: crafted archives, pickled checkpoints, strings in results files.

Archives: `tests/data/test_archive_safety.py` covers the crafted tar and zip members one by one (`..`,
absolute paths, symbolic and hard links out of the folder, link chains) at the library level. Here:
the same refusal through `xbench data fetch` end to end (checksum-pinned archive from a local mirror),
a FIFO member, and a destination that already holds a link pointing outside.

Checkpoints: a `.pth` whose pickle runs code on load (`__reduce__`) given as `--weights`, and a saved
head replaced by such a pickle, must not run it (the marker file it would create never appears) and end
in one line; a source scan keeps every loader on the safe side (`torch.load(..., weights_only=True)`,
safetensors, no pickle / marshal / unsafe YAML / `allow_pickle=True`).

Strings from results files: every string field of a record (method, dataset, backbone, weights, metric
names, reasons, errors, parameters, provenance) holds HTML, LaTeX, Markdown, CSV and terminal specials;
the HTML page gets no foreign tag or attribute, the LaTeX file no unescaped special, the Markdown no raw
tag, link or control character and keeps its table shape, the plots stay inside `plots/`.
"""
from __future__ import annotations

import ast
import csv
import hashlib
import io
import json
import os
import re
import sys
import tarfile
from html.parser import HTMLParser
from pathlib import Path

import pytest
import torch
from rel_harness import cli, run_args

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
sys.path.insert(0, str(HERE.parent / "data"))
sys.path.insert(0, str(HERE.parent / "leaderboard"))
from fixtures_cub import make_cub  # noqa: E402
from fixtures_http import FileServer  # noqa: E402

from xbench.data.archive import safe_extract  # noqa: E402
from xbench.errors import DataError  # noqa: E402


# archives ----------------------------------------------------------------------------------------------------
def _tar(members: list[tuple[str, bytes | None, str]]) -> bytes:
    """members: (name, data, kind) with kind file | fifo | sym:<target>."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        for name, data, kind in members:
            info = tarfile.TarInfo(name)
            if kind == "file":
                info.size = len(data or b"")
                tf.addfile(info, io.BytesIO(data or b""))
            elif kind == "fifo":
                info.type = tarfile.FIFOTYPE
                tf.addfile(info)
            else:
                info.type, info.linkname = tarfile.SYMTYPE, kind[4:]
                tf.addfile(info)
    return buf.getvalue()


def test_fetch_refuses_a_crafted_archive_end_to_end(tmp_path):
    src = tmp_path / "src"
    make_cub(src, n_classes=2, per_class=2)
    good = io.BytesIO()
    with tarfile.open(fileobj=good, mode="w:gz") as tf:
        tf.add(src / "CUB_200_2011", arcname="CUB_200_2011")
        evil = b"pwned"
        info = tarfile.TarInfo("CUB_200_2011/../../escaped.txt")
        info.size = len(evil)
        tf.addfile(info, io.BytesIO(evil))
    blob = good.getvalue()
    root = tmp_path / "data"
    with FileServer({"CUB_200_2011.tgz": blob}) as srv:
        r = cli(["data", "fetch", "cub", "--data-root", str(root), "--mirror", srv.url, "--quiet",
                 "--sha256", f"CUB_200_2011.tgz={hashlib.sha256(blob).hexdigest()}"])
    lines = [line for line in r.err.splitlines() if line.strip()]
    assert r.rc == 2 and len(lines) == 1, r.err
    assert "refusing to extract an unsafe archive" in lines[0] and "'..' component" in lines[0]
    assert not (tmp_path / "escaped.txt").exists() and not (root.parent / "escaped.txt").exists()
    assert not (root / "CUB_200_2011").exists()  # nothing extracted, not even the safe members
    assert not [p for p in root.rglob("*") if ".xbench-extract" in p.name]


def test_fifo_member_is_refused(tmp_path):
    arc = tmp_path / "fifo.tar.gz"
    arc.write_bytes(_tar([("ok.txt", b"ok", "file"), ("pipe", None, "fifo")]))
    with pytest.raises(DataError, match="member 'pipe': device or FIFO"):
        safe_extract(arc, tmp_path / "target")
    assert not list((tmp_path / "target").iterdir())


def test_existing_link_in_the_destination_is_replaced_not_followed(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    target = tmp_path / "target"
    target.mkdir()
    os.symlink(outside, target / "data")  # left there by someone else, pointing out of the folder
    arc = tmp_path / "a.tar.gz"
    arc.write_bytes(_tar([("data/new.txt", b"new", "file")]))
    safe_extract(arc, target)
    assert list(outside.iterdir()) == []
    assert not (target / "data").is_symlink() and (target / "data" / "new.txt").read_bytes() == b"new"


# checkpoints ---------------------------------------------------------------------------------------------------
class _Payload:
    """Unpickling this runs `open(marker, 'w')`."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def _malicious_pth(path: Path, marker: Path) -> Path:
    torch.save({"pos_embed": torch.zeros(1, 1, 32), "payload": _Payload(marker)}, path)
    # the file really does run code when unpickled without weights_only (checked on a copy of the marker path)
    probe = marker.with_name(marker.name + ".probe")
    torch.save({"payload": _Payload(probe)}, path.with_suffix(".probe"))
    torch.load(path.with_suffix(".probe"), weights_only=False)
    assert probe.exists()
    probe.unlink()
    return path


def test_pickled_weights_are_not_executed(tmp_path):
    marker = tmp_path / "PWNED"
    pth = _malicious_pth(tmp_path / "evil.pth", marker)
    args = run_args(tmp_path, tmp_path / "results", tmp_path / "cache", methods="linear-probe")
    args[args.index("--weights") + 1] = str(pth)
    r = cli(args)
    lines = [line for line in r.err.splitlines() if line.strip()]
    assert r.rc == 2 and len(lines) == 1 and str(pth) in lines[0] and "could not be read" in lines[0], r.err
    assert not marker.exists()


def test_pickled_head_is_not_executed(tmp_path):
    """A complete job's saved head replaced by a pickle: adding a metric loads the head, which is refused."""
    res = tmp_path / "results"
    r = cli(run_args(tmp_path, res, tmp_path / "cache", methods="linear-probe-patch"))
    assert r.rc == 0, r.err
    (head,) = list((res / "heads").glob("*/head.safetensors"))
    marker = tmp_path / "PWNED"
    torch.save({"linear.weight": _Payload(marker)}, head)  # a pickle where a safetensors file belongs
    r = cli(run_args(tmp_path, res, tmp_path / "cache", methods="linear-probe-patch", metrics="accuracy,sid@5"))
    lines = [line for line in r.err.splitlines() if line.strip()]
    assert r.rc == 2 and len(lines) == 1 and str(head.parent) in lines[0] and "unreadable" in lines[0], r.err
    assert not marker.exists()


UNSAFE = "unsafe loader"


def _unsafe_calls(path: Path) -> list[str]:
    """Calls that could unpickle or evaluate data: pickle/marshal/dill/joblib/shelve loads, torch.load without
    weights_only=True, numpy loads with allow_pickle=True, yaml.load / unsafe_load / full_load."""
    out = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if not isinstance(node, ast.Call) or not isinstance(node.func, ast.Attribute):
            continue
        base = node.func.value.id if isinstance(node.func.value, ast.Name) else ""
        attr = node.func.attr
        kw = {k.arg: k.value for k in node.keywords}

        def true(name: str) -> bool:
            v = kw.get(name)
            return isinstance(v, ast.Constant) and v.value is True

        bad = (
            (base in ("pickle", "cPickle", "dill", "marshal", "shelve", "joblib", "cloudpickle") and "load" in attr)
            or (base == "torch" and attr == "load" and not true("weights_only"))
            or (base in ("np", "numpy") and attr in ("load", "loadtxt") and true("allow_pickle"))
            or (base == "yaml" and attr in ("load", "unsafe_load", "full_load", "load_all"))
        )
        if bad:
            out.append(f"{path.relative_to(REPO)}:{node.lineno}: {base}.{attr}")
    return out


def test_no_unsafe_loader_in_the_sources():
    files = [p for d in ("xbench", "methods", "metrics") for p in (REPO / d).rglob("*.py")]
    assert len(files) > 50
    found = [c for p in files for c in _unsafe_calls(p)]
    assert found == []


def test_the_source_scan_finds_unsafe_loaders(tmp_path):
    p = REPO / "xbench" / "_scan_probe_never_committed.py"
    p.write_text("import pickle, torch, numpy as np, yaml\npickle.loads(b'')\ntorch.load('x')\n"
                 "torch.load('x', weights_only=False)\ntorch.load('x', weights_only=True)\n"
                 "np.load('x', allow_pickle=True)\nnp.load('x')\nyaml.load('x')\nyaml.safe_load('x')\n")
    try:
        found = _unsafe_calls(p)
    finally:
        p.unlink()
    assert [f.split(": ")[1] for f in found] == ["pickle.loads", "torch.load", "torch.load", "np.load", "yaml.load"]


# strings from results files ----------------------------------------------------------------------------------------
EVIL = ("<script>alert(1)</script><img src=x onerror=alert(2)> \" ' ` \\input{/etc/passwd} $x$ & % # _ ^ ~ { } "
        "| [a](javascript:alert(3)) =HYPERLINK(\"x\") \x1b[2J\x07 \u202e")


def _hostile_store(tmp: Path):
    from lb_records import err, na, ok, record, store_with

    recs = []
    for seed in (0, 1):
        recs.append(record(
            "m" + EVIL, seed, {"accuracy": ok(0.5 + seed / 10), "x" + EVIL: ok(0.25), "stability": na("r" + EVIL),
                               "sid@5": err("e" + EVIL)},
            dataset="d" + EVIL, backbone="b" + EVIL, weights="w" + EVIL, weights_kind="file",
            weights_hash="h" + EVIL, profile="p" + EVIL, params={"k" + EVIL: "v" + EVIL}, date="t" + EVIL,
            commit="c" + EVIL, hardware={"cpu": "u" + EVIL, "cpu_count": 2, "device": "v" + EVIL,
                                         "platform": "o" + EVIL}))
    recs.append(record("gradcam", 0, {"accuracy": ok(0.4)}, dataset="d" + EVIL, backbone="b" + EVIL,
                       weights="w" + EVIL, weights_kind="file", weights_hash="h" + EVIL, profile="p" + EVIL))
    recs.append(record("f" + EVIL, 0, status="failed", error="E" + EVIL, dataset="d" + EVIL, backbone="b" + EVIL,
                       weights="w" + EVIL, weights_kind="file", weights_hash="h" + EVIL, profile="p" + EVIL))
    return store_with(tmp, recs)


class _Tags(HTMLParser):
    def __init__(self):
        super().__init__()
        self.tags: list[tuple[str, list[tuple[str, str | None]]]] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, attrs))


@pytest.fixture(scope="module")
def hostile_board(tmp_path_factory):
    from xbench.leaderboard.build import parse_formats, write_leaderboard

    tmp = tmp_path_factory.mktemp("hostile")
    store = _hostile_store(tmp)
    out = tmp / "out"
    files = write_leaderboard(store, out, parse_formats("md,tex,csv,json,html"))
    return tmp, out, files


def test_html_has_no_foreign_tag_or_attribute(hostile_board):
    _, out, _ = hostile_board
    page = (out / "leaderboard.html").read_text()
    p = _Tags()
    p.feed(page)
    tags = {t for t, _ in p.tags}
    assert "img" in tags  # the page's own embedded plots ...
    for tag, attrs in p.tags:
        assert tag != "script" or attrs == [], attrs  # ... and its one inline script
        for name, value in attrs:
            assert not name.startswith("on"), (tag, name)
            assert not (value or "").strip().lower().startswith("javascript:"), (tag, name, value)
            if tag == "img" and name == "src":
                assert value.startswith("data:image/png;base64,"), value[:40]
    assert sum(1 for t, _ in p.tags if t == "script") == 1
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page


def test_latex_has_no_unescaped_special(hostile_board):
    _, out, _ = hostile_board
    tex = (out / "leaderboard.tex").read_text()
    assert r"\input{/etc" not in tex and "$x$" not in tex and "\x1b" not in tex
    # every copy of the hostile text is the escaped one
    from xbench.leaderboard.escape import esc_tex

    assert esc_tex("m" + EVIL) in tex
    assert tex.count("passwd") == tex.count(r"\textbackslash{}input\{/etc/passwd\}")


def test_markdown_has_no_raw_tag_link_or_control_character(hostile_board):
    _, out, _ = hostile_board
    md = (out / "leaderboard.md").read_text()
    assert not re.search(r"(?<!\\)<(script|img)", md)
    assert not re.search(r"(?<!\\)\[a(?<!\\)\]\(javascript", md)
    assert not re.search(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]", md), "control characters reach the terminal / file"
    for block in re.findall(r"(?m)^(\|.*\|\n)+", md + "\n"):
        rows = [r for r in block.splitlines() if r]
        widths = {len(re.findall(r"(?<!\\)\|", r)) for r in rows}
        assert len(widths) == 1, rows


def test_terminal_leaderboard_strips_control_characters(hostile_board):
    tmp, _, _ = hostile_board
    r = cli(["leaderboard", "--results", str(tmp / "results")])
    assert r.rc == 0, r.err
    assert "\x1b" not in r.out and "\x07" not in r.out and "| m" in r.out


def test_csv_and_json_keep_the_text_and_defuse_formulas(hostile_board):
    _, out, _ = hostile_board
    rows = list(csv.DictReader(io.StringIO((out / "leaderboard.csv").read_text())))
    methods = {r["method"] for r in rows}
    assert "m" + EVIL in methods
    assert all(not (v or "").startswith(("=", "+", "-", "@")) for r in rows for k, v in r.items()
               if k not in ("mean", "std", "n", "best", "published_raw"))
    data = json.loads((out / "leaderboard.json").read_text())

    def strings(o):
        if isinstance(o, dict):
            for k, v in o.items():
                yield k
                yield from strings(v)
        elif isinstance(o, list):
            for v in o:
                yield from strings(v)
        elif isinstance(o, str):
            yield o

    assert "m" + EVIL in set(strings(data))  # JSON keeps the exact text (its own escaping)


def test_plot_files_stay_inside_plots(hostile_board):
    _, out, files = hostile_board
    for f in files:
        assert Path(f).resolve().is_relative_to(out.resolve())
        rel = Path(f).resolve().relative_to(out.resolve())
        assert len(rel.parts) <= 2 and all(re.fullmatch(r"[A-Za-z0-9_.@-]+", part) for part in rel.parts), rel
