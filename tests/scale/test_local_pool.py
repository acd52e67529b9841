"""`--workers N`: jobs in worker processes give the serial run's records; a dying worker's job is recorded."""
from __future__ import annotations

import numpy as np
import pytest
from safetensors.torch import load_file
from scale_tiny import one_thread, tiny_values  # noqa: F401 (autouse fixture)

from xbench.config import build_config
from xbench.errors import ConfigError
from xbench.executors.local_pool import gpu_assignment, run_pool
from xbench.results import ResultsStore
from xbench.runner import Runner

PLUGIN = '''
import os
from torch import nn
from xbench.errors import ConfigError
from xbench.explanation import Explanation
from xbench.methods.base import Method
from xbench.registry import register_method


@register_method("crash-probe", provides={"logits"})
class CrashProbe(Method):
    """Kills its own process while training (a worker that dies)."""

    def __init__(self, info, params=None):
        super().__init__(info, params)
        self.linear = nn.Linear(info.dim, info.num_classes)

    def fit(self, data, ctx):
        os._exit(3)

    def explain(self, batch):
        return Explanation(logits=self.linear(batch.tokens.cls))


@register_method("thread-probe", provides={"logits"})
class ThreadProbe(CrashProbe):
    """Records the torch thread count it trains with."""

    def fit(self, data, ctx):
        import torch
        return {"threads": torch.get_num_threads()}


@register_method("config-error-probe", provides={"logits"})
class ConfigErrorProbe(CrashProbe):
    """Raises an error a user can fix while training."""

    def fit(self, data, ctx):
        raise ConfigError("config-error-probe: the user must fix this")
'''


@pytest.fixture(scope="module")
def plugin(tmp_path_factory):
    """One plugin file for the module (a method name registers once per process)."""
    path = tmp_path_factory.mktemp("plugin") / "probes.py"
    path.write_text(PLUGIN)
    return path


def test_gpu_assignment(monkeypatch):
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    assert gpu_assignment("auto", 3, 2) == ["0", "1", "0"]      # one GPU per worker, round robin
    assert gpu_assignment("cuda", 2, 4) == ["0", "1"]
    assert gpu_assignment("cuda:1", 2, 4) == [None, None]       # an explicit device is shared
    assert gpu_assignment("auto", 2, 1) == [None, None]         # one GPU (or none): nothing to split
    assert gpu_assignment("cpu", 2, 4) == [None, None]
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "4,6")
    assert gpu_assignment("auto", 3, 2) == ["4", "6", "4"]      # the ids this process was given


def split_bytes(runner: Runner, split: str) -> int:
    from xbench.views import PlainView

    return runner.extractor.store(runner.dataset("synthbirds"), split, PlainView()).nbytes


def test_pool_gives_the_serial_records_and_records_a_dead_worker(tmp_path, plugin):
    serial = Runner(build_config(cli_values=tiny_values(tmp_path / "serial", seeds="0,1", methods="linear-probe")))
    s1 = serial.run()
    pool_values = tiny_values(tmp_path / "pool", seeds="0,1", methods="linear-probe,crash-probe", workers=2,
                              include=[str(plugin)])
    pool_values["cache"] = str(tmp_path / "serial" / "cache")  # extraction happened once, in the serial run
    s2 = run_pool(build_config(cli_values=pool_values))
    assert s2.done == s1.done and len(s2.done) == 2 and not s2.skipped  # plan order, as the serial run
    assert [r for _, r in s2.failed] == ["worker process exited with code 3 while running the job"] * 2
    a = {r["job_id"]: r for r in ResultsStore(tmp_path / "serial" / "results").records()}
    b = {r["job_id"]: r for r in ResultsStore(tmp_path / "pool" / "results").records()}
    for job_id, ra in a.items():
        rb = b[job_id]
        assert rb["status"] == "complete"
        assert rb["metrics"]["accuracy"]["value"] == ra["metrics"]["accuracy"]["value"]
        assert rb["training"] == ra["training"]
        ha = load_file(str(tmp_path / "serial" / "results" / ra["head"] / "head.safetensors"))
        hb = load_file(str(tmp_path / "pool" / "results" / rb["head"] / "head.safetensors"))
        assert all(np.array_equal(ha[k].numpy(), hb[k].numpy()) for k in ha)  # bit for bit
        # a worker opens the sealed entries with a stat: it reads the train split once (the probe's pooling
        # pass) and the test split once (accuracy), and nothing else (no re-hash of any entry)
        assert rb["io"]["total"]["bytes_read"] == split_bytes(serial, "train") + split_bytes(serial, "test")
        assert rb["io"]["fit"]["bytes_read"] == split_bytes(serial, "train")
    crashed = [r for r in b.values() if r["method"] == "crash-probe"]
    assert len(crashed) == 2 and all(r["status"] == "failed" and "exited with code 3" in r["error"] for r in crashed)
    # everything complete: no worker is started, every job is reported as already complete
    again = run_pool(build_config(cli_values={**tiny_values(tmp_path / "serial", seeds="0,1", methods="linear-probe"),
                                              "workers": 2}))
    assert sorted(again.skipped) == sorted(s1.done) and not again.done


def test_a_user_error_in_a_worker_stops_the_pool_with_its_line(tmp_path, plugin):
    values = tiny_values(tmp_path, methods="config-error-probe", workers=2, include=[str(plugin)])
    with pytest.raises(ConfigError, match="config-error-probe: the user must fix this"):
        run_pool(build_config(cli_values=values))


def test_workers_train_with_the_serial_runs_thread_count(tmp_path, plugin):
    """Float reductions depend on the thread count: a worker uses the serial run's (the parent's, or --threads),
    not cores // N, so `--workers N` gives the serial numbers."""
    import torch

    torch.set_num_threads(3)                      # the serial run's count in this process (one_thread restores it)
    values = tiny_values(tmp_path / "a", methods="thread-probe", workers=2, include=[str(plugin)], seeds="0,1")
    run_pool(build_config(cli_values=values))
    assert [r["training"]["threads"] for r in ResultsStore(tmp_path / "a" / "results").records()] == [3, 3]
    values = tiny_values(tmp_path / "b", methods="thread-probe", workers=2, include=[str(plugin)], threads=2)
    run_pool(build_config(cli_values=values))
    assert [r["training"]["threads"] for r in ResultsStore(tmp_path / "b" / "results").records()] == [2]
    Runner(build_config(cli_values=tiny_values(tmp_path / "c", methods="thread-probe", include=[str(plugin)],
                                                threads=2))).run()
    assert [r["training"]["threads"] for r in ResultsStore(tmp_path / "c" / "results").records()] == [2]
