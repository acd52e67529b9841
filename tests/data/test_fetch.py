"""`xbench data fetch`: resumable download, sha256 verification, extraction (local server on 127.0.0.1)."""
from __future__ import annotations

import hashlib
import os

import pytest

from fixtures_cub import make_cub
from fixtures_http import FileServer, tar_gz, zip_of
from fixtures_pets_cars import make_pets
from xbench.data.fetch import download, fetch_dataset, parse_sha256_overrides
from xbench.data.sources import SOURCES, Archive
from xbench.errors import ConfigError, DataError


def sha(b: bytes) -> str:
    return hashlib.sha256(b).hexdigest()


PAYLOAD = os.urandom(300_000)


def test_interrupted_transfer_resumes_with_a_range_request(tmp_path):
    with FileServer({"big.bin": PAYLOAD}) as srv:
        a = Archive(file="big.bin", urls=(f"{srv.url}/big.bin",), sha256=sha(PAYLOAD), size=len(PAYLOAD))
        srv.cut["big.bin"] = 120_000
        with pytest.raises(DataError, match="rerun the same command to resume") as e:
            download(a, tmp_path, show=False)
        assert "\n" not in str(e.value)
        part = tmp_path / "big.bin.part"
        assert part.stat().st_size == 120_000 and not (tmp_path / "big.bin").exists()
        got = download(a, tmp_path, show=False)
        assert got.verified and got.path == tmp_path / "big.bin"
        assert got.path.read_bytes() == PAYLOAD and not part.exists()
        assert srv.requests == [("big.bin", None), ("big.bin", "bytes=120000-")]
        download(a, tmp_path, show=False)                          # already there: no new request
        assert len(srv.requests) == 2


def test_server_ignoring_ranges_restarts_the_file(tmp_path):
    with FileServer({"big.bin": PAYLOAD}) as srv:
        a = Archive(file="big.bin", urls=(f"{srv.url}/big.bin",), sha256=sha(PAYLOAD), size=len(PAYLOAD))
        srv.cut["big.bin"] = 50_000
        with pytest.raises(DataError):
            download(a, tmp_path, show=False)
        srv.ignore_range = True
        assert download(a, tmp_path, show=False).path.read_bytes() == PAYLOAD


def test_wrong_sha256_is_refused_and_the_file_removed(tmp_path):
    with FileServer({"big.bin": PAYLOAD}) as srv:
        a = Archive(file="big.bin", urls=(f"{srv.url}/big.bin",), sha256="0" * 64,
                    md5=hashlib.md5(PAYLOAD).hexdigest())
        with pytest.raises(DataError) as e:
            download(a, tmp_path, show=False)
        msg = str(e.value)
        assert sha(PAYLOAD) in msg and "0" * 64 in msg and "md5" in msg and "--sha256 big.bin=" in msg
        assert list(tmp_path.iterdir()) == []


def test_unpinned_archive_is_kept_unverified_until_the_user_confirms(tmp_path):
    with FileServer({"big.bin": PAYLOAD}) as srv:
        a = Archive(file="big.bin", urls=(f"{srv.url}/big.bin",), sha256=None)
        got = download(a, tmp_path, show=False)
        assert not got.verified and got.path == tmp_path / "big.bin.unverified" and got.sha256 == sha(PAYLOAD)
        again = download(a, tmp_path, show=False)                  # still unverified, no new download
        assert not again.verified and len(srv.requests) == 1
        with pytest.raises(DataError, match="does not match"):
            download(a, tmp_path, sha256="f" * 64, show=False)
        got = download(a, tmp_path, show=False)                    # removed after the mismatch: fetched again
        ok = download(a, tmp_path, sha256=got.sha256, show=False)
        assert ok.verified and ok.path.read_bytes() == PAYLOAD


def test_unreachable_server_is_one_line(tmp_path):
    a = Archive(file="x.bin", urls=("http://127.0.0.1:9/x.bin",), sha256=None)
    with pytest.raises(DataError, match="download of x.bin failed") as e:
        download(a, tmp_path, show=False, timeout=5)
    assert "\n" not in str(e.value)


def test_sha256_option_parsing():
    cub, fb = SOURCES["cub"], SOURCES["funnybirds"]
    assert parse_sha256_overrides(["A" * 64], fb) == {"FunnyBirds.zip": "a" * 64}
    assert parse_sha256_overrides([f"segmentations.tgz={'b' * 64}"], cub) == {"segmentations.tgz": "b" * 64}
    with pytest.raises(ConfigError, match="FILE=HEX"):
        parse_sha256_overrides(["a" * 64], cub)
    with pytest.raises(ConfigError, match="hexadecimal"):
        parse_sha256_overrides(["xyz"], fb)
    with pytest.raises(ConfigError, match="no archive"):
        parse_sha256_overrides([f"nope.zip={'a' * 64}"], cub)


