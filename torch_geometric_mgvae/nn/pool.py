r"""MGN's pooling in PyG's pooling API: a cluster readout
(:class:`~torch_geometric.nn.aggr.Aggregation`) and :class:`MGNPooling`,
which composes a :class:`~torch_geometric.nn.pool.select.Select` (learned or
fixed clustering), the readout and a
:class:`~torch_geometric.nn.pool.connect.Connect` (Def. 2 coarsening)."""
import math
from typing import NamedTuple, Optional, Tuple, Union

import torch
from torch import Tensor
from torch_geometric.nn.aggr import Aggregation
from torch_geometric.nn.inits import reset
from torch_geometric.nn.pool.select import Select
from torch_geometric.typing import OptTensor

from torch_geometric_mgvae.nn.checks import check_graph, check_int
from torch_geometric_mgvae.nn.cluster import (
    ClusterOutput,
    SelectFixed,
    SelectLearned,
    balanced_cut_kl,
    fixed_cluster_output,
)
from torch_geometric_mgvae.nn.coarsen import CoarsenEdges
from torch_geometric_mgvae.nn.conv import ConvSpec


class ClusterReadout(Aggregation):
    r"""The pooling network :math:`\mathbf{p}` of the paper (Def. 4): a Deep
    Sets readout of every cluster with a weighted mean,

    .. math::
        \tilde{\mathbf{z}}_k = \rho\left( \frac{\sum_{i \in \mathcal{V}_k}
        w_i \, \phi(\mathbf{z}_i)}{\sum_{i \in \mathcal{V}_k} w_i} \right)

    where :math:`w_i` are the straight-through assignment weights (exactly 1
    in the forward pass, so this is a mean; the gradient reaches the
    clustering). Without :math:`\phi, \rho` it is the (weighted) mean. It is
    permutation invariant within each cluster. Like PyG's
    :class:`~torch_geometric.nn.aggr.DeepSetsAggregation`, but a mean
    instead of a sum, and weighted.

    Args:
        local_nn (torch.nn.Module, optional): :math:`\phi`.
            (default: :obj:`None`)
        global_nn (torch.nn.Module, optional): :math:`\rho`.
            (default: :obj:`None`)

    Shapes:
        - **input:** node features :math:`(N, F)`, cluster index :math:`(N)`,
          weights :math:`(N)` *(optional keyword* :obj:`weight` *)*
        - **output:** cluster features :math:`(C, F_{out})`
    """
    def __init__(self, local_nn: Optional[torch.nn.Module] = None,
                 global_nn: Optional[torch.nn.Module] = None):
        super().__init__()
        self.local_nn = local_nn
        self.global_nn = global_nn

    @classmethod
    def mlp(cls, in_channels: int, out_channels: int,
            hidden_channels: Optional[int] = None) -> 'ClusterReadout':
        r"""The readout of :class:`~torch_geometric_mgvae.MGN`: one-layer
        :math:`\phi` (with ReLU) and :math:`\rho`."""
        hidden_channels = hidden_channels or out_channels
        return cls(
            torch.nn.Sequential(torch.nn.Linear(in_channels, hidden_channels),
                                torch.nn.ReLU()),
            torch.nn.Linear(hidden_channels, out_channels))

    def reset_parameters(self):
        reset(self.local_nn)
        reset(self.global_nn)

    def forward(self, x: Tensor, index: Optional[Tensor] = None,
                ptr: Optional[Tensor] = None, dim_size: Optional[int] = None,
                dim: int = -2, weight: OptTensor = None) -> Tensor:
        if self.local_nn is not None:
            x = self.local_nn(x)
        if weight is None:
            x = self.reduce(x, index, ptr, dim_size, dim, reduce='mean')
        elif not weight.requires_grad and bool((weight == 1).all()):
            x = self.reduce(x, index, ptr, dim_size, dim, reduce='mean')
        else:
            num = self.reduce(x * weight.view(-1, 1), index, ptr, dim_size,
                              dim, reduce='sum')
            den = self.reduce(weight.view(-1, 1), index, ptr, dim_size, dim,
                              reduce='sum')
            x = num / den.clamp(min=1e-12)
        if self.global_nn is not None:
            x = self.global_nn(x)
        return x

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}(local_nn={self.local_nn}, '
                f'global_nn={self.global_nn})')


class PooledGraph(NamedTuple):
    r"""The coarsened graph of :meth:`MGNPooling.coarsen_graph`."""
    x: Tensor
    edge_index: Tensor
    edge_weight: Tensor
    edge_attr: OptTensor
    batch: Tensor


