"""ProtoFM's head and explanation contract (SPEC 3.4, SPEC 4)."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from xbench.explanation import check_concept_decomposition
from xbench.methods.base import Batch, HeadInfo, parse_params
from xbench.methods.protofm.head import ProtoHead, count_parameters
from xbench.methods.protofm.method import ProtoFM
from xbench.tokens import Tokens


def test_parameter_count_on_vit_b_tokens():
    head = ProtoHead(dim=768, num_classes=200)
    # projector: D->512 (768*512+512) + D->D (768*768+768) + D->512 (768*512+512) + 512->512 (512*512+512)
    projector = (768 * 512 + 512) + (768 * 768 + 768) + (768 * 512 + 512) + (512 * 512 + 512)
    assert projector == 1_640_704
    assert count_parameters(head.encoder.projector) == projector
    assert count_parameters(head.encoder.prototypes) == 300 * 512
    assert count_parameters(head.smoother) == 300 * 9 + 300  # depthwise 3x3 + 1x1, no biases
    assert count_parameters(head.classifier) == 200 * 300  # no bias
    assert count_parameters(head) == projector + 153_600 + 3_000 + 60_000 == 1_857_304


def test_prototypes_orthogonal_and_normalised_at_init():
    torch.manual_seed(0)
    head = ProtoHead(dim=32, num_classes=5, proj_dim=512, num_prototypes=300)
    w = head.encoder.prototypes.weight.detach()
    assert w.shape == (300, 512)
    assert torch.allclose(w.norm(dim=1), torch.ones(300), atol=1e-5)
    assert torch.allclose(w @ w.T, torch.eye(300), atol=1e-4)


def test_assignment_is_softmax_of_cosine_at_temperature():
    torch.manual_seed(0)
    head = ProtoHead(dim=16, num_classes=3, proj_dim=8, num_prototypes=6, temperature=0.1)
    x = torch.randn(2, 4, 4, 16)
    out = head(x)
    assert torch.allclose(out.z.norm(dim=-1), torch.ones(2, 4, 4), atol=1e-5)
    protos = F.normalize(head.encoder.prototypes.weight, dim=1)
    cos = torch.einsum("bhwp,kp->bhwk", out.z, protos)
    assert torch.allclose(out.assignment, torch.exp(cos / 0.1) / torch.exp(cos / 0.1).sum(-1, keepdim=True),
                          atol=1e-6)
    assert torch.allclose(out.assignment.sum(-1), torch.ones(2, 4, 4), atol=1e-6)
    # scores are the spatial max of the smoothed maps; logits = scores @ W.T with no bias
    assert torch.equal(out.scores, out.maps.amax(dim=(2, 3)))
    assert torch.allclose(out.logits, out.scores @ head.classifier.weight.T, atol=0, rtol=0)


def test_smoothing_init_is_light_blur_plus_identity():
    head = ProtoHead(dim=4, num_classes=2, proj_dim=4, num_prototypes=3)
    a = torch.zeros(1, 3, 5, 5)
    a[0, 1, 2, 2] = 1.0  # a single active patch of prototype 1
    m = head.smoother(a)
    # centre: 0.5 * 4/16 (blur) + 0.5 (identity); edge neighbour 0.5 * 2/16; corner neighbour 0.5 * 1/16
    assert abs(m[0, 1, 2, 2].item() - (0.5 * 4 / 16 + 0.5)) < 1e-6
    assert abs(m[0, 1, 2, 3].item() - 0.5 * 2 / 16) < 1e-6
    assert abs(m[0, 1, 1, 1].item() - 0.5 * 1 / 16) < 1e-6
    assert m[0, 0].abs().sum() == 0 and m[0, 2].abs().sum() == 0  # depthwise: no leak across prototypes


def _model(num_classes: int = 4, dim: int = 12, **over) -> ProtoFM:
    info = HeadInfo(num_classes=num_classes, grid=4, dim=dim)
    return ProtoFM(info, parse_params(ProtoFM, {"proj_dim": 8, "num_prototypes": 10, **over}))


def test_explanation_contract():
    torch.manual_seed(0)
    model = _model().eval()
    with torch.no_grad():
        model.head.classifier.weight.uniform_(0, 2)
    tok = Tokens(torch.randn(3, 4, 4, 12), torch.randn(3, 12), torch.zeros(3, 0, 12))
    exp = model.explain(Batch(tokens=tok))
    assert exp.concept_maps.shape == (3, 10, 4, 4) and exp.concept_scores.shape == (3, 10)
    assert exp.class_weights.shape == (4, 10) and exp.class_bias is None
    assert (exp.class_weights >= 0).all()
    assert check_concept_decomposition(exp, atol=1e-6) <= 1e-6
    assert torch.equal(exp.logits, exp.concept_scores @ exp.class_weights.T)
    # attribution(c) = sum_k W[c, k] map_k; a per-image target
    target = torch.tensor([0, 3, 1])
    expect = torch.stack([(exp.class_weights[c][:, None, None] * exp.concept_maps[b]).sum(0)
                          for b, c in enumerate(target.tolist())])
    assert torch.allclose(exp.attribution(target), expect, atol=1e-6)
    # importance [B, K, C] = score x W; summed over prototypes it is the logit
    imp = exp.extras["importance"]
    assert imp.shape == (3, 10, 4)
    assert torch.allclose(imp[1, :, 2], exp.concept_scores[1] * exp.class_weights[2])
    assert torch.allclose(imp.sum(1), exp.logits, atol=1e-6)
    assert exp.extras["assignment"].shape == (3, 10, 4, 4)
    assert torch.allclose(model.logits(Batch(tokens=tok)), exp.logits)
    assert exp.provides == {"logits", "attribution", "concepts"}


def test_save_load_roundtrip(tmp_path):
    torch.manual_seed(0)
    model = _model().eval()
    tok = Tokens(torch.randn(2, 4, 4, 12), torch.randn(2, 12), torch.zeros(2, 0, 12))
    model.save(tmp_path / "h")
    from xbench.methods.base import Method
    back = Method.load(tmp_path / "h")
    assert isinstance(back, ProtoFM) and back.params.num_prototypes == 10
    assert torch.equal(back.explain(Batch(tokens=tok)).logits, model.explain(Batch(tokens=tok)).logits)


def test_teacher_views_follow_params():
    v = _model(views=3, view_seed=7).extra_views()["teacher"]
    assert v.views == 3 and v.seed == 7


def test_bad_parameters_are_config_errors():
    import pytest

    from xbench.errors import ConfigError

    for bad in ({"align_impl": "nearest"}, {"align_k_shift": 1.5}, {"align_v_shift": 0}, {"views": 0}):
        with pytest.raises(ConfigError):
            _model(**bad)
