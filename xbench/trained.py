"""A trained head with its backbone, ready for new images: what `xbench.load(RUN)` returns.

RUN (`resolve_run`) is one of

* a record file, `RESULTS/records/<job_id>.json`;
* a results folder and a job id, `RESULTS/<job_id>` (a unique prefix of the id is enough, e.g.
  `xbench-results/linear-probe-patch__synthbirds__s0`), or `load(RESULTS, job=ID)`; a results
  folder alone works when it holds exactly one complete job;
* a head folder, `RESULTS/heads/<job_id>/` (head.json + head.safetensors); its record is read from
  `RESULTS/records/<job_id>.json` when it is there. Without a record the backbone is built with
  its default weights (or `weights=`) and the class names are the class indices.

The backbone named in the record is rebuilt with the record's weights (`random`: the runner's
seed 0, so the same weights; `weight-free`: nothing to load; `pretrained:...`: timm's pretrained
weights; `file:PATH`: that file) and its weights hash must equal the record's, else a one-line
`WeightsError` (pass `weights=` to point at the file it was trained with). The head is loaded with
`method_api.load_head(folder, expect=...)`, which refuses a head of another backbone, grid or width, or
(when the record names its classes) another class count, in one line.

Images (`as_images`): a file path, a PIL image, an HxWx3 uint8 array, a list of those, or a float
tensor [B, 3, H, W] (or [3, H, W]) in [0, 1]. Files and PIL images are resized and normalised
exactly as the feature extractor does (`xbench.views.preprocess` with the backbone's
`preprocessing`: whole image, the backbone's interpolation); a tensor is resized with the same
interpolation (antialiased, `torch.nn.functional.interpolate`) and normalised with the
backbone's mean and std. Tokens come from `Extractor.tokens` (uncached) and are rounded to float16 like
the feature cache (kept in float32 for a job run with `cache_dtype: float32`), so a dataset image
gets the logits the runner computed for it.

`predict(images)` -> `Prediction` (logits [B, C], probabilities [B, C], class indices [B], class
names); `explain(images, target=None)` -> the `Explanation` of SPEC 4, with
`extras["target"]` (LongTensor [B]: the given target, else the predicted class) and, for methods
that provide one, `extras["attribution"]` = attribution(target) [B, g, g]. A target may be a class
index, a class name, or one of those per image.
"""
from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from .errors import ConfigError, ResultsError, UserError, WeightsError
from .explanation import Explanation
from .preprocessing import Preprocessing
from .tokens import Tokens

ImagesLike = Any  # path | PIL.Image | np.ndarray | torch.Tensor | a sequence of those


@dataclass
class Prediction:
    logits: torch.Tensor         # [B, C]
    probabilities: torch.Tensor  # [B, C] softmax of the logits
    classes: torch.Tensor        # long [B] argmax
    names: list[str]             # class name per image

    def __len__(self) -> int:
        return int(self.classes.shape[0])


# RUN -------------------------------------------------------------------------------------------
def resolve_run(run: str | os.PathLike, job: str | None = None) -> tuple[dict | None, Path]:
    """(record or None, head folder) for the RUN forms in the module docstring."""
    from .results import ResultsStore, read_record

    p = Path(run).expanduser()
    if job is not None:
        return _record_and_head(ResultsStore(p), _find_job(p, job))
    if p.is_file():
        if p.name == "head.json":
            return _head_only(p.parent)
        rec = read_record(p)
        return rec, _head_of(rec, p.parent.parent, p)
    if p.is_dir() and (p / "head.json").is_file():
        return _head_only(p)
    if p.is_dir() and (p / "records").is_dir():
        done = [r for r in ResultsStore(p).records(strict=False) if r.get("status") == "complete"]
        if len(done) != 1:
            eg = f" (e.g. {p / done[0]['job_id']})" if done else ""
            raise ResultsError(f"results folder {p} holds {len(done)} complete jobs; name one as {p}/JOB_ID{eg}")
        return done[0], _head_of(done[0], p, p)
    if not p.exists() and (p.parent / "records").is_dir():
        return _record_and_head(ResultsStore(p.parent), _find_job(p.parent, p.name))
    raise ResultsError(f"{p}: not a results record, a head folder or RESULTS/JOB_ID; pass e.g. "
                       f"xbench-results/records/<job_id>.json")


