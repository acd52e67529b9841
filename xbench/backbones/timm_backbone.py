"""timm models as frozen token extractors: ViTs (`TimmViT`) and CNNs (`TimmCNN`), one weights path for all.

Weights (every timm backbone, SPEC 2):
* `auto`: timm's own pretrained download and cache (`pretrained=True`). Offline
  without a cached copy this fails with one line naming the file to pass with
  `--weights`.
* a path: a `.safetensors` (timm's layout) or a `.pth` (tensors only,
  `torch.load(weights_only=True)`: no pickle runs); the model family's own timm
  checkpoint filter converts the original layouts (FAIR DINOv2, Meta DINOv3,
  OpenAI CLIP as timm exports it; torchvision ResNet keys need none) and
  resamples position embeddings to the input size. Classifier weights in the
  file are dropped (`num_classes=0`).
* `random`: seeded random initialisation, only when asked for explicitly; every
  result then carries `weights: random`.

Preprocessing: mean, std and interpolation come from the model's timm
pretrained config (`xbench.preprocessing.from_timm`; the same config whichever
weights are loaded), the input size is xbench's (224 px by default).

Tokens (`Tokens`): taken after the model's final norm, exactly as timm's own
`forward_features` returns them.
* ViT (`TimmViT`; timm `VisionTransformer` and `Eva`): `forward_features`
  gives [B, prefix + g*g, D]; timm lays out the prefix as the class token then
  the register tokens (DINOv2 `reg4`: 4, DINOv3: 4 "storage tokens"), then the
  patches row by row. `cls` = token 0, `reg` = tokens 1..prefix-1, `patch` =
  the rest on the g x g grid. The "final norm" is the model's `norm`, applied
  by timm to every token; any pooling head after it (`fc_norm`, CLIP's
  512-d image-text projection `head`) is not applied (`num_classes=0`).
* CNN (`TimmCNN`; timm `ResNet`): `forward_features` gives the last stage's
  feature map [B, C, h, w] (after the stage's final ReLU; a ResNet has no final
  norm). It is the patch grid, `patch` = [B, h, w, C]; `patch_size` = the
  network's total stride (32 for ResNet-50), so `grid` = 7 at 224 px. There is
  no class token: `cls` = the mean of the patch tokens (the global average
  pool timm's ResNet head applies before its classifier), `has_cls_token`
  False, recorded as `cls: patch-mean`; `reg` is empty.

Grad-CAM's anchor (`forward_anchored`): ViT, the patch tokens entering the
last block (a forward pre-hook on `blocks[-1]`, whatever the patch size); CNN,
the last stage's output (a forward hook on it), before the mean that forms
`cls`.
"""
from __future__ import annotations

import hashlib
import importlib
from pathlib import Path
from typing import Any, Callable

import torch

from ..errors import WeightsError
from ..preprocessing import from_timm, pretrained_input_size
from ..tokens import Tokens
from .base import Backbone

#: `hint(timm_name) -> str`: how to get the weights offline (the end of the "no pretrained weights" line)
WeightsHint = Callable[[str], str]


def hub_hint(timm_name: str) -> str:
    """Offline advice from the model's timm pretrained config (its Hugging Face hub id)."""
    import timm

    try:
        cfg = timm.models.get_pretrained_cfg(timm_name)
        hub = (cfg.hf_hub_id or "").rstrip("/") if cfg else ""
        if hub == "timm":
            hub = f"timm/{timm_name}"
    except Exception:  # an unknown tag: the generic advice
        hub = ""
    where = f"download model.safetensors from https://huggingface.co/{hub} and " if hub else ""
    return f"{where}pass --weights /path/to/model.safetensors (or a .pth of tensors)"


