"""SimVAE (Bizeul et al. 2024) as a method of the trainer's registry; the model itself is genaug/ssl/simvae.py.

``uncertainty(x) -> [B]`` is the mean over dimensions of sigma of q(z|x); ``encode(x)`` the posterior mean.
"""

from __future__ import annotations

from typing import Any, Literal

import torch
from torch import nn

from genaug.core.config import Number, setting
from genaug.core.errors import GenaugError
from genaug.ssl.methods.args import MethodArgs
from genaug.ssl.methods.base import Progress, SSLMethod, register_method
from genaug.ssl.prob import uncertainty_score
from genaug.ssl.simvae import GaussianEncoder, ResNetDecoder, SimVAE


@register_method("simvae")
class SimVAEMethod(SSLMethod):
    """SimVAE (Bizeul et al. 2024): the generative SSL model trained on J >= 2 views of each image (see simvae.py).

    `encoder: conv` builds the 28/32/64 px conv encoder/decoder pair and replaces the recipe's backbone;
    `encoder: backbone` keeps the recipe's backbone (ResNet for larger images) with a residual upsampling decoder.
    Views must reach the method as pixels in [0, 1] (recipe `views: {mean: [0, 0, 0], std: [1, 1, 1]}`), or give the
    normalisation as `pixel_mean` / `pixel_std` so the reconstruction target is un-normalised.
    """

    #: a VAE's posterior is narrower on the data it was trained on: low sigma = in-distribution (measured on digits)
    uncertainty_high_is_in_distribution: bool = False

    class Args(MethodArgs):
        """SimVAE's arguments (the model of genaug/ssl/simvae.py)."""

        z_dim: int = setting(64, "Width of the latent z (the representation).", ge=1)
        encoder: Literal["conv", "backbone"] = setting(
            "conv", "conv: the 28/32/64 px conv encoder/decoder pair; backbone: the recipe's backbone."
        )
        image_size: int = setting(32, "Side of the views in pixels (the decoder's output).", ge=1)
        channels: int = setting(3, "Channels of the views.", ge=1)
        width: int = setting(32, "Base channel width of the conv encoder and decoder.", ge=1)
        hidden: int = setting(256, "Width of the fully connected layer of the conv encoder and decoder.", ge=1)
        likelihood: Literal["gaussian", "bernoulli"] = setting("gaussian", "The pixel likelihood p(x|z).")
        log_var_x: Number = setting(-4.6, "Log variance of the Gaussian pixel likelihood.")
        sigma2: Number = setting(0.15, "Variance of p(z|y) around each image's y.", gt=0.0)
        p_y: Literal["gaussian", "mog", "uniform"] = setting("gaussian", "The prior p(y).")
        components: int = setting(10, "Components of the mog prior p(y).", ge=1)
        pixel_mean: list[Number] | None = setting(None, "Mean the views were normalised with (None: not normalised).")
        pixel_std: list[Number] | None = setting(None, "Std the views were normalised with (None: not normalised).")

    def __init__(self, backbone: nn.Module, feat_dim: int, **method_args: Any) -> None:
        super().__init__(backbone, feat_dim, **method_args)
        a = self.args
        image_size, channels, z_dim = a.image_size, a.channels, a.z_dim
        self.vae = SimVAE(image_size, channels, z_dim, "conv", a.width, a.hidden, a.likelihood, a.log_var_x, a.sigma2,
                          a.p_y, a.components)  # fmt: skip
        if a.encoder == "backbone":
            self.vae.encoder = GaussianEncoder(backbone, feat_dim, z_dim)
            self.vae.decoder = ResNetDecoder(image_size, channels, z_dim)
        self.backbone = self.vae.encoder.trunk  # the module the loop compiles; shared, not a copy
        self.feat_dim = z_dim
        mean = torch.tensor(a.pixel_mean or [0.0] * channels).view(1, -1, 1, 1)
        std = torch.tensor(a.pixel_std or [1.0] * channels).view(1, -1, 1, 1)
        self.register_buffer("pixel_mean", mean, persistent=False)
        self.register_buffer("pixel_std", std, persistent=False)

    def training_step(self, batch: dict, progress: Progress) -> dict:  # noqa: D102
        x = torch.stack([self._pixels(v) for v in batch["views"]], 1)  # [B, J, C, H, W]
        if progress.step == 0 and (x.min() < -0.02 or x.max() > 1.02):
            raise GenaugError(
                "simvae needs views in [0, 1]: set the recipe's views mean to [0, 0, 0] and std to [1, 1, 1] "
                "(or method_args pixel_mean / pixel_std to the normalisation used)"
            )
        out = self.vae(x.clamp(0, 1))
        logs = {k: out[k].detach() for k in ("recon", "prior_zy", "prior_y", "entropy")}
        logs["sigma"] = uncertainty_score(out["log_var"].detach()).mean()
        return {"loss": out["loss"], "logs": logs, "features": out["mu"].detach()}

    def _pixels(self, v: torch.Tensor) -> torch.Tensor:
        """Undo the views' normalisation: pixels in [0, 1]."""
        return v.float() * self.pixel_std + self.pixel_mean

    @torch.no_grad()
    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """The posterior mean of q(z|x) (x normalised like the training views)."""
        return self.vae.encode(self._pixels(x).clamp(0, 1))[0]

    @torch.no_grad()
    def uncertainty(self, x: torch.Tensor) -> torch.Tensor:
        """[B] mean over dimensions of sigma of q(z|x)."""
        return uncertainty_score(self.vae.encode(self._pixels(x).clamp(0, 1))[1])
