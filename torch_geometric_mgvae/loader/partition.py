r"""Mini-batches of subgraphs of one graph too large for one training step.

The graph is partitioned once into parts of equal size
(:func:`smoothed_bisection_partition`: a few passes over the edges, no
compiled extension); every epoch the parts are shuffled into batches of
:obj:`parts_per_batch` parts, and a batch is the subgraph induced by its
parts' nodes (ClusterGCN's scheme, Chiang et al., KDD 2019), plus, with
:obj:`cut_edges=True`, the edges that leave the batch and their outside
endpoints, so that every edge of the graph is trained on in every epoch
(a cut edge in the batches of both its endpoints). Batches are sharded
across the processes of a data-parallel run.

Why not PyG's :class:`~torch_geometric.loader.ClusterData`: its METIS needs
:obj:`torch-sparse` or :obj:`pyg-lib`, which PyPI does not ship as wheels
for this torch (the first is a source package that compiles, the second
is not on PyPI). The library's fixed clusterings (spectral, k-means) cost
far more than :math:`O(|E|)` at :math:`10^7` nodes.

The graph is held in CSR form (:obj:`rowptr`, :obj:`col`: 8 bytes per
directed edge and per node), never as an edge list copy.
"""
from typing import Iterator, List, Optional, Tuple

import torch
from torch import Tensor
from torch_geometric.data import Data

__all__ = ['to_csr', 'smoothed_bisection_partition', 'PartitionData',
           'PartitionLoader']


def to_csr(edge_index: Tensor, num_nodes: int) -> Tuple[Tensor, Tensor]:
    r"""The CSR form :obj:`(rowptr [N + 1], col [E])` of :obj:`edge_index`
    (rows sorted, columns in the order of a stable sort)."""
    row, col = edge_index
    order = torch.argsort(row, stable=True)
    deg = torch.bincount(row, minlength=num_nodes)
    rowptr = torch.zeros(num_nodes + 1, dtype=torch.long, device=row.device)
    torch.cumsum(deg, 0, out=rowptr[1:])
    return rowptr, col[order]


def _neighbour_mean(rowptr: Tensor, col: Tensor, x: Tensor,
                    chunk: int) -> Tensor:
    r"""The mean of the neighbours' rows of :obj:`x` for every node (a
    random-walk step, :math:`D^{-1} A X`), computed over chunks of rows;
    isolated nodes keep their row."""
    out = torch.empty_like(x)
    N = x.size(0)
    for lo in range(0, N, chunk):
        hi = min(lo + chunk, N)
        start, end = int(rowptr[lo]), int(rowptr[hi])
        deg = rowptr[lo + 1:hi + 1] - rowptr[lo:hi]
        row = torch.repeat_interleave(
            torch.arange(hi - lo, device=x.device), deg)
        acc = torch.zeros(hi - lo, x.size(1), dtype=x.dtype, device=x.device)
        acc.index_add_(0, row, x[col[start:end]])
        out[lo:hi] = torch.where(deg.view(-1, 1) > 0,
                                 acc / deg.clamp(min=1).view(-1, 1).to(
                                     x.dtype), x[lo:hi])
    return out


def _bisect(x: Tensor, nodes: Tensor, num_parts: int, first: int,
            part: Tensor):
    r"""Recursive coordinate bisection of :obj:`nodes` into
    :obj:`num_parts` parts numbered from :obj:`first`: split along the
    embedding dimension of largest variance, in proportion to the parts on
    each side."""
    if num_parts == 1:
        part[nodes] = first
        return
    sub = x[nodes]
    dim = int(sub.var(dim=0).argmax())
    order = nodes[torch.argsort(sub[:, dim], stable=True)]
    left = num_parts // 2
    cut = order.numel() * left // num_parts
    _bisect(x, order[:cut], left, first, part)
    _bisect(x, order[cut:], num_parts - left, first + left, part)


