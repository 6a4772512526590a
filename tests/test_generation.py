import json
import os
import shutil

import pytest
import torch

from torch_geometric_mgvae.cli import main
from torch_geometric_mgvae.datasets import make_community_dataset
from torch_geometric_mgvae.datasets.graph_generation import read_graph_list
from torch_geometric_mgvae.experiments.generation import (
    ER,
    FLOOR,
    KERNELS,
    GenerationExperiment,
    erdos_renyi_graphs,
    graph_density,
    graph_stats,
    matched_erdos_renyi,
    mean_density,
    parse_args,
)
from torch_geometric_mgvae.experiments.results import write_dataset_records

STATS = ('degree', 'clustering', 'orbit', 'avg')


def _edge_set(g):
    return frozenset(map(tuple, g.edge_index.t().tolist())), int(g.num_nodes)


def test_erdos_renyi_matches_size_and_density():
    train = make_community_dataset(30, seed=0)
    gen = torch.Generator().manual_seed(0)
    er = matched_erdos_renyi(train, 2000, gen)
    assert len(er) == 2000
    sizes = [g.num_nodes for g in train]
    assert {g.num_nodes for g in er} <= set(sizes)
    mean_n = sum(sizes) / len(sizes)
    assert abs(sum(g.num_nodes for g in er) / len(er) - mean_n) < 0.3
    assert abs(mean_density(er) - mean_density(train)) < 0.01
    # Undirected, no self loops, and the same graphs for the same seed:
    g = er[0]
    assert not (g.edge_index[0] == g.edge_index[1]).any()
    assert graph_stats(er[:1])['edges'] == g.edge_index.size(1) // 2
    a, b = (matched_erdos_renyi(train, 5, torch.Generator().manual_seed(1))
            for _ in range(2))
    assert all(torch.equal(x.edge_index, y.edge_index) for x, y in zip(a, b))


def test_erdos_renyi_extremes_and_density():
    full, empty = erdos_renyi_graphs([5, 1], 1.0)
    assert graph_density(full) == 1.0 and full.edge_index.size(1) == 20
    assert graph_density(empty) == 0.0 and empty.num_nodes == 1
    assert erdos_renyi_graphs([6], 0.0)[0].edge_index.size(1) == 0


def test_per_dataset_defaults():
    a = parse_args(['--dataset', 'community-small'])
    assert (a.order, a.covariance, a.prior, a.global_decoder,
            a.clusters) == (1, 'diag', 'standard', 'mlp', [2, 1])
    assert a.root == os.path.join('data', 'community_small')
    b = parse_args(['--dataset', 'ego-small'])
    assert (b.order, b.covariance, b.prior, b.global_decoder) == (
        2, 'mrf', 'learnable', 'second_order')
    c = parse_args(['--dataset', 'ego-small', '--order', '1'])
    assert (c.covariance, c.global_decoder) == ('diag', 'inner')
    with pytest.raises(SystemExit):  # rejected while parsing
        parse_args(['--seeds', '0'])


def test_write_dataset_records_replaces_only_its_dataset(tmp_path):
    path = str(tmp_path / 'r.json')
    rec = dict(task='graph_generation', metric='m', value=1.0)
    json.dump([dict(rec, dataset='ego-small', method='old'),
               dict(rec, dataset='community-small', method='old config'),
               dict(rec, task='other', dataset='community-small',
                    method='x')], open(path, 'w'))
    write_dataset_records(path, 'graph_generation', 'community-small',
                          [dict(rec, dataset='community-small',
                                method='new config')])
    kept = {(r['task'], r['dataset'], r['method'])
            for r in json.load(open(path))}
    assert kept == {('graph_generation', 'ego-small', 'old'),
                    ('other', 'community-small', 'x'),
                    ('graph_generation', 'community-small', 'new config')}


@pytest.fixture(scope='module')
def community_root(tmp_path_factory):
    src = os.path.join(os.path.dirname(__file__), '..', '..', 'shared',
                       'data', 'community_small',
                       'community_small.edgelists.json')
    if not os.path.exists(src):
        pytest.skip('shared data folder not available')
    root = tmp_path_factory.mktemp('community_small')
    os.makedirs(root / 'raw')
    shutil.copy(src, root / 'raw')
    return str(root), src


