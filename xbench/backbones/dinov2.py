"""timm's DINOv2 family (SPEC 2), with pretrained, local-file and random weights.

Weights:
* `auto`: timm's own pretrained download and cache (`pretrained=True`). Offline
  without a cached copy this fails with one line naming the file to pass with
  `--weights`.
* a path: a FAIR `.pth` (official DINOv2 layout: `register_tokens`,
  `mask_token`, a 37x37 `pos_embed`...) or a timm `.safetensors`; `.pth` files
  are read with `torch.load(weights_only=True)`, so no pickle runs. timm's own
  checkpoint filter converts the FAIR layout and resamples position embeddings
  to the 224-px grid.
* `random`: seeded random initialisation, only when asked for explicitly; every
  result then carries `weights: random`.

Tokens are taken after the final norm of the last block; CLS and the register
tokens (4 for `reg4`, after CLS in timm's sequence) are returned separately from
the 16 x 16 patch grid (patch 14 at 224 px). Preprocessing: mean, std and
interpolation from the timm pretrained config (ImageNet mean / std, bicubic),
224 px (the config's 518 px is DINOv2's last high-resolution training phase).
The wrapper itself (`TimmViT`, weights handling) lives in `timm_backbone`.
"""
from __future__ import annotations

from typing import Any, Callable

from ..registry import register_backbone
from .timm_backbone import TimmViT, file_sha256, load_weights_file, make  # noqa: F401 (re-exported)

#: official FAIR checkpoint names, for the "pass --weights" message
FAIR_FILES = {
    "vit_small_patch14_dinov2": "dinov2_vits14_pretrain.pth",
    "vit_base_patch14_dinov2": "dinov2_vitb14_pretrain.pth",
    "vit_large_patch14_dinov2": "dinov2_vitl14_pretrain.pth",
    "vit_giant_patch14_dinov2": "dinov2_vitg14_pretrain.pth",
    "vit_small_patch14_reg4_dinov2": "dinov2_vits14_reg4_pretrain.pth",
    "vit_base_patch14_reg4_dinov2": "dinov2_vitb14_reg4_pretrain.pth",
    "vit_large_patch14_reg4_dinov2": "dinov2_vitl14_reg4_pretrain.pth",
    "vit_giant_patch14_reg4_dinov2": "dinov2_vitg14_reg4_pretrain.pth",
}
_FAIR_URL = "https://dl.fbaipublicfiles.com/dinov2/{arch}/{file}"
_ARCH = {"small": "dinov2_vits14", "base": "dinov2_vitb14", "large": "dinov2_vitl14", "giant": "dinov2_vitg14"}


def fair_hint(timm_name: str) -> str:
    """Offline advice for DINOv2: the official FAIR checkpoint to download and pass with --weights."""
    fair = FAIR_FILES.get(timm_name)
    size = next((s for s in _ARCH if f"_{s}_" in timm_name), "base")
    if not fair:
        return "pass --weights PATH with a local .pth or .safetensors file"
    return (f"download {_FAIR_URL.format(arch=_ARCH[size], file=fair)} (or timm's .safetensors for "
            f"{timm_name}) and pass --weights /path/to/{fair}")


def _make(timm_name: str, **fixed: Any) -> Callable[..., TimmViT]:
    return make(TimmViT, timm_name, hint=fair_hint, **fixed)


_DIMS = {"small": 384, "base": 768, "large": 1024, "giant2": 1536}
for _size, _dim in _DIMS.items():
    for _reg in (False, True):
        _timm = f"vit_{'giant' if _size == 'giant2' else _size}_patch14_{'reg4_' if _reg else ''}dinov2"
        _pub = f"vit_{_size}_patch14_{'reg4_' if _reg else ''}dinov2"
        register_backbone(
            _pub,
            description=f"DINOv2 ViT-{_size[0].upper()}/14{' with 4 registers' if _reg else ''} (timm {_timm})",
            family="dinov2", embed_dim=_dim, patch_size=14, num_registers=4 if _reg else 0, paper="dinov2",
        )(_make(_timm))
        if _pub != _timm:  # timm spells giant2 as giant; accept both names
            register_backbone(_timm, description=f"alias of {_pub}", family="dinov2", embed_dim=_dim,
                              patch_size=14, num_registers=4 if _reg else 0, paper="dinov2")(_make(_timm))

# A 2-block, width-32 ViT built through the same timm DINOv2 code path, for tests and CI.
register_backbone(
    "dinov2-tiny-test",
    description="tiny 2-block width-32 DINOv2-style ViT with 4 registers (tests; random or file weights only)",
    family="test", embed_dim=32, patch_size=14, num_registers=4, default_weights="random",
)(_make("vit_small_patch14_reg4_dinov2", embed_dim=32, depth=2, num_heads=2))
