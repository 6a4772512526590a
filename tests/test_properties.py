import json
import math
import os

import pytest
import torch
from torch_geometric.data import Batch, Data
from torch_geometric.loader import DataLoader

from torch_geometric_mgvae.experiments import properties as P
from torch_geometric_mgvae.models.property import (
    DiffLevelPool,
    HierarchicalRegressor,
    MGNLevelPool,
    MLPRegressor,
    PerTargetMLP,
    check_outputs,
    make_pools,
)

rdkit = pytest.importorskip('rdkit')


# Targets ##################################################################

def _plogp_by_hand(logp, sa, cycle):
    return ((logp - 2.4570953396190123) / 1.434324401111988 +
            (-sa + 3.0525811293166134) / 0.8335207024513095 +
            (-cycle + 0.0485696876403053) / 0.2860212110245455)


def test_zinc_targets_by_hand():
    # (SMILES, logP, SA as in the file, longest cycle - 6 counted by hand)
    rows = [('CCO', -0.0014, 1.98, 0),          # no ring
            ('c1ccccc1', 1.6866, 1.0, 0),       # 6-ring: no penalty
            ('C1CCCCCCC1', 3.12, 2.1, 2)]       # 8-ring: cycle 2
    y = torch.tensor([[lp, sa, lp - sa] for _, lp, sa, _ in rows])
    out = P.zinc_targets([r[0] for r in rows], y)
    assert out.shape == (3, 2)
    for i, (_, lp, sa, cyc) in enumerate(rows):
        assert float(out[i, 0]) == pytest.approx(_plogp_by_hand(lp, sa, cyc),
                                                 abs=1e-5)
        assert float(out[i, 1]) == pytest.approx(lp, abs=1e-6)
    # cyclooctane by hand: (3.12 - 2.4571)/1.4343 + (-2.1 + 3.0526)/0.8335
    # + (-2 + 0.0486)/0.2860 = 0.4622 + 1.1429 - 6.8227
    assert float(out[2, 0]) == pytest.approx(-5.2176, abs=1e-3)


def test_hartree_to_ev_and_atomization():
    assert P.HARTREE_TO_EV == pytest.approx(27.211386246)
    # torch_geometric's QM9 atom references (eV) are ours times the factor:
    assert P.ATOM_REF_HARTREE['C'][0] * P.HARTREE_TO_EV == pytest.approx(
        -1029.86312267, abs=1e-3)
    assert P.ATOM_REF_HARTREE['H'][3] * P.HARTREE_TO_EV == pytest.approx(
        -13.90303183, abs=1e-3)
    counts = P.element_counts(['C', 'O', 'C#N'])  # CH4, H2O, HCN
    assert counts.tolist() == [[4, 1, 0, 0, 0], [2, 0, 0, 1, 0],
                               [1, 1, 1, 0, 0]]
    # Methane: U0 = -40.47893 Ha, HOMO = -0.3877 Ha, ZPVE = 0.044749 Ha.
    y = torch.zeros(1, 15, dtype=torch.float64)
    y[0, 2], y[0, 6], y[0, 7] = -0.3877, 0.044749, -40.47893
    y[0, 8] = y[0, 9] = y[0, 10] = -40.47893
    t = P.qm9_table9_targets(y, counts[:1])
    col = {name: i for i, (name, *_) in enumerate(P.QM9_TABLE9)}
    by_hand = (-40.47893 - (-37.846772 + 4 * -0.500273)) * 27.211386246
    assert float(t[0, col['U0']]) == pytest.approx(by_hand, abs=1e-6)
    assert float(t[0, col['U0']]) == pytest.approx(-17.1725, abs=1e-3)
    assert float(t[0, col['HOMO']]) == pytest.approx(-10.5499, abs=1e-3)
    assert float(t[0, col['ZPVE']]) == pytest.approx(1.21768, abs=1e-4)
    # G uses the free atoms' G, H their enthalpies:
    assert float(t[0, col['G']]) != float(t[0, col['H']])
    assert [u for _, u, *_ in P.QM9_TABLE9].count('eV') == 8


def test_random_split_sizes_and_disjoint():
    split = P.random_split(130831, seed=0)
    sizes = {k: v.numel() for k, v in split.items()}
    assert sizes == {'train': 104664, 'val': 13083, 'test': 13084}
    all_idx = torch.cat(list(split.values()))
    assert torch.equal(all_idx.sort().values, torch.arange(130831))
    assert torch.equal(P.random_split(130831, seed=0)['test'],
                       split['test'])
    assert not torch.equal(P.random_split(130831, seed=1)['test'],
                           split['test'])


