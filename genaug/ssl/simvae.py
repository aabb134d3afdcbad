"""SimVAE: the generative SSL model of "A Probabilistic Model Behind Self-Supervised Learning" (Bizeul et al., 2024).

Generative model of J views x_1..x_J of one image: y ~ p(y), z_j | y ~ N(y, sigma^2 I), x_j | z_j ~ p(x | z_j).
Inference: q(z_j | x_j) = N(mu(x_j), diag exp(log_var(x_j))), one encoder for every view. The negative ELBO of a
group of views, with one reparameterised sample z_j per view, is

    loss = sum_j -log p(x_j | z_j)                                   reconstruction
         + sum_j ||z_j - y||^2 / (2 sigma^2) + J D / 2 log(2 pi sigma^2)   -log p(z_j | y)
         - log p(y)                                                  the p(y) term
         - sum_j 0.5 sum_d (1 + log 2 pi + log_var_jd)               minus the entropy of q(z_j | x_j)

with y replaced by its point estimate, the view mean y = mean_j z_j (which maximises sum_j log p(z_j | y) over y,
as in the authors' code). The p(y) term is a recipe choice: `gaussian` (y ~ N(0, I), the authors' default:
log N(mean_j z_j; 0, I)), `mog` (a learnable per-dimension mixture of Gaussians evaluated at the view mean) or
`uniform` (y uniform over the N training images: a constant log N that changes no gradient, taken as 0).
The entropy is written as the entropy of a diagonal Gaussian; the authors' code has 0.5 sum(2 pi log_var) there,
which is not the entropy (its gradient in log_var is pi instead of 1/2). All constants are kept, so the loss is the
exact negative ELBO per group of views (in nats), averaged over the groups of the batch.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from genaug.core.errors import GenaugError
from genaug.ssl.prob import LOG_2PI, LOG_VAR_MAX, LOG_VAR_MIN, MixturePrior

SIGMA2_ZY = 0.15  # variance of p(z_j | y) in the authors' recipes
LOG_VAR_X = -4.6  # fixed log-variance of the Gaussian likelihood (sigma_x ~ 0.1) in the authors' recipes


def _down_steps(size: int) -> tuple[int, int]:
    """Number of stride-2 stages and the final spatial size for a square image of `size` pixels."""
    n, s = 0, size
    while s % 2 == 0 and s > 7:
        s //= 2
        n += 1
    if n == 0:
        raise GenaugError(f"simvae.image_size {size} is not supported: use 28, 32, 64 or another multiple of 8")
    return n, s


def conv_trunk(image_size: int, channels: int, width: int = 32, hidden: int = 256) -> tuple[nn.Module, int]:
    """Conv feature extractor for 28, 32 and 64 px images (any size halving down to <= 7): (module, out_dim)."""
    n, s = _down_steps(image_size)
    layers: list[nn.Module] = []
    c_in = channels
    for i in range(n):
        c_out = width * 2 ** min(i, 3)
        layers += [nn.Conv2d(c_in, c_out, 4, 2, 1), nn.BatchNorm2d(c_out), nn.LeakyReLU(0.2)]
        c_in = c_out
    return nn.Sequential(*layers, nn.Flatten(), nn.Linear(c_in * s * s, hidden), nn.LeakyReLU(0.2)), hidden


class GaussianEncoder(nn.Module):
    """q(z|x): a feature trunk and a linear head to (mu, clamped log_var)."""

    def __init__(self, trunk: nn.Module, out_dim: int, z_dim: int) -> None:
        super().__init__()
        self.trunk = trunk
        self.head = nn.Linear(out_dim, 2 * z_dim)
        self.z_dim = z_dim

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Return (mu, log_var), each [B, z_dim]."""
        mu, log_var = self.head(self.trunk(x)).float().chunk(2, dim=-1)
        return mu, log_var.clamp(LOG_VAR_MIN, LOG_VAR_MAX)


