r"""The Multiresolution Graph Network (MGN) of Hy & Kondor."""
import math
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F
from torch import Tensor
from torch_geometric.data.data import BaseData
from torch_geometric.typing import Adj, OptTensor, SparseTensor
from torch_geometric.utils import (
    is_torch_sparse_tensor,
    negative_sampling,
    sort_edge_index,
    to_edge_index,
)

from torch_geometric_mgvae.nn.checks import (  # noqa: F401 (re-exported)
    MAX_FEATURE,
    check_float,
    check_graph,
    check_int,
    check_int_list,
)
from torch_geometric_mgvae.nn.cluster import (
    ClusterOutput,
    assignment_entropy,
    gather_clusters,
    row_softmax,
)
from torch_geometric_mgvae.nn.conv import (
    ConvSpec,
    LocalEncoder,
    conv_inputs,
    intra_cluster_edges,
    make_conv,
    run_conv,
)
from torch_geometric_mgvae.nn.decoder import (
    BlockInnerProductDecoder,
    DenseEdgeDecoder,
    InnerProductDecoder,
    pair_recon_loss,
    sample_group_pairs,
    undirected_pairs,
)
from torch_geometric_mgvae.nn.dense import DenseBlocks, to_dense_blocks
from torch_geometric_mgvae.nn.pool import ClusterReadout, MGNPooling
from torch_geometric_mgvae.nn.random import rand, randn
from torch_geometric_mgvae.nn.second_order import (
    MLPDecoder,
    SecondOrderDecoder,
    SecondOrderEncoder,
)

CLUSTERINGS = ('learned', 'fixed')
FEATURE_LOSSES = (None, 'mse', 'ce')
GLOBAL_DECODERS = ('inner', 'second_order', 'mlp')
ENCODER_SCOPES = ('cluster', 'graph')
LATENT_HEADS = ('linear', 'conv')
#: Options of the learned clustering (:class:`~torch_geometric_mgvae.nn.
#: SelectLearned`) and their defaults.
CLUSTER_DEFAULTS = dict(num_layers=2, tau=1.0, balance=0,
                        hidden_channels=None, eval_assign='argmax',
                        extra_channels=0)
#: Options of the adjacency reconstruction losses
#: (:func:`~torch_geometric_mgvae.nn.pair_recon_loss`) and their defaults.
RECON_DEFAULTS = dict(max_dense_pairs=2**18, num_neg_samples=None,
                      balanced=False)
#: Initial value of the parameters :math:`w_\ell` of the co-membership
#: weights :math:`\beta_\ell = \mathrm{softplus}(w_\ell)` (1.31). Adam
#: moves :math:`w_\ell` by about the learning rate per step, so from a
#: small start (:math:`w = -3`, :math:`\beta = 0.05`) the weights stayed
#: below 0.13 at lr 0.01 and the score ignored the clusters (the block
#: model of the tests: the model's own clusters and random balanced ones
#: within 0.1 AUC point, 3 seeds); from 1.31 they stay near 1 and the own
#: clusters score 0.7-3.7 points above random ones there.
COMEMBERSHIP_INIT = 1.0
EPS = 1e-15


class MGNLevel:
    r"""Everything one resolution level of :class:`MGN` computed.

    Attributes:
        level (int): The paper's level index :math:`\ell` (:math:`L` is the
            input graph, 1 the coarsest).
        x (torch.Tensor): Node features entering the level :math:`(N, F)`.
        edge_index (torch.Tensor): Edges of :math:`\mathcal{G}^{(\ell)}`.
        edge_weight (torch.Tensor, optional): Their weights (:obj:`None` for
            an unweighted input graph; coarse levels are weighted, self loops
            count intra-cluster edges).
        batch (torch.Tensor): The graph of every node :math:`(N)`.
        num_graphs (int): The number of graphs :math:`B`.
        select (ClusterOutput, optional): Its partition into clusters (a
            PyG :class:`~torch_geometric.nn.pool.select.SelectOutput`;
            :obj:`None` at the coarsest level).
        z (torch.Tensor): Node latents :math:`(N, d_z)`.
        mu, logstd (torch.Tensor, optional): Posterior parameters
            (:class:`MGVAE` only).
        blocks (DenseBlocks, optional): The dense per-cluster blocks the
            second-order encoder ran on (:obj:`order=2`).
        L (torch.Tensor, optional): Gaussian-MRF covariance factors of the
            blocks, :obj:`[G, m, m, d]` (:obj:`covariance="mrf"`).
        noise (dict): The random tensors used (:obj:`"gumbel"`, :obj:`"eps"`,
            :obj:`"features"`), to repeat a forward pass exactly.
        edge_attr (torch.Tensor, optional): Edge features of the level (the
            input's at the finest level; summed over merged edges above it).
    """
    def __init__(self, level: int, x: Tensor, edge_index: Tensor,
                 edge_weight: OptTensor, batch: Tensor, num_graphs: int,
                 select: Optional[ClusterOutput], z: Tensor,
                 mu: OptTensor = None, logstd: OptTensor = None,
                 noise: Optional[Dict[str, Tensor]] = None,
                 blocks: Optional[DenseBlocks] = None, L: OptTensor = None,
                 edge_attr: OptTensor = None):
        self.level = level
        self.x = x
        self.edge_index = edge_index
        self.edge_weight = edge_weight
        self.batch = batch
        self.num_graphs = num_graphs
        self.select = select
        self.z = z
        self.mu = mu
        self.logstd = logstd
        self.noise = noise or {}
        self.blocks = blocks
        self.L = L
        self.edge_attr = edge_attr
        self._pairs: OptTensor = None

    @property
    def num_nodes(self) -> int:
        return self.x.size(0)

    @property
    def pairs(self) -> Tensor:
        r"""The distinct undirected node pairs joined by an edge,
        :obj:`[2, P]` with :obj:`row < col` (computed once, shared by the
        local and global decoders)."""
        if self._pairs is None:
            self._pairs = undirected_pairs(self.edge_index, self.num_nodes)
        return self._pairs

    def __repr__(self) -> str:
        C = None if self.select is None else self.select.num_clusters
        return (f'{self.__class__.__name__}(level={self.level}, '
                f'num_nodes={self.num_nodes}, '
                f'num_edges={self.edge_index.size(1)}, num_clusters={C})')


class MGNOutput:
    r"""The output of :class:`MGN`: one :class:`MGNLevel` per resolution,
    finest (the input graph, :math:`\ell = L`) first."""
    def __init__(self, levels: List[MGNLevel]):
        self.levels = levels

    @property
    def top(self) -> MGNLevel:
        return self.levels[-1]

    @property
    def noise(self) -> List[Dict[str, Tensor]]:
        r"""The random tensors of every level (pass as :obj:`noise=` to
        repeat the forward pass)."""
        return [lvl.noise for lvl in self.levels]

    def __getitem__(self, i: int) -> MGNLevel:
        return self.levels[i]

    def __len__(self) -> int:
        return len(self.levels)

    def __repr__(self) -> str:
        return f'{self.__class__.__name__}(levels={len(self.levels)})'


def _recon_sum(kind: str, pred: Tensor, target: Tensor) -> Tensor:
    r"""The summed reconstruction loss of :obj:`feature_loss` /
    :obj:`edge_feature_loss`: squared error (:obj:`"mse"`) or the cross
    entropy of the one-hot :obj:`target`'s class (:obj:`"ce"`)."""
    if kind == 'mse':
        return F.mse_loss(pred, target, reduction='sum')
    return F.cross_entropy(pred, target.argmax(dim=-1), reduction='sum')


