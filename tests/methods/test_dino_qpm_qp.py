"""DINO-QPM stage 2 (SPEC 3.3): statistics, tau heuristic, MILP, greedy fallback."""
from __future__ import annotations

import itertools
import json
import math

import cvxpy as cp
import numpy as np
import pytest

from xbench.errors import ConfigError
from xbench.methods.dino_qpm import qp_solve
from xbench.methods.dino_qpm.qp_greedy import best_assignment, local_search, solve_greedy
from xbench.methods.dino_qpm.qp_problem import (
    build_problem,
    constraint_violations,
    find_tau,
    greedy_admits,
    objective,
    problem_from_matrix,
    tau_candidates,
)
from xbench.methods.dino_qpm.qp_solve import solve

# ------------------------------------------------------------------ helpers


def brute_force(problem) -> float:
    """Optimum by enumeration: every selection, every distinct assignment."""
    k, C = problem.n_per_class, problem.n_classes
    W = problem.penalty_matrix
    best = -math.inf
    for S in itertools.combinations(range(problem.n_features), problem.n_select):
        penalty = sum(W[i, j] for i, j in itertools.combinations(S, 2))
        subsets = list(itertools.combinations(S, k))
        values = np.array([[problem.A[list(F), c].sum() for F in subsets] for c in range(C)])
        for choice in itertools.permutations(range(len(subsets)), C):  # distinct sets
            gain = problem.scale * sum(values[c, f] for c, f in enumerate(choice))
            best = max(best, gain - penalty)
    return best


def random_problem(seed: int, n_features: int = 7, n_classes: int = 3, n_select: int = 4, n_per_class: int = 2):
    rng = np.random.default_rng(seed)
    return problem_from_matrix(rng.uniform(-1, 1, (n_features, n_classes)), n_select, n_per_class)


def assert_feasible(problem, sol) -> None:
    assert len(sol.selected) == problem.n_select
    assert np.all(np.diff(sol.selected) > 0)
    assert sol.assignment.shape == (problem.n_select, problem.n_classes)
    assert (sol.assignment.sum(axis=0) == problem.n_per_class).all()
    sets = {tuple(np.flatnonzero(col)) for col in sol.assignment.T}
    assert len(sets) == problem.n_classes  # all class sets distinct
    assert constraint_violations(problem, sol.selected, sol.assignment) == []
    assert objective(problem, sol.selected, sol.assignment) == pytest.approx(sol.objective)


# ------------------------------------------------------- A, R, R~ and tau


def test_statistics_match_hand_computation():
    # one sample per class: class indicators e_c have mean 1/3 and sd sqrt(2/9)
    features = np.array([[3.0, 0.0, 0.0, 5.0], [0.0, 1.0, 2.0, 5.0], [0.0, 2.0, 1.0, 5.0]])
    labels = np.array([0, 1, 2])
    p = build_problem(features, labels, n_select=3, n_per_class=1)
    r3 = math.sqrt(3) / 2
    # f0 = (3,0,0): cov with e_0 = 2/3, sd sqrt(2) -> corr 1; with e_1, e_2 -1/2
    # f1 = (0,1,2): cov -1/3, 0, 1/3, sd sqrt(2/3) -> -sqrt(3)/2, 0, sqrt(3)/2
    # f2 = (0,2,1): -sqrt(3)/2, sqrt(3)/2, 0;  f3 constant -> 0 (not 0/0)
    # max |A| = 1
    A = np.array([[1, -0.5, -0.5], [-r3, 0, r3], [-r3, r3, 0], [0, 0, 0]])
    np.testing.assert_allclose(p.A, A, atol=1e-12)
    # cosines: (0,1) and (0,2) -sqrt(3)/2, (1,2) 1/2, zero row 0; diagonal
    # 0, then divided by the largest off-diagonal |value| sqrt(3)/2
    R = np.zeros((4, 4))
    R[0, 1] = R[1, 0] = R[0, 2] = R[2, 0] = -1.0
    R[1, 2] = R[2, 1] = 1 / math.sqrt(3)
    np.testing.assert_allclose(p.R, R, atol=1e-12)
    # min-max over the off-diagonal entries (min -1, max 1/sqrt(3)), diagonal 0
    Rt = (R + 1.0) / (1 + 1 / math.sqrt(3))
    np.fill_diagonal(Rt, 0.0)
    np.testing.assert_allclose(p.R_tilde, Rt, atol=1e-12)
    # tau: candidates are -1, 0, 1/sqrt(3) and one just above. Greedy order by
    # best A: 0, 1, 2 (tie with 1, lower index first), 3. For 2 features: at
    # tau = -1 taking 0 blocks all others (R >= -1); at tau = 0 it blocks only
    # 3, then 1 is taken: {0, 1}.
    tau2, set2 = find_tau(p.R, p.A, 2)
    assert tau2 == 0.0
    np.testing.assert_array_equal(set2, [0, 1])
    # For 3 features (the problem): at tau = 0, 0 blocks 3 and 1 blocks 2 and
    # 3: only two. At tau = 1/sqrt(3), 0 blocks nothing, 1 blocks 2 (R_12 >=
    # tau), 3 is taken: {0, 1, 3}. The only penalised pair is (1, 2), R~ = 1.
    assert p.tau == pytest.approx(1 / math.sqrt(3))
    np.testing.assert_array_equal(p.tau_set, [0, 1, 3])
    assert p.pairs.tolist() == [[1, 2]]
    np.testing.assert_allclose(p.pair_weights, [1.0])
    # the pair rule once more: with tau = 0 the penalised pairs are R >= 0
    iu = np.triu_indices(4, 1)
    assert [(int(a), int(b)) for a, b in zip(*iu) if p.R[a, b] >= tau2] == [(0, 3), (1, 2), (1, 3), (2, 3)]


