import itertools
import math

import pytest
import torch
from torch.distributions import MultivariateNormal, Normal, kl_divergence

from tests.nn.test_second_order import dense_batch, node_perm, p1, p2
from torch_geometric_mgvae.nn.prior import (
    GaussianMRFHead,
    LearnablePrior,
    kl_diag,
    kl_mvn,
    kl_mvn_standard,
    mrf_sample,
)
from torch_geometric_mgvae.nn.second_order import SecondOrderEncoder

D = torch.float64
EPS = 1e-4


def random_posterior(sizes=(5, 3, 4), d=3, k=None, seed=0, garbage=True):
    r"""Means ``[B, n, d]`` and factors ``[B, n, k, d]`` (square by
    default, padded columns 0 as from GaussianMRFHead); padded rows hold
    garbage."""
    g = torch.Generator().manual_seed(seed)
    B, n = len(sizes), max(sizes)
    mask = torch.arange(n) < torch.tensor(sizes).view(-1, 1)
    mu = torch.randn(B, n, d, generator=g, dtype=D)
    L = torch.randn(B, n, k or n, d, generator=g, dtype=D) / 2
    if k is None:  # square: zero padded columns
        L = L * mask.view(B, 1, n, 1)
    if garbage:
        mu = torch.where(mask.unsqueeze(-1), mu, 9.0)
        L = torch.where(mask.view(B, n, 1, 1), L, -4.0)
    return mu, L, mask


def reference_kl(mu_q, L_q, mu_p, L_p, mask, eps=EPS):
    r"""Per-graph KL with torch.distributions on the valid rows only."""
    out = []
    for b in range(mu_q.size(0)):
        v = mask[b]
        total = torch.zeros((), dtype=D)
        for c in range(mu_q.size(-1)):
            def mvn(mu, L):
                Lv = L[b, v, :, c]
                cov = Lv @ Lv.t() + eps * torch.eye(int(v.sum()), dtype=D)
                return MultivariateNormal(mu[b, v, c], covariance_matrix=cov)
            if v.any():
                total = total + kl_divergence(mvn(mu_q, L_q), mvn(mu_p, L_p))
        out.append(total)
    return torch.stack(out)


# -------------------------------------------------------------- KL terms
@pytest.mark.parametrize('kp', [None, 7])
def test_kl_mvn_matches_torch_distributions(kp):
    mu_q, L_q, mask = random_posterior(seed=0)
    mu_p, L_p, _ = random_posterior(k=kp, seed=1)
    out = kl_mvn(mu_q, L_q, mu_p, L_p, mask)
    assert out.shape == (3, )
    ref = reference_kl(mu_q, L_q, mu_p, L_p, mask)
    assert torch.allclose(out, ref, atol=1e-6, rtol=1e-9)
    assert torch.allclose(kl_mvn(mu_q, L_q, mu_q, L_q, mask),
                          torch.zeros(3, dtype=D), atol=1e-8)


def test_kl_mvn_padding_contributes_nothing():
    mu_q, L_q, mask = random_posterior(seed=2)
    mu_p, L_p, _ = random_posterior(seed=3)
    out = kl_mvn(mu_q, L_q, mu_p, L_p, mask)
    for b, m in enumerate(mask.sum(1).tolist()):
        one = torch.ones(1, m, dtype=torch.bool)
        alone = kl_mvn(mu_q[b:b + 1, :m], L_q[b:b + 1, :m, :m],
                       mu_p[b:b + 1, :m], L_p[b:b + 1, :m, :m], one)
        assert torch.allclose(out[b], alone[0], atol=1e-10, rtol=1e-12)
    # An empty graph has KL exactly 0.
    none = torch.zeros_like(mask)
    assert torch.equal(kl_mvn(mu_q, L_q, mu_p, L_p, none),
                       torch.zeros(3, dtype=D))


def test_kl_mvn_standard_matches_torch_distributions():
    mu, L, mask = random_posterior(seed=4)
    out = kl_mvn_standard(mu, L, mask)
    B, n, _, d = L.shape
    zero_mu = torch.zeros_like(mu)
    unit_L = math.sqrt(1 - EPS) * torch.eye(n, dtype=D).view(1, n, n, 1)
    ref = reference_kl(mu, L, zero_mu, unit_L.expand(B, n, n, d), mask)
    assert torch.allclose(out, ref, atol=1e-6, rtol=1e-9)
    assert torch.allclose(out, kl_mvn(mu, L, zero_mu,
                                      unit_L.expand(B, n, n, d), mask))


