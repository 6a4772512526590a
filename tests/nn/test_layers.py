import math

import pytest
import torch
import torch.nn.functional as F

from tests.conftest import permute_within_graphs, random_batch
from torch_geometric_mgvae.nn import (
    BlockInnerProductDecoder,
    ClusterReadout,
    InnerProductDecoder,
    LocalEncoder,
    MGNConv,
    intra_cluster_edges,
    onehot_pair_dot,
    pair_recon_loss,
    sample_group_pairs,
    undirected_pairs,
)


def test_mean_conv_hand_values():
    # Path 0 - 1 - 2 with identity weights: x' = x + mean of neighbours.
    conv = MGNConv(1, 1).double()
    with torch.no_grad():
        conv.lin_root.weight.fill_(1.0)
        conv.lin_root.bias.zero_()
        conv.lin_rel.weight.fill_(1.0)
    x = torch.tensor([[1.0], [2.0], [4.0]], dtype=torch.double)
    ei = torch.tensor([[0, 1, 1, 2], [1, 0, 2, 1]])
    out = conv(x, ei)
    assert out.view(-1).tolist() == [1 + 2, 2 + 2.5, 4 + 2]
    # Weighted mean D^{-1} A X: node 1 gets (3 * 1 + 1 * 4) / 4.
    w = torch.tensor([3.0, 1.0, 1.0, 1.0], dtype=torch.double)
    assert conv(x, ei, w)[1].item() == 2 + 7 / 4
    # An isolated node keeps its own (root) term only.
    out = conv(x, torch.empty(2, 0, dtype=torch.long))
    assert torch.equal(out, x)
    assert str(conv) == 'MGNConv(1, 1)'


def test_local_encoder_only_sees_its_cluster():
    data = random_batch(sizes=(12, ), p=0.5)
    enc = LocalEncoder(4, 8, num_layers=3).double()
    cluster = torch.tensor([0] * 6 + [1] * 6)
    out = enc(data.x, data.edge_index, cluster=cluster)
    x2 = data.x.clone()
    x2[6:] += 10.0  # change cluster 1 only
    out2 = enc(x2, data.edge_index, cluster=cluster)
    assert torch.allclose(out[:6], out2[:6])
    assert not torch.allclose(out[6:], out2[6:])
    ei, _, _ = intra_cluster_edges(data.edge_index, None, cluster)
    assert bool((cluster[ei[0]] == cluster[ei[1]]).all())
    assert str(enc) == 'LocalEncoder(4, 8, num_layers=3, conv=MGNConv)'


def test_encoder_and_pool_equivariance():
    data = random_batch()
    enc = LocalEncoder(4, 8).double()
    pool = ClusterReadout.mlp(8, 5).double()
    cluster = data.batch * 2 + torch.arange(data.num_nodes) % 2
    z = enc(data.x, data.edge_index, cluster=cluster)
    pooled = pool(z, cluster, dim_size=6)
    perm, inv = permute_within_graphs(data.batch, seed=1)
    z2 = enc(data.x[perm], inv[data.edge_index], cluster=cluster[perm])
    assert torch.allclose(z2, z[perm], atol=1e-10)
    pooled2 = pool(z2, cluster[perm], dim_size=6)
    assert torch.allclose(pooled2, pooled, atol=1e-10)
    # weights of one are the plain mean:
    assert torch.allclose(
        pool(z, cluster, dim_size=6, weight=torch.ones(len(z)).double()),
        pooled)
    assert str(pool).startswith('ClusterReadout(local_nn=Sequential(')


def brute_force_nll(z, edge_index, group, decoder):
    adj = set(map(tuple, edge_index.t().tolist()))
    total = 0.0
    for i in range(z.size(0)):
        for j in range(i + 1, z.size(0)):
            if group[i] != group[j]:
                continue
            p = decoder(z, torch.tensor([[i], [j]]))[0]
            t = 1.0 if (i, j) in adj or (j, i) in adj else 0.0
            total -= t * math.log(p) + (1 - t) * math.log(1 - p)
    return total


def test_pair_recon_loss_dense_equals_brute_force():
    data = random_batch(sizes=(6, 8), p=0.4)
    z = torch.randn(data.num_nodes, 3, dtype=torch.double)
    dec = InnerProductDecoder().double()
    with torch.no_grad():
        dec.bias.fill_(-0.3)
    group = data.batch * 2 + (torch.arange(data.num_nodes) % 2)
    loss = pair_recon_loss(z, data.edge_index, group, 4, dec)
    assert loss.item() == pytest.approx(
        brute_force_nll(z, data.edge_index, group, dec), rel=1e-10)
    loss_g = pair_recon_loss(z, data.edge_index, data.batch, 2, dec)
    assert loss_g.item() == pytest.approx(
        brute_force_nll(z, data.edge_index, data.batch, dec), rel=1e-10)


