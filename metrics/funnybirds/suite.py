"""The FunnyBirds family, computed once per job (`ctx.memo("funnybirds", ...)`), and its aggregates.

Order of work (everything batched; no per-image loop around the model):

1. the model's logits on the cached `InterventionView` of the test split, as
   dense [N, 2^P, C] / [N, O, C] tensors (`interventions`);
2. the TS class pair of every image from those logits (`contrastivity`);
3. one pass of `ctx.explanations("test")` in batches: attribution maps for the
   true class, the predicted class, c1 and c2, each reduced at once to unit
   importances [N, 4, U] and whole-map sums [N, 4] (`importance`, `masks`);
4. every metric as tensor code over images x thresholds x units.

Completeness = ((CSDC + PC + DC)/3 + D) / 2 at the chosen threshold;
Correctness = SD; Contrastivity = TS; mean explainability = the mean of the
three (undefined if any is). Accuracy and BI are reported beside it.

Options (`metric_options: {funnybirds: {...}}`): `protocol` ("xbench", the
default: SPEC 5.2 as stated; "reference": the FunnyBirds framework's numbers,
quirks included, see `reference`), `thresholds` (count of the
linspace(0.01, 0.5, .) grid, default 80), `relevance` (the 5 % of D and BI,
default 0.05), `pairs` ("image" or "class", see `contrastivity`; the reference
protocol has its own pair rule and refuses `pairs`).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch

from xbench.errors import ConfigError, DataError
from xbench.evaluation import EvalContext

from .background import BackgroundResult, background_independence
from .classes import ClassStructure, class_structure
from . import reference as ref
from .completeness import (choose_threshold, csdc_curve, csdc_scores, deletion_curve, deletion_outcomes,
                           distractibility_curve, preservation_curve, preservation_outcomes)
from .contrastivity import PAIR_MODES, select_pairs, target_sensitivity
from .correctness import single_deletion
from .importance import important_units, part_bits, thresholds, unit_importance
from .interventions import RELEVANCE, InterventionLogits, intervention_logits, lowers_target
from .masks import UnitCells, unit_cells

OPTION = "funnybirds"   # metric_options key
#: the attribution targets evaluated per image, in this order
TARGETS = ("true", "predicted", "c1", "c2")
#: `protocol` values: SPEC 5.2 as xbench states it, or the FunnyBirds framework's behaviour (`reference`)
PROTOCOLS = ("xbench", "reference")


@dataclass(frozen=True)
class SuiteOptions:
    thresholds: int = 80
    relevance: float = RELEVANCE
    pairs: str = "image"
    protocol: str = "xbench"


def suite_options(ctx: EvalContext) -> SuiteOptions:
    """The family's options from `metric_options.funnybirds` (one-line ConfigError when invalid)."""
    return parse_suite_options(ctx.options.get(OPTION, {}))


def parse_suite_options(values: dict) -> SuiteOptions:
    """`SuiteOptions` from a `metric_options.funnybirds` mapping (one-line ConfigError when invalid)."""
    n = values.get("thresholds", 80)
    rel = values.get("relevance", RELEVANCE)
    pairs = values.get("pairs", "image")
    protocol = values.get("protocol", "xbench")
    if protocol not in PROTOCOLS:
        raise ConfigError(f"metric_options.funnybirds.protocol={protocol!r} is invalid: use xbench (the default) "
                          f"or reference (the FunnyBirds framework's numbers)")
    if protocol == "reference" and "pairs" in values:
        raise ConfigError("metric_options.funnybirds.pairs does not apply to protocol: reference (the framework's "
                          "own pair rule is used); drop one of the two")
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ConfigError(f"metric_options.funnybirds.thresholds={n!r} is invalid: use a positive integer (default 80)")
    if isinstance(rel, bool) or not isinstance(rel, (int, float)) or not 0 <= float(rel) < 1:
        raise ConfigError(f"metric_options.funnybirds.relevance={rel!r} is invalid: use a number in [0, 1) (default 0.05)")
    if pairs not in PAIR_MODES:
        raise ConfigError(f"metric_options.funnybirds.pairs={pairs!r} is invalid: use one of {', '.join(PAIR_MODES)}")
    return SuiteOptions(thresholds=int(n), relevance=float(rel), pairs=str(pairs), protocol=str(protocol))


