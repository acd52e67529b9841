"""DINO-QPM's dense stage (SPEC 3.3 stage 1), shared by every sparse head built on it.

`dino-qpm`, `dino-sldd` and `dino-qsenn` start from the same dense model: the
per-patch MLP and a dense ``Linear(N_f, C)`` on dropped-out pooled features,
trained with ``CE + L_div``. Their parameters share the fields of
`DenseStageParams` (same names, same defaults, same quickstart overrides), and
`run_dense_stage` trains the dense model once per

    (data key of the job, seed, device type, dense configuration)

and stores it in the results folder's shared store (`xbench.shared`, kind
"dense"); a later head with the same key loads it instead of training it
again (the fit log's ``dense.shared`` says which happened and which method
trained it). Without a shared store (tests, DDP workers, `xbench.api` fits)
the dense model is trained in place.

The dense stage is self-contained so that the same key always means the same
model, whichever head trains it: it re-seeds torch's generator from the job
seed, re-initialises the MLP and the dense layer (in module order) and trains
them, drawing batches from ``ctx.generator(1)``; nothing before it changes its
result, and the sparse stages that follow draw no numbers from torch's global
generator (no dropout there), so loading instead of training changes nothing
downstream either.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
import torch
from torch import nn

from ..base import FitContext, ParamsBase, TrainData, soft_cross_entropy
from .losses import diversity_loss, l1
from .model import pool

__all__ = ["DenseStageParams", "DENSE_FIELDS", "DENSE_QUICKSTART", "dense_config", "run_dense_stage",
           "train_epochs", "reset_dense", "train_dense", "dense_step", "stage_loss"]

#: the parameters that change the dense model (architecture, stage-1 training, the lr schedule)
DENSE_FIELDS = ("hidden_dim", "hidden_layers", "n_features", "dense_epochs", "dense_lr", "dense_weight_decay",
                "dense_batch_size", "dense_dropout", "dense_div_beta", "dense_l1_maps", "dense_l1_pooled",
                "schedule")

#: quickstart overrides of the dense fields, the same for every head (so the quickstart heads share one dense
#: model). CPU quickstart: a narrow MLP and few epochs; with so few steps the dense head on the raw pooled
#: features barely moves at the paper's lr 1e-3, so the quickstart raises the dense lr to 1e-2.
DENSE_QUICKSTART = {"hidden_dim": 64, "n_features": 96, "dense_epochs": 10, "dense_lr": 1e-2}


@dataclass
class DenseStageParams(ParamsBase):
    """The dense stage's hyper-parameters (SPEC 3.3 stage 1); defaults are the paper's."""

    # architecture
    hidden_dim: int = 2048
    hidden_layers: int = 3
    n_features: int = 512
    # stage 1: dense
    dense_epochs: int = 25
    dense_lr: float = 1e-3
    dense_weight_decay: float = 7e-4
    dense_batch_size: int = 32
    dense_dropout: float = 0.2
    dense_div_beta: float = 0.5
    dense_l1_maps: float = 0.0
    dense_l1_pooled: float = 0.0
    # shared by the stages
    schedule: str = "cosine"           # "cosine" (per step, to 0 over each stage) or "constant"
    sigma_floor: float = 1e-6          # floor of the frozen feature standard deviations
    stats_batch_size: int = 128        # batch size of the passes that compute training statistics


def dense_config(p) -> dict:
    return {name: getattr(p, name) for name in DENSE_FIELDS}


def reset_dense(model: nn.Module, seed: int) -> None:
    """Seed torch's generator and re-initialise the MLP and the dense layer, in module order."""
    torch.manual_seed(seed)
    for m in list(model.mlp.modules()) + list(model.dense.modules()):
        if hasattr(m, "reset_parameters"):
            m.reset_parameters()


def _dense_state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {**{f"mlp.{k}": v for k, v in model.mlp.state_dict().items()},
            **{f"dense.{k}": v for k, v in model.dense.state_dict().items()}}


def _load_dense_state(model: nn.Module, state: dict[str, torch.Tensor]) -> None:
    dev = next(model.mlp.parameters()).device
    model.mlp.load_state_dict({k[4:]: v.to(dev) for k, v in state.items() if k.startswith("mlp.")}, strict=True)
    model.dense.load_state_dict({k[6:]: v.to(dev) for k, v in state.items() if k.startswith("dense.")}, strict=True)


def stage_loss(maps: torch.Tensor, f: torch.Tensor, logits: torch.Tensor, weights: torch.Tensor,
               targets: torch.Tensor, beta: float, l1_maps: float, l1_pooled: float):
    """CE (soft targets) + L_div(beta) [+ l1_maps L1(F) + l1_pooled L1(f)]; returns (loss, parts, logits)."""
    ce = soft_cross_entropy(logits.float(), targets)
    div = diversity_loss(maps.float(), f.float(), weights, logits.float(), beta)
    loss = ce + div
    parts = {"ce": ce.detach(), "div": div.detach()}
    if l1_maps:
        parts["l1_maps"] = l1(maps.float()).detach()
        loss = loss + l1_maps * l1(maps.float())
    if l1_pooled:
        parts["l1_pooled"] = l1(f.float()).detach()
        loss = loss + l1_pooled * l1(f.float())
    return loss, parts, logits.detach()


