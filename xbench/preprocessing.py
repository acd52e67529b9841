"""How an image becomes a backbone input: one rule shared by extraction, interventions, views and `xbench.load`.

`Preprocessing` holds the input size, the interpolation and the normalisation
(mean / std) of a backbone. The rule is always the same: the *whole* image is
resized to size x size (no centre crop, aspect ratio not kept), so masks, part
maps and keypoints map onto the token grid by the same scaling; then it is
scaled to [0, 1] and normalised per channel.

* PIL images (every dataset image, intervention and view; files given to
  `xbench.load(...).predict`): `Image.resize` with the interpolation's PIL
  filter and `reducing_gap=None` (PIL's resampling filters are antialiased when
  shrinking).
* float tensors in [0, 1] (`xbench.load(...).predict(tensor)`):
  `torch.nn.functional.interpolate` with the same mode and `antialias=True`,
  clamped to [0, 1] (PIL's uint8 output saturates the same way; bicubic can
  overshoot).

Where the numbers come from: a timm backbone takes mean, std and interpolation
from its model's timm pretrained config (`timm.data.resolve_model_data_config`),
the size from xbench (224 px by default, SPEC 2; see `from_timm`). The
weight-free backbone keeps its own (bilinear, ImageNet mean / std).

`key()` is everything that changes the pixels a backbone sees; `cache_key()`
is what enters the feature-cache key (`xbench.cache.CacheKey.preprocessing`).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from .errors import ConfigError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

#: interpolation name (timm's spelling) -> PIL filter; torch's mode has the same name
PIL_FILTERS = {"bilinear": Image.BILINEAR, "bicubic": Image.BICUBIC}


@dataclass(frozen=True)
class Preprocessing:
    """Whole-image resize to `size` x `size` with `interpolation`, then (x - mean) / std on [0, 1] pixels."""

    size: int = 224
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    interpolation: str = "bilinear"
    source: str = "xbench default"      # where mean / std / interpolation come from (for people; not in the key)

    def __post_init__(self) -> None:
        if self.interpolation not in PIL_FILTERS:
            raise ConfigError(f"interpolation {self.interpolation!r} ({self.source}) is not supported; "
                              f"xbench resizes with one of {', '.join(PIL_FILTERS)}")
        if int(self.size) <= 0:
            raise ConfigError(f"image size {self.size} must be a positive number of pixels")
        object.__setattr__(self, "mean", tuple(float(v) for v in self.mean))
        object.__setattr__(self, "std", tuple(float(v) for v in self.std))

    def key(self) -> dict[str, Any]:
        """Everything that changes the backbone's input pixels (enters the feature-cache key)."""
        return {"resize": "whole-image", "size": int(self.size), "interpolation": self.interpolation,
                "mean": list(self.mean), "std": list(self.std)}

    def cache_key(self) -> dict[str, Any] | None:
        """What the feature-cache key adds for this rule: None for the rule every backbone used before
        preprocessing came from the backbone (whole image, bilinear, ImageNet mean / std; the image size is
        already in the key), so those entries keep their digest; `key()` for anything else, so tokens of
        one preprocessing are never served for another."""
        original = self.interpolation == "bilinear" and self.mean == IMAGENET_MEAN and self.std == IMAGENET_STD
        return None if original else self.key()

    def describe(self) -> dict[str, Any]:
        return {**self.key(), "source": self.source}

    # PIL path ---------------------------------------------------------------------------------
    def resize(self, img: Image.Image, box: tuple[float, float, float, float] | None = None) -> Image.Image:
        """`img` (or its `box`) resized to size x size with this interpolation (unchanged if already that size)."""
        s = int(self.size)
        if box is None and img.size == (s, s):
            return img
        return img.resize((s, s), PIL_FILTERS[self.interpolation], box=box, reducing_gap=None)

    def __call__(self, img: Image.Image | np.ndarray) -> torch.Tensor:
        """RGB image -> normalised float tensor [3, size, size]."""
        if isinstance(img, np.ndarray):
            img = Image.fromarray(img)
        if img.mode != "RGB":
            img = img.convert("RGB")
        img = self.resize(img)
        arr = np.asarray(img, dtype=np.float32) / 255.0
        t = torch.from_numpy(arr).permute(2, 0, 1)
        m = torch.tensor(self.mean, dtype=torch.float32).view(3, 1, 1)
        s = torch.tensor(self.std, dtype=torch.float32).view(3, 1, 1)
        return (t - m) / s

    # tensor path ------------------------------------------------------------------------------
    def tensor(self, x: torch.Tensor) -> torch.Tensor:
        """Float images [B, 3, H, W] in [0, 1] -> normalised [B, 3, size, size] (same interpolation, antialiased)."""
        s = int(self.size)
        if tuple(x.shape[-2:]) != (s, s):
            x = F.interpolate(x, size=(s, s), mode=self.interpolation, align_corners=False, antialias=True)
            x = x.clamp(0.0, 1.0)
        m = torch.tensor(self.mean, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
        sd = torch.tensor(self.std, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
        return (x - m) / sd


def from_timm(model: torch.nn.Module, size: int, label: str = "") -> Preprocessing:
    """Mean, std and interpolation of `model`'s timm pretrained config; the input size is xbench's `size`.

    The config's own input size is not used: it is the resolution of the checkpoint's last
    training phase (518 px for DINOv2, 256 px for DINOv3), while xbench runs every backbone at
    one size (224 px, SPEC 2 and both papers) so that grids are comparable; `Backbone.describe`
    records it as `pretrained_input_size`. The config's centre crop (`crop_pct`) is not used
    either: the whole image is resized (module docstring).
    """
    import timm.data

    cfg = timm.data.resolve_model_data_config(model)
    name = label or getattr(model, "pretrained_cfg", {}).get("architecture", type(model).__name__)
    tag = getattr(model, "pretrained_cfg", {}).get("tag")
    where = f"timm pretrained_cfg of {name}{'.' + tag if tag else ''}"
    return Preprocessing(size=int(size), mean=tuple(cfg["mean"]), std=tuple(cfg["std"]),
                         interpolation=str(cfg.get("interpolation", "bicubic")), source=where)


def pretrained_input_size(model: torch.nn.Module) -> int | None:
    """The input size (square side) the model's timm pretrained config names, if any."""
    size = (getattr(model, "pretrained_cfg", None) or {}).get("input_size")
    return int(size[-1]) if size else None


__all__ = ["Preprocessing", "from_timm", "pretrained_input_size", "IMAGENET_MEAN", "IMAGENET_STD", "PIL_FILTERS"]
