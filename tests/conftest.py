import os

os.environ.setdefault('OMP_WAIT_POLICY', 'PASSIVE')

import pytest
import torch
from torch import Tensor
from torch_geometric.data import Batch, Data
from torch_geometric.utils import erdos_renyi_graph

SHARED = os.path.abspath(os.path.join(os.path.dirname(__file__), '..', '..',
                                      'shared', 'data'))


def random_graph(n: int, p: float, channels: int, seed: int,
                 dtype=torch.float64) -> Data:
    torch.manual_seed(seed)
    edge_index = erdos_renyi_graph(n, p)
    return Data(x=torch.randn(n, channels, dtype=dtype),
                edge_index=edge_index, num_nodes=n)


def random_batch(sizes=(7, 11, 5), p=0.35, channels=4, seed=0,
                 dtype=torch.float64) -> Batch:
    return Batch.from_data_list([
        random_graph(n, p, channels, seed + i, dtype)
        for i, n in enumerate(sizes)
    ])


def permute_within_graphs(batch: Tensor, seed: int = 0):
    r"""A node permutation that keeps every node in its graph.

    Returns ``perm`` (new position -> old node) and ``inv`` (old -> new)."""
    g = torch.Generator().manual_seed(seed)
    perm = torch.empty_like(batch)
    for b in batch.unique():
        idx = (batch == b).nonzero().view(-1)
        perm[idx] = idx[torch.randperm(idx.numel(), generator=g)]
    inv = torch.empty_like(perm)
    inv[perm] = torch.arange(perm.numel())
    return perm, inv



def stage_mnist(root) -> str:
    r"""Copies the shared MNIST raw files (and the reconstructed training
    images) into :obj:`root`/raw, as a user places downloaded files; skips
    the test without the shared folder."""
    import shutil
    src = os.path.join(SHARED, 'mnist')
    if not os.path.isdir(src):
        pytest.skip('shared MNIST folder not available')
    os.makedirs(os.path.join(root, 'raw'), exist_ok=True)
    for name in os.listdir(os.path.join(src, 'raw')):
        shutil.copy(os.path.join(src, 'raw', name),
                    os.path.join(root, 'raw', name))
    shutil.copy(os.path.join(src, 'mnist_train_reconstructed.npz'),
                os.path.join(root, 'raw'))
    return str(root)


@pytest.fixture
def shared_data():
    if not os.path.isdir(SHARED):
        pytest.skip('shared data folder not available')
    return SHARED
