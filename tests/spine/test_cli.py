"""The command line: one-line errors with non-zero exits, ls, cache, leaderboard."""
from __future__ import annotations

import json
import pytest
from tiny import cli_values

from xbench.cli import main


def _run(capsys, argv):
    code = main(argv)
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.mark.parametrize("argv, needle", [
    (["run", "--methods", "protofmm"], "unknown method 'protofmm'"),
    (["run", "--datasets", "synthbird"], "did you mean 'synthbirds'"),
    (["run", "--backbone", "vit_base_patch14_reg4_dino"], "unknown backbone"),
    (["run", "--metrics", "acuracy"], "did you mean 'accuracy'"),
    (["run", "--device", "tpu"], "--device tpu"),
    (["run", "--config", "/nonexistent/run.yaml"], "config file /nonexistent/run.yaml"),
    (["run", "--set", "linear-probe.nope=1"], "has no parameter 'nope'"),
    (["run", "--set", "linear-probe.epochs=abc"], "not a valid int"),
])
def test_bad_input_is_one_line(capsys, tmp_path, argv, needle):
    code, out, err = _run(capsys, argv + ["--results", str(tmp_path / "r"), "--quiet"])
    assert code == 2
    lines = [ln for ln in err.strip().splitlines() if ln.strip()]
    assert len(lines) == 1 and needle in lines[0] and "Traceback" not in err
    assert not (tmp_path / "r" / "records").exists()


def test_offline_weights_message(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    code, out, err = _run(capsys, ["run", "--backbone", "vit_base_patch14_reg4_dinov2", "--methods", "linear-probe",
                                   "--results", str(tmp_path / "r"), "--quiet"])
    assert code == 2 and "--weights" in err and "dinov2_vitb14_reg4_pretrain.pth" in err
    assert len(err.strip().splitlines()) == 1


def test_results_path_that_is_a_file(capsys, tmp_path):
    f = tmp_path / "file"
    f.write_text("x")
    code, out, err = _run(capsys, _tiny(tmp_path, results=str(f)))
    assert code == 2 and "not writable" in err and str(f) in err and len(err.strip().splitlines()) == 1


def _tiny(tmp_path, **kw):
    v = cli_values(tmp_path, **kw)
    cfg = tmp_path / "tiny.json"
    cfg.write_text(json.dumps({"dataset_options": v["dataset_options"], "params": v["params"]}))
    return ["run", "--methods", "linear-probe-patch", "--metrics", "accuracy", "--backbone", v["backbone"],
            "--weights", "random", "--results", v["results"], "--cache", v["cache"], "--config", str(cfg),
            "--quiet", "--loader-workers", "0"]


def test_run_prints_leaderboard_and_cache_commands(capsys, tmp_path):
    code, out, err = _run(capsys, _tiny(tmp_path))
    assert code == 0
    assert "| linear-probe-patch |" in out and "weights: random" in out
    code, out, err = _run(capsys, ["leaderboard", "--results", str(tmp_path / "results")])
    assert code == 0 and "linear-probe-patch" in out
    code, out, err = _run(capsys, ["leaderboard", "--results", str(tmp_path / "results"), "--out",
                                   str(tmp_path / "lb"), "--formats", "md,json"])
    assert code == 0 and (tmp_path / "lb" / "leaderboard.md").exists()
    data = json.loads((tmp_path / "lb" / "leaderboard.json").read_text())
    assert data["tables"][0]["methods"] == ["linear-probe-patch"]
    code, out, err = _run(capsys, ["cache", "ls", "--cache", str(tmp_path / "cache")])
    assert code == 0 and out.count("synthbirds") == 2 and "complete" in out
    code, out, err = _run(capsys, ["cache", "clear", "--cache", str(tmp_path / "cache")])
    assert code == 0 and "removed 2" in out


def test_ls_lists_every_kind(capsys):
    code, out, err = _run(capsys, ["ls"])
    assert code == 0
    for word in ("methods:", "linear-probe-patch", "metrics:", "accuracy", "datasets:", "synthbirds",
                 "backbones:", "weight-free", "vit_base_patch14_reg4_dinov2"):
        assert word in out
