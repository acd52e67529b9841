"""The method interface: a small trainable head on cached backbone tokens.

A method is an `nn.Module` subclass registered with `@register_method`:

    @register_method("my-head", provides={"attribution"}, paper="mykey")
    class MyHead(Method):
        '''One line that `xbench ls methods` shows.'''
        @dataclass
        class Params(ParamsBase):
            epochs: int = 10
            lr: float = 1e-3

        def __init__(self, info: HeadInfo, params: Params):
            super().__init__(info, params)
            self.linear = nn.Linear(info.dim, info.num_classes)

        def fit(self, data: TrainData, ctx: FitContext) -> dict:
            ...  # train on data.batches(...); return a log for the record

        def explain(self, batch: Batch) -> Explanation:
            ...  # logits, attribution, concepts (SPEC 4)

`Params` holds the hyper-parameters with the paper's defaults; every field can
be overridden from a config file (`methods: {my-head: {lr: 0.01}}`) or the
command line (`--set my-head.lr=0.01`). Trained heads are saved as
safetensors + JSON (never pickle) and loaded back with `Method.load`.
"""
from __future__ import annotations

import abc
import dataclasses
import json
import math
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Iterator

import numpy as np
import torch
from torch import nn

from xbench.atomic import atomic_save, atomic_write_json
from xbench.cache import TokenStore
from xbench.errors import ConfigError, ResultsError
from xbench.explanation import Explanation
from xbench.progress import progress
from xbench.specs import MethodSpec, ParamsBase
from xbench.tokens import Tokens

__all__ = ["Method", "HeadInfo", "TrainData", "TrainBatch", "FitContext", "Batch", "ParamsBase", "soft_cross_entropy",
           "parse_params"]


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
    amp: bool = False
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


class TrainData:
    """Cached training tokens + labels; batches come out on the training device in float32."""

    def __init__(self, store: TokenStore, labels: np.ndarray, targets: np.ndarray | None, num_classes: int,
                 device: torch.device, views: dict[str, TokenStore] | None = None,
                 memory_budget_bytes: int = 6 << 30, rows: np.ndarray | None = None):
        self.store = store
        self.num_classes = num_classes
        self.device = torch.device(device)
        self.views = views or {}
        self.rows = np.arange(len(store)) if rows is None else np.asarray(rows)  # usable rows (bad files excluded)
        self.labels = torch.as_tensor(np.asarray(labels), dtype=torch.long)
        if targets is None:
            t = torch.zeros(len(self.labels), num_classes)
            t[torch.arange(len(self.labels)), self.labels] = 1.0
        else:
            t = torch.as_tensor(np.asarray(targets), dtype=torch.float32)
        self.targets = t / t.sum(dim=1, keepdim=True).clamp_min(1e-12)
        nbytes = store.patch.nbytes + store.cls.nbytes + store.reg.nbytes
        self._resident: Tokens | None = None
        if nbytes <= memory_budget_bytes:
            target = self.device if self.device.type == "cuda" else torch.device("cpu")
            self._resident = store.tokens(slice(None), device=target,
                                          dtype=getattr(store, "torch_dtype", torch.float16))

    def __len__(self) -> int:
        return len(self.rows)

    def tokens(self, idx: torch.Tensor) -> Tokens:
        if self._resident is not None:
            i = idx.to(self._resident.patch.device)
            return self._resident.index(i).to(self.device, torch.float32)
        return self.store.tokens(idx.numpy(), self.device, torch.float32)

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
        for s in range(0, stop, batch_size):
            idx = order[s:s + batch_size]
            size = len(idx)
            if world > 1:
                idx = idx.tensor_split(world)[rank]
            yield TrainBatch(idx, self.tokens(idx), self.labels[idx].to(self.device),
                             self.targets[idx].to(self.device), global_size=size)

    def all_batches(self, batch_size: int) -> Iterator[TrainBatch]:
        return self.batches(batch_size, shuffle=False)


def soft_cross_entropy(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Cross-entropy against a target distribution (one-hot = the usual CE)."""
    return -(targets * torch.log_softmax(logits, dim=1)).sum(dim=1).mean()


class Method(nn.Module, metaclass=abc.ABCMeta):
    """Base class of every head. See the module docstring."""

    spec: ClassVar[MethodSpec]
    Params: ClassVar[type] = ParamsBase

    def __init__(self, info: HeadInfo, params: Any = None):
        super().__init__()
        self.info = info
        self.params = params if params is not None else self.Params()

    # to implement ---------------------------------------------------------------------------
    @abc.abstractmethod
    def fit(self, data: TrainData, ctx: FitContext) -> dict:
        """Train the head on cached tokens; return a JSON-able log (losses, extras) for the record."""

    @abc.abstractmethod
    def explain(self, batch: Batch) -> Explanation:
        """The explanation contract (SPEC 4) for a batch."""

    # optional -----------------------------------------------------------------------------------
    def logits(self, batch: Batch) -> torch.Tensor:
        """Logits only (metrics over many interventions call this); defaults to explain().logits."""
        return self.explain(batch).logits

    def extra_views(self) -> dict:
        """Cached views (name -> xbench.views.View) of the training split this head trains on."""
        return {}

    def attach_extractor(self, extractor: Any) -> None:
        """Methods with `needs_backbone_graph` get the backbone through the runner's extractor here."""
        self.extractor = extractor

    # saving ---------------------------------------------------------------------------------------
    def save(self, folder: str | Path) -> None:
        """Write head.safetensors and head.json (method, params, info); never pickle."""
        from safetensors.torch import save_file

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        state = {k: v.detach().cpu().contiguous() for k, v in self.state_dict().items()}
        atomic_save(folder / "head.safetensors", lambda p: save_file(state, p))
        atomic_write_json(folder / "head.json", {"method": self.spec.name, "params": _jsonable(self.params),
                                                  "info": self.info.to_dict(), "format": 1})

    @staticmethod
    def load(folder: str | Path, expect: HeadInfo | None = None) -> "Method":
        """Load a saved head; with `expect`, refuse heads of another backbone or class count."""
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

    def prepare_load(self, state: dict[str, torch.Tensor]) -> None:
        """Hook: resize buffers whose shape is only known after training, before load_state_dict."""


def _jsonable(params: Any) -> dict:
    return dataclasses.asdict(params) if dataclasses.is_dataclass(params) else dict(params or {})


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
