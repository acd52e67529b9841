"""DINO-QPM's feature extractor head: a per-patch MLP on frozen backbone tokens (SPEC 3.3).

Every patch token (CLS and register tokens are dropped) goes through the same
MLP ``D -> H -> ... -> H -> N_f`` (paper: 768 -> 2048 -> 2048 -> 2048 -> 512).
Each layer is ``Linear + BatchNorm1d + ReLU``, so the feature maps ``F`` are
non-negative. ``f`` is the spatial mean of ``F`` over the patches.

BatchNorm: the MLP runs on the patches of a batch flattened to ``[B * g * g,
channels]``, so ``BatchNorm1d`` normalises each channel with the statistics of
all patches of the batch (training) or its running averages (eval). The
reference implementation also feeds the CLS token through these statistics;
we deliberately do not (SPEC 3.3, "reference quirks we do not copy").
"""
from __future__ import annotations

import torch
from torch import nn

__all__ = ["PatchMLP", "pool"]


class PatchMLP(nn.Module):
    """Per-patch MLP mapping tokens [B, g, g, D] to feature maps [B, N_f, g, g] (>= 0).

    Args:
        in_dim: token dimension D of the backbone.
        hidden_dim: width H of the hidden layers.
        hidden_layers: number of hidden layers (paper: 3, i.e. 4 Linear layers in all).
        out_dim: number of features N_f.
    """

    def __init__(self, in_dim: int, hidden_dim: int, hidden_layers: int, out_dim: int):
        super().__init__()
        dims = [in_dim] + [hidden_dim] * hidden_layers + [out_dim]
        layers: list[nn.Module] = []
        for a, b in zip(dims[:-1], dims[1:]):
            layers += [nn.Linear(a, b), nn.BatchNorm1d(b), nn.ReLU()]
        self.net = nn.Sequential(*layers)
        self.out_dim = out_dim

    def forward(self, patch: torch.Tensor) -> torch.Tensor:
        """[B, g, g, D] patch tokens -> [B, N_f, g, g] feature maps."""
        b, gh, gw, d = patch.shape
        x = self.net(patch.reshape(b * gh * gw, d))
        return x.reshape(b, gh, gw, self.out_dim).permute(0, 3, 1, 2)


def pool(maps: torch.Tensor) -> torch.Tensor:
    """f: spatial mean [B, K] of feature maps [B, K, g, g]."""
    return maps.mean(dim=(2, 3))
