"""DINO-QPM stages 1 and 3 (SPEC 3.3): MLP, diversity loss, sparse head, explanations, save/load."""
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
from xbench.methods.dino_qpm.losses import diversity_loss, l1
from xbench.methods.dino_qpm.method import DinoQPM
from xbench.methods.dino_qpm.model import PatchMLP, pool
from xbench.tokens import Tokens

LN3 = math.log(3.0)


# ------------------------------------------------------------------- diversity loss


def test_diversity_loss_hand_built_2x2():
    # Two images, K = 2 feature maps on a 2x2 grid, C = 2 classes.
    # F_1 = [[ln 3, 0], [0, 0]] -> exp = [3, 1, 1, 1] / 6 -> S_1 = [1/2, 1/6, 1/6, 1/6]
    # F_2 = [[c, c], [c, c]]    -> S_2 = [1/4, 1/4, 1/4, 1/4]
    # f = (ln3/4, ln3/2): f_2 = 2 f_1, so a = (1/2, 1).
    maps = torch.tensor([[[LN3, 0.0], [0.0, 0.0]], [[LN3 / 2] * 2] * 2])[None].repeat(2, 1, 1, 1)
    f = pool(maps)
    assert torch.allclose(f[0], torch.tensor([LN3 / 4, LN3 / 2]))
    W = torch.tensor([[4.0, -3.0], [0.0, 2.0]])
    logits = torch.tensor([[1.0, 0.0], [0.0, 1.0]])  # image 0 predicts class 0, image 1 class 1
    # image 0: w = |(4, -3)| / (5 + 1e-5) = (0.8, 0.6) * r0, r0 = 5 / 5.00001
    #   feature 1: 0.8 * 1/2 * S_1 = (0.2, 1/15, 1/15, 1/15) * r0
    #   feature 2: 0.6 * 1 * S_2 = (0.15, 0.15, 0.15, 0.15) * r0
    #   per-pixel max = (0.2, 0.15, 0.15, 0.15) * r0, sum = 0.65 r0
    # image 1: w = (0, 2) / (2 + 1e-5) = (0, r1), r1 = 2 / 2.00001
    #   per-pixel max = max(0, r1 * 1 * 1/4) = r1 / 4, sum = r1
    # L = -(beta / B) (0.65 r0 + r1), beta = 0.5, B = 2
    r0, r1 = 5 / 5.00001, 2 / 2.00001
    expected = -(0.5 / 2) * (0.65 * r0 + r1)
    got = diversity_loss(maps, f, W, logits, beta=0.5)
    assert got.item() == pytest.approx(expected, rel=1e-6)
    # flattened pixels give the same value
    assert diversity_loss(maps.flatten(2), f, W, logits, beta=0.5).item() == pytest.approx(expected, rel=1e-6)


def test_diversity_loss_all_zero_features_is_zero():
    maps = torch.zeros(3, 4, 2, 2)
    W = torch.randn(5, 4)
    assert diversity_loss(maps, pool(maps), W, torch.randn(3, 5), beta=1.0).item() == 0.0


def test_l1_is_mean_absolute_value():
    assert l1(torch.tensor([[1.0, -3.0], [0.0, 4.0]])).item() == pytest.approx(2.0)


# ----------------------------------------------------------------------------- MLP


def test_mlp_maps_are_nonnegative_and_batchnorm_uses_all_patches():
    torch.manual_seed(0)
    mlp = PatchMLP(in_dim=6, hidden_dim=8, hidden_layers=3, out_dim=5)
    assert len([m for m in mlp.net if isinstance(m, torch.nn.Linear)]) == 4  # D -> H -> H -> H -> N_f
    x = torch.randn(3, 4, 4, 6) * 3 + 1
    mlp.train()
    maps = mlp(x)
    assert maps.shape == (3, 5, 4, 4)
    assert (maps >= 0).all()
    # BatchNorm statistics are over all B*g*g patches: the first BN's running mean after one
    # step from 0 is momentum * (mean over the 48 patches of the first Linear's output).
    lin, bn = mlp.net[0], mlp.net[1]
    expected = bn.momentum * lin(x.reshape(-1, 6)).mean(dim=0)
    assert torch.allclose(bn.running_mean, expected.detach(), atol=1e-6)
    # patches are processed independently in eval mode: permuting the grid permutes the maps
    mlp.eval()
    perm = mlp(x.flip(1))
    assert torch.allclose(perm, mlp(x).flip(2), atol=1e-6)


# ------------------------------------------------------------------ sparse head


def _info(C: int = 4, g: int = 3, D: int = 6) -> HeadInfo:
    return HeadInfo(num_classes=C, grid=g, dim=D)


def _small_params(**kw) -> object:
    base = dict(hidden_dim=16, hidden_layers=1, n_features=10, n_select=6, n_per_class=2, dense_epochs=3,
                sparse_epochs=2, dense_batch_size=16, sparse_batch_size=16, qp_time_limit=10.0)
    base.update(kw)
    return parse_params(DinoQPM, base)


