r"""The Multiresolution Graph Variational Autoencoder (MGVAE)."""
from typing import Any, Dict, Iterable, List, Optional, Tuple, Union

import torch
from torch import Tensor
from torch_geometric.data import Data
from torch_geometric.typing import OptTensor
from torch_geometric.utils import to_dense_batch

from torch_geometric_mgvae.models.mgn import MGN, MGNLevel, MGNOutput
from torch_geometric_mgvae.nn.checks import check_int
from torch_geometric_mgvae.nn.dense import DenseBlocks
from torch_geometric_mgvae.nn.prior import (
    GaussianMRFHead,
    LearnablePrior,
    kl_mvn_standard,
)
from torch_geometric_mgvae.nn.random import rand, randn

COVARIANCES = ('diag', 'mrf')
PRIORS = ('standard', 'learnable')

MAX_LOGSTD = 10.0


def kl_normal(mu: Tensor, logstd: Tensor, prior_mu: Optional[Tensor] = None,
              prior_logstd: Optional[Tensor] = None) -> Tensor:
    r"""KL divergence of :math:`\mathcal{N}(\mu, \sigma^2)` from
    :math:`\mathcal{N}(0, 1)` entry by entry:
    :math:`-\frac{1}{2}(1 + 2\log\sigma - \mu^2 - \sigma^2)` (note the
    variance is :math:`\exp(2 \log\sigma)`). With :obj:`prior_mu` and
    :obj:`prior_logstd` (:math:`m`, :math:`\log s`), from
    :math:`\mathcal{N}(m, s^2)`: :math:`\log s - \log\sigma +
    \frac{\sigma^2 + (\mu - m)^2}{2 s^2} - \frac{1}{2}`."""
    if prior_mu is None and prior_logstd is None:
        return -0.5 * (1 + 2 * logstd - mu**2 - torch.exp(2 * logstd))
    if prior_mu is None or prior_logstd is None:
        raise ValueError("'prior_mu' and 'prior_logstd' go together")
    return (prior_logstd - logstd - 0.5 +
            0.5 * (torch.exp(2 * (logstd - prior_logstd)) +
                   (mu - prior_mu)**2 * torch.exp(-2 * prior_logstd)))


