import math
import time

import networkx as nx
import numpy as np
import pytest
import torch
from scipy.linalg import toeplitz
from scipy.optimize import linprog
from scipy.stats import wasserstein_distance
from torch_geometric.data import Data
from torch_geometric.utils import from_networkx

from torch_geometric_mgvae.metrics import (
    KERNEL_SETTINGS,
    clustering_histograms,
    clustering_mmd,
    compute_mmd,
    degree_histograms,
    degree_mmd,
    graph_mmd,
    orbit_counts,
    orbit_features,
    orbit_mmd,
    pairwise_kernel,
    to_nx,
)

KERNELS = ('graphrnn', 'gran')
METRIC_FUNCS = (degree_mmd, clustering_mmd, orbit_mmd)


def _er_graphs(num, n_range=(10, 16), p=0.3, seed=0):
    rng = np.random.default_rng(seed)
    return [
        nx.gnp_random_graph(int(rng.integers(*n_range)), p,
                            seed=int(rng.integers(1 << 30)))
        for _ in range(num)
    ]


def _lp_emd(p, q, scaling):
    r"""Reference EMD by linear programming with the Toeplitz ground
    distance of GraphRNN (what pyemd solves)."""
    n = len(p)
    dist = toeplitz(range(n)).astype(float) / scaling
    a_eq = np.zeros((2 * n, n * n))
    for i in range(n):
        a_eq[i, i * n:(i + 1) * n] = 1
        a_eq[n + i, i::n] = 1
    res = linprog(dist.ravel(), A_eq=a_eq, b_eq=np.concatenate([p, q]),
                  bounds=(0, None), method='highs')
    return res.fun


def _reference_mmd(xs, ys, kernel, **kw):
    r"""Loop-based GraphRNN ``compute_mmd`` (normalised histograms)."""
    xs = [x / x.sum() for x in xs]
    ys = [y / y.sum() for y in ys]

    def disc(a, b):
        return np.mean([[kernel(u, v, **kw) for v in b] for u in a])

    return disc(xs, xs) + disc(ys, ys) - 2 * disc(xs, ys)


def _pad(x, y):
    n = max(len(x), len(y))
    return np.pad(x, (0, n - len(x))), np.pad(y, (0, n - len(y)))


def _lp_gaussian_emd(x, y, sigma=1.0, distance_scaling=1.0):
    x, y = _pad(x, y)
    emd = _lp_emd(x, y, distance_scaling)
    return math.exp(-emd * emd / (2 * sigma * sigma))


def test_emd_closed_form_equals_linear_program():
    rng = np.random.default_rng(0)
    for length, scaling in ((5, 1.0), (9, 1.0), (12, 12.0)):
        p = rng.random(length)
        q = rng.random(length)
        p, q = p / p.sum(), q / q.sum()
        k = pairwise_kernel(p[None], q[None], 'gaussian_emd', sigma=0.7,
                            distance_scaling=scaling)[0, 0]
        emd = _lp_emd(p, q, scaling)
        assert k == pytest.approx(math.exp(-emd**2 / (2 * 0.49)), abs=1e-9)


def test_degree_mmd_matches_loop_reference():
    pred, ref = _er_graphs(6, p=0.2, seed=1), _er_graphs(5, p=0.5, seed=2)
    xs = [np.array(nx.degree_histogram(g), float) for g in pred]
    ys = [np.array(nx.degree_histogram(g), float) for g in ref]
    expected = _reference_mmd(xs, ys, _lp_gaussian_emd, sigma=1.0)
    assert degree_mmd(pred, ref) == pytest.approx(expected, abs=1e-8)

    def tv(x, y, sigma=1.0):
        x, y = _pad(x, y)
        d = np.abs(x - y).sum() / 2
        return math.exp(-d * d / (2 * sigma * sigma))

    expected = _reference_mmd(xs, ys, tv, sigma=1.0)
    assert degree_mmd(pred, ref, kernel='gran') == pytest.approx(
        expected, abs=1e-12)


def test_clustering_mmd_matches_loop_reference():
    pred, ref = _er_graphs(5, p=0.3, seed=3), _er_graphs(4, p=0.6, seed=4)

    def hist(g):
        c = list(nx.clustering(g).values())
        return np.histogram(c, bins=100, range=(0.0, 1.0))[0].astype(float)

    xs, ys = [hist(g) for g in pred], [hist(g) for g in ref]
    assert np.array_equal(clustering_histograms(pred), np.stack(xs))

    def w1_kernel(x, y, sigma):
        # scipy's exact 1-D Wasserstein distance on the support i / 100.
        x, y = _pad(x, y)
        support = np.arange(len(x)) / 100
        emd = wasserstein_distance(support, support, x, y)
        return math.exp(-emd * emd / (2 * sigma * sigma))

    expected = _reference_mmd(xs, ys, w1_kernel, sigma=0.1)
    assert clustering_mmd(pred, ref) == pytest.approx(expected, abs=1e-8)