def test_kl_diag_matches_normal():
    mu, _, mask = random_posterior(seed=5)
    logstd = torch.randn_like(mu)
    out = kl_diag(mu, logstd, mask)
    ref = kl_divergence(Normal(mu, logstd.exp()), Normal(0.0, 1.0))
    ref = (ref * mask.unsqueeze(-1)).sum(dim=(1, 2))
    assert torch.allclose(out, ref, atol=1e-10)
    all_ref = kl_divergence(Normal(mu, logstd.exp()), Normal(0.0, 1.0))
    assert torch.allclose(kl_diag(mu, logstd), all_ref.sum(dim=(1, 2)))
    # The variance is exp(2 logstd): a std of 1 is optimal at mu = 0.
    zero = torch.zeros(1, 2, 3)
    assert torch.equal(kl_diag(zero, zero), torch.zeros(1))


def test_kl_gradcheck():
    mu_q, L_q, mask = random_posterior(sizes=(3, 2), d=2, seed=6,
                                       garbage=False)
    mu_p, L_p, _ = random_posterior(sizes=(3, 2), d=2, seed=7,
                                    garbage=False)
    args = [t.clone().requires_grad_() for t in (mu_q, L_q, mu_p, L_p)]
    assert torch.autograd.gradcheck(
        lambda *a: kl_mvn(*a, mask=mask), args)


@pytest.mark.parametrize('dtype', [torch.float32, torch.float64])
def test_near_singular_factors_are_finite(dtype):
    B, n, d = 2, 4, 2
    mask = torch.tensor([[True] * 4, [True] * 3 + [False]])
    u = torch.randn(B, n, 1, d, dtype=dtype)
    v = torch.randn(B, 1, n, d, dtype=dtype)
    L_q = (1e-8 * u * v).requires_grad_()  # rank 1, tiny
    L_p = (1e-8 * u * v.flip(2)).requires_grad_()
    mu_q = torch.randn(B, n, d, dtype=dtype, requires_grad=True)
    mu_p = torch.randn(B, n, d, dtype=dtype, requires_grad=True)
    for loss in (kl_mvn(mu_q, L_q, mu_p, L_p, mask),
                 kl_mvn_standard(mu_q, L_q, mask)):
        assert loss.isfinite().all()
        grads = torch.autograd.grad(loss.sum(), [mu_q, L_q, mu_p, L_p],
                                    allow_unused=True)
        assert all(g is None or g.isfinite().all() for g in grads)
    # A rank-one prior with repeated matched nodes (free matching).
    prior = LearnablePrior(4, d, matching='free').to(dtype)
    with torch.no_grad():
        prior.L_param.copy_(1e-8 * torch.randn(4, 1, d) *
                            torch.ones(1, 4, 1))
    mu = prior.mu_hat[:1].detach().expand(B, n, d)  # all match node 0
    mu = (mu + 1e-3 * torch.randn(B, n, d, dtype=dtype)).requires_grad_()
    assert (prior.match(mu, mask)[mask] == 0).all()
    loss = prior.kl(mu, L_q, mask)
    assert loss.isfinite().all()
    loss.sum().backward()
    assert mu.grad.isfinite().all()
    assert prior.mu_hat.grad.isfinite().all()
    assert prior.L_param.grad.isfinite().all()


def test_mrf_sample_covariance_and_reproducibility():
    mu, L, mask = random_posterior(sizes=(3, 2), d=2, seed=8)
    g = torch.Generator().manual_seed(0)
    z1 = mrf_sample(mu, L, mask, generator=g)
    z2 = mrf_sample(mu, L, mask, generator=torch.Generator().manual_seed(0))
    assert torch.equal(z1, z2) and z1.shape == mu.shape
    assert (z1[~mask] == 0).all()
    # Empirical covariance of the first graph, channel 0: L L^T + eps I.
    reps = 20000
    z = mrf_sample(mu[:1].expand(reps, -1, -1), L[:1].expand(reps, -1, -1,
                                                             -1),
                   mask[:1].expand(reps, -1), generator=g)[:, :, 0]
    Lc = L[0, :, :, 0]
    cov = Lc @ Lc.t() + EPS * torch.eye(3, dtype=D)
    assert torch.allclose(torch.cov(z.t()), cov, atol=0.05)
    assert torch.allclose(z.mean(0), mu[0, :, 0], atol=0.05)
    z0 = mrf_sample(mu, torch.zeros_like(L), mask, eps=0.0)
    assert torch.equal(z0, mu * mask.unsqueeze(-1))