@pytest.mark.parametrize("seed", range(6))
def test_tau_is_the_smallest_admitting_candidate(seed):
    rng = np.random.default_rng(seed)
    A = rng.uniform(-1, 1, (30, 8))
    p = problem_from_matrix(A, n_select=8, n_per_class=2)
    sub = p.R[np.ix_(p.tau_set, p.tau_set)]
    assert len(p.tau_set) == 8
    assert (sub[~np.eye(8, dtype=bool)] < p.tau).all()  # admitted: pairwise below tau
    cands = tau_candidates(p.R)
    k = int(np.searchsorted(cands, p.tau))
    assert cands[k] == p.tau
    order = np.argsort(-p.A.max(axis=1), kind="stable")
    assert greedy_admits(p.R, order, cands[k], 8) is not None
    # no smaller candidate admits 8 features under the greedy check
    for t in cands[:k]:
        assert greedy_admits(p.R, order, t, 8) is None
    # pairs below tau are exactly the unpenalised ones
    iu = np.triu_indices(30, 1)
    assert len(p.pairs) == int((p.R[iu] >= p.tau).sum())
    tau2, _ = find_tau(p.R, p.A, 8)
    assert tau2 == p.tau


def test_impossible_sizes_raise():
    A = np.random.default_rng(0).uniform(-1, 1, (6, 4))
    with pytest.raises(ConfigError, match="exceeds"):
        problem_from_matrix(A, n_select=7, n_per_class=2)
    with pytest.raises(ConfigError, match="n_per_class"):
        problem_from_matrix(A, n_select=3, n_per_class=4)
    with pytest.raises(ConfigError, match="distinct"):
        problem_from_matrix(A, n_select=3, n_per_class=3)  # C(3,3)=1 < 4 classes


# --------------------------------------------------------- exact solutions


SOLVER_NAMES = ["highs"] + (["scip"] if "SCIP" in cp.installed_solvers() else [])


@pytest.mark.parametrize("solver", SOLVER_NAMES)
@pytest.mark.parametrize("seed", range(5))
def test_solver_matches_brute_force(seed, solver):
    p = random_problem(seed)
    assert len(p.pairs) > 0  # the penalty is active
    opt = brute_force(p)
    g = solve_greedy(p, kicks=5, seed=seed)
    assert g.objective <= opt + 1e-9
    assert objective(p, g.selected, g.assignment) == pytest.approx(g.objective)
    for mode, tri in (("relaxed", True), ("binary", False)):
        sol = solve(p, solver=solver, time_limit=30, mip_rel_gap=1e-9, assignment=mode, triangles=tri, seed=seed)
        assert not sol.fallback_used
        assert sol.status == "optimal"
        assert_feasible(p, sol)
        assert sol.objective == pytest.approx(opt, abs=1e-6)
        assert sol.solver_objective == pytest.approx(sol.objective, abs=1e-6)
        assert sol.bound >= sol.objective - 1e-9 and sol.gap <= 1e-6
        assert sol.greedy_objective <= sol.objective + 1e-9


@pytest.mark.parametrize("solver", SOLVER_NAMES)
def test_duplicate_class_sets_are_cut(solver):
    rng = np.random.default_rng(3)
    A = rng.uniform(-1, 1, (8, 3))
    A[:, 1] = A[:, 0]  # two identical classes: their best sets coincide
    p = problem_from_matrix(A, n_select=4, n_per_class=2)
    opt = brute_force(p)
    for mode in ("relaxed", "binary"):
        sol = solve(p, solver=solver, time_limit=30, mip_rel_gap=1e-9, assignment=mode, warm_start=False)
        assert sol.cuts > 0 and sol.rounds >= 2
        assert_feasible(p, sol)
        assert not np.array_equal(sol.assignment[:, 0], sol.assignment[:, 1])
        assert sol.objective == pytest.approx(opt, abs=1e-6)