def as_edge_index(adj: Adj, edge_weight: OptTensor,
                  num_nodes: Optional[int] = None
                  ) -> Tuple[Tensor, OptTensor]:
    r"""An :obj:`edge_index` (and weights) from an :obj:`edge_index`, a
    :class:`SparseTensor` or a :obj:`torch.sparse` adjacency :obj:`adj_t`
    (PyG's transposed layout: row = target), which must be
    :obj:`num_nodes` x :obj:`num_nodes` if given. Unit weights become
    :obj:`None`."""
    if not isinstance(adj, SparseTensor) and not is_torch_sparse_tensor(adj):
        return adj, edge_weight
    if edge_weight is not None:
        raise ValueError("Give the edge weights as the values of the sparse "
                         "adjacency, not as 'edge_weight'")
    size = (adj.size(0), adj.size(1))
    if num_nodes is not None and size != (num_nodes, num_nodes):
        raise ValueError(f"The sparse adjacency has size {size} for "
                         f"{num_nodes} nodes (expected {num_nodes} x "
                         f"{num_nodes})")
    index, value = to_edge_index(adj)
    # adj_t: (target, source) -> (source, target), sorted by source:
    index, value = sort_edge_index(index.flip(0), value, adj.size(0))
    if value is not None and bool((value == 1).all()):
        value = None
    return index, value


def _check_keys(name: str, given: Optional[Dict[str, Any]],
                defaults: Dict[str, Any]) -> Dict[str, Any]:
    given = dict(given or {})
    unknown = set(given) - set(defaults)
    if unknown:
        raise ValueError(f"Unknown '{name}' options {sorted(unknown)} "
                         f"(known: {sorted(defaults)})")
    return {**defaults, **given}


