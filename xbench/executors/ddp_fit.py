"""Head training with DistributedDataParallel (`xbench run --ddp N`, methods declaring `supports_ddp=True`).

`fit_ddp` spawns N processes (one per GPU with nccl; gloo on CPU, `cores // N` threads each) that
form one process group. Each rank rebuilds the head from the method name, its parameters and the
parent's *initial* state dict (so every rank, and the one-process run, start from the same
weights), re-opens the cached training tokens from the feature cache, seeds every generator with
the job's seed exactly as the runner does before `fit`, and calls `Method.fit(data, ctx)` with
`ctx.rank` / `ctx.world_size` set. What the method does with them is its own business (see
`FitContext.ddp`, `FitContext.global_mean`, `TrainData.batches(shard=...)` and docs/cluster.md);
a method without `supports_ddp` is never trained this way.

Rank 0 writes the trained state (safetensors, never pickle) and the fit log (JSON) into a
temporary folder; the parent loads them into its model and returns the log with `world_size`
added. With the linear probes, the result equals the one-process fit to floating-point rounding.
"""
from __future__ import annotations

import dataclasses
import json
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..cache import CacheKey, FeatureCache
from .distributed import backend_for, barrier, check_devices, device_for_rank, process_group, spawn


@dataclass
class DDPTrainSpec:
    """What a rank needs to rebuild the training data: cache entries (by key), labels, targets."""

    cache_root: str
    chunk_size: int
    train_key: CacheKey
    labels: np.ndarray
    num_classes: int
    targets: np.ndarray | None = None
    view_keys: dict[str, CacheKey] = field(default_factory=dict)
    include: list[str] = field(default_factory=list)
    gpu_resident_bytes: int | None = None


def fit_ddp(model: Any, spec: DDPTrainSpec, seed: int, device: torch.device, world: int,
            show_progress: bool = False) -> dict:
    """Train `model` in place on `world` ranks; returns rank 0's fit log plus `world_size`."""
    from safetensors.torch import load_file

    check_devices(device, world, "--ddp")
    out = Path(tempfile.mkdtemp(prefix="xbench-ddp-"))
    try:
        state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
        params = dataclasses.asdict(model.params) if dataclasses.is_dataclass(model.params) else dict(vars(model.params))
        payload = (model.spec.name, model.info, params, state, spec, int(seed), str(device), show_progress, str(out))
        spawn(_rank_main, payload, world)
        trained = load_file(str(out / "head.safetensors"))
        log = json.loads((out / "log.json").read_text())
        if isinstance(log, dict):  # what each rank read from the cache (opening entries included)
            log["io_per_rank"] = [json.loads((out / f"io-{r}.json").read_text()) for r in range(world)
                                  if (out / f"io-{r}.json").exists()]
    finally:
        shutil.rmtree(out, ignore_errors=True)
    model.prepare_load(trained)
    model.load_state_dict({k: v.to(device) for k, v in trained.items()}, strict=True)
    if isinstance(log, dict):
        log["world_size"] = int(world)
    return log


def _rank_main(rank: int, world: int, init: str, name: str, info: Any, params: dict, state: dict,
               spec: DDPTrainSpec, seed: int, device: str, show_progress: bool, out: str) -> None:
    from safetensors.torch import save_file

    from xbench.method_api import FitContext, TrainData, parse_params

    from ..atomic import atomic_save, atomic_write_json
    from ..registry import METHODS, include
    from ..device import seed_everything
    from ..results import _jsonable

    for path in spec.include:
        include(path)
    dev = device_for_rank(device, rank)
    from ..cache import IO

    io0 = IO.snapshot()
    with process_group(rank, world, backend_for(dev), init):
        cache = FeatureCache(spec.cache_root, chunk_size=spec.chunk_size)
        store = cache.open(spec.train_key)
        views = {k: cache.open(v) for k, v in spec.view_keys.items()}
        if store is None or any(v is None for v in views.values()):
            raise RuntimeError(f"rank {rank}: the cached training tokens in {spec.cache_root} are not complete")
        data = TrainData(store, spec.labels, spec.targets, spec.num_classes, dev, views,
                         gpu_resident_bytes=spec.gpu_resident_bytes)
        cls = METHODS.get(name).obj
        model = cls(info, parse_params(cls, params)).to(dev)
        model.prepare_load(state)
        model.load_state_dict(state, strict=True)
        ctx = FitContext(device=dev, seed=seed, show_progress=show_progress and rank == 0, world_size=world,
                         rank=rank)
        seed_everything(seed)
        model.train()
        log = model.fit(data, ctx) or {}
        model.eval()
        if rank == 0:
            trained = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
            atomic_save(Path(out) / "head.safetensors", lambda p: save_file(trained, p))
            atomic_write_json(Path(out) / "log.json", _jsonable(log))
        atomic_write_json(Path(out) / f"io-{rank}.json", IO.since(io0))
        barrier()
