"""Parity check (not a test): xbench's ``dino-qpm.penalty=reference`` against the DINO-QPM reference code.

Needs a snapshot of the DINO-QPM repository (never committed here), e.g.

    mkdir /tmp/dinoqpm-ref
    git -C /work/.mirror/RobertZimm+DINO-QPM/repo archive HEAD | tar -x -C /tmp/dinoqpm-ref
    python benchmarks/parity_qpm.py --reference /tmp/dinoqpm-ref --seeds 0,1,2

(about 4 minutes on 2 CPUs; ``--small-only`` skips the 512 x 200 instances;
``--tiny`` adds 180 instances of 6-40 features, where both sides must agree,
also on failing).
Exit status 0 when every instance matches exactly.

The reference's own modules are imported from the snapshot by file path
(``dino_qpm`` package ``__init__`` files are skipped; ``gurobipy``,
``sortedcontainers`` and ``tqdm`` are stubbed where missing). Its
``solve_qp`` is run with a stand-in ``gurobipy`` whose model records the
objective's pair terms (feature i, features j, weights) and stops at
``optimize()``, so the reference's own code decides the threshold
(``find_minimum_viable_threshold``, read back from the ``cliques.pickle`` it
saves), the penalised pairs (``get_disallowed_vector_connections``) and their
weights. xbench's side is `qp_reference.reference_problem_from_matrix`.

Instances (seeded): ``matrix``: A i.i.d. uniform on [-1, 1] (as
``bench_qp.py``); ``features``: synthetic pooled float32 features (ReLU of
sparse class means plus noise, 30 samples per class), whose A is computed by
both sides (reference: ``compute_A.corr_matrix``; then divided by max |A| and
R from ``compute_R.compute_cos_sim_matrix`` divided by max |R|, as
``qpm_sparsification`` does). Sizes: small (96 x 50, the quickstart's
``n_features``) and CUB (512 x 200); 50 features, 5 per class. For contrast,
SPEC's rule (``penalty=spec``) on the same A is printed too.
"""
from __future__ import annotations

import argparse
import contextlib
import importlib.util
import io
import os
import pickle
import sys
import tempfile
import time
import types
import warnings
from pathlib import Path

import numpy as np

from xbench.methods.dino_qpm.qp_problem import problem_from_matrix
from xbench.methods.dino_qpm.qp_reference import (
    reference_feature_class_correlation,
    reference_problem_from_matrix,
)

# ------------------------------------------------------------ stand-ins for the reference's imports

CAPTURED: list[tuple[int, np.ndarray, np.ndarray]] = []  # (i, js, weights) of the objective's pair terms


class _Stop(Exception):
    """Raised by the stand-in model's optimize(): the objective is recorded, nothing is solved."""


class _Expr:
    """Absorbs every gurobipy expression operation; products of two indexed variables followed by a weight
    array record a pair term."""

    __array_ufunc__ = None  # numpy defers to us
    __hash__ = None

    def __init__(self, index=None, pair=None, shape=None):
        self.index, self.pair, self.shape = index, pair, shape

    def __getitem__(self, key):
        return _Expr(index=key)

    def __mul__(self, other):
        if isinstance(other, _Expr) and self.index is not None and other.index is not None:
            return _Expr(pair=(self.index, other.index))
        if self.pair is not None and isinstance(other, np.ndarray):
            (i, _), (js, _) = self.pair
            CAPTURED.append((int(i), np.atleast_1d(np.asarray(js)).copy(), np.atleast_1d(other).copy()))
        return _Expr()

    def _any(self, *_):
        return _Expr()

    __rmul__ = __add__ = __radd__ = __sub__ = __rsub__ = __eq__ = __le__ = __ge__ = _any

    def sum(self, *_, **__):
        return _Expr()


class _Model:
    def __init__(self, *_, **__):
        pass

    def setParam(self, *_):
        pass

    def addMVar(self, shape, *_, **__):
        return _Expr(shape=tuple(shape))

    def addConstr(self, *_, **__):
        pass

    def addConstrs(self, gen, *_, **__):
        for _ in gen:
            pass

    def setObjective(self, *_):
        pass

    def optimize(self):
        raise _Stop


def _stub(name: str, **attrs) -> types.ModuleType:
    mod = types.ModuleType(name)
    mod.__dict__.update(attrs)
    sys.modules[name] = mod
    return mod


