"""The backbone interface: images in, `Tokens` out, frozen.

A backbone is an `nn.Module` in eval mode whose parameters never receive
gradients. `forward(images)` takes a normalised batch [B, 3, S, S] (S =
`image_size`, 224 by default) and returns `Tokens` (patch grid, CLS,
registers). `forward_anchored(images, anchor)` does the same but routes the
patch tokens entering the last block through `anchor`, laid out as a grid
[B, D, g, g]; Grad-CAM hooks that module (SPEC 3.2).

`weights_kind` is one of "pretrained", "file", "random", "weight-free" and is
carried into every result; `weights_hash` identifies the exact parameters and
enters the feature-cache key.
"""
from __future__ import annotations

import abc
import hashlib
from typing import Callable

import torch
from torch import nn

from ..tokens import Tokens

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class Backbone(nn.Module, metaclass=abc.ABCMeta):
    name: str = "?"
    image_size: int = 224
    patch_size: int = 14
    embed_dim: int = 0
    num_registers: int = 0
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    weights_kind: str = "random"      # "pretrained" | "file" | "random" | "weight-free"
    weights_source: str = ""          # tag, path or "" (human-readable)

    def __init__(self) -> None:
        super().__init__()
        self.forward_count = 0        # images seen by forward(); tests count cache misses with it
        self._weights_hash: str | None = None

    @property
    def grid(self) -> int:
        return self.image_size // self.patch_size

    @property
    def weights_label(self) -> str:
        """What leaderboards print: 'random', 'weight-free', or the weights' source."""
        if self.weights_kind in ("random", "weight-free"):
            return self.weights_kind
        return f"{self.weights_kind}:{self.weights_source}"

    @property
    def weights_hash(self) -> str:
        if self._weights_hash is None:
            self._weights_hash = state_dict_hash(self.state_dict(), extra=self.hash_extra())
        return self._weights_hash

    def hash_extra(self) -> str:
        """Anything beyond parameters that changes the tokens (e.g. a weight-free recipe version)."""
        return f"{type(self).__name__}:{self.image_size}"

    def freeze(self) -> "Backbone":
        self.eval()
        for p in self.parameters():
            p.requires_grad_(False)
        return self

    def train(self, mode: bool = True) -> "Backbone":  # frozen: always eval
        return super().train(False)

    def forward(self, images: torch.Tensor) -> Tokens:
        self.forward_count += int(images.shape[0])
        return self._tokens(images, None)

    def forward_anchored(self, images: torch.Tensor, anchor: Callable[[torch.Tensor], torch.Tensor]) -> Tokens:
        """Forward with the last block's patch input passed through `anchor` as [B, D, g, g] (keeps the graph)."""
        return self._tokens(images, anchor)

    @abc.abstractmethod
    def _tokens(self, images: torch.Tensor, anchor: Callable[[torch.Tensor], torch.Tensor] | None) -> Tokens:
        """Tokens of a normalised batch; route the last block's patch input through `anchor` if given."""

    def describe(self) -> dict:
        return {
            "name": self.name,
            "weights": self.weights_label,
            "weights_kind": self.weights_kind,
            "weights_hash": self.weights_hash,
            "image_size": self.image_size,
            "patch_size": self.patch_size,
            "grid": self.grid,
            "embed_dim": self.embed_dim,
            "num_registers": self.num_registers,
        }


def state_dict_hash(sd: dict[str, torch.Tensor], extra: str = "") -> str:
    h = hashlib.sha256(extra.encode())
    for k in sorted(sd):
        t = sd[k].detach().cpu().contiguous()
        h.update(k.encode())
        h.update(str(tuple(t.shape)).encode())
        h.update(str(t.dtype).encode())
        h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()[:16]
