"""The explanation contract (SPEC 4): what a trained method returns for a batch.

Metrics consume only this (plus the dataset's annotations and the ability to
run the model on other images, e.g. interventions). A method declares which
parts it provides in its spec (`provides={"attribution", "concepts"}`); a metric
declares what it needs; pairs that do not fit are reported as n/a, never as 0.

* `logits [B, C]`;
* `attribution(target) -> [B, g, g]`: class evidence map at token resolution for
  the class `target` (an int or a per-image LongTensor [B]);
* for concept methods: `concept_maps [B, K, g, g]`, `concept_scores [B, K]`,
  `class_weights [C, K]` (and `class_bias [C]` where the method has one), with
  `logits == concept_scores @ class_weights.T (+ class_bias)` to floating-point
  tolerance (`check_concept_decomposition`).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import torch

AttributionFn = Callable[[torch.Tensor], torch.Tensor]


def as_targets(target: int | torch.Tensor, batch: int, device: torch.device) -> torch.Tensor:
    """An int or LongTensor target as a LongTensor [B]."""
    if isinstance(target, torch.Tensor):
        t = target.to(device=device, dtype=torch.long).reshape(-1)
        if t.numel() == 1 and batch != 1:
            t = t.expand(batch)
        if t.numel() != batch:
            raise ValueError(f"target has {t.numel()} entries for a batch of {batch}")
        return t
    return torch.full((batch,), int(target), dtype=torch.long, device=device)


@dataclass
class Explanation:
    logits: torch.Tensor
    attribution_fn: AttributionFn | None = None
    concept_maps: torch.Tensor | None = None
    concept_scores: torch.Tensor | None = None
    class_weights: torch.Tensor | None = None
    class_bias: torch.Tensor | None = None
    extras: dict = field(default_factory=dict)

    @property
    def batch_size(self) -> int:
        return int(self.logits.shape[0])

    @property
    def provides(self) -> frozenset[str]:
        p = {"logits"}
        if self.attribution_fn is not None:
            p.add("attribution")
        if self.concept_maps is not None and self.class_weights is not None:
            p.add("concepts")
        return frozenset(p)

    def attribution(self, target: int | torch.Tensor) -> torch.Tensor:
        """[B, g, g] evidence map for `target` (int or LongTensor [B])."""
        if self.attribution_fn is None:
            raise TypeError("this explanation provides no attribution")
        t = as_targets(target, self.batch_size, self.logits.device)
        return self.attribution_fn(t)

    def predictions(self) -> torch.Tensor:
        return self.logits.argmax(dim=1)


def concept_attribution(maps: torch.Tensor, weights: torch.Tensor) -> AttributionFn:
    """Attribution of a concept model: sum_k W[target, k] * map_k (per image)."""

    def fn(target: torch.Tensor) -> torch.Tensor:
        w = weights[target]  # [B, K]
        return torch.einsum("bk,bkhw->bhw", w.to(maps.dtype), maps)

    return fn


def check_concept_decomposition(exp: Explanation, atol: float = 1e-5, rtol: float = 1e-4) -> float:
    """Max abs deviation of logits from concept_scores @ class_weights.T (+ bias); raises if too big."""
    if exp.concept_scores is None or exp.class_weights is None:
        raise TypeError("explanation has no concepts")
    rebuilt = exp.concept_scores @ exp.class_weights.T
    if exp.class_bias is not None:
        rebuilt = rebuilt + exp.class_bias
    err = (rebuilt - exp.logits).abs().max().item() if exp.logits.numel() else 0.0
    if not torch.allclose(rebuilt, exp.logits, atol=atol, rtol=rtol):
        raise AssertionError(f"logits differ from concept_scores @ class_weights.T by {err:.3g}")
    return err
