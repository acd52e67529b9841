"""The core of the method interface: what the engine hands a head and how its parameters are read.

`HeadInfo` (what a head knows about its inputs), `Batch` (what `explain` receives), `TrainData` /
`TrainBatch` (cached training tokens and their mini-batches), `FitContext` (device, seed, progress,
DistributedDataParallel helpers) and `parse_params` live here, in the engine, so that the runner,
the executors and the evaluation context never import `xbench.methods`; methods import them from
here (or, as before, from `xbench.methods.base`, which re-exports them).
"""
from __future__ import annotations

import dataclasses
import json
import math
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch
from torch import nn

from xbench.cache import TokenStore
from xbench.errors import ConfigError, ResultsError
from xbench.progress import progress
from xbench.tokens import Tokens

__all__ = ["HeadInfo", "Batch", "TrainBatch", "FitContext", "TrainData", "parse_params", "load_head"]


@dataclass(frozen=True)
class HeadInfo:
    """What a head needs to know about its inputs."""

    num_classes: int
    grid: int
    dim: int
    num_registers: int = 0
    backbone: str = ""
    weights_hash: str = ""

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


@dataclass
class Batch:
    """What `Method.explain` receives: cached tokens, and images only for methods that need the backbone graph."""

    tokens: Tokens | None = None
    images: torch.Tensor | None = None
    index: np.ndarray | None = None

    def __len__(self) -> int:
        if self.tokens is not None:
            return len(self.tokens)
        return int(self.images.shape[0]) if self.images is not None else 0


@dataclass
class TrainBatch:
    index: torch.Tensor        # rows of the training store
    tokens: Tokens
    labels: torch.Tensor       # [B] generating class
    targets: torch.Tensor      # [B, C] soft targets (uniform over every consistent class)
    global_size: int = 0       # rows of the global batch this batch is a shard of (= B in one process)


@dataclass
class FitContext:
    device: torch.device
    seed: int
    show_progress: bool = True
    world_size: int = 1
    rank: int = 0
    log: list = field(default_factory=list)
    #: intermediate models shared between jobs (`xbench.shared.SharedStore`; None = train everything in place)
    shared: Any = None
    #: what the job's identity says about its data and backbone (`xbench.shared.data_key`), for shared entries
    data_key: dict | None = None

    def generator(self, offset: int = 0) -> torch.Generator:
        return torch.Generator().manual_seed(self.seed * 1_000_003 + offset)

    def epochs(self, n: int, desc: str) -> Iterator[int]:
        with progress(total=n, desc=desc, enabled=self.show_progress and self.rank == 0, unit="ep") as bar:
            for e in range(n):
                yield e
                bar.update(1)

    # DistributedDataParallel (methods declaring supports_ddp=True; see docs/cluster.md) -------------
    def ddp(self, module: nn.Module) -> nn.Module:
        """`module` wrapped in DistributedDataParallel when training on several ranks, else itself."""
        if self.world_size <= 1:
            return module
        from torch.nn.parallel import DistributedDataParallel

        ids = [self.device.index] if self.device.type == "cuda" and self.device.index is not None else None
        return DistributedDataParallel(module, device_ids=ids)

    def all_reduce_sum(self, value: float) -> float:
        """Sum of `value` over the ranks (for logs: every rank then reports the global number)."""
        if self.world_size <= 1:
            return float(value)
        import torch.distributed as dist

        t = torch.tensor([float(value)], dtype=torch.float64,
                         device=self.device if self.device.type == "cuda" else "cpu")
        dist.all_reduce(t)
        return float(t.item())

    def global_mean(self, losses: torch.Tensor, global_size: int) -> torch.Tensor:
        """Loss whose DDP-averaged gradient is that of the mean of `losses` over the whole global batch.

        `losses` are this rank's per-row losses, `global_size` the rows of the global batch over
        every rank. DDP averages gradients over ranks, so the rank's sum is scaled by
        world / global_size; shards of unequal (or zero) size are handled exactly.
        """
        return losses.sum() * (self.world_size / max(1, int(global_size)))


#: default budget for a resident copy of the training tokens on a GPU (`gpu_resident_gb` in the run config)
DEFAULT_GPU_RESIDENT_BYTES = 4 << 30


