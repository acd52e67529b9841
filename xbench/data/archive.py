"""Safe extraction of tar and zip archives.

Rules (all members are checked *before* anything is written, so a crafted
archive is refused whole and leaves no file behind):

* a member name must be relative: no leading ``/``, no Windows drive or UNC
  prefix, no ``..`` component (after normalising ``\\`` to ``/``);
* a symbolic link is allowed only if its target, resolved against the link's
  own folder, stays inside the extraction folder (absolute targets are
  refused); a hard link only if it names a member path that passes the first
  rule; device files and FIFOs are refused;
* at write time every destination is additionally resolved with
  `os.path.realpath` (which follows links already extracted) and must stay
  inside the folder, which catches link chains that a per-member check cannot;
* tar members are extracted with Python's ``data`` filter on top of these
  checks (no setuid bits, no special files).

Extraction goes to a hidden staging folder inside the destination which is
merged into place when complete, so an interrupted extraction never leaves a
half-filled dataset folder.
"""
from __future__ import annotations

import os
import shutil
import stat
import tarfile
import zipfile
from pathlib import Path, PurePosixPath

from ..errors import DataError


def _bad_name(name: str) -> str | None:
    """Why a member name is unsafe, or None."""
    n = name.replace("\\", "/")
    if not n or n.startswith("/") or (len(n) > 1 and n[1] == ":") or n.startswith("//"):
        return "absolute path"
    if any(part == ".." for part in PurePosixPath(n).parts):
        return "'..' component"
    return None


def _inside(base: str, path: str) -> bool:
    return path == base or path.startswith(base.rstrip(os.sep) + os.sep)


def _link_target_ok(member_name: str, target: str) -> bool:
    """Lexical check: the link's target, relative to the member's folder, stays inside the archive root."""
    t = target.replace("\\", "/")
    if not t or t.startswith("/") or (len(t) > 1 and t[1] == ":"):
        return False
    parent = PurePosixPath(member_name.replace("\\", "/")).parent
    depth = 0
    for part in (parent / t).parts:
        if part in ("", "."):
            continue
        depth += -1 if part == ".." else 1
        if depth < 0:
            return False
    return True


def _tar_problems(tf: tarfile.TarFile) -> list[str]:
    problems = []
    for m in tf.getmembers():
        why = _bad_name(m.name)
        if why:
            problems.append(f"member {m.name!r}: {why}")
        elif m.issym() and not _link_target_ok(m.name, m.linkname):
            problems.append(f"member {m.name!r}: symbolic link to {m.linkname!r} leaves the target folder")
        elif m.islnk() and (_bad_name(m.linkname) is not None):
            problems.append(f"member {m.name!r}: hard link to {m.linkname!r} leaves the target folder")
        elif m.ischr() or m.isblk() or m.isfifo() or m.isdev():
            problems.append(f"member {m.name!r}: device or FIFO")
    return problems


def _zip_is_link(info: zipfile.ZipInfo) -> bool:
    return stat.S_ISLNK(info.external_attr >> 16)


def _zip_problems(zf: zipfile.ZipFile) -> list[str]:
    problems = []
    for info in zf.infolist():
        why = _bad_name(info.filename)
        if why:
            problems.append(f"member {info.filename!r}: {why}")
        elif _zip_is_link(info):
            target = zf.read(info).decode("utf-8", "replace")
            if not _link_target_ok(info.filename, target):
                problems.append(f"member {info.filename!r}: symbolic link to {target!r} leaves the target folder")
    return problems


def _refuse(archive: Path, problems: list[str]) -> DataError:
    more = f" (and {len(problems) - 1} more unsafe members)" if len(problems) > 1 else ""
    return DataError(f"{archive}: refusing to extract an unsafe archive: {problems[0]}{more}; "
                     f"download it again from the official source")


def _checked_dest(root: str, name: str) -> str:
    dest = os.path.realpath(os.path.join(root, name.replace("\\", "/")))
    if not _inside(root, dest):
        raise DataError(f"archive member {name!r} resolves to {dest}, outside {root}; refusing to extract")
    return dest