def _find_job(root: Path, job: str) -> str:
    ids = sorted(q.stem for q in (root / "records").glob("*.json") if not q.name.startswith("."))
    if job in ids:
        return job
    hits = [i for i in ids if i.startswith(job)]
    if len(hits) == 1:
        return hits[0]
    if not hits:
        raise ResultsError(f"no job {job!r} in results folder {root} ({len(ids)} jobs); see {root / 'records'}")
    raise ResultsError(f"job {job!r} is ambiguous in {root}: {len(hits)} jobs start with it ({hits[0]}, {hits[1]}"
                       f"{', ...' if len(hits) > 2 else ''}); give more of the id")


def _record_and_head(store, job_id: str) -> tuple[dict, Path]:
    rec = store.get(job_id)
    return rec, _head_of(rec, store.root, store.path(job_id))


def _head_of(rec: dict, root: Path, where: Path) -> Path:
    if rec.get("status") != "complete":
        raise ResultsError(f"job {rec.get('job_id')} in {where} did not complete ({rec.get('error', 'no head')}); "
                           f"re-run it")
    head = root / rec.get("head", f"heads/{rec['job_id']}")
    if "head" not in rec and rec.get("profile") == "api" and not (head / "head.json").is_file():
        raise ResultsError(f"job {rec['job_id']} was scored with xbench.evaluate and has no saved head; load the "
                           f"trained job instead (external models are loaded by their own code)")
    if not (head / "head.json").is_file():
        raise ResultsError(f"the head of job {rec['job_id']} is missing ({head}); re-run the job with --force")
    return head


def _head_only(folder: Path) -> tuple[dict | None, Path]:
    from .results import read_record

    rec_path = folder.parent.parent / "records" / f"{folder.name}.json"
    return (read_record(rec_path) if rec_path.is_file() else None), folder


# backbone weights ----------------------------------------------------------------------------
def weights_argument(label: str | None) -> str | None:
    """The `--weights` value that rebuilds a record's weights label (None: the backbone's default)."""
    if label is None:
        return None
    if label in ("random", "weight-free"):
        return label
    if label.startswith("pretrained:"):
        return "auto"
    if label.startswith("file:"):
        return label[len("file:"):]
    return label


def head_description(folder: Path) -> dict:
    try:
        return json.loads((folder / "head.json").read_text())
    except (OSError, ValueError) as err:
        raise ResultsError(f"saved head {folder / 'head.json'} is missing or unreadable ({type(err).__name__}); "
                           f"re-run the job") from None


def class_names_of(record: dict | None, num_classes: int, data_root: str | None = None) -> list[str]:
    """Class names from the record's dataset fingerprint, else by rebuilding its dataset, else the indices."""
    fp = (record or {}).get("provenance", {}).get("dataset") or {}
    names = fp.get("classes")
    if isinstance(names, list) and len(names) == num_classes:
        return [str(n) for n in names]
    try:
        ds = dataset_of(record, data_root) if record else None
        if ds is not None and ds.num_classes == num_classes:
            return list(ds.class_names)
    except UserError:
        pass
    return [str(c) for c in range(num_classes)]


def dataset_of(record: dict, data_root: str | None = None):
    """The dataset a job ran on, rebuilt from its record's fingerprint (name + options); same content or an error."""
    from .data.roots import data_root as resolve_root
    from .registry import DATASETS

    fp = record.get("provenance", {}).get("dataset") or {}
    if "name" not in fp:
        raise ResultsError(f"record {record.get('job_id')} names no dataset fingerprint; re-run the job")
    entry = DATASETS.get(fp["name"])
    try:
        ds = entry.obj(root=resolve_root(data_root), **fp.get("options", {}))
    except TypeError as err:
        raise ConfigError(f"dataset {fp['name']!r} of job {record.get('job_id')}: cannot rebuild it ({err})") from None
    if json.loads(json.dumps(ds.fingerprint(), default=str)) != fp:
        raise ResultsError(f"dataset {record.get('dataset')} changed since job {record.get('job_id')} ran "
                           f"(fingerprint differs); re-run the job on the current data")
    return ds


