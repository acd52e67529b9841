"""Linear probes (SPEC 3.1): the accuracy reference of both papers.

* `linear-probe`: a linear classifier on the CLS token. On a backbone without
  a class token (ResNet-50, weight-free: `Backbone.has_cls_token` False) the
  CLS is the patch-token mean, so it trains on the same features as
  `linear-probe-patch` (the record's backbone says `cls: patch-mean`).
* `linear-probe-patch`: a linear classifier on the mean of the patch tokens
  (DINO-QPM's "Dense F^froz"). It is exactly decomposable:
  logit_c = mean_p (w_c . token_p) + b_c, so its attribution map for class c is
  w_c . token_p per patch, and it is a concept model whose K = D concepts are
  the token dimensions: concept_maps[k] = token[..., k], concept_scores = the
  patch mean, class_weights = W.

Both are trained on cached tokens, on standardised features (training mean /
std, folded into W and b after training, so the saved head is a plain linear
map). The default solver is full-batch L-BFGS on the soft-target cross-entropy
plus `l2 * ||W||^2` (a convex problem, solved in float64: it converges to the
same optimum on every run and needs no learning-rate schedule); `solver="adamw"` trains with
mini-batch AdamW and a cosine schedule instead (`epochs`, `lr`,
`weight_decay`, `batch_size`).

Both support DistributedDataParallel (`xbench run --ddp N`): every rank pools
all training rows (one cheap pass). With L-BFGS each rank computes the loss
and gradient of its share of the rows, the sums are all-reduced, and every
rank takes the same L-BFGS step. With AdamW every rank draws the same seeded
order; each global batch of `batch_size` rows is split across the ranks, and
the rank's summed loss is scaled so that DDP's gradient average equals the
one-process mean-loss gradient. Either way the result matches one process to
floating-point rounding (summation order), not bit for bit.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from xbench.explanation import Explanation, concept_attribution
from xbench.registry import register_method

from .base import Batch, FitContext, HeadInfo, Method, ParamsBase, TrainData, soft_cross_entropy


@dataclass
class LinearParams(ParamsBase):
    solver: str = "lbfgs"        # "lbfgs" (full batch, default) or "adamw"
    l2: float = 1e-4             # lbfgs: penalty on ||W||^2 (standardised features)
    max_iter: int = 500          # lbfgs: iterations
    epochs: int = 100            # adamw
    lr: float = 3e-3             # adamw
    weight_decay: float = 1e-4   # adamw (decoupled)
    batch_size: int = 256        # adamw


def pooled_features(data: TrainData, which: str, batch_size: int = 512) -> torch.Tensor:
    """[N, D] CLS tokens or patch-mean tokens of every training row (one pass over the cache)."""
    out = []
    for b in data.all_batches(batch_size):
        t = b.tokens
        out.append(t.cls if which == "cls" else t.patch.mean(dim=(1, 2)))
    return torch.cat(out)


def fit_linear(x: torch.Tensor, targets: torch.Tensor, params: LinearParams, ctx: FitContext,
               desc: str) -> tuple[torch.Tensor, torch.Tensor, list[float]]:
    """Softmax regression on standardised x; returns (W, b) in the original feature space and the loss curve."""
    mu = x.mean(dim=0)
    sd = x.std(dim=0).clamp_min(1e-6)
    z = (x - mu) / sd
    if params.solver == "lbfgs":
        w, b, curve = _fit_lbfgs(z.to(ctx.device), targets.to(ctx.device), params, ctx, desc)
    elif params.solver == "adamw":
        w, b, curve = _fit_adamw(z, targets, params, ctx, desc)
    else:
        from xbench.errors import ConfigError

        raise ConfigError(f"linear probe solver={params.solver!r}: use 'lbfgs' or 'adamw'")
    with torch.no_grad():
        w = w / sd.to(ctx.device)
        b = b - w @ mu.to(ctx.device)
    return w.detach(), b.detach(), curve


def fit_linear_head(linear: nn.Linear, data: TrainData, which: str, params: LinearParams, ctx: FitContext,
                    desc: str) -> dict:
    """The one fit of every linear head (linear-probe, linear-probe-patch, gradcam): `fit_linear` on the
    pooled `which` features ("cls" or "patch"), copied into `linear`; returns the record's training log."""
    x = pooled_features(data, which)
    w, b, curve = fit_linear(x, data.targets, params, ctx, desc)
    with torch.no_grad():
        linear.weight.copy_(w)
        linear.bias.copy_(b)
    return {"final_loss": curve[-1] if curve else None}


