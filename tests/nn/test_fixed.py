import pytest
import torch
from torch_geometric.data import Batch, Data
from torch_geometric.loader import DataLoader
from torch_geometric.utils import grid, to_undirected

from tests.conftest import permute_within_graphs, random_graph
from torch_geometric_mgvae import MGN
from torch_geometric_mgvae.nn import (
    coarsen,
    compact_clusters,
    feature_kmeans,
    fixed_hierarchy,
    grid_clustering,
    kmeans,
    spectral_clustering,
)
from torch_geometric_mgvae.transforms import FixedHierarchy, get_fixed_clusters


def two_cliques(n=5):
    edges = [(i, j) for i in range(n) for j in range(i + 1, n)]
    edges += [(n + i, n + j) for i, j in edges]
    edges.append((0, n))  # one bridge
    return to_undirected(torch.tensor(edges).t()), 2 * n


def same_partition(a, b):
    return len(set(zip(a.tolist(), b.tolist()))) == len(set(a.tolist()))


def test_kmeans_two_blobs_and_small_inputs():
    g = torch.Generator().manual_seed(0)
    x = torch.cat([torch.randn(20, 2, generator=g),
                   torch.randn(20, 2, generator=g) + 20])
    out = kmeans(x, 2)
    assert same_partition(out, torch.tensor([0] * 20 + [1] * 20))
    # n <= k: every point its own cluster, numbered by the canonical order
    # (distance to the centroid 2: 1 < 4 < 9).
    assert kmeans(torch.tensor([[0.], [5.], [1.]]), 5).tolist() == [1, 2, 0]
    assert kmeans(torch.zeros(6, 2), 3).unique().numel() == 1


def test_kmeans_hand_values_and_canonical_labels():
    # Centroid 8.04; by distance to it: 10, 10.1, 0.1, 0, 20. Labels are
    # numbered in that order of first appearance.
    x = torch.tensor([[0.], [0.1], [10.], [10.1], [20.]])
    assert kmeans(x, 3).tolist() == [1, 1, 0, 0, 2]
    assert kmeans(x[[4, 2, 0, 3, 1]], 3).tolist() == [2, 0, 1, 0, 1]
    # Two graphs of a batch: each clustered on its own.
    out = kmeans(torch.cat([x, x + 7]), 3,
                 batch=torch.tensor([0] * 5 + [1] * 5))
    assert out.tolist() == [1, 1, 0, 0, 2] * 2


def inertia(x, labels):
    return sum(float(((x[labels == c] - x[labels == c].mean(0))**2).sum())
               for c in labels.unique())


def test_kmeans_restarts_keep_the_best_inertia():
    x = torch.rand(60, 2, generator=torch.Generator().manual_seed(0),
                   dtype=torch.float64)
    gains = []
    for seed in range(3):
        # The first restart of a stream is the single run of that seed.
        one = inertia(x, kmeans(x, 5, n_init=1, seed=seed))
        ten = inertia(x, kmeans(x, 5, n_init=10, seed=seed))
        assert ten <= one
        gains.append(one - ten)
    assert max(gains) > 0.1  # (measured: 0.21, 0.08, 0.49)


def test_kmeans_batched_equals_one_by_one_and_permutation():
    g = torch.Generator().manual_seed(1)
    xs = [torch.randn(n, 3, generator=g, dtype=torch.float64)
          for n in (30, 8, 25)]
    batch = torch.cat([torch.full((x.size(0), ), i)
                       for i, x in enumerate(xs)])
    out = kmeans(torch.cat(xs), 4, batch=batch)
    assert torch.equal(out, torch.cat([kmeans(x, 4) for x in xs]))
    perm = torch.randperm(30, generator=g)
    assert torch.equal(kmeans(xs[0][perm], 4), out[:30][perm])


def test_kmeans_bad_inputs():
    x = torch.randn(5, 2)
    with pytest.raises(ValueError, match="'k' must be a positive"):
        kmeans(x, 0)
    with pytest.raises(ValueError, match="'n_init' must be a positive"):
        kmeans(x, 2, n_init=0)
    with pytest.raises(ValueError, match=r"'x' must be \[N, F\]"):
        kmeans(torch.randn(5), 2)
    with pytest.raises(ValueError, match='non-finite'):
        kmeans(torch.tensor([[0.], [float('nan')]]), 1)
    with pytest.raises(ValueError, match="'batch' holds 3 entries for 5"):
        kmeans(x, 2, batch=torch.zeros(3, dtype=torch.long))


def test_spectral_separates_cliques():
    ei, n = two_cliques()
    out = spectral_clustering(ei, n, 2)
    assert same_partition(out, torch.tensor([0] * 5 + [1] * 5))
    # Batched: the same graph twice gives the same partition in each copy.
    b = Batch.from_data_list([Data(edge_index=ei, num_nodes=n)] * 2)
    out2 = spectral_clustering(b.edge_index, b.num_nodes, 2, b.batch)
    assert torch.equal(out2[:n], out) and torch.equal(out2[n:], out)
    # No edges: defined result.
    assert spectral_clustering(torch.empty(2, 0, dtype=torch.long), 4,
                               2).numel() == 4