def test_split_is_gdss_and_disjoint(community_root, tmp_path):
    root, src = community_root
    args = parse_args(['--root', root, '--out', str(tmp_path / 'out'),
                       '--results', str(tmp_path / 'r.json'),
                       '--kernel', 'gran'])
    exp = GenerationExperiment(args, log=lambda *a: None)
    stored = read_graph_list(src)
    assert len(exp.test_graphs) == 20 and len(exp.train_graphs) == 80
    assert [_edge_set(g) for g in exp.test_graphs] == [
        _edge_set(g) for g in stored[:20]]
    assert [_edge_set(g) for g in exp.train_graphs] == [
        _edge_set(g) for g in stored[20:]]
    # Disjoint as a split of the stored list. The stored list itself holds
    # repeated graphs (GDSS drew both communities with fixed seeds), so
    # some test graphs also occur in the training part; that is counted
    # and reported, not hidden:
    train = {_edge_set(g) for g in exp.train_graphs}
    copies = sum(_edge_set(g) in train for g in exp.test_graphs)
    assert exp.duplicates['exact'] == copies
    assert copies <= exp.duplicates['isomorphic'] <= len(exp.test_graphs)
    assert exp.max_nodes == max(g.num_nodes for g in stored)


def test_generate_end_to_end(community_root, tmp_path, monkeypatch):
    root, _ = community_root
    monkeypatch.chdir(tmp_path)
    assert main(['generate', '--dataset', 'community-small', '--root', root,
                 '--epochs', '1', '--seeds', '1', '--num-samples', '16',
                 '--out', 'out', '--no-progress']) == 0
    # The records go into --out by default; nothing outside it:
    out, res = tmp_path / 'out', tmp_path / 'out' / 'graph_generation.json'
    written = [os.path.relpath(os.path.join(d, f), tmp_path)
               for d, _, fs in os.walk(tmp_path) for f in fs]
    assert written and all(f.startswith('out' + os.sep) for f in written)
    records = json.loads(res.read_text())
    methods = {r['method'] for r in records}
    mgvae = [m for m in methods if m.startswith('MGVAE (')]
    assert len(mgvae) == 1 and {ER, FLOOR} < methods and len(methods) == 3
    have = {(r['method'], r['metric']) for r in records}
    for method in methods:
        for kernel in KERNELS:
            for stat in STATS:
                assert (method, f'{stat}_mmd_{kernel}') in have
    assert (mgvae[0], 'sample_seconds') in have
    for r in records:
        assert r['task'] == 'graph_generation'
        assert r['dataset'] == 'community-small' and r['device'] == 'cpu'
        assert r['value'] >= 0 and r['command']
        if 'mmd' in r['metric']:
            assert r['metric'].rsplit('_', 1)[1] in r['protocol'].lower()
    for name in ('generated_vs_test.png', 'training_curve.png',
                 'summary.json', 'mgvae_seed0.pt', 'train_state.pt'):
        assert (out / name).exists(), name
    ckpt = torch.load(out / 'mgvae_seed0.pt', weights_only=True)
    assert ckpt['model_kwargs']['max_nodes'] == ckpt['max_nodes']
    from torch_geometric_mgvae import MGVAE
    MGVAE(**ckpt['model_kwargs']).load_state_dict(ckpt['model'])


