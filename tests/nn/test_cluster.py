import math

import pytest
import torch
import torch.nn.functional as F

from tests.conftest import permute_within_graphs, random_batch
from torch_geometric_mgvae import MGN
from torch_geometric_mgvae.nn import (
    MGNPooling,
    SelectLearned,
    balanced_assignment,
    balanced_capacities,
    balanced_cut_kl,
    compact_clusters,
    fixed_cluster_output,
    gumbel_cluster,
    sinkhorn_balance,
    uniform_kl_bound,
)


def test_balanced_cut_kl_hand_values():
    # Graph 0: 4 nodes, sizes (3, 1, 0, 0), K = 4:
    #   KL = .75 log(.75 * 4) + .25 log(.25 * 4) = .75 log 3
    # Graph 1: 2 nodes with K = 4 clusters, one node per cluster: optimum 0.
    # Graph 2: 2 nodes in one cluster, K = 4: Q uniform over 2 -> log 2.
    local = torch.tensor([0, 0, 0, 1, 2, 3, 1, 1])
    batch = torch.tensor([0, 0, 0, 0, 1, 1, 2, 2])
    assign = torch.nn.functional.one_hot(local, 4).double()
    kl = balanced_cut_kl(assign, batch)
    expected = [0.75 * math.log(3), 0.0, math.log(2)]
    assert torch.allclose(kl, torch.tensor(expected, dtype=torch.double))
    assert uniform_kl_bound(4, 2) == 0.0
    assert uniform_kl_bound(5, 2) == pytest.approx(
        0.6 * math.log(1.2) + 0.4 * math.log(0.8))
    # A graph without nodes (num_graphs larger than the batch) gives 0:
    assert balanced_cut_kl(assign, batch, num_graphs=4)[3] == 0


def test_compact_clusters_drop_empty_and_never_mix():
    local = torch.tensor([3, 3, 0, 1, 1, 1])
    batch = torch.tensor([0, 0, 0, 1, 1, 2])
    cluster, C, cbatch = compact_clusters(local, batch, 4)
    assert C == 4  # (0,0), (0,3), (1,1), (2,1)
    assert cluster.tolist() == [1, 1, 0, 2, 2, 3]
    assert cbatch.tolist() == [0, 0, 1, 2]


def test_gumbel_cluster_eval_is_argmax_and_train_is_seedable():
    logits = torch.tensor([[2.0, 0.0], [0.0, 1.0], [5.0, -1.0]])
    batch = torch.zeros(3, dtype=torch.long)
    out = gumbel_cluster(logits, batch, training=False)
    assert out.local.tolist() == [0, 1, 0]
    assert out.noise is None
    assert torch.equal(out.weight, torch.ones(3))
    a = gumbel_cluster(logits, batch, True,
                       generator=torch.Generator().manual_seed(1))
    b = gumbel_cluster(logits, batch, True,
                       generator=torch.Generator().manual_seed(1))
    assert torch.equal(a.local, b.local) and torch.equal(a.noise, b.noise)
    c = gumbel_cluster(logits, batch, True, noise=a.noise)
    assert torch.equal(c.local, a.local)
    # Straight-through: forward value exactly one-hot.
    assert torch.equal(a.assignment.detach().sum(-1), torch.ones(3))
    with pytest.raises(ValueError, match='noise'):
        gumbel_cluster(logits, batch, True, noise=torch.zeros(2, 2))


def test_learned_clustering_equivariant():
    data = random_batch()
    model = SelectLearned(4, 3, hidden_channels=8).double().train()
    out = model(data.x, data.edge_index, batch=data.batch,
                generator=torch.Generator().manual_seed(0))
    perm, inv = permute_within_graphs(data.batch, seed=3)
    out2 = model(data.x[perm], inv[data.edge_index], batch=data.batch,
                 noise=out.noise[perm])
    assert torch.allclose(out2.logits, out.logits[perm], atol=1e-10)
    assert torch.equal(out2.local, out.local[perm])
    assert torch.equal(out2.cluster_index, out.cluster_index[perm])
    assert torch.equal(out2.batch, out.batch)
    assert str(model) == 'SelectLearned(4, num_clusters=3, num_layers=2)'


