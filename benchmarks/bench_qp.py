"""Benchmark (not a test): DINO-QPM stage 2 at CUB scale.

Instance: a random A of 512 x 200 (i.i.d. uniform on [-1, 1], seed
``--seed``), fed through `qp_problem.problem_from_matrix`, so R, R~, tau and
the penalised pairs are built exactly as from real statistics (A is divided by
max |A|). ``--source features`` instead draws synthetic pooled features
(ReLU of sparse class means plus noise, 30 samples per class) and goes
through `qp_problem.build_problem`. 50 features, 5 per class.

Reports: the greedy + local search solution, then one `qp_solve.solve` call
with ``--time-limit`` (default 300 s): the time at which the solver's log
first shows a gap <= 1 % (gap = (bound - incumbent) / |incumbent|, from the
B&B table of the HiGHS log file), and objective, bound and gap at the end.
Also prints the machine's load and this process's CPU time, since the wall
clock limit is shared with whatever else runs.

    python benchmarks/bench_qp.py                      # 300 s, HiGHS
    python benchmarks/bench_qp.py --time-limit 60 --candidates 100
"""
from __future__ import annotations

import argparse
import os
import re
import tempfile
import time
from pathlib import Path

import numpy as np

from xbench.methods.dino_qpm.qp_greedy import solve_greedy
from xbench.methods.dino_qpm.qp_problem import QPProblem, build_problem, problem_from_matrix
from xbench.methods.dino_qpm.qp_solve import solve

# a B&B table row of the HiGHS log: ... BestBound BestSol Gap | Cuts InLp Confl. | LpIters Time
_ROW = re.compile(r"\s(-?[\d.e+-]+|inf|-inf)\s+(-?[\d.e+-]+|inf|-inf)\s+(?:[\d.]+%|inf|Large)\s+\d+\s+\d+\s+\d+\s+\d+\s+([\d.]+)s\s*$")


def make_problem(source: str, seed: int, n_features: int, n_classes: int) -> QPProblem:
    rng = np.random.default_rng(seed)
    if source == "matrix":
        return problem_from_matrix(rng.uniform(-1.0, 1.0, (n_features, n_classes)), 50, 5)
    labels = np.repeat(np.arange(n_classes), 30)
    means = rng.normal(size=(n_classes, n_features)) * (rng.random((n_classes, n_features)) < 0.1)
    feats = np.maximum(means[labels] + rng.normal(size=(len(labels), n_features)), 0.0)
    return build_problem(feats, labels, 50, 5)


def gap_trace(log_file: Path) -> tuple[list[tuple[float, float, float]], float]:
    """(time s, bound, incumbent) rows in the maximisation sense, and HiGHS's
    total run time, from a HiGHS log (the last solve's, if several)."""
    rows: list[tuple[float, float, float]] = []
    total = 0.0
    if not log_file.exists():
        return rows, total
    for line in log_file.read_text(errors="replace").splitlines():
        m = _ROW.search(line)
        if m:
            bound, inc, t = (float(x) for x in m.groups())
            rows.append((t, -bound, -inc))  # HiGHS minimises -objective
        m = re.match(r"\s*Timing\s+([\d.]+)", line)
        if m:
            total = float(m.group(1))
    return rows, total


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--time-limit", type=float, default=300.0)
    ap.add_argument("--source", choices=("matrix", "features"), default="matrix")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--features", type=int, default=512)
    ap.add_argument("--classes", type=int, default=200)
    ap.add_argument("--assignment", choices=("relaxed", "binary"), default="relaxed")
    ap.add_argument("--candidates", type=int, default=128, help="0: all features")
    ap.add_argument("--no-triangles", action="store_true")
    ap.add_argument("--target-gap", type=float, default=0.01)
    args = ap.parse_args()

    cpu0, t0 = time.process_time(), time.perf_counter()
    load0 = os.getloadavg()
    problem = make_problem(args.source, args.seed, args.features, args.classes)
    t_build = time.perf_counter() - t0
    print(f"instance: source={args.source} seed={args.seed} {problem.summary()} (built in {t_build:.2f} s)")

    t = time.perf_counter()
    g = solve_greedy(problem, seed=args.seed)
    t_greedy = time.perf_counter() - t

    with tempfile.TemporaryDirectory() as tmp:
        log = Path(tmp) / "highs.log"
        t = time.perf_counter()
        sol = solve(problem, time_limit=args.time_limit, seed=args.seed, assignment=args.assignment,
                    triangles=not args.no_triangles, candidates=args.candidates or None,
                    solver_options={"log_file": str(log)})
        t_solve = time.perf_counter() - t
        trace, highs_time = gap_trace(log)
    offset = t_solve - highs_time  # time spent before HiGHS's clock started (heuristic, model building)
    hit = next(((ts, b, i) for ts, b, i in trace if abs(i) < np.inf and (b - i) / abs(i) <= args.target_gap), None)

    print(f"solve: status={sol.status} rounds={sol.rounds} cuts={sol.cuts} source={sol.source} "
          f"mip_start={sol.mip_start} fallback={sol.fallback_used} assignment={args.assignment} "
          f"candidates={args.candidates} triangles={not args.no_triangles}")
    print()
    print(f"{'row':<28}{'time s':>10}{'objective':>14}{'bound':>14}{'gap %':>10}{'greedy obj':>14}")
    print(f"{'greedy + local search':<28}{t_greedy:>10.1f}{g.objective:>14.3f}{'-':>14}{'-':>10}{g.objective:>14.3f}")
    if hit is not None:
        ts, b, i = hit
        print(f"{'first gap <= %.0f%% (log)' % (100 * args.target_gap):<28}{ts + offset:>10.1f}{i:>14.3f}{b:>14.3f}"
              f"{100 * (b - i) / abs(i):>10.2f}{sol.greedy_objective:>14.3f}")
    else:
        print(f"{'first gap <= %.0f%% (log)' % (100 * args.target_gap):<28}{'not reached':>10}")
    bound = f"{sol.bound:.3f}" if sol.bound is not None else "-"
    gap = f"{100 * sol.gap:.2f}" if sol.gap is not None else "-"
    print(f"{'end of solve':<28}{sol.wall_time:>10.1f}{sol.objective:>14.3f}{bound:>14}{gap:>10}"
          f"{sol.greedy_objective:>14.3f}")
    print()
    print(f"load average before {load0[0]:.1f}, after {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs; "
          f"this process used {time.process_time() - cpu0:.0f} s CPU in {time.perf_counter() - t0:.0f} s wall")


if __name__ == "__main__":
    main()
