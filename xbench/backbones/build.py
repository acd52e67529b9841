"""Build a registered backbone by name with the requested weights."""
from __future__ import annotations

from ..errors import ConfigError
from ..registry import BACKBONES
from .base import Backbone


def build_backbone(name: str, weights: str | None = None, image_size: int = 224, seed: int = 0) -> Backbone:
    entry = BACKBONES.get(name)
    w = weights if weights is not None else entry.spec.default_weights
    bb = entry.obj(weights=w, image_size=image_size, seed=seed, name=name)
    if not isinstance(bb, Backbone):
        raise ConfigError(f"backbone {name!r} ({entry.source}) did not return an xbench Backbone")
    if bb.image_size % bb.patch_size:
        raise ConfigError(f"image size {bb.image_size} is not a multiple of patch size {bb.patch_size}")
    return bb