def _with_head(seed: int = 0) -> DinoQPM:
    torch.manual_seed(seed)
    m = DinoQPM(_info(), _small_params())
    m.selected = torch.tensor([1, 3, 4, 6, 8, 9])
    w = torch.zeros(4, 6)
    for c, cols in enumerate([(0, 1), (1, 2), (3, 4), (0, 5)]):
        w[c, list(cols)] = 1.0
    m.w_bin = w
    m.mu = torch.rand(6)
    m.sigma = torch.rand(6) + 0.5
    m.eval()
    return m


def test_sparse_logits_are_w_bin_on_normalised_selected_features():
    m = _with_head()
    tokens = Tokens(torch.randn(5, 3, 3, 6), torch.zeros(5, 6), torch.zeros(5, 0, 6))
    with torch.no_grad():
        exp = m.explain(Batch(tokens=tokens))
        F_all = m.mlp(tokens.patch)                         # [5, 10, 3, 3]
    f_sel = F_all.mean(dim=(2, 3))[:, [1, 3, 4, 6, 8, 9]]
    z = (f_sel - m.mu) / m.sigma
    expected = z @ m.w_bin.T
    assert torch.equal(exp.logits, exp.concept_scores @ exp.class_weights.T)
    assert torch.allclose(exp.logits, expected, atol=1e-6)
    assert torch.allclose(exp.concept_scores, z, atol=1e-6)
    assert exp.class_bias is None
    assert check_concept_decomposition(exp) == 0.0
    assert torch.allclose(m.logits(Batch(tokens=tokens)), exp.logits)


def test_explanation_contract_and_attribution_is_sum_of_class_maps():
    m = _with_head()
    tokens = Tokens(torch.randn(5, 3, 3, 6), torch.zeros(5, 6), torch.zeros(5, 0, 6))
    with torch.no_grad():
        exp = m.explain(Batch(tokens=tokens))
        F_all = m.mlp(tokens.patch)
    assert exp.provides == frozenset({"logits", "attribution", "concepts"})
    assert exp.concept_maps.shape == (5, 6, 3, 3)
    assert exp.concept_scores.shape == (5, 6)
    assert exp.class_weights.shape == (4, 6)
    assert (exp.concept_maps >= 0).all()
    assert torch.allclose(exp.concept_maps, F_all[:, [1, 3, 4, 6, 8, 9]])
    assert torch.allclose(exp.concept_scores * m.sigma + m.mu, exp.concept_maps.mean(dim=(2, 3)), atol=1e-6)
    # class 2 uses selected columns 3 and 4 = features 6 and 8
    assert torch.allclose(exp.attribution(2), F_all[:, 6] + F_all[:, 8], atol=1e-6)
    # per-image targets
    t = torch.tensor([0, 1, 2, 3, 0])
    cols = {0: (1, 3), 1: (3, 4), 2: (6, 8), 3: (1, 9)}
    want = torch.stack([F_all[i, cols[int(c)][0]] + F_all[i, cols[int(c)][1]] for i, c in enumerate(t)])
    assert torch.allclose(exp.attribution(t), want, atol=1e-6)


def test_save_load_round_trip_gives_identical_logits(tmp_path: Path):
    m = _with_head()
    tokens = Tokens(torch.randn(4, 3, 3, 6), torch.zeros(4, 6), torch.zeros(4, 0, 6))
    m.save(tmp_path / "head")
    back = Method.load(tmp_path / "head", expect=_info())
    assert isinstance(back, DinoQPM)
    with torch.no_grad():
        assert torch.equal(back.explain(Batch(tokens=tokens)).logits, m.explain(Batch(tokens=tokens)).logits)
    assert torch.equal(back.selected, m.selected)


def test_prepare_load_resizes_qp_buffers():
    src = _with_head()
    state = src.state_dict()
    # a head built with other sizes for the QP buffers still loads the state
    other = DinoQPM(_info(), _small_params(n_select=8, n_per_class=2))
    other.prepare_load(state)
    other.load_state_dict(state, strict=True)
    assert other.w_bin.shape == (4, 6) and torch.equal(other.w_bin, src.w_bin)


# ------------------------------------------------------------------------ params


def test_params_defaults_overrides_and_validation():
    p = DinoQPM.Params()
    assert (p.hidden_dim, p.hidden_layers, p.n_features) == (2048, 3, 512)
    assert (p.dense_epochs, p.dense_lr, p.dense_weight_decay, p.dense_batch_size) == (25, 1e-3, 7e-4, 32)
    assert (p.dense_dropout, p.dense_div_beta) == (0.2, 0.5)
    assert (p.n_select, p.n_per_class) == (50, 5)
    assert (p.sparse_epochs, p.sparse_lr, p.sparse_weight_decay, p.sparse_batch_size) == (25, 5e-3, 8e-4, 16)
    assert (p.sparse_div_beta, p.sparse_l1_maps, p.sparse_l1_pooled) == (1.0, 5.0, 1.0)
    assert parse_params(DinoQPM, {"dense_epochs": "5", "qp_solver": "greedy"}).dense_epochs == 5
    parse_params(DinoQPM, DinoQPM.quickstart)  # the quickstart overrides are valid names and types
    with pytest.raises(ConfigError, match="qp_solver"):
        DinoQPM(_info(), parse_params(DinoQPM, {"qp_solver": "gurobi"}))
    with pytest.raises(ConfigError, match="n_select"):
        DinoQPM(_info(), parse_params(DinoQPM, {"n_features": 20}))
    with pytest.raises(ConfigError, match="schedule"):
        DinoQPM(_info(), parse_params(DinoQPM, {"schedule": "linear"}))


