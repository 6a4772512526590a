import gzip
import json
import os
import sys

import pytest
import torch

pytest.importorskip('rdkit')

from torch_geometric_mgvae.chem import (  # noqa: E402
    QM9_ATOMS,
    check_valence,
    smiles_to_data,
)
from torch_geometric_mgvae.cli import main  # noqa: E402
from torch_geometric_mgvae.experiments.molecules import (  # noqa: E402
    CORRECTED,
    JOINED,
    RAW,
    REFERENCE,
    align_latents,
    interpolate,
    interpolation_pair,
    lr_steps,
    method_name,
    parse_args,
    resolve_args,
)
from torch_geometric_mgvae.experiments.options import (  # noqa: E402
    UsageError,
)
from torch_geometric_mgvae.models.molecule import MoleculeMGVAE  # noqa

ROOT = os.path.join(os.path.dirname(__file__), '..')
sys.path.insert(0, os.path.join(ROOT, 'benchmark'))
import make_tables  # noqa: E402

SHARED_QM9 = os.path.join(ROOT, '..', 'shared', 'data', 'qm9',
                          'qm9_qm9pack_compact.csv.gz')


def test_defaults_and_checks():
    a = parse_args([])
    assert (a.dataset, a.decoder, a.num_train, a.num_samples,
            a.clusters) == ('qm9', 'all-at-once', 10000, 5000, [2, 1])
    assert a.root == os.path.join('data', 'qm9') and not a.chem_features
    z = parse_args(['--dataset', 'zinc'])
    assert z.chem_features  # paper D.2: RDKit features on ZINC
    assert not parse_args(['--dataset', 'zinc',
                           '--no-chem-features']).chem_features
    assert 'T=0.5' in method_name(parse_args(['--temperature', '0.5']), 3)
    assert '1 refinement step, 3 epochs' in method_name(
        parse_args(['--refine-steps', '1']), 3)
    assert '2 refinement steps' in method_name(
        parse_args(['--refine-steps', '2', '--dataset', 'zinc',
                    '--no-chem-features']), 3)
    assert 'masked decoding in 8 rounds' in method_name(
        parse_args(['--masked-decoding']), 3)
    assert 'masked decoding in 1 round,' in method_name(
        parse_args(['--masked-decoding', '--decode-rounds', '1']), 3)
    assert 'masked' not in method_name(parse_args([]), 3)
    assert 'rounds, decoding T=0.75' in method_name(parse_args(
        ['--masked-decoding', '--decode-temperature', '0.75']), 3)
    a = parse_args(['--masked-decoding', '--decode-rounds', '45'])
    assert a.decode_rounds == 45 and resolve_args(a).decode_rounds == 45
    assert 'distances up to 6' in method_name(parse_args(
        ['--masked-decoding', '--distance-context', '6']), 3)
    with pytest.raises(UsageError, match='add --masked-decoding'):
        parse_args(['--distance-context', '6'])
    assert 'aromatic bonds' in method_name(parse_args(['--aromatic']), 3)
    assert 'aromatic' not in method_name(parse_args([]), 3)
    with pytest.raises(UsageError, match='--aromatic is for the all-at-'):
        parse_args(['--aromatic', '--decoder', 'autoregressive'])
    for bad in (['--epochs', '0'], ['--temperature', '0']):
        with pytest.raises(SystemExit):  # rejected while parsing
            parse_args(bad)


def test_align_latents_and_interpolation_pair():
    za = torch.tensor([[0., 0.], [5., 5.], [9., 0.]])
    perm = torch.tensor([2, 0, 1])
    zb = za[perm] + 0.1  # zb[k] = za[perm[k]] + 0.1
    assert align_latents(za, zb).tolist() == [1, 2, 0]
    graphs = [smiles_to_data(s) for s in ('C', 'CO', 'CC', 'CCO', 'OO')]
    a, b = interpolation_pair(graphs)
    assert (a.smiles, b.smiles) == ('CO', 'CC')
    assert interpolation_pair(graphs[:1]) is None


def test_interpolation_ends_decode_the_inputs():
    torch.manual_seed(0)
    model = MoleculeMGVAE(len(QM9_ATOMS), 8, 4, [2, 1], max_nodes=9)
    a, b = smiles_to_data('CCO'), smiles_to_data('CC=O')
    mols = interpolate(model, a, b, QM9_ATOMS, steps=5)
    assert len(mols) == 5 and all(check_valence(m) for m in mols)
    with pytest.raises(ValueError, match='same number'):
        interpolate(model, a, smiles_to_data('CC'), QM9_ATOMS)


