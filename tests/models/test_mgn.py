import pytest
import torch
from torch_geometric.data import Batch, Data

from tests.conftest import permute_within_graphs, random_batch
from torch_geometric_mgvae import MGN, MGVAE


def make(cls, **kwargs):
    torch.manual_seed(0)
    kw = dict(num_layers=2, feature_loss='mse')
    kw.update(kwargs)
    return cls(4, 16, 8, [4, 2, 1], **kw).double()


def permuted_noise(noise, perm):
    out = [dict(n) for n in noise]
    for key, val in out[0].items():
        out[0][key] = val[perm]
    return out


@pytest.mark.parametrize('cls', [MGN, MGVAE])
@pytest.mark.parametrize('options', [
    dict(),
    dict(random_features=3),
    dict(encoder_scope='graph', hierarchical_decoding=True),
    dict(conv='GCNConv', latent_head='conv', norm='instance_norm'),
    dict(feature_mask=0.3),
])
def test_whole_model_is_permutation_equivariant(cls, options):
    random_features = options.get('random_features', 0)
    data = random_batch(sizes=(9, 13, 6, 3))
    model = make(cls, **options).train()
    gen = torch.Generator().manual_seed(0)
    out = model(data.x, data.edge_index, batch=data.batch, generator=gen)
    terms = model.loss_terms(out, torch.Generator().manual_seed(1))
    perm, inv = permute_within_graphs(data.batch, seed=5)
    out2 = model(data.x[perm], inv[data.edge_index], batch=data.batch,
                 noise=permuted_noise(out.noise, perm))
    terms2 = model.loss_terms(out2, torch.Generator().manual_seed(1))
    # Finest level: equivariant.
    assert torch.allclose(out2[0].z, out[0].z[perm], atol=1e-5)
    assert torch.equal(out2[0].select.cluster_index,
                       out[0].select.cluster_index[perm])
    # Coarser levels: invariant (cluster ids come from the logit channels).
    for a, b in zip(out.levels[1:], out2.levels[1:]):
        assert torch.allclose(a.x, b.x, atol=1e-5)
        assert torch.allclose(a.z, b.z, atol=1e-5)
        assert torch.equal(a.edge_index, b.edge_index)
        assert torch.allclose(a.edge_weight, b.edge_weight, atol=1e-5)
    for key in terms:
        assert torch.allclose(terms[key], terms2[key], atol=1e-5), key
    assert len(out) == 4 and [lvl.level for lvl in out.levels] == [4, 3, 2, 1]
    assert ('features' in out.noise[0]) == (random_features > 0)
    assert torch.equal(out[0].x, data.x)  # the level keeps the real input
    assert out.top.num_nodes == 4  # one node per graph


def test_eval_mode_is_deterministic_and_equivariant():
    data = random_batch()
    model = make(MGVAE).eval()
    out = model(data.x, data.edge_index, batch=data.batch)
    perm, inv = permute_within_graphs(data.batch, seed=2)
    out2 = model(data.x[perm], inv[data.edge_index], batch=data.batch)
    assert torch.allclose(out2[0].z, out[0].z[perm], atol=1e-8)
    assert torch.allclose(out2.top.z, out.top.z, atol=1e-8)
    assert torch.equal(out2[0].z, model(data.x[perm], inv[data.edge_index],
                                        batch=data.batch)[0].z)


def test_forward_is_repeatable_with_generator():
    data = random_batch()
    model = make(MGVAE).train()
    a = model(data.x, data.edge_index, batch=data.batch,
              generator=torch.Generator().manual_seed(3))
    b = model(data.x, data.edge_index, batch=data.batch,
              generator=torch.Generator().manual_seed(3))
    for la, lb in zip(a.levels, b.levels):
        assert torch.equal(la.z, lb.z)


