"""ProtoFM's losses on small cases computed by hand (SPEC 3.4)."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from xbench.methods.protofm.losses import (alignment_loss, assignment_loss, contrastive_loss,
                                           correspondence_target, hoyer_square, importance)
from xbench.methods.protofm.usage import UsageCounter, usage_summary


def test_assignment_loss_values():
    k = 5
    onehot = torch.zeros(2, 3, 3, k)
    onehot[..., 2] = 1.0
    assert assignment_loss(onehot, onehot).item() < 1e-6            # -log 1 = 0
    uniform = torch.full((2, 3, 3, k), 1.0 / k)
    assert abs(assignment_loss(onehot, uniform).item() - math.log(k)) < 1e-6
    # teacher (0.5, 0.5, 0, 0, 0), student (0.25, 0.25, 0.5, 0, 0): -(0.5 log .25 + 0.5 log .25) = log 4
    t = torch.tensor([0.5, 0.5, 0, 0, 0]).view(1, 1, 1, k)
    s = torch.tensor([0.25, 0.25, 0.5, 0, 0]).view(1, 1, 1, k)
    assert abs(assignment_loss(t, s).item() - math.log(4)) < 1e-6
    s.requires_grad_(True)
    t.requires_grad_(True)
    assignment_loss(t, s).backward()
    assert t.grad is None and s.grad is not None                      # stop-grad on the teacher


def test_contrastive_loss_by_hand():
    # 2 images x 2 locations, one-hot projections on 4 axes: every query matches only its own key,
    # so the loss is -log(e^{1/T} / (e^{1/T} + 3 e^0)) with T = 0.5
    proj = torch.zeros(2, 1, 2, 4)  # [B, 1, 2, P]: image 0 holds e0, e1; image 1 holds e2, e3
    proj[0, 0, 0, 0] = proj[0, 0, 1, 1] = proj[1, 0, 0, 2] = proj[1, 0, 1, 3] = 1.0
    expect = -math.log(math.exp(2) / (math.exp(2) + 3))
    val = contrastive_loss(proj, proj, temperature=0.5, samples=0)
    assert abs(val.item() - expect) < 1e-5
    # a student that matches a wrong location does worse
    assert contrastive_loss(proj.flip(2), proj, temperature=0.5, samples=0) > val


def test_correspondence_target_by_hand():
    # anchor (1, 0); partners at cosines 1, 0.5, 0, -0.5, -1 (row mean 0, so centring changes nothing);
    # the 0.9 quantile (linear interpolation, position 0.9 * 4 = 3.6) is 0.5 + 0.6 * 0.5 = 0.8;
    # the row's std (unbiased) is sqrt(2.5 / 4); the target is (cos - 0.8) / std, clipped at +-2
    ang = torch.tensor([0.0, math.pi / 3, math.pi / 2, 2 * math.pi / 3, math.pi])
    partners = torch.stack([ang.cos(), ang.sin()], dim=1)[None]
    anchor = torch.tensor([[[1.0, 0.0]]])
    t = correspondence_target(anchor, partners, k_shift=0.1, v_shift=2.0)
    sd = math.sqrt(2.5 / 4)
    expect = [(c - 0.8) / sd for c in (1.0, 0.5, 0.0, -0.5, -1.0)]
    expect = [min(max(e, -2.0), 2.0) for e in expect]
    assert torch.allclose(t[0, 0], torch.tensor(expect), atol=1e-5)
    assert expect[-1] == -2.0  # clipped
    # centring: adding a constant to every correlation of a row (a common component) changes nothing
    torch.manual_seed(0)
    f = F.normalize(torch.randn(2, 20, 8), dim=-1)
    a = correspondence_target(f, f, 0.1, 3.0)
    assert ((a > 0).float().sum(dim=2) == 2).all()  # a fraction k_shift = 0.1 of 20 partners above the shift
    assert a.max() <= 3.0 and a.min() >= -3.0


def test_alignment_prefers_assignments_that_follow_token_clusters():
    # two token clusters (patches 0-7 along e0, 8-15 along e1, plus noise); a head that gives each cluster
    # its own prototype scores lower than a collapsed head (all patches on one prototype)
    torch.manual_seed(0)
    n, d, k = 16, 6, 4
    tok = torch.zeros(2, n, d)
    tok[:, :8, 0] = 1
    tok[:, 8:, 1] = 1
    tok = tok + 0.05 * torch.randn_like(tok)
    split = torch.zeros(2, n, k)
    split[:, :8, 0] = 1
    split[:, 8:, 1] = 1
    collapsed = torch.zeros(2, n, k)
    collapsed[:, :, 0] = 1
    # default shift (the top 10 % of partners attract): following the clusters still beats collapsing
    assert alignment_loss(tok, split, samples=0) < alignment_loss(tok, collapsed, samples=0)
    assert alignment_loss(tok, collapsed, samples=0).item() > 0  # collapsed: most targets are below the shift
    # with k_shift = 0.5 the shift falls between the two clusters: the split head gains, the collapsed one
    # gains on one half what it loses on the other
    good = alignment_loss(tok, split, k_shift=0.5, samples=0)
    bad = alignment_loss(tok, collapsed, k_shift=0.5, samples=0)
    assert good.item() < -0.1 and good < bad


def test_hoyer_square_extremes():
    k, c = 10, 3
    one = torch.zeros(1, k, c)
    one[0, 4, 1] = 2.5
    assert abs(hoyer_square(one).item() - 1 / math.sqrt(k * c)) < 1e-6       # one non-zero: HS = 1
    flat = torch.ones(1, k, c)
    assert abs(hoyer_square(flat).item() - math.sqrt(k * c)) < 1e-4          # all equal: HS = n
    assert abs(hoyer_square(3 * flat).item() - hoyer_square(flat).item()) < 1e-4  # scale invariant
    scores = torch.tensor([[1.0, 2.0]])
    w = torch.tensor([[1.0, 0.0], [3.0, 4.0]])
    assert torch.equal(importance(scores, w), torch.tensor([[[1.0, 3.0], [0.0, 8.0]]]))


def test_usage_summary():
    s = usage_summary(torch.tensor([5, 5, 0, 0]))
    assert s["used"] == 2 and abs(s["entropy"] - math.log(2)) < 1e-9 and abs(s["perplexity"] - 2) < 1e-9
    assert s["top1_share"] == 0.5
    u = UsageCounter(3)
    a = torch.zeros(2, 3, 2, 2)
    a[:, 0] = 1.0
    a[1, 2, 0, 0] = 2.0
    u.add(a, dim=1)
    assert u.counts.tolist() == [7, 0, 1]