@pytest.fixture(scope='module')
def qm9_root(tmp_path_factory):
    r"""A 300-molecule QM9 raw folder (every fifth molecule in the test
    split)."""
    if not os.path.exists(SHARED_QM9):
        pytest.skip('shared data folder not available')
    root = tmp_path_factory.mktemp('qm9')
    os.makedirs(root / 'raw')
    with gzip.open(SHARED_QM9, 'rt') as f:
        lines = [next(f) for _ in range(301)]
    with gzip.open(root / 'raw' / 'qm9_qm9pack_compact.csv.gz', 'wt') as f:
        f.writelines(lines)
    ids = [int(line.split(',')[0]) for line in lines[1:]]
    with open(root / 'raw' / 'valid_idx_qm9.json', 'w') as f:
        json.dump({'valid_idxs': [f'{i - 1:06d}' for i in ids[::5]]}, f)
    return str(root)


def test_aromatic_bond_type_end_to_end(qm9_root, tmp_path, monkeypatch,
                                      capsys):
    monkeypatch.chdir(tmp_path)
    assert main(['molecules', '--root', qm9_root, '--num-train', '48',
                 '--num-samples', '16', '--epochs', '1', '--hidden', '8',
                 '--latent', '4', '--decoder-layers', '1', '--aromatic',
                 '--masked-decoding', '--decode-rounds', '2', '--no-fcd',
                 '--out', 'out', '--no-progress']) == 0
    assert 'aromatic bonds' in capsys.readouterr().out
    assert os.path.exists(os.path.join(
        qm9_root, 'processed', 'qm9pack_aromatic.pt'))
    records = json.loads((tmp_path / 'out' /
                          'molecule_generation.json').read_text())
    values = {(r.get('setting'), r['metric']): r['value'] for r in records
              if 'aromatic bonds' in r['method']}
    assert values[(CORRECTED, 'validity')] == 1.0
    assert 'aromatic bonds' in records[0]['protocol']
    state = torch.load(tmp_path / 'out' / 'train_state.pt',
                       weights_only=False)
    assert state['args']['aromatic'] is True


