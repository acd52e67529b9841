"""The cvxpy MILP of DINO-QPM stage 2 (SPEC 3.3) and its HiGHS MIP start.

Variables and constraints:

* ``s`` [N_f] boolean, ``sum s = n_select``;
* ``y`` [N_f, C], ``y <= s`` per row, ``sum_j y_jc = n_per_class``;
* ``z_p`` in [0, 1] (continuous) for each penalised pair ``p = (i, j)``
  (``R_ij >= tau``), ``z_p >= s_i + s_j - 1``. The objective penalises z, so
  ``z_p = s_i s_j`` at an optimum and no upper linking rows are needed;
* objective: maximise ``scale * sum(A * y) - sum_p R~_p z_p``;
* no-good cuts ``sum_{j in F} y_jc + sum_{j in F} y_jc' <= 2 n_per_class - 1``
  added lazily by `qp_solve` for classes ``c, c'`` found sharing a set F.

Two exact strengthenings (same integer optimum, tighter or smaller model):

* ``assignment="relaxed"`` (default): ``y`` is continuous in [0, 1] except
  for classes that appear in a no-good cut, which stay binary. For a fixed
  binary ``s`` the per-class system ``y_c <= s, sum y_c = k, 0 <= y_c <= 1``
  is totally unimodular (a transportation system), so it has integral
  optimal vertices: the MILP keeps its optimum value while the solver
  branches on N_f binaries instead of N_f * (C + 1). The assignment read
  back for those classes is the top ``n_per_class`` of A among the selected
  features (`qp_greedy.best_assignment`), which is optimal for that ``s``.
  ``assignment="binary"`` is the SPEC's literal all-binary ``y``.
* ``triangles=True`` (default): for every triangle ``a, b, c`` of pairwise
  penalised features, ``z_ab + z_ac + z_bc >= s_a + s_b + s_c - 1`` (valid:
  m selected features of a triangle make at least m - 1 penalised pairs).
  The McCormick rows alone allow ``s = 1/2`` on many features at zero
  penalty; these rows remove part of that slack from the LP bound. At most
  ``max_triangles`` are added (those of largest total weight first).

And one bound-preserving relaxation, to shrink the LP:

* ``candidates=T``: a class without cuts gets assignment variables only for
  its T best features by A, plus a slack ``o_c`` in [0, k] worth A of its
  (T+1)-th best feature and not linked to ``s``. Any real assignment maps
  onto this with no loss of value, so the solver's bound stays valid; the
  assignment read back is the exact top-k given ``s``, scored exactly. With
  T >= N_f (or None) the model is exact. At CUB scale (512 x 200) T = 128
  leaves the root LP bound unchanged and the LP about 3x cheaper.
"""
from __future__ import annotations

from typing import Any

import cvxpy as cp
import numpy as np
import scipy.sparse as sp

from .qp_greedy import best_assignment
from .qp_problem import QPProblem

__all__ = ["QPModel", "penalty_triangles", "highs_with_start", "ASSIGNMENTS"]

ASSIGNMENTS = ("relaxed", "binary")


def penalty_triangles(problem: QPProblem, max_triangles: int = 100_000) -> np.ndarray:
    """[T, 6] int: ``(a, b, c, p_ab, p_ac, p_bc)`` for triangles a < b < c of
    penalised pairs (feature ids then pair indices), the heaviest first."""
    n, P = problem.n_features, problem.pairs
    if len(P) < 3:
        return np.zeros((0, 6), dtype=np.int64)
    index = -np.ones((n, n), dtype=np.int64)
    index[P[:, 0], P[:, 1]] = np.arange(len(P))
    adj = np.zeros((n, n), dtype=bool)
    adj[P[:, 0], P[:, 1]] = True  # upper triangle only: a < b
    rows: list[np.ndarray] = []
    for a, b in P:
        cs = np.flatnonzero(adj[a] & adj[b])  # c > b, since adj[b] is upper
        if len(cs):
            rows.append(np.column_stack([np.full(len(cs), a), np.full(len(cs), b), cs,
                                         np.full(len(cs), index[a, b]), index[a, cs], index[b, cs]]))
    if not rows:
        return np.zeros((0, 6), dtype=np.int64)
    tri = np.concatenate(rows).astype(np.int64)
    weight = problem.pair_weights[tri[:, 3:]].sum(axis=1)
    return tri[np.argsort(-weight, kind="stable")[:max_triangles]]


