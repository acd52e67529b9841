"""`xbench run --workers N`: independent jobs in N worker processes on this machine.

Order of work:
1. the parent plans (same plan and job ids as the serial run), skips complete jobs, and extracts
   the features every pending job trains on (train/test plain views and the methods' extra
   views) once, before any worker starts; it then frees its backbone;
2. N worker processes (forked from xbench's fork server, `distributed.mp_context`: fresh,
   CUDA-free, with every registry imported) each build their own Runner and take
   jobs one at a time from the parent; a job runs exactly as in the serial run (`Runner.run_one`:
   per-job lock, atomic record), so records and heads are those of the serial run;
3. jobs another process was running ("busy") are retried at the end, waiting for their lock,
   as the serial runner does.

Devices: with several visible GPUs and `--device auto|cuda`, worker w sees only GPU w mod #GPUs
(CUDA_VISIBLE_DEVICES); with an explicit `--device cuda:K` every worker uses GPU K. On CPU each
worker uses the serial run's torch thread count (`--threads`, else torch's default in the parent),
not `cores // N`: float reductions depend on the thread count, and with the same count every job's
numbers are the serial run's (measured: with `cores // N` threads every head's training loss and most
metrics differed in the last digits, dino-qpm's by more). Progress bars are off in workers; the parent
prints one line per finished job.

A worker that dies (killed, out of memory) has its job recorded as failed with the exit code and
is replaced; a UserError in a worker (bad option, missing file) stops the pool: the jobs already
running finish, no new job starts, and the error is raised here with its one line.
"""
from __future__ import annotations

import os
from multiprocessing.connection import wait
from typing import Any

import torch

from ..config import RunConfig
from ..errors import UserError
from ..jobs import Job
from ..progress import say
from ..runner import Runner, RunSummary
from .distributed import mp_context
from .tasks import config_from_dict, prepare_features, record_failure, resolved_config


def gpu_assignment(device: str, workers: int, visible: int) -> list[str | None]:
    """CUDA_VISIBLE_DEVICES value per worker (None: leave it alone)."""
    if device not in ("auto", "cuda") or visible <= 1:
        return [None] * workers
    base = os.environ.get("CUDA_VISIBLE_DEVICES")
    ids = [s.strip() for s in base.split(",")] if base else [str(i) for i in range(visible)]
    return [ids[w % len(ids)] for w in range(workers)]


def run_pool(cfg: RunConfig) -> RunSummary:
    """Run the plan of `cfg` with `cfg.workers` worker processes; the summary matches the serial run's."""
    runner = Runner(cfg)
    jobs = runner.plan()
    runner.warn_ddp()
    runner.store.ensure_writable()
    summary = RunSummary(jobs=jobs)
    pending = []
    for job in jobs:
        rec = runner.store.get(job.job_id, redo_damaged=True, warn=False)  # damaged: run again (a worker warns)
        if rec is not None and rec.get("status") == "complete" and not runner.needed_metrics(job, rec) \
                and not cfg.force:
            summary.skipped.append(job.job_id)
        else:
            pending.append(job)
    n = max(1, min(int(cfg.workers), len(pending)))
    say(f"xbench: {len(jobs)} job(s), {len(pending)} to run on {n} worker process(es); backbone "
        f"{runner.backbone.name} (weights: {runner.backbone.weights_label}); profile {runner.profile}; "
        f"results in {runner.store.root}")
    if not pending:
        return summary
    datasets = list(dict.fromkeys(j.dataset for j in pending))
    methods = list(dict.fromkeys(j.method for j in pending))
    prepare_features(runner, datasets, methods)  # extraction happens once, before the pool
    visible = torch.cuda.device_count() if runner.device.type == "cuda" else 0
    del runner
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    threads = int(cfg.threads) or torch.get_num_threads()   # the serial run's count: the same numbers
    _Pool(resolved_config(cfg), n, gpu_assignment(cfg.device, n, visible), summary, threads).run(pending)
    order = {j.job_id: i for i, j in enumerate(jobs)}  # plan order, as the serial run reports them
    summary.done.sort(key=order.__getitem__)
    summary.skipped.sort(key=order.__getitem__)
    summary.failed.sort(key=lambda f: order[f[0]])
    return summary


