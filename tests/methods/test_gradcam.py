"""Grad-CAM baseline (SPEC 3.2) and the captum adapter, checked against hand derivations."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import xbench.methods  # noqa: F401  (registers the methods)
from xbench.backbones import build_backbone
from xbench.errors import ConfigError
from xbench.methods.base import Batch, FitContext, HeadInfo, TrainData
from xbench.methods.captum_adapter import pool_to_grid
from xbench.methods.gradcam import GradCam, GradCamParams
from xbench.methods.linear_probe import LinearProbe
from xbench.registry import METHODS


class _Ex:
    """The part of the runner's extractor a needs_backbone_graph method uses."""

    def __init__(self, backbone):
        self.backbone = backbone


def _model(bb, attribution: str = "gradcam", classes: int = 4, seed: int = 0, scale: float = 1.0, **kw) -> GradCam:
    info = HeadInfo(num_classes=classes, grid=bb.grid, dim=bb.embed_dim, num_registers=bb.num_registers)
    m = GradCam(info, GradCamParams(attribution=attribution, **kw))
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        m.linear.weight.copy_(torch.randn(m.linear.weight.shape, generator=g) * scale)
        m.linear.bias.copy_(torch.randn(m.linear.bias.shape, generator=g))
    m.attach_extractor(_Ex(bb))
    return m.eval()


def _batch(bb, images: torch.Tensor) -> Batch:
    with torch.no_grad():
        return Batch(tokens=bb(images), images=images)


@pytest.fixture(scope="module")
def tiny_vit():
    return build_backbone("dinov2-tiny-test", "random")


@pytest.fixture(scope="module")
def tiny_vit_small():
    return build_backbone("dinov2-tiny-test", "random", image_size=56)   # 4 x 4 grid: cheap perturbation methods


@pytest.fixture(scope="module")
def weight_free_small():
    return build_backbone("weight-free", image_size=56)      # 4 x 4 grid: fast, same code path


def test_spec():
    spec = METHODS.get("gradcam").spec
    assert spec.provides == frozenset({"logits", "attribution"})
    assert spec.needs_backbone_graph


def test_anchor_gets_grid_without_cls_and_registers_and_map_is_grid(tiny_vit):
    m = _model(tiny_vit)
    seen = []
    h = m.anchor.register_forward_hook(lambda mod, inp, out: seen.append(tuple(inp[0].shape)))
    images = torch.randn(3, 3, 224, 224, generator=torch.Generator().manual_seed(1))
    exp = m.explain(_batch(tiny_vit, images))
    a = exp.attribution(torch.tensor([0, 1, 2]))
    h.remove()
    assert seen and all(s == (3, 32, 16, 16) for s in seen)   # D = 32, g = 16: 256 patches, no CLS, no 4 registers
    assert a.shape == (3, 16, 16)
    assert (a >= 0).all()                                      # ReLU as in Grad-CAM
    assert not a.requires_grad


def test_gradcam_equals_autograd_derivation_on_tiny_vit(tiny_vit):
    m = _model(tiny_vit, seed=3)
    images = torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(2))
    t = torch.tensor([3, 1])
    got = m.explain(_batch(tiny_vit, images)).attribution(t)
    # by hand: A = last block's patch input as a grid; alpha = spatial mean of d logit_t / dA; CAM = ReLU(sum_d alpha_d A_d)
    store = {}

    def keep(grid):
        store["A"] = grid.detach().requires_grad_(True)     # the backbone is frozen: start the graph here
        return store["A"]

    with torch.enable_grad():
        tok = tiny_vit.forward_anchored(images, keep)
        logit = m.linear(tok.cls)[torch.arange(2), t].sum()
        grad_a, grad_patch = torch.autograd.grad(logit, [store["A"], tok.patch], allow_unused=True)
    alpha = grad_a.mean(dim=(2, 3), keepdim=True)
    want = torch.relu((alpha * store["A"]).sum(dim=1)).detach()
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-7)
    # why the block's input: the CLS probe does not depend on the last block's output patch tokens
    assert grad_patch is None or float(grad_patch.abs().max()) == 0.0


