r"""Molecular property prediction (paper appendix D.3, D.4): a hierarchical
regressor that is "convolutions, then a pooling layer" at every level, with
:class:`~torch_geometric_mgvae.nn.MGNPooling` or one of PyG's pooling layers
behind the same small interface, and the per-target MLP of the unsupervised
experiment."""
from typing import Callable, List, NamedTuple, Optional, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor
from torch_geometric.data.data import BaseData
from torch_geometric.nn import (
    MLP,
    ASAPooling,
    GINEConv,
    SAGPooling,
    TopKPooling,
    dense_diff_pool,
    global_add_pool,
    global_mean_pool,
)
from torch_geometric.typing import OptTensor
from torch_geometric.utils import to_dense_adj, to_dense_batch

from torch_geometric_mgvae.nn.checks import check_graph, check_int
from torch_geometric_mgvae.nn.conv import conv_inputs, make_conv, run_conv
from torch_geometric_mgvae.nn.pool import MGNPooling

__all__ = ['LevelOutput', 'MGNLevelPool', 'TopKLevelPool', 'ASAPLevelPool',
           'DiffLevelPool', 'gine_conv', 'HierarchicalRegressor',
           'PerTargetMLP', 'MLPRegressor', 'check_outputs', 'make_pools']

READOUTS = {'mean': global_mean_pool, 'add': global_add_pool}


class LevelOutput(NamedTuple):
    r"""The coarse graph a level pooling returns, and its auxiliary loss."""
    x: Tensor
    edge_index: Tensor
    edge_attr: Tensor
    batch: Tensor
    loss: Tensor


class MGNLevelPool(torch.nn.Module):
    r""":class:`~torch_geometric_mgvae.nn.MGNPooling` as one level of
    :class:`HierarchicalRegressor`: clusters the graph (learned Gumbel-max
    clustering, or the fixed cluster ids passed in), reads every cluster out
    (weighted mean) and coarsens :math:`A' = \Pi^T A \Pi`, summing the edge
    features of merged edges (one-hot bond types become bond-type counts,
    :meth:`MGNPooling.coarsen_graph`). The auxiliary loss is the balanced-cut
    KL of the clustering.

    Args:
        channels (int): Size of the node features.
        num_clusters (int): Clusters per graph :math:`K`.
        select (str): :obj:`"learned"` or :obj:`"fixed"`.
            (default: :obj:`"learned"`)
        cluster_layers (int): Message passing layers of the clustering GNN
            (0: a linear map of the features, which already come out of the
            level's convolutions). (default: :obj:`0`)
        conv (callable, optional): The clustering GNN's convolution.
    """
    def __init__(self, channels: int, num_clusters: int,
                 select: str = 'learned', cluster_layers: int = 0,
                 conv: Optional[Callable] = None):
        super().__init__()
        self.pool = MGNPooling(channels, num_clusters, select=select,
                               num_layers=cluster_layers, conv=conv)

    def reset_parameters(self):
        self.pool.reset_parameters()

    def forward(self, x: Tensor, edge_index: Tensor, edge_attr: Tensor,
                batch: Tensor, num_graphs: int,
                cluster: OptTensor = None) -> LevelOutput:
        so = self.pool.cluster(x, edge_index, None, batch,
                               edge_attr=edge_attr, cluster=cluster)
        out = self.pool.coarsen_graph(x, edge_index, None, so, batch,
                                      edge_attr)
        loss = self.pool.cut_loss(so, batch, num_graphs)
        return LevelOutput(out.x, out.edge_index, out.edge_attr, out.batch,
                           loss)

    def __repr__(self) -> str:
        return f'{self.__class__.__name__}({self.pool})'


class TopKLevelPool(torch.nn.Module):
    r"""PyG's :class:`~torch_geometric.nn.pool.TopKPooling` or
    :class:`~torch_geometric.nn.pool.SAGPooling` as one level: the kept
    nodes keep their edges and edge features; no auxiliary loss."""
    def __init__(self, layer: torch.nn.Module):
        super().__init__()
        self.layer = layer

    def reset_parameters(self):
        self.layer.reset_parameters()

    def forward(self, x: Tensor, edge_index: Tensor, edge_attr: Tensor,
                batch: Tensor, num_graphs: int,
                cluster: OptTensor = None) -> LevelOutput:
        x, edge_index, edge_attr, batch, _, _ = self.layer(
            x, edge_index, edge_attr, batch)
        return LevelOutput(x, edge_index, edge_attr, batch, x.new_zeros(()))

    def __repr__(self) -> str:
        return f'{self.__class__.__name__}({self.layer})'


