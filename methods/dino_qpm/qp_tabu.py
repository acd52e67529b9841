"""Tabu search over selections for DINO-QPM stage 2 (a stronger heuristic than 1-swap descent).

The program reduces to choosing the selection ``S`` (`qp_greedy`: given S,
each class takes its ``n_per_class`` best selected features). Tabu search
moves, every iteration, along the best swap of one selected feature ``i`` for
one unselected ``j`` *even when it worsens the objective*, and forbids undoing
it for a few iterations (``j`` may not leave, ``i`` may not come back), unless
the move gives a new best (aspiration). After ``restart_after`` iterations
without a new best it restarts from the best selection with a random
multi-swap. That walks out of the 1-swap local optima where the descent of
`qp_greedy.local_search` stops.

All swaps are scored exactly in one vectorised pass. With per-class
``kth_c`` (k-th best selected value) and ``nxt_c`` ((k+1)-th), and ``T_i`` the
classes whose top k contain ``i``:

    delta(i, j) = scale * ( sum_c max(A_jc - thr_c(i), 0) - sum_{c in T_i} (A_ic - nxt_c) )
                  - (pen_j - W_ij) + pen_i,

    thr_c(i) = nxt_c if c in T_i else kth_c,   pen_x = sum_{s in S} W_xs,

and the first sum is ``base_j + sum_{c in T_i} (max(A_jc - nxt_c, 0) - max(A_jc - kth_c, 0))``:
one [unselected x C] and one [unselected x k*C] array operation per
iteration. The objective here is the duplicate-relaxed one; `qp_greedy`
repairs duplicates afterwards. Deterministic given ``seed``.
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from .qp_problem import QPProblem

__all__ = ["TabuResult", "tabu_search", "swap_deltas", "relaxed_value"]


@dataclass(frozen=True)
class TabuResult:
    selected: np.ndarray   # sorted feature ids of the best selection found
    value: float           # its duplicate-relaxed objective
    iterations: int
    improvements: int      # times the best was improved


def relaxed_value(problem: QPProblem, selected: np.ndarray) -> float:
    """Objective of a selection with each class's top ``n_per_class`` (duplicates allowed)."""
    sel = np.asarray(selected, dtype=np.int64)
    k = problem.n_per_class
    top = -np.partition(-problem.A[sel], k - 1, axis=0)[:k]
    W = problem.penalty_matrix
    return float(problem.scale * top.sum() - W[np.ix_(sel, sel)].sum() / 2.0)


