"""synthbirds -> official FunnyBirds layout (SPEC 1.2), read back by an independent reader."""
from __future__ import annotations

import itertools
import json
import os
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from xbench.errors import ConfigError
from xbench.data.synthbirds import SynthBirds, export_funnybirds

PARTS = ["beak", "eye", "foot", "tail", "wing"]
# FunnyBirds' part-map colour code (SPEC 1.2), written out independently of the exporter
COLOUR_TO_PART = {
    (255, 255, 253): "eye", (255, 255, 254): "eye", (255, 255, 0): "beak", (255, 0, 1): "foot",
    (255, 0, 2): "foot", (0, 255, 1): "wing", (0, 255, 2): "wing", (0, 0, 255): "tail",
}


class OfficialStyleReader:
    """Indexes files the way FunnyBirds' framework loader does (datasets/funny_birds.py)."""

    def __init__(self, root: Path, mode: str):
        self.root, self.mode = root, mode
        self.params = json.loads((root / f"dataset_{mode}.json").read_text())
        self.classes = json.loads((root / "classes.json").read_text())
        self.parts = json.loads((root / "parts.json").read_text())

    def __len__(self) -> int:
        return len(self.params)

    def _open(self, path: Path) -> np.ndarray:
        img = Image.open(path)
        assert img.mode == "RGBA" and img.size == (256, 256), path
        arr = np.asarray(img)
        assert (arr[..., 3] == 255).all()
        return arr[..., :3]  # the loader drops alpha

    def item(self, idx: int) -> tuple[np.ndarray, np.ndarray, dict]:
        c = self.params[idx]["class_idx"]
        name = str(idx).zfill(6) + ".png"
        image = self._open(self.root / self.mode / str(c) / name)
        part_map = self._open(self.root / f"{self.mode}_part_map" / str(c) / name)
        return image, part_map, self.params[idx]

    def intervention(self, class_idx: int, image_idx: int, parts_removed: list[str]) -> np.ndarray:
        keep = sorted(set(self.parts) - set(parts_removed))
        name = "body_" + "_".join(keep) + ".png"
        return self._open(self.root / f"{self.mode}_interventions" / str(class_idx) / str(image_idx).zfill(6) / name)

    def background_intervention(self, class_idx: int, image_idx: int, n: int) -> np.ndarray:
        return self._open(self.root / f"{self.mode}_interventions" / str(class_idx) / str(image_idx).zfill(6)
                          / "background_interventions" / f"{n}.png")

    def bg_object_ids(self, params: dict) -> list[int]:
        bg_keys = [k for k in params if k.startswith("bg_")]
        return [int(s) for s in re.findall(r"\b\d+\b", params[bg_keys[0]])]

    def part_indices(self, params: dict) -> dict[str, int]:
        """Like the framework: split every key at '_' and match the part's fields against parts.json."""
        spec: dict[str, dict] = {}
        for key, value in params.items():
            part, attribute = key.split("_")[0], key.split("_")[1]  # IndexError if a key has no '_'
            if part in self.parts:
                spec.setdefault(part, {})[attribute] = value
        out = {}
        for part, fields in spec.items():
            out[part] = self.parts[part].index(fields) if fields in self.parts[part] else -1
        return out

    def minimal_sufficient_sets(self, class_idx: int) -> set[frozenset[str]]:
        mine = self.classes[class_idx]["parts"]
        subsets = [s for r in range(1, 6) for s in itertools.combinations(list(self.parts), r)]
        suff = [set(s) for s in subsets
                if not any(all(o["parts"][p] == mine[p] for p in s) for o in self.classes if o["class_idx"] != class_idx)]
        return {frozenset(s) for s in suff if not any(t < s for t in suff)}


def decode_part_map(rgb: np.ndarray) -> np.ndarray:
    out = np.full(rgb.shape[:2], -1, dtype=np.int32)
    key = rgb.astype(np.int32) @ np.array([1 << 16, 1 << 8, 1])
    for colour, part in COLOUR_TO_PART.items():
        out[key == (colour[0] << 16 | colour[1] << 8 | colour[2])] = PARTS.index(part) + 1
    out[key == 0] = 0                              # background
    out[key == (170 << 16 | 170 << 8 | 170)] = 0   # body: not a part
    for j in range(50):
        out[key == (204 << 16 | 204 << 8 | 204 + j)] = len(PARTS) + 1 + j
    assert (out >= 0).all(), "undecodable part-map colour"
    return out


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    ds = SynthBirds(num_classes=5, train_per_class=3, test_per_class=2, resolution=96, max_distractors=3, seed=2)
    out = tmp_path_factory.mktemp("fb") / "FunnyBirds"
    root = export_funnybirds(ds, out, train_per_class=2, progress=False)
    return ds, root


