"""The engine's imports run one way: `xbench/` never imports `xbench.methods` (methods import the engine), there
is no runner <-> executors circle, and planning the cached views does not build the heads."""
from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def _imports(path: Path) -> list[tuple[str, int]]:
    """(absolute module name, level) of every import statement in `path`."""
    out = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out += [(a.name, 0) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            out.append((node.module or "", node.level))
    return out


def test_no_core_module_imports_methods():
    bad = []
    for path in sorted((REPO / "xbench").rglob("*.py")):
        for name, level in _imports(path):
            if (level == 0 and (name == "xbench.methods" or name.startswith("xbench.methods."))) or \
                    (level > 0 and (name == "methods" or name.startswith("methods."))):
                bad.append(f"{path.relative_to(REPO)}: {name}")
    assert bad == []


def test_engine_modules_import_without_methods_and_executors_without_a_circle():
    code = ("import sys\n"
            "import xbench.executors.ddp_fit, xbench.executors.tasks, xbench.executors.local_pool\n"
            "import xbench.runner, xbench.evaluation, xbench.api, xbench.trained, xbench.method_api\n"
            "print([m for m in sys.modules if m.startswith('xbench.methods')])\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "[]"
    # the executors the runner uses (ddp_fit for --ddp) import nothing from the runner: no circle
    used = {n.rsplit(".", 1)[-1] for n, lvl in _imports(REPO / "xbench" / "runner.py") if n.startswith("executors.")}
    assert used == {"ddp_fit"}
    for name in used:
        assert "runner" not in {n for n, lvl in _imports(REPO / "xbench" / "executors" / f"{name}.py") if lvl > 0}


def test_methods_base_still_exports_the_core_types():
    import xbench.method_api as core
    import xbench.methods.base as base

    for name in ("Batch", "HeadInfo", "TrainData", "TrainBatch", "FitContext", "parse_params"):
        assert getattr(base, name) is getattr(core, name)


def test_feature_views_do_not_build_heads(tmp_path, monkeypatch):
    from tiny import cli_values

    from xbench.config import build_config
    from xbench.executors.tasks import feature_views
    from xbench.methods.protofm.method import ProtoFM
    from xbench.runner import Runner

    runner = Runner(build_config(cli_values=cli_values(tmp_path, methods="protofm,linear-probe")))
    ds = runner.dataset("synthbirds")
    monkeypatch.setattr(ProtoFM, "__init__", lambda *a, **k: pytest.fail("planning built a protofm head"))
    views = feature_views(runner, ds)
    assert [s for s, _ in views] == ["train", "test", "train"] and views[2][1].kind == "augment"