# images ----------------------------------------------------------------------------------------
def as_images(images: ImagesLike, pre: Preprocessing) -> torch.Tensor:
    """Normalised float tensor [B, 3, size, size] from the accepted image forms, by the backbone's rule `pre`."""
    from .data.imageio import read_rgb
    from .views.base import preprocess

    if isinstance(images, torch.Tensor):
        x = images.detach()
        if x.dim() == 3:
            x = x[None]
        if x.dim() != 4 or x.shape[1] != 3 or not x.dtype.is_floating_point:
            raise ConfigError(f"image tensor of shape {tuple(images.shape)} and dtype {images.dtype}: pass a float "
                              f"tensor [B, 3, H, W] with values in [0, 1]")
        if x.numel() and (float(x.min()) < -1e-6 or float(x.max()) > 1 + 1e-6):
            raise ConfigError("image tensor values lie outside [0, 1]: pass unnormalised images scaled to [0, 1]")
        return pre.tensor(x.float())   # the same interpolation as extraction, antialiased
    items = [images] if isinstance(images, (str, os.PathLike, Image.Image, np.ndarray)) else list(images)
    if not items:
        raise ConfigError("no images given: pass a path, a PIL image, a list of them or a tensor [B, 3, H, W]")
    out = []
    for it in items:
        if isinstance(it, (str, os.PathLike)):
            it = read_rgb(it)
        elif isinstance(it, np.ndarray):
            if it.dtype != np.uint8 or it.ndim != 3 or it.shape[2] != 3:
                raise ConfigError(f"image array of shape {it.shape} and dtype {it.dtype}: pass H x W x 3 uint8")
            it = Image.fromarray(it)
        elif not isinstance(it, Image.Image):
            raise ConfigError(f"cannot read an image from a {type(it).__name__}: pass paths, PIL images or a tensor")
        out.append(preprocess(it, pre))
    return torch.stack(out)


# the model -------------------------------------------------------------------------------------
class TrainedModel:
    """A trained xbench head on its frozen backbone (see the module docstring)."""

    def __init__(self, head: Any, backbone: Any, class_names: list[str], record: dict | None = None,
                 head_dir: Path | None = None, device: torch.device | str = "cpu", cache: str | None = None,
                 batch_size: int = 32, cache_dtype: str | None = None):
        from .cache import FeatureCache
        from .data.roots import cache_root
        from .extract import Extractor

        self.device = torch.device(device)
        self.head = head.to(self.device).eval()
        self.backbone = backbone
        self.class_names = list(class_names)
        self.record = record
        self._cache_dtype = cache_dtype
        self.head_dir = head_dir
        self.batch_size = int(batch_size)
        self.extractor = Extractor(backbone, FeatureCache(cache_root(cache)), self.device, batch_size=self.batch_size,
                                   num_workers=0, show_progress=False, cache_dtype=self.cache_dtype)
        if self.spec.needs_backbone_graph:
            self.head.attach_extractor(self.extractor)

    # description -----------------------------------------------------------------------------
    @property
    def spec(self):
        return self.head.spec

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def provides(self) -> frozenset[str]:
        return self.spec.provides

    @property
    def num_classes(self) -> int:
        return int(self.head.info.num_classes)

    def __repr__(self) -> str:
        src = self.record["job_id"] if self.record else str(self.head_dir)
        return f"<xbench model {self.name} on {self.backbone.name} ({self.backbone.weights_label}), {src}>"

    # inputs ----------------------------------------------------------------------------------
    def images(self, images: ImagesLike) -> torch.Tensor:
        return as_images(images, self.backbone.preprocessing)

    @property
    def cache_dtype(self) -> str:
        """The token precision of this model's tokens: the one given to `load`, else the record's (the one the
        job was trained and scored with)."""
        return str(self._cache_dtype or (self.record or {}).get("cache_dtype") or "float16")

    def tokens(self, images: torch.Tensor) -> Tokens:
        """Uncached backbone tokens of a normalised batch, rounded like the job's feature cache (float16
        unless the job ran with `cache_dtype: float32`)."""
        parts = []
        rounding = torch.float16 if self.cache_dtype == "float16" else torch.float32
        for s in range(0, images.shape[0], self.batch_size):
            t = self.extractor.tokens(images[s:s + self.batch_size])
            parts.append(Tokens(*(a.to(rounding).float() for a in (t.patch, t.cls, t.reg))))
        return Tokens(*(torch.cat([getattr(p, f) for p in parts]) for f in ("patch", "cls", "reg")))

    def batch(self, images: ImagesLike):
        from .method_api import Batch

        x = self.images(images).to(self.device)
        return Batch(tokens=self.tokens(x), images=x if self.spec.needs_backbone_graph else None)

    def _targets(self, target: Any, n: int, predicted: torch.Tensor) -> torch.Tensor:
        if target is None:
            return predicted
        vals = list(target.reshape(-1).tolist()) if isinstance(target, torch.Tensor) else (
            [target] if isinstance(target, (int, str, np.integer)) else list(target))
        out = []
        for v in vals:
            if isinstance(v, str):
                if v not in self.class_names:
                    raise ConfigError(f"target class {v!r} is not a class of this model "
                                      f"({', '.join(self.class_names[:5])}{', ...' if self.num_classes > 5 else ''})")
                v = self.class_names.index(v)
            if not 0 <= int(v) < self.num_classes:
                raise ConfigError(f"target class {int(v)} is out of range 0..{self.num_classes - 1}")
            out.append(int(v))
        if len(out) == 1:
            out = out * n
        if len(out) != n:
            raise ConfigError(f"{len(out)} targets for {n} images: give one target or one per image")
        return torch.tensor(out, dtype=torch.long, device=predicted.device)

    # the API ---------------------------------------------------------------------------------
    @torch.no_grad()
    def logits(self, images: ImagesLike) -> torch.Tensor:
        return self.head.logits(self.batch(images)).float()

    def predict(self, images: ImagesLike) -> Prediction:
        z = self.logits(images)
        c = z.argmax(dim=1)
        return Prediction(logits=z, probabilities=torch.softmax(z, dim=1), classes=c,
                          names=[self.class_names[int(i)] for i in c])

    def explain(self, images: ImagesLike, target: Any = None) -> Explanation:
        b = self.batch(images)
        with torch.set_grad_enabled(bool(self.spec.needs_backbone_graph)):
            exp = self.head.explain(b)
            t = self._targets(target, exp.batch_size, exp.predictions())
            exp.extras["target"] = t
            if exp.attribution_fn is not None:
                exp.extras["attribution"] = exp.attribution(t).detach()
        return exp

    # the training data -------------------------------------------------------------------------
    def dataset(self, data_root: str | None = None):
        """The dataset this head was trained on, rebuilt from its record (needs the record and the data)."""
        if self.record is None:
            raise ResultsError(f"head {self.head_dir} has no record, so its dataset is unknown; load it by its "
                               f"record (RESULTS/records/<job_id>.json)")
        return dataset_of(self.record, data_root)

    def train_store(self, dataset: Any = None, data_root: str | None = None):
        """Cached backbone tokens of the training split (extracted now if the cache lacks them)."""
        from .views import PlainView

        ds = dataset if dataset is not None else self.dataset(data_root)
        return self.extractor.store(ds, "train", PlainView())


