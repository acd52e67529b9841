"""DINO-QPM stage 2 built as the reference code builds it (``--set dino-qpm.penalty=reference``).

xbench's default (``penalty=spec``, `qp_problem.problem_from_matrix`) follows
SPEC 3.3's words. The reference implementation (DINO-QPM repository:
``qpm_constants/compute_A.py``, ``compute_R.py``, ``qpm/qpm_solving.py``,
``qpm/clique_utils.py``) differs in ways that change which pairs are
penalised and by how much. This module rebuilds A, R, the threshold, the
penalised pairs and their weights the reference's way; the program is then
solved by xbench's solvers (HiGHS / greedy / tabu) under xbench's constraints
(exactly ``n_per_class`` features per class, distinct class sets), which is
where the reference's iterative constraints (class sparsity, de-duplication)
end up. Reference behaviours, and why each is kept:

* **A**: population Pearson correlation of every feature with every class
  indicator, per class ``(1/N) (F - mean F)^T (1[y = c] - mean 1[y = c])``
  over ``max(std(F - mean F) * std(indicator), 1e-10)``, on the features as
  given (the reference's cached features are float32, and so are the ones
  `method.DinoQPM` passes here); then divided by ``max |A|``. A constant
  feature or an absent class gives (numerically) 0 through the clip instead of
  SPEC's explicit 0. Same numbers as SPEC's A up to rounding; kept so that the
  bits agree.
* **R**: cosine similarity of the rows of A in torch float64, row norms
  floored at 1e-8, then divided by ``max |R|`` *with the diagonal still in
  it*, and only then the diagonal set to 0. The diagonal's 1 is then the
  maximum, so R keeps the raw cosines (SPEC's rule divides by the largest
  off-diagonal |R| instead, stretching them to [-1, 1]). No rounding.
* **Threshold**: `qp_reference_threshold.reference_threshold` (the search on
  R + R^T with the reference's grid and clique heuristics).
* **Pairs**: every ``i < j`` with ``R_ij >= threshold``. The threshold was found
  on R + R^T = 2R but is compared with R, so only pairs with R at least twice
  the "admissible" level t / 2 are penalised.
* **Weights**: ``(R_ij - m) / max_kl (R_kl - m)`` with ``m`` the smallest
  *non-zero* entry of R and the max over the whole matrix, diagonal zeros
  included (SPEC's R~ is min-max over the off-diagonal entries). The
  reference asserts that every penalised pair's weight is > 0; that failure
  is a `ConfigError` here.
* **MIP start**: the first ``n_select`` members of the search's clique, in the
  set's iteration order, as the reference's start (xbench uses it as the
  `QPProblem.tau_set` starting set of its heuristic).
"""
from __future__ import annotations

import numpy as np
import torch

from xbench.errors import ConfigError

from .qp_problem import QPProblem, check_sizes
from .qp_reference_threshold import reference_threshold

__all__ = [
    "reference_feature_class_correlation",
    "reference_similarity",
    "reference_pairs",
    "reference_weight_matrix",
    "reference_problem_from_matrix",
    "build_reference_problem",
]

A_CLIP = 1e-10   # the reference's floor on the correlation's denominator
NORM_EPS = 1e-8  # the reference's floor on row norms in the cosine similarity


def reference_feature_class_correlation(features: np.ndarray, labels: np.ndarray,
                                        n_classes: int | None = None) -> np.ndarray:
    """A [N_f, C] (not yet divided by max |A|) with the reference's operations, on ``features`` as given."""
    F = np.asarray(features)
    y = np.asarray(labels).astype(np.int64).ravel()
    if F.ndim != 2 or F.shape[0] != y.shape[0]:
        raise ConfigError(f"features must be [N, N_f] with one label per row; got {F.shape} and {y.shape}")
    if F.shape[0] == 0:
        raise ConfigError("no training samples to compute the DINO-QPM statistics from")
    C = int(n_classes if n_classes is not None else y.max() + 1)
    centred = F - F.mean(axis=0)
    spread = centred.std(axis=0)
    out = np.zeros((F.shape[1], C))
    for c in range(C):
        hit = y == c
        indicator = hit - hit.mean()
        numerator = (1 / len(y)) * (centred.T @ indicator)
        out[:, c] = numerator / np.clip(spread * indicator.std(), a_min=A_CLIP, a_max=None)
    return out