def load_reference(root: Path) -> types.SimpleNamespace:
    """The reference's modules from a snapshot at ``root`` (package __init__ files skipped)."""
    pkg = root / "dino_qpm"
    if not (pkg / "sparsification" / "qpm" / "clique_utils.py").exists():
        raise SystemExit(f"--reference {root}: no dino_qpm/sparsification/qpm/clique_utils.py there; "
                         "pass a checkout or snapshot of the DINO-QPM repository")
    _stub("gurobipy", Model=_Model, GRB=types.SimpleNamespace(BINARY="B", CONTINUOUS="C", MAXIMIZE=-1, MINIMIZE=1))
    for name, attrs in (("sortedcontainers", {"SortedDict": dict}), ("tqdm", {"trange": range, "tqdm": iter})):
        try:
            importlib.import_module(name)
        except ImportError:
            _stub(name, **attrs)
    for sub in ("", ".sparsification", ".sparsification.qpm", ".sparsification.qpm.iterativeConstraints",
                ".sparsification.qpm_constants", ".evaluation", ".evaluation.metrics"):
        mod = _stub("dino_qpm" + sub)
        mod.__path__ = [str(pkg / sub.lstrip(".").replace(".", "/"))]

    def load(dotted: str) -> types.ModuleType:
        path = pkg / (dotted.replace(".", "/") + ".py")
        spec = importlib.util.spec_from_file_location("dino_qpm." + dotted, path)
        mod = importlib.util.module_from_spec(spec)
        sys.modules["dino_qpm." + dotted] = mod
        spec.loader.exec_module(mod)
        return mod

    return types.SimpleNamespace(
        corr=load("evaluation.metrics.Correlation"),
        clique=load("sparsification.qpm.clique_utils"),
        A=load("sparsification.qpm_constants.compute_A"),
        R=load("sparsification.qpm_constants.compute_R"),
        solving=load("sparsification.qpm.qpm_solving"),
    )


# -------------------------------------------------------------------------------- the two sides


def reference_side(ref: types.SimpleNamespace, A: np.ndarray, n_select: int, per_class: int) -> dict:
    """Run the reference's solve_qp up to optimize() on A (already divided by max |A|)."""
    r = ref.R.compute_cos_sim_matrix(A)
    with warnings.catch_warnings():  # numpy's note on torch's __array__; the reference calls np.array(tensor) too
        warnings.simplefilter("ignore", DeprecationWarning)
        R = np.array(r / r.abs().max())
    CAPTURED.clear()
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            try:
                ref.solving.solve_qp(np.array(A), R.copy(), None, n_select, per_class, save_folder=Path(tmp),
                                     mode="iterative")
            except _Stop:
                pass
        seconds = time.perf_counter() - t0
        with open(Path(tmp) / "cliques.pickle", "rb") as f:
            threshold, frac, clique_size, clique, _ = pickle.load(f)
    pairs = [(i, int(j)) for i, js, _ in CAPTURED for j in js]
    weights = np.concatenate([w for _, _, w in CAPTURED]) if CAPTURED else np.zeros(0)
    start = np.sort(np.asarray(list(clique)[:n_select]))
    np.fill_diagonal(R, 0.0)
    return {"R": R, "threshold": float(threshold), "frac": float(frac), "clique_size": int(clique_size),
            "start": start, "pairs": pairs, "weights": weights, "seconds": seconds}


def xbench_side(A: np.ndarray, n_select: int, per_class: int) -> dict:
    t0 = time.perf_counter()
    p = reference_problem_from_matrix(A, n_select, per_class)
    seconds = time.perf_counter() - t0
    d = p.search
    return {"R": np.asarray(p.R), "threshold": p.tau, "frac": d["slack_fraction"], "clique_size": d["clique_size"],
            "start": np.sort(p.tau_set), "pairs": [tuple(int(v) for v in q) for q in p.pairs],
            "weights": np.asarray(p.pair_weights), "seconds": seconds}


# ------------------------------------------------------------------------------------ instances


def instance(kind: str, n: int, C: int, seed: int) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
    """(A, features, labels); features / labels only for ``features``."""
    rng = np.random.default_rng(seed)
    if kind == "matrix":
        return rng.uniform(-1.0, 1.0, (n, C)), None, None
    labels = np.repeat(np.arange(C), 30)
    means = rng.normal(size=(C, n)) * (rng.random((C, n)) < 0.1)
    feats = np.maximum(means[labels] + rng.normal(size=(len(labels), n)), 0.0).astype(np.float32)
    return np.zeros(0), feats, labels


