import json
import os

import pytest
import torch

from torch_geometric_mgvae.cli import build_parser, main


def test_demo_runs_end_to_end(tmp_path):
    out = tmp_path / 'demo'
    assert main(['demo', '--epochs', '2', '--num-graphs', '20',
                 '--num-samples', '8', '--out', str(out),
                 '--no-progress']) == 0
    for name in ('mgvae.pt', 'generated_vs_test.png', 'loss.png',
                 'demo.json'):
        assert (out / name).exists(), name
    result = json.loads((out / 'demo.json').read_text())
    for key in ('degree', 'clustering'):
        assert result['mmd_generated'][key] >= 0
        assert result['mmd_train_vs_test'][key] >= 0
    ckpt = torch.load(out / 'mgvae.pt', weights_only=False)
    assert 'model' in ckpt


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
