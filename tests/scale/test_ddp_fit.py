"""DDP head training: each rank takes its part of the same global batches; 2 gloo ranks = 1 process."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from scale_tiny import one_thread, tiny_values  # noqa: F401 (autouse fixture)

from xbench.cache import TokenStore
from xbench.config import build_config
from xbench.errors import ConfigError
from xbench.methods.base import FitContext, TrainData
from xbench.registry import METHODS
from xbench.results import ResultsStore
from xbench.runner import Runner
from xbench.views import PlainView


def _data(n: int) -> TrainData:
    arrays = {"patch": np.zeros((n, 1, 1, 2), np.float16), "cls": np.arange(2 * n, dtype=np.float16).reshape(n, 2),
              "reg": np.zeros((n, 0, 2), np.float16)}
    store = TokenStore(Path("."), {}, arrays, np.arange(n), {})
    return TrainData(store, np.arange(n) % 2, None, 2, torch.device("cpu"))


def test_each_rank_gets_its_part_of_every_global_batch():
    data = _data(10)
    # one process, batch 4: [0..3], [4..7], [8, 9]; three ranks split each one with tensor_split
    one = [(b.index.tolist(), b.global_size) for b in data.batches(4, shuffle=False)]
    assert one == [([0, 1, 2, 3], 4), ([4, 5, 6, 7], 4), ([8, 9], 2)]
    parts = [[(b.index.tolist(), b.global_size) for b in data.batches(4, shuffle=False, shard=(r, 3))]
             for r in range(3)]
    assert parts[0] == [([0, 1], 4), ([4, 5], 4), ([8], 2)]
    assert parts[1] == [([2], 4), ([6], 4), ([9], 2)]
    assert parts[2] == [([3], 4), ([7], 4), ([], 2)]   # same number of steps on every rank, even when empty
    # shuffled: every rank draws the same order from identically seeded generators
    order = [b.index.tolist() for b in data.batches(4, generator=torch.Generator().manual_seed(5))]
    for step, glob in enumerate(order):
        got = [list(data.batches(4, generator=torch.Generator().manual_seed(5), shard=(r, 2)))[step].index.tolist()
               for r in range(2)]
        assert got[0] + got[1] == glob
        assert got[0] and got[1] and data.tokens(torch.tensor(got[0])).cls[0, 0] == 2 * got[0][0]


def test_global_mean_gives_the_global_batch_gradient_after_averaging():
    # l_i = w * x_i; the global mean's gradient is mean(x). DDP averages the ranks' gradients.
    x = torch.tensor([1.0, 2.0, 3.0])
    for shards in ([x[:2], x[2:]], [x[:1], x[1:]]):
        grads = []
        for rank, xs in enumerate(shards):
            w = torch.tensor(1.0, requires_grad=True)
            ctx = FitContext(device=torch.device("cpu"), seed=0, world_size=2, rank=rank)
            ctx.global_mean(w * xs, global_size=3).backward()
            grads.append(w.grad.item())
        assert sum(grads) / 2 == pytest.approx(2.0)            # (1+2)*2/3 and 3*2/3 -> 2 = mean(1, 2, 3)
    # a global batch of one row over two ranks: one rank has nothing, the average is still that row's gradient
    w = torch.tensor(1.0, requires_grad=True)
    FitContext(device=torch.device("cpu"), seed=0, world_size=2, rank=0).global_mean(w * torch.tensor([5.0]), 1).backward()
    assert w.grad.item() / 2 == pytest.approx(5.0)
    one = FitContext(device=torch.device("cpu"), seed=0)
    assert one.global_mean(x, 3).item() == pytest.approx(2.0) and one.all_reduce_sum(2.5) == 2.5
    lin = torch.nn.Linear(2, 2)
    assert one.ddp(lin) is lin


def test_linear_probes_declare_ddp():
    assert METHODS.get("linear-probe").spec.supports_ddp
    assert METHODS.get("linear-probe-patch").spec.supports_ddp


@pytest.mark.parametrize("solver", [
    # AdamW, batch 8 over 20 rows: global batches of 8, 8, 4 -> shards of 4, 4, 2 per rank
    {"solver": "adamw"},
    # full-batch L-BFGS: each rank's loss/gradient sums are all-reduced; a well-conditioned problem
    # (the optimum is unique and sharp) so both runs reach the same point within tolerance
    {"solver": "lbfgs", "l2": 0.01},
])
def test_two_gloo_ranks_train_the_same_heads_as_one_process(tmp_path, solver):
    params = {m: {**p, **solver} for m, p in tiny_values(tmp_path)["params"].items()}
    Runner(build_config(cli_values=tiny_values(tmp_path / "one", params=params))).run()
    two = tiny_values(tmp_path / "two", ddp=2, params=params)
    two["cache"] = str(tmp_path / "one" / "cache")
    s = Runner(build_config(cli_values=two)).run()
    assert len(s.done) == 2 and not s.failed
    ra = {r["job_id"]: r for r in ResultsStore(tmp_path / "one" / "results").records()}
    rb = {r["job_id"]: r for r in ResultsStore(tmp_path / "two" / "results").records()}
    assert ra.keys() == rb.keys() and len(ra) == 2  # the same jobs: DDP does not change the job identity
    for job_id, a in ra.items():
        b = rb[job_id]
        assert b["training"]["world_size"] == 2 and "world_size" not in a["training"]
        # each rank opens the sealed entries cheaply and reads the train split once (the pooling pass)
        train = Runner(build_config(cli_values=two)).extractor.store(
            Runner(build_config(cli_values=two)).dataset("synthbirds"), "train", PlainView()).nbytes
        assert [r["bytes_read"] for r in b["training"]["io_per_rank"]] == [train, train]
        assert b["training"]["final_loss"] == pytest.approx(a["training"]["final_loss"], rel=1e-5)
        assert b["metrics"]["accuracy"]["value"] == pytest.approx(a["metrics"]["accuracy"]["value"], rel=1e-5)
        ha = load_file(str(tmp_path / "one" / "results" / a["head"] / "head.safetensors"))
        hb = load_file(str(tmp_path / "two" / "results" / b["head"] / "head.safetensors"))
        for k in ha:
            scale = ha[k].abs().max().item()
            assert (ha[k] - hb[k]).abs().max().item() <= 1e-5 * scale, (job_id, k)
            assert not torch.equal(ha[k], torch.zeros_like(ha[k]))


def test_ddp_must_be_positive(tmp_path):
    with pytest.raises(ConfigError, match="--ddp 0"):
        build_config(cli_values=tiny_values(tmp_path, ddp=0))


def test_ddp_for_a_method_without_ddp_support_is_said_in_one_line(tmp_path, capsys):
    one = Runner(build_config(cli_values=tiny_values(tmp_path, methods="linear-probe,dino-qpm,gradcam", ddp=2)))
    line = one.ddp_notice()
    assert line == ("xbench: --ddp 2: dino-qpm, gradcam do not support DistributedDataParallel and train in one "
                    "process (DDP: linear-probe)")
    one.warn_ddp()
    assert capsys.readouterr().err.strip().splitlines() == [line]
    assert Runner(build_config(cli_values=tiny_values(tmp_path, methods="linear-probe", ddp=2))).ddp_notice() is None
    assert Runner(build_config(cli_values=tiny_values(tmp_path, methods="dino-qpm"))).ddp_notice() is None
