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


def free_port() -> int:
    import socket
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def spawn_ranks(worker, folder, nprocs: int, *args, results=(),
                grace: float = 60.0):
    r"""Runs :obj:`worker(rank, folder, port, *args)` in :obj:`nprocs`
    spawned processes (a fresh port for their process group) and waits for
    all of them.

    Every file of :obj:`results` (relative to :obj:`folder`) is written by a
    worker at its very end. A process that dies of a signal while the others
    go on (they get :obj:`grace` seconds to finish) is tolerated when all of
    these files exist afterwards: it died in the teardown of gloo's threads
    (once in CI: "terminate called without an active exception" on rank 0,
    which hosts the TCP store), not in the code under test, and the test goes
    on to check the results. A Python error in a worker (the others are then
    stopped), a missing file or a process still running after the grace
    period fails the test."""
    import pickle
    import time
    from multiprocessing.connection import wait

    import torch.multiprocessing as mp
    ctx = mp.start_processes(worker, args=(str(folder), free_port()) + args,
                             nprocs=nprocs, join=False,
                             start_method='spawn')
    procs, deadline = ctx.processes, None
    while any(p.exitcode is None for p in procs):
        codes = [p.exitcode for p in procs]
        if any(c is not None and c > 0 for c in codes):
            break  # a Python error: the others may wait in a collective
        if deadline is None and any(c is not None for c in codes):
            deadline = time.monotonic() + grace
        if deadline is not None and time.monotonic() > deadline:
            break
        wait([p.sentinel for p in procs if p.exitcode is None], timeout=1)
    for p in procs:
        if p.exitcode is None:
            p.terminate()
        p.join()
    codes = [p.exitcode for p in procs]
    for rank, code in enumerate(codes):
        if code is not None and code > 0:
            with open(ctx.error_files[rank], 'rb') as f:
                raise AssertionError(f'rank {rank} failed:\n'
                                     f'{pickle.load(f)}')
    missing = [r for r in results
               if not os.path.exists(os.path.join(folder, r))]
    if any(codes) and (missing or not results):
        raise AssertionError(f'exit codes {codes} (negative: the signal); '
                             f'results missing: {missing}')
