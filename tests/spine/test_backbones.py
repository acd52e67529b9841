"""Backbones (SPEC 2): tokens layout, weight files in both layouts, offline errors, weight-free determinism."""
from __future__ import annotations

import pytest
import torch

from xbench.backbones import build_backbone
from xbench.errors import WeightsError


def _fair_layout(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The FAIR DINOv2 checkpoint layout of a timm reg4 state dict (inverse of timm's conversion)."""
    out = {k: v.clone() for k, v in sd.items() if not k.startswith("model.reg_token")}
    out = {k[len("model."):]: v for k, v in out.items()}
    cls = out.pop("cls_token")
    pos = out.pop("pos_embed")  # [1, g*g, D], no class position in timm's reg4 layout
    cls_pos = torch.zeros(1, 1, pos.shape[-1])  # FAIR keeps a class position; timm folds it into cls_token
    out["pos_embed"] = torch.cat([cls_pos, pos], dim=1)
    out["cls_token"] = cls - cls_pos[:, 0:1]
    out["register_tokens"] = sd["model.reg_token"].clone()
    out["mask_token"] = torch.zeros(1, pos.shape[-1])
    return out


def test_tokens_split_into_grid_cls_and_registers():
    """The DINOv2 split by value: CLS, the 4 registers and the 16 x 16 patch grid are exactly timm's
    forward_features (final norm applied) at [0], [1:5] and [5:] in row-major order; the random weights are
    pinned (two builds give the same weights hash and tokens)."""
    bb = build_backbone("dinov2-tiny-test", "random")
    x = torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        t = bb(x)
        ref = bb.model.forward_features(x)
    assert t.patch.shape == (2, 16, 16, 32) and t.cls.shape == (2, 32) and t.reg.shape == (2, 4, 32)
    assert ref.shape == (2, 1 + 4 + 256, 32)
    assert torch.equal(t.cls, ref[:, 0]) and torch.equal(t.reg, ref[:, 1:5])
    for i, j in ((0, 0), (0, 15), (7, 3), (15, 15)):               # patch (i, j) is sequence position 5 + 16 i + j
        assert torch.equal(t.patch[:, i, j], ref[:, 5 + 16 * i + j])
    assert bb.weights_label == "random" and not any(p.requires_grad for p in bb.parameters())
    again = build_backbone("dinov2-tiny-test", "random")
    assert again.weights_hash == bb.weights_hash
    with torch.no_grad():
        assert torch.equal(again(x).patch, t.patch)
    # the anchored forward (Grad-CAM) gives the same tokens
    t2 = bb.forward_anchored(torch.zeros(1, 3, 224, 224), torch.nn.Identity())
    t3 = bb(torch.zeros(1, 3, 224, 224))
    assert torch.allclose(t2.patch, t3.patch, atol=1e-6)


def test_fair_pth_and_timm_safetensors_give_identical_tokens(tmp_path):
    from safetensors.torch import save_file

    src = build_backbone("dinov2-tiny-test", "random", seed=3)
    sd = src.state_dict()
    save_file({k[len("model."):]: v.contiguous() for k, v in sd.items()}, str(tmp_path / "tiny.safetensors"))
    torch.save(_fair_layout(sd), tmp_path / "tiny_fair.pth")
    a = build_backbone("dinov2-tiny-test", str(tmp_path / "tiny.safetensors"))
    b = build_backbone("dinov2-tiny-test", str(tmp_path / "tiny_fair.pth"))
    x = torch.randn(2, 3, 224, 224)
    ta, tb, ts = a(x), b(x), src(x)
    for u, v in ((ta, tb), (ta, ts)):
        assert torch.allclose(u.patch, v.patch, atol=1e-5)
        assert torch.allclose(u.cls, v.cls, atol=1e-5)
        assert torch.allclose(u.reg, v.reg, atol=1e-5)
    assert a.weights_kind == "file" and a.weights_hash == b.weights_hash


def test_wrong_architecture_file_is_one_line(tmp_path):
    from safetensors.torch import save_file

    save_file({"blocks.0.attn.qkv.weight": torch.zeros(3, 3)}, str(tmp_path / "bad.safetensors"))
    with pytest.raises(WeightsError) as e:
        build_backbone("dinov2-tiny-test", str(tmp_path / "bad.safetensors"))
    assert "does not fit backbone" in str(e.value) and "\n" not in str(e.value)
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(WeightsError) as e:
        build_backbone("dinov2-tiny-test", str(tmp_path / "junk.pth"))
    assert "junk.pth" in str(e.value)


def test_pickled_objects_are_refused(tmp_path):
    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    torch.save({"x": Evil()}, tmp_path / "evil.pth")
    with pytest.raises(WeightsError):
        build_backbone("dinov2-tiny-test", str(tmp_path / "evil.pth"))


def test_offline_auto_weights_name_the_file_to_pass(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(WeightsError) as e:
        build_backbone("vit_small_patch14_reg4_dinov2", "auto")
    msg = str(e.value)
    assert "--weights" in msg and "dinov2_vits14_reg4_pretrain.pth" in msg and "\n" not in msg


def test_weight_free_is_deterministic_and_labelled():
    a = build_backbone("weight-free")
    b = build_backbone("weight-free")
    x = torch.rand(2, 3, 224, 224)
    assert torch.equal(a(x).patch, b(x).patch)
    assert a.weights_label == "weight-free" and a.weights_hash == b.weights_hash
    assert len(list(a.parameters())) == 0
    with pytest.raises(WeightsError):
        build_backbone("weight-free", "some.pth")


def test_dinov2_family_registered():
    from xbench.registry import BACKBONES

    for size in ("small", "base", "large", "giant2"):
        for reg in ("", "reg4_"):
            assert f"vit_{size}_patch14_{reg}dinov2" in BACKBONES