def test_gradients_reach_the_clustering_and_a_step_lowers_the_loss():
    data = random_batch(sizes=(12, 15, 10), p=0.3)
    model = make(MGVAE).train()
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    noise = model(data.x, data.edge_index, batch=data.batch,
                  generator=torch.Generator().manual_seed(0)).noise

    def loss_fn():
        out = model(data.x, data.edge_index, batch=data.batch, noise=noise)
        return sum(model.loss_terms(out).values())

    # Through the reconstruction alone (straight-through weights in the
    # pooling and the coarse edge weights):
    out = model(data.x, data.edge_index, batch=data.batch, noise=noise)
    model.multires_recon_loss(out).backward()
    for name in [0, 1]:
        grads = [p.grad for p in model.pools[name].select.parameters()]
        assert all(g is not None and g.abs().sum() > 0 for g in grads), name
    opt.zero_grad()
    select = [p for pool in model.pools for p in pool.select.parameters()]
    before = [p.detach().clone() for p in select]
    loss0 = loss_fn()
    loss0.backward()
    opt.step()
    after = select
    assert all(not torch.equal(a, b) for a, b in zip(before, after))
    assert loss_fn().item() < loss0.item()


def test_kl_uses_the_variance():
    model = make(MGVAE)
    data = random_batch(sizes=(3, ))
    out = model(data.x, data.edge_index)
    for lvl in out.levels:
        lvl.mu = torch.zeros_like(lvl.mu)
        lvl.logstd = torch.full_like(lvl.logstd, 0.5)
    # KL(N(0, e^1) || N(0, 1)) = 0.5 (e - 1 - 1) per entry
    per_entry = 0.5 * (torch.e - 2)
    n_entries = sum(lvl.mu.numel() for lvl in out.levels)
    assert model.multires_kl_loss(out).item() == pytest.approx(
        per_entry * n_entries)


def test_bad_inputs():
    model = make(MGVAE).train()
    one = Data(x=torch.randn(1, 4, dtype=torch.double),
               edge_index=torch.empty(2, 0, dtype=torch.long))
    no_edges = Data(x=torch.randn(5, 4, dtype=torch.double),
                    edge_index=torch.empty(2, 0, dtype=torch.long))
    tiny = Data(x=torch.randn(2, 4, dtype=torch.double),
                edge_index=torch.tensor([[0, 1], [1, 0]]))
    empty = Data(x=torch.empty(0, 4, dtype=torch.double),
                 edge_index=torch.empty(2, 0, dtype=torch.long))
    for graphs in [[one], [no_edges], [tiny], [tiny, empty, one],
                   [one, tiny, empty]]:
        b = Batch.from_data_list(graphs)
        out = model(b.x, b.edge_index, batch=b.batch, num_graphs=b.num_graphs)
        terms = model.loss_terms(out)
        for key, val in terms.items():
            assert torch.isfinite(val), key
        sum(terms.values()).backward()
        assert out.top.num_nodes == sum(g.num_nodes > 0 for g in graphs)
    # A whole empty batch is defined too.
    out = model(empty.x, empty.edge_index, num_graphs=1)
    assert all(torch.isfinite(v) for v in model.loss_terms(out).values())
    x = tiny.x.clone()
    x[0, 0] = float('nan')
    with pytest.raises(ValueError, match='NaN'):
        model(x, tiny.edge_index)
    with pytest.raises(ValueError, match='do not exist'):
        model(tiny.x, torch.tensor([[0], [7]]))
    with pytest.raises(ValueError):
        MGN(4, 8, 4, [])
    with pytest.raises(ValueError):
        MGN(4, 8, 4, [2], feature_loss='l1')