class QPModel:
    """Builds the cvxpy problem; re-built per solve round (cvxpy problems are
    immutable, and the set of binary classes grows with the cuts).

    The assignment is stored per *edge* ``(j, c)``: a free class (relaxed
    mode, no cut) has edges to its ``candidates`` best features by A (all
    features when ``candidates`` is None) plus a slack ``o_c`` in [0, k]
    worth ``A`` of its best non-candidate feature, with no link to ``s``.
    That is a relaxation (any feature outside the list is worth at most that
    much), so the solver's bound stays valid; the returned assignment is the
    exact top-k given ``s`` and is scored exactly. A binary class (binary
    mode, or a class in a cut) has edges to every feature and no slack.
    """

    def __init__(self, problem: QPProblem, assignment: str = "relaxed", triangles: bool = True,
                 candidates: int | None = None, max_triangles: int = 100_000) -> None:
        if assignment not in ASSIGNMENTS:
            raise ValueError(f"assignment must be one of {ASSIGNMENTS}; got {assignment!r}")
        self.problem = problem
        self.assignment = assignment
        self.triangles = penalty_triangles(problem, max_triangles) if triangles else np.zeros((0, 6), np.int64)
        n = problem.n_features
        self.candidates = n if candidates is None else int(min(max(candidates, problem.n_per_class), n))
        self._rank = np.argsort(-problem.A, axis=0, kind="stable")  # [N_f, C] per-class order
        self.binary_classes: set[int] = set(range(problem.n_classes)) if assignment == "binary" else set()
        self._cuts: list[tuple[np.ndarray, int, int]] = []
        self.s: cp.Variable
        self.z: cp.Variable | None = None
        self._parts: list[tuple[cp.Variable, np.ndarray, np.ndarray]] = []  # (var, feature ids, class ids)
        self._slack: tuple[cp.Variable, np.ndarray] | None = None

    @property
    def n_cuts(self) -> int:
        return len(self._cuts)

    def add_cut(self, feats: np.ndarray, c1: int, c2: int) -> None:
        """Forbid classes c1 and c2 to both have exactly the feature set ``feats``."""
        self._cuts.append((np.asarray(feats, dtype=np.int64), int(c1), int(c2)))
        self.binary_classes.update((int(c1), int(c2)))

    def _edges(self, classes: list[int], width: int) -> tuple[np.ndarray, np.ndarray]:
        j = self._rank[:width][:, classes].T.ravel()  # class-major
        c = np.repeat(np.asarray(classes, dtype=np.int64), width)
        return j.astype(np.int64), c

    def build(self) -> cp.Problem:
        """A fresh cvxpy problem with the current cuts and binary classes."""
        pb = self.problem
        N, C, k = pb.n_features, pb.n_classes, pb.n_per_class
        self.s = s = cp.Variable(N, boolean=True, name="s")
        cons: list[cp.Constraint] = [cp.sum(s) == pb.n_select]
        binary = sorted(self.binary_classes)
        free = sorted(set(range(C)) - self.binary_classes)
        self._parts, self._slack = [], None
        per_class: cp.Expression = 0
        expr: cp.Expression = 0
        for classes, width, is_bool in ((free, self.candidates, False), (binary, N, True)):
            if not classes:
                continue
            jj, cc = self._edges(classes, width)
            var = (cp.Variable(len(jj), boolean=True, name="y_bin") if is_bool
                   else cp.Variable(len(jj), bounds=[0, 1], name="y"))
            self._parts.append((var, jj, cc))
            incidence = sp.csr_matrix((np.ones(len(jj)), (cc, np.arange(len(jj)))), shape=(C, len(jj)))
            per_class = per_class + incidence @ var
            cons.append(var <= s[jj])
            expr = expr + pb.scale * (pb.A[jj, cc] @ var)
        if free and self.candidates < N:
            o = cp.Variable(len(free), bounds=[0, k], name="o")
            worth = pb.A[self._rank[self.candidates, free], free]  # best non-candidate value
            self._slack = (o, np.asarray(free, dtype=np.int64))
            onto = sp.csr_matrix((np.ones(len(free)), (free, np.arange(len(free)))), shape=(C, len(free)))
            per_class = per_class + onto @ o
            expr = expr + pb.scale * (worth @ o)
        cons.append(per_class == k)
        self.z = None
        if len(pb.pairs):
            self.z = z = cp.Variable(len(pb.pairs), bounds=[0, 1], name="z")
            cons.append(z >= s[pb.pairs[:, 0]] + s[pb.pairs[:, 1]] - 1)
            T = self.triangles
            if len(T):
                cons.append(z[T[:, 3]] + z[T[:, 4]] + z[T[:, 5]] >= s[T[:, 0]] + s[T[:, 1]] + s[T[:, 2]] - 1)
            expr = expr - pb.pair_weights @ z
        if self._cuts:
            var, jj, cc = self._parts[-1]  # cut classes are binary: the last part
            pos = {(int(a), int(b)): e for e, (a, b) in enumerate(zip(jj, cc))}
            for feats, c1, c2 in self._cuts:
                idx = [pos[(int(f), c)] for c in (c1, c2) for f in feats]
                cons.append(cp.sum(var[idx]) <= 2 * k - 1)
        return cp.Problem(cp.Maximize(expr), cons)

    def set_start(self, selected: np.ndarray, Y: np.ndarray) -> None:
        """Give every variable of the last `build` the value of a solution."""
        pb = self.problem
        s = np.zeros(pb.n_features)
        s[selected] = 1.0
        self.s.value = s
        covered = np.zeros(pb.n_classes)
        for var, jj, cc in self._parts:
            vals = Y[jj, cc].astype(float)
            var.value = vals
            np.add.at(covered, cc, vals)
        if self._slack is not None:
            o, free = self._slack
            o.value = pb.n_per_class - covered[free]  # top-k features outside the candidate list
        if self.z is not None:
            self.z.value = s[pb.pairs[:, 0]] * s[pb.pairs[:, 1]]

    def extract(self) -> tuple[np.ndarray, np.ndarray]:
        """(sorted selection, [N_f, C] bool assignment) of the last solve: the
        binary classes' edges as solved, every other class the top-k of A
        among the selected features (optimal for that selection)."""
        pb = self.problem
        sel = np.flatnonzero(np.asarray(self.s.value) > 0.5)
        Y = best_assignment(pb, sel)
        binary = sorted(self.binary_classes)
        if binary:
            var, jj, cc = self._parts[-1]
            Y[:, binary] = False
            on = np.asarray(var.value) > 0.5
            Y[jj[on], cc[on]] = True
        return sel, Y