def _fit_lbfgs(z: torch.Tensor, targets: torch.Tensor, params: LinearParams, ctx: FitContext,
               desc: str) -> tuple[torch.Tensor, torch.Tensor, list[float]]:
    n_total = len(z)
    world, rank = ctx.world_size, ctx.rank
    mine = torch.arange(n_total, device=z.device).tensor_split(world)[rank] if world > 1 else slice(None)
    # float64: a convex problem solved to tight tolerance, so runs (and DDP vs one process) agree closely
    zr, tr = z[mine].double(), targets[mine].double()
    w = torch.zeros(targets.shape[1], z.shape[1], device=z.device, dtype=torch.float64, requires_grad=True)
    b = torch.zeros(targets.shape[1], device=z.device, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([w, b], lr=1.0, max_iter=params.max_iter, history_size=20,
                            line_search_fn="strong_wolfe", tolerance_grad=1e-9, tolerance_change=1e-12)
    curve: list[float] = []

    def closure() -> torch.Tensor:
        opt.zero_grad(set_to_none=True)
        rows = -(tr * torch.log_softmax(zr @ w.T + b, dim=1)).sum(dim=1)
        loss = rows.sum() / n_total + (params.l2 * (w * w).sum()) / world
        loss.backward()
        if world > 1:  # every rank then holds the global loss and gradient, and takes the same step
            import torch.distributed as dist

            for t in (w.grad, b.grad):
                dist.all_reduce(t)
            loss = loss.detach().clone()
            dist.all_reduce(loss)
        curve.append(float(loss.detach()))
        return loss

    with _SingleStepProgress(ctx, desc):
        opt.step(closure)
    return w.detach().float(), b.detach().float(), curve


class _SingleStepProgress:
    """A one-line progress bar for a single long call (L-BFGS)."""

    def __init__(self, ctx: FitContext, desc: str):
        self.ctx, self.desc = ctx, desc

    def __enter__(self):
        self.it = self.ctx.epochs(1, self.desc)
        next(self.it)
        return self

    def __exit__(self, *exc) -> None:
        for _ in self.it:
            pass


def _fit_adamw(z: torch.Tensor, targets: torch.Tensor, params: LinearParams, ctx: FitContext,
               desc: str) -> tuple[torch.Tensor, torch.Tensor, list[float]]:
    lin = nn.Linear(z.shape[1], targets.shape[1]).to(ctx.device)
    g = ctx.generator()
    with torch.no_grad():
        lin.weight.copy_(torch.randn(lin.weight.shape, generator=g) * 0.01)
        lin.bias.zero_()
    opt = torch.optim.AdamW(lin.parameters(), lr=params.lr, weight_decay=params.weight_decay)
    steps_per_epoch = max(1, (len(z) + params.batch_size - 1) // params.batch_size)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=params.epochs * steps_per_epoch)
    z, targets = z.to(ctx.device), targets.to(ctx.device)
    model = ctx.ddp(lin)
    world, rank = ctx.world_size, ctx.rank
    curve = []
    for _ in ctx.epochs(params.epochs, desc):
        perm = torch.randperm(len(z), generator=g).to(ctx.device)
        total = 0.0
        for s in range(0, len(z), params.batch_size):
            i = perm[s:s + params.batch_size]
            if world == 1:
                loss = soft_cross_entropy(model(z[i]), targets[i])
                total += loss.item() * len(i)
            else:  # this rank's part of the same global batch; gradients averaged by DDP
                mine = i.tensor_split(world)[rank]
                rows = -(targets[mine] * torch.log_softmax(model(z[mine]), dim=1)).sum(dim=1)
                loss = ctx.global_mean(rows, len(i))
                total += rows.sum().item()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
        curve.append(ctx.all_reduce_sum(total) / len(z))
    return lin.weight.detach(), lin.bias.detach(), curve


@register_method("linear-probe", provides={"logits"}, paper="dinov2", supports_ddp=True,
                 description="linear classifier on the CLS token (accuracy reference)")
class LinearProbe(Method):
    """Linear classifier on the CLS token (accuracy reference)."""

    Params = LinearParams

    def __init__(self, info: HeadInfo, params: LinearParams | None = None):
        super().__init__(info, params)
        self.linear = nn.Linear(info.dim, info.num_classes)

    def fit(self, data: TrainData, ctx: FitContext) -> dict:
        return fit_linear_head(self.linear, data, "cls", self.params, ctx, "linear-probe")

    def explain(self, batch: Batch) -> Explanation:
        return Explanation(logits=self.linear(batch.tokens.cls))


@register_method("linear-probe-patch", provides={"logits", "attribution", "concepts"}, paper="dinoqpm",
                 supports_ddp=True,
                 description="linear classifier on the mean patch token; exactly decomposable (Dense F^froz)")
class LinearProbePatch(Method):
    """Linear classifier on the mean patch token; exactly decomposable (Dense F^froz)."""

    Params = LinearParams

    def __init__(self, info: HeadInfo, params: LinearParams | None = None):
        super().__init__(info, params)
        self.linear = nn.Linear(info.dim, info.num_classes)

    def fit(self, data: TrainData, ctx: FitContext) -> dict:
        return fit_linear_head(self.linear, data, "patch", self.params, ctx, "linear-probe-patch")

    def explain(self, batch: Batch) -> Explanation:
        patch = batch.tokens.patch                       # [B, g, g, D]
        maps = patch.permute(0, 3, 1, 2)                 # [B, D, g, g]: concept k = token dimension k
        scores = maps.mean(dim=(2, 3))                   # [B, D]
        w = self.linear.weight
        logits = scores @ w.T + self.linear.bias
        return Explanation(logits=logits, attribution_fn=concept_attribution(maps, w), concept_maps=maps,
                           concept_scores=scores, class_weights=w, class_bias=self.linear.bias)

    def logits(self, batch: Batch) -> torch.Tensor:
        return self.linear(batch.tokens.patch.mean(dim=(1, 2)))
