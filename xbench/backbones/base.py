"""The backbone interface: images in, `Tokens` out, frozen.

A backbone is an `nn.Module` in eval mode whose parameters never receive
gradients. `forward(images)` takes a normalised batch [B, 3, S, S] (S =
`image_size`, 224 by default) and returns `Tokens` (patch grid, CLS,
registers). `forward_anchored(images, anchor)` does the same but routes the
backbone's Grad-CAM activation through `anchor`, laid out as a grid
[B, D, g, g]: for a ViT the patch tokens entering the last block, for a CNN
the last stage's output feature map; Grad-CAM hooks that module (SPEC 3.2).

The declared geometry is what every method and metric works from: `patch_size`
(pixels per token cell: the ViT patch, or a CNN's total stride), `grid` =
`image_size // patch_size`, `embed_dim`, `num_registers`. `has_cls_token`
says whether `Tokens.cls` is a learned class token or, where the backbone has
none (ResNet, weight-free), the mean of the patch tokens (`cls_kind`).

`preprocessing` (`xbench.preprocessing.Preprocessing`: size, mean, std,
interpolation) is how images become this backbone's input, on every path
(extraction, views, `xbench.load`); it enters the feature-cache key.

`weights_kind` is one of "pretrained", "file", "random", "weight-free" and is
carried into every result; `weights_hash` identifies the exact parameters (and
whatever else changes the tokens, `hash_extra`) and enters the feature-cache
key and the job id.
"""
from __future__ import annotations

import abc
import hashlib
from typing import Callable

import torch
from torch import nn

from ..preprocessing import IMAGENET_MEAN, IMAGENET_STD, Preprocessing
from ..tokens import Tokens


class Backbone(nn.Module, metaclass=abc.ABCMeta):
    name: str = "?"
    image_size: int = 224
    patch_size: int = 14
    embed_dim: int = 0
    num_registers: int = 0
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    interpolation: str = "bilinear"
    preprocessing_source: str = "xbench default"
    has_cls_token: bool = True        # False: Tokens.cls is the patch-token mean
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
    def preprocessing(self) -> Preprocessing:
        """How images become this backbone's input (size, mean, std, interpolation; whole image resized)."""
        return Preprocessing(size=self.image_size, mean=self.mean, std=self.std, interpolation=self.interpolation,
                             source=self.preprocessing_source)

    @property
    def cls_kind(self) -> str:
        return "token" if self.has_cls_token else "patch-mean"

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
        """Forward with the Grad-CAM activation (module docstring) passed through `anchor` as [B, D, g, g] (keeps the graph)."""
        return self._tokens(images, anchor)

    @abc.abstractmethod
    def _tokens(self, images: torch.Tensor, anchor: Callable[[torch.Tensor], torch.Tensor] | None) -> Tokens:
        """Tokens of a normalised batch; route the Grad-CAM activation through `anchor` if given."""

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
            "cls": self.cls_kind,
            "preprocessing": self.preprocessing.describe(),
        }


def state_dict_hash(sd: dict[str, torch.Tensor], extra: str = "") -> str:
    h = hashlib.sha256(extra.encode())
    for k in sorted(sd):
        t = sd[k].detach().cpu().contiguous()
        h.update(k.encode())
        h.update(str(tuple(t.shape)).encode())
        h.update(str(t.dtype).encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")  # 0-d too (BatchNorm counters)
    return h.hexdigest()[:16]
