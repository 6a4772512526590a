r"""MGN's PyG operators tested the way PyG tests its own: ``str(module)``,
hand values on tiny graphs, sparse adjacencies equal to ``edge_index``,
equivariance / invariance, composition in ``torch_geometric.nn.Sequential``
and inside a PyG graph classifier."""
import pytest
import torch
from torch_geometric.data import Batch, Data
from torch_geometric.loader import DataLoader
from torch_geometric.nn import (
    GCNConv,
    GraphConv,
    SAGEConv,
    Sequential,
    global_mean_pool,
)
from torch_geometric.nn.pool.connect import ConnectOutput
from torch_geometric.nn.pool.select import SelectOutput
from torch_geometric.testing import withPackage
from torch_geometric.utils import (
    to_torch_coo_tensor,
    to_torch_csr_tensor,
    to_undirected,
)

from tests.conftest import permute_within_graphs, random_batch
from torch_geometric_mgvae.nn import (
    ClusterOutput,
    ClusterReadout,
    CoarsenEdges,
    MGNConv,
    MGNPooling,
    SelectFixed,
    SelectLearned,
    coarsen,
    fixed_cluster_output,
    mean_norm,
)

# A path 0 - 1 - 2 - 3 plus the edge 1 - 3, both directions.
EDGES = to_undirected(torch.tensor([[0, 1, 2, 1], [1, 2, 3, 3]]))


def test_mgn_conv_equals_graph_conv_mean_on_unweighted_graphs():
    data = random_batch(sizes=(9, 6), channels=5)
    conv = MGNConv(5, 7).double()
    ref = GraphConv(5, 7, aggr='mean').double()
    with torch.no_grad():
        ref.lin_rel.weight.copy_(conv.lin_rel.weight)
        ref.lin_root.weight.copy_(conv.lin_root.weight)
        ref.lin_rel.bias.copy_(conv.lin_root.bias)
        # (MGNConv's root term carries the bias, GraphConv's relation term.)
    out = conv(data.x, data.edge_index)
    assert torch.allclose(out, ref(data.x, data.edge_index), atol=1e-12)
    # With weights MGNConv divides by the total weight (Eq. 2's D^-1 A),
    # GraphConv by the number of neighbours:
    w = torch.rand(data.num_edges, dtype=torch.double) + 0.5
    assert not torch.allclose(conv(data.x, data.edge_index, w),
                              ref(data.x, data.edge_index, w))
    assert str(conv) == 'MGNConv(5, 7)'


def test_mgn_conv_sparse_adjacencies_equal_edge_index():
    x = torch.randn(4, 3, dtype=torch.double)
    w = torch.tensor([1., 2., 3., 4., 5., 6., 7., 8.], dtype=torch.double)
    conv = MGNConv(3, 2).double()
    for weight in (None, w):
        out = conv(x, EDGES, weight)
        # PyG's transposed layout: adj_t[target, source].
        for to_sparse in (to_torch_coo_tensor, to_torch_csr_tensor):
            adj_t = to_sparse(EDGES.flip(0), weight, size=(4, 4))
            if weight is None:
                adj_t = to_sparse(EDGES.flip(0), torch.ones(8).double(),
                                  size=(4, 4))
            assert torch.allclose(conv(x, adj_t), out, atol=1e-12)
    # The weights normalised to a weighted mean over every target:
    _, nw = mean_norm(EDGES, w, 4)
    total = torch.zeros(4, dtype=torch.double).index_add_(0, EDGES[1], nw)
    assert torch.allclose(total, torch.ones(4, dtype=torch.double))


@withPackage('torch_sparse')
def test_mgn_conv_sparse_tensor_equals_edge_index():
    from torch_sparse import SparseTensor
    x = torch.randn(4, 3)
    w = torch.arange(1., 9.)
    conv = MGNConv(3, 2)
    adj_t = SparseTensor.from_edge_index(EDGES, w,
                                         sparse_sizes=(4, 4)).t()
    assert torch.allclose(conv(x, adj_t), conv(x, EDGES, w), atol=1e-6)
    adj_t = SparseTensor.from_edge_index(EDGES, sparse_sizes=(4, 4)).t()
    assert torch.allclose(conv(x, adj_t), conv(x, EDGES), atol=1e-6)