def load(run: str | os.PathLike, job: str | None = None, *, weights: str | None = None,
         device: str | torch.device = "cpu", cache: str | None = None, data_root: str | None = None,
         class_names: Sequence[str] | None = None, batch_size: int = 32,
         cache_dtype: str | None = None) -> TrainedModel:
    """A trained model from RUN (see the module docstring); `weights` overrides the record's backbone weights;
    `cache_dtype` ("float16" / "float32") the token precision of the record (how new images are rounded and
    which cache entries `xbench.evaluate` reads)."""
    from .config import CACHE_DTYPES

    if cache_dtype is not None and cache_dtype not in CACHE_DTYPES:
        raise ConfigError(f"cache_dtype={cache_dtype!r}: use {' or '.join(CACHE_DTYPES)}")
    from .method_api import HeadInfo, load_head

    from .backbones import build_backbone
    from .device import resolve_device

    record, head_dir = resolve_run(run, job)
    desc = head_description(head_dir)
    info = desc.get("info", {})
    name = (record or {}).get("backbone") or info.get("backbone")
    if not name:
        raise ResultsError(f"saved head {head_dir} names no backbone; re-run the job")
    label = (record or {}).get("weights")
    w = weights if weights is not None else weights_argument(label)
    size = int(((record or {}).get("provenance", {}).get("backbone") or {}).get("image_size", 224))
    bb = build_backbone(name, w, image_size=size)
    want = (record or {}).get("weights_hash") or info.get("weights_hash")
    if want and bb.weights_hash != want:
        raise WeightsError(f"backbone {name} with weights {bb.weights_label} (hash {bb.weights_hash}) is not the one "
                           f"head {head_dir} was trained on (hash {want}); pass the weights it was trained with "
                           f"(weights=PATH / --weights PATH)")
    n = int(info.get("num_classes", 0))
    names = list(class_names) if class_names is not None else class_names_of(record, n, data_root)
    expect = HeadInfo(num_classes=len(names), grid=bb.grid, dim=bb.embed_dim, num_registers=bb.num_registers,
                      backbone=bb.name, weights_hash=bb.weights_hash)
    head = load_head(head_dir, expect=expect)
    dev = resolve_device(str(device)) if not isinstance(device, torch.device) else device
    return TrainedModel(head, bb, names, record=record, head_dir=head_dir, device=dev, cache=cache,
                        batch_size=batch_size, cache_dtype=cache_dtype)


__all__ = ["TrainedModel", "Prediction", "load", "resolve_run", "as_images", "dataset_of", "class_names_of",
           "weights_argument"]
