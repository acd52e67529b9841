"""Two `xbench run` processes on the same results folder and feature cache at once.

Both start together on six jobs (two probes x three seeds) and an empty cache. The per-entry cache
lock lets one process extract each entry while the other waits for it; the per-job lock lets one
process train each job while the other skips it (and waits for it at the end). Checked across both
processes through the test-hook event log (`XBENCH_TEST_EVENTS`, one line per point with the pid):
every job trained exactly once, every record written exactly once, every cache chunk extracted
exactly once; the records are all complete, parse, and hold the numbers of a serial run.
"""
from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

from rel_harness import base_env, cli, finish, metric_values, records, run_args, start, tiny_config

SEEDS = "0,1,2"
PARAMS = {"linear-probe": {"epochs": 40}, "linear-probe-patch": {"epochs": 40}}  # jobs long enough to overlap


def _args(tmp: Path, root: Path) -> list[str]:
    args = run_args(tmp, root / "results", root / "cache", extra=["--seeds", SEEDS])
    args[args.index("--config") + 1] = str(tiny_config(tmp, PARAMS, name="concurrent.json"))
    return args


def _lines(path: Path) -> list[tuple[int, str]]:
    return [(int(a), b) for a, b in (line.split(" ", 1) for line in path.read_text().splitlines())]


def test_two_runs_at_once_share_the_work(tmp_path):
    serial = tmp_path / "serial"
    r = cli(_args(tmp_path, serial))
    assert r.rc == 0, r.err

    shared = tmp_path / "shared"
    ev = tmp_path / "events.log"
    env = base_env(XBENCH_TEST_EVENTS=str(ev))
    a, b = start(_args(tmp_path, shared), env), start(_args(tmp_path, shared), env)
    ra, rb = finish(a), finish(b)
    assert ra.rc == 0 and rb.rc == 0, (ra.err, rb.err)

    lines = _lines(ev)
    assert len({pid for pid, _ in lines}) == 2  # both processes did some of the work
    names = [n for _, n in lines]
    fits = Counter(n for n in names if n.startswith("fit:"))
    assert fits == Counter({f"fit:{m}:s{s}": 1 for m in ("linear-probe", "linear-probe-patch") for s in (0, 1, 2)})
    writes = Counter(n for n in names if re.fullmatch(r"write:linear-probe.*__s\d__[0-9a-f]{16}\.json", n))
    assert len(writes) == 6 and set(writes.values()) == {1}
    chunks = Counter(n for n in names if n.startswith("extract:chunk:"))
    assert len(chunks) == 5 + 2 and set(chunks.values()) == {1}  # train 5 chunks, test 2, each once

    # the summaries add up: every job run by exactly one process, the other saw it complete
    def counts(err: str) -> tuple[int, int]:
        m = re.search(r"(\d+) job\(s\) run, (\d+) already complete, 0 failed", err)
        assert m, err
        return int(m.group(1)), int(m.group(2))

    (da, sa), (db, sb) = counts(ra.err), counts(rb.err)
    assert da + db == 6 and sa == 6 - da and sb == 6 - db

    recs = records(shared / "results")  # every file parses, no temporary file left
    assert len(recs) == 6 and all(r["status"] == "complete" for r in recs.values())
    assert metric_values(shared / "results") == metric_values(serial / "results")
