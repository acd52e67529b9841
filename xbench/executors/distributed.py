"""torch.distributed helpers: process groups over gloo (CPU) or nccl (CUDA), local spawning, launchers.

Choices:
* Backend: nccl when the processes use CUDA devices, gloo otherwise (CPU; also what the tests use).
* Local spawning (`spawn`) rendezvouses through a file in a fresh temporary folder (`file://`), so two
  runs on one machine never fight over a TCP port; launchers (torchrun, Slurm with submitit) use
  `env://` (MASTER_ADDR / MASTER_PORT / RANK / WORLD_SIZE).
* Processes start from a fork server (`mp_context`) that has imported torch and every registry
  once (`xbench.executors.preload`): each new process is a fork of that single-threaded,
  CUDA-free server, so it starts in a fraction of a second and still initialises CUDA itself.
  Where the platform has no fork server, plain spawn is used.
* A spawned process gets `cores // world` CPU threads (at least one) and, on CUDA, the GPU
  `rank % device_count`.
* An error a user can cause (`xbench.errors.UserError`) raised in a spawned process is re-raised in the
  parent with its type and one-line message; anything else surfaces as torch's ProcessRaisedException.
"""
from __future__ import annotations

import json
import multiprocessing
import os
import shutil
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any, Callable, Iterator

import torch
import torch.distributed as dist

from .. import errors

TIMEOUT = timedelta(minutes=30)


def cpu_cores() -> int:
    """CPU cores this process may use (the affinity mask where the OS has one)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - macOS
        return os.cpu_count() or 1


def threads_per_process(world: int) -> int:
    """`cores // world`, at least one: N processes on one machine divide its cores."""
    return max(1, cpu_cores() // max(1, int(world)))


def backend_for(device: torch.device | str) -> str:
    return "nccl" if torch.device(device).type == "cuda" else "gloo"


@dataclass(frozen=True)
class LaunchEnv:
    """Rank, world size and local rank given by a launcher (torchrun or Slurm)."""

    rank: int
    world: int
    local_rank: int


def launcher_env() -> LaunchEnv | None:
    """torchrun's RANK / WORLD_SIZE / LOCAL_RANK when set with a world above one, else None."""
    try:
        world = int(os.environ.get("WORLD_SIZE", "1"))
    except ValueError:
        return None
    if world <= 1 or "RANK" not in os.environ:
        return None
    return LaunchEnv(int(os.environ["RANK"]), world, int(os.environ.get("LOCAL_RANK", os.environ["RANK"])))


@contextmanager
def process_group(rank: int, world: int, backend: str, init_method: str = "env://") -> Iterator[None]:
    """Initialise the default process group for the body, destroy it afterwards."""
    dist.init_process_group(backend, init_method=init_method, rank=rank, world_size=world, timeout=TIMEOUT)
    try:
        yield
    finally:
        dist.destroy_process_group()


def world_info() -> tuple[int, int]:
    """(rank, world) of the default process group, (0, 1) without one."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def broadcast_object(obj: Any, src: int = 0) -> Any:
    """`obj` of rank `src` on every rank (identity without a process group)."""
    if not (dist.is_available() and dist.is_initialized()):
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]


def gather_objects(obj: Any) -> list[Any]:
    """Every rank's `obj`, in rank order, on every rank."""
    if not (dist.is_available() and dist.is_initialized()):
        return [obj]
    out: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out


def barrier() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def device_for_rank(device: torch.device | str, local_rank: int) -> torch.device:
    """The device a rank uses: its own GPU (local_rank modulo the visible count) on CUDA, else `device`."""
    device = torch.device(device)
    if device.type != "cuda":
        return device
    n = torch.cuda.device_count()
    if n == 0:
        raise errors.ConfigError("--device cuda: no CUDA device is visible; use --device cpu")
    idx = local_rank % n
    torch.cuda.set_device(idx)
    return torch.device("cuda", idx)


def check_devices(device: torch.device | str, world: int, what: str) -> None:
    """One GPU per rank: refuse `world` CUDA ranks on fewer visible GPUs (nccl cannot share one)."""
    device = torch.device(device)
    if device.type == "cuda" and world > 1 and torch.cuda.device_count() < world:
        raise errors.ConfigError(f"{what} {world} needs {world} visible GPUs, found {torch.cuda.device_count()}; "
                                 f"lower it or use --device cpu")


# spawning ------------------------------------------------------------------------------------------
PRELOAD = ["__main__", "xbench.executors.preload"]


def start_method() -> str:
    return "forkserver" if "forkserver" in multiprocessing.get_all_start_methods() else "spawn"


def mp_context():
    """The multiprocessing context for xbench's worker and rank processes (see the module docstring)."""
    ctx = multiprocessing.get_context(start_method())
    if start_method() == "forkserver":
        ctx.set_forkserver_preload(PRELOAD)
    return ctx


def spawn(fn: Callable[..., None], args: tuple, world: int) -> None:
    """Run `fn(rank, world, init_method, *args)` in `world` fresh processes inside one process group.

    `fn` must be a module-level function (it is pickled by reference). Returns when every process has
    finished; a UserError raised in any of them is raised here with the same type and message.
    """
    import torch.multiprocessing as mp

    tmp = Path(tempfile.mkdtemp(prefix="xbench-dist-"))
    init = f"file://{tmp / 'rendezvous'}"
    try:
        try:
            mp_context()
            mp.start_processes(_spawned, args=(fn, world, init, str(tmp), args), nprocs=world, join=True,
                               start_method=start_method())
        except Exception:
            for p in sorted(tmp.glob("user-error-*.json")):
                e = json.loads(p.read_text())
                raise getattr(errors, e["type"], errors.UserError)(e["message"]) from None
            raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _spawned(rank: int, fn: Callable[..., None], world: int, init: str, tmp: str, args: tuple) -> None:
    torch.set_num_threads(threads_per_process(world))
    try:
        fn(rank, world, init, *args)
    except errors.UserError as err:
        (Path(tmp) / f"user-error-{rank}.json").write_text(json.dumps({"type": type(err).__name__,
                                                                       "message": str(err)}))
        raise
