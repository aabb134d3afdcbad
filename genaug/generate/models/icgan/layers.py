"""BigGAN building blocks (inference only) whose parameter and buffer names match the IC-GAN checkpoints.

The official layers keep spectral normalisation as a plain `weight` plus buffers `u{i}` (left singular vector
estimate, shape [1, out]) and `sv{i}` (logged singular value, shape [1]) per tracked singular value. In eval mode
the official power iteration does not update `u0`, so the effective weight is the constant `weight / sigma` with
`sigma` computed from `u0`; `freeze()` caches it (in float32) so inference does no power iteration at all.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def spectral_sigma(weight: torch.Tensor, u: torch.Tensor, eps: float) -> torch.Tensor:
    """One eval-mode power-iteration step from `u` ([1, out]): the singular value estimate of weight viewed 2-D."""
    w = weight.reshape(weight.shape[0], -1).float()
    v = F.normalize(u.float() @ w, dim=1, eps=eps)
    wv = v @ w.t()
    u_new = F.normalize(wv, dim=1, eps=eps)
    return (wv * u_new).sum()


class SNMixin:
    """Spectral-norm state (`u{i}`, `sv{i}` buffers) and the cached effective weight of an SN layer."""

    weight: torch.Tensor

    def _init_sn(self, num_svs: int, num_outputs: int, eps: float) -> None:
        self.num_svs, self.sn_eps = num_svs, eps
        for i in range(num_svs):
            self.register_buffer(f"u{i}", torch.randn(1, num_outputs))
            self.register_buffer(f"sv{i}", torch.ones(1))
        self.register_buffer("w_eff", None, persistent=False)

    def effective_weight(self) -> torch.Tensor:
        """weight / sigma (the cached copy after freeze())."""
        if self.w_eff is not None:
            return self.w_eff
        sigma = spectral_sigma(self.weight, self.u0, self.sn_eps)
        return (self.weight.float() / sigma).to(self.weight.dtype)

    def freeze(self) -> None:
        """Cache the effective weight (call after loading weights, before casting to half precision)."""
        self.w_eff = None
        self.w_eff = self.effective_weight().detach().clone()


class SNLinear(nn.Linear, SNMixin):
    """Linear layer with BigGAN-style spectral normalisation."""

    def __init__(self, in_f: int, out_f: int, bias: bool = True, num_svs: int = 1, eps: float = 1e-6) -> None:
        nn.Linear.__init__(self, in_f, out_f, bias=bias)
        self._init_sn(num_svs, out_f, eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.effective_weight(), self.bias)


class SNConv2d(nn.Conv2d, SNMixin):
    """Conv layer (kernel 3 / padding 1 by default) with BigGAN-style spectral normalisation."""

    def __init__(
        self,
        in_ch: int,
        out_ch: int,
        kernel_size: int = 3,
        padding: int = 1,
        bias: bool = True,
        num_svs: int = 1,
        eps: float = 1e-6,
    ) -> None:
        nn.Conv2d.__init__(self, in_ch, out_ch, kernel_size, padding=padding, bias=bias)
        self._init_sn(num_svs, out_ch, eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.effective_weight(), self.bias, padding=self.padding)


class ConditionalBN(nn.Module):
    """Batch norm with stored statistics whose gain (1 + linear) and bias come from the conditioning vector."""

    def __init__(self, channels: int, cond_dim: int, num_svs: int, sn_eps: float, bn_eps: float) -> None:
        super().__init__()
        self.gain = SNLinear(cond_dim, channels, bias=False, num_svs=num_svs, eps=sn_eps)
        self.bias = SNLinear(cond_dim, channels, bias=False, num_svs=num_svs, eps=sn_eps)
        self.eps = bn_eps
        self.register_buffer("stored_mean", torch.zeros(channels))
        self.register_buffer("stored_var", torch.ones(channels))

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        gain = (1 + self.gain(y))[:, :, None, None]
        bias = self.bias(y)[:, :, None, None]
        out = F.batch_norm(x, self.stored_mean, self.stored_var, None, None, False, 0.0, self.eps)
        return out * gain + bias


class PlainBN(nn.Module):
    """Unconditional batch norm with stored statistics and a learned gain/bias (the output layer's)."""

    def __init__(self, channels: int, bn_eps: float) -> None:
        super().__init__()
        self.register_buffer("stored_mean", torch.zeros(channels))
        self.register_buffer("stored_var", torch.ones(channels))
        self.gain = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))
        self.eps = bn_eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.batch_norm(x, self.stored_mean, self.stored_var, self.gain, self.bias, False, 0.0, self.eps)


class GBlock(nn.Module):
    """Residual up-block: cBN-ReLU-up-conv3, cBN-ReLU-conv3, plus an upsampled 1x1-conv shortcut."""

    def __init__(self, in_ch: int, out_ch: int, cond_dim: int, num_svs: int, sn_eps: float, bn_eps: float) -> None:
        super().__init__()
        self.conv1 = SNConv2d(in_ch, out_ch, num_svs=num_svs, eps=sn_eps)
        self.conv2 = SNConv2d(out_ch, out_ch, num_svs=num_svs, eps=sn_eps)
        # every IC-GAN block upsamples, so the official learnable shortcut is always present
        self.conv_sc = SNConv2d(in_ch, out_ch, kernel_size=1, padding=0, num_svs=num_svs, eps=sn_eps)
        self.bn1 = ConditionalBN(in_ch, cond_dim, num_svs, sn_eps, bn_eps)
        self.bn2 = ConditionalBN(out_ch, cond_dim, num_svs, sn_eps, bn_eps)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        h = F.relu(self.bn1(x, y))
        h = F.interpolate(h, scale_factor=2, mode="nearest")
        x = F.interpolate(x, scale_factor=2, mode="nearest")
        h = self.conv2(F.relu(self.bn2(self.conv1(h), y)))
        return h + self.conv_sc(x)


class SelfAttention(nn.Module):
    """SA-GAN non-local block: theta/phi/g/o 1x1 SN convs, 2x2 max-pooled keys and values, scalar gain gamma."""

    def __init__(self, ch: int, num_svs: int, sn_eps: float) -> None:
        super().__init__()
        self.ch = ch
        self.theta = SNConv2d(ch, ch // 8, kernel_size=1, padding=0, bias=False, num_svs=num_svs, eps=sn_eps)
        self.phi = SNConv2d(ch, ch // 8, kernel_size=1, padding=0, bias=False, num_svs=num_svs, eps=sn_eps)
        self.g = SNConv2d(ch, ch // 2, kernel_size=1, padding=0, bias=False, num_svs=num_svs, eps=sn_eps)
        self.o = SNConv2d(ch // 2, ch, kernel_size=1, padding=0, bias=False, num_svs=num_svs, eps=sn_eps)
        self.gamma = nn.Parameter(torch.tensor(0.0))

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        b, _, hgt, wid = x.shape
        q = self.theta(x).flatten(2)  # [b, c/8, hw]
        k = F.max_pool2d(self.phi(x), 2).flatten(2)  # [b, c/8, hw/4]
        v = F.max_pool2d(self.g(x), 2).flatten(2)  # [b, c/2, hw/4]
        attn = torch.softmax(q.transpose(1, 2) @ k, dim=-1)  # [b, hw, hw/4]
        o = self.o((v @ attn.transpose(1, 2)).view(b, self.ch // 2, hgt, wid))
        return self.gamma * o + x
