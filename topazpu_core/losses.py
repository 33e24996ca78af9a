"""PU objectives as pure functions of logits.

Every function takes the logits of labelled positives (`pos`, 1-D) and of unlabelled samples
(`unl`, 1-D) and returns `(objective, stats)`: the scalar to minimise and a dict of floats to log.
Nothing here calls backward or steps an optimiser, so each objective can be checked against
its formula.

- PN: pi * BCE(P, 1) + (1 - pi) * BCE(U, 0), treating unlabelled as negatives.
- NNPU (Kiryo et al. 2017): risk_p = pi * BCE(P, 1), risk_n = BCE(U, 0) - pi * BCE(P, 0);
  if risk_n < -beta the objective is -gamma * risk_n (gradient ascent on the negative risk),
  else risk_p + risk_n.
- GE-KL: BCE(P, 1) + slack * KL(Bern(pi_u) || Bern(mean p(U))).
- GE-binomial: BCE(P, 1) + slack * H, H = -sum_k q(k) log Binom(k; N, pi_u), where q is the
  distribution of the number of positives among the N unlabelled samples under the model,
  approximated by a Gaussian with mean sum p_i and variance sum p_i (1 - p_i), evaluated at the
  integers 0..N and renormalised. `exact_count_distribution` gives the exact (Poisson-binomial)
  q for small N, for tests.

`pi` is the positive fraction among all samples; `pi_u` the positive fraction among the
unlabelled ones (what GE targets): see `sampling.unlabelled_positive_fraction`.
"""
import math

import torch
import torch.nn.functional as F

from topazpu_core.options import OBJECTIVES

DEFAULT_SLACK = {"GE-KL": 10.0, "GE-binomial": 1.0}


def _bce_mean(logits, target):
    if logits.numel() == 0:
        return logits.sum() * 0.0
    return F.binary_cross_entropy_with_logits(logits, torch.full_like(logits, float(target)))


def pn_loss(pos, unl, pi):
    loss = pi * _bce_mean(pos, 1) + (1 - pi) * _bce_mean(unl, 0)
    return loss, {"loss": loss.item()}


def nnpu_loss(pos, unl, pi, beta=0.0, gamma=1.0):
    risk_p = pi * _bce_mean(pos, 1)
    risk_n = _bce_mean(unl, 0) - pi * _bce_mean(pos, 0)
    corrected = bool(risk_n.item() < -beta)
    objective = -gamma * risk_n if corrected else risk_p + risk_n
    return objective, {"loss": (risk_p + risk_n).item(), "nnpu_corrected": float(corrected)}


def ge_kl_loss(pos, unl, pi_u, slack=10.0):
    p_mean = torch.sigmoid(unl).mean().clamp(1e-7, 1 - 1e-7)
    kl = pi_u * math.log(pi_u) + (1 - pi_u) * math.log(1 - pi_u) \
        - pi_u * torch.log(p_mean) - (1 - pi_u) * torch.log1p(-p_mean)
    bce = _bce_mean(pos, 1)
    loss = bce + slack * kl
    return loss, {"loss": loss.item(), "bce_pos": bce.item(), "ge": kl.item(), "p_unl": p_mean.item()}


def binomial_log_pmf(n, p, dtype=torch.float64, device=None):
    """log Binom(k; n, p) for k = 0..n as a tensor."""
    k = torch.arange(n + 1, dtype=dtype, device=device)
    n_t = torch.tensor(float(n), dtype=dtype, device=device)
    log_choose = torch.lgamma(n_t + 1) - torch.lgamma(k + 1) - torch.lgamma(n_t - k + 1)
    return log_choose + k * math.log(p) + (n_t - k) * math.log1p(-p)


def gaussian_count_distribution(probs):
    """q(k), k = 0..N: Gaussian approximation of the count of positives among Bernoulli(probs)."""
    n = probs.numel()
    p = probs.to(torch.float64)
    mu = p.sum()
    var = (p * (1 - p)).sum() + 1e-10
    k = torch.arange(n + 1, dtype=torch.float64, device=probs.device)
    log_density = -0.5 * (k - mu) ** 2 / var
    return torch.softmax(log_density, dim=0)


def exact_count_distribution(probs):
    """Exact Poisson-binomial distribution of the count, by dynamic programming (O(N^2))."""
    zero = torch.zeros(1, dtype=torch.float64, device=probs.device)
    q = torch.ones(1, dtype=torch.float64, device=probs.device)
    for p in probs.to(torch.float64):
        q = torch.cat([q * (1 - p), zero]) + torch.cat([zero, q * p])
    return q


def ge_binomial_loss(pos, unl, pi_u, slack=1.0, exact=False):
    n = unl.numel()
    bce = _bce_mean(pos, 1)
    if n == 0:
        return bce, {"loss": bce.item(), "bce_pos": bce.item(), "ge": 0.0, "p_unl": 0.0}
    probs = torch.sigmoid(unl)
    q = exact_count_distribution(probs) if exact else gaussian_count_distribution(probs)
    cross_entropy = -(q * binomial_log_pmf(n, pi_u, device=unl.device)).sum()
    # Per-sample scale: the cross-entropy grows like log N; dividing by nothing keeps the
    # paper's objective. It is returned in float64; cast back to the logits' dtype.
    ge = cross_entropy.to(unl.dtype)
    loss = bce + slack * ge
    return loss, {"loss": loss.item(), "bce_pos": bce.item(), "ge": ge.item(), "p_unl": probs.mean().item()}


def background_loss(logits):
    """BCE(B, 0): mean cross-entropy of the logits of pixels known to be background (the ring
    around each label, `sampling.background_map`), added with weight 1 to every objective."""
    return _bce_mean(logits, 0)


def autoencoder_loss(image, reconstruction):
    """Mean squared reconstruction error per pixel."""
    return F.mse_loss(reconstruction, image)


def pu_objective(method, pos, unl, pi, pi_u, slack=None, nnpu_beta=0.0, nnpu_gamma=1.0):
    """Dispatch by method name. `pi`: positive fraction overall; `pi_u`: among unlabelled samples."""
    if method == "PN":
        return pn_loss(pos, unl, pi)
    if method == "NNPU":
        return nnpu_loss(pos, unl, pi, beta=nnpu_beta, gamma=nnpu_gamma)
    if slack is None:
        slack = DEFAULT_SLACK[method]
    if method == "GE-KL":
        return ge_kl_loss(pos, unl, pi_u, slack=slack)
    if method == "GE-binomial":
        return ge_binomial_loss(pos, unl, pi_u, slack=slack)
    raise ValueError("unknown objective %r (choose from %s)" % (method, ", ".join(OBJECTIVES)))
