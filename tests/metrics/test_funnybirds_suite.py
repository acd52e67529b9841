"""FunnyBirds suite end to end (SPEC 5.2): fake models with known answers through a real EvalContext.

Tiny synthbirds (10 classes, one test image each, 128 px), the `dinov2-tiny-test`
backbone with random weights and a temporary feature cache. The fake models
follow the contract (`explain(batch)` / `logits(batch)` returning an
`Explanation`); they recognise each row's image and intervention from its cached
tokens and answer with a logit table designed by hand, so every expected number
below follows from the definitions. `reference_suite` is a straightforward
per-image implementation of the definitions (explicit upsampling, scipy
dilation, Python sets) used as the by-hand computation for whole curves.
"""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import ndimage, stats

from xbench.backbones import build_backbone
from xbench.cache import FeatureCache
from xbench.data.synthbirds import SynthBirds
from xbench.errors import ConfigError
from xbench.evaluation import EvalContext, MetricValue
from xbench.explanation import Explanation
from xbench.extract import Extractor
from xbench.metrics.funnybirds.classes import class_structure
from xbench.metrics.funnybirds.contrastivity import select_pairs
from xbench.metrics.funnybirds.importance import thresholds
from xbench.metrics.funnybirds.interventions import intervention_logits
from xbench.metrics.funnybirds.per_image import ImageQueries, per_image_suite
from xbench.metrics.funnybirds.suite import funnybirds_background, funnybirds_suite
from xbench.registry import METRICS
from xbench.specs import MethodSpec
from xbench.views import InterventionView, PlainView

P, FULL, G, RES = 5, 31, 16, 128
CELL = RES // G


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    ds = SynthBirds(num_classes=10, train_per_class=0, test_per_class=1, resolution=RES, max_distractors=3,
                    class_seed=0)
    ex = Extractor(build_backbone("dinov2-tiny-test", "random"), FeatureCache(tmp_path_factory.mktemp("cache")),
                   "cpu", show_progress=False)
    view = ex.store(ds, "test", InterventionView())
    plain = ex.store(ds, "test", PlainView())
    ident: dict[bytes, tuple[int, int, int]] = {}
    for j in range(len(view)):
        key = view.rows([j])["patch"][0].tobytes()
        row = (int(view.base[j]), int(view.index_meta["keep"][j]), int(view.index_meta["removed_object"][j]))
        assert key not in ident, f"two interventions render alike ({ident[key]}, {row}): pick another dataset seed"
        ident[key] = row
    sp = ds.split("test")
    maps = np.stack([sp.part_map(i) for i in range(len(sp))])
    n_obj = [sp.num_objects(i) for i in range(len(sp))]
    assert sum(n_obj) >= 3 and min(n_obj) == 0                     # objects to test BI / D on, and an image without
    return {"ds": ds, "ex": ex, "ident": ident, "plain": plain, "maps": maps, "n_obj": n_obj}


# fake models ----------------------------------------------------------------------------------
class FakeModel:
    """Contract-following model: logits from `logit_fn(base, keep, removed)`, maps from `attr_fn(base, target)`."""

    spec = MethodSpec.build("fake", object, provides={"attribution"}, description="fake")

    def __init__(self, env, logit_fn, attr_fn):
        self.ident, self.logit_fn, self.attr_fn = env["ident"], logit_fn, attr_fn
        self.batch_sizes: list[int] = []

    def _rows(self, batch) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        patch = batch.tokens.patch.to(torch.float16).numpy()
        rows = torch.tensor([self.ident[p.tobytes()] for p in patch])
        return rows[:, 0], rows[:, 1], rows[:, 2]

    def logits(self, batch) -> torch.Tensor:
        self.batch_sizes.append(len(batch))
        return self.logit_fn(*self._rows(batch)).float()

    def explain(self, batch) -> Explanation:
        base, keep, removed = self._rows(batch)
        assert (keep == FULL).all() and (removed == -1).all()       # explanations only of the plain images
        return Explanation(logits=self.logit_fn(base, keep, removed).float(),
                           attribution_fn=lambda t: self.attr_fn(base, t).float())