def test_layout_and_json(exported):
    ds, root = exported
    names = {p.name for p in root.iterdir()}
    assert {"classes.json", "parts.json", "dataset_train.json", "dataset_test.json", "train", "train_part_map",
            "test", "test_part_map", "test_interventions"} <= names
    assert not list(root.parent.glob(".*partial*"))
    parts = json.loads((root / "parts.json").read_text())
    assert list(parts) == PARTS and [len(parts[p]) for p in PARTS] == [4, 3, 4, 9, 6]
    assert all("model" in v for p in PARTS for v in parts[p])
    assert all("color" in v for p in ("beak", "tail", "wing") for v in parts[p])
    classes = json.loads((root / "classes.json").read_text())
    assert [c["class_idx"] for c in classes] == list(range(5))
    np.testing.assert_array_equal([[c["parts"][p] for p in PARTS] for c in classes], ds.class_parts)
    train = json.loads((root / "dataset_train.json").read_text())
    test = json.loads((root / "dataset_test.json").read_text())
    assert len(train) == 5 * 2 and len(test) == 5 * 2  # train_per_class overridden to 2
    assert [r["class_idx"] for r in test] == [i // 2 for i in range(10)]
    for rec in train + test:
        assert all("_" in k for k in rec)
        bg = [k for k in rec if k.startswith("bg_")]
        assert bg[0] == "bg_objects"
        n = len(re.findall(r"\b\d+\b", rec["bg_objects"]))
        assert all(len(rec[k].split(",")) == n + 1 for k in bg)


def test_images_and_part_maps_read_back(exported):
    ds, root = exported
    ref = ds.with_options(resolution=256, train_per_class=2)
    for mode in ("train", "test"):
        reader = OfficialStyleReader(root, mode)
        split = ref.split(mode)
        assert len(reader) == len(split)
        for idx in range(len(reader)):
            image, pmap, params = reader.item(idx)
            r = split.render(idx)
            np.testing.assert_array_equal(image, r.image)
            np.testing.assert_array_equal(decode_part_map(pmap), r.part_map)
            assert params["class_idx"] == split.labels[idx]
            # part fields decode to the class's variants, or -1 ("placeholder") for removed parts
            idxs = reader.part_indices(params)
            present = split.present_parts(idx)
            for p, part in enumerate(PARTS):
                expect = int(ref.class_parts[params["class_idx"], p]) if part in present else -1
                assert idxs[part] == expect
                if part not in present:
                    assert params[f"{part}_model"] == "placeholder"
            assert len(reader.bg_object_ids(params)) == split.num_objects(idx)


def test_interventions_read_back(exported):
    ds, root = exported
    split = ds.with_options(resolution=256, train_per_class=2).split("test")
    reader = OfficialStyleReader(root, "test")
    for idx in range(len(reader)):
        image, _, params = reader.item(idx)
        c = params["class_idx"]
        folder = root / "test_interventions" / str(c) / f"{idx:06d}"
        assert len(list(folder.glob("body_*.png"))) == 32
        np.testing.assert_array_equal(reader.intervention(c, idx, []), image)       # body_<all five>
        assert (folder / "body_.png").exists() and (folder / "body_beak_eye_foot_tail_wing.png").exists()
        for removed in ([], ["wing"], ["beak", "tail"], PARTS):
            keep = [p for p in PARTS if p not in removed]
            np.testing.assert_array_equal(reader.intervention(c, idx, removed),
                                          np.asarray(split.intervention(idx, keep)))
        n = len(reader.bg_object_ids(params))
        assert len(list((folder / "background_interventions").glob("*.png"))) == n
        for j in range(n):
            np.testing.assert_array_equal(reader.background_intervention(c, idx, j),
                                          np.asarray(split.intervention(idx, PARTS, [j])))
    assert sum(len(reader.bg_object_ids(p)) for p in reader.params) > 0


def test_minimal_sets_agree_with_reader(exported):
    ds, root = exported
    reader = OfficialStyleReader(root, "test")
    for c in range(ds.num_classes):
        assert set(ds.minimal_sufficient_sets(c)) == reader.minimal_sufficient_sets(c)


def test_export_refuses_non_empty_folder(tmp_path):
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "keep.txt").write_text("mine")
    with pytest.raises(ConfigError, match="not empty"):
        export_funnybirds(SynthBirds(num_classes=2, train_per_class=1, test_per_class=1), tmp_path / "x",
                          progress=False)
    assert os.listdir(tmp_path / "x") == ["keep.txt"]
    with pytest.raises(ConfigError):
        export_funnybirds(object(), tmp_path / "y", progress=False)  # type: ignore[arg-type]
