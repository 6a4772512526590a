r"""The Multiresolution Graph Network (MGN) of Hy & Kondor."""
from typing import Dict, List, Optional, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor
from torch_geometric.typing import OptTensor

from torch_geometric_mgvae.nn.cluster import (
    ClusterOutput,
    LearnedClustering,
    assignment_entropy,
    balanced_cut_kl,
    fixed_cluster_output,
)
from torch_geometric_mgvae.nn.coarsen import coarsen
from torch_geometric_mgvae.nn.conv import LocalEncoder
from torch_geometric_mgvae.nn.decoder import (
    DenseEdgeDecoder,
    InnerProductDecoder,
    pair_recon_loss,
    undirected_pairs,
)
from torch_geometric_mgvae.nn.dense import DenseBlocks, to_dense_blocks
from torch_geometric_mgvae.nn.pool import ClusterPool
from torch_geometric_mgvae.nn.second_order import (
    MLPDecoder,
    SecondOrderDecoder,
    SecondOrderEncoder,
)

CLUSTERINGS = ('learned', 'fixed')
FEATURE_LOSSES = (None, 'mse', 'ce')
GLOBAL_DECODERS = ('inner', 'second_order', 'mlp')


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
        cluster (ClusterOutput, optional): Its partition into clusters
            (:obj:`None` at the coarsest level).
        z (torch.Tensor): Node latents :math:`(N, d_z)`.
        mu, logstd (torch.Tensor, optional): Posterior parameters
            (:class:`MGVAE` only).
        blocks (DenseBlocks, optional): The dense per-cluster blocks the
            second-order encoder ran on (:obj:`order=2`).
        L (torch.Tensor, optional): Gaussian-MRF covariance factors of the
            blocks, :obj:`[G, m, m, d]` (:obj:`covariance="mrf"`).
        noise (dict): The random tensors used (:obj:`"gumbel"`, :obj:`"eps"`),
            to repeat a forward pass exactly.
    """
    def __init__(self, level: int, x: Tensor, edge_index: Tensor,
                 edge_weight: OptTensor, batch: Tensor, num_graphs: int,
                 cluster: Optional[ClusterOutput], z: Tensor,
                 mu: OptTensor = None, logstd: OptTensor = None,
                 noise: Optional[Dict[str, Tensor]] = None,
                 blocks: Optional[DenseBlocks] = None, L: OptTensor = None):
        self.level = level
        self.x = x
        self.edge_index = edge_index
        self.edge_weight = edge_weight
        self.batch = batch
        self.num_graphs = num_graphs
        self.cluster = cluster
        self.z = z
        self.mu = mu
        self.logstd = logstd
        self.noise = noise or {}
        self.blocks = blocks
        self.L = L
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
        C = None if self.cluster is None else self.cluster.num_clusters
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


def check_graph(x: Tensor, edge_index: Tensor, edge_weight: OptTensor,
                batch: OptTensor):
    r"""Validates the input of a forward pass with clear errors."""
    if x.dim() != 2:
        raise ValueError(f"'x' must be [num_nodes, channels] "
                         f"(got shape {tuple(x.shape)})")
    # One reduction first (no [N, F] boolean tensor on the common path);
    # the exact test only when the sum is not finite (NaN/inf, or overflow).
    if not torch.isfinite(x.sum()) and not torch.isfinite(x).all():
        raise ValueError("'x' contains NaN or infinite values")
    if edge_index.dim() != 2 or edge_index.size(0) != 2:
        raise ValueError(f"'edge_index' must be [2, num_edges] "
                         f"(got shape {tuple(edge_index.shape)})")
    if edge_index.numel() > 0 and (int(edge_index.min()) < 0 or
                                   int(edge_index.max()) >= x.size(0)):
        raise ValueError("'edge_index' refers to nodes that do not exist")
    if edge_weight is not None:
        if edge_weight.numel() != edge_index.size(1):
            raise ValueError("'edge_weight' must hold one value per edge")
        if not torch.isfinite(edge_weight).all():
            raise ValueError("'edge_weight' contains NaN or infinite values")
    if batch is not None and batch.numel() != x.size(0):
        raise ValueError("'batch' must hold one entry per node")


class MGN(torch.nn.Module):
    r"""The Multiresolution Graph Network from the `"Multiresolution
    Equivariant Graph Variational Autoencoder"
    <https://arxiv.org/abs/2106.00967>`_ paper (Def. 4), on sparse batched
    graphs.

    At every level :math:`\ell` (from the input graph
    :math:`\mathcal{G}^{(L)}` upwards) it

    1. partitions :math:`\mathcal{G}^{(\ell)}` into :math:`K_\ell` clusters
       per graph (:class:`~torch_geometric_mgvae.nn.LearnedClustering`,
       Gumbel-max with a straight-through gradient, or a fixed clustering),
    2. encodes every cluster's induced subgraph with a local encoder
       (message passing over intra-cluster edges only) into node latents
       :math:`\mathcal{Z}^{(\ell)}`,
    3. pools every cluster into one node (permutation invariant), and
    4. coarsens :math:`\mathcal{A}^{(\ell-1)} = \Pi^T \mathcal{A}^{(\ell)}
       \Pi` with scatter/coalesce (Def. 2),

    and finally encodes the coarsest graph. Local decoders reconstruct every
    cluster's adjacency (cost :math:`\sum_k |\mathcal{V}_k|^2`, or
    :math:`O(|E|)` with sampled non-edges for large clusters) and optional
    global decoders every level's adjacency (dense per small graph, sampled
    non-edges for large graphs). No :math:`N \times N` tensor is ever built
    over a large graph. Losses are methods returning tensors; the caller sums
    them (:meth:`loss_terms` gives all of them).

    Args:
        in_channels (int): Size of the input node features.
        hidden_channels (int): Hidden size of all networks.
        latent_channels (int): Size :math:`d_z` of the node latents.
        num_clusters (List[int]): Clusters per graph at each level, finest
            first, e.g. :obj:`[8, 4, 2, 1]` (a final :obj:`1` makes the top
            level a single node per graph, Def. 3). The model has
            :obj:`len(num_clusters) + 1` levels.
        num_layers (int): Message passing layers of each local encoder.
            (default: :obj:`2`)
        cluster_layers (int): Layers of each clustering GNN.
            (default: :obj:`2`)
        clustering (str): :obj:`"learned"` or :obj:`"fixed"` (cluster ids are
            then passed to :meth:`forward`). (default: :obj:`"learned"`)
        global_decoder (bool or str): Add the global decoders: :obj:`True`
            or :obj:`"inner"` (inner product; sampled non-edges for large
            graphs), :obj:`"second_order"` (the paper's
            :math:`\mathbb{S}_n` decoder, dense per graph: for small graphs
            only, it costs :math:`O(n^2 d)` per graph), or
            :obj:`"mlp"` (the non-equivariant MLP decoder of the paper's
            Table 6, finest level only), or :obj:`False`.
            (default: :obj:`True`)
        feature_loss (str, optional): Reconstruct the input features from the
            finest latents with :obj:`"mse"` or cross-entropy (:obj:`"ce"`,
            for one-hot features). (default: :obj:`None`)
        tau (float): Temperature of the straight-through relaxation.
            (default: :obj:`1.0`)
        max_dense_pairs (int): Largest padded dense block (groups times
            squared size) a decoder builds before it switches to sampled
            non-edges; the dense sum is exact, the sampled one an unbiased
            estimate. (default: :obj:`2**18`, e.g. one graph of 512 nodes
            or 128 graphs of 45)
        num_neg_samples (int, optional): Non-edges sampled per decoder in the
            sampled mode (default: as many as edges).
        balanced (bool): Decoder losses as mean over edges plus mean over
            non-edges (PyG GAE style) instead of the likelihood.
            (default: :obj:`False`)
        order (int): 1 for first-order message passing (:class:`MeanConv`
            local encoders, inner-product decoders), 2 for the paper's
            second-order networks (Eq. 3) on dense per-cluster blocks
            (:class:`~torch_geometric_mgvae.nn.SecondOrderEncoder` and
            :class:`~torch_geometric_mgvae.nn.SecondOrderDecoder`; cost
            :math:`\sum_k |\mathcal{V}_k|^2 d`). (default: :obj:`1`)
        edge_channels (int): Size of the input edge features
            (:obj:`edge_attr`, e.g. one-hot bond types), used by the
            second-order encoder of the finest level. (default: :obj:`0`)
        max_nodes (int, optional): The largest graph, needed by the
            :obj:`"mlp"` global decoder (and the learnable prior).
        encoder_scope (str): :obj:`"cluster"` (the paper's local encoders,
            Def. 4: message passing over intra-cluster edges only) or
            :obj:`"graph"` (message passing over the whole level graph, as the
            paper's global encoders of the image experiment, D.6; the local
            decoders still reconstruct every cluster). Then the learned
            clustering of a level reads the encoder's output instead of the
            level's input features. (default: :obj:`"cluster"`)
        hierarchical_decoding (bool): Decode every level from its node
            latents concatenated with the latents of the node's clusters at
            all coarser levels, :math:`[\mathbf{z}^{(\ell)}_i,
            \mathbf{z}^{(\ell-1)}_{\pi(i)}, \ldots]` (for the inner product,
            :math:`\sum_{\ell'} \mathbf{z}^{(\ell')\top}_{\pi(i)}
            \mathbf{z}^{(\ell')}_{\pi(j)}`: nodes of one cluster share a
            term). Not in the paper, whose decoders see one level only; with
            independent priors per level (Eq. 7) it turns all-at-once sampling
            into a multiresolution generative model (clusters, then nodes).
            (default: :obj:`False`)
        random_features (int): Append this many i.i.d. :math:`\mathcal{N}(0,
            1)` channels to the input features at every forward pass
            (random node initialisation). Message passing cannot tell apart
            nodes with the same local structure (e.g. the two communities of
            a community graph); random features, smoothed by the layers, act
            like a random spectral embedding and break such ties. The model
            stays permutation equivariant in distribution (and exactly, when
            the noise is permuted along with the nodes).
            (default: :obj:`0`)
        cluster_balance (int): Sinkhorn iterations that balance the learned
            clustering logits (see
            :func:`~torch_geometric_mgvae.nn.sinkhorn_balance`; not in the
            paper). (default: :obj:`0`)
    """
    variational = False

    def __init__(self, in_channels: int, hidden_channels: int,
                 latent_channels: int, num_clusters: Sequence[int],
                 num_layers: int = 2, cluster_layers: int = 2,
                 clustering: str = 'learned', global_decoder: bool = True,
                 feature_loss: Optional[str] = None, tau: float = 1.0,
                 max_dense_pairs: int = 2**18,
                 num_neg_samples: Optional[int] = None,
                 balanced: bool = False, random_features: int = 0,
                 order: int = 1, edge_channels: int = 0,
                 max_nodes: Optional[int] = None,
                 encoder_scope: str = 'cluster',
                 hierarchical_decoding: bool = False,
                 cluster_balance: int = 0):
        super().__init__()
        num_clusters = list(num_clusters)
        if len(num_clusters) == 0 or min(num_clusters) < 1:
            raise ValueError("'num_clusters' must be a non-empty list of "
                             "positive integers")
        if clustering not in CLUSTERINGS:
            raise ValueError(f"'clustering' must be one of {CLUSTERINGS}")
        if feature_loss not in FEATURE_LOSSES:
            raise ValueError(f"'feature_loss' must be one of "
                             f"{FEATURE_LOSSES}")
        if order not in (1, 2):
            raise ValueError("'order' must be 1 or 2")
        if encoder_scope not in ('cluster', 'graph'):
            raise ValueError("'encoder_scope' must be 'cluster' or 'graph'")
        if global_decoder is True:
            global_decoder = 'inner'
        if global_decoder and global_decoder not in GLOBAL_DECODERS:
            raise ValueError(f"'global_decoder' must be a bool or one of "
                             f"{GLOBAL_DECODERS}")
        if global_decoder == 'mlp' and max_nodes is None:
            raise ValueError("The 'mlp' global decoder needs 'max_nodes'")
        self.in_channels = in_channels
        self.hidden_channels = hidden_channels
        self.latent_channels = latent_channels
        self.num_clusters = num_clusters
        self.num_layers = num_layers
        self.cluster_layers = cluster_layers
        self.clustering = clustering
        self.global_decoder = global_decoder
        self.feature_loss = feature_loss
        self.tau = tau
        self.max_dense_pairs = max_dense_pairs
        self.num_neg_samples = num_neg_samples
        self.balanced = balanced
        self.random_features = random_features
        self.order = order
        self.edge_channels = edge_channels
        self.max_nodes = max_nodes
        self.encoder_scope = encoder_scope
        self.hierarchical_decoding = hierarchical_decoding
        self.cluster_balance = cluster_balance

        num_levels = len(num_clusters) + 1
        ins = ([in_channels + random_features] +
               [hidden_channels] * len(num_clusters))
        if order == 1:
            self.encoders = torch.nn.ModuleList([
                LocalEncoder(ins[i], hidden_channels, num_layers)
                for i in range(num_levels)
            ])
            enc_out = hidden_channels
        else:
            self.encoders = torch.nn.ModuleList([
                SecondOrderEncoder(ins[i], edge_channels if i == 0 else 0,
                                   hidden_channels, hidden_channels,
                                   num_layers) for i in range(num_levels)
            ])
            enc_out = self.encoders[0].first_order_channels
        # With encoder_scope='graph' the encoder does not depend on the
        # clusters, so the clustering GNN reads the encoder's output (one
        # pass over the raw, possibly wide, features instead of two).
        cluster_ins = ([enc_out] * num_levels if encoder_scope == 'graph'
                       else ins)
        self.clusterers = torch.nn.ModuleDict()
        if clustering == 'learned':
            for i, K in enumerate(num_clusters):
                if K > 1:
                    self.clusterers[str(i)] = LearnedClustering(
                        cluster_ins[i], K, hidden_channels, cluster_layers,
                        tau, cluster_balance)
        self.mu_heads = torch.nn.ModuleList([
            torch.nn.Linear(enc_out, latent_channels)
            for _ in range(num_levels)
        ])
        self.logstd_heads = torch.nn.ModuleList([
            torch.nn.Linear(enc_out, latent_channels)
            for _ in range(num_levels)
        ]) if self.variational else None
        self.pools = torch.nn.ModuleList([
            ClusterPool(latent_channels, hidden_channels)
            for _ in range(len(num_clusters))
        ])
        local_kind = 'inner' if order == 1 else 'second_order'
        self.local_decoders = torch.nn.ModuleList([
            self._make_decoder(local_kind, i)
            for i in range(len(num_clusters))
        ])
        self.global_decoders = None
        if global_decoder:
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
        self.reset_parameters()

    @property
    def num_levels(self) -> int:
        return len(self.num_clusters) + 1

    def _make_decoder(self, kind: str, i: int) -> torch.nn.Module:
        parts = self.num_levels - i if self.hierarchical_decoding else 1
        channels = parts * self.latent_channels
        if kind == 'inner':
            return InnerProductDecoder()
        if kind == 'second_order':
            return DenseEdgeDecoder(
                SecondOrderDecoder(channels, self.hidden_channels,
                                   self.num_layers))
        return DenseEdgeDecoder(MLPDecoder(channels, self.max_nodes))

    def decoding_latents(self, out: 'MGNOutput', i: int) -> Tensor:
        r"""The latents the decoders of level :obj:`i` see: the node latents,
        with :obj:`hierarchical_decoding` concatenated with those of the
        node's clusters at every coarser level."""
        z = out[i].z
        if not self.hierarchical_decoding:
            return z
        parts, index = [z], None
        for j in range(i, len(out.levels) - 1):
            cluster = out[j].cluster.cluster
            index = cluster if index is None else cluster[index]
            parts.append(out[j + 1].z[index])
        return torch.cat(parts, dim=-1)

    def reset_parameters(self):
        for m in self.modules():
            if m is not self and hasattr(m, 'reset_parameters'):
                m.reset_parameters()

    # Latents ################################################################

    def latent(self, i: int, h: Tensor, eps: OptTensor = None,
               generator: Optional[torch.Generator] = None,
               H: OptTensor = None, blocks: Optional[DenseBlocks] = None):
        r"""Node latents of level :obj:`i` from the first-order encoder
        output :obj:`h` (and, for :obj:`order=2`, the second-order output
        :obj:`H` on :obj:`blocks`). Returns
        :obj:`(z, mu, logstd, eps, L)`; deterministic in :class:`MGN`."""
        return self.mu_heads[i](h), None, None, None, None

    def encode_level(self, i: int, x: Tensor, edge_index: Tensor,
                     edge_weight: OptTensor, group: Tensor, num_groups: int,
                     edge_attr: OptTensor = None):
        r"""Runs the local encoder of level :obj:`i` on every group
        (cluster). Returns the first-order output :obj:`[N, F]` and, for
        :obj:`order=2`, the second-order output and its dense blocks."""
        if self.order == 1:
            return self.encoders[i](x, edge_index, edge_weight, group), \
                None, None
        blocks = to_dense_blocks(x, edge_index, group, num_groups,
                                 edge_weight, edge_attr)
        H, Z = self.encoders[i](blocks.x, blocks.adj, blocks.mask,
                                blocks.edge_attr)  # [G,m,m,C], [G,m,2C]
        return blocks.to_nodes(Z), H, blocks

    # Forward ################################################################

    def forward(self, x: Tensor, edge_index: Tensor,
                edge_weight: OptTensor = None, batch: OptTensor = None,
                num_graphs: Optional[int] = None,
                edge_attr: OptTensor = None,
                clusters: Optional[Sequence[Tensor]] = None,
                noise: Optional[Sequence[Dict[str, Tensor]]] = None,
                generator: Optional[torch.Generator] = None) -> MGNOutput:
        r"""Encodes a batch of graphs at every resolution.

        Args:
            x (torch.Tensor): Node features :math:`(N, F)`.
            edge_index (torch.Tensor): Edge indices :math:`(2, E)` (undirected,
                both directions).
            edge_weight (torch.Tensor, optional): Edge weights :math:`(E)`.
            batch (torch.Tensor, optional): Batch vector :math:`(N)`
                (default: one graph).
            num_graphs (int, optional): Number of graphs (give it when a
                batch ends in graphs without nodes; default:
                :obj:`batch.max() + 1`).
            edge_attr (torch.Tensor, optional): Edge features
                :math:`(E, F_e)` for the second-order encoder
                (:obj:`edge_channels > 0`).
            clusters (List[torch.Tensor], optional): Fixed local cluster ids
                in :math:`\{0, \ldots, K_\ell - 1\}` for every clustered level
                (finest first), e.g. from
                :func:`~torch_geometric_mgvae.nn.fixed_hierarchy`. Required
                when :obj:`clustering="fixed"`; overrides the learned
                clustering otherwise.
            noise (List[dict], optional): The random tensors to use per level
                (:obj:`MGNOutput.noise` of an earlier pass, possibly with the
                finest level's rows permuted along with the nodes).
            generator (torch.Generator, optional): Random generator for
                the Gumbel and reparameterisation noise.
        """
        check_graph(x, edge_index, edge_weight, batch)
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
        if (edge_attr is not None) != (self.order == 2 and
                                       self.edge_channels > 0):
            raise ValueError("'edge_attr' is used (and required) exactly "
                             "when order=2 and edge_channels > 0")
        noise = list(noise) if noise is not None else []
        x_in = x

        levels: List[MGNLevel] = []
        for i in range(self.num_levels):
            lvl_noise = dict(noise[i]) if i < len(noise) else {}
            if i == 0 and self.random_features > 0:
                r = lvl_noise.get('features')
                if r is None:
                    r = torch.randn(x.size(0), self.random_features,
                                    generator=generator, device=x.device,
                                    dtype=x.dtype)
                lvl_noise['features'] = r
                x = torch.cat([x, r], dim=-1)
            graph_scope = self.encoder_scope == 'graph'
            if graph_scope:  # Encode the whole level graph, then cluster.
                h, H, blocks = self.encode_level(
                    i, x, edge_index, edge_weight, batch, num_graphs,
                    edge_attr if i == 0 else None)
            cl = None
            if i < len(self.num_clusters):
                cl = self._cluster(i, h if graph_scope else x, edge_index,
                                   edge_weight, batch, clusters,
                                   lvl_noise.get('gumbel'), generator)
                if cl.noise is not None:
                    lvl_noise['gumbel'] = cl.noise
            if not graph_scope:  # Encode every cluster on its own.
                group, num_groups = ((batch, num_graphs) if cl is None else
                                     (cl.cluster, cl.num_clusters))
                h, H, blocks = self.encode_level(
                    i, x, edge_index, edge_weight, group, num_groups,
                    edge_attr if i == 0 else None)
            z, mu, logstd, eps, L = self.latent(i, h, lvl_noise.get('eps'),
                                                generator, H, blocks)
            if eps is not None:
                lvl_noise['eps'] = eps
            levels.append(
                MGNLevel(self.num_levels - i, x_in if i == 0 else x,
                         edge_index, edge_weight, batch, num_graphs, cl, z,
                         mu, logstd, lvl_noise, blocks, L))
            if cl is not None:
                x = self.pools[i](z, cl.cluster, cl.num_clusters, cl.weight)
                edge_index, edge_weight = coarsen(edge_index, edge_weight,
                                                  cl.cluster, cl.num_clusters,
                                                  cl.weight)
                batch = cl.batch
        return MGNOutput(levels)

    encode = forward

    def _cluster(self, i, x, edge_index, edge_weight, batch, clusters, gumbel,
                 generator) -> ClusterOutput:
        K = self.num_clusters[i]
        if clusters is not None:
            local = clusters[i].to(x.device).long().view(-1)
            if local.numel() != x.size(0):
                raise ValueError(f"Fixed clustering of level {i} holds "
                                 f"{local.numel()} ids for {x.size(0)} nodes")
            return fixed_cluster_output(local, batch, K)
        if K == 1:
            return fixed_cluster_output(torch.zeros_like(batch), batch, 1)
        return self.clusterers[str(i)](x, edge_index, edge_weight, batch,
                                       gumbel, generator)

    # Losses #################################################################

    def local_recon_loss(self, out: MGNOutput,
                         generator: Optional[torch.Generator] = None
                         ) -> Tensor:
        r"""Negative log-likelihood of every cluster's adjacency
        :math:`[\mathcal{A}^{(\ell)}]_k` under the local decoders, summed over
        levels and clusters, per graph."""
        loss = out[0].z.new_zeros(())
        for i, lvl in enumerate(out.levels[:-1]):
            cl = lvl.cluster
            loss = loss + pair_recon_loss(
                self.decoding_latents(out, i), lvl.edge_index, cl.cluster,
                cl.num_clusters,
                self.local_decoders[i], self.max_dense_pairs,
                self.num_neg_samples, self.balanced, generator, lvl.pairs)
        return loss / max(out[0].num_graphs, 1)

    def global_recon_loss(self, out: MGNOutput,
                          generator: Optional[torch.Generator] = None
                          ) -> Tensor:
        r"""Negative log-likelihood of every level's whole adjacency
        :math:`\mathcal{A}^{(\ell)}` under the global decoders, per graph."""
        loss = out[0].z.new_zeros(())
        if self.global_decoders is None:
            return loss
        for i, lvl in enumerate(out.levels):
            loss = loss + pair_recon_loss(
                self.decoding_latents(out, i), lvl.edge_index, lvl.batch,
                lvl.num_graphs,
                self.global_decoders[i], self.max_dense_pairs,
                self.num_neg_samples, self.balanced, generator, lvl.pairs)
        return loss / max(out[0].num_graphs, 1)

    def recon_loss(self, out: MGNOutput,
                   generator: Optional[torch.Generator] = None) -> Tensor:
        r"""Local plus global adjacency reconstruction loss."""
        return (self.local_recon_loss(out, generator) +
                self.global_recon_loss(out, generator))

    def feature_recon_loss(self, out: MGNOutput) -> Tensor:
        r"""Reconstruction loss of the input node features from the finest
        latents (sum over nodes, per graph); 0 without a feature decoder."""
        lvl = out[0]
        if self.feature_decoder is None or lvl.num_nodes == 0:
            return lvl.z.new_zeros(())
        pred = self.feature_decoder(lvl.z)
        if self.feature_loss == 'mse':
            loss = F.mse_loss(pred, lvl.x, reduction='sum')
        else:
            loss = F.cross_entropy(pred, lvl.x.argmax(dim=-1),
                                   reduction='sum')
        return loss / max(lvl.num_graphs, 1)

    def balanced_cut_loss(self, out: MGNOutput) -> Tensor:
        r"""The balanced-cut KL of every learned clustering, averaged over
        graphs and summed over levels (Sec. 3.3)."""
        loss = out[0].z.new_zeros(())
        for lvl in out.levels[:-1]:
            cl = lvl.cluster
            if cl.assignment is None or cl.num_local == 1:
                continue
            kl = balanced_cut_kl(cl.assignment, lvl.batch, lvl.num_graphs)
            if kl.numel() > 0:
                loss = loss + kl.mean()
        return loss

    def cluster_entropy_loss(self, out: MGNOutput) -> Tensor:
        r"""The mean entropy of the learned assignment distributions,
        averaged over graphs and summed over levels (see
        :func:`~torch_geometric_mgvae.nn.assignment_entropy`; not in the
        paper)."""
        loss = out[0].z.new_zeros(())
        for lvl in out.levels[:-1]:
            cl = lvl.cluster
            if cl.logits is None or lvl.num_nodes == 0:
                continue
            loss = loss + assignment_entropy(cl.logits, lvl.batch,
                                             lvl.num_graphs).mean()
        return loss

    def loss_terms(self, out: MGNOutput,
                   generator: Optional[torch.Generator] = None
                   ) -> Dict[str, Tensor]:
        r"""All loss terms of the model, by name (the caller weighs and sums
        them)."""
        return dict(local_recon=self.local_recon_loss(out, generator),
                    global_recon=self.global_recon_loss(out, generator),
                    feature_recon=self.feature_recon_loss(out),
                    balanced_cut=self.balanced_cut_loss(out),
                    cluster_entropy=self.cluster_entropy_loss(out))

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}({self.in_channels}, '
                f'{self.hidden_channels}, {self.latent_channels}, '
                f'num_clusters={self.num_clusters})')