def reference_similarity(A: np.ndarray) -> np.ndarray:
    """R [N_f, N_f]: row cosines of A (torch float64), divided by max |R| with the diagonal in, then diagonal 0."""
    rows = torch.tensor(np.asarray(A))

    def unit(t: torch.Tensor) -> torch.Tensor:
        norms = t.norm(dim=1)[:, None]
        return t / torch.max(norms, NORM_EPS * torch.ones_like(norms))

    R = torch.mm(unit(rows), unit(rows).transpose(0, 1))
    R = R / R.abs().max()
    out = R.numpy().copy()
    np.fill_diagonal(out, 0.0)
    return out


def reference_pairs(R: np.ndarray, threshold: float) -> np.ndarray:
    """[P, 2] pairs i < j with ``R_ij >= threshold``, row-major (the threshold is on the R + R^T scale)."""
    iu, ju = np.triu_indices(R.shape[0], k=1)
    keep = R[iu, ju] >= threshold
    return np.stack([iu[keep], ju[keep]], axis=1).astype(np.int64)


def reference_weight_matrix(R: np.ndarray) -> np.ndarray:
    """``(R - m) / max(R - m)``, m the smallest non-zero entry of R, max over the whole matrix (diagonal in)."""
    nonzero = R[R != 0]
    if nonzero.size == 0:
        raise ConfigError("dino-qpm.penalty=reference: R has no non-zero entry, so the reference's pair weights "
                          "(R - min of the non-zero R) are undefined; use dino-qpm.penalty=spec")
    shifted = R - nonzero.min()
    return shifted / shifted.max()


def reference_problem_from_matrix(A: np.ndarray, n_select: int = 50, n_per_class: int = 5) -> QPProblem:
    """The stage-2 program from an un-normalised A, the reference's way (module docstring)."""
    A = np.array(A, dtype=np.float64)
    if A.ndim != 2:
        raise ConfigError(f"A must be [N_f, C]; got shape {A.shape}")
    check_sizes(A.shape[0], A.shape[1], n_select, n_per_class)
    top = np.abs(A).max()
    if not top > 0:
        raise ConfigError("dino-qpm.penalty=reference: A is all zero (no feature correlates with any class); "
                          "the reference would divide by zero")
    A = A / top
    R = reference_similarity(A)
    search = reference_threshold(R, n_select)
    W = reference_weight_matrix(R)
    pairs = reference_pairs(R, search.threshold)
    weights = W[pairs[:, 0], pairs[:, 1]]
    if len(weights) and not weights.min() > 0:
        raise ConfigError("dino-qpm.penalty=reference: a penalised pair has weight <= 0 (its R is the smallest "
                          "non-zero R), which the reference's assertion refuses; use dino-qpm.penalty=spec")
    for arr in (A, R, W):
        arr.setflags(write=False)
    return QPProblem(
        A=A, R=R, R_tilde=W, tau=search.threshold, pairs=pairs, pair_weights=weights, n_select=n_select,
        n_per_class=n_per_class, tau_set=search.start_set(n_select), penalty="reference",
        search=search.diagnostics,
    )


def build_reference_problem(features: np.ndarray, labels: np.ndarray, n_select: int = 50, n_per_class: int = 5,
                            n_classes: int | None = None) -> QPProblem:
    """`reference_problem_from_matrix` of `reference_feature_class_correlation` of pooled training features."""
    return reference_problem_from_matrix(reference_feature_class_correlation(features, labels, n_classes),
                                         n_select, n_per_class)
