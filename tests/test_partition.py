import pytest
import torch
from torch_geometric.utils import erdos_renyi_graph, to_undirected

from torch_geometric_mgvae import MGVAE
from torch_geometric_mgvae.experiments.train import run_epoch
from torch_geometric_mgvae.loader import (
    PartitionData,
    PartitionLoader,
    smoothed_bisection_partition,
    to_csr,
)


def _graph(n=60, p=0.1, seed=0):
    torch.manual_seed(seed)
    return torch.randn(n, 4), erdos_renyi_graph(n, p)


def test_to_csr():
    ei = torch.tensor([[2, 0, 1, 0], [0, 1, 2, 2]])
    rowptr, col = to_csr(ei, 3)
    assert rowptr.tolist() == [0, 2, 3, 4]
    assert col.tolist() == [1, 2, 2, 0]


def test_partition_is_balanced_and_finds_two_cliques():
    # Two 10-cliques joined by one edge, node ids interleaved.
    a = torch.combinations(torch.arange(10)).t()
    ei = to_undirected(torch.cat([a, a + 10, torch.tensor([[0], [10]])], 1))
    perm = torch.randperm(20, generator=torch.Generator().manual_seed(1))
    rowptr, col = to_csr(perm[ei], 20)
    part = smoothed_bisection_partition(rowptr, col, 2)
    assert torch.bincount(part).tolist() == [10, 10]
    inv = torch.empty_like(perm)
    inv[perm] = torch.arange(20)
    left = part[perm[:10]]
    assert (left == left[0]).all() and (part[perm[10:]] != left[0]).all()
    x, ei = _graph()
    for k in (1, 3, 7):
        sizes = torch.bincount(smoothed_bisection_partition(
            *to_csr(ei, 60), k), minlength=k)
        assert int(sizes.max() - sizes.min()) <= 1
    with pytest.raises(ValueError, match='num_parts'):
        smoothed_bisection_partition(*to_csr(ei, 60), 0)


def _epoch(data, world, cut_edges=True, parts_per_batch=2):
    items = []
    for rank in range(world):
        loader = PartitionLoader(data, parts_per_batch, cut_edges,
                                 num_replicas=world, rank=rank, seed=5)
        loader.set_epoch(3)
        items.append(list(loader))
    return items


@pytest.mark.parametrize('world', [1, 2])
def test_a_minibatched_epoch_touches_every_node_and_edge(world):
    x, ei = _graph()
    data = PartitionData.from_edge_index(x, ei, 5)
    assert repr(data) == (f'PartitionData(num_nodes=60, '
                          f'num_edges={ei.size(1)}, num_parts=5)')
    items = _epoch(data, world)
    assert len({len(i) for i in items}) == 1  # the same steps everywhere
    core, edges = [], set()
    for rank_items in items:
        for sub, scale in rank_items:
            assert sub.num_nodes == sub.n_id.numel()
            assert torch.equal(sub.x, x[sub.n_id])
            if scale == 0:  # a stand-in of the last round
                continue
            core += sub.n_id[:sub.num_core].tolist()
            g = sub.n_id[sub.edge_index]
            edges |= set(map(tuple, g.t().tolist()))
            # Every edge of the subgraph is an edge of the graph:
            assert set(map(tuple, g.t().tolist())) <= set(
                map(tuple, ei.t().tolist()))
    assert sorted(core) == list(range(60))  # every node once
    assert edges == set(map(tuple, ei.t().tolist()))  # every edge
    # 5 parts, 2 per batch: 3 batches; with 2 processes the last round has
    # one batch (scale 2: DDP halves it) and a stand-in (scale 0).
    scales = [[s for _, s in r] for r in items]
    assert scales == ([[1.0, 1.0, 1.0]] if world == 1 else
                      [[1.0, 2.0], [1.0, 0.0]])


def test_without_cut_edges_only_induced_edges():
    x, ei = _graph()
    data = PartitionData.from_edge_index(x, ei, 3)
    (items, ) = _epoch(data, 1, cut_edges=False, parts_per_batch=1)
    inside = 0
    for sub, _ in items:
        assert sub.num_nodes == sub.num_core
        part = data.part[sub.n_id]
        assert (part == part[0]).all()
        inside += sub.edge_index.size(1)
    assert inside == round((1 - data.cut_fraction()) * ei.size(1))


def test_run_epoch_over_subgraphs():
    x, ei = _graph(80, 0.08)
    data = PartitionData.from_edge_index(x, ei, 4)
    torch.manual_seed(0)
    model = MGVAE(4, 8, 4, num_clusters=[2, 1])
    before = [p.detach().clone() for p in model.parameters()]
    loader = PartitionLoader(data, 1)
    stats = run_epoch(model, loader, torch.optim.Adam(model.parameters()),
                      generator=torch.Generator().manual_seed(0), epoch=1)
    assert torch.isfinite(torch.tensor(stats['loss']))
    assert any(not torch.equal(a, b)
               for a, b in zip(before, model.parameters()))
    assert str(loader).startswith('PartitionLoader(4 parts')