def test_zinc_split_file(shared_data):
    from torch_geometric_mgvae.datasets.molecules import _read_split_index
    path = os.path.join(shared_data, 'zinc12k_benchgnn',
                        'indexes_train_val_test.csv')
    split = _read_split_index(path, ['train', 'val', 'test'], 12000,
                              'smiles_score.csv')
    assert [len(split[k]) for k in ('train', 'val', 'test')] == \
        [10000, 1000, 1000]
    sets = [set(split[k]) for k in ('train', 'val', 'test')]
    assert not (sets[0] & sets[1] or sets[0] & sets[2] or sets[1] & sets[2])


# Models ###################################################################

def _molecules(num=48, seed=0):
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(num):
        n = int(torch.randint(4, 10, (1, ), generator=g))
        row = torch.arange(n - 1)
        ei = torch.stack([torch.cat([row, row + 1]),
                          torch.cat([row + 1, row])])
        bond = torch.randint(0, 3, (n - 1, ), generator=g)
        attr = torch.nn.functional.one_hot(bond.repeat(2), 3).float()
        types = torch.randint(0, 3, (n, ), generator=g)
        x = torch.nn.functional.one_hot(types, 3).float()
        y = torch.tensor([[float((types == 0).sum()) + 0.5 * float(
            (bond == 1).sum()), float(n)]])
        out.append(Data(x=x, edge_index=ei, edge_attr=attr, y=y,
                        num_nodes=n))
    return out


@pytest.mark.parametrize('method', list(P.METHODS))
def test_every_method_runs(method):
    import argparse

    from torch_geometric_mgvae.transforms import FixedHierarchy
    graphs = _molecules(6)
    if method == 'mgn_fixed':
        graphs = [FixedHierarchy('spectral', [4, 2])(g) for g in graphs]
    args = argparse.Namespace(hidden=16, layers=1, clusters=[4, 2],
                              ratio=0.5, cluster_layers=0)
    model = P.build_regressor(method, args, 3, 2)
    pred, aux = model(Batch.from_data_list(graphs))
    assert pred.shape == (6, 2) and aux.dim() == 0
    (pred.sum() + aux).backward()
    assert str(model).startswith('HierarchicalRegressor(3, 16, 2')


def test_mgn_level_pool_sums_bond_types():
    data = Batch.from_data_list(_molecules(3))
    pool = MGNLevelPool(3, 2, select='fixed')
    cluster = torch.cat([torch.arange(n) % 2 for n in
                         torch.bincount(data.batch).tolist()])
    out = pool(data.x, data.edge_index, data.edge_attr, data.batch, 3,
               cluster)
    # Def. 2: an inter-cluster bond stays two directed edges, an
    # intra-cluster bond becomes one self-loop count; bond types are kept.
    intra = cluster[data.edge_index[0]] == cluster[data.edge_index[1]]
    expect = data.edge_attr[~intra].sum(0) + 0.5 * data.edge_attr[intra].sum(0)
    assert torch.allclose(out.edge_attr.sum(0), expect)
    assert int(out.batch.max()) == 2 and out.x.size(0) == 6


def test_diff_level_pool_keeps_edge_feature_mass():
    data = Batch.from_data_list(_molecules(4))
    pool = DiffLevelPool(3, 2)
    out = pool(data.x, data.edge_index, data.edge_attr, data.batch, 4)
    assert out.x.shape == (8, 3)
    assert torch.allclose(out.edge_attr.sum(0), data.edge_attr.sum(0),
                          atol=1e-4)
    assert out.loss.dim() == 0


def test_per_target_mlp_is_separate_mlps():
    torch.manual_seed(0)
    m = PerTargetMLP(5, 3, hidden_channels=8)
    x = torch.randn(7, 5)
    out = m(x)
    for t in range(3):
        h = torch.sigmoid(x @ m.weights[0][t] + m.biases[0][t])
        h = torch.sigmoid(h @ m.weights[1][t] + m.biases[1][t])
        ref = (h @ m.weights[2][t] + m.biases[2][t]).view(-1)
        assert torch.allclose(out[:, t], ref, atol=1e-6)
    out[:, 0].sum().backward()  # target 0's loss reaches only its net
    assert m.weights[0].grad[1:].abs().sum() == 0


