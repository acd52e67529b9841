"""Same config and seed, same machine, CPU: identical numbers, bit for bit.

Two `xbench run` processes with the same command line but fresh results and cache folders each: the
exact concept model (linear-probe-patch), DINO-QPM and ProtoFM with tiny quickstart-style parameters,
every default metric (FunnyBirds interventions, concept metrics with their noisy view, plausibility,
...), seed 7. Every metric entry (status and value), every saved head tensor (bytes) and every cached
token array (bytes) must be equal; so must the training logs, clock readings aside.
"""
from __future__ import annotations

import json
from pathlib import Path

from rel_harness import cache_digest, cli, head_tensors, records, run_args, tiny_config

METHODS = "linear-probe-patch,dino-qpm,protofm"
PARAMS = {
    "dino-qpm": {"hidden_dim": 16, "n_features": 12, "n_select": 6, "n_per_class": 2, "dense_epochs": 2,
                 "sparse_epochs": 1, "dense_batch_size": 16, "sparse_batch_size": 16},
    "protofm": {"epochs": 1, "proj_dim": 16, "num_prototypes": 12, "batch_size": 16, "views": 1},
}


def _untimed(obj):
    """A training log without its clock readings (`timings`, `*_s`, `wall_time`, `seconds`)."""
    if isinstance(obj, dict):
        return {k: _untimed(v) for k, v in obj.items()
                if k not in ("timings", "wall_time", "seconds") and not k.endswith("_s")}
    if isinstance(obj, list):
        return [_untimed(v) for v in obj]
    return obj


def _run(tmp: Path, root: Path) -> Path:
    args = run_args(tmp, root / "results", root / "cache", methods=METHODS, extra=["--seeds", "7"])
    i = args.index("--metrics")
    del args[i:i + 2]  # every default metric
    args[args.index("--config") + 1] = str(tiny_config(tmp, PARAMS, name="determinism.json"))
    r = cli(args, timeout=300)
    assert r.rc == 0, r.err[-2000:]
    return root / "results"


def test_same_seed_same_bits(tmp_path):
    a, b = _run(tmp_path, tmp_path / "a"), _run(tmp_path, tmp_path / "b")
    ra, rb = records(a), records(b)
    assert sorted(ra) == sorted(rb) and len(ra) == 3
    for jid in ra:
        assert ra[jid]["status"] == "complete", ra[jid].get("error")
        ma, mb = ra[jid]["metrics"], rb[jid]["metrics"]
        assert set(ma) == set(mb) and len(ma) > 10
        ok = [m for m, e in ma.items() if e["status"] == "ok"]
        assert len(ok) >= 12, ma  # most default metrics apply to these concept models on synthbirds
        for m in ma:
            # bit for bit: the JSON text of a float round-trips exactly
            assert (ma[m]["status"], json.dumps(ma[m]["value"])) == (mb[m]["status"], json.dumps(mb[m]["value"])), \
                (jid, m, ma[m], mb[m])
            assert ma[m].get("extras") == mb[m].get("extras"), (jid, m)
        assert _untimed(ra[jid]["training"]) == _untimed(rb[jid]["training"]), jid
        assert ra[jid]["config_hash"] == rb[jid]["config_hash"]
    ha, hb = head_tensors(a), head_tensors(b)
    assert set(ha) == set(ra) and ha == hb
    ca, cb = cache_digest(tmp_path / "a" / "cache"), cache_digest(tmp_path / "b" / "cache")
    assert len(ca) >= 4 and ca == cb  # train, test, interventions, noise (and ProtoFM's augmented view)