class ASAPLevelPool(torch.nn.Module):
    r"""PyG's :class:`~torch_geometric.nn.pool.ASAPooling` as one level.
    ASAP builds its coarse adjacency :math:`S^T A S` from the plain graph
    and returns edge weights only, so bond types do not pass through it: its
    coarse edges carry their weight in the last edge-feature channel (zero
    on bond-typed edges) and zeros elsewhere."""
    def __init__(self, channels: int, ratio: float = 0.5):
        super().__init__()
        self.layer = ASAPooling(channels, ratio)

    def reset_parameters(self):
        self.layer.reset_parameters()

    def forward(self, x: Tensor, edge_index: Tensor, edge_attr: Tensor,
                batch: Tensor, num_graphs: int,
                cluster: OptTensor = None) -> LevelOutput:
        x, edge_index, weight, batch, _ = self.layer(x, edge_index,
                                                     batch=batch)
        attr = x.new_zeros(edge_index.size(1), edge_attr.size(1))
        if weight is not None:
            attr[:, -1] = weight
        return LevelOutput(x, edge_index, attr, batch, x.new_zeros(()))

    def __repr__(self) -> str:
        return f'{self.__class__.__name__}({self.layer})'


class DiffLevelPool(torch.nn.Module):
    r"""PyG's :func:`~torch_geometric.nn.dense.dense_diff_pool` as one
    level: a linear soft assignment :math:`S = \mathrm{softmax}(XW)` into
    :math:`K` clusters per graph on the dense batch, :math:`X' = S^T X`,
    and the edge features of every channel pooled like the adjacency,
    :math:`E'_c = S^T E_c S` (bond-type counts, as
    :class:`MGNLevelPool`), returned as a sparse graph with the
    :math:`K^2` cluster pairs of every graph. The auxiliary loss is
    DiffPool's link-prediction plus entropy loss."""
    def __init__(self, channels: int, num_clusters: int):
        super().__init__()
        self.num_clusters = num_clusters
        self.lin = torch.nn.Linear(channels, num_clusters)

    def reset_parameters(self):
        self.lin.reset_parameters()

    def forward(self, x: Tensor, edge_index: Tensor, edge_attr: Tensor,
                batch: Tensor, num_graphs: int,
                cluster: OptTensor = None) -> LevelOutput:
        K = self.num_clusters
        xd, mask = to_dense_batch(x, batch, batch_size=num_graphs)  # [B,n,F]
        n = xd.size(1)
        E = to_dense_adj(edge_index, batch, edge_attr, max_num_nodes=n,
                         batch_size=num_graphs)  # [B, n, n, C]
        s = self.lin(xd)  # [B, n, K]
        out, _, link, ent = dense_diff_pool(xd, E.sum(-1), s, mask)
        S = torch.softmax(s, dim=-1) * mask.unsqueeze(-1)  # [B, n, K]
        Ep = torch.einsum('bnk,bnmc,bml->bklc', S, E, S)  # [B, K, K, C]
        keep = Ep.sum(-1) > 0  # [B, K, K]
        b, k, m = keep.nonzero(as_tuple=True)
        new_index = torch.stack([b * K + k, b * K + m])
        new_batch = torch.arange(num_graphs, device=x.device
                                 ).repeat_interleave(K)
        return LevelOutput(out.reshape(-1, out.size(-1)), new_index,
                           Ep[b, k, m], new_batch, link + ent)

    def __repr__(self) -> str:
        return f'{self.__class__.__name__}(num_clusters={self.num_clusters})'


def gine_conv(edge_channels: int) -> Callable[[int, int], torch.nn.Module]:
    r"""A :class:`~torch_geometric.nn.conv.GINEConv` factory
    :obj:`(in_channels, out_channels) -> GINEConv(MLP([in, out, out]),
    edge_dim=edge_channels)` (bond types or bond-type counts as edge
    features)."""
    def make(in_channels: int, out_channels: int) -> GINEConv:
        return GINEConv(MLP([in_channels, out_channels, out_channels],
                            norm=None), edge_dim=edge_channels)
    return make