def test_binary_input_mlp_equals_linear():
    torch.manual_seed(0)
    m = MLPRegressor(20, 2, hidden_channels=8, binary_input=True)
    x = (torch.rand(6, 20) < 0.3).float()
    lin = torch.nn.Linear(20, 8)
    with torch.no_grad():
        lin.weight.copy_(m.first.weight.t())
        lin.bias.copy_(m.first_bias)
    ref = m.out(torch.sigmoid(m.rest[0](torch.sigmoid(lin(x)))))
    assert torch.allclose(m(x), ref, atol=1e-6)


# The pipeline #############################################################

def _loaders(graphs):
    return dict(train=DataLoader(graphs[:32], batch_size=8, shuffle=True),
                val=DataLoader(graphs[32:40], batch_size=8),
                test=DataLoader(graphs[40:], batch_size=8))


def test_regression_lowers_validation_mae():
    torch.manual_seed(0)
    graphs = _molecules(48)
    loaders = _loaders(graphs)
    y = torch.cat([g.y for g in graphs[:32]]).double()
    mean, std = y.mean(0), y.std(0)
    model = HierarchicalRegressor(3, 4, 16, 2, make_pools('mgn', 16, [2]),
                                  num_layers=1)
    before = P.mae(*P.predict(model, loaders['val'], mean, std))
    fit = P.fit_regressor(model, loaders, mean, std, epochs=30, lr=1e-2)
    after = torch.tensor(fit['val_mae'])
    assert (after < before.float()).all()
    assert float((after / std.float()).mean()) < 0.7 * float(
        (before / std).mean())
    assert 1 <= fit['best_epoch'] <= 30 and len(fit['test_mae']) == 2


def test_wrong_number_of_outputs_is_a_clear_error():
    graphs = _molecules(48)
    y = torch.cat([g.y for g in graphs]).double()
    model = HierarchicalRegressor(3, 4, 8, 3)  # 3 outputs, 2 targets
    with pytest.raises(ValueError, match='predicts 3 values per molecule '
                       'but there are 2 targets'):
        P.fit_regressor(model, _loaders(graphs), y.mean(0), y.std(0), 1,
                        1e-3)
    with pytest.raises(ValueError, match='out_channels=2'):
        check_outputs(torch.zeros(4, 1), torch.zeros(4, 2))


def test_non_finite_loss_stops_training():
    graphs = _molecules(48)
    graphs[0].y = torch.tensor([[math.nan, 1.0]])
    y = torch.cat([g.y for g in graphs[1:]]).double()
    model = HierarchicalRegressor(3, 4, 8, 2)
    loaders = _loaders(graphs)
    loaders['train'] = DataLoader(graphs[:32], batch_size=8)
    with pytest.raises(P.NonFiniteError, match="non-finite loss term "
                       "'l1'.*epoch 1"):
        P.fit_regressor(model, loaders, y.mean(0), y.std(0), 1, 1e-3)


# Command line #############################################################

@pytest.mark.parametrize('argv', [
    ['--dataset', 'zinc', '--mode', 'unsupervised'],
    ['--dataset', 'zinc', '--methods', 'mgn,foo'],
    ['--dataset', 'zinc', '--targets', 'U0'],
    ['--dataset', 'qm9', '--epochs', '0'],
    ['--dataset', 'qm9', '--lr', 'nan'],
    ['--dataset', 'qm9', '--clusters', '4,x'],
    ['--dataset', 'qm9', '--ratio', '1.5'],
    ['--dataset', 'qm9', '--mode', 'unsupervised', '--kl-weight', '-1'],
    ['--dataset', 'qm9', '--mode', 'unsupervised', '--feature-mask', '1'],
    ['--dataset', 'qm9', '--mode', 'unsupervised', '--feature-mask', '-0.1'],
    ['--dataset', 'moses'],
])
def test_cli_rejects_bad_options_before_any_work(tmp_path, argv, capsys):
    from torch_geometric_mgvae.cli import main
    out = tmp_path / 'out'
    root = tmp_path / 'root'
    code = main(['properties'] + argv + ['--out', str(out), '--root',
                                         str(root)])
    assert code == 2
    assert 'mgvae: error:' in capsys.readouterr().err
    assert not out.exists() and not root.exists()


