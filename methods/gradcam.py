"""Grad-CAM (SPEC 3.2): the post-hoc baseline, the CLS linear probe explained by captum.

The head is exactly `linear-probe` (a linear classifier on the CLS token,
trained with `linear_probe.fit_linear_head` on the CLS tokens, same
hyper-parameters and defaults). Explanations:

* logits come from the cached CLS tokens (`batch.tokens.cls`), so metrics that
  only need logits (interventions, accuracy) never run the backbone;
* the attribution needs the backbone graph (`needs_backbone_graph=True`): the
  EvalContext hands the normalised images (`batch.images`) and
  `attribution(target)` runs captum's `LayerGradCam` on the method's own
  `nn.Identity` anchor, which `Backbone.forward_anchored` feeds with the patch
  tokens entering the last transformer block as a [B, D, g, g] grid (CLS and
  registers dropped; any patch size), or on a CNN (ResNet-50) with the last
  stage's output feature map. ReLU as in Grad-CAM. Why the block's input and
  not its output on a ViT: see `captum_adapter` (the CLS probe's gradient
  w.r.t. the last block's output patch tokens is zero).

On a backbone without a class token (ResNet-50, weight-free) the CLS the probe
reads is the patch-token mean (`Backbone.has_cls_token`), so the probe is the
same as `linear-probe-patch`'s and Grad-CAM on the last stage is classic CAM.

`attribution` (a Params field) swaps in another captum attribution through the
same adapter (`integrated_gradients`, `occlusion`, ...; `captum_adapter.ATTRIBUTIONS`).
Each `attribution(target)` call runs one captum attribution for the whole
batch (per-image targets); results are memoised per target vector within an
explanation, so asking twice for the same targets costs nothing.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from xbench.errors import ConfigError
from xbench.explanation import Explanation
from xbench.registry import register_method

from .base import Batch, FitContext, HeadInfo, Method, TrainData
from .captum_adapter import CaptumAttributor, check_attribution
from .linear_probe import LinearParams, fit_linear_head


@dataclass
class GradCamParams(LinearParams):
    attribution: str = "gradcam"     # captum_adapter.ATTRIBUTIONS
    pool: str = "sum"                # input-space attributions: "sum" (signed) or "abs" per token cell
    ig_steps: int = 50               # (layer) integrated gradients: integration steps (captum's default)
    internal_batch_size: int = 0     # integrated gradients: images per forward (0: all steps at once)
    occlusion_batch: int = 16        # occlusion: occluded copies per forward


@register_method("gradcam", provides={"logits", "attribution"}, needs_backbone_graph=True, paper="gradcam",
                 description="CLS linear probe explained by captum LayerGradCam on the last block (post-hoc baseline)")
class GradCam(Method):
    """CLS linear probe explained by captum LayerGradCam on the last block (post-hoc baseline)."""

    Params = GradCamParams
    logits_need_images = False   # logits read the cached CLS tokens: EvalContext renders no image for them

    def __init__(self, info: HeadInfo, params: GradCamParams | None = None):
        super().__init__(info, params)
        check_attribution(self.params.attribution, self.params.pool)
        self.linear = nn.Linear(info.dim, info.num_classes)
        self.anchor = nn.Identity()     # the hooked layer: the last block's patch input as [B, D, g, g]
        self.extractor = None
        self._attributor: CaptumAttributor | None = None

    def fit(self, data: TrainData, ctx: FitContext) -> dict:
        return fit_linear_head(self.linear, data, "cls", self.params, ctx, "gradcam")

    def attach_extractor(self, extractor) -> None:
        super().attach_extractor(extractor)
        self._attributor = None

    @property
    def attributor(self) -> CaptumAttributor:
        if self._attributor is None:
            if self.extractor is None:
                raise ConfigError("gradcam needs the backbone to explain: attach the runner's extractor "
                                  "(model.attach_extractor(extractor)) before calling explain")
            p = self.params
            self._attributor = CaptumAttributor(
                self.extractor.backbone, lambda t: self.linear(t.cls), self.anchor, p.attribution, pool=p.pool,
                ig_steps=p.ig_steps, internal_batch_size=p.internal_batch_size, occlusion_batch=p.occlusion_batch)
        return self._attributor

    def logits(self, batch: Batch) -> torch.Tensor:
        return self.linear(batch.tokens.cls)

    def explain(self, batch: Batch) -> Explanation:
        logits = self.logits(batch) if batch.tokens is not None else None
        images = batch.images
        if logits is None:
            if images is None:
                raise ValueError("gradcam.explain needs tokens or images")
            with torch.no_grad():
                logits = self.attributor.forward(images)
        seen: dict[tuple[int, ...], torch.Tensor] = {}

        def attribution(target: torch.Tensor) -> torch.Tensor:
            if images is None:
                raise ConfigError("gradcam's attribution needs the batch images: evaluate it through an EvalContext "
                                  "with needs_images=True (the runner does this for needs_backbone_graph methods)")
            key = tuple(int(t) for t in target.tolist())
            if key not in seen:
                seen[key] = self.attributor(images, target)
            return seen[key]

        return Explanation(logits=logits, attribution_fn=attribution, extras={"attribution": self.params.attribution})
