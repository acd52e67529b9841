"""Scoring a model trained outside xbench: the image protocol and its adapter to `EvalContext`.

The protocol (duck-typed; a plain `nn.Module` qualifies):

* `explain(images) -> xbench.Explanation`, where `images` is a float tensor [B, 3, S, S] already
  resized to S x S and normalised with the model's `mean` / `std` (the whole image is resized,
  like xbench's own preprocessing);
* optional `logits(images) -> Tensor [B, C]` (faster for the metrics that only need logits, such
  as accuracy and the intervention checks); without it `explain(images).logits` is used;
* optional attributes: `provides` (a subset of {"logits", "attribution", "concepts"}; default
  {"logits"}, plus "attribution" / "concepts" when the method says so: xbench never guesses),
  `name` (the method name in the record; `evaluate(..., name=)` overrides it), `image_size`
  (S, default 224), `mean` / `std` (default ImageNet's), `interpolation` (`bilinear`, the default,
  or `bicubic`: how xbench resizes the images it hands over), `grid` (g of the token grid the
  metrics work on, default S // 14 = 16), `params` (a dict recorded as the job's parameters).

Choices:

* Attribution and concept maps of another size than g x g are averaged onto the g x g grid
  (`adaptive_avg_pool2d`: exact block means when the size is a multiple of g, nearest
  replication when it is smaller), so that every metric sees the grid it expects (plausibility
  resizes masks to the token grid; the FunnyBirds checks upsample maps to the image).
* The metrics read their item lists (views, interventions, box crops, noisy copies) and the grid
  through `EvalContext.items` / `EvalContext.grid`, which for a model without tokens come from the
  view and the model's geometry (`ImagesOnlyExtractor`: no token store, no backbone run), and
  `EvalContext(needs_images=True)` feeds the model the normalised images of every batch.
* Gradients are enabled while the metrics call `explain` (gradient-based explainers work); the
  logits-only path runs under `torch.no_grad()`.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import torch
import torch.nn.functional as F

from .backbones.base import IMAGENET_MEAN, IMAGENET_STD
from .errors import ConfigError
from .explanation import Explanation
from .preprocessing import Preprocessing
from .specs import PROVIDES, MethodSpec

DEFAULT_IMAGE_SIZE = 224
DEFAULT_PATCH = 14


@dataclass(frozen=True)
class ImageGeometry:
    """What `EvalContext` and the metrics read from `extractor.backbone`: input size, normalisation, grid."""

    name: str = "external"
    image_size: int = DEFAULT_IMAGE_SIZE
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    grid: int = DEFAULT_IMAGE_SIZE // DEFAULT_PATCH
    interpolation: str = "bilinear"

    @property
    def preprocessing(self) -> Preprocessing:
        return Preprocessing(size=self.image_size, mean=self.mean, std=self.std, interpolation=self.interpolation,
                             source="external model")


class ImagesOnlyExtractor:
    """Stands in for `Extractor` when the model takes images: the geometry, and no tokens at all."""

    has_tokens = False   # EvalContext then builds batches of images only and reads items from the views

    def __init__(self, geometry: ImageGeometry, device: torch.device | str = "cpu"):
        self.backbone = geometry
        self.device = torch.device(device)
        self.bad_items: dict[str, list[str]] = {}

    def store(self, dataset: Any, split: str, view: Any, rank: int = 0, world: int = 1):
        raise ConfigError("this model takes images; it has no backbone tokens to cache")


def to_grid(maps: torch.Tensor, g: int) -> torch.Tensor:
    """Maps [..., h, w] averaged onto [..., g, g] (unchanged when already g x g)."""
    if tuple(maps.shape[-2:]) == (g, g):
        return maps
    lead = maps.shape[:-2]
    out = F.adaptive_avg_pool2d(maps.reshape(-1, 1, *maps.shape[-2:]).float(), g)
    return out.reshape(*lead, g, g).to(maps.dtype)


class ExternalModel:
    """Adapter: a model following the image protocol -> the contract `EvalContext` calls (`explain(batch)`)."""

    def __init__(self, model: Any, name: str | None = None):
        if not callable(getattr(model, "explain", None)):
            raise ConfigError(f"{type(model).__name__} has no explain(images) method: a model scored by "
                              f"xbench.evaluate must return an xbench.Explanation from explain(images)")
        self.model = model
        provides = frozenset(getattr(model, "provides", None) or {"logits"}) | {"logits"}
        bad = provides - PROVIDES
        if bad:
            raise ConfigError(f"{type(model).__name__}.provides has unknown entries {sorted(bad)}; "
                              f"valid: {', '.join(sorted(PROVIDES))}")
        label = name or getattr(model, "name", None) or type(model).__name__
        if not isinstance(label, str) or not label.strip() or "/" in label or "__" in label:
            raise ConfigError(f"model name {label!r} is not usable: pass name= with letters, digits, '-' or '_' "
                              f"(no '/' and no '__')")
        self.spec = MethodSpec(name=label, description=f"external model {type(model).__name__}", provides=provides)
        size = int(getattr(model, "image_size", DEFAULT_IMAGE_SIZE))
        self.geometry = ImageGeometry(
            name="external", image_size=size,
            mean=tuple(float(v) for v in getattr(model, "mean", IMAGENET_MEAN)),  # type: ignore[arg-type]
            std=tuple(float(v) for v in getattr(model, "std", IMAGENET_STD)),  # type: ignore[arg-type]
            grid=int(getattr(model, "grid", size // DEFAULT_PATCH)),
            interpolation=str(getattr(model, "interpolation", "bilinear")),
        )
        self.geometry.preprocessing  # an unsupported interpolation stops here, in one line

    @property
    def name(self) -> str:
        return self.spec.name

    def params(self) -> dict:
        p = getattr(self.model, "params", None)
        return dict(p) if isinstance(p, dict) else {}

    def weights_hash(self) -> str:
        """Hash of the model's state dict when it is an nn.Module, else ''."""
        if isinstance(self.model, torch.nn.Module):
            from .backbones.base import state_dict_hash

            return state_dict_hash(self.model.state_dict(), extra=type(self.model).__qualname__)
        return ""

    def _images(self, batch: Any) -> torch.Tensor:
        if batch.images is None:
            raise ConfigError("an external model needs images: evaluate it with xbench.evaluate (EvalContext with "
                              "needs_images=True)")
        return batch.images

    def explain(self, batch: Any) -> Explanation:
        exp = self.model.explain(self._images(batch))
        if not isinstance(exp, Explanation):
            raise ConfigError(f"{type(self.model).__name__}.explain returned a {type(exp).__name__}, not an "
                              f"xbench.Explanation")
        g = self.geometry.grid
        fn = exp.attribution_fn
        out = replace(exp, attribution_fn=(lambda t: to_grid(fn(t), g)) if fn is not None else None)
        if exp.concept_maps is not None:
            out.concept_maps = to_grid(exp.concept_maps, g)
        return out

    @torch.no_grad()
    def logits(self, batch: Any) -> torch.Tensor:
        fn = getattr(self.model, "logits", None)
        x = self._images(batch)
        return fn(x) if callable(fn) else self.model.explain(x).logits

    def to(self, device: torch.device | str) -> "ExternalModel":
        if isinstance(self.model, torch.nn.Module):
            self.model.to(device)
        return self


__all__ = ["ExternalModel", "ImagesOnlyExtractor", "ImageGeometry", "to_grid"]
