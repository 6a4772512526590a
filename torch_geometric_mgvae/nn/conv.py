r"""First-order equivariant message passing (paper Example 1, Eq. 1-2)."""
from typing import Optional, Tuple

import torch
from torch import Tensor
from torch_geometric.typing import OptTensor
from torch_geometric.utils import scatter


def mean_aggregate(x: Tensor, edge_index: Tensor, edge_weight: OptTensor,
                   num_nodes: int) -> Tensor:
    r"""Weighted mean of the neighbours' features, :math:`D^{-1} A X`.

    A node without incoming edges gets zeros. ``edge_index[0]`` holds the
    sources and ``edge_index[1]`` the targets (PyG's ``source_to_target``).
    """
    src, dst = edge_index
    msg = x[src]  # [E, F]
    if edge_weight is None:
        deg = torch.bincount(dst, minlength=num_nodes).to(x.dtype)
    else:
        msg = msg * edge_weight.view(-1, 1)
        deg = scatter(edge_weight, dst, 0, dim_size=num_nodes, reduce='sum')
    out = scatter(msg, dst, 0, dim_size=num_nodes, reduce='sum')
    deg = torch.where(deg > 0, deg, torch.ones_like(deg))
    return out / deg.view(-1, 1)


class MeanConv(torch.nn.Module):
    r"""The first-order message passing of the paper (Eq. 2) with a root
    weight:

    .. math::
        \mathbf{x}^{\prime}_i = \mathbf{W}_1 \mathbf{x}_i + \mathbf{W}_2
        \frac{1}{\sum_{j} A_{ji}} \sum_{j \in \mathcal{N}(i)} A_{ji}
        \mathbf{x}_j

    i.e. :math:`X' = X W_1 + D^{-1} A X W_2`. The root term keeps a node's
    own features (Eq. 2 alone forgets them on graphs without self loops).
    It is permutation equivariant and costs :math:`O(|E| F)`.

    Args:
        in_channels (int): Size of each input sample.
        out_channels (int): Size of each output sample.
        bias (bool): Learn an additive bias. (default: :obj:`True`)

    Shapes:
        - **input:** node features :math:`(N, F_{in})`, edge indices
          :math:`(2, E)`, edge weights :math:`(E)` *(optional)*
        - **output:** node features :math:`(N, F_{out})`
    """
    def __init__(self, in_channels: int, out_channels: int,
                 bias: bool = True):
        super().__init__()
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.lin_root = torch.nn.Linear(in_channels, out_channels, bias=bias)
        self.lin_rel = torch.nn.Linear(in_channels, out_channels, bias=False)
        self.reset_parameters()

    def reset_parameters(self):
        torch.nn.init.xavier_uniform_(self.lin_root.weight)
        torch.nn.init.xavier_uniform_(self.lin_rel.weight)
        if self.lin_root.bias is not None:
            torch.nn.init.zeros_(self.lin_root.bias)

    def forward(self, x: Tensor, edge_index: Tensor,
                edge_weight: OptTensor = None) -> Tensor:
        # Transform first when it shrinks the messages:
        if self.out_channels < self.in_channels:
            rel = mean_aggregate(self.lin_rel(x), edge_index, edge_weight,
                                 x.size(0))
        else:
            rel = self.lin_rel(
                mean_aggregate(x, edge_index, edge_weight, x.size(0)))
        return self.lin_root(x) + rel

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}({self.in_channels}, '
                f'{self.out_channels})')


def intra_cluster_edges(edge_index: Tensor, edge_weight: OptTensor,
                        cluster: Tensor) -> Tuple[Tensor, OptTensor]:
    r"""Keeps only the edges whose two end points lie in the same cluster
    (the edges of the induced subgraphs :math:`\mathcal{G}_k`, Def. 1)."""
    keep = cluster[edge_index[0]] == cluster[edge_index[1]]
    return (edge_index[:, keep],
            None if edge_weight is None else edge_weight[keep])


class LocalEncoder(torch.nn.Module):
    r"""The first-order local encoder :math:`\mathbf{e}_{\text{local}}` of
    the paper (Def. 4): a stack of :class:`MeanConv` layers over the
    *intra-cluster* edges only, so every cluster is encoded as its own
    subgraph :math:`\mathcal{G}_k` (all clusters at once, cost
    :math:`O(|E| F)`).

    Args:
        in_channels (int): Size of the node features.
        hidden_channels (int): Size of the hidden and output features.
        num_layers (int): Number of layers. (default: :obj:`2`)
        act (callable): Non-linearity :math:`\gamma` of Eq. (1).
            (default: :obj:`torch.relu`)

    Shapes:
        - **input:** node features :math:`(N, F)`, edge indices
          :math:`(2, E)`, edge weights :math:`(E)` *(optional)*, cluster
          index :math:`(N)` *(optional: no restriction)*
        - **output:** node features :math:`(N, H)`
    """
    def __init__(self, in_channels: int, hidden_channels: int,
                 num_layers: int = 2, act=torch.relu):
        super().__init__()
        if num_layers < 1:
            raise ValueError("'num_layers' must be at least 1")
        self.in_channels = in_channels
        self.hidden_channels = hidden_channels
        self.num_layers = num_layers
        self.act = act
        self.convs = torch.nn.ModuleList([
            MeanConv(in_channels if i == 0 else hidden_channels,
                     hidden_channels) for i in range(num_layers)
        ])
        self.reset_parameters()

    def reset_parameters(self):
        for conv in self.convs:
            conv.reset_parameters()

    def forward(self, x: Tensor, edge_index: Tensor,
                edge_weight: OptTensor = None,
                cluster: Optional[Tensor] = None) -> Tensor:
        if cluster is not None:
            edge_index, edge_weight = intra_cluster_edges(
                edge_index, edge_weight, cluster)
        for conv in self.convs:
            x = self.act(conv(x, edge_index, edge_weight))
        return x

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}({self.in_channels}, '
                f'{self.hidden_channels}, num_layers={self.num_layers})')
