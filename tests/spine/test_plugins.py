"""Extension points: a method from a local file (--include) and from an installed distribution (entry point)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from tiny import cli_values

PLUGIN = textwrap.dedent('''
    """A plugin head for tests: a patch-mean linear probe with a different name."""
    from dataclasses import dataclass

    import torch
    from torch import nn

    from xbench.explanation import Explanation
    from xbench.methods.base import Method, ParamsBase, soft_cross_entropy
    from xbench.registry import register_method


    @register_method("{name}", provides={{"logits"}})
    class PluginHead(Method):
        """Mean-patch linear head ({name})."""

        @dataclass
        class Params(ParamsBase):
            epochs: int = 3

        def __init__(self, info, params=None):
            super().__init__(info, params)
            self.linear = nn.Linear(info.dim, info.num_classes)

        def fit(self, data, ctx):
            opt = torch.optim.Adam(self.parameters(), lr=1e-2)
            for _ in ctx.epochs(self.params.epochs, "{name}"):
                for b in data.batches(16, ctx.generator()):
                    loss = soft_cross_entropy(self.linear(b.tokens.patch.mean((1, 2))), b.targets)
                    opt.zero_grad(); loss.backward(); opt.step()
            return {{"final_loss": float(loss)}}

        def explain(self, batch):
            return Explanation(logits=self.linear(batch.tokens.patch.mean((1, 2))))
''')


def _cli(args: list[str], env: dict | None = None) -> subprocess.CompletedProcess:
    e = dict(os.environ)
    e.update(env or {})
    return subprocess.run([sys.executable, "-m", "xbench", *args], capture_output=True, text=True, env=e, timeout=600)


def _tiny_args(tmp: Path, method: str) -> list[str]:
    v = cli_values(tmp)
    cfg = tmp / "tiny.json"
    cfg.write_text(json.dumps({"dataset_options": v["dataset_options"]}))
    return ["run", "--methods", method, "--metrics", "accuracy", "--backbone", "dinov2-tiny-test", "--weights", "random",
            "--results", str(tmp / "res"), "--cache", str(tmp / "cache"), "--config", str(cfg), "--quiet",
            "--loader-workers", "0", "--no-leaderboard"]


def test_method_from_a_file(tmp_path):
    f = tmp_path / "my_head.py"
    f.write_text(PLUGIN.format(name="file-head"))
    ls = _cli(["ls", "methods", "--include", str(f)])
    assert ls.returncode == 0 and "file-head" in ls.stdout and "Mean-patch linear head" in ls.stdout
    r = _cli(_tiny_args(tmp_path, "file-head") + ["--include", str(f)])
    assert r.returncode == 0, r.stderr
    rec = json.loads(next((tmp_path / "res" / "records").glob("*.json")).read_text())
    assert rec["method"] == "file-head" and rec["status"] == "complete"
    assert rec["metrics"]["accuracy"]["status"] == "ok"


def test_two_includes_with_the_same_folder_and_file_name_both_load(tmp_path):
    """a/plug/m.py and b/plug/m.py are two modules: the module name comes from the whole path."""
    for d, name in (("a", "head-a"), ("b", "head-b")):
        f = tmp_path / d / "plug" / "m.py"
        f.parent.mkdir(parents=True)
        f.write_text(PLUGIN.format(name=name))
    ls = _cli(["ls", "methods", "--include", str(tmp_path / "a/plug/m.py"), "--include", str(tmp_path / "b/plug/m.py")])
    assert ls.returncode == 0, ls.stderr
    assert "head-a" in ls.stdout and "head-b" in ls.stdout


def test_method_from_an_installed_distribution(tmp_path):
    pkg = tmp_path / "src" / "xbench_plugin_demo"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "heads.py").write_text(PLUGIN.format(name="entry-point-head"))
    (tmp_path / "src" / "pyproject.toml").write_text(textwrap.dedent('''
        [build-system]
        requires = ["setuptools>=61"]
        build-backend = "setuptools.build_meta"

        [project]
        name = "xbench-plugin-demo"
        version = "0.0.1"

        [project.entry-points."xbench.methods"]
        entry-point-head = "xbench_plugin_demo.heads:PluginHead"

        [tool.setuptools]
        packages = ["xbench_plugin_demo"]
    '''))
    target = tmp_path / "site"
    pip = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--no-build-isolation", "--no-index",
                          "--quiet", "--target", str(target), str(tmp_path / "src")],
                         capture_output=True, text=True, timeout=600)
    assert pip.returncode == 0, pip.stderr
    assert list(target.glob("xbench_plugin_demo-0.0.1.dist-info/entry_points.txt"))
    env = {"PYTHONPATH": str(target) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    ls = _cli(["ls", "methods"], env)
    assert ls.returncode == 0 and "entry-point-head" in ls.stdout and "entry-point:xbench-plugin-demo" in ls.stdout
    r = _cli(_tiny_args(tmp_path, "entry-point-head"), env)
    assert r.returncode == 0, r.stderr
    rec = json.loads(next((tmp_path / "res" / "records").glob("*.json")).read_text())
    assert rec["method"] == "entry-point-head" and rec["metrics"]["accuracy"]["status"] == "ok"


def test_registry_errors_are_one_line():
    from xbench.errors import ConfigError
    from xbench.registry import METHODS, register_method

    with pytest.raises(ConfigError) as e:
        METHODS.get("linear-prob")
    assert "did you mean 'linear-probe'" in str(e.value)

    class A:
        """a"""

    class B:
        """b"""

    register_method("dup-test-head")(A)
    try:
        with pytest.raises(ConfigError):
            register_method("dup-test-head")(B)
    finally:
        METHODS.remove("dup-test-head")
