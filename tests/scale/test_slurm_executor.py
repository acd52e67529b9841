"""The Slurm executor's parts that need no cluster: options, squeue parsing, node tasks, the follower."""
from __future__ import annotations

import argparse
import dataclasses
import pickle
from pathlib import Path

import pytest
from scale_tiny import one_thread, tiny_values  # noqa: F401 (autouse fixture)

from xbench.cli.run_cmd import add_parser, config_from_args
from xbench.config import build_config
from xbench.errors import ConfigError
from xbench.executors import slurm as slurm_mod
from xbench.executors.slurm import follow, run_slurm, task_paths
from xbench.executors.slurm_options import SlurmOptions, parse_time
from xbench.executors.slurm_queue import Ledger, TaskState, expand_ids, parse_squeue
from xbench.executors.tasks import config_from_dict, resolved_config, run_job_task
from xbench.results import ResultsStore
from xbench.runner import Runner


@pytest.mark.parametrize("text, minutes", [(90, 90), ("90", 90), ("30:00", 30), ("30:01", 31), ("1:30:00", 90),
                                           ("2-0", 2880), ("1-02:03", 1563), ("1-00:00:30", 1441)])
def test_slurm_time_forms(text, minutes):
    assert parse_time(text) == minutes


@pytest.mark.parametrize("bad", ["", "1h", "0", "1:2:3:4", "-5"])
def test_bad_slurm_time(bad):
    with pytest.raises(ConfigError, match="slurm time"):
        parse_time(bad)


def test_options_map_to_submitit_parameters():
    o = SlurmOptions.from_mapping({"partition": "gpu", "time": "2:00:00", "gpus": 2, "cpus": "8", "mem": "32G",
                                   "array-parallelism": 4, "setup": "source venv/bin/activate",
                                   "additional": {"reservation": "r1"}, "extract_tasks": 3})
    assert o.job_parameters() == {
        "job_name": "xbench", "time": 120, "cpus_per_task": 8, "ntasks_per_node": 1, "nodes": 1,
        "array_parallelism": 4, "gpus_per_node": 2, "partition": "gpu", "mem": "32G",
        "setup": ["source venv/bin/activate"], "additional_parameters": {"reservation": "r1"}}
    e = o.extract_parameters()
    assert e["ntasks_per_node"] == 3 and e["gpus_per_node"] == 6 and e["time"] == 120
    assert e["job_name"] == "xbench-extract" and "array_parallelism" not in e
    cpu = SlurmOptions.from_mapping({})
    assert "gpus_per_node" not in cpu.job_parameters() and cpu.time == 60 and cpu.cpus == 1
    with pytest.raises(ConfigError, match="unknown slurm option 'gpu'"):
        SlurmOptions.from_mapping({"gpu": 1})
    with pytest.raises(ConfigError, match="slurm cpus=0"):
        SlurmOptions.from_mapping({"cpus": 0})


def test_slurm_flags_override_the_config_file(tmp_path):
    cfg_file = tmp_path / "run.yaml"
    cfg_file.write_text("slurm:\n  partition: cpu\n  time: 30\n  mem: 8G\n")
    parser = argparse.ArgumentParser()
    add_parser(parser.add_subparsers())
    args = parser.parse_args(["run", "--config", str(cfg_file), "--executor", "slurm", "--slurm-partition", "gpu",
                              "--slurm-gpus", "1", "--slurm-array-parallelism", "8", "--wait"])
    cfg = config_from_args(args)
    assert cfg.executor == "slurm" and args.wait
    assert cfg.slurm == {"partition": "gpu", "time": 30, "mem": "8G", "gpus": 1, "array_parallelism": 8}


def test_squeue_output_is_parsed_and_ranges_expanded():
    text = "7_[2-4,6%2]|PENDING|JobArrayTaskLimit\n7_0|RUNNING|None\n7_1|COMPLETED|None\n8|TIMEOUT|TimeLimit\n"
    st = parse_squeue(text)
    assert set(st) == {"7_2", "7_3", "7_4", "7_6", "7_0", "7_1", "8"}
    assert st["7_3"] == TaskState("PENDING", "JobArrayTaskLimit") and st["7_3"].active
    assert st["7_0"].active and not st["7_1"].active and not st["8"].active
    assert st["7_0"].reason == ""
    assert expand_ids("12_4") == ["12_4"] and expand_ids("12") == ["12"]


