r"""MGN / MGVAE as a PyG user meets them: ``model(data)``, sparse
adjacencies, pluggable convolutions, PyG's GAE/VGAE methods, transforms,
``torch.compile`` and clear errors on bad graphs."""
import math

import pytest
import torch
import torch.nn.functional as F
from torch_geometric.data import Batch, Data
from torch_geometric.datasets import KarateClub
from torch_geometric.nn import MLP, GCNConv, GINConv, GINEConv
from torch_geometric.transforms import AddRandomWalkPE, RandomLinkSplit
from torch_geometric.utils import (
    stochastic_blockmodel_graph,
    to_torch_coo_tensor,
    to_torch_csr_tensor,
)

from tests.conftest import random_batch
from torch_geometric_mgvae import MGN, MGVAE
from torch_geometric_mgvae.nn import LocalEncoder
from torch_geometric_mgvae.transforms import (
    AddStructuralFeatures,
    FixedHierarchy,
)


def make(cls=MGVAE, **kwargs):
    torch.manual_seed(0)
    return cls(4, 16, 8, [3, 1], **kwargs).double()


def same(a, b):
    assert len(a) == len(b)
    for la, lb in zip(a.levels, b.levels):
        assert torch.allclose(la.z, lb.z, atol=1e-12)
        assert torch.equal(la.edge_index, lb.edge_index)


def test_model_takes_a_batch_object():
    data = random_batch()
    model = make().eval()
    out = model(data)
    ref = model(data.x, data.edge_index, batch=data.batch,
                num_graphs=data.num_graphs)
    same(out, ref)
    single = data.get_example(1)
    same(model(single), model(single.x, single.edge_index))
    with pytest.raises(ValueError, match="no node features 'x'"):
        model(Data(edge_index=single.edge_index, num_nodes=3))


def test_model_takes_sparse_adjacencies():
    data = random_batch(sizes=(9, ))
    model = make().eval()
    ref = model(data.x, data.edge_index)
    for to_sparse in (to_torch_coo_tensor, to_torch_csr_tensor):
        adj_t = to_sparse(data.edge_index.flip(0), size=(9, 9))
        same(model(data.x, adj_t), ref)
        same(model(Data(x=data.x, adj_t=adj_t)), ref)


def test_fixed_clusters_are_read_from_the_data():
    graphs = [random_batch(sizes=(n, ), seed=n).get_example(0)
              for n in (8, 11)]
    transform = FixedHierarchy('spectral', [3, 1])
    batch = Batch.from_data_list([transform(g) for g in graphs])
    model = make(clustering='fixed').eval()
    out = model(batch)
    assert out[0].select.num_clusters == 6
    with pytest.raises(ValueError, match="'clusters' must be given"):
        model(random_batch())


@pytest.mark.parametrize('conv', [
    GCNConv,
    lambda i, o: GINConv(MLP([i, o, o])),
])
def test_pluggable_convolutions_train_a_step(conv):
    data = random_batch(sizes=(7, 9, 5), dtype=torch.float32)
    torch.manual_seed(0)
    model = MGVAE(4, 16, 8, [3, 2, 1], conv=conv)
    enc = model.encoders[0].convs[0]
    assert isinstance(enc, GCNConv if conv is GCNConv else GINConv)
    assert isinstance(model.pools[0].select.convs[0], type(enc))
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    gen = torch.Generator().manual_seed(0)
    losses = []
    for _ in range(2):
        out = model(data, generator=gen)
        loss = sum(model.loss_terms(out).values())
        opt.zero_grad()
        loss.backward()
        assert all(p.grad is not None for p in enc.parameters())
        opt.step()
        losses.append(loss.item())
    assert all(math.isfinite(v) for v in losses)


def test_edge_features_reach_gine_convolutions_at_every_level():
    data = random_batch(sizes=(7, 9), dtype=torch.float32)
    data.edge_attr = F.one_hot(torch.randint(3, (data.num_edges, )),
                               3).float()
    model = MGVAE(4, 16, 8, [3, 1],
                  conv=lambda i, o: GINEConv(MLP([i, o, o]), edge_dim=3))
    assert model.uses_edge_attr
    out = model(data)
    # Coarse edge features are the bond-type counts of the merged edges:
    assert out[1].edge_attr.shape == (out[1].edge_index.size(1), 3)
    assert torch.allclose(out[1].edge_attr.sum(-1), out[1].edge_weight)
    sum(model.loss_terms(out).values()).backward()
    # A conv without edge features refuses them:
    with pytest.raises(ValueError, match="takes no 'edge_attr'"):
        MGVAE(4, 16, 8, [3, 1])(data.x, data.edge_index,
                                edge_attr=data.edge_attr)
    with pytest.raises(ValueError, match='order=2'):
        MGVAE(4, 16, 8, [3, 1], order=2, conv=GCNConv)


