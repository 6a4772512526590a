import pytest
import torch
from torch_geometric.data import Batch, Data
from torch_geometric.loader import DataLoader
from torch_geometric.utils import grid, to_undirected

from torch_geometric_mgvae import MGN
from torch_geometric_mgvae.nn import (
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
    out = kmeans(x, 2, generator=g)
    assert same_partition(out, torch.tensor([0] * 20 + [1] * 20))
    assert kmeans(torch.randn(3, 2), 5).tolist() == [0, 1, 2]
    assert kmeans(torch.zeros(6, 2), 3).unique().numel() == 1


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
