"""Broken inputs to `xbench run`: one line naming the file or value, a non-zero exit, nothing half-written.

Images (truncated, garbage) in a folder dataset, a DICOM without pixel data in RSNA, malformed lines in
CUB, Pets and RSNA annotation files, weights files of the wrong architecture or holding a pickle, and a
head whose loss becomes NaN (that job is recorded as failed with the reason; the other jobs go on).
"Nothing half-written": no record under `records/`, and every cache entry is complete and verified or
partial (which no reader trusts).
"""
from __future__ import annotations

import json
import sys
import textwrap
from pathlib import Path

import numpy as np
from PIL import Image
from rel_harness import assert_cache_sound, assert_records_readable, cli, records, run_args

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "data"))
from fixtures_cub import make_cub  # noqa: E402
from fixtures_pets_cars import make_pets  # noqa: E402
from fixtures_rsna import make_rsna, write_dicom  # noqa: E402


def one_line_error(r, *needles: str) -> str:
    """The run failed with exactly one stderr line, `xbench...: error: ...`, containing every needle."""
    lines = [line for line in r.err.splitlines() if line.strip()]
    assert r.rc not in (0, -9) and r.rc == 2, (r.rc, r.err[-3000:])
    assert len(lines) == 1, r.err
    assert lines[0].startswith("xbench") and ": error: " in lines[0], lines[0]
    for n in needles:
        assert n in lines[0], (n, lines[0])
    return lines[0]


def nothing_half_written(root: Path) -> None:
    res, cache = root / "results", root / "cache"
    if (res / "records").is_dir():
        assert not list((res / "records").iterdir()), "a record was written"
    assert_records_readable(res)
    if cache.is_dir():
        assert_cache_sound(cache, complete=False)


def _run_on(tmp: Path, dataset: str, data_root: Path | None = None, extra: list[str] | None = None):
    args = run_args(tmp, tmp / "results", tmp / "cache", methods="linear-probe", extra=extra)
    args[args.index("--config") + 1] = str(_plain_config(tmp))
    args += ["--datasets", dataset] + (["--data-root", str(data_root)] if data_root else [])
    return cli(args)


def _plain_config(tmp: Path) -> Path:
    p = tmp / "plain.json"
    p.write_text(json.dumps({"params": {"linear-probe": {"epochs": 2}}}))
    return p


def _folder(tmp: Path) -> Path:
    rng = np.random.default_rng(0)
    root = tmp / "birds"
    for split, n in (("train", 10), ("test", 3)):
        for c in ("crow", "wren"):
            d = root / split / c
            d.mkdir(parents=True)
            for k in range(n):
                Image.fromarray(rng.integers(0, 255, (30, 36, 3), dtype=np.uint8)).save(d / f"{k:02d}.png")
    return root


# images -------------------------------------------------------------------------------------------------
def test_truncated_image(tmp_path):
    root = _folder(tmp_path)
    bad = root / "train" / "wren" / "07.png"  # item 17 of 20: chunks 0 and 1 of the train entry are done first
    bad.write_bytes(bad.read_bytes()[:60])
    r = _run_on(tmp_path, f"folder:{root}")
    one_line_error(r, str(bad), "truncated", "--skip-bad")
    nothing_half_written(tmp_path)
    # --skip-bad: the run completes and the record lists the file it replaced by zeros
    r = _run_on(tmp_path, f"folder:{root}", extra=["--skip-bad"])
    assert r.rc == 0, r.err
    (rec,) = records(tmp_path / "results").values()
    assert rec["status"] == "complete"
    assert rec["skipped_files"] == {"folder-birds/train/plain": ["folder-birds/train/wren/07.png"]}


def test_garbage_image(tmp_path):
    root = _folder(tmp_path)
    bad = root / "test" / "crow" / "01.png"
    bad.write_bytes(b"GIF89a but really just text\n" * 20)
    r = _run_on(tmp_path, f"folder:{root}")
    one_line_error(r, str(bad), "cannot read image")
    nothing_half_written(tmp_path)


def test_dicom_without_pixel_data(tmp_path):
    t = make_rsna(tmp_path / "data", n_neg=6, n_pos=4)
    victim = sorted((t.base / "stage_2_train_images").glob("*.dcm"))[3]
    write_dicom(victim, None)
    r = _run_on(tmp_path, "rsna", tmp_path / "data")
    one_line_error(r, str(victim), "no pixel data")
    nothing_half_written(tmp_path)


# annotation files ------------------------------------------------------------------------------------------
def test_cub_annotation_with_malformed_lines(tmp_path):
    t = make_cub(tmp_path / "data", n_classes=2, per_class=3)
    labels = t.base / "image_class_labels.txt"
    lines = labels.read_text().splitlines()
    lines[2] = "3 two"          # not an integer class
    lines.append("7")          # too few fields
    labels.write_text("\n".join(lines) + "\n")
    r = _run_on(tmp_path, "cub", tmp_path / "data")
    # three problems: the two malformed lines and image 3, now without a class label
    one_line_error(r, f"{labels}:3: malformed line '3 two'", "(and 2 more; run `xbench data check cub`)")
    nothing_half_written(tmp_path)
    assert not (tmp_path / "cache").exists() or not list((tmp_path / "cache").iterdir())  # stopped before extraction


def test_pets_list_with_malformed_line(tmp_path):
    make_pets(tmp_path / "data")
    lst = next((tmp_path / "data").rglob("trainval.txt"))
    lst.write_text(lst.read_text() + "Abyssinian_99 1 one 1\n")
    r = _run_on(tmp_path, "pets", tmp_path / "data")
    n = len(lst.read_text().splitlines())
    one_line_error(r, f"{lst}:{n}: malformed line 'Abyssinian_99 1 one 1'")
    nothing_half_written(tmp_path)


