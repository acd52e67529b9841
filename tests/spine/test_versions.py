"""Method and metric versions: records store them; a rerun recomputes what an older version produced."""
from __future__ import annotations

import dataclasses
import json

from tiny import cli_values

from xbench.config import build_config
from xbench.registry import METHODS, METRICS
from xbench.runner import Runner


def _bump(monkeypatch, registry, name: str, version: int) -> None:
    e = registry.get(name)
    monkeypatch.setitem(registry._entries, name,
                        dataclasses.replace(e, spec=dataclasses.replace(e.spec, version=version)))


def _record(tmp_path) -> dict:
    (p,) = (tmp_path / "results" / "records").glob("*.json")
    return json.loads(p.read_text())


def _run(tmp_path):
    cfg = build_config(cli_values=cli_values(tmp_path, methods="linear-probe-patch",
                                             metrics="accuracy,completeness"))
    r = Runner(cfg)
    return r, r.run()


def test_record_stores_versions_and_a_rerun_recomputes_a_changed_metric(tmp_path, monkeypatch, capsys):
    _run(tmp_path)
    rec = _record(tmp_path)
    assert rec["method_version"] == 1
    assert {m: e["version"] for m, e in rec["metrics"].items()} == {"accuracy": 1, "completeness": 1}
    first = {m: dict(e) for m, e in rec["metrics"].items()}
    capsys.readouterr()
    _, s = _run(tmp_path)
    assert s.skipped  # nothing changed: nothing recomputed

    _bump(monkeypatch, METRICS, "completeness", 2)
    capsys.readouterr()
    _, s = _run(tmp_path)
    err = capsys.readouterr().err
    assert s.done and "metric completeness is at version 2, the record holds version 1: recomputing it" in err
    rec = _record(tmp_path)
    assert rec["metrics"]["completeness"]["version"] == 2 and rec["metrics"]["accuracy"]["version"] == 1
    assert rec["metrics"]["accuracy"] == first["accuracy"]  # untouched
    assert rec["io"]["fit"]["bytes_read"] == 0  # no retraining: the head was reloaded, no train token read


def test_a_changed_method_version_retrains_the_head(tmp_path, monkeypatch, capsys):
    _run(tmp_path)
    before = _record(tmp_path)
    _bump(monkeypatch, METHODS, "linear-probe-patch", 3)
    capsys.readouterr()
    _, s = _run(tmp_path)
    err = capsys.readouterr().err
    assert s.done and "method linear-probe-patch is at version 3, the record holds version 1: retraining" in err
    rec = _record(tmp_path)
    assert rec["method_version"] == 3
    assert rec["io"]["fit"]["bytes_read"] > 0  # trained again from the cached tokens
    assert rec["provenance"]["date"] != before["provenance"]["date"] or rec["timings"] != before["timings"]
