"""Plugins are imported only when named.

An installed distribution declares a method `marker-head` in the entry-point group `xbench.methods`;
importing its module creates a marker file. The registry lists the name from the distribution's
metadata without importing it, so `xbench run --methods linear-probe`, `xbench leaderboard`,
`xbench ls datasets|metrics`, `METHODS.names()` and `"marker-head" in METHODS` leave no marker;
`--methods marker-head` (a lookup by name) and `xbench ls methods` (which shows every method's
description, so it imports them: the documented choice) do. A file given to `--include` is imported
only when passed.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

from rel_harness import base_env, python_cli, tiny_config

PLUGIN = textwrap.dedent('''
    """A plugin whose import leaves a marker file (path from $MARKER)."""
    import os
    from pathlib import Path

    from torch import nn

    from xbench.explanation import Explanation
    from xbench.methods.base import Method
    from xbench.registry import register_method

    Path(os.environ["MARKER"]).write_text("imported")


    @register_method("marker-head", provides={"logits"})
    class MarkerHead(Method):
        """Untrained CLS head (plugin-loading test)."""

        def __init__(self, info, params=None):
            super().__init__(info, params)
            self.linear = nn.Linear(info.dim, info.num_classes)

        def fit(self, data, ctx):
            return {}

        def explain(self, batch):
            return Explanation(logits=self.linear(batch.tokens.cls))
''')

STEPS = textwrap.dedent('''
    import json, os, sys
    from pathlib import Path
    marker = Path(os.environ["MARKER"])
    from xbench.cli import main
    from xbench.registry import METHODS
    seen = {}
    seen["names"] = ("marker-head" in METHODS.names(), "marker-head" in METHODS, marker.exists())
    for label, argv in json.loads(sys.argv[1]):
        rc = main(argv)
        seen[label] = (rc, marker.exists())
    print("RESULT " + json.dumps(seen))
''')


def _install(tmp: Path) -> Path:
    pkg = tmp / "src" / "xbench_marker_plugin"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "heads.py").write_text(PLUGIN)
    (tmp / "src" / "pyproject.toml").write_text(textwrap.dedent('''
        [build-system]
        requires = ["setuptools>=61"]
        build-backend = "setuptools.build_meta"

        [project]
        name = "xbench-marker-plugin"
        version = "0.0.1"

        [project.entry-points."xbench.methods"]
        marker-head = "xbench_marker_plugin.heads:MarkerHead"

        [tool.setuptools]
        packages = ["xbench_marker_plugin"]
    '''))
    target = tmp / "site"
    pip = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--no-build-isolation", "--no-index",
                          "--quiet", "--target", str(target), str(tmp / "src")], capture_output=True, text=True,
                         timeout=300)
    assert pip.returncode == 0, pip.stderr
    return target


def test_entry_point_plugin_imported_only_when_named(tmp_path):
    site = _install(tmp_path)
    marker = tmp_path / "MARKER"
    env = base_env(PYTHONPATH=str(site) + os.pathsep + os.environ.get("PYTHONPATH", ""), MARKER=str(marker),
                   XBENCH_QUIET="1")
    cfg = tiny_config(tmp_path)
    common = ["--metrics", "accuracy", "--backbone", "dinov2-tiny-test", "--weights", "random", "--device", "cpu",
              "--results", str(tmp_path / "res"), "--cache", str(tmp_path / "cache"), "--config", str(cfg),
              "--quiet", "--loader-workers", "0", "--no-leaderboard"]
    steps = [
        ("run-other", ["run", "--methods", "linear-probe", *common]),
        ("leaderboard", ["leaderboard", "--results", str(tmp_path / "res")]),
        ("ls-datasets", ["ls", "datasets"]),
        ("ls-metrics", ["ls", "metrics"]),
        ("run-named", ["run", "--methods", "marker-head", *common]),
    ]
    r = subprocess.run([sys.executable, "-c", STEPS, json.dumps(steps)], capture_output=True, text=True, env=env,
                       timeout=300)
    assert r.returncode == 0, r.stderr
    seen = json.loads(next(line for line in r.stdout.splitlines() if line.startswith("RESULT "))[7:])
    assert seen["names"] == [True, True, False]      # listed and found by name, not imported
    for step in ("run-other", "leaderboard", "ls-datasets", "ls-metrics"):
        assert seen[step] == [0, False], (step, seen)
    assert seen["run-named"] == [0, True]             # named: imported, trained and scored
    recs = [json.loads(p.read_text()) for p in (tmp_path / "res" / "records").glob("*.json")]
    assert {rec["method"] for rec in recs} == {"linear-probe", "marker-head"}
    assert all(rec["status"] == "complete" for rec in recs)

    marker.unlink()
    ls = python_cli(["ls", "methods"], env)
    assert ls.rc == 0 and "marker-head" in ls.out and "entry-point:xbench-marker-plugin" in ls.out
    assert marker.exists()                            # `ls methods` shows descriptions: it imports plugins


def test_include_file_imported_only_when_passed(tmp_path):
    plugin = tmp_path / "local_head.py"
    plugin.write_text(PLUGIN.replace("marker-head", "local-marker-head"))
    marker = tmp_path / "MARKER"
    env = base_env(MARKER=str(marker), XBENCH_QUIET="1")
    code = ("import sys; from xbench.cli import main; from xbench.registry import METHODS; "
            "rc = main(['ls', 'methods']); assert rc == 0; "
            "import os; assert not os.path.exists(os.environ['MARKER']); "
            "assert 'local-marker-head' not in METHODS; "
            f"rc = main(['ls', 'methods', '--include', {str(plugin)!r}]); assert rc == 0; "
            "assert os.path.exists(os.environ['MARKER']) and 'local-marker-head' in METHODS; print('OK')")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 0 and r.stdout.strip().endswith("OK"), r.stderr
