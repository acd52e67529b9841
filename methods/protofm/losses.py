"""ProtoFM's training losses (SPEC 3.4); the weights live in `ProtoFMParams`.

Notation: B images, g x g patches (N = g^2), K prototypes, P projection dims,
C classes. Student quantities already resampled onto the teacher's grid
(`align.align_to_teacher`) are called *aligned*.

* classification: `xbench.methods.base.soft_cross_entropy` (soft multi-targets).
* assignment: cross-entropy from the teacher's stop-grad, sharpened patch
  assignment t (softmax at `teacher_temperature` < the student's 0.1) to the
  aligned student assignment s: mean over images and teacher patches of
  -sum_k t_k log s_k (s clamped at 1e-8; RoIAlign of a distribution is a
  convex combination, hence still a distribution).
* contrastive: patch-level InfoNCE. *ours*: M locations per image drawn at
  random each step (all if M = 0); the query is the aligned student projection
  (re-normalised), the key the teacher's projection at the same location of
  the same image (the positive); the keys at every other sampled location of
  every image of the batch are the negatives; temperature `contrastive_temperature`.
* alignment: correspondence distillation in the style of STEGO, with *our*
  adaptive shift (the paper names k_shift = 0.1, v_shift = 3 but not the rule):
    - sample M patches per image (all if M = 0); f = unit backbone tokens,
      q = unit student assignment vectors (non-negative, so q.q' >= 0);
    - for an image pair (b, b'): F = f_b f_b'^T [M, M], centred per anchor row
      (F - mean over the partner's patches: STEGO's centring);
    - adaptive shift, per anchor row i: b_i = the (1 - k_shift) quantile of the
      row, so exactly a fraction k_shift of the partner's patches lie above
      the shift and attract the anchor, whatever the backbone's scale of
      correlations (STEGO's fixed b has to be tuned per backbone and dataset);
    - target T_ij = clip((F_ij - b_i) / std_i, -v_shift, v_shift): the shifted
      correlation in units of the row's standard deviation, clipped at
      v_shift standard deviations so that a few extreme pairs cannot dominate;
    - loss = -mean(T * (q_b q_b'^T)) / v_shift (so |loss| <= 1): pairs above the
      shift pull their assignments together, the others (1 - k_shift of them)
      push them apart. A collapsed head (q q^T = 1 everywhere) pays
      -mean(T) / v_shift > 0, about 0.43 for Gaussian rows with the defaults,
      while assignments that follow the token correlations pay < 0: this is
      what keeps the assignments from collapsing;
    - pairs: each image with itself, and (weight `align_random_weight`) with
      another image of the batch (a random cyclic shift of the batch, never the
      image itself); the two terms are averaged with weights 1 and
      `align_random_weight`.
* sparsity: Hoyer-square on the importance tensor I[b, k, c] = score[b, k] W[c, k]:
  mean over images of (sum |I_b|)^2 / (sum I_b^2 + 1e-12), divided by
  sqrt(K * C) (ProtoS-ViT's normalisation); ramped in by the caller.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def assignment_loss(teacher: torch.Tensor, student_aligned: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Cross-entropy H(teacher, student); both [B, g, g, K] distributions over the last dim; teacher is detached."""
    return -(teacher.detach() * torch.log(student_aligned.clamp_min(eps))).sum(dim=-1).mean()


def sample_locations(batch: int, n: int, m: int, generator: torch.Generator | None, device: torch.device) -> torch.Tensor:
    """[batch, m] distinct random locations in [0, n) per image (all n, in order, when m <= 0 or m >= n)."""
    if m <= 0 or m >= n:
        return torch.arange(n, device=device).expand(batch, n)
    keys = torch.rand(batch, n, generator=generator)
    return keys.argsort(dim=1)[:, :m].to(device)


def _gather(x: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """x [B, N, C], idx [B, M] -> [B, M, C]."""
    return torch.gather(x, 1, idx[..., None].expand(-1, -1, x.shape[-1]))


def contrastive_loss(student_aligned: torch.Tensor, teacher: torch.Tensor, temperature: float = 0.1,
                     samples: int = 32, generator: torch.Generator | None = None) -> torch.Tensor:
    """Patch InfoNCE; student_aligned, teacher [B, g, g, P] projections (teacher detached)."""
    b, p = student_aligned.shape[0], student_aligned.shape[-1]
    s = student_aligned.reshape(b, -1, p)                     # [B, N, P]
    t = teacher.detach().reshape(b, -1, p)
    idx = sample_locations(b, s.shape[1], samples, generator, s.device)
    q = F.normalize(_gather(s, idx).reshape(-1, p), dim=1)
    k = F.normalize(_gather(t, idx).reshape(-1, p), dim=1)
    logits = q @ k.T / temperature
    return F.cross_entropy(logits, torch.arange(len(q), device=q.device))


def correspondence_target(f1: torch.Tensor, f2: torch.Tensor, k_shift: float, v_shift: float) -> torch.Tensor:
    """Target [B, M, M'] from unit tokens f1 [B, M, D], f2 [B, M', D]: centred, shifted per row, in std units, clipped."""
    c = f1 @ f2.transpose(1, 2)
    c = c - c.mean(dim=2, keepdim=True)
    shift = torch.quantile(c, 1.0 - k_shift, dim=2, keepdim=True)
    sd = c.std(dim=2, keepdim=True).clamp_min(1e-6)
    return ((c - shift) / sd).clamp(-v_shift, v_shift)


def alignment_loss(tokens: torch.Tensor, assignment: torch.Tensor, k_shift: float = 0.1, v_shift: float = 3.0,
                   samples: int = 128, random_weight: float = 1.0,
                   generator: torch.Generator | None = None) -> torch.Tensor:
    """Correspondence distillation; tokens [B, N, D] (backbone), assignment [B, N, K] (student)."""
    b, n = tokens.shape[:2]
    idx = sample_locations(b, n, samples, generator, tokens.device)
    f = F.normalize(_gather(tokens.detach(), idx), dim=-1)
    q = F.normalize(_gather(assignment, idx), dim=-1)
    with torch.no_grad():
        t_self = correspondence_target(f, f, k_shift, v_shift)
    loss = -(t_self * (q @ q.transpose(1, 2))).mean() / v_shift
    if b > 1 and random_weight > 0:
        shift = int(torch.randint(1, b, (1,), generator=generator))
        perm = (torch.arange(b, device=tokens.device) + shift) % b
        with torch.no_grad():
            t_rand = correspondence_target(f, f[perm], k_shift, v_shift)
        rand = -(t_rand * (q @ q[perm].transpose(1, 2))).mean() / v_shift
        loss = (loss + random_weight * rand) / (1.0 + random_weight)
    return loss


def importance(scores: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """I[b, k, c] = scores[b, k] * W[c, k]."""
    return scores[:, :, None] * weight.T[None]


def hoyer_square(imp: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    """Mean over images of (sum |I_b|)^2 / sum I_b^2, divided by sqrt(numel(I_b))."""
    flat = imp.flatten(1)
    hs = flat.abs().sum(dim=1) ** 2 / (flat.pow(2).sum(dim=1) + eps)
    return hs.mean() / flat.shape[1] ** 0.5
