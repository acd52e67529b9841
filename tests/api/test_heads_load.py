"""Saved heads and `xbench.load`: the RUN forms, predict / explain equal to the runner's numbers, mismatch errors."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from api_fixtures import run_values
from PIL import Image

import xbench
from xbench.backbones import build_backbone
from xbench.config import build_config
from xbench.errors import ConfigError, ResultsError, WeightsError
from xbench.evaluation import EvalContext
from xbench.explanation import check_concept_decomposition
from xbench.methods.base import HeadInfo, Method
from xbench.results import ResultsStore, validate_record
from xbench.runner import Runner


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("heads")
    cfg = build_config(cli_values=run_values(tmp, "synthbirds", methods="linear-probe-patch,gradcam",
                                             metrics="accuracy,plausibility"))
    summary = Runner(cfg).run()
    assert not summary.failed and len(summary.done) == 2
    return tmp


def _record(run: Path, method: str) -> dict:
    return next(r for r in ResultsStore(run / "results").records() if r["method"] == method)


def _runner_logits(model, run: Path) -> torch.Tensor:
    """The logits the runner's path gives: the saved head on the cached test tokens."""
    ds = model.dataset()
    head = Method.load(model.head_dir)
    ectx = EvalContext(head, ds, model.extractor, batch_size=4, show_progress=False)
    return ectx.logits("test")


def test_predict_and_explain_match_the_runner(run):
    model = xbench.load(run / "results" / "linear-probe-patch__synthbirds", cache=str(run / "cache"))
    assert model.name == "linear-probe-patch" and model.num_classes == 5
    test = model.dataset().split("test")
    images = [test.image(i) for i in range(len(test))]
    pred = model.predict(images)
    ref = _runner_logits(model, run)
    torch.testing.assert_close(pred.logits, ref, rtol=0, atol=1e-6)
    acc = float((pred.classes.numpy() == test.labels).mean())
    assert acc == pytest.approx(_record(run, "linear-probe-patch")["metrics"]["accuracy"]["value"], abs=1e-6)
    torch.testing.assert_close(pred.probabilities.sum(dim=1), torch.ones(len(test)))
    assert pred.names == [model.class_names[int(c)] for c in pred.classes]
    exp = model.explain(images[:3])
    torch.testing.assert_close(exp.logits, ref[:3], rtol=0, atol=1e-6)
    check_concept_decomposition(exp)
    assert torch.equal(exp.extras["target"], pred.classes[:3])
    torch.testing.assert_close(exp.extras["attribution"], exp.attribution(pred.classes[:3]))
    given = model.explain(images[:2], target="3")           # class names of synthbirds are the indices
    assert given.extras["target"].tolist() == [3, 3]
    assert model.explain(images[:2], target=[1, 4]).extras["target"].tolist() == [1, 4]
    with pytest.raises(ConfigError, match="out of range"):
        model.explain(images[:1], target=9)


def test_paths_and_tensors_are_the_same_images(run, tmp_path):
    model = xbench.load(run / "results" / "linear-probe-patch__synthbirds", cache=str(run / "cache"))
    rng = np.random.default_rng(0)
    arr = rng.integers(0, 256, size=(224, 224, 3), dtype=np.uint8)  # the input size: no resizing
    Image.fromarray(arr).save(tmp_path / "x.png")
    a = model.logits([Image.fromarray(arr)])
    b = model.logits(torch.from_numpy(arr).permute(2, 0, 1)[None].float() / 255.0)
    c = model.logits(str(tmp_path / "x.png"))
    d = model.logits(arr)
    torch.testing.assert_close(a, b, rtol=0, atol=1e-5)
    assert torch.equal(a, c) and torch.equal(a, d)
    with pytest.raises(ConfigError, match=r"outside \[0, 1\]"):
        model.logits(torch.full((1, 3, 8, 8), 2.0))
    with pytest.raises(ConfigError, match="float tensor"):
        model.logits(torch.zeros(1, 3, 8, 8, dtype=torch.uint8))


