import argparse
import json
import math
import os

import pytest
import torch
from torch_geometric import seed_everything
from torch_geometric.data import Data
from torch_geometric.utils import stochastic_blockmodel_graph

from torch_geometric_mgvae.experiments import link_prediction as lp


def sbm_graph(seed: int = 0) -> Data:
    torch.manual_seed(seed)
    sizes = [30, 30, 30]
    edge_index = stochastic_blockmodel_graph(
        sizes, [[0.35, 0.02, 0.02], [0.02, 0.35, 0.02], [0.02, 0.02, 0.35]])
    block = torch.arange(3).repeat_interleave(30)
    # Noisy block features:
    x = torch.nn.functional.one_hot(block, 3).float()
    x = x + 0.3 * torch.randn(90, 3)
    return Data(x=x, edge_index=edge_index, num_nodes=90)


def parse(argv):
    p = argparse.ArgumentParser()
    lp.add_arguments(p)
    return lp.resolve_args(p.parse_args(argv))


def test_split_has_no_held_out_edge_in_the_training_graph():
    data = sbm_graph()
    train, val, test = lp.split_edges(data, seed=0)
    n = data.num_nodes

    def keys(ei):
        return set((ei.min(0).values * n + ei.max(0).values).tolist())

    train_keys = keys(train.edge_index)
    for d in (val, test):
        assert not keys(d.pos_edge_label_index) & train_keys
        assert not keys(d.neg_edge_label_index) & keys(data.edge_index)
        assert d.pos_edge_label_index.size(1) == d.neg_edge_label_index.size(1)
    assert not keys(val.pos_edge_label_index) & keys(test.pos_edge_label_index)
    # 85/5/10 of the undirected edges:
    total = data.edge_index.size(1) // 2
    assert test.pos_edge_label_index.size(1) == int(math.floor(0.1 * total))
    assert train.edge_index.size(1) // 2 + val.pos_edge_label_index.size(
        1) + test.pos_edge_label_index.size(1) == total
    # Another seed gives another split:
    other = lp.split_edges(data, seed=1)[2]
    assert keys(other.pos_edge_label_index) != keys(test.pos_edge_label_index)


def test_check_split_catches_leakage():
    train, val, test = lp.split_edges(sbm_graph(), seed=0)
    leaky = test.clone()
    leaky.pos_edge_label_index = train.edge_index[:, :3].flip(0)
    with pytest.raises(RuntimeError, match='test edge'):
        lp.check_split(train, val, leaky)


def test_auc_ap_and_cluster_stats_hand_values():
    auc, ap = lp.auc_ap(torch.tensor([3., 2.]), torch.tensor([1., 2.5]))
    assert auc == pytest.approx(0.75)
    assert ap == pytest.approx((1 + 2 / 3) / 2)
    # NaN scores (a diverged model) stop training like a non-finite loss,
    # not with scikit-learn's ValueError after the epoch:
    from torch_geometric_mgvae.experiments.train import NonFiniteError
    with pytest.raises(NonFiniteError, match="non-finite edge score"):
        lp.auc_ap(torch.tensor([float('nan')]), torch.tensor([0.]))
    stats = lp.cluster_size_stats(torch.tensor([0, 0, 0, 1]), 4)
    assert stats['cluster_min'] == 0 and stats['cluster_max'] == 3
    assert stats['cluster_empty'] == 2
    p = torch.tensor([0.75, 0.25], dtype=torch.float64)
    assert stats['cluster_kl'] == pytest.approx(float((p * (p * 4).log()
                                                       ).sum()))
    assert lp.cluster_size_stats(torch.arange(8) % 4, 4)['cluster_kl'] == 0
    assert lp.clusters_per_level(7) == [128, 64, 32, 16, 8, 4, 2]
    assert lp.clusters_per_level(3) == [64, 16, 4]


@pytest.mark.parametrize('variant', ['learned', 'spectral', 'kmeans'])
def test_pipeline_learns_links_on_a_block_model(variant):
    data = sbm_graph()
    train, val, test = lp.split_edges(data, seed=0)
    args = parse(['--hidden', '16', '--latent', '8', '--cluster-balance',
                  '10'])
    K = [6, 3]
    seed_everything(0)
    model = lp.MGVAELinkModel(3, K, variant, args,
                              lp.level_clusters(train, variant, K, 0))
    res = lp.train_model(model, train, val, test, epochs=150, lr=0.01,
                         eval_every=5)
    assert res['auc'] > 0.7, res  # chance is 0.5; 50 test edges
    assert res['val_auc'] > 0.75, res
    assert 0 < res['epoch'] <= 150 and res['step_seconds'] > 0
    clusters = model.finest_clusters(train, training=False)
    assert clusters.shape == (90, ) and int(clusters.max()) < 6