def _extract_tar(archive: Path, stage: str) -> None:
    with tarfile.open(archive, "r:*") as tf:
        problems = _tar_problems(tf)
        if problems:
            raise _refuse(archive, problems)
        for m in tf.getmembers():
            dest = _checked_dest(stage, m.name)
            if m.issym():
                link_to = os.path.realpath(os.path.join(os.path.dirname(dest), m.linkname))
                if not _inside(stage, link_to):
                    raise _refuse(archive, [f"member {m.name!r}: symbolic link resolves outside the target folder"])
            elif m.islnk():
                _checked_dest(stage, m.linkname)
            tf.extract(m, stage, filter="data")


def _extract_zip(archive: Path, stage: str) -> None:
    with zipfile.ZipFile(archive) as zf:
        problems = _zip_problems(zf)
        if problems:
            raise _refuse(archive, problems)
        for info in zf.infolist():
            dest = _checked_dest(stage, info.filename)
            if info.is_dir():
                os.makedirs(dest, exist_ok=True)
                continue
            os.makedirs(os.path.dirname(dest), exist_ok=True)
            if _zip_is_link(info):
                target = zf.read(info).decode("utf-8")
                if not _inside(stage, os.path.realpath(os.path.join(os.path.dirname(dest), target))):
                    raise _refuse(archive, [f"member {info.filename!r}: symbolic link resolves outside the target folder"])
                os.symlink(target, dest)
                continue
            with zf.open(info) as src, open(dest, "wb") as out:
                shutil.copyfileobj(src, out, 1 << 20)


def _merge(src: Path, dst: Path) -> None:
    """Move the contents of `src` into `dst`, merging folders that exist on both sides."""
    dst.mkdir(parents=True, exist_ok=True)
    for entry in sorted(src.iterdir()):
        target = dst / entry.name
        if entry.is_dir() and not entry.is_symlink() and target.is_dir() and not target.is_symlink():
            _merge(entry, target)
        else:
            if target.is_symlink() or target.is_file():
                target.unlink()
            elif target.exists():
                shutil.rmtree(target)
            os.replace(entry, target)


def archive_kind(path: Path) -> str:
    name = path.name.lower()
    if name.endswith(".zip"):
        return "zip"
    if name.endswith((".tar", ".tgz", ".tar.gz", ".tar.bz2", ".tbz2", ".tar.xz", ".txz")):
        return "tar"
    if zipfile.is_zipfile(path):
        return "zip"
    if tarfile.is_tarfile(path):
        return "tar"
    raise DataError(f"{path}: not a tar or zip archive; download it again")


def list_problems(archive: str | os.PathLike[str]) -> list[str]:
    """The unsafe members of an archive (empty when it is safe to extract)."""
    p = Path(archive)
    if archive_kind(p) == "zip":
        with zipfile.ZipFile(p) as zf:
            return _zip_problems(zf)
    with tarfile.open(p, "r:*") as tf:
        return _tar_problems(tf)


def safe_extract(archive: str | os.PathLike[str], dest: str | os.PathLike[str]) -> Path:
    """Extract `archive` (tar, optionally compressed, or zip) into folder `dest` safely; returns `dest`."""
    a, d = Path(archive), Path(dest)
    kind = archive_kind(a)
    d.mkdir(parents=True, exist_ok=True)
    stage = d / f".xbench-extract-{a.name}"
    if stage.exists():
        shutil.rmtree(stage)
    stage.mkdir()
    stage_real = os.path.realpath(stage)
    try:
        try:
            (_extract_zip if kind == "zip" else _extract_tar)(a, stage_real)
        except tarfile.FilterError as err:  # pragma: no cover - our checks come first
            raise DataError(f"{a}: refusing to extract an unsafe archive ({err})") from None
        except (tarfile.TarError, zipfile.BadZipFile, EOFError) as err:
            raise DataError(f"{a}: damaged archive ({err}); delete it and download it again") from None
        _merge(stage, d)
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    return d


__all__ = ["safe_extract", "list_problems", "archive_kind"]