# --------------------------------------------------------- the MRF head
def test_gaussian_mrf_head_equivariance_and_padding():
    torch.manual_seed(0)
    d = dense_batch()
    enc = SecondOrderEncoder(3, 2, 6, 4, num_layers=1).double()
    head = GaussianMRFHead(4, 3).double()

    def run(x, adj, ea, mask):
        return head(*enc(x, adj, mask, ea), mask)

    mu, L = run(d['x'], d['adj'], d['edge_attr'], d['mask'])
    assert mu.shape == (3, 5, 3) and L.shape == (3, 5, 5, 3)
    pair = d['mask'].unsqueeze(2) & d['mask'].unsqueeze(1)
    assert (mu[~d['mask']] == 0).all() and (L[~pair] == 0).all()
    perm = node_perm(d['mask'])
    mu_p, L_p = run(p1(d['x'], perm), p2(d['adj'], perm),
                    p2(d['edge_attr'], perm), d['mask'])
    assert torch.allclose(mu_p, p1(mu, perm), atol=1e-5)
    assert torch.allclose(L_p, p2(L, perm), atol=1e-5)
    # The KL against N(0, I) is invariant.
    assert torch.allclose(kl_mvn_standard(mu, L, d['mask']),
                          kl_mvn_standard(mu_p, L_p, d['mask']))
    for b, m in enumerate(d['mask'].sum(1).tolist()):
        one = torch.ones(1, m, dtype=torch.bool)
        mu1, L1 = run(d['x'][b:b + 1, :m], d['adj'][b:b + 1, :m, :m],
                      d['edge_attr'][b:b + 1, :m, :m], one)
        assert torch.allclose(mu1[0], mu[b, :m], atol=1e-10)
        assert torch.allclose(L1[0], L[b, :m, :m], atol=1e-10)
    assert str(head) == 'GaussianMRFHead(4, 3, first_order_channels=8)'
    old = GaussianMRFHead(4, 3, diagonal=False)
    assert old.lin_logstd is None and 'lin_logstd.weight' not in \
        old.state_dict()
    assert str(old) == ('GaussianMRFHead(4, 3, first_order_channels=8, '
                        'diagonal=False)')
    # The diagonal e^s adds to L's diagonal, nothing else:
    old.lin_mu.load_state_dict(head.lin_mu.state_dict())
    old.lin_L.load_state_dict(head.lin_L.state_dict())
    H, Z = enc(d['x'], d['adj'], d['mask'], d['edge_attr'])
    (mu_new, L_new), (mu_old, L_old) = head(H, Z, d['mask']), old.double()(
        H, Z, d['mask'])
    assert torch.equal(mu_new, mu_old)
    off = ~torch.eye(L_new.size(1), dtype=torch.bool).view(1, *L_new.shape[
        1:3], 1)
    assert torch.allclose(L_new * off, L_old * off)
    std = head.lin_logstd(Z).exp()
    diag = (L_new - L_old).diagonal(dim1=1, dim2=2).transpose(1, 2)
    assert torch.allclose(diag, std * d['mask'].unsqueeze(-1))


# ------------------------------------------------------ learnable prior
def make_prior(N=6, d=3, full=True, seed=0):
    torch.manual_seed(seed)
    prior = LearnablePrior(N, d, full_covariance=full).double()
    with torch.no_grad():
        prior.L_param.add_(0.3 * torch.randn_like(prior.L_param))
    return prior


@pytest.mark.parametrize('matching', ['free', 'hungarian'])
@pytest.mark.parametrize('full', [True, False])
def test_prior_kl_invariant_to_node_permutation(matching, full):
    prior = make_prior(full=full)
    mu, L, mask = random_posterior(seed=9)
    kl = prior.kl(mu, L, mask, matching)
    assert kl.shape == (3, ) and kl.isfinite().all()
    perm = node_perm(mask, seed=3)
    kl_p = prior.kl(p1(mu, perm), p2(L, perm), mask, matching)
    assert torch.allclose(kl, kl_p, atol=1e-8, rtol=1e-10)
    index = prior.match(mu, mask, matching)
    assert torch.equal(prior.match(p1(mu, perm), mask, matching),
                       p1(index, perm))
    # It is the KL against the matched prior nodes.
    mu_p, L_p = prior.prior_params(index)
    assert torch.allclose(kl, reference_kl(mu, L, mu_p, L_p, mask),
                          atol=1e-6)


