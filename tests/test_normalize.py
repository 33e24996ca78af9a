"""Normalisation: the data-set mixture with per-image scale recovers known parameters."""
import math

import numpy as np
import pytest

from topazpu_core import normalize as nz
from topazpu_core.datasets import bundled_micrographs
from topazpu_core.downsample import downsample
from topazpu_core.errors import TopazPuError
from topazpu_core.images import read_image
from topazpu_core.normalize import fit_dataset_gmm, normalize_arrays, sample_pixels
from topazpu_core.preprocessing import preprocess_images

TRUE_WEIGHTS = np.array([0.7, 0.3])
TRUE_MU = np.array([1.0, -2.0])
TRUE_SIGMA = np.array([1.0, 0.6])


def generated(n_images=6, n=40000, seed=1, weights=TRUE_WEIGHTS, mu=TRUE_MU,
              sigma=TRUE_SIGMA):
    """Samples x = alpha_k * z, z from the mixture; returns (samples, alphas)."""
    rng = np.random.default_rng(seed)
    alphas = rng.uniform(0.5, 2.0, n_images)
    samples = []
    for a in alphas:
        comp = rng.random(n) < weights[1]
        z = np.where(comp, rng.normal(mu[1], sigma[1], n), rng.normal(mu[0], sigma[0], n))
        samples.append(a * z)
    return samples, alphas


@pytest.fixture(scope="module")
def bundled():
    return [read_image(p) for p in bundled_micrographs()]


def test_dataset_fit_recovers_known_parameters():
    samples, alphas = generated()
    fit = fit_dataset_gmm(samples)
    # scales are defined up to a common factor: compare with geometric mean 1
    g = math.exp(np.mean(np.log(alphas)))
    np.testing.assert_allclose(fit["alpha"], alphas / g, rtol=0.01)
    np.testing.assert_allclose(fit["weights"], TRUE_WEIGHTS, atol=0.01)
    np.testing.assert_allclose(fit["mu"], TRUE_MU * g, rtol=0.02, atol=0.02)
    np.testing.assert_allclose(fit["sigma"], TRUE_SIGMA * g, rtol=0.02)
    assert fit["n_components_used"] == 2 and fit["converged"]
    assert math.exp(np.mean(np.log(fit["alpha"]))) == pytest.approx(1.0)


def test_dominant_component_is_first_even_when_it_is_the_second():
    samples, _ = generated(weights=np.array([0.25, 0.75]), mu=np.array([3.0, 0.0]),
                           sigma=np.array([0.5, 1.0]))
    fit = fit_dataset_gmm(samples)
    assert fit["weights"][0] == pytest.approx(0.75, abs=0.01)
    assert fit["dominant"] == 0


def test_per_image_fit_without_scale():
    rng = np.random.default_rng(3)
    n = 60000
    comp = rng.random(n) < 0.2
    x = np.where(comp, rng.normal(8.0, 2.0, n), rng.normal(3.0, 0.5, n))
    fit = fit_dataset_gmm([x], fit_scale=False)
    assert fit["alpha"][0] == 1.0
    np.testing.assert_allclose(fit["weights"], [0.8, 0.2], atol=0.01)
    np.testing.assert_allclose(fit["mu"], [3.0, 8.0], atol=0.05)
    np.testing.assert_allclose(fit["sigma"], [0.5, 2.0], rtol=0.03)


def test_binning_matches_unbinned_fit():
    samples, _ = generated(n_images=3, n=20000, seed=5)
    binned = fit_dataset_gmm(samples)
    exact = fit_dataset_gmm(samples, weights=[np.ones_like(s) for s in samples])
    for key in ("alpha", "weights", "mu", "sigma"):
        np.testing.assert_allclose(binned[key], exact[key], rtol=2e-3, atol=2e-3)


def test_unimodal_data_uses_one_gaussian():
    rng = np.random.default_rng(4)
    samples = [a * rng.normal(5.0, 2.0, 30000) for a in (1.0, 1.5, 0.8)]
    fit = fit_dataset_gmm(samples)
    assert fit["n_components_used"] == 1
    np.testing.assert_array_equal(fit["weights"], [1.0, 0.0])
    g = math.exp(np.mean(np.log([1.0, 1.5, 0.8])))
    assert fit["mu"][0] == pytest.approx(5.0 * g, rel=0.01)
    assert fit["sigma"][0] == pytest.approx(2.0 * g, rel=0.01)
    assert fit_dataset_gmm(samples, min_gain=None)["n_components_used"] == 2


def test_scale_update_maximises_q():
    rng = np.random.default_rng(6)
    v = rng.normal(2.0, 1.0, 500)
    w = rng.uniform(0.5, 2.0, 500)
    g = np.repeat([0, 1], 250)
    r = rng.dirichlet([1.0, 1.0], 500)
    mu, sigma = np.array([1.0, 3.0]), np.array([0.7, 1.3])
    beta = nz._scale_update(v, w, g, 2, r, mu, sigma)

    def q(b, k):
        m = g == k
        resid = (b * v[m, None] - mu[None, :]) ** 2 / (2 * sigma[None, :] ** 2)
        return w[m].sum() * math.log(b) - (w[m, None] * r[m] * resid).sum()
    for k in (0, 1):
        for step in (0.99, 1.01):
            assert q(beta[k], k) > q(beta[k] * step, k)