# -------------------------------------------------------------------------- fit


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


@pytest.fixture
def one_thread():
    """Training on a shared, busy CPU: one intra-op thread is far faster; restored afterwards."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.mark.parametrize("solver", ["highs", "greedy"])
def test_fit_three_stages_on_toy_tokens(solver: str, one_thread):
    data = _toy_data()
    m = DinoQPM(_info(), _small_params(qp_solver=solver))
    log = m.fit(data, FitContext(torch.device("cpu"), seed=0, show_progress=False))
    qp = log["qp"]
    for key in ("objective", "bound", "gap", "solver", "wall_time", "fallback_used", "selected", "assignment"):
        assert key in qp
    assert qp["fallback_used"] is (solver == "greedy")
    assert len(log["dense"]["loss"]) == 3 and len(log["sparse"]["loss"]) == 2
    assert math.isfinite(log["final_loss"])
    # W_bin: binary, 2 features per class, distinct class sets, columns = the selected features
    w = m.w_bin
    assert set(w.unique().tolist()) <= {0.0, 1.0}
    assert (w.sum(dim=1) == 2).all()
    assert len({tuple(r) for r in w.tolist()}) == 4
    assert m.selected.tolist() == qp["selected"] and len(qp["selected"]) == 6
    sel = m.selected.numpy()
    assert [sorted(sel[np.flatnonzero(r)].tolist()) for r in w.numpy()] == qp["assignment"]  # feature ids per class
    assert (m.sigma > 0).all()
    # the fit is deterministic given the seed
    m2 = DinoQPM(_info(), _small_params(qp_solver=solver))
    log2 = m2.fit(data, FitContext(torch.device("cpu"), seed=0, show_progress=False))
    assert log2["dense"]["loss"] == log["dense"]["loss"] and torch.equal(m2.w_bin, w)
    # and it learns the toy task (4 classes, chance 0.25)
    tokens = data.store.tokens(np.arange(len(data)))
    acc = (m.logits(Batch(tokens=tokens)).argmax(dim=1) == data.labels).float().mean().item()
    assert acc > 0.6


def test_mu_sigma_are_training_statistics_of_the_selected_dense_features(one_thread):
    data = _toy_data()
    m = DinoQPM(_info(), _small_params(sparse_epochs=0))
    m.fit(data, FitContext(torch.device("cpu"), seed=1, show_progress=False))
    f, labels = m.pooled_features(data)  # no sparse epochs: the MLP is still the dense one
    fs = f[:, m.selected]
    assert torch.allclose(m.mu, fs.mean(dim=0), atol=1e-6)
    assert torch.allclose(m.sigma, fs.std(dim=0, unbiased=False).clamp_min(1e-6), atol=1e-6)
    assert torch.equal(labels, data.labels)


# --------------------------------------------------------------------- end to end


def test_runner_job_on_tiny_synthbirds(tmp_path: Path, one_thread):
    from xbench.config import build_config
    from xbench.results import ResultsStore
    from xbench.runner import Runner

    metrics = ["accuracy", "plausibility", "contrastiveness", "sid@5", "class_independence", "local_size",
               "global_size"]
    cfg = build_config(cli_values={
        "methods": ["dino-qpm"], "datasets": ["synthbirds"], "metrics": metrics, "backbone": "weight-free",
        "results": str(tmp_path / "res"), "cache": str(tmp_path / "cache"), "quiet": True, "device": "cpu",
        "dataset_options": {"synthbirds": {"num_classes": 6, "train_per_class": 6, "test_per_class": 2,
                                           "resolution": 64}},
        "params": {"dino-qpm": {"hidden_dim": 16, "hidden_layers": 1, "n_features": 12, "n_select": 8,
                                "n_per_class": 5, "dense_epochs": 2, "sparse_epochs": 1, "qp_time_limit": 5}},
    })
    summary = Runner(cfg).run()
    assert not summary.failed and len(summary.done) == 1
    rec = ResultsStore(tmp_path / "res").get(summary.done[0])
    assert rec["status"] == "complete"
    qp = rec["training"]["qp"]
    assert qp["n_select"] == 8 and len(qp["selected"]) == 8 and "gap" in qp and "fallback_used" in qp
    for name in metrics:
        assert rec["metrics"][name]["status"] == "ok", (name, rec["metrics"][name])
    assert rec["metrics"]["global_size"]["value"] <= 8
    assert rec["metrics"]["local_size"]["value"] <= 5
    assert 0.0 <= rec["metrics"]["plausibility"]["value"] <= 1.0
