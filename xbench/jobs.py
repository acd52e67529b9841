"""A job is (method, dataset, backbone, weights, seed) plus the resolved options that change its result."""
from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass, field
from typing import Any

from .cache import canonical


@dataclass(frozen=True)
class Job:
    method: str
    dataset: str
    backbone: str
    weights: str            # label: random / weight-free / pretrained:... / file:...
    weights_hash: str
    seed: int
    params: dict = field(default_factory=dict)            # resolved method hyper-parameters
    dataset_options: dict = field(default_factory=dict)
    dataset_fingerprint: dict = field(default_factory=dict)
    metric_options: dict = field(default_factory=dict)
    profile: str = "paper"
    metrics: tuple[str, ...] = ()                         # requested metrics (not part of the identity)
    cache_dtype: str = "float16"                          # precision of the cached tokens the job reads

    def identity(self) -> dict[str, Any]:
        """Everything that changes the trained head or a metric's value; hashed into the job id.
        (`cache_dtype` enters only when it is not the default float16, so earlier job ids stay valid.)"""
        d = asdict(self)
        d.pop("metrics")
        d.pop("weights")  # the hash identifies the weights; the label is for people
        d.pop("dataset_options")  # covered by the fingerprint
        if d.get("cache_dtype") == "float16":
            d.pop("cache_dtype")
        return d

    @property
    def protocol(self) -> str:
        return protocol_label(self.metric_options)

    @property
    def job_id(self) -> str:
        h = hashlib.sha256(canonical(self.identity()).encode()).hexdigest()[:16]
        return f"{self.method}__{self.dataset}__s{self.seed}__{h}"

    @property
    def config_hash(self) -> str:
        return hashlib.sha256(canonical(self.identity()).encode()).hexdigest()

    def label(self) -> str:
        return f"{self.method} on {self.dataset} (seed {self.seed})"


def protocol_label(metric_options: dict | None) -> str:
    """Which evaluation protocol a job's metrics follow: "xbench" (SPEC as xbench states it, the default),
    or the metric families that follow another one, e.g. "funnybirds: reference" (the FunnyBirds
    framework's own numbers). Records store it; leaderboards never put two protocols in one table."""
    other = sorted(f"{group}: {opts['protocol']}" for group, opts in (metric_options or {}).items()
                   if isinstance(opts, dict) and opts.get("protocol") not in (None, "xbench"))
    return "; ".join(other) if other else "xbench"
