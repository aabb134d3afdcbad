"""`genaug export RUN --format timm|torchvision`: a trained backbone as a file timm or torchvision loads itself.

The file is a safetensors state dict in the target library's own key names, without classifier weights:
- timm: `timm.create_model(NAME, pretrained=True, pretrained_cfg_overlay=dict(file=F, num_classes=0), **kwargs)`
  builds the model without classifier (num_classes=0) and loads the file strictly through timm's own loader. For
  timm:NAME backbones and genaug's resnet18/resnet50 with the standard stem (timm's ResNets use torchvision's names).
- torchvision: the architecture's constructor, `fc` (ResNet) or `heads` (ViT) replaced by nn.Identity() as genaug
  trains it, then `load_state_dict(state, strict=True)`. To keep torchvision's 1000-class head at its random
  initialisation instead, load with strict=False: the only missing keys are then fc.weight/fc.bias (heads.head.*).
  For genaug's resnet18/resnet50 (CIFAR stem included: conv1 3x3/1 and no max-pool), vit_s/vit_b, timm ResNets
  whose layout is torchvision's (timm:resnet18/34/50/101/152), and timm's plain ViTs (timm:vit_*: class token,
  token pooling, no registers or layer scale), whose keys are renamed to torchvision's VisionTransformer.
Before it reports success the export loads the file back with that library and compares features with genaug's
backbone on the same input; a sidecar JSON next to the file holds the architecture, its arguments and the code.
"""

from __future__ import annotations

import json
import os
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar, Literal

import torch
import typer
from torch import nn

from genaug.core.cli_model import command
from genaug.core.config import Settings, check_value, setting
from genaug.core.errors import GenaugError
from genaug.core.files import tmp_suffix, write_json_atomic

#: the libraries a backbone is exported for (the --format choices)
Format = Literal["timm", "torchvision"]
FORMATS = typing.get_args(Format)
TV_RESNETS = ("resnet18", "resnet34", "resnet50", "resnet101", "resnet152")


@dataclass
class Target:
    """The architecture a backbone exports to: how to build it, and the code a user runs to load the file."""

    library: str
    arch: str
    kwargs: dict = field(default_factory=dict)
    cifar_stem: bool = False
    #: the backbone's state dict in this library's key names (None: the names are already the library's)
    rename: typing.Callable[[dict], dict] | None = None

    def state(self, backbone: nn.Module) -> dict[str, torch.Tensor]:
        """The backbone's weights as this library names them."""
        state = {k: v.detach().cpu().contiguous().clone() for k, v in backbone.state_dict().items()}
        return self.rename(state) if self.rename is not None else state

    def build(self, file: Path | None = None) -> nn.Module:
        """The target model built by its library (and loaded from `file` as a user would), in eval mode."""
        if self.library == "timm":
            import timm

            if file is None:
                return timm.create_model(self.arch, num_classes=0, pretrained=False, **self.kwargs).eval()
            overlay = dict(file=str(file), num_classes=0)
            return timm.create_model(self.arch, pretrained=True, pretrained_cfg_overlay=overlay, **self.kwargs).eval()
        model = self._torchvision()
        if file is not None:
            from safetensors.torch import load_file

            model.load_state_dict(load_file(str(file)), strict=True)
        return model.eval()

    def _torchvision(self) -> nn.Module:
        import torchvision

        if self.arch == "VisionTransformer":
            model = torchvision.models.vision_transformer.VisionTransformer(**self.kwargs)
            model.heads = nn.Identity()
            return model
        model = getattr(torchvision.models, self.arch)()
        if self.cifar_stem:
            model.conv1 = nn.Conv2d(3, model.conv1.out_channels, 3, 1, 1, bias=False)
            model.maxpool = nn.Identity()
        model.fc = nn.Identity()
        return model

    def code(self, file: Path) -> str:
        """Python that loads `file` with the target library alone."""
        kw = "".join(f", {k}={v!r}" for k, v in self.kwargs.items())
        if self.library == "timm":
            return (
                "import timm\n"
                f"model = timm.create_model({self.arch!r}, pretrained=True, "
                f"pretrained_cfg_overlay=dict(file={str(file)!r}, num_classes=0){kw})"
            )
        lines = ["import torchvision", "from safetensors.torch import load_file", "from torch import nn"]
        if self.arch == "VisionTransformer":
            args = ", ".join(f"{k}={v!r}" for k, v in self.kwargs.items())
            lines += [f"model = torchvision.models.vision_transformer.VisionTransformer({args})"]
            lines += ["model.heads = nn.Identity()  # genaug's backbone has no classifier"]
        else:
            lines += [f"model = torchvision.models.{self.arch}()"]
            if self.cifar_stem:
                lines += ["model.conv1 = nn.Conv2d(3, model.conv1.out_channels, 3, 1, 1, bias=False)  # CIFAR stem"]
                lines += ["model.maxpool = nn.Identity()"]
            lines += ["model.fc = nn.Identity()  # genaug's backbone has no classifier"]
        lines += [f"model.load_state_dict(load_file({str(file)!r}))"]
        return "\n".join(lines)