def test_fitted_latent_sampler():
    from torch_geometric_mgvae.experiments.generation import (
        build_model,
        fit_latent_gaussian,
        sample_fitted,
    )
    from torch_geometric_mgvae.experiments.train import structural_transform
    train = make_community_dataset(12, seed=0)
    args = parse_args(['--dataset', 'community-small',
                       '--latent-sampler', 'fitted', '--kl-weight', '0.01'])
    assert args.latent_sampler == 'fitted' and args.kl_weight == 0.01
    assert parse_args([]).latent_sampler == 'prior'
    with pytest.raises(ValueError):
        parse_args(['--latent-sampler', 'fitted', '--hierarchical-decoding'])
    features = structural_transform()
    data = [features(g) for g in train]
    max_nodes = max(int(g.num_nodes) for g in train)
    torch.manual_seed(0)
    model = build_model(args, data[0].num_features, max_nodes)
    model.fit_num_nodes(train)
    mean, std = fit_latent_gaussian(model, data, max_nodes)
    assert mean.shape == std.shape == (max_nodes, args.latent)
    assert (std >= 0).all() and torch.isfinite(mean).all()
    a, b = (sample_fitted(model, mean, std, 20,
                          torch.Generator().manual_seed(3)) for _ in range(2))
    sizes = {int(g.num_nodes) for g in train}
    assert len(a) == 20 and {g.num_nodes for g in a} <= sizes
    assert all(torch.equal(x.edge_index, y.edge_index) for x, y in zip(a, b))
    for g in a:  # undirected, no self loops, inside the graph
        ei = g.edge_index
        assert not (ei[0] == ei[1]).any()
        assert ei.numel() == 0 or int(ei.max()) < g.num_nodes
        assert graph_stats([g])['edges'] * 2 == ei.size(1)
    from torch_geometric_mgvae.experiments.generation import method_name
    assert 'fitted latent sampler' in method_name(args)
    assert 'KL weight 0.01' in method_name(args)


def test_prior_sample_on_given_prior_nodes():
    from torch_geometric_mgvae.nn import LearnablePrior
    prior = LearnablePrior(5, 2, full_covariance=False, eps=1e-12)
    with torch.no_grad():
        prior.mu_hat.copy_(100 * torch.arange(5.).view(-1, 1).repeat(1, 2))
        prior.L_param.fill_(-30.0)  # std e^-30: z is the mean
    index = torch.tensor([[4, 1, 3], [2, 0, 0]])
    z, mask = prior.sample(torch.tensor([3, 2]), torch.Generator(),
                           index=index)
    assert mask.tolist() == [[True] * 3, [True, True, False]]
    assert torch.allclose(z[0], torch.tensor([[400.] * 2, [100.] * 2,
                                              [300.] * 2]), atol=1e-3)
    assert torch.allclose(z[1, :2], torch.tensor([[200.] * 2, [0.] * 2]),
                          atol=1e-3)
    with pytest.raises(ValueError, match="'index' has shape"):
        prior.sample(torch.tensor([3, 2]), index=index[:, :2])
    with pytest.raises(ValueError, match='outside'):
        prior.sample(torch.tensor([3, 2]), index=index + 1)
    # temperature T: z = mean + T (z(1) - mean) on the same nodes and noise
    sizes, g = torch.tensor([3, 2]), torch.Generator
    prior.L_param.data.fill_(0.0)
    z1, _ = prior.sample(sizes, g().manual_seed(0), index=index)
    zt, _ = prior.sample(sizes, g().manual_seed(0), index=index,
                         temperature=0.25)
    z0, _ = prior.sample(sizes, g().manual_seed(0), index=index,
                         temperature=0.0)
    assert torch.allclose(zt, z0 + 0.25 * (z1 - z0), atol=1e-5)
    with pytest.raises(ValueError, match='temperature'):
        prior.sample(sizes, index=index, temperature=-1.0)
    prior.L_param.data.fill_(-30.0)
    # past a graph's size the index is ignored (padding):
    padded = index.clone()
    padded[1, 2] = 99
    z2, _ = prior.sample(torch.tensor([3, 2]), torch.Generator(),
                         index=padded)
    assert torch.allclose(z2[1, :2], z[1, :2], atol=1e-3)


