"""A real Slurm run: `xbench run --executor slurm --wait` on the single-node Slurm of scripts/ci_slurm.sh.

    bash scripts/ci_slurm.sh && pytest -m slurm tests/scale

Tiny synthbirds, the random-weight test backbone, both linear probes and 2 seeds, plus a probe
method that fails (seed 0) or hangs until the test cancels its Slurm task (seed 1). Checks: one
extraction job (2 tasks forming a gloo group) then one array task per job; the failed job and the cancelled task are recorded
as failed with their reasons while the others complete; the leaderboard built from the store
equals the local executor's; a second submission leaves complete jobs out.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from xbench.executors.slurm_queue import Ledger, queue_states
from xbench.leaderboard.markdown import render_markdown
from xbench.leaderboard.tables import build_tables
from xbench.results import ResultsStore

pytestmark = pytest.mark.slurm

PROBE = '''
import time
from torch import nn
from xbench.explanation import Explanation
from xbench.methods.base import Method
from xbench.registry import register_method


@register_method("hang-probe", provides={"logits"})
class HangProbe(Method):
    """Fails with seed 0; with seed 1 trains forever (its Slurm task gets cancelled)."""

    def __init__(self, info, params=None):
        super().__init__(info, params)
        self.linear = nn.Linear(info.dim, info.num_classes)

    def fit(self, data, ctx):
        if ctx.seed == 0:
            raise RuntimeError("hang-probe fails with seed 0")
        time.sleep(900)

    def explain(self, batch):
        return Explanation(logits=self.linear(batch.tokens.cls))
'''

CONFIG = """\
datasets: [synthbirds]
metrics: [accuracy]
backbone: dinov2-tiny-test
weights: random
device: cpu
seeds: [0, 1]
loader_workers: 0
batch_size: 8
dataset_options:
  synthbirds: {num_classes: 4, train_per_class: 5, test_per_class: 2, resolution: 64}
params:
  linear-probe: {epochs: 4, batch_size: 8}
  linear-probe-patch: {epochs: 4, batch_size: 8}
slurm:
  time: 10
  cpus: 1
  array_parallelism: 2
  poll: 2
  extract_tasks: 2
"""
LINEAR = "linear-probe,linear-probe-patch"


def _slurm_ready() -> None:
    if shutil.which("sinfo") is None or shutil.which("sbatch") is None:
        pytest.fail("no Slurm here: run `bash scripts/ci_slurm.sh` first (it installs and starts a single-node Slurm)")
    out = subprocess.run(["sinfo", "-h", "-o", "%t"], capture_output=True, text=True).stdout.split()
    if not any(s in ("idle", "mix", "alloc") for s in out):
        pytest.fail(f"the Slurm node is not up (sinfo: {out}); run `bash scripts/ci_slurm.sh`")


def _xbench(args: list[str]) -> list[str]:
    return [sys.executable, "-m", "xbench", *args]


def _linear_tables(results: Path) -> str:
    recs = [r for r in ResultsStore(results).records() if r["method"] in LINEAR.split(",")]
    return render_markdown(build_tables(recs))


def test_slurm_executor_end_to_end(tmp_path):
    _slurm_ready()
    cfg = tmp_path / "run.yaml"
    cfg.write_text(CONFIG)
    probe = tmp_path / "probe.py"
    probe.write_text(PROBE)
    env = {k: v for k, v in os.environ.items() if k not in ("XBENCH_QUIET",)}
    env["TQDM_DISABLE"] = "1"
    slurm_results = tmp_path / "slurm-results"
    common = ["run", "--config", str(cfg), "--cache", str(tmp_path / "cache"), "--data-root", str(tmp_path / "data")]
    cmd = _xbench(common + ["--methods", LINEAR + ",hang-probe", "--include", str(probe), "--results",
                            str(slurm_results), "--executor", "slurm", "--wait"])
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=tmp_path)
    try:
        # cancel the hanging job's task once Slurm runs it: the follower must record it as failed
        store = ResultsStore(slurm_results)
        deadline = time.time() + 240
        hang_id = None
        while time.time() < deadline and proc.poll() is None:
            entries = Ledger(store).read()
            hang = [e["slurm_id"] for k, e in entries.items() if k.startswith("hang-probe__") and "__s1__" in k]
            if hang and queue_states().get(hang[0]) and queue_states()[hang[0]].state == "RUNNING":
                hang_id = hang[0]
                time.sleep(3)  # let it reach fit()
                subprocess.run(["scancel", hang_id], check=True)
                break
            time.sleep(1)
        assert hang_id is not None, "the hang-probe task never ran"
        out, err = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 1, err  # two jobs failed
    assert "feature extraction of synthbirds submitted as Slurm job" in err and "(2 tasks)" in err
    assert "6 job(s) submitted as Slurm array" in err
    assert "xbench slurm: 6 job(s): 4 complete, 2 failed" in err
    recs = {r["job_id"]: r for r in ResultsStore(slurm_results).records()}
    assert len(recs) == 6
    status = {(r["method"], r["seed"]): (r["status"], r.get("error", "")) for r in recs.values()}
    for m in LINEAR.split(","):
        assert status[(m, 0)][0] == status[(m, 1)][0] == "complete"
    assert status[("hang-probe", 0)] == ("failed", "RuntimeError: hang-probe fails with seed 0")
    assert status[("hang-probe", 1)][0] == "failed"
    assert f"Slurm task {hang_id} ended (CANCELLED" in status[("hang-probe", 1)][1]
    assert len(Ledger(store).read()) == 6
    assert "| linear-probe |" in out and "| linear-probe-patch |" in out

    # the local executor on the same cache: same records, same leaderboard
    local_results = tmp_path / "local-results"
    local = subprocess.run(_xbench(common + ["--methods", LINEAR, "--results", str(local_results)]),
                           capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300)
    assert local.returncode == 0, local.stderr
    lrecs = {r["job_id"]: r for r in ResultsStore(local_results).records()}
    assert len(lrecs) == 4
    for job_id, lr in lrecs.items():
        sr = recs[job_id]  # same plan, same job ids
        assert sr["status"] == lr["status"] == "complete"
        assert sr["metrics"]["accuracy"]["value"] == pytest.approx(lr["metrics"]["accuracy"]["value"], rel=1e-6)
        assert sr["training"]["final_loss"] == pytest.approx(lr["training"]["final_loss"], rel=1e-5)
    assert _linear_tables(slurm_results) == _linear_tables(local_results)

    # submitting again: complete jobs are left out, features are not extracted again
    again = subprocess.run(_xbench(common + ["--methods", LINEAR, "--results", str(slurm_results), "--executor",
                                             "slurm", "--wait"]),
                           capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300)
    assert again.returncode == 0, again.stderr
    assert "4 job(s): 4 complete, 0 already queued, 0 to submit" in again.stderr
    assert "submitted" not in again.stderr
    logs = slurm_results / "slurm" / "logs"
    assert any(logs.glob("*_result.pkl")), json.dumps(sorted(p.name for p in logs.iterdir()))
