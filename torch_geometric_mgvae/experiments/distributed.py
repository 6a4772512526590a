r"""Devices and data-parallel training on :mod:`torch.distributed`.

Every :obj:`mgvae` command runs on one device (:obj:`--device
auto|cpu|cuda|mps`; auto = cuda > mps > cpu, as PyG's examples choose) and
(:obj:`demo`, :obj:`generate`, :obj:`link-pred`, :obj:`molecules`,
:obj:`properties`, :obj:`images`), launched by ``torchrun`` (or with
:obj:`--nproc N`, which re-launches itself through
:mod:`torch.distributed.run`), data-parallel in :obj:`N` processes, the
way PyG's ``examples/multi_gpu/distributed_batching.py`` does it: one
process per device, :class:`~torch.nn.parallel.DistributedDataParallel`
(gloo on the CPU, NCCL on CUDA) over a module
whose :meth:`forward` returns the loss terms, and a
:class:`~torch.utils.data.distributed.DistributedSampler` per graph data
set. PyTorch exchanges the gradients; nothing here does.

::

    torchrun --nproc_per_node 2 -m torch_geometric_mgvae.cli molecules ...
    mgvae molecules --nproc 2 ...                  # the same

How a driver adopts it (what every command does)::

    from torch_geometric_mgvae.experiments import distributed as D
    from torch_geometric_mgvae.experiments.options import (
        add_parallel_arguments)
    from torch_geometric_mgvae.experiments.train import LossModule, run_epoch

    add_parallel_arguments(parser)                 # --device, --nproc

    def run(args):
        with D.Parallel(args.device) as par:       # process group if any
            with par.main_first():                 # rank 0 builds caches
                graphs = load(...)
            loader = par.loader(graphs, args.batch_size, seed=args.seed)
            torch.manual_seed(args.seed)           # same init everywhere
            model = Model(...).to(par.device)
            net = par.wrap(LossModule(model))      # DDP over model + loss
            gen = par.generator(args.seed)         # noise differs by rank
            for epoch in range(1, args.epochs + 1):
                run_epoch(net, loader, opt, generator=gen, epoch=epoch)
            if par.is_main:                        # metrics, pictures,
                evaluate_and_write(model)          # records, checkpoints
            par.barrier()                          # the others wait here

:class:`~torch_geometric_mgvae.experiments.state.TrainingSession` (saving,
:obj:`--resume`, signals) and :func:`~torch_geometric_mgvae.experiments.
train.run_epoch` (non-finite checks) are collective already: a NaN on one
process, a signal to one process or a time limit reached on one stops all
of them after the same step or epoch.

What the pieces guarantee:

* :class:`DistributedGraphSampler` keeps the *global* batch: with
  :obj:`N` processes every process takes :obj:`batch_size / N` graphs of
  each global batch (a :class:`~torch_geometric_mgvae.experiments.options.
  UsageError` if :obj:`N` does not divide it), the global batches are the
  same for every :obj:`N`, every graph is visited exactly once per epoch,
  and :func:`~torch_geometric_mgvae.experiments.train.run_epoch` weighs
  the processes' losses so that the averaged gradient is the gradient of
  the global batch's mean loss, also for a smaller last batch (a process
  left without a graph there computes one with weight 0).
* Seeding: every process builds the model from the same seed (and DDP
  broadcasts rank 0's weights); the training noise comes from
  :meth:`Parallel.generator`, seeded by :func:`rank_seed` (rank 0's seed
  is the run's, so one process reproduces a run without torchrun). A run
  is reproducible for a given :obj:`N` and device.
* Only rank 0 writes: :func:`~torch_geometric_mgvae.experiments.io.
  atomic_write`, through which every file of the experiments goes, raises
  on any other rank.
"""
import contextlib
import datetime
import os
import sys
from typing import Any, Iterator, List, Optional, Sequence, Tuple

import torch
import torch.distributed as dist
from torch.utils.data.distributed import DistributedSampler

from torch_geometric_mgvae.experiments.options import UsageError

__all__ = ['DEVICES', 'TIMEOUT', 'select_device', 'is_distributed',
           'get_rank', 'get_world_size', 'is_main', 'barrier', 'any_rank',
           'all_sum', 'gather_objects', 'rank_seed', 'launched_by_torchrun',
           'relaunch_command', 'DistributedGraphSampler', 'Parallel']