class HierarchicalRegressor(torch.nn.Module):
    r"""Graph regression by "convolutions, then pooling" at every level, the
    node features of every level averaged (or summed) per graph,
    concatenated and mapped to the targets by a linear layer (paper D.4,
    where the pooling is MGN's):

    .. math::
        \hat{\mathbf{y}} = \mathbf{W} \left[ \mathrm{readout}(X^{(L)})
        \,\|\, \cdots \,\|\, \mathrm{readout}(X^{(L - P)}) \right]
        + \mathbf{b}

    with :math:`P` = :obj:`len(pools)` pooling levels (none: one level,
    plain global pooling). Every convolution is followed by batch
    normalisation, ReLU and a residual connection. :meth:`forward` returns
    the predictions and the summed auxiliary losses of the pooling layers
    (the caller weighs and adds them).

    Args:
        in_channels (int): Size of the input node features.
        edge_channels (int): Size of the edge features.
        hidden_channels (int): Hidden size of every level.
        out_channels (int): Number of targets.
        pools (List[torch.nn.Module], optional): One level pooling per
            coarsening (:class:`MGNLevelPool`, :class:`TopKLevelPool`,
            :class:`ASAPLevelPool`, :class:`DiffLevelPool`).
        num_layers (int): Convolutions per level. (default: :obj:`2`)
        conv (callable, optional): :obj:`(in, out) -> MessagePassing`
            (default: :func:`gine_conv` of :obj:`edge_channels`).
        readout (str): :obj:`"mean"` (the paper's) or :obj:`"add"`.
            (default: :obj:`"mean"`)

    Shapes:
        - **input:** a :class:`~torch_geometric.data.Batch` with :obj:`x`
          :math:`(N, F)`, :obj:`edge_index`, :obj:`edge_attr`
          :math:`(E, F_e)` (fewer columns are zero-padded) and, for fixed
          clusterings, :obj:`fixed_cluster_0`, ...
        - **output:** predictions :math:`(B, T)`, auxiliary loss (scalar)
    """
    def __init__(self, in_channels: int, edge_channels: int,
                 hidden_channels: int, out_channels: int,
                 pools: Optional[Sequence[torch.nn.Module]] = None,
                 num_layers: int = 2, conv: Optional[Callable] = None,
                 readout: str = 'mean'):
        super().__init__()
        if readout not in READOUTS:
            raise ValueError(f"'readout' must be one of {sorted(READOUTS)}")
        if num_layers < 1 or out_channels < 1:
            raise ValueError("'num_layers' and 'out_channels' must be >= 1")
        in_channels = check_int('in_channels', in_channels)
        edge_channels = check_int('edge_channels', edge_channels, 0)
        hidden_channels = check_int('hidden_channels', hidden_channels)
        self.in_channels = in_channels
        self.edge_channels = edge_channels
        self.hidden_channels = hidden_channels
        self.out_channels = out_channels
        self.num_layers = num_layers
        self.readout = readout
        self.pools = torch.nn.ModuleList(pools or [])
        conv = conv or gine_conv(edge_channels)
        num_levels = len(self.pools) + 1
        self.embed = torch.nn.Linear(in_channels, hidden_channels)
        self.convs = torch.nn.ModuleList([
            make_conv(conv, hidden_channels, hidden_channels)
            for _ in range(num_levels * num_layers)
        ])
        self.norms = torch.nn.ModuleList([
            torch.nn.BatchNorm1d(hidden_channels)
            for _ in range(num_levels * num_layers)
        ])
        self._takes = [conv_inputs(c) for c in self.convs]
        self.head = torch.nn.Linear(num_levels * hidden_channels,
                                    out_channels)
        self.reset_parameters()

    @property
    def num_levels(self) -> int:
        return len(self.pools) + 1

    def reset_parameters(self):
        self.embed.reset_parameters()
        for m in list(self.convs) + list(self.norms) + list(self.pools):
            m.reset_parameters()
        self.head.reset_parameters()

    def _edge_attr(self, edge_attr: OptTensor, num_edges: int,
                   ref: Tensor) -> Tensor:
        if edge_attr is None:
            edge_attr = ref.new_ones(num_edges, 1)
        edge_attr = edge_attr.to(ref.dtype).view(num_edges, -1)
        pad = self.edge_channels - edge_attr.size(1)
        if pad < 0:
            raise ValueError(f"'edge_attr' has {edge_attr.size(1)} columns, "
                             f"more than edge_channels="
                             f"{self.edge_channels}")
        return F.pad(edge_attr, (0, pad))

    def forward(self, data: BaseData,
                clusters: Optional[Sequence[Tensor]] = None):
        from torch_geometric_mgvae.transforms import get_fixed_clusters
        x, edge_index = data.x.float(), data.edge_index
        batch = data.get('batch')
        if batch is None:
            batch = edge_index.new_zeros(x.size(0))
        B = int(getattr(data, 'num_graphs', 1) or 1)
        check_graph(x, edge_index, None, batch, data.get('edge_attr'))
        edge_attr = self._edge_attr(data.get('edge_attr'),
                                    edge_index.size(1), x)
        if clusters is None:
            clusters = get_fixed_clusters(data)
        x = self.embed(x)
        pool_fn = READOUTS[self.readout]
        parts: List[Tensor] = []
        aux = x.new_zeros(())
        for lvl in range(self.num_levels):
            for j in range(self.num_layers):
                i = lvl * self.num_layers + j
                h = run_conv(self.convs[i], x, edge_index, None, edge_attr,
                             self._takes[i])
                x = x + F.relu(self.norms[i](h))
            parts.append(pool_fn(x, batch, size=B))
            if lvl < len(self.pools):
                cluster = clusters[lvl] if lvl < len(clusters) else None
                out = self.pools[lvl](x, edge_index, edge_attr, batch, B,
                                      cluster)
                x, edge_index, edge_attr, batch = (out.x, out.edge_index,
                                                   out.edge_attr, out.batch)
                aux = aux + out.loss
        return self.head(torch.cat(parts, dim=-1)), aux

    def __repr__(self) -> str:
        pools = ', '.join(type(p).__name__ for p in self.pools) or 'none'
        return (f'{self.__class__.__name__}({self.in_channels}, '
                f'{self.hidden_channels}, {self.out_channels}, '
                f'num_levels={self.num_levels}, pools=[{pools}], '
                f'readout={self.readout})')


