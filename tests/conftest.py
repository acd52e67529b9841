"""Test-wide guards: no network, no writes outside temporary folders, no progress bars."""
from __future__ import annotations

import ipaddress
import os
import socket

import pytest

_real_connect = socket.socket.connect
_real_connect_ex = socket.socket.connect_ex


def _is_local(address) -> bool:
    if isinstance(address, (str, bytes)):  # AF_UNIX
        return True
    host = address[0]
    if host in ("localhost", ""):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _guarded_connect(self, address):
    if not _is_local(address):
        raise OSError(f"tests must not reach the network (tried {address!r})")
    return _real_connect(self, address)


def _guarded_connect_ex(self, address):
    if not _is_local(address):
        raise OSError(f"tests must not reach the network (tried {address!r})")
    return _real_connect_ex(self, address)


def pytest_configure(config):
    socket.socket.connect = _guarded_connect
    socket.socket.connect_ex = _guarded_connect_ex
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["XBENCH_QUIET"] = "1"
    os.environ.setdefault("TQDM_DISABLE", "1")


@pytest.fixture(autouse=True)
def _isolated_dirs(tmp_path_factory, monkeypatch):
    """Default data, cache and results folders live in a per-test temporary folder."""
    base = tmp_path_factory.mktemp("xbench-home")
    monkeypatch.setenv("XDG_CACHE_HOME", str(base / "cache-home"))
    monkeypatch.setenv("XBENCH_CACHE", str(base / "features"))
    monkeypatch.setenv("XBENCH_DATA", str(base / "data"))
    monkeypatch.setenv("TORCH_HOME", str(base / "torch"))
    monkeypatch.setenv("HF_HOME", str(base / "hf"))
    yield