def sbm_split(seed=0):
    torch.manual_seed(seed)
    ei = stochastic_blockmodel_graph([30, 30, 30], [[0.3, 0.02, 0.02],
                                                   [0.02, 0.3, 0.02],
                                                   [0.02, 0.02, 0.3]])
    x = F.one_hot(torch.arange(90) // 30, 3).float()
    x = torch.cat([x + 0.1 * torch.randn(90, 3), torch.randn(90, 1)], -1)
    return RandomLinkSplit(0.05, 0.1, is_undirected=True,
                           split_labels=True)(Data(x=x, edge_index=ei))


def test_pyg_gae_loop_runs_unchanged():
    train, val, test = sbm_split()
    torch.manual_seed(0)
    model = MGVAE(4, 32, 16, [6, 1], encoder_scope='graph')
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    for _ in range(60):
        model.train()
        opt.zero_grad()
        z = model.encode(train.x, train.edge_index)
        loss = model.recon_loss(z, train.pos_edge_label_index)
        loss = loss + (1 / train.num_nodes) * model.kl_loss()
        loss.backward()
        opt.step()
    model.eval()
    with torch.no_grad():
        z = model.encode(train.x, train.edge_index)
    auc, ap = model.test(z, test.pos_edge_label_index,
                         test.neg_edge_label_index)
    assert 0.7 < auc <= 1.0 and 0.6 < ap <= 1.0
    # recon_loss is PyG's: mean BCE of positives plus of negatives.
    pos, neg = test.pos_edge_label_index, test.neg_edge_label_index
    p, q = model.decode(z, pos), model.decode(z, neg)
    ref = -torch.log(p).mean() - torch.log(1 - q).mean()
    assert torch.allclose(model.recon_loss(z, pos, neg), ref, atol=1e-5)
    assert z.shape == (90, 16)


def test_kl_loss_means_what_it_means_in_pyg():
    data = random_batch()
    model = make().train()
    mu, logstd = torch.randn(5, 3).double(), torch.randn(5, 3).double()
    ref = -0.5 * torch.mean(torch.sum(
        1 + 2 * logstd - mu**2 - logstd.exp()**2, dim=1))
    assert torch.allclose(model.kl_loss(mu, logstd), ref)
    with pytest.raises(RuntimeError, match='encode'):
        make().kl_loss()
    model.encode(data)
    out = model.last_output
    # Without arguments: the multiresolution KL per input node.
    assert torch.allclose(
        model.kl_loss(),
        model.multires_kl_loss(out) * data.num_graphs / data.num_nodes)
    with pytest.raises(RuntimeError, match="global_decoder='inner'"):
        make(global_decoder='second_order').decode(
            torch.randn(3, 8), torch.tensor([[0], [1]]))


def test_add_structural_features_keeps_every_attribute():
    data = KarateClub()[0]
    out = AddStructuralFeatures(walk_length=4)(data)
    for key in ('y', 'train_mask', 'edge_index'):
        assert torch.equal(out[key], data[key])
    assert out.x.shape == (34, 34 + 5)  # appended to the existing features
    assert torch.equal(out.x[:, :34], data.x)
    pe = AddRandomWalkPE(4)(data.clone()).random_walk_pe
    assert torch.allclose(out.x[:, 35:], pe)
    deg = torch.bincount(data.edge_index[0], minlength=34).float()
    assert torch.allclose(out.x[:, 34], deg / 10)
    # A path 0 - 1 - 2 with no features: degree / 10 and return
    # probabilities by hand.
    path = Data(edge_index=torch.tensor([[0, 1, 1, 2], [1, 0, 2, 1]]),
                num_nodes=3)
    x = AddStructuralFeatures(walk_length=2)(path).x
    assert torch.allclose(x, torch.tensor([[0.1, 0.0, 0.5], [0.2, 0.0, 1.0],
                                           [0.1, 0.0, 0.5]]))
    assert str(AddStructuralFeatures()) == \
        'AddStructuralFeatures(walk_length=8)'


def test_bad_graphs_give_clear_errors():
    data = random_batch(sizes=(4, 5))
    model = make().eval()
    shuffled = torch.tensor([0, 1, 0, 1, 0, 1, 1, 1, 1])
    with pytest.raises(ValueError, match="'batch' must be sorted"):
        model(data.x, torch.empty(2, 0, dtype=torch.long), batch=shuffled)
    cross = torch.cat([data.edge_index, torch.tensor([[0, 5], [5, 0]])], 1)
    with pytest.raises(ValueError, match='between two graphs'):
        model(data.x, cross, batch=data.batch)
    with pytest.warns(UserWarning, match='looks directed'):
        model(data.x, torch.tensor([[0], [1]]), batch=data.batch)
    with pytest.raises(ValueError, match='magnitude'):
        model(data.x * 1e20, data.edge_index, batch=data.batch)
    with pytest.raises(ValueError, match='negative'):
        model(data.x, data.edge_index,
              -torch.ones(data.num_edges).double(), data.batch)
    attr = torch.full((data.num_edges, 2), float('nan'))
    with pytest.raises(ValueError, match="'edge_attr' contains NaN"):
        MGVAE(4, 16, 8, [3, 1], order=2, edge_channels=2).double()(
            data.x, data.edge_index, batch=data.batch, edge_attr=attr)
    with pytest.raises(ValueError, match='tau'):
        make(cluster_kwargs=dict(tau=0.0))
    with pytest.raises(ValueError, match="Unknown 'cluster_kwargs'"):
        make(cluster_kwargs=dict(temperature=1.0))
    with pytest.raises(ValueError, match='hidden_channels'):
        MGVAE(4, 0, 8, [3, 1])


def test_local_encoder_accepts_any_conv():
    enc = LocalEncoder(4, 8, conv=GCNConv)
    assert str(enc) == 'LocalEncoder(4, 8, num_layers=2, conv=GCNConv)'
    with pytest.raises(TypeError, match="'conv' must be"):
        LocalEncoder(4, 8, conv=3)


def test_repr():
    assert str(MGN(4, 16, 8, [3, 1], conv=GCNConv)) == (
        'MGN(4, 16, 8, num_clusters=[3, 1], order=1, conv=GCNConv)')


@pytest.mark.slow
def test_compiled_training_step_with_dynamic_shapes():
    # About 3 minutes of compilation on 2 CPU cores.
    torch.manual_seed(0)
    model = MGVAE(4, 16, 8, [3, 1]).train()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)

    def step(x, edge_index, batch):
        out = model(x, edge_index, batch=batch)
        return sum(model.loss_terms(out).values())

    compiled = torch.compile(step, dynamic=True)
    for sizes in [(7, 9), (5, 11, 6)]:
        data = random_batch(sizes=sizes, dtype=torch.float32)
        loss = compiled(data.x, data.edge_index, data.batch)
        opt.zero_grad()
        loss.backward()
        opt.step()
        assert torch.isfinite(loss)


