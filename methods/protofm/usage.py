"""Prototype usage: how many prototypes the patches are assigned to (the collapse diagnostic).

Each patch is counted for its arg-max prototype. From the histogram over every
patch seen: `entropy` (nats) of the usage distribution, `perplexity` =
exp(entropy) (the effective number of prototypes in use), `used` = prototypes
that are the arg-max of at least one patch, and `top1_share` = the share of
patches taken by the most used prototype. A collapsed head has a low entropy,
few used prototypes and a top-1 share near 1.
"""
from __future__ import annotations

import math

import torch


class UsageCounter:
    """Accumulates the arg-max prototype histogram over batches of assignments."""

    def __init__(self, num_prototypes: int):
        self.counts = torch.zeros(num_prototypes, dtype=torch.long)

    @torch.no_grad()
    def add(self, assignment: torch.Tensor, dim: int = -1) -> None:
        """assignment: any tensor with the prototype axis at `dim`."""
        top = assignment.argmax(dim=dim).flatten().cpu()
        self.counts += torch.bincount(top, minlength=len(self.counts))

    def summary(self) -> dict:
        return usage_summary(self.counts)


def usage_summary(counts: torch.Tensor) -> dict:
    total = int(counts.sum())
    if total == 0:
        return {"entropy": 0.0, "perplexity": 0.0, "used": 0, "top1_share": 0.0, "patches": 0}
    p = counts.double() / total
    nz = p[p > 0]
    h = float(-(nz * nz.log()).sum())
    return {"entropy": h, "perplexity": math.exp(h), "used": int((counts > 0).sum()),
            "top1_share": float(p.max()), "patches": total}
