"""The weight-free backbone's correlogram, checked on images whose pair counts are known by hand."""
from __future__ import annotations

import numpy as np
import torch

from xbench.backbones import build_backbone
from xbench.backbones.weightfree import BASIC_COLOURS, DIRECTION_GROUPS, OFFSETS

NAMES = list(BASIC_COLOURS)


def _normalised(rgb: np.ndarray) -> torch.Tensor:
    bb = build_backbone("weight-free")
    x = torch.from_numpy(rgb).permute(2, 0, 1).float().unsqueeze(0) / 255.0
    return (x - torch.tensor(bb.mean).view(1, 3, 1, 1)) / torch.tensor(bb.std).view(1, 3, 1, 1)


def _pair(a: str, b: str) -> int:
    i, j = sorted((NAMES.index(a), NAMES.index(b)))
    k = len(NAMES)
    return i * k - i * (i - 1) // 2 + (j - i)  # row-major index in the upper triangle


def test_two_halves_by_hand():
    img = np.zeros((224, 224, 3), np.uint8)
    img[:, :112] = BASIC_COLOURS["red"]
    img[:, 112:] = BASIC_COLOURS["blue"]
    bb = build_backbone("weight-free")
    tok = bb(_normalised(img)).patch[0]  # [16, 16, 660]
    groups = tok.view(16, 16, len(OFFSETS) * len(DIRECTION_GROUPS), -1) ** 2  # shares of pairs
    rr, rb = _pair("red", "red"), _pair("red", "blue")
    # a red patch far from the boundary and the image border: every pair is {red, red}
    assert torch.allclose(groups[5, 2, :, rr], torch.ones(10))
    # patch column 7 (x 98..111) touches the boundary at x = 112: with offset 16 horizontally every
    # pixel's partner is blue, vertically red -> half {red, blue}, half {red, red} in the h+v group
    g = OFFSETS.index(16) * 2
    assert torch.isclose(groups[5, 7, g, rb], torch.tensor(0.5)) and torch.isclose(groups[5, 7, g, rr], torch.tensor(0.5))
    # offset 1: only the last pixel column of the patch sees blue horizontally: 14 of 2 * 196 pairs
    g1 = OFFSETS.index(1) * 2
    assert torch.isclose(groups[5, 7, g1, rb], torch.tensor(14 / 392))
    # every interior patch's shares sum to 1 in every group
    assert torch.allclose(groups[2:10, 2:10].sum(-1), torch.ones(8, 8, 10), atol=1e-5)
    # CLS is the patch mean, no registers
    out = bb(_normalised(img))
    assert torch.allclose(out.cls[0], out.patch[0].mean(dim=(0, 1))) and out.reg.shape == (1, 0, 660)


def test_numpy_and_torch_counting_agree():
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, size=(2, 224, 224, 3), dtype=np.uint8)
    x = torch.cat([_normalised(i) for i in img])
    bb = build_backbone("weight-free")
    assert torch.equal(bb._descriptor(x, use_torch=False), bb._descriptor(x, use_torch=True))


def test_colour_names_are_the_nearest_basic_colour():
    bb = build_backbone("weight-free")
    img = np.array([[list(c) for c in BASIC_COLOURS.values()]], np.uint8)  # 1 x 11 pixels
    names = bb.colour_names(_normalised(img))[0, 0].tolist()
    assert names == list(range(len(BASIC_COLOURS)))