def test_prior_free_matching_is_nearest_mean():
    prior = make_prior()
    mu, L, mask = random_posterior(seed=10)
    index = prior.match(mu, mask, 'free')
    dist = (mu.unsqueeze(2) - prior.mu_hat).norm(dim=-1)  # [B, n, N]
    assert torch.equal(index[mask], dist.argmin(-1)[mask])
    assert (index[~mask] == 0).all()
    hung = prior.match(mu, mask, 'hungarian')
    for b, m in enumerate(mask.sum(1).tolist()):
        rows = torch.arange(m)
        assert hung[b, :m].unique().numel() == m  # no repeats
        free_cost = dist[b, rows, index[b, :m]].sum()
        hung_cost = dist[b, rows, hung[b, :m]].sum()
        assert free_cost <= hung_cost + 1e-12


def test_prior_hungarian_brute_force():
    N, d = 4, 2
    prior = make_prior(N=N, d=d, seed=1)
    mu, L, mask = random_posterior(sizes=(4, ), d=d, seed=11)
    dist = (mu[0].unsqueeze(1) - prior.mu_hat).norm(dim=-1)  # [4, 4]
    costs = {}
    for sigma in itertools.permutations(range(N)):
        costs[sigma] = sum(dist[i, j] for i, j in enumerate(sigma)).item()
    best = min(costs, key=costs.get)
    assert len(costs) == 24
    index = prior.match(mu, mask, 'hungarian')
    assert tuple(index[0].tolist()) == best
    kl = prior.kl(mu, L, mask, 'hungarian')
    mu_p, L_p = prior.mu_hat[list(best)], prior.L_hat[list(best)]
    expected = kl_mvn(mu, L, mu_p.unsqueeze(0), L_p.unsqueeze(0), mask)
    assert torch.allclose(kl, expected, atol=1e-12)
    # The free matching's cost lower-bounds every permutation's.
    free = prior.match(mu, mask, 'free')[0]
    free_cost = dist[torch.arange(N), free].sum().item()
    assert free_cost <= costs[best] + 1e-12


def test_prior_kl_gradients_and_errors():
    prior = make_prior()
    mu, L, mask = random_posterior(seed=12)
    mu.requires_grad_()
    L.requires_grad_()
    prior.kl(mu, L, mask, 'hungarian').sum().backward()
    assert mu.grad.isfinite().all() and L.grad.isfinite().all()
    assert prior.mu_hat.grad.abs().sum() > 0
    assert prior.L_param.grad.abs().sum() > 0
    with pytest.raises(ValueError, match='matching'):
        prior.kl(mu, L, mask, 'greedy')
    big, Lb, mb = random_posterior(sizes=(7, ), seed=13)
    # A graph larger than the prior is an error for both matchings (free
    # matching would silently repeat prior nodes and give a KL ~ 1 / eps).
    for matching in ('hungarian', 'free'):
        with pytest.raises(ValueError, match='max_nodes=6 nodes but a '
                           'graph has 7'):
            prior.kl(big, Lb, mb, matching)
    with pytest.raises(ValueError, match='matching'):
        LearnablePrior(4, 2, matching='greedy')


def test_prior_sample():
    prior = make_prior(N=6, d=3)
    sizes = torch.tensor([2, 6, 0, 4])
    z, mask = prior.sample(sizes, generator=torch.Generator().manual_seed(0))
    assert z.shape == (4, 6, 3) and mask.shape == (4, 6)
    assert torch.equal(mask.sum(1), sizes)
    assert (z[~mask] == 0).all() and z[mask].abs().min() > 0
    z2, _ = prior.sample(sizes, generator=torch.Generator().manual_seed(0))
    assert torch.equal(z, z2)
    z3, _ = prior.sample(sizes, generator=torch.Generator().manual_seed(1))
    assert not torch.equal(z, z3)
    z4, m4 = prior.sample([3, 1])
    assert z4.shape == (2, 3, 3) and m4.sum() == 4
    with pytest.raises(ValueError, match='max_nodes'):
        prior.sample(torch.tensor([3, 7]))
    with pytest.raises(ValueError, match='max_nodes'):
        prior.sample(torch.tensor([-1]))


def test_prior_sample_uses_random_subsets():
    prior = make_prior(N=5, d=2)
    with torch.no_grad():
        prior.L_param.zero_()  # z = mu_hat[S] + sqrt(eps) noise
    g = torch.Generator().manual_seed(0)
    z, mask = prior.sample(torch.full((400, ), 3), generator=g)
    dist = (z.unsqueeze(2) - prior.mu_hat).norm(dim=-1)  # [400, 3, 5]
    nearest = dist.argmin(-1)  # [400, 3]
    assert (dist.min(-1).values < 0.1).all()
    for row in nearest:  # a subset: distinct prior nodes
        assert row.unique().numel() == 3
    counts = torch.bincount(nearest.view(-1), minlength=5)
    assert (counts > 150).all()  # every prior node is used (~240 each)
    counts0 = torch.bincount(nearest[:, 0], minlength=5)
    assert (counts0 > 40).all()  # ... in every position (~80 each)