def context(env, model, **options) -> EvalContext:
    return EvalContext(model, env["ds"], env["ex"], device="cpu", batch_size=64, show_progress=False,
                       options={"funnybirds": options} if options else None)


def labels(env) -> torch.Tensor:
    return torch.as_tensor(env["ds"].split("test").labels)


def mss_bits(env, c: int) -> int:
    names = env["ds"].part_names
    return sum(1 << names.index(p) for p in env["ds"].minimal_sufficient_sets(c)[0])


def sufficient_set_model(env):
    """logit_y = 2 while the true class's first minimal sufficient set is kept, else 0; class y+1 always 1."""
    y_all, c = labels(env), env["ds"].num_classes
    need = torch.tensor([mss_bits(env, int(y)) for y in y_all])

    def fn(base, keep, removed):
        y = y_all[base]
        out = torch.zeros(len(base), c)
        out[torch.arange(len(base)), y] = 2.0 * ((keep & need[base]) == need[base]).float()
        out[torch.arange(len(base)), (y + 1) % c] = 1.0
        return out

    return fn


def cells_of(env, units) -> torch.Tensor:
    """float [N, G, G]: 1 on token cells holding a pixel of any of the part-map ids `units[n]` (a set per image)."""
    out = torch.zeros(len(env["maps"]), G, G)
    for n, m in enumerate(env["maps"]):
        hit = np.isin(m, list(units[n])).reshape(G, CELL, G, CELL).any(axis=(1, 3))
        out[n] = torch.from_numpy(hit.astype(np.float32))
    return out


def uniform_attr(base, target):
    return torch.ones(len(base), G, G)


# the by-hand reference -------------------------------------------------------------------------
def queries(logit_fn, attr_fn) -> ImageQueries:
    """The fake model as `per_image.ImageQueries` (one image per call)."""
    def lg(i, keep, removed):
        return logit_fn(torch.tensor([i]), torch.tensor([keep]), torch.tensor([removed]))[0].float().numpy()

    return ImageQueries(plain=lambda i: lg(i, FULL, -1), subset=lambda i, k: lg(i, k, -1),
                        without_object=lambda i, j: lg(i, FULL, j),
                        attribution=lambda i, t: attr_fn(torch.tensor([i]), torch.tensor([t]))[0].float().numpy())


def reference_suite(env, logit_fn, attr_fn, relevance: float = 0.05, protocol: str = "xbench") -> dict:
    """Every number of the suite by a per-image loop over the definitions (`per_image`, independent of the
    vectorised implementation)."""
    return per_image_suite(env["ds"], queries(logit_fn, attr_fn), protocol=protocol, relevance=relevance)


def assert_matches_reference(res, ref):
    for name in ("csdc", "pc", "dc", "d"):
        np.testing.assert_allclose(getattr(res, name).numpy(), ref[name], atol=1e-12, err_msg=name)
    assert res.index == ref["index"]
    for name in ("sd", "ts"):
        assert (math.isnan(getattr(res, name)) and math.isnan(ref[name])) or \
            getattr(res, name) == pytest.approx(ref[name], abs=1e-12), name
    assert res.counts["ts_skipped"] == ref["ts_skipped"]


def assert_both_protocols(env, logit_fn, attr_fn) -> tuple:
    """The vectorised suite equals the per-image statement under each protocol; returns both results."""
    out = []
    for protocol in ("xbench", "reference"):
        res = funnybirds_suite(context(env, FakeModel(env, logit_fn, attr_fn), protocol=protocol))
        assert res.protocol == protocol
        assert_matches_reference(res, reference_suite(env, logit_fn, attr_fn, protocol=protocol))
        out.append(res)
    return tuple(out)


