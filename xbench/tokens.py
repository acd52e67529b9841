"""Backbone output: a patch grid plus CLS and register tokens, kept separately."""
from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class Tokens:
    """Last-layer, final-norm tokens of a batch.

    patch: [B, g, g, D] patch tokens on the g x g grid (row-major, as the ViT lays them out);
    cls:   [B, D] class token; a backbone without one (`Backbone.has_cls_token` False: ResNet,
           weight-free) gives the mean of its patch tokens;
    reg:   [B, R, D] register tokens (R may be 0).
    """

    patch: torch.Tensor
    cls: torch.Tensor
    reg: torch.Tensor

    @property
    def grid(self) -> int:
        return int(self.patch.shape[1])

    @property
    def dim(self) -> int:
        return int(self.patch.shape[-1])

    def __len__(self) -> int:
        return int(self.patch.shape[0])

    def to(self, device: torch.device | str, dtype: torch.dtype | None = torch.float32) -> "Tokens":
        def mv(t: torch.Tensor) -> torch.Tensor:
            return t.to(device=device, dtype=dtype, non_blocking=True) if dtype else t.to(device, non_blocking=True)

        return Tokens(mv(self.patch), mv(self.cls), mv(self.reg))

    def index(self, idx: torch.Tensor | slice | list[int]) -> "Tokens":
        return Tokens(self.patch[idx], self.cls[idx], self.reg[idx])

    @staticmethod
    def cat(parts: list["Tokens"]) -> "Tokens":
        return Tokens(
            torch.cat([p.patch for p in parts]), torch.cat([p.cls for p in parts]), torch.cat([p.reg for p in parts])
        )