def compare(ref: types.SimpleNamespace, kind: str, n: int, C: int, seed: int, n_select: int, per_class: int) -> bool:
    A, feats, labels = instance(kind, n, C, seed)
    print(f"\n== {kind} {n} x {C}, seed {seed}, {n_select} features, {per_class} per class")
    if feats is not None:
        with contextlib.redirect_stderr(io.StringIO()):  # its progress bar
            a_ref = ref.A.corr_matrix(feats, labels)
        a_xb = reference_feature_class_correlation(feats, labels, C)
        print(f"  A (compute_A.corr_matrix vs xbench): identical bits {np.array_equal(a_ref, a_xb)}, "
              f"max |diff| {np.abs(a_ref - a_xb).max():.3g}")
        A = a_ref
    A = A / np.abs(A).max()
    r = reference_side(ref, A, n_select, per_class)
    x = xbench_side(A, n_select, per_class)
    spec = problem_from_matrix(A, n_select, per_class)
    same_pairs = r["pairs"] == x["pairs"]
    w_diff = float(np.abs(r["weights"] - x["weights"]).max()) if same_pairs and len(r["weights"]) else 0.0
    rows = [
        ("R identical bits", np.array_equal(r["R"], x["R"]), ""),
        ("threshold (on R + R^T)", repr(r["threshold"]), repr(x["threshold"])),
        ("slack fraction", f"{r['frac']:.6f}", f"{x['frac']:.6f}"),
        ("clique size", r["clique_size"], x["clique_size"]),
        ("MIP start set identical", bool(np.array_equal(r["start"], x["start"])), ""),
        ("penalised pairs", len(r["pairs"]), len(x["pairs"])),
        ("pair sets identical", same_pairs, ""),
        ("weights max |diff|", f"{w_diff:.3g}", ""),
        ("seconds", f"{r['seconds']:.2f}", f"{x['seconds']:.2f}"),
    ]
    print(f"  {'':26s} {'reference':>22s} {'xbench reference':>22s}")
    for name, a, b in rows:
        print(f"  {name:26s} {str(a):>22s} {str(b):>22s}")
    print(f"  SPEC's rule on the same A: tau {spec.tau:.6g} (on R), {len(spec.pairs)} penalised pairs")
    ok = (np.array_equal(r["R"], x["R"]) and r["threshold"] == x["threshold"] and same_pairs and w_diff == 0.0
          and np.array_equal(r["start"], x["start"]) and r["clique_size"] == x["clique_size"])
    print(f"  match: {'EXACT' if ok else 'DIFFERENT'}")
    return ok


TINY = ((6, 3, 3, 1), (8, 4, 4, 2), (12, 6, 8, 5), (20, 10, 10, 5), (30, 20, 15, 3), (40, 20, 20, 5))


def compare_tiny(ref: types.SimpleNamespace, seeds: int = 15) -> bool:
    """Small sizes (features x classes, n_select, per class): both sides succeed identically or both fail."""
    from xbench.errors import ConfigError

    total = same = failed = 0
    for n, C, n_select, per_class in TINY:
        for seed in range(seeds):
            for kind in ("matrix", "features"):
                A, feats, labels = instance(kind, n, C, seed)
                if feats is not None:
                    with contextlib.redirect_stderr(io.StringIO()):
                        A = ref.A.corr_matrix(feats, labels)
                A = A / np.abs(A).max()
                try:
                    r = reference_side(ref, A, n_select, per_class)
                except Exception:  # the reference's own failure (assertion, IndexError, ...)
                    r = None
                try:
                    x = xbench_side(A, n_select, per_class)
                except ConfigError:
                    x = None
                total += 1
                failed += r is None
                if r is None or x is None:
                    same += r is None and x is None
                else:
                    same += (r["threshold"] == x["threshold"] and r["pairs"] == x["pairs"]
                             and np.array_equal(r["weights"], x["weights"]) and np.array_equal(r["start"], x["start"]))
    print(f"\n== small sizes {', '.join(f'{n}x{C}/{t}' for n, C, t, _ in TINY)}, seeds 0-{seeds - 1}, "
          f"matrix + features: {same} of {total} identical (reference failed on {failed})")
    return same == total


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--reference", type=Path, required=True, help="checkout / snapshot of the DINO-QPM repository")
    ap.add_argument("--seeds", default="0", help="comma-separated seeds (default 0)")
    ap.add_argument("--small-only", action="store_true", help="skip the 512 x 200 instances")
    ap.add_argument("--tiny", action="store_true", help="also 180 instances of 6-40 features (n_select 3-20)")
    args = ap.parse_args()
    ref = load_reference(args.reference.resolve())
    import networkx

    print(f"numpy {np.__version__}, networkx {networkx.__version__}, python {sys.version.split()[0]}, "
          f"{os.cpu_count()} CPUs")
    sizes = [(96, 50)] + ([] if args.small_only else [(512, 200)])
    results = [compare(ref, kind, n, C, int(seed), 50, 5)
               for seed in args.seeds.split(",") for n, C in sizes for kind in ("matrix", "features")]
    print(f"\n{sum(results)} of {len(results)} instances match exactly")
    if args.tiny:
        results.append(compare_tiny(ref))
    sys.exit(0 if all(results) else 1)


if __name__ == "__main__":
    main()