def test_vgae_baseline_learns_links_on_a_block_model():
    data = sbm_graph()
    train, val, test = lp.split_edges(data, seed=0)
    seed_everything(0)
    res = lp.train_model(lp.VGAEBaseline(3, 8), train, val, test, epochs=60,
                         lr=0.01)
    assert res['auc'] > 0.75, res


@pytest.fixture
def cora_root(tmp_path_factory, shared_data):
    r"""A Planetoid root with Cora, outside the test's working directory."""
    root = tmp_path_factory.mktemp('planetoid')
    lp.load_dataset('Cora', str(root), shared_data)
    return str(root)


def test_run_writes_records_table_and_plot(tmp_path, cora_root,
                                           monkeypatch):
    monkeypatch.chdir(tmp_path)
    args = parse(['--dataset', 'Cora', '--root', cora_root, '--seeds', '2',
                  '--epochs', '2', '--eval-every', '1', '--variants',
                  'learned', '--levels', '3', '--out', 'out',
                  '--no-progress'])
    recs = lp.run(args, command='test')
    # The records go into --out by default; nothing outside it:
    out, results = tmp_path / 'out', tmp_path / 'out' / lp.RESULTS_NAME
    written = [os.path.relpath(os.path.join(d, f), tmp_path)
               for d, _, fs in os.walk(tmp_path) for f in fs]
    assert written and all(f.startswith('out' + os.sep) for f in written)
    methods = {r['method'] for r in recs}
    assert methods == {'PyG VGAE', 'MGVAE (learned, L=3)'}
    saved = json.loads(results.read_text())
    assert len(saved) == len(recs)
    metrics = {r['metric'] for r in recs if r['method'] != 'PyG VGAE'}
    assert {'AUC', 'AP', 'time_ratio_vs_vgae', 'cluster_kl',
            'train_cluster_kl'} <= metrics
    for r in recs:
        assert r['command'] == 'test' and r['n'] == 2
        assert 'RandomLinkSplit' in r['protocol']
    assert os.path.exists(out / 'cluster_sizes_Cora.png')
    assert '| Cora | L=3 | PyG VGAE |' in (
        out / 'link_prediction.md').read_text()
    assert all(lp.run_levels(r) == [3] for r in recs)
    assert (out / 'link_prediction.csv').read_text().startswith('task,')
    assert 'collapsed_runs' in metrics
    # Every seed's results, without tensors:
    summary = json.loads((out / 'summary.json').read_text())
    assert len(summary['Cora']['MGVAE (learned, L=3)']) == 2


def test_run_without_hierarchy(tmp_path, cora_root, monkeypatch):
    monkeypatch.chdir(tmp_path)
    args = parse(['--dataset', 'Cora', '--root', cora_root, '--seeds', '1',
                  '--epochs', '2', '--eval-every', '1', '--levels', '0',
                  '--no-baseline', '--out', 'out', '--no-progress'])
    recs = lp.run(args, command='test')
    assert {r['method'] for r in recs} == {lp.FLAT_NAME}
    assert 'cluster_kl' not in {r['metric'] for r in recs}
    assert all(lp.run_levels(r) == [0] for r in recs)
    assert lp.clusters_per_level(0) == [1]
    model = lp.MGVAELinkModel(4, [1], 'flat', args,
                              lp.level_clusters(sbm_graph(), 'flat', [1], 0))
    assert not model.mgvae.comembership
    assert not model.mgvae.hierarchical_decoding


