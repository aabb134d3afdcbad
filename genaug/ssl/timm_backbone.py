"""timm backbones (`timm:NAME`) and starting weights (`backbone.weights`) for any backbone.

A timm backbone is `timm.create_model(NAME, num_classes=0, pretrained=False, **kwargs)`: the model's own pooled
features without its classifier. `kwargs` are the recipe's `backbone.timm_args`, plus `img_size` set to the run's
image size for models that take one (ViTs, Swin...) when the recipe does not name it, so a 32 px run builds a 32 px
ViT. `timm_kwargs` is the one place that resolves them: training, evaluation and export build the same net.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch
from torch import nn

from genaug.core.errors import GenaugError

PREFIX = "timm:"


def is_timm(name: str) -> bool:
    """True for a backbone name of the form timm:NAME."""
    return isinstance(name, str) and name.startswith(PREFIX)


def _timm():
    try:
        import timm
    except ImportError:
        raise GenaugError(
            "backbone timm:NAME needs the timm package: pip install 'genaug[timm]' (or pip install timm)"
        ) from None
    return timm


def timm_name(name: str) -> str:
    """The timm model name of `timm:NAME`, checked against timm's registry."""
    timm = _timm()
    model = name[len(PREFIX) :]
    if not model or not timm.is_model(model):
        import difflib

        close = difflib.get_close_matches(model, timm.list_models(), n=3) if model else []
        hint = f" (did you mean {', '.join(close)}?)" if close else ""
        raise GenaugError(
            f"unknown timm model {model!r} in backbone {name!r} (--backbone or recipe backbone.name){hint}: "
            "see timm.list_models()"
        )
    return model


def timm_kwargs(model: nn.Module | None, image_size: int, timm_args: dict | None) -> dict:
    """create_model's keyword arguments beyond num_classes: timm_args, plus img_size for models that have one."""
    kw = dict(timm_args or {})
    embed = getattr(model, "patch_embed", None) if model is not None else None
    size = getattr(embed, "img_size", None)
    if "img_size" not in kw and size is not None and tuple(size) != (image_size, image_size):
        kw["img_size"] = int(image_size)
    return kw


def build_timm(name: str, image_size: int, timm_args: dict | None = None) -> tuple[nn.Module, int]:
    """timm.create_model(NAME, num_classes=0, pretrained=False, **kwargs); return (module, feature dimension)."""
    timm = _timm()
    model_name = timm_name(name)

    def create(kw: dict) -> nn.Module:
        try:
            return timm.create_model(model_name, num_classes=0, pretrained=False, **kw)
        except TypeError as e:
            raise GenaugError(f"recipe backbone.timm_args {kw} do not fit timm model {model_name!r}: {e}") from None

    model = create(dict(timm_args or {}))
    kw = timm_kwargs(model, image_size, timm_args)
    if kw != dict(timm_args or {}):
        model = create(kw)
    model.genaug_timm = {"model": model_name, "kwargs": kw}
    dim = int(getattr(model, "head_hidden_size", None) or model.num_features)
    return model, dim


def read_state_file(path: Path) -> dict[str, torch.Tensor]:
    """A state dict from a .safetensors file or a torch checkpoint (weights_only): a bare state dict, or one under
    state_dict_ema / model_ema / state_dict / model / backbone, with DDP and compile prefixes removed."""
    path = Path(path)
    if not path.is_file():
        raise GenaugError(f"--backbone-weights {path} does not exist: give a .safetensors file or a torch checkpoint")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            doc = load_file(str(path))
        else:
            doc = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001
        raise GenaugError(f"--backbone-weights {path} cannot be read safely ({type(e).__name__}: {e})") from None
    if isinstance(doc, dict):
        for key in ("state_dict_ema", "model_ema", "state_dict", "model", "backbone"):
            if isinstance(doc.get(key), dict):
                doc = doc[key]
                break
    if not isinstance(doc, dict) or not doc or not all(torch.is_tensor(v) for v in doc.values()):
        raise GenaugError(f"--backbone-weights {path} holds no state dict of tensors")
    out = {}
    for k, v in doc.items():
        for prefix in ("_orig_mod.", "module.", "_orig_mod."):
            k = k[len(prefix) :] if k.startswith(prefix) else k
        out[k] = v
    return out


def classifier_keys(module: nn.Module) -> list[str]:
    """Parameter names of the classifier a backbone dropped (timm's pretrained_cfg classifier, torchvision fc/heads)."""
    names = (getattr(module, "pretrained_cfg", None) or {}).get("classifier") or ("fc", "heads", "heads.head")
    names = (names,) if isinstance(names, str) else tuple(names)
    own = set(module.state_dict())
    return [f"{n}.{p}" for n in names for p in ("weight", "bias") if f"{n}.{p}" not in own]


def load_backbone_weights(module: nn.Module, path: str | Path) -> None:
    """Load a local checkpoint into a backbone strictly, after timm's own filter for its model family (position
    embeddings resized, original formats converted) and with the classifier's weights dropped."""
    from genaug.ssl.strict import load_strict

    path = Path(path)
    state = read_state_file(path)
    if hasattr(module, "genaug_timm"):
        fn = getattr(sys.modules[type(module).__module__], "checkpoint_filter_fn", None)
        if fn is not None:
            try:
                state = fn(state, module)
            except TypeError:
                state = fn(state)
    for key in classifier_keys(module):
        state.pop(key, None)
    load_strict(module, state, path, "another backbone (--backbone-weights must match --backbone)")
