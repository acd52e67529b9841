"""`xbench data fetch`: download with progress and resume, verify sha256, extract safely.

Download protocol for one archive (file `F` under `<data root>/downloads/`):

* bytes arrive in `F.part`; an existing `F.part` is resumed with an HTTP
  `Range: bytes=<size>-` request. A `206` reply whose `Content-Range` starts at
  that offset is appended; a `200` reply (server ignores ranges) restarts the
  file from zero; a `416` reply restarts it too. A dropped connection, a
  timeout or a short body raises a one-line `DataError` and keeps `F.part`, so
  rerunning the same command continues where it stopped;
* the finished file is hashed (sha256, and md5 for diagnostics). With a pinned
  or user-given sha256 it must match: on success `F.part` becomes `F`; on a
  mismatch the file is deleted (it cannot be resumed) and the error names both
  hashes (and says so when the published md5 does match, i.e. when only our
  sha256 pin might be wrong);
* with no sha256 known (FunnyBirds), the file is kept as `F.unverified`, the
  computed sha256 is printed, and nothing is extracted until the user reruns
  with `--sha256 <hash>` after comparing it with a source they trust;
* the verified archive is extracted with `xbench.data.archive.safe_extract`
  and deleted afterwards unless `keep_archives`.

Tests point the base address at a local server with `mirror` (or
`$XBENCH_MIRROR`): archive `F` is then fetched from `<mirror>/F`.
"""
from __future__ import annotations

import hashlib
import http.client
import os
import re
import socket
import sys
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import ConfigError, DataError
from .archive import safe_extract
from .sources import SOURCES, Archive, Source

CHUNK = 1 << 20
_HEX64 = re.compile(r"^[0-9a-fA-F]{64}$")


def _bar(total: int | None, initial: int, desc: str, show: bool):
    from tqdm.auto import tqdm

    from ..progress import is_quiet

    return tqdm(total=total, initial=initial, desc=desc, unit="B", unit_scale=True, unit_divisor=1024,
                disable=is_quiet() or not show, file=sys.stderr, dynamic_ncols=True, leave=False, mininterval=0.5)


def _user_agent() -> str:
    from .. import __version__

    return f"xbench/{__version__} (python urllib)"


@dataclass
class Downloaded:
    path: Path
    sha256: str
    verified: bool


def file_hashes(path: Path, show: bool = True) -> tuple[str, str]:
    """(sha256, md5) of a file, with a progress bar."""
    sha, md5 = hashlib.sha256(), hashlib.md5()
    with open(path, "rb") as f, _bar(path.stat().st_size, 0, f"verify {path.name}", show) as bar:
        for chunk in iter(lambda: f.read(CHUNK), b""):
            sha.update(chunk)
            md5.update(chunk)
            bar.update(len(chunk))
    return sha.hexdigest(), md5.hexdigest()


def _content_range_start(value: str | None) -> int | None:
    m = re.match(r"\s*bytes\s+(\d+)-\d+/(\d+|\*)", value or "")
    return int(m.group(1)) if m else None


def _transfer(url: str, part: Path, size: int | None, show: bool, timeout: float) -> None:
    """Bring `part` to the complete file from `url`, resuming what is there. Raises OSError-family on failure."""
    offset = part.stat().st_size if part.exists() else 0
    if size is not None and offset > size:
        part.unlink()
        offset = 0
    if size is not None and offset == size:
        return
    req = urllib.request.Request(url, headers={"User-Agent": _user_agent()})
    if offset:
        req.add_header("Range", f"bytes={offset}-")
    try:
        resp = urllib.request.urlopen(req, timeout=timeout)
    except urllib.error.HTTPError as err:
        if err.code == 416 and offset:
            total = re.match(r"\s*bytes\s+\*/(\d+)", err.headers.get("Content-Range", "") if err.headers else "")
            if total and int(total.group(1)) == offset:
                return  # the part is already the whole file
            part.unlink()  # the part is not a prefix of this file: start again
            return _transfer(url, part, size, show, timeout)
        raise
    with resp:
        status = getattr(resp, "status", 200)
        mode = "ab"
        if offset and (status != 206 or _content_range_start(resp.headers.get("Content-Range")) != offset):
            offset, mode = 0, "wb"  # the server sent the whole file
        elif not offset:
            mode = "wb"
        length = resp.headers.get("Content-Length")
        expected = int(length) if length and length.isdigit() else None
        total = size if size is not None else (offset + expected if expected is not None else None)
        got = 0
        with open(part, mode) as out, _bar(total, offset, f"download {part.name[:-5]}", show) as bar:
            while True:
                chunk = resp.read(CHUNK)
                if not chunk:
                    break
                out.write(chunk)
                got += len(chunk)
                bar.update(len(chunk))
        if expected is not None and got < expected:
            raise http.client.IncompleteRead(b"", expected - got)