def test_clusters_never_mix_and_small_graphs_get_fewer():
    data = random_batch(sizes=(2, 9, 1))
    model = SelectLearned(4, 5).double()
    out = model(data.x, data.edge_index, batch=data.batch)
    # every cluster belongs to exactly one graph:
    assert torch.equal(out.batch[out.cluster_index], data.batch)
    per_graph = torch.bincount(out.batch, minlength=3)
    assert per_graph[0] <= 2 and per_graph[2] == 1 and per_graph[1] <= 5
    assert int(out.sizes().min()) >= 1  # no empty cluster


def test_balanced_cut_gradient_trains_clustering():
    torch.manual_seed(0)
    data = random_batch(sizes=(30, ), p=0.2)
    model = SelectLearned(4, 4, hidden_channels=16).double()
    with torch.no_grad():  # start from a very unbalanced clustering
        model.lin.bias.copy_(torch.tensor([6.0, 0, 0, 0]))
    opt = torch.optim.Adam(model.parameters(), lr=0.05)
    noise = model(data.x, data.edge_index).noise
    before = [p.detach().clone() for p in model.parameters()]
    first = balanced_cut_kl(model(data.x, data.edge_index, noise=noise)
                            .assignment, data.batch).sum()
    losses = []
    for _ in range(40):
        opt.zero_grad()
        out = model(data.x, data.edge_index, noise=noise)
        loss = balanced_cut_kl(out.assignment, data.batch).sum()
        loss.backward()
        assert model.lin.bias.grad.abs().sum() > 0
        opt.step()
        losses.append(loss.item())
    after = list(model.parameters())
    assert all(not torch.equal(a, b) for a, b in zip(before, after))
    assert first.item() > 1.0
    assert losses[-1] < 0.2 * first.item()


def test_sinkhorn_balance_makes_clusters_equal_in_mass():
    torch.manual_seed(0)
    batch = torch.tensor([0] * 40 + [1] * 12)
    logits = torch.randn(52, 4, dtype=torch.float64) * 2
    logits[:, 0] += 3  # every node prefers cluster 0
    out = sinkhorn_balance(logits, batch, num_iters=50)
    p = out.exp()
    assert torch.allclose(p.sum(-1), torch.ones(52, dtype=torch.float64))
    mass = torch.stack([p[batch == b].sum(0) for b in (0, 1)])
    expected = torch.tensor([[10.] * 4, [3.] * 4], dtype=torch.float64)
    assert torch.allclose(mass, expected, atol=1e-3)
    # The argmax is far more balanced than that of the raw logits:
    raw = torch.bincount(logits[batch == 0].argmax(-1), minlength=4)
    bal = torch.bincount(out[batch == 0].argmax(-1), minlength=4)
    assert raw.max() >= 25 and bal.max() <= 16


def _sinkhorn_reference(logits, batch, num_graphs, num_iters):
    # The iterations written out in the log domain, graph by graph.
    out = []
    for b in range(num_graphs):
        p = logits[batch == b].log_softmax(-1)
        n, K = p.shape
        for _ in range(num_iters):
            p = p - p.logsumexp(0, keepdim=True) + math.log(max(n, 1) / K)
            p = p.log_softmax(-1)
        out.append(p)
    return torch.cat(out)


@pytest.mark.parametrize('scale', [1.0, 8.0, 300.0])
def test_sinkhorn_balance_equals_the_log_domain_iterations(scale):
    torch.manual_seed(0)
    batch = torch.tensor([0] * 30 + [1] * 7 + [2] * 1)
    logits = (scale * torch.randn(38, 6, dtype=torch.float64)
              ).requires_grad_()
    w = torch.randn(38, 6, dtype=torch.float64)
    out = sinkhorn_balance(logits, batch, num_iters=10)
    ref = _sinkhorn_reference(logits, batch, 3, 10)
    assert torch.allclose(out, ref, atol=1e-9)
    g, = torch.autograd.grad((out * w).sum(), logits)
    g_ref, = torch.autograd.grad((ref * w).sum(), logits)
    assert torch.allclose(g, g_ref, atol=1e-9)
    # One graph (the matrix-vector path):
    one = torch.zeros(30, dtype=torch.long)
    assert torch.allclose(sinkhorn_balance(logits[:30], one),
                          _sinkhorn_reference(logits[:30], one, 1, 10),
                          atol=1e-9)