class TimmBackbone(Backbone):
    """A timm model, frozen; weights, preprocessing and hashing shared by the ViT and CNN wrappers."""

    def __init__(self, timm_name: str, weights: str = "auto", image_size: int = 224, seed: int = 0,
                 registered_name: str | None = None, create_kwargs: dict[str, Any] | None = None,
                 hint: WeightsHint = hub_hint):
        super().__init__()
        import timm

        self.name = registered_name or timm_name
        self.timm_name = timm_name
        self.image_size = int(image_size)
        kwargs = {"num_classes": 0, **self.size_kwargs(self.image_size), **(create_kwargs or {})}
        weights = str(weights)
        if weights == "auto":
            try:
                self.model = timm.create_model(timm_name, pretrained=True, **kwargs)
            except Exception as err:  # offline, hub errors, missing cache: all the same advice
                raise WeightsError(
                    f"no pretrained weights for backbone {self.name!r}: timm could not load {timm_name} "
                    f"({type(err).__name__}; offline?); {hint(timm_name)}"
                ) from None
            tag = getattr(self.model, "pretrained_cfg", {}).get("tag") or "default"
            arch = timm_name.split(".")[0]
            self.weights_kind, self.weights_source = "pretrained", f"timm:{arch}.{tag}"
        elif weights == "random":
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(seed)
                self.model = timm.create_model(timm_name, pretrained=False, **kwargs)
            self.weights_kind, self.weights_source = "random", f"seed{seed}"
        else:
            path = Path(weights).expanduser()
            self.model = timm.create_model(timm_name, pretrained=False, **kwargs)
            load_weights_file(self.model, path, self.name)
            self.weights_kind, self.weights_source = "file", str(path)
        pre = from_timm(self.model, self.image_size, label=timm_name.split(".")[0])
        self.mean, self.std, self.interpolation = pre.mean, pre.std, pre.interpolation
        self.preprocessing_source = pre.source
        self.pretrained_input_size = pretrained_input_size(self.model)

    def size_kwargs(self, image_size: int) -> dict[str, Any]:
        """`create_model` arguments that set the input size (ViTs: `img_size`; CNNs take any size)."""
        return {}

    def hash_extra(self) -> str:
        # the preprocessing changes the tokens, so it is part of the hash (and of the job id through it)
        pre = self.preprocessing.key()
        return f"timm:{self.timm_name}:{self.image_size}:{pre['interpolation']}:{pre['mean']}:{pre['std']}"

    def intermediate(self, images: torch.Tensor, indices: int | list[int]) -> list[torch.Tensor]:
        """Patch tokens of other layers as [B, g, g, D] (timm's forward_intermediates, final norm applied)."""
        outs = self.model.forward_intermediates(images, indices=indices, norm=True, output_fmt="NCHW",
                                                intermediates_only=True)   # NCHW: the layout every timm ViT gives
        return [o.permute(0, 2, 3, 1) for o in outs]

    def describe(self) -> dict:
        return {**super().describe(), "timm_model": self.timm_name,
                "pretrained_input_size": self.pretrained_input_size}


class TimmViT(TimmBackbone):
    """A timm ViT (`VisionTransformer`, `Eva`): CLS, registers and the patch grid after the final norm."""

    def __init__(self, timm_name: str, weights: str = "auto", image_size: int = 224, seed: int = 0,
                 registered_name: str | None = None, hint: WeightsHint = hub_hint, **model_kwargs: Any):
        super().__init__(timm_name, weights=weights, image_size=image_size, seed=seed,
                         registered_name=registered_name, create_kwargs=model_kwargs, hint=hint)
        m = self.model
        if getattr(m, "cls_token", None) is None:
            raise WeightsError(f"backbone {self.name!r} has no class token; xbench's ViT wrapper needs one")
        reg = getattr(m, "reg_token", None)
        self.patch_size = int(m.patch_embed.patch_size[0])
        self.embed_dim = int(m.embed_dim)
        self.num_registers = int(reg.shape[1]) if reg is not None else 0
        self.num_prefix = int(m.num_prefix_tokens)
        if self.num_prefix != 1 + self.num_registers:
            raise WeightsError(f"backbone {self.name!r}: timm reports {self.num_prefix} prefix tokens for one class "
                               f"token and {self.num_registers} registers; xbench cannot split them")
        self.freeze()

    def size_kwargs(self, image_size: int) -> dict[str, Any]:
        return {"img_size": image_size}

    def _tokens(self, images: torch.Tensor, anchor: Callable[[torch.Tensor], torch.Tensor] | None) -> Tokens:
        m = self.model
        handle = None
        if anchor is not None:
            n_prefix, g = self.num_prefix, self.grid

            def route(module, args, kwargs):  # the last block's input, patches through the anchor
                return (_through_anchor(args[0], anchor, n_prefix, g), *args[1:]), kwargs

            handle = m.blocks[-1].register_forward_pre_hook(route, with_kwargs=True)
        try:
            x = m.forward_features(images)
        finally:
            if handle is not None:
                handle.remove()
        b, n, d = x.shape
        g = self.grid
        if n != self.num_prefix + g * g:
            raise WeightsError(f"backbone {self.name!r} returned {n} tokens for a {images.shape[-1]}-px input; "
                               f"expected {self.num_prefix} + {g}x{g}")
        patch = x[:, self.num_prefix:].reshape(b, g, g, d)
        return Tokens(patch=patch, cls=x[:, 0], reg=x[:, 1:self.num_prefix])


def _through_anchor(x: torch.Tensor, anchor: Callable, n_prefix: int, g: int) -> torch.Tensor:
    prefix, patches = x[:, :n_prefix], x[:, n_prefix:]
    b, n, d = patches.shape
    grid = patches.transpose(1, 2).reshape(b, d, g, g)
    grid = anchor(grid)
    patches = grid.reshape(b, d, n).transpose(1, 2)
    return torch.cat([prefix, patches], dim=1)