class MGNPooling(torch.nn.Module):
    r"""The pooling of the Multiresolution Graph Network from the
    `"Multiresolution Equivariant Graph Variational Autoencoder"
    <https://arxiv.org/abs/2106.00967>`_ paper, as a PyG pooling layer
    (like :class:`~torch_geometric.nn.pool.TopKPooling` or
    :class:`~torch_geometric.nn.pool.SAGPooling`): it partitions every graph
    of a batch into :math:`K` clusters (:attr:`select`: a learned Gumbel-max
    clustering with a straight-through gradient,
    :class:`~torch_geometric_mgvae.nn.SelectLearned`, or a fixed one),
    reads every cluster out into one node (:attr:`reduce`) and coarsens the
    graph :math:`A' = \Pi^T A \Pi` with self loops kept (:attr:`connect`,
    Def. 2). It returns its auxiliary loss, the balanced-cut KL of the
    clustering (Sec. 3.3), as :func:`~torch_geometric.nn.dense_diff_pool`
    returns its losses: the caller adds it.

    .. code-block:: python

        x, edge_index, edge_weight, batch, select, cut_loss = pool(
            x, edge_index, edge_weight, batch)

    Args:
        in_channels (int): Size of the node features.
        num_clusters (int): Clusters per graph :math:`K`.
        select (str or Select): :obj:`"learned"`, :obj:`"fixed"`
            (cluster ids passed to :meth:`forward`), or a
            :class:`~torch_geometric.nn.pool.select.Select` returning a
            :class:`~torch_geometric_mgvae.nn.ClusterOutput`.
            (default: :obj:`"learned"`)
        hidden_channels (int, optional): Hidden size of the clustering GNN
            (default: :obj:`in_channels`).
        num_layers (int): Message passing layers of the clustering GNN
            before its linear map to the :math:`K` logits. The default 0
            reads the logits off the incoming features, which in a PyG model
            come from the convolutions before the pooling (as
            :class:`~torch_geometric.nn.pool.TopKPooling` scores them); the
            paper's clustering GNN (and :class:`~torch_geometric_mgvae.MGN`,
            whose levels cluster their raw input) uses 2 layers.
            (default: :obj:`0`)
        tau (float): Temperature of the straight-through relaxation.
            (default: :obj:`1.0`)
        balance (int): Sinkhorn balancing iterations of the logits
            (not in the paper). (default: :obj:`0`)
        conv (MessagePassing class or callable, optional): The clustering
            GNN's convolution. (default:
            :class:`~torch_geometric_mgvae.nn.MGNConv`)
        readout (Aggregation, optional): The cluster readout (default: the
            weighted mean, :class:`ClusterReadout` without networks).
        diagonal (str): Diagonal of the coarse adjacency, :obj:`"edges"`
            (Def. 2) or :obj:`"product"`. (default: :obj:`"edges"`)
        eval_assign (str): Hard assignment of the learned clustering in
            evaluation mode, :obj:`"argmax"` (the paper) or
            :obj:`"balanced"` (cluster sizes within one of each other; see
            :class:`~torch_geometric_mgvae.nn.SelectLearned`).
            (default: :obj:`"argmax"`)

    Shapes:
        - **input:** node features :math:`(N, F)`, edge indices
          :math:`(2, E)`, edge weights :math:`(E)` *(optional)*, batch vector
          :math:`(N)` *(optional)*
        - **output:** pooled features :math:`(C, F_{out})`, coarse edge
          indices :math:`(2, E')`, coarse edge weights :math:`(E')`, coarse
          batch vector :math:`(C)`, the
          :class:`~torch_geometric_mgvae.nn.ClusterOutput` and the
          balanced-cut loss (a scalar, averaged over graphs)
    """
    def __init__(self, in_channels: int, num_clusters: int,
                 select: Union[str, Select] = 'learned',
                 hidden_channels: Optional[int] = None, num_layers: int = 0,
                 tau: float = 1.0, balance: int = 0,
                 conv: Optional[ConvSpec] = None,
                 readout: Optional[Aggregation] = None,
                 diagonal: str = 'edges', eval_assign: str = 'argmax'):
        super().__init__()
        in_channels = check_int('in_channels', in_channels)
        num_clusters = check_int('num_clusters', num_clusters)
        self.in_channels = in_channels
        self.num_clusters = num_clusters
        if isinstance(select, Select):
            self.select = select
        elif select == 'learned' and num_clusters > 1:
            self.select = SelectLearned(in_channels, num_clusters,
                                        hidden_channels or in_channels,
                                        num_layers, tau, balance, conv,
                                        eval_assign=eval_assign)
        elif select in ('learned', 'fixed'):
            self.select = SelectFixed(num_clusters)
        else:
            raise ValueError(f"'select' must be 'learned', 'fixed' or a "
                             f"Select module (got {select!r})")
        self.reduce = readout if readout is not None else ClusterReadout()
        self.connect = CoarsenEdges(diagonal)
        self.reset_parameters()

    def reset_parameters(self):
        self.select.reset_parameters()
        self.reduce.reset_parameters()
        self.connect.reset_parameters()

    def cluster(self, x: Tensor, edge_index: Tensor,
                edge_weight: OptTensor = None, batch: OptTensor = None,
                edge_attr: OptTensor = None, cluster: OptTensor = None,
                noise: OptTensor = None,
                generator: Optional[torch.Generator] = None
                ) -> ClusterOutput:
        r"""Runs :attr:`select`. Fixed local cluster ids :obj:`cluster`
        override a learned clustering."""
        if batch is None:
            batch = torch.zeros(x.size(0), dtype=torch.long, device=x.device)
        if cluster is not None or isinstance(self.select, SelectFixed):
            if cluster is None:
                return self.select(x, batch=batch)
            local = cluster.to(x.device).long().view(-1)
            if local.numel() != x.size(0):
                raise ValueError(f"The fixed clustering holds "
                                 f"{local.numel()} ids for {x.size(0)} "
                                 f"nodes")
            return fixed_cluster_output(local, batch, self.num_clusters,
                                        x.dtype)
        return self.select(x, edge_index, edge_weight, batch,
                           edge_attr=edge_attr, noise=noise,
                           generator=generator)

    def coarsen_graph(self, x: Tensor, edge_index: Tensor,
                      edge_weight: OptTensor, select_output: ClusterOutput,
                      batch: OptTensor = None,
                      edge_attr: OptTensor = None) -> PooledGraph:
        r"""Reads the clusters of :obj:`select_output` out of :obj:`x` and
        coarsens the graph; edge features :obj:`edge_attr` :math:`(E, F)`,
        if given, are summed over the merged edges like the weights (e.g.
        one-hot bond types become counts)."""
        so = select_output
        x = self.reduce(x, so.cluster_index, dim_size=so.num_clusters,
                        weight=so.weight)
        w = edge_weight
        if edge_attr is not None:
            ones = edge_weight if edge_weight is not None else \
                edge_attr.new_ones(edge_attr.size(0))
            width = math.prod(edge_attr.shape[1:])  # also with E = 0
            w = torch.cat([ones.view(-1, 1), edge_attr.reshape(
                edge_attr.size(0), width)], dim=-1)  # [E, 1 + F]
        out = self.connect(so, edge_index, w, batch)
        weight, attr = out.edge_attr, None
        if edge_attr is not None:
            weight, attr = weight[:, 0], weight[:, 1:]
        return PooledGraph(x, out.edge_index, weight, attr, out.batch)

    def cut_loss(self, select_output: ClusterOutput, batch: OptTensor = None,
                 num_graphs: Optional[int] = None) -> Tensor:
        r"""The balanced-cut KL of the clustering (Sec. 3.3), averaged over
        graphs; 0 for :math:`K = 1` (for a fixed clustering a constant: it
        has no gradient)."""
        so = select_output
        dtype = torch.get_default_dtype() if so.weight is None else \
            so.weight.dtype
        if so.num_local == 1 or so.num_nodes == 0:
            return torch.zeros((), dtype=dtype,
                               device=so.cluster_index.device)
        if batch is None:
            batch = torch.zeros(so.num_nodes, dtype=torch.long,
                                device=so.cluster_index.device)
        if so.assignment is None:  # a fixed clustering: a constant
            return balanced_cut_kl(so.local, batch, num_graphs, so.num_local,
                                   dtype).mean()
        return balanced_cut_kl(so.assignment, batch, num_graphs).mean()

    def forward(self, x: Tensor, edge_index: Tensor,
                edge_weight: OptTensor = None, batch: OptTensor = None,
                cluster: OptTensor = None, noise: OptTensor = None,
                generator: Optional[torch.Generator] = None
                ) -> Tuple[Tensor, Tensor, Tensor, Tensor, ClusterOutput,
                           Tensor]:
        r"""Pools a batch of graphs.

        Args:
            x (torch.Tensor): Node features.
            edge_index (torch.Tensor): Edge indices (both directions).
            edge_weight (torch.Tensor, optional): Edge weights.
            batch (torch.Tensor, optional): Batch vector (default: one
                graph).
            cluster (torch.Tensor, optional): Fixed local cluster ids in
                :math:`\{0, \ldots, K-1\}` (required for a fixed
                :attr:`select` with :math:`K > 1`).
            noise (torch.Tensor, optional): Gumbel noise :math:`(N, K)` to
                use (to repeat a forward pass).
            generator (torch.Generator, optional): Random generator of the
                Gumbel noise.
        """
        # Coarsening is defined for directed graphs too: no one-way edge
        # warning here (its test is half the cost of the checks).
        check_graph(x, edge_index, edge_weight, batch, warn_directed=False)
        if batch is None:
            batch = torch.zeros(x.size(0), dtype=torch.long, device=x.device)
        so = self.cluster(x, edge_index, edge_weight, batch, cluster=cluster,
                          noise=noise, generator=generator)
        pooled = self.coarsen_graph(x, edge_index, edge_weight, so, batch)
        return (pooled.x, pooled.edge_index, pooled.edge_weight,
                pooled.batch, so, self.cut_loss(so, batch))

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}({self.in_channels}, '
                f'num_clusters={self.num_clusters}, select={self.select})')