def test_matched_latent_sampler():
    from torch_geometric_mgvae.experiments.generation import (
        build_model,
        fit_matched_subsets,
        method_name,
        sample_matched,
    )
    from torch_geometric_mgvae.experiments.train import structural_transform
    train = make_community_dataset(6, seed=0)
    args = parse_args(['--dataset', 'ego-small', '--latent-sampler',
                       'matched', '--hidden', '8', '--latent', '4'])
    assert 'matched latent sampler' in method_name(args)
    with pytest.raises(ValueError, match='needs'):
        parse_args(['--latent-sampler', 'matched'])  # standard prior
    with pytest.raises(ValueError, match='hierarchical'):
        parse_args(['--dataset', 'ego-small', '--latent-sampler', 'matched',
                    '--hierarchical-decoding'])
    features = structural_transform()
    data = [features(g) for g in train]
    max_nodes = max(int(g.num_nodes) for g in train) + 3
    torch.manual_seed(0)
    model = build_model(args, data[0].num_features, max_nodes)
    subsets = fit_matched_subsets(model, data)
    assert [len(s) for s in subsets] == [int(g.num_nodes) for g in train]
    for s in subsets:  # sorted, distinct prior nodes (Hungarian matching)
        assert torch.equal(s, s.unique()) and int(s.max()) < max_nodes
    # The subset of a graph does not depend on its node order:
    perm = torch.randperm(int(train[0].num_nodes))
    inv = torch.empty_like(perm)
    inv[perm] = torch.arange(perm.numel())
    g = train[0].clone()
    g.edge_index = inv[g.edge_index]
    assert torch.equal(fit_matched_subsets(model, [features(g)])[0],
                       subsets[0])
    a, b = (sample_matched(model, subsets, 30,
                           torch.Generator().manual_seed(1))
            for _ in range(2))
    assert all(torch.equal(x.edge_index, y.edge_index) for x, y in zip(a, b))
    assert {g.num_nodes for g in a} <= {len(s) for s in subsets}
    for g in a:
        ei = g.edge_index
        assert not (ei[0] == ei[1]).any()
        assert ei.numel() == 0 or int(ei.max()) < g.num_nodes
    assert sample_matched(model, subsets, 0) == []
    with pytest.raises(ValueError, match='No subsets'):
        sample_matched(model, [], 3)
    with pytest.raises(ValueError, match='Need at least one graph'):
        fit_matched_subsets(model, [])
    plain = build_model(parse_args(['--hidden', '8', '--latent', '4']),
                        data[0].num_features, max_nodes)
    with pytest.raises(ValueError, match='learnable prior'):
        fit_matched_subsets(plain, data)
    with pytest.raises(ValueError, match='learnable prior'):
        sample_matched(plain, subsets, 3)


def test_generate_end_to_end_fitted(community_root, tmp_path):
    root, _ = community_root
    out, res = tmp_path / 'out', tmp_path / 'results.json'
    assert main(['generate', '--dataset', 'community-small', '--root', root,
                 '--epochs', '1', '--seeds', '1', '--num-samples', '16',
                 '--kernel', 'graphrnn', '--latent-sampler', 'fitted',
                 '--out', str(out), '--results', str(res),
                 '--no-progress']) == 0
    records = json.loads(res.read_text())
    assert any('fitted latent sampler' in r['method'] for r in records)


def test_generate_resume_keeps_finished_seeds(community_root, tmp_path,
                                              monkeypatch, capsys):
    import signal

    from torch_geometric_mgvae.experiments import generation
    root, _ = community_root
    argv = ['generate', '--root', root, '--epochs', '2', '--seeds', '2',
            '--num-samples', '8', '--kernel', 'gran', '--hidden', '8',
            '--latent', '4', '--no-progress']
    full, cut = tmp_path / 'full', tmp_path / 'cut'
    assert main(argv + ['--out', str(full)]) == 0
    real = generation.GenerationExperiment.train_epoch
    epochs = []

    def train_epoch(self):
        epochs.append((self.seed, len(self.history) + 1))
        if epochs[-1] == (1, 1):
            signal.raise_signal(signal.SIGTERM)
        return real(self)

    monkeypatch.setattr(generation.GenerationExperiment, 'train_epoch',
                        train_epoch)
    assert main(argv + ['--out', str(cut)]) == 130
    assert 'SIGTERM after epoch 1 (seed 1)' in capsys.readouterr().err
    assert not (cut / 'graph_generation.json').exists()
    assert main(argv + ['--out', str(cut), '--resume']) == 0
    # Seed 0 was not trained again; seed 1 continued at epoch 2:
    assert epochs == [(0, 1), (0, 2), (1, 1), (1, 2)]
    for seed in (0, 1):
        a, b = (torch.load(d / f'mgvae_seed{seed}.pt',
                           weights_only=True)['model'] for d in (full, cut))
        for k, v in a.items():
            if isinstance(v, torch.Tensor):
                assert torch.equal(v, b[k]), (seed, k)

    def mmd(d):
        return {(r['method'], r['metric']): r['value'] for r in json.loads(
            (d / 'graph_generation.json').read_text()) if 'mmd' in
            r['metric']}

    assert mmd(full) == mmd(cut)
