"""Fuzzing (hypothesis) of the annotation parsers and the results-record reader.

Property: whatever bytes or JSON a file holds, reading it either succeeds or raises the documented
one-line user error (`DataError` for dataset files, `ResultsError` for records): never another
exception, never a message spanning several lines, never a hang (each example has a time budget).
Problem lists (`check()`) hold one line per problem.

Covered: `xbench.data.tables.parse_table` (CUB and Pets lists), the whole CUB index (images, labels,
split, boxes, classes, parts, part locations), the Pets lists, the RSNA labels CSV, FunnyBirds'
classes.json / parts.json / dataset_<split>.json, a folder dataset's index.csv, classes.txt and
parts.json, and `xbench.results.read_record` / `validate_record` (bytes, arbitrary JSON, records that
almost validate). A record that validates must also be readable by the leaderboard tables.
"""
from __future__ import annotations

import atexit
import json
import shutil
import signal
import tempfile
from contextlib import contextmanager
from pathlib import Path

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from xbench.errors import ConfigError, DataError, ResultsError

SETTINGS = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow],
                    derandomize=True)
SMALL = settings(SETTINGS, max_examples=80)

# text that looks like annotation lines more often than uniform noise would
TOKEN = st.one_of(st.from_regex(r"-?[0-9]{1,4}(\.[0-9]{0,3})?", fullmatch=True), st.sampled_from(
    ["0", "1", "2", "-1", "nan", "inf", "1e999", "0x10", "١٢", "1_0", "", " ", "\t", "\x00", "\ufeff", "#"]),
    st.text(min_size=0, max_size=6))
LINE = st.lists(TOKEN, max_size=7).map(" ".join)
TEXT = st.one_of(st.lists(LINE, max_size=12).map("\n".join), st.text(max_size=300))
RAW = st.one_of(TEXT.map(lambda s: s.encode("utf-8", "surrogatepass")), st.binary(max_size=300))
JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda c: st.lists(c, max_size=5) | st.dictionaries(st.text(max_size=8), c, max_size=5), max_leaves=25)


@contextmanager
def time_limit(seconds: float = 5.0):
    """Fail an example that takes longer than `seconds` (a hang)."""
    def boom(*_):
        raise TimeoutError(f"parser took more than {seconds} s")

    old = signal.signal(signal.SIGALRM, boom)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


@contextmanager
def scratch():
    d = Path(tempfile.mkdtemp(prefix="xbench-fuzz-"))
    try:
        yield d
    finally:
        shutil.rmtree(d, ignore_errors=True)


def one_line(err: BaseException) -> None:
    assert "\n" not in str(err) and "\r" not in str(err), repr(str(err))


def only_user_errors(fn, *allowed: type[BaseException]):
    """Call fn(); the only exceptions allowed are `allowed` (checked to be one line)."""
    try:
        with time_limit():
            return fn()
    except allowed as err:
        one_line(err)
        return None


def as_bytes(v) -> bytes:
    return v if isinstance(v, bytes) else json.dumps(v, allow_nan=True).encode()


# tables ------------------------------------------------------------------------------------------------------
@SETTINGS
@given(RAW, st.integers(1, 5), st.booleans(), st.sampled_from([None, "#"]))
def test_parse_table_never_raises(data, ncols, rest, comment):
    from xbench.data.tables import flag, parse_table

    convs = [int, float, str, flag, int][:ncols]
    with scratch() as d:
        p = d / "table.txt"
        p.write_bytes(data)
        with time_limit():
            t = parse_table(p, [(f"c{i}", c) for i, c in enumerate(convs)], rest=rest, comment=comment)
            t.by_key()
        for prob in t.problems:
            assert "\n" not in prob and prob.startswith(str(p))
        for _, row in t.rows:
            assert len(row) == ncols
        only_user_errors(t.raise_first, DataError)


CUB_FILES = ["images.txt", "image_class_labels.txt", "train_test_split.txt", "bounding_boxes.txt", "classes.txt",
             "parts/parts.txt", "parts/part_locs.txt"]


_TEMPLATES: dict[str, Path] = {}


def _template(name: str) -> Path:
    """A tiny dataset of fixture `name` (cub, pets, funnybirds) written once per session, copied per example."""
    if name not in _TEMPLATES:
        import sys

        sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "data"))
        from fixtures_cub import make_cub
        from fixtures_funnybirds import make_funnybirds
        from fixtures_pets_cars import make_pets

        d = Path(tempfile.mkdtemp(prefix=f"xbench-fuzz-{name}-"))
        atexit.register(shutil.rmtree, d, True)
        {"cub": lambda: make_cub(d, n_classes=2, per_class=2, seg="none"), "pets": lambda: make_pets(d),
         "funnybirds": lambda: make_funnybirds(d)}[name]()
        _TEMPLATES[name] = d
    return _TEMPLATES[name]


@SMALL
@given(st.sampled_from(CUB_FILES), RAW)
def test_cub_index_with_a_fuzzed_file(name, data):
    from xbench.data.cub import CUB

    with scratch() as d:
        shutil.copytree(_template("cub"), d, dirs_exist_ok=True)
        (d / "CUB_200_2011" / name).write_bytes(data)

        def read():
            ds = CUB(d)
            for p in ds.check(show=False):
                assert "\n" not in p, p
            ds.split("train")
            ds.split("test")
            ds.part_locations()
            return ds

        only_user_errors(read, DataError)


@SMALL
@given(st.sampled_from(["trainval.txt", "test.txt"]), RAW)
def test_pets_lists_with_a_fuzzed_file(name, data):
    from xbench.data.pets import Pets

    with scratch() as d:
        shutil.copytree(_template("pets"), d, dirs_exist_ok=True)
        next(d.rglob(name)).write_bytes(data)

        def read():
            ds = Pets(d)
            for p in ds.check(show=False):
                assert "\n" not in p, p
            ds.split("train")
            ds.split("test")

        only_user_errors(read, DataError)


