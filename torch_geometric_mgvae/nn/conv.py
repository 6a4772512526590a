r"""First-order equivariant message passing (paper Example 1, Eq. 1-2) as
PyG :class:`~torch_geometric.nn.conv.MessagePassing` operators, and the
local encoder: any PyG convolution stacked over the intra-cluster edges."""
import inspect
from typing import Callable, Optional, Tuple, Type, Union

import torch
from torch import Tensor
from torch_geometric.nn.conv import MessagePassing
from torch_geometric.typing import Adj, OptTensor, SparseTensor, torch_sparse
from torch_geometric.utils import (
    is_torch_sparse_tensor,
    scatter,
    spmm,
    to_edge_index,
)
from torch_geometric.utils.sparse import set_sparse_value

from torch_geometric_mgvae.nn.checks import check_int

#: A convolution: a :class:`MessagePassing` class, or a callable
#: :obj:`(in_channels, out_channels) -> MessagePassing`.
ConvSpec = Union[Type[MessagePassing], Callable[[int, int], torch.nn.Module]]


def mean_norm(edge_index: Adj, edge_weight: OptTensor = None,
              num_nodes: Optional[int] = None, dtype=None):
    r"""Normalises the edge weights so that summing the messages gives the
    weighted mean over every node's in-neighbours,
    :math:`\hat{A}_{ji} = A_{ji} / \sum_{k} A_{ki}` (the :math:`D^{-1} A` of
    Eq. 2, with the *weighted* degree :math:`D`). Takes an :obj:`edge_index`
    (then returns :obj:`(edge_index, edge_weight)`), a :class:`SparseTensor`
    or a :obj:`torch.sparse` adjacency :obj:`adj_t` (rows are targets, as in
    PyG; then returns the normalised adjacency and :obj:`None`), like
    :func:`torch_geometric.nn.conv.gcn_conv.gcn_norm`."""
    if isinstance(edge_index, SparseTensor):
        adj_t = edge_index
        if not adj_t.has_value():
            adj_t = adj_t.fill_value(1., dtype=dtype)
        deg = torch_sparse.sum(adj_t, dim=1)
        inv = deg.pow(-1.0).masked_fill(deg == 0, 0.)
        return torch_sparse.mul(adj_t, inv.view(-1, 1)), None
    if is_torch_sparse_tensor(edge_index):
        if edge_index.layout == torch.sparse_csc:
            raise NotImplementedError("Sparse CSC adjacencies are not "
                                      "supported; use COO or CSR")
        index, value = to_edge_index(edge_index)
        deg = scatter(value, index[0], 0, dim_size=edge_index.size(0),
                      reduce='sum')
        inv = deg.pow(-1.0).masked_fill(deg == 0, 0.)
        return set_sparse_value(edge_index, value * inv[index[0]]), None
    if num_nodes is None:
        num_nodes = int(edge_index.max()) + 1 if edge_index.numel() else 0
    dst = edge_index[1]
    if edge_weight is None:
        edge_weight = torch.ones(dst.numel(), dtype=dtype, device=dst.device)
    deg = scatter(edge_weight, dst, 0, dim_size=num_nodes, reduce='sum')
    inv = deg.pow(-1.0).masked_fill(deg == 0, 0.)
    return edge_index, edge_weight * inv[dst]


