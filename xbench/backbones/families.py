"""Further timm backbones for the ablations: DINOv3, DINO (v1), CLIP, and ResNet-50 (the QPM baseline row).

Same weights handling, extraction and cache path as DINOv2 (`timm_backbone`):
`--weights auto` (timm's pretrained download and cache), a local `.safetensors`
/ `.pth` file, or `random` (only when asked; labelled everywhere). Input 224 px
for all of them; mean, std and interpolation from each model's timm pretrained
config.

| name | timm model | patch | grid at 224 | prefix tokens | dim |
|---|---|---|---|---|---|
| `vit_{small,base,large}_patch16_dinov3` | `vit_*_patch16_dinov3.lvd1689m` (timm `Eva`, RoPE) | 16 | 14 x 14 | CLS + 4 registers ("storage tokens") | 384 / 768 / 1024 |
| `vit_base_patch16_224.dino` | same (DINO v1) | 16 | 14 x 14 | CLS | 768 |
| `vit_base_patch16_clip_quickgelu_224.openai` | same (OpenAI CLIP image tower) | 16 | 14 x 14 | CLS | 768 |
| `resnet50.tv_in1k` | same (torchvision's ImageNet weights) | 32 (stride) | 7 x 7 | none (CLS = patch mean) | 2048 |

Choices:
* DINOv3 uses timm's `lvd1689m` weights (the web-image release; `large` also
  has satellite weights, not registered). Its sequence is CLS, 4 storage
  tokens, then the patches; the final norm is `norm` on every token (timm's
  `fc_norm` is unused for DINOv3). Its pretrained config says 256 px; xbench
  runs it at 224 (grid 14), like every backbone.
* CLIP: OpenAI's ViT-B/16 uses QuickGELU, so the image tower is timm's
  `vit_base_patch16_clip_quickgelu_224.openai`; timm's
  `vit_base_patch16_clip_224.openai` loads the same weights into GELU blocks
  (timm's own note: "use quickgelu model variant for original results") and
  is not registered. Tokens are taken after `norm` (CLIP's `ln_post`, which
  timm applies to every token), before CLIP's 768 -> 512 image-text projection
  (timm's `head`, dropped with `num_classes=0`): the heads learn their own
  linear maps, and every patch token then lives in the space CLIP's CLS is
  projected from. Mean / std are OpenAI CLIP's, from the config.
* ResNet-50: `resnet50.tv_in1k` are torchvision's original ImageNet weights
  (`resnet50-19c8e357.pth`), the ones the QPM / Q-SENN code loads for its
  ResNet-50 rows; bilinear per its config. The last stage's feature map
  [B, 2048, 7, 7] is the token grid (one token per 32 x 32-pixel cell; QPM's
  own ResNet uses reduced strides at 448 px, which xbench does not copy). No
  class token: `cls` is the patch mean (the global average pool its
  classifier reads), so `linear-probe` equals `linear-probe-patch` there (as
  on the weight-free backbone), and Grad-CAM hooks the last stage's output
  (classic Grad-CAM on a CNN).

The `*-tiny-test` backbones are tiny random models built through the same timm
code paths (tests and CI; random or file weights only).
"""
from __future__ import annotations

from ..registry import register_backbone
from .timm_backbone import TimmCNN, TimmViT, make

_DINOV3 = {"small": 384, "base": 768, "large": 1024}
for _size, _dim in _DINOV3.items():
    register_backbone(
        f"vit_{_size}_patch16_dinov3",
        description=f"DINOv3 ViT-{_size[0].upper()}/16 with 4 registers (timm vit_{_size}_patch16_dinov3.lvd1689m)",
        family="dinov3", embed_dim=_dim, patch_size=16, num_registers=4, paper="dinov3",
    )(make(TimmViT, f"vit_{_size}_patch16_dinov3.lvd1689m"))

register_backbone(
    "vit_base_patch16_224.dino",
    description="DINO (v1) ViT-B/16 (timm vit_base_patch16_224.dino)",
    family="dino", embed_dim=768, patch_size=16, num_registers=0, paper="dino",
)(make(TimmViT, "vit_base_patch16_224.dino"))

register_backbone(
    "vit_base_patch16_clip_quickgelu_224.openai",
    description="OpenAI CLIP ViT-B/16 image tower, QuickGELU as trained (timm), tokens before the projection",
    family="clip", embed_dim=768, patch_size=16, num_registers=0, paper="clip",
)(make(TimmViT, "vit_base_patch16_clip_quickgelu_224.openai"))

register_backbone(
    "resnet50.tv_in1k",
    description="ResNet-50, torchvision ImageNet weights (timm); last-stage 7x7 map as tokens, no CLS",
    family="resnet", embed_dim=2048, patch_size=32, num_registers=0, paper="resnet",
)(make(TimmCNN, "resnet50.tv_in1k"))

# Tiny random models through the same timm code paths, for tests and CI.
_TINY_VIT = {"embed_dim": 32, "depth": 2, "num_heads": 2}
register_backbone(
    "dinov3-tiny-test",
    description="tiny 2-block width-32 DINOv3-style ViT/16 with 4 registers (tests; random or file weights only)",
    family="test", embed_dim=32, patch_size=16, num_registers=4, default_weights="random",
)(make(TimmViT, "vit_small_patch16_dinov3.lvd1689m", **_TINY_VIT))
register_backbone(
    "dino-tiny-test",
    description="tiny 2-block width-32 DINO-style ViT/16 (tests; random or file weights only)",
    family="test", embed_dim=32, patch_size=16, num_registers=0, default_weights="random",
)(make(TimmViT, "vit_base_patch16_224.dino", **_TINY_VIT))
register_backbone(
    "clip-tiny-test",
    description="tiny 2-block width-32 CLIP-style ViT/16 (tests; random or file weights only)",
    family="test", embed_dim=32, patch_size=16, num_registers=0, default_weights="random",
)(make(TimmViT, "vit_base_patch16_clip_quickgelu_224.openai", **_TINY_VIT))
register_backbone(
    "resnet-tiny-test",
    description="tiny ResNet-50-style CNN (one bottleneck per stage, widths 8-64; tests; random or file weights only)",
    family="test", embed_dim=256, patch_size=32, num_registers=0, default_weights="random",
)(make(TimmCNN, "resnet50.tv_in1k", layers=[1, 1, 1, 1], channels=(8, 16, 32, 64), stem_width=8,
       zero_init_last=False))
