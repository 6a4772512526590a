r"""Coarsening :math:`A' = \Pi^T A \Pi` on sparse batched graphs (Def. 2)."""
from typing import Tuple

import torch
from torch import Tensor
from torch_geometric.nn.pool.connect import Connect, ConnectOutput
from torch_geometric.nn.pool.select import SelectOutput
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
            :obj:`[E]`, or edge features :obj:`[E, F]` that are summed like
            weights (e.g. one-hot bond types become bond-type counts).
            (default: all ones)
        cluster (torch.Tensor): Global cluster id of every node,
            shape :obj:`[N]` (see :class:`ClusterOutput`).
        num_clusters (int): The number of clusters.
        node_weight (torch.Tensor, optional): Straight-through weights of the
            assignment (:math:`\Pi_{i, \pi(i)}`); multiplying them in makes
            the result differentiable w.r.t. the clustering.
            (default: :obj:`None`)
        diagonal (str): :obj:`"edges"` or :obj:`"product"`.

    Returns:
        (edge_index [2, E'], edge_weight [E'] or [E', F]) of the coarsened
        graph, coalesced (sorted, no duplicates).
    """
    if diagonal not in DIAGONALS:
        raise ValueError(f"'diagonal' must be one of {DIAGONALS}")
    if cluster.numel() and (int(cluster.min()) < 0 or
                            int(cluster.max()) >= num_clusters):
        raise ValueError(f"Cluster ids must lie in [0, {num_clusters}) "
                         f"(got ids from {int(cluster.min())} to "
                         f"{int(cluster.max())})")
    if edge_index.numel() and int(edge_index.max()) >= cluster.numel():
        raise ValueError(f"'edge_index' refers to node "
                         f"{int(edge_index.max())} but 'cluster' holds "
                         f"{cluster.numel()} nodes")
    row, col = edge_index
    if node_weight is not None:
        nw = node_weight[row] * node_weight[col]
        if edge_weight is None:
            w = nw
        else:
            w = edge_weight * (nw if edge_weight.dim() == 1 else
                               nw.view(-1, 1))
    elif edge_weight is None:
        w = torch.ones(row.numel(), dtype=torch.get_default_dtype(),
                       device=row.device)
    else:
        w = edge_weight
    new_index = cluster[edge_index]
    if diagonal == 'edges':
        halve = (new_index[0] == new_index[1]) & (row != col)
        if w.dim() > 1:
            halve = halve.view(-1, 1)
        w = torch.where(halve, 0.5 * w, w)
    C = num_clusters
    if C * C <= 4 * new_index.size(1):
        # Few coarse nodes, many edges: sum into the C x C entries with one
        # scatter instead of sorting the edges (same result, same order).
        key = new_index[0] * C + new_index[1]
        present = torch.bincount(key, minlength=C * C).nonzero().view(-1)
        dense = w.new_zeros((C * C, ) + w.shape[1:]).index_add_(0, key, w)
        return torch.stack([present // C, present % C]), dense[present]
    new_index, w = coalesce(new_index, w, num_nodes=C, reduce='sum')
    return new_index, w


class CoarsenEdges(Connect):
    r"""Coarsening (:func:`coarsen`, Def. 2) as a PyG
    :class:`~torch_geometric.nn.pool.connect.Connect`: the edges of the
    coarsened graph are :math:`A' = \Pi^T A \Pi` with self loops kept (they
    count the intra-cluster edges), their weights summed (and multiplied by
    the straight-through weights of the :class:`SelectOutput`, so the
    result is differentiable w.r.t. a learned clustering). Unlike PyG's
    :class:`~torch_geometric.nn.pool.connect.FilterEdges` and
    :func:`~torch_geometric.nn.pool.pool.pool_edge`, self loops are not
    dropped.

    Args:
        diagonal (str): :obj:`"edges"` (Def. 2) or :obj:`"product"`.
            (default: :obj:`"edges"`)

    Shapes:
        - **input:** :class:`SelectOutput`, edge indices :math:`(2, E)`,
          edge weights :math:`(E)` or features :math:`(E, F)`
          *(optional)*, batch vector :math:`(N)` *(optional)*
        - **output:** :class:`~torch_geometric.nn.pool.connect.ConnectOutput`
          (:obj:`edge_attr` holds the coarse weights / summed features)
    """
    def __init__(self, diagonal: str = 'edges'):
        super().__init__()
        if diagonal not in DIAGONALS:
            raise ValueError(f"'diagonal' must be one of {DIAGONALS}")
        self.diagonal = diagonal

    def forward(self, select_output: SelectOutput, edge_index: Tensor,
                edge_attr: OptTensor = None, batch: OptTensor = None
                ) -> ConnectOutput:
        so = select_output
        if so.node_index.numel() != so.num_nodes:
            raise ValueError(f"{self.__class__.__name__} needs every node "
                             f"to be assigned to a cluster")
        cluster = so.cluster_index.new_empty(so.num_nodes)
        cluster[so.node_index] = so.cluster_index
        weight = None
        if so.weight is not None:
            weight = so.weight.new_empty(so.num_nodes)
            weight[so.node_index] = so.weight
        edge_index, edge_attr = coarsen(edge_index, edge_attr, cluster,
                                        so.num_clusters, weight,
                                        self.diagonal)
        cluster_batch = getattr(so, 'batch', None)
        if cluster_batch is None:
            cluster_batch = self.get_pooled_batch(so, batch)
        return ConnectOutput(edge_index, edge_attr, cluster_batch)

    def __repr__(self) -> str:
        return f'{self.__class__.__name__}(diagonal={self.diagonal})'