def test_unsupervised_autoencoder_trains_with_the_kl_weight(
        tmp_path, monkeypatch):
    from torch_geometric_mgvae.cli import main
    from torch_geometric_mgvae.experiments import train as T

    from .datasets.test_molecules import small_qm9_root
    root = small_qm9_root(tmp_path, 40)  # 32 / 4 / 4
    seen = []
    train_epoch = T.train_epoch

    def spy(net, loader, opt, weights=None, **kwargs):
        seen.append(weights)
        return train_epoch(net, loader, opt, weights, **kwargs)
    monkeypatch.setattr(T, 'train_epoch', spy)
    out = tmp_path / 'unsup'
    argv = ['properties', '--dataset', 'qm9', '--mode', 'unsupervised',
            '--root', str(root), '--targets', 'gap', '--seeds', '2',
            '--ae-train', '16', '--ae-epochs', '2', '--mlp-epochs', '1',
            '--hidden', '8', '--latent', '4', '--clusters', '2',
            '--batch-size', '8', '--kl-weight', '0.25', '--no-progress',
            '--out', str(out), '--device', 'cpu']
    assert main(argv) == 0
    # Every seed trains its own autoencoder, with the weight in every epoch:
    assert seen == [{'kl': 0.25}] * 4
    first, second = (torch.load(out / f'mgvae_autoencoder_seed{s}.pt',
                                weights_only=True)['model'] for s in (0, 1))
    assert any(not torch.equal(first[k], second[k]) for k in first
               if isinstance(first[k], torch.Tensor))
    recs = json.loads((out / 'property_prediction.json').read_text())
    mae = [r for r in recs if r['metric'] == 'MAE']
    assert len(mae) == 5 and all(r['n'] == 2 for r in mae)
    assert all('KL weight 0.25' in r['protocol'] for r in mae)
    assert all('atom-type, bond-type and adjacency reconstruction' in
               r['protocol'] for r in mae)
    assert 'edge_feature_decoder.0.weight' in first  # bonds decoded
    trained, = [r for r in recs if r['metric'] == 'train_seconds']
    assert trained['n'] == 2 and len(trained['final_loss']) == 2
    # A finished run is not repeated: the autoencoders are read back.
    assert main(argv + ['--resume']) == 0
    assert len(seen) == 4
    again = json.loads((out / 'property_prediction.json').read_text())
    assert [r['value'] for r in again if r['metric'] == 'MAE'] == \
        [r['value'] for r in mae]
    defaults = P.parse_args(['--dataset', 'qm9'])
    assert defaults.kl_weight == P.KL_WEIGHT
    assert defaults.feature_mask == P.FEATURE_MASK and defaults.bond_recon
    assert all(f'{P.FEATURE_MASK:g} of the atom types masked' in
               r['protocol'] for r in mae)
    # The pretext options reach the model: no bond decoder, masked atoms.
    args = P.parse_args(['--dataset', 'qm9', '--mode', 'unsupervised',
                         '--no-bond-recon', '--feature-mask', '0.2',
                         '--hidden', '8', '--latent', '4', '--out',
                         str(tmp_path / 'x')])
    model, kwargs = P.build_autoencoder(args, 5)
    assert model.edge_feature_decoder is None and model.feature_mask == 0.2
    assert kwargs['edge_feature_loss'] is None


def test_records_and_table(tmp_path):
    path = tmp_path / 'r.json'
    path.write_text(json.dumps([{'task': 'x', 'dataset': 'QM9',
                                 'method': 'm', 'metric': 'MAE',
                                 'value': 1.0}]))
    rec = P.record(P.TASK, 'QM9', 'MGN', 'MAE', 0.5, std=0.1, n=3,
                   setting='U0', mode='supervised')
    P.write_result_records(str(path), [rec], 'QM9', 'supervised')
    P.write_result_records(str(path), [rec], 'QM9', 'supervised')
    recs = json.loads(path.read_text())
    assert len(recs) == 2 and recs[1]['setting'] == 'U0'
    assert 'MGN' in P.table([rec]) and '0.5±0.1' in P.table([rec])


def test_regressor_rejects_nan_inputs_and_bad_sizes():
    # Found by benchmark/probes.py: NaN features or edge features gave NaN
    # predictions without an error, and zero sizes were accepted.
    graphs = _molecules(2)
    model = HierarchicalRegressor(3, 3, 8, 2, pools=[MGNLevelPool(8, 2)])
    bad = Batch.from_data_list(graphs)
    bad.x[0, 0] = math.nan
    with pytest.raises(ValueError, match="'x' contains NaN"):
        model(bad)
    bad = Batch.from_data_list(graphs)
    bad.edge_attr[0, 0] = math.inf
    with pytest.raises(ValueError, match="'edge_attr' contains NaN"):
        model(bad)
    for kwargs in (dict(in_channels=0), dict(hidden_channels=0),
                   dict(edge_channels=-1)):
        args = dict(in_channels=3, edge_channels=3, hidden_channels=8,
                    out_channels=2)
        args.update(kwargs)
        with pytest.raises(ValueError, match=next(iter(kwargs))):
            HierarchicalRegressor(**args)
