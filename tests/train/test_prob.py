"""Stochastic embeddings: KL estimate, priors, the Monte-Carlo loss wrapper and gradient flow."""

from __future__ import annotations

import math

import pytest
import torch

from genaug.core.errors import GenaugError
from genaug.ssl.prob import (
    LOG_VAR_MAX,
    LOG_VAR_MIN,
    GaussianHead,
    MixturePrior,
    ProbLoss,
    StandardNormalPrior,
    kl_mc,
    kl_normal_closed,
    make_prior,
    mc_pair_loss,
    rsample,
    uncertainty_score,
)


def _cross_corr_loss(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """A small deterministic Barlow-style loss used as the base loss."""
    a = (a - a.mean(0)) / (a.std(0) + 1e-6)
    b = (b - b.mean(0)) / (b.std(0) + 1e-6)
    c = a.T @ b / a.shape[0]
    eye = torch.eye(c.shape[0])
    return ((c - eye) ** 2 * (eye + 0.005 * (1 - eye))).sum()


def test_kl_mc_matches_closed_form_within_monte_carlo_error():
    g = torch.Generator().manual_seed(0)
    mu = torch.randn(4, 6, generator=g) * 0.7
    log_var = torch.randn(4, 6, generator=g) * 0.5
    prior = StandardNormalPrior(6)
    z = rsample(mu, log_var, 20000, generator=g)
    per_sample = (
        (-0.5 * (math.log(2 * math.pi) + log_var + (z - mu) ** 2 / log_var.exp()) - prior.log_prob(z)).sum(-1).mean(-1)
    )  # [S]: one KL estimate per MC sample
    se = per_sample.std() / math.sqrt(per_sample.numel())
    est = kl_mc(z, mu, log_var, prior)
    exact = kl_normal_closed(mu, log_var)
    assert torch.isclose(est, per_sample.mean(), rtol=1e-5)
    assert abs(est - exact) < 4 * se
    assert se < 0.02 * exact  # the check is tight, not vacuous
    # hand value of the closed form for one dimension: mu=1, var=e -> 0.5 (1 + e - 1 - 1)
    one = kl_normal_closed(torch.tensor([[1.0]]), torch.tensor([[1.0]]))
    assert math.isclose(one.item(), 0.5 * (math.e - 1.0), rel_tol=1e-6)


def test_s1_with_zero_variance_reproduces_deterministic_base_loss():
    g = torch.Generator().manual_seed(1)
    mu1, mu2 = torch.randn(16, 8, generator=g), torch.randn(16, 8, generator=g)
    zero = torch.full_like(mu1, float("-inf"))  # sigma = exp(-inf) = 0
    z1, z2 = rsample(mu1, zero, 1, generator=g), rsample(mu2, zero, 1, generator=g)
    assert z1.shape == (1, 16, 8) and torch.equal(z1[0], mu1)
    assert torch.equal(mc_pair_loss(_cross_corr_loss, z1, z2), _cross_corr_loss(mu1, mu2))
    loss = ProbLoss(_cross_corr_loss, StandardNormalPrior(8), beta=0.0)
    # beta = 0 and no KL needed: the wrapper's SSL part equals the deterministic loss
    total, parts = loss(z1, z2, (mu1, torch.zeros_like(mu1)), (mu2, torch.zeros_like(mu2)))
    assert torch.equal(parts["ssl"], _cross_corr_loss(mu1, mu2))
    assert torch.equal(total, _cross_corr_loss(mu1, mu2))


def test_mc_pair_loss_is_the_mean_over_paired_samples():
    g = torch.Generator().manual_seed(2)
    z1, z2 = torch.randn(3, 10, 4, generator=g), torch.randn(3, 10, 4, generator=g)
    manual = sum(_cross_corr_loss(z1[s], z2[s]) for s in range(3)) / 3
    assert torch.allclose(mc_pair_loss(_cross_corr_loss, z1, z2), manual)
    total, parts = ProbLoss(_cross_corr_loss, StandardNormalPrior(4), beta=0.5)(
        z1, z2, (torch.zeros(10, 4), torch.zeros(10, 4)), (torch.zeros(10, 4), torch.zeros(10, 4))
    )
    # q == prior: log q - log p is exactly 0 for every sample, so the KL estimate is 0
    assert parts["kl"].abs() < 1e-6 and torch.allclose(total, manual)


def test_mog_log_density_matches_direct_computation():
    torch.manual_seed(3)
    prior = MixturePrior(dim=3, components=4)
    with torch.no_grad():
        prior.logits.normal_()
        prior.means.normal_()
        prior.log_vars.uniform_(-1, 1)
    z = torch.randn(5, 3)
    got = prior.log_prob(z)
    w = torch.softmax(prior.logits, -1)
    for b in range(5):
        for d in range(3):
            dens = sum(
                w[d, k].item()
                * math.exp(
                    -0.5 * (z[b, d].item() - prior.means[d, k].item()) ** 2 / math.exp(prior.log_vars[d, k].item())
                )
                / math.sqrt(2 * math.pi * math.exp(prior.log_vars[d, k].item()))
                for k in range(4)
            )
            assert math.isclose(got[b, d].item(), math.log(dens), rel_tol=1e-5, abs_tol=1e-5)
    # a single component with mean 0 and unit variance is N(0, 1)
    one = MixturePrior(dim=2, components=1)
    assert torch.allclose(one.log_prob(z[:, :2]), StandardNormalPrior(2).log_prob(z[:, :2]), atol=1e-6)
    # default init: 10 components, uniform weights, a proper density (integrates to ~1 per dimension)
    default = MixturePrior(dim=1)
    grid = torch.linspace(-12, 12, 20001).unsqueeze(-1)
    assert default.components == 10
    assert math.isclose(torch.trapezoid(default.log_prob(grid).exp()[:, 0], grid[:, 0]).item(), 1.0, rel_tol=1e-4)


def test_gradients_flow_to_log_variance_and_prior():
    torch.manual_seed(4)
    head1 = GaussianHead(6, 5)
    prior = make_prior("mog", 5, components=3)
    loss = ProbLoss(_cross_corr_loss, prior, beta=0.1)
    h1, h2 = torch.randn(12, 6), torch.randn(12, 6)
    q1, q2 = head1(h1), head1(h2)
    total, _ = loss(rsample(*q1, 4), rsample(*q2, 4), q1, q2)
    total.backward()
    assert head1.fc_log_var.weight.grad is not None and head1.fc_log_var.weight.grad.abs().sum() > 0
    assert head1.fc_mu.weight.grad.abs().sum() > 0
    assert prior.means.grad.abs().sum() > 0 and prior.logits.grad.abs().sum() > 0
    # the SSL part alone also pushes on the log-variance (through the reparameterised samples)
    head1.zero_grad()
    q = head1(h1)
    mc_pair_loss(_cross_corr_loss, rsample(*q, 2), rsample(*head1(h2), 2)).backward()
    assert head1.fc_log_var.weight.grad.abs().sum() > 0


def test_head_clamps_and_uncertainty_score():
    head = GaussianHead(2, 3)
    with torch.no_grad():
        head.fc_log_var.weight.zero_()
        head.fc_log_var.bias.copy_(torch.tensor([-50.0, 0.0, 50.0]))
    _, log_var = head(torch.zeros(1, 2))
    assert torch.allclose(log_var, torch.tensor([[LOG_VAR_MIN, 0.0, LOG_VAR_MAX]]))
    score = uncertainty_score(log_var)
    assert math.isclose(score.item(), (0.01 + 1.0 + 5.0) / 3, rel_tol=1e-5)
    assert uncertainty_score(torch.zeros(7, 4)).shape == (7,)


def test_user_errors():
    with pytest.raises(GenaugError, match="prob.prior"):
        make_prior("laplace", 4)
    with pytest.raises(GenaugError, match="samples"):
        rsample(torch.zeros(2, 2), torch.zeros(2, 2), 0)
