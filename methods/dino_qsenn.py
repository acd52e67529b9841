"""DINO-QSENN: Q-SENN (Norrenbrock et al., AAAI 2024, arXiv 2312.13839) on DINO-QPM's per-patch MLP features
(the DINO-QSENN row of DINO-QPM's results table).

Stages (the common part is `methods/dino_qpm/glm_head.py`):

1. DINO-QPM's dense stage, shared with `dino-qpm` and `dino-sldd` (trained once per data, seed, dense config).
2. Feature selection, once: the first ``n_select`` = 50 features to enter the elastic-net GLM path on the
   dense model's standardised pooled training features (as `dino-sldd`).
3. ``iterations`` rounds of assign -> fine-tune. Assign: on the selected features of the *current* MLP
   (standardised with their current training mean / std, which are then frozen for the round) the GLM path
   runs to its end; its weights W are quantised to a ternary class-feature matrix (`ternary_assign`):
   the ``n_per_class x C`` largest |W| entries over the whole matrix are kept (so classes get about
   ``n_per_class`` features each, some more, some fewer; a class left with none keeps its single largest
   |W|), each as sign(W) in {+1, -1}; everything else is 0. No bias. Fine-tune: the MLP trains with the
   ternary layer frozen (CE + L_div), ``sparse_epochs`` per round.

Choices where Q-SENN or the DINO-QPM paper leave a detail open (all parameters): the global budget of
``n_per_class x C`` non-zeros (the "about 5 per class"); unit magnitude (the frozen standardisation sets the
scale, as in DINO-QPM's binary layer); selection once, before the first round. See docs/choices.md.
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import torch

from xbench.errors import ConfigError
from xbench.registry import register_method

from .base import FitContext, TrainData
from .dino_qpm.dense_stage import DENSE_QUICKSTART
from .dino_qpm.glm_head import GLMHeadParams, GLMSparseHead, assignment_record
from .dino_qpm.glm_path import glm_path

__all__ = ["DinoQSENN", "DinoQSENNParams", "ternary_assign"]


@dataclass
class DinoQSENNParams(GLMHeadParams):
    """DINO-QPM's dense stage + Q-SENN: ternary assignment (about 5 features per class), iterated fine-tuning."""

    iterations: int = 4                # rounds of assign -> fine-tune
    sparse_epochs: int = 10            # fine-tuning epochs per round


def ternary_assign(W: torch.Tensor, per_class: int) -> torch.Tensor:
    """Ternary class-feature matrix T [C, K] in {-1, 0, +1} from real weights W [C, K].

    The per_class * C entries of largest |W| (ties: lower class, then lower feature index) become sign(W);
    a class that gets none keeps its own largest |W| entry (if non-zero); zero weights stay 0.
    """
    C, K = W.shape
    budget = min(per_class * C, C * K)
    flat = sorted(range(C * K), key=lambda i: (-abs(float(W.view(-1)[i])), i))
    T = torch.zeros(C, K)
    for i in flat[:budget]:
        c, j = divmod(i, K)
        T[c, j] = float(torch.sign(W[c, j]))
    for c in range(C):
        if not T[c].any():
            j = min(range(K), key=lambda k: (-abs(float(W[c, k])), k))
            T[c, j] = float(torch.sign(W[c, j]))
    return T


@register_method("dino-qsenn", provides={"logits", "attribution", "concepts"}, paper="qsenn",
                 description="DINO-QSENN: DINO-QPM's dense stage, 50 GLM-selected features, ternary assignment, "
                             "iterative fine-tuning")
class DinoQSENN(GLMSparseHead):
    """DINO-QSENN: DINO-QPM's dense stage, 50 GLM-selected features, ternary assignment, iterative fine-tuning."""

    Params = DinoQSENNParams
    in_quickstart = False   # not in the default method list (run it with --methods dino-qsenn)
    quickstart = {**DENSE_QUICKSTART, "iterations": 2, "sparse_epochs": 3, "sparse_batch_size": 32,
                  "glm_max_iter": 300, "glm_lambdas": 20, "glm_tol": 1e-4}

    def _validate(self, num_classes: int) -> None:
        super()._validate(num_classes)
        if self.params.iterations < 1 or self.params.sparse_epochs < 0:
            raise ConfigError(f"dino-qsenn: iterations must be >= 1 and sparse_epochs >= 0 "
                              f"(got {self.params.iterations}, {self.params.sparse_epochs})")

    def sparse_stages(self, data: TrainData, ctx: FitContext, log: dict) -> None:
        p, C = self.params, self.info.num_classes
        t = time.perf_counter()
        f, labels = self.pooled_features(data)
        sel, log["selection"] = self.select_features(f, labels)
        log["timings"]["glm_s"] = round(time.perf_counter() - t, 3)
        log["rounds"] = []
        for r in range(p.iterations):
            t = time.perf_counter()
            if r > 0:
                f, labels = self.pooled_features(data)
            X = self.standardise(f[:, sel])[0].float()
            path = glm_path(X, labels, C, **self.glm_kwargs())
            T = ternary_assign(path[-1].weight, p.n_per_class)
            self.set_head(sel, f, T, torch.zeros(C))
            assign_s = round(time.perf_counter() - t, 3)
            t = time.perf_counter()
            hist = self.finetune(data, ctx, p.sparse_epochs, 2 + r, f"dino-qsenn round {r + 1}")
            log["rounds"].append({"assign_s": assign_s, "fine_tune_s": round(time.perf_counter() - t, 3),
                                  "positive": int((T > 0).sum()), "negative": int((T < 0).sum()),
                                  "per_class_min": int((T != 0).sum(1).min()),
                                  "per_class_max": int((T != 0).sum(1).max()), "fine_tune": hist})
        log["assignment"] = {"classes": assignment_record(sel, self.weight.cpu())}
        last = log["rounds"][-1]["fine_tune"]["loss"] or log["dense"].get("loss")
        log["final_loss"] = last[-1] if last else None