def test_a_collapsed_clustering_is_reported(capsys, monkeypatch):
    from tqdm import tqdm

    from torch_geometric_mgvae.experiments.state import TrainingSession
    assert lp.collapsed(torch.zeros(5, dtype=torch.long), 4)
    assert not lp.collapsed(torch.tensor([0, 1, 0]), 4)
    assert not lp.collapsed(torch.zeros(5, dtype=torch.long), 1)
    data = sbm_graph()
    train, val, test = lp.split_edges(data, seed=0)
    args = parse(['--hidden', '8', '--latent', '4', '--epochs', '2',
                  '--eval-every', '1', '--no-progress'])
    monkeypatch.setattr(
        lp.MGVAELinkModel, 'finest_clusters',
        lambda self, train, training: torch.zeros(train.num_nodes,
                                                  dtype=torch.long))
    res = lp._run_job(args, data, train, val, test, 0, 'learned', [4, 2],
                      'Cora seed 0 x', TrainingSession(), tqdm)
    assert res['collapsed'] == 1.0
    assert 'WARNING: the learned clustering collapsed' in \
        capsys.readouterr().out
    res.pop('clusters')
    recs = lp.dataset_records('Cora', data, {'MGVAE (learned, L=2)': [res]},
                              args, 'test')
    rec = [r for r in recs if r['metric'] == 'collapsed_runs'][0]
    assert rec['value'] == 1 and rec['n'] == 1
    assert 'collapsed to one cluster in 1 of 1 runs' in lp.format_table(recs)


def test_learned_clusters_that_follow_the_blocks_beat_random_ones():
    from sklearn.metrics import adjusted_rand_score
    data = sbm_graph()
    train, val, test = lp.split_edges(data, seed=0)
    args = parse(['--hidden', '16', '--latent', '8'])
    K = [3]
    seed_everything(0)
    model = lp.MGVAELinkModel(3, K, 'learned', args)
    assert model.mgvae.comembership  # the driver's default
    lp.train_model(model, train, val, test, epochs=100, lr=0.01,
                   eval_every=5)
    clusters = model.finest_clusters(train, training=False)
    block = torch.arange(3).repeat_interleave(30)
    assert adjusted_rand_score(block, clusters) > 0.9
    dep = lp.cluster_dependence(model, train, test, seed=0,
                                modes=('own', 'random balanced',
                                       'finest latent only'))
    assert dep['own']['auc'] > dep['random balanced']['auc'] + 0.01, dep
    assert dep['own']['kl'] < 0.01  # balanced at evaluation
    # Evaluation only: the model keeps its own clusters.
    assert model.clusters is None


def test_runs_with_other_levels_stay_side_by_side(tmp_path):
    from torch_geometric_mgvae.experiments.results import (
        record,
        write_dataset_records,
    )
    path = str(tmp_path / 'lp.json')

    def run_records(levels, auc):
        setting = dict(levels=levels)
        return [record(lp.TASK, 'Cora', m, metric, auc, None,
                       setting=setting)
                for m in ('PyG VGAE', f'MGVAE (learned, L={levels[0]})')
                for metric in ('AUC', 'AP', 'step_seconds')]

    def write(levels, auc):
        write_dataset_records(path, lp.TASK, 'Cora',
                              run_records(levels, auc),
                              lambda r: lp.run_levels(r) == levels)

    write([7], 0.8)
    write([3], 0.7)
    write([3], 0.6)  # a rerun replaces only its own run's rows
    saved = json.loads(open(path).read())
    assert len(saved) == 12
    assert sorted(r['value'] for r in saved if r['metric'] == 'AUC') == [
        0.6, 0.6, 0.8, 0.8]
    table = lp.format_table(saved)
    assert '| Cora | L=7 | PyG VGAE | 80.00 |' in table
    assert '| Cora | L=3 | PyG VGAE | 60.00 |' in table
    assert '| Cora | L=3 | MGVAE (learned, L=3) | 60.00 |' in table
    # Records written before runs carried their levels are L = 7 runs.
    assert lp.run_levels({'setting': None}) == [7]


def test_defaults_are_the_readme_configuration():
    # The README's best configuration on validation AUC (L = 3 learned,
    # balanced, co-membership) on one intra-op thread.
    args = parse([])
    assert args.levels == [3] and args.threads == 1
    assert lp.clusters_per_level(3) == [64, 16, 4]
    assert args.cluster_balance == 10 and args.eval_assign == 'balanced'
    assert args.cluster_features == 10 and args.cluster_init_epochs == 50
    assert not args.no_comembership and not args.hierarchical
    assert args.epochs == 300 and args.eval_every == 10
    with pytest.raises(SystemExit):
        parse(['--threads', '0'])


