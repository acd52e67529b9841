"""Helpers for the reliability tests: tiny `xbench run` command lines and a fast way to run them as processes.

`cli(args, env)` runs `xbench <args>` (the console entry point's code, `xbench.cli.main`) in a fresh child
process forked from a multiprocessing fork server that has imported xbench and its registries once, so
each run costs well under a second of start-up instead of ~5 s of imports. The child is a real process:
the crash hook (`XBENCH_TEST_CRASH_AT`, see `xbench/testhooks.py`) kills it with SIGKILL, and its exit
status, stdout and stderr come back. `python_cli` runs `python -m xbench` for the few tests that need an
interpreter with its own environment from the start (plugins on PYTHONPATH).
"""
from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

TINY_SB = {"num_classes": 6, "train_per_class": 6, "test_per_class": 2, "resolution": 96}
FAST = {"linear-probe": {"epochs": 3}, "linear-probe-patch": {"epochs": 3}}
CHUNK = 8  # cache chunk size in these tests: train (36 images) = 5 chunks, test (12) = 2 chunks
PRELOAD = ["xbench.executors.preload", "xbench.cli", "xbench.cli.run_cmd", "xbench.runner"]

_CHILD = r"""
import os, sys
os.environ.clear()
os.environ.update(ENV)
out = os.open(OUT, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
err = os.open(ERR, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
os.dup2(out, 1)
os.dup2(err, 2)
os.chdir(CWD)
import torch
torch.set_num_threads(1)
from xbench.cli import main
try:
    rc = main(ARGS)
except SystemExit as e:
    rc = e.code if isinstance(e.code, int) else 1
except BaseException:
    import traceback
    traceback.print_exc()
    rc = 99
sys.stdout.flush()
sys.stderr.flush()
os._exit(rc)
"""


@dataclass
class Result:
    rc: int          # exit status; -9 when killed by SIGKILL
    out: str
    err: str

    @property
    def killed(self) -> bool:
        return self.rc == -signal.SIGKILL


def _context():
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(PRELOAD)
    return ctx


def base_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("XBENCH_TEST_")}
    env.update({"OMP_NUM_THREADS": "1", "XBENCH_TEST_CHUNK_SIZE": str(CHUNK)})
    env.update(extra)
    return env


def start(args: list[str], env: dict[str, str] | None = None, cwd: Path | None = None):
    """Start `xbench <args>` in a child process; returns (process, out path, err path)."""
    d = Path(tempfile.mkdtemp(prefix="xbench-rel-"))
    names = {"__name__": "__xbench_child__", "ENV": base_env() if env is None else dict(env), "OUT": str(d / "out"),
             "ERR": str(d / "err"), "CWD": str(cwd or d), "ARGS": list(args)}
    p = _context().Process(target=exec, args=(_CHILD, names), daemon=False)
    p.start()
    return p, d / "out", d / "err"


def finish(handle, timeout: float = 180) -> Result:
    p, out, err = handle
    p.join(timeout)
    try:
        if p.is_alive():
            p.kill()
            p.join()
            raise AssertionError(f"xbench did not finish in {timeout} s; stderr: {_read(err)[-2000:]}")
        return Result(int(p.exitcode), _read(out), _read(err))
    finally:
        shutil.rmtree(out.parent, ignore_errors=True)


def cli(args: list[str], env: dict[str, str] | None = None, timeout: float = 180, cwd: Path | None = None) -> Result:
    """Run `xbench <args>` in a child process and wait for it."""
    return finish(start(args, env, cwd), timeout)


def python_cli(args: list[str], env: dict[str, str] | None = None, timeout: float = 300,
               cwd: Path | None = None) -> Result:
    """`python -m xbench <args>` in a new interpreter (pays the imports; for environment-dependent tests)."""
    r = subprocess.run([sys.executable, "-m", "xbench", *args], capture_output=True, text=True,
                       env=base_env() if env is None else env, timeout=timeout, cwd=cwd)
    return Result(r.returncode, r.stdout, r.stderr)


def _read(p: Path) -> str:
    try:
        return p.read_text(errors="replace")
    except OSError:
        return ""


# tiny runs -----------------------------------------------------------------------------------------
def tiny_config(tmp: Path, params: dict | None = None, name: str = "tiny.json") -> Path:
    """A config file with the tiny synthbirds options and fast probe parameters."""
    p = tmp / name
    p.write_text(json.dumps({"dataset_options": {"synthbirds": TINY_SB},
                             "params": {**FAST, **(params or {})}}))
    return p


