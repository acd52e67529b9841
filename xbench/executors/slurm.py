"""`xbench run --executor slurm`: feature extraction, then one Slurm array task per job (submitit).

Steps (on a login node whose filesystem the compute nodes share):
1. plan exactly as the local runner does, from the *resolved* config (absolute paths), so that
   every node re-plans the same jobs with the same ids;
2. leave out jobs whose record is complete (unless --force) and jobs whose Slurm task from an
   earlier submission is still pending or running (`<results>/slurm/jobs.json`);
3. if a dataset's training features are not cached yet, submit one extraction job per dataset
   (`extract_task`; with `extract_tasks: N`, N tasks of one job shard each cache entry over a
   torch.distributed group);
4. submit one array task per remaining job (`run_job_task(config, job_id, index, job)`), starting
   after the extraction jobs end (`afterany`: if an extraction fails, each job retries it under the
   cache entry's lock and records the failure itself), at most `array_parallelism` at once;
5. with `--wait`, follow the tasks (squeue every `poll` seconds, one status line per change); a task
   that ends without its function returning (time limit, out of memory, node failure, scancel) has
   its job recorded as failed with the Slurm state and the log path; then the leaderboard is printed.

Every task writes its record atomically under the store's lock and claims its job with the per-job
lock, so this composes with local runs and reruns on the same results folder.
"""
from __future__ import annotations

import argparse
import shutil
import time
from collections import Counter
from dataclasses import asdict
from pathlib import Path

from ..config import RunConfig
from ..errors import ConfigError
from ..jobs import Job
from ..progress import say
from ..results import ResultsStore
from ..runner import Runner, RunSummary
from .slurm_options import SlurmOptions
from .slurm_queue import Ledger, TaskState, queue_states, sacct_state
from .tasks import config_from_dict, extract_task, feature_views, record_failure, resolved_config, run_job_task


def run_slurm(cfg: RunConfig, args: argparse.Namespace | None = None) -> RunSummary | None:
    """Submit the plan of `cfg` to Slurm; with `--wait` follow it and return the summary, else None."""
    opts = SlurmOptions.from_mapping(cfg.slurm)
    if shutil.which("sbatch") is None or shutil.which("squeue") is None:
        raise ConfigError("--executor slurm: sbatch/squeue not found; run on a Slurm login node "
                          "(or use --executor local)")
    rcfg = resolved_config(cfg)
    runner = Runner(config_from_dict(rcfg))
    jobs = runner.plan()
    runner.warn_ddp()
    runner.store.ensure_writable()
    store = runner.store
    ledger = Ledger(store)
    known = ledger.read()
    states = queue_states()
    summary = RunSummary(jobs=jobs)
    todo: list[tuple[int, Job]] = []
    queued: dict[str, dict] = {}
    for i, job in enumerate(jobs):
        rec = store.get(job.job_id, redo_damaged=True)  # damaged: the job runs again
        if rec is not None and rec.get("status") == "complete" and not runner.needed_metrics(job, rec) \
                and not cfg.force:
            summary.skipped.append(job.job_id)
            continue
        entry = known.get(job.job_id)
        st = states.get(entry["slurm_id"]) if entry else None
        if st is not None and st.active:
            queued[job.job_id] = entry
        else:
            todo.append((i, job))
    logs = Path(opts.logs).expanduser().resolve() if opts.logs else store.root / "slurm" / "logs"
    say(f"xbench slurm: {len(jobs)} job(s): {len(summary.skipped)} complete, {len(queued)} already queued, "
        f"{len(todo)} to submit; backbone {runner.backbone.name}; results in {store.root}")
    submitted: dict[str, dict] = {}
    if todo:
        submitted = _submit(runner, rcfg, opts, logs, todo)
        ledger.add(submitted)
    following = {**queued, **submitted}
    wait = bool(getattr(args, "wait", False))
    if not wait:
        say(f"xbench slurm: logs in {logs}; follow with the same command plus --wait (nothing is submitted twice)")
        return None
    if not following:
        return summary
    by_id = {j.job_id: j for j in jobs}
    done, failed = follow(store, {k: (by_id[k], e) for k, e in following.items()}, opts.poll)
    summary.done.extend(done)
    summary.failed.extend(failed)
    return summary