class MGN(torch.nn.Module):
    r"""The Multiresolution Graph Network from the `"Multiresolution
    Equivariant Graph Variational Autoencoder"
    <https://arxiv.org/abs/2106.00967>`_ paper (Def. 4), on sparse batched
    graphs, built from PyG operators.

    Every level :math:`\ell` (from the input graph :math:`\mathcal{G}^{(L)}`
    upwards) is "convolutions, then pooling", like any PyG hierarchical
    pooling network:

    1. :class:`~torch_geometric_mgvae.nn.MGNPooling` partitions
       :math:`\mathcal{G}^{(\ell)}` into :math:`K_\ell` clusters per graph
       (its :class:`~torch_geometric.nn.pool.select.Select`: learned
       Gumbel-max with a straight-through gradient, or fixed),
    2. a :class:`~torch_geometric_mgvae.nn.LocalEncoder` (any PyG
       convolution, :obj:`conv=`) encodes every cluster's induced subgraph
       (message passing over intra-cluster edges only) into node latents
       :math:`\mathcal{Z}^{(\ell)}`,
    3. the pooling reads every cluster out into one node (a Deep Sets
       :class:`~torch_geometric_mgvae.nn.ClusterReadout`) and
    4. coarsens :math:`\mathcal{A}^{(\ell-1)} = \Pi^T \mathcal{A}^{(\ell)}
       \Pi` (Def. 2, :class:`~torch_geometric_mgvae.nn.CoarsenEdges`),

    and finally encodes the coarsest graph. Local decoders reconstruct every
    cluster's adjacency (cost :math:`\sum_k |\mathcal{V}_k|^2`, or
    :math:`O(|E|)` with sampled non-edges for large clusters) and global
    decoders every level's adjacency. No :math:`N \times N` tensor is ever
    built over a large graph. Losses are methods returning tensors; the
    caller sums them (:meth:`loss_terms` gives all of them).

    :meth:`forward` returns every level (:class:`MGNOutput`) and takes
    tensors or a :class:`~torch_geometric.data.Data`/``Batch``. The methods
    with the names of PyG's :class:`~torch_geometric.nn.models.GAE`
    (:meth:`encode`, :meth:`decode`, :meth:`recon_loss`, :meth:`test`) mean
    what they mean there; the multiresolution terms have names of their own
    (:meth:`local_recon_loss`, :meth:`global_recon_loss`,
    :meth:`multires_recon_loss`, :meth:`balanced_cut_loss`, ...).

    Args:
        in_channels (int): Size of the input node features.
        hidden_channels (int): Hidden size of all networks.
        latent_channels (int): Size :math:`d_z` of the node latents.
        num_clusters (List[int]): Clusters per graph at each level, finest
            first, e.g. :obj:`[8, 4, 2, 1]` (a final :obj:`1` makes the top
            level a single node per graph, Def. 3). The model has
            :obj:`len(num_clusters) + 1` levels.
        num_layers (int): Message passing layers of each encoder.
            (default: :obj:`2`)
        conv (MessagePassing class or callable, optional): The first-order
            convolution of every encoder and clustering GNN: a class called
            as :obj:`conv(in_channels, out_channels)`, e.g.
            :class:`~torch_geometric.nn.conv.GCNConv`, or a factory such as
            :obj:`lambda i, o: GINConv(MLP([i, o, o]))`. Coarse levels' edge
            weights reach convolutions that take :obj:`edge_weight`, edge
            features those that take :obj:`edge_attr` (e.g.
            :class:`~torch_geometric.nn.conv.GINEConv`; coarse levels sum the
            features of merged edges; without edge features the weights are
            passed as one column). (default: the paper's
            :class:`~torch_geometric_mgvae.nn.MGNConv`)
        order (int): 1 for first-order encoders and inner-product local
            decoders, 2 for the paper's second-order networks (Eq. 3) on
            dense per-cluster blocks
            (:class:`~torch_geometric_mgvae.nn.SecondOrderEncoder` and
            :class:`~torch_geometric_mgvae.nn.SecondOrderDecoder`; cost
            :math:`\sum_k |\mathcal{V}_k|^2 d`). (default: :obj:`1`)
        edge_channels (int): Size of the input edge features for the
            second-order encoder of the finest level, and the width that
            :obj:`edge_feature_loss` reconstructs (any order).
            (default: :obj:`0`)
        normalize_second_order (bool): With :obj:`order=2`, the normalised
            second-order layers (adjacency scaled to a largest weight of 1,
            degrees relative to the mean degree, scale-aware
            initialisation: activations of order one at initialisation for
            any cluster size and coarse edge weight; see
            :class:`~torch_geometric_mgvae.nn.SecondOrderConv`) and, in
            :class:`MGVAE` with :obj:`covariance="mrf"`, a positive
            diagonal in the Cholesky-like factor
            (:class:`~torch_geometric_mgvae.nn.GaussianMRFHead`).
            :obj:`False` builds the earlier, unnormalised layers, kept to
            reproduce stored models. (default: :obj:`True`)
        clustering (str): :obj:`"learned"` or :obj:`"fixed"` (cluster ids
            are then passed to :meth:`forward`, or read from the data's
            :class:`~torch_geometric_mgvae.transforms.FixedHierarchy`
            attributes). (default: :obj:`"learned"`)
        cluster_kwargs (dict, optional): Options of the learned clustering
            (:class:`~torch_geometric_mgvae.nn.SelectLearned`):
            :obj:`num_layers` (2), :obj:`tau` (1.0), :obj:`balance` (0,
            Sinkhorn iterations, not in the paper),
            :obj:`hidden_channels` (:obj:`hidden_channels`) and
            :obj:`eval_assign` (:obj:`"argmax"`; :obj:`"balanced"`: cluster
            sizes within one of each other in evaluation mode, not in the
            paper) and :obj:`extra_channels` (0; node features that only the
            finest clustering reads, e.g. a spectral embedding, given to
            :meth:`forward` as :obj:`cluster_x`; not in the paper).
        encoder_scope (str): :obj:`"cluster"` (the paper's local encoders,
            Def. 4: message passing over intra-cluster edges only) or
            :obj:`"graph"` (message passing over the whole level graph, as the
            paper's global encoders of the image experiment, D.6; the local
            decoders still reconstruct every cluster). Then the learned
            clustering of a level reads the encoder's output instead of the
            level's input features. (default: :obj:`"cluster"`)
        latent_head (str): The maps from the encoder output to the latents
            (:math:`\mu`, and :math:`\log\sigma` in :class:`MGVAE`):
            :obj:`"linear"` (per node) or :obj:`"conv"` (one more
            convolution :obj:`conv(hidden_channels, latent_channels)` each,
            over the edges the encoder ran on, as the GCN heads of PyG's
            VGAE example; :obj:`order=1` only). With :obj:`num_layers=1`,
            :obj:`conv=GCNConv` and :obj:`encoder_scope="graph"` the finest
            level's encoder is the VGAE encoder of Kipf & Welling.
            (default: :obj:`"linear"`)
        norm (str, optional): A normalisation after every convolution of the
            first-order encoders, before the non-linearity, by its PyG name
            (e.g. :obj:`"instance_norm"`: every channel standardised over
            the nodes of each graph; see
            :class:`~torch_geometric_mgvae.nn.LocalEncoder`). On sparse,
            row-normalised features such as Planetoid's, a GCN's outputs
            are tiny at initialisation and a (V)GAE spends its first hundred
            or more epochs growing them; :obj:`"instance_norm"` removes
            that. (default: :obj:`None`)
        global_decoder (str, optional): The global decoders:
            :obj:`"inner"` (:class:`~torch_geometric_mgvae.nn.
            InnerProductDecoder`; sampled non-edges for large graphs),
            :obj:`"second_order"` (the paper's :math:`\mathbb{S}_n` decoder,
            dense per graph: small graphs only, :math:`O(n^2 d)` per graph),
            :obj:`"mlp"` (the non-equivariant MLP decoder of the paper's
            Table 6, finest level only), or :obj:`None`.
            (default: :obj:`"inner"`)
        feature_loss (str, optional): Reconstruct the input features from the
            finest latents with :obj:`"mse"` or cross-entropy (:obj:`"ce"`,
            for one-hot features). (default: :obj:`None`)
        edge_feature_loss (str, optional): Reconstruct the input edge
            features (:obj:`edge_attr`, e.g. one-hot bond types) of every
            input edge from the finest latents of its two nodes, with
            :obj:`"mse"` or cross-entropy (:obj:`"ce"`), by an MLP of
            :math:`[\mathbf{z}_i + \mathbf{z}_j, \mathbf{z}_i \odot
            \mathbf{z}_j]` (symmetric in :math:`i, j`; loss term
            :obj:`"edge_feature_recon"`, summed over the undirected edges
            (half for each direction), per graph; not in the paper). Needs
            :obj:`edge_channels` (the width of :obj:`edge_attr`) and an
            encoder that reads the edge features. (default: :obj:`None`)
        feature_mask (float): In training mode, the input features of each
            node are replaced by zeros with this probability before the
            encoders see them (the masked-attribute pretext of Hu et al.,
            2020; not in the paper); the finest level keeps the real
            features, so :obj:`feature_loss` reconstructs the uncorrupted
            ones, masked nodes from their context. Equivariant as
            :obj:`random_features` (the mask is in :attr:`MGNOutput.noise`).
            (default: :obj:`0.0`)
        max_nodes (int, optional): The largest graph, needed by the
            :obj:`"mlp"` global decoder (and the learnable prior).
        hierarchical_decoding (bool): Decode every level from its node
            latents concatenated with the latents of the node's clusters at
            all coarser levels, :math:`[\mathbf{z}^{(\ell)}_i,
            \mathbf{z}^{(\ell-1)}_{\pi(i)}, \ldots]` (for the inner product,
            :math:`\sum_{\ell'} \mathbf{z}^{(\ell')\top}_{\pi(i)}
            \mathbf{z}^{(\ell')}_{\pi(j)}`: nodes of one cluster share a
            term). Not in the paper, whose decoders see one level only.
            (default: :obj:`False`)
        random_features (int): Append this many i.i.d. :math:`\mathcal{N}(0,
            1)` channels to the input features at every forward pass
            (random node initialisation, breaks ties between nodes with the
            same local structure; equivariant in distribution, and exactly
            when the noise is permuted along with the nodes).
            (default: :obj:`0`)
        comembership (bool): The pair score of every level also counts the
            clusters the two nodes share: the decoding embedding of a node
            (:meth:`decoding_latents`) is extended by
            :math:`\sqrt{\beta_{\ell'}}\, \Pi^{(\ell')}_{\pi(i)}`, the
            one-hot row of its cluster at every clustered level
            :math:`\ell'` (local ids, learnable
            :math:`\beta_{\ell'} \ge 0`), so the inner-product decoder adds
            :math:`\sum_{\ell'} \beta_{\ell'} [\pi_{\ell'}(i) =
            \pi_{\ell'}(j)]` to the pair logit (scaled like the rest). The
            cluster parts of the embedding are read through the
            straight-through assignments (:func:`~torch_geometric_mgvae.nn.
            gather_clusters`), so the pair loss reaches every cluster a node
            could join; :meth:`comembership_loss` trains the learned
            clusterings to hold the edges. Not in the paper.
            (default: :obj:`False`)
        recon_kwargs (dict, optional): Options of the adjacency
            reconstruction losses
            (:func:`~torch_geometric_mgvae.nn.pair_recon_loss`):
            :obj:`max_dense_pairs` (:obj:`2**18`: the largest padded dense
            block before non-edges are sampled; the dense sum is exact, the
            sampled one unbiased), :obj:`num_neg_samples` (:obj:`None`: as
            many as edges) and :obj:`balanced` (:obj:`False`; :obj:`True`:
            mean over edges plus mean over non-edges, PyG GAE style).
    """
    variational = False

    def __init__(self, in_channels: int, hidden_channels: int,
                 latent_channels: int, num_clusters: Sequence[int],
                 num_layers: int = 2, conv: Optional[ConvSpec] = None,
                 order: int = 1, edge_channels: int = 0,
                 clustering: str = 'learned',
                 cluster_kwargs: Optional[Dict[str, Any]] = None,
                 encoder_scope: str = 'cluster',
                 latent_head: str = 'linear',
                 norm: Optional[str] = None,
                 global_decoder: Optional[str] = 'inner',
                 feature_loss: Optional[str] = None,
                 edge_feature_loss: Optional[str] = None,
                 feature_mask: float = 0.0,
                 max_nodes: Optional[int] = None,
                 hierarchical_decoding: bool = False,
                 random_features: int = 0,
                 comembership: bool = False,
                 recon_kwargs: Optional[Dict[str, Any]] = None,
                 normalize_second_order: bool = True):
        super().__init__()
        num_clusters = check_int_list('num_clusters', num_clusters)
        in_channels = check_int('in_channels', in_channels)
        hidden_channels = check_int('hidden_channels', hidden_channels)
        latent_channels = check_int('latent_channels', latent_channels)
        num_layers = check_int('num_layers', num_layers)
        random_features = check_int('random_features', random_features, 0)
        edge_channels = check_int('edge_channels', edge_channels, 0)
        max_nodes = check_int('max_nodes', max_nodes, optional=True)
        if clustering not in CLUSTERINGS:
            raise ValueError(f"'clustering' must be one of {CLUSTERINGS}")
        if feature_loss not in FEATURE_LOSSES:
            raise ValueError(f"'feature_loss' must be one of "
                             f"{FEATURE_LOSSES}")
        if edge_feature_loss not in FEATURE_LOSSES:
            raise ValueError(f"'edge_feature_loss' must be one of "
                             f"{FEATURE_LOSSES}")
        feature_mask = check_float('feature_mask', feature_mask, 0.0,
                                   strict=False)
        if feature_mask >= 1:
            raise ValueError(f"'feature_mask' must be < 1 (got "
                             f"{feature_mask})")
        if edge_feature_loss is not None and edge_channels == 0:
            raise ValueError("'edge_feature_loss' needs 'edge_channels' (the "
                             "width of the edge features to reconstruct)")
        if order not in (1, 2):
            raise ValueError("'order' must be 1 or 2")
        if encoder_scope not in ENCODER_SCOPES:
            raise ValueError(f"'encoder_scope' must be one of "
                             f"{ENCODER_SCOPES}")
        if norm is not None and order != 1:
            raise ValueError("'norm' applies to first-order encoders "
                             "(order=1)")
        if latent_head not in LATENT_HEADS:
            raise ValueError(f"'latent_head' must be one of {LATENT_HEADS}")
        if latent_head == 'conv' and order != 1:
            raise ValueError("latent_head='conv' needs first-order encoders "
                             "(order=1)")
        if global_decoder is not None and \
                global_decoder not in GLOBAL_DECODERS:
            raise ValueError(f"'global_decoder' must be None or one of "
                             f"{GLOBAL_DECODERS}")
        if global_decoder == 'mlp' and max_nodes is None:
            raise ValueError("The 'mlp' global decoder needs 'max_nodes'")
        if order == 2 and conv is not None:
            raise ValueError("'conv' chooses first-order convolutions; "
                             "order=2 encoders are second order")
        self.cluster_kwargs = _check_keys('cluster_kwargs', cluster_kwargs,
                                          CLUSTER_DEFAULTS)
        ck = self.cluster_kwargs
        check_int("cluster_kwargs['hidden_channels']", ck['hidden_channels'],
                  optional=True)
        check_int("cluster_kwargs['extra_channels']", ck['extra_channels'], 0)
        self.recon_kwargs = _check_keys('recon_kwargs', recon_kwargs,
                                        RECON_DEFAULTS)
        rk = self.recon_kwargs
        check_int("recon_kwargs['max_dense_pairs']", rk['max_dense_pairs'],
                  0)
        check_int("recon_kwargs['num_neg_samples']", rk['num_neg_samples'],
                  optional=True)
        if not isinstance(rk['balanced'], bool):
            raise TypeError(f"recon_kwargs['balanced'] must be True or False "
                            f"(got {rk['balanced']!r})")
        self.in_channels = in_channels
        self.hidden_channels = hidden_channels
        self.latent_channels = latent_channels
        self.num_clusters = num_clusters
        self.num_layers = num_layers
        self.conv = conv
        self.order = order
        self.edge_channels = edge_channels
        self.clustering = clustering
        self.encoder_scope = encoder_scope
        self.latent_head = latent_head
        self.norm = norm
        self.global_decoder = global_decoder
        self.feature_loss = feature_loss
        self.edge_feature_loss = edge_feature_loss
        self.feature_mask = feature_mask
        self.max_nodes = max_nodes
        self.hierarchical_decoding = hierarchical_decoding
        self.random_features = random_features
        self.comembership = comembership
        self.normalize_second_order = normalize_second_order

        num_levels = len(num_clusters) + 1
        ins = ([in_channels + random_features] +
               [hidden_channels] * len(num_clusters))
        if order == 1:
            self.encoders = torch.nn.ModuleList([
                LocalEncoder(ins[i], hidden_channels, num_layers, conv,
                             norm=norm) for i in range(num_levels)
            ])
            enc_out = hidden_channels
        else:
            self.encoders = torch.nn.ModuleList([
                SecondOrderEncoder(ins[i], edge_channels if i == 0 else 0,
                                   hidden_channels, hidden_channels,
                                   num_layers,
                                   normalize=normalize_second_order)
                for i in range(num_levels)
            ])
            enc_out = self.encoders[0].first_order_channels
        # With encoder_scope='graph' the encoder does not depend on the
        # clusters, so the clustering GNN reads the encoder's output (one
        # pass over the raw, possibly wide, features instead of two).
        cluster_ins = list([enc_out] * num_levels if encoder_scope == 'graph'
                           else ins)
        ck = self.cluster_kwargs
        cluster_ins[0] = cluster_ins[0] + ck['extra_channels']
        self.pools = torch.nn.ModuleList([
            MGNPooling(cluster_ins[i], K, select=clustering,
                       hidden_channels=ck['hidden_channels'] or
                       hidden_channels, num_layers=ck['num_layers'],
                       tau=ck['tau'], balance=ck['balance'], conv=conv,
                       eval_assign=ck['eval_assign'],
                       readout=ClusterReadout.mlp(latent_channels,
                                                  hidden_channels))
            for i, K in enumerate(num_clusters)
        ])
        def head() -> torch.nn.Module:
            if latent_head == 'conv':
                return make_conv(conv, enc_out, latent_channels)
            return torch.nn.Linear(enc_out, latent_channels)

        self.mu_heads = torch.nn.ModuleList(
            [head() for _ in range(num_levels)])
        self.logstd_heads = torch.nn.ModuleList([
            head() for _ in range(num_levels)
        ]) if self.variational else None
        local_kind = 'inner' if order == 1 else 'second_order'
        self.local_decoders = torch.nn.ModuleList([
            self._make_decoder(local_kind, i)
            for i in range(len(num_clusters))
        ])
        self.global_decoders = None
        if global_decoder is not None:
            self.global_decoders = torch.nn.ModuleList([
                self._make_decoder(
                    global_decoder if i == 0 or global_decoder != 'mlp' else
                    local_kind, i) for i in range(num_levels)
            ])
        self.feature_decoder = torch.nn.Sequential(
            torch.nn.Linear(latent_channels, hidden_channels),
            torch.nn.ReLU(),
            torch.nn.Linear(hidden_channels, in_channels),
        ) if feature_loss is not None else None
        # Whether the first-order convolutions read edge features:
        self._conv_edge_attr = order == 1 and any(
            conv_inputs(c)[1] and not conv_inputs(c)[0]
            for c in self.encoders[0].convs)
        if edge_feature_loss is not None and not self.uses_edge_attr:
            raise ValueError("'edge_feature_loss' needs an encoder that "
                             "reads the edge features (a convolution that "
                             "takes 'edge_attr', or order=2)")
        # Registered after every other module: the initialisation of the
        # others does not depend on it.
        self.edge_feature_decoder = torch.nn.Sequential(
            torch.nn.Linear(2 * latent_channels, hidden_channels),
            torch.nn.ReLU(),
            torch.nn.Linear(hidden_channels, edge_channels),
        ) if edge_feature_loss is not None else None
        # Co-membership weights (w of beta = softplus(w)) and the scale and
        # bias of every level's soft co-membership loss:
        self.comembership_weight = torch.nn.Parameter(torch.empty(
            len(num_clusters))) if comembership else None
        self.comembership_affine = torch.nn.Parameter(torch.empty(
            len(num_clusters), 2)) if comembership else None
        self.reset_parameters()

    @property
    def num_levels(self) -> int:
        return len(self.num_clusters) + 1

    @property
    def uses_edge_attr(self) -> bool:
        r"""Whether :meth:`forward` uses the input's :obj:`edge_attr`
        (second-order encoders with :obj:`edge_channels`, or first-order
        convolutions that take edge features)."""
        return (self.order == 2 and self.edge_channels > 0) or \
            self._conv_edge_attr

    def _make_decoder(self, kind: str, i: int) -> torch.nn.Module:
        parts = self.num_levels - i if self.hierarchical_decoding else 1
        channels = parts * self.latent_channels
        if kind == 'inner':
            return InnerProductDecoder()
        if kind == 'second_order':
            return DenseEdgeDecoder(
                SecondOrderDecoder(channels, self.hidden_channels,
                                   self.num_layers,
                                   normalize=self.normalize_second_order))
        return DenseEdgeDecoder(MLPDecoder(channels, self.max_nodes))

    def decoding_latents(self, out: MGNOutput, i: int) -> Tensor:
        r"""The latents the decoders of level :obj:`i` see: the node latents,
        with :obj:`hierarchical_decoding` concatenated with those of the
        node's clusters at every coarser level, with :obj:`comembership`
        also with the weighted one-hot rows of its clusters."""
        z = out[i].z
        if self.comembership:
            return torch.cat([z, self._ancestry(out, i)], dim=-1)
        if not self.hierarchical_decoding:
            return z
        parts, index = [z], None
        for j in range(i, len(out.levels) - 1):
            cluster = out[j].select.cluster_index
            index = cluster if index is None else cluster[index]
            parts.append(out[j + 1].z[index])
        return torch.cat(parts, dim=-1)

    def _ancestry(self, out: MGNOutput, i: int) -> Tensor:
        r"""The parts of the decoding embedding of level :obj:`i`'s nodes
        that come from their clusters (:obj:`comembership`): per clustered
        level :math:`\ell' \ge i`, :math:`\sqrt{\beta_{\ell'}}` times the
        one-hot row of the node's cluster and, with
        :obj:`hierarchical_decoding`, that cluster's latent; read through
        the straight-through assignments (computed once per output)."""
        cache = out.__dict__.setdefault('_ancestry', {})
        if i in cache:
            return cache[i]
        lvl = out[i]
        if i == len(out.levels) - 1:
            part = lvl.z.new_zeros(lvl.num_nodes, 0)
        else:
            so = lvl.select
            upper = self._ancestry(out, i + 1)
            if self.hierarchical_decoding:
                upper = torch.cat([out[i + 1].z, upper], dim=-1)
            beta = F.softplus(self.comembership_weight[i])
            A = so.assignment
            if A is None:  # fixed clusters carry no one-hot matrix
                A = F.one_hot(so.local, so.num_local).to(lvl.z.dtype)
            part = torch.cat([
                A * beta.sqrt(),
                gather_clusters(so, upper, lvl.batch, lvl.num_graphs)
            ], dim=-1)
        cache[i] = part
        return part

    def _ancestry_index(self, out: MGNOutput, i: int) -> Tensor:
        r"""The columns of :meth:`_ancestry` (without
        :obj:`hierarchical_decoding`) where level :obj:`i`'s nodes have
        their nonzero entries: per clustered level :math:`\ell' \ge i`, the
        block's offset plus the local id of the node's cluster there,
        :math:`(N_i, L - i)`."""
        node = torch.arange(out[i].num_nodes, device=out[i].z.device)
        cols, offset = [], 0
        for j in range(i, len(out.levels) - 1):
            so = out[j].select
            cols.append(offset + so.local[node])
            offset += so.num_local
            node = so.cluster_index[node]
        if not cols:
            return node.new_zeros(node.numel(), 0)
        return torch.stack(cols, dim=1)

    def reset_parameters(self):
        for m in self.modules():
            if m is not self and hasattr(m, 'reset_parameters'):
                m.reset_parameters()
        if self.comembership:
            torch.nn.init.constant_(self.comembership_weight,
                                    COMEMBERSHIP_INIT)
            torch.nn.init.zeros_(self.comembership_affine)

    # Latents ################################################################

    @property
    def reads_second_order(self) -> bool:
        r"""Whether :meth:`latent` reads the second-order encoder output
        :obj:`H` (else :meth:`encode_level` does not assemble it)."""
        return False

    def latent(self, i: int, h: Tensor, eps: OptTensor = None,
               generator: Optional[torch.Generator] = None,
               H: OptTensor = None, blocks: Optional[DenseBlocks] = None,
               edges: Optional[Tuple[Tensor, OptTensor, OptTensor]] = None):
        r"""Node latents of level :obj:`i` from the first-order encoder
        output :obj:`h` (and, for :obj:`order=2`, the second-order output
        :obj:`H` on :obj:`blocks`; for :obj:`latent_head="conv"`, the
        :obj:`edges` :obj:`(edge_index, edge_weight, edge_attr)` the encoder
        ran on). Returns :obj:`(z, mu, logstd, eps, L)`; deterministic in
        :class:`MGN`."""
        return self.head(self.mu_heads[i], h, edges), None, None, None, None

    def head(self, module: torch.nn.Module, h: Tensor,
             edges: Optional[Tuple[Tensor, OptTensor, OptTensor]] = None
             ) -> Tensor:
        r"""Applies a latent head (:obj:`latent_head`) to the encoder output
        :obj:`h`: a linear map, or a convolution over :obj:`edges`."""
        if self.latent_head == 'linear':
            return module(h)
        if edges is None:
            raise ValueError("latent_head='conv' needs the encoder's edges")
        return run_conv(module, h, edges[0], edges[1], edges[2],
                        conv_inputs(module))

    def encode_level(self, i: int, x: Tensor, edge_index: Tensor,
                     edge_weight: OptTensor, group: Tensor, num_groups: int,
                     edge_attr: OptTensor = None,
                     restrict: bool = True, batch: OptTensor = None):
        r"""Runs the encoder of level :obj:`i` on every group (cluster, or
        graph with :obj:`restrict=False`). Returns the first-order output
        :obj:`[N, F]` and, for :obj:`order=2`, the second-order output
        (:obj:`None` unless the latents read it,
        :attr:`reads_second_order`) and its dense blocks. :obj:`batch` (the
        graph of every node) reaches the encoder's normalisation
        (:obj:`norm`)."""
        if self.order == 1:
            return self.encoders[i](x, edge_index, edge_weight,
                                    group if restrict else None,
                                    edge_attr, batch), None, None
        blocks = to_dense_blocks(x, edge_index, group, num_groups,
                                 edge_weight, edge_attr)
        # H [G, m, m, C] (or None), Z [G, m, 2C]:
        H, Z = self.encoders[i](
            blocks.x, blocks.adj, blocks.mask, blocks.edge_attr,
            return_second_order=self.reads_second_order)
        return blocks.to_nodes(Z), H, blocks

    # Forward ################################################################

    def _unpack(self, data: BaseData, kwargs: Dict[str, Any]):
        r"""The tensors of a :class:`~torch_geometric.data.Data`/``Batch``
        as :meth:`forward` arguments (explicit keywords win)."""
        from torch_geometric_mgvae.transforms import get_fixed_clusters
        if data.get('x') is None:
            raise ValueError("The data object has no node features 'x' "
                             "(e.g. add them with "
                             "torch_geometric_mgvae.transforms."
                             "AddStructuralFeatures)")
        adj = data.get('adj_t')
        if adj is None:
            adj = data.get('edge_index')
        if adj is None:
            raise ValueError("The data object has neither 'edge_index' nor "
                             "'adj_t'")
        found = dict(edge_weight=data.get('edge_weight'),
                     batch=data.get('batch'),
                     num_graphs=getattr(data, 'num_graphs', None)
                     if data.get('batch') is not None else 1,
                     edge_attr=data.get('edge_attr')
                     if self.uses_edge_attr else None)
        if self.clustering == 'fixed':
            found['clusters'] = get_fixed_clusters(data) or None
        if self.cluster_kwargs['extra_channels'] > 0:
            found['cluster_x'] = data.get('cluster_x')
        for key, value in found.items():
            if kwargs.get(key) is None:
                kwargs[key] = value
        return data.x, adj

    def forward(self, x: Union[Tensor, BaseData], edge_index: Adj = None,
                edge_weight: OptTensor = None, batch: OptTensor = None,
                num_graphs: Optional[int] = None,
                edge_attr: OptTensor = None,
                clusters: Optional[Sequence[Tensor]] = None,
                noise: Optional[Sequence[Dict[str, Tensor]]] = None,
                generator: Optional[torch.Generator] = None,
                cluster_x: OptTensor = None) -> MGNOutput:
        r"""Encodes a batch of graphs at every resolution.

        Args:
            x (torch.Tensor or Data): Node features :math:`(N, F)`, or a
                :class:`~torch_geometric.data.Data`/``Batch`` whose
                :obj:`x`, :obj:`edge_index` (or :obj:`adj_t`),
                :obj:`edge_weight`, :obj:`edge_attr`, :obj:`batch` and fixed
                clusters are used.
            edge_index (torch.Tensor or SparseTensor): Edge indices
                :math:`(2, E)` (undirected, both directions), or a
                :class:`SparseTensor`/:obj:`torch.sparse` adjacency.
            edge_weight (torch.Tensor, optional): Edge weights :math:`(E)`.
            batch (torch.Tensor, optional): Sorted batch vector :math:`(N)`
                (default: one graph).
            num_graphs (int, optional): Number of graphs (give it when a
                batch ends in graphs without nodes; default:
                :obj:`batch.max() + 1`).
            edge_attr (torch.Tensor, optional): Edge features
                :math:`(E, F_e)` for the second-order encoder
                (:obj:`edge_channels > 0`) or convolutions that take them.
            clusters (List[torch.Tensor], optional): Fixed local cluster ids
                in :math:`\{0, \ldots, K_\ell - 1\}` for every clustered level
                (finest first), e.g. from
                :class:`~torch_geometric_mgvae.transforms.FixedHierarchy`.
                Required when :obj:`clustering="fixed"`; overrides the
                learned clustering otherwise.
            noise (List[dict], optional): The random tensors to use per level
                (:obj:`MGNOutput.noise` of an earlier pass, possibly with the
                finest level's rows permuted along with the nodes).
            generator (torch.Generator, optional): Random generator for
                the Gumbel and reparameterisation noise.
            cluster_x (torch.Tensor, optional): Node features
                :math:`(N, F_c)` appended to the input of the finest learned
                clustering only (required exactly when
                :obj:`cluster_kwargs['extra_channels'] = F_c > 0`).
        """
        if isinstance(x, BaseData):
            kw = dict(edge_weight=edge_weight, batch=batch,
                      num_graphs=num_graphs, edge_attr=edge_attr,
                      clusters=clusters, cluster_x=cluster_x)
            x, edge_index = self._unpack(x, kw)
            edge_weight, batch, num_graphs, edge_attr, clusters = (
                kw['edge_weight'], kw['batch'], kw['num_graphs'],
                kw['edge_attr'], kw['clusters'])
            cluster_x = kw['cluster_x']
        if edge_index is None:
            raise ValueError("'edge_index' is required")
        edge_index, edge_weight = as_edge_index(
            edge_index, edge_weight,
            x.size(0) if isinstance(x, Tensor) and x.dim() == 2 else None)
        check_graph(x, edge_index, edge_weight, batch, edge_attr, num_graphs)
        self._check_input(x, edge_attr)
        if batch is None:
            batch = x.new_zeros(x.size(0), dtype=torch.long)
        if num_graphs is None:
            num_graphs = int(batch.max()) + 1 if batch.numel() > 0 else 0
        if clusters is None and self.clustering == 'fixed':
            raise ValueError("'clusters' must be given with "
                             "clustering='fixed'")
        if clusters is not None and len(clusters) != len(self.num_clusters):
            raise ValueError(f"Expected {len(self.num_clusters)} fixed "
                             f"clusterings (got {len(clusters)})")
        if self.order == 2 and (edge_attr is not None) != \
                (self.edge_channels > 0):
            raise ValueError("With order=2, 'edge_attr' is used (and "
                             "required) exactly when edge_channels > 0")
        if self.order == 1 and edge_attr is not None and \
                not self._conv_edge_attr:
            raise ValueError(f"The convolution "
                             f"{self.encoders[0].convs[0].__class__.__name__}"
                             f" takes no 'edge_attr'")
        extra = self.cluster_kwargs['extra_channels']
        got = None if cluster_x is None else tuple(cluster_x.shape)
        if (got is not None) != (extra > 0) or (
                got is not None and got != (x.size(0), extra)):
            want = (x.size(0), extra) if extra else None
            raise ValueError(f"'cluster_x' must be given exactly when "
                             f"cluster_kwargs['extra_channels'] > 0, with "
                             f"shape [num_nodes, extra_channels] (expected "
                             f"{want}, got {got})")
        noise = list(noise) if noise is not None else []
        x_in = x
        graph_scope = self.encoder_scope == 'graph'
        levels: List[MGNLevel] = []
        for i in range(self.num_levels):
            lvl_noise = dict(noise[i]) if i < len(noise) else {}
            if i == 0 and self.training and self.feature_mask > 0:
                keep = lvl_noise.get('mask')
                if keep is None:
                    keep = (rand((x.size(0), 1), generator, x.device) >=
                            self.feature_mask).to(x.dtype)
                lvl_noise['mask'] = keep
                x = x * keep
            if i == 0 and self.random_features > 0:
                r = lvl_noise.get('features')
                if r is None:
                    r = randn((x.size(0), self.random_features), generator,
                              x.device, x.dtype)
                lvl_noise['features'] = r
                x = torch.cat([x, r], dim=-1)
            # Second-order encoders read edge features at the finest level
            # only; first-order ones at every level.
            enc_attr = edge_attr if (i == 0 or self.order == 1) else None
            if graph_scope:  # Encode the whole level graph, then cluster.
                h, H, blocks = self.encode_level(
                    i, x, edge_index, edge_weight, batch, num_graphs,
                    enc_attr, restrict=False, batch=batch)
            so = None
            if i < len(self.num_clusters):
                c_in = h if graph_scope else x
                if i == 0 and cluster_x is not None:
                    c_in = torch.cat([c_in, cluster_x.to(c_in.dtype)], -1)
                so = self.pools[i].cluster(
                    c_in, edge_index, edge_weight, batch,
                    edge_attr if self.order == 1 else None,
                    None if clusters is None else clusters[i],
                    lvl_noise.get('gumbel'), generator)
                if so.noise is not None:
                    lvl_noise['gumbel'] = so.noise
            if not graph_scope:  # Encode every cluster on its own.
                group, num_groups = ((batch, num_graphs) if so is None else
                                     (so.cluster_index, so.num_clusters))
                h, H, blocks = self.encode_level(
                    i, x, edge_index, edge_weight, group, num_groups,
                    enc_attr, batch=batch)
            edges = None
            if self.latent_head == 'conv':
                edges = (edge_index, edge_weight, enc_attr)
                if not graph_scope:
                    edges = intra_cluster_edges(*edges[:2], group,
                                                enc_attr)
            z, mu, logstd, eps, L = self.latent(i, h, lvl_noise.get('eps'),
                                                generator, H, blocks, edges)
            if eps is not None:
                lvl_noise['eps'] = eps
            levels.append(
                MGNLevel(self.num_levels - i, x_in if i == 0 else x,
                         edge_index, edge_weight, batch, num_graphs, so, z,
                         mu, logstd, lvl_noise, blocks, L, edge_attr))
            if so is not None:
                pooled = self.pools[i].coarsen_graph(
                    z, edge_index, edge_weight, so, batch,
                    edge_attr if self.order == 1 else None)
                x, edge_index, edge_weight = (pooled.x, pooled.edge_index,
                                              pooled.edge_weight)
                edge_attr, batch = pooled.edge_attr, pooled.batch
        return MGNOutput(levels)

    def _check_input(self, x: Tensor, edge_attr: OptTensor):
        r"""The input's widths and dtype against the model's."""
        if x.size(1) != self.in_channels:
            raise ValueError(f"'x' has {x.size(1)} channels but the model "
                             f"was built with in_channels="
                             f"{self.in_channels}")
        dtype = next(self.mu_heads[0].parameters()).dtype  # or GCN heads
        if x.dtype != dtype:
            raise ValueError(f"'x' is {x.dtype} but the model's parameters "
                             f"are {dtype} (convert one of them, e.g. "
                             f"x.to({dtype}))")
        if edge_attr is not None and (self.order == 2 or
                                      self.edge_feature_loss is not None):
            width = math.prod(edge_attr.shape[1:])
            if width != self.edge_channels:
                raise ValueError(f"'edge_attr' has {width} columns but the "
                                 f"model was built with edge_channels="
                                 f"{self.edge_channels}")

    # PyG's GAE interface ####################################################

    def encode(self, *args, **kwargs) -> Tensor:
        r"""Runs :meth:`forward` and returns the node embeddings the finest
        global decoder scores pairs with (the finest latents; with
        :obj:`hierarchical_decoding`, concatenated with their clusters'),
        :math:`(N, d)`, as :meth:`torch_geometric.nn.models.GAE.encode`.
        The full output of the last call is kept in :attr:`last_output`
        (and used by :meth:`MGVAE.kl_loss`)."""
        out = self(*args, **kwargs)
        self.last_output = out
        return self.decoding_latents(out, 0)

    def decode(self, z: Tensor, edge_index: Tensor,
               sigmoid: bool = True) -> Tensor:
        r"""Edge probabilities of the pairs :obj:`edge_index` under the
        finest global decoder, as
        :meth:`torch_geometric.nn.models.GAE.decode`."""
        dec = self._pair_decoder()
        return dec(z, edge_index, sigmoid=sigmoid)

    def _pair_decoder(self) -> torch.nn.Module:
        dec = None if self.global_decoders is None else \
            self.global_decoders[0]
        if not getattr(dec, 'pairwise', False):
            raise RuntimeError("decode()/recon_loss()/test() score node "
                               "pairs: they need the inner-product global "
                               "decoder (global_decoder='inner')")
        return dec

    def recon_loss(self, z: Tensor, pos_edge_index: Tensor,
                   neg_edge_index: OptTensor = None) -> Tensor:
        r"""PyG's :meth:`~torch_geometric.nn.models.GAE.recon_loss`: binary
        cross entropy of the positive edges and of negative samples (drawn
        with :func:`~torch_geometric.utils.negative_sampling` when not
        given), each averaged, under the finest global decoder. (The
        multiresolution likelihood of Eq. 9 is
        :meth:`multires_recon_loss`.)"""
        dec = self._pair_decoder()
        pos = dec(z, pos_edge_index, sigmoid=False)
        if neg_edge_index is None:
            neg_edge_index = negative_sampling(pos_edge_index, z.size(0))
        neg = dec(z, neg_edge_index, sigmoid=False)
        return F.softplus(-pos).mean() + F.softplus(neg).mean()

    @torch.no_grad()
    def test(self, z: Tensor, pos_edge_index: Tensor,
             neg_edge_index: Tensor) -> Tuple[float, float]:
        r"""ROC AUC and average precision of scoring positive against
        negative pairs, as :meth:`torch_geometric.nn.models.GAE.test`."""
        from sklearn.metrics import average_precision_score, roc_auc_score
        pos = self.decode(z, pos_edge_index)
        neg = self.decode(z, neg_edge_index)
        y = torch.cat([torch.ones_like(pos), torch.zeros_like(neg)])
        pred = torch.cat([pos, neg])
        y, pred = y.cpu().numpy(), pred.cpu().numpy()
        return roc_auc_score(y, pred), average_precision_score(y, pred)

    # Multiresolution losses #################################################

    def _pair_loss(self, out: MGNOutput, i: int, group: Tensor,
                   num_groups: int, decoder: torch.nn.Module,
                   generator: Optional[torch.Generator],
                   shard: Optional[Tuple[int, int]] = None) -> Tensor:
        rk = self.recon_kwargs
        lvl = out[i]
        if (self.comembership and not self.hierarchical_decoding
                and isinstance(decoder, InnerProductDecoder)):
            # The co-membership rows are one-hot blocks: score them sparsely.
            decoder = BlockInnerProductDecoder(decoder, lvl.z.size(-1),
                                               self._ancestry_index(out, i))
        return pair_recon_loss(
            self.decoding_latents(out, i), lvl.edge_index, group, num_groups,
            decoder, rk['max_dense_pairs'], rk['num_neg_samples'],
            rk['balanced'], generator, lvl.pairs, shard)

    def local_recon_loss(self, out: MGNOutput,
                         generator: Optional[torch.Generator] = None,
                         shard: Optional[Tuple[int, int]] = None) -> Tensor:
        r"""Negative log-likelihood of every cluster's adjacency
        :math:`[\mathcal{A}^{(\ell)}]_k` under the local decoders, summed over
        levels and clusters, per graph (:obj:`shard`: see
        :func:`~torch_geometric_mgvae.nn.pair_recon_loss`)."""
        loss = out[0].z.new_zeros(())
        for i, lvl in enumerate(out.levels[:-1]):
            so = lvl.select
            loss = loss + self._pair_loss(out, i, so.cluster_index,
                                          so.num_clusters,
                                          self.local_decoders[i], generator,
                                          shard)
        return loss / max(out[0].num_graphs, 1)

    def global_recon_loss(self, out: MGNOutput,
                          generator: Optional[torch.Generator] = None,
                          levels: Optional[Sequence[int]] = None,
                          shard: Optional[Tuple[int, int]] = None) -> Tensor:
        r"""Negative log-likelihood of every level's whole adjacency
        :math:`\mathcal{A}^{(\ell)}` under the global decoders, per graph
        (only of the levels :obj:`levels`, e.g. :obj:`[0]` for the input
        graph, if given; :obj:`shard`: see :func:`~torch_geometric_mgvae.nn.
        pair_recon_loss`)."""
        loss = out[0].z.new_zeros(())
        if self.global_decoders is None:
            return loss
        for i, lvl in enumerate(out.levels):
            if levels is not None and i not in levels:
                continue
            loss = loss + self._pair_loss(out, i, lvl.batch, lvl.num_graphs,
                                          self.global_decoders[i], generator,
                                          shard)
        return loss / max(out[0].num_graphs, 1)

    def multires_recon_loss(self, out: MGNOutput,
                            generator: Optional[torch.Generator] = None
                            ) -> Tensor:
        r"""The adjacency terms of the multiresolution likelihood (Eq. 9):
        local plus global reconstruction loss, per graph."""
        return (self.local_recon_loss(out, generator) +
                self.global_recon_loss(out, generator))

    def feature_recon_loss(self, out: MGNOutput) -> Tensor:
        r"""Reconstruction loss of the input node features from the finest
        latents (sum over nodes, per graph); 0 without a feature decoder."""
        lvl = out[0]
        if self.feature_decoder is None or lvl.num_nodes == 0:
            return lvl.z.new_zeros(())
        loss = _recon_sum(self.feature_loss, self.feature_decoder(lvl.z),
                          lvl.x)
        return loss / max(lvl.num_graphs, 1)

    def edge_feature_recon_loss(self, out: MGNOutput) -> Tensor:
        r"""Reconstruction loss of the input edge features from the finest
        latents of their end nodes (:obj:`edge_feature_loss`), summed over
        the undirected edges (half for each direction), per graph."""
        lvl = out[0]
        if self.edge_feature_decoder is None or lvl.edge_index.numel() == 0:
            return lvl.z.sum() * 0.
        if lvl.edge_attr is None:
            raise ValueError("'edge_feature_loss' needs the input's "
                             "'edge_attr'")
        row, col = lvl.edge_index
        zi, zj = lvl.z[row], lvl.z[col]
        pred = self.edge_feature_decoder(torch.cat([zi + zj, zi * zj], -1))
        target = lvl.edge_attr.reshape(pred.size(0), self.edge_channels)
        loss = _recon_sum(self.edge_feature_loss, pred, target)
        # Both directions of an edge are predicted alike: half each.
        return loss / 2 / max(lvl.num_graphs, 1)

    def balanced_cut_loss(self, out: MGNOutput) -> Tensor:
        r"""The balanced-cut KL of every clustering (Sec. 3.3,
        :meth:`MGNPooling.cut_loss`), averaged over graphs and summed over
        levels (a constant for fixed clusterings)."""
        loss = out[0].z.new_zeros(())
        for pool, lvl in zip(self.pools, out.levels[:-1]):
            loss = loss + pool.cut_loss(lvl.select, lvl.batch,
                                        lvl.num_graphs)
        return loss

    def cluster_entropy_loss(self, out: MGNOutput) -> Tensor:
        r"""The mean entropy of the learned assignment distributions,
        averaged over graphs and summed over levels (see
        :func:`~torch_geometric_mgvae.nn.assignment_entropy`; not in the
        paper)."""
        loss = out[0].z.new_zeros(())
        for lvl in out.levels[:-1]:
            so = lvl.select
            if so.logits is None or lvl.num_nodes == 0:
                continue
            loss = loss + assignment_entropy(so.logits, lvl.batch,
                                             lvl.num_graphs).mean()
        return loss

    def comembership_loss(self, out: MGNOutput,
                          generator: Optional[torch.Generator] = None
                          ) -> Tensor:
        r"""Trains the learned clusterings to hold the edges of the input
        graph (:obj:`comembership`; not in the paper). For every learned
        level :math:`\ell`, :math:`Q^{(\ell)}_i` is the probability
        distribution of input node :math:`i` over its level-:math:`\ell`
        clusters (the soft assignments chained through the levels, without
        Gumbel noise), and the pair logit

        .. math::
            s^{(\ell)}_{ij} = e^{a_\ell} K_\ell \, Q^{(\ell)\top}_i
            Q^{(\ell)}_j + b_\ell

        is scored by binary cross entropy, the mean over the edges plus the
        mean over as many node pairs drawn within the graphs (edges among
        them dropped), over all graphs of the batch, summed over levels. Unlike
        the straight-through gradient of a Gumbel-max sample, which is noise
        while the assignments are near uniform, this gradient is exact, so
        the clusters become communities from the first epochs. 0 without
        learned levels."""
        lvl0 = out[0]
        loss = lvl0.z.new_zeros(())
        if not self.comembership or lvl0.num_nodes == 0:
            return loss
        pos = lvl0.pairs
        neg, _ = sample_group_pairs(lvl0.batch, lvl0.num_graphs,
                                    max(pos.size(1), 1), generator)
        N = lvl0.num_nodes
        lo, hi = torch.minimum(neg[0], neg[1]), torch.maximum(neg[0], neg[1])
        neg = neg[:, ~torch.isin(lo * N + hi, pos[0] * N + pos[1])]
        Q = None
        for i, lvl in enumerate(out.levels[:-1]):
            so = lvl.select
            if so.logits is None:
                break
            p = row_softmax(so.logits)  # [N_i, K]
            Q = p if Q is None else gather_clusters(
                out[i - 1].select, p, out[i - 1].batch,
                out[i - 1].num_graphs, assignment=Q)  # [N, K]
            a, b = self.comembership_affine[i]
            scale = a.exp() * so.num_local
            for pairs, sign in ((pos, -1.0), (neg, 1.0)):
                if pairs.size(1) == 0:
                    continue
                s = scale * (Q.index_select(0, pairs[0]) *
                             Q.index_select(0, pairs[1])).sum(-1) + b
                loss = loss + F.softplus(sign * s).mean()
        return loss

    def cluster_target_loss(self, out: MGNOutput,
                            targets: Sequence[Tensor]) -> Tensor:
        r"""Pulls the learned clusterings towards given partitions (e.g. a
        balanced spectral hierarchy, :func:`~torch_geometric_mgvae.nn.
        fixed_hierarchy`; not in the paper): the negative log-likelihood of
        the target local cluster ids :obj:`targets[l]` under the (balanced)
        assignment probabilities of level :math:`l`, summed over the learned
        levels, from the finest up, while their node counts match the
        targets' (a coarse level built from other clusters than the
        targets' stops the sum)."""
        loss = out[0].z.new_zeros(())
        for lvl, target in zip(out.levels, targets):
            so = lvl.select
            if so is None or so.logits is None or \
                    so.logits.size(0) != target.numel():
                break
            loss = loss + F.nll_loss(
                row_softmax(so.logits, log=True),
                target.to(so.logits.device).long().view(-1))
        return loss

    def loss_terms(self, out: MGNOutput,
                   generator: Optional[torch.Generator] = None,
                   shard: Optional[Tuple[int, int]] = None
                   ) -> Dict[str, Tensor]:
        r"""All loss terms of the model, by name (the caller weighs and sums
        them). :obj:`shard` = :obj:`(rank, world)`: this process's share of
        the reconstruction terms of a graph trained data-parallel over its
        pairs (see :func:`~torch_geometric_mgvae.nn.pair_recon_loss`; the
        other terms are whole)."""
        terms = dict(local_recon=self.local_recon_loss(out, generator, shard),
                     global_recon=self.global_recon_loss(out, generator,
                                                         shard=shard),
                     feature_recon=self.feature_recon_loss(out),
                     balanced_cut=self.balanced_cut_loss(out),
                     cluster_entropy=self.cluster_entropy_loss(out))
        if self.edge_feature_loss is not None:
            terms['edge_feature_recon'] = self.edge_feature_recon_loss(out)
        if self.comembership:
            terms['comembership'] = self.comembership_loss(out, generator)
        return terms

    def __repr__(self) -> str:
        conv = 'MGNConv' if self.conv is None else self.conv if isinstance(
            self.conv, str) else getattr(self.conv, '__name__',
                                         type(self.conv).__name__)
        return (f'{self.__class__.__name__}({self.in_channels}, '
                f'{self.hidden_channels}, {self.latent_channels}, '
                f'num_clusters={self.num_clusters}, order={self.order}, '
                f'conv={conv})')