DEVICES = ('auto', 'cpu', 'cuda', 'mps')
#: How long a process waits for the others in a collective (the other
#: ranks wait at a barrier while rank 0 evaluates and writes).
TIMEOUT = datetime.timedelta(hours=2)


# Devices ##################################################################

def _mps_available() -> bool:
    mps = getattr(torch.backends, 'mps', None)
    return mps is not None and mps.is_available()


def select_device(name: str = 'auto',
                  local_rank: Optional[int] = None) -> torch.device:
    r"""The device of :obj:`--device`: :obj:`"auto"` picks CUDA, then MPS,
    then the CPU (PyG's examples' order). Under ``torchrun``, CUDA means the
    GPU :obj:`local_rank` (default: :obj:`LOCAL_RANK`). Raises a one-line
    :class:`~torch_geometric_mgvae.experiments.options.UsageError` for a
    device this machine does not have."""
    if name not in DEVICES:
        raise UsageError(f"--device: expected one of {DEVICES}, got "
                         f"'{name}'")
    if name == 'auto':
        name = ('cuda' if torch.cuda.is_available() else
                'mps' if _mps_available() else 'cpu')
    if name == 'cuda':
        if not torch.cuda.is_available():
            raise UsageError("--device cuda: no CUDA device is available "
                             "(torch.cuda.is_available() is False)")
        if local_rank is None:
            local_rank = int(os.environ.get('LOCAL_RANK', 0))
        if local_rank >= torch.cuda.device_count():
            raise UsageError(f"--device cuda: process {local_rank} needs "
                             f"GPU {local_rank} but only "
                             f"{torch.cuda.device_count()} are visible")
        return torch.device('cuda', local_rank)
    if name == 'mps' and not _mps_available():
        raise UsageError("--device mps: no MPS device is available "
                         "(torch.backends.mps.is_available() is False)")
    return torch.device(name)


# Collectives that are no-ops in one process ###############################

def is_distributed() -> bool:
    r"""Whether this process belongs to an initialised process group."""
    return dist.is_available() and dist.is_initialized()


def get_rank() -> int:
    return dist.get_rank() if is_distributed() else 0


def get_world_size() -> int:
    return dist.get_world_size() if is_distributed() else 1


def is_main() -> bool:
    r"""Whether this is the process that writes (rank 0)."""
    return get_rank() == 0


def barrier():
    r"""Waits for every process (nothing in one process)."""
    if is_distributed():
        dist.barrier()


def _collective_device() -> torch.device:
    # NCCL reduces CUDA tensors, gloo CPU ones.
    if is_distributed() and dist.get_backend() == 'nccl':
        return torch.device('cuda', torch.cuda.current_device())
    return torch.device('cpu')


def all_sum(values: Sequence[float]) -> List[float]:
    r"""The element-wise sum of :obj:`values` over all processes (one
    all-reduce, in float64)."""
    if not is_distributed():
        return [float(v) for v in values]
    t = torch.tensor([float(v) for v in values], dtype=torch.float64,
                     device=_collective_device())
    dist.all_reduce(t)
    return t.tolist()


def any_rank(*flags: bool) -> Tuple[bool, ...]:
    r"""For every flag: whether it is :obj:`True` on any process (one
    all-reduce for all of them)."""
    return tuple(v > 0 for v in all_sum([float(bool(f)) for f in flags]))


def gather_objects(obj: Any) -> List[Any]:
    r"""The :obj:`obj` of every process, in rank order, on every process
    (:func:`torch.distributed.all_gather_object`)."""
    if not is_distributed():
        return [obj]
    out: List[Any] = [None] * get_world_size()
    dist.all_gather_object(out, obj)
    return out


def rank_seed(seed: int, rank: Optional[int] = None) -> int:
    r"""The seed of the training noise of process :obj:`rank` (default:
    this one's): :obj:`seed` itself on rank 0, so that one process repeats a
    run without ``torchrun``, and far apart seeds on the others."""
    rank = get_rank() if rank is None else rank
    return seed + 1_000_003 * rank


# Launching ################################################################

def launched_by_torchrun() -> bool:
    r"""Whether ``torchrun`` (:mod:`torch.distributed.run`) started this
    process (it sets :obj:`WORLD_SIZE`, :obj:`RANK` and
    :obj:`LOCAL_RANK`)."""
    return all(k in os.environ for k in ('WORLD_SIZE', 'RANK', 'LOCAL_RANK'))


