"""Backbone families through timm (issue 18): DINOv2, DINOv3, DINO, CLIP ViTs and a ResNet-50.

Each family is tested on a tiny random model built through the real timm code path
(`*-tiny-test`): token layout and values against timm's own forward, preprocessing read
from the model's pretrained config, weights files, Grad-CAM's anchor, and tiny
`xbench run`s whose metrics work from the backbone's declared grid (14 x 14 at patch 16,
7 x 7 for the ResNet). The full-size registered models are checked on the meta device
(no weights, no memory).
"""
from __future__ import annotations

import numpy as np
import pytest
import timm
import torch
import torch.nn.functional as F
from PIL import Image
from tiny import cli_values

from xbench.backbones import build_backbone
from xbench.cache import FeatureCache
from xbench.config import build_config
from xbench.errors import ConfigError, WeightsError
from xbench.extract import Extractor
from xbench.preprocessing import IMAGENET_MEAN, IMAGENET_STD, Preprocessing, from_timm
from xbench.registry import BACKBONES
from xbench.results import ResultsStore
from xbench.runner import Runner
from xbench.views import PlainView, preprocess

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)

#: tiny backbone -> (grid at 224, registers, has a class token, interpolation, mean, std), stated by hand
TINY = {
    "dinov2-tiny-test": (16, 4, True, "bicubic", IMAGENET_MEAN, IMAGENET_STD),
    "dinov3-tiny-test": (14, 4, True, "bicubic", IMAGENET_MEAN, IMAGENET_STD),
    "dino-tiny-test": (14, 0, True, "bicubic", IMAGENET_MEAN, IMAGENET_STD),
    "clip-tiny-test": (14, 0, True, "bicubic", CLIP_MEAN, CLIP_STD),
    "resnet-tiny-test": (7, 0, False, "bilinear", IMAGENET_MEAN, IMAGENET_STD),
}
VITS = [n for n, v in TINY.items() if v[2]]


@pytest.fixture(scope="module")
def built():
    return {}


def _bb(built, name):
    if name not in built:
        built[name] = build_backbone(name, "random")
    return built[name]


