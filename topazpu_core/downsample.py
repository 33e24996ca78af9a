"""Fourier downsampling of micrographs by any factor >= 1 (integer or not).

Convention (the one every other module relies on)
-------------------------------------------------
For an image of shape (H, W) and a factor f >= 1 the output has shape
(floor(H / f), floor(W / f)) and output pixel (i, j) sits at original coordinate
(y, x) = (i * f, j * f) exactly. So coordinates convert by plain division
(x_small = x / f) and multiplication (x = x_small * f); a particle centred at (x, y) is
centred at (x / f, y / f) after downsampling, for any f.

Method
------
Each axis is treated on its own (the filter is separable). The image is taken as one period
of its discrete Fourier series (length N along the axis). Frequencies above the new Nyquist
frequency 1 / (2 f) cycles per original pixel are removed: bins k with |k| <= N / (2 f) are
kept, and a bin lying exactly on the new Nyquist frequency is kept with half weight at +k and
-k (so the filter is symmetric and real). The resulting band-limited signal is evaluated at
t_i = i * f, i = 0 .. n - 1.

* When n * f == N exactly (f integer dividing N, or any f with N / f an integer) the
  evaluation points are the n-point grid of the same period, and the operation is the classic
  spectral crop: rfft, keep n // 2 + 1 bins, multiply by the length ratio n / N, inverse rfft
  of length n. (Per axis the ratio is n / N; over both axes this is the area ratio, which
  keeps the mean.)
* Otherwise the kept bins are evaluated at the t_i by a small real matrix product (a direct
  inverse DFT at non-grid points), cached per (N, n, f).

Both paths are the same linear operator; a constant image stays exactly constant. Output is
float32.
"""
import functools
import logging
import math

import numpy as np
import scipy.fft

from topazpu_core.errors import TopazPuError

logger = logging.getLogger(__name__)

_EPS = 1e-9


def output_shape(shape, factor):
    """(floor(H / factor), floor(W / factor)) for the last two axes of `shape`."""
    return tuple(int(math.floor(s / factor + _EPS)) for s in shape[-2:])


def _kept_bins(N, f):
    """Highest kept frequency bin K and whether it lies exactly on the new Nyquist frequency."""
    half = N / (2.0 * f)
    K = int(math.floor(half + _EPS))
    on_nyquist = abs(K - half) < _EPS * max(1.0, half)
    return K, on_nyquist


@functools.lru_cache(maxsize=64)
def _evaluation_matrix(N, n, f):
    """Real matrix E (2 (K+1), n): y = view_as_float(rfft(x)[:K+1]) @ E.

    With X_k = a_k + i b_k: y_i = (1/N) sum_k c_k (a_k cos(th) - b_k sin(th)),
    th = 2 pi k t_i / N, t_i = i f, c_0 = 1, c_k = 2 (both +k and -k), and c_K = 1 when bin K
    lies exactly on the new Nyquist frequency (half weight for +K and for -K).
    """
    K, on_nyquist = _kept_bins(N, f)
    k = np.arange(K + 1, dtype=np.float64)
    c = np.full(K + 1, 2.0)
    c[0] = 1.0
    if on_nyquist and K > 0:  # N / f is then an integer too, so the spectral-crop path
        c[K] = 1.0              # normally handles it; kept so the matrix is correct alone
    t = np.arange(n, dtype=np.float64) * f
    theta = 2.0 * np.pi * np.outer(k, t) / N  # (K+1, n)
    E = np.empty((2 * (K + 1), n), dtype=np.float64)
    E[0::2] = (c[:, None] / N) * np.cos(theta)
    E[1::2] = -(c[:, None] / N) * np.sin(theta)
    E = E.astype(np.float32)
    E.setflags(write=False)
    return E


def _resample_last_axis(x, f, workers):
    """Downsample along the last axis of a float32 array by factor f."""
    N = x.shape[-1]
    n = int(math.floor(N / f + _EPS))
    if abs(n * f - N) < _EPS * N:
        # Evaluation points form the n-point grid of the same period: plain spectral crop.
        X = scipy.fft.rfft(x, axis=-1, workers=workers)
        Y = X[..., : n // 2 + 1]
        Y *= np.float32(n / N)
        return scipy.fft.irfft(Y, n=n, axis=-1, workers=workers).astype(np.float32, copy=False)
    K, _ = _kept_bins(N, f)
    X = scipy.fft.rfft(x, axis=-1, workers=workers)[..., : K + 1]
    X = np.ascontiguousarray(X, dtype=np.complex64)
    Xf = X.view(np.float32)  # (..., 2 (K+1)), interleaved real/imaginary parts
    return Xf @ _evaluation_matrix(N, n, float(f))


def downsample(image, factor, workers=None):
    """Fourier-downsample the last two axes of `image` by `factor` (float, >= 1).

    Returns float32 of shape (..., floor(H / factor), floor(W / factor)); output pixel (i, j)
    sits at original (y, x) = (i * factor, j * factor). factor == 1 returns a float32 copy.
    `workers` is passed to scipy.fft (None: one thread).
    """
    try:
        f = float(factor)
    except (TypeError, ValueError):
        raise TopazPuError("downsampling factor must be a number, got %r" % (factor,))
    if not math.isfinite(f) or f < 1:
        raise TopazPuError("downsampling factor must be >= 1, got %g" % f)
    x = np.asarray(image)
    if x.ndim < 2:
        raise TopazPuError("downsample expects a 2-D image, got shape %s" % (x.shape,))
    x = x.astype(np.float32, copy=True)
    if f == 1:
        return x
    shape = output_shape(x.shape, f)
    if min(shape) < 1:
        raise TopazPuError("image of shape %dx%d is too small to downsample by %g"
                           % (x.shape[-2], x.shape[-1], f))
    y = _resample_last_axis(x, f, workers)
    y = np.swapaxes(y, -1, -2)
    y = _resample_last_axis(y, f, workers)
    return np.ascontiguousarray(np.swapaxes(y, -1, -2), dtype=np.float32)