class TrainData:
    """Cached training tokens + labels; batches come out on the training device in float32.

    Tokens are read from the cache batch by batch (the next batch is read by a background thread
    while the head trains on the current one), so host memory stays bounded by a few batches
    whatever the dataset's size. On a CUDA device the whole split is kept resident on the GPU
    when it fits `gpu_resident_bytes` (copied chunk by chunk: no host copy of the split). The
    order of rows is drawn in the caller's thread, so prefetching changes no number.
    """

    def __init__(self, store: TokenStore, labels: np.ndarray, targets: np.ndarray | None, num_classes: int,
                 device: torch.device, views: dict[str, TokenStore] | None = None,
                 gpu_resident_bytes: int | None = None, rows: np.ndarray | None = None, prefetch: bool = True):
        self.store = store
        self.num_classes = num_classes
        self.device = torch.device(device)
        self.views = views or {}
        self.prefetch = prefetch
        self.rows = np.arange(len(store)) if rows is None else np.asarray(rows)  # usable rows (bad files excluded)
        self.labels = torch.as_tensor(np.asarray(labels), dtype=torch.long)
        if targets is None:
            t = torch.zeros(len(self.labels), num_classes)
            t[torch.arange(len(self.labels)), self.labels] = 1.0
        else:
            t = torch.as_tensor(np.asarray(targets), dtype=torch.float32)
        self.targets = t / t.sum(dim=1, keepdim=True).clamp_min(1e-12)
        budget = DEFAULT_GPU_RESIDENT_BYTES if gpu_resident_bytes is None else int(gpu_resident_bytes)
        self._resident: Tokens | None = None
        if self.device.type == "cuda" and store.nbytes <= budget:
            self._resident = _resident_copy(store, self.device)

    def __len__(self) -> int:
        return len(self.rows)

    @property
    def resident(self) -> bool:
        """Whether the tokens are held on the device (GPU, within the budget) rather than read per batch."""
        return self._resident is not None

    def tokens(self, idx: torch.Tensor) -> Tokens:
        if self._resident is not None:
            i = idx.to(self._resident.patch.device)
            return self._resident.index(i).to(self.device, torch.float32)
        return self.store.tokens(idx.numpy(), self.device, torch.float32)

    def release(self) -> None:
        """Drop the resident copy and the references to the stores (training is over)."""
        self._resident = None
        self.views = {}

    def batches(self, batch_size: int, generator: torch.Generator | None = None, shuffle: bool = True,
                drop_last: bool = False, shard: tuple[int, int] = (0, 1)) -> Iterator[TrainBatch]:
        """Mini-batches of `batch_size` rows in an order drawn from `generator`.

        With `shard=(rank, world)` (DistributedDataParallel) `batch_size` is the *global* batch: every
        rank draws the same order (give each rank an identically seeded generator), cuts the same
        global batches and keeps its part of each (`tensor_split`: contiguous, sizes differ by at
        most one, possibly empty). The sequence of global batches is therefore the one-process
        sequence, and every rank takes the same number of steps. `TrainBatch.global_size` is the
        global batch's size; `FitContext.global_mean(per_row_losses, batch.global_size)` gives the
        loss whose DDP-averaged gradient equals the one-process gradient.
        """
        rows = torch.as_tensor(self.rows)
        order = rows[torch.randperm(len(rows), generator=generator)] if shuffle else rows
        rank, world = shard
        n = len(order)
        stop = n - n % batch_size if drop_last and n >= batch_size else n
        plan = []
        for s in range(0, stop, batch_size):
            idx = order[s:s + batch_size]
            size = len(idx)
            if world > 1:
                idx = idx.tensor_split(world)[rank]
            plan.append((idx, size))
        for (idx, size), toks in zip(plan, self._read_ahead([p[0] for p in plan])):
            yield TrainBatch(idx, toks, self.labels[idx].to(self.device), self.targets[idx].to(self.device),
                             global_size=size)

    def _read_ahead(self, plan: list[torch.Tensor]) -> Iterator[Tokens]:
        """Tokens of each index set in `plan`, the next one read in a background thread meanwhile."""
        if not plan:
            return
        if self._resident is not None or not self.prefetch or len(plan) == 1:
            for idx in plan:
                yield self.tokens(idx)
            return
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(1, thread_name_prefix="xbench-prefetch") as pool:
            nxt = pool.submit(self.tokens, plan[0])
            for k in range(len(plan)):
                cur = nxt.result()
                if k + 1 < len(plan):
                    nxt = pool.submit(self.tokens, plan[k + 1])
                yield cur

    def all_batches(self, batch_size: int) -> Iterator[TrainBatch]:
        return self.batches(batch_size, shuffle=False)


