r"""Local (per-cluster) and global adjacency decoders and their losses."""
from typing import Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor
from torch_geometric.nn.models import (
    InnerProductDecoder as PyGInnerProductDecoder,
)
from torch_geometric.utils import to_dense_adj, to_dense_batch

from torch_geometric_mgvae.nn.random import rand, randint


class InnerProductDecoder(PyGInnerProductDecoder):
    r"""PyG's :class:`~torch_geometric.nn.models.InnerProductDecoder` (Kipf
    & Welling, the paper's Example 1), same signature, with a learnable scale
    and bias:

    .. math::
        p(A_{ij} = 1 \mid \mathbf{z}_i, \mathbf{z}_j) =
        \sigma(a \, \mathbf{z}_i^{\top} \mathbf{z}_j + b)

    :obj:`bias=False` (:math:`a = 1, b = 0`) is PyG's decoder. Learning
    :math:`a` lets a variational model keep unit-variance latents without
    drowning the logits in their noise (for :math:`d_z` channels,
    :math:`\mathbf{z}_i^{\top}\mathbf{z}_j` has standard deviation
    :math:`\sqrt{d_z}` under the prior), and :math:`b` fits the edge density.
    It is permutation equivariant. :meth:`forward_all` also takes a batch of
    dense blocks :math:`(G, m, d)`.

    Args:
        bias (bool): Learn the scale :math:`a` and bias :math:`b`.
            (default: :obj:`True`)
    """
    pairwise = True

    def __init__(self, bias: bool = True):
        super().__init__()
        self.use_bias = bias
        if bias:
            self.log_scale = torch.nn.Parameter(torch.zeros(1))
            self.bias = torch.nn.Parameter(torch.zeros(1))
        else:
            self.log_scale = self.bias = None
        self.reset_parameters()

    def reset_parameters(self):
        if self.bias is not None:
            torch.nn.init.zeros_(self.bias)
            torch.nn.init.zeros_(self.log_scale)

    def _affine(self, out: Tensor) -> Tensor:
        if self.bias is None:
            return out
        return out * self.log_scale.exp() + self.bias

    def forward(self, z: Tensor, edge_index: Tensor,
                sigmoid: bool = True) -> Tensor:
        r"""The probabilities (or logits) of the pairs in
        :obj:`edge_index`."""
        # index_select: its backward (index_add) is several times faster
        # on CPU than that of z[index] (an accumulating index_put).
        out = self._affine((z.index_select(0, edge_index[0]) *
                            z.index_select(0, edge_index[1])).sum(dim=-1))
        return torch.sigmoid(out) if sigmoid else out

    def forward_all(self, z: Tensor, sigmoid: bool = True,
                    mask: Optional[Tensor] = None) -> Tensor:
        r"""All pair probabilities (or logits) of :obj:`z` :math:`(N, d)`,
        or of dense blocks :math:`(G, m, d) \to (G, m, m)` (:obj:`mask` is
        not needed: padded pairs are dropped by the loss)."""
        out = self._affine(z @ z.transpose(-1, -2))  # [G, m, m]
        return torch.sigmoid(out) if sigmoid else out

    def __repr__(self) -> str:
        return f'{self.__class__.__name__}(bias={self.use_bias})'


class _BlockPairDot(torch.autograd.Function):
    r"""Inner products of pairs of rows of :obj:`Z` :math:`(N, d + C)`
    whose last :math:`C` columns are zero (in value) outside the columns
    :obj:`index` (see :func:`onehot_pair_dot`); the gradient is the dense
    one, in one :math:`(N, d + C)` buffer."""
    @staticmethod
    def forward(ctx, Z: Tensor, dense: int, index: Tensor,
                pairs: Tensor) -> Tensor:
        i, j = pairs
        zd = Z[:, :dense]
        out = (zd.index_select(0, i) * zd.index_select(0, j)).sum(-1)
        if index.size(1) > 0:
            cols = index[j]  # [P, L]: row j's nonzero columns
            out = out + (Z[i.view(-1, 1), cols] *
                         Z[j.view(-1, 1), cols]).sum(-1)
        ctx.dense = dense
        ctx.save_for_backward(Z, index, pairs)
        return out

    @staticmethod
    def backward(ctx, grad: Tensor):
        Z, index, pairs = ctx.saved_tensors
        d, (i, j) = ctx.dense, pairs
        N, C = Z.shape
        g = grad.view(-1, 1)
        zd = Z[:, :d]
        out = Z.new_zeros(N, C)
        dense = out[:, :d]  # a view: the dense columns' gradient in place
        dense.index_add_(0, i, g * zd.index_select(0, j))
        dense.index_add_(0, j, g * zd.index_select(0, i))
        if index.size(1) > 0:
            # d/dZ_i = g Z_j, nonzero at index[j] only (and vice versa).
            flat = Z.view(-1)
            ci, cj = index[i], index[j]  # [P, L]
            at_i = i.view(-1, 1) * C + cj  # entries (i, index[j])
            at_j = j.view(-1, 1) * C + ci  # entries (j, index[i])
            vi = g * flat[j.view(-1, 1) * C + cj]
            vj = g * flat[i.view(-1, 1) * C + ci]
            out.view(-1).index_add_(0, torch.cat([at_i.view(-1),
                                                  at_j.view(-1)]),
                                    torch.cat([vi.view(-1), vj.view(-1)]))
        return out, None, None, None