def test_sample_and_state():
    model = make(MGVAE, feature_loss='ce').eval()
    with pytest.raises(RuntimeError, match='fit_num_nodes'):
        model.sample(2)
    model.fit_num_nodes(torch.tensor([5, 5, 7]))
    graphs = model.sample(10, generator=torch.Generator().manual_seed(0),
                          return_probs=True)
    assert len(graphs) == 10
    for g in graphs:
        assert g.num_nodes in (5, 7)
        assert g.x.shape == (g.num_nodes, 4)
        assert torch.equal(g.x.sum(-1), torch.ones(g.num_nodes).double())
        assert g.adj_prob.shape == (g.num_nodes, g.num_nodes)
        ei = g.edge_index
        assert bool((ei[0] != ei[1]).all())
        # symmetric
        assert set(map(tuple, ei.t().tolist())) == set(
            map(tuple, ei.flip(0).t().tolist()))
    state = model.state_dict()
    other = make(MGVAE, feature_loss='ce')
    other.load_state_dict(state)
    assert torch.equal(other.num_nodes_count, model.num_nodes_count)
    assert model.sample(3, num_nodes=4)[0].num_nodes == 4
    with pytest.raises(RuntimeError, match='global'):
        make(MGVAE, global_decoder=None).sample(1, num_nodes=3)
    assert str(model) == ('MGVAE(4, 16, 8, num_clusters=[4, 2, 1], order=1, '
                          'conv=MGNConv)')


def test_hierarchical_sampling_and_encoder_scope():
    model = make(MGVAE, hierarchical_decoding=True).eval()
    graphs = model.sample(5, num_nodes=torch.tensor([1, 2, 6, 9, 3]),
                          generator=torch.Generator().manual_seed(0))
    assert [g.num_nodes for g in graphs] == [1, 2, 6, 9, 3]
    parts = model._sample_ancestors(torch.tensor([4, 2]), 4, None)
    assert len(parts) == 3 and parts[0].shape == (2, 4, 8)
    # The top level has one node per graph: every node shares its latent.
    assert torch.equal(parts[-1][0], parts[-1][0][:1].expand(4, -1))
    # Level 3 has 4 clusters of a 4-node graph: one node each.
    assert len({tuple(r.tolist()) for r in parts[0][0]}) == 4
    with pytest.raises(ValueError, match='encoder_scope'):
        MGN(4, 8, 4, [2], encoder_scope='bad')


def test_sampled_decoders_for_large_clusters():
    data = random_batch(sizes=(40, 30), p=0.1)
    model = make(MGVAE, recon_kwargs=dict(max_dense_pairs=10)).train()
    out = model(data.x, data.edge_index, batch=data.batch)
    terms = model.loss_terms(out, torch.Generator().manual_seed(0))
    assert all(torch.isfinite(v) for v in terms.values())
    sum(terms.values()).backward()


def test_gcn_heads_and_norm_give_the_vgae_encoder():
    from torch_geometric.nn import GCNConv, InstanceNorm
    data = random_batch(sizes=(9, 13))
    model = MGVAE(4, 16, 8, [3], num_layers=1, conv='GCNConv',
                  latent_head='conv', norm='instance_norm',
                  encoder_scope='graph').double().eval()
    assert isinstance(model.mu_heads[0], GCNConv)
    assert isinstance(model.logstd_heads[0], GCNConv)
    enc = model.encoders[0]
    assert isinstance(enc.convs[0], GCNConv)
    assert isinstance(enc.norms[0], InstanceNorm)
    assert 'norm=InstanceNorm' in repr(enc) and 'GCNConv' in repr(model)
    out = model(data.x, data.edge_index, batch=data.batch)
    # The finest latent is GCN(relu(instance_norm(GCN(x)))), per graph:
    h = enc.convs[0](data.x, data.edge_index)
    h = torch.relu(enc.norms[0](h, data.batch))
    mu = model.mu_heads[0](h, data.edge_index)
    assert torch.allclose(out[0].z, mu, atol=1e-5)
    # Instance norm statistics are per graph: batched == one by one.
    first = data.batch == 0
    sub = data.subgraph(first)
    out1 = model(sub.x, sub.edge_index)
    assert torch.allclose(out1[0].z, out[0].z[first], atol=1e-5)
    with pytest.raises(ValueError, match='latent_head'):
        MGVAE(4, 16, 8, [3], latent_head='gcn')
    with pytest.raises(ValueError, match='order=1'):
        MGVAE(4, 16, 8, [3], order=2, latent_head='conv')
    with pytest.raises(ValueError, match='order=1'):
        MGVAE(4, 16, 8, [3], order=2, norm='instance_norm')
    with pytest.raises(ValueError, match='no convolution'):
        MGVAE(4, 16, 8, [3], conv='NoSuchConv')