def test_mgn_conv_is_equivariant_and_composes_in_sequential():
    data = random_batch(sizes=(8, 5), channels=4)
    model = Sequential('x, edge_index, edge_weight', [
        (MGNConv(4, 16), 'x, edge_index, edge_weight -> x'),
        torch.nn.ReLU(),
        (MGNConv(16, 3), 'x, edge_index, edge_weight -> x'),
    ]).double()
    w = torch.rand(data.num_edges, dtype=torch.double)
    out = model(data.x, data.edge_index, w)
    perm, inv = permute_within_graphs(data.batch, seed=2)
    out2 = model(data.x[perm], inv[data.edge_index], w)
    assert out.shape == (13, 3)
    assert torch.allclose(out2, out[perm], atol=1e-12)


def test_select_learned_returns_a_select_output():
    data = random_batch(sizes=(7, 5))
    select = SelectLearned(4, 3, hidden_channels=8).double().train()
    out = select(data.x, data.edge_index, batch=data.batch,
                 generator=torch.Generator().manual_seed(0))
    assert isinstance(out, SelectOutput) and isinstance(out, ClusterOutput)
    assert torch.equal(out.node_index, torch.arange(12))
    assert out.num_nodes == 12 and out.num_clusters <= 6
    assert out.weight.shape == (12, )
    assert torch.allclose(out.weight.detach(), torch.ones(12).double())
    assert out.weight.requires_grad  # the straight-through gradient
    assert str(select) == 'SelectLearned(4, num_clusters=3, num_layers=2)'
    with pytest.raises(ValueError, match='tau'):
        SelectLearned(4, 3, tau=0.0)
    with pytest.raises(ValueError, match='num_clusters'):
        SelectLearned(4, 0)


def test_select_fixed():
    select = SelectFixed(2)
    x = torch.zeros(5, 1)
    out = select(x, batch=torch.tensor([0, 0, 0, 1, 1]),
                 cluster=torch.tensor([1, 0, 1, 1, 1]))
    assert out.cluster_index.tolist() == [1, 0, 1, 2, 2]
    assert out.batch.tolist() == [0, 0, 1]
    assert out.num_clusters == 3 and out.logits is None
    assert str(select) == 'SelectFixed(num_clusters=2)'
    with pytest.raises(ValueError, match='cluster ids'):
        select(x)
    with pytest.raises(ValueError, match=r'\[0, 2\)'):
        select(x, cluster=torch.tensor([0, 1, 2, 0, 0]))
    with pytest.raises(ValueError, match='4 ids for 5 nodes'):
        select(x, cluster=torch.tensor([0, 1, 0, 0]))
    assert SelectFixed(1)(x).cluster_index.tolist() == [0] * 5


def test_coarsen_edges_is_a_connect():
    # Clusters {0, 1} and {2, 3} of the path-plus-chord graph.
    so = fixed_cluster_output(torch.tensor([0, 0, 1, 1]),
                              torch.zeros(4, dtype=torch.long), 2)
    out = CoarsenEdges()(so, EDGES)
    assert isinstance(out, ConnectOutput)
    # Def. 2: one edge inside each cluster (self loops), the cut edges
    # 1-2 and 1-3 between them (both directions).
    assert out.edge_index.tolist() == [[0, 0, 1, 1], [0, 1, 0, 1]]
    assert out.edge_attr.tolist() == [1.0, 2.0, 2.0, 1.0]
    assert out.batch.tolist() == [0, 0]
    prod = CoarsenEdges('product')(so, EDGES)
    assert prod.edge_attr.tolist() == [2.0, 2.0, 2.0, 2.0]
    # A plain PyG SelectOutput works too (batch from get_pooled_batch).
    plain = SelectOutput(torch.arange(4), 4, torch.tensor([1, 1, 0, 0]), 2)
    out = CoarsenEdges()(plain, EDGES, batch=torch.zeros(4).long())
    assert out.edge_attr.tolist() == [1.0, 2.0, 2.0, 1.0]
    assert out.batch.tolist() == [0, 0]
    subset = SelectOutput(torch.tensor([0, 1]), 4, torch.tensor([0, 0]), 1)
    with pytest.raises(ValueError, match='every node'):
        CoarsenEdges()(subset, EDGES)
    assert str(CoarsenEdges()) == 'CoarsenEdges(diagonal=edges)'


def test_coarsen_rejects_cluster_ids_out_of_range():
    with pytest.raises(ValueError, match=r'\[0, 2\) \(got ids from 0 to 2\)'):
        coarsen(EDGES, None, torch.tensor([0, 1, 2, 0]), 2)
    with pytest.raises(ValueError, match='holds 3 nodes'):
        coarsen(EDGES, None, torch.tensor([0, 1, 1]), 2)
    # Edge features are summed like weights (bond types become counts):
    attr = torch.eye(2)[torch.tensor([0, 1, 0, 0, 1, 0, 0, 0])]
    ei, a = coarsen(EDGES, attr, torch.tensor([0, 0, 1, 1]), 2)
    assert a.shape == (4, 2) and a.sum().item() == 6.0


