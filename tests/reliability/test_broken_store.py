"""A damaged results store or feature cache.

Results records (`records/*.json`): truncated, garbage bytes, or written by a newer xbench.
* `xbench leaderboard` refuses the store with one line naming the file (exit 2) and writes nothing;
* `xbench run` treats a truncated or garbage record of a job it is about to run as no record: one
  warning line naming the file, the job runs again and the record is replaced (same numbers);
* `xbench run` stops at a newer record with one line naming it (exit 2), before any work, and
  leaves it byte for byte.

Cache entries: `patch.npy` truncated, `index.npz` deleted, `meta.json` garbage, a value of `reg.npy`
altered in the second chunk, a chunk mark emptied. Each is detected by the entry's checks and re-extracted
(only what is damaged: the event log of the test hooks lists the chunks extracted), and the repaired
arrays are byte-identical to the originals.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from rel_harness import base_env, cache_digest, cli, done_files, events, metric_values, records, run_args


@pytest.fixture(scope="module")
def pristine(tmp_path_factory):
    """A results store (two complete jobs) and its cache, never modified by the tests."""
    tmp = tmp_path_factory.mktemp("pristine")
    r = cli(run_args(tmp, tmp / "results", tmp / "cache"))
    assert r.rc == 0, r.err
    return tmp


def _copy(pristine: Path, tmp: Path) -> tuple[Path, Path]:
    shutil.copytree(pristine / "results", tmp / "results")
    shutil.copytree(pristine / "cache", tmp / "cache")
    return tmp / "results", tmp / "cache"


def _record_of(results: Path, method: str) -> Path:
    (p,) = [p for p in (results / "records").glob("*.json") if json.loads(p.read_text())["method"] == method] \
        if method != "?" else []
    return p


def _damage(p: Path, how: str) -> None:
    if how == "truncated":
        p.write_bytes(p.read_bytes()[: p.stat().st_size // 2])
    elif how == "garbage":
        p.write_bytes(b"\x89PNG\r\n\x1a\n\xff\xfe" + bytes(range(256)))
    elif how == "newer":
        rec = json.loads(p.read_text())
        rec["schema"] = 99
        p.write_text(json.dumps(rec))


def _one_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    return lines[0]


# results records ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("how,says", [("truncated", "is truncated or not JSON"),
                                      ("garbage", "is truncated or not JSON"),
                                      ("newer", "has schema 99, newer than this xbench understands (1)")])
def test_leaderboard_names_a_damaged_record(tmp_path, pristine, how, says):
    res, _ = _copy(pristine, tmp_path)
    bad = _record_of(res, "linear-probe-patch")
    _damage(bad, how)
    r = cli(["leaderboard", "--results", str(res)])
    assert r.rc == 2 and r.out == ""
    line = _one_line(r.err)
    assert line.startswith("xbench: error: results record ") and str(bad) in line and says in line
    out = tmp_path / "board"
    r = cli(["leaderboard", "--results", str(res), "--out", str(out), "--no-plots", "--gallery", "0"])
    assert r.rc == 2 and str(bad) in _one_line(r.err)
    assert not out.exists() or not any(out.iterdir())  # nothing written


@pytest.mark.parametrize("how", ["truncated", "garbage"])
def test_run_redoes_a_damaged_record_of_its_job(tmp_path, pristine, how):
    res, cache = _copy(pristine, tmp_path)
    bad = _record_of(res, "linear-probe-patch")
    other = _record_of(res, "linear-probe")
    other_mtime = other.stat().st_mtime_ns
    _damage(bad, how)
    ev = tmp_path / "events.log"
    r = cli(run_args(tmp_path, res, cache), base_env(XBENCH_TEST_EVENTS=str(ev)))
    assert r.rc == 0, r.err
    warning = [line for line in r.err.splitlines() if "warning" in line]
    assert len(warning) == 1 and str(bad) in warning[0] and "running job" in warning[0], r.err
    assert "1 job(s) run, 1 already complete, 0 failed" in r.err
    assert [e for e in events(ev) if e.startswith("fit:")] == ["fit:linear-probe-patch:s0"]
    assert other.stat().st_mtime_ns == other_mtime
    assert metric_values(res) == metric_values(pristine / "results")  # records() also parses every file


def test_run_stops_at_a_newer_record_and_keeps_it(tmp_path, pristine):
    res, cache = _copy(pristine, tmp_path)
    newer = _record_of(res, "linear-probe-patch")
    _damage(newer, "newer")
    other = _record_of(res, "linear-probe")
    other.unlink()  # the other job is pending: the run must not start it either
    before = newer.read_bytes()
    ev = tmp_path / "events.log"
    r = cli(run_args(tmp_path, res, cache), base_env(XBENCH_TEST_EVENTS=str(ev)))
    line = _one_line(r.err)
    assert r.rc == 2 and line.startswith("xbench: error: results record ") and str(newer) in line
    assert "newer than this xbench" in line and "upgrade xbench" in line
    assert newer.read_bytes() == before
    assert [p.name for p in (res / "records").iterdir()] == [newer.name]
    assert not [e for e in events(ev) if e.startswith(("fit:", "extract:", "write:"))]


def test_run_leaderboard_skips_a_damaged_record_of_another_job_with_a_warning(tmp_path, pristine):
    res, cache = _copy(pristine, tmp_path)
    bad = _record_of(res, "linear-probe-patch")
    _damage(bad, "truncated")
    args = [a for a in run_args(tmp_path, res, cache, methods="linear-probe") if a != "--no-leaderboard"]
    r = cli(args)
    assert r.rc == 0, r.err
    warning = [line for line in r.err.splitlines() if "warning" in line]
    assert len(warning) == 1 and "skipped" in warning[0] and str(bad) in warning[0]
    assert "| linear-probe |" in r.out and "linear-probe-patch" not in r.out


# cache entries -------------------------------------------------------------------------------------------------
def _entry(cache: Path, split: str, view: str = "plain") -> Path:
    (d,) = [p.parent for p in cache.glob("*/meta.json")
            if (m := json.loads(p.read_text()))["split"] == split and m["view"].startswith(view)]
    return d


def _alter_reg(d: Path) -> None:
    a = np.load(d / "reg.npy", mmap_mode="r+")
    a[9, 0, 0] = a[9, 0, 0] + np.float16(1.0)  # item 9: chunk 1
    a.flush()
    del a


DAMAGE = {
    # how, split, what the rerun must extract again (chunk events)
    "patch-truncated": (lambda d: (d / "patch.npy").write_bytes((d / "patch.npy").read_bytes()[:1000]), "test",
                        ["extract:chunk:synthbirds/test/plain:0", "extract:chunk:synthbirds/test/plain:1"]),
    "index-deleted": (lambda d: (d / "index.npz").unlink(), "train", []),
    "index-garbage": (lambda d: (d / "index.npz").write_bytes(b"PK\x03\x04" + b"\0" * 40), "train", []),
    "meta-garbage": (lambda d: (d / "meta.json").write_text('{"status": "compl'), "test",
                     ["extract:chunk:synthbirds/test/plain:0", "extract:chunk:synthbirds/test/plain:1"]),
    "reg-altered": (_alter_reg, "train", ["extract:chunk:synthbirds/train/plain:1"]),
    "done-emptied": (lambda d: (d / "chunks" / "3.done").write_text(""), "train",
                     ["extract:chunk:synthbirds/train/plain:3"]),
}


@pytest.mark.parametrize("case", sorted(DAMAGE))
def test_damaged_cache_entry_is_detected_and_reextracted(tmp_path, pristine, case):
    damage, split, expect = DAMAGE[case]
    _, cache = _copy(pristine, tmp_path)
    digest = cache_digest(cache)
    entry = _entry(cache, split)
    damage(entry)
    others = {p: t for p, t in done_files(cache).items() if not p.startswith(str(entry))}
    ev = tmp_path / "events.log"
    # a new seed: new jobs, which read the cache (the complete ones of the store would be skipped)
    r = cli(run_args(tmp_path, tmp_path / "results2", cache, extra=["--seeds", "1"]),
            base_env(XBENCH_TEST_EVENTS=str(ev)))
    assert r.rc == 0, r.err
    assert [e for e in events(ev) if e.startswith("extract:chunk:")] == expect
    assert cache_digest(cache) == digest  # re-extracted to the same bytes
    for p, t in others.items():
        assert Path(p).stat().st_mtime_ns == t  # other entries untouched
    assert all(rec["status"] == "complete" for rec in records(tmp_path / "results2").values())
