import pytest
import torch

from tests.conftest import permute_within_graphs, random_batch
from tests.models.test_mgn import permuted_noise
from torch_geometric_mgvae import MGN, MGVAE
from torch_geometric_mgvae.nn import kl_mvn_standard


def molecule_like(sizes=(7, 9, 5), seed=0):
    data = random_batch(sizes=sizes, p=0.4, seed=seed)
    g = torch.Generator().manual_seed(seed)
    half = data.edge_index[:, data.edge_index[0] < data.edge_index[1]]
    bond = torch.nn.functional.one_hot(
        torch.randint(3, (half.size(1), ), generator=g), 3).double()
    data.edge_index = torch.cat([half, half.flip(0)], 1)
    data.edge_attr = torch.cat([bond, bond])
    return data


def make(cls, **kwargs):
    torch.manual_seed(0)
    kw = dict(order=2, edge_channels=3, num_layers=2, max_nodes=12)
    kw.update(kwargs)
    return cls(4, 8, 4, [2, 1], **kw).double()


CONFIGS = [
    (MGN, {}),
    (MGVAE, dict(global_decoder='second_order')),
    (MGVAE, dict(covariance='mrf')),
    (MGVAE, dict(covariance='mrf', prior='learnable',
                 global_decoder='second_order')),
    (MGVAE, dict(covariance='mrf', prior='learnable',
                prior_kwargs=dict(matching='free'))),
    (MGVAE, dict(prior='learnable', global_decoder='inner')),
]


@pytest.mark.parametrize('cls,kwargs', CONFIGS)
def test_second_order_model_is_equivariant(cls, kwargs):
    data = molecule_like()
    model = make(cls, **kwargs).train()
    out = model(data.x, data.edge_index, batch=data.batch,
                edge_attr=data.edge_attr,
                generator=torch.Generator().manual_seed(0))
    terms = model.loss_terms(out)
    perm, inv = permute_within_graphs(data.batch, seed=4)
    out2 = model(data.x[perm], inv[data.edge_index], batch=data.batch,
                 edge_attr=data.edge_attr,
                 noise=permuted_noise(out.noise, perm))
    terms2 = model.loss_terms(out2)
    assert torch.allclose(out2[0].z, out[0].z[perm], atol=1e-5)
    for a, b in zip(out.levels[1:], out2.levels[1:]):
        assert torch.allclose(a.z, b.z, atol=1e-5)
    for key in terms:
        assert torch.isfinite(terms[key]), key
        assert torch.allclose(terms[key], terms2[key], atol=1e-5), key
    sum(terms.values()).backward()


@pytest.mark.parametrize('cls,kwargs,reads', [
    (MGN, {}, False), (MGVAE, {}, False),
    (MGVAE, dict(covariance='mrf'), True)])
def test_encode_level_assembles_second_order_output_when_read(
        cls, kwargs, reads):
    data = molecule_like()
    model = make(cls, **kwargs)
    assert model.reads_second_order == reads
    h, H, blocks = model.encode_level(0, data.x, data.edge_index, None,
                                      data.batch, 3, data.edge_attr)
    assert h.shape[0] == data.num_nodes
    if reads:
        assert H.shape[:3] == blocks.mask.shape + blocks.mask.shape[-1:]
    else:
        assert H is None


def test_block_diagonal_posterior_matches_cluster_blocks():
    data = molecule_like(sizes=(8, 6))
    model = make(MGVAE, covariance='mrf').train()
    out = model(data.x, data.edge_index, batch=data.batch,
                edge_attr=data.edge_attr)
    lvl = out[0]
    mu, L, mask = model._graph_posterior(lvl)
    per_graph = kl_mvn_standard(mu, L, mask).sum()
    per_block = kl_mvn_standard(lvl.blocks.to_dense(lvl.mu), lvl.L,
                                lvl.blocks.mask).sum()
    # N(0, I) factorises over the clusters, so the KL adds up exactly:
    assert torch.allclose(per_graph, per_block, atol=1e-8)
    assert torch.allclose(model.multires_kl_loss(out, per_level=True)[0],
                          per_block / 2, atol=1e-8)


@pytest.mark.parametrize('decoder', ['second_order', 'mlp', 'inner'])
def test_second_order_sampling(decoder):
    model = make(MGVAE, covariance='mrf', prior='learnable',
                 global_decoder=decoder).eval()
    model.fit_num_nodes(torch.tensor([5, 7, 9]))
    graphs = model.sample(6, generator=torch.Generator().manual_seed(0),
                          return_probs=True)
    assert [g.num_nodes in (5, 7, 9) for g in graphs] == [True] * 6
    for g in graphs:
        p = g.adj_prob
        assert torch.allclose(p, p.t())
    with pytest.raises(ValueError):
        model.sample(1, num_nodes=13)  # beyond max_nodes


