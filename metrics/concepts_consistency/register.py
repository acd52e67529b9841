"""The registered metrics `consistency` and `stability` of concepts (SPEC 5.4).

Both need concept explanations (n/a for methods without concepts) and either
keypoints with boxes (protocol a) or part maps (protocol b); `common` picks
the protocol. Hits on the clean images are computed once per job and shared
by the two metrics (`ctx.memo`); the noisy images are a cached `NoiseView`.

Metric options (`metric_options: {consistency: {...}, stability: {...}}`):
`protocol` (auto | keypoints | part_masks), `noise_seed` (0), for (a)
`used_top_k` (0: every concept with a positive class weight), for (b)
`importance_norm` (max | sum | none) and `map_norm` (max | none).
"""
from __future__ import annotations

from xbench.evaluation import EvalContext, MetricValue
from xbench.registry import register_metric
from xbench.views import BoxCropView, NoiseView, PlainView, View

from .common import NOISE_CLIP, NOISE_SIGMA, choose_protocol
from .keypoints import KeypointHits, keypoint_consistency, keypoint_frame, keypoint_hits, keypoint_stability
from .partmasks import PartHits, part_consistency, part_hits, part_stability

_NEEDS = dict(needs_method={"concepts"}, needs_data_any={"keypoints", "part_map"}, category="concepts",
              direction="higher", cost="moderate", paper="huang2023evaluation",
              options=tuple(f"{m}.{k}" for m in ("consistency", "stability")
                            for k in ("protocol", "noise_seed", "used_top_k", "importance_norm", "map_norm")))


def views(protocol: str, noise_seed: int = 0) -> tuple[View, View]:
    """(clean, noisy) views of the test split for a protocol."""
    if protocol == "keypoints":
        return BoxCropView(), NoiseView(NOISE_SIGMA, NOISE_CLIP, space="normalized", seed=noise_seed,
                                        inner=BoxCropView())
    return PlainView(), NoiseView(NOISE_SIGMA, NOISE_CLIP, space="unit", seed=noise_seed)


def _hits(ctx: EvalContext, metric: str, protocol: str, view: View) -> KeypointHits | PartHits:
    if protocol == "keypoints":
        top_k = int(ctx.option(metric, "used_top_k", 0))
        size = int(ctx.extractor.backbone.image_size)

        def run() -> KeypointHits:
            frame = ctx.memo(f"concepts:keypoint-frame:{size}", lambda: keypoint_frame(ctx, view, size))
            return keypoint_hits(ctx, view, frame, top_k=top_k)

        return ctx.memo(f"concepts:hits:{protocol}:{view.key}:top{top_k}", run)
    imp = str(ctx.option(metric, "importance_norm", "max"))
    mp = str(ctx.option(metric, "map_norm", "max"))
    return ctx.memo(f"concepts:hits:{protocol}:{view.key}:{imp}:{mp}",
                    lambda: part_hits(ctx, view, importance_norm=imp, map_norm=mp))


@register_metric("consistency", **_NEEDS,
                 description="share of concepts that land on the same object part across a class's test images")
def consistency(ctx: EvalContext) -> MetricValue:
    """Share of concepts that land on the same object part across a class's test images (SPEC 5.4)."""
    protocol = choose_protocol(ctx, "consistency")
    clean, _ = views(protocol, int(ctx.option("consistency", "noise_seed", 0)))
    h = _hits(ctx, "consistency", protocol, clean)
    if protocol == "keypoints":
        value, n = keypoint_consistency(h)
    else:
        value, n = part_consistency(h, ctx.dataset.num_classes)
    extras = {"protocol": protocol, "pairs": n}
    if value is None:
        extras["reason"] = "no (class, concept) pair to score" if protocol == "keypoints" else "no concept hits any part"
    return MetricValue(value, extras)


@register_metric("stability", **_NEEDS,
                 description="share of concept-to-part hits unchanged under small input noise")
def stability(ctx: EvalContext) -> MetricValue:
    """Share of concept-to-part hits unchanged under small input noise (SPEC 5.4)."""
    protocol = choose_protocol(ctx, "stability")
    clean, noisy = views(protocol, int(ctx.option("stability", "noise_seed", 0)))
    a = _hits(ctx, "stability", protocol, clean)
    b = _hits(ctx, "stability", protocol, noisy)
    if protocol == "keypoints":
        value, n = keypoint_stability(a, b)
        extras = {"protocol": protocol, "pairs": n}
    else:
        value, n = part_stability(a, b)
        extras = {"protocol": protocol, "entries": n}
    if value is None:
        extras["reason"] = "no (class, concept) pair to score" if protocol == "keypoints" else "no concept hits any part"
    return MetricValue(value, extras)


__all__ = ["consistency", "stability", "views"]
