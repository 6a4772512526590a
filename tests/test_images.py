import json

import pytest
import torch

from torch_geometric_mgvae.cli import main
from torch_geometric_mgvae.datasets import MNISTGraphs
from torch_geometric_mgvae.experiments.state import STATE_FILE
from torch_geometric_mgvae.models import ConvVAE, ImageMGVAE

from .conftest import stage_mnist
from .test_cli import _interrupt_at, _nan_at, files_under

TINY = ['--num-train', '48', '--batch-size', '16', '--hidden', '4',
        '--layers', '1', '--latent', '4', '--decoder-channels', '4',
        '--conv-channels', '4', '--no-fid', '--no-progress']


@pytest.fixture(scope='module')
def mnist_root(tmp_path_factory):
    root = stage_mnist(tmp_path_factory.mktemp('mnist_cli'))
    MNISTGraphs(root, 'test')  # processed once for every test
    return root


def test_images_runs_end_to_end(tmp_path, mnist_root):
    out = tmp_path / 'out'
    assert main(['images', '--root', mnist_root, '--epochs', '2', '--out',
                 str(out)] + TINY) == 0
    assert files_under(out) == [
        'conv.pt', 'image_generation.json', 'mgvae.pt',
        'reconstruction_conv.png', 'reconstruction_mgvae.png',
        'samples_conv.png', 'samples_mgvae.png', 'summary.json', STATE_FILE]
    recs = json.loads((out / 'image_generation.json').read_text())
    metrics = {(r['method'].split(':')[0], r['metric']) for r in recs}
    assert ('MGVAE (grid graphs, quadtree)', 'epoch_seconds') in metrics
    assert ('conv VAE (same decoder)', 'sample_seconds') in metrics
    assert all(r['task'] == 'image_generation' for r in recs)
    for name, cls in (('mgvae', ImageMGVAE), ('conv', ConvVAE)):
        ckpt = torch.load(out / f'{name}.pt', weights_only=True)
        assert ckpt['model_class'] == cls.__name__
        cls(**ckpt['model_kwargs']).load_state_dict(ckpt['model'])
    # A finished run is not repeated by --resume:
    assert main(['images', '--root', mnist_root, '--epochs', '2', '--out',
                 str(out), '--resume'] + TINY) == 0
    again = json.loads((out / 'image_generation.json').read_text())
    assert [r['value'] for r in again] == [r['value'] for r in recs]


@pytest.mark.parametrize('argv', [
    ['images', '--fid-samples', '1'], ['images', '--fid-samples', '20000'],
    ['images', '--models', 'gan'], ['images', '--models', 'conv,conv'],
    ['images', '--data', 'missing'], ['images', '--lr', '0'],
    ['images', '--results', 'broken.json'], ['images', '--epochs', '0'],
    ['images', '--norm', 'group'], ['images', '--readout-grid', '3'],
    ['images', '--readout-grid', '4,4'],
    ['images', '--readout-grid', '4,4,16'],
    ['images', '--free-bits', '1,2'], ['images', '--free-bits', '-1'],
    ['images', '--free-bits', 'nan'],
])
def test_images_bad_usage_exit_2_before_any_work(argv, tmp_path,
                                                 monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / 'broken.json').write_text('[{"task": ')
    assert main(argv + ['--out', 'out']) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith('mgvae: error: ') and '\n' not in err, err
    assert files_under(tmp_path) == ['broken.json']


def test_images_free_bits_and_prior_are_trained_and_named(
        tmp_path, mnist_root, capsys):
    out = tmp_path / 'out'
    assert main(['images', '--root', mnist_root, '--epochs', '1', '--out',
                 str(out), '--free-bits', '0,1000,1000', '--top-down-prior']
                + TINY) == 0
    recs = json.loads((out / 'image_generation.json').read_text())
    names = {r['method'] for r in recs}
    assert any(n.startswith('MGVAE') and n.endswith(
        ', top-down prior, batch_norm, free bits 0/1000/1000')
        for n in names), names
    ckpt = torch.load(out / 'mgvae.pt', weights_only=True)
    assert ckpt['model_kwargs']['top_down_prior'] is True
    assert any(n.startswith('conv VAE') and 'free bits' not in n
               for n in names), names
    line = next(ln for ln in capsys.readouterr().out.splitlines()
                if ln.startswith('mgvae epoch 1: '))
    hist = {k: float(v) for k, v in (
        kv.split(' ') for kv in line.split(': ', 1)[1].split(' (')[0]
        .split(', '))}
    # Below F nats the KL is free: its term plus the free-bits term is F.
    for s in (16, 8):
        assert hist[f'kl_{s}'] + hist[f'free_bits_{s}'] == \
            pytest.approx(1000.0, abs=0.02)
    assert 'free_bits_32' not in hist


def test_images_nan_stops_and_writes_nothing(tmp_path, mnist_root,
                                            monkeypatch, capsys):
    argv = ['images', '--root', mnist_root, '--epochs', '2', '--models',
            'mgvae'] + TINY
    _nan_at(monkeypatch, 2, 'kl_32')
    assert main(argv + ['--out', str(tmp_path / 'nan')]) == 1
    assert "non-finite loss term 'kl_32' (nan) in epoch 1" in \
        capsys.readouterr().err
    assert files_under(tmp_path / 'nan') == []


@pytest.mark.slow
def test_images_resume_equals_an_uninterrupted_run(tmp_path, mnist_root,
                                                   monkeypatch):
    argv = ['images', '--root', mnist_root, '--epochs', '2', '--models',
            'mgvae'] + TINY
    full, cut = tmp_path / 'full', tmp_path / 'cut'
    assert main(argv + ['--out', str(full)]) == 0
    with monkeypatch.context() as m:
        _interrupt_at(m, 2)
        assert main(argv + ['--out', str(cut)]) == 130
    assert files_under(cut) == [STATE_FILE]
    assert main(argv + ['--out', str(cut), '--resume']) == 0
    a = torch.load(full / 'mgvae.pt', weights_only=True)['model']
    b = torch.load(cut / 'mgvae.pt', weights_only=True)['model']
    for k, v in a.items():
        if isinstance(v, torch.Tensor):
            assert torch.equal(v, b[k]), k


def test_format_table_keeps_settings_of_one_method_apart():
    from torch_geometric_mgvae.experiments.images import format_table
    from torch_geometric_mgvae.experiments.results import record
    recs = [record('image_generation', 'MNIST', 'm', f'FID_{s}x{s}',
                   value, n=1000, epochs=epochs, setting=setting)
            for epochs, setting, value in ((5, None, 46.5),
                                           (10, '10 epochs', 41.5))
            for s in (32, 16, 8)]
    rows = [line for line in format_table(recs).splitlines()
            if line.startswith('| m |')]
    assert rows == ['| m | 46.5 | 46.5 | 46.5 | 1000 | 5 |  |  |  |',
                    '| m | 41.5 | 41.5 | 41.5 | 1000 | 10 |  |  |  |']