def test_cluster_readout_hand_values_and_invariance():
    x = torch.tensor([[1.0], [3.0], [10.0]])
    index = torch.tensor([0, 0, 1])
    mean = ClusterReadout()
    assert mean(x, index, dim_size=2).view(-1).tolist() == [2.0, 10.0]
    w = torch.tensor([1.0, 3.0, 1.0])
    assert mean(x, index, dim_size=2, weight=w).view(-1).tolist() == [
        2.5, 10.0
    ]
    deep = ClusterReadout.mlp(1, 4)
    perm = torch.tensor([2, 0, 1])
    assert torch.allclose(deep(x, index, dim_size=2),
                          deep(x[perm], index[perm], dim_size=2))
    assert str(mean) == 'ClusterReadout(local_nn=None, global_nn=None)'


def tiny_pool():
    pool = MGNPooling(2, 2, select='fixed')
    x = torch.tensor([[1.0, 0.0], [3.0, 0.0], [0.0, 2.0], [0.0, 4.0]])
    return pool, x


def test_mgn_pooling_hand_values():
    pool, x = tiny_pool()
    out = pool(x, EDGES, cluster=torch.tensor([0, 0, 1, 1]))
    x2, ei, w, batch, so, cut = out
    assert x2.tolist() == [[2.0, 0.0], [0.0, 3.0]]
    assert ei.tolist() == [[0, 0, 1, 1], [0, 1, 0, 1]]
    assert w.tolist() == [1.0, 2.0, 2.0, 1.0]
    assert batch.tolist() == [0, 0]
    assert isinstance(so, SelectOutput)
    assert cut.item() == 0.0  # two clusters of two: balanced
    _, _, _, _, _, cut = pool(x, EDGES, cluster=torch.tensor([0, 0, 0, 1]))
    # P = (3/4, 1/4) against uniform: 3/4 log 3/2 + 1/4 log 1/2
    assert cut.item() == pytest.approx(0.75 * 0.4054651 + 0.25 * -0.6931472,
                                       abs=1e-6)
    assert str(pool) == ('MGNPooling(2, num_clusters=2, '
                         'select=SelectFixed(num_clusters=2))')


def test_mgn_pooling_is_invariant_to_node_order():
    data = random_batch(sizes=(9, 7, 4), channels=4)
    pool = MGNPooling(4, 3, hidden_channels=8).double().train()
    noise = torch.distributions.Gumbel(0., 1.).sample(
        (data.num_nodes, 3)).double()
    out = pool(data.x, data.edge_index, None, data.batch, noise=noise)
    perm, inv = permute_within_graphs(data.batch, seed=3)
    out2 = pool(data.x[perm], inv[data.edge_index], None, data.batch,
                noise=noise[perm])
    # Cluster ids are ordered by (graph, local id): the coarse graph is the
    # same, not only isomorphic.
    assert torch.allclose(out[0], out2[0], atol=1e-10)
    assert torch.equal(out[1], out2[1])
    assert torch.allclose(out[2], out2[2])
    assert torch.equal(out[3], out2[3])
    assert torch.equal(out2[4].cluster_index, out[4].cluster_index[perm])
    assert torch.allclose(out[5], out2[5])
    # Gradients reach the clustering through the pooled features and the
    # coarse edge weights.
    (out[0].sum() + out[2].sum() + out[5]).backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0
               for p in pool.select.parameters())


def test_mgn_pooling_edge_cases():
    pool = MGNPooling(3, 4).eval()
    # Fewer nodes than clusters, no edges, a graph of one node:
    x = torch.randn(4, 3)
    batch = torch.tensor([0, 0, 0, 1])
    ei = torch.empty(2, 0, dtype=torch.long)
    x2, ei2, w2, b2, so, cut = pool(x, ei, None, batch)
    assert x2.size(0) == so.num_clusters <= 4
    assert ei2.shape == (2, 0) and w2.numel() == 0
    assert b2.tolist() == sorted(b2.tolist())
    assert torch.isfinite(cut)
    # No nodes at all:
    out = pool(torch.empty(0, 3), ei, None, torch.empty(0, dtype=torch.long))
    assert out[0].shape == (0, 3) and out[4].num_clusters == 0
    # No edges, with edge features (E = 0 rows): an empty coarse edge set
    # with the same feature width.
    so = pool.select(x, ei, None, batch)
    coarse = pool.coarsen_graph(x, ei, None, so, batch, torch.empty(0, 2))
    assert coarse.edge_attr.shape == (0, 2) and coarse.edge_weight.numel() == 0


