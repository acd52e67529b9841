"""One dense model per (data, seed, device, dense config) feeds dino-qpm, dino-sldd and dino-qsenn."""
from __future__ import annotations

import torch

from xbench.methods.base import FitContext, HeadInfo, parse_params
from xbench.methods.dino_qpm import dense_stage
from xbench.methods.dino_qpm.method import DinoQPM
from xbench.methods.dino_qsenn import DinoQSENN
from xbench.methods.dino_sldd import DinoSLDD
from xbench.shared import SharedStore

from test_glm_heads import SMALL, _toy_data

INFO = HeadInfo(num_classes=4, grid=3, dim=6)
KEY = {"dataset": "toy", "backbone": "tiny", "weights_hash": "abc"}


def _ctx(store, seed=0, key=KEY):
    return FitContext(torch.device("cpu"), seed=seed, show_progress=False, shared=store, data_key=key)


def _dense_state(m):
    return {k: v.clone() for k, v in dense_stage._dense_state(m).items()}


def test_second_and_third_heads_reuse_the_dense_model(tmp_path, monkeypatch):
    torch.set_num_threads(1)
    calls = []
    real = dense_stage.train_dense
    monkeypatch.setattr(dense_stage, "train_dense", lambda m, d, c: calls.append(m.spec.name) or real(m, d, c))
    data, store = _toy_data(), SharedStore(tmp_path / "shared")
    qpm = DinoQPM(INFO, parse_params(DinoQPM, {k: v for k, v in SMALL.items() if not k.startswith("glm")}
                                     | {"qp_solver": "greedy"}))
    log_q = qpm.fit(data, _ctx(store))
    assert calls == ["dino-qpm"] and log_q["dense"]["shared"]["reused"] is False
    dense_after_qpm_dense_stage = log_q["dense"]["loss"]
    sldd = DinoSLDD(INFO, parse_params(DinoSLDD, SMALL))
    log_s = sldd.fit(data, _ctx(store))
    qsenn = DinoQSENN(INFO, parse_params(DinoQSENN, SMALL | {"iterations": 1}))
    log_n = qsenn.fit(data, _ctx(store))
    assert calls == ["dino-qpm"]                       # trained once
    for log in (log_s, log_n):
        assert log["dense"]["shared"] == {"key": log_q["dense"]["shared"]["key"], "reused": True,
                                          "trained_by": "dino-qpm"}
        assert log["dense"]["loss"] == dense_after_qpm_dense_stage
    assert len(list((tmp_path / "shared" / "dense").glob("*/meta.json"))) == 1
    # the reused dense model is the one a fresh, unshared SLDD fit trains itself
    alone = DinoSLDD(INFO, parse_params(DinoSLDD, SMALL))
    monkeypatch.setattr(alone, "sparse_stages", lambda *a: None)
    alone.fit(data, FitContext(torch.device("cpu"), seed=0, show_progress=False))
    fresh = DinoSLDD(INFO, parse_params(DinoSLDD, SMALL))
    monkeypatch.setattr(fresh, "sparse_stages", lambda *a: None)
    fresh.fit(data, _ctx(store))
    a, b = _dense_state(alone), _dense_state(fresh)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_changed_dense_config_seed_or_data_trains_a_new_model(tmp_path, monkeypatch):
    torch.set_num_threads(1)
    calls = []
    real = dense_stage.train_dense
    monkeypatch.setattr(dense_stage, "train_dense", lambda m, d, c: calls.append(1) or real(m, d, c))
    data, store = _toy_data(), SharedStore(tmp_path)
    for params, ctx in [(SMALL, _ctx(store)), (SMALL | {"dense_epochs": 2}, _ctx(store)),
                        (SMALL | {"dense_lr": 5e-3}, _ctx(store)), (SMALL, _ctx(store, seed=1)),
                        (SMALL, _ctx(store, key=KEY | {"dataset": "other"})),
                        (SMALL | {"sparse_epochs": 1, "n_per_class": 1}, _ctx(store))]:   # not dense: reused
        m = DinoSLDD(INFO, parse_params(DinoSLDD, params))
        monkeypatch.setattr(m, "sparse_stages", lambda *a: None)
        m.fit(data, ctx)
    assert len(calls) == 5
    assert len(list((tmp_path / "dense").glob("*/meta.json"))) == 5


def test_runner_shares_the_dense_model_between_jobs(tmp_path):
    from xbench.config import build_config
    from xbench.results import ResultsStore
    from xbench.runner import Runner

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    dense = {"hidden_dim": 16, "hidden_layers": 1, "n_features": 16, "dense_epochs": 1, "dense_batch_size": 16}
    small = {"n_select": 8, "n_per_class": 2, "sparse_epochs": 1, "sparse_batch_size": 16}
    glm = {"glm_lambdas": 10, "glm_tol": 1e-4}
    cfg = build_config(cli_values={
        "methods": ["dino-qpm", "dino-sldd", "dino-qsenn"], "datasets": ["synthbirds"], "metrics": ["accuracy"],
        "backbone": "weight-free", "results": str(tmp_path / "res"), "cache": str(tmp_path / "cache"),
        "quiet": True, "device": "cpu", "loader_workers": 0,
        "dataset_options": {"synthbirds": {"num_classes": 4, "train_per_class": 4, "test_per_class": 2,
                                           "resolution": 96}},
        "params": {"dino-qpm": dense | small | {"qp_solver": "greedy"}, "dino-sldd": dense | small | glm,
                   "dino-qsenn": dense | small | glm | {"iterations": 1}},
    })
    try:
        summary = Runner(cfg).run()
    finally:
        torch.set_num_threads(n)
    assert not summary.failed and len(summary.done) == 3
    store = ResultsStore(tmp_path / "res")
    shared = {store.get(j)["method"]: store.get(j)["training"]["dense"]["shared"] for j in summary.done}
    assert shared["dino-qpm"]["reused"] is False
    assert shared["dino-sldd"]["reused"] is True and shared["dino-qsenn"]["reused"] is True
    assert len({s["key"] for s in shared.values()}) == 1
    assert len(list((tmp_path / "res" / "shared" / "dense").glob("*/meta.json"))) == 1
