"""DINO-QPM stage 2: the data of the feature selection / class assignment program.

SPEC 3.3. From training-set statistics of the dense model (pooled features
``f`` [N, N_f] >= 0, labels ``y`` [N] in 0..C-1) we build

* ``A`` [N_f, C]: Pearson correlation of feature ``f_j`` with the one-hot
  indicator of class ``c``, divided by ``max |A|``. A zero-variance feature or
  a class without (or with only) samples has correlation 0 (instead of 0/0).
* ``R`` [N_f, N_f]: cosine similarity of the rows of ``A`` (a zero row has
  similarity 0 with everything). Order of operations (the SPEC says "divided
  by max|R|, diagonal 0"): we first set the diagonal to 0 and then divide by
  the largest ``|R_ij|`` over the off-diagonal entries, so the off-diagonal
  range is exactly [-1, 1]. (The reference code divides first, when the
  diagonal's 1 dominates; the two agree unless two rows are parallel.)
* ``R~``: ``R`` min-max scaled to [0, 1] over its off-diagonal entries,
  ``(R - min) / (max - min)`` (all zeros when ``R`` is constant), diagonal 0.
* ``tau``: "the smallest threshold that still admits ``n_select`` features
  pairwise below it" — see `find_tau` for the heuristic.
* the penalised pairs ``i < j`` with ``R_ij >= tau`` and their weights
  ``R~_ij``; pairs below ``tau`` contribute nothing and get no variables.

This is ``penalty="spec"`` (the default). ``penalty="reference"`` builds A, R,
the threshold, the pairs and their weights as the DINO-QPM reference code does
(`qp_reference`, `qp_reference_threshold`); the program and its solvers are the
same.

The program (solved in `qp_solve`, heuristically in `qp_greedy`) is: choose
``s`` in {0,1}^N_f with ``sum s = n_select`` and a binary assignment ``y``
[N_f, C] with ``y <= s`` (per row), exactly ``n_per_class`` ones per class and
no two classes with the same feature set; maximise `objective`:

    (1000 / (n_per_class * C)) * sum(y * A)  -  sum_{i<j, R_ij >= tau} R~_ij s_i s_j
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from xbench.errors import ConfigError

__all__ = [
    "QPProblem",
    "build_problem",
    "problem_from_matrix",
    "feature_class_correlation",
    "row_cosine_similarity",
    "min_max_scale",
    "find_tau",
    "greedy_admits",
    "tau_candidates",
    "objective",
    "constraint_violations",
    "check_sizes",
    "check_penalty",
    "PENALTIES",
]

#: How the penalised pairs are built: SPEC 3.3's rule, or the reference code's (`qp_reference`).
PENALTIES = ("spec", "reference")


@dataclass(frozen=True, eq=False)
class QPProblem:
    """Everything the stage-2 program needs; built by `build_problem`.

    Attributes:
        A: [N_f, C] normalised feature-class correlation (max |A| = 1).
        R: [N_f, N_f] normalised row cosine similarity of A, diagonal 0.
        R_tilde: [N_f, N_f] min-max scaled R in [0, 1], diagonal 0.
        tau: penalty threshold on R (pairs with R_ij >= tau are penalised).
        pairs: [P, 2] int array of penalised pairs (i < j), row-major order.
        pair_weights: [P] R~ of those pairs.
        n_select: number of features to select (50 in the SPEC).
        n_per_class: features per class (5 in the SPEC).
        tau_set: the ``n_select`` features (sorted) the tau heuristic found
            pairwise below tau; a useful diverse starting set.
        penalty: "spec" or "reference" (how tau, the pairs and weights were built).
        search: the threshold search's diagnostics (``penalty="reference"``).
    """

    A: np.ndarray
    R: np.ndarray
    R_tilde: np.ndarray
    tau: float
    pairs: np.ndarray
    pair_weights: np.ndarray
    n_select: int
    n_per_class: int
    tau_set: np.ndarray
    penalty: str = "spec"
    search: dict = field(default_factory=dict)
    _penalty: np.ndarray = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        n = self.A.shape[0]
        W = np.zeros((n, n))
        if len(self.pairs):
            W[self.pairs[:, 0], self.pairs[:, 1]] = self.pair_weights
            W[self.pairs[:, 1], self.pairs[:, 0]] = self.pair_weights
        W.setflags(write=False)
        object.__setattr__(self, "_penalty", W)

    @property
    def n_features(self) -> int:
        return int(self.A.shape[0])

    @property
    def n_classes(self) -> int:
        return int(self.A.shape[1])

    @property
    def scale(self) -> float:
        """The weight 1000 / (n_per_class * C) of the assignment term."""
        return 1000.0 / (self.n_per_class * self.n_classes)

    @property
    def penalty_matrix(self) -> np.ndarray:
        """Symmetric [N_f, N_f]: R~_ij on penalised pairs, 0 elsewhere (read-only)."""
        return self._penalty

    def summary(self) -> dict[str, Any]:
        """Sizes, the penalty rule, tau and the number of penalised pairs, JSON-serialisable, for the job record
        (with ``penalty="reference"`` also the threshold search's diagnostics)."""
        out: dict[str, Any] = {
            "n_features": self.n_features,
            "n_classes": self.n_classes,
            "n_select": self.n_select,
            "n_per_class": self.n_per_class,
            "penalty": self.penalty,
            "tau": float(self.tau),
            "n_penalised_pairs": int(len(self.pairs)),
        }
        if self.search:
            out["threshold_search"] = dict(self.search)
        return out


# ---------------------------------------------------------------- statistics


def feature_class_correlation(features: np.ndarray, labels: np.ndarray, n_classes: int | None = None) -> np.ndarray:
    """Pearson correlation [N_f, C] of every feature with every class indicator.

    Population statistics (1/N); a zero-variance feature or class gives 0.
    """
    f = np.asarray(features, dtype=np.float64)
    y = np.asarray(labels).astype(np.int64).ravel()
    if f.ndim != 2 or f.shape[0] != y.shape[0]:
        raise ConfigError(f"features must be [N, N_f] with one label per row; got {f.shape} and {y.shape}")
    if f.shape[0] == 0:
        raise ConfigError("no training samples to compute the DINO-QPM statistics from")
    C = int(n_classes if n_classes is not None else y.max() + 1)
    if y.min() < 0 or y.max() >= C:
        raise ConfigError(f"labels must lie in 0..{C - 1}; got {y.min()}..{y.max()}")
    onehot = np.zeros((f.shape[0], C))
    onehot[np.arange(f.shape[0]), y] = 1.0
    fc = f - f.mean(axis=0)
    yc = onehot - onehot.mean(axis=0)
    cov = fc.T @ yc / f.shape[0]
    denom = np.outer(fc.std(axis=0), yc.std(axis=0))
    out = np.zeros_like(cov)
    ok = denom > 1e-12
    out[ok] = cov[ok] / denom[ok]
    return out


def row_cosine_similarity(A: np.ndarray) -> np.ndarray:
    """Cosine similarity of the rows of A, diagonal set to 0, then divided by
    the largest off-diagonal |value| (left as is when that is 0), rounded to
    12 decimals (float noise would otherwise split ties between candidates)."""
    norms = np.linalg.norm(A, axis=1)
    safe = np.where(norms > 0, norms, 1.0)
    U = A / safe[:, None]
    R = U @ U.T
    np.fill_diagonal(R, 0.0)
    m = np.abs(R).max() if R.size else 0.0
    R = R / m if m > 0 else R
    # Round off float noise so that equal similarities are equal tau candidates.
    return np.round(R, 12)


def min_max_scale(R: np.ndarray) -> np.ndarray:
    """Off-diagonal min-max scaling to [0, 1]; diagonal 0; all 0 if constant."""
    n = R.shape[0]
    off = ~np.eye(n, dtype=bool)
    if n < 2:
        return np.zeros_like(R)
    lo, hi = R[off].min(), R[off].max()
    out = (R - lo) / (hi - lo) if hi > lo else np.zeros_like(R)
    np.fill_diagonal(out, 0.0)
    return out


# ---------------------------------------------------------------------- tau


def tau_candidates(R: np.ndarray) -> np.ndarray:
    """Sorted candidate thresholds: the distinct upper-triangle values of R,
    plus one value just above the largest (which admits every set)."""
    n = R.shape[0]
    vals = np.unique(R[np.triu_indices(n, k=1)]) if n > 1 else np.zeros(1)
    return np.append(vals, np.nextafter(vals[-1], np.inf))


def _priority(A: np.ndarray) -> np.ndarray:
    """Features by their best A (max over classes), descending; ties by index."""
    return np.argsort(-A.max(axis=1), kind="stable")


def greedy_admits(R: np.ndarray, order: np.ndarray, tau: float, n_select: int) -> np.ndarray | None:
    """Greedy maximal-independent-set check.

    Walk the features in ``order``; take one if its R with every feature taken
    so far is < tau. Returns the first ``n_select`` taken (sorted) or None.
    """
    blocked = np.zeros(R.shape[0], dtype=bool)
    taken: list[int] = []
    for j in order:
        if blocked[j]:
            continue
        taken.append(int(j))
        if len(taken) == n_select:
            return np.sort(np.asarray(taken, dtype=np.int64))
        blocked |= R[j] >= tau
    return None


def find_tau(R: np.ndarray, A: np.ndarray, n_select: int) -> tuple[float, np.ndarray]:
    """The tau heuristic: smallest candidate threshold at which `greedy_admits`
    (features ordered by their best A) finds ``n_select`` features pairwise
    below it.

    Candidates are `tau_candidates(R)`. The search is a binary search; the
    greedy check is not guaranteed to be monotone in tau, so what is
    guaranteed is: the check succeeds at the returned tau and fails at the
    next smaller candidate (it succeeds at the largest candidate by
    construction, and with ``n_select <= 1`` at the smallest). Returns
    ``(tau, admitted features)``.
    """
    cands = tau_candidates(R)
    order = _priority(A)
    hi = len(cands) - 1
    best = greedy_admits(R, order, float(cands[hi]), n_select)
    assert best is not None  # every pair is below the last candidate
    lo = -1  # virtual candidate at which the check fails
    while hi - lo > 1:
        mid = (lo + hi) // 2
        found = greedy_admits(R, order, float(cands[mid]), n_select)
        if found is None:
            lo = mid
        else:
            hi, best = mid, found
    return float(cands[hi]), best


# ------------------------------------------------------------------ building


def check_sizes(n_features: int, n_classes: int, n_select: int, n_per_class: int) -> None:
    """Raise ConfigError when no feasible selection / assignment exists."""
    if n_classes < 1 or n_features < 1:
        raise ConfigError(f"DINO-QPM needs at least one feature and one class; got N_f={n_features}, C={n_classes}")
    if not 1 <= n_per_class <= n_select:
        raise ConfigError(f"n_per_class must be in 1..n_select={n_select}; got {n_per_class}")
    if n_select > n_features:
        raise ConfigError(f"n_select={n_select} exceeds the number of features N_f={n_features}; lower n_select")
    if math.comb(n_select, n_per_class) < n_classes:
        raise ConfigError(
            f"only C({n_select},{n_per_class})={math.comb(n_select, n_per_class)} distinct feature sets for "
            f"{n_classes} classes; raise n_select or n_per_class"
        )


def check_penalty(penalty: str) -> str:
    """The penalty rule, or a one-line ConfigError naming the valid ones."""
    if penalty not in PENALTIES:
        raise ConfigError(f"dino-qpm.penalty={penalty!r}: use one of {', '.join(PENALTIES)}")
    return penalty


def problem_from_matrix(A: np.ndarray, n_select: int = 50, n_per_class: int = 5, penalty: str = "spec") -> QPProblem:
    """Build the program from a feature-class matrix A directly (benchmarks,
    tests). A is divided by max |A| (a no-op for an already normalised A).
    ``penalty="reference"``: `qp_reference.reference_problem_from_matrix`."""
    if check_penalty(penalty) == "reference":
        from .qp_reference import reference_problem_from_matrix

        return reference_problem_from_matrix(A, n_select, n_per_class)
    A = np.array(A, dtype=np.float64)
    if A.ndim != 2:
        raise ConfigError(f"A must be [N_f, C]; got shape {A.shape}")
    check_sizes(A.shape[0], A.shape[1], n_select, n_per_class)
    m = np.abs(A).max()
    if m > 0:
        A = A / m
    R = row_cosine_similarity(A)
    Rt = min_max_scale(R)
    tau, tau_set = find_tau(R, A, n_select)
    iu, ju = np.triu_indices(A.shape[0], k=1)
    keep = R[iu, ju] >= tau
    pairs = np.stack([iu[keep], ju[keep]], axis=1).astype(np.int64)
    for arr in (A, R, Rt):
        arr.setflags(write=False)
    return QPProblem(
        A=A, R=R, R_tilde=Rt, tau=tau, pairs=pairs, pair_weights=Rt[pairs[:, 0], pairs[:, 1]],
        n_select=n_select, n_per_class=n_per_class, tau_set=tau_set,
    )


def build_problem(
    features: np.ndarray, labels: np.ndarray, n_select: int = 50, n_per_class: int = 5, n_classes: int | None = None,
    penalty: str = "spec",
) -> QPProblem:
    """A, R, R~, tau and the penalised pairs from pooled training features.

    Args:
        features: [N, N_f] pooled features of the dense model (>= 0).
        labels: [N] class indices.
        n_select: features to select (SPEC: 50).
        n_per_class: features per class (SPEC: 5).
        n_classes: C, when some classes may be absent from ``labels``.
        penalty: "spec" (SPEC 3.3's rule, this module) or "reference" (the
            reference code's construction, `qp_reference.build_reference_problem`,
            which uses the features' own dtype as the reference does).
    """
    if check_penalty(penalty) == "reference":
        from .qp_reference import build_reference_problem

        return build_reference_problem(features, labels, n_select, n_per_class, n_classes)
    return problem_from_matrix(feature_class_correlation(features, labels, n_classes), n_select, n_per_class)


# ----------------------------------------------------------------- objective


def _as_mask(problem: QPProblem, s: np.ndarray) -> np.ndarray:
    s = np.asarray(s)
    if s.dtype == bool:
        return s.copy()
    if s.shape == (problem.n_features,) and np.isin(s, (0, 1)).all():
        return s > 0.5
    mask = np.zeros(problem.n_features, dtype=bool)  # an index list
    mask[s.astype(np.int64)] = True
    return mask


def _full_assignment(problem: QPProblem, s_mask: np.ndarray, y: np.ndarray) -> np.ndarray:
    y = np.asarray(y)
    if y.shape == (problem.n_features, problem.n_classes):
        return y > 0.5
    if y.shape == (int(s_mask.sum()), problem.n_classes):  # rows of the selected features
        full = np.zeros((problem.n_features, problem.n_classes), dtype=bool)
        full[np.flatnonzero(s_mask)] = y > 0.5
        return full
    raise ValueError(f"assignment must be [N_f, C] or [n_selected, C]; got {y.shape}")


def objective(problem: QPProblem, s: np.ndarray, y: np.ndarray) -> float:
    """The stage-2 objective; every solution path is scored with this.

    Args:
        s: selection as a 0/1 or bool vector [N_f], or an index list.
        y: assignment [N_f, C], or [n_selected, C] rows of the selected
            features in increasing index order.
    """
    mask = _as_mask(problem, s)
    Y = _full_assignment(problem, mask, y)
    gain = problem.scale * float(problem.A[Y].sum())
    idx = np.flatnonzero(mask)
    penalty = 0.5 * float(problem.penalty_matrix[np.ix_(idx, idx)].sum())
    return gain - penalty


def constraint_violations(problem: QPProblem, s: np.ndarray, y: np.ndarray) -> list[str]:
    """Human-readable list of violated constraints (empty when feasible)."""
    mask = _as_mask(problem, s)
    Y = _full_assignment(problem, mask, y)
    out: list[str] = []
    if int(mask.sum()) != problem.n_select:
        out.append(f"{int(mask.sum())} features selected, want {problem.n_select}")
    per_class = Y.sum(axis=0)
    bad = np.flatnonzero(per_class != problem.n_per_class)
    if len(bad):
        out.append(f"classes {bad.tolist()[:10]} have {per_class[bad].tolist()[:10]} features, want {problem.n_per_class}")
    off = np.flatnonzero(Y.any(axis=1) & ~mask)
    if len(off):
        out.append(f"features {off.tolist()[:10]} assigned but not selected")
    seen: dict[bytes, int] = {}
    for c in range(problem.n_classes):
        key = np.flatnonzero(Y[:, c]).tobytes()
        if key in seen:
            out.append(f"classes {seen[key]} and {c} have the same feature set")
        else:
            seen[key] = c
    return out