def test_sinkhorn_balance_with_a_nearly_empty_cluster_stays_finite():
    # Every node dislikes cluster 0 by 60 nats: in float32 its mass (about
    # 1e-26) would overflow the gradient of the scaled iterations.
    torch.manual_seed(0)
    logits = torch.randn(40, 4)
    logits[:, 0] -= 60
    logits.requires_grad_()
    batch = torch.zeros(40, dtype=torch.long)
    out = sinkhorn_balance(logits, batch)
    out.sum().backward()
    assert torch.isfinite(out).all() and torch.isfinite(logits.grad).all()
    ref = _sinkhorn_reference(logits.detach().double(), batch, 1, 10)
    assert torch.allclose(out.double(), ref, atol=1e-3)
    # Cluster 0 still gets its share of the mass (what the balance is for).
    assert out.exp()[:, 0].sum().item() == pytest.approx(10.0, rel=1e-3)


def test_sinkhorn_balance_equivariant_and_edge_cases():
    data = random_batch()
    logits = torch.randn(data.num_nodes, 3, dtype=torch.float64)
    out = sinkhorn_balance(logits, data.batch)
    perm, _ = permute_within_graphs(data.batch, seed=1)
    assert torch.allclose(sinkhorn_balance(logits[perm], data.batch),
                          out[perm], atol=1e-10)
    # No iterations: the plain log-softmax; no nodes: an empty result.
    assert torch.allclose(sinkhorn_balance(logits, data.batch, num_iters=0),
                          logits.log_softmax(-1))
    empty = sinkhorn_balance(torch.zeros(0, 3),
                             torch.zeros(0, dtype=torch.long))
    assert empty.shape == (0, 3)
    # A graph with fewer nodes than clusters stays finite:
    tiny = sinkhorn_balance(torch.randn(2, 5), torch.zeros(2, dtype=torch.long))
    assert torch.isfinite(tiny).all()


def test_learned_clustering_with_balance_is_equivariant_and_balanced():
    data = random_batch(sizes=(30, 24), p=0.2)
    model = SelectLearned(4, 3, hidden_channels=8, balance=20).double()
    model.eval()
    out = model(data.x, data.edge_index, batch=data.batch)
    sizes = torch.bincount(out.local[data.batch == 0], minlength=3)
    assert sizes.min() >= 5  # argmax of balanced logits (10 expected)
    perm, inv = permute_within_graphs(data.batch, seed=2)
    out2 = model(data.x[perm], inv[data.edge_index], batch=data.batch)
    assert torch.equal(out2.local, out.local[perm])


def greedy_reference(score, caps):
    r"""Pairs in decreasing score (ties: node, then cluster index), a node
    joining a cluster with room: the stable assignment, one graph."""
    n, K = score.shape
    pairs = sorted(((-float(score[i, k]), i, k) for i in range(n)
                    for k in range(K)))
    local, room = [-1] * n, list(caps)
    for _, i, k in pairs:
        if local[i] < 0 and room[k] > 0:
            local[i], room[k] = k, room[k] - 1
    return local


def test_balanced_assignment_hand_values():
    # Every node prefers cluster 0; 5 nodes, K = 2: cluster 0 (the larger
    # soft mass) gets 3 places, cluster 1 gets 2. The most confident nodes
    # keep cluster 0.
    logits = torch.tensor([[3., 0.], [0., .2], [1., 0.], [2., 0.], [.5, 0.]])
    batch = torch.zeros(5, dtype=torch.long)
    assert balanced_capacities(logits, batch).tolist() == [[3, 2]]
    out = balanced_assignment(logits, batch, num_iters=0)
    assert out.tolist() == [0, 1, 0, 0, 1]
    # n < K: the n clusters of largest mass get one node each.
    logits = torch.tensor([[0., 1., 2.], [0., 1., 3.]])
    caps = balanced_capacities(logits, torch.zeros(2, dtype=torch.long))
    assert caps.tolist() == [[0, 1, 1]]
    assert balanced_assignment(logits, torch.zeros(2, dtype=torch.long),
                               num_iters=0).tolist() == [1, 2]