def test_bad_arguments():
    with pytest.raises(SystemExit):  # rejected while parsing
        parse(['--levels', '5'])
    with pytest.raises(SystemExit):
        parse(['--epochs', '0'])
    with pytest.raises(lp.UsageError, match='--norm'):
        parse(['--norm', 'bogus'])
    assert parse(['--norm', 'none']).norm is None


def test_train_model_resumes_exactly_and_stops_at_nan(tmp_path,
                                                      monkeypatch):
    import signal

    from torch_geometric_mgvae.experiments.state import (
        Interrupted,
        TrainingSession,
    )
    from torch_geometric_mgvae.experiments.train import NonFiniteError
    data = sbm_graph()
    train, val, test = lp.split_edges(data, seed=0)
    args = parse(['--hidden', '8', '--latent', '4'])

    def fit(session=None, progress=None):
        seed_everything(0)
        model = lp.MGVAELinkModel(3, [6, 3], 'learned', args)
        res = lp.train_model(model, train, val, test, epochs=6, lr=0.01,
                             eval_every=2, progress=progress,
                             session=session, key='job')
        return model, res

    full, res_full = fit()

    def interrupt(epoch, loss, val_auc):
        if epoch == 4:
            signal.raise_signal(signal.SIGINT)

    out = str(tmp_path / 'state')
    ns = argparse.Namespace(out=out)
    with pytest.raises(Interrupted):
        with TrainingSession(out, ns, every=0) as session:
            fit(session, interrupt)
    with TrainingSession(out, ns, resume=True) as session:
        resumed, res = fit(session)
    assert {k: v for k, v in res.items() if k != 'step_seconds'} == {
        k: v for k, v in res_full.items() if k != 'step_seconds'}
    for a, b in zip(full.parameters(), resumed.parameters()):
        assert torch.equal(a, b)

    real = lp.MGVAELinkModel.loss_terms
    calls = [0]

    def nan_terms(self, g):
        terms = real(self, g)
        calls[0] += 1
        if calls[0] == 3:
            terms['balanced_cut'] = terms['balanced_cut'] * float('inf')
        return terms

    monkeypatch.setattr(lp.MGVAELinkModel, 'loss_terms', nan_terms)
    with pytest.raises(NonFiniteError, match="'balanced_cut'.* epoch 3"):
        with TrainingSession() as session:
            fit(session)


def test_spectral_start_of_the_learned_clustering():
    # --cluster-features: the spectral embedding of the training graph feeds
    # the finest clustering; --cluster-init-epochs: the clusterings are
    # pulled towards the balanced spectral hierarchy in the first epochs.
    data = sbm_graph()
    train, val, test = lp.split_edges(data, seed=0)
    args = parse(['--hidden', '8', '--latent', '4', '--cluster-features',
                  '3', '--cluster-init-epochs', '2'])
    seed_everything(0)
    model = lp.MGVAELinkModel(3, [4, 2], 'learned', args)
    inputs = model.graph_inputs(train)
    assert inputs['cluster_x'].shape == (train.num_nodes, 3)
    assert torch.allclose(inputs['cluster_x'].mean(0), torch.zeros(3),
                          atol=1e-5)
    assert [sorted(torch.bincount(t).tolist()) for t in inputs['targets']
            ] == [[22, 22, 23, 23], [2, 2]]  # balanced
    assert model.graph_inputs(train) is inputs  # computed once per graph
    model.train()
    model.set_epoch(2)
    assert 'cluster_init' in model.loss_terms(train)
    model.set_epoch(3)
    assert 'cluster_init' not in model.loss_terms(train)
    model.eval()
    model.set_epoch(1)
    assert 'cluster_init' not in model.loss_terms(train)
    res = lp.train_model(model, train, val, test, epochs=4, lr=0.01,
                         eval_every=2)
    assert model.epoch == 4 and 0.0 <= res['auc'] <= 1.0
    # Fixed clusterings take neither:
    fixed = lp.MGVAELinkModel(
        3, [4, 2], 'spectral', args,
        lp.level_clusters(train, 'spectral', [4, 2], 0))
    assert fixed.cluster_features == 0 and fixed.cluster_init_epochs == 0
    assert 'cluster_init' not in fixed.loss_terms(train)
    with pytest.raises(SystemExit):
        parse(['--cluster-features', '-1'])