class MGNConv(MessagePassing):
    r"""The first-order message passing of the `"Multiresolution Equivariant
    Graph Variational Autoencoder" <https://arxiv.org/abs/2106.00967>`_
    paper (Eq. 2) with a root weight:

    .. math::
        \mathbf{x}^{\prime}_i = \mathbf{W}_1 \mathbf{x}_i + \mathbf{W}_2
        \frac{1}{\sum_{j} e_{j,i}} \sum_{j \in \mathcal{N}(i)} e_{j,i}
        \mathbf{x}_j

    i.e. :math:`X' = X W_1 + D^{-1} A X W_2` with :math:`D` the *weighted*
    in-degree (a node without in-neighbours gets only its root term). The
    root term keeps a node's own features (Eq. 2 alone forgets them on
    graphs without self loops). It is permutation equivariant and costs
    :math:`O(|E| F)`.

    On unweighted graphs this equals
    :class:`~torch_geometric.nn.conv.GraphConv` with :obj:`aggr="mean"` (and
    :class:`~torch_geometric.nn.conv.SAGEConv`); it exists because on the
    weighted coarse graphs of MGN (edge weights count the merged edges)
    :obj:`GraphConv` divides the weighted sum by the number of neighbours,
    not by their total weight, which is not the :math:`D^{-1}A` of Eq. 2.

    Args:
        in_channels (int): Size of each input sample.
        out_channels (int): Size of each output sample.
        bias (bool, optional): If set to :obj:`False`, the layer will not
            learn an additive bias. (default: :obj:`True`)
        **kwargs (optional): Additional arguments of
            :class:`torch_geometric.nn.conv.MessagePassing`.

    Shapes:
        - **input:**
          node features :math:`(|\mathcal{V}|, F_{in})`,
          edge indices :math:`(2, |\mathcal{E}|)` or a sparse adjacency
          :math:`(|\mathcal{V}|, |\mathcal{V}|)`,
          edge weights :math:`(|\mathcal{E}|)` *(optional)*
        - **output:** node features :math:`(|\mathcal{V}|, F_{out})`
    """
    def __init__(self, in_channels: int, out_channels: int,
                 bias: bool = True, **kwargs):
        kwargs.setdefault('aggr', 'add')
        super().__init__(**kwargs)
        in_channels = check_int('in_channels', in_channels)
        out_channels = check_int('out_channels', out_channels)
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.lin_rel = torch.nn.Linear(in_channels, out_channels, bias=False)
        self.lin_root = torch.nn.Linear(in_channels, out_channels, bias=bias)
        self.reset_parameters()

    def reset_parameters(self):
        super().reset_parameters()
        torch.nn.init.xavier_uniform_(self.lin_root.weight)
        torch.nn.init.xavier_uniform_(self.lin_rel.weight)
        if self.lin_root.bias is not None:
            torch.nn.init.zeros_(self.lin_root.bias)

    def forward(self, x: Tensor, edge_index: Adj,
                edge_weight: OptTensor = None) -> Tensor:
        # Transform first when it shrinks the messages:
        shrink = self.out_channels < self.in_channels
        h = self.lin_rel(x) if shrink else x
        if edge_weight is None and isinstance(edge_index, Tensor) and \
                not is_torch_sparse_tensor(edge_index):
            # Unweighted: sum the messages, then divide by the degree (no
            # per-edge weights to build and multiply).
            deg = torch.bincount(edge_index[1], minlength=x.size(0))
            agg = self.propagate(edge_index, x=h, edge_weight=None)
            agg = agg / deg.clamp(min=1).to(agg.dtype).view(-1, 1)
        else:
            edge_index, edge_weight = mean_norm(edge_index, edge_weight,
                                                x.size(0), x.dtype)
            agg = self.propagate(edge_index, x=h, edge_weight=edge_weight)
        rel = agg if shrink else self.lin_rel(agg)
        return self.lin_root(x) + rel

    def message(self, x_j: Tensor, edge_weight: OptTensor) -> Tensor:
        return x_j if edge_weight is None else edge_weight.view(-1, 1) * x_j

    def message_and_aggregate(self, adj_t: Adj, x: Tensor) -> Tensor:
        return spmm(adj_t, x, reduce=self.aggr)

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}({self.in_channels}, '
                f'{self.out_channels})')


def intra_cluster_edges(edge_index: Tensor, edge_weight: OptTensor,
                        cluster: Tensor, edge_attr: OptTensor = None
                        ) -> Tuple[Tensor, OptTensor, OptTensor]:
    r"""Keeps only the edges whose two end points lie in the same cluster
    (the edges of the induced subgraphs :math:`\mathcal{G}_k`, Def. 1): an
    edge filter, so any convolution becomes a local encoder."""
    keep = cluster[edge_index[0]] == cluster[edge_index[1]]
    return (edge_index[:, keep],
            None if edge_weight is None else edge_weight[keep],
            None if edge_attr is None else edge_attr[keep])


def make_conv(conv: Optional[ConvSpec], in_channels: int,
              out_channels: int) -> torch.nn.Module:
    r"""Builds one convolution from a :class:`MessagePassing` class or a
    factory :obj:`(in_channels, out_channels) -> MessagePassing`
    (default: :class:`MGNConv`)."""
    if conv is None:
        conv = MGNConv
    if not callable(conv):
        raise TypeError(f"'conv' must be a MessagePassing class or a "
                        f"callable (in_channels, out_channels) -> module "
                        f"(got {type(conv).__name__})")
    module = conv(in_channels, out_channels)
    if not isinstance(module, torch.nn.Module):
        raise TypeError(f"'conv' returned a {type(module).__name__}, not a "
                        f"torch.nn.Module")
    return module