def test_resolved_config_means_the_same_on_another_node(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cfg = build_config(cli_values={**tiny_values(Path("rel")), "workers": 3, "executor": "slurm",
                                   "datasets": "synthbirds"})
    d = resolved_config(cfg)
    assert d["results"] == str(tmp_path / "rel" / "results") and d["cache"] == str(tmp_path / "rel" / "cache")
    assert Path(d["data_root"]).is_absolute() and d["executor"] == "local" and d["workers"] == 1
    again = config_from_dict(d)
    assert dataclasses.asdict(again) == d  # a plain dict that round-trips


def test_node_task_runs_skips_and_records_a_plan_mismatch(tmp_path):
    cfg = build_config(cli_values=tiny_values(tmp_path, methods="linear-probe-patch", seeds="0,1"))
    d = resolved_config(cfg)
    jobs = Runner(config_from_dict(d)).plan()
    assert run_job_task(d, jobs[1].job_id, 1, dataclasses.asdict(jobs[1])) == "done"
    store = ResultsStore(tmp_path / "results")
    assert store.get(jobs[1].job_id)["status"] == "complete" and store.get(jobs[0].job_id) is None
    store = ResultsStore(tmp_path / "results")
    assert run_job_task(d, jobs[1].job_id, 0, None) == "skipped"  # found by id when the index is off
    # a task on a warm cache opens the sealed entries with a stat: one pass over train (pooling), one over test
    from xbench.views import PlainView

    r = Runner(config_from_dict(d))
    ds = r.dataset("synthbirds")
    split = {s: r.extractor.store(ds, s, PlainView()).nbytes for s in ("train", "test")}
    assert run_job_task(d, jobs[0].job_id, 0, dataclasses.asdict(jobs[0])) == "done"
    assert store.get(jobs[0].job_id)["io"]["total"]["bytes_read"] == split["train"] + split["test"]
    # the submitter planned a job the node does not know (other data, other version): recorded as failed
    other = dataclasses.replace(jobs[0], seed=99)
    status = run_job_task(d, other.job_id, 0, dataclasses.asdict(other))
    assert status.startswith("failed: PlanMismatch: job ") and "not in this node's plan" in status
    rec = store.get(other.job_id)
    assert rec["status"] == "failed" and "not in this node's plan" in rec["error"] and rec["seed"] == 99


def test_follower_reads_records_and_records_killed_tasks(tmp_path):
    cfg = build_config(cli_values=tiny_values(tmp_path, methods="linear-probe-patch", seeds="0,1,2"))
    d = resolved_config(cfg)
    jobs = Runner(config_from_dict(d)).plan()
    store = ResultsStore(tmp_path / "results")
    logs = tmp_path / "logs"
    logs.mkdir()
    entries = {j.job_id: {"slurm_id": f"5_{i}", "logs": str(logs)} for i, j in enumerate(jobs)}
    # task 5_0 ran and returned; task 5_1 returned after its job failed; task 5_2 was killed (time limit)
    assert run_job_task(d, jobs[0].job_id, 0, dataclasses.asdict(jobs[0])) == "done"
    from xbench.executors.tasks import record_failure

    record_failure(store, jobs[1], "RuntimeError: boom")
    for e in list(entries.values())[:2]:
        task_paths(e).result_pickle.write_bytes(pickle.dumps(("success", "done")))
    calls = []

    def states():
        calls.append(1)
        if len(calls) == 1:  # first look: everything still running
            return {e["slurm_id"]: TaskState("RUNNING") for e in entries.values()}
        return {"5_0": TaskState("COMPLETED"), "5_1": TaskState("COMPLETED"), "5_2": TaskState("TIMEOUT")}

    done, failed = follow(store, {j.job_id: (j, entries[j.job_id]) for j in jobs}, poll=0.01, grace_s=0.0,
                          states_fn=states)
    assert done == [jobs[0].job_id]
    assert dict(failed)[jobs[1].job_id] == "RuntimeError: boom"
    killed = dict(failed)[jobs[2].job_id]
    assert killed.startswith("Slurm task 5_2 ended (TIMEOUT) before the job finished; see ")
    assert store.get(jobs[2].job_id)["status"] == "failed" and "TIMEOUT" in store.get(jobs[2].job_id)["error"]
    assert len(calls) == 2


def test_ledger_merges_entries(tmp_path):
    store = ResultsStore(tmp_path)
    ledger = Ledger(store)
    ledger.add({"a": {"slurm_id": "1_0", "logs": "L"}})
    ledger.add({"b": {"slurm_id": "2", "logs": "L"}})
    data = ledger.read()
    assert data["a"]["slurm_id"] == "1_0" and data["b"]["slurm_id"] == "2" and "submitted" in data["a"]


def test_slurm_executor_needs_sbatch(tmp_path, monkeypatch):
    monkeypatch.setattr(slurm_mod.shutil, "which", lambda name: None)
    cfg = build_config(cli_values=tiny_values(tmp_path, executor="slurm"))
    with pytest.raises(ConfigError, match="sbatch/squeue not found"):
        run_slurm(cfg)