def onehot_pair_dot(E: Tensor, index: Tensor, pairs: Tensor,
                    dense_channels: int = 0) -> Tensor:
    r"""The inner products :math:`\mathbf{e}_i^\top \mathbf{e}_j` of the
    pairs :obj:`pairs` :math:`(2, P)` of rows of :obj:`E`, where the first
    :obj:`dense_channels` columns are dense and, beyond them, row :math:`i`
    is zero (in value) outside the columns :obj:`index[i]` :math:`(N, L)`
    (e.g. concatenated one-hot blocks, one per level, of straight-through
    cluster assignments). Value and gradient equal those of
    :obj:`(E[i] * E[j]).sum(-1)`, at a cost of :math:`O(P (d + L))`
    instead of :math:`O(P \cdot \mathrm{width})`."""
    return _BlockPairDot.apply(E.contiguous(), dense_channels, index, pairs)


class BlockInnerProductDecoder(torch.nn.Module):
    r"""An :class:`InnerProductDecoder` of embeddings
    :math:`[\mathbf{z}_i, \mathbf{e}_i]` whose last part :math:`\mathbf{e}`
    is zero outside the columns :obj:`index` (counted from the start of
    :math:`\mathbf{e}`; the co-membership rows of
    :class:`~torch_geometric_mgvae.MGN`): the same pair logits and gradients
    as :obj:`decoder` on the whole embedding, scored by
    :func:`onehot_pair_dot`. Used for one loss evaluation."""
    pairwise = True

    def __init__(self, decoder: InnerProductDecoder, dense_channels: int,
                 index: Tensor):
        super().__init__()
        self.decoder = decoder
        self.dense_channels = dense_channels
        self.index = index

    def forward(self, z: Tensor, edge_index: Tensor,
                sigmoid: bool = True) -> Tensor:
        d = self.dense_channels
        index = self.index + d if z.size(1) > d else self.index[:, :0]
        out = self.decoder._affine(onehot_pair_dot(z, index, edge_index, d))
        return torch.sigmoid(out) if sigmoid else out

    def forward_all(self, z: Tensor, sigmoid: bool = True,
                    mask: Optional[Tensor] = None) -> Tensor:
        return self.decoder.forward_all(z, sigmoid, mask)


class DenseEdgeDecoder(torch.nn.Module):
    r"""Adapts a decoder of whole dense blocks (``module(z [G, m, d], mask)
    -> logits [G, m, m, 1]``, e.g.
    :class:`~torch_geometric_mgvae.nn.SecondOrderDecoder` or
    :class:`~torch_geometric_mgvae.nn.MLPDecoder`) to the interface of
    :func:`pair_recon_loss`. Such decoders see the whole block, so they have
    no per-pair (sampled) mode."""
    pairwise = False

    def __init__(self, module: torch.nn.Module):
        super().__init__()
        self.module = module

    def reset_parameters(self):
        self.module.reset_parameters()

    def forward_all(self, z: Tensor, sigmoid: bool = True,
                    mask: Optional[Tensor] = None) -> Tensor:
        out = self.module(z, mask)[..., 0]  # [G, m, m]
        return torch.sigmoid(out) if sigmoid else out

    def forward(self, z: Tensor, edge_index: Tensor,
                sigmoid: bool = True) -> Tensor:
        raise RuntimeError(f"{self.module.__class__.__name__} decodes whole "
                           f"dense blocks only (use forward_all)")

    def __repr__(self) -> str:
        return f'{self.__class__.__name__}({self.module})'


def _bce_terms(pos: Tensor, neg: Tensor, neg_weight: Optional[Tensor],
               balanced: bool) -> Tensor:
    pos_loss = F.binary_cross_entropy_with_logits(
        pos, torch.ones_like(pos), reduction='none')
    neg_loss = F.binary_cross_entropy_with_logits(
        neg, torch.zeros_like(neg), reduction='none')
    if balanced:
        out = pos.new_zeros(())
        if pos.numel() > 0:
            out = out + pos_loss.mean()
        if neg.numel() > 0:
            out = out + neg_loss.mean()
        return out
    if neg_weight is not None:
        neg_loss = neg_loss * neg_weight
    return pos_loss.sum() + neg_loss.sum()