def conv_inputs(conv: torch.nn.Module) -> Tuple[bool, bool]:
    r"""Whether a convolution's :obj:`forward` takes :obj:`edge_weight` and
    :obj:`edge_attr` (read from its signature, as PyG's convolutions name
    them)."""
    params = inspect.signature(conv.forward).parameters
    return 'edge_weight' in params, 'edge_attr' in params


def run_conv(conv: torch.nn.Module, x: Tensor, edge_index: Adj,
             edge_weight: OptTensor, edge_attr: OptTensor,
             takes: Tuple[bool, bool]) -> Tensor:
    r"""Calls a convolution with the edge information it accepts:
    :obj:`edge_weight` to convolutions that take it; :obj:`edge_attr` to
    those that take edge features (e.g.
    :class:`~torch_geometric.nn.conv.GINEConv`), the edge weights as one
    feature column when there are no edge features."""
    takes_weight, takes_attr = takes
    if takes_weight:
        return conv(x, edge_index, edge_weight=edge_weight)
    if takes_attr:
        if edge_attr is None and isinstance(edge_index, Tensor) and \
                not is_torch_sparse_tensor(edge_index):
            edge_attr = (edge_weight.view(-1, 1) if edge_weight is not None
                         else x.new_ones(edge_index.size(1), 1))
        return conv(x, edge_index, edge_attr=edge_attr)
    return conv(x, edge_index)


class LocalEncoder(torch.nn.Module):
    r"""The local encoder :math:`\mathbf{e}_{\text{local}}` of the paper
    (Def. 4): a stack of message passing layers, each followed by the
    non-linearity :math:`\gamma` of Eq. (1). Given a cluster index, it runs
    over the *intra-cluster* edges only (:func:`intra_cluster_edges`), so
    every cluster is encoded as its own subgraph :math:`\mathcal{G}_k` (all
    clusters at once, cost :math:`O(|E| F)`); without one, over the whole
    graph.

    Args:
        in_channels (int): Size of the node features.
        hidden_channels (int): Size of the hidden and output features.
        num_layers (int): Number of layers. (default: :obj:`2`)
        conv (MessagePassing class or callable, optional): The convolution,
            e.g. :class:`~torch_geometric.nn.conv.GCNConv` or
            :obj:`lambda i, o: GINConv(MLP([i, o, o]))`; it gets
            :obj:`edge_weight` or :obj:`edge_attr` where its :obj:`forward`
            takes them (see :func:`run_conv`). (default: :class:`MGNConv`)
        act (callable): The non-linearity. (default: :obj:`torch.relu`)

    Shapes:
        - **input:** node features :math:`(N, F)`, edge indices
          :math:`(2, E)` or a sparse adjacency, edge weights :math:`(E)`
          *(optional)*, cluster index :math:`(N)` *(optional)*, edge features
          :math:`(E, F_e)` *(optional)*
        - **output:** node features :math:`(N, H)`
    """
    def __init__(self, in_channels: int, hidden_channels: int,
                 num_layers: int = 2, conv: Optional[ConvSpec] = None,
                 act: Callable[[Tensor], Tensor] = torch.relu):
        super().__init__()
        if num_layers < 1:
            raise ValueError("'num_layers' must be at least 1")
        self.in_channels = in_channels
        self.hidden_channels = hidden_channels
        self.num_layers = num_layers
        self.act = act
        self.convs = torch.nn.ModuleList([
            make_conv(conv, in_channels if i == 0 else hidden_channels,
                      hidden_channels) for i in range(num_layers)
        ])
        self._takes = [conv_inputs(c) for c in self.convs]
        self.reset_parameters()

    def reset_parameters(self):
        for conv in self.convs:
            conv.reset_parameters()

    def forward(self, x: Tensor, edge_index: Adj,
                edge_weight: OptTensor = None,
                cluster: Optional[Tensor] = None,
                edge_attr: OptTensor = None) -> Tensor:
        if cluster is not None:
            edge_index, edge_weight, edge_attr = intra_cluster_edges(
                edge_index, edge_weight, cluster, edge_attr)
        for conv, takes in zip(self.convs, self._takes):
            x = self.act(run_conv(conv, x, edge_index, edge_weight,
                                  edge_attr, takes))
        return x

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}({self.in_channels}, '
                f'{self.hidden_channels}, num_layers={self.num_layers}, '
                f'conv={self.convs[0].__class__.__name__})')