class TimmCNN(TimmBackbone):
    """A timm CNN (ResNet): the last stage's feature map is the patch grid; no class token (CLS = patch mean)."""

    has_cls_token = False

    def __init__(self, timm_name: str, weights: str = "auto", image_size: int = 224, seed: int = 0,
                 registered_name: str | None = None, hint: WeightsHint = hub_hint, **model_kwargs: Any):
        super().__init__(timm_name, weights=weights, image_size=image_size, seed=seed,
                         registered_name=registered_name, create_kwargs=model_kwargs, hint=hint)
        m = self.model
        last = m.feature_info[-1]
        self.last_stage = str(last["module"])
        self.patch_size = int(last["reduction"])
        self.embed_dim = int(m.num_features)
        self.num_registers = 0
        self.freeze()

    def _tokens(self, images: torch.Tensor, anchor: Callable[[torch.Tensor], torch.Tensor] | None) -> Tokens:
        m = self.model
        handle = None
        if anchor is not None:
            handle = m.get_submodule(self.last_stage).register_forward_hook(lambda mod, args, out: anchor(out))
        try:
            fmap = m.forward_features(images)            # [B, C, h, w]
        finally:
            if handle is not None:
                handle.remove()
        b, d, h, w = fmap.shape
        g = self.grid
        if (h, w) != (g, g):
            raise WeightsError(f"backbone {self.name!r} returned a {h}x{w} feature map for a {images.shape[-1]}-px "
                               f"input; expected {g}x{g} (image size / total stride {self.patch_size})")
        patch = fmap.permute(0, 2, 3, 1)
        cls = patch.mean(dim=(1, 2))
        return Tokens(patch=patch, cls=cls, reg=patch.new_zeros(b, 0, d))

    def intermediate(self, images: torch.Tensor, indices: int | list[int]) -> list[torch.Tensor]:
        """Feature maps of other stages as [B, h, w, C] (timm's forward_intermediates)."""
        outs = self.model.forward_intermediates(images, indices=indices, intermediates_only=True)
        return [o.permute(0, 2, 3, 1) for o in outs]


def load_weights_file(model: torch.nn.Module, path: Path, name: str) -> None:
    """Load a `.pth` (tensors only) or `.safetensors` file into `model`, or fail with one line."""
    if not path.is_file():
        raise WeightsError(f"weights file {path} does not exist; pass --weights with an existing .pth or .safetensors file")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            sd = load_file(str(path), device="cpu")
        else:
            sd = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        raise WeightsError(
            f"weights file {path} could not be read ({type(err).__name__}: {_first_line(err)[:120]}); "
            "it must be a .pth of tensors (e.g. the official checkpoint) or a timm .safetensors file"
        ) from None
    if not isinstance(sd, dict) or not sd:
        raise WeightsError(f"weights file {path} holds no state dict; pass a .pth of tensors or a timm .safetensors file")
    classifier = str((getattr(model, "pretrained_cfg", None) or {}).get("classifier") or "head")
    try:
        sd = _checkpoint_filter(model)(dict(sd), model)
        sd = {k: v for k, v in sd.items() if not k.startswith(classifier + ".")}
        missing, unexpected = model.load_state_dict(sd, strict=False)
    except Exception as err:
        raise WeightsError(
            f"weights file {path} does not fit backbone {name!r} ({type(err).__name__}: {_first_line(err)[:160]}); "
            f"pass the weights of {name} or choose the matching --backbone"
        ) from None
    missing = [k for k in missing if not k.startswith(classifier + ".")]
    if missing or unexpected:
        raise WeightsError(
            f"weights file {path} does not fit backbone {name!r} (missing {len(missing)} keys e.g. "
            f"{missing[:2]}, unexpected {len(unexpected)} e.g. {list(unexpected)[:2]}); "
            f"pass the weights of {name} or choose the matching --backbone"
        )


def _checkpoint_filter(model: torch.nn.Module) -> Callable[[dict, torch.nn.Module], dict]:
    """The timm module's own `checkpoint_filter_fn` for this model family (identity where it has none)."""
    fn = getattr(importlib.import_module(type(model).__module__), "checkpoint_filter_fn", None)
    return fn if callable(fn) else (lambda sd, m: sd)


def _first_line(err: BaseException) -> str:
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    return lines[0] if lines else ""


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def make(cls: type[TimmBackbone], timm_name: str, hint: WeightsHint = hub_hint,
         **fixed: Any) -> Callable[..., TimmBackbone]:
    """A registry factory `(weights, image_size, seed, name) -> cls(timm_name, ...)`."""

    def factory(weights: str = "auto", image_size: int = 224, seed: int = 0, name: str | None = None) -> TimmBackbone:
        return cls(timm_name, weights=weights, image_size=image_size, seed=seed, registered_name=name, hint=hint,
                   **fixed)

    factory.timm_name = timm_name  # type: ignore[attr-defined]
    factory.__name__ = f"make_{timm_name.replace('.', '_')}"
    factory.__doc__ = f"timm {timm_name} (frozen)."
    return factory
