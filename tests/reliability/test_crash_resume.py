"""SIGKILL at chosen and at seeded-random points of `xbench run`, then the same command again.

The run: two linear probes on tiny synthbirds with the random tiny backbone, metrics accuracy and
stability (stability extracts a cached noisy copy of the test split while the second job is being
scored). The cache uses 8-item chunks (train 5 chunks, test 2, noise 2). Each case kills the run with
SIGKILL at one named point (`xbench/testhooks.py`), then reruns the same command and checks:

* the resumed run finishes (exit 0) with every metric value and every saved head tensor identical,
  bit for bit, to an uninterrupted run's;
* no job whose record was complete before the rerun is trained again (no `fit:` event for it, its
  record file untouched) and no cache chunk marked done before the rerun is extracted again (no
  `extract:chunk` event for it, its `.done` file untouched); over crash + rerun every chunk is
  extracted exactly once;
* right after the kill, every `records/*.json` is a whole valid record and every cache entry is
  complete-and-verified or partial (ignored), and `xbench leaderboard` builds from a store killed while
  writing a record; after the rerun no temporary file is left in `records/` and every cache entry is
  complete and verified.
"""
from __future__ import annotations

import json
import random
from collections import Counter
from pathlib import Path

import pytest
from rel_harness import (assert_cache_sound, assert_records_readable, base_env, cli, done_files, events,
                         head_tensors, metric_values, records, run_args)

METRICS = "accuracy,stability"


def _run(tmp: Path, root: Path, crash: str | None = None):
    ev = root / f"events-{len(list(root.glob('events-*')))}.log"
    env = base_env(XBENCH_TEST_EVENTS=str(ev))
    if crash:
        env["XBENCH_TEST_CRASH_AT"] = crash
    r = cli(run_args(tmp, root / "results", root / "cache", metrics=METRICS), env)
    return r, events(ev)


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("reference")
    r, ev = _run(tmp, tmp)
    assert r.rc == 0, r.err
    res = tmp / "results"
    return {"metrics": metric_values(res), "heads": head_tensors(res), "events": ev}


def _point_names(ev: list[str]) -> list[str]:
    """Each point as a crash spec `name#k` (k-th occurrence), in run order."""
    seen: Counter = Counter()
    out = []
    for name in ev:
        seen[name] += 1
        out.append(f"{name}#{seen[name]}")
    return out


def _chunk_events(ev: list[str]) -> list[str]:
    return [e for e in ev if e.startswith("extract:chunk:")]


def _leaderboard_reads_it(root: Path) -> None:
    """Killed while writing the second record: the leaderboard builds from what is complete, no traceback."""
    assert [p.name for p in (root / "results" / "records").iterdir() if p.name.startswith(".")]  # the temp file
    lb = cli(["leaderboard", "--results", str(root / "results")])
    assert lb.rc == 0, lb.err
    assert "| linear-probe |" in lb.out and "linear-probe-patch" not in lb.out


def _crash_and_resume(tmp: Path, reference: dict, crashes: list[str]) -> None:
    root = tmp / "run"
    root.mkdir()
    res, cache = root / "results", root / "cache"
    all_chunks: list[str] = []
    kills = 0
    for i, crash in enumerate(crashes):
        r, ev = _run(tmp, root, crash)
        all_chunks += _chunk_events(ev)
        if not r.killed and i > 0 and r.rc == 0:
            break  # a later point of a chain may belong to work an earlier rerun already finished
        assert r.killed, f"the run was not killed at {crash}: rc={r.rc}\n{r.err[-1500:]}"
        kills += 1
        # right after the kill: nothing a later reader would trust is half-written
        assert_records_readable(res)
        if cache.is_dir():
            assert_cache_sound(cache, complete=False)
        if crash == "write:linear-probe-patch__*.json":
            _leaderboard_reads_it(root)
    assert kills >= min(2, len(crashes)), f"only {kills} of the points {crashes} were reached"
    before_records = {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in (res / "records").glob("*.json")} \
        if (res / "records").is_dir() else {}
    complete_methods = {rec["method"] for _, data in before_records.values()
                        if (rec := json.loads(data))["status"] == "complete"}
    before_done = done_files(cache) if cache.is_dir() else {}
    done_chunks = set(all_chunks)

    r, ev = _run(tmp, root)
    assert r.rc == 0, r.err[-2000:]
    # identical results
    assert metric_values(res) == reference["metrics"]
    assert head_tensors(res) == reference["heads"]
    # no completed job recomputed, no completed chunk recomputed
    fitted = {e.split(":")[1] for e in ev if e.startswith("fit:")}
    assert not fitted & complete_methods, f"completed jobs trained again: {fitted & complete_methods}"
    for p, (mtime, data) in before_records.items():
        rec = json.loads(data)
        if rec["status"] == "complete":
            assert p.stat().st_mtime_ns == mtime and p.read_bytes() == data, f"{p} was rewritten"
    again = set(_chunk_events(ev)) & done_chunks
    assert not again, f"chunks extracted again: {sorted(again)}"
    for p, mtime in before_done.items():
        assert Path(p).stat().st_mtime_ns == mtime, f"{p} was rewritten"
    total = Counter(all_chunks + _chunk_events(ev))
    assert total == Counter(_chunk_events(reference["events"])), "every chunk is extracted exactly once"
    # nothing partial left
    records(res)  # every file parses; no leftover temporary file
    assert_cache_sound(cache, complete=True)


CHOSEN = [
    "extract:chunk:synthbirds/train/plain:2",           # extraction: three of five train chunks done
    "extract:batch:synthbirds/train/plain:8",           # extraction: half of chunk 1 written, not marked
    "write:meta.json#2",                                # the train entry's "complete" metadata, not renamed
    "fit:linear-probe-patch:s0",                        # training: the first job is complete
    "head:linear-probe:s0",                             # head saved, record not written
    "write:linear-probe__*.json",                       # writing the first record: temp file, not renamed
    "extract:batch:synthbirds/test/noise:4",            # the stability metric's noisy view, mid-chunk
    "write:linear-probe-patch__*.json",                 # writing the last record (+ the leaderboard reads the store)
]


@pytest.mark.parametrize("crash", CHOSEN)
def test_kill_at_a_chosen_point_then_resume(tmp_path, reference, crash):
    _crash_and_resume(tmp_path, reference, [crash])


def test_kill_at_seeded_random_points_then_resume(tmp_path, reference):
    """Three points drawn with a fixed seed from every point of the uninterrupted run, killed in turn (each
    rerun is killed at the next one), then one clean rerun."""
    points = _point_names(reference["events"])
    picks = sorted(random.Random(20240610).sample(range(len(points)), 3))
    _crash_and_resume(tmp_path, reference, [points[i] for i in picks])
