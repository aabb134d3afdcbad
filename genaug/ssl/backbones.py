"""Backbones: torchvision ResNet-18/50 (optional CIFAR stem), ViT-S/B, any timm model (`timm:NAME`), and a tiny
conv net for CPU tests."""

from __future__ import annotations

import torch
from torch import nn

from genaug.core.errors import GenaugError

BACKBONES = ("tiny", "resnet18", "resnet18-half", "resnet50", "vit_s", "vit_b")


class TinyConvNet(nn.Module):
    """Four conv-BN-ReLU blocks and global pooling: about 0.1M parameters at width 16, for tests and the CPU demo."""

    def __init__(self, width: int = 16) -> None:
        super().__init__()
        chans = [3, width, width * 2, width * 4, width * 8]
        layers: list[nn.Module] = []
        for i in range(4):
            stride = 1 if i == 0 else 2
            layers += [
                nn.Conv2d(chans[i], chans[i + 1], 3, stride, 1, bias=False),
                nn.BatchNorm2d(chans[i + 1]),
                nn.ReLU(inplace=True),
            ]
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.out_dim = chans[-1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return [B, out_dim] pooled features."""
        return torch.flatten(self.pool(self.features(x)), 1)


def _resnet(name: str, cifar_stem: bool, width_per_group: int = 64) -> tuple[nn.Module, int]:
    from torchvision.models import resnet

    if name == "resnet18-half":
        # ResNet-18 at half width: BasicBlock channel counts follow `inplanes`, so rebuild with 32 base channels.
        model = resnet.ResNet(resnet.BasicBlock, [2, 2, 2, 2])
        _scale_resnet_width(model, 0.5)
    else:
        model = getattr(resnet, name)()
    if cifar_stem:
        model.conv1 = nn.Conv2d(3, model.conv1.out_channels, 3, 1, 1, bias=False)
        model.maxpool = nn.Identity()
    dim = model.fc.in_features
    model.fc = nn.Identity()
    return model, dim


def _scale_resnet_width(model: nn.Module, factor: float) -> None:
    """Replace every conv/BN/fc of a torchvision ResNet by one with channels scaled by `factor`, in place."""
    for name, mod in list(model.named_modules()):
        for child_name, child in list(mod.named_children()):
            if isinstance(child, nn.Conv2d):
                cin = 3 if child.in_channels == 3 else int(child.in_channels * factor)
                new = nn.Conv2d(
                    cin,
                    int(child.out_channels * factor),
                    child.kernel_size,
                    child.stride,
                    child.padding,
                    bias=child.bias is not None,
                )
                setattr(mod, child_name, new)
            elif isinstance(child, nn.BatchNorm2d):
                setattr(mod, child_name, nn.BatchNorm2d(int(child.num_features * factor)))
            elif isinstance(child, nn.Linear):
                setattr(mod, child_name, nn.Linear(int(child.in_features * factor), child.out_features))
        del name


def _vit(name: str, image_size: int) -> tuple[nn.Module, int]:
    from torchvision.models.vision_transformer import VisionTransformer

    patch = 16 if image_size >= 128 else max(2, image_size // 8)
    dims = {"vit_s": (384, 6, 1536), "vit_b": (768, 12, 3072)}[name]
    model = VisionTransformer(
        image_size=image_size, patch_size=patch, num_layers=12, num_heads=dims[1], hidden_dim=dims[0], mlp_dim=dims[2]
    )
    model.heads = nn.Identity()
    return model, dims[0]


def build_backbone(
    name: str, image_size: int = 224, cifar_stem: bool | str = "auto", width: int = 16, timm_args: dict | None = None
) -> tuple[nn.Module, int]:
    """Build backbone `name` (one of BACKBONES, or timm:NAME) without classifier; return (module, feature dimension).

    `cifar_stem` ("auto": when image_size <= 64) swaps the ResNet 7x7/2 stem and max-pool for a 3x3/1 conv.
    `timm_args` are timm.create_model's keyword arguments for timm:NAME (genaug.ssl.timm_backbone).
    """
    from genaug.ssl.timm_backbone import build_timm, is_timm

    if is_timm(name):
        return build_timm(name, image_size, timm_args)
    if cifar_stem == "auto":
        cifar_stem = image_size <= 64
    if name == "tiny":
        m = TinyConvNet(width)
        return m, m.out_dim
    if name in ("resnet18", "resnet50", "resnet18-half"):
        return _resnet(name, bool(cifar_stem))
    if name in ("vit_s", "vit_b"):
        return _vit(name, image_size)
    raise GenaugError(
        f"unknown backbone {name!r} (recipe backbone.name or --backbone): choose one of {', '.join(BACKBONES)} "
        "or timm:NAME (any timm model, pip install 'genaug[timm]')"
    )


def backbone_from_recipe(recipe: dict, init_weights: bool = False) -> tuple[nn.Module, int]:
    """The backbone a resolved training recipe names (`backbone:` and `data.image_size`); with `init_weights`, loaded
    from `backbone.weights` (the run's starting point) when the recipe names one."""
    bb = dict(recipe.get("backbone") or {})
    data = recipe.get("data") or {}
    image_size = int(data.get("image_size") or (recipe.get("views") or {}).get("size") or 224)
    module, dim = build_backbone(
        bb.get("name", "resnet50"),
        image_size,
        bb.get("cifar_stem", "auto"),
        int(bb.get("width", 16)),
        bb.get("timm_args") or {},
    )
    if init_weights and bb.get("weights"):
        from genaug.ssl.timm_backbone import load_backbone_weights

        load_backbone_weights(module, bb["weights"])
    return module, dim
