"""DINO-QPM's training losses (SPEC 3.3): feature diversity and L1 terms.

Feature diversity loss, for a batch of B images with feature maps ``F``
[B, K, g, g], pooled features ``f`` [B, K] (>= 0), class weights ``W`` [C, K]
and logits [B, C]:

* ``c^`` = predicted class (argmax of the logits; no gradient through it);
* ``w = |W_c^| / (||W_c^||_2 + 1e-5)`` per image;
* ``S_j`` = softmax of ``F_j`` over the g*g pixels;
* ``a_j = f_j / max_k f_k`` per image (the max is clamped below at 1e-6 so an
  all-zero ``f`` gives ``a = 0`` instead of 0/0, as in the reference);
* ``L_div = -(beta / B) * sum_b sum_pixels max_j (w_j a_j S_j)``.

Choices the SPEC leaves open: gradients flow into ``W`` through ``w`` (the
reference does not detach the classifier weights either); ``f`` is the pooled
vector before dropout (the reference uses the dropped-out vector; we follow the
SPEC's definition ``a_j = f_j / max_k f_k``).

L1 terms are means of absolute values (``mean |F_sel|`` over batch, features
and pixels; ``mean |f_sel|`` over batch and features), as in the reference.
"""
from __future__ import annotations

import torch

__all__ = ["diversity_loss", "l1"]


def diversity_loss(maps: torch.Tensor, pooled: torch.Tensor, weights: torch.Tensor, logits: torch.Tensor,
                   beta: float) -> torch.Tensor:
    """The feature diversity loss L_div (module docstring).

    Args:
        maps: [B, K, g, g] (or [B, K, P]) feature maps F.
        pooled: [B, K] pooled features f (>= 0).
        weights: [C, K] class weights of the head the maps feed.
        logits: [B, C] the head's logits (for the predicted class c^).
        beta: the loss weight.
    """
    b, k = maps.shape[:2]
    c_hat = logits.detach().argmax(dim=1)
    w = weights[c_hat].abs()                                         # [B, K]
    w = w / (torch.linalg.vector_norm(w, dim=1, keepdim=True) + 1e-5)
    a = pooled / pooled.max(dim=1, keepdim=True).values.clamp_min(1e-6)
    s = torch.softmax(maps.reshape(b, k, -1), dim=2)                 # [B, K, P]
    per_pixel = (w * a).unsqueeze(2) * s
    return -(beta / b) * per_pixel.amax(dim=1).sum()


def l1(x: torch.Tensor) -> torch.Tensor:
    """Mean absolute value."""
    return x.abs().mean()