# tests ------------------------------------------------------------------------------------------
def test_intervention_logits_are_batched_and_complete(env):
    model = FakeModel(env, sufficient_set_model(env), uniform_attr)
    ctx = context(env, model)
    il = intervention_logits(ctx)
    n = len(env["maps"])
    assert il.subsets.shape == (n, 32, 10) and il.objects.shape == (n, max(env["n_obj"]), 10)
    assert torch.equal(il.subsets[:, FULL], il.original)            # the re-rendered image is the plain one
    assert il.object_valid.sum(1).tolist() == env["n_obj"]
    m = len(ctx.store("test", InterventionView()))
    assert max(model.batch_sizes) == 64 and len(model.batch_sizes) == math.ceil(m / 64) + math.ceil(n / 64)


def test_oracle_explainer_scores_csdc_one(env):
    """All attribution on the cells of the target class's first minimal sufficient set: CSDC = 1 (low t)."""
    y_all = labels(env)
    model_fn = sufficient_set_model(env)
    n, c = len(env["maps"]), env["ds"].num_classes
    table = torch.stack([cells_of(env, [{p + 1 for p in range(P) if mss_bits(env, k) >> p & 1}] * n)
                         for k in range(c)], dim=1)                 # [N, C, G, G]

    def oracle(base, target):
        return table[base, target]

    res = funnybirds_suite(context(env, FakeModel(env, model_fn, oracle)))
    assert res.counts["correct"] == len(y_all) == res.counts["csdc_images"]  # the model is always right
    assert res.csdc[0].item() == 1.0 and res.pc[0].item() == 1.0 and res.dc[0].item() == 1.0
    assert res.csdc.max().item() == 1.0
    assert_matches_reference(res, reference_suite(env, model_fn, oracle))
    # the reference protocol: the last class has no minimal sufficient set, its image scores 0 (1 of 10)
    xb, rf = assert_both_protocols(env, model_fn, oracle)
    assert rf.csdc[0].item() == pytest.approx(0.9, abs=1e-12) and rf.counts["csdc_images"] == 10
    assert xb.csdc[0].item() == 1.0


def test_uniform_explainer_matches_hand_computation(env):
    """Uniform maps: importance = size of the dilated mask; total = image area; every number by hand."""
    model_fn = sufficient_set_model(env)
    ctx = context(env, FakeModel(env, model_fn, uniform_attr))
    res = funnybirds_suite(ctx)
    assert_matches_reference(res, reference_suite(env, model_fn, uniform_attr))
    assert_both_protocols(env, model_fn, uniform_attr)
    # every dilated part covers less than half the image, so at t = 0.5 nothing is important: the
    # sufficient set is not kept (PC 0), nothing is removed (DC 0), no part of a sufficient set is hit (CSDC 0)
    sizes = [ndimage.binary_dilation(m == u, structure=np.ones((5, 5))).sum()
             for m in env["maps"] for u in range(1, P + 1)]
    assert max(sizes) < 0.5 * RES * RES
    assert (res.pc[-1].item(), res.dc[-1].item(), res.csdc[-1].item()) == (0.0, 0.0, 0.0)
    assert res.pc[0].item() > 0                                     # at 1 % big parts are important
    values = {n: METRICS.get(n).obj(ctx) for n in ("csdc", "pc", "dc", "distractibility", "completeness",
                                                   "mean_explainability", "correctness", "contrastivity")}
    r = res.values()
    for name, v in values.items():
        key = {"correctness": "single_deletion", "contrastivity": "target_sensitivity"}.get(name, name)
        if math.isnan(r[key]):
            assert v.value is None and v.extras["reason"]
        else:
            assert v.value == pytest.approx(r[key])
    assert values["csdc"].extras["threshold"] == pytest.approx(float(thresholds()[res.index]))
    assert r["completeness"] == pytest.approx(((r["csdc"] + r["pc"] + r["dc"]) / 3 + r["distractibility"]) / 2)