class PerTargetMLP(torch.nn.Module):
    r"""One MLP per target, trained side by side (paper D.3: 2 hidden layers
    of 512 units, sigmoid, then a linear layer): :math:`T` independent
    networks :math:`\mathbb{R}^F \to \mathbb{R}` evaluated as batched
    matrix products. Exactly :math:`T` separate MLPs: no parameter is
    shared, and the loss summed over targets gives every network the
    gradient of its own loss.

    Args:
        in_channels (int): Size of the features :math:`F`.
        num_targets (int): :math:`T`.
        hidden_channels (int): (default: :obj:`512`)
        num_layers (int): Hidden layers. (default: :obj:`2`)

    Shapes:
        - **input:** features :math:`(B, F)`
        - **output:** predictions :math:`(B, T)`
    """
    def __init__(self, in_channels: int, num_targets: int,
                 hidden_channels: int = 512, num_layers: int = 2):
        super().__init__()
        self.in_channels = in_channels
        self.num_targets = num_targets
        self.hidden_channels = hidden_channels
        self.num_layers = num_layers
        sizes = [in_channels] + [hidden_channels] * num_layers + [1]
        self.weights = torch.nn.ParameterList([
            torch.nn.Parameter(torch.empty(num_targets, a, b))
            for a, b in zip(sizes[:-1], sizes[1:])
        ])
        self.biases = torch.nn.ParameterList([
            torch.nn.Parameter(torch.empty(num_targets, 1, b))
            for b in sizes[1:]
        ])
        self.reset_parameters()

    def reset_parameters(self):
        for w, b in zip(self.weights, self.biases):
            bound = w.size(1)**-0.5  # torch.nn.Linear's default
            torch.nn.init.uniform_(w, -bound, bound)
            torch.nn.init.uniform_(b, -bound, bound)

    def forward(self, x: Tensor) -> Tensor:
        h = x.unsqueeze(0).expand(self.num_targets, -1, -1)  # [T, B, F]
        last = len(self.weights) - 1
        for i, (w, b) in enumerate(zip(self.weights, self.biases)):
            h = torch.baddbmm(b, h, w)  # [T, B, H]
            if i < last:
                h = torch.sigmoid(h)
        return h.squeeze(-1).t()  # [B, T]

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}({self.in_channels}, '
                f'num_targets={self.num_targets}, hidden_channels='
                f'{self.hidden_channels}, num_layers={self.num_layers})')