def test_pair_recon_loss_sampled_is_unbiased():
    data = random_batch(sizes=(20, 30), p=0.2)
    z = 0.5 * torch.randn(data.num_nodes, 4, dtype=torch.double)
    dec = InnerProductDecoder().double()
    exact = pair_recon_loss(z, data.edge_index, data.batch, 2, dec)
    g = torch.Generator().manual_seed(0)
    est = torch.stack([
        pair_recon_loss(z, data.edge_index, data.batch, 2, dec,
                        max_dense_pairs=0, num_neg_samples=200, generator=g)
        for _ in range(300)
    ])
    assert est.mean().item() == pytest.approx(exact.item(), rel=0.02)


def test_sample_group_pairs_stay_in_group():
    group = torch.tensor([0, 0, 0, 1, 2, 2])
    pairs, prob = sample_group_pairs(group, 3, 1000,
                                     torch.Generator().manual_seed(0))
    assert bool((group[pairs[0]] == group[pairs[1]]).all())
    assert bool((pairs[0] != pairs[1]).all())
    assert 3 not in pairs.view(-1).tolist()  # singleton group
    # group 0: 3 nodes, 5 candidates: p({i,j}) = 2 / (5 * 2)
    assert torch.allclose(prob[group[pairs[0]] == 0], torch.tensor(0.2))
    assert undirected_pairs(torch.tensor([[0, 1, 1, 2, 2], [1, 0, 2, 1, 2]]),
                            3).tolist() == [[0, 1], [1, 2]]


def test_balanced_loss_matches_pyg_style():
    z = torch.randn(5, 2, dtype=torch.double)
    ei = torch.tensor([[0, 1], [1, 0]])
    dec = InnerProductDecoder(bias=False)
    loss = pair_recon_loss(z, ei, torch.zeros(5, dtype=torch.long), 1, dec,
                           balanced=True)
    pos = -F.logsigmoid((z[0] * z[1]).sum())
    negs = [-F.logsigmoid(-(z[i] * z[j]).sum()) for i in range(5)
            for j in range(i + 1, 5) if (i, j) != (0, 1)]
    assert loss.item() == pytest.approx((pos + sum(negs) / 9).item())
    assert str(dec) == 'InnerProductDecoder(bias=False)'


def test_onehot_pair_dot_equals_dense_inner_products():
    torch.manual_seed(0)
    # Rows of two one-hot blocks (5 and 3 columns), scaled, plus straight-
    # through-like gradients: exact zeros outside index in value.
    N, sizes = 9, (5, 3)
    ids = torch.stack([torch.randint(k, (N, )) for k in sizes], dim=1)
    index = ids + torch.tensor([0, 5])
    scale = torch.tensor([0.7, 1.9], dtype=torch.double)
    E = torch.zeros(N, 8, dtype=torch.double)
    E[torch.arange(N).view(-1, 1), index] = scale
    E.requires_grad_()
    pairs = torch.tensor([[0, 1, 2, 3, 4, 5, 6, 8, 8],
                          [1, 2, 0, 3, 7, 7, 6, 2, 5]])
    w = torch.randn(pairs.size(1), dtype=torch.double)
    fast = onehot_pair_dot(E, index, pairs)
    dense = (E[pairs[0]] * E[pairs[1]]).sum(-1)
    assert torch.allclose(fast, dense)
    g_fast, = torch.autograd.grad((fast * w).sum(), E)
    g_dense, = torch.autograd.grad((dense * w).sum(), E)
    assert torch.allclose(g_fast, g_dense)
    # With dense columns in front:
    z0 = torch.randn(N, 3, dtype=torch.double)
    Z = torch.cat([z0, E.detach()], dim=-1).requires_grad_()
    both = onehot_pair_dot(Z, index + 3, pairs, dense_channels=3)
    dense = (Z[pairs[0]] * Z[pairs[1]]).sum(-1)
    assert torch.allclose(both, dense)
    g_fast, = torch.autograd.grad((both * w).sum(), Z)
    g_dense, = torch.autograd.grad((dense * w).sum(), Z)
    assert torch.allclose(g_fast, g_dense)
    # The shared clusters, weighted: sum_l scale_l^2 [same cluster at l].
    same = (ids[pairs[0]] == ids[pairs[1]]).double()
    assert torch.allclose(fast, (same * scale**2).sum(-1))
    # The block decoder: the same logits as the plain one on [z, E].
    z = torch.randn(N, 4, dtype=torch.double)
    dec = InnerProductDecoder().double()
    with torch.no_grad():
        dec.log_scale.fill_(0.3)
        dec.bias.fill_(-0.2)
    full = torch.cat([z, E.detach()], dim=-1)
    block = BlockInnerProductDecoder(dec, 4, index)
    assert torch.allclose(block(full, pairs), dec(full, pairs))
    assert torch.allclose(block(full, pairs, sigmoid=False),
                          dec(full, pairs, sigmoid=False))
    blocks = full.view(1, N, -1)
    assert torch.equal(block.forward_all(blocks), dec.forward_all(blocks))
    # No sparse part: the plain inner products.
    assert torch.allclose(
        BlockInnerProductDecoder(dec, 4, index[:, :0])(z, pairs),
        dec(z, pairs))