class MGVAE(MGN):
    r"""The Multiresolution Graph Variational Autoencoder from the
    `"Multiresolution Equivariant Graph Variational Autoencoder"
    <https://arxiv.org/abs/2106.00967>`_ paper (Sec. 4.2).

    An :class:`MGN` whose latents are stochastic at every level: the local
    encoder of level :math:`\ell` gives :math:`\mu^{(\ell)}` and
    :math:`\log\sigma^{(\ell)}` of a diagonal Gaussian posterior
    :math:`q(\mathcal{Z}^{(\ell)} \mid \mathcal{Z}^{(\ell+1)},
    \mathcal{G}^{(\ell)})` (Eq. 8), sampled by the reparameterisation trick
    in training (the mean in evaluation); the pooled sample feeds the next
    level. The negative multiresolution ELBO (Eq. 9) per graph is

    .. math::
        -\mathcal{L}_{\text{MGVAE}} = \sum_{\ell} \left[
        -\log p(\mathcal{G}^{(\ell)} \mid \mathcal{Z}^{(\ell)}) +
        D_{KL}\left(q(\mathcal{Z}^{(\ell)}) \,\|\, \mathcal{N}(0, I)\right)
        \right]

    = :meth:`recon_loss` + :meth:`feature_recon_loss` + :meth:`kl_loss`;
    :meth:`balanced_cut_loss` regularises the clustering.
    :meth:`sample` generates graphs all at once from the prior at the finest
    level with the global decoder.

    Takes the arguments of :class:`MGN`, and:

    Args:
        covariance (str): :obj:`"diag"` (Eq. 6) or :obj:`"mrf"`: a
            Gaussian Markov random field per cluster (appendix B) with
            :math:`\Sigma = L L^T + \epsilon I` from the second-order
            encoder (needs :obj:`order=2`); :math:`z = \mu + L \epsilon`.
            (default: :obj:`"diag"`)
        prior (str): :obj:`"standard"` :math:`\mathcal{N}(0, I)` or
            :obj:`"learnable"`: the equivariant prior
            :math:`\mathcal{N}(\hat{\mu}, \hat{L}\hat{L}^T + \epsilon I)`
            of appendix C over :obj:`max_nodes` prior nodes, for the finest
            level (coarser levels keep :math:`\mathcal{N}(0, I)`); the KL
            (Eq. 12, Cholesky solves) is taken after matching every
            posterior node to a prior node. (default: :obj:`"standard"`)
        prior_kwargs (dict, optional): Options of the learnable prior
            (:class:`~torch_geometric_mgvae.nn.LearnablePrior`), e.g.
            :obj:`matching` (:obj:`"hungarian"`: exact assignment, Eq. 13;
            :obj:`"free"`: the paper's nearest-mean matching, with which two
            nodes matched to the same prior node make the KL of order
            :math:`1/\epsilon`), :obj:`full_covariance`, :obj:`eps`.

    The methods named as in PyG's :class:`~torch_geometric.nn.models.VGAE`
    mean what they mean there: :meth:`encode` returns node embeddings,
    :meth:`kl_loss` the KL averaged over nodes; the per-graph ELBO terms are
    :meth:`multires_recon_loss` and :meth:`multires_kl_loss`.
    """
    variational = True

    def __init__(self, *args, covariance: str = 'diag',
                 prior: str = 'standard',
                 prior_kwargs: Optional[Dict[str, Any]] = None, **kwargs):
        super().__init__(*args, **kwargs)
        if covariance not in COVARIANCES:
            raise ValueError(f"'covariance' must be one of {COVARIANCES}")
        if prior not in PRIORS:
            raise ValueError(f"'prior' must be one of {PRIORS}")
        if covariance == 'mrf' and self.order != 2:
            raise ValueError("covariance='mrf' needs the second-order "
                             "encoder (order=2)")
        if prior == 'learnable' and self.max_nodes is None:
            raise ValueError("prior='learnable' needs 'max_nodes'")
        self.covariance = covariance
        self.prior_type = prior
        self.prior_kwargs = dict(prior_kwargs or {})
        if self.prior_kwargs and prior != 'learnable':
            raise ValueError("'prior_kwargs' configure prior='learnable'")
        self.mrf_heads = torch.nn.ModuleList([
            GaussianMRFHead(self.hidden_channels, self.latent_channels,
                            self.mu_heads[0].in_features,
                            diagonal=self.normalize_second_order)
            for _ in range(self.num_levels)
        ]) if covariance == 'mrf' else None
        self.prior = LearnablePrior(self.max_nodes, self.latent_channels,
                                    **self.prior_kwargs) \
            if prior == 'learnable' else None
        self.num_nodes_count: Optional[Tensor] = None

    @property
    def reads_second_order(self) -> bool:
        return self.covariance == 'mrf'  # the MRF heads read H

    def latent(self, i: int, h: Tensor, eps: OptTensor = None,
               generator: Optional[torch.Generator] = None,
               H: OptTensor = None, blocks: Optional[DenseBlocks] = None,
               edges: Optional[Tuple[Tensor, OptTensor, OptTensor]] = None):
        L = None
        if self.covariance == 'mrf':
            mu_d, L = self.mrf_heads[i](H, blocks.to_dense(h),
                                        blocks.mask)  # [G,m,d], [G,m,m,d]
            mu, logstd = blocks.to_nodes(mu_d), None
        else:
            mu = self.head(self.mu_heads[i], h, edges)
            logstd = self.head(self.logstd_heads[i], h,
                               edges).clamp(max=MAX_LOGSTD)
        if not self.training:
            return mu, mu, logstd, None, L
        if eps is None:
            eps = randn(mu.shape, generator, mu.device, mu.dtype)
        elif eps.shape != mu.shape:
            raise ValueError(f"'eps' has shape {tuple(eps.shape)}, expected "
                             f"{tuple(mu.shape)}")
        if L is None:
            return mu + eps * torch.exp(logstd), mu, logstd, eps, L
        noise = torch.einsum('gijc,gjc->gic', L, blocks.to_dense(eps))
        return mu + blocks.to_nodes(noise), mu, logstd, eps, L

    def _graph_posterior(self, lvl: MGNLevel):
        r"""The posterior of every whole graph of a level as dense
        :obj:`(mu [B, n, d], L [B, n, n, d], mask [B, n])`; the MRF factors
        of the clusters form a block-diagonal :obj:`L`."""
        mu, mask = to_dense_batch(lvl.mu, lvl.batch,
                                  batch_size=lvl.num_graphs)  # [B, n, d]
        if lvl.L is None:
            std, _ = to_dense_batch(lvl.logstd.exp(), lvl.batch,
                                    batch_size=lvl.num_graphs)
            L = torch.diag_embed(std.transpose(1, 2)).permute(0, 2, 3, 1)
            return mu, L, mask
        # Position of every node inside its graph's dense block:
        N = lvl.num_nodes
        counts = torch.bincount(lvl.batch, minlength=lvl.num_graphs)
        ptr = torch.cumsum(counts, 0) - counts
        gorder = torch.argsort(lvl.batch, stable=True)
        pos = torch.empty_like(gorder)
        pos[gorder] = torch.arange(N, device=mu.device) - ptr[lvl.batch[
            gorder]]
        blocks = lvl.blocks
        slot_node = torch.full(blocks.mask.shape, -1, dtype=torch.long,
                               device=mu.device)
        slot_node[blocks.mask] = blocks.order  # [C, m]
        pair = blocks.mask.unsqueeze(2) & blocks.mask.unsqueeze(1)
        c, a, b = pair.nonzero(as_tuple=True)
        na, nb = slot_node[c, a], slot_node[c, b]
        Lg = mu.new_zeros(mu.shape[:2] + mu.shape[1:])  # [B, n, n, d]
        Lg[lvl.batch[na], pos[na], pos[nb]] = lvl.L[c, a, b]
        return mu, Lg, mask

    def kl_loss(self, mu: OptTensor = None, logstd: OptTensor = None
                ) -> Tensor:
        r"""The KL divergence averaged over nodes, as
        :meth:`torch_geometric.nn.models.VGAE.kl_loss`: of
        :math:`\mathcal{N}(\mu, \sigma^2)` from :math:`\mathcal{N}(0, I)`
        for the given :obj:`mu`, :obj:`logstd`; without them, the
        multiresolution KL of the last :meth:`encode` (every level, from
        its prior) divided by the number of input nodes."""
        if mu is not None or logstd is not None:
            if mu is None or logstd is None:
                raise ValueError("Give both 'mu' and 'logstd', or neither")
            logstd = logstd.clamp(max=MAX_LOGSTD)
            return kl_normal(mu, logstd).sum(dim=1).mean()
        out = getattr(self, 'last_output', None)
        if out is None:
            raise RuntimeError("kl_loss() without arguments needs an "
                               "encode() first")
        B = max(out[0].num_graphs, 1)
        return self.multires_kl_loss(out) * B / max(out[0].num_nodes, 1)

    def multires_kl_loss(self, out: MGNOutput, per_level: bool = False
                         ) -> Union[Tensor, List[Tensor]]:
        r"""The KL terms of the multiresolution ELBO (Eq. 9): KL divergence
        of the posterior of every level from its prior
        (:math:`\mathcal{N}(0, I)`, or the learnable prior at the finest
        level), summed over nodes and channels, per graph (summed over levels
        unless :obj:`per_level=True`)."""
        B = max(out[0].num_graphs, 1)
        kls = []
        for i, lvl in enumerate(out.levels):
            if lvl.num_nodes == 0:
                kls.append(lvl.z.new_zeros(()))
            elif i == 0 and self.prior is not None:
                mu, L, mask = self._graph_posterior(lvl)
                kls.append(self.prior.kl(mu, L, mask).sum() / B)
            elif lvl.L is not None:
                mu = lvl.blocks.to_dense(lvl.mu)
                kls.append(kl_mvn_standard(mu, lvl.L, lvl.blocks.mask).sum() /
                           B)
            else:
                kls.append(kl_normal(lvl.mu, lvl.logstd).sum() / B)
        return kls if per_level else torch.stack(kls).sum()

    def loss_terms(self, out: MGNOutput,
                   generator: Optional[torch.Generator] = None,
                   shard: Optional[Tuple[int, int]] = None
                   ) -> Dict[str, Tensor]:
        terms = super().loss_terms(out, generator, shard)
        terms['kl'] = self.multires_kl_loss(out)
        return terms

    # Generation #############################################################

    def fit_num_nodes(self, graphs: Union[Tensor, Iterable[Any]]):
        r"""Stores the distribution of graph sizes that :meth:`sample` draws
        from, from a tensor of node counts or from graphs with
        :obj:`num_nodes`."""
        if not isinstance(graphs, Tensor):
            graphs = torch.tensor([int(g.num_nodes) for g in graphs])
        counts = graphs.long().view(-1)
        if counts.numel() == 0 or int(counts.min()) < 1:
            raise ValueError("Need at least one graph, each with >= 1 node")
        self.num_nodes_count = torch.bincount(counts).float()

    def get_extra_state(self) -> Any:
        return {'num_nodes_count': self.num_nodes_count}

    def set_extra_state(self, state: Any):
        self.num_nodes_count = state.get('num_nodes_count')

    def _sample_ancestors(self, num_nodes: Tensor, m: int,
                          generator: Optional[torch.Generator]
                          ) -> List[Tensor]:
        r"""For :obj:`hierarchical_decoding`: partitions the nodes of every
        graph into balanced random clusters level by level (the balanced cut
        the clustering is trained towards), draws the cluster latents from
        :math:`\mathcal{N}(0, I)` and returns, for every coarser level, the
        latent of each finest node's ancestor, :obj:`[B, m, d]`."""
        device = num_nodes.device
        dtype = next(self.mu_heads[0].parameters()).dtype
        B = num_nodes.numel()
        n = num_nodes
        index = torch.arange(m, device=device).expand(B, m)  # ancestor ids
        parts = []
        for K in self.num_clusters:
            width = int(n.max())
            score = rand((B, width), generator, device)
            valid = torch.arange(width, device=device) < n.view(-1, 1)
            score = score.masked_fill(~valid, 2.0)
            rank = score.argsort(dim=1).argsort(dim=1)  # [B, width]
            n_next = n.clamp(max=K)
            cluster = rank % n_next.clamp(min=1).view(-1, 1)  # [B, width]
            index = cluster.gather(1, index.clamp(max=width - 1))
            z = randn((B, int(n_next.max()), self.latent_channels),
                      generator, device, dtype)
            parts.append(z.gather(1, index.unsqueeze(-1).expand(
                -1, -1, self.latent_channels)))  # [B, m, d]
            n = n_next
        return parts

    @torch.no_grad()
    def sample(self, num_graphs: int, num_nodes: Optional[Union[int, Tensor]]
               = None, generator: Optional[torch.Generator] = None,
               threshold: Optional[float] = None,
               return_probs: bool = False) -> List[Data]:
        r"""Generates graphs all at once (paper Sec. 5.2): node latents
        :math:`\mathcal{Z}^{(L)} \sim \mathcal{N}(0, I)`, edges
        :math:`A_{ij} \sim \mathrm{Bernoulli}(\sigma(\text{global
        decoder}))` for :math:`i < j`, node features from the feature decoder.

        Args:
            num_graphs (int): How many graphs.
            num_nodes (int or torch.Tensor, optional): Their sizes (default:
                drawn from the training distribution stored by
                :meth:`fit_num_nodes`).
            generator (torch.Generator, optional): Random generator.
            threshold (float, optional): Keep the edges with probability above
                it instead of sampling them. (default: :obj:`None`)
            return_probs (bool): Attach the edge probabilities as a dense
                :obj:`adj_prob` :math:`[n, n]` to every graph.

        Returns:
            A list of :class:`~torch_geometric.data.Data` with
            :obj:`edge_index` (both directions), :obj:`num_nodes` and, with a
            feature decoder, :obj:`x` (one-hot for :obj:`"ce"`).
        """
        if self.global_decoders is None:
            raise RuntimeError("sample() needs the global decoder "
                               "(global_decoder=True)")
        num_graphs = check_int('num_graphs', num_graphs, 0)
        device = next(self.mu_heads[0].parameters()).device
        dtype = next(self.mu_heads[0].parameters()).dtype
        if num_nodes is None:
            if self.num_nodes_count is None:
                raise RuntimeError("Pass 'num_nodes' or call fit_num_nodes() "
                                   "first")
            probs = self.num_nodes_count.to(device)
            num_nodes = torch.multinomial(probs, num_graphs, True,
                                          generator=generator)
        elif isinstance(num_nodes, int):
            num_nodes = torch.full((num_graphs, ), num_nodes, device=device)
        num_nodes = num_nodes.to(device).long().view(-1)
        if num_nodes.numel() != num_graphs or (num_nodes.numel() > 0 and
                                               int(num_nodes.min()) < 1):
            raise ValueError("'num_nodes' must hold one positive size per "
                             "graph")
        out: List[Data] = []
        if num_graphs == 0:
            return out
        m = int(num_nodes.max())
        if self.prior is not None:
            z, mask = self.prior.sample(num_nodes, generator)  # [B, m, d]
            z = z.to(dtype)
        else:
            z = randn((num_graphs, m, self.latent_channels), generator,
                      device, dtype)  # [B, m, d]
            mask = torch.arange(m, device=device) < num_nodes.view(-1, 1)
        z_dec = z
        if self.hierarchical_decoding:
            z_dec = torch.cat([z] + self._sample_ancestors(num_nodes, m,
                                                          generator), dim=-1)
        prob = self.global_decoders[0].forward_all(z_dec, mask=mask)
        if threshold is None:
            draw = rand(prob.shape, generator, device, dtype) < prob
        else:
            draw = prob > threshold
        draw = draw & (mask.unsqueeze(2) & mask.unsqueeze(1))
        draw = draw.triu(1)
        draw = draw | draw.transpose(1, 2)
        x = None
        if self.feature_decoder is not None:
            x = self.feature_decoder(z)  # [B, m, F]
            if self.feature_loss == 'ce':
                x = torch.nn.functional.one_hot(
                    x.argmax(-1), self.in_channels).to(z.dtype)
        for b in range(num_graphs):
            n = int(num_nodes[b])
            data = Data(edge_index=draw[b, :n, :n].nonzero().t().contiguous(),
                        num_nodes=n)
            if x is not None:
                data.x = x[b, :n]
            if return_probs:
                data.adj_prob = prob[b, :n, :n]
            out.append(data)
        return out
