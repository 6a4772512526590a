import os
import os.path as osp
import pickle
import pydoc
import warnings

import pytest
import torch
from torch_geometric.data import Data
from torch_geometric.io import fs

import torch_geometric_mgvae.datasets.base as base
from torch_geometric_mgvae.datasets.base import (
    CachedInMemoryDataset,
    atomic_write,
    callable_key,
    load_weights_only,
)


class Toy(CachedInMemoryDataset):
    r"""Raw file ``toy.txt`` holds a number n: n graphs with x = [[i]]."""
    splits = ('all', )
    raw_help = 'Write a number into toy.txt.'
    url = None
    calls = 0

    def raw_sources(self):
        return {'toy.txt': self.url}

    @property
    def processed_file_names(self):
        return ['toy.pt']

    def process(self):
        Toy.calls += 1
        with open(self.raw_paths[0]) as f:
            n = int(f.read())
        data_list = [Data(x=torch.tensor([[float(i)]])) for i in range(n)]
        if self.pre_filter is not None:
            data_list = [d for d in data_list if self.pre_filter(d)]
        if self.pre_transform is not None:
            data_list = [self.pre_transform(d) for d in data_list]
        self.save(data_list, self.processed_paths[0])


class RunsCode:
    r"""Unpickling this runs a shell command that creates :obj:`marker`,
    through :func:`os.system` or :func:`pydoc.pipepager` (a module that
    torch's weights-only unpickler does not block, so PyG's
    :obj:`fs.torch_load` falls back to full unpickling and runs it)."""
    def __init__(self, marker, via='os.system'):
        self.marker = str(marker)
        self.via = via

    def __reduce__(self):
        if self.via == 'pydoc':
            return (pydoc.pipepager, ('', f'touch {self.marker}'))
        return (os.system, (f'touch {self.marker}', ))


def _toy_root(tmp_path, n=3):
    root = tmp_path / 'toy'
    os.makedirs(root / 'raw')
    (root / 'raw' / 'toy.txt').write_text(str(n))
    return str(root)


def _values(ds):
    return [float(d.x) for d in ds]


