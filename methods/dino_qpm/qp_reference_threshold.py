"""The DINO-QPM reference code's penalty threshold search, reproduced (``penalty=reference``).

SPEC 3.3 asks for "the smallest threshold that still admits ``n_select``
features pairwise below it"; xbench's own rule is `qp_problem.find_tau`. The
reference implementation (``clique_utils.find_minimum_viable_threshold`` in
the DINO-QPM repository) searches differently, and this module reproduces its
result step by step. Every behaviour below changes the threshold, so each is
kept as the reference has it:

* **It searches on S = R + R^T**, not on R. R is symmetric, so S = 2R off the
  diagonal (the diagonal of R is already 0). A feature set is "admitted" at a
  threshold t when all its pairs have S < t, i.e. R < t / 2, but the caller
  (`qp_reference`) then penalises the pairs with R >= t. So the threshold is
  found on the 2R scale and applied on the R scale: only pairs with
  R >= 2 (t / 2) are penalised, far fewer than SPEC's rule would penalise.
* **The grid.** ``bound = n^2 (target - 2) / (target - 1)`` is a Turán-type
  clique-density bound counted over the n^2 entries of S (diagonal included).
  All n^2 values of S are sorted (the n diagonal zeros included). The grid
  starts at position ``floor(bound)`` and steps down by
  ``step = (bound - number of zero entries of S) / 100`` positions: grid
  point k is the sorted value at position ``floor(bound) - int(k * step)``
  (``int`` truncates toward zero; a negative position wraps around to the end
  as numpy indexing does; a position past the end is an error, as in numpy).
* **The graph** at threshold t has an edge i - j (i != j) when S_ij < t.
* **First loop** (k = 0, 1, ..., 99, thresholds decreasing): a grid point whose
  graph has as many (ordered) edges as the last one tried is skipped. The
  graph used is the first one tried minus every edge that disappeared since
  (for a decreasing grid: the current graph; in general: the intersection of
  all graphs tried). Its clique size is estimated by `large_clique_size` (an
  early-stopping greedy heuristic). If the estimate is below ``target`` the
  loop stops and the previous grid point is "chosen" (grid point 0 itself
  when it fails at k = 0); if it equals ``target`` the current point is
  chosen and the loop stops; if it exceeds ``target`` the search goes on
  (after 100 points, the last grid point is chosen).
* **Second loop** (i = 0, 1, ..., 99) walks the grid back up from the chosen
  point: grid point ``chosen - i`` (past 0 the positions keep increasing). On
  a fresh graph at each threshold, `approx_max_clique` (clique removal with
  networkx's ``ramsey_R2`` on the complement graph, stopping early) looks for
  ``target`` pairwise-connected features; the first threshold where it finds
  them is the result, and that clique is the reference's MIP start.
* **Failures stay failures.** Where the reference code stops with an error
  (``target < 2``: a division by zero; the second loop's first threshold not
  equal to the first loop's last working one: its assertion; a grid position
  out of range: an IndexError; no clique found in 100 steps: an unbound
  variable), this raises a one-line `ConfigError` saying so, instead of
  inventing a threshold.

The early-stopping clique heuristics are written here (the reference wrote its
own variants of networkx routines); networkx's ``ramsey_R2`` is called as the
reference calls it. Python's ``max`` over a set returns the first maximum in
the set's iteration order, which depends on the order the set was built in, so
the sets are built from neighbours in increasing node order, the order in which
a graph made by ``networkx.from_numpy_array`` lists them, and combined with the
same set operations (``U & N``), so ties go the same way.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from xbench.errors import ConfigError

__all__ = [
    "STEPS",
    "ThresholdSearch",
    "clique_density_bound",
    "grid_position",
    "large_clique_size",
    "approx_max_clique",
    "reference_threshold",
]

STEPS = 100  # grid points of each loop, as in the reference


@dataclass(frozen=True)
class ThresholdSearch:
    """Result of `reference_threshold`.

    Attributes:
        threshold: the threshold on S = R + R^T (the caller penalises R >= it).
        clique: the features of the second loop's clique, in the set's
            iteration order (the reference's start takes the first ``target``).
        diagnostics: grid and loop bookkeeping (JSON-serialisable).
    """

    threshold: float
    clique: tuple[int, ...]
    diagnostics: dict[str, Any] = field(default_factory=dict)

    def start_set(self, n: int) -> np.ndarray:
        """The reference's MIP start: the first ``n`` clique members (iteration order), sorted."""
        return np.sort(np.asarray(self.clique[:n], dtype=np.int64))


def _fail(why: str) -> ConfigError:
    return ConfigError(f"dino-qpm.penalty=reference: the reference's threshold search fails here ({why}); "
                       "use dino-qpm.penalty=spec or change n_features / n_select")


def clique_density_bound(n: int, target: int) -> float:
    """``n^2 (target - 2) / (target - 1)``: the reference's start, in entries of the n x n matrix."""
    if target < 2:
        raise _fail(f"n_select={target} makes its clique-density bound divide by zero; it needs n_select >= 2")
    return n ** 2 * (target - 2) / (target - 1)


def grid_position(start: int, step: float, k: int) -> int:
    """Sorted position of grid point k: ``start - int(k * step)`` (``int`` truncates toward zero)."""
    return start - int(k * step)


def _value_at(values: np.ndarray, pos: int) -> float:
    if not -len(values) <= pos < len(values):
        raise _fail(f"a grid position {pos} lies outside the {len(values)} sorted values: an IndexError there")
    return values[pos]  # numpy scalar; a negative position wraps around as in the reference


def _neighbours(adj: np.ndarray) -> list[list[int]]:
    return [np.flatnonzero(row).tolist() for row in adj]


def large_clique_size(adj: np.ndarray, check_size: int) -> int:
    """Estimated size of a large clique of the graph ``adj`` (bool, symmetric, no diagonal).

    The greedy heuristic of Pattabiraman et al. (networkx's
    ``large_clique_size``) with the reference's early stop: for each node u
    (in increasing order) with degree >= ``check_size``, start from its
    neighbours of degree >= ``check_size`` and repeatedly move the candidate
    of largest degree into the clique, keeping only candidates adjacent to it
    whose degree is >= the best size found before this start; as soon as the
    best size reaches ``check_size``, return it.
    """
    nbrs = _neighbours(adj)
    degree = [len(v) for v in nbrs]
    best = 0
    for u in range(len(nbrs)):
        if degree[u] < check_size:
            continue
        cand = {v for v in nbrs[u] if degree[v] >= check_size}
        size = 1
        while cand:
            w = max(cand, key=degree.__getitem__)  # the first maximum in set order
            cand.remove(w)
            keep = {v for v in nbrs[w] if degree[v] >= best}
            cand = cand & keep
            size += 1
        best = max(best, size)
        if best >= check_size:
            return best
    return best


def approx_max_clique(adj: np.ndarray, target: int) -> set[int]:
    """A large clique of the graph ``adj``, stopping once one of ``target`` nodes is found.

    As the reference: a clique of the graph is an independent set of its
    complement, and Boppana-Halldórsson clique removal finds a large one:
    take networkx's ``ramsey_R2`` of the complement (a clique c and an
    independent set); then, while nodes are left, remove c's nodes and take
    ``ramsey_R2`` again, keeping non-empty results, and stop once the largest
    independent set so far has ``target`` nodes. The result is the first of
    the largest independent sets in the order found.
    """
    import networkx as nx
    from networkx.algorithms.approximation.ramsey import ramsey_R2

    graph = nx.complement(nx.from_numpy_array(adj)).copy()
    clique, indep = ramsey_R2(graph)
    found = [indep]
    while graph:
        graph.remove_nodes_from(clique)
        clique, indep = ramsey_R2(graph)
        if indep:
            found.append(indep)
        if len(max(found, key=len)) >= target:
            break
    return max(found, key=len)


def _graph(S: np.ndarray, threshold: float) -> np.ndarray:
    adj = S < threshold
    np.fill_diagonal(adj, False)
    return adj


def reference_threshold(R: np.ndarray, target: int, steps: int = STEPS) -> ThresholdSearch:
    """The reference's threshold search on R (diagonal already 0) for ``target`` features (module docstring)."""
    R = np.asarray(R)
    n = R.shape[0]
    bound = clique_density_bound(n, target)
    S = R + R.T
    values = np.sort(S.flatten())
    zeros = len(values) - int(np.count_nonzero(S))
    step = (bound - zeros) / steps
    start = int(np.floor(bound))

    # first loop: walk down while the heuristic still finds `target`
    working = None
    predicted = None
    chosen = steps - 1
    last_edges = 0
    graph = None
    sizes: list[int] = []
    for k in range(steps):
        threshold = _value_at(values, grid_position(start, step, k))
        adj = _graph(S, threshold)
        edges = int(adj.sum())
        if edges == last_edges:
            continue
        last_edges = edges
        graph = adj if graph is None else graph & adj  # edges that disappeared are gone for good
        size = large_clique_size(graph, target)
        sizes.append(size)
        if size < target:
            if k == 0:
                chosen, working, predicted = 0, threshold, size
            else:
                chosen = k - 1
            break
        working, predicted = threshold, size
        if size == target:
            chosen = k
            break

    # second loop: walk back up from the chosen point until a clique of `target` is found
    for i in range(steps):
        threshold = _value_at(values, grid_position(start, step, chosen - i))
        if i == 0 and (working is None or not threshold == working):
            raise _fail("the second loop does not start at the first loop's last working threshold: "
                        "its assertion")
        clique = approx_max_clique(_graph(S, threshold), target)
        if len(clique) >= target:
            members = list(clique)
            sub = S[np.ix_(members, members)] < threshold
            np.fill_diagonal(sub, True)
            assert sub.all(), "approx_max_clique returned a set that is not a clique"
            diag = {
                "search_on": "R + R^T",
                "grid_start": start,
                "grid_step": float(step),
                "density_bound": float(bound),
                "first_loop_sizes": sizes,
                "first_loop_step": int(chosen),
                "predicted_size": None if predicted is None else int(predicted),
                "second_loop_steps": i + 1,
                "clique_size": len(clique),
                "slack_fraction": (target - 2) / (target - 1) - (chosen - i) / steps,
            }
            return ThresholdSearch(threshold=float(threshold), clique=tuple(int(v) for v in members),
                                   diagnostics=diag)
    raise _fail(f"no clique of {target} features within {steps} grid steps: an unbound variable there")
