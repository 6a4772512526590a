r"""The image MGVAE of the paper (D.6) on grid graphs, and a convolutional
VAE with the same decoder as its baseline."""
import math
from typing import Dict, List, Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F
from torch import Tensor
from torch_geometric.data import Data
from torch_geometric.data.data import BaseData
from torch_geometric.nn import global_mean_pool
from torch_geometric.typing import Adj, OptTensor

from torch_geometric_mgvae.models.mgn import MGN, MGNLevel, MGNOutput
from torch_geometric_mgvae.models.mgvae import MAX_LOGSTD, kl_normal
from torch_geometric_mgvae.nn.checks import check_int
from torch_geometric_mgvae.nn.conv import ConvSpec
from torch_geometric_mgvae.nn.fixed import fixed_hierarchy, grid_clustering
from torch_geometric_mgvae.nn.image import DCGANDecoder
from torch_geometric_mgvae.nn.pool import ClusterReadout
from torch_geometric_mgvae.nn.random import randn
from torch_geometric_mgvae.transforms.fixed import get_fixed_clusters
from torch_geometric_mgvae.transforms.grid import graph_to_image

__all__ = ['ImageMGVAE', 'ImageOutput', 'ConvVAE', 'TopDownPrior',
           'image_loss_terms', 'free_bits_of']


def image_loss_terms(out: 'ImageOutput',
                     free_bits: Union[None, float, Sequence[float]] = None
                     ) -> Dict[str, Tensor]:
    r"""The negative ELBO of every resolution, per image: the Bernoulli
    negative log-likelihood of the intensities (binary cross entropy with
    the decoder's logits, summed over pixels; the targets are intensities
    in :math:`[0, 1]`) as :obj:`"recon_<S>"` and the KL divergence of the
    posterior of :math:`Z^{(\ell)}` from its prior as :obj:`"kl_<S>"`, for
    every image side :math:`S`. The prior is :math:`\mathcal{N}(0, I)`,
    or where :obj:`out.prior_mu` has an entry for the level, the Gaussian
    :math:`\mathcal{N}(m, s^2)` of :obj:`out.prior_mu` and
    :obj:`out.prior_logstd` (the top-down prior of :class:`ImageMGVAE`).

    With :obj:`free_bits` :math:`\lambda_\ell > 0` (nats; one value for
    every resolution or one per resolution, finest first) a term
    :obj:`"free_bits_<S>"` :math:`= \max(0, \lambda_\ell -
    \mathrm{KL}_\ell)` is added, so that :obj:`"kl_<S>"` plus it is
    :math:`\max(\mathrm{KL}_\ell, \lambda_\ell)`: the free bits of
    `Kingma et al. (2016) <https://arxiv.org/abs/1606.04934>`_ per level
    latent (on the batch mean). Below :math:`\lambda_\ell` nats the KL
    costs nothing, so a level's latent is not pushed to the prior before
    its encoder has learnt what to put in it; the KL terms themselves stay
    the true ones (the ELBO is their sum with the reconstructions).
    Weight the :obj:`"free_bits_<S>"` terms like the KL terms."""
    terms = {}
    B = max(out.num_graphs, 1)
    bits = free_bits_of(free_bits, len(out.sizes))
    priors = out.prior_mu or [None] * len(out.sizes)
    prior_logstds = out.prior_logstd or [None] * len(out.sizes)
    for S, logits, target, mu, logstd, pm, pl, fb in zip(
            out.sizes, out.logits, out.target, out.mu, out.logstd, priors,
            prior_logstds, bits):
        terms[f'recon_{S}'] = F.binary_cross_entropy_with_logits(
            logits, target, reduction='sum') / B
        terms[f'kl_{S}'] = kl_normal(mu, logstd, pm, pl).sum() / B
        if fb > 0:
            terms[f'free_bits_{S}'] = (fb - terms[f'kl_{S}']).clamp(min=0)
    return terms


def free_bits_of(free_bits: Union[None, float, Sequence[float]],
                 num_levels: int) -> List[float]:
    r"""The free bits :math:`\lambda_\ell \ge 0` of every resolution from
    :obj:`None` (none), one value, or one per resolution (finest first);
    a model with fewer resolutions takes the first values."""
    if free_bits is None:
        return [0.0] * num_levels
    if isinstance(free_bits, bool):
        raise ValueError(f"'free_bits' must be numbers (got {free_bits!r})")
    bits = list(free_bits) if isinstance(free_bits, (list, tuple)) else \
        [free_bits] * num_levels
    if len(bits) < num_levels:
        raise ValueError(f"'free_bits' has {len(bits)} values for "
                         f"{num_levels} resolutions")
    try:
        bits = [float(b) for b in bits[:num_levels]]
    except (TypeError, ValueError):
        raise ValueError(f"'free_bits' must be numbers (got "
                         f"{free_bits!r})") from None
    if not all(math.isfinite(b) and b >= 0 for b in bits):
        raise ValueError(f"'free_bits' must be finite and >= 0 (got "
                         f"{free_bits!r})")
    return bits


