"""Micrograph normalisation: the paper's data-set Gaussian mixture with per-image scale.

Methods
-------
"gmm" (default), the model of Bepler et al. (2019): every pixel x of image k follows
    x = alpha_k * z,   z ~ w_1 N(mu_1, sigma_1^2) + w_2 N(mu_2, sigma_2^2),
one two-component mixture shared by the whole data set and one positive scale alpha_k per
image. Each image is then divided by its scale and standardised to the dominant (largest
weight) component: (x / alpha_k - mu_dom) / sigma_dom, so its background is ~ N(0, 1).
"gmm-per-image": an independent two-component mixture per image (alpha_k = 1), standardised
to its dominant component. "affine": (x - mean) / std per image.

Fitting (expectation / conditional maximisation, monotone in the likelihood)
---------------------------------------------------------------------------
With y = x / alpha_k the density is p(x) = (1 / alpha_k) sum_c w_c N(y; mu_c, sigma_c^2), so
the E-step responsibilities r_c are those of y under the shared mixture. The M-step has two
conditional maximisations of the expected complete-data log-likelihood Q:
  1. given alpha: w_c = N_c / N, mu_c = sum r_c y / N_c, sigma_c^2 = sum r_c (y - mu_c)^2 / N_c
     (sums weighted by pixel counts, N_c = sum r_c);
  2. given (mu, sigma), for each image, with beta_k = 1 / alpha_k:
     Q_k(beta) = n_k log beta - sum_j sum_c r_jc (beta x_j - mu_c)^2 / (2 sigma_c^2) + const,
     concave in beta > 0; dQ/dbeta = 0 gives A beta^2 - B beta - n_k = 0 with
     A = sum_j x_j^2 sum_c r_jc / sigma_c^2, B = sum_j x_j sum_c r_jc mu_c / sigma_c^2, so
     beta_k = (B + sqrt(B^2 + 4 A n_k)) / (2 A)   (the positive root, a closed form).
The scales are only defined up to a common factor, fixed by a geometric mean of 1 (the
mixture is rescaled to match; the likelihood is unchanged). Variances are floored at
(1e-3 x the pooled standard deviation)^2 so no component can collapse onto a spike; weights are
floored at 1e-9. Iterations stop when the mean log-likelihood per pixel improves by less
than `tol`, or after `max_iter`.

Starts and model choice: one Gaussian is fitted first (same ECM with two identical components);
from its scales three two-component starts are run (core + broad tails, low-tail split,
high-tail split) and the highest likelihood wins. When the best mixture raises the mean
log-likelihood by less than `min_gain` (0.01 nats per pixel) over one Gaussian, the two
components are not identifiable (a unimodal histogram split in two, which would standardise
to an arbitrary part of the background) and the one Gaussian is used: weights (1, 0).

Speed: the fit runs on a seeded random sample of pixels per image (`sample`, default 100,000);
each image's sample is summarised in `bins` (512) equal-width bins between its 0.1 and
99.9 % quantiles (widened by a quarter of the range) as (mean value of the bin, count) pairs,
with values outside kept individually. The bin means carry the exact first moment; the
variance quantisation error is below (bin width)^2 / 12, about 3e-5 sigma^2. EM then costs
O(images x bins) per iteration, independent of the image size.
"""
import logging
import math

import numpy as np

from topazpu_core.errors import TopazPuError
from topazpu_core.options import NORMALIZATIONS

logger = logging.getLogger(__name__)

DEFAULT_SAMPLE = 100_000
DEFAULT_BINS = 512
DEFAULT_MAX_ITER = 300
DEFAULT_TOL = 1e-7
DEFAULT_MIN_GAIN = 0.01
_LOG_2PI = math.log(2.0 * math.pi)
_WEIGHT_FLOOR = 1e-9
_SIGMA_FLOOR = 1e-3


# ----------------------------------------------------------------------------------------------
# pixel samples
# ----------------------------------------------------------------------------------------------

