"""Architectures: receptive-field arithmetic, strided vs exact dense scoring, tiling."""
import numpy as np
import pytest
import torch

from topazpu_core import options
from topazpu_core.models import ARCHITECTURES, Classifier, score_map
from topazpu_core.models.classifier import output_centres


@pytest.mark.parametrize("arch", sorted(ARCHITECTURES))
def test_receptive_field_is_exact(arch):
    """Perturbing one input pixel changes exactly the outputs whose window covers it."""
    torch.manual_seed(0)
    m = Classifier(arch, units=8).eval()
    rf, s = m.receptive_field, m.stride
    size = rf + 4 * s
    x = torch.randn(1, 1, size, size, dtype=torch.float64)
    m = m.double()
    with torch.no_grad():
        base = m(x)[0]
        assert base.shape == (5, 5)
        x2 = x.clone()
        px = (rf - 1) // 2 + s  # centre pixel of output (1, 1)
        x2[0, 0, px, px] += 10.0
        diff = (m(x2)[0] - base).abs() > 1e-9
    centres = output_centres(5, s, rf)
    for j in range(5):
        for i in range(5):
            covers = abs(centres[j] - px) <= (rf - 1) // 2 and abs(centres[i] - px) <= (rf - 1) // 2
            if diff[j, i]:
                assert covers, (arch, j, i)  # nothing outside the receptive field is affected
    assert diff[1, 1] and diff.sum() >= 1
    with torch.no_grad():
        x3 = x.clone()
        x3[0, 0, centres[2], centres[2]] += 10.0  # centre pixel of output (2, 2)
        assert abs(float(m(x3)[0][2, 2] - base[2, 2])) > 1e-9


def test_registry_builds_exactly_the_architectures_the_command_line_offers():
    assert sorted(ARCHITECTURES) == sorted(options.ARCHITECTURES)


def test_paper_conv31_shape():
    m = Classifier("conv31", units=32)
    assert (m.receptive_field, m.stride) == (31, 4)
    assert m.features.out_channels == 128
    assert Classifier("resnet8").receptive_field == 71


@pytest.mark.parametrize("arch", ["conv31", "resnet8"])
def test_strided_scoring_equals_dense_on_its_grid_and_tiles_agree(arch):
    torch.manual_seed(1)
    m = Classifier(arch, units=8).eval()
    img = np.random.default_rng(0).standard_normal((97, 130)).astype(np.float32)
    strided = score_map(m, img)
    dense = score_map(m, img, dense=True)
    assert strided.shape == dense.shape == img.shape
    s = m.stride
    np.testing.assert_allclose(strided[::s, ::s], dense[::s, ::s], atol=1e-5)
    tiled = score_map(m, img, tile=32)
    np.testing.assert_allclose(tiled, strided, atol=1e-5)


@pytest.mark.parametrize("orientations", [4, 8])
def test_averaged_orientations_are_rotation_equivariant_and_tile_exactly(orientations):
    torch.manual_seed(2)
    m = Classifier("resnet8", units=8).eval()
    img = np.random.default_rng(3).standard_normal((97, 130)).astype(np.float32)
    sym = score_map(m, img, orientations=orientations)
    np.testing.assert_allclose(score_map(m, img, orientations=orientations, tile=32), sym, atol=1e-5)
    rotated = score_map(m, np.ascontiguousarray(np.rot90(img)), orientations=orientations)
    np.testing.assert_allclose(rotated, np.rot90(sym), atol=1e-5)
    if orientations == 8:
        mirrored = score_map(m, np.ascontiguousarray(img[:, ::-1]), orientations=8)
        np.testing.assert_allclose(mirrored, sym[:, ::-1], atol=1e-5)
    else:
        four = [np.rot90(score_map(m, np.ascontiguousarray(np.rot90(img, k))), -k) for k in range(4)]
        np.testing.assert_allclose(sym, np.mean(four, axis=0), atol=1e-5)
    with pytest.raises(ValueError, match="orientations"):
        score_map(m, img, orientations=2)
    assert np.abs(sym - score_map(m, img)).max() > 1e-3  # it is a different (averaged) map
