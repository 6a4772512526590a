import itertools

import pytest
import torch
from torch_geometric.utils import to_dense_adj, to_undirected

from torch_geometric_mgvae.nn import CoarsenEdges, coarsen, compact_clusters


def dense_pi(cluster, C):
    return torch.nn.functional.one_hot(cluster, C).double()


def random_case(seed, weighted, K=3):
    g = torch.Generator().manual_seed(seed)
    sizes = [6, 9, 4]
    batch = torch.cat([torch.full((n, ), i) for i, n in enumerate(sizes)])
    N = batch.numel()
    edges = []
    offset = 0
    for n in sizes:
        for i, j in itertools.combinations(range(n), 2):
            if torch.rand(1, generator=g) < 0.4:
                edges.append((offset + i, offset + j))
        offset += n
    ei = to_undirected(torch.tensor(edges).t())
    w = None
    if weighted:
        w = torch.rand(ei.size(1) // 2, generator=g, dtype=torch.double) + .1
        ei_half = ei[:, ei[0] < ei[1]]
        ei = torch.cat([ei_half, ei_half.flip(0)], 1)
        w = torch.cat([w, w])
    local = torch.randint(K, (N, ), generator=g)
    cluster, C, cbatch = compact_clusters(local, batch, K)
    return ei, w, cluster, C, N


@pytest.mark.parametrize('weighted', [False, True])
@pytest.mark.parametrize('seed', [0, 1, 2])
@pytest.mark.parametrize('K', [3, 20])
def test_coarsen_equals_dense_product(weighted, seed, K):
    # K = 3: few coarse nodes (C^2 <= 4E, summed by one scatter); K = 20:
    # many (sorted and coalesced). Both must be Pi^T A Pi.
    ei, w, cluster, C, N = random_case(seed, weighted, K)
    assert (C * C <= 4 * ei.size(1)) == (K == 3)
    A = to_dense_adj(ei, edge_attr=w, max_num_nodes=N)[0].double()
    Pi = dense_pi(cluster, C)
    expected = Pi.t() @ A @ Pi
    out_ei, out_w = coarsen(ei, w, cluster, C, diagonal='product')
    got = to_dense_adj(out_ei, edge_attr=out_w.double(), max_num_nodes=C)[0]
    assert torch.equal(got, expected) if not weighted else torch.allclose(
        got, expected, atol=1e-12)


@pytest.mark.parametrize('weighted', [False, True])
@pytest.mark.parametrize('K', [3, 20])
def test_coarsen_def2_counts_edges(weighted, K):
    ei, w, cluster, C, N = random_case(5, weighted, K)
    A = to_dense_adj(ei, edge_attr=w, max_num_nodes=N)[0].double()
    expected = torch.zeros(C, C, dtype=torch.double)
    for k in range(C):  # Def. 2 of the paper, literally
        for j in range(C):
            s = A[cluster == k][:, cluster == j].sum()
            expected[k, j] = s / 2 if k == j else s
    out_ei, out_w = coarsen(ei, w, cluster, C)
    got = to_dense_adj(out_ei, edge_attr=out_w.double(), max_num_nodes=C)[0]
    assert torch.allclose(got, expected, atol=1e-12)
    # The total edge weight is kept from level to level:
    total = A.sum() / 2
    assert torch.allclose(got.triu(1).sum() + got.diagonal().sum(), total)
    # ... and at the next level, where the input has self loops:
    top = torch.zeros(C, dtype=torch.long)
    ei2, w2 = coarsen(out_ei, out_w, top, 1)
    assert torch.allclose(w2.sum().double(), total)


def test_coarsen_straight_through_gradient():
    ei = torch.tensor([[0, 1, 1, 2], [1, 0, 2, 1]])
    cluster = torch.tensor([0, 0, 1])
    nw = torch.ones(3, requires_grad=True)
    _, w = coarsen(ei, None, cluster, 2, node_weight=nw)
    assert w.tolist() == [1.0, 1.0, 1.0]  # (0,0): 1 edge, (0,1), (1,0)
    w.sum().backward()
    assert nw.grad.abs().sum() > 0


def test_coarsen_no_edges_and_module():
    ei = torch.empty(2, 0, dtype=torch.long)
    out_ei, out_w = coarsen(ei, None, torch.tensor([0, 1, 1]), 2)
    assert out_ei.shape == (2, 0) and out_w.numel() == 0
    assert str(CoarsenEdges()) == 'CoarsenEdges(diagonal=edges)'
    with pytest.raises(ValueError):
        coarsen(ei, None, torch.tensor([0]), 1, diagonal='bad')