def sample_pixels(image, sample, rng):
    """Up to `sample` pixels of `image` drawn without replacement (all when it has fewer).

    Returns a 1-D float64 array. sample <= 0 means every pixel.
    """
    flat = np.asarray(image).reshape(-1)
    if sample is None or sample <= 0 or flat.size <= sample:
        return flat.astype(np.float64)
    index = rng.choice(flat.size, size=int(sample), replace=False)
    return flat[index].astype(np.float64)


def _summarise(values, bins):
    """Weighted points (value, count) summarising one image's sample (see module docstring)."""
    v = np.asarray(values, dtype=np.float64).reshape(-1)
    if bins is None or bins <= 0 or v.size <= 4 * bins:
        return v, np.ones_like(v)
    lo, hi = np.quantile(v, [0.001, 0.999])
    if not hi > lo:
        lo, hi = v.min(), v.max()
    pad = 0.25 * (hi - lo)
    lo, hi = lo - pad, hi + pad
    inside = (v >= lo) & (v <= hi)
    vin = v[inside]
    index = ((vin - lo) * (bins / (hi - lo))).astype(np.intp)
    np.clip(index, 0, bins - 1, out=index)
    counts = np.bincount(index, minlength=bins).astype(np.float64)
    sums = np.bincount(index, weights=vin, minlength=bins)
    used = counts > 0
    out = v[~inside]
    points = np.concatenate([sums[used] / counts[used], out])
    weights = np.concatenate([counts[used], np.ones(out.size)])
    return points, weights


# ----------------------------------------------------------------------------------------------
# EM for the scaled mixture
# ----------------------------------------------------------------------------------------------

def _log_component_densities(y, weights, mu, sigma):
    """log(w_c) + log N(y; mu_c, sigma_c^2), shape (P, C)."""
    z = (y[:, None] - mu[None, :]) / sigma[None, :]
    return (np.log(weights) - np.log(sigma) - 0.5 * _LOG_2PI)[None, :] - 0.5 * z * z


def _scale_update(v, w, g, n_images, r, mu, sigma):
    """beta_k = 1 / alpha_k maximising Q given responsibilities r and the mixture (mu, sigma).

    Q_k(beta) = n_k log beta - sum_j w_j sum_c r_jc (beta v_j - mu_c)^2 / (2 sigma_c^2): the
    positive root of A beta^2 - B beta - n_k = 0 (see the module docstring).
    """
    inv_var = 1.0 / (sigma * sigma)
    a_j = r @ inv_var
    b_j = r @ (mu * inv_var)
    n_k = np.bincount(g, weights=w, minlength=n_images)
    A = np.bincount(g, weights=w * v * v * a_j, minlength=n_images)
    B = np.bincount(g, weights=w * v * b_j, minlength=n_images)
    return (B + np.sqrt(B * B + 4.0 * A * n_k)) / (2.0 * A)


