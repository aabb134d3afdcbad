"""IC-GAN's instance feature extractor: a SwAV ResNet-50, pooled 2048-d features, L2-normalised.

Checkpoint: `swav_800ep_pretrain.pth.tar` (dl.fbaipublicfiles.com/deepcluster/), a plain state dict whose keys carry
the DataParallel prefix `module.`; its projection head and prototypes are not part of the backbone and are ignored
(as in ic_gan `data_utils/utils.py: load_pretrained_feature_extractor`). Preprocessing follows the official inference
code (`inference/icgan_colab.ipynb: preprocess_input_image`): centre crop of the long edge to a square, resize to
`resize` (the generator's resolution there), ImageNet normalisation, bicubic resize to 224 (align_corners=True).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
import torchvision
from PIL import Image
from torch import nn
from torchvision.transforms import functional as TF

from genaug.core.errors import GenaugError
from genaug.data.transforms import IMAGENET_MEAN, IMAGENET_STD

SWAV_FILENAMES = ("swav_800ep_pretrain.pth.tar", "swav_pretrained.pth.tar")
_IGNORED_PREFIXES = ("projection_head.", "prototypes.")


class SwAVFeatures(nn.Module):
    """ResNet-50 trunk (torchvision layout, no fc) -> global average pool -> 2048-d L2-normalised features."""

    def __init__(self, width: int = 64) -> None:
        super().__init__()
        net = torchvision.models.resnet50(weights=None, width_per_group=width)
        net.fc = nn.Identity()
        self.net = net
        self.eval()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: ImageNet-normalised [B, 3, 224, 224] -> unit-norm features [B, 2048]."""
        f = self.net(x).float()
        return f / f.norm(dim=1, keepdim=True).clamp_min(1e-12)

    def load_swav(self, path: Path) -> None:
        """Load a SwAV checkpoint (`module.`-prefixed state dict, optionally under 'state_dict')."""
        try:
            sd = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as e:  # noqa: BLE001
            raise GenaugError(f"cannot read SwAV checkpoint {path}: {e}") from None
        if isinstance(sd, dict) and "state_dict" in sd and isinstance(sd["state_dict"], dict):
            sd = sd["state_dict"]
        if not isinstance(sd, dict):
            raise GenaugError(f"SwAV checkpoint {path} is not a state dict")
        trunk = {}
        for k, v in sd.items():
            name = k[len("module.") :] if k.startswith("module.") else k
            if not name.startswith(_IGNORED_PREFIXES):
                trunk[name] = v
        own = self.net.state_dict()
        missing = sorted(set(own) - set(trunk))
        unexpected = sorted(set(trunk) - set(own))
        if missing or unexpected:
            raise GenaugError(
                f"SwAV checkpoint {path} is not a ResNet-50 trunk "
                f"(missing {missing[:3]}, unexpected {unexpected[:3]}); "
                "use swav_800ep_pretrain.pth.tar from dl.fbaipublicfiles.com/deepcluster/"
            )
        self.net.load_state_dict(trunk, strict=True)


def find_swav(folders: list[Path]) -> Path:
    """The SwAV checkpoint under one of its usual names in the first of `folders` that has one."""
    for folder in folders:
        for name in SWAV_FILENAMES:
            if (folder / name).is_file():
                return folder / name
    raise GenaugError(
        f"no SwAV checkpoint ({' or '.join(SWAV_FILENAMES)}) in {folders[0]}; download "
        "https://dl.fbaipublicfiles.com/deepcluster/swav_800ep_pretrain.pth.tar into --weights DIR"
    )


def preprocess(images: list[Image.Image], resize: int) -> torch.Tensor:
    """Official IC-GAN instance preprocessing of PIL images -> [B, 3, 224, 224] ImageNet-normalised floats."""
    mean = torch.tensor(IMAGENET_MEAN).view(3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(3, 1, 1)
    out = []
    for img in images:
        img = img.convert("RGB")
        img = TF.center_crop(img, min(img.size))
        img = TF.resize(img, [resize, resize], interpolation=TF.InterpolationMode.BILINEAR)
        t = torch.from_numpy(np.asarray(img, dtype=np.float32) / 255.0).permute(2, 0, 1)
        out.append((t - mean) / std)
    batch = torch.stack(out)
    return F.interpolate(batch, size=(224, 224), mode="bicubic", align_corners=True)


def generated_to_features_input(images: torch.Tensor) -> torch.Tensor:
    """Generator output in [-1, 1] -> the extractor's input (as the official colab ranks its samples)."""
    mean = torch.tensor(IMAGENET_MEAN, device=images.device).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, device=images.device).view(1, 3, 1, 1)
    x = (images.float() * 0.5 + 0.5 - mean) / std
    return F.interpolate(x, size=(224, 224), mode="bicubic", align_corners=True)