def download(archive: Archive, downloads: Path, *, mirror: str | None = None, sha256: str | None = None,
             show: bool = True, timeout: float = 60.0) -> Downloaded:
    """Download (or resume) one archive into `downloads/`; see the module docstring."""
    downloads.mkdir(parents=True, exist_ok=True)
    dest = downloads / archive.file
    part = downloads / (archive.file + ".part")
    unverified = downloads / (archive.file + ".unverified")
    expected = (sha256 or archive.sha256 or "").lower() or None
    # the pinned size belongs to the pinned file; a user-given hash may describe another file (a mirror's)
    size = archive.size if expected is not None and expected == archive.sha256 else None
    if dest.exists():
        return Downloaded(dest, archive.sha256 or "", True)
    if unverified.exists():  # a complete earlier download, waiting for the user's sha256
        digest, _ = file_hashes(unverified, show)
        if expected is None:
            return Downloaded(unverified, digest, False)
        if digest != expected:
            unverified.unlink()
            raise DataError(f"{archive.file}: sha256 {digest} does not match the expected {expected}; "
                            f"the file was removed; rerun to download it again")
        os.replace(unverified, dest)
        return Downloaded(dest, digest, True)
    urls = [mirror.rstrip("/") + "/" + archive.file] if mirror else list(archive.urls)
    if not (size is not None and part.exists() and part.stat().st_size == size):
        errors = []
        for url in urls:
            try:
                _transfer(url, part, size, show, timeout)
                errors = []
                break
            except (urllib.error.URLError, http.client.HTTPException, OSError, socket.timeout) as err:
                reason = getattr(err, "reason", None) or err
                errors.append(f"{url}: {type(err).__name__}: {reason}")
        if errors:
            kept = part.stat().st_size if part.exists() else 0
            raise DataError(f"download of {archive.file} failed ({errors[-1]}); {kept} bytes are kept in {part}, "
                            f"rerun the same command to resume")
    if size is not None and part.stat().st_size != size:
        n = part.stat().st_size
        part.unlink()
        raise DataError(f"{archive.file}: downloaded {n} bytes, expected {size}; the file was removed, "
                        f"rerun the command to download it again")
    digest, md5 = file_hashes(part, show)
    if expected is None:
        os.replace(part, unverified)
        return Downloaded(unverified, digest, False)
    if digest != expected:
        part.unlink()
        hint = ""
        if archive.md5 and md5 == archive.md5:
            hint = (f" (its md5 {md5} matches the published one, so the pinned sha256 may be outdated: "
                    f"rerun with --sha256 {archive.file}={digest} to accept it)")
        raise DataError(f"{archive.file}: sha256 {digest} does not match the expected {expected}{hint}; "
                        f"the file was removed; rerun to download it again")
    os.replace(part, dest)
    return Downloaded(dest, digest, True)


@dataclass
class FetchResult:
    dataset: str
    extracted: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    unverified: list[tuple[str, Path, str]] = field(default_factory=list)  # (file, path, computed sha256)


def parse_sha256_overrides(values: list[str] | None, src: Source) -> dict[str, str]:
    """`--sha256 HEX` (the dataset's one unpinned archive, or its only one) or `--sha256 FILE=HEX`."""
    out: dict[str, str] = {}
    files = [a.file for a in src.archives]
    for v in values or []:
        file, _, hexv = v.rpartition("=")
        if not _HEX64.match(hexv):
            raise ConfigError(f"--sha256 {v}: give 64 hexadecimal digits, optionally as FILE=HEX")
        if not file:
            unpinned = [a.file for a in src.archives if a.sha256 is None]
            candidates = unpinned if len(unpinned) == 1 else files if len(files) == 1 else []
            if not candidates:
                raise ConfigError(f"--sha256 {v}: {src.dataset} has several archives ({', '.join(files)}); "
                                  f"write --sha256 FILE=HEX")
            file = candidates[0]
        if file not in files:
            raise ConfigError(f"--sha256 {v}: {src.dataset} has no archive {file!r} (archives: {', '.join(files)})")
        out[file] = hexv.lower()
    return out


def fetch_dataset(name: str, root: Path, *, mirror: str | None = None, sha256: dict[str, str] | None = None,
                  keep_archives: bool = False, force: bool = False, show: bool = True) -> FetchResult:
    """Download, verify and extract every archive of dataset `name` under `root`."""
    src = SOURCES.get(name)
    if src is None or not src.fetchable:
        raise ConfigError(f"dataset {name!r} cannot be fetched automatically")
    mirror = mirror or os.environ.get("XBENCH_MIRROR") or None
    result = FetchResult(name)
    downloads = root / "downloads"
    for archive in src.archives:
        if not force and archive.provides and all((root / p).exists() for p in archive.provides):
            result.skipped.append(archive.file)
            continue
        got = download(archive, downloads, mirror=mirror, sha256=(sha256 or {}).get(archive.file), show=show)
        if not got.verified:
            result.unverified.append((archive.file, got.path, got.sha256))
            continue
        safe_extract(got.path, root / archive.into)
        missing = [p for p in archive.provides if not (root / p).exists()]
        if missing:
            raise DataError(f"{got.path}: extracted, but {root / missing[0]} is still missing; the archive is not "
                            f"the expected one (delete it and fetch again)")
        if not keep_archives:
            got.path.unlink()
        result.extracted.append(archive.file)
    if downloads.exists() and not any(downloads.iterdir()):
        downloads.rmdir()
    return result


__all__ = ["download", "fetch_dataset", "file_hashes", "parse_sha256_overrides", "Downloaded", "FetchResult"]