class MLPRegressor(torch.nn.Module):
    r"""The MLP of the paper's D.3 (hidden layers of 512 units, sigmoid,
    then a linear layer) with one output per target, sharing its hidden
    layers across targets (the cheap variant of :class:`PerTargetMLP`).
    With :obj:`binary_input`, the input is a 0/1 matrix (e.g. a
    fingerprint) and the first layer is computed from the indices of the
    ones (:class:`torch.nn.EmbeddingBag` with :obj:`mode="sum"`): the same
    function as a :class:`torch.nn.Linear` layer, at the cost of the bits
    set.

    Shapes:
        - **input:** features :math:`(B, F)`
        - **output:** predictions :math:`(B, T)`
    """
    def __init__(self, in_channels: int, out_channels: int,
                 hidden_channels: int = 512, num_layers: int = 2,
                 binary_input: bool = False):
        super().__init__()
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.hidden_channels = hidden_channels
        self.num_layers = num_layers
        self.binary_input = binary_input
        if binary_input:
            self.first = torch.nn.EmbeddingBag(in_channels, hidden_channels,
                                               mode='sum')
            self.first_bias = torch.nn.Parameter(torch.empty(
                hidden_channels))
        else:
            self.first = torch.nn.Linear(in_channels, hidden_channels)
        self.rest = torch.nn.ModuleList([
            torch.nn.Linear(hidden_channels, hidden_channels)
            for _ in range(num_layers - 1)
        ])
        self.out = torch.nn.Linear(hidden_channels, out_channels)
        self.reset_parameters()

    def reset_parameters(self):
        if self.binary_input:  # as torch.nn.Linear(in, hidden)
            bound = self.in_channels**-0.5
            torch.nn.init.uniform_(self.first.weight, -bound, bound)
            torch.nn.init.uniform_(self.first_bias, -bound, bound)
        else:
            self.first.reset_parameters()
        for lin in self.rest:
            lin.reset_parameters()
        self.out.reset_parameters()

    def forward(self, x: Tensor) -> Tensor:
        if self.binary_input:
            row, col = (x != 0).nonzero(as_tuple=True)
            offsets = torch.cumsum(torch.bincount(row, minlength=x.size(0)),
                                   0) - torch.bincount(row,
                                                       minlength=x.size(0))
            h = self.first(col, offsets) + self.first_bias
        else:
            h = self.first(x)
        h = torch.sigmoid(h)
        for lin in self.rest:
            h = torch.sigmoid(lin(h))
        return self.out(h)

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}({self.in_channels}, '
                f'{self.out_channels}, hidden_channels='
                f'{self.hidden_channels}, num_layers={self.num_layers}, '
                f'binary_input={self.binary_input})')


def check_outputs(pred: Tensor, y: Tensor, names: Optional[Sequence[str]]
                  = None):
    r"""Raises a :class:`ValueError` when a model's predictions
    :math:`(B, T')` do not match the targets :math:`(B, T)`."""
    if pred.dim() != 2 or y.dim() != 2 or pred.shape != y.shape:
        what = '' if names is None else f' ({", ".join(names)})'
        got = pred.size(-1) if pred.dim() == 2 else tuple(pred.shape)
        raise ValueError(f"The model predicts {got} values per molecule but "
                         f"there are {y.size(-1)} targets{what}: build it "
                         f"with out_channels={y.size(-1)}")


def make_pools(kind: str, channels: int, levels: Sequence, **kwargs
               ) -> List[torch.nn.Module]:
    r"""The level poolings of one method: :obj:`"mgn"`,
    :obj:`"mgn_fixed"` (:obj:`levels` = clusters per level), :obj:`"topk"`,
    :obj:`"sag"`, :obj:`"asap"` (:obj:`levels` = ratios), :obj:`"diffpool"`
    (clusters per level) or :obj:`"none"`."""
    if kind == 'none':
        return []
    if kind in ('mgn', 'mgn_fixed'):
        select = 'learned' if kind == 'mgn' else 'fixed'
        return [MGNLevelPool(channels, int(k), select, **kwargs)
                for k in levels]
    if kind == 'topk':
        return [TopKLevelPool(TopKPooling(channels, float(r)))
                for r in levels]
    if kind == 'sag':
        return [TopKLevelPool(SAGPooling(channels, float(r)))
                for r in levels]
    if kind == 'asap':
        return [ASAPLevelPool(channels, float(r)) for r in levels]
    if kind == 'diffpool':
        return [DiffLevelPool(channels, int(k)) for k in levels]
    raise ValueError(f"Unknown pooling '{kind}'")