def karate():
    nx = pytest.importorskip('networkx')
    G = nx.karate_club_graph()
    edges = torch.tensor(list(G.edges())).t()
    return G, to_undirected(edges), G.number_of_nodes()


@pytest.mark.parametrize('k', [2, 3, 4])
def test_spectral_agrees_with_sklearn_on_karate(k):
    sklearn = pytest.importorskip('sklearn')
    import networkx as nx
    from sklearn.cluster import SpectralClustering
    from sklearn.metrics import adjusted_rand_score
    G, ei, n = karate()
    ref = SpectralClustering(k, affinity='precomputed', random_state=0)
    ref = ref.fit_predict(nx.to_numpy_array(G, weight=None))
    out = spectral_clustering(ei, n, k)
    ari = adjusted_rand_score(ref, out.numpy())
    # Measured (scikit-learn 1.9): 1.0, 1.0, 0.896. The embeddings differ
    # (10 eigenvectors scaled by 1/lambda vs k unscaled ones).
    assert ari >= {2: 1.0, 3: 1.0, 4: 0.85}[k], (sklearn.__version__, ari)
    # A function of the graph: the same for every seed and node order.
    assert torch.equal(spectral_clustering(ei, n, k, seed=1), out)
    g = torch.Generator().manual_seed(k)
    for _ in range(2):
        perm = torch.randperm(n, generator=g)
        inv = torch.empty_like(perm)
        inv[perm] = torch.arange(n)
        assert torch.equal(spectral_clustering(inv[ei], n, k), out[perm])


def test_spectral_uses_edge_weights():
    # A 4-cycle whose heavy edges decide the cut.
    ring = torch.tensor([[0, 1, 2, 3], [1, 2, 3, 0]])
    ei = torch.cat([ring, ring.flip(0)], 1)
    w = torch.tensor([5., 1., 5., 1.]).repeat(2)
    assert spectral_clustering(ei, 4, 2, edge_weight=w).tolist() == [
        0, 0, 1, 1]
    assert spectral_clustering(ei, 4, 2, edge_weight=w.roll(1)).tolist() == [
        1, 0, 0, 1]
    with pytest.raises(ValueError, match='non-negative'):
        spectral_clustering(ei, 4, 2, edge_weight=-w)
    with pytest.raises(ValueError, match="'edge_weight' holds 3 entries"):
        spectral_clustering(ei, 4, 2, edge_weight=w[:3])
    with pytest.raises(ValueError, match='refers to node 3'):
        spectral_clustering(ei, 3, 2)


