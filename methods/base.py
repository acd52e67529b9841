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
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import nn

from xbench.atomic import atomic_save, atomic_write_json
from xbench.explanation import Explanation
from xbench.method_api import Batch, FitContext, HeadInfo, TrainBatch, TrainData, parse_params  # noqa: F401 (re-exported)
from xbench.specs import MethodSpec, ParamsBase

__all__ = ["Method", "HeadInfo", "TrainData", "TrainBatch", "FitContext", "Batch", "ParamsBase", "soft_cross_entropy",
           "parse_params"]


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
        return type(self).views_for(self.params)

    @classmethod
    def views_for(cls, params: Any) -> dict:
        """The same views from the parameters alone, so that planning and `xbench extract` need not build the
        head: override this (not `extra_views`) when the views depend only on `params`."""
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
        """Load a saved head; with `expect`, refuse heads of another backbone or class count
        (`xbench.method_api.load_head`)."""
        from xbench.method_api import load_head

        return load_head(folder, expect)

    def prepare_load(self, state: dict[str, torch.Tensor]) -> None:
        """Hook: resize buffers whose shape is only known after training, before load_state_dict."""


def _jsonable(params: Any) -> dict:
    return dataclasses.asdict(params) if dataclasses.is_dataclass(params) else dict(params or {})