@dataclass
class SuiteResult:
    thresholds: torch.Tensor      # float64 [T]
    csdc: torch.Tensor            # float64 [T] (nan: undefined)
    pc: torch.Tensor
    dc: torch.Tensor
    d: torch.Tensor
    index: int | None             # the chosen threshold (None: no threshold, see `reasons`)
    sd: float
    ts: float
    counts: dict = field(default_factory=dict)
    protocol: str = "xbench"
    reasons: dict = field(default_factory=dict)   # metric name -> why it is undefined (overrides the default)

    @property
    def threshold(self) -> float:
        return float("nan") if self.index is None else float(self.thresholds[self.index])

    def at(self, name: str) -> float:
        return float("nan") if self.index is None else float(getattr(self, name)[self.index])

    @property
    def completeness(self) -> float:
        return ((self.at("csdc") + self.at("pc") + self.at("dc")) / 3.0 + self.at("d")) / 2.0

    @property
    def mean_explainability(self) -> float:
        return (self.completeness + self.sd + self.ts) / 3.0

    def values(self) -> dict[str, float]:
        """Every number of the family at the chosen threshold (nan where undefined)."""
        return {"csdc": self.at("csdc"), "pc": self.at("pc"), "dc": self.at("dc"), "distractibility": self.at("d"),
                "completeness": self.completeness, "single_deletion": self.sd, "target_sensitivity": self.ts,
                "mean_explainability": self.mean_explainability}

    def curves(self) -> dict[str, list]:
        nan_none = lambda t: [None if math.isnan(v) else round(v, 6) for v in t.tolist()]  # noqa: E731
        return {"thresholds": [round(v, 6) for v in self.thresholds.tolist()], "csdc": nan_none(self.csdc),
                "pc": nan_none(self.pc), "dc": nan_none(self.dc), "distractibility": nan_none(self.d)}


def _cells(ctx: EvalContext, grid: tuple[int, int], colours: bool = False) -> UnitCells:
    return ctx.memo(f"funnybirds:masks:{grid[0]}x{grid[1]}{':colours' if colours else ''}",
                    lambda: unit_cells(ctx.dataset, "test", grid, ctx.show_progress, cache_root=cache_root(ctx),
                                       colours=colours))


def cache_root(ctx: EvalContext):
    """The feature cache's folder (unit masks are stored beside the tokens), or None without a cache."""
    return getattr(getattr(ctx.extractor, "cache", None), "root", None)


def explained_importance(ctx: EvalContext, targets: torch.Tensor,
                         colours: bool = False) -> tuple[torch.Tensor, torch.Tensor, UnitCells]:
    """(importance [N, K, U], whole-map sums [N, K], unit cells) of the maps for targets [N, K], batched.
    `colours`: the reference protocol's per-colour dilation (`masks.build_unit_cells`)."""
    n, k = targets.shape
    imp: torch.Tensor | None = None
    total = torch.zeros(n, k, dtype=torch.float64)
    cells: UnitCells | None = None
    for idx, exp in ctx.explanations("test"):
        sel = torch.as_tensor(idx, dtype=torch.long)
        for j in range(k):
            maps = exp.attribution(targets[sel, j].to(exp.logits.device))
            if cells is None:
                cells = _cells(ctx, tuple(int(s) for s in maps.shape[-2:]), colours)
                imp = torch.zeros(n, k, cells.num_units, dtype=torch.float64)
            i, t = unit_importance(maps.detach().cpu(), cells.weights[sel], cells.pixels[sel])
            imp[sel, j], total[sel, j] = i, t
    if cells is None or imp is None:
        raise DataError(f"{ctx.dataset.spec.name}: the test split is empty; the FunnyBirds suite needs test images")
    return imp, total, cells


def _irrelevant(il: InterventionLogits, cells: UnitCells, fraction: float, reference: bool = False) -> torch.Tensor:
    """bool [N, U]: units whose removal does not lower the true-class logit by >= fraction of it
    (with `reference`, the framework's arithmetic: `reference.reference_irrelevant`)."""
    y = il.labels
    orig = il.target_logit(y)[:, None]
    if reference:
        parts = ref.reference_irrelevant(orig, il.single_part_removed(y), fraction)
        objs = ref.reference_irrelevant(orig, il.object_removed(y), fraction) & il.object_valid
    else:
        parts = ~lowers_target(orig, il.single_part_removed(y), fraction)
        objs = ~lowers_target(orig, il.object_removed(y), fraction) & il.object_valid
    return torch.cat([parts, objs], dim=1)