def _resident_copy(store: TokenStore, device: torch.device, rows_per_read: int = 256) -> Tokens:
    """The whole store on `device` in its stored precision, read in pieces (no host copy of the split)."""
    n = len(store)
    first = store.tokens(slice(0, min(n, rows_per_read)), device, store.torch_dtype)
    out = Tokens(*(torch.empty((n,) + tuple(t.shape[1:]), dtype=t.dtype, device=device)
                   for t in (first.patch, first.cls, first.reg)))
    for lo in range(0, n, rows_per_read):
        part = first if lo == 0 else store.tokens(slice(lo, min(n, lo + rows_per_read)), device, store.torch_dtype)
        hi = lo + len(part.patch)
        out.patch[lo:hi], out.cls[lo:hi], out.reg[lo:hi] = part.patch, part.cls, part.reg
    return out


def parse_params(method_cls: type, overrides: dict[str, Any] | None) -> Any:
    """The method's Params with `overrides` applied; unknown names and bad types give a one-line error."""
    P = method_cls.Params
    overrides = dict(overrides or {})
    if not dataclasses.is_dataclass(P):
        if overrides:
            raise ConfigError(f"method {method_cls.spec.name!r} takes no parameters (got {sorted(overrides)})")
        return P()
    fields = {f.name: f for f in dataclasses.fields(P)}
    hints = typing.get_type_hints(P)
    kw = {}
    for k, v in overrides.items():
        if k not in fields:
            raise ConfigError(
                f"method {method_cls.spec.name!r} has no parameter {k!r} (valid: {', '.join(sorted(fields))})"
            )
        kw[k] = _coerce(v, hints.get(k, Any), f"{method_cls.spec.name}.{k}")
    return P(**kw)


def _coerce(v: Any, tp: Any, where: str) -> Any:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    try:
        if tp is bool:
            if isinstance(v, str):
                if v.lower() in ("1", "true", "yes", "on"):
                    return True
                if v.lower() in ("0", "false", "no", "off"):
                    return False
                raise ValueError
            return bool(v)
        if tp is int:
            if isinstance(v, float) and not v.is_integer():
                raise ValueError
            return int(v)
        if tp is float:
            f = float(v)
            if math.isnan(f):
                raise ValueError
            return f
        if tp is str:
            return str(v)
        if origin in (tuple, list) and args:
            seq = v.split(",") if isinstance(v, str) else list(v)
            inner = args[0]
            out = [_coerce(x, inner, where) for x in seq]
            return tuple(out) if origin is tuple else out
        if origin is typing.Union or str(origin) == "types.UnionType":
            if v is None or (isinstance(v, str) and v.lower() == "none"):
                return None
            for a in args:
                if a is type(None):
                    continue
                try:
                    return _coerce(v, a, where)
                except ConfigError:
                    continue
            raise ValueError
    except (TypeError, ValueError):
        raise ConfigError(f"parameter {where}={v!r} is not a valid {getattr(tp, '__name__', tp)}") from None
    return v


def load_head(folder: str | Path, expect: HeadInfo | None = None) -> Any:
    """A saved head (head.json + head.safetensors, never pickle) as its registered method; with `expect`,
    refuse heads of another backbone, class count, width or grid."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    from xbench.registry import METHODS

    folder = Path(folder)
    try:
        desc = json.loads((folder / "head.json").read_text())
        state = load_file(str(folder / "head.safetensors"))
    except (OSError, ValueError, SafetensorError) as err:  # missing, truncated, or not a safetensors file
        raise ResultsError(f"saved head in {folder} is missing or unreadable ({type(err).__name__}); "
                           f"re-run the job with --force") from None
    cls = METHODS.get(desc["method"]).obj
    info = HeadInfo(**desc["info"])
    if expect is not None:
        for f in ("backbone", "num_classes", "dim", "grid"):
            if getattr(expect, f) != getattr(info, f):
                raise ConfigError(
                    f"saved head {folder} was trained with {f}={getattr(info, f)!r}, not {getattr(expect, f)!r}; "
                    f"use the matching --backbone / dataset or retrain"
                )
    model = cls(info, parse_params(cls, desc.get("params", {})))
    model.prepare_load(state)
    model.load_state_dict(state, strict=True)
    model.eval()
    return model