def test_hand_computed_degree_mmd():
    # X = {K2, P3}, Y = {K3}. Normalised degree histograms over degrees
    # (0, 1, 2): K2 -> (0, 1, 0), P3 -> (0, 2/3, 1/3), K3 -> (0, 0, 1).
    # CDFs: K2 (0, 1, 1), P3 (0, 2/3, 1), K3 (0, 0, 1); the EMD with ground
    # distance |i - j| is the L1 distance of the CDFs:
    #   EMD(K2, P3) = 1/3,  EMD(K2, K3) = 1,  EMD(P3, K3) = 2/3.
    # With k = exp(-EMD^2 / 2) (sigma = 1) and the biased estimator:
    #   mean K_XX = (1 + 1 + 2 exp(-1/18)) / 4,   mean K_YY = 1,
    #   mean K_XY = (exp(-1/2) + exp(-2/9)) / 2,
    #   MMD^2 = (2 + 2 exp(-1/18)) / 4 + 1 - (exp(-1/2) + exp(-2/9)).
    X = [nx.complete_graph(2), nx.path_graph(3)]
    Y = [nx.complete_graph(3)]
    expected = ((2 + 2 * math.exp(-1 / 18)) / 4 + 1 -
                (math.exp(-1 / 2) + math.exp(-2 / 9)))
    assert degree_mmd(X, Y) == pytest.approx(expected, abs=1e-9)
    # Total variation: TV(K2, P3) = 1/3, TV(K2, K3) = 1, TV(P3, K3) = 2/3,
    # the same distances, hence the same value for the 'gran' kernel.
    assert degree_mmd(X, Y, kernel='gran') == pytest.approx(expected,
                                                            abs=1e-9)


def test_hand_computed_clustering_and_orbit_mmd():
    # Clustering: P3 puts all mass in bin 0, K3 in bin 99. The CDFs differ
    # by 1 on bins 0..98, so EMD = 99 / 100 = 0.99 (distance scaled by the
    # bin count) and MMD^2 = 2 - 2 exp(-0.99^2 / (2 * 0.1^2)).
    X, Y = [nx.path_graph(3)], [nx.complete_graph(3)]
    expected = 2 - 2 * math.exp(-0.99**2 / 0.02)
    assert clustering_mmd(X, Y) == pytest.approx(expected, abs=1e-12)
    # GRAN: TV = 1 -> 2 - 2 exp(-1 / 0.02).
    assert clustering_mmd(X, Y, kernel='gran') == pytest.approx(
        2 - 2 * math.exp(-50), abs=1e-12)
    # Orbits: mean orbit vector of K3 = (2, 0, 0, 1, 0...), of P3 =
    # (4/3, 2/3, 1/3, 0, ...); squared distance 4/9 + 4/9 + 1/9 + 1 = 2,
    # so MMD^2 = 2 - 2 exp(-2 / (2 * 30^2)).
    assert orbit_mmd(X, Y) == pytest.approx(2 - 2 * math.exp(-1 / 900),
                                            abs=1e-12)
    # GRAN orbit: TV = (2/3 + 2/3 + 1/3 + 1) / 2 = 4/3.
    assert orbit_mmd(X, Y, kernel='gran') == pytest.approx(
        2 - 2 * math.exp(-(4 / 3)**2 / 1800), abs=1e-12)


@pytest.mark.parametrize('kernel', KERNELS)
def test_self_mmd_is_zero_and_different_sets_are_far(kernel):
    graphs = _er_graphs(12, p=0.3, seed=5)
    result = graph_mmd(graphs, graphs, kernel=kernel)
    assert result['kernel'] == kernel
    for key in ('degree', 'clustering', 'orbit', 'avg'):
        assert abs(result[key]) < 1e-10

    sparse = _er_graphs(15, n_range=(12, 16), p=0.1, seed=6)
    cliques = [nx.complete_graph(n) for n in range(12, 16)]
    far = graph_mmd(sparse, cliques, kernel=kernel)
    # The kernels are bounded by 1, so MMD^2 <= 2. With TV <= 1 and
    # sigma = 1 the 'gran' degree kernel is >= exp(-1/2), hence its
    # MMD^2 <= 2 - 2 exp(-1/2) ~ 0.79 (0.45 here).
    assert far['degree'] > (1.0 if kernel == 'graphrnn' else 0.4)
    assert far['clustering'] > 1.0
    assert far['orbit'] > 1.0
    # Two samples of the same ER model are much closer.
    near = graph_mmd(_er_graphs(15, p=0.1, seed=7), sparse, kernel=kernel)
    for key in ('degree', 'clustering', 'orbit'):
        assert near[key] < 0.1 * far[key]


