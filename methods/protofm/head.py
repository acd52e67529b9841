"""ProtoFM's head (SPEC 3.4): projector, prototype bank, smoothing, non-negative classifier.

Shapes: tokens [B, g, g, D] -> projections z [B, g, g, P] (unit norm) ->
cosine similarities to K unit prototypes [B, g, g, K] -> assignment
(softmax over prototypes at temperature tau) [B, g, g, K] -> smoothed
prototype maps [B, K, g, g] -> scores (spatial max) [B, K] -> logits
scores @ W.T with W >= 0 and no bias.

Choices (SPEC 3.4 and ours):
* Input standardisation (*ours*): the tokens are standardised per channel with
  the training set's patch-token mean / std (fixed buffers, set at the start of
  `fit`, saved with the head) before the projector. Without it, backbones whose
  tokens share a large common component (the weight-free descriptors are
  non-negative histograms) project every patch onto nearly the same direction,
  hence onto the same prototype, from the first step.
* Projector: the sum of a linear branch (D -> P) and a non-linear branch
  (D -> H -> ReLU -> P) applied to every token, then ReLU, Linear(P, P) and L2
  normalisation (as ProtoS-ViT). A 1x1 convolution on a token grid is the same
  map as a Linear on channel-last tokens; we use `nn.Linear` (same parameters,
  same count, faster). H defaults to D (*ours* only in that H is a parameter).
* Prototype bank: K x P, `nn.init.orthogonal_` then rows L2-normalised at
  init; they are normalised again in every forward pass (cosine similarity).
* Smoothing (*ours* in detail): depthwise 3x3 conv (padding 1) plus depthwise
  1x1 conv (a per-prototype scale) on the assignment map, summed; no biases,
  and both kernels kept >= 0 (clamped after every optimiser step, like the
  classifier), so maps, scores and importances are non-negative without a
  ReLU that could switch a prototype off for good (a negative bias on maps of
  size ~1/K does exactly that). Initialised as a light blur: the 3x3 kernel is
  0.5 x the binomial [1 2 1]^T [1 2 1] / 16, the 1x1 weight 0.5, so at init a
  map is half the raw assignment plus half its blur. No LayerNorm across
  prototypes (unlike ProtoS-ViT), so a prototype's map depends only on its own
  assignment channel.
* Classifier: `weight` [C, K] initialised uniform in [0, 1/sqrt(K)) (*ours*),
  kept >= 0 by `clamp_()` after every optimiser step (see `clamp_`); no bias.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


class Projector(nn.Module):
    """Two-branch token projector: relu(lin(x) + mlp(x)) -> Linear(P, P) -> L2 normalise."""

    def __init__(self, dim: int, proj_dim: int = 512, hidden_dim: int | None = None):
        super().__init__()
        hidden = dim if hidden_dim is None else int(hidden_dim)
        self.linear_branch = nn.Linear(dim, proj_dim)
        self.mlp_in = nn.Linear(dim, hidden)
        self.mlp_out = nn.Linear(hidden, proj_dim)
        self.out = nn.Linear(proj_dim, proj_dim)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """[..., D] -> unit-norm [..., P]."""
        h = self.linear_branch(tokens) + self.mlp_out(F.relu(self.mlp_in(tokens)))
        return F.normalize(self.out(F.relu(h)), dim=-1)


class PrototypeBank(nn.Module):
    """K unit prototypes; `similarity(z)` = cosine similarity of unit projections to every prototype."""

    def __init__(self, num_prototypes: int = 300, proj_dim: int = 512):
        super().__init__()
        w = torch.empty(num_prototypes, proj_dim)
        nn.init.orthogonal_(w)
        self.weight = nn.Parameter(F.normalize(w, dim=1))

    def similarity(self, z: torch.Tensor) -> torch.Tensor:
        """[..., P] unit projections -> [..., K] cosine similarities."""
        return z @ F.normalize(self.weight, dim=1).T


class Encoder(nn.Module):
    """Token standardisation + projector + prototype bank: the part of the head the EMA teacher copies."""

    def __init__(self, dim: int, proj_dim: int = 512, hidden_dim: int | None = None, num_prototypes: int = 300):
        super().__init__()
        self.register_buffer("token_mean", torch.zeros(dim))
        self.register_buffer("token_std", torch.ones(dim))
        self.projector = Projector(dim, proj_dim, hidden_dim)
        self.prototypes = PrototypeBank(num_prototypes, proj_dim)

    @torch.no_grad()
    def set_token_stats(self, mean: torch.Tensor, std: torch.Tensor) -> None:
        """Fixed per-channel standardisation of the input tokens (training statistics)."""
        self.token_mean.copy_(mean)
        self.token_std.copy_(std.clamp_min(1e-6))

    def forward(self, patch: torch.Tensor, temperature: float) -> tuple[torch.Tensor, torch.Tensor]:
        """patch [B, g, g, D] -> (z [B, g, g, P], assignment [B, g, g, K] = softmax(cos / temperature))."""
        z = self.projector((patch - self.token_mean) / self.token_std)
        return z, torch.softmax(self.prototypes.similarity(z) / temperature, dim=-1)


class Smoother(nn.Module):
    """Depthwise 3x3 + depthwise 1x1 on [B, K, g, g] assignment maps; no bias, weights kept >= 0 (see the module docstring)."""

    def __init__(self, num_prototypes: int):
        super().__init__()
        self.conv3 = nn.Conv2d(num_prototypes, num_prototypes, 3, padding=1, groups=num_prototypes, bias=False)
        self.conv1 = nn.Conv2d(num_prototypes, num_prototypes, 1, groups=num_prototypes, bias=False)
        with torch.no_grad():
            k = torch.tensor([1.0, 2.0, 1.0])
            blur = torch.outer(k, k) / 16.0
            self.conv3.weight.copy_(0.5 * blur.expand(num_prototypes, 1, 3, 3))
            self.conv1.weight.fill_(0.5)

    @torch.no_grad()
    def clamp_(self) -> None:
        self.conv3.weight.clamp_(min=0.0)
        self.conv1.weight.clamp_(min=0.0)

    def forward(self, maps: torch.Tensor) -> torch.Tensor:
        return self.conv3(maps) + self.conv1(maps)


class NonNegClassifier(nn.Module):
    """Bias-free linear classifier whose weights are kept >= 0 by `clamp_()` after each optimiser step."""

    def __init__(self, num_prototypes: int, num_classes: int):
        super().__init__()
        self.weight = nn.Parameter(torch.rand(num_classes, num_prototypes) / num_prototypes ** 0.5)

    @torch.no_grad()
    def clamp_(self) -> None:
        self.weight.clamp_(min=0.0)

    def forward(self, scores: torch.Tensor) -> torch.Tensor:
        return scores @ self.weight.T


@dataclass
class HeadOutput:
    z: torch.Tensor           # [B, g, g, P] unit projections
    assignment: torch.Tensor  # [B, g, g, K] softmax over prototypes
    maps: torch.Tensor        # [B, K, g, g] smoothed assignment maps (the concept maps)
    scores: torch.Tensor      # [B, K] spatial max of maps
    logits: torch.Tensor      # [B, C] = scores @ W.T


class ProtoHead(nn.Module):
    """The student head: encoder (projector + prototypes), smoother, non-negative classifier."""

    def clamp_(self) -> None:
        """Project the constrained weights (smoothing kernels, classifier) back onto >= 0."""
        self.smoother.clamp_()
        self.classifier.clamp_()

    def __init__(self, dim: int, num_classes: int, proj_dim: int = 512, hidden_dim: int | None = None,
                 num_prototypes: int = 300, temperature: float = 0.1):
        super().__init__()
        self.temperature = float(temperature)
        self.encoder = Encoder(dim, proj_dim, hidden_dim, num_prototypes)
        self.smoother = Smoother(num_prototypes)
        self.classifier = NonNegClassifier(num_prototypes, num_classes)

    def forward(self, patch: torch.Tensor) -> HeadOutput:
        z, a = self.encoder(patch, self.temperature)
        maps = self.smoother(a.permute(0, 3, 1, 2))
        scores = maps.amax(dim=(2, 3))
        return HeadOutput(z=z, assignment=a, maps=maps, scores=scores, logits=self.classifier(scores))


def count_parameters(module: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad)