def test_random_explainer_matches_reference(env):
    g = torch.Generator().manual_seed(3)
    table = torch.randn(len(env["maps"]), 10, G, G, generator=g)

    def rand_attr(base, target):
        return table[base, target]

    def rand_model(base, keep, removed):
        w = torch.randn(10, P, generator=torch.Generator().manual_seed(5))
        bits = ((keep[:, None] >> torch.arange(P)) & 1).float()
        return bits @ w.T + 0.3 * (removed[:, None] >= 0).float() * torch.arange(10).float()

    xb, rf = assert_both_protocols(env, rand_model, rand_attr)
    # the per-image statements tell the protocols apart: the one correctly classified image is of the last
    # class (no minimal sufficient set in the framework), and per-colour dilation reorders part importances
    assert xb.values()["csdc"] == 1.0 and rf.values()["csdc"] == 0.0
    assert xb.sd != pytest.approx(rf.sd, abs=1e-6)


def test_single_deletion_on_known_logit_drops(env):
    """logit_y = sum of the kept parts' weights, so the drops are the weights; uniform maps: the dilated sizes."""
    y_all, w = labels(env), torch.tensor([4.0, 1.0, 3.0, 0.5, 2.0])

    def fn(base, keep, removed):
        out = torch.zeros(len(base), 10)
        out[torch.arange(len(base)), y_all[base]] = (((keep[:, None] >> torch.arange(P)) & 1).float() * w).sum(1)
        return out

    res = funnybirds_suite(context(env, FakeModel(env, fn, uniform_attr)))
    expect = []
    for m in env["maps"]:
        sizes = [ndimage.binary_dilation(m == u, structure=np.ones((5, 5))).sum() for u in range(1, P + 1)]
        rho = stats.spearmanr(sizes, w.numpy())[0]
        expect.append(0.5 * rho + 0.5)
    assert res.sd == pytest.approx(float(np.mean(expect)), abs=1e-12)
    assert res.counts["sd_images"] == len(expect)


def test_target_sensitivity_pairs_against_brute_force(env):
    """Pairs come from a brute-force scan in index order; images without a valid pair are skipped and counted."""
    ds, y_all = env["ds"], labels(env)
    cp = torch.as_tensor(np.array(ds.class_parts))
    w = torch.tensor([1.0, 0.0, 0.0, 1.0, 1.0])                     # eye and foot carry no evidence

    def fn(base, keep, removed):
        agree = (cp[None, :, :] == cp[y_all[base]][:, None, :]).float()      # [B, C, P]
        kept = ((keep[:, None] >> torch.arange(P)) & 1).float()[:, None, :]
        return (agree * kept * w).sum(2)

    n = len(env["maps"])                                             # maps: evidence on the parts c shares with y
    table = torch.stack([cells_of(env, [{p + 1 for p in range(P) if cp[k, p] == cp[y_all[i], p]} for i in range(n)])
                         for k in range(ds.num_classes)], dim=1)

    def attr(base, target):
        return table[base, target]

    ctx = context(env, FakeModel(env, fn, attr))
    il = intervention_logits(ctx)
    choice = select_pairs(il, class_structure(ds, y_all))
    for i, y in enumerate(y_all.tolist()):
        shared = lambda k: {p for p in range(P) if cp[k, p] == cp[y, p]}  # noqa: E731
        cands = [k for k in range(ds.num_classes) if k != y and len(shared(k)) == 2]
        pairs = [(a, b) for j, a in enumerate(cands) for b in cands[j + 1:] if not shared(a) & shared(b)]
        valid = [(a, b) for a, b in pairs if w[list(shared(a))].sum() > 0 and w[list(shared(b))].sum() > 0]
        assert bool(choice.ok[i]) == bool(valid)
        assert bool(choice.no_pair[i]) == (not pairs)
        if valid:
            assert (int(choice.c1[i]), int(choice.c2[i])) == valid[0]
    assert choice.ok.any() and (~choice.ok).any()
    res = funnybirds_suite(ctx)
    assert res.counts["ts_images"] == int(choice.ok.sum())
    assert res.counts["ts_skipped"] == len(y_all) - int(choice.ok.sum())
    assert_matches_reference(res, reference_suite(env, fn, attr))
    assert_both_protocols(env, fn, attr)