def test_inputs_data_nx_and_adjacency_agree():
    graphs = _er_graphs(5, seed=8)
    ref = _er_graphs(4, seed=9, p=0.5)
    data = [from_networkx(g) for g in graphs]
    adjs = [torch.from_numpy(nx.to_numpy_array(g)) for g in graphs]
    a = graph_mmd(graphs, ref)
    assert graph_mmd(data, ref) == pytest.approx(a, abs=1e-12)
    assert graph_mmd(adjs, ref) == pytest.approx(a, abs=1e-12)


def test_to_nx():
    data = Data(edge_index=torch.tensor([[0, 1, 1, 2], [1, 0, 1, 0]]),
                num_nodes=5)
    g = to_nx(data)
    assert sorted(g.nodes()) == [0, 1, 2, 3, 4]  # isolated nodes kept
    assert sorted(map(sorted, g.edges())) == [[0, 1], [0, 2]]  # no loop
    h = nx.MultiGraph([('a', 'b'), ('a', 'b'), ('b', 'b')])
    assert sorted(map(sorted, to_nx(h).edges())) == [['a', 'b']]


def test_features():
    assert degree_histograms([nx.path_graph(3)]).tolist() == [[0, 2, 1]]
    assert degree_histograms([nx.empty_graph(3), nx.path_graph(2)],
                             length=4).tolist() == [[3, 0, 0, 0],
                                                    [0, 2, 0, 0]]
    feats = orbit_features([nx.star_graph(3)])
    assert np.allclose(feats[0], orbit_counts(nx.star_graph(3)).mean(0))


def test_bad_and_degenerate_inputs():
    graphs = _er_graphs(3)
    for func in METRIC_FUNCS + (graph_mmd, ):
        with pytest.raises(ValueError, match='empty'):
            func([], graphs)
        with pytest.raises(ValueError, match='empty'):
            func(graphs, [])
    with pytest.raises(ValueError, match='zero nodes'):
        degree_mmd([nx.Graph()], graphs)
    with pytest.raises(ValueError, match='kernel'):
        degree_mmd(graphs, graphs, kernel='rbf')
    with pytest.raises(ValueError, match='metrics'):
        graph_mmd(graphs, graphs, metrics=('spectral', ))
    with pytest.raises(ValueError):
        compute_mmd(np.zeros((0, 3)), np.ones((2, 3)))

    # Graphs with no edges, a single node, or zero nodes (dropped) give
    # finite values.
    single = nx.Graph()
    single.add_node(0)
    odd = [nx.empty_graph(4), single, nx.Graph(),
           Data(edge_index=torch.zeros(2, 0, dtype=torch.long),
                num_nodes=1)]
    for kernel in KERNELS:
        result = graph_mmd(odd, graphs, kernel=kernel)
        for key in ('degree', 'clustering', 'orbit', 'avg'):
            assert np.isfinite(result[key]) and result[key] >= -1e-12
        assert graph_mmd(odd, odd, kernel=kernel)['avg'] == pytest.approx(
            0.0, abs=1e-12)


def test_subset_of_metrics_and_settings():
    graphs = _er_graphs(4)
    out = graph_mmd(graphs, graphs[:2], metrics=('degree', 'clustering'))
    assert set(out) == {'degree', 'clustering', 'avg', 'kernel'}
    assert out['avg'] == pytest.approx((out['degree'] + out['clustering']) /
                                       2)
    assert KERNEL_SETTINGS['graphrnn']['degree'] == ('gaussian_emd', 1.0)
    assert KERNEL_SETTINGS['graphrnn']['clustering'] == ('gaussian_emd', 0.1)
    assert KERNEL_SETTINGS['graphrnn']['orbit'] == ('gaussian', 30.0)
    assert KERNEL_SETTINGS['gran']['orbit'] == ('gaussian_tv', 30.0)


def test_speed_1024_vs_20():
    pred = _er_graphs(1024, n_range=(12, 21), p=0.3, seed=10)
    ref = _er_graphs(20, n_range=(12, 21), p=0.3, seed=11)
    start = time.perf_counter()
    graph_mmd(pred, ref, metrics=('degree', 'clustering'))
    assert time.perf_counter() - start < 3.0