def test_gradcam_closed_form_on_weight_free(weight_free_small):
    bb = weight_free_small
    m = _model(bb, classes=3, seed=5)
    images = torch.randn(2, 3, 56, 56, generator=torch.Generator().manual_seed(4)).clamp(-2, 2)
    got = m.explain(_batch(bb, images)).attribution(torch.tensor([2, 0]))
    # CLS = patch mean, so d logit_c / dA[d, i, j] = W[c, d] / g^2 everywhere: alpha_d = W[c, d] / g^2
    with torch.no_grad():
        A = bb._descriptor(images)                                  # [B, D, g, g]
        g = A.shape[-1]
        alpha = m.linear.weight[torch.tensor([2, 0])] / g**2       # [B, D]
        want = torch.relu(torch.einsum("bd,bdhw->bhw", alpha, A))
    assert got.shape == (2, g, g)
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-7)


def test_per_image_targets_and_int_target(tiny_vit):
    m = _model(tiny_vit, seed=7)
    images = torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(8))
    exp = m.explain(_batch(tiny_vit, images))
    mixed = exp.attribution(torch.tensor([0, 2]))
    a0, a2 = exp.attribution(0), exp.attribution(2)
    torch.testing.assert_close(mixed[0], a0[0])
    torch.testing.assert_close(mixed[1], a2[1])
    assert not torch.allclose(a0[1], a2[1])


def test_integrated_gradients_through_adapter_is_complete(tiny_vit_small):
    # the random tiny ViT's CLS barely moves with the image: scale the probe so logit changes are O(1)
    m = _model(tiny_vit_small, "integrated_gradients", seed=9, scale=3000.0, ig_steps=64)
    images = torch.randn(2, 3, 56, 56, generator=torch.Generator().manual_seed(10))
    t = torch.tensor([1, 3])
    a = m.explain(_batch(tiny_vit_small, images)).attribution(t)
    assert a.shape == (2, 4, 4)
    # completeness: the signed grid sums to logit(x) - logit(baseline = all-zero normalised image)
    with torch.no_grad():
        f = m.linear(tiny_vit_small(images).cls)[torch.arange(2), t]
        f0 = m.linear(tiny_vit_small(torch.zeros_like(images)).cls)[torch.arange(2), t]
    assert (f - f0).abs().min() > 0.05
    torch.testing.assert_close(a.sum(dim=(1, 2)), f - f0, rtol=1e-2, atol=1e-3)


def test_occlusion_through_adapter_is_the_patch_drop(tiny_vit_small):
    m = _model(tiny_vit_small, "occlusion", seed=11, scale=3000.0, occlusion_batch=128)
    images = torch.randn(2, 3, 56, 56, generator=torch.Generator().manual_seed(12))
    t = torch.tensor([2, 0])
    a = m.explain(_batch(tiny_vit_small, images)).attribution(t)
    assert a.shape == (2, 4, 4)
    # by hand for two cells: occlude the 14 x 14 patch with the baseline 0; every pixel carries the drop
    with torch.no_grad():
        f = m.linear(tiny_vit_small(images).cls)[torch.arange(2), t]
        for (i, j) in [(0, 0), (2, 3)]:
            x = images.clone()
            x[:, :, 14 * i:14 * i + 14, 14 * j:14 * j + 14] = 0
            drop = f - m.linear(tiny_vit_small(x).cls)[torch.arange(2), t]
            assert drop.abs().min() > 1e-3
            torch.testing.assert_close(a[:, i, j], 3 * 14 * 14 * drop, rtol=1e-3, atol=1e-3)