def test_fixed_hierarchy_clusters_the_weighted_coarse_graph():
    # Four 4-cliques; clique pairs (0, 1) and (2, 3) joined by three edges,
    # (1, 2) and (3, 0) by one. Level 1 finds the cliques; its coarse graph
    # is a 4-cycle with weights 3, 1, 3, 1 (0/1 weights would make it a
    # plain cycle), so level 2 pairs the cliques along the heavy edges.
    cliques = [[(4 * c + i, 4 * c + j) for i in range(4)
                for j in range(i + 1, 4)] for c in range(4)]
    edges = sum(cliques, []) + [(0, 4), (1, 5), (2, 6), (8, 12), (9, 13),
                                (10, 14), (7, 11), (15, 3)]
    data = Data(edge_index=to_undirected(torch.tensor(edges).t()),
                num_nodes=16)
    levels = fixed_hierarchy(data, 'spectral', [4, 2, 1])
    first = levels[0]
    assert same_partition(first, torch.arange(16) // 4)
    cluster, C, _ = compact_clusters(first, torch.zeros(16, dtype=torch.long),
                                     4)
    coarse_ei, coarse_w = coarsen(data.edge_index, None, cluster, C)
    off = coarse_ei[0] != coarse_ei[1]
    assert sorted(coarse_w[off].tolist()) == [1.0] * 4 + [3.0] * 4
    assert torch.equal(levels[1], spectral_clustering(
        coarse_ei, C, 2, edge_weight=coarse_w))
    pairs = levels[1][cluster]  # the level-2 cluster of every fine node
    assert same_partition(pairs, (torch.arange(16) // 8))


@pytest.mark.parametrize('method', ['spectral', 'kmeans'])
def test_fixed_hierarchy_batched_equals_one_by_one_and_permutation(method):
    graphs = [random_graph(n, 0.3, 5, seed=s, dtype=torch.float32)
              for s, n in enumerate((12, 20, 9, 30))]
    levels = fixed_hierarchy(Batch.from_data_list(graphs), method, [4, 2, 1])
    single = [fixed_hierarchy(g, method, [4, 2, 1]) for g in graphs]
    for i, level in enumerate(levels):
        assert torch.equal(level, torch.cat([s[i] for s in single]))
    g = graphs[3]
    perm, inv = permute_within_graphs(torch.zeros(30, dtype=torch.long), 7)
    permuted = Data(x=g.x[perm], edge_index=inv[g.edge_index], num_nodes=30)
    out = fixed_hierarchy(permuted, method, [4, 2, 1])
    assert torch.equal(out[0], single[3][0][perm])
    assert all(torch.equal(a, b) for a, b in zip(out[1:], single[3][1:]))


def test_balanced_spectral_hierarchy():
    graphs = [random_graph(n, 0.3, 5, seed=s, dtype=torch.float32)
              for s, n in enumerate((12, 21, 30))]
    batch = Batch.from_data_list(graphs)
    levels = fixed_hierarchy(batch, 'spectral', [4, 2], balanced=True)
    single = [fixed_hierarchy(g, 'spectral', [4, 2], balanced=True)
              for g in graphs]
    for i, level in enumerate(levels):
        assert torch.equal(level, torch.cat([s[i] for s in single]))
    for g, (fine, coarse) in zip(graphs, single):
        sizes = torch.bincount(fine, minlength=4)
        assert int(sizes.max() - sizes.min()) <= 1  # balanced
        assert torch.bincount(coarse, minlength=2).tolist() == [2, 2]
    # The same k-means centres: nodes keep their nearest centre where the
    # sizes allow; a graph of no more nodes than clusters is unchanged.
    plain = fixed_hierarchy(graphs[2], 'spectral', [4])[0]
    assert (plain == single[2][0]).float().mean() > 0.4
    tiny = random_graph(3, 0.9, 5, seed=0, dtype=torch.float32)
    assert torch.equal(
        fixed_hierarchy(tiny, 'spectral', [4], balanced=True)[0],
        fixed_hierarchy(tiny, 'spectral', [4])[0])
    with pytest.raises(ValueError, match="method='spectral' only"):
        fixed_hierarchy(graphs[0], 'kmeans', [4], balanced=True)


def test_feature_kmeans_uses_features():
    x = torch.cat([torch.zeros(4, 30), torch.ones(4, 30)])
    x[:, 0] += torch.arange(8) * 1e-3
    out = feature_kmeans(x, 2)
    assert same_partition(out, torch.tensor([0] * 4 + [1] * 4))


def test_grid_clustering_is_a_quadtree():
    pos = torch.stack(torch.meshgrid(torch.arange(4), torch.arange(4),
                                     indexing='ij'), -1).view(-1, 2)
    out = grid_clustering(pos, (2, 2))
    assert out.view(4, 4).tolist() == [[0, 0, 1, 1], [0, 0, 1, 1],
                                       [2, 2, 3, 3], [2, 2, 3, 3]]
    with pytest.raises(ValueError):
        grid_clustering(torch.zeros(3))


def image_graph(h=4, w=4):
    ei, pos = grid(h, w)
    pos = torch.stack(torch.meshgrid(torch.arange(h), torch.arange(w),
                                     indexing='ij'), -1).view(-1, 2)
    ei = ei[:, ei[0] != ei[1]]
    return Data(x=torch.rand(h * w, 1), edge_index=ei, pos=pos)


def test_fixed_hierarchy_grid_runs_through_mgn():
    data = image_graph(8, 8)
    levels = fixed_hierarchy(data, 'grid', [16, 4, 1])
    assert [int(lv.max()) + 1 for lv in levels] == [16, 4, 1]
    assert [lv.numel() for lv in levels] == [64, 16, 4]
    model = MGN(1, 8, 4, [16, 4, 1], clustering='fixed')
    out = model(data.x, data.edge_index, clusters=levels)
    assert [lvl.num_nodes for lvl in out.levels] == [64, 16, 4, 1]
    assert [lvl.select.sizes().tolist() for lvl in out.levels[:-1]] == [
        [4] * 16, [4] * 4, [4]]
    with pytest.raises(ValueError, match='clusters'):
        model(data.x, data.edge_index)


@pytest.mark.parametrize('method', ['spectral', 'kmeans'])
def test_fixed_hierarchy_transform_batches(method):
    ei, n = two_cliques()
    graphs = []
    for s in range(3):
        d = Data(x=torch.randn(n, 3, generator=torch.Generator()
                               .manual_seed(s)), edge_index=ei)
        graphs.append(FixedHierarchy(method, [3, 2, 1])(d))
    batch = next(iter(DataLoader(graphs, batch_size=3)))
    clusters = get_fixed_clusters(batch)
    assert len(clusters) == 3
    model = MGN(3, 8, 4, [3, 2, 1], clustering='fixed')
    out = model(batch.x, batch.edge_index, batch=batch.batch,
                clusters=clusters)
    # Same as running every graph alone:
    for i, g in enumerate(graphs):
        single = model(g.x, g.edge_index, clusters=get_fixed_clusters(g))
        assert torch.allclose(single.top.z, out.top.z[i:i + 1], atol=1e-6)
    assert str(FixedHierarchy(method, [3, 1])).startswith('FixedHierarchy')