def test_background_independence(env):
    y_all, n_obj = labels(env), env["n_obj"]

    def ignores(base, keep, removed):
        out = torch.zeros(len(base), 10)
        out[torch.arange(len(base)), y_all[base]] = 5.0
        return out

    def object0(base, keep, removed):                                # object 0 carries 10 % of the logit
        return ignores(base, keep, removed) * torch.where(removed == 0, 0.9, 1.0)[:, None]

    assert funnybirds_background(context(env, FakeModel(env, ignores, uniform_attr))).value == 1.0
    r = funnybirds_background(context(env, FakeModel(env, object0, uniform_attr)))
    with_obj = sum(k > 0 for k in n_obj)
    assert (r.objects, r.relevant) == (sum(n_obj), with_obj)
    assert r.value == pytest.approx(1 - with_obj / sum(n_obj))
    v = METRICS.get("background_independence").obj(context(env, FakeModel(env, object0, uniform_attr)))
    assert isinstance(v, MetricValue) and v.value == pytest.approx(r.value)


def test_pc_dc_on_a_model_that_looks_only_at_the_beak(env):
    """Prediction y while the beak is kept, else y+1; maps on the beak's cells: PC = DC = [beak important]."""
    y_all = labels(env)

    def fn(base, keep, removed):
        y = y_all[base]
        out = torch.zeros(len(base), 10)
        out[torch.arange(len(base)), y] = 2.0 * (keep & 1).float()
        out[torch.arange(len(base)), (y + 1) % 10] = 1.0
        return out

    beak = cells_of(env, [{1}] * len(env["maps"]))

    def attr(base, target):
        return beak[base]

    res = funnybirds_suite(context(env, FakeModel(env, fn, attr)))
    assert torch.equal(res.pc, res.dc)
    assert res.pc[0].item() == 1.0
    expect = []
    for n, m in enumerate(env["maps"]):
        up = np.repeat(np.repeat(beak[n].numpy().astype(np.float64), CELL, 0), CELL, 1)
        imp = (up * ndimage.binary_dilation(m == 1, structure=np.ones((5, 5)))).sum()
        expect.append([float(imp > t * up.sum()) for t in thresholds().numpy()])
    np.testing.assert_allclose(res.pc.numpy(), np.mean(expect, axis=0), atol=1e-12)


def test_options_and_applicability(env):
    model = FakeModel(env, sufficient_set_model(env), uniform_attr)
    with pytest.raises(ConfigError):
        funnybirds_suite(context(env, model, thresholds=0))
    with pytest.raises(ConfigError):
        funnybirds_suite(context(env, model, pairs="sometimes"))
    res = funnybirds_suite(context(env, model, thresholds=5, pairs="class"))
    assert res.thresholds.shape == (5,) and res.counts["ts_pairs"] == "class"
    logits_only = MethodSpec.build("lp", object, provides={"logits"}, description="x")
    for name in ("csdc", "pc", "dc", "distractibility", "completeness", "single_deletion", "correctness",
                 "target_sensitivity", "contrastivity", "mean_explainability"):
        spec = METRICS.get(name).spec
        assert spec.direction == "higher" and spec.needs_method == {"attribution"}
        assert spec.applicable(logits_only, env["ds"].spec) == "method provides no attribution"
        assert spec.applicable(model.spec, env["ds"].spec) is None
    bi = METRICS.get("background_independence").spec
    assert bi.applicable(logits_only, env["ds"].spec) is None and bi.category == "background"