class ImageOutput(MGNOutput):
    r"""The output of :class:`ImageMGVAE` (and :class:`ConvVAE`): the
    graph levels of :class:`~torch_geometric_mgvae.MGN` (empty for the
    convolutional VAE) and, for every resolution (finest first), the image
    side, the target image, the posterior of the latent :math:`Z^{(\ell)}`
    and the decoder's logits.

    Attributes:
        sizes (List[int]): Image sides :math:`S_\ell`, e.g.
            :obj:`[32, 16, 8]`.
        target (List[torch.Tensor]): The input zoomed out to every
            resolution, :math:`(B, C, S_\ell, S_\ell)`.
        mu, logstd, z (List[torch.Tensor]): Posterior mean, log standard
            deviation and sample (the mean in evaluation mode),
            :math:`(B, d_z)`.
        logits (List[torch.Tensor]): Decoded images (logits),
            :math:`(B, C, S_\ell, S_\ell)`.
        prior_mu, prior_logstd (List[torch.Tensor or None], optional): The
            prior of every level's latent given the coarser latents'
            samples (:obj:`None`: :math:`\mathcal{N}(0, I)`); :obj:`None`
            for the standard prior at every level.
    """
    def __init__(self, levels: List[MGNLevel], num_graphs: int,
                 sizes: List[int], target: List[Tensor], mu: List[Tensor],
                 logstd: List[Tensor], z: List[Tensor],
                 logits: List[Tensor],
                 prior_mu: Optional[List[OptTensor]] = None,
                 prior_logstd: Optional[List[OptTensor]] = None):
        super().__init__(levels)
        self.prior_mu = prior_mu
        self.prior_logstd = prior_logstd
        self.num_graphs = num_graphs
        self.sizes = sizes
        self.target = target
        self.mu = mu
        self.logstd = logstd
        self.z = z
        self.logits = logits

    def images(self) -> List[Tensor]:
        r"""The decoded images (intensities), one tensor per resolution."""
        return [torch.sigmoid(t) for t in self.logits]

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}(num_graphs={self.num_graphs}, '
                f'sizes={self.sizes})')


def _reparameterise(mu: Tensor, logstd: Tensor, training: bool,
                    eps: OptTensor, generator: Optional[torch.Generator]):
    if not training:
        return mu, None
    if eps is None:
        eps = randn(mu.shape, generator, mu.device, mu.dtype)
    elif eps.shape != mu.shape:
        raise ValueError(f"'eps' has shape {tuple(eps.shape)}, expected "
                         f"{tuple(mu.shape)}")
    return mu + eps * torch.exp(logstd), eps


