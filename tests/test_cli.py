import json
import os
import signal

import pytest
import torch
import torch_geometric

from torch_geometric_mgvae import MGVAE
from torch_geometric_mgvae.cli import build_parser, main
from torch_geometric_mgvae.experiments import train as train_module
from torch_geometric_mgvae.experiments.generation import sample_fitted
from torch_geometric_mgvae.experiments.state import STATE_FILE

TINY = ['--num-graphs', '20', '--num-samples', '8', '--hidden', '8',
        '--latent', '4', '--no-progress']


def files_under(folder):
    return sorted(os.path.relpath(os.path.join(d, f), folder)
                  for d, _, fs in os.walk(folder) for f in fs)


def test_demo_runs_end_to_end(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(['demo', '--epochs', '2', '--num-graphs', '20',
                 '--num-samples', '8', '--out', 'demo',
                 '--no-progress']) == 0
    # Everything under --out, nothing else in the working directory:
    assert files_under(tmp_path) == [
        os.path.join('demo', f) for f in (
            'demo.json', 'generated_vs_test.png', 'loss.png', 'mgvae.pt',
            STATE_FILE)]
    out = tmp_path / 'demo'
    result = json.loads((out / 'demo.json').read_text())
    for key in ('degree', 'clustering'):
        assert result['mmd_generated'][key] >= 0
        assert result['mmd_train_vs_test'][key] >= 0
    assert result['latent_sampler'] == 'fitted'  # the default, mlp decoder
    assert 0 <= result['novel'] <= 1
    # The checkpoint rebuilds the model from its constructor arguments and
    # holds the fitted latent Gaussian, so its samples can be repeated:
    ckpt = torch.load(out / 'mgvae.pt', weights_only=True)
    assert ckpt['model_class'] == 'MGVAE'
    assert ckpt['model_kwargs']['max_nodes'] == 20
    assert ckpt['args']['latent_sampler'] == 'fitted'
    assert ckpt['latent_mean'].shape == ckpt['latent_std'].shape == (20, 16)
    assert bool((ckpt['latent_std'] >= 0).all())
    model = MGVAE(**ckpt['model_kwargs'])
    model.load_state_dict(ckpt['model'])
    model.fit_num_nodes(
        [torch_geometric.data.Data(num_nodes=n) for n in (12, 20)])
    graphs = sample_fitted(model.eval(), ckpt['latent_mean'],
                           ckpt['latent_std'], 3)
    assert [g.num_nodes in (12, 20) for g in graphs] == [True] * 3
    state = torch.load(out / STATE_FILE, weights_only=True)
    assert state['current']['epoch'] == 2 and state['current']['finished']


def test_demo_samples_the_prior_for_equivariant_decoders(tmp_path):
    # Node positions mean nothing to the inner-product decoder: the fitted
    # per-position Gaussian is the mlp decoder's default only.
    out = tmp_path / 'inner'
    assert main(['demo', '--decoder', 'inner', '--epochs', '1', '--out',
                 str(out)] + TINY) == 0
    result = json.loads((out / 'demo.json').read_text())
    assert result['latent_sampler'] == 'prior'
    assert 'latent_mean' not in torch.load(out / 'mgvae.pt',
                                           weights_only=True)


def test_demo_reads_gdss_file(tmp_path, shared_data):
    path = os.path.join(shared_data, 'community_small')
    out = tmp_path / 'gdss'
    main(['demo', '--data', path, '--epochs', '1', '--num-samples', '4',
          '--out', str(out), '--no-progress'])
    result = json.loads((out / 'demo.json').read_text())
    assert result['source'] == path


def test_parser_rejects_unknown_command():
    with pytest.raises(SystemExit):
        build_parser().parse_args(['nope'])


@pytest.mark.parametrize('argv', [
    ['demo', '--lr', '0'], ['demo', '--lr', '-1'], ['demo', '--lr', 'nan'],
    ['demo', '--kl-weight', 'inf'], ['demo', '--kl-weight', '-1'],
    ['demo', '--epochs', '0'], ['demo', '--hidden', '0'],
    ['demo', '--num-samples', '0'], ['demo', '--clusters', '4,x'],
    ['demo', '--clusters', '2,0'], ['demo', '--num-graphs', '2'],
    ['demo', '--covariance', 'mrf'], ['demo', '--data', 'missing.json'],
    ['demo', '--resume'], ['demo', '--latent-sampler', 'kde'],
    ['demo', '--threads', '0'], ['demo', '--latent-sampler', 'matched'],
    ['generate', '--latent-sampler', 'matched'],
    ['generate', '--tau', '0'], ['generate', '--seeds', '0'],
    ['generate', '--num-samples', '0'], ['generate', '--lr', '1e400'],
    ['generate', '--results', 'broken.json'],
    ['link-pred', '--levels', '5'], ['link-pred', '--eval-every', '0'],
    ['link-pred', '--raw', 'missing'],
    ['molecules', '--threshold', '2'], ['molecules', '--temperature', '0'],
    ['molecules', '--batch-size', '0'], ['molecules', '--data', 'missing'],
    ['molecules', '--refine-steps', '-1'],
    ['molecules', '--refine-steps', '1', '--dataset', 'zinc'],
    ['molecules', '--refine-steps', '1', '--decoder', 'autoregressive'],
    ['molecules', '--masked-decoding', '--decoder', 'autoregressive'],
    ['molecules', '--masked-decoding', '--decode-rounds', '0'],
    ['molecules', '--decode-rounds', '4'],
    ['molecules', '--decode-temperature', '0.5'],
    ['molecules', '--masked-decoding', '--decode-temperature', '-1'],
    ['nope'],
])
def test_bad_usage_is_one_line_exit_2_before_any_work(argv, tmp_path,
                                                       monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / 'broken.json').write_text('[{"task": ')
    assert main(argv + ['--out', 'out'] if argv != ['nope'] else argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith('mgvae: error: ') and '\n' not in err, err
    assert 'Traceback' not in err
    assert files_under(tmp_path) == ['broken.json']  # no folder created


def _nan_at(monkeypatch, epoch_call: int, term: str = 'kl'):
    r"""The loss term :obj:`term` turns NaN from the :obj:`epoch_call`-th
    forward pass on (a NaN that does not depend on the model's
    numerics)."""
    forward = train_module.mgn_loss_terms
    calls = [0]

    def nan_forward(*args, **kwargs):
        terms = forward(*args, **kwargs)
        calls[0] += 1
        if calls[0] >= epoch_call:
            terms[term] = terms[term] * float('nan')
        return terms

    monkeypatch.setattr(train_module, 'mgn_loss_terms', nan_forward)


def test_non_finite_loss_stops_and_writes_nothing(tmp_path, monkeypatch,
                                                  capsys):
    # 16 training graphs, batch 16: one forward pass per epoch.
    _nan_at(monkeypatch, 3)
    out = tmp_path / 'nan'
    assert main(['demo', '--epochs', '5', '--checkpoint-every', '1',
                 '--out', str(out)] + TINY) == 1
    err = capsys.readouterr().err.strip()
    assert err == ("mgvae: error: non-finite loss term 'kl' (nan) in epoch "
                   "3; training stopped, nothing written from this state "
                   "(try a smaller --lr or loss weights)")
    # Only the finite state of epoch 2; no model, record or picture:
    assert files_under(out) == [STATE_FILE]
    state = torch.load(out / STATE_FILE, weights_only=True)
    assert state['current']['epoch'] == 2
    for p in state['current']['model'].values():
        assert not isinstance(p, torch.Tensor) or torch.isfinite(p).all()


def test_traceback_only_with_debug(tmp_path, monkeypatch, capsys):
    _nan_at(monkeypatch, 1)
    argv = ['demo', '--epochs', '2', '--out', str(tmp_path / 'd')] + TINY
    assert main(argv) == 1
    assert 'Traceback' not in capsys.readouterr().err
    assert main(argv + ['--debug']) == 1
    err = capsys.readouterr().err
    assert 'Traceback' in err and 'NonFiniteError' in err


def _interrupt_at(monkeypatch, epoch: int, sig=signal.SIGINT):
    r"""Sends :obj:`sig` to this process during the :obj:`epoch`-th call of
    the training epoch (as a user pressing Ctrl-C would)."""
    real = train_module.train_epoch
    calls = [0]

    def train_epoch(*args, **kwargs):
        calls[0] += 1
        if calls[0] == epoch:
            signal.raise_signal(sig)
        return real(*args, **kwargs)

    monkeypatch.setattr(train_module, 'train_epoch', train_epoch)
    return calls


def test_demo_resume_equals_an_uninterrupted_run(tmp_path, monkeypatch,
                                                 capsys):
    full, cut = tmp_path / 'full', tmp_path / 'cut'
    argv = ['demo', '--epochs', '4', '--checkpoint-every', '3'] + TINY
    assert main(argv + ['--out', str(full)]) == 0
    calls = _interrupt_at(monkeypatch, 2)
    assert main(argv + ['--out', str(cut)]) == 130
    err = capsys.readouterr().err
    assert 'interrupted by SIGINT after epoch 2' in err and '--resume' in err
    assert files_under(cut) == [STATE_FILE]  # saved at the signal
    assert main(argv + ['--out', str(cut), '--resume']) == 0
    assert calls[0] == 4  # epochs 1-2, then 3-4 after resuming
    a = torch.load(full / 'mgvae.pt', weights_only=True)['model']
    b = torch.load(cut / 'mgvae.pt', weights_only=True)['model']
    for k, v in a.items():
        if isinstance(v, torch.Tensor):
            assert torch.equal(v, b[k]), k
    ra, rb = (json.loads((d / 'demo.json').read_text()) for d in (full, cut))
    assert ra['mmd_generated'] == rb['mmd_generated']
    assert ra['final'] == rb['final']


def test_ctrl_c_while_reading_the_options_is_exit_130(monkeypatch, capsys):
    # Found by benchmark/probes.py: a SIGINT while the parsers were built
    # (they import the experiment modules) escaped main as a traceback.
    import torch_geometric_mgvae.cli as cli

    def interrupted():
        raise KeyboardInterrupt
    monkeypatch.setattr(cli, 'build_parser', interrupted)
    assert cli.main(['demo']) == 130
    err = capsys.readouterr().err
    assert err.strip() == 'mgvae: interrupted' and 'Traceback' not in err
