"""PIP-Net's losses (Nauta et al., CVPR 2023), written from the paper's definitions.

Notation: ``z`` [N, K] = the prototype distribution (softmax over the K prototypes) at N patch positions;
``pooled`` [B, K] = the per-image presence of each prototype (max over the image's patches).

* Alignment (``L_A``): two views of the same image should give the same prototype at the same location,

      L_A = -(1 / N) sum_n log(z'_n . z''_n + eps)

  over the N aligned patch positions of the two views' distributions z', z''. As in PIP-Net's code, the
  loss is symmetrised with a stop-gradient on the other view:
  ``(A(z', sg z'') + A(z'', sg z')) / 2`` (the value is A(z', z''); each view gets half of the gradient).
* Tanh (``L_T``): every prototype should be present in some image of the batch,

      L_T = -(1 / K) sum_k log(tanh(sum_b pooled_bk) + eps)

  (averaged over the two views).
* Classification: logits ``o = pooled @ W.T`` with W >= 0; PIP-Net trains on ``log(1 + o^2)`` (its
  normalisation multiplier 2, fixed) with the softmax cross-entropy; targets may be soft.
"""
from __future__ import annotations

import torch

__all__ = ["align_loss", "symmetric_align_loss", "tanh_loss", "classification_loss", "EPS"]

EPS = 1e-10


def align_loss(z1: torch.Tensor, z2: torch.Tensor, eps: float = EPS) -> torch.Tensor:
    """-mean_n log(<z1_n, z2_n> + eps) over the leading positions of [..., K] distributions."""
    return -torch.log((z1 * z2).sum(dim=-1) + eps).mean()


def symmetric_align_loss(z1: torch.Tensor, z2: torch.Tensor, eps: float = EPS) -> torch.Tensor:
    return 0.5 * (align_loss(z1, z2.detach(), eps) + align_loss(z2, z1.detach(), eps))


def tanh_loss(pooled: torch.Tensor, eps: float = EPS) -> torch.Tensor:
    """-mean_k log(tanh(sum_b pooled[b, k]) + eps) for pooled [B, K]."""
    return -torch.log(torch.tanh(pooled.sum(dim=0)) + eps).mean()


def classification_loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Soft cross-entropy on log(1 + logits^2) (PIP-Net's training logits)."""
    return -(targets * torch.log_softmax(torch.log1p(logits ** 2), dim=1)).sum(dim=1).mean()
