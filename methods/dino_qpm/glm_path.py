"""A sparse GLM path in torch: elastic-net multinomial logistic regression from lambda_max down (glm-saga style).

Used by `dino-sldd` and `dino-qsenn` to select features and assign them to
classes (the role DINO-QPM's quadratic program plays). For standardised
features X [N, K], labels y [N] of C classes, weights W [C, K] and an
unpenalised bias b [C], the objective at regularisation lambda is

    L(W, b) = mean_n CE(W x_n + b, y_n) + lambda (alpha ||W||_1 + (1 - alpha) / 2 ||W||_2^2)

(the elastic net of glm-saga; alpha = 1 is the lasso). It is minimised by
proximal gradient descent, full batch: a gradient step on the cross-entropy,
then the proximal map of the penalty (accelerated: FISTA with the adaptive
restart of O'Donoghue and Candes),

    prox(V) = soft_threshold(V, s lambda alpha) / (1 + s lambda (1 - alpha)),

with the fixed step s = 1 / Lip, Lip = 0.5 ||[X, 1]||_2^2 / N the Lipschitz
constant of the cross-entropy's gradient (the softmax Hessian is at most 1/2).
The path runs over lambda_k = lambda_max * eps^(k / (n_lambdas - 1)), each
point warm-started from the previous one. lambda_max is the smallest lambda at
which W = 0 is optimal: with b at the class log-priors, the gradient of the
cross-entropy at W = 0 is (pi - Y)^T X / N, so lambda_max = max |that| / alpha.

Where glm-saga is silent or different (ours): full-batch proximal gradient
instead of SAGA (the inputs are the pooled features of one training set, which
fit in memory); a point stops after `max_iter` steps or when no weight moves by
more than `tol` times the largest weight.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

__all__ = ["GLMPoint", "lambda_max", "prox_elastic_net", "fit_glm", "glm_path", "entry_order", "top_k_per_class"]


@dataclass
class GLMPoint:
    lam: float
    weight: torch.Tensor     # [C, K]
    bias: torch.Tensor       # [C]
    iterations: int

    @property
    def active(self) -> torch.Tensor:
        """[K] bool: features with a non-zero weight for some class."""
        return (self.weight != 0).any(dim=0)

    @property
    def n_active(self) -> int:
        return int(self.active.sum())


def _onehot(y: torch.Tensor, C: int, dtype: torch.dtype) -> torch.Tensor:
    return torch.nn.functional.one_hot(y.long(), C).to(dtype)


def log_priors(y: torch.Tensor, C: int, dtype=torch.float64) -> torch.Tensor:
    counts = torch.bincount(y.long(), minlength=C).to(dtype)
    return torch.log(counts.clamp_min(1e-12) / counts.sum())


def lambda_max(X: torch.Tensor, y: torch.Tensor, C: int, alpha: float) -> float:
    """The smallest lambda at which W = 0 (with b = log class priors) is optimal."""
    Y = _onehot(y, C, X.dtype)
    pi = Y.mean(dim=0)
    grad = (pi[None] - Y).T @ X / X.shape[0]                         # [C, K]
    return float(grad.abs().max()) / alpha


def prox_elastic_net(V: torch.Tensor, step: float, lam: float, alpha: float) -> torch.Tensor:
    """Proximal map of step * lam * (alpha |.|_1 + (1 - alpha)/2 |.|_2^2) at V."""
    shrunk = torch.sign(V) * (V.abs() - step * lam * alpha).clamp_min(0.0)
    return shrunk / (1.0 + step * lam * (1.0 - alpha))


def lipschitz(X: torch.Tensor) -> float:
    Xa = torch.cat([X, torch.ones(X.shape[0], 1, dtype=X.dtype, device=X.device)], dim=1)
    return 0.5 * float(torch.linalg.matrix_norm(Xa, ord=2)) ** 2 / X.shape[0]


def fit_glm(X: torch.Tensor, y: torch.Tensor, C: int, lam: float, alpha: float, W0: torch.Tensor | None = None,
            b0: torch.Tensor | None = None, step: float | None = None, max_iter: int = 500, tol: float = 1e-6,
            mask: torch.Tensor | None = None) -> GLMPoint:
    """Minimise the elastic-net objective at `lam` by proximal gradient (module docstring).

    `mask` [C, K] (bool) keeps the weights outside it at zero (a fixed sparsity pattern).
    """
    N, K = X.shape
    W = torch.zeros(C, K, dtype=X.dtype) if W0 is None else W0.clone().to(X.dtype)
    b = log_priors(y, C, X.dtype) if b0 is None else b0.clone().to(X.dtype)
    if mask is not None:
        W = W * mask
    s = 1.0 / lipschitz(X) if step is None else step
    Y = _onehot(y, C, X.dtype)
    Zw, Zb, t = W, b, 1.0          # FISTA's extrapolated point
    it = 0
    for it in range(1, max_iter + 1):
        G = (torch.softmax(X @ Zw.T + Zb, dim=1) - Y) / N             # d mean CE / d logits at Z
        W_new = prox_elastic_net(Zw - s * (G.T @ X), s, lam, alpha)
        if mask is not None:
            W_new = W_new * mask
        b_new = Zb - s * G.sum(dim=0)
        dW, db = W_new - W, b_new - b
        moved = float(dW.abs().max()) if W.numel() else 0.0
        if float(((Zw - W_new) * dW).sum() + ((Zb - b_new) * db).sum()) > 0:   # adaptive restart
            t_new, Zw, Zb = 1.0, W_new, b_new
        else:
            t_new = (1.0 + (1.0 + 4.0 * t * t) ** 0.5) / 2.0
            Zw, Zb = W_new + ((t - 1.0) / t_new) * dW, b_new + ((t - 1.0) / t_new) * db
        W, b, t = W_new, b_new, t_new
        if moved <= tol * max(float(W.abs().max()) if W.numel() else 0.0, 1e-12):
            break
    return GLMPoint(lam=lam, weight=W, bias=b, iterations=it)


def glm_path(X: torch.Tensor, y: torch.Tensor, C: int, alpha: float = 0.99, n_lambdas: int = 100,
             eps: float = 1e-3, max_iter: int = 500, tol: float = 1e-6, stop_active: int | None = None) -> list[GLMPoint]:
    """The regularisation path from lambda_max down to eps * lambda_max (warm starts).

    With `stop_active`, the path stops at the first point with at least that many active features.
    """
    lmax = lambda_max(X, y, C, alpha)
    step = 1.0 / lipschitz(X)
    points: list[GLMPoint] = []
    W = b = None
    for lam in geometric_lambdas(lmax, eps, n_lambdas):
        pt = fit_glm(X, y, C, lam, alpha, W, b, step=step, max_iter=max_iter, tol=tol)
        points.append(pt)
        W, b = pt.weight, pt.bias
        if stop_active is not None and pt.n_active >= stop_active:
            break
    return points


def entry_order(points: list[GLMPoint]) -> torch.Tensor:
    """Features in the order they enter the path (ties: larger weight norm where they enter, then index).

    The first n of this order are the features of the last path point with at most n active features,
    completed by those that enter next.
    """
    K = points[0].weight.shape[1]
    first = torch.full((K,), len(points), dtype=torch.long)
    norm_at_entry = torch.zeros(K, dtype=torch.float64)
    for i, pt in enumerate(points):
        new = pt.active & (first == len(points))
        first[new] = i
        norm_at_entry[new] = torch.linalg.vector_norm(pt.weight[:, new].double(), dim=0)
    last = torch.linalg.vector_norm(points[-1].weight.double(), dim=0)
    keys = sorted(range(K), key=lambda j: (int(first[j]), -float(norm_at_entry[j]), -float(last[j]), j))
    return torch.as_tensor(keys, dtype=torch.long)


def top_k_per_class(W: torch.Tensor, k: int) -> torch.Tensor:
    """[C, K] bool mask of the k largest |W| per class (ties: lower feature index), zero weights excluded."""
    C, K = W.shape
    mask = torch.zeros(C, K, dtype=torch.bool)
    for c in range(C):
        order = sorted(range(K), key=lambda j: (-abs(float(W[c, j])), j))
        for j in order[:min(k, K)]:
            if float(W[c, j]) != 0.0:
                mask[c, j] = True
    return mask


def geometric_lambdas(lmax: float, eps: float, n: int) -> list[float]:
    return [lmax * eps ** (k / max(n - 1, 1)) for k in range(n)]

