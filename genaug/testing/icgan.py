"""Random-weight IC-GAN checkpoint folders in the official layout, for tests, benchmarks and smoke runs."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from genaug.generate.models.icgan.model import ICGANConfig, ICGANGenerator
from genaug.generate.models.icgan.swav import SWAV_FILENAMES, SwAVFeatures


def randomize_(gen: ICGANGenerator, seed: int) -> ICGANGenerator:
    """Fill every parameter and buffer with seeded random values that keep activations in a sane range."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, t in list(gen.named_parameters()) + list(gen.named_buffers()):
            if t is None or name.endswith("w_eff"):
                continue
            if name.endswith("stored_var"):
                t.copy_(0.5 + torch.rand(t.shape, generator=g))
            elif name.endswith("gamma"):
                t.fill_(0.5)
            elif name.endswith(("stored_mean", "bias")) and t.dim() == 1:
                t.copy_(0.1 * torch.randn(t.shape, generator=g))
            elif name.endswith("sv0"):
                t.fill_(1.0)
            else:
                t.copy_(torch.randn(t.shape, generator=g))
    return gen


def training_state(cfg: ICGANConfig, best_fid: float, experiment_name: str) -> dict:
    """A `state_dict_best*.pth` payload shaped like the official trainer's (config holds nn.ReLU modules)."""
    config = {
        **cfg.to_dict(),
        "experiment_name": experiment_name,
        "class_cond": False,
        "instance_cond": True,
        "G_shared": True,
        "G_shared_feat": True,
        "G_nl": "relu",
        "G_activation": nn.ReLU(inplace=False),
        "D_activation": nn.ReLU(inplace=False),
    }
    return {
        "itr": 1000,
        "epoch": 3,
        "save_num": 0,
        "save_best_num": 1,
        "best_IS": 0,
        "best_FID": best_fid,
        "config": config,
    }


def write_random_checkpoint(
    root: Path,
    cfg: ICGANConfig,
    experiment_name: str,
    seed: int = 0,
    feature_width: int = 64,
    best_fids: tuple[float, float] = (20.0, 10.0),
) -> Path:
    """Write root/<experiment_name>/{G_ema,state_dict}_best{0,1}.pth and root/swav_800ep_pretrain.pth.tar."""
    exp = Path(root) / experiment_name
    exp.mkdir(parents=True, exist_ok=True)
    for i, fid in enumerate(best_fids):
        gen = randomize_(ICGANGenerator(cfg), seed + i)
        torch.save(gen.state_dict(), exp / f"G_ema_best{i}.pth")
        torch.save(training_state(cfg, fid, experiment_name), exp / f"state_dict_best{i}.pth")
    torch.manual_seed(seed)
    trunk = SwAVFeatures(feature_width).net.state_dict()
    sd = {f"module.{k}": v for k, v in trunk.items() if not k.startswith("fc.")}
    sd["module.projection_head.0.weight"] = torch.randn(32, 2048)
    sd["module.prototypes.weight"] = torch.randn(16, 32)
    torch.save(sd, Path(root) / SWAV_FILENAMES[0])
    return exp
