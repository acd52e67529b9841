"""Solve DINO-QPM stage 2 (SPEC 3.3): cvxpy MILP, HiGHS by default, SCIP optional.

The model is `qp_model.QPModel`. `solve` runs:

1. the greedy + local search + tabu search heuristic (`qp_greedy.solve_greedy`), which is
   both the fallback and the MILP's warm start (its class sets are distinct,
   so it satisfies every no-good cut);
2. the MILP under what is left of ``time_limit``, warm-started from the best
   solution known so far (HiGHS: through `qp_model.highs_with_start`; cvxpy
   passes no start to SCIP, and the record's ``mip_start`` says so);
3. lazy no-good cuts: if two classes ``c, c'`` of the solver's solution share
   a feature set F, add ``sum_{j in F} y_jc + sum_{j in F} y_jc' <= 2k - 1``
   (for every such pair) and solve again, at most ``max_cut_rounds`` times,
   all within the one time limit. If rounds or time run out with duplicates
   left, the duplicates are repaired (`qp_greedy.repair_duplicates`) and the
   record's ``source`` says "repair".

The best bound is HiGHS's ``mip_dual_bound`` read from cvxpy's
``problem.solver_stats.extra_stats`` (SCIP: ``Model.getDualbound()``), turned
to the maximisation sense; with cut rounds it is the smallest over the rounds,
each valid because the cuts only remove solutions with duplicate sets. The gap is
``(bound - objective) / |objective|`` with the objective from
`qp_problem.objective`. A bound below the objective (solver tolerance) is
reported as the objective.

The greedy solution is returned with ``fallback_used = True`` when
``solver="greedy"``, when HiGHS is not installed, or when the solver fails
or returns no incumbent. Asking for SCIP without PySCIPOpt raises a
`ConfigError` naming ``pip install xbench[scip]``.
"""
from __future__ import annotations

import math
import time
import warnings
from dataclasses import asdict, dataclass
from typing import Any

import cvxpy as cp
import numpy as np

from xbench.errors import ConfigError, unknown_name

from .qp_greedy import GreedyResult, duplicate_groups, repair_duplicates, solve_greedy
from .qp_model import QPModel, highs_with_start
from .qp_problem import QPProblem, constraint_violations, objective

__all__ = ["QPSolution", "solve", "SOLVERS"]

SOLVERS = ("highs", "scip", "greedy")


@dataclass(frozen=True)
class QPSolution:
    """Result of `solve`.

    Attributes:
        selected: sorted indices of the ``n_select`` selected features.
        assignment: bool [n_select, C]; row r belongs to feature ``selected[r]``.
        objective: `qp_problem.objective` of this solution.
        bound: best upper bound on the optimum (None without a solver bound).
        gap: (bound - objective) / |objective| (None without a bound).
        solver: "highs", "scip" or "greedy" (the path that was asked for).
        status: the solver's last status ("optimal", "time_limit", ...), or
            "heuristic" for the greedy path.
        wall_time: seconds for the whole call (greedy, model building, rounds).
        cuts: no-good cuts added.
        rounds: solver calls made.
        fallback_used: the greedy solution was returned instead of a solver's.
        fallback_reason: why (None when not used).
        source: "solver", "warm_start" (no solver round improved on the
            greedy start) or "repair" (duplicates repaired after the last round).
        greedy_objective: objective of the greedy + local search solution.
        solver_objective: the solver's objective value of its last incumbent.
        mip_start: whether a start was handed to the solver in every round.
        time_limit: the limit the call ran under (seconds).
        assignment_mode: "relaxed" or "binary" (see `qp_model`).
        problem: `QPProblem.summary()` (sizes, tau, penalised pairs).
    """

    selected: np.ndarray
    assignment: np.ndarray
    objective: float
    bound: float | None
    gap: float | None
    solver: str
    status: str
    wall_time: float
    cuts: int
    rounds: int
    fallback_used: bool
    fallback_reason: str | None
    source: str
    greedy_objective: float | None
    solver_objective: float | None
    mip_start: bool
    time_limit: float
    assignment_mode: str
    problem: dict[str, Any]

    def class_feature_matrix(self) -> np.ndarray:
        """[C, n_select] 0/1 float32 matrix over ``f[:, selected]`` (stage 3's W_bin)."""
        return self.assignment.T.astype(np.float32)

    def to_record(self) -> dict[str, Any]:
        """JSON-serialisable dict for the job record (assignment as, per
        class, the sorted feature ids)."""
        out = asdict(self)
        out["selected"] = [int(i) for i in self.selected]
        out["assignment"] = [[int(self.selected[r]) for r in np.flatnonzero(col)] for col in self.assignment.T]
        for key in ("objective", "bound", "gap", "greedy_objective", "solver_objective", "wall_time", "time_limit"):
            v = out[key]
            out[key] = None if v is None or not math.isfinite(float(v)) else float(v)
        return out