def test_comembership_adds_shared_clusters_to_the_pair_logit():
    import torch.nn.functional as F
    data = random_batch(sizes=(12, 10))
    torch.manual_seed(0)
    model = MGVAE(4, 16, 8, [4, 2], comembership=True).double().eval()
    out = model(data.x, data.edge_index, batch=data.batch)
    d = out[0].z
    z = model.decoding_latents(out, 0)
    assert z.shape == (22, 8 + 4 + 2)
    beta = F.softplus(model.comembership_weight)
    c0 = out[0].select.cluster_index
    c1 = out[1].select.cluster_index[c0]
    i, j = data.edge_index
    expected = ((d[i] * d[j]).sum(-1) + beta[0] * (c0[i] == c0[j]) +
                beta[1] * (c1[i] == c1[j]))
    assert torch.allclose((z[i] * z[j]).sum(-1), expected, atol=1e-5)
    # Training: the co-membership loss trains the clustering.
    model.train()
    out = model(data.x, data.edge_index, batch=data.batch,
                generator=torch.Generator().manual_seed(0))
    terms = model.loss_terms(out, torch.Generator().manual_seed(1))
    assert 'comembership' in terms
    assert torch.isfinite(terms['comembership'])
    terms['comembership'].backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0
               for p in model.pools[0].parameters())
    # The loss scores the one-hot rows sparsely: the same loss and gradients
    # as the inner products of the whole embedding, in the sampled mode too.
    import torch_geometric_mgvae.models.mgn as mgn_module
    for dense_pairs in (2**18, 1):
        model.recon_kwargs['max_dense_pairs'] = dense_pairs
        results = []
        for sparse in (True, False):
            out = model(data.x, data.edge_index, batch=data.batch,
                        generator=torch.Generator().manual_seed(0))
            if not sparse:
                keep = mgn_module.BlockInnerProductDecoder
                mgn_module.BlockInnerProductDecoder = lambda d, *_: d
            try:
                loss = model.global_recon_loss(
                    out, torch.Generator().manual_seed(2))
            finally:
                if not sparse:
                    mgn_module.BlockInnerProductDecoder = keep
            params = [p for p in model.parameters() if p.requires_grad]
            grads = torch.autograd.grad(loss, params, allow_unused=True)
            results.append((loss, grads))
        (l1, g1), (l2, g2) = results
        assert torch.allclose(l1, l2, atol=1e-12)
        for a, b in zip(g1, g2):
            assert (a is None) == (b is None)
            if a is not None:
                assert torch.allclose(a, b, atol=1e-10)
        assert any(g is not None and g.abs().sum() > 0 for g in g1)
    # Off by default: the old loss terms.
    plain = MGVAE(4, 16, 8, [4]).double()
    assert 'comembership' not in plain.loss_terms(
        plain(data.x, data.edge_index, batch=data.batch))


def test_cluster_x_feeds_the_finest_clustering_only():
    data = random_batch(sizes=(12, 10))
    torch.manual_seed(0)
    model = MGVAE(4, 16, 8, [4, 2], cluster_kwargs=dict(
        extra_channels=3)).double().eval()
    base = MGVAE(4, 16, 8, [4, 2])
    assert model.pools[0].select.in_channels == \
        base.pools[0].select.in_channels + 3
    assert model.pools[1].select.in_channels == \
        base.pools[1].select.in_channels
    cx = torch.randn(22, 3, dtype=torch.double)
    out = model(data.x, data.edge_index, batch=data.batch, cluster_x=cx)
    # The clustering reads cluster_x: other features, other logits.
    other = model(data.x, data.edge_index, batch=data.batch,
                  cluster_x=cx + 1.0)
    assert not torch.allclose(out[0].select.logits, other[0].select.logits)
    # From a Data object too:
    data.cluster_x = cx
    from_data = model(data)
    assert torch.allclose(from_data[0].select.logits, out[0].select.logits)
    for bad in (None, torch.randn(22, 2, dtype=torch.double)):
        with pytest.raises(ValueError, match='cluster_x'):
            model(data.x, data.edge_index, batch=data.batch, cluster_x=bad)
    plain = MGVAE(4, 16, 8, [4, 2]).double()
    with pytest.raises(ValueError, match='cluster_x'):
        plain(data.x, data.edge_index, batch=data.batch, cluster_x=cx)
    with pytest.raises(ValueError, match='extra_channels'):
        MGVAE(4, 16, 8, [4], cluster_kwargs=dict(extra_channels=-1))


