import gzip
import os
import shutil

import pytest
import torch
from torch_geometric.loader import DataLoader

from torch_geometric_mgvae.datasets import MNISTGraphs, read_idx
from torch_geometric_mgvae.transforms import (
    graph_to_image,
    grid_graph,
    image_to_graph,
)


def test_grid_graph_is_exact():
    H, W = 4, 5
    edge_index, pos = grid_graph(H, W)
    assert pos.tolist() == [[r, c] for r in range(H) for c in range(W)]
    assert edge_index.size(1) == 2 * (H * (W - 1) + (H - 1) * W) == 62
    assert bool((edge_index[0] != edge_index[1]).all())  # no self loops
    pairs = set(map(tuple, edge_index.t().tolist()))
    assert len(pairs) == 62 and all((j, i) in pairs for i, j in pairs)
    key = edge_index[0] * H * W + edge_index[1]
    assert torch.equal(key, key.sort().values)  # sorted, as PyG's coalesce
    # Every edge joins 4-neighbours:
    d = (pos[edge_index[0]] - pos[edge_index[1]]).abs().sum(-1)
    assert bool((d == 1).all())
    deg = torch.bincount(edge_index[0], minlength=H * W).view(H, W)
    corners = deg[[0, 0, -1, -1], [0, -1, 0, -1]]
    assert corners.tolist() == [2, 2, 2, 2]
    border = torch.cat([deg[0, 1:-1], deg[-1, 1:-1], deg[1:-1, 0],
                        deg[1:-1, -1]])
    assert border.numel() == 10 and bool((border == 3).all())
    assert deg[1:-1, 1:-1].numel() == 6 and bool((deg[1:-1, 1:-1] == 4).all())
    ei, _ = grid_graph(32, 32)
    assert ei.size(1) == 3968
    assert torch.bincount(torch.bincount(ei[0])).tolist() == [0, 0, 4, 120,
                                                              900]
    assert grid_graph(1, 1)[0].size(1) == 0
    with pytest.raises(ValueError, match='height and width'):
        grid_graph(0, 3)


def test_image_graph_round_trip_in_any_node_order():
    img = torch.rand(2, 3, 4)  # (C, H, W)
    data = image_to_graph(img, y=torch.tensor([7]))
    assert data.x.shape == (12, 2) and data.num_nodes == 12
    assert data.x[5].tolist() == img[:, 1, 1].tolist()
    perm = torch.randperm(12)
    out = graph_to_image(data.x[perm], data.pos[perm], size=(3, 4))
    assert torch.equal(out[0], img)
    with pytest.raises(ValueError, match='pos'):
        graph_to_image(data.x, data.pos[:5])
    with pytest.raises(ValueError, match='outside'):
        graph_to_image(data.x, data.pos, size=(2, 2))
    with pytest.raises(ValueError, match='shape'):
        image_to_graph(torch.rand(2))


@pytest.fixture(scope='module')
def mnist_root(tmp_path_factory):
    shared = os.path.abspath(os.path.join(os.path.dirname(__file__), '..',
                                          '..', '..', 'shared', 'data',
                                          'mnist'))
    if not os.path.isdir(shared):
        pytest.skip('shared MNIST folder not available')
    root = tmp_path_factory.mktemp('mnist')
    os.makedirs(root / 'raw')
    for name in ('t10k-images-idx3-ubyte.gz', 't10k-labels-idx1-ubyte.gz',
                 'train-labels-idx1-ubyte.gz'):
        shutil.copy(os.path.join(shared, 'raw', name), root / 'raw' / name)
    shutil.copy(os.path.join(shared, 'mnist_train_reconstructed.npz'),
                root / 'raw' / 'mnist_train_reconstructed.npz')
    return str(root)


def test_mnist_graphs(mnist_root):
    test = MNISTGraphs(mnist_root, 'test')
    assert len(test) == 10000 and test.num_classes == 10
    data = test[0]
    assert data.x.shape == (1024, 1) and data.edge_index.shape == (2, 3968)
    assert data.pos.shape == (1024, 2) and int(data.y) == 7
    assert float(data.x.min()) >= 0 and float(data.x.max()) <= 1
    img = test.images
    assert img.shape == (10000, 1, 32, 32)
    # Two zero pixels of padding on every side; the known test mean:
    assert float(img[..., :2, :].abs().sum() + img[..., -2:, :].abs().sum() +
                 img[..., :2].abs().sum() + img[..., -2:].abs().sum()) == 0
    assert abs(float(img[..., 2:30, 2:30].mean()) - 0.1325) < 1e-3
    assert test.labels[:10].tolist() == [7, 2, 1, 0, 4, 1, 4, 9, 5, 9]
    batch = next(iter(DataLoader(test[:3], batch_size=3)))
    imgs = graph_to_image(batch.x, batch.pos, batch.batch, 3, (32, 32))
    assert torch.equal(imgs, img[:3])
    train = MNISTGraphs(mnist_root, 'train')
    assert len(train) == 60000 and not train.exact_train
    assert train.labels[:5].tolist() == [5, 0, 4, 1, 9]
    with pytest.raises(ValueError, match='pre_transform'):
        MNISTGraphs(mnist_root, 'test', pre_transform=lambda d: d)


def test_mnist_offline_error_and_bad_files(tmp_path):
    root = tmp_path / 'm'
    os.makedirs(root / 'raw')
    with gzip.open(root / 'raw' / 'bad.gz', 'wb') as f:
        f.write((2051).to_bytes(4, 'big') + (5).to_bytes(4, 'big') * 3)
    with pytest.raises(ValueError, match='truncated'):
        read_idx(str(root / 'raw' / 'bad.gz'))
    with pytest.raises(ValueError, match='magic'):
        with gzip.open(root / 'raw' / 'bad2.gz', 'wb') as f:
            f.write(b'\0' * 16)
        read_idx(str(root / 'raw' / 'bad2.gz'))

    def offline(self, name, url):
        self.missing_raw(name, f'downloading {url} failed (offline)')
    MNISTGraphs._fetch, old = offline, MNISTGraphs._fetch
    try:
        with pytest.raises(RuntimeError, match='t10k-images-idx3-ubyte.gz'):
            MNISTGraphs(str(tmp_path / 'empty'), 'test')
    finally:
        MNISTGraphs._fetch = old
    with pytest.raises(ValueError, match='split'):
        MNISTGraphs(str(tmp_path / 'empty'), 'valid')
