import pytest
import torch
import torch.nn.functional as F
from torch_geometric.data import Batch

from torch_geometric_mgvae.models import ConvVAE, ImageMGVAE
from torch_geometric_mgvae.nn import DCGANDecoder
from torch_geometric_mgvae.transforms import (
    FixedHierarchy,
    get_fixed_clusters,
    image_to_graph,
)


def digits(n=4, side=32, seed=0):
    g = torch.Generator().manual_seed(seed)
    img = torch.zeros(n, 1, side, side)
    for k in range(n):  # a bar and a blob per image
        r = int(torch.randint(4, side - 8, (1, ), generator=g))
        img[k, 0, r:r + 4, 6:side - 6] = 1.0
        img[k, 0, 8:14, r:r + 5] = 0.6
    return img


def batch_of(images):
    return Batch.from_data_list([image_to_graph(im) for im in images])


def assert_order_invariant(model, batch, terms):
    r"""The loss terms of :obj:`batch` with the nodes of every graph
    shuffled equal :obj:`terms`."""
    n = batch.num_nodes // batch.num_graphs
    perm = torch.cat([torch.randperm(n) + n * b
                      for b in range(batch.num_graphs)])
    inv = torch.empty_like(perm)
    inv[perm] = torch.arange(perm.numel())
    pbatch = batch.clone()
    pbatch.x, pbatch.pos = batch.x[perm], batch.pos[perm]
    pbatch.edge_index = inv[batch.edge_index]
    terms2 = model.loss_terms(model(pbatch))
    for k in terms:
        assert torch.allclose(terms[k], terms2[k], rtol=1e-4), k


