"""Safe extraction: crafted tar / zip archives must be refused with nothing written outside (or inside) the target."""
from __future__ import annotations

import io
import os
import stat
import tarfile
import zipfile
from pathlib import Path

import pytest

from xbench.data.archive import list_problems, safe_extract
from xbench.errors import DataError


def make_tar(path: Path, members: list[tuple]) -> Path:
    """members: ("file", name, bytes) | ("sym", name, target) | ("hard", name, target) | ("dir", name)."""
    with tarfile.open(path, "w:gz") as tf:
        for kind, name, *rest in members:
            info = tarfile.TarInfo(name)
            if kind == "file":
                info.size = len(rest[0])
                tf.addfile(info, io.BytesIO(rest[0]))
            elif kind == "dir":
                info.type = tarfile.DIRTYPE
                info.mode = 0o755
                tf.addfile(info)
            else:
                info.type = tarfile.SYMTYPE if kind == "sym" else tarfile.LNKTYPE
                info.linkname = rest[0]
                tf.addfile(info)
    return path


def make_zip(path: Path, members: list[tuple]) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        for kind, name, data in members:
            if kind == "sym":
                info = zipfile.ZipInfo(name)
                info.external_attr = (stat.S_IFLNK | 0o777) << 16
                zf.writestr(info, data)
            else:
                zf.writestr(name, data)
    return path


def all_files(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


@pytest.fixture()
def box(tmp_path):
    """tmp/outer/ (watched for escapes) containing tmp/outer/target/ (the extraction folder)."""
    outer = tmp_path / "outer"
    (outer / "target").mkdir(parents=True)
    return outer


TAR_ATTACKS = {
    "dotdot": [("file", "good.txt", b"ok"), ("file", "../evil.txt", b"pwned")],
    "nested-dotdot": [("file", "sub/../../evil.txt", b"pwned")],
    "absolute": [("file", "good.txt", b"ok"), ("file", "/tmp/xbench-abs-evil.txt", b"pwned")],
    "symlink-out": [("sym", "link", "../../evil-dir"), ("file", "link/evil.txt", b"pwned")],
    "symlink-absolute": [("sym", "etc", "/etc"), ("file", "etc/evil.txt", b"pwned")],
    "hardlink-out": [("hard", "hl", "../evil.txt")],
    # each link looks harmless on its own; together sub/up2 -> sub/up/.. resolves to the parent of the target
    "symlink-chain": [("dir", "sub"), ("sym", "sub/up", ".."), ("sym", "sub/up2", "up/.."),
                      ("file", "sub/up2/evil.txt", b"pwned")],
}


@pytest.mark.parametrize("attack", sorted(TAR_ATTACKS))
def test_crafted_tar_is_refused_and_nothing_is_written(box, attack):
    arc = make_tar(box.parent / f"{attack}.tar.gz", TAR_ATTACKS[attack])
    before = all_files(box)
    with pytest.raises(DataError, match="refusing to extract|outside") as e:
        safe_extract(arc, box / "target")
    assert "\n" not in str(e.value)
    assert all_files(box) == before == ["target"]                 # nothing inside the target, nothing beside it
    assert not Path("/tmp/xbench-abs-evil.txt").exists() and not Path("/etc/evil.txt").exists()
    assert not (box.parent / "evil.txt").exists() and not (box.parent / "evil-dir").exists()


def test_lexical_checks_name_each_unsafe_member(box):
    arc = make_tar(box.parent / "mixed.tar.gz", TAR_ATTACKS["dotdot"] + TAR_ATTACKS["absolute"]
                   + TAR_ATTACKS["symlink-out"] + TAR_ATTACKS["hardlink-out"])
    problems = list_problems(arc)
    assert "member '../evil.txt': '..' component" in problems
    assert "member '/tmp/xbench-abs-evil.txt': absolute path" in problems
    assert "member 'link': symbolic link to '../../evil-dir' leaves the target folder" in problems
    assert "member 'hl': hard link to '../evil.txt' leaves the target folder" in problems


ZIP_ATTACKS = {
    "dotdot": [("file", "good.txt", b"ok"), ("file", "../evil.txt", b"pwned")],
    "absolute": [("file", "/abs-evil.txt", b"pwned")],
    "backslash": [("file", "..\\evil.txt", b"pwned")],
    "symlink-out": [("sym", "link", b"../../evil-dir")],
}


@pytest.mark.parametrize("attack", sorted(ZIP_ATTACKS))
def test_crafted_zip_is_refused_and_nothing_is_written(box, attack):
    arc = make_zip(box.parent / f"{attack}.zip", ZIP_ATTACKS[attack])
    with pytest.raises(DataError, match="refusing to extract"):
        safe_extract(arc, box / "target")
    assert all_files(box) == ["target"]
    assert not (box.parent / "evil.txt").exists()


def test_safe_archives_extract_and_merge(box):
    t = box / "target"
    (t / "keep").mkdir()
    (t / "keep" / "old.txt").write_text("old")
    tar = make_tar(box.parent / "ok.tar.gz", [("dir", "keep"), ("file", "keep/new.txt", b"new"),
                                              ("file", "data/a.txt", b"A"), ("sym", "data/alias", "a.txt"),
                                              ("hard", "data/copy.txt", "data/a.txt")])
    safe_extract(tar, t)
    assert (t / "keep" / "old.txt").read_text() == "old" and (t / "keep" / "new.txt").read_text() == "new"
    assert (t / "data" / "alias").is_symlink() and (t / "data" / "alias").read_text() == "A"
    assert (t / "data" / "copy.txt").read_text() == "A"
    z = make_zip(box.parent / "ok.zip", [("file", "z/b.txt", b"B"), ("sym", "z/link", b"b.txt")])
    safe_extract(z, t)
    assert (t / "z" / "b.txt").read_text() == "B" and os.readlink(t / "z" / "link") == "b.txt"
    assert not [p for p in t.iterdir() if p.name.startswith(".xbench-extract")]


def test_damaged_archive_is_one_line(box):
    bad = box.parent / "bad.tar.gz"
    good = make_tar(box.parent / "good.tar.gz", [("file", "a.txt", b"x" * 5000)])
    bad.write_bytes(good.read_bytes()[:40])
    with pytest.raises(DataError, match="damaged archive|not a tar or zip") as e:
        safe_extract(bad, box / "target")
    assert "\n" not in str(e.value)
