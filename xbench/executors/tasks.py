"""What a pool worker or a Slurm task runs: module-level functions, importable on every node.

They take the *resolved* configuration as a plain dict (`resolved_config`: absolute paths,
executor `local`, one worker), rebuild the Runner from it and re-plan; the same config gives the
same plan, hence the same job ids, on every node (the job id hashes the method parameters, the
dataset fingerprint, the backbone weights hash and the seed). A task always leaves a record: a job
that fails, or that cannot be found in the node's plan, is recorded as failed with the reason.
"""
from __future__ import annotations

import dataclasses
import os
import traceback
from pathlib import Path
from typing import Any

import torch

from ..cache import TokenStore
from ..config import RunConfig
from ..data.base import Dataset
from ..data.roots import cache_root, data_root
from ..errors import UserError
from ..jobs import Job
from ..progress import say
from ..registry import METHODS
from ..results import ResultsStore
from ..results import base_record, job_lock
from ..runner import Runner
from ..views import PlainView
from ..views.base import View


# the configuration a task receives ---------------------------------------------------------------
def resolved_config(cfg: RunConfig) -> dict[str, Any]:
    """`cfg` as a plain dict that means the same thing on another node (absolute paths, in-process)."""
    d = cfg.to_dict()
    d["results"] = str(Path(cfg.results).expanduser().resolve())
    d["cache"] = str(cache_root(cfg.cache).resolve())
    d["data_root"] = str(data_root(cfg.data_root).resolve())
    d["include"] = [str(Path(p).expanduser().resolve()) for p in cfg.include]
    d["datasets"] = [_absolute_dataset(n) for n in cfg.datasets]
    d["executor"] = "local"
    d["workers"] = 1
    return d


def _absolute_dataset(name: str) -> str:
    if name.startswith("folder:"):
        return "folder:" + str(Path(name[len("folder:"):]).expanduser().resolve())
    return name


def config_from_dict(d: dict[str, Any]) -> RunConfig:
    fields = {f.name for f in dataclasses.fields(RunConfig)}
    return RunConfig(**{k: v for k, v in d.items() if k in fields})


def node_threads() -> None:
    """Inside a Slurm task: use the CPUs Slurm gave it (SLURM_CPUS_PER_TASK), not every core of the node."""
    n = os.environ.get("SLURM_CPUS_PER_TASK")
    if n and n.isdigit() and int(n) > 0:
        torch.set_num_threads(int(n))


# features --------------------------------------------------------------------------------------------
def feature_views(runner: Runner, ds: Dataset, methods: list[str] | None = None) -> list[tuple[str, View]]:
    """The cached views training needs: train and test plain views, plus every method's `extra_views()`.

    Views that metrics ask for (interventions, noise, crops) are extracted when a job first needs
    them, under the cache entry's lock, so concurrent jobs never extract one twice.
    """
    from xbench.method_api import HeadInfo, parse_params

    out: list[tuple[str, View]] = [("train", PlainView()), ("test", PlainView())]
    seen = {("train", PlainView().key), ("test", PlainView().key)}
    bb = runner.backbone
    for m in methods if methods is not None else runner.method_names():
        cls = METHODS.get(m).obj
        params = parse_params(cls, runner.method_params(m))
        if views_from_params(cls):
            views = cls.views_for(params)
        else:   # a head that overrides extra_views() only (older plugins): built to ask it
            info = HeadInfo(num_classes=ds.num_classes, grid=bb.grid, dim=bb.embed_dim,
                            num_registers=bb.num_registers, backbone=bb.name, weights_hash=bb.weights_hash)
            views = cls(info, params).extra_views()
        for v in views.values():
            if ("train", v.key) not in seen:
                seen.add(("train", v.key))
                out.append(("train", v))
    return out


def views_from_params(cls: type) -> bool:
    """Whether `cls.views_for(params)` gives its training views without building the head: it defines
    `views_for` at the level that defines `extra_views`, or below (the base class defines both)."""
    def definer(name: str) -> type | None:
        return next((k for k in cls.__mro__ if name in vars(k)), None)

    ev, vf = definer("extra_views"), definer("views_for")
    return ev is not None and vf is not None and issubclass(vf, ev)