def test_rsna_labels_with_malformed_row(tmp_path):
    t = make_rsna(tmp_path / "data", n_neg=6, n_pos=4)
    csv = t.base / "stage_2_train_labels.csv"
    csv.write_text(csv.read_text() + "deadbeef,1,2,3\n")
    r = _run_on(tmp_path, "rsna", tmp_path / "data")
    n = len(csv.read_text().splitlines())
    one_line_error(r, f"{csv}:{n}: malformed row 'deadbeef,1,2,3'")
    nothing_half_written(tmp_path)


# weights ------------------------------------------------------------------------------------------------------
def _tiny_args(tmp: Path, weights: Path) -> list[str]:
    args = run_args(tmp, tmp / "results", tmp / "cache", methods="linear-probe")
    args[args.index("--weights") + 1] = str(weights)
    return args


def test_weights_of_the_wrong_architecture(tmp_path):
    import timm
    import torch
    from safetensors.torch import save_file

    wide = timm.create_model("vit_small_patch14_reg4_dinov2", pretrained=False, img_size=224, num_classes=0,
                             embed_dim=48, depth=2, num_heads=2)
    f = tmp_path / "wide.safetensors"
    save_file({k: v.contiguous() for k, v in wide.state_dict().items()}, str(f))
    one_line_error(cli(_tiny_args(tmp_path, f)), str(f), "does not fit backbone 'dinov2-tiny-test'")
    deep = timm.create_model("vit_small_patch14_reg4_dinov2", pretrained=False, img_size=224, num_classes=0,
                             embed_dim=32, depth=3, num_heads=2)
    g = tmp_path / "deep.pth"
    torch.save(deep.state_dict(), g)  # same width, one block too many: unexpected keys
    one_line_error(cli(_tiny_args(tmp_path, g)), str(g), "does not fit", "unexpected 1")
    h = tmp_path / "notweights.safetensors"
    h.write_bytes(b"\x00" * 64)
    one_line_error(cli(_tiny_args(tmp_path, h)), str(h), "could not be read")
    nothing_half_written(tmp_path)


# NaN losses ------------------------------------------------------------------------------------------------------
NAN_PLUGIN = textwrap.dedent('''
    """Heads that diverge, for the NaN test."""
    from dataclasses import dataclass

    import torch
    from torch import nn

    from xbench.explanation import Explanation
    from xbench.methods.base import Method, ParamsBase, soft_cross_entropy
    from xbench.registry import register_method


    class _Diverging(Method):
        @dataclass
        class Params(ParamsBase):
            epochs: int = 2

        def __init__(self, info, params=None):
            super().__init__(info, params)
            self.linear = nn.Linear(info.dim, info.num_classes)

        def explain(self, batch):
            return Explanation(logits=self.linear(batch.tokens.cls))


    @register_method("nan-weights", provides={"logits"})
    class NanWeights(_Diverging):
        """A head whose loss becomes NaN and poisons its weights."""

        def fit(self, data, ctx):
            opt = torch.optim.SGD(self.parameters(), lr=0.1)
            for epoch in ctx.epochs(self.params.epochs, "nan"):
                for b in data.batches(8, ctx.generator()):
                    loss = soft_cross_entropy(self.linear(b.tokens.cls), b.targets)
                    if epoch == 1:
                        loss = loss * float("nan")
                    opt.zero_grad(); loss.backward(); opt.step()
            return {"final_loss": float(loss)}


    @register_method("nan-loss", provides={"logits"})
    class NanLoss(_Diverging):
        """A head that reports a NaN final loss (weights untouched)."""

        def fit(self, data, ctx):
            return {"final_loss": float("nan")}
''')


def test_nan_loss_fails_that_job_only(tmp_path):
    plugin = tmp_path / "diverging.py"
    plugin.write_text(NAN_PLUGIN)
    args = run_args(tmp_path, tmp_path / "results", tmp_path / "cache", methods="nan-weights,linear-probe,nan-loss",
                    extra=["--include", str(plugin)])
    r = cli(args)
    assert r.rc == 1, r.err
    recs = {rec["method"]: rec for rec in records(tmp_path / "results").values()}
    assert recs["linear-probe"]["status"] == "complete"
    assert recs["linear-probe"]["metrics"]["accuracy"]["status"] == "ok"
    assert recs["nan-weights"]["status"] == "failed"
    assert recs["nan-weights"]["error"].startswith("training diverged: parameter linear.")
    assert "is not finite after training" in recs["nan-weights"]["error"]
    assert recs["nan-loss"]["status"] == "failed" and recs["nan-loss"]["error"] == "training diverged: final loss is nan"
    for m in ("nan-weights", "nan-loss"):
        assert "head" not in recs[m] and not (tmp_path / "results" / "heads" / recs[m]["job_id"]).exists()
    failed_lines = [line for line in r.err.splitlines() if " failed: " in line and line.startswith("xbench: job")]
    assert len(failed_lines) == 2 and all("training diverged" in line for line in failed_lines)
    assert "1 job(s) run, 0 already complete, 2 failed" in r.err
    # a rerun retries the failed jobs (they fail again) and leaves the complete one alone
    r2 = cli(args)
    assert r2.rc == 1 and "0 job(s) run, 1 already complete, 2 failed" in r2.err


def test_nan_in_a_parameter_value_is_refused(tmp_path):
    args = run_args(tmp_path, tmp_path / "results", tmp_path / "cache", methods="linear-probe",
                    extra=["--set", "linear-probe.lr=nan"])
    one_line_error(cli(args), "linear-probe.lr", "nan")
    nothing_half_written(tmp_path)