class _LinearPatches(torch.nn.Module):
    """A toy backbone with closed-form attributions: patch token (i, j) = E x_patch(i, j) (a p x p convolution
    of stride p, no bias), CLS = the patch-token mean; the anchor sees the token grid [B, D, g, g]."""

    patch_size = 4

    def __init__(self, dim: int = 5, seed: int = 0):
        super().__init__()
        self.embed = torch.nn.Conv2d(3, dim, self.patch_size, stride=self.patch_size, bias=False)
        with torch.no_grad():
            self.embed.weight.copy_(torch.randn(self.embed.weight.shape, generator=torch.Generator().manual_seed(seed)))

    def forward_anchored(self, images, anchor):
        from xbench.tokens import Tokens

        grid = anchor(self.embed(images))                          # [B, D, g, g]
        patch = grid.permute(0, 2, 3, 1)
        return Tokens(patch=patch, cls=patch.mean(dim=(1, 2)), reg=patch.new_zeros(len(patch), 0, patch.shape[-1]))


@pytest.mark.parametrize("name", list(__import__("xbench.methods.captum_adapter", fromlist=["x"]).ATTRIBUTIONS))
def test_every_attribution_equals_its_closed_form_on_a_linear_model(name):
    """logit_c = b_c + (1/g^2) sum_ij W_c . E x_ij is linear in the pixels, so with v_c[i, j] = (1/g^2) W_c . P_ij
    (the cell's share of the logit) every attribution is known by hand:
    input x gradient = integrated gradients (zero baseline) = layer gradient x activation = layer integrated
    gradients (the layer's activation at the zero image is 0) = v; Grad-CAM: alpha_d = W_cd / g^2, so
    relu(v); occlusion of one cell by 0 drops the logit by v and each of its 3 p^2 pixels carries the drop;
    saliency = |gradient|, the same in every cell: sum over the cell of |(1/g^2) sum_d W_cd E_d|."""
    from xbench.methods.captum_adapter import CaptumAttributor

    bb, anchor = _LinearPatches(), torch.nn.Identity()
    g, p = 3, bb.patch_size
    w = torch.randn(4, 5, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    head = lambda t: t.cls @ w.T.to(t.cls.dtype) + 0.5          # noqa: E731
    bb.double()
    images = torch.randn(2, 3, g * p, g * p, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    targets = torch.tensor([3, 1])
    got = CaptumAttributor(bb, head, anchor, name, ig_steps=16, occlusion_batch=9)(images, targets)
    with torch.no_grad():
        P = bb.embed(images)                                       # [B, D, g, g]
        v = torch.einsum("bd,bdij->bij", w[targets], P) / g**2
        grad = torch.einsum("bd,dkuv->bkuv", w[targets], bb.embed.weight) / g**2
    want = {"gradcam": torch.relu(v), "occlusion": 3 * p * p * v,
            "saliency": grad.abs().sum(dim=(1, 2, 3))[:, None, None].expand(2, g, g)}.get(name, v)
    assert got.shape == (2, g, g)
    assert v.abs().min() > 1e-3 and (v < 0).any() and (v > 0).any()   # signs matter: relu and sum are checked
    torch.testing.assert_close(got.double(), want, rtol=1e-6, atol=1e-9)


def test_pool_to_grid_by_hand():
    x = torch.zeros(1, 3, 4, 4)
    x[0, 0, 0, 0], x[0, 1, 1, 1], x[0, 2, 3, 3] = 1.0, -2.0, 5.0
    torch.testing.assert_close(pool_to_grid(x, 2, "sum"), torch.tensor([[[-1.0, 0.0], [0.0, 5.0]]]))
    torch.testing.assert_close(pool_to_grid(x, 2, "abs"), torch.tensor([[[3.0, 0.0], [0.0, 5.0]]]))


def test_unknown_attribution_is_a_config_error(tiny_vit):
    info = HeadInfo(num_classes=2, grid=16, dim=32)
    with pytest.raises(ConfigError, match="valid"):
        GradCam(info, GradCamParams(attribution="gradcamm"))
    m = GradCam(info, GradCamParams())
    with pytest.raises(ConfigError, match="extractor"):
        m.explain(_batch(tiny_vit, torch.zeros(1, 3, 224, 224))).attribution(0)


def test_logits_from_cached_cls_and_fit_equals_linear_probe(tmp_path, weight_free_small):
    """Trained exactly like linear-probe; logits read the cached CLS; explained through an EvalContext."""
    from xbench.cache import FeatureCache
    from xbench.data.synthbirds import SynthBirds
    from xbench.evaluation import EvalContext
    from xbench.extract import Extractor
    from xbench.views import PlainView

    ds = SynthBirds(num_classes=5, train_per_class=3, test_per_class=1, resolution=64)
    ex = Extractor(weight_free_small, FeatureCache(tmp_path), "cpu", batch_size=16, num_workers=0,
                   show_progress=False)
    train = ex.store(ds, "train", PlainView())
    info = HeadInfo(num_classes=5, grid=train.grid, dim=train.dim)
    data = TrainData(train, ds.split("train").labels, None, 5, torch.device("cpu"))
    params = dict(epochs=5, lr=1e-2, batch_size=8)
    gc, lp = GradCam(info, GradCamParams(**params)), LinearProbe(info, LinearProbe.Params(**params))
    gc.fit(data, FitContext(torch.device("cpu"), seed=0, show_progress=False))
    lp.fit(data, FitContext(torch.device("cpu"), seed=0, show_progress=False))
    torch.testing.assert_close(gc.linear.weight, lp.linear.weight)
    torch.testing.assert_close(gc.linear.bias, lp.linear.bias)

    gc.attach_extractor(ex)
    ctx = EvalContext(gc, ds, ex, device="cpu", batch_size=3, show_progress=False, needs_images=True)
    torch.testing.assert_close(ctx.logits("test"), lp.linear(ex.store(ds, "test", PlainView()).tokens(
        np.arange(5), "cpu").cls).detach())
    labels = ctx.labels("test")
    maps = [exp.attribution(labels[torch.as_tensor(idx)]) for idx, exp in ctx.explanations("test")]
    assert [tuple(m.shape) for m in maps] == [(3, 4, 4), (2, 4, 4)]


def test_intervention_logits_read_cached_tokens_and_render_no_image(tmp_path, weight_free_small, monkeypatch):
    """Grad-CAM's logits come from the cached CLS tokens: EvalContext.logits loads no image (the intervention
    checks ask for the logits of every intervention), explanations still get the images."""
    from xbench.cache import FeatureCache
    from xbench.data.synthbirds import SynthBirds
    from xbench.evaluation import EvalContext
    from xbench.extract import Extractor
    from xbench.views import PlainView

    ds = SynthBirds(num_classes=3, train_per_class=1, test_per_class=2, resolution=64)
    ex = Extractor(weight_free_small, FeatureCache(tmp_path), "cpu", batch_size=8, num_workers=0, show_progress=False)
    test = ex.store(ds, "test", PlainView())
    m = _model(weight_free_small, classes=3, seed=2)
    m.attach_extractor(ex)
    loads = []
    real = PlainView.load_many
    monkeypatch.setattr(PlainView, "load_many", lambda self, *a, **k: loads.append(1) or real(self, *a, **k))
    ctx = EvalContext(m, ds, ex, device="cpu", batch_size=4, show_progress=False, needs_images=True)
    with torch.no_grad():
        want = m.linear(test.tokens(np.arange(6), "cpu").cls)
    torch.testing.assert_close(ctx.logits("test"), want)
    assert loads == []
    maps = [exp.attribution(0) for _, exp in ctx.explanations("test")]
    assert len(loads) == 2 and [tuple(a.shape) for a in maps] == [(4, 4, 4), (2, 4, 4)]
