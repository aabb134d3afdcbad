"""Load a frozen encoder to evaluate: a training run folder, its backbone.safetensors, a checkpoint, or a CLIP image
encoder in Hugging Face format (the generator's own encoder, e.g. `<sd-image-variations>/image_encoder`)."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from genaug.core.errors import GenaugError
from genaug.core.files import cache_home
from genaug.core.hashing import file_sha256, stable_hash
from genaug.data.evaluation import Preprocess
from genaug.ssl.artifacts import is_run_artefact, load_method, load_strict

BACKBONE_FILE = "backbone.safetensors"
RECIPE_NAMES = ("recipe.yaml", "trainer.yaml", "config.yaml")
CKPT_SUFFIXES = (".pt", ".pth", ".ckpt")
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)

Builder = Callable[[dict], nn.Module]


@dataclass
class LoadedEncoder:
    """A frozen encoder, the identity of its weights (for feature caches) and where its results go."""

    module: nn.Module
    encoder_id: str
    home: Path  # folder next to the checkpoint: results go to home/eval, features to home/features
    recipe: dict | None
    source: Path


def default_builder(recipe: dict) -> nn.Module:
    """The backbone a trainer recipe names (its `backbone:` section and `data.image_size`), weights at init."""
    from genaug.ssl.backbones import backbone_from_recipe

    return backbone_from_recipe(recipe)[0]


def find_recipe(folder: Path) -> dict | None:
    """The resolved recipe YAML saved in a run folder (recipe.yaml, or the only .yaml there), or None."""
    for name in RECIPE_NAMES:
        if (folder / name).is_file():
            return _read_yaml(folder / name)
    ymls = sorted(folder.glob("*.yaml")) + sorted(folder.glob("*.yml"))
    return _read_yaml(ymls[0]) if len(ymls) == 1 else None


def _read_yaml(path: Path) -> dict:
    from genaug.core.yamlio import read_yaml

    doc = read_yaml(path)
    if not isinstance(doc, dict):
        raise GenaugError(f"recipe {path} must be a YAML mapping")
    return doc


def _state_from_checkpoint(path: Path) -> tuple[dict, dict | None]:
    """Backbone weights and recipe of a training checkpoint (loaded with weights_only: nothing is unpickled)."""
    try:
        ck = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise GenaugError(f"checkpoint {path} cannot be read safely ({type(e).__name__}: {e})") from None
    if not isinstance(ck, dict):
        raise GenaugError(f"checkpoint {path} does not hold a dict of weights")
    recipe = ck.get("recipe") if isinstance(ck.get("recipe"), dict) else None
    for name in ("backbone", "encoder"):
        if isinstance(ck.get(name), dict):
            return ck[name], recipe
    for name in ("model", "state_dict", "method"):
        sd = ck.get(name)
        if isinstance(sd, dict):
            sub = {k[len("backbone.") :]: v for k, v in sd.items() if k.startswith("backbone.")}
            if sub:
                return sub, recipe
    if ck and all(isinstance(v, torch.Tensor) for v in ck.values()):
        return ck, recipe
    raise GenaugError(f"checkpoint {path} has no backbone weights (keys: {', '.join(list(ck)[:8])})")


def _safetensors_state(path: Path) -> tuple[dict, dict | None]:
    from safetensors import safe_open
    from safetensors.torch import load_file

    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
        state = load_file(str(path))
    except Exception as e:
        raise GenaugError(f"{path} is not a readable safetensors file ({e})") from None
    recipe = None
    if "recipe" in meta:
        try:
            recipe = json.loads(meta["recipe"])
        except json.JSONDecodeError:
            recipe = None
    return state, recipe


def _is_hf_clip(folder: Path) -> Path | None:
    for d in (folder, folder / "image_encoder"):
        cfg = d / "config.json"
        if cfg.is_file():
            try:
                arch = json.loads(cfg.read_text()).get("architectures") or []
            except (json.JSONDecodeError, UnicodeDecodeError):
                continue
            if any(a.startswith("CLIPVision") for a in arch):
                return d
    return None


class _HFImageEncoder(nn.Module):
    """A Hugging Face CLIP vision model returning its projected image embedding (or pooled output)."""

    def __init__(self, model: nn.Module, image_size: int) -> None:
        super().__init__()
        self.model = model
        self.genaug_preprocess = Preprocess(image_size=image_size, resize=image_size, mean=CLIP_MEAN, std=CLIP_STD)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        out = self.model(pixel_values=x)
        emb = getattr(out, "image_embeds", None)
        return emb if emb is not None else out.pooler_output


def _load_hf_clip(folder: Path) -> LoadedEncoder:
    from transformers import CLIPVisionConfig, CLIPVisionModel, CLIPVisionModelWithProjection

    arch = json.loads((folder / "config.json").read_text()).get("architectures") or []
    cls = CLIPVisionModelWithProjection if "CLIPVisionModelWithProjection" in arch else CLIPVisionModel
    model = cls.from_pretrained(str(folder), use_safetensors=None)
    size = int(CLIPVisionConfig.from_pretrained(str(folder)).image_size)
    files = sorted(p for p in folder.iterdir() if p.suffix in (".safetensors", ".bin") and p.is_file())
    ident = stable_hash([[p.name, file_sha256(p)] for p in files])
    home = cache_home() / "encoders" / f"hf-{ident[:16]}"  # model folders are read-only inputs: caches go here
    home.mkdir(parents=True, exist_ok=True)
    return LoadedEncoder(_HFImageEncoder(model, size).eval(), f"hf:{ident}", home, None, folder)


class MethodEncoder(nn.Module):
    """A trained SSL method seen as an encoder: forward is the method's own representation (`encode`)."""

    def __init__(self, method: nn.Module) -> None:
        super().__init__()
        self.method = method
        self.uncertainty_high_is_in_distribution = getattr(method, "uncertainty_high_is_in_distribution", True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The representation the method is evaluated on (backbone output, or e.g. the mean of q(h|x) for H-prob)."""
        return self.method.encode(x)


class UncertainMethodEncoder(MethodEncoder):
    """A MethodEncoder whose method also scores each input's uncertainty (probabilistic methods)."""

    def uncertainty(self, x: torch.Tensor) -> torch.Tensor:
        """Per-sample uncertainty score of the method (mean over dimensions of sigma)."""
        return self.method.uncertainty(x)


def _load_genaug_run(path: Path) -> LoadedEncoder:
    """A genaug run folder, model.safetensors, backbone.safetensors or checkpoint-<step>.pt as an encoder.

    Whole-method files are evaluated through the method's own `encode` (the H-prob mean, SimVAE's posterior mean);
    backbone.safetensors through the backbone. The run's eval view (size, resize, mean, std) comes with it."""
    loaded = load_method(path)
    if loaded.kind == "backbone":
        module: nn.Module = BackboneEncoder(loaded.method.backbone)
    else:
        wrap = UncertainMethodEncoder if callable(getattr(loaded.method, "uncertainty", None)) else MethodEncoder
        module = wrap(loaded.method)
    module.genaug_preprocess = Preprocess.from_views(loaded.recipe.get("views"))
    return LoadedEncoder(
        module.eval(), f"sha256:{file_sha256(loaded.weights)}", loaded.weights.parent, loaded.recipe, loaded.weights
    )


class BackboneEncoder(nn.Module):
    """A trained backbone alone (backbone.safetensors): its output is the representation."""

    def __init__(self, backbone: nn.Module) -> None:
        super().__init__()
        self.backbone = backbone

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        return self.backbone(x)


def load_encoder(path: str | Path, builder: Builder | None = None, recipe: dict | None = None) -> LoadedEncoder:
    """Load a frozen encoder from a run folder, backbone.safetensors, a checkpoint, or a HF CLIP image encoder."""
    p = Path(path)
    if not p.exists():
        raise GenaugError(f"{p} does not exist: give a training run folder, its {BACKBONE_FILE} or a checkpoint")
    if builder is None and recipe is None and is_run_artefact(p) and _is_hf_clip(p) is None:
        return _load_genaug_run(p)  # anything a genaug run wrote, read by the trainer's own format
    if p.is_dir():
        hf = _is_hf_clip(p)
        if hf is not None:
            return _load_hf_clip(hf)
        if (p / BACKBONE_FILE).is_file():
            p = p / BACKBONE_FILE
        else:
            cks = sorted(q for q in p.rglob("*") if q.suffix in CKPT_SUFFIXES)
            if not cks:
                raise GenaugError(f"{p} holds no {BACKBONE_FILE}, checkpoint or CLIP image encoder: is it a run?")
            p = max(cks, key=lambda q: q.stat().st_mtime)
    if p.suffix == ".safetensors":
        state, rec = _safetensors_state(p)
    elif p.suffix in CKPT_SUFFIXES:
        state, rec = _state_from_checkpoint(p)
    else:
        raise GenaugError(f"{p}: unknown weights format (expected .safetensors, .pt, .pth or .ckpt)")
    home = p.parent
    rec = recipe or rec or find_recipe(home)
    if rec is None:
        raise GenaugError(f"no recipe found for {p}: the run folder should hold the resolved recipe YAML (recipe.yaml)")
    module = (builder or default_builder)(rec)
    load_strict(module, state, p, "another backbone")
    return LoadedEncoder(module.eval(), f"sha256:{file_sha256(p)}", home, rec, p)
