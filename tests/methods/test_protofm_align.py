"""ProtoFM's RoIAlign step: a known crop of a known map gives hand-computed values (SPEC 3.4)."""
from __future__ import annotations

import pytest
import torch

from xbench.methods.protofm.align import IMPLS, align_to_teacher

G = 16


def coordinate_map() -> torch.Tensor:
    """[1, 2, G, G]: channel 0 holds the column index x, channel 1 the row index y of each cell."""
    ys, xs = torch.meshgrid(torch.arange(G, dtype=torch.float32), torch.arange(G, dtype=torch.float32), indexing="ij")
    return torch.stack([xs, ys])[None]


@pytest.mark.parametrize("impl", IMPLS)
def test_full_box_is_identity(impl):
    m = torch.randn(2, 3, G, G)
    out = align_to_teacher(m, torch.tensor([[0.0, 0.0, 1.0, 1.0]] * 2), torch.tensor([False, False]), impl=impl)
    assert torch.allclose(out, m, atol=1e-6)


@pytest.mark.parametrize("impl", IMPLS)
def test_right_half_box(impl):
    # Teacher patch j of a crop covering x in [0.5, 1] has its centre at 0.5 + (j + 0.5) * 0.5 / 16 of the
    # width, i.e. at 16 * that = 8 + 0.5 j + 0.25 in cell units, i.e. at index coordinate 7.75 + 0.5 j;
    # the map is linear in x there, so the value is 7.75 + 0.5 j, held at 15 past the last cell centre.
    out = align_to_teacher(coordinate_map(), torch.tensor([[0.5, 0.0, 1.0, 1.0]]), torch.tensor([False]), impl=impl)
    j = torch.arange(G, dtype=torch.float32)
    expect_x = (7.75 + 0.5 * j).clamp(max=15.0)
    assert torch.allclose(out[0, 0], expect_x.expand(G, G), atol=1e-5)
    assert torch.allclose(out[0, 1], j[:, None].expand(G, G), atol=1e-5)  # rows untouched (box spans all y)
    assert abs(out[0, 0, 0, 0].item() - 7.75) < 1e-6 and abs(out[0, 0, 0, 15].item() - 15.0) < 1e-6


@pytest.mark.parametrize("impl", IMPLS)
def test_flip_mirrors_columns(impl):
    box = torch.tensor([[0.5, 0.0, 1.0, 1.0]])
    plain = align_to_teacher(coordinate_map(), box, torch.tensor([False]), impl=impl)
    mirrored = align_to_teacher(coordinate_map(), box, torch.tensor([True]), impl=impl)
    assert torch.allclose(mirrored, plain.flip(-1), atol=1e-6)
    j = torch.arange(G, dtype=torch.float32)
    assert torch.allclose(mirrored[0, 0, 0], (7.75 + 0.5 * (15 - j)).clamp(max=15.0), atol=1e-5)


@pytest.mark.parametrize("impl", IMPLS)
def test_small_box_bilinear_values_and_batch(impl):
    # box x in [0.25, 0.5], y in [0.5, 0.75] onto an 8 x 8 grid: each teacher patch spans half a student
    # cell, so the centres sit at index 3.75 + 0.5 j (x) and 7.75 + 0.5 i (y). With the non-linear map
    # f(y, x) = y^2 + 10 x, bilinear interpolation gives (1 - t) y0^2 + t (y0 + 1)^2 + 10 x, y0 = floor(y).
    ys, xs = torch.meshgrid(torch.arange(G, dtype=torch.float32), torch.arange(G, dtype=torch.float32), indexing="ij")
    f = (ys ** 2 + 10 * xs)[None, None]
    m = torch.cat([f, torch.zeros_like(f)])  # second image: zeros
    out = align_to_teacher(m, torch.tensor([[0.25, 0.5, 0.5, 0.75], [0.0, 0.0, 1.0, 1.0]]),
                           torch.tensor([False, True]), out_size=8, impl=impl)
    assert out.shape == (2, 1, 8, 8)
    for i in range(8):
        for j in range(8):
            y, x = 7.75 + 0.5 * i, 3.75 + 0.5 * j
            y0 = int(y)
            t = y - y0
            expect = (1 - t) * y0 ** 2 + t * (y0 + 1) ** 2 + 10 * x
            assert abs(out[0, 0, i, j].item() - expect) < 1e-3
    assert abs(out[0, 0, 0, 0].item() - (0.25 * 49 + 0.75 * 64 + 37.5)) < 1e-4  # by hand: y = 7.75 (t = 0.75), x = 3.75
    assert torch.equal(out[1], torch.zeros(1, 8, 8))


@pytest.mark.parametrize("impl", IMPLS)
def test_gradient_flows_to_student_maps(impl):
    m = torch.randn(1, 2, G, G, requires_grad=True)
    align_to_teacher(m, torch.tensor([[0.2, 0.1, 0.9, 0.8]]), torch.tensor([True]), impl=impl).sum().backward()
    assert m.grad is not None and m.grad.abs().sum() > 0


def test_matrix_form_equals_torchvision_roi_align():
    torch.manual_seed(0)
    m = torch.randn(6, 5, G, G, requires_grad=True)
    lo = torch.rand(6, 2) * 0.5
    boxes = torch.cat([lo, (lo + 0.2 + 0.3 * torch.rand(6, 2)).clamp(max=1.0)], dim=1)
    flips = torch.tensor([True, False, True, True, False, False])
    a = align_to_teacher(m, boxes, flips, impl="roi_align")
    b = align_to_teacher(m, boxes, flips, impl="matrix")
    assert torch.allclose(a, b, atol=1e-5)
    ga = torch.autograd.grad((a * a).sum(), m)[0]
    gb = torch.autograd.grad((b * b).sum(), m)[0]
    assert torch.allclose(ga, gb, atol=1e-4)
    with pytest.raises(ValueError):
        align_to_teacher(m, boxes, flips, impl="nearest")


@pytest.mark.parametrize("impl", IMPLS)
def test_channels_last_layout(impl):
    torch.manual_seed(1)
    m = torch.randn(3, 4, G, G)
    boxes = torch.tensor([[0.1, 0.2, 0.6, 0.9], [0.0, 0.0, 1.0, 1.0], [0.3, 0.3, 0.8, 0.7]])
    flips = torch.tensor([False, True, True])
    cf = align_to_teacher(m, boxes, flips, impl=impl)
    cl = align_to_teacher(m.permute(0, 2, 3, 1), boxes, flips, impl=impl, channels_last=True)
    assert torch.allclose(cl, cf.permute(0, 2, 3, 1), atol=1e-5)