@dataclass
class _Round:
    status: str
    selected: np.ndarray | None  # None: no incumbent
    Y: np.ndarray | None
    solver_objective: float | None
    bound: float | None
    start_passed: bool


def _solver_installed(name: str) -> bool:
    return name.upper() in cp.installed_solvers()


def _solve_built(model: QPModel, prob: cp.Problem, solver: str, time_limit: float, mip_rel_gap: float, seed: int,
                 verbose: bool, options: dict[str, Any], start: tuple[np.ndarray, np.ndarray] | None = None) -> _Round:
    if start is not None:
        model.set_start(*start)
    limit = float(max(time_limit, 0.01))
    start_passed = False
    with warnings.catch_warnings():  # cvxpy warns on every time-limit stop
        warnings.filterwarnings("ignore", message="Solution may be inaccurate")
        if solver == "highs":
            backend = highs_with_start()
            opts = {"time_limit": limit, "mip_rel_gap": float(mip_rel_gap), "random_seed": int(seed), **options}
            prob.solve(solver=backend, verbose=verbose, **opts)
            start_passed = bool(backend.start_passed)
        else:
            params = {"limits/time": limit, "limits/gap": float(mip_rel_gap),
                      "randomization/randomseedshift": int(seed), **options}
            prob.solve(solver=cp.SCIP, verbose=verbose, scip_params=params)
    status = {cp.OPTIMAL: "optimal", cp.USER_LIMIT: "time_limit" if "mip_max_nodes" not in options
              and "limits/nodes" not in options else "limit"}.get(prob.status, str(prob.status))
    stats = prob.solver_stats.extra_stats if prob.solver_stats is not None else None
    # The cvxpy objective has no constant term: the solver minimises exactly
    # -objective, so its dual bound is -bound.
    dual = math.nan
    if solver == "highs" and stats is not None:
        dual = float(getattr(stats, "mip_dual_bound", math.nan))
    elif solver == "scip" and isinstance(stats, dict) and "model" in stats:
        dual = float(stats["model"].getDualbound())
    bound = -dual if math.isfinite(dual) else None
    if prob.status not in cp.settings.SOLUTION_PRESENT or model.s.value is None:
        return _Round(status, None, None, None, bound, start_passed)
    sel, Y = model.extract()
    val = prob.value
    sval = float(val) if val is not None and math.isfinite(float(val)) else None
    return _Round(status, sel, Y, sval, bound, start_passed)


def _greedy_solution(problem: QPProblem, g: GreedyResult, t0: float, time_limit: float, reason: str, solver: str,
                     mode: str, cuts: int = 0, rounds: int = 0) -> QPSolution:
    return QPSolution(
        selected=g.selected, assignment=g.assignment[g.selected], objective=g.objective, bound=None, gap=None,
        solver=solver, status="heuristic", wall_time=time.perf_counter() - t0, cuts=cuts, rounds=rounds,
        fallback_used=True, fallback_reason=reason, source="warm_start", greedy_objective=g.objective,
        solver_objective=None, mip_start=False, time_limit=time_limit, assignment_mode=mode,
        problem=problem.summary(),
    )