def compute_suite(ctx: EvalContext) -> SuiteResult:
    """The whole family for the job's model on the test split (see the module docstring)."""
    opts = suite_options(ctx)
    reference = opts.protocol == "reference"
    il = intervention_logits(ctx)
    y, pred, p = il.labels, il.predictions, il.num_parts
    cs: ClassStructure = ctx.memo("funnybirds:classes", lambda: class_structure(ctx.dataset, y))
    ts_undefined = 0
    if reference:
        ref.check_class_order(ctx.dataset)
        cs = ref.reference_mss(cs, ctx.dataset.num_classes)
        choice, ts_undefined = ref.reference_pairs(il, cs.agreement.numpy())
    else:
        choice = select_pairs(il, cs, opts.pairs)
    imp, total, cells = explained_importance(ctx, torch.stack([y, pred, choice.c1, choice.c2], dim=1),
                                             colours=reference)
    if cells.num_objects != il.objects.shape[1]:
        raise DataError(f"{ctx.dataset.spec.name}: part maps show {cells.num_objects} background objects at most, "
                        f"the interventions {il.objects.shape[1]}; re-extract the intervention view")
    ts = thresholds(opts.thresholds)
    imp_true = important_units(imp[:, 0], total[:, 0], ts, cells.valid)          # [N, T, U]
    bits_true = part_bits(imp_true, p)
    bits_pred = part_bits(important_units(imp[:, 1], total[:, 1], ts, cells.valid), p)
    subset_pred = il.subsets.argmax(dim=2)                                       # [N, 2^P]
    irrelevant = _irrelevant(il, cells, opts.relevance, reference)
    reasons: dict[str, str] = {}
    if reference:
        correct = pred == y
        scores, _ = csdc_scores(bits_true, y, cs.mss, cs.mss_valid, p)
        csdc, n_csdc = ref.sequential_mean(scores, correct), int(correct.sum())
        pc = ref.sequential_mean(preservation_outcomes(bits_pred, subset_pred, pred))
        dc = ref.sequential_mean(deletion_outcomes(bits_pred, subset_pred, pred, p))
        d, n_d = ref.reference_distractibility_curve(imp_true, irrelevant)
        index = ref.reference_threshold(csdc, pc, dc, d)
        if n_csdc == 0:
            reasons.update(dict.fromkeys(_THRESHOLDED, "no correctly classified test image (the FunnyBirds "
                                                       "framework divides by zero here)"))
        elif index is None:
            reasons.update(dict.fromkeys(_THRESHOLDED, "no threshold has a positive (CSDC + PC + DC)/3 + D (the "
                                                       "FunnyBirds framework selects none and stops)"))
    else:
        csdc, n_csdc = csdc_curve(bits_true, y, pred == y, cs.mss, cs.mss_valid, p)
        pc = preservation_curve(bits_pred, subset_pred, pred)
        dc = deletion_curve(bits_pred, subset_pred, pred, p)
        d, n_d = distractibility_curve(imp_true, irrelevant)
        index = choose_threshold(csdc, pc, dc, d)
    drops = il.target_logit(y).double()[:, None] - il.single_part_removed(y).double()
    sd, n_sd, sd_skipped = single_deletion(imp[:, 0, :p], drops)
    tsv, n_ts = target_sensitivity(imp[:, 2], imp[:, 3], choice, p)
    n = len(y)
    counts = {"images": n, "correct": int((pred == y).sum()), "csdc_images": n_csdc, "pc_images": n, "dc_images": n,
              "d_images": n_d, "d_skipped": n - n_d, "sd_images": n_sd, "sd_skipped": sd_skipped,
              "ts_images": n_ts, "ts_skipped": n - n_ts, "ts_no_pair": int(choice.no_pair.sum()),
              "ts_failed_condition": int(choice.failed.sum()),
              "ts_pairs": "reference" if reference else opts.pairs, "protocol": opts.protocol}
    if reference:
        counts["ts_undefined"] = ts_undefined
    return SuiteResult(thresholds=ts, csdc=csdc, pc=pc, dc=dc, d=d, index=index, sd=sd, ts=tsv, counts=counts,
                       protocol=opts.protocol, reasons=reasons)


#: the metrics read at the chosen threshold
_THRESHOLDED = ("csdc", "pc", "dc", "distractibility", "completeness", "mean_explainability")


def funnybirds_suite(ctx: EvalContext) -> SuiteResult:
    """The job's `SuiteResult` (computed once per job)."""
    return ctx.memo(OPTION, lambda: compute_suite(ctx))


def funnybirds_background(ctx: EvalContext) -> BackgroundResult:
    """Background independence of the job's model (logits only; computed once per job)."""
    opts = suite_options(ctx)
    rule = ref.reference_relevant_background if opts.protocol == "reference" else lowers_target
    return ctx.memo(f"{OPTION}:bi", lambda: background_independence(intervention_logits(ctx), opts.relevance, rule))


__all__ = ["OPTION", "TARGETS", "PROTOCOLS", "SuiteOptions", "SuiteResult", "suite_options", "parse_suite_options",
           "explained_importance",
           "compute_suite", "funnybirds_suite", "funnybirds_background"]