def _vit_kwargs(module: nn.Module) -> dict:
    """torchvision VisionTransformer arguments of genaug's vit_s/vit_b module."""
    layer = module.encoder.layers[0]
    return {
        "image_size": int(module.image_size),
        "patch_size": int(module.patch_size),
        "num_layers": len(module.encoder.layers),
        "num_heads": int(layer.self_attention.num_heads),
        "hidden_dim": int(module.hidden_dim),
        "mlp_dim": int(module.mlp_dim),
    }


#: a timm ViT block's parameter -> torchvision's EncoderBlock's (qkv is in_proj: the same q, k, v row order)
_VIT_BLOCK = {
    "norm1": "ln_1",
    "attn.qkv.weight": "self_attention.in_proj_weight",
    "attn.qkv.bias": "self_attention.in_proj_bias",
    "attn.proj": "self_attention.out_proj",
    "norm2": "ln_2",
    "mlp.fc1": "mlp.0",
    "mlp.fc2": "mlp.3",
}
_VIT_TOP = {"cls_token": "class_token", "pos_embed": "encoder.pos_embedding", "patch_embed.proj": "conv_proj",
            "norm": "encoder.ln"}  # fmt: skip


def _rename(key: str, table: dict[str, str]) -> str | None:
    for old, new in table.items():
        if key == old or key.startswith(old + "."):
            return new + key[len(old) :]
    return None


def timm_vit_to_torchvision(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A plain timm ViT's state dict in torchvision VisionTransformer's key names (its heads left out)."""
    out = {}
    for k, v in state.items():
        if k.startswith("blocks."):
            _, i, rest = k.split(".", 2)
            new = _rename(rest, _VIT_BLOCK)
            new = None if new is None else f"encoder.layers.encoder_layer_{i}.{new}"
        else:
            new = _rename(k, _VIT_TOP)
        if new is None:
            raise GenaugError(
                f"timm ViT weight {k!r} has no place in torchvision's VisionTransformer: use --format timm"
            )
        out[new] = v
    return out


def _timm_vit_target(model: nn.Module) -> Target | None:
    """torchvision's VisionTransformer for a plain timm ViT (class token, token pooling, pre-norm blocks with qkv
    bias, final norm; no registers, layer scale, qk-norm, fc-norm or pre-norm), else None."""
    from timm.models.vision_transformer import VisionTransformer

    if type(model) is not VisionTransformer:
        return None
    embed, block = model.patch_embed, model.blocks[0] if len(model.blocks) else None
    plain = (
        block is not None
        and model.global_pool == "token"
        and model.num_prefix_tokens == 1
        and not model.no_embed_class
        and all(isinstance(m, nn.Identity) for m in (model.norm_pre, model.fc_norm, embed.norm))
        and isinstance(model.norm, nn.LayerNorm)
        and len(set(embed.img_size)) == 1
        and len(set(embed.patch_size)) == 1
        and all(isinstance(getattr(b, n, None), nn.Identity) for b in model.blocks for n in ("ls1", "ls2"))
        and all(b.attn.qkv.bias is not None for b in model.blocks)
        and isinstance(getattr(block.mlp, "act", None), nn.GELU)
        and getattr(block.mlp.act, "approximate", "none") == "none"
    )
    if not plain:
        return None
    kwargs = {
        "image_size": int(embed.img_size[0]),
        "patch_size": int(embed.patch_size[0]),
        "num_layers": len(model.blocks),
        "num_heads": int(block.attn.num_heads),
        "hidden_dim": int(model.embed_dim),
        "mlp_dim": int(block.mlp.fc1.out_features),
    }
    return Target("torchvision", "VisionTransformer", kwargs, rename=timm_vit_to_torchvision)


def target_for(backbone: nn.Module, recipe: dict, fmt: str) -> Target:
    """The architecture of library `fmt` that holds the trained backbone, or a one-line error saying which exist."""
    name = str((recipe.get("backbone") or {}).get("name", ""))
    timm_info = getattr(backbone, "genaug_timm", None)
    cifar = getattr(backbone, "maxpool", None) is not None and isinstance(backbone.maxpool, nn.Identity)
    if fmt == "timm":
        if timm_info is not None:
            return Target("timm", timm_info["model"], dict(timm_info["kwargs"]))
        if name in ("resnet18", "resnet50") and not cifar:
            return Target("timm", name)
        why = "has a CIFAR stem, which timm's ResNets lack" if cifar else "is no timm architecture"
        raise GenaugError(
            f"backbone {name!r} of this run {why}: --format timm exports timm:NAME backbones and resnet18/resnet50 "
            "with the standard stem; try --format torchvision"
        )
    if fmt == "torchvision":
        if name in ("resnet18", "resnet50"):
            return Target("torchvision", name, cifar_stem=cifar)
        if name in ("vit_s", "vit_b"):
            return Target("torchvision", "VisionTransformer", _vit_kwargs(backbone))
        if timm_info is not None and timm_info["model"] in TV_RESNETS and not timm_info["kwargs"]:
            return Target("torchvision", timm_info["model"])
        vit = _timm_vit_target(backbone) if timm_info is not None else None
        if vit is not None:
            return vit
        raise GenaugError(
            f"backbone {name!r} of this run has no torchvision architecture: --format torchvision exports resnet18, "
            f"resnet50, vit_s, vit_b, timm:{'/'.join(TV_RESNETS)} and plain timm ViTs (class token, token pooling, "
            "no registers or layer scale); for timm:NAME use --format timm"
        )
    raise GenaugError(f"--format must be one of {', '.join(FORMATS)}, got {fmt!r}")


def _sample_input(recipe: dict, seed: int = 0) -> torch.Tensor:
    size = int((recipe.get("data") or {}).get("image_size") or (recipe.get("views") or {}).get("size") or 224)
    g = torch.Generator().manual_seed(seed)
    return torch.randn(4, 3, size, size, generator=g)


def same_features(a: nn.Module, b: nn.Module, x: torch.Tensor) -> float:
    """Largest absolute difference of the two modules' outputs on `x`, relative to the largest output."""
    with torch.no_grad():
        fa, fb = a.eval()(x).flatten(1), b.eval()(x).flatten(1)
    if fa.shape != fb.shape:
        return float("inf")
    return float((fa - fb).abs().max() / fa.abs().max().clamp_min(1e-12))


