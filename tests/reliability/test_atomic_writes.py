"""Atomic writes: the file appears whole, with the mode a plain open() gives, and no temp file is left."""
import os

import pytest

from xbench.atomic import atomic_save, atomic_write_json, atomic_write_text


def test_atomic_files_get_the_umask_mode_not_mkstemps_0600(tmp_path):
    old = os.umask(0o022)
    os.umask(old)
    expected = 0o666 & ~old
    atomic_write_text(tmp_path / "a.txt", "hello")
    atomic_save(tmp_path / "b.bin", lambda name: open(name, "wb").write(b"x"))
    for name in ("a.txt", "b.bin"):
        assert (tmp_path / name).stat().st_mode & 0o777 == expected
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.txt", "b.bin"]


def test_a_failed_write_leaves_the_old_file_and_no_temp(tmp_path):
    target = tmp_path / "r.json"
    atomic_write_json(target, {"v": 1})

    class Boom(Exception):
        pass

    def bad(_name):
        raise Boom()

    with pytest.raises(Boom):
        atomic_save(target, bad)
    assert target.read_text().strip().startswith("{")
    assert [p.name for p in tmp_path.iterdir()] == ["r.json"]