def _em(v, w, g, n_images, weights, mu, sigma, beta, fit_scale, max_iter, tol, sigma_floor):
    """Run ECM from the given start; return (weights, mu, sigma, beta, loglik, n_iter, conv)."""
    weights, mu, sigma, beta = (np.array(a, dtype=np.float64) for a in (weights, mu, sigma, beta))
    total = w.sum()
    var_floor = sigma_floor ** 2
    loglik_prev = -np.inf
    converged = False
    it = 0
    for it in range(1, max_iter + 1):
        bg = beta[g]
        y = v * bg
        # E-step
        lp = _log_component_densities(y, weights, mu, sigma)
        m = lp.max(axis=1)
        r = np.exp(lp - m[:, None])
        s = r.sum(axis=1)
        r /= s[:, None]
        # log p(x) = log(1/alpha) + log sum_c w_c N(x / alpha; mu_c, sigma_c^2)
        loglik = float(np.dot(w, m + np.log(s) + np.log(bg)) / total)
        if loglik - loglik_prev < tol * max(1.0, abs(loglik)) and it > 1:
            converged = True
            break
        loglik_prev = loglik
        # M-step 1: mixture given the scales
        wr = r * w[:, None]
        Nc = wr.sum(axis=0)
        ok = Nc > 1e-12 * total
        weights = np.maximum(Nc / total, _WEIGHT_FLOOR)
        weights /= weights.sum()
        mu_new = (wr * y[:, None]).sum(axis=0)
        mu = np.where(ok, mu_new / np.where(ok, Nc, 1.0), mu)
        d = y[:, None] - mu[None, :]
        var = (wr * d * d).sum(axis=0) / np.where(ok, Nc, 1.0)
        sigma = np.where(ok, np.sqrt(np.maximum(var, var_floor)), sigma)
        # M-step 2: scales given the mixture (closed-form positive root, see docstring)
        if fit_scale:
            beta = _scale_update(v, w, g, n_images, r, mu, sigma)
            # identifiability: geometric mean of the scales alpha = 1 / beta is 1
            c = math.exp(float(np.mean(np.log(beta))))
            beta /= c
            mu /= c
            sigma /= c
            sigma_floor /= c
            var_floor = sigma_floor ** 2
    return weights, mu, sigma, beta, loglik, it, converged


def _starts(y, w):
    """Starting two-component mixtures (weights, mu, sigma) from the pooled scaled data."""
    total = w.sum()
    mean = float(np.dot(w, y) / total)
    sd = math.sqrt(max(float(np.dot(w, (y - mean) ** 2) / total), 0.0))
    return [
        ([0.9, 0.1], [mean, mean], [0.8 * sd, 2.5 * sd]),           # core + broad tails
        ([0.8, 0.2], [mean + 0.25 * sd, mean - sd], [0.8 * sd, sd]),  # low tail (dark objects)
        ([0.8, 0.2], [mean - 0.25 * sd, mean + sd], [0.8 * sd, sd]),  # high tail (bright)
    ], mean, sd