def solve(
    problem: QPProblem,
    solver: str = "highs",
    time_limit: float = 300.0,
    seed: int = 0,
    mip_rel_gap: float = 1e-4,
    max_cut_rounds: int = 20,
    warm_start: bool = True,
    assignment: str = "relaxed",
    triangles: bool = True,
    candidates: int | None = 128,
    kicks: int = 200,
    tabu_iterations: int = 4000,
    verbose: bool = False,
    solver_options: dict[str, Any] | None = None,
    node_limit: int = 0,
) -> QPSolution:
    """Solve the stage-2 program (module docstring).

    Args:
        problem: from `qp_problem.build_problem`.
        solver: "highs" (default), "scip" (``pip install xbench[scip]``) or
            "greedy" (no solver).
        time_limit: seconds for the whole call, heuristic included.
        seed: random seed of the heuristic's kicks and of the solver.
        mip_rel_gap: relative gap at which the solver stops.
        max_cut_rounds: at most this many re-solves after adding no-good cuts.
        warm_start: hand the best known solution to the solver (HiGHS).
        assignment: "relaxed" (default) or "binary" y; see `qp_model`.
        triangles: add the triangle inequalities of `qp_model`.
        candidates: per free class, only its this many best features get
            assignment variables (a bound-preserving relaxation, `qp_model`;
            exact whenever N_f <= candidates); None: all features.
        kicks: iterated-local-search perturbations of the heuristic (`qp_greedy`).
        tabu_iterations: tabu-search iterations of the heuristic (`qp_tabu`).
        verbose: print the solver log.
        solver_options: extra HiGHS options / SCIP parameters, overriding ours.
        node_limit: > 0: deterministic settings. Every solver round stops after this many
            branch-and-bound nodes (HiGHS `mip_max_nodes`, SCIP `limits/nodes`) instead of at a
            clock time, and the heuristic runs every phase to its end; `time_limit` is then not
            applied, so the same problem gives the same solution however loaded the machine is
            (serial and `--workers` runs alike). 0 (default): the time limit, as documented.
    """
    name = solver.lower()
    if name not in SOLVERS:
        raise unknown_name("QP solver", solver, SOLVERS)
    if name == "scip" and not _solver_installed("SCIP"):
        raise ConfigError("QP solver 'scip' needs PySCIPOpt, which is not installed; pip install xbench[scip]")
    t0 = time.perf_counter()
    deterministic = int(node_limit) > 0
    deadline = math.inf if deterministic else t0 + time_limit
    g = solve_greedy(problem, time_limit=None if deterministic else 0.25 * time_limit, kicks=kicks, seed=seed,
                     tabu_iterations=tabu_iterations)
    if deterministic:
        key = "limits/nodes" if name == "scip" else "mip_max_nodes"
        solver_options = {key: int(node_limit), **(solver_options or {})}
    if name == "greedy":
        return _greedy_solution(problem, g, t0, time_limit, "solver='greedy' was asked for", name, assignment)
    if not _solver_installed(name):
        return _greedy_solution(problem, g, t0, time_limit, f"{name} is not installed", name, assignment)

    model = QPModel(problem, assignment=assignment, triangles=triangles, candidates=candidates)
    best = (g.selected, g.assignment, g.objective, "warm_start")
    last: _Round | None = None
    bound: float | None = None
    rounds, start_always = 0, True
    try:
        while rounds <= max_cut_rounds:
            remaining = deadline - time.perf_counter()
            if rounds > 0 and remaining <= 0:
                break
            prob = model.build()
            start = (best[0], best[1]) if warm_start else None
            limit = 1e7 if deterministic else remaining     # deterministic: the node limit stops each round
            last = _solve_built(model, prob, name, limit, mip_rel_gap, seed, verbose, solver_options or {}, start)
            rounds += 1
            start_always &= last.start_passed
            if last.bound is not None:  # every round's bound is valid: keep the best
                bound = last.bound if bound is None else min(bound, last.bound)
            if last.selected is None or last.Y is None:
                break
            groups = duplicate_groups(last.Y)
            if not groups:
                if not constraint_violations(problem, last.selected, last.Y):
                    val = objective(problem, last.selected, last.Y)
                    if val >= best[2] - 1e-9:
                        best = (last.selected, last.Y, val, "solver")
                break
            for group in groups:
                feats = np.flatnonzero(last.Y[:, group[0]])
                for a in range(len(group)):
                    for b in range(a + 1, len(group)):
                        model.add_cut(feats, group[a], group[b])
            Yr, _ = repair_duplicates(problem, last.selected, last.Y)
            val = objective(problem, last.selected, Yr)
            if val > best[2] + 1e-9:
                best = (last.selected, Yr, val, "repair")
    except cp.error.SolverError as err:
        if last is None or last.selected is None:
            reason = f"{name} failed: {str(err).splitlines()[0] if str(err) else type(err).__name__}"
            return _greedy_solution(problem, g, t0, time_limit, reason, name, assignment, model.n_cuts, rounds)
    if last is None or (rounds == 1 and last.selected is None):
        status = last.status if last is not None else "not run"
        return _greedy_solution(problem, g, t0, time_limit, f"{name} returned no incumbent (status {status})", name,
                                assignment, model.n_cuts, rounds)
    sel, Y, obj, source = best
    if bound is not None and bound < obj:
        bound = obj
    gap = None if bound is None else (bound - obj) / max(abs(obj), 1e-12)
    sel = np.sort(np.asarray(sel, dtype=np.int64))
    return QPSolution(
        selected=sel, assignment=np.asarray(Y, dtype=bool)[sel], objective=float(obj), bound=bound, gap=gap,
        solver=name, status=last.status, wall_time=time.perf_counter() - t0, cuts=model.n_cuts, rounds=rounds,
        fallback_used=False, fallback_reason=None, source=source, greedy_objective=g.objective,
        solver_objective=last.solver_objective, mip_start=bool(warm_start and start_always), time_limit=time_limit,
        assignment_mode=assignment, problem=problem.summary(),
    )