def run_args(tmp: Path, results: Path, cache: Path, methods: str = "linear-probe,linear-probe-patch",
             metrics: str = "accuracy", extra: list[str] | None = None) -> list[str]:
    return ["run", "--methods", methods, "--metrics", metrics, "--backbone", "dinov2-tiny-test",
            "--weights", "random", "--device", "cpu", "--results", str(results), "--cache", str(cache),
            "--config", str(tiny_config(tmp)), "--quiet", "--loader-workers", "0", "--batch-size", "4",
            "--no-leaderboard", *(extra or [])]


# what is on disk -----------------------------------------------------------------------------------
def records(results: Path) -> dict[str, dict]:
    """job_id -> record, every file under records/ parsed (a file that does not parse fails the test)."""
    out = {}
    for p in sorted((results / "records").iterdir()):
        assert not p.name.startswith("."), f"leftover temporary file {p}"
        assert p.suffix == ".json", f"unexpected file {p}"
        out[p.stem] = json.loads(p.read_text())
    return out


def metric_values(results: Path) -> dict[tuple[str, str], tuple[str, float | None]]:
    return {(jid, m): (e["status"], e["value"]) for jid, r in records(results).items()
            for m, e in r["metrics"].items()}


def head_tensors(results: Path) -> dict[str, dict[str, bytes]]:
    from safetensors.torch import load_file

    out = {}
    for jid, r in records(results).items():
        if r.get("head"):
            sd = load_file(str(results / r["head"] / "head.safetensors"))
            out[jid] = {k: v.numpy().tobytes() for k, v in sd.items()}
    return out


def mtimes(paths) -> dict[str, int]:
    return {str(p): p.stat().st_mtime_ns for p in paths}


def done_files(cache: Path) -> dict[str, int]:
    """Every chunk mark in the cache and its mtime (a recomputed chunk gets a new one)."""
    return mtimes(sorted(cache.glob("*/chunks/*.done")))


def cache_digest(cache: Path) -> dict[str, str]:
    """entry -> sha256 of its token arrays, for complete entries."""
    out = {}
    for meta_p in sorted(cache.glob("*/meta.json")):
        meta = json.loads(meta_p.read_text())
        if meta.get("status") != "complete":
            continue
        h = hashlib.sha256()
        for n in ("patch", "cls", "reg"):
            h.update((meta_p.parent / f"{n}.npy").read_bytes())
        out[f"{meta['split']}|{meta['view']}"] = h.hexdigest()
    return out


def events(path: Path) -> list[str]:
    """The test-hook points logged to `path` (XBENCH_TEST_EVENTS), without the pid."""
    if not path.exists():
        return []
    return [line.split(" ", 1)[1] for line in path.read_text().splitlines() if " " in line]


def assert_cache_sound(cache: Path, complete: bool) -> None:
    """Every cache entry is either complete and verified by a fresh cache, or partial and ignored by it
    (`open` returns None); with `complete`, every entry must be complete."""
    import numpy as np

    from xbench.cache import bad_chunks

    for entry in sorted(p for p in cache.iterdir() if p.is_dir()):
        if entry.name == "annotations":  # derived annotations (FunnyBirds unit masks), written atomically
            for f in entry.glob("[!.]*"):
                with np.load(f, allow_pickle=False) as z:
                    assert {"weights", "pixels", "valid"} <= set(z.files), f"{f} is not a whole mask file"
            continue
        try:
            meta = json.loads((entry / "meta.json").read_text())
        except (OSError, ValueError):
            assert not complete, f"{entry} has no readable meta.json"
            continue  # killed before its metadata was written: prepare() starts it afresh
        assert meta["status"] in ("partial", "complete"), entry
        if meta["status"] == "partial":
            assert not complete, f"{entry} is still partial"
            continue
        assert bad_chunks(entry, meta) == [], f"{entry} is marked complete but fails its checksums"


def assert_records_readable(results: Path) -> None:
    """Every `records/*.json` is a whole, valid record (what the leaderboard and a rerun read)."""
    from xbench.results import read_record

    d = results / "records"
    if d.is_dir():
        for p in d.glob("*.json"):
            read_record(p)