def test_cluster_target_loss_hand_value():
    import torch.nn.functional as F
    data = random_batch(sizes=(12, 10))
    torch.manual_seed(0)
    model = MGVAE(4, 16, 8, [4, 2]).double().eval()
    out = model(data.x, data.edge_index, batch=data.batch)
    t0 = torch.randint(4, (22, ))
    t1 = torch.randint(2, (out[1].num_nodes, ))
    loss = model.cluster_target_loss(out, [t0, t1])
    expected = sum(F.nll_loss(out[i].select.logits.log_softmax(-1), t)
                   for i, t in enumerate((t0, t1)))
    assert torch.allclose(loss, expected)
    # A target of the wrong size stops the sum there:
    assert torch.allclose(model.cluster_target_loss(out, [t0, t1[:1]]),
                          F.nll_loss(out[0].select.logits.log_softmax(-1),
                                     t0))
    # Training on the targets makes the clustering follow them:
    model.train()
    opt = torch.optim.Adam(model.parameters(), lr=0.05)
    for _ in range(60):
        opt.zero_grad()
        out = model(data.x, data.edge_index, batch=data.batch)
        model.cluster_target_loss(out, [t0]).backward()
        opt.step()
    model.eval()
    out = model(data.x, data.edge_index, batch=data.batch)
    assert (out[0].select.logits.argmax(-1) == t0).float().mean() > 0.8


def bond_graphs():
    r"""A path 0-1-2 (edge classes 0, 1) and a single edge (class 0), both
    directions, one-hot edge features of width 2."""
    e = torch.tensor([[1., 0.], [0., 1.]])
    a = Data(x=torch.eye(3, 4).double(),
             edge_index=torch.tensor([[0, 1, 1, 2], [1, 0, 2, 1]]),
             edge_attr=e[[0, 0, 1, 1]].double())
    b = Data(x=torch.eye(2, 4).double(),
             edge_index=torch.tensor([[0, 1], [1, 0]]),
             edge_attr=e[[0, 0]].double())
    return Batch.from_data_list([a, b])


def edge_model(loss='ce', cls=MGVAE):
    from torch_geometric_mgvae.models.property import gine_conv
    torch.manual_seed(0)
    return cls(4, 16, 8, [2], conv=gine_conv(2), edge_channels=2,
               edge_feature_loss=loss).double()


def test_edge_feature_loss_exact_values():
    data = bond_graphs()
    model = edge_model('mse').eval()
    last = model.edge_feature_decoder[-1]
    with torch.no_grad():  # a constant prediction (0.5, 0.25) per edge
        last.weight.zero_()
        last.bias.copy_(torch.tensor([0.5, 0.25]))
    terms = model.loss_terms(model(data))
    # Class-0 edges: 0.5^2 + 0.25^2 = 0.3125; class 1: 0.5^2 + 0.75^2 =
    # 0.8125. Graphs: 0.3125 + 0.8125 and 0.3125; mean over the 2 graphs.
    assert terms['edge_feature_recon'].item() == pytest.approx(0.71875)
    assert 'edge_feature_recon' not in make(MGVAE).loss_terms(
        make(MGVAE)(random_batch().x, random_batch().edge_index,
                    batch=random_batch().batch))