def test_prior_diagonal_and_repr():
    prior = LearnablePrior(4, 2, full_covariance=False)
    assert prior.L_param.shape == (4, 2)
    assert torch.equal(prior.L_hat, torch.eye(4).view(4, 4, 1).expand(4, 4,
                                                                      2))
    w = prior.mu_hat.detach().clone()
    prior.reset_parameters()
    assert not torch.equal(w, prior.mu_hat)
    assert str(prior) == ('LearnablePrior(max_nodes=4, latent_channels=2, '
                          'full_covariance=False, matching=hungarian)')
    full = LearnablePrior(4, 2)
    assert torch.equal(full.L_hat, torch.eye(4).view(4, 4, 1).expand(4, 4,
                                                                     2))
    assert str(full) == ('LearnablePrior(max_nodes=4, latent_channels=2, '
                         'full_covariance=True, matching=hungarian)')


def test_diagonal_prior_repeated_matches_are_independent():
    prior = make_prior(N=4, d=2, full=False)
    prior.matching = 'free'
    mu, L, mask = random_posterior(sizes=(4, 3), d=2, seed=14)
    with torch.no_grad():  # every posterior node nearest to prior node 2
        mu.copy_(prior.mu_hat[2] + 0.01 * mu)
    index = prior.match(mu, mask)
    assert (index[mask] == 2).all()
    mu_p, L_p = prior.prior_params(index)
    std = prior.L_param.exp()[2]  # [d]
    cov = torch.diag_embed(L_p[0].pow(2).sum(1).t())  # [d, n, n]
    assert torch.allclose(cov, torch.diag_embed(
        std.view(2, 1).expand(2, 4).pow(2)))
    kl = prior.kl(mu, L, mask)
    assert torch.allclose(kl, reference_kl(mu, L, mu_p, L_p, mask),
                          atol=1e-6)
    assert kl.max() < 100  # no 1 / eps blow-up
    # With distinct indices it is the marginal of the full diagonal prior.
    perm = torch.tensor([[3, 0, 2, 1]])
    _, L_d = prior.prior_params(perm)
    Lf = prior.L_hat[perm]  # [1, 4, 4, d]
    for c in range(2):
        assert torch.allclose(L_d[0, ..., c] @ L_d[0, ..., c].t(),
                              Lf[0, ..., c] @ Lf[0, ..., c].t())


def test_float32_kl_with_large_factors_is_finite():
    # In float32, eps = 1e-4 drowns in the rounding of L L^T for entries of
    # a few units; the factorisation must not fail (it runs in float64).
    from torch_geometric_mgvae.nn import kl_mvn_standard
    g = torch.Generator().manual_seed(0)
    u = torch.randn(4, 40, 1, 8, generator=g) * 30  # rank one, large
    L = u * torch.randn(4, 1, 40, 8, generator=g)
    mu = torch.randn(4, 40, 8, generator=g)
    mask = torch.ones(4, 40, dtype=torch.bool)
    L.requires_grad_()
    kl = kl_mvn_standard(mu, L, mask)
    assert kl.dtype == torch.float32 and torch.isfinite(kl).all()
    kl.sum().backward()
    assert torch.isfinite(L.grad).all()


def test_kl_by_size_buckets_equals_one_call():
    from torch_geometric_mgvae.nn.prior import _kl_mvn, _kl_mvn_standard
    from torch_geometric_mgvae.nn.second_order import size_buckets
    sizes = (9, 0, 2, 8, 4, 1)
    assert len(size_buckets(random_posterior(sizes)[2])) == 4
    mu_q, L_q, mask = random_posterior(sizes, k=11, seed=8)  # wide factor
    mu_p, L_p, _ = random_posterior(sizes, seed=9)
    args = [t.clone().requires_grad_() for t in (mu_q, L_q, mu_p, L_p)]
    out = kl_mvn(*args, mask)
    ref = _kl_mvn(*args, mask, EPS)
    assert out[1] == 0 and torch.allclose(out, ref, atol=1e-10, rtol=1e-12)
    for a, b in zip(torch.autograd.grad(out.sum(), args),
                    torch.autograd.grad(ref.sum(), args)):
        assert torch.allclose(a, b, atol=1e-10)
    out = kl_mvn_standard(args[0], args[1], mask)
    assert torch.allclose(out, _kl_mvn_standard(args[0], args[1], mask, EPS),
                          atol=1e-10, rtol=1e-12)
