"""DINO-SLDD: the SLDD decision layer of "Take 5" (Norrenbrock et al., arXiv 2303.13166) on DINO-QPM's
per-patch MLP features (the DINO-SLDD row of DINO-QPM's results table).

Stages (the common part is `methods/dino_qpm/glm_head.py`):

1. DINO-QPM's dense stage, shared with `dino-qpm` and `dino-qsenn` (trained once per data, seed, dense config).
2. Feature selection: an elastic-net GLM path (glm-saga style, `glm_path`) on the standardised pooled
   training features of the dense model, from lambda_max down; the first ``n_select`` = 50 features to
   enter the path (= the last point with at most 50 active features, completed by the next to enter).
3. Class assignment: the path again, on the 50 selected features only, down to ``glm_eps * lambda_max``;
   per class the ``n_per_class`` = 5 largest |weights| are kept (signed, real-valued), then the kept
   weights and the bias are refitted at that last lambda with the sparsity pattern fixed.
4. Fine-tuning: the MLP trains with the sparse layer frozen (CE + L_div), DINO-QPM's stage-3 settings.

Choices where "Take 5" or the DINO-QPM paper leave a detail open (all parameters): full-batch proximal
gradient instead of SAGA; the masked refit before fine-tuning; the sparse layer frozen while the MLP
fine-tunes (as DINO-QPM's stage 3); no L1 terms (DINO-QPM's own addition). See docs/choices.md.
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import torch

from xbench.registry import register_method

from .base import FitContext, TrainData
from .dino_qpm.dense_stage import DENSE_QUICKSTART
from .dino_qpm.glm_head import GLMHeadParams, GLMSparseHead, assignment_record
from .dino_qpm.glm_path import fit_glm, glm_path, top_k_per_class

__all__ = ["DinoSLDD", "DinoSLDDParams", "sldd_layer"]


@dataclass
class DinoSLDDParams(GLMHeadParams):
    """DINO-QPM's dense stage + SLDD: GLM-path selection of 50 features, the 5 largest weights per class."""

    refit_iter: int = 500              # proximal-gradient steps of the masked refit (0 = keep the path's values)


def sldd_layer(X: torch.Tensor, labels: torch.Tensor, C: int, per_class: int, glm: dict,
               refit_iter: int) -> tuple[torch.Tensor, torch.Tensor, dict]:
    """SLDD's sparse layer on selected standardised features X [N, n]: (W [C, n] with `per_class` non-zeros per
    class, b [C], info). The path runs to its end; the top-`per_class` |W| per class are kept and refitted."""
    path = glm_path(X, labels, C, **glm)
    end = path[-1]
    mask = top_k_per_class(end.weight, per_class)
    if refit_iter > 0:
        pt = fit_glm(X, labels, C, end.lam, glm["alpha"], end.weight * mask, end.bias,
                     max_iter=refit_iter, tol=glm["tol"], mask=mask)
        W, b = pt.weight, pt.bias
    else:
        W, b = end.weight * mask, end.bias
    return W, b, {"path_points": len(path), "lambda_end": end.lam, "nonzero": int((W != 0).sum())}


@register_method("dino-sldd", provides={"logits", "attribution", "concepts"}, paper="sldd",
                 description="DINO-SLDD: DINO-QPM's dense stage, GLM-path selection (50 features), 5 weights per class")
class DinoSLDD(GLMSparseHead):
    """DINO-SLDD: DINO-QPM's dense stage, GLM-path selection (50 features), the 5 largest weights per class."""

    Params = DinoSLDDParams
    in_quickstart = False   # not in the default method list (run it with --methods dino-sldd)
    quickstart = {**DENSE_QUICKSTART, "sparse_epochs": 6, "sparse_batch_size": 32, "glm_max_iter": 300, "glm_lambdas": 20, "glm_tol": 1e-4}

    def sparse_stages(self, data: TrainData, ctx: FitContext, log: dict) -> None:
        p = self.params
        t = time.perf_counter()
        f, labels = self.pooled_features(data)
        sel, log["selection"] = self.select_features(f, labels)
        X = self.standardise(f[:, sel])[0].float()
        W, b, log["assignment"] = sldd_layer(X, labels, self.info.num_classes, p.n_per_class, self.glm_kwargs(),
                                             p.refit_iter)
        self.set_head(sel, f, W, b)
        log["assignment"]["classes"] = assignment_record(sel, W)
        log["timings"]["glm_s"] = round(time.perf_counter() - t, 3)
        t = time.perf_counter()
        log["sparse"] = self.finetune(data, ctx, p.sparse_epochs, 2, "dino-sldd fine-tune")
        log["timings"]["sparse_s"] = round(time.perf_counter() - t, 3)
        last = log["sparse"]["loss"] or log["dense"].get("loss")
        log["final_loss"] = last[-1] if last else None