class ConvDecoder(nn.Module):
    """Mirror of conv_trunk: z -> per-pixel logits [B, C, H, W] (mean = sigmoid(logits))."""

    def __init__(self, image_size: int, channels: int, z_dim: int, width: int = 32, hidden: int = 256) -> None:
        super().__init__()
        n, s = _down_steps(image_size)
        widths = [width * 2 ** min(i, 3) for i in range(n)][::-1]
        self.start = (widths[0], s)
        self.fc = nn.Sequential(nn.Linear(z_dim, hidden), nn.LeakyReLU(0.2), nn.Linear(hidden, widths[0] * s * s))
        layers: list[nn.Module] = []
        for i, c_in in enumerate(widths):
            if i + 1 < len(widths):
                c_out = widths[i + 1]
                layers += [nn.ConvTranspose2d(c_in, c_out, 4, 2, 1), nn.BatchNorm2d(c_out), nn.LeakyReLU(0.2)]
            else:
                layers += [nn.ConvTranspose2d(c_in, channels, 4, 2, 1)]
        self.layers = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """Return logits [B, C, H, W]."""
        c, s = self.start
        return self.layers(F.leaky_relu(self.fc(z), 0.2).view(-1, c, s, s))


class _UpBlock(nn.Module):
    """Residual upsampling block: x2 nearest upsampling, two 3x3 convs, 1x1 skip."""

    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Upsample(scale_factor=2),
            nn.Conv2d(c_in, c_out, 3, 1, 1, bias=False),
            nn.BatchNorm2d(c_out),
            nn.ReLU(),
            nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False),
            nn.BatchNorm2d(c_out),
        )
        self.skip = nn.Sequential(nn.Upsample(scale_factor=2), nn.Conv2d(c_in, c_out, 1, bias=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        return F.relu(self.body(x) + self.skip(x))


class ResNetDecoder(nn.Module):
    """z -> 512 x s x s -> residual upsampling blocks -> logits [B, C, size, size], for ResNet-sized images."""

    def __init__(self, image_size: int, channels: int, z_dim: int) -> None:
        super().__init__()
        n, s = _down_steps(image_size)
        widths = [512, 256, 128, 64, 64, 32, 32, 32][: n + 1]
        while len(widths) < n + 1:
            widths.append(32)
        self.start = (widths[0], s)
        self.fc = nn.Linear(z_dim, widths[0] * s * s)
        self.blocks = nn.Sequential(*[_UpBlock(widths[i], widths[i + 1]) for i in range(n)])
        self.out = nn.Conv2d(widths[-1], channels, 3, 1, 1)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """Return logits [B, C, H, W]."""
        c, s = self.start
        return self.out(self.blocks(F.relu(self.fc(z)).view(-1, c, s, s)))


def build_autoencoder(
    backbone: str, image_size: int, channels: int, z_dim: int, width: int = 32, hidden: int = 256
) -> tuple[GaussianEncoder, nn.Module]:
    """Encoder/decoder pair: `conv` (28, 32, 64 px) or a trainer backbone (resnet18, resnet50...) for larger images."""
    if backbone == "conv":
        trunk, dim = conv_trunk(image_size, channels, width, hidden)
        return GaussianEncoder(trunk, dim, z_dim), ConvDecoder(image_size, channels, z_dim, width, hidden)
    if channels != 3:
        raise GenaugError(f"simvae backbone {backbone!r} takes RGB images: use backbone conv for {channels} channels")
    from genaug.ssl.backbones import build_backbone

    trunk, dim = build_backbone(backbone, image_size)
    return GaussianEncoder(trunk, dim, z_dim), ResNetDecoder(image_size, channels, z_dim)


def log_likelihood(x: torch.Tensor, logits: torch.Tensor, likelihood: str, log_var_x: float = LOG_VAR_X):
    """log p(x | z) summed over pixels ([N, C, H, W] -> [N]); Gaussian (mean sigmoid(logits)) or Bernoulli."""
    if likelihood == "gaussian":
        mean = torch.sigmoid(logits)
        ll = -0.5 * ((x - mean) ** 2 * math.exp(-log_var_x) + LOG_2PI + log_var_x)
    elif likelihood == "bernoulli":
        ll = -F.binary_cross_entropy_with_logits(logits, x, reduction="none")
    else:
        raise GenaugError(f"unknown simvae.likelihood {likelihood!r}: choose gaussian or bernoulli")
    return ll.flatten(1).sum(-1)


def simvae_terms(
    x: torch.Tensor,
    logits: torch.Tensor,
    z: torch.Tensor,
    log_var: torch.Tensor,
    *,
    likelihood: str = "gaussian",
    log_var_x: float = LOG_VAR_X,
    sigma2: float = SIGMA2_ZY,
    p_y: str = "gaussian",
    y_prior: nn.Module | None = None,
) -> dict[str, torch.Tensor]:
    """Terms of the SimVAE negative ELBO, averaged over groups: x [B, J, C, H, W], logits likewise, z/log_var [B, J, D].

    Returns recon (-sum_j log p(x_j|z_j)), prior_zy (-sum_j log p(z_j|y)), prior_y (-log p(y)), entropy
    (sum_j H[q(z_j|x_j)]) and loss = recon + prior_zy + prior_y - entropy.
    """
    b, j, d = z.shape
    if j < 2:
        raise GenaugError(f"SimVAE needs at least 2 views of each image (got {j}): set views >= 2 in the recipe")
    recon = -log_likelihood(x.flatten(0, 1), logits.flatten(0, 1), likelihood, log_var_x).view(b, j).sum(1)
    y = z.mean(1, keepdim=True)
    prior_zy = ((z - y) ** 2).sum((1, 2)) / (2 * sigma2) + 0.5 * j * d * (LOG_2PI + math.log(sigma2))
    y = y.squeeze(1)
    if p_y == "gaussian":
        prior_y = 0.5 * (y**2 + LOG_2PI).sum(-1)
    elif p_y == "mog":
        if y_prior is None:
            raise GenaugError("simvae.p_y = mog needs the learnable mixture prior (y_prior)")
        prior_y = -y_prior.log_prob(y).sum(-1)
    elif p_y == "uniform":
        prior_y = torch.zeros_like(recon)
    else:
        raise GenaugError(f"unknown simvae.p_y {p_y!r}: choose gaussian, mog or uniform")
    entropy = 0.5 * (1.0 + LOG_2PI + log_var).sum((1, 2))
    loss = recon + prior_zy + prior_y - entropy
    return {
        k: v.mean()
        for k, v in dict(loss=loss, recon=recon, prior_zy=prior_zy, prior_y=prior_y, entropy=entropy).items()
    }


class SimVAE(nn.Module):
    """Encoder q(z|x), decoder p(x|z) and the SimVAE negative ELBO over J views of each image (pixels in [0, 1])."""

    def __init__(
        self,
        image_size: int = 32,
        channels: int = 3,
        z_dim: int = 64,
        backbone: str = "conv",
        width: int = 32,
        hidden: int = 256,
        likelihood: str = "gaussian",
        log_var_x: float = LOG_VAR_X,
        sigma2: float = SIGMA2_ZY,
        p_y: str = "gaussian",
        components: int = 10,
    ) -> None:
        super().__init__()
        if likelihood not in ("gaussian", "bernoulli"):
            raise GenaugError(f"unknown simvae likelihood {likelihood!r}: choose gaussian or bernoulli")
        if p_y not in ("gaussian", "mog", "uniform"):
            raise GenaugError(f"unknown simvae p_y {p_y!r}: choose gaussian, mog or uniform")
        if sigma2 <= 0:
            raise GenaugError(f"simvae sigma2 must be > 0 (got {sigma2})")
        self.encoder, self.decoder = build_autoencoder(backbone, image_size, channels, z_dim, width, hidden)
        self.likelihood, self.log_var_x, self.sigma2, self.p_y = likelihood, float(log_var_x), float(sigma2), p_y
        self.y_prior = MixturePrior(z_dim, components) if p_y == "mog" else None
        self.z_dim = z_dim

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(mu, log_var) of q(z|x) for images [B, C, H, W]."""
        return self.encoder(x)

    def forward(self, views: torch.Tensor) -> dict[str, torch.Tensor]:
        """Negative ELBO terms for views [B, J, C, H, W] in [0, 1], one reparameterised sample per view."""
        b, j = views.shape[:2]
        mu, log_var = self.encoder(views.flatten(0, 1))
        z = mu + torch.randn_like(mu) * torch.exp(0.5 * log_var)
        logits = self.decoder(z).float()
        terms = simvae_terms(
            views.float(),
            logits.view(b, j, *logits.shape[1:]),
            z.view(b, j, -1),
            log_var.view(b, j, -1),
            likelihood=self.likelihood,
            log_var_x=self.log_var_x,
            sigma2=self.sigma2,
            p_y=self.p_y,
            y_prior=self.y_prior,
        )
        terms["mu"] = mu.view(b, j, -1)[:, 0]
        terms["log_var"] = log_var.view(b, j, -1)[:, 0]
        return terms