def test_em_likelihood_is_monotone():
    samples, _ = generated(n_images=3, n=10000, seed=7)
    v = np.concatenate(samples)
    w = np.ones_like(v)
    g = np.repeat(np.arange(3), 10000)
    lls = [nz._em(v, w, g, 3, [0.5, 0.5], [0.5, -0.5], [1.0, 1.0], np.ones(3), True, it, 0.0,
                  1e-3)[4] for it in (2, 3, 5, 10, 20, 40)]
    assert all(b >= a - 1e-12 for a, b in zip(lls, lls[1:]))
    assert lls[-1] > lls[0] + 0.01


def test_normalised_bundled_micrographs_are_standard(bundled):
    out, params = normalize_arrays([downsample(a, 2) for a in bundled])
    for o, p in zip(out, params):
        assert o.dtype == np.float32 and o.shape == (300, 310)
        # the dominant component (here the whole background) becomes N(0, 1)
        assert abs(float(np.median(o))) < 0.05
        assert abs(float(np.mean(np.abs(o) < 1)) - 0.6827) < 0.02
        assert abs(float(o.std()) - 1) < 0.05
        assert p["method"] == "gmm" and p["weights"][0] >= p["weights"][1]
        assert p["x_scale"] == pytest.approx(p["alpha"] * p["sigma"][0])


def test_per_image_scale_is_absorbed(bundled):
    a, b = bundled[0], bundled[1]
    out1, p1 = normalize_arrays([a, b], seed=3)
    out2, p2 = normalize_arrays([a, 5.0 * b], seed=3)
    np.testing.assert_allclose(out2[1], out1[1], atol=1e-3)
    np.testing.assert_allclose(out2[0], out1[0], atol=1e-3)
    assert p2[1]["alpha"] / p2[0]["alpha"] == pytest.approx(5 * p1[1]["alpha"] / p1[0]["alpha"],
                                                            rel=1e-3)


def test_mixture_methods_standardise_the_background_not_the_whole_image():
    rng = np.random.default_rng(8)
    images = []
    for scale in (1.0, 2.0):
        img = rng.normal(5.0, 1.0, (200, 200))
        img[:, :50] = rng.normal(1.0, 0.5, (200, 50))  # 25 % dark contamination
        images.append((scale * img).astype(np.float32))
    for method in ("gmm", "gmm-per-image"):
        out, params = normalize_arrays(images, method=method)
        for o in out:
            bg = o[:, 50:]
            assert abs(bg.mean()) < 0.05 and abs(bg.std() - 1) < 0.05, method
    out, _ = normalize_arrays(images, method="affine")
    assert abs(out[0][:, 50:].mean()) > 0.3  # affine is pulled by the contamination
    assert abs(out[0].mean()) < 1e-5 and abs(out[0].std() - 1) < 1e-4


def test_seeded_and_deterministic(bundled):
    _, p1 = normalize_arrays(bundled[:2], seed=11, sample=5000)
    _, p2 = normalize_arrays(bundled[:2], seed=11, sample=5000)
    _, p3 = normalize_arrays(bundled[:2], seed=12, sample=5000)
    assert p1 == p2
    assert p1[0]["x_scale"] != p3[0]["x_scale"]


def test_sample_pixels():
    rng = np.random.default_rng(0)
    a = np.arange(100, dtype=np.float32).reshape(10, 10)
    s = sample_pixels(a, 30, rng)
    assert s.size == 30 and len(set(s.tolist())) == 30  # without replacement
    assert sample_pixels(a, 0, rng).size == 100
    assert sample_pixels(a, 1000, rng).size == 100


def test_unknown_method():
    with pytest.raises(TopazPuError, match="unknown normalisation method"):
        normalize_arrays([np.ones((3, 3))], method="zscore")


def test_preprocess_images_two_passes_agree(bundled):
    paths = bundled_micrographs()[:3]
    cached = list(preprocess_images(paths, 2, progress=False))
    reread = list(preprocess_images(paths, 2, progress=False, cache_bytes=0))
    for (a, pa), (b, pb), path in zip(cached, reread, paths):
        np.testing.assert_array_equal(a, b)
        assert pa == pb
        assert pa["shape"] == [300, 310] and pa["pixel_size"] == 4.0
        assert pa["source"].endswith(path.split("/")[-1])
    # the generator normalises like normalize_arrays on the downsampled images
    out, params = normalize_arrays([downsample(a, 2) for a in bundled[:3]])
    np.testing.assert_allclose(cached[0][0], out[0], atol=1e-5)