def test_balanced_assignment_is_the_stable_greedy_rounding():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(30, 4, generator=g, dtype=torch.float64) * 2
    logits[:, 0] += 2
    batch = torch.zeros(30, dtype=torch.long)
    for num_iters in (0, 10):
        score = sinkhorn_balance(logits, batch, num_iters=num_iters)
        caps = balanced_capacities(logits, batch)[0].tolist()
        out = balanced_assignment(logits, batch, num_iters=num_iters)
        assert out.tolist() == greedy_reference(score, caps)


@pytest.mark.parametrize('sizes,K', [((10, 7, 3), 3), ((2, 5, 1), 8),
                                     ((64, 33), 16), ((9, ), 9)])
def test_balanced_assignment_sizes_kl_and_equivariance(sizes, K):
    batch = torch.cat([torch.full((n, ), b) for b, n in enumerate(sizes)])
    g = torch.Generator().manual_seed(K)
    logits = torch.randn(batch.numel(), K, generator=g, dtype=torch.float64)
    logits[:, 0] += 3  # an unbalanced preference
    out = balanced_assignment(logits, batch)
    kl = balanced_cut_kl(F.one_hot(out, K).double(), batch)
    for b, n in enumerate(sizes):
        count = torch.bincount(out[batch == b], minlength=K)
        assert count.sum() == n and int(count.max()) <= -(-n // K)
        assert int(count.min()) >= n // K
        assert kl[b].item() == pytest.approx(uniform_kl_bound(n, K), abs=1e-12)
    perm, _ = permute_within_graphs(batch, seed=K)
    assert torch.equal(balanced_assignment(logits[perm], batch), out[perm])


def test_balanced_assignment_ties_and_bad_inputs():
    # Identical rows cannot be told apart: any split is balanced.
    batch = torch.zeros(7, dtype=torch.long)
    out = balanced_assignment(torch.zeros(7, 3), batch)
    assert sorted(torch.bincount(out, minlength=3).tolist()) == [2, 2, 3]
    assert balanced_assignment(torch.zeros(0, 3),
                               torch.zeros(0, dtype=torch.long)).numel() == 0
    with pytest.raises(ValueError, match=r"'logits' must be \[N, K\]"):
        balanced_assignment(torch.zeros(3), batch[:3])
    with pytest.raises(ValueError, match="'batch' holds 7 entries for 3"):
        balanced_assignment(torch.zeros(3, 2), batch)
    with pytest.raises(ValueError, match='non-finite'):
        balanced_assignment(torch.full((7, 2), float('nan')), batch)
    with pytest.raises(ValueError, match="'eval_assign' must be one of"):
        SelectLearned(4, 3, eval_assign='sinkhorn')


def test_select_learned_balanced_in_eval_only():
    data = random_batch(sizes=(30, 7, 12), p=0.2)
    torch.manual_seed(0)
    model = SelectLearned(4, 5, hidden_channels=8, eval_assign='balanced')
    model = model.double()
    with torch.no_grad():  # start from a very unbalanced clustering
        model.lin.bias.copy_(torch.tensor([6.0, 0, 0, 0, 0]))
    plain = SelectLearned(4, 5, hidden_channels=8).double()
    plain.load_state_dict(model.state_dict())
    assert str(model) == ("SelectLearned(4, num_clusters=5, num_layers=2, "
                          "eval_assign='balanced')")
    # Training: the same Gumbel-max samples as the default.
    a = model.train()(data.x, data.edge_index, batch=data.batch,
                      generator=torch.Generator().manual_seed(1))
    b = plain.train()(data.x, data.edge_index, batch=data.batch,
                      noise=a.noise)
    assert torch.equal(a.local, b.local)
    assert torch.equal(a.assignment, b.assignment)
    # Evaluation: the argmax is unbalanced, the balanced assignment reaches
    # the smallest KL of every graph.
    model.eval()
    plain.eval()
    out = model(data.x, data.edge_index, batch=data.batch)
    argmax = plain(data.x, data.edge_index, batch=data.batch)
    kl = balanced_cut_kl(out.assignment, data.batch)
    bound = torch.tensor([uniform_kl_bound(n, 5) for n in (30, 7, 12)],
                         dtype=torch.float64)
    assert torch.allclose(kl, bound, atol=1e-12)
    assert balanced_cut_kl(argmax.assignment, data.batch)[0] > 1.0
    assert torch.equal(out.logits, argmax.logits)
    # The straight-through gradient reaches the logits.
    out.weight.sum().backward()
    assert model.lin.weight.grad is not None
    perm, inv = permute_within_graphs(data.batch, seed=4)
    out2 = model(data.x[perm], inv[data.edge_index], batch=data.batch)
    assert torch.equal(out2.local, out.local[perm])


def test_balanced_eval_through_pooling_and_mgn():
    data = random_batch(sizes=(20, 9), p=0.3)
    pool = MGNPooling(4, 4, eval_assign='balanced').double().eval()
    assert pool.select.eval_assign == 'balanced'
    *_, so, cut = pool(data.x, data.edge_index, batch=data.batch)
    assert cut.item() == pytest.approx(
        (uniform_kl_bound(20, 4) + uniform_kl_bound(9, 4)) / 2, abs=1e-12)
    model = MGN(4, 8, 4, [4, 2, 1],
                cluster_kwargs=dict(eval_assign='balanced')).double().eval()
    out = model(data.x, data.edge_index, batch=data.batch)
    for level, K in zip(out.levels[:2], (4, 2)):
        for b in range(2):
            local = level.select.local[level.batch == b]
            count = torch.bincount(local, minlength=K)
            assert int(count.max()) - int(count.min()) <= 1


def test_gather_clusters_reads_through_the_assignment():
    from torch_geometric_mgvae.nn import gather_clusters
    data = random_batch(sizes=(7, 5))
    select = SelectLearned(4, 3).double().train()
    so = select(data.x, data.edge_index, batch=data.batch,
                generator=torch.Generator().manual_seed(0))
    x = torch.randn(so.num_clusters, 6, dtype=torch.double)
    y = gather_clusters(so, x, data.batch, 2)
    assert torch.allclose(y, x[so.cluster_index])  # forward: the gather
    y.sum().backward()  # the gradient reaches every cluster's probability
    grads = [p.grad for p in select.parameters() if p.grad is not None]
    assert grads and any(g.abs().sum() > 0 for g in grads)
    # A soft assignment gives the expected cluster features:
    A = torch.rand(12, 3, dtype=torch.double)
    A = A / A.sum(-1, keepdim=True)
    full = torch.zeros(2, 3, 6, dtype=torch.double)
    full[so.batch, so.local.new_zeros(so.num_clusters).index_copy(
        0, so.cluster_index, so.local)] = x
    exp = torch.cat([A[:7] @ full[0], A[7:] @ full[1]])
    assert torch.allclose(gather_clusters(so, x, data.batch, 2, A), exp,
                          atol=1e-6)
    # Without a gradient to carry: the plain gather.
    select.eval()
    so = select(data.x, data.edge_index, batch=data.batch)
    x = torch.randn(so.num_clusters, 2, dtype=torch.double)
    assert torch.equal(gather_clusters(so, x, data.batch), x[so.cluster_index])


def test_balanced_cut_kl_from_local_ids_equals_one_hot():
    # Fixed clusterings build no N x K one-hot matrix: the KL reads the ids.
    g = torch.Generator().manual_seed(3)
    batch = torch.tensor([0] * 7 + [1] * 2 + [2] * 5)
    local = torch.randint(4, (14, ), generator=g)
    one_hot = torch.nn.functional.one_hot(local, 4).double()
    ref = balanced_cut_kl(one_hot, batch)
    assert torch.allclose(balanced_cut_kl(local, batch, num_clusters=4,
                                          dtype=torch.double), ref)
    so = fixed_cluster_output(local, batch, 4, torch.double)
    assert so.assignment is None
    assert torch.allclose(MGNPooling(1, 4, select='fixed').cut_loss(
        so, batch), ref.mean())
    with pytest.raises(ValueError, match='num_clusters'):
        balanced_cut_kl(local, batch)