def prepare_features(runner: Runner, datasets: list[str], methods: list[str] | None = None, rank: int = 0,
                     world: int = 1) -> list[TokenStore]:
    """Extract every view of `feature_views` for `datasets` (sharded over `world` ranks when > 1)."""
    from .sharded_extract import extract_sharded

    stores = []
    for name in datasets:
        ds = runner.dataset(name)
        for split, view in feature_views(runner, ds, methods):
            if world > 1:
                stores.append(extract_sharded(runner.extractor, ds, split, view, rank, world))
            else:
                stores.append(runner.extractor.store(ds, split, view))
    return stores


def extract_task(cfg: dict[str, Any], datasets: list[str]) -> str:
    """Slurm extraction task: fill the feature cache of `datasets` before the job array starts.

    Submitted with several tasks (`slurm.extract_tasks` > 1), the tasks form one torch.distributed
    group (submitit's environment: MASTER_ADDR/PORT, RANK, WORLD_SIZE) and shard every entry.
    """
    node_threads()
    runner = Runner(config_from_dict(cfg))
    world = int(os.environ.get("SLURM_NTASKS", "1") or 1)
    if world <= 1:
        prepare_features(runner, datasets)
        return "extracted"
    import submitit

    from .distributed import backend_for, device_for_rank, process_group

    env = submitit.helpers.TorchDistributedEnvironment().export(set_cuda_visible_devices=False)
    runner.device = device_for_rank(runner.device, env.local_rank)
    runner.show_progress = runner.show_progress and env.rank == 0
    with process_group(env.rank, env.world_size, backend_for(runner.device)):
        prepare_features(runner, datasets, rank=env.rank, world=env.world_size)
    return f"extracted (rank {env.rank}/{env.world_size})"


# jobs ------------------------------------------------------------------------------------------------
def record_failure(store: ResultsStore, job: Job, reason: str, tb: str | None = None,
                   timeout_s: float = 600.0) -> bool:
    """Record `job` as failed with `reason`, unless it has a complete record; under the job's lock."""
    lock = job_lock(store, job.job_id)
    lock.acquire(timeout=timeout_s)
    try:
        prev = store.get(job.job_id, redo_damaged=True, warn=False)
        if prev is not None and prev.get("status") == "complete":
            return False
        rec = base_record(job, None, "unknown", {}, torch.device("cpu"))
        rec["status"] = "failed"
        rec["error"] = (reason.splitlines()[0] if reason else "unknown error")[:500]
        if tb:
            rec["traceback"] = tb[-4000:]
        store.put(rec)
        return True
    finally:
        lock.release()


def job_from_dict(d: dict[str, Any]) -> Job:
    d = dict(d)
    d["metrics"] = tuple(d.get("metrics", ()))
    return Job(**d)


def run_job_task(cfg: dict[str, Any], job_id: str, index: int, job: dict[str, Any] | None = None) -> str:
    """Run planned job number `index` (whose id must be `job_id`) of the plan of `cfg`; returns its status.

    `job` (the submitter's Job as a dict) lets the task record a failure even when it cannot plan.
    Already complete jobs are skipped; the job's lock is waited for (another process may hold it).
    """
    node_threads()
    store = ResultsStore(Path(cfg["results"]))
    known = job_from_dict(job) if job is not None else None
    try:
        runner = Runner(config_from_dict(cfg))
        plan = runner.plan()
        if 0 <= index < len(plan) and plan[index].job_id == job_id:
            target = plan[index]
        else:
            found = [j for j in plan if j.job_id == job_id]
            if not found:
                raise PlanMismatch(f"job {job_id} is not in this node's plan ({len(plan)} jobs): run every node "
                                   f"with the same xbench version, data and config")
            target = found[0]
        status = runner.run_one(target, blocking=True)
    except Exception as err:  # the task must leave a record; the other tasks go on
        reason = f"{type(err).__name__}: {err}" if not isinstance(err, UserError) else str(err)
        if known is not None:
            record_failure(store, known, reason, traceback.format_exc())
        say(f"xbench task: job {job_id} failed: {reason}")
        return f"failed: {reason}"
    return status


class PlanMismatch(RuntimeError):
    """The node's plan does not contain the submitted job id."""