def test_inputs_that_do_not_fit_the_model_give_clear_errors():
    # Found by benchmark/probes.py: these ended in torch errors from deep
    # inside (or were accepted silently).
    data = random_batch(sizes=(4, 5))
    model = make().eval()
    with pytest.raises(ValueError, match='in_channels=4'):
        model(data.x[:, :3], data.edge_index, batch=data.batch)
    with pytest.raises(ValueError, match="'x' is torch.float32"):
        model(data.x.float(), data.edge_index, batch=data.batch)
    with pytest.raises(ValueError, match="'edge_index' must hold integer"):
        model(data.x, data.edge_index.double(), batch=data.batch)
    with pytest.raises(ValueError, match="'batch' holds negative"):
        model(data.x, data.edge_index, batch=data.batch - 1)
    with pytest.raises(ValueError, match="'num_graphs' is 1"):
        model(data.x, data.edge_index, batch=data.batch, num_graphs=1)
    adj = to_torch_coo_tensor(data.edge_index, size=data.num_nodes + 1)
    with pytest.raises(ValueError, match='sparse adjacency has size'):
        model(data.x, adj, batch=data.batch)
    attr = torch.ones(data.num_edges, 2, dtype=torch.float64)
    so = MGVAE(4, 16, 8, [3, 1], order=2, edge_channels=3).double()
    with pytest.raises(ValueError, match='edge_channels=3'):
        so(data.x, data.edge_index, batch=data.batch, edge_attr=attr)
    with pytest.raises(ValueError, match="'edge_attr' holds values"):
        so(data.x, data.edge_index, batch=data.batch,
           edge_attr=torch.full((data.num_edges, 3), 1e30))
    i = torch.arange(4)  # a directed cycle: in- and out-degrees agree
    with pytest.warns(UserWarning, match='looks directed'):
        model(data.x[:4], torch.stack([i, (i + 1) % 4]))
    with pytest.raises(ValueError, match="'num_graphs'"):
        make().eval().sample(-1, num_nodes=4)


@pytest.mark.parametrize('kwargs, match', [
    (dict(num_clusters=4), 'num_clusters'),
    (dict(num_clusters=None), 'num_clusters'),
    (dict(num_clusters=[2.5]), 'num_clusters'),
    (dict(hidden_channels='64'), 'hidden_channels'),
    (dict(in_channels=2.5), 'in_channels'),
    (dict(max_nodes=0, global_decoder='mlp'), 'max_nodes'),
    (dict(cluster_kwargs=dict(hidden_channels=0)), 'hidden_channels'),
    (dict(recon_kwargs=dict(max_dense_pairs=-1)), 'max_dense_pairs'),
    (dict(recon_kwargs=dict(num_neg_samples=-5)), 'num_neg_samples'),
    (dict(recon_kwargs=dict(balanced='yes')), 'balanced'),
    (dict(prior='learnable', max_nodes=6, prior_kwargs=dict(eps=0.0)),
     'eps'),
])
def test_nonsensical_hyper_parameters_are_rejected(kwargs, match):
    args = dict(in_channels=4, hidden_channels=8, latent_channels=4,
                num_clusters=[2, 1])
    args.update(kwargs)
    with pytest.raises((ValueError, TypeError), match=match):
        MGVAE(**args)


def test_fixed_hierarchy_needs_clusters_per_level():
    for sizes in ([], [4, 0]):
        with pytest.raises(ValueError, match="'num_clusters'"):
            FixedHierarchy('spectral', sizes)
    with pytest.raises(ValueError, match="'n_init'"):  # before any graph
        FixedHierarchy('kmeans', [4, 1], n_init=0)