def relaunch_command(argv: Sequence[str], nproc: int,
                     module: str = 'torch_geometric_mgvae.cli') -> List[str]:
    r"""The command that runs :obj:`python -m module argv` in :obj:`nproc`
    processes through ``torchrun`` on this machine (:obj:`--standalone`: a
    free port, no rendezvous server)."""
    return [sys.executable, '-m', 'torch.distributed.run', '--standalone',
            f'--nproc_per_node={nproc}', '-m', module, *argv]


# The sampler ##############################################################

class DistributedGraphSampler(DistributedSampler):
    r"""A :class:`~torch.utils.data.distributed.DistributedSampler` that
    keeps the global batch: the graphs are shuffled with
    :obj:`seed + epoch` (:meth:`set_epoch`), cut into global batches of
    :obj:`batch_size`, and process :obj:`rank` takes every
    :obj:`num_replicas`-th graph of each; a
    :class:`~torch_geometric.loader.DataLoader` with
    :obj:`batch_size // num_replicas` turns that into its batches. The global
    batches do not depend on :obj:`num_replicas`, and every graph is visited
    exactly once per epoch. Where the last global batch has fewer graphs
    than processes, the processes without one get its first graph with
    weight 0 (:meth:`step_counts`), so that all take the same number of
    steps.

    Args:
        dataset (Sequence): The graphs.
        batch_size (int): The global batch size, divisible by
            :obj:`num_replicas`.
        num_replicas (int, optional): Processes (default: the world size).
        rank (int, optional): This process (default: its rank).
        shuffle (bool): Shuffle every epoch. (default: :obj:`True`)
        seed (int): Seed of the shuffling. (default: :obj:`0`)
    """
    def __init__(self, dataset: Sequence[Any], batch_size: int,
                 num_replicas: Optional[int] = None,
                 rank: Optional[int] = None, shuffle: bool = True,
                 seed: int = 0):
        num_replicas = get_world_size() if num_replicas is None else \
            num_replicas
        rank = get_rank() if rank is None else rank
        if batch_size < 1 or batch_size % num_replicas:
            raise UsageError(f"--batch-size {batch_size} is the global "
                             f"batch: it must be a multiple of the "
                             f"{num_replicas} processes (each takes "
                             f"batch-size / {num_replicas} graphs)")
        super().__init__(dataset, num_replicas=num_replicas, rank=rank,
                         shuffle=shuffle, seed=seed, drop_last=False)
        self.batch_size = batch_size
        self.local_batch_size = batch_size // num_replicas

    def _order(self) -> torch.Tensor:
        n = len(self.dataset)
        if not self.shuffle:
            return torch.arange(n)
        g = torch.Generator().manual_seed(self.seed + self.epoch)
        return torch.randperm(n, generator=g)

    def _parts(self) -> Iterator[Tuple[torch.Tensor, int, int]]:
        order = self._order()
        for start in range(0, order.numel(), self.batch_size):
            glob = order[start:start + self.batch_size]
            part = glob[self.rank::self.num_replicas]
            if part.numel() == 0:  # a short last batch: weight 0
                yield glob[:1], 0, glob.numel()
            else:
                yield part, part.numel(), glob.numel()

    def __iter__(self) -> Iterator[int]:
        for part, _, _ in self._parts():
            yield from part.tolist()

    def __len__(self) -> int:
        return sum(part.numel() for part, _, _ in self._parts())

    def step_counts(self) -> List[Tuple[int, int]]:
        r"""For every step of the current epoch: the number of graphs of
        this process that count (0 for a stand-in) and of the global
        batch."""
        return [(n, total) for _, n, total in self._parts()]

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}({len(self.dataset)}, '
                f'batch_size={self.batch_size}, '
                f'num_replicas={self.num_replicas}, rank={self.rank})')


# The context of a run #####################################################