def test_greedy_repairs_duplicates_and_is_locally_optimal():
    rng = np.random.default_rng(5)
    A = rng.uniform(-1, 1, (12, 4))
    A[:, 2] = A[:, 1]
    p = problem_from_matrix(A, n_select=5, n_per_class=2)
    g = solve_greedy(p, kicks=0)
    assert g.repaired_classes >= 1
    assert constraint_violations(p, g.selected, g.assignment) == []
    # the vectorised swap evaluation: no single swap improves the objective
    sel, _ = local_search(p, g.selected)
    base = objective(p, sel, best_assignment(p, sel))
    for i in sel:
        for j in np.setdiff1d(np.arange(12), sel):
            other = np.sort(np.append(sel[sel != i], j))
            assert objective(p, other, best_assignment(p, other)) <= base + 1e-9


# ------------------------------------------------------ fallback, records


def test_greedy_solver_is_a_recorded_fallback():
    p = random_problem(0)
    sol = solve(p, solver="greedy")
    assert sol.fallback_used and sol.solver == "greedy" and sol.status == "heuristic"
    assert "greedy" in sol.fallback_reason
    assert sol.bound is None and sol.gap is None
    assert_feasible(p, sol)
    rec = json.loads(json.dumps(sol.to_record()))
    assert rec["fallback_used"] is True and len(rec["assignment"]) == p.n_classes


def test_solver_failure_falls_back(monkeypatch):
    p = random_problem(1)

    def boom(*args, **kwargs):
        raise cp.error.SolverError("simulated HiGHS crash")

    monkeypatch.setattr(qp_solve, "_solve_built", boom)
    sol = solve(p)
    assert sol.fallback_used and "simulated HiGHS crash" in sol.fallback_reason
    assert_feasible(p, sol)

    monkeypatch.setattr(qp_solve, "_solve_built",
                        lambda *a, **k: qp_solve._Round("infeasible", None, None, None, None, False))
    sol = solve(p)
    assert sol.fallback_used and "no incumbent" in sol.fallback_reason

    monkeypatch.setattr(qp_solve, "_solver_installed", lambda name: False)
    sol = solve(p)
    assert sol.fallback_used and "not installed" in sol.fallback_reason


def test_record_and_mip_start():
    p = random_problem(2, n_features=9, n_select=5)
    sol = solve(p, time_limit=30)
    assert sol.mip_start  # the greedy start was handed to HiGHS in every round
    assert sol.solver_objective >= sol.greedy_objective - 1e-6
    rec = sol.to_record()
    json.dumps(rec)
    for key in ("objective", "bound", "gap", "solver", "status", "wall_time", "cuts", "fallback_used"):
        assert key in rec
    W = sol.class_feature_matrix()
    assert W.shape == (p.n_classes, p.n_select) and (W.sum(axis=1) == p.n_per_class).all()


def test_scip_missing_is_a_config_error():
    if "SCIP" in cp.installed_solvers():
        pytest.skip("PySCIPOpt is installed")
    with pytest.raises(ConfigError, match=r"pip install xbench\[scip\]"):
        solve(random_problem(0), solver="scip")


def test_unknown_solver_is_a_config_error():
    with pytest.raises(ConfigError, match="did you mean 'highs'"):
        solve(random_problem(0), solver="higs")


@pytest.mark.parametrize("seed", range(3))
def test_candidate_restriction_keeps_a_valid_bound(seed):
    p = random_problem(seed)
    opt = brute_force(p)
    sol = solve(p, time_limit=30, mip_rel_gap=1e-9, candidates=2, seed=seed)
    assert_feasible(p, sol)
    assert sol.objective <= opt + 1e-9
    assert sol.bound >= opt - 1e-6  # the slack only relaxes the program


@pytest.mark.parametrize("seed", range(2))
def test_node_limit_is_deterministic_and_ignores_the_clock(seed):
    """node_limit > 0: the rounds stop on branch-and-bound nodes, not seconds. A clock limit far too short to
    solve anything (1 ms) is then not applied: the small problem still reaches the brute-force optimum, and a
    larger one stopped after one node gives the same selection on every call."""
    p = random_problem(seed)
    sol = solve(p, time_limit=1e-3, mip_rel_gap=1e-9, seed=seed, node_limit=10_000)
    assert sol.status == "optimal" and sol.objective == pytest.approx(brute_force(p), abs=1e-6)
    big = random_problem(seed, n_features=30, n_classes=8, n_select=12, n_per_class=3)
    runs = [solve(big, time_limit=1e-3, seed=seed, node_limit=1, tabu_iterations=200) for _ in range(2)]
    assert runs[0].selected.tolist() == runs[1].selected.tolist()
    assert np.array_equal(runs[0].assignment, runs[1].assignment) and runs[0].objective == runs[1].objective
    assert_feasible(big, runs[0])
    assert runs[0].status in ("optimal", "limit")
