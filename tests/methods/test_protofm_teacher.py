"""ProtoFM's EMA teacher: exact update and the cosine momentum schedule (SPEC 3.4)."""
from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from xbench.methods.protofm.head import Encoder
from xbench.methods.protofm.teacher import EMATeacher, momentum_at


def test_momentum_schedule_values():
    assert momentum_at(0, 100) == pytest.approx(0.996, abs=1e-12)
    assert momentum_at(50, 100) == pytest.approx(0.998, abs=1e-12)
    assert momentum_at(100, 100) == pytest.approx(1.0, abs=1e-12)
    # a quarter of the way: 1 - 0.004 * (1 + cos(pi / 4)) / 2
    assert momentum_at(25, 100) == pytest.approx(1 - 0.004 * (1 + math.cos(math.pi / 4)) / 2, abs=1e-12)
    vals = [momentum_at(s, 100) for s in range(101)]
    assert all(a <= b for a, b in zip(vals, vals[1:]))  # non-decreasing
    assert momentum_at(-5, 100) == momentum_at(0, 100) and momentum_at(500, 100) == 1.0
    assert momentum_at(3, 10, 0.9, 0.99) == pytest.approx(0.99 - 0.09 * (1 + math.cos(0.3 * math.pi)) / 2)


def test_teacher_starts_as_a_frozen_copy():
    torch.manual_seed(0)
    student = Encoder(dim=8, proj_dim=6, num_prototypes=5)
    teacher = EMATeacher(student)
    for t, s in zip(teacher.module.parameters(), student.parameters()):
        assert torch.equal(t, s) and not t.requires_grad and t.data_ptr() != s.data_ptr()
    teacher.train()
    assert not teacher.module.training


def test_ema_update_is_exact():
    torch.manual_seed(0)
    student = Encoder(dim=8, proj_dim=6, num_prototypes=5)
    teacher = EMATeacher(student)
    with torch.no_grad():  # move the student away from the teacher
        for p in student.parameters():
            p.add_(torch.randn_like(p))
    before = [t.clone() for t in teacher.module.parameters()]
    m = 0.9
    teacher.update(student, m)
    for t0, t1, s in zip(before, teacher.module.parameters(), student.parameters()):
        expect = m * t0 + (1 - m) * s.detach()
        assert torch.allclose(t1, expect, atol=1e-7, rtol=0)
    # by hand on one scalar: 0.9 * a + 0.1 * b
    a = float(before[0].flatten()[0])
    b = float(next(student.parameters()).detach().flatten()[0])
    assert float(next(teacher.module.parameters()).flatten()[0]) == pytest.approx(0.9 * a + 0.1 * b, abs=1e-6)
    # m = 1 leaves the teacher unchanged; m = 0 copies the student
    snap = [t.clone() for t in teacher.module.parameters()]
    teacher.update(student, 1.0)
    assert all(torch.equal(a, b) for a, b in zip(snap, teacher.module.parameters()))
    teacher.update(student, 0.0)
    assert all(torch.equal(t, s) for t, s in zip(teacher.module.parameters(), student.parameters()))


def test_teacher_forward_has_no_graph():
    student = nn.Linear(3, 2)
    teacher = EMATeacher(student)
    y = teacher(torch.randn(4, 3, requires_grad=True))
    assert not y.requires_grad
