"""The common part of the GLM-based sparse heads on DINO-QPM's dense stage (`dino-sldd`, `dino-qsenn`).

Both heads (1) share DINO-QPM's dense stage (`dense_stage.run_dense_stage`:
one dense model per data, seed and dense configuration, trained once for all
three heads), (2) select ``n_select`` features with a sparse GLM path on the
dense model's standardised pooled training features (`glm_path`: features in
the order they enter the elastic-net path from lambda_max down; the first
``n_select`` of them), (3) assign features to classes, each head by its own
rule (`assign`), and (4) fine-tune the MLP with the class weights frozen:

    logits = W ((f_sel - mu) / sigma) + b,   loss = CE + L_div(sparse_div_beta, W) [+ L1 terms]

``mu`` and ``sigma`` are the training mean and population standard deviation
of the selected features under the current MLP (eval mode), frozen during a
fine-tuning run, exactly as in DINO-QPM's stage 3.

Explanations (SPEC 4): concept maps = the selected feature maps ``F_sel``
[B, n_select, g, g], concept scores = ``(f_sel - mu) / sigma``, class weights
``W`` [C, n_select] (signed), class bias ``b``: logits = scores @ W.T + b
exactly; attribution(c) = sum_k W[c, k] F_sel_k.
"""
from __future__ import annotations

import abc
import time
from dataclasses import dataclass

import torch
from torch import nn

from xbench.errors import ConfigError
from xbench.explanation import Explanation, concept_attribution

from ..base import Batch, FitContext, HeadInfo, Method, TrainData
from .dense_stage import DenseStageParams, mlp_pooled_features, run_dense_stage, stage_loss, train_epochs
from .glm_path import entry_order, glm_path
from .model import PatchMLP, pool

__all__ = ["GLMHeadParams", "GLMSparseHead"]


@dataclass
class GLMHeadParams(DenseStageParams):
    """Dense stage (DINO-QPM's, shared) + GLM selection + fine-tuning."""

    n_select: int = 50                 # features kept (SLDD / Q-SENN: 50)
    n_per_class: int = 5               # features per class (SLDD: exactly; Q-SENN: on average)
    glm_alpha: float = 0.99            # elastic-net mixing (1 = lasso), glm-saga's default
    glm_lambdas: int = 100             # points on the path, lambda_max down to glm_eps * lambda_max
    glm_eps: float = 1e-3
    glm_max_iter: int = 500            # proximal-gradient steps per path point (at most)
    glm_tol: float = 1e-6              # stop a point when no weight moves by more than tol x max |W|
    # fine-tuning (DINO-QPM's stage-3 optimiser settings; no L1 terms by default: those are DINO-QPM's)
    sparse_epochs: int = 25
    sparse_lr: float = 5e-3
    sparse_weight_decay: float = 8e-4
    sparse_batch_size: int = 16
    sparse_div_beta: float = 1.0
    sparse_l1_maps: float = 0.0
    sparse_l1_pooled: float = 0.0