def export_backbone(run: str | os.PathLike, fmt: str, out: str | os.PathLike | None = None) -> dict:
    """Write the trained backbone of `run` as a `fmt` (timm or torchvision) state dict; return paths and load code."""
    from safetensors.torch import save_file

    from genaug.core.flags import output_path
    from genaug.core.hashing import file_sha256
    from genaug.ssl.artifacts import load_method

    fmt = check_value(Format, fmt, "--format")
    if out is not None:  # the flag is checked before the run is loaded
        if Path(out).suffix != ".safetensors":
            raise GenaugError(f"--out {out} must end in .safetensors (timm and torchvision read it by that name)")
        output_path(str(out), "--out")
    loaded = load_method(run)
    backbone = loaded.method.backbone.eval()
    target = target_for(backbone, loaded.recipe, fmt)
    folder = loaded.weights.parent
    path = Path(out) if out is not None else folder / "export" / f"{fmt}-{target.arch}.safetensors"
    state = target.state(backbone)
    path.parent.mkdir(parents=True, exist_ok=True)
    meta = {"format": fmt, "architecture": target.arch, "kwargs": json.dumps(target.kwargs), "source": str(run)}
    tmp = path.with_name(path.stem + tmp_suffix() + path.suffix)  # timm picks the reader by the .safetensors suffix
    save_file(state, str(tmp), metadata=meta)
    try:
        err = same_features(backbone, target.build(tmp), _sample_input(loaded.recipe))
    except Exception as e:  # noqa: BLE001 - the library refused the file: nothing is left behind
        tmp.unlink(missing_ok=True)
        raise GenaugError(f"{fmt} cannot load the exported backbone of {run} ({type(e).__name__}: {e})") from None
    if err > 1e-4:
        tmp.unlink(missing_ok=True)
        raise GenaugError(f"{fmt} {target.arch} loads the backbone of {run} but its features differ (rel. {err:.2e})")
    os.replace(tmp, path)
    info = {
        "format": fmt,
        "library": target.library,
        "architecture": target.arch,
        "kwargs": target.kwargs,
        "cifar_stem": target.cifar_stem,
        "file": str(path),
        "sha256": file_sha256(path),
        "source": str(loaded.weights),
        "max_relative_feature_difference": err,
        "load": target.code(path.resolve()),
    }
    write_json_atomic(path.with_suffix(".json"), info)
    return info


class ExportOptions(Settings):
    """Export a trained run's backbone for timm (timm.create_model(NAME, pretrained=True,
    pretrained_cfg_overlay=dict(file=F, num_classes=0))) or torchvision (load_state_dict), checked by loading it
    back with that library."""

    where: ClassVar[str] = "flag"

    run: str = setting(..., "Run folder, its model.safetensors or a checkpoint-<step>.pt.", "RUN", argument=True)
    fmt: Format = setting(..., "timm or torchvision.", "--format")
    out: str | None = setting(None, "Output .safetensors (default <run>/export/<format>-<arch>).", "--out")


def register(app: typer.Typer) -> None:
    """Add the `export` command to the CLI."""

    @command(app, "export", options=ExportOptions)
    def export(o: ExportOptions, overrides: dict) -> None:
        info = export_backbone(o.run, o.fmt, o.out)
        typer.echo(f"wrote {info['file']} ({info['format']} {info['architecture']}); load it with:\n{info['load']}")
