"""PIP-Net's head on frozen tokens (Nauta et al., "PIP-Net: Patch-Based Intuitive Prototypes for Interpretable
Image Classification", CVPR 2023).

Model, for cached patch tokens [B, g, g, D]:

    x = (tokens - mean) / std               per-channel training statistics (fixed buffers; ours, as ProtoFM's)
    z = softmax_K(addon(x))                  [B, g, g, K]: each patch is a distribution over the K prototypes
    pooled_k = max over patches of z_k       [B, K]: presence of prototype k in the image
    logits = pooled @ W.T, W >= 0, no bias   the non-negative sparse classifier

``addon`` is PIP-Net's add-on (a 1x1 convolution, i.e. a per-token Linear D -> K) preceded by one hidden
layer (D -> H -> ReLU), the stand-in for the backbone layers PIP-Net fine-tunes while ours is frozen
(``hidden_layers=0`` gives the bare 1x1 add-on). K defaults to D, as PIP-Net's K = the backbone's channels.
At evaluation (as PIP-Net's inference) presences below ``score_threshold`` = 0.1 are set to 0; concept
scores are those thresholded presences, so logits = scores @ W.T exactly; concept maps = z [B, K, g, g];
attribution(c) = sum_k W[c, k] z_k.

Training, on two views of every training image: view 1 = the image's cached tokens, view 2 = one of V
cached augmented views (random resized crop, flip, colour jitter; `xbench.views.AugmentView`, the same
cached-view mechanism as ProtoFM's teacher views, cycled over epochs). View 1's distributions are
resampled over view 2's crop box onto view 2's grid (RoIAlign, `methods.protofm.align`), so the alignment
loss compares the two at the same image location. Losses (`losses`):

* pretraining (``pretrain_epochs``, classifier frozen): ``w_align L_A + w_tanh L_T``;
* training (``epochs``): ``w_align L_A + w_tanh L_T + w_cls L_C`` on both views, the classifier trains
  at ``lr_classifier`` and after every step its weights are shrunk by ``weight_shrink`` and clamped at 0
  (PIP-Net's sparsity rule: W <- max(W - 1e-3, 0)).

Where xbench differs from PIP-Net (ours, all parameters): two independently augmented crops in PIP-Net
versus the original and one cached crop here (the tokens are cached; RoIAlign instead of a shared
geometric transform); PIP-Net's TrivialAugment replaced by the views' colour jitter; frozen backbone with
a hidden layer in the add-on; loss weights (align 5, tanh 2, classification 2) and the classifier's
N(1, 0.1) initialisation as we read PIP-Net; no bias. See docs/choices.md.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from xbench.errors import ConfigError
from xbench.explanation import Explanation, concept_attribution
from xbench.registry import register_method
from xbench.views import AugmentView

from ..base import Batch, FitContext, HeadInfo, Method, ParamsBase, TrainData
from ..protofm.align import IMPLS, align_to_teacher
from ..protofm.method import token_stats
from .losses import classification_loss, symmetric_align_loss, tanh_loss

__all__ = ["PIPNet", "PIPNetParams", "PIPHead"]


@dataclass
class PIPNetParams(ParamsBase):
    """PIP-Net hyper-parameters (PIP-Net's values where they carry over to a frozen backbone)."""

    num_prototypes: int = 0              # K; 0 = the token width D (PIP-Net: K = backbone channels)
    hidden_dim: int = 0                  # add-on hidden width; 0 = D
    hidden_layers: int = 1               # 0 = PIP-Net's bare 1x1 add-on
    score_threshold: float = 0.1         # presences below it count as absent at evaluation
    # views (the cached-view mechanism; ours)
    views: int = 4
    view_seed: int = 0
    crop_scale_min: float = 0.35
    jitter: tuple[float, float, float, float] = (0.4, 0.4, 0.4, 0.1)
    align_impl: str = "roi_align"
    # losses
    w_align: float = 5.0
    w_tanh: float = 2.0
    w_cls: float = 2.0
    weight_shrink: float = 1e-3          # subtracted from W after every training step (then clamped at 0)
    # optimisation
    pretrain_epochs: int = 10
    epochs: int = 60
    batch_size: int = 64
    lr: float = 5e-4                     # add-on
    lr_classifier: float = 0.05
    weight_decay: float = 0.0


class PIPHead(nn.Module):
    """Token standardisation, add-on, softmax over prototypes, max-pool, non-negative classifier."""

    def __init__(self, dim: int, num_classes: int, num_prototypes: int, hidden_dim: int, hidden_layers: int):
        super().__init__()
        self.register_buffer("token_mean", torch.zeros(dim))
        self.register_buffer("token_std", torch.ones(dim))
        layers: list[nn.Module] = []
        width = dim
        for _ in range(hidden_layers):
            layers += [nn.Linear(width, hidden_dim), nn.ReLU()]
            width = hidden_dim
        layers.append(nn.Linear(width, num_prototypes))
        self.addon = nn.Sequential(*layers)
        self.weight = nn.Parameter(torch.empty(num_classes, num_prototypes).normal_(1.0, 0.1).clamp_(min=0.0))

    @torch.no_grad()
    def set_token_stats(self, mean: torch.Tensor, std: torch.Tensor) -> None:
        self.token_mean.copy_(mean)
        self.token_std.copy_(std.clamp_min(1e-6))

    def distributions(self, patch: torch.Tensor) -> torch.Tensor:
        """[B, g, g, D] tokens -> z [B, g, g, K], a distribution over prototypes at every patch."""
        return torch.softmax(self.addon((patch - self.token_mean) / self.token_std), dim=-1)

    @staticmethod
    def presence(z: torch.Tensor) -> torch.Tensor:
        """[B, g, g, K] -> [B, K]: max over the patches."""
        return z.flatten(1, 2).amax(dim=1)

    @torch.no_grad()
    def shrink_(self, amount: float) -> None:
        self.weight.sub_(amount).clamp_(min=0.0)


@register_method("pip-net", provides={"logits", "attribution", "concepts"}, paper="pipnet", uses_views=("second",),
                 description="PIP-Net's head on frozen tokens: prototype softmax per patch, max-pool presence, "
                             "non-negative sparse classifier, alignment + tanh pretraining on two views")
class PIPNet(Method):
    """PIP-Net's head on frozen tokens: prototype softmax per patch, max-pool, non-negative sparse classifier."""

    Params = PIPNetParams
    in_quickstart = False   # not in the default method list (run it with --methods pip-net)
    #: CPU quickstart: one cached view with ProtoFM's quickstart view settings (the same cache entry), no
    #: colour jitter (the weight-free tokens name colours; see ProtoFM's quickstart), a narrow add-on,
    #: 128 prototypes, few epochs at a higher add-on lr.
    quickstart = {"views": 1, "jitter": (0.0, 0.0, 0.0, 0.0), "align_impl": "matrix", "num_prototypes": 128,
                  "hidden_dim": 128, "pretrain_epochs": 1, "epochs": 3, "batch_size": 32, "lr": 5e-3}

    def __init__(self, info: HeadInfo, params: PIPNetParams | None = None):
        super().__init__(info, params)
        p = self.params
        if p.views < 1 or p.batch_size < 1 or p.epochs < 0 or p.pretrain_epochs < 0 or p.num_prototypes < 0:
            raise ConfigError(f"pip-net: views and batch_size must be >= 1, epochs, pretrain_epochs and "
                              f"num_prototypes >= 0 (got views={p.views}, batch_size={p.batch_size}, "
                              f"epochs={p.epochs}, pretrain_epochs={p.pretrain_epochs}, "
                              f"num_prototypes={p.num_prototypes})")
        if p.align_impl not in IMPLS:
            raise ConfigError(f"pip-net.align_impl={p.align_impl!r}: use one of {', '.join(IMPLS)}")
        K = p.num_prototypes or info.dim
        self.head = PIPHead(info.dim, info.num_classes, K, p.hidden_dim or info.dim, p.hidden_layers)

    @classmethod
    def views_for(cls, params) -> dict:
        p = params
        return {"second": AugmentView(views=p.views, seed=p.view_seed, scale=(p.crop_scale_min, 1.0),
                                      jitter=tuple(p.jitter))}

    # explaining -----------------------------------------------------------------------------
    def scores(self, z: torch.Tensor) -> torch.Tensor:
        pooled = self.head.presence(z)
        return torch.where(pooled < self.params.score_threshold, torch.zeros_like(pooled), pooled)

    def explain(self, batch: Batch) -> Explanation:
        z = self.head.distributions(batch.tokens.patch)
        scores, w = self.scores(z), self.head.weight
        maps = z.permute(0, 3, 1, 2)
        return Explanation(logits=scores @ w.T, attribution_fn=concept_attribution(maps, w), concept_maps=maps,
                           concept_scores=scores, class_weights=w)

    def logits(self, batch: Batch) -> torch.Tensor:
        return self.scores(self.head.distributions(batch.tokens.patch)) @ self.head.weight.T

    # training -------------------------------------------------------------------------------
    def fit(self, data: TrainData, ctx: FitContext) -> dict:
        p, head, V = self.params, self.head, self.params.views
        store = data.views.get("second")
        if store is None:
            raise ConfigError("pip-net: the second views are missing from the training data; pass "
                              "data.views['second'] = extractor.store(dataset, 'train', model.extra_views()['second'])")
        base = np.asarray(store.base)
        n_img = len(base) // V
        if len(base) != n_img * V or not np.array_equal(base, np.repeat(np.arange(n_img), V)):
            raise ConfigError(f"pip-net: view store {store.path} does not hold {V} views per image; "
                              f"rebuild it with AugmentView(views={V})")
        boxes = torch.as_tensor(np.asarray(store.index_meta["box"]), dtype=torch.float32)
        flips = torch.as_tensor(np.asarray(store.index_meta["flip"])).bool()
        train_base = np.asarray(data.store.base)
        head.set_token_stats(*token_stats(data))
        g_data = ctx.generator(0)
        history: list[dict] = []
        for phase, epochs in (("pretrain", p.pretrain_epochs), ("train", p.epochs)):
            params = list(head.addon.parameters())
            groups = [{"params": params, "lr": p.lr}]
            if phase == "train":
                groups.append({"params": [head.weight], "lr": p.lr_classifier})
            opt = torch.optim.AdamW(groups, weight_decay=p.weight_decay)
            total = max(1, epochs * math.ceil(len(data) / p.batch_size))
            sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 0.5 * (1.0 + math.cos(math.pi * min(s, total) / total)))
            head.train()
            for epoch in ctx.epochs(epochs, f"pip-net {phase}"):
                v = epoch % V
                sums = {"align": 0.0, "tanh": 0.0, "cls": 0.0, "total": 0.0}
                seen = correct = 0
                for batch in data.batches(p.batch_size, g_data, shuffle=True):
                    rows = train_base[batch.index.numpy()] * V + v
                    patch2 = store.tokens(rows, ctx.device, torch.float32).patch
                    losses, logits = self._losses(batch.tokens.patch, patch2, boxes[rows], flips[rows],
                                                  batch.targets, with_cls=phase == "train")
                    loss = p.w_align * losses["align"] + p.w_tanh * losses["tanh"]
                    if phase == "train":
                        loss = loss + p.w_cls * losses["cls"]
                    if not torch.isfinite(loss):
                        from xbench.errors import TrainingDiverged

                        raise TrainingDiverged(f"pip-net {phase} loss is {loss.item()}")
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                    opt.step()
                    sched.step()
                    if phase == "train":
                        head.shrink_(p.weight_shrink)
                    n = len(batch.index)
                    seen += n
                    for k, val in losses.items():
                        sums[k] += float(val.detach()) * n
                    sums["total"] += float(loss.detach()) * n
                    correct += int((logits.argmax(1) == batch.labels).sum())
                history.append({"phase": phase, **{k: round(s / max(seen, 1), 6) for k, s in sums.items()},
                                "train_acc": round(correct / max(seen, 1), 4)})
        self.eval()
        w = head.weight.detach()
        return {"history": history, "final": history[-1] if history else None,
                "nonzero_weights": int((w > 0).sum()), "prototypes_used": int((w > 0).any(dim=0).sum())}

    def _losses(self, patch1: torch.Tensor, patch2: torch.Tensor, box: torch.Tensor, flip: torch.Tensor,
                targets: torch.Tensor, with_cls: bool) -> tuple[dict, torch.Tensor]:
        head = self.head
        z1, z2 = head.distributions(patch1), head.distributions(patch2)
        aligned = align_to_teacher(z1, box, flip, out_size=z2.shape[1], impl=self.params.align_impl,
                                   channels_last=True)
        p1, p2 = head.presence(z1), head.presence(z2)
        losses = {"align": symmetric_align_loss(aligned, z2),
                  "tanh": 0.5 * (tanh_loss(p1) + tanh_loss(p2))}
        logits = p1 @ head.weight.T
        if with_cls:
            both = torch.cat([logits, p2 @ head.weight.T])
            losses["cls"] = classification_loss(both, torch.cat([targets, targets]))
        else:
            losses["cls"] = logits.new_zeros(())
        return losses, logits.detach()
