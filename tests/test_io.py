import json
import math
import os

import pytest
import torch

from torch_geometric_mgvae.experiments.io import (
    atomic_write,
    json_safe,
    load_torch,
    save_torch,
    write_json,
    write_text,
)
from torch_geometric_mgvae.experiments.results import (
    read_records,
    record,
    write_records,
)


def test_a_write_killed_midway_leaves_the_old_file(tmp_path):
    path = tmp_path / 'ckpt.pt'
    save_torch({'w': torch.ones(3)}, str(path))

    def killed(f):
        f.write(b'half a checkpoint')
        raise KeyboardInterrupt  # e.g. SIGINT while saving

    with pytest.raises(KeyboardInterrupt):
        atomic_write(str(path), killed)
    assert torch.equal(load_torch(str(path))['w'], torch.ones(3))
    assert os.listdir(tmp_path) == ['ckpt.pt']  # no temporary file left

    records = tmp_path / 'r.json'
    write_records(str(records), [record('t', 'd', 'm', 'AUC', 0.5,
                                        command='c')])
    before = records.read_text()
    with pytest.raises(TypeError):  # not JSON: fails before replacing
        write_records(str(records), [record('t', 'd', 'm', 'AP', 0.5,
                                            command=object())])
    assert records.read_text() == before
    assert sorted(os.listdir(tmp_path)) == ['ckpt.pt', 'r.json']


def test_atomic_write_creates_the_folder(tmp_path):
    path = tmp_path / 'new' / 'x.txt'
    assert atomic_write(str(path), lambda f: f.write(b'x')) == str(path)
    assert path.read_text() == 'x'
    assert path.stat().st_mode & 0o777 != 0o600  # not the private tmp mode
    write_text(str(path), 'y')
    assert path.read_text() == 'y'
    assert os.listdir(path.parent) == ['x.txt']


def test_json_has_no_nan(tmp_path):
    obj = {'a': float('nan'), 'b': [1.0, float('inf'), torch.tensor(2.0)],
           'c': (torch.tensor(float('nan')), ), 'd': 'x'}
    assert json_safe(obj) == {'a': None, 'b': [1.0, None, 2.0],
                              'c': [None], 'd': 'x'}
    path = tmp_path / 'x.json'
    write_json(str(path), obj)
    assert 'NaN' not in path.read_text()
    assert json.loads(path.read_text())['a'] is None
    # A non-finite measurement is a failed record that says why:
    r = record('t', 'd', 'm', 'AUC', float('nan'), std=math.inf, command='c')
    assert r['value'] is None and r['std'] is None and 'non-finite' in \
        r['error']


def test_a_broken_record_file_is_named(tmp_path):
    path = tmp_path / 'r.json'
    assert read_records(str(path)) == []
    path.write_text('[{"task": "t", "value": 1')  # cut mid-write
    with pytest.raises(ValueError, match='not valid JSON'):
        read_records(str(path))
    path.write_text('{"a": 1}')
    with pytest.raises(ValueError, match='not a JSON list'):
        read_records(str(path))
    os.remove(path)
    path.mkdir()  # a folder where the records should be
    with pytest.raises(ValueError, match='cannot be read'):
        read_records(str(path))


class _Payload:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, 'w'))


def test_load_torch_names_a_broken_checkpoint_and_runs_no_code(tmp_path):
    path = tmp_path / 'mgvae.pt'
    save_torch({'w': torch.ones(100)}, str(path))
    data = path.read_bytes()
    path.write_bytes(data[:len(data) // 2])  # truncated
    with pytest.raises(ValueError, match=r"mgvae\.pt' cannot be read"):
        load_torch(str(path))
    path.write_bytes(b'')
    with pytest.raises(ValueError, match=r"mgvae\.pt' cannot be read"):
        load_torch(str(path))
    marker = tmp_path / 'PWNED'
    torch.save({'w': _Payload(str(marker))}, str(path))  # crafted
    with pytest.raises(ValueError, match=r"mgvae\.pt' cannot be read"):
        load_torch(str(path))
    assert not marker.exists()
    with pytest.raises(FileNotFoundError):
        load_torch(str(tmp_path / 'missing.pt'))


def test_the_experiments_default_data_is_the_shared_folder():
    # One definition of ../shared/data next to the repository (the molecules
    # experiment pointed one level too deep, into the repository itself).
    from tests.conftest import SHARED
    from torch_geometric_mgvae.experiments import images, molecules, properties
    from torch_geometric_mgvae.experiments.io import SHARED_DATA
    assert SHARED_DATA == SHARED
    assert molecules.DATASETS['qm9']['data'] == os.path.join(SHARED, 'qm9')
    assert molecules.DATASETS['zinc']['data'] == os.path.join(
        SHARED, 'zinc12k_benchgnn')
    assert images.SHARED == os.path.join(SHARED, 'mnist')
    assert properties.SHARED == SHARED