def test_pinned_sources_are_well_formed():
    for name, src in SOURCES.items():
        for a in src.archives:
            assert a.urls and all(u.startswith("https://") for u in a.urls)
            assert a.sha256 is None or (len(a.sha256) == 64 and int(a.sha256, 16) >= 0)
            assert a.provides
        assert src.fetchable or src.manual
    assert SOURCES["funnybirds"].archives[0].sha256 is None          # no published hash: never invented
    assert {a.file for a in SOURCES["cub"].archives} == {"CUB_200_2011.tgz", "segmentations.tgz"}


def test_fetch_cub_from_a_mirror_extracts_a_usable_dataset(tmp_path):
    src = tmp_path / "src"
    make_cub(src, n_classes=2, per_class=2, seg="beside")
    files = {"CUB_200_2011.tgz": tar_gz(src, ["CUB_200_2011"]), "segmentations.tgz": tar_gz(src, ["segmentations"])}
    root = tmp_path / "data"
    with FileServer(files) as srv:
        srv.cut["CUB_200_2011.tgz"] = 2000                                     # one interruption on the way
        hashes = {k: sha(v) for k, v in files.items()}
        with pytest.raises(DataError, match="resume"):
            fetch_dataset("cub", root, mirror=srv.url, sha256=hashes, show=False)
        res = fetch_dataset("cub", root, mirror=srv.url, sha256=hashes, show=False)
        assert res.extracted == ["CUB_200_2011.tgz", "segmentations.tgz"]
        assert ("CUB_200_2011.tgz", "bytes=2000-") in srv.requests
        from xbench.data.cub import CUB

        ds = CUB(root)
        assert ds.check(deep=True, show=False) == [] and len(ds.split("train")) == 2
        assert not (root / "downloads").exists()                              # archives deleted after extraction
        assert not [p for p in root.iterdir() if p.name.startswith(".")]      # no staging folder left
        again = fetch_dataset("cub", root, mirror=srv.url, sha256=hashes, show=False)
        assert again.skipped == ["CUB_200_2011.tgz", "segmentations.tgz"] and again.extracted == []


def test_fetch_pets_extracts_into_its_folder(tmp_path):
    src = tmp_path / "src"
    make_pets(src)
    base = src / "oxford-iiit-pet"
    files = {"images.tar.gz": tar_gz(base, ["images"]), "annotations.tar.gz": tar_gz(base, ["annotations"])}
    with FileServer(files) as srv:
        os.environ["XBENCH_MIRROR"] = srv.url
        try:
            res = fetch_dataset("pets", tmp_path / "data", sha256={k: sha(v) for k, v in files.items()},
                                keep_archives=True, show=False)
        finally:
            del os.environ["XBENCH_MIRROR"]
    assert res.extracted == ["images.tar.gz", "annotations.tar.gz"]
    from xbench.data.pets import Pets

    assert Pets(tmp_path / "data").check(show=False) == []
    assert (tmp_path / "data" / "downloads" / "images.tar.gz").read_bytes() == files["images.tar.gz"]


def test_cli_fetch_funnybirds_needs_a_confirmed_hash(tmp_path, capsys, monkeypatch):
    from fixtures_funnybirds import make_funnybirds
    from xbench.cli import main

    src = tmp_path / "src"
    make_funnybirds(src)
    blob = zip_of(src, "FunnyBirds")
    root = tmp_path / "data"
    with FileServer({"FunnyBirds.zip": blob}) as srv:
        monkeypatch.setenv("XBENCH_MIRROR", srv.url)
        assert main(["data", "fetch", "funnybirds", "--data-root", str(root), "--quiet"]) == 1
        out = capsys.readouterr()
        assert sha(blob) in out.out and "--sha256 FunnyBirds.zip=" + sha(blob) in out.out
        assert (root / "downloads" / "FunnyBirds.zip.unverified").exists() and not (root / "FunnyBirds").exists()
        assert main(["data", "fetch", "funnybirds", "--data-root", str(root), "--quiet", "--sha256", sha(blob)]) == 0
        out = capsys.readouterr().out
        assert f"funnybirds: ready in {root / 'FunnyBirds'}" in out and "train: 3 images" in out
        assert len(srv.requests) == 1                                          # the unverified file was reused
        assert main(["data", "fetch", "funnybirds", "--data-root", str(root), "--quiet"]) == 0
        assert "already in place" in capsys.readouterr().out
