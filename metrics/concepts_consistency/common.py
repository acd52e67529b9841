"""What both consistency protocols share: the protocol choice, options, the noise, concept batches.

Protocol choice (SPEC 5.4), by the dataset's annotations unless the metric
option `protocol` says otherwise (`auto` | `keypoints` | `part_masks`):

* `keypoints` (a, Huang et al. ICCV 2023, CUB): datasets with `keypoints` AND `boxes`;
* `part_masks` (b, ProtoFM / ProtoS-ViT): otherwise datasets with `part_map`
  (synthbirds has keypoints but no boxes, so it gets (b), like funnybirds);
* neither: n/a.

Noise (stability): N(0, 0.2) clipped to +-0.25, added in normalised image
space for (a) (on the box crops) and on the [0, 1] image for (b), through
`NoiseView`, so noisy copies are extracted once and cached like any view.
Choice: the noise seed is fixed (option `noise_seed`, default 0), not the job
seed, so every method and seed is scored on the same noisy images and the
noisy tokens are extracted once per backbone.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

import numpy as np
import torch

from xbench.errors import ConfigError
from xbench.evaluation import EvalContext, NotApplicable
from xbench.views import View

PROTOCOLS = ("keypoints", "part_masks")
NOISE_SIGMA = 0.2
NOISE_CLIP = 0.25


def choose_protocol(ctx: EvalContext, metric: str) -> str:
    """'keypoints' (a) or 'part_masks' (b) for this dataset; NotApplicable when it has neither."""
    opt = str(ctx.option(metric, "protocol", "auto"))
    ann = ctx.dataset.spec.annotations
    can_a = {"keypoints", "boxes"} <= ann
    can_b = "part_map" in ann
    if opt == "auto":
        if can_a:
            return "keypoints"
        if can_b:
            return "part_masks"
        raise NotApplicable("dataset has neither keypoints with boxes nor part maps")
    if opt not in PROTOCOLS:
        raise ConfigError(f"metric option {metric}.protocol={opt!r} is not valid; use auto, keypoints or part_masks")
    if (opt == "keypoints" and not can_a) or (opt == "part_masks" and not can_b):
        need = "keypoints and boxes" if opt == "keypoints" else "part maps"
        raise NotApplicable(f"protocol {opt} needs {need}, which dataset {ctx.dataset.spec.name!r} lacks")
    return opt


@dataclass
class ConceptBatch:
    rows: np.ndarray               # rows of the view's store
    labels: torch.Tensor           # [B] true class of the base image
    maps: torch.Tensor             # [B, K, g, g]
    scores: torch.Tensor           # [B, K]
    weights: torch.Tensor          # [C, K]


def concept_batches(ctx: EvalContext, view: View) -> Iterator[ConceptBatch]:
    """The model's concept explanations of every item of `view` on the test split, batch by batch."""
    labels = ctx.labels("test")
    base = torch.as_tensor(np.asarray(ctx.items("test", view).base, dtype=np.int64))
    for rows, exp in ctx.explanations("test", view):
        if exp.concept_maps is None or exp.class_weights is None or exp.concept_scores is None:
            raise NotApplicable("the explanation has no concept maps, scores and class weights")
        y = labels[base[torch.as_tensor(np.asarray(rows, dtype=np.int64))]].to(exp.concept_maps.device)
        yield ConceptBatch(rows=np.asarray(rows), labels=y, maps=exp.concept_maps.detach().float(),
                           scores=exp.concept_scores.detach().float(), weights=exp.class_weights.detach().float())


def fraction(mask: torch.Tensor, of: torch.Tensor) -> tuple[float | None, int]:
    """(mean of `mask` over the entries where `of` is True, how many); None when there are none."""
    n = int(of.sum())
    if n == 0:
        return None, 0
    return float(mask[of].double().mean()), n


__all__ = ["PROTOCOLS", "NOISE_SIGMA", "NOISE_CLIP", "choose_protocol", "ConceptBatch", "concept_batches", "fraction"]
