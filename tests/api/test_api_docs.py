"""The Python example of the README (also in docs/api.md) runs as written (after a tiny `xbench run`)."""
from __future__ import annotations

import re
from pathlib import Path

import torch
from api_fixtures import run_values, synthbirds

from xbench.config import build_config
from xbench.runner import Runner

DOC = Path(__file__).resolve().parents[2] / "README.md"
API_DOC = Path(__file__).resolve().parents[2] / "docs" / "api.md"


def doc_example(doc: Path = DOC) -> str:
    blocks = re.findall(r"```python\n(.*?)```", doc.read_text(), flags=re.S)
    return next(b for b in blocks if b.startswith("# api_example.py"))


def test_readme_and_api_doc_show_the_same_example():
    assert doc_example(DOC) == doc_example(API_DOC)


def test_api_example_runs(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    values = run_values(tmp_path, "synthbirds", results="xbench-results")
    assert len(Runner(build_config(cli_values=values)).run().done) == 1
    synthbirds().split("test").image(0).save(tmp_path / "bird.png")
    code = doc_example()
    torch.manual_seed(0)  # the example's stand-in model is randomly initialised
    exec(compile(code, str(DOC), "exec"), {"__name__": "api_example"})
    out = capsys.readouterr().out
    assert "<xbench model linear-probe-patch on dinov2-tiny-test (random)" in out
    assert "torch.Size([1, 16, 16])" in out
    assert re.search(r"^accuracy ok \d\.\d+$", out, flags=re.M)
    assert re.search(r"^plausibility ok \d\.\d+$", out, flags=re.M)
    assert re.search(r"^consistency n/a None$", out, flags=re.M)