HEADER = "patientId,x,y,width,height,Target\n"
ROW = st.lists(st.one_of(TOKEN, st.sampled_from(["abc", "0", "1", ""])), min_size=0, max_size=8).map(",".join)


@SETTINGS
@given(st.one_of(RAW, st.lists(ROW, max_size=10).map(lambda rows: (HEADER + "\n".join(rows)).encode())))
def test_rsna_labels_csv(data):
    from xbench.data.rsna import parse_labels

    with scratch() as d:
        p = d / "stage_2_train_labels.csv"
        p.write_bytes(data)
        out = only_user_errors(lambda: parse_labels(p), DataError)
        if out is not None:
            patients, problems = out
            for prob in problems:
                assert "\n" not in prob, prob


FB_FILES = ["classes.json", "parts.json", "dataset_train.json", "dataset_test.json"]


@SMALL
@given(st.sampled_from(FB_FILES), st.one_of(RAW, JSON))
@example("classes.json", [{"class_idx": float("inf"), "parts": {}}])
@example("dataset_train.json", [{"class_idx": 1e300}])
@example("parts.json", {"beak": [1], "eye": [1], "foot": [1], "tail": [1], "wing": [{"a": float("nan")}]})
def test_funnybirds_json_with_a_fuzzed_file(name, value):
    from xbench.data.funnybirds import FunnyBirds

    with scratch() as d:
        shutil.copytree(_template("funnybirds"), d, dirs_exist_ok=True)
        (d / "FunnyBirds" / name).write_bytes(as_bytes(value))

        def read():
            ds = FunnyBirds(d)
            for p in ds.check(show=False):
                assert "\n" not in p, p
            ds.class_parts
            ds.split("train")
            ds.split("test")

        only_user_errors(read, DataError, ConfigError)


# folder datasets ------------------------------------------------------------------------------------------------
def _folder(d: Path) -> Path:
    import numpy as np
    from PIL import Image

    for split in ("train", "test"):
        for c in ("crow", "wren"):
            (d / split / c).mkdir(parents=True)
            Image.fromarray(np.full((8, 8, 3), 100, np.uint8)).save(d / split / c / "a.png")
    return d


CSV_ROW = st.lists(st.one_of(st.sampled_from(["train/crow/a.png", "test/wren/a.png", "train", "test", "crow",
                                              "../x.png", "/abs.png", '"q\nuoted"', "x" * 3]), TOKEN),
                   max_size=5).map(",".join)


@SMALL
@given(st.sampled_from(["index.csv", "classes.txt", "parts.json"]),
       st.one_of(RAW, JSON, st.lists(CSV_ROW, max_size=6).map(lambda r: ("path,label,split\n" + "\n".join(r)).encode())))
def test_folder_dataset_with_a_fuzzed_file(name, value):
    from xbench.data.userfolder import UserFolder

    with scratch() as d:
        root = _folder(d / "birds")
        (root / name).write_bytes(as_bytes(value))

        def read():
            ds = UserFolder(d, path=str(root))
            for p in ds.check(show=False):
                assert "\n" not in p, p
            ds.split("train")
            ds.split("test")

        only_user_errors(read, DataError)


# results records ----------------------------------------------------------------------------------------------------
def _valid_record() -> dict:
    return {"schema": 1, "job_id": "m__d__s0__0123456789abcdef", "status": "complete", "method": "m", "dataset": "d",
            "backbone": "b", "seed": 0, "metrics": {"accuracy": {"value": 0.5, "status": "ok"}},
            "weights": "random", "weights_kind": "random", "weights_hash": "abc", "profile": "quickstart",
            "config": {"params": {}}, "config_hash": "x" * 64, "provenance": {"date": "2026-01-01"}}


KEYS = sorted(_valid_record())


@st.composite
def near_records(draw):
    """A valid record with a few fields replaced, removed or added (arbitrary JSON values)."""
    rec = _valid_record()
    for _ in range(draw(st.integers(1, 3))):
        key = draw(st.sampled_from(KEYS + ["metrics.accuracy", "metrics.new", "extra"]))
        action = draw(st.sampled_from(["set", "del"]))
        if key.startswith("metrics."):
            if not isinstance(rec.get("metrics"), dict):
                continue
            m = key.split(".", 1)[1]
            if action == "del":
                rec["metrics"].pop(m, None)
            else:
                rec["metrics"][m] = draw(st.one_of(JSON, st.fixed_dictionaries(
                    {"value": st.one_of(st.none(), st.floats(), st.integers(), st.text(max_size=3)),
                     "status": st.sampled_from(["ok", "n/a", "error", "weird"])})))
        elif action == "del":
            rec.pop(key, None)
        else:
            rec[key] = draw(JSON)
    return rec


@SETTINGS
@given(st.one_of(RAW, JSON, near_records()))
@example(b'{"schema": 1' + b"[" * 5000)
@example(("[" * 100000 + "]" * 100000).encode())
@example(b'{"schema": 1, "seed": ' + b"9" * 5000 + b"}")
@example({"schema": 2})
@example(_valid_record())
def test_read_record_raises_only_results_errors(value):
    from xbench.leaderboard.tables import build_tables
    from xbench.results import read_record

    with scratch() as d:
        p = d / "records" / "job.json"
        p.parent.mkdir()
        p.write_bytes(as_bytes(value))
        rec = only_user_errors(lambda: read_record(p), ResultsError)
        if rec is not None:  # a record that validates is one the leaderboard can tabulate
            only_user_errors(lambda: build_tables([rec]), ResultsError)