def _check_side(size: int, cell: int, num_levels: int) -> List[int]:
    if num_levels < 1 or cell < 2:
        raise ValueError("'num_levels' must be >= 1 and 'cell' >= 2")
    sizes = [size // cell**i for i in range(num_levels)]
    if size % cell**(num_levels - 1) or any(
            s < 4 or 4 * 2**round(math.log2(s / 4)) != s for s in sizes):
        raise ValueError(f"Image side {size} with {num_levels} levels of "
                         f"{cell} x {cell} clusters gives sides {sizes}; "
                         f"every side must be 4 * 2^k (DCGAN decoders)")
    return sizes


class ImageMGVAE(MGN):
    r"""The MGVAE of the image experiment of the `"Multiresolution
    Equivariant Graph Variational Autoencoder"
    <https://arxiv.org/abs/2106.00967>`_ paper (D.6), on batches of grid
    graphs (e.g. :class:`~torch_geometric_mgvae.datasets.MNISTGraphs`).

    It is an :class:`~torch_geometric_mgvae.MGN` with a fixed quadtree
    clustering (:func:`~torch_geometric_mgvae.nn.fixed_hierarchy` with
    :obj:`"grid"` and :math:`c \times c` cells, through
    :class:`~torch_geometric_mgvae.nn.SelectFixed`), so the level graphs are
    the grids of side :math:`S, S/c, S/c^2, \ldots` (:math:`32 \to 16 \to 8`
    for MNIST), global encoders (:obj:`encoder_scope="graph"`: message
    passing over the whole level grid) and the invariant Deep Sets pooler
    :class:`~torch_geometric_mgvae.nn.ClusterReadout` per cluster producing
    the next level's node features. At every level :math:`\ell` the node
    latents are pooled into one vector per image, and a Gaussian posterior
    of the level latent :math:`Z^{(\ell)} \in \mathbb{R}^{d_z}` is read from
    it (linear heads for :math:`\mu` and :math:`\log\sigma`). The paper
    sums the node latents; here they are averaged: every image of a level
    has the same number of nodes, so the mean is the sum times a constant
    that the linear heads absorb, but with the sum over 1,024 nodes the KL
    of the first training step was of the order of :math:`10^9` per image
    (measured), with the mean it is finite and small. A DCGAN
    generator :math:`\mathbf{d}^{(\ell)}` (:class:`~torch_geometric_mgvae.nn.
    DCGANDecoder`) decodes :math:`Z^{(\ell)}` into the image of that level,
    the input zoomed out by averaging the pixels of every cluster. Training
    minimises the negative ELBO of every resolution
    (:meth:`loss_terms`); :meth:`sample` decodes
    :math:`Z^{(\ell)} \sim \mathcal{N}(0, I)` at one resolution.

    The node features are the pixel values (the paper's choice); the
    integer positions :obj:`pos` place the decoded and target images and,
    with :obj:`readout_grid = R > 1`, the cells of the readout.

    Three options that are not in the paper make the latents carry the
    image (measured on 5,000 training digits, 6 epochs: the 32x32
    reconstruction term 207 nats with the paper's readout and KL 2.2 nats,
    i.e. collapsed; 142 and 15.3 nats with a 4 x 4 readout grid and batch
    normalisation; the convolutional VAE 108 and 23.5; the README gives the
    hierarchical readout's screen):

    - :obj:`readout_grid`: the node latents of every level are averaged per
      cell of an :math:`R \times R` grid over the image and concatenated
      (:meth:`readout`), a spatial pyramid pooling cell. With one mean
      (:math:`R = 1`) a level's latent says what local patterns the image
      has, but hardly where, since a node sees :obj:`num_layers` pixels
      around it.
    - :obj:`hierarchical_readout`: the posterior of :math:`Z^{(\ell)}`
      reads the readouts of level :math:`\ell` *and of every coarser
      level* (concatenated), not of level :math:`\ell` alone. The coarse
      levels are computed from the finer ones (their node features pool
      the finer node latents), so they are functions of the same image,
      and their nodes see far more of it: an 8 x 8 node of MNIST sees the
      whole digit. With the paper's readout the finest latent, the one the
      32 x 32 decoder reads, comes from the encoder that sees least.
      With :obj:`readout_grid=[4, 4, 8]` (every node of the 8 x 8 level
      its own cell) the 32 x 32 reconstruction term fell from 146 to 115
      nats on 5,000 digits after 6 epochs (the convolutional VAE: 111).
    - :obj:`norm="batch_norm"` after every convolution: at initialisation
      the encoders' pooled outputs differ between images by
      :math:`10^{-3}`, :math:`10^{-5}` and :math:`10^{-7}` of their size at
      the three levels (the last below float32 resolution), so the latents
      start out constant and the KL term keeps them so; batch
      normalisation over the nodes of the batch keeps the differences
      (:math:`2\text{-}4 \cdot 10^{-2}`).

    Args:
        in_channels (int): Channels per pixel. (default: :obj:`1`)
        hidden_channels (int): Size of the message passing layers and of the
            node latents. (default: :obj:`32`)
        latent_channels (int): Size :math:`d_z` of every level's latent
            (the paper: 256). (default: :obj:`64`)
        image_size (int): Side :math:`S` of the input images.
            (default: :obj:`32`)
        num_levels (int): Resolutions (the paper: 3, i.e.
            :math:`32, 16, 8`). (default: :obj:`3`)
        num_layers (int): Message passing layers of each global encoder
            (the paper: 10). (default: :obj:`4`)
        conv (MessagePassing class or callable, optional): The convolution
            (see :class:`~torch_geometric_mgvae.MGN`). (default:
            :class:`~torch_geometric_mgvae.nn.MGNConv`)
        decoder_channels (int): Channels :math:`c` of the DCGAN decoders.
            (default: :obj:`32`)
        cell (int): Side of the square clusters. (default: :obj:`2`)
        norm (str, optional): Normalisation after every convolution of
            the encoders, by its PyG name (see :class:`~torch_geometric_mgvae.
            MGN`). (default: :obj:`None`, as the paper)
        readout_grid (int or List[int]): Side :math:`R` of the readout
            grid: node latents are averaged per cell of an
            :math:`R \times R` grid (:obj:`1`: one mean, as the paper). One
            :math:`R` for all levels must divide the coarsest side; a list
            gives :math:`R_\ell` per level (finest first), each dividing
            its level's side. (default: :obj:`1`)
        hierarchical_readout (bool): The posterior of every level's latent
            reads the readouts of that level and of all coarser ones
            (:obj:`False`: of that level alone, as the paper).
            (default: :obj:`False`)
        top_down_prior (bool): The prior of every level's latent but the
            coarsest is :math:`p(Z^{(\ell)} \mid Z^{(\ell+1)}, \ldots,
            Z^{(L-1)})`, a Gaussian whose mean and standard deviation a
            :class:`TopDownPrior` (an MLP) reads from the coarser latents'
            samples; the KL term of the level is taken from it, and
            :meth:`sample` draws the latents from the coarsest down
            (:obj:`False`: :math:`\mathcal{N}(0, I)` at every level, as the
            paper). (default: :obj:`False`)
    """
    def __init__(self, in_channels: int = 1, hidden_channels: int = 32,
                 latent_channels: int = 64, image_size: int = 32,
                 num_levels: int = 3, num_layers: int = 4,
                 conv: Optional[ConvSpec] = None,
                 decoder_channels: int = 32, cell: int = 2,
                 norm: Optional[str] = None,
                 readout_grid: Union[int, Sequence[int]] = 1,
                 hierarchical_readout: bool = False,
                 top_down_prior: bool = False):
        sizes = _check_side(image_size, cell, num_levels)
        if num_levels < 2:
            raise ValueError("'num_levels' must be >= 2 (one clustering)")
        num_clusters = [(s // cell)**2 for s in sizes[:-1]]
        super().__init__(in_channels, hidden_channels, hidden_channels,
                         num_clusters, num_layers=num_layers, conv=conv,
                         clustering='fixed', encoder_scope='graph',
                         global_decoder=None, norm=norm)
        if int(latent_channels) < 1 or int(decoder_channels) < 1:
            raise ValueError("'latent_channels' and 'decoder_channels' must "
                             "be positive integers")
        self.node_channels = hidden_channels
        self.latent_channels = latent_channels
        self.image_size = image_size
        self.cell = cell
        self.sizes = sizes
        self.decoder_channels = decoder_channels
        self.readout_grid = readout_grid
        self.readout_grids = readout_grids_of(readout_grid, sizes)
        if not isinstance(hierarchical_readout, bool):
            raise ValueError(f"'hierarchical_readout' must be a bool (got "
                             f"{hierarchical_readout!r})")
        self.hierarchical_readout = hierarchical_readout
        if not isinstance(top_down_prior, bool):
            raise ValueError(f"'top_down_prior' must be a bool (got "
                             f"{top_down_prior!r})")
        self.top_down_prior = top_down_prior
        L = len(sizes)
        self.priors = torch.nn.ModuleList([
            TopDownPrior(latent_channels * (L - 1 - i), latent_channels)
            for i in range(L - 1)
        ]) if top_down_prior else None
        pooled = [hidden_channels * R**2 for R in self.readout_grids]
        if hierarchical_readout:
            pooled = [sum(pooled[i:]) for i in range(len(sizes))]
        self.graph_mu = torch.nn.ModuleList([
            torch.nn.Linear(w, latent_channels) for w in pooled
        ])
        self.graph_logstd = torch.nn.ModuleList([
            torch.nn.Linear(w, latent_channels) for w in pooled
        ])
        self.image_decoders = torch.nn.ModuleList([
            DCGANDecoder(latent_channels, s, decoder_channels, in_channels)
            for s in sizes
        ])
        # The zoom-out of the targets: the plain mean over every cluster.
        self.zoom = ClusterReadout()
        self.reset_parameters()

    def reset_parameters(self):
        super().reset_parameters()
        for prior in getattr(self, 'priors', None) or []:
            prior.reset_parameters()  # after its layers: N(0, I) at first

    def quadtree(self, pos: Tensor, batch: OptTensor = None) -> List[Tensor]:
        r"""The local cluster ids of every level of the quadtree of grid
        graphs with integer positions :obj:`pos` (the
        :func:`~torch_geometric_mgvae.nn.fixed_hierarchy` of
        :obj:`"grid"`; edges are not needed for it)."""
        N = pos.size(0)
        data = Data(pos=pos, num_nodes=N,
                    edge_index=torch.empty(2, 0, dtype=torch.long,
                                           device=pos.device))
        if batch is not None:
            data.batch = batch
        return fixed_hierarchy(data, 'grid', self.num_clusters,
                               (self.cell, self.cell))

    def forward(self, x: Union[Tensor, BaseData], edge_index: Adj = None,
                pos: OptTensor = None, batch: OptTensor = None,
                num_graphs: Optional[int] = None,
                clusters: Optional[Sequence[Tensor]] = None,
                noise: Optional[Sequence[Dict[str, Tensor]]] = None,
                generator: Optional[torch.Generator] = None
                ) -> ImageOutput:
        r"""Encodes a batch of grid graphs at every resolution and decodes
        every level's latent into its image.

        Args:
            x (torch.Tensor or Data): Pixel values :math:`(N, C)`, or a
                :class:`~torch_geometric.data.Data`/``Batch`` with
                :obj:`x`, :obj:`edge_index`, :obj:`pos`, :obj:`batch` (and
                optionally the ids of :class:`~torch_geometric_mgvae.
                transforms.FixedHierarchy`).
            edge_index (torch.Tensor): The grid edges.
            pos (torch.Tensor): Integer pixel positions :math:`(N, 2)`.
            batch (torch.Tensor, optional): Batch vector.
            num_graphs (int, optional): Number of images.
            clusters (List[torch.Tensor], optional): The quadtree's local
                cluster ids (default: computed from :obj:`pos`,
                :meth:`quadtree`).
            noise (List[dict], optional): Random tensors of an earlier pass
                (:obj:`"graph_eps"` per level).
            generator (torch.Generator, optional): Random generator of the
                reparameterisation noise.
        """
        if isinstance(x, BaseData):
            data = x
            edge_index = data.edge_index if edge_index is None else \
                edge_index
            pos = data.get('pos') if pos is None else pos
            if batch is None and data.get('batch') is not None:
                batch = data.batch
                num_graphs = num_graphs or data.num_graphs
            clusters = clusters or get_fixed_clusters(data) or None
            x = data.x
        if x is None or edge_index is None:
            raise ValueError("'x' and 'edge_index' are required")
        if pos is None:
            raise ValueError("ImageMGVAE needs the integer pixel positions "
                             "'pos' of the grid graphs")
        if pos.dim() != 2 or pos.size(0) != x.size(0) or pos.size(1) != 2:
            raise ValueError(f"'pos' must be ({x.size(0)}, 2) (got "
                             f"{tuple(pos.shape)})")
        if x.dim() != 2 or x.size(1) != self.in_channels:
            raise ValueError(f"'x' must be (num_nodes, {self.in_channels}) "
                             f"(got {tuple(x.shape)})")
        if batch is None:
            batch = torch.zeros(x.size(0), dtype=torch.long, device=x.device)
        if num_graphs is None:
            num_graphs = int(batch.max()) + 1 if batch.numel() else 0
        S = self.image_size
        if pos.numel() and (int(pos.min()) < 0 or int(pos.max()) >= S):
            raise ValueError(f"'pos' must lie in the {S} x {S} grid")
        counts = torch.bincount(batch, minlength=num_graphs)
        if bool((counts != S * S).any()):
            raise ValueError(f"Every graph must be a full {S} x {S} grid "
                             f"({S * S} nodes; got sizes "
                             f"{sorted(set(counts.tolist()))})")
        if clusters is None:
            clusters = self.quadtree(pos, batch)
        noise = list(noise) if noise is not None else []
        out = super().forward(x, edge_index, None, batch, num_graphs,
                              clusters=clusters, noise=noise,
                              generator=generator)
        target, p = x, pos
        targets, reads = [], []
        for i, lvl in enumerate(out.levels):
            side = self.sizes[i]
            targets.append(graph_to_image(target, p, lvl.batch, num_graphs,
                                          (side, side)))
            reads.append(self.readout(lvl.z, p, side, lvl.batch, num_graphs))
            so = lvl.select
            if so is not None:
                target = self.zoom(target, so.cluster_index,
                                   dim_size=so.num_clusters)
                p = torch.div(p, self.cell, rounding_mode='floor')
                p = self.zoom.reduce(p, so.cluster_index,
                                     dim_size=so.num_clusters, reduce='max')
        mus, logstds, zs, logits = [], [], [], []
        for i, lvl in enumerate(out.levels):
            s = torch.cat(reads[i:], dim=-1) if self.hierarchical_readout \
                else reads[i]
            mu = self.graph_mu[i](s)
            logstd = self.graph_logstd[i](s).clamp(max=MAX_LOGSTD)
            eps = noise[i].get('graph_eps') if i < len(noise) else None
            z, eps = _reparameterise(mu, logstd, self.training, eps,
                                     generator)
            if eps is not None:
                lvl.noise['graph_eps'] = eps
            mus.append(mu)
            logstds.append(logstd)
            zs.append(z)
            logits.append(self.image_decoders[i](z))
        prior_mu = prior_logstd = None
        if self.priors is not None:  # p(Z_l | Z_{l+1}, ..., Z_{L-1})
            prior_mu, prior_logstd = [None] * len(zs), [None] * len(zs)
            for i, prior in enumerate(self.priors):
                prior_mu[i], prior_logstd[i] = prior(torch.cat(zs[i + 1:],
                                                               dim=-1))
        return ImageOutput(out.levels, num_graphs, self.sizes, targets, mus,
                           logstds, zs, logits, prior_mu, prior_logstd)

    def readout(self, z: Tensor, pos: Tensor, side: int, batch: Tensor,
                num_graphs: int) -> Tensor:
        r"""The pooled node latents :obj:`z` of a level of side
        :obj:`side` with integer positions :obj:`pos`,
        :math:`(B, R^2 h)`: their mean over every cell of the level's
        :math:`R \times R` readout grid, the clusters of
        :func:`~torch_geometric_mgvae.nn.fixed.grid_clustering` with cells of
        side :obj:`side / R` (row-major; the nodes' order does not
        matter)."""
        if side not in self.sizes:
            raise ValueError(f"'side' must be one of the level sides "
                             f"{self.sizes} (got {side})")
        R = self.readout_grids[self.sizes.index(side)]
        if R == 1:
            return global_mean_pool(z, batch, num_graphs)
        region = batch * R * R + grid_clustering(pos, (side // R, ) * 2,
                                                 batch)
        return global_mean_pool(z, region, num_graphs * R * R).view(
            num_graphs, R * R * z.size(-1))

    def loss_terms(self, out: ImageOutput,
                   generator: Optional[torch.Generator] = None,
                   free_bits: Union[None, float, Sequence[float]] = None
                   ) -> Dict[str, Tensor]:
        r"""The reconstruction and KL terms of every resolution, per image,
        and the free-bits terms of :obj:`free_bits`
        (:func:`image_loss_terms`); the caller sums them."""
        return image_loss_terms(out, free_bits)

    @torch.no_grad()
    def sample(self, num_samples: int, size: Optional[int] = None,
               generator: Optional[torch.Generator] = None,
               batch_size: int = 1000) -> Tensor:
        r"""Images of side :obj:`size` (default: the finest) decoded from
        :math:`Z^{(\ell)} \sim \mathcal{N}(0, I)` by that level's decoder,
        :math:`(n, C, S, S)` intensities in :math:`[0, 1]`; with the
        top-down prior :math:`Z^{(L-1)} \sim \mathcal{N}(0, I)`, then
        every finer latent from its prior given the coarser ones, down to
        :math:`Z^{(\ell)}`. Call :meth:`eval` first (the decoders' batch
        normalisation)."""
        size = self.sizes[0] if size is None else int(size)
        if size not in self.sizes:
            raise ValueError(f"'size' must be one of {self.sizes} (got "
                             f"{size})")
        level = self.sizes.index(size)
        d = self.latent_channels

        def latents(n: int, device: torch.device, dtype: torch.dtype):
            if self.priors is None:
                return randn((n, d), generator, device, dtype)
            zs = [randn((n, d), generator, device, dtype)]  # coarsest
            for i in range(len(self.sizes) - 2, level - 1, -1):
                mu, logstd = self.priors[i](torch.cat(zs, dim=-1))
                eps = randn((n, d), generator, device, dtype)
                zs.insert(0, mu + eps * torch.exp(logstd))
            return zs[0]

        return _sample(self.image_decoders[level], latents, num_samples,
                       batch_size)

    def __repr__(self) -> str:
        conv = 'MGNConv' if self.conv is None else getattr(
            self.conv, '__name__', type(self.conv).__name__)
        extra = ''.join(f', {k}={v!r}' for k, v, default in (
            ('norm', self.norm, None), ('readout_grid', self.readout_grid, 1),
            ('hierarchical_readout', self.hierarchical_readout, False),
            ('top_down_prior', self.top_down_prior, False))
            if v != default)
        return (f'{self.__class__.__name__}({self.in_channels}, '
                f'{self.hidden_channels}, {self.latent_channels}, '
                f'sizes={self.sizes}, num_layers={self.num_layers}, '
                f'conv={conv}{extra})')


def readout_grids_of(grid: Union[int, Sequence[int]],
                   sizes: List[int]) -> List[int]:
    r"""The readout grid side :math:`R_\ell` of every level from one
    :math:`R` (dividing the coarsest side) or one per level (each dividing
    its level's side)."""
    if isinstance(grid, (list, tuple)):
        grids = [check_int('readout_grid', g) for g in grid]
        if len(grids) != len(sizes):
            raise ValueError(f"'readout_grid' has {len(grids)} entries for "
                             f"{len(sizes)} levels")
        bad = [(g, s) for g, s in zip(grids, sizes) if s % g]
        if bad:
            raise ValueError(f"'readout_grid' {bad[0][0]} must divide its "
                             f"level's side {bad[0][1]}")
        return grids
    grid = check_int('readout_grid', grid)
    if sizes[-1] % grid:
        raise ValueError(f"'readout_grid' ({grid}) must divide the "
                         f"coarsest side {sizes[-1]}")
    return [grid] * len(sizes)


def _sample(decoder: DCGANDecoder, latents, num_samples: int,
            batch_size: int) -> Tensor:
    r"""Decodes :obj:`latents(n, device, dtype)` in batches of
    :obj:`batch_size` into intensities."""
    if num_samples < 0 or batch_size < 1:
        raise ValueError("'num_samples' must be >= 0 and 'batch_size' >= 1")
    param = next(decoder.parameters())
    out = []
    for start in range(0, num_samples, batch_size):
        n = min(batch_size, num_samples - start)
        out.append(torch.sigmoid(decoder(latents(n, param.device,
                                                 param.dtype))))
    if not out:
        return param.new_zeros(0, decoder.out_channels, decoder.out_size,
                               decoder.out_size)
    return torch.cat(out)


class TopDownPrior(torch.nn.Module):
    r"""A conditional Gaussian prior :math:`p(\mathbf{z} \mid \mathbf{c})
    = \mathcal{N}(m(\mathbf{c}), s(\mathbf{c})^2)`, diagonal: a two-layer
    MLP of the condition :math:`\mathbf{c}` (the coarser levels' latents
    in :class:`ImageMGVAE`) gives the mean and the log standard deviation.
    Its last layer starts at zero, so the prior starts as
    :math:`\mathcal{N}(0, I)`.

    Args:
        in_channels (int): Size of :math:`\mathbf{c}`.
        latent_channels (int): Size of :math:`\mathbf{z}`.
        hidden_channels (int, optional): Width of the hidden layer
            (default: :obj:`2 * latent_channels`).
    """
    def __init__(self, in_channels: int, latent_channels: int,
                 hidden_channels: Optional[int] = None):
        super().__init__()
        hidden = hidden_channels or 2 * latent_channels
        self.lin1 = torch.nn.Linear(in_channels, hidden)
        self.lin2 = torch.nn.Linear(hidden, 2 * latent_channels)
        self.reset_parameters()

    def reset_parameters(self):
        self.lin1.reset_parameters()
        torch.nn.init.zeros_(self.lin2.weight)
        torch.nn.init.zeros_(self.lin2.bias)

    def forward(self, c: Tensor) -> Tuple[Tensor, Tensor]:
        r"""The mean and log standard deviation of :math:`\mathbf{z}`."""
        mu, logstd = self.lin2(F.relu(self.lin1(c))).chunk(2, dim=-1)
        return mu, logstd.clamp(max=MAX_LOGSTD)

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}({self.lin1.in_features}, '
                f'{self.lin2.out_features // 2})')


def zoom_out(images: Tensor, factor: int) -> Tensor:
    r"""Images zoomed out by averaging :math:`f \times f` blocks (the
    zoom-out of :class:`ImageMGVAE`'s targets on dense images)."""
    return images if factor == 1 else F.avg_pool2d(images, factor)


class ConvVAE(torch.nn.Module):
    r"""A convolutional VAE, the baseline of :class:`ImageMGVAE`: the
    encoder of a DCGAN discriminator (convolutions of kernel 4 and stride 2,
    the channels doubling from :math:`c` while the side halves to 4, batch
    normalisation after the first, leaky ReLU), flattened into linear heads
    for :math:`\mu` and :math:`\log\sigma` of one latent
    :math:`\mathbf{z} \in \mathbb{R}^{d_z}`, and the same
    :class:`~torch_geometric_mgvae.nn.DCGANDecoder` as the finest level of
    :class:`ImageMGVAE`. Its coarser resolutions are its images zoomed out
    (:func:`zoom_out`, the same averaging as :class:`ImageMGVAE`'s
    targets).

    It reads dense images :math:`(B, C, S, S)` or the same grid graph
    batches as :class:`ImageMGVAE` (placed by :obj:`pos`), and returns an
    :class:`ImageOutput` with one resolution.

    Args:
        in_channels (int): Channels per pixel. (default: :obj:`1`)
        latent_channels (int): Size :math:`d_z`. (default: :obj:`64`)
        image_size (int): Side :math:`S`. (default: :obj:`32`)
        channels (int): Channels :math:`c` of the first encoder layer.
            (default: :obj:`32`)
        decoder_channels (int): Channels of the decoder.
            (default: :obj:`32`)
    """
    def __init__(self, in_channels: int = 1, latent_channels: int = 64,
                 image_size: int = 32, channels: int = 32,
                 decoder_channels: int = 32):
        super().__init__()
        _check_side(image_size, 2, 1)
        check_int('latent_channels', latent_channels)
        check_int('channels', channels)
        self.in_channels = in_channels
        self.latent_channels = latent_channels
        self.image_size = image_size
        self.channels = channels
        self.decoder_channels = decoder_channels
        self.sizes = [image_size]
        layers, c_in, side, c = [], in_channels, image_size, channels
        while side > 4:
            layers.append(torch.nn.Conv2d(c_in, c, 4, 2, 1,
                                          bias=not layers))
            if layers[:-1]:
                layers.append(torch.nn.BatchNorm2d(c))
            layers.append(torch.nn.LeakyReLU(0.2))
            c_in, side, c = c, side // 2, 2 * c
        self.encoder = torch.nn.Sequential(*layers)
        flat = c_in * side * side
        self.mu = torch.nn.Linear(flat, latent_channels)
        self.logstd = torch.nn.Linear(flat, latent_channels)
        self.decoder = DCGANDecoder(latent_channels, image_size,
                                    decoder_channels, in_channels)
        self.reset_parameters()

    def reset_parameters(self):
        for m in self.modules():
            if m is not self and hasattr(m, 'reset_parameters') and \
                    m is not self.decoder:
                m.reset_parameters()
        self.decoder.reset_parameters()

    def to_images(self, data: BaseData) -> Tensor:
        r"""The images of a batch of grid graphs, :math:`(B, C, S, S)`."""
        batch = data.get('batch')
        return graph_to_image(data.x, data.pos, batch,
                              data.num_graphs if batch is not None else 1,
                              (self.image_size, self.image_size))

    def forward(self, images: Union[Tensor, BaseData],
                noise: Optional[Sequence[Dict[str, Tensor]]] = None,
                generator: Optional[torch.Generator] = None
                ) -> ImageOutput:
        if isinstance(images, BaseData):
            images = self.to_images(images)
        S = self.image_size
        if images.dim() != 4 or images.shape[1:] != (self.in_channels, S, S):
            raise ValueError(f"Expected images of shape (B, "
                             f"{self.in_channels}, {S}, {S}) (got "
                             f"{tuple(images.shape)})")
        h = self.encoder(images).flatten(1)
        mu = self.mu(h)
        logstd = self.logstd(h).clamp(max=MAX_LOGSTD)
        eps = noise[0].get('graph_eps') if noise else None
        z, _ = _reparameterise(mu, logstd, self.training, eps, generator)
        return ImageOutput([], images.size(0), self.sizes, [images], [mu],
                           [logstd], [z], [self.decoder(z)])

    def loss_terms(self, out: ImageOutput,
                   generator: Optional[torch.Generator] = None,
                   free_bits: Union[None, float, Sequence[float]] = None
                   ) -> Dict[str, Tensor]:
        r"""Reconstruction and KL terms per image, and the free-bits term
        of the first value of :obj:`free_bits`
        (:func:`image_loss_terms`)."""
        return image_loss_terms(out, free_bits)

    @torch.no_grad()
    def sample(self, num_samples: int, size: Optional[int] = None,
               generator: Optional[torch.Generator] = None,
               batch_size: int = 1000) -> Tensor:
        r"""Images decoded from :math:`\mathbf{z} \sim \mathcal{N}(0, I)`,
        zoomed out to side :obj:`size` (default: :math:`S`)."""
        size = self.image_size if size is None else int(size)
        if size < 1 or self.image_size % size:
            raise ValueError(f"'size' must divide {self.image_size} (got "
                             f"{size})")
        d = self.latent_channels
        images = _sample(self.decoder,
                         lambda n, device, dtype: randn((n, d), generator,
                                                        device, dtype),
                         num_samples, batch_size)
        return zoom_out(images, self.image_size // size)

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}({self.in_channels}, '
                f'{self.latent_channels}, image_size={self.image_size}, '
                f'channels={self.channels})')
