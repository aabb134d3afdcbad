"""The IC-GAN generator: a BigGAN whose conditional batch norms see a chunk of z and the projected instance feature.

Architecture facts follow facebookresearch/ic_gan `BigGAN_PyTorch/BigGAN.py` (Generator, G_arch) and
`config_files/ImageNet/IC-GAN/*.json` with the argument defaults of its `utils.py` (dim_z 120, num_G_SVs 1,
SN_eps 1e-6, BN_eps 1e-5, n_classes 1000, bottom width 4). The ImageNet IC-GAN models are instance-conditioned
only: the class embedding `shared` exists in their state dict (G_shared) but is never used.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

import torch
from torch import nn

from genaug.core.errors import GenaugError
from genaug.generate.models.icgan.layers import GBlock, PlainBN, SelfAttention, SNConv2d, SNLinear, SNMixin

# channel multipliers of G's blocks per output resolution: (in_channels, out_channels), BigGAN's G_arch
_CH_MULT = {
    32: ([4, 4, 4], [4, 4, 4]),
    64: ([16, 16, 8, 4], [16, 8, 4, 2]),
    128: ([16, 16, 8, 4, 2], [16, 8, 4, 2, 1]),
    256: ([16, 16, 8, 8, 4, 2], [16, 8, 8, 4, 2, 1]),
    512: ([16, 16, 8, 8, 4, 2, 1], [16, 8, 8, 4, 2, 1, 1]),
}


@dataclass(frozen=True)
class ICGANConfig:
    """Hyper-parameters of one IC-GAN generator (names as in the official config files where they exist)."""

    resolution: int = 128
    G_ch: int = 96
    G_attn: str = "64"
    dim_z: int = 120
    hier: bool = True
    shared_dim: int = 128
    shared_dim_feat: int = 512
    feat_dim: int = 2048
    n_classes: int = 1000
    bottom_width: int = 4
    num_G_SVs: int = 1
    SN_eps: float = 1e-6
    BN_eps: float = 1e-5

    @classmethod
    def from_dict(cls, d: dict) -> ICGANConfig:
        """Build from a recipe's `model:` mapping; unknown keys are an error naming them."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise GenaugError(f"icgan recipe model section has unknown keys {unknown}; known: {sorted(known)}")
        cfg = cls(**d)
        if cfg.resolution not in _CH_MULT:
            raise GenaugError(f"icgan model.resolution {cfg.resolution} is not one of {sorted(_CH_MULT)}")
        return cfg

    def to_dict(self) -> dict:
        """Plain-dict form (for recipes and checks)."""
        return asdict(self)

    @property
    def num_blocks(self) -> int:
        """Number of up-blocks (each doubles the resolution from bottom_width)."""
        return len(_CH_MULT[self.resolution][0])

    @property
    def z_chunk(self) -> int:
        """Size of each z chunk (hierarchical z: one for the linear layer, one per block)."""
        return self.dim_z // (self.num_blocks + 1) if self.hier else self.dim_z

    @property
    def z_dim_used(self) -> int:
        """Effective noise dimensionality (the official code rounds dim_z down to a multiple of the slots)."""
        return self.z_chunk * (self.num_blocks + 1) if self.hier else self.dim_z

    @property
    def attention_resolutions(self) -> set[int]:
        """Feature-map resolutions after which a self-attention block sits."""
        return {int(r) for r in self.G_attn.split("_") if r}


class ICGANGenerator(nn.Module):
    """BigGAN generator conditioned on a 2048-d instance feature (eval-mode semantics of the official model)."""

    def __init__(self, cfg: ICGANConfig) -> None:
        super().__init__()
        self.cfg = cfg
        ins, outs = (list(m) for m in _CH_MULT[cfg.resolution])
        ins = [cfg.G_ch * m for m in ins]
        outs = [cfg.G_ch * m for m in outs]
        svs, sn_eps = cfg.num_G_SVs, cfg.SN_eps
        cond_dim = (cfg.z_chunk if cfg.hier else 0) + cfg.shared_dim_feat
        self.shared = nn.Embedding(cfg.n_classes, cfg.shared_dim)  # class embedding: stored, unused (no class_cond)
        self.shared_feat = SNLinear(cfg.feat_dim, cfg.shared_dim_feat, num_svs=svs, eps=sn_eps)
        self.linear = SNLinear(cfg.z_chunk, ins[0] * cfg.bottom_width**2, num_svs=svs, eps=sn_eps)
        blocks = []
        res = cfg.bottom_width
        for cin, cout in zip(ins, outs, strict=True):
            res *= 2
            stage = [GBlock(cin, cout, cond_dim, svs, sn_eps, cfg.BN_eps)]
            if res in cfg.attention_resolutions:
                stage.append(SelfAttention(cout, svs, sn_eps))
            blocks.append(nn.ModuleList(stage))
        self.blocks = nn.ModuleList(blocks)
        self.output_layer = nn.Sequential(
            PlainBN(outs[-1], cfg.BN_eps), nn.ReLU(), SNConv2d(outs[-1], 3, num_svs=svs, eps=sn_eps)
        )
        self.eval()

    def forward(self, z: torch.Tensor, feats: torch.Tensor) -> torch.Tensor:
        """Images in [-1, 1], [B, 3, res, res], from noise z [B, >= z_dim_used] and instance features [B, 2048]."""
        cfg = self.cfg
        y = self.shared_feat(feats)
        if cfg.hier:
            chunks = torch.split(z[:, : cfg.z_dim_used], cfg.z_chunk, dim=1)
            z0, conds = chunks[0], [torch.cat([y, c], dim=1) for c in chunks[1:]]
        else:
            z0, conds = z, [y] * len(self.blocks)
        h = self.linear(z0).view(z.shape[0], -1, cfg.bottom_width, cfg.bottom_width)
        for stage, cond in zip(self.blocks, conds, strict=True):
            for layer in stage:
                h = layer(h, cond)
        return torch.tanh(self.output_layer(h))

    def freeze(self) -> ICGANGenerator:
        """Cache every spectrally-normalised weight (call after loading, before casting to half precision)."""
        for m in self.modules():
            if isinstance(m, SNMixin):
                m.freeze()
        return self

    def load_official(self, state_dict: dict[str, torch.Tensor]) -> None:
        """Load a `G_ema_best*.pth` state dict; missing, unexpected or mis-shaped entries are an error naming them."""
        own = self.state_dict()
        missing = sorted(set(own) - set(state_dict))
        unexpected = sorted(set(state_dict) - set(own))
        bad = sorted(k for k in set(own) & set(state_dict) if tuple(own[k].shape) != tuple(state_dict[k].shape))
        if missing or unexpected or bad:
            detail = "; ".join(
                f"{name}: {', '.join(keys[:4])}{' ...' if len(keys) > 4 else ''}"
                for name, keys in (("missing", missing), ("unexpected", unexpected), ("shape differs", bad))
                if keys
            )
            raise GenaugError(
                f"IC-GAN checkpoint does not match the recipe's architecture ({detail}); "
                "pick the recipe of that checkpoint (icgan-64, icgan-128, icgan, icgan-256-half)"
            )
        for m in self.modules():
            if isinstance(m, SNMixin):
                m.w_eff = None
        self.load_state_dict(state_dict, strict=True)
