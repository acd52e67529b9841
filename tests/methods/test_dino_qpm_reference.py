"""DINO-QPM ``penalty=reference``: the reference code's construction of the stage-2 penalty, by hand.

Reference semantics, in words (DINO-QPM repository, sparsification/qpm):
* R = row cosines of A divided by max |R| with the diagonal (1) still in it,
  then the diagonal set to 0.
* Threshold search on S = R + R^T (= 2R): bound = n^2 (t - 2) / (t - 1) for t
  features; sort all n^2 entries of S; grid point k is the value at position
  floor(bound) - int(k * step), step = (bound - #zero entries of S) / 100.
  Graph: edge i - j when S_ij < threshold. First loop walks down while a
  greedy clique-size estimate reaches t (stopping at once when it fails at
  k = 0); second loop walks back up from the chosen point until a
  clique-removal (Ramsey) search on the complement finds t features.
* Penalised pairs: i < j with R_ij >= threshold (R itself, not R + R^T).
* Weights: (R_ij - m) / max(R - m), m the smallest non-zero R, the max over the
  whole matrix (diagonal included).
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from xbench.cache import TokenStore
from xbench.errors import ConfigError
from xbench.methods.base import FitContext, HeadInfo, TrainData, parse_params
from xbench.methods.dino_qpm.method import DinoQPM
from xbench.methods.dino_qpm.qp_problem import (
    build_problem,
    find_tau,
    min_max_scale,
    problem_from_matrix,
    row_cosine_similarity,
)
from xbench.methods.dino_qpm.qp_reference import (
    reference_feature_class_correlation,
    reference_pairs,
    reference_similarity,
    reference_weight_matrix,
)
from xbench.methods.dino_qpm.qp_reference_threshold import (
    approx_max_clique,
    large_clique_size,
    reference_threshold,
)
from xbench.methods.dino_qpm.qp_solve import solve


def _sym(n: int, entries: dict[tuple[int, int], float]) -> np.ndarray:
    R = np.zeros((n, n))
    for (i, j), v in entries.items():
        R[i, j] = R[j, i] = v
    return R


def _adj(n: int, edges: list[tuple[int, int]]) -> np.ndarray:
    a = np.zeros((n, n), dtype=bool)
    for i, j in edges:
        a[i, j] = a[j, i] = True
    return a


# Five features: {0, 1, 2, 3} are mutually dissimilar (R 0.01 .. 0.06), feature 4 is similar to all of them.
FIVE = {(0, 1): 0.01, (0, 2): 0.02, (0, 3): 0.03, (1, 2): 0.04, (1, 3): 0.05, (2, 3): 0.06,
        (0, 4): 0.10, (1, 4): 0.15, (2, 4): 0.25, (3, 4): 0.30}


# ------------------------------------------------------------------ the threshold search


def test_threshold_search_by_hand_five_features():
    R = _sym(5, FIVE)
    s = reference_threshold(R, 4)
    # bound = 5^2 * (4 - 2) / (4 - 1) = 16.67 -> start position 16.
    # S = 2R, sorted 25 values: 5 diagonal zeros (positions 0-4), then each pair twice:
    #   .02 .02 .04 .04 .06 .06 .08 .08 .10 .10 .12 .12 .20 .20 .30 .30 .50 .50 .60 .60
    #   positions 5 ... 16 hold .02 ... .12, position 17 holds .20.
    # step = (16.67 - 5 zeros) / 100 = 0.1167.
    d = s.diagnostics
    assert d["grid_start"] == 16 and d["grid_step"] == pytest.approx((50 / 3 - 5) / 100)
    # First loop, k = 0: threshold S[16] = 0.12; edges S < 0.12: the five pairs R <= 0.05 (K4 on 0..3
    # without 2-3); every degree is <= 3 < 4, so the estimate is 0 < 4 at k = 0: chosen point 0.
    assert d["first_loop_sizes"] == [0] and d["first_loop_step"] == 0
    # Second loop: positions 16 - int(-i * 0.1167) = 16 for i <= 8 (largest clique 3); at i = 9,
    # int(-1.05) = -1 -> position 17, threshold 0.20: edges R < 0.10 are all six pairs of {0,1,2,3}: K4.
    assert d["second_loop_steps"] == 10 and d["clique_size"] == 4
    assert s.threshold == 0.2 and sorted(s.clique) == [0, 1, 2, 3]
    # slack fraction = (t - 2)/(t - 1) - (chosen - i)/100 = 2/3 + 9/100
    assert d["slack_fraction"] == pytest.approx(2 / 3 + 0.09)


def test_reference_penalises_half_scale_pairs_spec_does_not():
    R = _sym(5, FIVE)
    # The reference found 0.20 on R + R^T and applies it to R: only R >= 0.20 -> (2,4) 0.25 and (3,4) 0.30.
    assert reference_pairs(R, 0.2).tolist() == [[2, 4], [3, 4]]
    # SPEC's rule on the same R: the smallest tau at which 4 features are pairwise below it. {0,1,2,3} has
    # max pair 0.06, the next value is 0.10 -> tau = 0.10 (greedy from feature 0: taking 0 blocks 4 since
    # R04 = 0.10 >= 0.10; at the smaller candidate 0.06 the pair (2,3) and every pair with 4 block, no 4-set).
    tau, chosen = find_tau(R, np.ones((5, 1)), 4)
    assert tau == 0.1 and chosen.tolist() == [0, 1, 2, 3]
    iu = np.triu_indices(5, k=1)
    spec = [(int(i), int(j)) for i, j in zip(*iu) if R[i, j] >= tau]
    assert spec == [(0, 4), (1, 4), (2, 4), (3, 4)]  # 4 pairs versus the reference's 2


def test_end_to_end_from_A_spec_and_reference_pairs_differ():
    # A = Cholesky factor of the Gram matrix with 1 on the diagonal and FIVE off it: its rows are unit
    # vectors whose cosines are exactly FIVE (up to rounding). 5 features, 5 classes, 4 selected, 2 per class.
    G = _sym(5, FIVE) + np.eye(5)
    A = np.linalg.cholesky(G)
    ref = problem_from_matrix(A, 4, 2, penalty="reference")
    spec = problem_from_matrix(A, 4, 2)
    # reference R keeps the raw cosines (the diagonal's 1 was the max); threshold 2 * R04 = 0.20
    np.testing.assert_allclose(ref.R, _sym(5, FIVE), atol=1e-12)
    assert ref.tau == pytest.approx(0.2, abs=1e-12)
    assert ref.pairs.tolist() == [[2, 4], [3, 4]]
    # weights: m = 0.01 (smallest non-zero R), max(R - m) = 0.30 - 0.01 = 0.29
    np.testing.assert_allclose(ref.pair_weights, [(0.25 - 0.01) / 0.29, 1.0], atol=1e-12)
    assert ref.tau_set.tolist() == [0, 1, 2, 3]
    # SPEC: R divided by its largest off-diagonal entry 0.30, tau = 0.10 / 0.30, all four pairs with 4
    assert spec.tau == pytest.approx(0.1 / 0.3, abs=1e-9)
    assert spec.pairs.tolist() == [[0, 4], [1, 4], [2, 4], [3, 4]]
    # the record says which rule was used
    assert ref.summary()["penalty"] == "reference" and spec.summary()["penalty"] == "spec"
    assert ref.summary()["n_penalised_pairs"] == 2 and ref.summary()["threshold_search"]["clique_size"] == 4
    assert "threshold_search" not in spec.summary()


def test_large_clique_size_heuristic_and_early_stop():
    # K4 on {0,1,2,3} plus a path 3-4-5. Degrees: 0,1,2: 3; 3: 4; 4: 2; 5: 1.
    adj = _adj(6, [(0, 1), (0, 2), (0, 3), (1, 2), (1, 3), (2, 3), (3, 4), (4, 5)])
    # check size 3: start at node 0 (degree 3 >= 3), candidates {1,2,3} (degrees >= 3); take 3 (degree 4),
    # keep its neighbours of degree >= 0: {1, 2}; take 1, keep {2}; take 2: size 4 >= 3 -> stop, return 4.
    assert large_clique_size(adj, 3) == 4
    # check size 5: no node has degree >= 5 -> 0 (no start at all)
    assert large_clique_size(adj, 5) == 0
    # check size 4: only node 3 has degree >= 4; its neighbours of degree >= 4: none -> size 1
    assert large_clique_size(adj, 4) == 1


def test_large_clique_size_follows_the_largest_degree_and_stops_early():
    # {0, 2, 3, 4, 5} is a K5; hub 1 is adjacent to 0, 2 and five leaves 6..10.
    # Degrees: 0: 5, 1: 7, 2: 5, 3-5: 4, leaves: 1.
    edges = [(i, j) for i in (0, 2, 3, 4, 5) for j in (0, 2, 3, 4, 5) if i < j] + [(0, 1), (1, 2)]
    adj = _adj(11, edges + [(1, leaf) for leaf in range(6, 11)])
    # check size 3: start at 0, candidates {1, 2, 3, 4, 5}; the largest degree is the hub 1; keep its
    # neighbours: {2}; take 2 -> size 3 >= 3: stop and return 3, although the K5 has 5.
    assert large_clique_size(adj, 3) == 3
    # check size 6: only the hub has degree >= 6 and none of its neighbours does -> 1
    assert large_clique_size(adj, 6) == 1


def test_approx_max_clique_finds_the_clique():
    # at the five-feature case's threshold 0.20: K4 on {0,1,2,3}, node 4 isolated. Complement: a star
    # 4-{0,1,2,3}; ramsey_R2 from node 0: non-neighbours {1,2,3} are independent -> {0,1,2,3}.
    adj = _adj(5, [(0, 1), (0, 2), (0, 3), (1, 2), (1, 3), (2, 3)])
    assert approx_max_clique(adj, 4) == {0, 1, 2, 3}
    # K4 minus edge 2-3: the largest clique has 3 nodes
    assert len(approx_max_clique(_adj(5, [(0, 1), (0, 2), (0, 3), (1, 2), (1, 3)]), 4)) == 3


def test_search_fails_where_the_reference_fails():
    # 4 features, 3 wanted, the three smallest pairs (0,2) .1, (0,3) .2, (1,2) .3 form no triangle.
    # bound = 16 * 1/2 = 8, step = (8 - 4 zeros) / 100 = 0.04; the first loop fails at k = 0; the second
    # reaches positions 8..11 only (i * 0.04 < 4), i.e. thresholds up to S = 0.8 (pairs R < 0.4:
    # (0,2), (0,3), (1,2): still no triangle) -> the reference ends with an unbound variable.
    R = _sym(4, {(0, 1): 0.9, (0, 2): 0.1, (0, 3): 0.2, (1, 2): 0.3, (1, 3): 0.4, (2, 3): 0.5})
    with pytest.raises(ConfigError, match="no clique of 3 features within 100 grid steps"):
        reference_threshold(R, 3)
    # all pairs equally similar: S = 1.0 off the diagonal; the start threshold S[8] = 1.0 gives no edge,
    # so does every grid point; no working threshold -> the reference's assertion fails
    with pytest.raises(ConfigError, match="assertion"):
        reference_threshold(_sym(4, {(i, j): 0.5 for i in range(4) for j in range(i + 1, 4)}), 3)
    # 1 feature wanted: its bound divides by t - 1 = 0
    with pytest.raises(ConfigError, match="divide by zero"):
        reference_threshold(_sym(3, {(0, 1): 0.5}), 1)


# ------------------------------------------------------------------ R, A and weights


def test_R_divided_by_max_with_the_diagonal_in():
    # rows (1, 0), (1/2, sqrt(3)/2), (0, 1): cosines 0-1: 1/2, 1-2: sqrt(3)/2, 0-2: 0; diagonal 1.
    A = np.array([[1.0, 0.0], [0.5, math.sqrt(0.75)], [0.0, 1.0]])
    R = reference_similarity(A)
    # the reference divides by max |R| = 1 (the diagonal), then zeroes the diagonal: raw cosines
    np.testing.assert_allclose(R, _sym(3, {(0, 1): 0.5, (1, 2): math.sqrt(0.75)}), atol=1e-15)
    # SPEC's order (diagonal 0 first) divides by the largest off-diagonal sqrt(3)/2 instead
    spec = row_cosine_similarity(A)
    np.testing.assert_allclose(spec, _sym(3, {(0, 1): 0.5 / math.sqrt(0.75), (1, 2): 1.0}), atol=1e-12)


def test_pair_weight_formula():
    # All negative: m = -0.6, R - m = [[.6,.4,0],[.4,.6,.2],[0,.2,.6]]; its max is the diagonal's 0.6.
    R = _sym(3, {(0, 1): -0.2, (1, 2): -0.4, (0, 2): -0.6})
    W = reference_weight_matrix(R)
    assert (W[0, 1], W[1, 2], W[0, 2]) == pytest.approx((0.4 / 0.6, 0.2 / 0.6, 0.0))
    # SPEC's min-max over the off-diagonal (-0.6 .. -0.2): 1, 0.5, 0
    Ws = min_max_scale(R)
    assert (Ws[0, 1], Ws[1, 2], Ws[0, 2]) == pytest.approx((1.0, 0.5, 0.0))
    # A zero off-diagonal entry (a dead feature) is skipped by "smallest non-zero": m = 0.2,
    # R - m: (0,1) 0, (1,2) 0.3, (0,2) -0.2, diagonal -0.2 -> max 0.3.
    R = _sym(3, {(0, 1): 0.2, (1, 2): 0.5})
    W = reference_weight_matrix(R)
    assert (W[0, 1], W[1, 2], W[0, 2], W[0, 0]) == pytest.approx((0.0, 1.0, -0.2 / 0.3, -0.2 / 0.3))
    Ws = min_max_scale(R)  # SPEC: (R - 0) / (0.5 - 0)
    assert (Ws[0, 1], Ws[1, 2], Ws[0, 2]) == pytest.approx((0.4, 1.0, 0.0))
    with pytest.raises(ConfigError, match="no non-zero entry"):
        reference_weight_matrix(np.zeros((3, 3)))


def test_reference_A_is_population_pearson_with_a_clipped_denominator():
    # features f0 = (0, 1, 2, 3), f1 constant 7; labels (0, 0, 1, 1), class 2 absent.
    # f0 centred (-1.5, -.5, .5, 1.5), std sqrt(1.25); class 0 indicator centred (.5, .5, -.5, -.5), std .5
    # cov = (1/4)(-.75 - .25 - .25 - .75) = -0.5 -> corr = -0.5 / (sqrt(1.25) * .5) = -0.8944; class 1: +0.8944
    F = np.array([[0, 7], [1, 7], [2, 7], [3, 7]], dtype=np.float32)
    A = reference_feature_class_correlation(F, np.array([0, 0, 1, 1]), n_classes=3)
    r = 1 / math.sqrt(1.25)
    np.testing.assert_allclose(A, [[-r, r, 0.0], [0.0, 0.0, 0.0]], atol=1e-6)


# ------------------------------------------------------------------ the method's option and record


def test_penalty_value_is_validated():
    with pytest.raises(ConfigError, match=r"dino-qpm\.penalty='paper': use one of spec, reference"):
        DinoQPM(HeadInfo(num_classes=4, grid=3, dim=6), parse_params(DinoQPM, {"penalty": "paper"}))
    with pytest.raises(ConfigError, match="use one of spec, reference"):
        build_problem(np.ones((4, 3)), np.array([0, 1, 0, 1]), 2, 1, penalty="Reference")
    assert parse_params(DinoQPM, {}).penalty == "spec"


def _toy(N: int = 64, C: int = 4, g: int = 2, D: int = 6) -> TrainData:
    rng = np.random.default_rng(0)
    labels = np.arange(N) % C
    patch = rng.normal(size=(N, g, g, D)) * 0.5
    patch[:, 0, 0, :] += rng.normal(size=(C, D))[labels] * 2
    patch = patch.astype(np.float16)
    arrays = {"patch": patch, "cls": patch.mean(axis=(1, 2)), "reg": np.zeros((N, 0, D), np.float16)}
    return TrainData(TokenStore(Path("."), {}, arrays, np.arange(N), {}), labels, None, C, torch.device("cpu"))


def test_fit_log_records_the_reference_penalty():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        params = parse_params(DinoQPM, dict(hidden_dim=8, hidden_layers=1, n_features=12, n_select=8, n_per_class=2,
                                            dense_epochs=1, sparse_epochs=1, dense_batch_size=32,
                                            sparse_batch_size=32, qp_solver="greedy", qp_tabu_iterations=50,
                                            penalty="reference"))
        m = DinoQPM(HeadInfo(num_classes=4, grid=2, dim=6), params)
        log = m.fit(_toy(), FitContext(torch.device("cpu"), seed=0, show_progress=False))
    finally:
        torch.set_num_threads(n)
    qp = log["qp"]
    assert qp["penalty"] == "reference" and qp["problem"]["penalty"] == "reference"
    assert math.isfinite(qp["tau"]) and qp["n_penalised_pairs"] >= 0
    assert qp["threshold_search"]["clique_size"] >= 8 and qp["threshold_search"]["search_on"] == "R + R^T"
    assert len(qp["selected"]) == 8


def test_solvers_take_a_reference_problem():
    rng = np.random.default_rng(1)
    p = problem_from_matrix(rng.uniform(-1, 1, (30, 8)), 10, 3, penalty="reference")
    sol = solve(p, solver="highs", time_limit=5.0, tabu_iterations=100)
    assert sol.problem["penalty"] == "reference" and len(sol.selected) == 10
    # the solution is scored with the reference's pairs and weights
    idx = set(sol.selected.tolist())
    pen = sum(w for (i, j), w in zip(p.pairs.tolist(), p.pair_weights) if i in idx and j in idx)
    gain = p.scale * sum(p.A[sol.selected[r], c] for r, c in zip(*np.nonzero(sol.assignment)))
    assert sol.objective == pytest.approx(gain - pen, abs=1e-9)
