"""The EMA teacher (SPEC 3.4): a frozen copy of the student's encoder, updated by momentum.

* Update (exact): for every parameter, teacher <- m * teacher + (1 - m) * student,
  computed in place as `t.mul_(m).add_(s, alpha=1 - m)`, after each optimiser
  step of the student, with no gradient.
* Momentum schedule (*ours*, the SPEC names the end points): cosine from
  `m_start` = 0.996 to `m_end` = 1 over the training steps,
  m(t) = m_end - (m_end - m_start) * (1 + cos(pi * t / T)) / 2 for t in [0, T],
  so m(0) = 0.996, m(T/2) = 0.998, m(T) = 1 (DINO's schedule).
* The teacher holds the projector and the prototype bank only (what produces
  projections and assignments); it is built at the start of `fit` as a copy of
  the student's and is not part of the saved head.
"""
from __future__ import annotations

import copy
import math

import torch
from torch import nn


def momentum_at(step: int, total: int, m_start: float = 0.996, m_end: float = 1.0) -> float:
    """Cosine momentum schedule: m_start at step 0, m_end at step `total` (clamped outside [0, total])."""
    if total <= 0:
        return float(m_end)
    t = min(max(step, 0), total) / total
    return float(m_end - (m_end - m_start) * (1.0 + math.cos(math.pi * t)) / 2.0)


class EMATeacher(nn.Module):
    """Frozen copy of `student`; `update(student, m)` applies the exact EMA step."""

    def __init__(self, student: nn.Module):
        super().__init__()
        self.module = copy.deepcopy(student)
        for p in self.module.parameters():
            p.requires_grad_(False)
        self.module.eval()

    def train(self, mode: bool = True) -> "EMATeacher":  # the teacher never trains
        super().train(False)
        return self

    @torch.no_grad()
    def update(self, student: nn.Module, momentum: float) -> None:
        m = float(momentum)
        t_params = list(self.module.parameters())
        s_params = list(student.parameters())
        if len(t_params) != len(s_params):
            raise ValueError("teacher and student have different parameter lists")
        for t, s in zip(t_params, s_params):
            t.mul_(m).add_(s.detach(), alpha=1.0 - m)
        for tb, sb in zip(self.module.buffers(), student.buffers()):
            tb.copy_(sb)

    def forward(self, *args, **kwargs):
        with torch.no_grad():
            return self.module(*args, **kwargs)
