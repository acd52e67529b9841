"""The README's method-author example runs as written, from a file, end to end."""
from __future__ import annotations

import re
from pathlib import Path

from tiny import cli_values

from xbench.config import build_config
from xbench.results import ResultsStore
from xbench.runner import Runner

README = Path(__file__).resolve().parents[2] / "README.md"


def readme_example() -> str:
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    block = next(b for b in blocks if b.startswith("# my_heads.py"))
    return block


def test_readme_example_runs_from_a_file(tmp_path):
    f = tmp_path / "my_heads.py"
    f.write_text(readme_example())
    cfg = build_config(cli_values=cli_values(tmp_path, methods="proto-max,linear-probe-patch", include=[str(f)],
                                             metrics="accuracy"))
    summary = Runner(cfg).run()
    assert len(summary.done) == 2 and not summary.failed
    recs = {r["method"]: r for r in ResultsStore(tmp_path / "results").records()}
    assert recs["proto-max"]["status"] == "complete"
    assert recs["proto-max"]["config"]["params"]["epochs"] == 3  # quickstart override (tiny backbone)
    assert recs["proto-max"]["metrics"]["accuracy"]["status"] == "ok"


def test_readme_example_follows_the_contract(tmp_path):
    import torch

    from xbench.explanation import check_concept_decomposition
    from xbench.methods.base import Batch, HeadInfo
    from xbench.registry import METHODS, include
    from xbench.tokens import Tokens

    f = tmp_path / "my_heads2.py"
    f.write_text(readme_example().replace('"proto-max"', '"proto-max-2"'))
    include(f)
    cls = METHODS.get("proto-max-2").obj
    head = cls(HeadInfo(num_classes=3, grid=4, dim=8))
    tok = Tokens(torch.randn(2, 4, 4, 8), torch.randn(2, 8), torch.zeros(2, 0, 8))
    exp = head.explain(Batch(tokens=tok))
    check_concept_decomposition(exp)
    assert exp.attribution(1).shape == (2, 4, 4)
    METHODS.remove("proto-max-2")