def dense_step(model: nn.Module, patch: torch.Tensor, targets: torch.Tensor):
    """One dense-stage loss: F = MLP(patch), logits = dense(dropout(mean F)), CE + L_div + L1 terms."""
    p = model.params
    maps = model.mlp(patch)
    f = pool(maps)
    logits = model.dense(model.dropout(f))
    return stage_loss(maps, f, logits, model.dense.weight, targets, p.dense_div_beta, p.dense_l1_maps,
                      p.dense_l1_pooled)


def train_dense(model: nn.Module, data: TrainData, ctx: FitContext) -> dict:
    """The dense stage's training loop (AdamW on the MLP and the dense layer; batches from ctx.generator(1))."""
    p = model.params
    params = list(model.mlp.parameters()) + list(model.dense.parameters())
    return train_epochs(data, ctx, params, lambda patch, targets: dense_step(model, patch, targets),
                        epochs=p.dense_epochs, batch_size=p.dense_batch_size, lr=p.dense_lr,
                        weight_decay=p.dense_weight_decay, schedule=p.schedule, generator_offset=1,
                        desc="dino-qpm dense", modules=model)


def run_dense_stage(model: nn.Module, data: TrainData, ctx: FitContext) -> dict:
    """Train or load the dense model of `model` (`mlp`, `dense`, `dropout`, `params`: a `DenseStageParams`);
    returns the stage log. See the module docstring for the key."""
    train = lambda: train_dense(model, data, ctx)  # noqa: E731
    shared = getattr(ctx, "shared", None)
    key = getattr(ctx, "data_key", None)
    if shared is None or key is None:
        reset_dense(model, ctx.seed)
        log = train()
        log["shared"] = None
        return log
    from xbench.shared import describe

    description = describe({"stage": "dino-qpm dense", "data": key, "seed": ctx.seed,
                            "device": ctx.device.type, "dense": dense_config(model.params), "format": 1})
    entry = shared.entry("dense", description)
    with shared.locked(entry):
        if entry.exists():
            state, meta = entry.load()
            _load_dense_state(model, state)
            log = dict(meta.get("log", {}))
            log["shared"] = {"key": entry.key, "reused": True, "trained_by": meta.get("trained_by")}
            return log
        reset_dense(model, ctx.seed)
        log = train()
        entry.save(_dense_state(model), {"log": log, "trained_by": model.spec.name})
        log["shared"] = {"key": entry.key, "reused": False, "trained_by": model.spec.name}
        return log


@torch.no_grad()
def mlp_pooled_features(model: nn.Module, data: TrainData, batch_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(f [N, N_f] float32 on CPU, labels [N]): the pooled MLP features of every training row, model in eval mode."""
    was = model.training
    model.eval()
    fs, ys = [], []
    for b in data.all_batches(batch_size):
        fs.append(pool(model.mlp(b.tokens.patch)).float().cpu())
        ys.append(b.labels.cpu())
    model.train(was)
    return torch.cat(fs), torch.cat(ys)


def train_epochs(data: TrainData, ctx: FitContext, params: list[nn.Parameter], step, *, epochs: int,
                 batch_size: int, lr: float, weight_decay: float, schedule: str, generator_offset: int,
                 desc: str, modules: nn.Module) -> dict:
    """AdamW over `params` for `epochs` (cosine per step or constant lr); `step(patch, targets)` gives
    (loss, parts, logits). Returns the per-epoch history (loss, its parts, training accuracy)."""
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    steps = max(1, epochs * math.ceil(len(data) / batch_size))
    sched = (torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=steps) if schedule == "cosine"
             else torch.optim.lr_scheduler.LambdaLR(opt, lambda _: 1.0))
    g = ctx.generator(generator_offset)
    hist: dict[str, list[float]] = {"loss": [], "ce": [], "div": [], "train_acc": []}
    modules.train()
    for _ in ctx.epochs(epochs, desc):
        sums: dict[str, float] = {}
        n = correct = 0
        for b in data.batches(batch_size, generator=g, shuffle=True):
            loss, parts, logits = step(b.tokens.patch, b.targets)
            if not torch.isfinite(loss):
                from xbench.errors import TrainingDiverged

                raise TrainingDiverged(f"{desc} loss is {loss.item()}")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            k = len(b.labels)
            n += k
            correct += int((logits.argmax(dim=1) == b.labels).sum())
            for name, v in {"loss": loss.detach(), **parts}.items():
                sums[name] = sums.get(name, 0.0) + float(v) * k
        for name, v in sums.items():
            hist.setdefault(name, []).append(round(v / max(n, 1), 6))
        hist["train_acc"].append(round(correct / max(n, 1), 6))
    return hist