def _state(A: np.ndarray, sel: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per class: (positions in ``sel`` of its top k [k, C], k-th best value [C], (k+1)-th best [C])."""
    vals = A[sel]                                            # [n, C]
    order = np.argpartition(-vals, k, axis=0)[: k + 1]       # top k+1 positions, unordered
    part = np.take_along_axis(vals, order, axis=0)
    rank = np.argsort(-part, axis=0, kind="stable")
    order = np.take_along_axis(order, rank, axis=0)
    part = np.take_along_axis(part, rank, axis=0)
    return order[:k], part[k - 1], part[k]


def swap_deltas(problem: QPProblem, sel: np.ndarray, pen: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(unselected feature ids [m], [len(sel), m] change of the relaxed objective when ``sel[a]`` is
    swapped for ``out[b]``), all pairs in one pass (module docstring). ``pen``: penalty of every feature
    with ``sel`` (computed when not given)."""
    A, W = problem.A, problem.penalty_matrix
    k, C = problem.n_per_class, problem.n_classes
    sel = np.asarray(sel, dtype=np.int64)
    if pen is None:
        pen = W[:, sel].sum(axis=1)
    inside = np.zeros(problem.n_features, dtype=bool)
    inside[sel] = True
    out = np.flatnonzero(~inside)
    top, kth, nxt = _state(A, sel, k)
    A_out = A[out]                                                        # [m, C]
    base = np.maximum(A_out - kth, 0.0).sum(axis=1)                       # [m]
    # the (i, c) pairs with i in class c's top k, grouped by i (its position in sel)
    pos, c_of = top.ravel(), np.tile(np.arange(C), k)
    order = np.argsort(pos, kind="stable")
    pos, c_of = pos[order], c_of[order]
    cols = A_out[:, c_of]                                                 # [m, k*C]
    diff = np.maximum(cols - nxt[c_of], 0.0) - np.maximum(cols - kth[c_of], 0.0)
    starts = np.flatnonzero(np.r_[True, pos[1:] != pos[:-1]])
    corr = np.zeros((len(sel), len(out)))
    corr[pos[starts]] = np.add.reduceat(diff, starts, axis=1).T           # [n, m]
    loss = np.zeros(len(sel))
    np.add.at(loss, pos, A[sel[pos], c_of] - nxt[c_of])
    delta = problem.scale * (base[None, :] + corr - loss[:, None]) \
        - (pen[out][None, :] - W[np.ix_(sel, out)]) + pen[sel][:, None]
    return out, delta


def tabu_search(problem: QPProblem, selected: np.ndarray, deadline: float | None = None, iterations: int = 20_000,
                seed: int = 0, tenure_in: int = 10, tenure_out: int = 4, restart_after: int = 400,
                kick: int = 4, patience: int | None = None) -> TabuResult:
    """Tabu search from ``selected`` until ``iterations``, ``patience`` iterations without a new best, or
    ``deadline`` (a ``time.perf_counter()`` value). ``patience`` defaults to a tenth of the number of
    swaps (at least 200): 2310 at CUB scale (50 of 512), 200 on small problems."""
    rng = np.random.default_rng(seed)
    W = problem.penalty_matrix
    n_f, k, scale = problem.n_features, problem.n_per_class, problem.scale
    sel = np.sort(np.asarray(selected, dtype=np.int64))
    if len(sel) <= k or len(sel) >= n_f:
        return TabuResult(sel, relaxed_value(problem, sel), 0, 0)
    if patience is None:
        patience = max(200, len(sel) * (n_f - len(sel)) // 10)
    value = relaxed_value(problem, sel)
    best_sel, best_val = sel.copy(), value
    pen = W[:, sel].sum(axis=1)                              # [N_f] penalty of each feature with S
    no_enter = np.zeros(n_f, dtype=np.int64)                 # iteration until which a feature may not enter
    no_leave = np.zeros(n_f, dtype=np.int64)
    it = improvements = stale = since_best = 0
    eps = 1e-9 * max(1.0, abs(scale))
    while it < iterations and since_best < patience and (deadline is None or time.perf_counter() < deadline):
        it += 1
        out, delta = swap_deltas(problem, sel, pen)
        allowed = (no_leave[sel][:, None] < it) & (no_enter[out][None, :] < it)
        allowed |= value + delta > best_val + eps                            # aspiration
        if not allowed.any():
            allowed[:] = True
        delta = np.where(allowed, delta, -np.inf)
        flat = int(np.argmax(delta))
        a, b = divmod(flat, len(out))
        i, j = int(sel[a]), int(out[b])
        value += float(delta[a, b])
        sel = np.sort(np.append(np.delete(sel, a), j))
        pen += W[:, j] - W[:, i]
        no_enter[i] = it + tenure_in + int(rng.integers(0, tenure_in // 2 + 1))
        no_leave[j] = it + tenure_out + int(rng.integers(0, tenure_out // 2 + 1))
        if value > best_val + eps:
            value = relaxed_value(problem, sel)                              # re-anchor against drift
            best_sel, best_val, stale, since_best = sel.copy(), value, 0, 0
            improvements += 1
        else:
            stale += 1
            since_best += 1
        if stale >= restart_after:
            outside = np.setdiff1d(np.arange(n_f), best_sel)
            size = min(kick, len(best_sel), len(outside))
            drop = rng.choice(len(best_sel), size, replace=False)
            sel = np.sort(np.concatenate([np.delete(best_sel, drop), rng.choice(outside, size, replace=False)]))
            value, pen, stale = relaxed_value(problem, sel), W[:, sel].sum(axis=1), 0
            no_enter[:] = 0
            no_leave[:] = 0
    return TabuResult(np.sort(best_sel), relaxed_value(problem, best_sel), it, improvements)