def smoothed_bisection_partition(rowptr: Tensor, col: Tensor,
                                 num_parts: int, dims: int = 8,
                                 num_iters: int = 10, seed: int = 0,
                                 chunk: int = 1 << 20) -> Tensor:
    r"""A balanced partition of a graph into :obj:`num_parts` parts in
    :math:`O(t \cdot d \cdot |E| + N \log N \log K)` time and
    :math:`O(N d + \text{chunk} \cdot \bar{\deg} \cdot d)` extra memory:

    1. embedding: :math:`d` random Gaussian node vectors smoothed by
       :math:`t` random-walk steps :math:`X \leftarrow D^{-1} A X`, centred
       and scaled after every step (orthogonal-iteration style power
       iterations: what survives is spanned by the leading non-trivial
       eigenvectors of the random walk, i.e. a cheap spectral embedding in
       which nodes of one community lie close together);
    2. recursive coordinate bisection of the embedding (sort along the
       dimension of largest variance, split in proportion to the parts on
       each side): parts of :math:`\lfloor N / K \rfloor` or
       :math:`\lceil N / K \rceil` nodes.

    No compiled extension, a fixed number of sparse passes over the edges
    and sorts of the nodes, so it runs on :math:`10^7` nodes; on graphs with
    communities the parts follow them, on an expander (a random graph) any
    balanced partition cuts most edges, and so does this one.

    Args:
        rowptr (torch.Tensor): CSR row pointers :math:`(N + 1)`.
        col (torch.Tensor): CSR columns :math:`(E)` (both directions of
            every edge).
        num_parts (int): :math:`K`.
        dims (int): Embedding dimensions :math:`d`. (default: :obj:`8`)
        num_iters (int): Random-walk steps :math:`t`. (default: :obj:`10`)
        seed (int): Seed of the random vectors. (default: :obj:`0`)
        chunk (int): Rows smoothed at once. (default: :math:`2^{20}`)

    Returns:
        The part of every node, :math:`(N)`, in :math:`\{0, \ldots,
        K - 1\}`.
    """
    N = rowptr.numel() - 1
    device = col.device
    if not 1 <= num_parts <= max(N, 1):
        raise ValueError(f"'num_parts' must be in [1, {N}] (got "
                         f"{num_parts})")
    g = torch.Generator(device=device).manual_seed(seed)
    x = torch.randn(N, dims, generator=g, device=device)
    for _ in range(num_iters):
        x = _neighbour_mean(rowptr, col, x, chunk)
        x = x - x.mean(dim=0)
        x = x / x.norm(dim=0).clamp(min=1e-12)
    part = torch.empty(N, dtype=torch.long, device=device)
    _bisect(x, torch.arange(N, device=device), num_parts, 0, part)
    return part


class PartitionData:
    r"""A graph and its partition, computed once: the parts' nodes
    (:obj:`perm`, :obj:`partptr`, as PyG's
    :class:`~torch_geometric.loader.ClusterData`) and the graph in CSR
    form.

    Args:
        x (torch.Tensor): Node features :math:`(N, F)`.
        rowptr (torch.Tensor): CSR row pointers :math:`(N + 1)`.
        col (torch.Tensor): CSR columns :math:`(E)`.
        part (torch.Tensor): The part of every node :math:`(N)` (e.g. from
            :func:`smoothed_bisection_partition`).
    """
    def __init__(self, x: Tensor, rowptr: Tensor, col: Tensor, part: Tensor):
        self.x, self.rowptr, self.col = x, rowptr, col
        self.part = part
        self.num_parts = int(part.max()) + 1 if part.numel() else 0
        self.perm = torch.argsort(part, stable=True)
        sizes = torch.bincount(part, minlength=self.num_parts)
        self.partptr = torch.zeros(self.num_parts + 1, dtype=torch.long,
                                   device=part.device)
        torch.cumsum(sizes, 0, out=self.partptr[1:])

    @classmethod
    def from_edge_index(cls, x: Tensor, edge_index: Tensor, num_parts: int,
                        **kwargs) -> 'PartitionData':
        r"""Partitions the graph :obj:`(x, edge_index)` with
        :func:`smoothed_bisection_partition` (:obj:`kwargs`)."""
        rowptr, col = to_csr(edge_index, x.size(0))
        part = smoothed_bisection_partition(rowptr, col, num_parts, **kwargs)
        return cls(x, rowptr, col, part)

    @property
    def num_nodes(self) -> int:
        return self.rowptr.numel() - 1

    @property
    def num_edges(self) -> int:
        return self.col.numel()

    def cut_fraction(self) -> float:
        r"""The fraction of the edges between two parts."""
        row = torch.repeat_interleave(self.part, self.rowptr[1:] -
                                      self.rowptr[:-1])
        return float((row != self.part[self.col]).float().mean())

    def subgraph(self, parts: Tensor, cut_edges: bool = True) -> Data:
        r"""The subgraph of the nodes of :obj:`parts`: their induced edges
        and, with :obj:`cut_edges`, the edges to the rest of the graph
        with their outside endpoints (appended after the parts' nodes, in
        :obj:`n_id` order). Holds :obj:`x`, :obj:`edge_index`,
        :obj:`n_id` (the nodes' ids in the graph) and :obj:`num_core`
        (the parts' nodes come first)."""
        chosen = torch.zeros(self.num_parts, dtype=torch.bool,
                             device=parts.device)
        chosen[parts] = True
        core = torch.cat([self.perm[self.partptr[p]:self.partptr[p + 1]]
                          for p in parts.tolist()])
        deg = self.rowptr[core + 1] - self.rowptr[core]
        # The CSR positions of the core nodes' edges:
        starts = torch.repeat_interleave(self.rowptr[core], deg)
        offset = torch.arange(int(deg.sum()), device=core.device) - \
            torch.repeat_interleave(torch.cumsum(deg, 0) - deg, deg)
        col = self.col[starts + offset]
        row = torch.repeat_interleave(
            torch.arange(core.numel(), device=core.device), deg)
        inside = chosen[self.part[col]]
        n_id = core
        local = torch.full((self.num_nodes, ), -1, dtype=torch.long,
                           device=core.device)
        local[core] = torch.arange(core.numel(), device=core.device)
        if cut_edges:
            halo = torch.unique(col[~inside])
            local[halo] = torch.arange(core.numel(),
                                       core.numel() + halo.numel(),
                                       device=core.device)
            n_id = torch.cat([core, halo])
            out_row, out_col = row[~inside], local[col[~inside]]
            edge_index = torch.cat([
                torch.stack([row[inside], local[col[inside]]]),
                torch.stack([out_row, out_col]),
                torch.stack([out_col, out_row])], dim=1)
        else:
            edge_index = torch.stack([row[inside], local[col[inside]]])
        return Data(x=self.x[n_id], edge_index=edge_index, n_id=n_id,
                    num_core=core.numel(), num_nodes=n_id.numel())

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}(num_nodes={self.num_nodes}, '
                f'num_edges={self.num_edges}, num_parts={self.num_parts})')


