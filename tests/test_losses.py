"""PU objectives: values against their formulas and brute force, finite gradients, NNPU correction."""
import math

import numpy as np
import pytest
import torch
from scipy import stats

from topazpu_core import losses
from topazpu_core.options import OBJECTIVES


def _logits(n, seed, scale=2.0):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(n, generator=g, dtype=torch.float64) * scale).requires_grad_(True)


def test_binomial_log_pmf_matches_scipy():
    got = losses.binomial_log_pmf(30, 0.17).numpy()
    want = stats.binom.logpmf(np.arange(31), 30, 0.17)
    np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-10)


def test_exact_count_distribution_is_poisson_binomial():
    p = torch.tensor([0.1, 0.5, 0.9], dtype=torch.float64)
    q = losses.exact_count_distribution(p).numpy()
    # enumerate all 8 outcomes by hand
    want = np.zeros(4)
    for bits in range(8):
        k = bin(bits).count("1")
        pr = 1.0
        for i in range(3):
            pr *= p[i].item() if bits >> i & 1 else 1 - p[i].item()
        want[k] += pr
    np.testing.assert_allclose(q, want, atol=1e-12)


def test_ge_binomial_value_against_brute_force_count_distribution():
    """The Gaussian approximation of q(k) gives nearly the exact cross-entropy on small N."""
    unl = _logits(40, 1, scale=1.0)
    pos = _logits(5, 2)
    pi_u = 0.2
    approx, _ = losses.ge_binomial_loss(pos, unl, pi_u, slack=1.0)
    exact, _ = losses.ge_binomial_loss(pos, unl, pi_u, slack=1.0, exact=True)
    # brute force by formula: BCE(pos, 1) - sum_k q_exact(k) log Binom(k; N, pi_u)
    q = losses.exact_count_distribution(torch.sigmoid(unl.detach())).numpy()
    logp = stats.binom.logpmf(np.arange(41), 40, pi_u)
    bce = float(torch.nn.functional.softplus(-pos.detach()).mean())
    brute = bce - float((q * logp).sum())
    assert float(exact) == pytest.approx(brute, rel=1e-9)
    assert float(approx) == pytest.approx(brute, rel=0.03)


def test_ge_kl_formula():
    pos, unl, pi_u = _logits(4, 3), _logits(50, 4), 0.1
    got, st = losses.ge_kl_loss(pos, unl, pi_u, slack=10.0)
    pbar = torch.sigmoid(unl.detach()).mean().item()
    kl = pi_u * math.log(pi_u / pbar) + (1 - pi_u) * math.log((1 - pi_u) / (1 - pbar))
    bce = float(torch.nn.functional.softplus(-pos.detach()).mean())
    assert float(got) == pytest.approx(bce + 10 * kl, rel=1e-9)


def test_pn_formula():
    pos, unl, pi = _logits(4, 5), _logits(30, 6), 0.05
    got, _ = losses.pn_loss(pos, unl, pi)
    want = pi * torch.nn.functional.softplus(-pos).mean() + (1 - pi) * torch.nn.functional.softplus(unl).mean()
    assert float(got) == pytest.approx(float(want), rel=1e-12)


def test_nnpu_correction_triggers_when_negative_risk_is_negative():
    # positives scored very negative -> pi * BCE(P, 0) is small; unlabelled scored very positive ...
    pos = torch.full((10,), -6.0, dtype=torch.float64, requires_grad=True)
    unl = torch.full((100,), -6.0, dtype=torch.float64, requires_grad=True)
    # risk_n = BCE(U,0) - pi*BCE(P,0) = ~0.0025 - 0.5 * ~0.0025 > 0: no correction
    _, st = losses.nnpu_loss(pos, unl, 0.5)
    assert st["nnpu_corrected"] == 0.0
    # positives scored high: BCE(P, 0) large -> negative risk < 0 -> corrected objective = -risk_n
    pos2 = torch.full((10,), 4.0, dtype=torch.float64, requires_grad=True)
    obj, st = losses.nnpu_loss(pos2, unl, 0.5)
    assert st["nnpu_corrected"] == 1.0
    risk_n = torch.nn.functional.softplus(unl).mean() - 0.5 * torch.nn.functional.softplus(pos2).mean()
    assert float(obj) == pytest.approx(-float(risk_n), rel=1e-12)
    obj.backward()
    assert pos2.grad.abs().sum() > 0


@pytest.mark.parametrize("method", OBJECTIVES)
def test_every_objective_has_finite_gradients(method):
    pos, unl = _logits(16, 7, scale=8.0), _logits(2000, 8, scale=8.0)  # extreme logits too
    loss, st = losses.pu_objective(method, pos, unl, pi=0.05, pi_u=0.04)
    loss.backward()
    assert torch.isfinite(loss)
    assert torch.isfinite(pos.grad).all() and torch.isfinite(unl.grad).all()
    assert unl.grad.abs().sum() > 0


def test_ge_binomial_pulls_the_count_towards_the_prior():
    """Gradient descent on the GE term alone moves mean p(U) towards pi_u."""
    unl = torch.zeros(500, dtype=torch.float64, requires_grad=True)  # p = 0.5
    opt = torch.optim.SGD([unl], lr=1.0)
    for _ in range(300):
        loss, st = losses.ge_binomial_loss(torch.zeros(0, dtype=torch.float64), unl, 0.1)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert st["p_unl"] == pytest.approx(0.1, abs=0.02)