def fit_dataset_gmm(samples, fit_scale=True, bins=DEFAULT_BINS, max_iter=DEFAULT_MAX_ITER,
                    tol=DEFAULT_TOL, min_gain=DEFAULT_MIN_GAIN, weights=None):
    """Fit x_kj = alpha_k * z, z ~ two-component Gaussian mixture, to per-image pixel samples.

    samples: sequence of 1-D arrays, one per image. fit_scale=False fixes alpha_k = 1 (a plain
    mixture of the pooled pixels). weights: optional per-sample weights (same shapes as
    samples; disables binning). min_gain: the two-component fit is kept only when it raises
    the mean log-likelihood per pixel by at least this much over one Gaussian (nats); below
    it the two components are not identifiable (a unimodal histogram split in two) and the
    single Gaussian is returned as weights (1, 0) with both components equal. None always
    keeps two components; inf always uses one Gaussian.

    Returns a dict: alpha (K,) per-image scales (geometric mean 1), weights (2,), mu (2,),
    sigma (2,) (sorted by decreasing weight: index 0 is the dominant component), dominant (0),
    loglik (mean log-likelihood per pixel), gain (two components over one, nats per pixel),
    n_components_used (1 or 2), n_iter, converged.
    """
    samples = [np.asarray(s, dtype=np.float64).reshape(-1) for s in samples]
    if not samples or any(s.size == 0 for s in samples):
        raise ValueError("fit_dataset_gmm needs a non-empty sample for every image")
    K = len(samples)
    parts = []
    for k, s in enumerate(samples):
        if weights is not None:
            pv, pw = s, np.asarray(weights[k], dtype=np.float64).reshape(-1)
        else:
            pv, pw = _summarise(s, bins)
        parts.append((pv, pw, np.full(pv.size, k, dtype=np.intp)))
    v = np.concatenate([p[0] for p in parts])
    w = np.concatenate([p[1] for p in parts])
    g = np.concatenate([p[2] for p in parts])
    n_k = np.bincount(g, weights=w, minlength=K)
    # starting scales: per-image root mean square (scale-equivariant), geometric mean 1
    if fit_scale:
        rms = np.sqrt(np.bincount(g, weights=w * v * v, minlength=K) / n_k)
        if np.any(rms <= 0):
            raise ValueError("an image sample is all zeros; its scale is undefined")
        beta = 1.0 / rms
        beta /= math.exp(float(np.mean(np.log(beta))))
    else:
        beta = np.ones(K)
    y0 = v * beta[g]
    mean = float(np.dot(w, y0) / w.sum())
    sd = math.sqrt(float(np.dot(w, (y0 - mean) ** 2) / w.sum()))
    if not sd > 0:
        raise ValueError("the pixel samples are constant")
    floor = _SIGMA_FLOOR * sd
    # one Gaussian (two identical components stay identical under EM)
    one = _em(v, w, g, K, [0.5, 0.5], [mean, mean], [sd, sd], beta, fit_scale, max_iter, tol,
              floor)
    best = None
    min_gain = -np.inf if min_gain is None else float(min_gain)
    if min_gain < np.inf:
        # two components, started from the one-Gaussian scales; the best likelihood wins
        beta1 = one[3]
        starts, _, sd1 = _starts(v * beta1[g], w)
        for st_w, st_mu, st_sigma in starts:
            result = _em(v, w, g, K, st_w, st_mu, st_sigma, beta1, fit_scale, max_iter, tol,
                         _SIGMA_FLOOR * sd1)
            if best is None or result[4] > best[4] + 1e-12:
                best = result
    gain = best[4] - one[4] if best is not None else 0.0
    if best is not None and gain >= min_gain:
        fw, fmu, fsigma, fbeta, loglik, n_iter, converged = best
        used = 2
        order = np.argsort(-fw, kind="stable")
        fw, fmu, fsigma = fw[order], fmu[order], fsigma[order]
        if not converged:
            logger.warning("mixture fit stopped after %d iterations without converging", n_iter)
    else:
        _, fmu, fsigma, fbeta, loglik, n_iter, converged = one
        fw = np.array([1.0, 0.0])
        used = 1
        logger.debug("two components gain %.4g nats/pixel < %g: one Gaussian", gain, min_gain)
    return {
        "alpha": 1.0 / fbeta,
        "weights": fw,
        "mu": fmu,
        "sigma": fsigma,
        "dominant": 0,
        "loglik": float(loglik),
        "gain": float(gain),
        "n_components_used": used,
        "n_iter": int(n_iter),
        "converged": bool(converged),
    }


def fit_scale(sample, mixture, bins=DEFAULT_BINS, max_iter=DEFAULT_MAX_ITER, tol=DEFAULT_TOL):
    """The scale alpha of one more image under a fixed data-set mixture -> (alpha, n_iter, converged).

    mixture: weights, mu, sigma of a data-set fit (fit_dataset_gmm, or a preprocess.json record).
    The scale step of the data-set ECM with the mixture held fixed: the image is normalised as
    the fit would have normalised it had it been part of the fit (its samples do not move the
    mixture), which is how micrographs arriving later (streaming) join an earlier fit.
    """
    v, w = _summarise(np.asarray(sample, dtype=np.float64).reshape(-1), bins)
    g = np.zeros(v.size, dtype=np.intp)
    weights = np.maximum(np.asarray(mixture["weights"], dtype=np.float64), _WEIGHT_FLOOR)
    weights /= weights.sum()
    mu = np.asarray(mixture["mu"], dtype=np.float64)
    sigma = np.asarray(mixture["sigma"], dtype=np.float64)
    rms = math.sqrt(float(np.dot(w, v * v) / w.sum()))
    if not rms > 0:
        raise ValueError("the image sample is all zeros; its scale is undefined")
    # start: the image's root mean square matched to the mixture's
    beta = math.sqrt(float(np.dot(weights, mu * mu + sigma * sigma))) / rms
    converged = False
    it = 0
    for it in range(1, max_iter + 1):
        lp = _log_component_densities(v * beta, weights, mu, sigma)
        r = np.exp(lp - lp.max(axis=1)[:, None])
        r /= r.sum(axis=1)[:, None]
        new = float(_scale_update(v, w, g, 1, r, mu, sigma)[0])
        done = abs(new - beta) <= tol * beta
        beta = new
        if done:
            converged = True
            break
    return 1.0 / beta, it, converged