def test_quadtree_is_exact_at_every_level():
    model = ImageMGVAE(hidden_channels=4, latent_channels=4, num_layers=1,
                       decoder_channels=4)
    assert model.sizes == [32, 16, 8] and model.num_clusters == [256, 64]
    batch = batch_of(digits(2))
    levels = model.quadtree(batch.pos, batch.batch)
    r, c = batch.pos[:, 0], batch.pos[:, 1]
    assert torch.equal(levels[0], (r // 2) * 16 + c // 2)
    # The same ids from the FixedHierarchy transform (per graph):
    assert torch.equal(torch.cat(get_fixed_clusters(
        FixedHierarchy('grid', [256, 64])(batch))[:1]), levels[0])
    model.eval()
    out = model(batch)
    assert [lvl.num_nodes for lvl in out.levels] == [2048, 512, 128]
    so0, so1 = out.levels[0].select, out.levels[1].select
    assert so0.sizes().tolist() == [4] * 512
    assert so1.sizes().tolist() == [4] * 128
    # Coarse node k of image b is the 2x2 block (k // 16, k % 16):
    k = torch.arange(256)
    R, C = k // 16, k % 16
    assert torch.equal(levels[1][:256], (R // 2) * 8 + C // 2)
    first = so0.cluster_index[:1024]
    assert torch.equal(first, (r[:1024] // 2) * 16 + c[:1024] // 2)
    # The targets are the input zoomed out by 2x2 averages:
    img = digits(2)
    for i, S in enumerate([32, 16, 8]):
        assert torch.allclose(out.target[i], F.avg_pool2d(img, 32 // S),
                              atol=1e-6)


def test_image_mgvae_shapes_repr_sampling_and_invariance():
    torch.manual_seed(0)
    model = ImageMGVAE(hidden_channels=8, latent_channels=6, num_layers=2,
                       decoder_channels=4)
    assert str(model) == ('ImageMGVAE(1, 8, 6, sizes=[32, 16, 8], '
                          'num_layers=2, conv=MGNConv)')
    batch = batch_of(digits(3))
    model.eval()
    out = model(batch)
    assert [t.shape for t in out.logits] == [(3, 1, 32, 32), (3, 1, 16, 16),
                                             (3, 1, 8, 8)]
    assert [m.shape for m in out.mu] == [(3, 6)] * 3
    terms = model.loss_terms(out)
    assert sorted(terms) == ['kl_16', 'kl_32', 'kl_8', 'recon_16',
                             'recon_32', 'recon_8']
    # The loss does not depend on the order of the nodes of each graph:
    assert_order_invariant(model, batch, terms)
    gen = torch.Generator().manual_seed(1)
    s = model.sample(5, 16, generator=gen)
    assert s.shape == (5, 1, 16, 16) and 0 <= float(s.min())
    assert float(s.max()) <= 1
    assert model.sample(3).shape == (3, 1, 32, 32)
    with pytest.raises(ValueError, match='size'):
        model.sample(2, 12)


def test_image_models_reject_bad_inputs():
    model = ImageMGVAE(hidden_channels=4, latent_channels=4, num_layers=1,
                       decoder_channels=4)
    batch = batch_of(digits(1))
    with pytest.raises(ValueError, match='pos'):
        model(batch.x, batch.edge_index)
    with pytest.raises(ValueError, match='full 32 x 32 grid'):
        small = batch_of(digits(1, side=16))
        model(small)
    with pytest.raises(ValueError, match="'x' must be"):
        model(torch.rand(1024, 3), batch.edge_index, batch.pos)
    with pytest.raises(ValueError, match='4 \\* 2\\^k'):
        ImageMGVAE(image_size=24)
    with pytest.raises(ValueError, match='out_size'):
        DCGANDecoder(8, 12)
    with pytest.raises(ValueError, match='latents'):
        DCGANDecoder(8, 16)(torch.rand(2, 7))
    conv = ConvVAE(latent_channels=4, channels=4, decoder_channels=4)
    with pytest.raises(ValueError, match='images of shape'):
        conv(torch.rand(2, 1, 16, 16))
    with pytest.raises(ValueError, match='divide'):
        conv.sample(2, 12)
    assert str(DCGANDecoder(8, 16, 4)) == \
        'DCGANDecoder(8, out_size=16, channels=4)'
    assert DCGANDecoder(8, 16, 4)(torch.rand(2, 8)).shape == (2, 1, 16, 16)
    assert DCGANDecoder(8, 4, 4)(torch.rand(2, 8)).shape == (2, 1, 4, 4)


@pytest.mark.parametrize('kind', ['mgvae', 'conv'])
def test_tiny_training_run_lowers_the_loss(kind):
    torch.manual_seed(0)
    if kind == 'mgvae':
        model = ImageMGVAE(hidden_channels=8, latent_channels=8,
                           num_layers=2, decoder_channels=8)
    else:
        model = ConvVAE(latent_channels=8, channels=8, decoder_channels=8)
    batch = batch_of(digits(8))
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    gen = torch.Generator().manual_seed(0)
    losses = []
    for _ in range(25):
        opt.zero_grad()
        loss = sum(model.loss_terms(model(batch, generator=gen)).values())
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.7 * losses[0], losses
    # Same noise, same pass:
    model.train()
    out = model(batch, generator=torch.Generator().manual_seed(3))
    noise = [{'graph_eps': z} for z in
             ([out.levels[i].noise['graph_eps'] for i in range(3)]
              if kind == 'mgvae' else [(out.z[0] - out.mu[0]) /
                                       out.logstd[0].exp()])]
    again = model(batch, noise=noise)
    assert torch.allclose(again.z[0], out.z[0], atol=1e-5)


def test_readout_grid_means_per_cell_exactly():
    model = ImageMGVAE(hidden_channels=2, latent_channels=3, image_size=16,
                       num_layers=1, decoder_channels=4, readout_grid=2)
    assert model.graph_mu[0].in_features == 2 * 2 * 2
    # Two 4x4 grids (a level of side 4), z = (row, 10 * col + graph):
    r, c = torch.meshgrid(torch.arange(4), torch.arange(4), indexing='ij')
    pos = torch.stack([r.flatten(), c.flatten()], 1).repeat(2, 1)
    batch = torch.arange(2).repeat_interleave(16)
    z = torch.stack([pos[:, 0].float(),
                     10 * pos[:, 1].float() + batch.float()], 1)
    out = model.readout(z, pos, 4, batch, 2)
    # Cells (rows 0-1, cols 0-1), (0-1, 2-3), (2-3, 0-1), (2-3, 2-3):
    cell = torch.tensor([[0.5, 5.0], [0.5, 25.0], [2.5, 5.0], [2.5, 25.0]])
    assert torch.equal(out[0], cell.flatten())
    assert torch.equal(out[1], (cell + torch.tensor([0., 1.])).flatten())
    # Node order does not matter:
    perm = torch.randperm(32, generator=torch.Generator().manual_seed(0))
    assert torch.equal(model.readout(z[perm], pos[perm], 4, batch[perm], 2),
                       out)
    assert model.readout(z[:0], pos[:0], 4, batch[:0], 0).shape == (0, 8)
    with pytest.raises(ValueError, match='one of the level sides'):
        model.readout(z, pos, 5, batch, 2)


def test_readout_grid_and_norm_options():
    torch.manual_seed(0)
    model = ImageMGVAE(hidden_channels=8, latent_channels=6, num_layers=2,
                       decoder_channels=4, norm='batch_norm', readout_grid=4)
    assert str(model) == ("ImageMGVAE(1, 8, 6, sizes=[32, 16, 8], "
                          "num_layers=2, conv=MGNConv, norm='batch_norm', "
                          "readout_grid=4)")
    batch = batch_of(digits(3))
    model.eval()
    terms = model.loss_terms(model(batch))
    # Still independent of the order of the nodes of each graph:
    assert_order_invariant(model, batch, terms)
    for bad in (3, 16):  # must divide the coarsest side, 8
        with pytest.raises(ValueError, match='must divide'):
            ImageMGVAE(readout_grid=bad)
    with pytest.raises(ValueError, match='readout_grid'):
        ImageMGVAE(readout_grid=0)


def test_hierarchical_readout_reads_every_coarser_level_exactly():
    torch.manual_seed(0)
    model = ImageMGVAE(hidden_channels=3, latent_channels=5, image_size=16,
                       num_layers=1, decoder_channels=4, readout_grid=[2, 2, 4],
                       hierarchical_readout=True)
    assert model.sizes == [16, 8, 4] and model.readout_grids == [2, 2, 4]
    # Level l reads the readouts of levels l, ..., 2 (3 * R^2 each):
    assert [m.in_features for m in model.graph_mu] == [12 + 12 + 48,
                                                       12 + 48, 48]
    assert [m.in_features for m in model.graph_logstd] == [72, 60, 48]
    assert str(model).endswith("readout_grid=[2, 2, 4], "
                               "hierarchical_readout=True)")
    batch = batch_of(digits(3, side=16))
    model.eval()
    out = model(batch)
    # The quadtree's level-l positions are the pixel positions // 2^l:
    reads = [model.readout(lvl.z, torch.div(batch.pos, 2**i,
                                            rounding_mode='floor')[
                               _first_of_cluster(out, i)], side,
                           lvl.batch, 3)
             for i, (lvl, side) in enumerate(zip(out.levels, model.sizes))]
    for i in range(3):
        s = torch.cat(reads[i:], dim=-1)
        assert torch.allclose(out.mu[i], model.graph_mu[i](s), atol=1e-6)
        assert torch.allclose(out.logstd[i], model.graph_logstd[i](s),
                              atol=1e-6)
    assert_order_invariant(model, batch, model.loss_terms(out))
    # The finest latent moves when only a coarse level's features move:
    with torch.no_grad():
        model.graph_mu[0].weight[:, 24:].add_(1.0)
    assert not torch.allclose(model(batch).mu[0], out.mu[0])
    assert torch.allclose(model(batch).mu[1], out.mu[1])


def _first_of_cluster(out, level):
    r"""For every node of :obj:`level`, one finest node inside it."""
    idx = torch.arange(out.levels[0].num_nodes)
    for lvl in out.levels[:level]:
        c = lvl.select.cluster_index
        first = torch.full((lvl.select.num_clusters, ), -1, dtype=torch.long)
        first = first.scatter_reduce(0, c, idx, 'amax', include_self=True)
        idx = first
    return idx


def test_per_level_readout_grid_is_checked():
    model = ImageMGVAE(hidden_channels=2, latent_channels=3, num_layers=1,
                       decoder_channels=4, readout_grid=[8, 4, 8])
    assert [m.in_features for m in model.graph_mu] == [128, 32, 128]
    for bad, match in (([4, 4], '2 entries for 3 levels'),
                       ([4, 4, 16], "16 must divide its level's side 8"),
                       ([3, 4, 4], "3 must divide its level's side 32"),
                       ([4, 0, 4], 'readout_grid'),
                       (16, 'must divide the coarsest side 8')):
        with pytest.raises(ValueError, match=match):
            ImageMGVAE(readout_grid=bad)
    with pytest.raises(ValueError, match="'hierarchical_readout' must be"):
        ImageMGVAE(hierarchical_readout='yes')


def test_batch_norm_keeps_the_latents_apart_at_initialisation():
    # Without normalisation the coarsest level's posterior means of
    # different images agree to about 1e-6 of their size at initialisation
    # (the latents start out constant); with batch_norm they differ.
    batch = batch_of(digits(8))
    spread = {}
    for norm in (None, 'batch_norm'):
        torch.manual_seed(0)
        model = ImageMGVAE(hidden_channels=16, latent_channels=8,
                           num_layers=4, decoder_channels=4, norm=norm)
        with torch.no_grad():
            mu = model(batch).mu[-1]
        spread[norm] = float(mu.std(0).mean() / mu.abs().mean())
    assert spread[None] < 1e-4 < 1e-2 < spread['batch_norm'], spread


def test_free_bits_terms_are_exact_and_stop_the_kl_gradient_below():
    from torch_geometric_mgvae.models.image import (
        ImageOutput,
        free_bits_of,
        image_loss_terms,
    )
    # Two images, one level each of side 4 and 2; KL per image known:
    # KL(N(mu, 1) || N(0, 1)) = |mu|^2 / 2.
    mu = [torch.tensor([[2.0, 0.0], [0.0, 0.0]], requires_grad=True),
          torch.tensor([[4.0], [2.0]], requires_grad=True)]
    logstd = [torch.zeros(2, 2), torch.zeros(2, 1)]
    target = [torch.full((2, 1, 4, 4), 0.5), torch.full((2, 1, 2, 2), 0.5)]
    logits = [torch.zeros(2, 1, 4, 4), torch.zeros(2, 1, 2, 2)]
    out = ImageOutput([], 2, [4, 2], target, mu, logstd, mu, logits)
    plain = image_loss_terms(out)
    assert set(plain) == {'recon_4', 'kl_4', 'recon_2', 'kl_2'}
    assert plain['kl_4'].item() == pytest.approx(1.0)  # (4 / 2 + 0) / 2
    assert plain['kl_2'].item() == pytest.approx(5.0)  # (8 + 2) / 2
    terms = image_loss_terms(out, [3.0, 2.0])
    assert terms['free_bits_4'].item() == pytest.approx(2.0)  # 3 - 1
    assert terms['free_bits_2'].item() == 0.0  # KL 5 > 2
    for k in plain:  # the true terms are unchanged
        assert torch.equal(terms[k], plain[k]), k
    assert set(image_loss_terms(out, 0.0)) == set(plain)
    assert set(image_loss_terms(out, [0.0, 1.0])) == set(plain) | {
        'free_bits_2'}
    # kl + free bits = max(KL, F): no gradient below F, the KL's above.
    sum(terms.values()).backward()
    assert torch.equal(mu[0].grad, torch.zeros(2, 2))
    assert torch.allclose(mu[1].grad, mu[1].detach() / 2)
    # One value per level, one for all, or the first for fewer levels:
    assert free_bits_of(None, 3) == [0.0, 0.0, 0.0]
    assert free_bits_of(2, 3) == [2.0, 2.0, 2.0]
    assert free_bits_of([0, 8, 8], 1) == [0.0]
    for bad in ([1.0, 2.0], -1.0, float('nan'), 'x', ['a', 1, 1], True):
        with pytest.raises(ValueError, match="'free_bits'"):
            free_bits_of(bad, 3)
    model = ImageMGVAE(hidden_channels=4, latent_channels=4, num_layers=1,
                       decoder_channels=4)
    got = model.loss_terms(model(batch_of(digits(2))), free_bits=1e6)
    assert sorted(k for k in got if k.startswith('free_bits')) == [
        'free_bits_16', 'free_bits_32', 'free_bits_8']
    conv = ConvVAE(latent_channels=4, channels=4, decoder_channels=4)
    got = conv.loss_terms(conv(digits(2)), free_bits=[1e6, 0, 0])
    assert 'free_bits_32' in got and got['free_bits_32'].item() > 0


def test_kl_normal_from_a_gaussian_prior_is_exact():
    from torch_geometric_mgvae.models import kl_normal
    mu, logstd = torch.tensor([1.0, -2.0]), torch.tensor([0.0, 0.5])
    pm, pl = torch.tensor([0.5, 1.0]), torch.tensor([0.2, -0.3])
    s, p = logstd.exp(), pl.exp()
    want = torch.log(p / s) + (s**2 + (mu - pm)**2) / (2 * p**2) - 0.5
    assert torch.allclose(kl_normal(mu, logstd, pm, pl), want)
    assert torch.allclose(kl_normal(mu, logstd, torch.zeros(2),
                                    torch.zeros(2)), kl_normal(mu, logstd))
    assert torch.allclose(kl_normal(mu, logstd, mu, logstd), torch.zeros(2))
    with pytest.raises(ValueError, match='go together'):
        kl_normal(mu, logstd, pm)


def test_top_down_prior_terms_sampling_and_invariance():
    from torch_geometric_mgvae.models.image import TopDownPrior
    from torch_geometric_mgvae.models.mgvae import kl_normal
    torch.manual_seed(0)
    model = ImageMGVAE(hidden_channels=4, latent_channels=3, num_layers=1,
                       decoder_channels=4, top_down_prior=True)
    assert 'top_down_prior=True' in repr(model)
    assert [(p.lin1.in_features, p.lin2.out_features)
            for p in model.priors] == [(6, 6), (3, 6)]
    batch = batch_of(digits(3))
    out = model(batch)
    assert out.prior_mu[2] is None and out.prior_logstd[2] is None
    # At initialisation the prior is N(0, I) at every level:
    terms = model.loss_terms(out)
    for i, S in enumerate(out.sizes):
        assert torch.allclose(terms[f'kl_{S}'], kl_normal(
            out.mu[i], out.logstd[i]).sum() / 3)
    # Level l's prior reads the samples of the coarser levels, exactly:
    for prior in model.priors:
        torch.nn.init.normal_(prior.lin2.weight)
    out = model(batch, generator=torch.Generator().manual_seed(1))
    for i, prior in enumerate(model.priors):
        c = torch.cat(out.z[i + 1:], dim=-1)
        h = prior.lin2(torch.relu(prior.lin1(c)))
        assert torch.allclose(out.prior_mu[i], h[:, :3])
        assert torch.allclose(out.prior_logstd[i], h[:, 3:])
    terms = model.loss_terms(out)
    assert torch.allclose(terms['kl_32'], kl_normal(
        out.mu[0], out.logstd[0], out.prior_mu[0],
        out.prior_logstd[0]).sum() / 3)
    model.eval()
    assert_order_invariant(model, batch, model.loss_terms(model(batch)))
    # Sampling goes top-down: with priors of mean 2 and std 0.5 the 32 x 32
    # samples decode Z_32 = 2 + 0.5 eps (the third draw).
    for prior in model.priors:
        torch.nn.init.zeros_(prior.lin2.weight)
        with torch.no_grad():
            prior.lin2.bias.copy_(torch.tensor([2.0] * 3 + [-0.6931472] * 3))
    g = torch.Generator().manual_seed(4)
    eps = [torch.randn(5, 3, generator=g) for _ in range(3)]
    want = torch.sigmoid(model.image_decoders[0](2 + 0.5 * eps[2]))
    got = model.sample(5, 32, generator=torch.Generator().manual_seed(4))
    assert torch.allclose(got, want, atol=1e-6)
    want8 = torch.sigmoid(model.image_decoders[2](eps[0]))
    got8 = model.sample(5, 8, generator=torch.Generator().manual_seed(4))
    assert torch.allclose(got8, want8, atol=1e-6)
    with pytest.raises(ValueError, match='top_down_prior'):
        ImageMGVAE(top_down_prior='yes')
    assert repr(TopDownPrior(6, 3)) == 'TopDownPrior(6, 3)'
