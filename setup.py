"""Package list for the three top-level folders (see pyproject.toml).

`methods/` and `metrics/` are installed as `xbench.methods` and `xbench.metrics`;
setuptools cannot glob mapped folders, so the list is computed here.
"""
from setuptools import find_packages, setup


def _mapped(folder: str, prefix: str) -> list[str]:
    return [prefix] + [f"{prefix}.{p}" for p in find_packages(folder)]


packages = ["xbench"] + [f"xbench.{p}" for p in find_packages("xbench")]
packages += _mapped("methods", "xbench.methods") + _mapped("metrics", "xbench.metrics")
package_dir = {"xbench": "xbench", "xbench.methods": "methods", "xbench.metrics": "metrics"}

setup(packages=packages, package_dir=package_dir)