def mixture_from_record(meta):
    """The data-set mixture (weights, mu, sigma, loglik) of a "gmm" preprocess.json dict, or None
    when it holds no "gmm" micrograph."""
    for params in meta.get("images", {}).values():
        if params.get("method") == "gmm":
            return {k: params[k] for k in ("weights", "mu", "sigma", "loglik")}
    return None


# ----------------------------------------------------------------------------------------------
# normalisation of arrays
# ----------------------------------------------------------------------------------------------

def gmm_params(method, fit, k):
    alpha = float(fit["alpha"][k])
    mu, sigma, w = fit["mu"], fit["sigma"], fit["weights"]
    return {
        "method": method,
        "alpha": alpha,
        "weights": [float(a) for a in w],
        "mu": [float(a) for a in mu],
        "sigma": [float(a) for a in sigma],
        "dominant": 0,
        # normalised = (x - x_center) / x_scale, in the units of the (downsampled) input
        "x_center": alpha * float(mu[0]),
        "x_scale": alpha * float(sigma[0]),
        "loglik": float(fit["loglik"]),
        "n_iter": int(fit["n_iter"]),
        "converged": bool(fit["converged"]),
    }


def _affine_params(image):
    x = np.asarray(image)
    mean = float(np.mean(x, dtype=np.float64))
    std = float(np.std(x, dtype=np.float64))
    return {"method": "affine", "mean": mean, "std": std, "x_center": mean, "x_scale": std}


def apply_params(image, params):
    """(image - x_center) / x_scale as float32."""
    scale = params["x_scale"]
    if not scale > 0:
        raise TopazPuError("normalisation scale is %r; the image is constant" % (scale,))
    out = np.asarray(image, dtype=np.float32) * np.float32(1.0 / scale)
    out -= np.float32(params["x_center"] / scale)
    return out


def check_method(method):
    if method not in NORMALIZATIONS:
        raise TopazPuError("unknown normalisation method %r (choose from %s)"
                           % (method, ", ".join(NORMALIZATIONS)))


def fit_params(arrays, method="gmm", seed=0, sample=DEFAULT_SAMPLE, bins=DEFAULT_BINS,
               samples=None):
    """Normalisation parameters for each array (see normalize_arrays). `samples` may give the
    pixel samples directly (then `arrays` is only used by "affine")."""
    check_method(method)
    if method == "affine":
        return [_affine_params(a) for a in arrays]
    if samples is None:
        rng = np.random.default_rng(seed)
        samples = [sample_pixels(a, sample, rng) for a in arrays]
    if method == "gmm":
        fit = fit_dataset_gmm(samples, fit_scale=True, bins=bins)
        return [gmm_params(method, fit, k) for k in range(len(samples))]
    return [gmm_params(method, fit_dataset_gmm([s], fit_scale=False, bins=bins), 0)
            for s in samples]


def normalize_arrays(arrays, method="gmm", seed=0, sample=DEFAULT_SAMPLE, bins=DEFAULT_BINS):
    """Normalise in-memory images; returns (list of float32 arrays, list of params dicts).

    Every params dict has "method", "x_center" and "x_scale" (normalised = (x - x_center) /
    x_scale); the mixture methods add alpha, weights, mu, sigma (index 0 = dominant component),
    loglik, n_iter, converged; "affine" adds mean and std.
    """
    arrays = [np.asarray(a) for a in arrays]
    params = fit_params(arrays, method=method, seed=seed, sample=sample, bins=bins)
    return [apply_params(a, p) for a, p in zip(arrays, params)], params
