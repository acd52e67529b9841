"""Test hooks for the crash, resume and concurrency tests (tests/reliability); inert unless their variables are set.

These are not user options. Each hook is one environment lookup at a few named points of a run:

* `XBENCH_TEST_CRASH_AT=PATTERN[#N]`: at the N-th point (default 1st) whose name matches the
  `fnmatch` PATTERN, the process kills itself with SIGKILL, as a pre-empted node or the OOM
  killer would (no `finally`, no atexit, no flush). Several alternatives: `A|B`.
* `XBENCH_TEST_EVENTS=FILE`: every point appends `<pid> <name>` to FILE (one O_APPEND write),
  so a test can count backbone chunks extracted and heads trained across processes.
* `XBENCH_TEST_CHUNK_SIZE=K`: items per chunk of new feature-cache entries (default 256), so that
  tiny test datasets span several chunks.

The points (names) are:

* `extract:batch:<dataset>/<split>/<view>:<first item>`: a batch of tokens written into the
  entry's arrays, before its chunk is marked done;
* `extract:chunk:<dataset>/<split>/<view>:<k>`: chunk k marked done (its `.done` file written);
* `fit:<method>:s<seed>`: a head trained, before it is saved;
* `head:<method>:s<seed>`: a head saved, before the job's record is written;
* `write:<file name>`: an atomic write whose temporary file is complete, before it is renamed
  into place (records, heads, cache metadata, chunk marks).
"""
from __future__ import annotations

import fnmatch
import os
import signal

_hits: dict[str, int] = {}

DEFAULT_CHUNK_SIZE = 256


def point(name: str) -> None:
    """A named point of a run: log it and crash here if the test asked for it."""
    events = os.environ.get("XBENCH_TEST_EVENTS")
    if events:
        fd = os.open(events, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        try:
            os.write(fd, f"{os.getpid()} {name}\n".encode())
        finally:
            os.close(fd)
    spec = os.environ.get("XBENCH_TEST_CRASH_AT")
    if not spec:
        return
    for alt in spec.split("|"):
        pattern, _, nth = alt.partition("#")
        if fnmatch.fnmatchcase(name, pattern.strip()):
            _hits[alt] = _hits.get(alt, 0) + 1
            if _hits[alt] == int(nth or 1):
                os.kill(os.getpid(), signal.SIGKILL)


def chunk_size() -> int:
    """Items per chunk of new cache entries: `XBENCH_TEST_CHUNK_SIZE` or 256."""
    v = os.environ.get("XBENCH_TEST_CHUNK_SIZE")
    return int(v) if v and v.isdigit() and int(v) > 0 else DEFAULT_CHUNK_SIZE
