"""PIP-Net's head on frozen tokens: its losses on 2x2 cases computed by hand, presence, thresholding, training."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from xbench.backbones import build_backbone
from xbench.cache import FeatureCache
from xbench.errors import ConfigError
from xbench.explanation import check_concept_decomposition
from xbench.extract import Extractor
from xbench.methods.base import Batch, FitContext, HeadInfo, Method, TrainData, parse_params
from xbench.methods.pip_net.losses import align_loss, classification_loss, symmetric_align_loss, tanh_loss
from xbench.methods.pip_net.method import PIPNet
from xbench.runner import build_dataset
from xbench.tokens import Tokens
from xbench.views import PlainView

# one image, 2x2 patches, K = 2 prototypes: the two views' distributions at the four (aligned) positions
Z1 = torch.tensor([[[1.0, 0.0], [0.5, 0.5]], [[0.8, 0.2], [0.0, 1.0]]])[None]      # [1, 2, 2, 2]
Z2 = torch.tensor([[[1.0, 0.0], [0.5, 0.5]], [[0.2, 0.8], [0.5, 0.5]]])[None]


def test_alignment_loss_2x2_by_hand():
    # dot products per patch: 1, 0.5, 0.8*0.2 + 0.2*0.8 = 0.32, 0.5 -> L_A = -(ln 1 + ln .5 + ln .32 + ln .5) / 4
    expected = -(0.0 + 2 * math.log(0.5) + math.log(0.32)) / 4
    assert align_loss(Z1, Z2, eps=0.0).item() == pytest.approx(expected, rel=1e-6)
    assert align_loss(Z1, Z2).item() == pytest.approx(expected, rel=1e-6)          # eps 1e-10 is negligible
    # the symmetric form has the same value and gives each view half of the gradient
    a = Z1.clone().requires_grad_(True)
    symmetric_align_loss(a, Z2).backward()
    b = Z1.clone().requires_grad_(True)
    align_loss(b, Z2).backward()
    assert symmetric_align_loss(Z1, Z2).item() == pytest.approx(expected, rel=1e-6)
    assert torch.allclose(a.grad, 0.5 * b.grad)
    # d/dz1 at patch (1, 0): -(1/4) z2 / <z1, z2> = -(1/4) (0.2, 0.8) / 0.32
    assert torch.allclose(b.grad[0, 1, 0], torch.tensor([-0.25 * 0.2 / 0.32, -0.25 * 0.8 / 0.32]))


def test_tanh_loss_2x2_by_hand():
    # image a: presences (max over its 4 patches) = (0.9, 0.8); image b: all patches (0.5, 0.5) -> (0.5, 0.5)
    za = torch.tensor([[[0.9, 0.1], [0.6, 0.4]], [[0.7, 0.3], [0.2, 0.8]]])
    zb = torch.full((2, 2, 2), 0.5)
    pooled = torch.stack([za, zb]).flatten(1, 2).amax(dim=1)
    assert torch.allclose(pooled, torch.tensor([[0.9, 0.8], [0.5, 0.5]]))
    # L_T = -(ln tanh(1.4) + ln tanh(1.3)) / 2
    expected = -(math.log(math.tanh(1.4)) + math.log(math.tanh(1.3))) / 2
    assert tanh_loss(pooled).item() == pytest.approx(expected, rel=1e-6)
    # an absent prototype costs -ln(eps) / K: the loss pushes every prototype to appear somewhere
    assert tanh_loss(torch.tensor([[1.0, 0.0]])).item() > 10


def test_classification_loss_by_hand():
    # logits (1, 0) -> log(1 + o^2) = (ln 2, 0); CE for class 0 = -(ln 2 - ln(2 + 1)) = ln 3 - ln 2
    got = classification_loss(torch.tensor([[1.0, 0.0]]), torch.tensor([[1.0, 0.0]]))
    assert got.item() == pytest.approx(math.log(3) - math.log(2), rel=1e-6)


def _identity_head(num_classes: int = 2) -> PIPNet:
    """A 1x1 add-on that is the identity on 2-d tokens: z = softmax(token)."""
    m = PIPNet(HeadInfo(num_classes=num_classes, grid=2, dim=2), parse_params(PIPNet, {"hidden_layers": 0}))
    with torch.no_grad():
        m.head.addon[0].weight.copy_(torch.eye(2))
        m.head.addon[0].bias.zero_()
        m.head.weight.copy_(torch.tensor([[2.0, 0.0], [0.5, 1.0]]))
    return m.eval()


def test_presence_threshold_and_decomposition_2x2():
    m = _identity_head()
    # image 0: tokens (ln 3, 0) at (0, 0) -> (3/4, 1/4); (0, 0) elsewhere -> (1/2, 1/2): presence (3/4, 1/2)
    # image 1: tokens (ln 19, 0) everywhere -> (0.95, 0.05): presence (0.95, 0.05); 0.05 < 0.1 counts as absent
    patch = torch.zeros(2, 2, 2, 2)
    patch[0, 0, 0, 0] = math.log(3)
    patch[1, ..., 0] = math.log(19)
    tokens = Tokens(patch=patch, cls=patch.mean(dim=(1, 2)), reg=torch.zeros(2, 0, 2))
    exp = m.explain(Batch(tokens=tokens))
    assert torch.allclose(exp.concept_scores, torch.tensor([[0.75, 0.5], [0.95, 0.0]]))
    # logits = scores @ W.T: image 0 (1.5, 0.875), image 1 (1.9, 0.475)
    assert torch.allclose(exp.logits, torch.tensor([[1.5, 0.375 + 0.5], [1.9, 0.475]]))
    assert check_concept_decomposition(exp) < 1e-6
    assert exp.concept_maps.shape == (2, 2, 2, 2)
    assert torch.allclose(exp.concept_maps[0, :, 0, 0], torch.tensor([0.75, 0.25]))


TINY = {"num_classes": 4, "train_per_class": 4, "test_per_class": 2, "resolution": 96}
SMALL = {"num_prototypes": 16, "hidden_dim": 16, "views": 2, "batch_size": 8, "align_impl": "matrix",
         "pretrain_epochs": 1, "epochs": 2, "lr": 5e-3}


def test_fit_on_two_cached_views(tmp_path):
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        ds = build_dataset("synthbirds", TINY, None)
        ex = Extractor(build_backbone("weight-free"), FeatureCache(tmp_path), "cpu", batch_size=32, num_workers=0,
                       show_progress=False)
        train = ex.store(ds, "train", PlainView())
        info = HeadInfo(num_classes=ds.num_classes, grid=train.grid, dim=train.dim)
        m = PIPNet(info, parse_params(PIPNet, SMALL))
        views = {k: ex.store(ds, "train", v) for k, v in m.extra_views().items()}
        labels = np.asarray(ds.split("train").labels)
        with pytest.raises(ConfigError, match="second views"):
            m.fit(TrainData(train, labels, None, ds.num_classes, torch.device("cpu")),
                  FitContext(torch.device("cpu"), seed=0, show_progress=False))
        data = TrainData(train, labels, None, ds.num_classes, torch.device("cpu"), views)
        before = m.head.weight.detach().clone()
        log = m.fit(data, FitContext(torch.device("cpu"), seed=0, show_progress=False))
        assert [h["phase"] for h in log["history"]] == ["pretrain", "train", "train"]
        assert log["history"][0]["cls"] == 0.0 and all(math.isfinite(h["total"]) for h in log["history"])
        w = m.head.weight.detach()
        assert (w >= 0).all() and not torch.equal(w, before)
        tokens = train.tokens(np.arange(len(train)))
        exp = m.explain(Batch(tokens=tokens))
        assert check_concept_decomposition(exp) < 1e-4
        m.save(tmp_path / "head")
        back = Method.load(tmp_path / "head")
        assert torch.allclose(back.logits(Batch(tokens=tokens)), exp.logits, atol=1e-5)
    finally:
        torch.set_num_threads(n)