def undirected_pairs(edge_index: Tensor, num_nodes: int) -> Tensor:
    r"""The distinct unordered pairs :math:`\{i, j\}`, :math:`i \ne j`, of
    an edge list as a :obj:`[2, P]` tensor with :obj:`row < col`."""
    row, col = edge_index
    keep = row != col
    lo = torch.minimum(row[keep], col[keep])
    hi = torch.maximum(row[keep], col[keep])
    key = torch.unique(lo * num_nodes + hi)
    return torch.stack([key // num_nodes, key % num_nodes])


def sample_group_pairs(group: Tensor, num_groups: int, num_samples: int,
                       generator: Optional[torch.Generator] = None
                       ) -> Tuple[Tensor, Tensor]:
    r"""Samples :obj:`num_samples` unordered pairs of distinct nodes of the
    same group (cluster or graph): a node :math:`i` uniformly among the nodes
    of groups with at least two nodes, then :math:`j \ne i` uniformly in its
    group.

    Returns:
        (pairs [2, S], prob [S]): the pairs and the probability with which
        each unordered pair is drawn by one sample,
        :math:`\frac{2}{N'(n_g - 1)}`.
    """
    device = group.device
    sizes = torch.bincount(group, minlength=num_groups)
    ptr = torch.cumsum(sizes, 0) - sizes
    order = torch.argsort(group, stable=True)
    rank = torch.empty_like(order)
    rank[order] = torch.arange(group.numel(), device=device) - ptr[group[order]]
    cand = (sizes[group] >= 2).nonzero().view(-1)
    if cand.numel() == 0 or num_samples <= 0:
        empty = torch.empty(2, 0, dtype=torch.long, device=device)
        return empty, torch.empty(0, device=device)
    pick = randint(cand.numel(), (num_samples, ), generator, device)
    i = cand[pick]
    g = group[i]
    n_g = sizes[g]
    u = (rand((num_samples, ), generator, device) *
         (n_g - 1).to(torch.get_default_dtype())).long()
    u = torch.minimum(u, n_g - 2)
    u = u + (u >= rank[i]).long()
    j = order[ptr[g] + u]
    prob = 2.0 / (cand.numel() * (n_g - 1).to(torch.get_default_dtype()))
    return torch.stack([i, j]), prob


def pair_recon_loss(z: Tensor, edge_index: Tensor, group: Tensor,
                    num_groups: int, decoder: InnerProductDecoder,
                    max_dense_pairs: int = 2**18,
                    num_neg_samples: Optional[int] = None,
                    balanced: bool = False,
                    generator: Optional[torch.Generator] = None,
                    pairs: Optional[Tensor] = None,
                    shard: Optional[Tuple[int, int]] = None) -> Tensor:
    r"""Bernoulli reconstruction loss of the adjacency *inside every group*
    (a cluster for the local decoder, a graph for the global one):

    .. math::
        \mathcal{L} = -\sum_{g} \sum_{\{i, j\} \subseteq \mathcal{V}_g,
        i \neq j} \left[ A_{ij} \log \hat{A}_{ij} + (1 - A_{ij})
        \log (1 - \hat{A}_{ij}) \right]

    i.e. the negative log-likelihood term of the ELBO (Eq. 9), summed over
    every unordered pair of distinct nodes of a group (self loops are not
    reconstructed; edge weights only count as "edge present").

    While the padded dense blocks are small (:math:`G \cdot m^2 \le`
    :obj:`max_dense_pairs`, :math:`m` the largest group), or always for
    decoders of whole blocks (:class:`DenseEdgeDecoder`), the sum is exact
    and costs :math:`O(G m^2 d)`, never :math:`N^2`. Beyond that, the edges
    are used as positives and :obj:`num_neg_samples` random pairs inside the
    groups (default: as many as edges) give an unbiased importance-weighted
    estimate of the sum over non-edges, with cost :math:`O(|E| d)`.

    Args:
        balanced (bool): Instead of the likelihood, return
            :math:`\mathrm{mean}_{pos} + \mathrm{mean}_{neg}` (PyG
            :class:`~torch_geometric.nn.models.GAE` style, for link
            prediction). (default: :obj:`False`)
        pairs (torch.Tensor, optional): :func:`undirected_pairs` of
            :obj:`edge_index`, if already computed.
        shard (Tuple[int, int], optional): :obj:`(rank, world)`: this
            process's share of the loss of one graph trained data-parallel
            over its pairs (:mod:`~torch_geometric_mgvae.experiments.
            distributed`): the groups :obj:`g` with :obj:`g % world == rank`
            in the dense case, every :obj:`world`-th positive pair and
            :obj:`1 / world` of the sampled non-edges otherwise, scaled so
            that the mean over the processes (what DDP averages) is the
            whole loss (dense) or the same estimator with as many samples
            (sampled). (default: :obj:`None`: all of it)
    """
    rank, world = (0, 1) if shard is None else shard
    if not 0 <= rank < world:
        raise ValueError(f"'shard' must be (rank, world) with 0 <= rank < "
                         f"world (got {shard})")
    N = z.size(0)
    pos = undirected_pairs(edge_index, N) if pairs is None else pairs
    pos = pos[:, group[pos[0]] == group[pos[1]]]
    if N == 0:
        return z.sum() * 0.
    sizes = torch.bincount(group, minlength=num_groups)
    m = int(sizes.max())
    # Decoders of whole blocks (second-order, MLP) have no sampled mode.
    dense_only = not getattr(decoder, 'pairwise', True)
    if dense_only or num_groups * m * m <= max_dense_pairs:
        if world > 1:  # the whole loss's normalisers, this shard's groups
            num_pos = float(pos.size(1))
            num_neg = float((sizes * (sizes - 1) // 2).sum()) - num_pos
            keep = group % world == rank
            sub = keep.nonzero().view(-1)
            index = torch.full((N, ), -1, dtype=torch.long, device=z.device)
            index[sub] = torch.arange(sub.numel(), device=z.device)
            pos = index[pos[:, keep[pos[0]]]]
            z, group = z[sub], torch.div(group[sub], world,
                                         rounding_mode='floor')
            num_groups = (num_groups - rank + world - 1) // world
            N = z.size(0)
            if N == 0 or num_groups == 0:
                return z.sum() * 0.
        order = torch.argsort(group, stable=True)
        inv = torch.empty_like(order)
        inv[order] = torch.arange(N, device=z.device)
        zd, mask = to_dense_batch(z[order], group[order], batch_size=num_groups,
                                  max_num_nodes=m)  # [G, m, d]
        logits = decoder.forward_all(zd, sigmoid=False, mask=mask)  # [G,m,m]
        target = to_dense_adj(inv[pos], group[order], batch_size=num_groups,
                              max_num_nodes=m)  # [G, m, m]
        edge = (target + target.transpose(1, 2)) > 0  # [G, m, m]
        pair_mask = (mask.unsqueeze(2) & mask.unsqueeze(1)).triu(1)
        # Masks as weights: no boolean indexing of the blocks (fast, and a
        # cheap backward).
        w_pos = (pair_mask & edge).to(logits.dtype)
        w_neg = (pair_mask & ~edge).to(logits.dtype)
        pos_loss = F.softplus(-logits) * w_pos  # -log sigmoid(logits)
        neg_loss = F.softplus(logits) * w_neg  # -log(1 - sigmoid(logits))
        if world > 1:
            if not balanced:
                num_pos = num_neg = 1.0
            return world * (pos_loss.sum() / max(num_pos, 1.0) +
                            neg_loss.sum() / max(num_neg, 1.0))
        if balanced:
            return (pos_loss.sum() / w_pos.sum().clamp(min=1) +
                    neg_loss.sum() / w_neg.sum().clamp(min=1))
        return pos_loss.sum() + neg_loss.sum()

    # Sampled mode: exact positives, importance-weighted negatives.
    num_samples = num_neg_samples or max(pos.size(1), 1)
    own = len(range(rank, num_samples, world))
    neg, prob = sample_group_pairs(group, num_groups, own, generator)
    lo, hi = torch.minimum(neg[0], neg[1]), torch.maximum(neg[0], neg[1])
    is_edge = torch.isin(lo * N + hi, pos[0] * N + pos[1])
    neg, prob = neg[:, ~is_edge], prob[~is_edge]
    num_pos = pos.size(1)
    pos = pos[:, rank::world]
    pos_logits = decoder(z, pos, sigmoid=False)
    neg_logits = decoder(z, neg, sigmoid=False)
    weight = (1.0 / (prob * num_samples)).to(z.dtype)
    if world == 1:
        return _bce_terms(pos_logits, neg_logits, weight, balanced)
    pos_loss = F.softplus(-pos_logits).sum()
    if balanced:  # the positives' mean exactly, the non-edges' estimated
        neg_mean = F.softplus(neg_logits).mean() if neg.numel() else \
            pos_loss * 0.
        return world * pos_loss / max(num_pos, 1) + neg_mean
    return world * (pos_loss + (F.softplus(neg_logits) * weight).sum())
