"""Slurm options: the `slurm:` mapping of a config file and the `--slurm-*` flags, checked once.

    slurm:
      partition: gpu
      time: "2:00:00"          # minutes, MM:SS, H:MM:SS, D-H, D-H:MM or D-H:MM:SS (Slurm's forms)
      gpus: 1                  # GPUs per task (each job is one task; match --ddp N with gpus: N)
      cpus: 8                  # CPUs per task (torch uses this many threads)
      mem: 32G                 # memory per task, as sbatch --mem takes it
      array_parallelism: 16    # array tasks running at once
      account: proj123         # optional: account, qos, constraint, exclude, comment
      setup: ["module load cuda", "source /path/venv/bin/activate"]   # lines run before the task
      logs: /shared/xbench-logs    # default: <results>/slurm/logs
      extract_tasks: 1         # >1: each dataset's features sharded over this many tasks of one job
      extract_time: "1:00:00"  # default: time
      additional: {reservation: myres}   # any other sbatch option
      poll: 30                 # --wait: seconds between two status checks

Command-line flags override the file (`--slurm-partition gpu --slurm-time 2:00:00 ...`).
"""
from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from typing import Any

from ..errors import ConfigError


@dataclass
class SlurmOptions:
    partition: str | None = None
    time: int = 60                        # minutes per job task
    gpus: int = 0                         # per task
    cpus: int = 1                         # per task
    mem: str | None = None
    array_parallelism: int = 64
    account: str | None = None
    qos: str | None = None
    constraint: str | None = None
    exclude: str | None = None
    comment: str | None = None
    job_name: str = "xbench"
    setup: list[str] = field(default_factory=list)
    logs: str | None = None
    extract_tasks: int = 1
    extract_time: int | None = None
    additional: dict[str, Any] = field(default_factory=dict)
    poll: float = 30.0

    @classmethod
    def from_mapping(cls, values: dict[str, Any] | None) -> "SlurmOptions":
        values = {str(k).replace("-", "_"): v for k, v in (values or {}).items() if v is not None}
        names = {f.name for f in dataclasses.fields(cls)}
        for k in values:
            if k not in names:
                raise ConfigError(f"unknown slurm option {k!r} (valid: {', '.join(sorted(names))})")
        kw: dict[str, Any] = {}
        for k, v in values.items():
            if k in ("time", "extract_time"):
                kw[k] = parse_time(v, f"slurm {k}")
            elif k in ("gpus", "cpus", "array_parallelism", "extract_tasks"):
                kw[k] = _int(v, k, minimum=0 if k == "gpus" else 1)
            elif k == "poll":
                try:
                    kw[k] = float(v)
                except (TypeError, ValueError):
                    raise ConfigError(f"slurm poll={v!r}: give seconds, e.g. 30") from None
                if kw[k] <= 0:
                    raise ConfigError(f"slurm poll={v!r}: must be positive")
            elif k == "setup":
                kw[k] = [v] if isinstance(v, str) else [str(x) for x in v]
            elif k == "additional":
                if not isinstance(v, dict):
                    raise ConfigError("slurm additional: give a mapping of sbatch options, e.g. {reservation: r1}")
                kw[k] = dict(v)
            else:
                kw[k] = str(v)
        return cls(**kw)

    def job_parameters(self) -> dict[str, Any]:
        """submitit SlurmExecutor parameters of a job-array task (one task, `gpus` GPUs)."""
        p: dict[str, Any] = {"job_name": self.job_name, "time": self.time, "cpus_per_task": self.cpus,
                             "ntasks_per_node": 1, "nodes": 1, "array_parallelism": self.array_parallelism}
        if self.gpus:
            p["gpus_per_node"] = self.gpus
        self._common(p)
        return p

    def extract_parameters(self) -> dict[str, Any]:
        """submitit parameters of an extraction job: `extract_tasks` tasks on one node, `gpus` GPUs each."""
        p: dict[str, Any] = {"job_name": f"{self.job_name}-extract", "time": self.extract_time or self.time,
                             "cpus_per_task": self.cpus, "ntasks_per_node": self.extract_tasks, "nodes": 1}
        if self.gpus:
            p["gpus_per_node"] = self.gpus * self.extract_tasks
        self._common(p)
        return p

    def _common(self, p: dict[str, Any]) -> None:
        for k in ("partition", "mem", "account", "qos", "constraint", "exclude", "comment"):
            if getattr(self, k):
                p[k] = getattr(self, k)
        if self.setup:
            p["setup"] = list(self.setup)
        if self.additional:
            p["additional_parameters"] = dict(self.additional)


def _int(v: Any, name: str, minimum: int) -> int:
    try:
        if isinstance(v, float) and not v.is_integer():
            raise ValueError
        i = int(v)
    except (TypeError, ValueError):
        raise ConfigError(f"slurm {name}={v!r}: give a whole number") from None
    if i < minimum:
        raise ConfigError(f"slurm {name}={v!r}: must be at least {minimum}")
    return i


_TIME = re.compile(r"^(?:(?P<d>\d+)-)?(?P<rest>\d+(?::\d+){0,2})$")


def parse_time(v: Any, where: str = "slurm time") -> int:
    """Slurm time limit -> whole minutes (seconds round up): 90, "90", "30:00" (MM:SS), "1:30:00",
    "2-0" (D-H), "2-12:30" (D-H:MM), "1-00:00:00"."""
    if isinstance(v, int) and not isinstance(v, bool):
        minutes = v
    else:
        s = str(v).strip()
        m = _TIME.match(s)
        if not m:
            raise ConfigError(f"{where}={v!r}: use minutes or Slurm's [D-]H:MM:SS form, e.g. 90 or 1:30:00")
        parts = [int(x) for x in m.group("rest").split(":")]
        days = int(m.group("d")) if m.group("d") else None
        if days is None:
            if len(parts) == 1:
                secs = parts[0] * 60
            elif len(parts) == 2:
                secs = parts[0] * 60 + parts[1]
            else:
                secs = parts[0] * 3600 + parts[1] * 60 + parts[2]
        else:
            hms = parts + [0] * (3 - len(parts))
            secs = days * 86400 + hms[0] * 3600 + hms[1] * 60 + hms[2]
        minutes = -(-secs // 60)
    if minutes < 1:
        raise ConfigError(f"{where}={v!r}: must be at least one minute")
    return int(minutes)
