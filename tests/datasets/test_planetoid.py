r"""The Planetoid graphs of the link prediction experiment on the cached
base (found by benchmark/probes.py: PyG's Planetoid unpickles
processed/pre_transform.pt in full and leaves an empty raw folder when a
download fails)."""
import os
import os.path as osp
import shutil

import pytest
import torch

import torch_geometric_mgvae.datasets.base as base
from torch_geometric_mgvae.datasets import Planetoid


class _Payload:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, 'w'))


@pytest.fixture
def no_download(monkeypatch):
    def fail(url, *args, **kwargs):
        raise OSError(f'no internet ({url})')
    monkeypatch.setattr(base, 'download_url', fail)


def test_planetoid_cache_is_never_unpickled(tmp_path, shared_data,
                                            no_download):
    root = str(tmp_path / 'planetoid')
    shutil.copytree(osp.join(shared_data, 'cora', 'raw'),
                    osp.join(root, 'Cora', 'raw'))
    data = Planetoid(root, 'Cora')[0]
    assert (data.num_nodes, data.num_edges) == (2708, 10556)
    assert int(data.train_mask.sum()) == 140
    marker = tmp_path / 'PWNED'
    processed = osp.join(root, 'Cora', 'processed')
    torch.save(_Payload(str(marker)), osp.join(processed, 'pre_transform.pt'))
    torch.save({'x': _Payload(str(marker))}, osp.join(processed, 'data.pt'))
    with pytest.warns(UserWarning, match='a processed file cannot be read'):
        again = Planetoid(root, 'Cora')[0]
    assert not marker.exists()
    assert torch.equal(again.edge_index, data.edge_index)


def test_planetoid_offline_names_the_files_and_leaves_no_folder(
        tmp_path, no_download):
    root = tmp_path / 'planetoid'
    with pytest.raises(RuntimeError, match=r"raw file 'ind\.cora\.x' is "
                       r"missing.*ind\.cora\.test\.index"):
        Planetoid(str(root), 'Cora')
    assert not root.exists()
    with pytest.raises(ValueError, match='PubMed'):
        Planetoid(str(root), 'Reddit')
    assert os.listdir(tmp_path) == []