def _submit(runner: Runner, rcfg: dict, opts: SlurmOptions, logs: Path, todo: list[tuple[int, Job]]) -> dict:
    import submitit

    logs.mkdir(parents=True, exist_ok=True)
    extract_ids = []
    for name in dict.fromkeys(j.dataset for _, j in todo):
        if _features_cached(runner, name, [j.method for _, j in todo if j.dataset == name]):
            continue
        ex = submitit.SlurmExecutor(folder=str(logs), max_num_timeout=0)
        ex.update_parameters(**opts.extract_parameters())
        job = ex.submit(extract_task, rcfg, [name])
        extract_ids.append(str(job.job_id))
        say(f"xbench slurm: feature extraction of {name} submitted as Slurm job {job.job_id}"
            + (f" ({opts.extract_tasks} tasks)" if opts.extract_tasks > 1 else ""))
    ex = submitit.SlurmExecutor(folder=str(logs), max_num_timeout=0)
    params = opts.job_parameters()
    if extract_ids:
        params["dependency"] = "afterany:" + ":".join(extract_ids)
    ex.update_parameters(**params)
    n = len(todo)
    tasks = ex.map_array(run_job_task, [rcfg] * n, [j.job_id for _, j in todo], [i for i, _ in todo],
                         [asdict(j) for _, j in todo])
    first = str(tasks[0].job_id).split("_")[0]
    say(f"xbench slurm: {n} job(s) submitted as Slurm array {first} (at most {opts.array_parallelism} at once)")
    return {j.job_id: {"slurm_id": str(t.job_id), "logs": str(logs)} for (_, j), t in zip(todo, tasks)}


def _features_cached(runner: Runner, dataset: str, methods: list[str]) -> bool:
    ds = runner.dataset(dataset)
    ex = runner.extractor
    return all(runner.cache.open(ex.key(ds, split, view), verify=False) is not None
               for split, view in feature_views(runner, ds, list(dict.fromkeys(methods))))


# following -------------------------------------------------------------------------------------------
def task_paths(entry: dict):
    """submitit's paths (result pickle, stdout, stderr) of a ledger entry's task."""
    from submitit.core.utils import JobPaths

    sid = entry["slurm_id"]
    return JobPaths(entry["logs"], job_id=sid, task_id=0)


def follow(store: ResultsStore, targets: dict[str, tuple[Job, dict]], poll: float,
           grace_s: float | None = None, states_fn=queue_states) -> tuple[list[str], list[tuple[str, str]]]:
    """Poll until every target's task has ended; returns (complete job ids, [(failed job id, reason)]).

    A task counts as ended when squeue no longer lists it as active. Its job is then complete or
    failed according to its record, provided the task's function returned (submitit's result file);
    a task that ended without that (killed) for longer than `grace_s` has its job recorded as failed.
    """
    grace = max(2 * poll, 10.0) if grace_s is None else grace_s
    resolved: dict[str, str] = {}
    reasons: dict[str, str] = {}
    gone_since: dict[str, float] = {}
    t0 = time.time()
    last_line = ""
    last_print = 0.0
    while True:
        states = states_fn()
        counts: Counter = Counter()
        for job_id, (job, entry) in targets.items():
            if job_id in resolved:
                counts[resolved[job_id]] += 1
                continue
            st: TaskState | None = states.get(entry["slurm_id"])
            if st is not None and st.active:
                counts[st.state.lower()] += 1
                continue
            verdict = _ended(store, job, entry, st, gone_since, grace)
            if verdict is None:
                counts["finishing"] += 1
                continue
            resolved[job_id], reason = verdict
            if reason:
                reasons[job_id] = reason
            counts[resolved[job_id]] += 1
        line = ", ".join(f"{counts[k]} {k}" for k in ("complete", "failed", "running", "pending", "finishing")
                         if counts[k])
        other = [f"{v} {k}" for k, v in counts.items() if k not in ("complete", "failed", "running", "pending",
                                                                       "finishing")]
        line = ", ".join([line] + other if line else other)
        now = time.time()
        if line != last_line or now - last_print > 300:
            say(f"xbench slurm: {len(targets)} job(s): {line} [{_elapsed(now - t0)}]")
            last_line, last_print = line, now
        if len(resolved) == len(targets):
            break
        time.sleep(poll)
    done = [k for k, v in resolved.items() if v == "complete"]
    failed = [(k, reasons.get(k, "failed")) for k, v in resolved.items() if v == "failed"]
    return done, failed


def _ended(store: ResultsStore, job: Job, entry: dict, st: TaskState | None, gone_since: dict,
           grace: float) -> tuple[str, str] | None:
    """(status, reason) of a job whose task is no longer active, or None while its files may still be arriving."""
    rec = store.get(job.job_id)
    paths = task_paths(entry)
    returned = paths.result_pickle.exists()
    if rec is not None and rec.get("status") == "complete":
        return "complete", ""
    if returned:
        if rec is not None:
            return "failed", rec.get("error", "failed")
        reason = f"Slurm task {entry['slurm_id']} finished without writing a record; see {paths.stdout}"
        record_failure(store, job, reason)
        return "failed", reason
    first = gone_since.setdefault(job.job_id, time.time())
    if time.time() - first < grace:
        return None
    state = st.state if st is not None else (sacct_state(entry["slurm_id"]) or "state unknown")
    reason = f"Slurm task {entry['slurm_id']} ended ({state}) before the job finished; see {paths.stderr}"
    record_failure(store, job, reason)
    return "failed", reason


def _elapsed(s: float) -> str:
    m, s = divmod(int(s), 60)
    return f"{m}m{s:02d}s" if m else f"{s}s"