class Parallel:
    r"""The device and process group of one run.

    Entering it under ``torchrun`` (more than one process) initialises the
    default process group (NCCL for CUDA, gloo otherwise) and, for CUDA,
    selects the process's GPU; leaving it destroys the group. In one
    process it only selects the device.

    Args:
        device (str): :obj:`"auto"`, :obj:`"cpu"`, :obj:`"cuda"` or
            :obj:`"mps"` (see :func:`select_device`).
        backend (str, optional): The process group backend (default: NCCL
            on CUDA, gloo otherwise).
    """
    def __init__(self, device: str = 'auto', backend: Optional[str] = None):
        self.device = select_device(device)
        self.backend = backend or ('nccl' if self.device.type == 'cuda'
                                   else 'gloo')
        self._owns_group = False

    @classmethod
    def from_args(cls, args: Any) -> 'Parallel':
        return cls(getattr(args, 'device', 'auto'))

    def __enter__(self) -> 'Parallel':
        if launched_by_torchrun() and int(os.environ['WORLD_SIZE']) > 1 \
                and not is_distributed():
            if self.device.type == 'mps':
                raise UsageError('--device mps runs in one process only')
            if self.device.type == 'cuda':
                torch.cuda.set_device(self.device)
            dist.init_process_group(self.backend, timeout=TIMEOUT)
            self._owns_group = True
        return self

    def __exit__(self, *exc) -> None:
        if self._owns_group and is_distributed():
            dist.destroy_process_group()
        self._owns_group = False

    @property
    def rank(self) -> int:
        return get_rank()

    @property
    def world_size(self) -> int:
        return get_world_size()

    @property
    def is_main(self) -> bool:
        return is_main()

    def barrier(self):
        barrier()

    @contextlib.contextmanager
    def main_first(self):
        r"""Runs the block on rank 0 first and then on the others (for work
        that fills a cache on disk, e.g. processing a data set). If it
        fails on rank 0, the others never run it (``torchrun`` stops them
        when rank 0 exits)."""
        if not self.is_main:
            barrier()
        yield
        if self.is_main:
            barrier()

    def generator(self, seed: int) -> torch.Generator:
        r"""A :class:`torch.Generator` on the device, seeded with
        :func:`rank_seed`: the training noise (Gumbel, reparameterisation,
        sampled non-edges) of this process."""
        return torch.Generator(device=self.device).manual_seed(
            rank_seed(seed))

    def sampler(self, dataset: Sequence[Any], batch_size: int,
                shuffle: bool = True, seed: int = 0
                ) -> DistributedGraphSampler:
        return DistributedGraphSampler(dataset, batch_size, shuffle=shuffle,
                                       seed=seed)

    def loader(self, dataset: Sequence[Any], batch_size: int,
               shuffle: bool = True, seed: int = 0, **kwargs: Any):
        r"""A :class:`~torch_geometric.loader.DataLoader` over this
        process's share of :obj:`dataset`: global batches of
        :obj:`batch_size` graphs (:class:`DistributedGraphSampler`)."""
        from torch_geometric.loader import DataLoader
        sampler = self.sampler(dataset, batch_size, shuffle, seed)
        return DataLoader(dataset, batch_size=sampler.local_batch_size,
                          sampler=sampler, **kwargs)

    def wrap(self, module: torch.nn.Module,
             find_unused_parameters: bool = True,
             sync_batchnorm: bool = False) -> torch.nn.Module:
        r""":obj:`module` (already on the device) in
        :class:`~torch.nn.parallel.DistributedDataParallel` when there is
        more than one process, else itself. Its :meth:`forward` should return
        the loss terms (:class:`~torch_geometric_mgvae.experiments.train.
        LossModule`), so that DDP sees every parameter the loss uses
        (:obj:`find_unused_parameters`: a fixed clustering, a decoder or a
        regulariser may leave some out).

        :obj:`sync_batchnorm`: on CUDA, the batch normalisation layers of
        :obj:`module` become :class:`~torch.nn.SyncBatchNorm` (in place), so
        that they normalise over the global batch. PyTorch has no
        :class:`~torch.nn.SyncBatchNorm` for the CPU: there (gloo) every
        process normalises over its own share of the batch, and DDP copies
        rank 0's running statistics to the others at every step, so a run
        with batch normalisation depends on the number of processes."""
        if not is_distributed() or get_world_size() == 1:
            return module
        from torch.nn.parallel import DistributedDataParallel
        if sync_batchnorm and self.device.type == 'cuda':
            module = torch.nn.SyncBatchNorm.convert_sync_batchnorm(module)
        ids = [self.device.index] if self.device.type == 'cuda' else None
        return DistributedDataParallel(
            module, device_ids=ids,
            find_unused_parameters=find_unused_parameters)

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}(device={self.device}, '
                f'world_size={self.world_size}, rank={self.rank})')