def _images(n=2, size=224, seed=0):
    return torch.randn(n, 3, size, size, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("name", list(TINY))
def test_token_shapes_follow_the_declared_grid(built, name):
    g, regs, has_cls, *_ = TINY[name]
    bb = _bb(built, name)
    t = bb(_images())
    d = bb.embed_dim
    assert bb.grid == g and bb.image_size // bb.patch_size == g
    assert t.patch.shape == (2, g, g, d) and t.cls.shape == (2, d) and t.reg.shape == (2, regs, d)
    assert bb.num_registers == regs and bb.has_cls_token is has_cls
    desc = bb.describe()
    assert desc["grid"] == g and desc["cls"] == ("token" if has_cls else "patch-mean")
    assert bb.weights_label == "random" and not any(p.requires_grad for p in bb.parameters())


@pytest.mark.parametrize("name", VITS)
def test_vit_tokens_are_timm_forward_features_split_by_hand(built, name):
    g, regs, *_ = TINY[name]
    bb = _bb(built, name)
    x = _images(seed=1)
    with torch.no_grad():
        ref = bb.model.forward_features(x)       # timm's own forward, final norm applied
        t = bb(x)
    assert ref.shape[1] == 1 + regs + g * g
    torch.testing.assert_close(t.cls, ref[:, 0], rtol=0, atol=0)
    torch.testing.assert_close(t.reg, ref[:, 1:1 + regs], rtol=0, atol=0)
    torch.testing.assert_close(t.patch, ref[:, 1 + regs:].reshape(2, g, g, -1), rtol=0, atol=0)


@pytest.mark.parametrize("name", list(TINY))
def test_intermediate_layers_lie_on_the_grid(built, name):
    """Other layers (timm's forward_intermediates) come back as [B, g, g, D]; the last one is the token grid."""
    bb = _bb(built, name)
    x = _images(1, seed=6)
    with torch.no_grad():
        outs = bb.intermediate(x, 2)                      # the last two layers / stages
        last = bb(x).patch
    assert [tuple(o.shape[1:3]) for o in outs][-1] == (bb.grid, bb.grid) and outs[-1].shape[-1] == bb.embed_dim
    torch.testing.assert_close(outs[-1], last, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", ["dinov2-tiny-test", "dinov3-tiny-test"])
def test_registers_sit_right_after_cls_in_timms_sequence(built, name):
    """The prefix layout xbench splits by: class token, then the register (DINOv3: storage) tokens."""
    bb = _bb(built, name)
    m = bb.model
    with torch.no_grad():
        seq = m._pos_embed(m.patch_embed(_images(1)))
    seq = seq[0] if isinstance(seq, tuple) else seq          # timm's Eva returns (tokens, rope)
    seq = seq.reshape(1, -1, bb.embed_dim)
    torch.testing.assert_close(seq[:, 0], m.cls_token[:, 0], rtol=0, atol=0)
    torch.testing.assert_close(seq[:, 1:5], m.reg_token, rtol=0, atol=0)


def test_resnet_tokens_are_the_last_stage_feature_map(built):
    bb = _bb(built, "resnet-tiny-test")
    m = bb.model
    x = _images(seed=2)
    with torch.no_grad():
        t = bb(x)
        ff = m.forward_features(x)
        y = m.maxpool(m.act1(m.bn1(m.conv1(x))))
        stage4 = m.layer4(m.layer3(m.layer2(m.layer1(y))))
        pooled = m.forward_head(ff, pre_logits=True)        # the global average pool before timm's classifier
    assert ff.shape == (2, 256, 7, 7)
    torch.testing.assert_close(t.patch, ff.permute(0, 2, 3, 1), rtol=0, atol=0)
    torch.testing.assert_close(t.patch, stage4.permute(0, 2, 3, 1), rtol=0, atol=0)
    torch.testing.assert_close(t.cls, pooled, rtol=1e-5, atol=1e-6)
    assert bb.patch_size == 32 and bb.last_stage == "layer4"


@pytest.mark.parametrize("name", list(TINY))
def test_preprocessing_comes_from_the_pretrained_config(built, name):
    *_, interp, mean, std = TINY[name]
    bb = _bb(built, name)
    cfg = timm.data.resolve_model_data_config(bb.model)
    pre = bb.preprocessing
    assert (pre.interpolation, pre.mean, pre.std) == (interp, tuple(mean), tuple(std))
    assert (pre.interpolation, pre.mean, pre.std) == (cfg["interpolation"], tuple(cfg["mean"]), tuple(cfg["std"]))
    assert pre.size == 224 and "pretrained_cfg" in pre.source
    assert bb.describe()["preprocessing"]["interpolation"] == interp
    # the PIL path (extraction, views) resizes with that filter and normalises with that mean / std
    img = Image.fromarray(np.random.default_rng(0).integers(0, 256, (96, 80, 3), dtype=np.uint8))
    filt = {"bicubic": Image.BICUBIC, "bilinear": Image.BILINEAR}[interp]
    by_hand = np.asarray(img.resize((224, 224), filt, reducing_gap=None), dtype=np.float32) / 255.0
    by_hand = (torch.from_numpy(by_hand).permute(2, 0, 1) - torch.tensor(mean).view(3, 1, 1)) / \
        torch.tensor(std).view(3, 1, 1)
    torch.testing.assert_close(preprocess(img, pre), by_hand.float(), rtol=0, atol=1e-6)


def test_tensor_path_uses_the_extraction_interpolation(built):
    """`xbench.load(...).predict(tensor)` resizes with the same mode as the PIL path (antialiased)."""
    from xbench.trained import as_images

    pre = _bb(built, "dinov3-tiny-test").preprocessing           # bicubic
    small = Image.fromarray(np.random.default_rng(1).integers(0, 256, (12, 10, 3), dtype=np.uint8))
    img = small.resize((260, 300), Image.BILINEAR)                 # a smooth photo-like image, downsampled below
    x = torch.from_numpy(np.asarray(img, dtype=np.float32) / 255.0).permute(2, 0, 1)[None]
    got = as_images(x, pre)
    want = F.interpolate(x, size=(224, 224), mode="bicubic", align_corners=False, antialias=True).clamp(0, 1)
    want = (want - torch.tensor(pre.mean).view(1, 3, 1, 1)) / torch.tensor(pre.std).view(1, 3, 1, 1)
    torch.testing.assert_close(got, want, rtol=0, atol=1e-6)
    # and it agrees with the PIL path up to PIL's uint8 rounding between its two passes
    pil = as_images(img, pre)
    diff = ((got - pil) * torch.tensor(pre.std).view(1, 3, 1, 1)).abs() * 255
    assert float(diff.max()) < 8 and float(diff.mean()) < 1


def test_weight_free_keeps_its_preprocessing_and_cache_key(tmp_path):
    """The quickstart backbone: bilinear, ImageNet, and the cache key it always had (no preprocessing entry)."""
    from xbench.data.synthbirds import SynthBirds

    wf = build_backbone("weight-free")
    assert (wf.preprocessing.interpolation, wf.mean, wf.std) == ("bilinear", IMAGENET_MEAN, IMAGENET_STD)
    assert wf.weights_hash == "88cb376528f4939f"              # the committed leaderboard's records
    ds = SynthBirds(num_classes=2, train_per_class=1, test_per_class=1, resolution=64)
    assert "preprocessing" not in Extractor(wf, FeatureCache(tmp_path)).key(ds, "test", PlainView()).inputs()


def test_another_preprocessing_never_reuses_cached_tokens(tmp_path):
    """DINOv2 moved from bilinear to its config's bicubic: the cache key and the weights hash (job id) change."""
    from xbench.data.synthbirds import SynthBirds

    ds = SynthBirds(num_classes=2, train_per_class=1, test_per_class=1, resolution=64)
    bicubic = build_backbone("dinov2-tiny-test", "random")
    bilinear = build_backbone("dinov2-tiny-test", "random")
    bilinear.interpolation = "bilinear"                        # the rule before issue 18
    bilinear._weights_hash = None
    ka = Extractor(bicubic, FeatureCache(tmp_path)).key(ds, "test", PlainView())
    kb = Extractor(bilinear, FeatureCache(tmp_path)).key(ds, "test", PlainView())
    assert ka.inputs()["preprocessing"]["interpolation"] == "bicubic" and "preprocessing" not in kb.inputs()
    assert ka.digest != kb.digest and bicubic.weights_hash != bilinear.weights_hash
    cache = FeatureCache(tmp_path / "c")
    Extractor(bilinear, cache, show_progress=False, num_workers=0).store(ds, "test", PlainView())
    ex = Extractor(bicubic, cache, show_progress=False, num_workers=0)
    before = bicubic.forward_count
    store = ex.store(ds, "test", PlainView())
    assert bicubic.forward_count - before == len(store)        # extracted again, not served from the other entry


def test_unsupported_interpolation_is_one_line():
    with pytest.raises(ConfigError) as e:
        Preprocessing(224, interpolation="lanczos", source="timm pretrained_cfg of x")
    assert "lanczos" in str(e.value) and "\n" not in str(e.value)


@pytest.mark.parametrize("name", ["dinov3-tiny-test", "clip-tiny-test", "resnet-tiny-test"])
def test_weights_files_give_identical_tokens(tmp_path, built, name):
    from safetensors.torch import save_file

    src = build_backbone(name, "random", seed=5)
    sd = {k[len("model."):]: v.contiguous() for k, v in src.state_dict().items()}
    save_file(sd, str(tmp_path / "w.safetensors"))
    extra = {"fc.weight": torch.zeros(3, src.embed_dim), "fc.bias": torch.zeros(3)} if "resnet" in name else \
        {"head.weight": torch.zeros(3, src.embed_dim), "head.bias": torch.zeros(3)}
    torch.save({**sd, **extra}, tmp_path / "w.pth")        # a classifier in the file is dropped
    a = build_backbone(name, str(tmp_path / "w.safetensors"))
    b = build_backbone(name, str(tmp_path / "w.pth"))
    x = _images(seed=3)
    ta, tb, ts = a(x), b(x), src(x)
    for u in (ta, tb):
        for f in ("patch", "cls", "reg"):
            torch.testing.assert_close(getattr(u, f), getattr(ts, f), rtol=1e-5, atol=1e-5)
    assert a.weights_kind == "file" and a.weights_hash == b.weights_hash == src.weights_hash
    other = next(n for n in TINY if n != name)
    with pytest.raises(WeightsError) as e:
        build_backbone(other, str(tmp_path / "w.safetensors"))
    assert "does not fit backbone" in str(e.value) and "\n" not in str(e.value)


def test_offline_auto_weights_name_the_hub_file(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(WeightsError) as e:
        build_backbone("resnet50.tv_in1k", "auto")
    msg = str(e.value)
    assert "huggingface.co/timm/resnet50.tv_in1k" in msg and "--weights" in msg and "\n" not in msg


#: registered full-size backbone -> (timm class, patch / stride, grid, registers, dim, interpolation, mean)
FULL = {
    "vit_small_patch16_dinov3": ("Eva", 16, 14, 4, 384, "bicubic", IMAGENET_MEAN),
    "vit_base_patch16_dinov3": ("Eva", 16, 14, 4, 768, "bicubic", IMAGENET_MEAN),
    "vit_large_patch16_dinov3": ("Eva", 16, 14, 4, 1024, "bicubic", IMAGENET_MEAN),
    "vit_base_patch16_224.dino": ("VisionTransformer", 16, 14, 0, 768, "bicubic", IMAGENET_MEAN),
    "vit_base_patch16_clip_quickgelu_224.openai": ("VisionTransformer", 16, 14, 0, 768, "bicubic", CLIP_MEAN),
    "resnet50.tv_in1k": ("ResNet", 32, 7, 0, 2048, "bilinear", IMAGENET_MEAN),
    "vit_base_patch14_reg4_dinov2": ("VisionTransformer", 14, 16, 4, 768, "bicubic", IMAGENET_MEAN),
}


@pytest.mark.parametrize("name", list(FULL))
def test_registered_full_size_models_match_their_specs(name):
    """The real architectures (built on the meta device: no weights, no memory) have the declared geometry."""
    cls, patch, grid, regs, dim, interp, mean = FULL[name]
    spec = BACKBONES.get(name).spec
    assert (spec.patch_size, spec.num_registers, spec.embed_dim) == (patch, regs, dim)
    timm_name = BACKBONES.get(name).obj.timm_name
    kw = {} if cls == "ResNet" else {"img_size": 224}
    with torch.device("meta"):
        m = timm.create_model(timm_name, pretrained=False, num_classes=0, **kw)
    assert type(m).__name__ == cls
    if cls == "ResNet":
        assert m.feature_info[-1]["reduction"] == patch and m.num_features == dim
    else:
        assert m.patch_embed.patch_size[0] == patch and m.embed_dim == dim
        assert m.num_prefix_tokens == 1 + regs and tuple(m.patch_embed.grid_size) == (grid, grid)
    pre = from_timm(m, 224)
    assert pre.interpolation == interp and pre.mean == tuple(mean)
    if "clip" in name:
        assert "quick" in type(m.blocks[0].mlp.act).__name__.lower()     # OpenAI's activation


@pytest.mark.parametrize("name", ["dinov3-tiny-test", "resnet-tiny-test"])
def test_gradcam_anchor_is_the_last_block_or_stage(built, name):
    """The anchored forward gives the same tokens; on the ResNet Grad-CAM is exactly ReLU(w_c . token) / g^2."""
    from xbench.methods.captum_adapter import CaptumAttributor

    bb = _bb(built, name)
    x = _images(2, seed=4)
    with torch.no_grad():
        plain = bb(x)
    anchored = bb.forward_anchored(x, torch.nn.Identity())
    torch.testing.assert_close(anchored.patch, plain.patch, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(anchored.cls, plain.cls, rtol=1e-5, atol=1e-5)
    head = torch.nn.Linear(bb.embed_dim, 3)
    torch.nn.init.normal_(head.weight, generator=torch.Generator().manual_seed(0))
    cam = CaptumAttributor(bb, lambda t: head(t.cls), torch.nn.Identity(), "gradcam")
    target = torch.tensor([0, 2])
    maps = cam(x, target)
    assert maps.shape == (2, bb.grid, bb.grid)
    if name.startswith("resnet"):
        with torch.no_grad():
            want = torch.relu(torch.einsum("bhwd,bd->bhw", plain.patch, head.weight[target])) / bb.grid ** 2
        torch.testing.assert_close(maps, want, rtol=1e-4, atol=1e-6)
    else:
        assert float(maps.abs().sum()) > 0
    ig = CaptumAttributor(bb, lambda t: head(t.cls), torch.nn.Identity(), "input_x_gradient")
    assert ig(x, target).shape == (2, bb.grid, bb.grid)          # pixels pooled per declared patch / stride


SB = {"num_classes": 4, "train_per_class": 4, "test_per_class": 1, "resolution": 64}


@pytest.mark.parametrize("name,grid", [("dinov3-tiny-test", 14), ("resnet-tiny-test", 7)])
def test_tiny_run_metrics_work_from_the_declared_grid(tmp_path, name, grid):
    """linear-probe-patch with a FunnyBirds metric and plausibility on synthbirds, grid 14 (patch 16) and 7x7."""
    values = cli_values(tmp_path, backbone=name, methods="linear-probe-patch",
                        metrics="accuracy,plausibility,correctness,background_independence",
                        dataset_options={"synthbirds": dict(SB)}, batch_size=32)
    Runner(build_config(cli_values=values)).run()
    rec = next(ResultsStore(tmp_path / "results").records())
    assert rec["status"] == "complete" and rec["backbone"] == name and rec["weights"] == "random"
    bb = rec["provenance"]["backbone"]
    assert bb["grid"] == grid and bb["preprocessing"]["source"].startswith("timm pretrained_cfg")
    for m in ("accuracy", "plausibility", "correctness", "background_independence"):
        entry = rec["metrics"][m]
        assert entry["status"] == "ok", (m, entry)
        assert 0.0 <= entry["value"] <= 1.0, (m, entry)
