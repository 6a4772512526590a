r"""The one sparse-to-dense conversion point: a batched sparse graph to
dense per-group blocks (one block per cluster or per graph) and back."""
from typing import Optional

import torch
from torch import Tensor
from torch_geometric.typing import OptTensor
from torch_geometric.utils import to_dense_adj, to_dense_batch


class DenseBlocks:
    r"""Dense blocks of a batched sparse graph, one per group.

    Attributes:
        x (torch.Tensor): Node features :obj:`[G, m, F]` (0 at padding).
        adj (torch.Tensor): Weighted adjacency of the edges *inside* every
            group, zero diagonal, :obj:`[G, m, m]`.
        mask (torch.Tensor): Valid nodes :obj:`[G, m]`.
        edge_attr (torch.Tensor, optional): Edge features
            :obj:`[G, m, m, E]`.
        order (torch.Tensor): Node of every valid block slot (row-major over
            :obj:`mask`), :obj:`[N]`; :meth:`to_nodes` undoes the layout.
    """
    def __init__(self, x: Tensor, adj: Tensor, mask: Tensor,
                 edge_attr: OptTensor, order: Tensor):
        self.x = x
        self.adj = adj
        self.mask = mask
        self.edge_attr = edge_attr
        self.order = order

    @property
    def num_groups(self) -> int:
        return self.mask.size(0)

    @property
    def max_size(self) -> int:
        return self.mask.size(1)

    def to_nodes(self, t: Tensor) -> Tensor:
        r"""Gathers a first-order block tensor :obj:`[G, m, ...]` back to the
        original node order :obj:`[N, ...]`."""
        out = t.new_empty((self.order.numel(), ) + t.shape[2:])
        out[self.order] = t[self.mask]
        return out

    def to_dense(self, t: Tensor) -> Tensor:
        r"""Scatters a node tensor :obj:`[N, ...]` into the block layout
        :obj:`[G, m, ...]` (0 at padding); the inverse of
        :meth:`to_nodes`."""
        out = t.new_zeros(self.mask.shape + t.shape[1:])
        out[self.mask] = t[self.order]
        return out

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}(num_groups={self.num_groups}, '
                f'max_size={self.max_size})')


def to_dense_blocks(x: Tensor, edge_index: Tensor, group: Tensor,
                    num_groups: int, edge_weight: OptTensor = None,
                    edge_attr: OptTensor = None,
                    max_size: Optional[int] = None) -> DenseBlocks:
    r"""Converts a batched sparse graph into dense blocks, one per group
    (cluster or graph), keeping only the edges inside groups. Costs
    :math:`O(G m^2)` memory for the largest group size :math:`m`, never
    :math:`N^2`. Self loops are dropped from :obj:`adj` (the coarse levels'
    intra-cluster counts stay available as edge weights on the sparse
    graph)."""
    N = x.size(0)
    order = torch.argsort(group, stable=True)
    inv = torch.empty_like(order)
    inv[order] = torch.arange(N, device=x.device)
    g_sorted = group[order]
    if max_size is None:
        max_size = int(torch.bincount(group, minlength=num_groups).max()) \
            if N > 0 else 1
    xd, mask = to_dense_batch(x[order], g_sorted, batch_size=num_groups,
                              max_num_nodes=max_size)  # [G, m, F]
    keep = (group[edge_index[0]] == group[edge_index[1]]) & (edge_index[0] !=
                                                             edge_index[1])
    ei = inv[edge_index[:, keep]]
    w = None if edge_weight is None else edge_weight[keep]
    adj = to_dense_adj(ei, g_sorted, w, max_num_nodes=max_size,
                       batch_size=num_groups)  # [G, m, m]
    ea = None
    if edge_attr is not None:
        ea = edge_attr[keep]
        if ea.dim() == 1:
            ea = ea.view(-1, 1)
        ea = to_dense_adj(ei, g_sorted, ea, max_num_nodes=max_size,
                          batch_size=num_groups)  # [G, m, m, E]
    return DenseBlocks(xd, adj.to(x.dtype), mask, ea, order)