def test_every_run_form_loads_the_same_head(run):
    res = run / "results"
    rec = _record(run, "linear-probe-patch")
    jid = rec["job_id"]
    forms = [res / "records" / f"{jid}.json", res / "heads" / jid, res / jid, res / "linear-probe-patch__syn"]
    x = torch.rand(1, 3, 224, 224)
    ref = xbench.load(res, job=jid, cache=str(run / "cache")).logits(x)
    for f in forms:
        m = xbench.load(f, cache=str(run / "cache"))
        assert m.record["job_id"] == jid and torch.equal(m.logits(x), ref), f
    with pytest.raises(ResultsError, match="holds 2 complete jobs"):
        xbench.load(res)
    with pytest.raises(ResultsError, match="no job 'nope'"):
        xbench.load(res / "nope")
    with pytest.raises(ResultsError, match="ambiguous"):
        xbench.load(res, job="")


def test_head_mismatch_errors_are_one_line(run):
    rec = _record(run, "linear-probe-patch")
    head = run / "results" / "heads" / rec["job_id"]
    ok = dict(num_classes=5, grid=16, dim=32, num_registers=4, backbone="dinov2-tiny-test")
    Method.load(head, expect=HeadInfo(**ok))  # the matching description loads
    with pytest.raises(ConfigError) as e:
        Method.load(head, expect=HeadInfo(**{**ok, "num_classes": 7}))
    assert str(e.value) == (f"saved head {head} was trained with num_classes=5, not 7; use the matching --backbone / "
                            f"dataset or retrain")
    with pytest.raises(ConfigError) as e:
        Method.load(head, expect=HeadInfo(**{**ok, "backbone": "weight-free", "dim": 40}))
    assert str(e.value).startswith(f"saved head {head} was trained with backbone='dinov2-tiny-test', not "
                                   f"'weight-free';") and "\n" not in str(e.value)
    with pytest.raises(ConfigError, match="num_classes=5, not 6"):  # through xbench.load: 6 class names
        xbench.load(head, class_names=[str(i) for i in range(6)])


def test_other_backbone_weights_are_refused(run, tmp_path):
    from safetensors.torch import save_file

    other = build_backbone("dinov2-tiny-test", "random", seed=1)
    f = tmp_path / "other.safetensors"
    save_file({k: v.contiguous() for k, v in other.model.state_dict().items()}, str(f))
    with pytest.raises(WeightsError) as e:
        xbench.load(run / "results" / "linear-probe-patch__synthbirds", weights=str(f))
    assert "is not the one head" in str(e.value) and "\n" not in str(e.value)


def test_evaluate_a_loaded_model_gives_the_runner_record(run):
    for method in ("linear-probe-patch", "gradcam"):
        rec = _record(run, method)
        model = xbench.load(run / "results" / rec["job_id"], cache=str(run / "cache"))
        out = xbench.evaluate(model, model.dataset(), metrics=["accuracy", "plausibility"])
        validate_record(out, where="evaluate")
        assert set(rec) - set(out) == {"head", "training", "io", "method_version"} and set(out) <= set(rec)
        for m in ("accuracy", "plausibility"):
            assert out["metrics"][m]["status"] == "ok"
            assert out["metrics"][m]["value"] == pytest.approx(rec["metrics"][m]["value"], abs=1e-9), (method, m)
        assert out["config"]["params"] == rec["config"]["params"]
        assert out["weights_hash"] == rec["weights_hash"] and out["profile"] == "api"


def test_gradcam_explains_new_images_through_the_backbone(run):
    model = xbench.load(run / "results" / "gradcam__synthbirds", cache=str(run / "cache"))
    assert model.spec.needs_backbone_graph
    test = model.dataset().split("test")
    exp = model.explain([test.image(0), test.image(1)], target=2)
    att = exp.extras["attribution"]
    assert att.shape == (2, 16, 16) and bool((att >= 0).all()) and float(att.sum()) > 0
    torch.testing.assert_close(exp.logits, _runner_logits(model, run)[:2], rtol=0, atol=1e-6)