def test_edge_feature_loss_is_symmetric_and_invariant():
    data = bond_graphs()
    model = edge_model().train()
    out = model(data, generator=torch.Generator().manual_seed(0))
    z, (row, col) = out[0].z, data.edge_index
    dec = model.edge_feature_decoder
    fwd = dec(torch.cat([z[row] + z[col], z[row] * z[col]], -1))
    bwd = dec(torch.cat([z[col] + z[row], z[col] * z[row]], -1))
    assert torch.allclose(fwd, bwd, atol=1e-12)
    once = row < col  # every undirected edge once
    want = torch.nn.functional.cross_entropy(
        fwd[once], data.edge_attr[once].argmax(-1), reduction='sum') / 2
    loss = model.edge_feature_recon_loss(out)
    assert torch.allclose(loss, want)
    # Renumbering the nodes (and replaying the noise) leaves it unchanged.
    perm, inv = permute_within_graphs(data.batch, seed=1)
    out2 = model(data.x[perm], inv[data.edge_index], batch=data.batch,
                 edge_attr=data.edge_attr, noise=permuted_noise(out.noise,
                                                                perm))
    assert torch.allclose(model.edge_feature_recon_loss(out2), loss)


def test_edge_feature_loss_trains_and_bad_inputs():
    data = bond_graphs()
    model = edge_model(cls=MGN)  # deterministic latents
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    first = None
    for _ in range(30):
        opt.zero_grad()
        loss = model.edge_feature_recon_loss(model(data))
        first = float(loss.detach()) if first is None else first
        loss.backward()
        opt.step()
    assert float(loss) < 0.5 * first
    # No edges: a defined zero that still has a gradient path.
    empty = Data(x=torch.eye(3, 4).double(),
                 edge_index=torch.empty(2, 0, dtype=torch.long),
                 edge_attr=torch.empty(0, 2).double())
    assert model.edge_feature_recon_loss(model(empty)).item() == 0
    with pytest.raises(ValueError, match="edge_attr' has 3 columns"):
        model(data.x, data.edge_index, batch=data.batch,
              edge_attr=torch.ones(data.num_edges, 3).double())
    for kwargs, match in ((dict(), "needs 'edge_channels'"),
                          (dict(edge_channels=2), 'reads the edge features'),
                          (dict(edge_channels=2, edge_feature_loss='l1'),
                           "'edge_feature_loss' must be")):
        with pytest.raises(ValueError, match=match):
            MGN(4, 8, 4, [2], **{'edge_feature_loss': 'ce', **kwargs})


def test_feature_mask_zeroes_nodes_in_training_only():
    data = random_batch(sizes=(9, 13, 6))
    x, ei, batch = data.x, data.edge_index, data.batch
    model = make(MGN, feature_mask=0.5, encoder_scope='graph').train()
    out = model(x, ei, batch=batch,
                generator=torch.Generator().manual_seed(0))
    keep = out.noise[0]['mask']
    assert keep.shape == (28, 1) and set(keep.view(-1).tolist()) == {0., 1.}
    assert torch.equal(out[0].x, x)  # the target stays uncorrupted
    # The encoders saw x * keep: the finest latents equal those of the
    # corrupted input without masking (evaluation mode never masks).
    ref = model.eval()(x * keep, ei, batch=batch)
    assert torch.allclose(out[0].z, ref[0].z, atol=1e-12)
    plain = model(x, ei, batch=batch)
    assert 'mask' not in plain.noise[0]
    assert not torch.allclose(plain[0].z, ref[0].z)
    # The replayed mask gives the same pass.
    again = model.train()(x, ei, batch=batch, noise=out.noise)
    assert torch.allclose(again[0].z, out[0].z, atol=1e-12)
    for bad in (-0.1, 1.0, float('nan')):
        with pytest.raises(ValueError, match='feature_mask'):
            MGN(4, 8, 4, [2], feature_mask=bad)
    with pytest.raises(TypeError, match='feature_mask'):
        MGN(4, 8, 4, [2], feature_mask='0.2')