@pytest.mark.parametrize("method", ["gmm-per-image", "affine"])
def test_preprocess_images_streaming_methods(method):
    paths = bundled_micrographs()[:2]
    results = list(preprocess_images(paths, 1.5, method=method, progress=False))
    for array, params in results:
        assert array.shape == (400, 413) and params["method"] == method
        assert abs(float(np.median(array))) < 0.1


def test_preprocess_images_bad_scale():
    with pytest.raises(TopazPuError, match="scale"):
        list(preprocess_images(bundled_micrographs()[:1], 0.5, progress=False))


@pytest.mark.parametrize("method", ["gmm", "affine"])
def test_preprocess_images_skips_unreadable_micrographs(tmp_path, method):
    """With a `skipped` list, a truncated micrograph is named there and left out; the others come
    out exactly as if they had been given alone. Without it, the same file raises."""
    good = bundled_micrographs()[:2]
    bad = tmp_path / "truncated.mrc"
    bad.write_bytes(open(good[0], "rb").read()[:2000])
    skipped = []
    got = list(preprocess_images([good[0], str(bad), good[1]], 2, method=method, progress=False,
                                 skipped=skipped))
    alone = list(preprocess_images(good, 2, method=method, progress=False))
    assert [p for p, _ in skipped] == [str(bad)] and "truncated.mrc" in skipped[0][1]
    assert len(got) == 2
    for (a, pa), (b, pb) in zip(got, alone):
        np.testing.assert_array_equal(a, b)
        assert pa == pb
    with pytest.raises(TopazPuError, match="truncated.mrc"):
        list(preprocess_images([good[0], str(bad)], 2, method=method, progress=False))


def test_saved_dataset_fit_normalises_a_subset_exactly_as_the_full_run(tmp_path):
    """A resumed run normalises its remaining micrographs from the saved data-set fit (JSON),
    bit for bit as the uninterrupted run did; a file outside the fit is refused by name."""
    import json

    from topazpu_core.preprocessing import DatasetFit, fit_dataset

    paths = bundled_micrographs()
    full = {p["image_name"]: a for a, p in preprocess_images(paths, 2, progress=False)}
    saved = json.loads(json.dumps(fit_dataset(paths, 2, progress=False).to_json()))
    rest = list(preprocess_images(paths[2:], 2, progress=False, dataset_fit=DatasetFit.from_json(saved)))
    assert len(rest) == 2
    for a, p in rest:
        np.testing.assert_array_equal(a, full[p["image_name"]])
    stranger = tmp_path / "other.mrc"
    stranger.write_bytes(open(paths[0], "rb").read())
    with pytest.raises(TopazPuError, match="other.mrc"):
        list(preprocess_images([str(stranger)], 2, progress=False, dataset_fit=DatasetFit.from_json(saved)))


def test_fit_scale_places_a_new_image_in_an_earlier_fit():
    """A micrograph arriving after the data-set fit gets its scale under the fixed mixture: its
    known alpha (relative to the fit's common factor) is recovered, and a micrograph of the fit
    itself gets back the scale the joint fit gave it."""
    samples, alphas = generated(n_images=7)
    fit = fit_dataset_gmm(samples[:6])
    g = math.exp(np.mean(np.log(alphas[:6])))     # the fit's scales have geometric mean 1
    alpha, n_iter, converged = nz.fit_scale(samples[6], fit)
    assert converged and alpha == pytest.approx(alphas[6] / g, rel=0.01)
    again, _, _ = nz.fit_scale(samples[2], fit)
    assert again == pytest.approx(fit["alpha"][2], rel=1e-4)
    # a wrong mixture (no second component) gives another scale: the mixture matters
    single = {"weights": [1.0, 0.0], "mu": [0.0, 0.0], "sigma": [1.0, 1.0]}
    assert abs(nz.fit_scale(samples[6], single)[0] - alphas[6] / g) > 0.05 * alphas[6] / g


def test_reference_mixture_normalises_later_micrographs_like_the_first_ones():
    """Streaming: the mixture fitted on the first micrographs (read back from their
    preprocess.json record) normalises later ones in one pass; the first ones come out as in
    their own run, the later ones as in a run over all of them (bundled data, scale 2)."""
    paths = bundled_micrographs()
    first = {p["image_name"]: (a, p) for a, p in preprocess_images(paths[:2], 2, progress=False)}
    full = {p["image_name"]: a for a, p in preprocess_images(paths, 2, progress=False)}
    reference = nz.mixture_from_record({"images": {n: p for n, (_, p) in first.items()}})
    assert set(reference) == {"weights", "mu", "sigma", "loglik"}
    got = list(preprocess_images(paths, 2, progress=False, reference=reference))
    assert len(got) == 4
    for a, p in got:
        if p["image_name"] in first:
            a0, p0 = first[p["image_name"]]
            assert p["alpha"] == pytest.approx(p0["alpha"], rel=1e-6)
            np.testing.assert_allclose(a, a0, atol=1e-5)
        np.testing.assert_allclose(a, full[p["image_name"]], atol=1e-3)
    assert nz.mixture_from_record({"images": {"x": {"method": "affine"}}}) is None
