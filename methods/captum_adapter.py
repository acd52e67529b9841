"""captum attributions of a classifier over the frozen backbone, as [B, g, g] token-grid maps (SPEC 3.2).

The classifier is `head(tokens) -> logits` on top of
`backbone.forward_anchored(images, anchor)`: a ViT backbone routes the patch
tokens entering its LAST transformer block through `anchor` (an
`nn.Identity` owned by the method) laid out as a grid [B, D, g, g], CLS and
register tokens dropped, whatever its patch size (14 or 16). This is the
"last transformer block with a reshape that drops CLS and register tokens" of
SPEC 3.2, and the standard ViT Grad-CAM choice: the hooked activation is the
last block's patch *input*, because a CLS probe's gradient with respect to the
last block's *output* patch tokens is exactly zero (after the last block's
attention nothing mixes patch tokens into the CLS token any more). A CNN
backbone (ResNet-50) routes its last stage's output feature map through the
anchor (classic Grad-CAM on the last convolutional stage; its CLS is the mean
of that map, so the gradient is not zero); for the weight-free backbone the
anchor sits on the patch descriptors, before the patch mean that forms its CLS.
The grid g is always the backbone's declared one (`image_size // patch_size`).

Attributions, chosen by name (`ATTRIBUTIONS`):

* layer methods, computed on the anchor's grid (no pooling needed):
  `gradcam` (captum `LayerGradCam`, ReLU'd as in Grad-CAM; [B, 1, g, g]),
  `layer_integrated_gradients`, `layer_gradient_x_activation` ([B, D, g, g],
  summed over D, signed);
* input-space methods, computed on the normalised pixels [B, 3, S, S] and
  pooled onto the g x g grid by summing over each p x p patch (p = the
  backbone's `patch_size`: 14 for DINOv2, 16 for DINOv3 / DINO / CLIP, 32 (the
  total stride) for ResNet-50) and the three channels: `integrated_gradients`, `input_x_gradient`,
  `saliency`, `occlusion`. `pool="sum"` keeps the sign (so Integrated
  Gradients' completeness carries over: the grid sums to the logit change),
  `pool="abs"` sums |attribution|. Occlusion slides a 3 x p x p window with
  stride p, i.e. it occludes exactly one token cell at a time, so every pixel
  of a cell carries that cell's logit drop and the pooled map is
  3 p^2 x (drop); a uniform scale, irrelevant to every metric.

Baselines (Integrated Gradients, Occlusion): the all-zero *normalised* image,
i.e. the dataset-mean (ImageNet mean) colour everywhere.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn

from xbench.errors import ConfigError
from xbench.tokens import Tokens


@dataclass(frozen=True)
class Recipe:
    """How one captum attribution is called and turned into a [B, g, g] map."""

    captum_class: str          # name in captum.attr
    space: str                 # "layer" (on the anchor grid) or "input" (pixels, pooled to the grid)
    kind: str                  # "gradcam" | "ig" | "plain" | "occlusion": which extra arguments it takes


ATTRIBUTIONS: dict[str, Recipe] = {
    "gradcam": Recipe("LayerGradCam", "layer", "gradcam"),
    "layer_integrated_gradients": Recipe("LayerIntegratedGradients", "layer", "ig"),
    "layer_gradient_x_activation": Recipe("LayerGradientXActivation", "layer", "plain"),
    "integrated_gradients": Recipe("IntegratedGradients", "input", "ig"),
    "input_x_gradient": Recipe("InputXGradient", "input", "plain"),
    "saliency": Recipe("Saliency", "input", "plain"),
    "occlusion": Recipe("Occlusion", "input", "occlusion"),
}

POOLS = ("sum", "abs")


def check_attribution(name: str, pool: str = "sum") -> Recipe:
    """The recipe of `name`, or a one-line ConfigError listing the valid names."""
    if name not in ATTRIBUTIONS:
        raise ConfigError(f"unknown captum attribution {name!r} (gradcam.attribution); valid: {', '.join(ATTRIBUTIONS)}")
    if pool not in POOLS:
        raise ConfigError(f"gradcam.pool={pool!r} is not valid; use one of {', '.join(POOLS)}")
    return ATTRIBUTIONS[name]


def pool_to_grid(attr: torch.Tensor, patch: int, pool: str = "sum") -> torch.Tensor:
    """[B, C, S, S] pixel attribution -> [B, S/p, S/p]: sum (signed, or of |.|) over each p x p patch and channels."""
    b, c, h, w = attr.shape
    if h % patch or w % patch:
        raise ValueError(f"image size {h}x{w} is not a multiple of the patch size {patch}")
    a = attr.abs() if pool == "abs" else attr
    return a.reshape(b, c, h // patch, patch, w // patch, patch).sum(dim=(1, 3, 5))


class CaptumAttributor:
    """Runs one captum attribution of `head(backbone.forward_anchored(images, anchor))`.

    `__call__(images, targets)` returns a detached [B, g, g] map for per-image
    targets (LongTensor [B]). Gradients are enabled inside, whatever the
    caller's grad mode.
    """

    def __init__(self, backbone: nn.Module, head: Callable[[Tokens], torch.Tensor], anchor: nn.Module,
                 name: str = "gradcam", *, pool: str = "sum", ig_steps: int = 50,
                 internal_batch_size: int = 0, occlusion_batch: int = 16):
        import captum.attr as ca

        self.recipe = check_attribution(name, pool)
        self.name = name
        self.backbone, self.head, self.anchor = backbone, head, anchor
        self.pool = pool
        self.ig_steps = int(ig_steps)
        self.internal_batch_size = int(internal_batch_size) or None
        self.occlusion_batch = max(1, int(occlusion_batch))
        cls = getattr(ca, self.recipe.captum_class)
        self.method = cls(self.forward, anchor) if self.recipe.space == "layer" else cls(self.forward)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Logits [B, C] computed through the anchored backbone (keeps the graph)."""
        return self.head(self.backbone.forward_anchored(images, self.anchor))

    def __call__(self, images: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        r, p = self.recipe, int(self.backbone.patch_size)
        targets = targets.to(images.device, torch.long)
        if r.space == "input" and r.kind != "occlusion":
            images = images.detach().requires_grad_(True)   # gradients w.r.t. the pixels (a fresh leaf)
        with torch.enable_grad():
            if r.kind == "gradcam":
                a = self.method.attribute(images, target=targets, relu_attributions=True)
            elif r.kind == "ig":
                a = self.method.attribute(images, baselines=torch.zeros_like(images), target=targets,
                                          n_steps=self.ig_steps, internal_batch_size=self.internal_batch_size)
            elif r.kind == "occlusion":
                a = self.method.attribute(images, sliding_window_shapes=(images.shape[1], p, p),
                                          strides=(images.shape[1], p, p), baselines=0.0, target=targets,
                                          perturbations_per_eval=self.occlusion_batch)
            else:
                a = self.method.attribute(images, target=targets)
        a = a.detach()
        if r.space == "layer":
            return a.sum(dim=1)                   # [B, 1 or D, g, g] -> [B, g, g]
        return pool_to_grid(a, p, self.pool)