def test_mgn_pooling_in_sequential():
    data = random_batch(sizes=(6, 8), channels=4, dtype=torch.float32)
    model = Sequential('x, edge_index, edge_weight, batch', [
        (GCNConv(4, 8), 'x, edge_index -> x'),
        torch.nn.ReLU(),
        (MGNPooling(8, 2), 'x, edge_index, edge_weight, batch -> '
         'x, edge_index, edge_weight, batch, select, cut'),
        (GCNConv(8, 8), 'x, edge_index, edge_weight -> x'),
        (global_mean_pool, 'x, batch -> x'),
    ])
    out = model(data.x, data.edge_index, None, data.batch)
    assert out.shape == (2, 8)


class PoolNet(torch.nn.Module):
    def __init__(self, in_channels: int, hidden: int, num_classes: int):
        super().__init__()
        self.conv1 = GCNConv(in_channels, hidden)
        self.pool = MGNPooling(hidden, num_clusters=4)
        self.conv2 = GCNConv(hidden, hidden)
        self.lin = torch.nn.Linear(hidden, num_classes)

    def forward(self, x, edge_index, batch):
        x = self.conv1(x, edge_index).relu()
        x, edge_index, edge_weight, batch, _, cut_loss = self.pool(
            x, edge_index, None, batch)
        x = self.conv2(x, edge_index, edge_weight).relu()
        return self.lin(global_mean_pool(x, batch)), cut_loss


def two_class_graphs(num, seed=0):
    r"""Cycles (class 0) against stars (class 1) of 8-12 nodes, with the
    degree as the only feature."""
    g = torch.Generator().manual_seed(seed)
    graphs = []
    for i in range(num):
        n = int(torch.randint(8, 13, (1, ), generator=g))
        if i % 2 == 0:
            ei = torch.stack([torch.arange(n), (torch.arange(n) + 1) % n])
        else:
            ei = torch.stack([torch.zeros(n - 1).long(), torch.arange(1, n)])
        ei = to_undirected(ei, num_nodes=n)
        deg = torch.bincount(ei[0], minlength=n).float().view(-1, 1)
        graphs.append(Data(x=deg / 4, edge_index=ei, y=torch.tensor([i % 2])))
    return graphs


def test_mgn_pooling_in_a_pyg_graph_classifier():
    torch.manual_seed(0)
    loader = DataLoader(two_class_graphs(64), batch_size=16, shuffle=True)
    model = PoolNet(1, 16, 2)
    opt = torch.optim.Adam(model.parameters(), lr=0.02)

    def epoch():
        total = correct = 0.0
        for batch in loader:
            logits, cut = model(batch.x, batch.edge_index, batch.batch)
            ce = torch.nn.functional.cross_entropy(logits, batch.y)
            opt.zero_grad()
            (ce + cut).backward()  # the pooling's auxiliary loss is added
            opt.step()
            total += ce.item() * batch.num_graphs
            correct += int((logits.argmax(-1) == batch.y).sum())
        return total / 64, correct / 64

    first, _ = epoch()
    for _ in range(25):
        last, acc = epoch()
    assert last < 0.5 * first
    assert acc > 0.9


def test_batched_pooling_equals_one_by_one():
    graphs = [random_batch(sizes=(n, ), channels=3, seed=n) for n in (5, 9)]
    pool = MGNPooling(3, 2, hidden_channels=4).double().eval()
    batch = Batch.from_data_list(graphs)
    x, ei, w, b, _, _ = pool(batch.x, batch.edge_index, None, batch.batch)
    offset = 0
    for k, g in enumerate(graphs):
        xg, eig, wg, _, _, _ = pool(g.x, g.edge_index)
        assert torch.allclose(x[b == k], xg, atol=1e-12)
        mask = b[ei[0]] == k
        assert torch.equal(ei[:, mask] - offset, eig)
        assert torch.allclose(w[mask], wg)
        offset += xg.size(0)


def test_star_import():
    namespace = {}
    exec('from torch_geometric_mgvae.nn import *', namespace)
    assert 'MGNPooling' in namespace and 'assignment_entropy' in namespace
    exec('from torch_geometric_mgvae.transforms import *', namespace)
    assert 'AddStructuralFeatures' in namespace
    exec('from torch_geometric_mgvae import *', namespace)
    assert 'MGVAE' in namespace


def test_pooling_with_sage_conv_select():
    pool = MGNPooling(4, 3, num_layers=1, conv=SAGEConv)
    assert isinstance(pool.select.convs[0], SAGEConv)
    data = random_batch(sizes=(6, ), dtype=torch.float32)
    assert pool(data.x, data.edge_index)[0].size(1) == 4
