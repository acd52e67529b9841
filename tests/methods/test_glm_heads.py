"""dino-sldd and dino-qsenn: the GLM path, SLDD's selection, Q-SENN's ternary assignment (hand-built cases)."""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from xbench.cache import TokenStore
from xbench.errors import ConfigError
from xbench.explanation import check_concept_decomposition
from xbench.methods.base import Batch, FitContext, HeadInfo, Method, TrainData, parse_params
from xbench.methods.dino_qpm.glm_path import (entry_order, fit_glm, glm_path, lambda_max, prox_elastic_net,
                                              top_k_per_class)
from xbench.methods.dino_qsenn import DinoQSENN, ternary_assign
from xbench.methods.dino_sldd import DinoSLDD, sldd_layer


# ------------------------------------------------------------------------------ GLM path


def test_prox_elastic_net_by_hand():
    # step 1, lambda 1, alpha 0.5: soft-threshold by 0.5, then divide by 1 + 0.5
    V = torch.tensor([3.0, -0.5, 1.0, -2.0])
    got = prox_elastic_net(V, 1.0, 1.0, 0.5)
    assert torch.allclose(got, torch.tensor([2.5 / 1.5, 0.0, 0.5 / 1.5, -1.5 / 1.5]))
    # alpha = 1: plain soft-thresholding
    assert torch.allclose(prox_elastic_net(V, 0.5, 2.0, 1.0), torch.tensor([2.0, 0.0, 0.0, -1.0]))


def test_lambda_max_by_hand_and_zero_solution_above_it():
    # N = 4, C = 2, y = (0, 0, 1, 1): pi = (1/2, 1/2); X column 0 = (1, 1, -1, -1), column 1 = (1, -1, 1, -1)
    # grad = (pi - Y)^T X / N: class 0 row: ((-1/2)(1) + (-1/2)(1) + (1/2)(-1) + (1/2)(-1)) / 4 = -1/2 for col 0, 0 col 1
    X = torch.tensor([[1.0, 1.0], [1.0, -1.0], [-1.0, 1.0], [-1.0, -1.0]], dtype=torch.float64)
    y = torch.tensor([0, 0, 1, 1])
    assert lambda_max(X, y, 2, alpha=1.0) == pytest.approx(0.5)
    assert lambda_max(X, y, 2, alpha=0.5) == pytest.approx(1.0)
    above = fit_glm(X, y, 2, lam=0.5 * 1.001, alpha=1.0)
    assert above.n_active == 0
    below = fit_glm(X, y, 2, lam=0.3, alpha=1.0, max_iter=2000)
    assert below.active.tolist() == [True, False]       # only the informative feature enters
    assert below.weight[0, 0] > 0 > below.weight[1, 0]


def _sparse_case(N: int = 240, seed: int = 0):
    """3 classes; class c is told by one feature (5, 1, 6), the other 5 of K = 8 are noise."""
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(N) % 3
    X = 0.3 * torch.randn(N, 8, generator=g, dtype=torch.float64)
    X[torch.arange(N), torch.tensor([5, 1, 6])[y]] += 2.0
    return (X - X.mean(0)) / X.std(0), y


def test_sldd_selection_recovers_the_known_sparse_solution():
    X, y = _sparse_case()
    path = glm_path(X, y, 3, alpha=0.99, stop_active=3)
    assert sorted(entry_order(path)[:3].tolist()) == [1, 5, 6]
    # the SLDD layer with one feature per class puts each class on its own feature, with a positive weight
    W, b, info = sldd_layer(X[:, [1, 5, 6]], y, 3, per_class=1,
                            glm={"alpha": 0.99, "n_lambdas": 20, "eps": 1e-2, "max_iter": 500, "tol": 1e-7},
                            refit_iter=300)
    assert info["nonzero"] == 3
    assert (W != 0).tolist() == [[False, True, False], [True, False, False], [False, False, True]]
    assert (W[W != 0] > 0).all()
    acc = ((X[:, [1, 5, 6]] @ W.T + b).argmax(1) == y).double().mean()
    assert acc > 0.99


def test_entry_order_and_top_k_by_hand():
    from xbench.methods.dino_qpm.glm_path import GLMPoint
    z = torch.zeros(1)
    p0 = GLMPoint(1.0, torch.tensor([[0.0, 0.0, 0.5, 0.0]]), z, 1)
    p1 = GLMPoint(0.5, torch.tensor([[0.2, 0.0, 0.9, -0.7]]), z, 1)
    # feature 2 enters first; features 3 (|0.7|) and 0 (|0.2|) at point 1; feature 1 never
    assert entry_order([p0, p1]).tolist() == [2, 3, 0, 1]
    W = torch.tensor([[0.1, -0.9, 0.0, 0.9], [0.0, 0.0, 0.3, 0.0]])
    # per class the 2 largest |W|, ties by lower index, zeros never kept
    assert top_k_per_class(W, 2).tolist() == [[False, True, False, True], [False, False, True, False]]


