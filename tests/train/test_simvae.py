"""SimVAE: the negative ELBO against a hand computation, the direction of each term, the autoencoders."""

from __future__ import annotations

import math

import pytest
import torch

from genaug.core.errors import GenaugError
from genaug.ssl.simvae import SimVAE, simvae_terms

L2PI = math.log(2 * math.pi)


def _sig(v: float) -> float:
    return 1.0 / (1.0 + math.exp(-v))


def test_loss_equals_hand_computation_on_tiny_batch():
    # one image, J = 2 views of 2 pixels each, D = 2 latent dims
    x = torch.tensor([[[[[0.2, 0.9]]], [[[0.5, 0.0]]]]])  # [1, 2, 1, 1, 2]
    logits = torch.tensor([[[[[0.0, 1.0]]], [[[-1.0, 0.5]]]]])
    z = torch.tensor([[[1.0, -0.5], [0.0, 0.5]]])  # [1, 2, 2]
    log_var = torch.tensor([[[-1.0, 0.0], [-2.0, 0.5]]])
    lvx, s2 = -1.0, 0.15
    out = simvae_terms(x, logits, z, log_var, likelihood="gaussian", log_var_x=lvx, sigma2=s2, p_y="gaussian")

    xs, ls = [0.2, 0.9, 0.5, 0.0], [0.0, 1.0, -1.0, 0.5]
    recon = sum(0.5 * ((a - _sig(b)) ** 2 / math.exp(lvx) + L2PI + lvx) for a, b in zip(xs, ls, strict=True))
    y = [0.5, 0.0]  # view mean
    prior_zy = ((1.0 - 0.5) ** 2 + (-0.5) ** 2 + (0.0 - 0.5) ** 2 + 0.5**2) / (2 * s2) + 0.5 * 4 * (L2PI + math.log(s2))
    prior_y = 0.5 * (y[0] ** 2 + y[1] ** 2) + L2PI  # -log N(y; 0, I) in 2 dims
    entropy = 0.5 * (4 * (1 + L2PI) + (-1.0 + 0.0 - 2.0 + 0.5))
    for name, val in dict(recon=recon, prior_zy=prior_zy, prior_y=prior_y, entropy=entropy).items():
        assert math.isclose(out[name].item(), val, rel_tol=1e-5), name
    assert math.isclose(out["loss"].item(), recon + prior_zy + prior_y - entropy, rel_tol=1e-5)

    bern = simvae_terms(x, logits, z, log_var, likelihood="bernoulli", sigma2=s2, p_y="uniform")
    recon_b = -sum(a * math.log(_sig(b)) + (1 - a) * math.log(1 - _sig(b)) for a, b in zip(xs, ls, strict=True))
    assert math.isclose(bern["recon"].item(), recon_b, rel_tol=1e-5)
    assert bern["prior_y"].item() == 0.0


def test_each_term_moves_in_the_expected_direction():
    torch.manual_seed(0)
    x = torch.rand(3, 2, 1, 4, 4)
    z = torch.randn(3, 2, 5)
    lv = torch.zeros(3, 2, 5)
    base = simvae_terms(x, torch.zeros_like(x), z, lv)
    # reconstruction: logits matching x better -> smaller recon
    better = torch.logit(x.clamp(0.01, 0.99))
    assert simvae_terms(x, better, z, lv)["recon"] < base["recon"]
    # views spread further from their mean -> larger -log p(z|y); identical views -> only the normaliser
    spread = z.mean(1, keepdim=True) + 2 * (z - z.mean(1, keepdim=True))
    assert simvae_terms(x, torch.zeros_like(x), spread, lv)["prior_zy"] > base["prior_zy"]
    same = z.mean(1, keepdim=True).expand_as(z)
    assert math.isclose(
        simvae_terms(x, torch.zeros_like(x), same, lv)["prior_zy"].item(),
        0.5 * 2 * 5 * (L2PI + math.log(0.15)),
        rel_tol=1e-5,
    )
    # view mean far from 0 -> larger -log p(y) under the Gaussian p(y)
    assert simvae_terms(x, torch.zeros_like(x), z + 3.0, lv)["prior_y"] > base["prior_y"]
    # larger posterior variance -> larger entropy -> smaller loss (other terms fixed); gradient in log_var is -1/2
    wide = simvae_terms(x, torch.zeros_like(x), z, lv + 1.0)
    assert wide["entropy"] > base["entropy"] and wide["loss"] < base["loss"]
    lv_req = lv.clone().requires_grad_(True)
    simvae_terms(x, torch.zeros_like(x), z, lv_req)["loss"].backward()
    assert torch.allclose(lv_req.grad, torch.full_like(lv, -0.5 / 3))


@pytest.mark.parametrize("size,channels", [(28, 1), (32, 3)])
def test_model_shapes_and_gradients(size, channels):
    torch.manual_seed(1)
    model = SimVAE(size, channels, z_dim=8, width=8, hidden=32, p_y="mog", components=3)
    views = torch.rand(4, 3, channels, size, size)
    out = model(views)
    assert set(out) == {"loss", "recon", "prior_zy", "prior_y", "entropy", "mu", "log_var"}
    out["loss"].backward()
    head = model.encoder.head
    assert head.weight.grad[8:].abs().sum() > 0  # log-variance half of the head gets gradient
    assert model.y_prior.means.grad.abs().sum() > 0
    mu, log_var = model.encode(views[:, 0])
    assert mu.shape == log_var.shape == (4, 8)
    assert model.decoder(mu).shape == (4, channels, size, size)


def test_64px_and_resnet_pairs():
    torch.manual_seed(2)
    m64 = SimVAE(64, 3, z_dim=4, width=4, hidden=16)
    assert m64.decoder(torch.zeros(1, 4)).shape == (1, 3, 64, 64)
    big = SimVAE(96, 3, z_dim=4, backbone="resnet18")
    assert big.decoder(torch.zeros(2, 4)).shape == (2, 3, 96, 96)
    assert big.encode(torch.rand(2, 3, 96, 96))[0].shape == (2, 4)


def test_user_errors():
    with pytest.raises(GenaugError, match="at least 2 views"):
        simvae_terms(torch.rand(2, 1, 1, 2, 2), torch.zeros(2, 1, 1, 2, 2), torch.zeros(2, 1, 3), torch.zeros(2, 1, 3))
    with pytest.raises(GenaugError, match="likelihood"):
        SimVAE(28, 1, 4, likelihood="laplace")
    with pytest.raises(GenaugError, match="image_size"):
        SimVAE(31, 1, 4)
    with pytest.raises(GenaugError, match="backbone"):
        SimVAE(96, 3, 4, backbone="vgg")