class PartitionLoader:
    r"""Iterates over the subgraphs of random batches of
    :obj:`parts_per_batch` parts of a :class:`PartitionData` (PyG's
    :class:`~torch_geometric.loader.ClusterLoader` scheme), every part once
    per epoch, sharded across the processes of a data-parallel run.

    The parts are shuffled with :obj:`seed + epoch` (:meth:`set_epoch`)
    into batches, and process :obj:`rank` takes every
    :obj:`num_replicas`-th batch. The loader yields :obj:`(data, scale)`:
    the factor of the batch's loss that makes the gradient DDP averages the
    mean over the round's batches (1 when every process has one). Where
    the batches do not divide among the processes, the processes left
    without one in the last round get a batch again with scale 0, so that
    every process takes the same steps
    (:func:`~torch_geometric_mgvae.experiments.train.run_epoch` reads
    both).

    Args:
        data (PartitionData): The partitioned graph.
        parts_per_batch (int): Parts per batch. (default: :obj:`1`)
        cut_edges (bool): Add the edges that leave a batch and their
            outside endpoints (:meth:`PartitionData.subgraph`).
            (default: :obj:`True`)
        shuffle (bool): Shuffle every epoch. (default: :obj:`True`)
        seed (int): Seed of the shuffling. (default: :obj:`0`)
        num_replicas (int, optional): Processes (default: the world size).
        rank (int, optional): This process (default: its rank).
    """
    def __init__(self, data: PartitionData, parts_per_batch: int = 1,
                 cut_edges: bool = True, shuffle: bool = True, seed: int = 0,
                 num_replicas: Optional[int] = None,
                 rank: Optional[int] = None):
        from torch_geometric_mgvae.experiments.distributed import (
            get_rank,
            get_world_size,
        )
        if parts_per_batch < 1:
            raise ValueError("'parts_per_batch' must be >= 1")
        self.data = data
        self.parts_per_batch = parts_per_batch
        self.cut_edges = cut_edges
        self.shuffle = shuffle
        self.seed = seed
        self.epoch = 0
        self.num_replicas = get_world_size() if num_replicas is None else \
            num_replicas
        self.rank = get_rank() if rank is None else rank

    def set_epoch(self, epoch: int):
        self.epoch = epoch

    def batches(self) -> List[Tensor]:
        r"""All batches of parts of the current epoch (every process's)."""
        P = self.data.num_parts
        if self.shuffle:
            g = torch.Generator().manual_seed(self.seed + self.epoch)
            order = torch.randperm(P, generator=g)
        else:
            order = torch.arange(P)
        return list(order.split(self.parts_per_batch))

    def _mine(self) -> List[Tuple[Tensor, float]]:
        batches = self.batches()
        W, r = self.num_replicas, self.rank
        rounds = -(-len(batches) // W)
        out = []
        for k in range(rounds):
            i = k * W + r
            real = min(W, len(batches) - k * W)
            out.append((batches[i], W / real) if i < len(batches) else
                       (batches[k * W], 0.0))
        return out

    def __len__(self) -> int:
        return -(-len(self.batches()) // self.num_replicas)

    def __iter__(self) -> Iterator[Tuple[Data, float]]:
        device = self.data.part.device
        for parts, weight in self._mine():
            yield self.data.subgraph(parts.to(device), self.cut_edges), weight

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}({self.data.num_parts} parts, '
                f'parts_per_batch={self.parts_per_batch}, '
                f'num_replicas={self.num_replicas}, rank={self.rank})')