def test_molecules_end_to_end(qm9_root, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    # (FCD and NSPDK where fcd_torch / eden-kernel are installed.)
    assert main(['molecules', '--root', qm9_root, '--num-train', '64',
                 '--num-samples', '24', '--epochs', '1', '--hidden', '8',
                 '--latent', '4', '--decoder-layers', '1',
                 '--out', 'out', '--no-progress']) == 0
    # The records go into --out by default; nothing outside it:
    out, res = tmp_path / 'out', tmp_path / 'out' / 'molecule_generation.json'
    written = [os.path.relpath(os.path.join(d, f), tmp_path)
               for d, _, fs in os.walk(tmp_path) for f in fs]
    assert written and all(f.startswith('out' + os.sep) for f in written)
    records = json.loads(res.read_text())
    settings = {(r['method'], r.get('setting')) for r in records}
    methods = {m for m, _ in settings}
    assert REFERENCE in methods and len(methods) == 2
    mgvae = next(m for m in methods if m != REFERENCE)
    assert mgvae.startswith('all-at-once MGVAE') and '1 epochs' in mgvae
    assert {(mgvae, RAW), (mgvae, CORRECTED), (mgvae, JOINED)} < settings
    values = {(r['method'], r.get('setting'), r['metric']): r['value']
              for r in records}
    assert values[(mgvae, CORRECTED, 'validity')] == 1.0
    assert values[(mgvae, JOINED, 'validity')] == 1.0
    assert 0 <= values[(mgvae, RAW, 'validity')] <= 1
    assert values[(REFERENCE, None, 'novelty')] == 0.0
    assert values[(mgvae, None, 'train_seconds')] > 0
    try:
        import eden.graph  # noqa: F401
        nspdk = values[(mgvae, CORRECTED, 'NSPDK MMD')]
        assert 0 < nspdk < 2
        # The training molecules are closer to the test set than 1-epoch
        # samples:
        assert values[(REFERENCE, None, 'NSPDK MMD')] < nspdk
    except ImportError:
        pass
    for r in records:
        assert r['task'] == 'molecule_generation' and r['dataset'] == 'QM9'
        assert r['command'] and r['protocol'] and r['device'] == 'cpu'
    for name in ('generated.png', 'interpolation.png', 'training_curve.png',
                 'samples_raw.smi', 'samples_corrected.smi',
                 'samples_joined.smi', 'model.pt',
                 'summary.json', 'train_state.pt'):
        assert (out / name).exists(), name
    ckpt = torch.load(out / 'model.pt', weights_only=True)
    assert ckpt['model_class'] == 'MoleculeMGVAE'
    MoleculeMGVAE(**ckpt['model_kwargs']).load_state_dict(ckpt['model'])
    smiles = (out / 'samples_corrected.smi').read_text().splitlines()
    assert len(smiles) == 24
    table = make_tables.molecule_table(records)
    assert table.count('\n') == 5  # head, rule, 3 MGVAE rows, reference
    assert '100.00%' in table

    # benchmark/molecule_structure.py reads the run's sample files:
    import molecule_structure
    structure = tmp_path / 'structure.json'
    molecule_structure.main(['--dataset', 'qm9', '--root', qm9_root,
                             str(out), '--results', str(structure)])
    rows = {(r['method'], r.get('setting'), r['metric']): r['value']
            for r in json.loads(structure.read_text())}
    assert rows[(molecule_structure.TEST, None, 'fragments')] == 1.0
    assert rows[(mgvae, CORRECTED, 'fragments')] == 1.0
    assert rows[(mgvae, JOINED, 'fragments_ratio')] == 1.0
    assert rows[(mgvae, CORRECTED, 'atoms')] > 0
    assert (mgvae, RAW, 'rings') in rows  # None (NaN) without valid ones
    with pytest.raises(SystemExit, match='is not the summary'):
        molecule_structure.main(['--root', qm9_root, str(tmp_path)])

    # A second run replaces the rows of its dataset and generator:
    main(['molecules', '--root', qm9_root, '--num-train', '32',
          '--num-samples', '8', '--epochs', '2', '--hidden', '8',
          '--latent', '4', '--decoder-layers', '1', '--no-fcd',
          '--no-local-decoding', '--out', str(out), '--results', str(res),
          '--no-progress'])
    methods = {r['method'] for r in json.loads(res.read_text())}
    assert len(methods) == 2 and REFERENCE in methods
    assert any('no local decoders, 2 epochs' in m for m in methods)

    # --resume with a larger --epochs trains the finished run on:
    main(['molecules', '--root', qm9_root, '--num-train', '32',
          '--num-samples', '8', '--epochs', '3', '--hidden', '8',
          '--latent', '4', '--decoder-layers', '1', '--no-fcd',
          '--no-local-decoding', '--out', str(out), '--results', str(res),
          '--no-progress', '--resume'])
    methods = {r['method'] for r in json.loads(res.read_text())}
    assert any('no local decoders, 3 epochs' in m for m in methods)
    state = torch.load(out / 'train_state.pt', weights_only=False)
    assert state['current']['epoch'] == 3 and state['args']['epochs'] == 3


def test_ema_of_the_weights_is_sampled_and_resumed(qm9_root, tmp_path):
    out, res = tmp_path / 'out', tmp_path / 'results.json'
    argv = ['molecules', '--root', qm9_root, '--num-train', '32',
            '--batch-size', '32', '--num-samples', '8', '--hidden', '8',
            '--latent', '4', '--decoder-layers', '1', '--no-fcd',
            '--no-local-decoding', '--ema', '0.9', '--out', str(out),
            '--results', str(res), '--no-progress']
    assert main(argv + ['--epochs', '1']) == 0  # one optimizer step
    first = torch.load(out / 'train_state.pt', weights_only=False)['current']
    assert int(first['ema']['n_averaged']) == 1
    w1 = first['model']
    # The first step's average is the weights themselves:
    ckpt = torch.load(out / 'model.pt', weights_only=True)['model']
    for k, v in ckpt.items():
        if torch.is_tensor(v) and v.is_floating_point():
            assert torch.equal(v, w1[k]), k
    # One more step, resumed: 0.9 * (weights after 1) + 0.1 * (after 2).
    assert main(argv + ['--epochs', '2', '--resume']) == 0
    second = torch.load(out / 'train_state.pt', weights_only=False)
    w2 = second['current']['model']
    assert int(second['current']['ema']['n_averaged']) == 2
    assert second['args']['ema'] == 0.9
    ckpt = torch.load(out / 'model.pt', weights_only=True)['model']
    names = [n for n, _ in MoleculeMGVAE(**torch.load(
        out / 'model.pt', weights_only=True)['model_kwargs']
        ).named_parameters()]
    assert any(not torch.equal(w1[n], w2[n]) for n in names)
    for n in names:
        assert torch.allclose(ckpt[n], 0.9 * w1[n] + 0.1 * w2[n],
                              atol=1e-6), n
    methods = {r['method'] for r in json.loads(res.read_text())}
    assert any(m.endswith('EMA 0.9, 2 epochs)') for m in methods)
    # A run with it is not resumed without it (exit code 2):
    assert main([a for a in argv if a not in ('--ema', '0.9')] +
                ['--epochs', '3', '--resume']) == 2
    for bad in ('1', '-0.1', 'nan'):
        with pytest.raises(SystemExit):
            parse_args(['--ema', bad])


def test_a_resumed_run_takes_a_new_learning_rate(qm9_root, tmp_path):
    out, res = tmp_path / 'out', tmp_path / 'results.json'
    argv = ['molecules', '--root', qm9_root, '--num-train', '32',
            '--batch-size', '32', '--num-samples', '8', '--hidden', '8',
            '--latent', '4', '--decoder-layers', '1', '--no-fcd',
            '--no-local-decoding', '--out', str(out), '--results',
            str(res), '--no-progress']
    assert main(argv + ['--epochs', '2', '--lr', '0.01']) == 0
    methods = {r['method'] for r in json.loads(res.read_text())}
    assert any(m.endswith('no local decoders, 2 epochs)') for m in methods)
    # A state saved before the rate was recorded per epoch:
    state = torch.load(out / 'train_state.pt', weights_only=False)
    for row in state['current']['history']:
        del row['lr']
    torch.save(state, out / 'train_state.pt')
    assert main(argv + ['--epochs', '4', '--lr', '0.001', '--resume']) == 0
    state = torch.load(out / 'train_state.pt', weights_only=False)
    cur = state['current']
    assert [row['lr'] for row in cur['history']] == [0.01, 0.01, 0.001,
                                                     0.001]
    assert cur['optimizer']['param_groups'][0]['lr'] == 0.001
    assert state['args']['lr'] == 0.001
    methods = {r['method'] for r in json.loads(res.read_text())}
    assert any(m.endswith('lr 0.001 from epoch 3, 4 epochs)')
               for m in methods)
    assert lr_steps([dict(epoch=1, lr=0.1), dict(epoch=2, lr=0.1),
                     dict(epoch=3, lr=0.01), dict(epoch=4),
                     dict(epoch=5, lr=0.1)]) == \
        'lr 0.01 from epoch 3, lr 0.1 from epoch 5'
    assert lr_steps([]) == lr_steps([dict(epoch=1)]) == ''


def test_autoregressive_end_to_end(qm9_root, tmp_path):
    pytest.importorskip('torch_geometric_mgvae.models.autoregressive')
    out, res = tmp_path / 'out', tmp_path / 'results.json'
    main(['molecules', '--decoder', 'autoregressive', '--root', qm9_root,
          '--num-train', '32', '--num-samples', '8', '--epochs', '1',
          '--hidden', '8', '--latent', '4', '--no-fcd', '--out', str(out),
          '--results', str(res), '--no-progress'])
    records = json.loads(res.read_text())
    auto = {r['method'] for r in records} - {REFERENCE}
    assert len(auto) == 1 and next(iter(auto)).startswith('autoregressive')
    assert {r.get('setting') for r in records
            if r['method'] in auto} == {RAW, None}
    assert (out / 'generated.png').exists()


def test_non_finite_loss_stops_both_generators(qm9_root, tmp_path,
                                               monkeypatch, capsys):
    from torch_geometric_mgvae.experiments import train as train_module
    from torch_geometric_mgvae.models.autoregressive import (
        AutoregressiveMGN,
    )
    forward = train_module.mgn_loss_terms

    def nan_forward(*args, **kwargs):
        terms = forward(*args, **kwargs)
        terms['kl'] = terms['kl'] * float('nan')
        return terms

    def nan_loss(self, *args, **kwargs):
        return torch.tensor(float('inf'), requires_grad=True)

    monkeypatch.setattr(train_module, 'mgn_loss_terms', nan_forward)
    monkeypatch.setattr(AutoregressiveMGN, 'loss', nan_loss)
    for decoder, term in (('all-at-once', 'kl'), ('autoregressive', 'nll')):
        out = tmp_path / decoder
        assert main(['molecules', '--decoder', decoder, '--root', qm9_root,
                     '--num-train', '16', '--num-samples', '4', '--epochs',
                     '2', '--hidden', '8', '--latent', '4',
                     '--decoder-layers', '1', '--no-fcd', '--out', str(out),
                     '--no-progress']) == 1
        err = capsys.readouterr().err
        assert f"non-finite loss term '{term}'" in err and 'epoch 1' in err
        assert not out.exists()
