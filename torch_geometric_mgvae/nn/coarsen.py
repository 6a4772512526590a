r"""Coarsening :math:`A' = \Pi^T A \Pi` on sparse batched graphs (Def. 2)."""
from typing import Optional, Tuple

import torch
from torch import Tensor
from torch_geometric.typing import OptTensor
from torch_geometric.utils import coalesce

DIAGONALS = ('edges', 'product')


def coarsen(edge_index: Tensor, edge_weight: OptTensor, cluster: Tensor,
            num_clusters: int, node_weight: OptTensor = None,
            diagonal: str = 'edges') -> Tuple[Tensor, Tensor]:
    r"""Coarsens a (batched) graph along a hard clustering, with
    :obj:`cluster[edge_index]` and :func:`torch_geometric.utils.coalesce`
    (:obj:`reduce='sum'`), never a dense matrix:

    .. math::
        A' = \Pi^{\top} A \, \Pi

    The graph is taken as undirected in PyG's format (every edge stored in
    both directions, a self loop once). Self loops of the result are kept:
    they are the diagonal of :math:`A'`.

    * :obj:`diagonal="edges"` (default) follows Def. 2 of the paper: the
      diagonal entry of cluster :math:`k` is the number (total weight) of
      edges inside :math:`\mathcal{V}_k`, i.e.
      :math:`\frac{1}{2}\sum_{i \neq j \in \mathcal{V}_k} A_{ij} +
      \sum_{i \in \mathcal{V}_k} A_{ii}`. Off the diagonal it equals
      :math:`\Pi^T A \Pi`. The total edge weight is the same at every level.
    * :obj:`diagonal="product"` returns the plain matrix product
      :math:`\Pi^T A \Pi` entry by entry (its diagonal counts every
      intra-cluster edge twice).

    Args:
        edge_index (torch.Tensor): Edge indices, shape :obj:`[2, E]`.
        edge_weight (torch.Tensor, optional): Edge weights, shape
            :obj:`[E]` (default: all ones).
        cluster (torch.Tensor): Global cluster id of every node,
            shape :obj:`[N]` (see :class:`ClusterOutput`).
        num_clusters (int): The number of clusters.
        node_weight (torch.Tensor, optional): Straight-through weights of the
            assignment (:math:`\Pi_{i, \pi(i)}`); multiplying them in makes
            the result differentiable w.r.t. the clustering.
            (default: :obj:`None`)
        diagonal (str): :obj:`"edges"` or :obj:`"product"`.

    Returns:
        (edge_index [2, E'], edge_weight [E']) of the coarsened graph,
        coalesced (sorted, no duplicates).
    """
    if diagonal not in DIAGONALS:
        raise ValueError(f"'diagonal' must be one of {DIAGONALS}")
    row, col = edge_index
    if edge_weight is None:
        dtype = (node_weight.dtype if node_weight is not None
                 else torch.get_default_dtype())
        w = torch.ones(row.numel(), dtype=dtype, device=row.device)
    else:
        w = edge_weight
    if node_weight is not None:
        w = w * node_weight[row] * node_weight[col]
    new_index = cluster[edge_index]
    if diagonal == 'edges':
        halve = (new_index[0] == new_index[1]) & (row != col)
        w = torch.where(halve, 0.5 * w, w)
    new_index, w = coalesce(new_index, w, num_nodes=num_clusters,
                            reduce='sum')
    return new_index, w


class Coarsen(torch.nn.Module):
    r"""Module wrapper of :func:`coarsen`.

    Args:
        diagonal (str): :obj:`"edges"` (Def. 2) or :obj:`"product"`.
            (default: :obj:`"edges"`)
    """
    def __init__(self, diagonal: str = 'edges'):
        super().__init__()
        if diagonal not in DIAGONALS:
            raise ValueError(f"'diagonal' must be one of {DIAGONALS}")
        self.diagonal = diagonal

    def forward(self, edge_index: Tensor, edge_weight: OptTensor,
                cluster: Tensor, num_clusters: int,
                node_weight: Optional[Tensor] = None
                ) -> Tuple[Tensor, Tensor]:
        return coarsen(edge_index, edge_weight, cluster, num_clusters,
                       node_weight, self.diagonal)

    def __repr__(self) -> str:
        return f'{self.__class__.__name__}(diagonal={self.diagonal})'