class GLMSparseHead(Method):
    """Base of dino-sldd / dino-qsenn (module docstring); subclasses implement `sparse_stages`."""

    Params = GLMHeadParams

    def __init__(self, info: HeadInfo, params: GLMHeadParams | None = None):
        super().__init__(info, params)
        p = self.params
        self._validate(info.num_classes)
        self.mlp = PatchMLP(info.dim, p.hidden_dim, p.hidden_layers, p.n_features)
        self.dense = nn.Linear(p.n_features, info.num_classes)
        self.dropout = nn.Dropout(p.dense_dropout)
        n, C = p.n_select, info.num_classes
        self.register_buffer("selected", torch.arange(n, dtype=torch.long))
        self.register_buffer("weight", torch.zeros(C, n))
        self.register_buffer("bias", torch.zeros(C))
        self.register_buffer("mu", torch.zeros(n))
        self.register_buffer("sigma", torch.ones(n))

    def _validate(self, num_classes: int) -> None:
        p, name = self.params, self.spec.name
        if p.schedule not in ("cosine", "constant"):
            raise ConfigError(f"{name}.schedule={p.schedule!r}: use one of cosine, constant")
        for f in ("hidden_dim", "n_features", "n_select", "n_per_class", "dense_batch_size", "sparse_batch_size",
                  "stats_batch_size", "glm_lambdas", "glm_max_iter"):
            if getattr(p, f) < 1:
                raise ConfigError(f"{name}.{f}={getattr(p, f)}: must be at least 1")
        if p.n_select > p.n_features:
            raise ConfigError(f"{name}.n_select={p.n_select} exceeds n_features={p.n_features}; lower n_select")
        if p.n_per_class > p.n_select:
            raise ConfigError(f"{name}.n_per_class={p.n_per_class} exceeds n_select={p.n_select}; lower n_per_class")
        if not 0.0 < p.glm_alpha <= 1.0:
            raise ConfigError(f"{name}.glm_alpha={p.glm_alpha}: must be in (0, 1]")
        if not 0.0 < p.glm_eps < 1.0:
            raise ConfigError(f"{name}.glm_eps={p.glm_eps}: must be in (0, 1)")
        if not 0.0 <= p.dense_dropout < 1.0:
            raise ConfigError(f"{name}.dense_dropout={p.dense_dropout}: must be in [0, 1)")
        if not p.sigma_floor > 0:
            raise ConfigError(f"{name}.sigma_floor={p.sigma_floor}: must be positive")

    # forward -------------------------------------------------------------------------------
    def sparse_forward(self, patch: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        maps = self.mlp(patch)[:, self.selected]
        f = pool(maps)
        return maps, f, (f - self.mu) / self.sigma

    def explain(self, batch: Batch) -> Explanation:
        maps, _, scores = self.sparse_forward(batch.tokens.patch)
        w = self.weight
        return Explanation(logits=scores @ w.T + self.bias, attribution_fn=concept_attribution(maps, w),
                           concept_maps=maps, concept_scores=scores, class_weights=w, class_bias=self.bias)

    def logits(self, batch: Batch) -> torch.Tensor:
        _, _, scores = self.sparse_forward(batch.tokens.patch)
        return scores @ self.weight.T + self.bias

    # training -------------------------------------------------------------------------------
    def fit(self, data: TrainData, ctx: FitContext) -> dict:
        torch.manual_seed(ctx.seed)
        log: dict = {"schedule": self.params.schedule, "timings": {}}
        t = time.perf_counter()
        log["dense"] = run_dense_stage(self, data, ctx)
        log["timings"]["dense_s"] = round(time.perf_counter() - t, 3)
        self.sparse_stages(data, ctx, log)
        self.eval()
        return log

    @abc.abstractmethod
    def sparse_stages(self, data: TrainData, ctx: FitContext, log: dict) -> None:
        """Select, assign and fine-tune (sets `selected`, `weight`, `bias`, `mu`, `sigma`); fills `log`."""

    def pooled_features(self, data: TrainData) -> tuple[torch.Tensor, torch.Tensor]:
        """(f [N, N_f] float32 on CPU, labels [N]) of every training row (dense_stage.mlp_pooled_features)."""
        return mlp_pooled_features(self, data, self.params.stats_batch_size)

    def standardise(self, f: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(X = (f - mu) / sigma in float64, mu, sigma) with population std floored at sigma_floor."""
        f = f.double()
        mu = f.mean(dim=0)
        sigma = f.std(dim=0, unbiased=False).clamp_min(self.params.sigma_floor)
        return (f - mu) / sigma, mu, sigma

    def glm_kwargs(self) -> dict:
        p = self.params
        return {"alpha": p.glm_alpha, "n_lambdas": p.glm_lambdas, "eps": p.glm_eps, "max_iter": p.glm_max_iter,
                "tol": p.glm_tol}

    def select_features(self, f: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, dict]:
        """The first n_select features to enter the elastic-net path on all standardised features."""
        p = self.params
        X = self.standardise(f)[0].float()
        path = glm_path(X, labels, self.info.num_classes, stop_active=p.n_select, **self.glm_kwargs())
        sel = torch.sort(entry_order(path)[:p.n_select]).values
        info = {"path_points": len(path), "lambda_max": path[0].lam, "lambda_end": path[-1].lam,
                "active_at_end": path[-1].n_active, "iterations": sum(pt.iterations for pt in path),
                "selected": sel.tolist()}
        return sel, info

    def set_head(self, sel: torch.Tensor, f: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> None:
        """Install the selection, the frozen statistics of f[:, sel] and the class weights / bias."""
        dev = self.weight.device
        _, mu, sigma = self.standardise(f[:, sel])
        self.selected = sel.to(dev)
        self.mu = mu.float().to(dev)
        self.sigma = sigma.float().to(dev)
        self.weight = weight.float().to(dev)
        self.bias = bias.float().to(dev)

    def finetune(self, data: TrainData, ctx: FitContext, epochs: int, generator_offset: int, desc: str) -> dict:
        """Train the MLP with W, b, mu, sigma frozen: CE + L_div(W) [+ L1 terms]."""
        p = self.params

        def step(patch, targets):
            maps, f, scores = self.sparse_forward(patch)
            logits = scores @ self.weight.T + self.bias
            return stage_loss(maps, f, logits, self.weight, targets, p.sparse_div_beta, p.sparse_l1_maps,
                              p.sparse_l1_pooled)

        return train_epochs(data, ctx, list(self.mlp.parameters()), step, epochs=epochs,
                            batch_size=p.sparse_batch_size, lr=p.sparse_lr, weight_decay=p.sparse_weight_decay,
                            schedule=p.schedule, generator_offset=generator_offset, desc=desc, modules=self)

    # saving ---------------------------------------------------------------------------------
    def prepare_load(self, state: dict[str, torch.Tensor]) -> None:
        for name in ("selected", "weight", "bias", "mu", "sigma"):
            if name in state and tuple(state[name].shape) != tuple(getattr(self, name).shape):
                setattr(self, name, torch.empty_like(state[name], device=getattr(self, name).device))


def assignment_record(sel: torch.Tensor, weight: torch.Tensor) -> list[list[list]]:
    """Per class: [[feature id, weight], ...] of its non-zero weights (for the fit log)."""
    out = []
    for row in weight.tolist():
        out.append([[int(sel[j]), round(float(w), 6)] for j, w in enumerate(row) if w != 0.0])
    return out