_HIGHS_CLASS: type | None = None


def highs_with_start() -> Any:
    """A cvxpy custom solver: cvxpy's own HiGHS interface, plus a MIP start
    built from the variables' ``.value`` and handed to ``Highs.setSolution``.

    cvxpy (1.9) ignores ``Variable.value`` for HiGHS; its interface only
    re-uses a cached previous result of the same problem, through
    ``setSolution``. We put our start where it looks for that result. HiGHS
    checks the start ("MIP start solution is feasible" in its log) and uses
    it as the first incumbent. When some variable has no value, no start is
    passed.
    """
    global _HIGHS_CLASS
    if _HIGHS_CLASS is None:
        import highspy
        from cvxpy.reductions.solvers.conic_solvers.highs_conif import HIGHS

        class HighsMipStart(HIGHS):  # type: ignore[misc,valid-type]
            start_passed = False  # set per solve: was a complete start handed over?

            def name(self) -> str:
                return "XBENCH_HIGHS_MIPSTART"

            def apply(self, problem: Any) -> tuple[dict, dict]:
                data, inv = super().apply(problem)
                start = np.full(problem.x.size, np.nan)
                for var in problem.variables:
                    if var.value is None:
                        break
                    col = problem.var_id_to_col[var.id]
                    start[col:col + var.size] = np.asarray(var.value, dtype=float).flatten(order="F")
                data["xbench_start"] = None if np.isnan(start).any() else start
                return data, inv

            def solve_via_data(self, data, warm_start, verbose, solver_opts, solver_cache=None):  # noqa: ANN001
                start = data.get("xbench_start")
                self.start_passed = start is not None
                if start is not None:
                    sol = highspy.HighsSolution()
                    sol.col_value = start.tolist()
                    solver_cache = {self.name(): (None, None, {"model_status": "kOptimal", "solution": sol})}
                    warm_start = True
                return super().solve_via_data(data, warm_start, verbose, solver_opts, solver_cache)

        _HIGHS_CLASS = HighsMipStart
    return _HIGHS_CLASS()