class _Pool:
    """Parent side: hands out jobs over pipes, collects statuses, replaces dead workers."""

    def __init__(self, cfg: dict[str, Any], n: int, gpus: list[str | None], summary: RunSummary, threads: int):
        self.cfg, self.n, self.gpus, self.summary, self.threads = cfg, n, gpus, summary, threads
        self.ctx = mp_context()
        self.workers: dict[int, tuple[Any, Any]] = {}       # slot -> (process, connection)
        self.busy: dict[int, tuple[Job, bool]] = {}         # slot -> job in flight
        self.error: UserError | None = None
        self.total = 0
        self.finished = 0
        self.idle_deaths = 0

    def start(self, slot: int) -> None:
        parent, child = self.ctx.Pipe()
        p = self.ctx.Process(target=_worker, args=(self.cfg, self.gpus[slot], self.threads, child),
                             name=f"xbench-worker-{slot}", daemon=True)
        p.start()
        child.close()
        self.workers[slot] = (p, parent)

    def run(self, jobs: list[Job]) -> None:
        queue: list[tuple[Job, bool]] = [(j, False) for j in jobs]
        self.total = len(jobs)
        for slot in range(self.n):
            self.start(slot)
        try:
            while True:
                for slot in list(self.workers):
                    if slot not in self.busy and queue and self.error is None:
                        self.busy[slot] = queue.pop(0)
                        self.workers[slot][1].send(self.busy[slot])
                if not self.busy:
                    break
                if not self.workers:  # pragma: no cover - every worker gone with jobs in flight
                    break
                self._collect(queue)
        finally:
            for p, conn in self.workers.values():
                try:
                    conn.send(None)
                except (BrokenPipeError, OSError):
                    pass
            for p, conn in self.workers.values():
                p.join(timeout=30)
                if p.is_alive():  # pragma: no cover - a worker stuck after its last job
                    p.terminate()
        if self.error is not None:
            raise self.error

    def _collect(self, queue: list[tuple[Job, bool]]) -> None:
        by_conn = {conn: slot for slot, (p, conn) in self.workers.items()}
        by_sentinel = {p.sentinel: slot for slot, (p, conn) in self.workers.items()}
        for ready in wait(list(by_conn) + list(by_sentinel)):
            if ready in by_conn:
                slot = by_conn[ready]
                try:
                    msg = ready.recv()
                except (EOFError, OSError):
                    continue  # the worker died; its sentinel reports it
                self._done(slot, msg, queue)
            else:
                slot = by_sentinel[ready]
                if slot not in self.workers:
                    continue
                p, conn = self.workers[slot]
                while slot in self.busy:  # read what it sent before it exited
                    try:
                        if not conn.poll():
                            break
                        self._done(slot, conn.recv(), queue)
                    except (EOFError, OSError):
                        break
                p.join()
                del self.workers[slot]
                if slot in self.busy:
                    job, _ = self.busy.pop(slot)
                    reason = f"worker process exited with code {p.exitcode} while running the job"
                    record_failure(_store(self.cfg), job, reason)
                    self.summary.failed.append((job.job_id, reason))
                    self._line("FAILED", job, reason)
                else:
                    self.idle_deaths += 1
                    if self.idle_deaths > 2 * self.n:
                        raise RuntimeError(f"xbench worker processes keep exiting (last exit code {p.exitcode}) "
                                           f"before running a job; see the messages above")
                if queue and self.error is None:
                    self.start(slot)

    def _done(self, slot: int, msg: tuple, queue: list[tuple[Job, bool]]) -> None:
        job, blocking = self.busy.pop(slot)
        kind, payload = msg
        if kind == "user-error":
            self.error = self.error or payload
            return
        status = payload
        if status == "busy":
            queue.append((job, True))  # another process holds its lock: wait for it at the end
        elif status == "skipped":
            self.summary.skipped.append(job.job_id)
            self._line("skipped", job)
        elif status.startswith("failed"):
            reason = status[len("failed: "):]
            self.summary.failed.append((job.job_id, reason))
            self._line("FAILED", job, reason)
        else:
            self.summary.done.append(job.job_id)
            self._line("done", job)

    def _line(self, what: str, job: Job, reason: str = "") -> None:
        self.finished += 1
        say(f"[{self.finished}/{self.total}] {what} {job.label()}" + (f": {reason}" if reason else ""))


def _store(cfg: dict[str, Any]):
    from ..results import ResultsStore

    return ResultsStore(cfg["results"])


def _worker(cfg: dict[str, Any], gpu: str | None, threads: int, conn) -> None:
    """Worker process: build a Runner once, then run the jobs the parent sends until it sends None."""
    if gpu is not None:
        os.environ["CUDA_VISIBLE_DEVICES"] = gpu
    torch.set_num_threads(threads)
    runner = Runner(config_from_dict(cfg))
    runner.show_progress = False
    while True:
        try:
            item = conn.recv()
        except EOFError:
            return
        if item is None:
            return
        job, blocking = item
        try:
            conn.send(("status", runner.run_one(job, blocking=blocking)))
        except UserError as err:
            conn.send(("user-error", err))