# ------------------------------------------------------------------------- Q-SENN


def test_ternary_assignment_by_hand():
    W = torch.tensor([[0.9, -0.1, 0.0, -0.8],
                      [0.2, 0.3, -0.05, 0.1],
                      [-0.5, 0.6, 0.4, 0.0]])
    # one per class on average: budget 3 = the entries 0.9 (c0 f0), -0.8 (c0 f3), 0.6 (c2 f1); class 1 got
    # nothing, so it keeps its own largest |W|, 0.3 at f1.
    assert ternary_assign(W, 1).tolist() == [[1, 0, 0, -1], [0, 1, 0, 0], [0, 1, 0, 0]]
    # two per class on average: budget 6 = 0.9, -0.8, 0.6, -0.5 (c2 f0), 0.4 (c2 f2), 0.3 (c1 f1)
    assert ternary_assign(W, 2).tolist() == [[1, 0, 0, -1], [0, 1, 0, 0], [-1, 1, 1, 0]]


# ----------------------------------------------------------------------- the heads


def _toy_data(N: int = 96, C: int = 4, g: int = 3, D: int = 6, seed: int = 0) -> TrainData:
    rng = np.random.default_rng(seed)
    labels = np.arange(N) % C
    protos = rng.normal(size=(C, D)) * 2
    patch = rng.normal(size=(N, g, g, D)) * 0.5
    patch[:, 0, :2, :] += protos[labels][:, None, :]
    patch = patch.astype(np.float16)
    arrays = {"patch": patch, "cls": patch.mean(axis=(1, 2)), "reg": np.zeros((N, 0, D), np.float16)}
    store = TokenStore(Path("."), {}, arrays, np.arange(N), {})
    return TrainData(store, labels, None, C, torch.device("cpu"))


SMALL = dict(hidden_dim=16, hidden_layers=1, n_features=12, n_select=6, n_per_class=2, dense_epochs=3,
             sparse_epochs=2, dense_batch_size=16, sparse_batch_size=16, glm_lambdas=15, glm_tol=1e-4)


@pytest.fixture
def one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.mark.parametrize("cls", [DinoSLDD, DinoQSENN])
def test_heads_fit_explain_save_load(cls, tmp_path, one_thread):
    data = _toy_data()
    kw = dict(SMALL, **({"iterations": 2} if cls is DinoQSENN else {}))
    m = cls(HeadInfo(num_classes=4, grid=3, dim=6), parse_params(cls, kw))
    log = m.fit(data, FitContext(torch.device("cpu"), seed=0, show_progress=False))
    assert len(log["selection"]["selected"]) == 6 and m.selected.tolist() == log["selection"]["selected"]
    nz = (m.weight != 0).sum(dim=1)
    if cls is DinoSLDD:
        assert (nz <= 2).all() and (nz >= 1).all()
    else:
        assert set(m.weight.unique().tolist()) <= {-1.0, 0.0, 1.0} and (m.bias == 0).all()
        assert int(nz.sum()) >= 8 and (nz >= 1).all() and len(log["rounds"]) == 2
    tokens = data.store.tokens(np.arange(len(data)))
    exp = m.explain(Batch(tokens=tokens))
    assert check_concept_decomposition(exp) < 1e-4
    assert exp.concept_maps.shape == (len(data), 6, 3, 3)
    acc = (exp.logits.argmax(1) == data.labels).float().mean().item()
    assert acc > 0.6
    m.save(tmp_path)
    back = Method.load(tmp_path)
    assert torch.allclose(back.logits(Batch(tokens=tokens)), m.logits(Batch(tokens=tokens)), atol=1e-5)


def test_bad_params_one_line():
    info = HeadInfo(num_classes=4, grid=3, dim=6)
    with pytest.raises(ConfigError, match="n_select"):
        DinoSLDD(info, parse_params(DinoSLDD, {"n_features": 10, "n_select": 20}))
    with pytest.raises(ConfigError, match="glm_alpha"):
        DinoQSENN(info, parse_params(DinoQSENN, {"glm_alpha": 0}))
    parse_params(DinoSLDD, DinoSLDD.quickstart)
    parse_params(DinoQSENN, DinoQSENN.quickstart)
    assert math.isclose(parse_params(DinoSLDD, {}).glm_alpha, 0.99)
