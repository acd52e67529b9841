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
tokens are returned separately from the 16 x 16 patch grid.
"""
from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any, Callable

import torch

from ..errors import WeightsError
from ..registry import register_backbone
from ..tokens import Tokens
from .base import Backbone

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


class TimmViT(Backbone):
    """A timm VisionTransformer used as a frozen token extractor."""

    def __init__(self, timm_name: str, weights: str = "auto", image_size: int = 224, seed: int = 0,
                 registered_name: str | None = None, **model_kwargs: Any):
        super().__init__()
        import timm

        self.name = registered_name or timm_name
        self.timm_name = timm_name
        self.image_size = image_size
        weights = str(weights)
        if weights == "auto":
            self.model = _pretrained(timm_name, image_size, model_kwargs)
            tag = getattr(self.model, "pretrained_cfg", {}).get("tag") or "default"
            self.weights_kind, self.weights_source = "pretrained", f"timm:{timm_name}.{tag}"
        elif weights == "random":
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(seed)
                self.model = timm.create_model(timm_name, pretrained=False, img_size=image_size, num_classes=0,
                                               **model_kwargs)
            self.weights_kind, self.weights_source = "random", f"seed{seed}"
        else:
            path = Path(weights).expanduser()
            self.model = timm.create_model(timm_name, pretrained=False, img_size=image_size, num_classes=0,
                                           **model_kwargs)
            load_weights_file(self.model, path, self.name)
            self.weights_kind, self.weights_source = "file", str(path)
        m = self.model
        self.patch_size = int(m.patch_embed.patch_size[0])
        self.embed_dim = int(m.embed_dim)
        self.num_registers = int(getattr(m, "num_reg_tokens", 0) or 0)
        self.num_prefix = int(m.num_prefix_tokens)
        if not getattr(m, "has_class_token", True):
            raise WeightsError(f"backbone {self.name!r} has no class token; xbench needs one")
        self.freeze()

    def _tokens(self, images: torch.Tensor, anchor: Callable[[torch.Tensor], torch.Tensor] | None) -> Tokens:
        m = self.model
        x = m.patch_embed(images)
        x = m._pos_embed(x)
        x = m.patch_drop(x)
        x = m.norm_pre(x)
        blocks = list(m.blocks)
        for blk in blocks[:-1]:
            x = blk(x)
        if anchor is not None:
            x = _through_anchor(x, anchor, self.num_prefix, self.grid)
        x = blocks[-1](x)
        x = m.norm(x)
        b, n, d = x.shape
        g = self.grid
        patch = x[:, self.num_prefix:].reshape(b, g, g, d)
        cls = x[:, 0]
        reg = x[:, 1:self.num_prefix]
        return Tokens(patch=patch, cls=cls, reg=reg)

    def intermediate(self, images: torch.Tensor, indices: int | list[int]) -> list[torch.Tensor]:
        """Patch tokens of other layers as [B, g, g, D] (timm's forward_intermediates, final norm applied)."""
        outs = self.model.forward_intermediates(images, indices=indices, norm=True, output_fmt="NHWC",
                                                intermediates_only=True)
        return list(outs)

    def hash_extra(self) -> str:
        return f"timm:{self.timm_name}:{self.image_size}"


def _through_anchor(x: torch.Tensor, anchor: Callable, n_prefix: int, g: int) -> torch.Tensor:
    prefix, patches = x[:, :n_prefix], x[:, n_prefix:]
    b, n, d = patches.shape
    grid = patches.transpose(1, 2).reshape(b, d, g, g)
    grid = anchor(grid)
    patches = grid.reshape(b, d, n).transpose(1, 2)
    return torch.cat([prefix, patches], dim=1)


def _pretrained(timm_name: str, image_size: int, model_kwargs: dict) -> torch.nn.Module:
    import timm

    try:
        return timm.create_model(timm_name, pretrained=True, img_size=image_size, num_classes=0, **model_kwargs)
    except Exception as err:  # offline, hub errors, missing cache: all the same advice
        fair = FAIR_FILES.get(timm_name)
        size = next((s for s in _ARCH if f"_{s}_" in timm_name), "base")
        where = (
            f"download {_FAIR_URL.format(arch=_ARCH[size], file=fair)} (or timm's .safetensors for "
            f"{timm_name}) and pass --weights /path/to/{fair}"
            if fair else "pass --weights PATH with a local .pth or .safetensors file"
        )
        raise WeightsError(
            f"no pretrained weights for backbone {timm_name!r}: timm could not load them "
            f"({type(err).__name__}; offline?); {where}"
        ) from None


def load_weights_file(model: torch.nn.Module, path: Path, name: str) -> None:
    """Load a FAIR .pth or timm .safetensors file into `model`, or fail with one line."""
    from timm.models.vision_transformer import checkpoint_filter_fn

    if not path.is_file():
        raise WeightsError(f"weights file {path} does not exist; pass --weights with an existing .pth or .safetensors file")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            sd = load_file(str(path), device="cpu")
        else:
            sd = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        raise WeightsError(
            f"weights file {path} could not be read ({type(err).__name__}: {_first_line(err)[:120]}); "
            "it must be a FAIR .pth (tensors only) or a timm .safetensors file"
        ) from None
    if not isinstance(sd, dict) or not sd:
        raise WeightsError(f"weights file {path} holds no state dict; pass a FAIR .pth or timm .safetensors file")
    try:
        sd = checkpoint_filter_fn(dict(sd), model)
        sd.pop("head.weight", None)
        sd.pop("head.bias", None)
        missing, unexpected = model.load_state_dict(sd, strict=False)
    except Exception as err:
        raise WeightsError(
            f"weights file {path} does not fit backbone {name!r} ({type(err).__name__}: {_first_line(err)[:160]}); "
            f"pass the weights of {name} or choose the matching --backbone"
        ) from None
    missing = [k for k in missing if not k.startswith("head")]
    if missing or unexpected:
        raise WeightsError(
            f"weights file {path} does not fit backbone {name!r} (missing {len(missing)} keys e.g. "
            f"{missing[:2]}, unexpected {len(unexpected)} e.g. {list(unexpected)[:2]}); "
            f"pass the weights of {name} or choose the matching --backbone"
        )


def _first_line(err: BaseException) -> str:
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    return lines[0] if lines else ""


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _make(timm_name: str, **fixed: Any) -> Callable[..., TimmViT]:
    def factory(weights: str = "auto", image_size: int = 224, seed: int = 0, name: str | None = None) -> TimmViT:
        return TimmViT(timm_name, weights=weights, image_size=image_size, seed=seed,
                       registered_name=name, **fixed)

    factory.__name__ = f"make_{timm_name}"
    factory.__doc__ = f"timm {timm_name} (frozen)."
    return factory


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