def _quiet(*args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter('error')  # a fresh cache warns nothing
        return Toy(*args, **kwargs)


def test_cache_reused_and_rebuilt_when_raw_changes(tmp_path):
    root = _toy_root(tmp_path, 3)
    Toy.calls = 0
    assert _values(Toy(root, 'all')) == [0.0, 1.0, 2.0]
    assert str(Toy(root, 'all')) == 'Toy(3, split=all)'
    assert Toy.calls == 1
    assert osp.exists(osp.join(root, 'processed', 'toy.manifest.json'))
    # Neither pre_transform.pt nor pre_filter.pt are written.
    assert sorted(os.listdir(osp.join(root, 'processed'))) == [
        'toy.manifest.json', 'toy.pt']

    with open(osp.join(root, 'raw', 'toy.txt'), 'w') as f:
        f.write('5')
    with pytest.warns(UserWarning, match=r"raw files \['toy.txt'\] changed"):
        assert _values(Toy(root, 'all')) == [0.0, 1.0, 2.0, 3.0, 4.0]
    assert len(_quiet(root, 'all')) == 5
    assert Toy.calls == 2


@pytest.mark.parametrize('damage', ['truncate', 'empty', 'garbage'])
def test_unreadable_cache_is_rebuilt(tmp_path, damage):
    root = _toy_root(tmp_path, 4)
    Toy(root, 'all')
    path = osp.join(root, 'processed', 'toy.pt')
    content = open(path, 'rb').read()
    with open(path, 'wb') as f:
        f.write({
            'truncate': content[:len(content) // 2],
            'empty': b'',
            'garbage': b'not a torch file',
        }[damage])
    with pytest.warns(UserWarning, match='a processed file cannot be read'):
        assert _values(Toy(root, 'all')) == [0.0, 1.0, 2.0, 3.0]
    assert len(_quiet(root, 'all')) == 4


def test_cache_without_manifest_is_rebuilt(tmp_path):
    root = _toy_root(tmp_path, 2)
    Toy(root, 'all')
    os.remove(osp.join(root, 'processed', 'toy.manifest.json'))
    with pytest.warns(UserWarning, match='no manifest'):
        assert len(Toy(root, 'all')) == 2
    with open(osp.join(root, 'processed', 'toy.manifest.json'), 'w') as f:
        f.write('{"version": ')  # cut mid-write
    with pytest.warns(UserWarning, match='manifest cannot be read'):
        assert len(Toy(root, 'all')) == 2


def _even(data):
    return int(data.x) % 2 == 0


def _odd(data):
    return int(data.x) % 2 == 1


def test_pre_filter_change_rebuilds(tmp_path):
    root = _toy_root(tmp_path, 5)
    assert _values(Toy(root, 'all', pre_filter=_even)) == [0.0, 2.0, 4.0]
    assert len(_quiet(root, 'all', pre_filter=_even)) == 3
    # PyG's _repr keys every function as '<function>'; ours by name.
    with pytest.warns(UserWarning, match='built with pre_filter=.*_even'):
        assert _values(Toy(root, 'all', pre_filter=_odd)) == [1.0, 3.0]
    Toy(root, 'all', force_reload=True)  # no warning needed: asked for
    assert len(_quiet(root, 'all')) == 5


@pytest.mark.parametrize('via', ['os.system', 'pydoc'])
def test_crafted_processed_files_are_never_unpickled(tmp_path, via):
    root = _toy_root(tmp_path, 3)
    Toy(root, 'all')
    marker = tmp_path / 'ran'
    processed = osp.join(root, 'processed')
    if via == 'pydoc':  # The payload is live: PyG's loader runs it.
        torch.save(RunsCode(marker, via), str(tmp_path / 'probe.pt'))
        with pytest.warns(UserWarning):
            fs.torch_load(str(tmp_path / 'probe.pt'))
        assert marker.exists()
        marker.unlink()
    # PyG's Dataset._process unpickles these in full; they are ignored.
    for name in ('pre_transform.pt', 'pre_filter.pt'):
        torch.save(RunsCode(marker, via), osp.join(processed, name))
    assert len(_quiet(root, 'all')) == 3
    assert not marker.exists()
    # A processed file that needs full unpickling is rebuilt, not run
    # (PyG's fs.torch_load retries with weights_only=False).
    torch.save(RunsCode(marker, via), osp.join(processed, 'toy.pt'))
    with pytest.warns(UserWarning, match='weights_only'):
        assert len(Toy(root, 'all')) == 3
    assert not marker.exists()
    # The rebuild removed the stray PyG files.
    assert sorted(os.listdir(processed)) == ['toy.manifest.json', 'toy.pt']


class Opaque:
    pass


def _add_opaque(data):
    data.extra = Opaque()
    return data


def test_unloadable_rebuilt_cache_is_refused(tmp_path):
    root = _toy_root(tmp_path, 2)
    # Built once, refused at once (no second build, no full unpickling).
    Toy.calls = 0
    with pytest.raises(RuntimeError, match=r"Toy: a freshly built processed "
                       r"file cannot be read \(.*GLOBAL .*test_base.Opaque.*"
                       r"never unpickled in full"):
        Toy(root, 'all', pre_transform=_add_opaque)
    assert Toy.calls == 1


def test_offline_error_names_files_and_leaves_no_folders(tmp_path,
                                                        monkeypatch):
    def offline(url, folder, log=True, filename=None):
        raise OSError('<urlopen error [Errno -3] no internet>')

    monkeypatch.setattr(base, 'download_url', offline)
    root = tmp_path / 'data' / 'toy'
    with pytest.raises(RuntimeError, match='cannot be downloaded') as e:
        Toy(str(root), 'all')
    assert str(e.value) == (
        f"Toy: raw file 'toy.txt' is missing in '{root / 'raw'}' and it "
        f"cannot be downloaded. Expected raw files: ['toy.txt']. Write a "
        f"number into toy.txt.")
    assert os.listdir(tmp_path) == []  # data/, toy/ and raw/ removed

    class Remote(Toy):
        url = 'https://example.org/toy.txt'

    with pytest.raises(RuntimeError, match=r"downloading https://example.org"
                       r"/toy.txt failed \(OSError: <urlopen error"):
        Remote(str(root), 'all')
    assert os.listdir(tmp_path) == []
    # A raw folder that existed is kept.
    os.makedirs(root / 'raw')
    with pytest.raises(RuntimeError):
        Remote(str(root), 'all')
    assert os.listdir(root / 'raw') == []


def test_download_is_atomic(tmp_path, monkeypatch):
    class Remote(Toy):
        url = 'https://example.org/toy.txt'

    def cut(url, folder, log=True, filename=None):
        with open(osp.join(folder, filename), 'w') as f:
            f.write('12')  # only part of the content arrives
        raise KeyboardInterrupt

    monkeypatch.setattr(base, 'download_url', cut)
    root = tmp_path / 'toy'
    with pytest.raises(KeyboardInterrupt):
        Remote(str(root), 'all')
    assert not root.exists()  # no part file, no empty folder

    def complete(url, folder, log=True, filename=None):
        path = osp.join(folder, filename)
        with open(path, 'w') as f:
            f.write('2')
        return path

    monkeypatch.setattr(base, 'download_url', complete)
    assert len(Remote(str(root), 'all')) == 2
    assert os.listdir(root / 'raw') == ['toy.txt']


def test_atomic_write_keeps_old_file(tmp_path):
    path = str(tmp_path / 'f.bin')
    atomic_write(path, lambda f: f.write(b'old'))

    def fails(f):
        f.write(b'ne')
        raise OSError('disk full')

    with pytest.raises(OSError, match='disk full'):
        atomic_write(path, fails)
    assert open(path, 'rb').read() == b'old'
    assert os.listdir(tmp_path) == ['f.bin']


def test_load_weights_only_and_callable_key(tmp_path):
    path = str(tmp_path / 'x.pt')
    with open(path, 'wb') as f:
        pickle.dump(RunsCode(tmp_path / 'ran'), f)
    with pytest.raises(base.CacheError, match=r"torch.load\(weights_only="
                       r"True\) failed \(UnpicklingError: "):
        load_weights_only(path)
    assert not (tmp_path / 'ran').exists()
    assert callable_key(None) == 'None'
    assert callable_key(_even) != callable_key(_odd)
    assert callable_key(_even) == f'{__name__}._even'
    assert 'at 0x' not in callable_key(Opaque())