def test_second_order_bad_inputs_and_config():
    model = make(MGVAE, covariance='mrf', prior='learnable')
    data = molecule_like(sizes=(1, 2))
    out = model(data.x, data.edge_index, batch=data.batch,
                edge_attr=data.edge_attr)
    assert all(torch.isfinite(v) for v in model.loss_terms(out).values())
    with pytest.raises(ValueError, match='edge_attr'):
        model(data.x, data.edge_index, batch=data.batch)
    with pytest.raises(ValueError, match='order=2'):
        MGVAE(4, 8, 4, [2, 1], covariance='mrf')
    with pytest.raises(ValueError, match='max_nodes'):
        MGVAE(4, 8, 4, [2, 1], prior='learnable')
    with pytest.raises(ValueError, match='max_nodes'):
        MGVAE(4, 8, 4, [2, 1], global_decoder='mlp')
    # Decoders of whole blocks ignore the dense threshold (no sampled mode):
    big = make(MGVAE, recon_kwargs=dict(max_dense_pairs=4))
    out = big(data.x, data.edge_index, batch=data.batch,
              edge_attr=data.edge_attr)
    assert torch.isfinite(big.multires_recon_loss(out))
    with pytest.raises(RuntimeError, match='dense blocks'):
        big.local_decoders[0](out[0].z, out[0].z)


# ------------------------------------------------ KL at initialisation
def _karate():
    nx = pytest.importorskip('networkx')
    from torch_geometric.utils import degree, from_networkx
    data = from_networkx(nx.karate_club_graph())
    deg = degree(data.edge_index[0], data.num_nodes).long().clamp(max=9)
    x = torch.nn.functional.one_hot(deg, 10).float()
    return x, data.edge_index


@pytest.mark.parametrize('covariance', ['diag', 'mrf'])
def test_initial_kl_is_of_the_order_of_the_latent_size(covariance):
    # Issue 17: an order=2 MGVAE on the karate club started with a KL near
    # 1e9 (log standard deviations at their clamp); the normalised layers
    # keep it below nodes x latent channels, the earlier ones did not.
    from torch_geometric_mgvae.models.mgvae import MAX_LOGSTD
    x, edge_index = _karate()
    batch = torch.zeros(34, dtype=torch.long)
    kls = {}
    for normalize in (True, False):
        torch.manual_seed(0)
        model = MGVAE(10, 32, 16, [4, 2, 1], order=2, covariance=covariance,
                      normalize_second_order=normalize)
        out = model(x, edge_index, batch=batch, num_graphs=1,
                    generator=torch.Generator().manual_seed(0))
        kls[normalize] = float(model.multires_kl_loss(out).detach())
        scalars = sum(lvl.num_nodes for lvl in out.levels) * 16
        if normalize:
            for lvl in out.levels:
                assert lvl.mu.abs().max() < 5
                if lvl.logstd is not None:
                    assert lvl.logstd.max() < MAX_LOGSTD - 1
    assert kls[True] < scalars < kls[False]


def test_initial_kl_on_molecule_like_batches():
    # ZINC-sized molecule-like graphs (23 nodes, bond types as edge
    # features), the diagonal and the MRF posterior:
    from tests.conftest import random_batch
    data = random_batch(sizes=(23, 19, 27, 23), p=0.12, seed=3)
    half = data.edge_index[:, data.edge_index[0] < data.edge_index[1]]
    g = torch.Generator().manual_seed(0)
    bond = torch.nn.functional.one_hot(
        torch.randint(4, (half.size(1), ), generator=g), 4).float()
    ei, ea = torch.cat([half, half.flip(0)], 1), torch.cat([bond, bond])
    x = data.x.float()
    for covariance in ('diag', 'mrf'):
        kls = {}
        for normalize in (True, False):
            torch.manual_seed(0)
            model = MGVAE(x.size(1), 32, 16, [4, 2, 1], order=2,
                          edge_channels=4, covariance=covariance,
                          normalize_second_order=normalize)
            out = model(x, ei, batch=data.batch, num_graphs=4,
                        edge_attr=ea,
                        generator=torch.Generator().manual_seed(0))
            kls[normalize] = float(model.multires_kl_loss(out).detach())
            per_graph = sum(lvl.num_nodes for lvl in out.levels) / 4 * 16
        # (measured: 5.6 / 3.6e7 diagonal, 13 / 1.9e3 MRF; bound 476)
        assert kls[True] < per_graph < kls[False]
