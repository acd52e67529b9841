"""What Slurm says about our tasks, and which xbench job went to which Slurm task.

* `queue_states()` asks `squeue` (which works on every cluster, with or without an accounting
  database) for the state of this user's tasks, array elements expanded ("123_4"), completed ones
  included while the controller still remembers them (MinJobAge); `sacct` is only a fallback for
  the final state of a task the controller has forgotten.
* `Ledger` is `<results>/slurm/jobs.json`: job id -> {slurm_id, logs, submitted}. It is
  read-modify-written under the results store's `.lock` and replaced atomically, so two submitters
  never lose each other's entries; a job whose Slurm task is still pending or running is not
  submitted again.
"""
from __future__ import annotations

import json
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from ..atomic import atomic_write_json
from ..results import ResultsStore

ACTIVE = {"PENDING", "RUNNING", "CONFIGURING", "COMPLETING", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED",
          "RESIZING", "SUSPENDED", "STAGE_OUT", "SIGNALING", "STOPPED", "RESV_DEL_HOLD", "POWER_UP_NODE"}


@dataclass(frozen=True)
class TaskState:
    state: str          # Slurm's state name (PENDING, RUNNING, COMPLETED, FAILED, TIMEOUT, ...)
    reason: str = ""    # squeue's reason (e.g. Resources, Dependency, JobArrayTaskLimit)

    @property
    def active(self) -> bool:
        return self.state.split()[0].rstrip("+") in ACTIVE


def parse_squeue(text: str) -> dict[str, TaskState]:
    """`squeue -h -r -t all -o '%i|%T|%r'` output -> {task id: state}; pending ranges ('12_[3-5]') expanded."""
    out: dict[str, TaskState] = {}
    for line in text.splitlines():
        parts = line.strip().split("|")
        if len(parts) < 2 or not parts[0]:
            continue
        tid, state = parts[0], parts[1].strip()
        reason = parts[2].strip() if len(parts) > 2 and parts[2].strip() not in ("None", "(null)") else ""
        for one in expand_ids(tid):
            out[one] = TaskState(state, reason)
    return out


def expand_ids(tid: str) -> list[str]:
    """'12_[3-5,7%2]' -> ['12_3', '12_4', '12_5', '12_7']; '12_4' and '12' unchanged."""
    if "_[" not in tid:
        return [tid]
    main, rest = tid.split("_[", 1)
    rest = rest.rstrip("]").split("%")[0]
    ids = []
    for part in rest.split(","):
        if "-" in part:
            lo, hi = part.split("-")
            ids.extend(f"{main}_{i}" for i in range(int(lo), int(hi) + 1))
        elif part:
            ids.append(f"{main}_{int(part)}")
    return ids


def queue_states() -> dict[str, TaskState]:
    """This user's Slurm tasks known to the controller (active and recently finished)."""
    try:
        text = subprocess.run(["squeue", "--me", "-h", "-r", "-t", "all", "-o", "%i|%T|%r"], check=True,
                              capture_output=True, text=True, timeout=120).stdout
    except (OSError, subprocess.SubprocessError):
        return {}
    return parse_squeue(text)


def sacct_state(task_id: str) -> str | None:
    """Final state from the accounting database, or None where there is none (no slurmdbd)."""
    try:
        text = subprocess.run(["sacct", "-n", "-P", "-X", "-o", "JobID,State", "-j", task_id], check=True,
                              capture_output=True, text=True, timeout=120).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    for line in text.splitlines():
        parts = line.split("|")
        if len(parts) >= 2 and parts[0] == task_id:
            return parts[1].strip()
    return None


class Ledger:
    """`<results>/slurm/jobs.json`: which Slurm task runs (or ran) which xbench job."""

    def __init__(self, store: ResultsStore):
        self.store = store
        self.path = Path(store.root) / "slurm" / "jobs.json"

    def read(self) -> dict[str, dict]:
        try:
            data = json.loads(self.path.read_text())
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    def add(self, entries: dict[str, dict]) -> None:
        """Merge `entries` (job id -> {slurm_id, logs, ...}) into the ledger, under the store's lock."""
        with self.store.lock():
            data = self.read()
            stamp = time.strftime("%Y-%m-%dT%H:%M:%S")
            for job_id, e in entries.items():
                data[job_id] = {**e, "submitted": stamp}
            atomic_write_json(self.path, data)
