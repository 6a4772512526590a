r"""Gaussian-MRF latents and the learnable equivariant prior (paper
appendices B and C) on dense per-block tensors.

Hy & Kondor, "Multiresolution Equivariant Graph Variational Autoencoder"
(`arXiv:2106.00967 <https://arxiv.org/abs/2106.00967>`_). A second-order
encoder yields, for each of :math:`d` latent channels, a mean
:math:`\mu_{:, c} \in \mathbb{R}^n` and a factor
:math:`L_{:, :, c} \in \mathbb{R}^{n \times n}`, i.e. :math:`d` Gaussians
:math:`\mathcal{N}(\mu_{:, c}, L_c L_c^{\top} + \epsilon I)` over the nodes
(a pairwise Gaussian Markov random field, Eq. 11). Conventions follow
:mod:`torch_geometric_mgvae.nn.second_order`: ``mu`` :math:`[B, n, d]`,
``L`` :math:`[B, n, n, d]` (or :math:`[B, n, k, d]`: row :math:`i` is node
:math:`i`, columns are the factor's :math:`k` noise coordinates), ``mask``
:math:`[B, n]`. Losses are returned per graph, :math:`[B]`; the caller
reduces them.
"""
import math
from typing import List, Optional, Tuple, Union

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment
from torch import Tensor

from .checks import check_float, check_int
from .random import rand, randn
from .second_order import apply_mask, run_bucketed

EPS = 1e-4
MATCHINGS = ('hungarian', 'free')


def _randn(shape: Tuple[int, ...], like: Tensor,
           generator: Optional[torch.Generator] = None) -> Tensor:
    r"""Standard normal noise drawn with :obj:`generator` (on its device),
    returned on the device and dtype of :obj:`like`."""
    device = generator.device if generator is not None else like.device
    out = randn(shape, generator, device, like.dtype)
    return out.to(like.device)


def _cov_cholesky(L: Tensor, mask: Tensor, eps: float) -> Tensor:
    r"""Cholesky factor of :math:`\Sigma_c = L_c L_c^{\top} + \epsilon I`
    restricted to the valid nodes, per channel: :math:`[B, d, n, n]`.

    Padded rows of :obj:`L` are zeroed and a padded node gets variance 1
    (instead of :math:`\epsilon`), so the padded block of :math:`\Sigma` and
    of its Cholesky factor is exactly the identity, decoupled from the
    valid block.

    The factorisation runs in float64: in float32, :math:`\epsilon = 10^{-4}`
    is below the rounding error of :math:`L L^{\top}` once the entries of
    :math:`L` reach a few units, and Cholesky fails on a matrix that is
    positive definite in exact arithmetic.

    A covariance that cannot be factorised (non-finite or overflowing
    entries of :obj:`L`, e.g. after a divergent training step) gets a NaN
    factor, so the KL terms built on it are NaN, as for any other
    non-finite input, and the trainers stop at them with a
    :class:`~torch_geometric_mgvae.experiments.train.NonFiniteError`
    naming the term (instead of a :obj:`LinAlgError` from the middle of
    the loss).
    """
    L = apply_mask(L, mask, 1).permute(0, 3, 1, 2).double()  # [B, d, n, k]
    S = L @ L.transpose(-1, -2)  # [B, d, n, n]
    one = torch.ones((), dtype=L.dtype, device=L.device)
    jitter = torch.where(mask, eps * one, one)  # [B, n]
    S = S + torch.diag_embed(jitter).unsqueeze(1)  # [B, d, n, n]
    C, info = torch.linalg.cholesky_ex(S)  # [B, d, n, n], [B, d]
    failed = info != 0
    if bool(failed.any()):
        C = C.masked_fill(failed[..., None, None], math.nan)
    return C


def _logdet(C: Tensor) -> Tensor:
    r""":math:`\ln\det(C C^{\top})` from a Cholesky factor: :math:`[B, d]`.
    """
    return 2 * C.diagonal(dim1=-2, dim2=-1).log().sum(dim=-1)


def _per_block(fn, mask: Tensor, *blocks: Tensor) -> Tensor:
    r"""A per-block quantity :obj:`fn(mask, *blocks)` :math:`[B]` on every
    size bucket of the blocks (:func:`~torch_geometric_mgvae.nn.
    second_order.run_bucketed`, every block cut to its bucket's size on its
    node index, dimension 1; the factors' noise columns stay whole). Every
    block is computed on its own and its padded nodes contribute exactly 0,
    so this equals one call on the padded batch up to float rounding, while
    the Cholesky factorisations cost the blocks' own :math:`\sum_b m_b^3`
    instead of :math:`B\, n^3`."""
    return run_bucketed(lambda mask, *t: (fn(mask, *t), ), mask,
                        list(blocks), [], (0, ))[0]


def kl_mvn(mu_q: Tensor, L_q: Tensor, mu_p: Tensor, L_p: Tensor,
           mask: Tensor, eps: float = EPS) -> Tensor:
    r"""KL divergence between two Gaussian MRFs (the paper's Eq. 12),
    per graph and summed over the :math:`d` channels:

    .. math::
        \sum_{c=1}^{d} \frac{1}{2}\Big(\mathrm{tr}(\Sigma_p^{-1}\Sigma_q)
        + (\mu_p - \mu_q)^{\top}\Sigma_p^{-1}(\mu_p - \mu_q) - m
        + \ln\frac{\det\Sigma_p}{\det\Sigma_q}\Big)

    with :math:`\Sigma = L L^{\top} + \epsilon I` over the :math:`m` valid
    nodes. Computed with Cholesky factors :math:`\Sigma = C C^{\top}` and
    triangular solves, never an inverse:
    :math:`\mathrm{tr}(\Sigma_p^{-1}\Sigma_q) = \|C_p^{-1} C_q\|_F^2`,
    the Mahalanobis term is :math:`\|C_p^{-1}(\mu_p - \mu_q)\|^2` and
    :math:`\ln\det\Sigma = 2\sum_i \ln C_{ii}`. Padded nodes are given
    the identity covariance and equal means in both distributions, so they
    contribute exactly 0.

    Args:
        mu_q (torch.Tensor): Posterior means :math:`[B, n, d]`.
        L_q (torch.Tensor): Posterior factor :math:`[B, n, k, d]`.
        mu_p (torch.Tensor): Prior means :math:`[B, n, d]`.
        L_p (torch.Tensor): Prior factor :math:`[B, n, k', d]`.
        mask (torch.Tensor): Valid nodes :math:`[B, n]`. Only the rows of
            the factors are masked: columns are noise coordinates (for a
            square factor from :class:`GaussianMRFHead` its padded
            columns are already 0).
        eps (float): Diagonal jitter :math:`\epsilon`. (default: :obj:`1e-4`)

    Returns:
        :math:`[B]`.
    """
    return _per_block(lambda mask, *t: _kl_mvn(*t, mask, eps), mask, mu_q,
                      L_q, mu_p, L_p)


def _kl_mvn(mu_q: Tensor, L_q: Tensor, mu_p: Tensor, L_p: Tensor,
            mask: Tensor, eps: float) -> Tensor:
    C_q = _cov_cholesky(L_q, mask, eps)  # [B, d, n, n]
    C_p = _cov_cholesky(L_p, mask, eps)  # [B, d, n, n]
    diff = apply_mask(mu_p - mu_q, mask, 1).double()  # [B, n, d]
    diff = diff.transpose(1, 2).unsqueeze(-1)  # [B, d, n, 1]
    M = torch.linalg.solve_triangular(C_p, C_q, upper=False)  # [B, d, n, n]
    v = torch.linalg.solve_triangular(C_p, diff, upper=False)  # [B, d, n, 1]
    n = mask.size(1)  # padded nodes add 1 to the trace, -1 here: exact 0
    kl = 0.5 * (M.pow(2).sum(dim=(-2, -1)) + v.pow(2).sum(dim=(-2, -1)) - n +
                _logdet(C_p) - _logdet(C_q))  # [B, d]
    return kl.sum(dim=-1).to(mu_q.dtype)


def kl_mvn_standard(mu: Tensor, L: Tensor, mask: Tensor,
                    eps: float = EPS) -> Tensor:
    r"""KL divergence of :math:`\mathcal{N}(\mu, L L^{\top} + \epsilon I)`
    from the standard normal :math:`\mathcal{N}(0, I)` over the valid
    nodes, summed over channels:

    .. math::
        \sum_{c} \frac{1}{2}\big(\|L_c\|_F^2 + \epsilon m + \|\mu_c\|^2 - m
        - \ln\det\Sigma_c\big)

    Args:
        mu (torch.Tensor): :math:`[B, n, d]`.
        L (torch.Tensor): :math:`[B, n, k, d]` (rows masked).
        mask (torch.Tensor): Valid nodes :math:`[B, n]`.
        eps (float): Diagonal jitter. (default: :obj:`1e-4`)

    Returns:
        :math:`[B]`.
    """
    return _per_block(lambda mask, *t: _kl_mvn_standard(*t, mask, eps),
                      mask, mu, L)


def _kl_mvn_standard(mu: Tensor, L: Tensor, mask: Tensor,
                     eps: float) -> Tensor:
    C = _cov_cholesky(L, mask, eps)  # [B, d, n, n]
    L = apply_mask(L, mask, 1)  # [B, n, k, d]
    mu = apply_mask(mu, mask, 1)  # [B, n, d]
    m = mask.sum(dim=1, keepdim=True).to(mu.dtype)  # [B, 1]
    tr = L.pow(2).sum(dim=(1, 2)) + eps * m  # [B, d]
    kl = 0.5 * (tr + mu.pow(2).sum(dim=1) - m - _logdet(C).to(mu.dtype))
    return kl.sum(dim=-1)  # [B]


def kl_diag(mu: Tensor, logstd: Tensor,
            mask: Optional[Tensor] = None) -> Tensor:
    r"""KL divergence of the diagonal Gaussian
    :math:`\mathcal{N}(\mu, \mathrm{diag}(\sigma^2))`,
    :math:`\sigma = \exp(\mathrm{logstd})`, from :math:`\mathcal{N}(0, I)`:

    .. math::
        \frac{1}{2}\sum_{i, c}\big(\mu_{ic}^2 + e^{2\,\mathrm{logstd}_{ic}}
        - 1 - 2\,\mathrm{logstd}_{ic}\big)

    The variance is :math:`e^{2\,\mathrm{logstd}}` (the official code used
    :math:`e^{\mathrm{logstd}}`).

    Args:
        mu (torch.Tensor): :math:`[B, n, d]`.
        logstd (torch.Tensor): :math:`[B, n, d]`.
        mask (torch.Tensor, optional): Valid nodes :math:`[B, n]`
            (default: all valid).

    Returns:
        :math:`[B]`.
    """
    kl = 0.5 * (mu.pow(2) + (2 * logstd).exp() - 1 - 2 * logstd)
    if mask is not None:
        kl = apply_mask(kl, mask, 1)  # [B, n, d]
    return kl.sum(dim=(1, 2))


def mrf_sample(mu: Tensor, L: Tensor, mask: Tensor, eps: float = EPS,
               generator: Optional[torch.Generator] = None) -> Tensor:
    r"""Reparameterised sample of the Gaussian MRF (Appendix B):

    .. math::
        z_{:, c} = \mu_{:, c} + L_c\, \varepsilon_c + \sqrt{\epsilon}\,
        \varepsilon'_c, \qquad \varepsilon_c, \varepsilon'_c \sim
        \mathcal{N}(0, I)

    The :math:`\sqrt{\epsilon}` term makes the covariance of :math:`z`
    exactly :math:`L L^{\top} + \epsilon I`, the one the KL terms use;
    :obj:`eps=0` gives the paper's :math:`z = \mu + L\varepsilon`.

    Args:
        mu (torch.Tensor): :math:`[B, n, d]`.
        L (torch.Tensor): :math:`[B, n, k, d]`.
        mask (torch.Tensor): Valid nodes :math:`[B, n]`.
        eps (float): Diagonal jitter. (default: :obj:`1e-4`)
        generator (torch.Generator, optional): Source of the noise.

    Returns:
        :math:`[B, n, d]`, 0 at padded nodes.
    """
    B, n, k, d = L.shape
    L = apply_mask(L, mask, 1)  # [B, n, k, d]
    noise = _randn((B, k, d), L, generator)  # [B, k, d]
    z = mu + torch.einsum('bikc,bkc->bic', L, noise)  # [B, n, d]
    if eps > 0:
        z = z + math.sqrt(eps) * _randn((B, n, d), L, generator)
    return apply_mask(z, mask, 1)


class GaussianMRFHead(torch.nn.Module):
    r"""Gaussian-MRF latent parameters from a second-order encoder
    (Appendix B):

    .. math::
        \mu = Z W_{\mu} + b_{\mu}, \qquad
        L_{ij} = \delta_{ij}\, e^{s_i} + \frac{1}{\sqrt{m}}\big(H_{ij} W_L
        + b_L\big), \qquad s = Z W_s + b_s

    :math:`\mu` and the log-scale :math:`s` are first order (linear maps of
    :math:`Z`) and :math:`L` is second order, so
    :math:`\Sigma_c = L_c L_c^{\top} + \epsilon I` permutes as
    :math:`P \Sigma_c P^{\top}`. The :math:`1/\sqrt{m}` keeps
    :math:`\sum_k L_{ik}^2` of order one whatever the number :math:`m` of
    valid nodes. The positive diagonal :math:`e^{s}` (the diagonal
    posterior of Eq. 6 is the case :math:`W_L = 0`) keeps :math:`\Sigma`
    well conditioned without relying on :math:`\epsilon`: with
    :math:`\Sigma = L L^{\top}` alone, an encoder whose :math:`H` is small
    at initialisation gives :math:`\Sigma \approx \epsilon I` and a KL of
    :math:`\frac{1}{2}\ln(1/\epsilon) \approx 4.6` nats per node and
    channel before any training. :math:`s` is clamped at
    :obj:`max_logstd`. Padded rows and columns of :math:`L` are 0.

    Args:
        in_channels (int): Channels :math:`C` of :math:`H`.
        latent_channels (int): Latent size :math:`d`.
        first_order_channels (int, optional): Channels of :math:`Z`.
            (default: :obj:`2 * in_channels`, the encoder's
            :math:`\mathcal{H}_{\downarrow 1} \oplus
            \mathcal{H}_{\downarrow 2}`)
        max_logstd (float): Upper clamp of :math:`s`. (default: :obj:`10`)
        diagonal (bool): Add the diagonal :math:`e^{s}`; :obj:`False`
            gives the earlier head, :math:`L = (H W_L + b_L) / \sqrt{m}`
            alone, kept to reproduce stored models. (default: :obj:`True`)

    Shapes:
        - **input:** :math:`H` :math:`(B, n, n, C)`, :math:`Z`
          :math:`(B, n, C')`, mask :math:`(B, n)`
        - **output:** :math:`\mu` :math:`(B, n, d)`, :math:`L`
          :math:`(B, n, n, d)`
    """
    def __init__(self, in_channels: int, latent_channels: int,
                 first_order_channels: Optional[int] = None,
                 max_logstd: float = 10.0, diagonal: bool = True):
        super().__init__()
        self.in_channels = check_int('in_channels', in_channels)
        self.latent_channels = check_int('latent_channels', latent_channels)
        self.first_order_channels = check_int(
            'first_order_channels', first_order_channels,
            optional=True) or 2 * in_channels
        self.max_logstd = max_logstd
        self.diagonal = diagonal
        self.lin_mu = torch.nn.Linear(self.first_order_channels,
                                      latent_channels)
        self.lin_logstd = torch.nn.Linear(
            self.first_order_channels, latent_channels) if diagonal else None
        self.lin_L = torch.nn.Linear(in_channels, latent_channels)
        self.reset_parameters()

    def reset_parameters(self):
        self.lin_mu.reset_parameters()
        if self.lin_logstd is not None:
            self.lin_logstd.reset_parameters()
        self.lin_L.reset_parameters()

    def forward(self, H: Tensor, Z: Tensor,
                mask: Tensor) -> Tuple[Tensor, Tensor]:
        H = apply_mask(H, mask, 2)  # [B, n, n, C]
        Z = apply_mask(Z, mask, 1)  # [B, n, C']
        n = mask.size(1)
        m = mask.sum(dim=1).clamp(min=1).to(H.dtype)  # [B]
        mu = apply_mask(self.lin_mu(Z), mask, 1)  # [B, n, d]
        L = self.lin_L(H) / m.sqrt().view(-1, 1, 1, 1)  # [B, n, n, d]
        if self.lin_logstd is not None:
            std = self.lin_logstd(Z).clamp(max=self.max_logstd).exp()
            eye = torch.eye(n, dtype=H.dtype, device=H.device)
            L = L + eye.view(1, n, n, 1) * std.unsqueeze(2)  # [B, n, n, d]
        return mu, apply_mask(L, mask, 2)

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}({self.in_channels}, '
                f'{self.latent_channels}, first_order_channels='
                f'{self.first_order_channels}'
                f'{"" if self.diagonal else ", diagonal=False"})')


class LearnablePrior(torch.nn.Module):
    r"""The learnable equivariant prior of Appendix C: :math:`d` Gaussians
    :math:`\mathcal{N}(\hat{\mu}_{:, c}, \hat{L}_c \hat{L}_c^{\top} +
    \epsilon I)` over :math:`N_{\max}` prior nodes, with
    :math:`\hat{\mu} \in \mathbb{R}^{N_{\max} \times d}` and
    :math:`\hat{L} \in \mathbb{R}^{N_{\max} \times N_{\max} \times d}`
    learned.

    The KL of a posterior over :math:`m` nodes is taken after matching each
    posterior node :math:`i` to a prior node :math:`j(i)` by the cost
    :math:`C_{ij} = \|\mu_i - \hat{\mu}_j\|`:

    * ``'free'``: :math:`j(i) = \arg\min_j C_{ij}`, :math:`O(m N_{\max})`
      (the paper's free matching; prior nodes may repeat),
    * ``'hungarian'``: the assignment (a permutation, no repeats) of least
      total cost, :func:`scipy.optimize.linear_sum_assignment` (Eq. 13's
      relaxation; on CPU, :math:`O(m^2 N_{\max})`).

    The matched prior is :math:`\mathcal{N}(\hat{\mu}_{j(\cdot)},
    \hat{L}_{j(\cdot), :}\hat{L}_{j(\cdot), :}^{\top} + \epsilon I)`, the
    marginal of the prior on the matched nodes when they are distinct.
    When free matching repeats a prior node, rows of :math:`\hat{L}`
    repeat and only :math:`\epsilon I` keeps the covariance positive
    definite: the KL stays finite but is large (:math:`\sim 1/\epsilon`)
    along the differences of the posterior nodes matched together (use
    ``'hungarian'`` or the diagonal prior to avoid this). With
    :obj:`full_covariance=False` the matched prior is
    :math:`\mathcal{N}(\hat{\mu}_{j(\cdot)},
    \mathrm{diag}(\hat{\sigma}^2_{j(\cdot)}) + \epsilon I)`: posterior
    nodes matched to the same prior node are independent copies of it, so
    repeats cost nothing extra. Both matchings are equivariant: permuting
    the posterior's nodes permutes :math:`j`, and the KL is unchanged. The
    indices are not differentiated; the KL is, in
    :math:`\mu, L, \hat{\mu}, \hat{L}`.

    Args:
        max_nodes (int): Number :math:`N_{\max}` of prior nodes.
        latent_channels (int): Latent size :math:`d`.
        full_covariance (bool): Learn a full :math:`\hat{L}`; otherwise
            :math:`\hat{L} = \mathrm{diag}(\hat{\sigma})`,
            :math:`\hat{\sigma} = e^{\hat{s}}` learned.
            (default: :obj:`True`)
        eps (float): Diagonal jitter, a finite number > 0. (default:
            :obj:`1e-4`)
        matching (str): :obj:`"hungarian"` or :obj:`"free"`, the matching
            :meth:`kl` uses. (default: :obj:`"hungarian"`)
    """
    def __init__(self, max_nodes: int, latent_channels: int,
                 full_covariance: bool = True, eps: float = EPS,
                 matching: str = 'hungarian'):
        super().__init__()
        if matching not in MATCHINGS:
            raise ValueError(f"'matching' must be one of {MATCHINGS} "
                             f"(got {matching!r})")
        max_nodes = check_int('max_nodes', max_nodes)
        latent_channels = check_int('latent_channels', latent_channels)
        eps = check_float('eps', eps)
        self.matching = matching
        self.max_nodes = max_nodes
        self.latent_channels = latent_channels
        self.full_covariance = full_covariance
        self.eps = eps
        N, d = max_nodes, latent_channels
        self.mu_hat = torch.nn.Parameter(torch.empty(N, d))
        if full_covariance:
            self.L_param = torch.nn.Parameter(torch.empty(N, N, d))
        else:
            self.L_param = torch.nn.Parameter(torch.empty(N, d))
        self.reset_parameters()

    def reset_parameters(self):
        r"""Means :math:`\mathcal{N}(0, 1)` (distinct prior nodes),
        covariance :math:`I`."""
        torch.nn.init.normal_(self.mu_hat)
        with torch.no_grad():
            if self.full_covariance:
                eye = torch.eye(self.max_nodes, dtype=self.L_param.dtype,
                                device=self.L_param.device)
                self.L_param.copy_(eye.unsqueeze(-1).expand_as(self.L_param))
            else:
                self.L_param.zero_()

    @property
    def L_hat(self) -> Tensor:
        r"""The prior factor :math:`\hat{L}`, :math:`[N_{\max}, N_{\max},
        d]`."""
        if self.full_covariance:
            return self.L_param
        return torch.diag_embed(self.L_param.exp().t()).permute(1, 2, 0)

    @torch.no_grad()
    def match(self, mu: Tensor, mask: Tensor,
              matching: Optional[str] = None) -> Tensor:
        r"""Prior node :math:`j(i)` of every posterior node, :math:`[B, n]`
        (0 at padded nodes); :obj:`matching` defaults to the prior's."""
        matching = matching or self.matching
        B, n, d = mu.shape
        if B > 0 and int(mask.sum(dim=1).max()) > self.max_nodes:
            raise ValueError(
                f"The learnable prior has max_nodes={self.max_nodes} nodes "
                f"but a graph has {int(mask.sum(dim=1).max())}")
        mu_hat = self.mu_hat.to(mu.dtype)
        cost = torch.cdist(mu, mu_hat.expand(B, -1, -1))  # [B, n, N]
        if matching == 'free':
            return torch.where(mask, cost.argmin(dim=-1), 0)
        if matching != 'hungarian':
            raise ValueError(f"'matching' must be 'free' or 'hungarian' "
                             f"(got '{matching}')")
        index = torch.zeros(B, n, dtype=torch.long)
        cost_np = cost.cpu().numpy()
        for b in range(B):
            rows = mask[b].nonzero().view(-1).cpu()
            _, col = linear_sum_assignment(cost_np[b, rows.numpy()])
            index[b, rows] = torch.from_numpy(np.asarray(col, dtype=np.int64))
        return index.to(mu.device)

    def prior_params(self, index: Tensor) -> Tuple[Tensor, Tensor]:
        r"""Matched prior means :math:`[B, n, d]` and factor for
        prior-node indices :math:`[B, n]`: the rows
        :math:`\hat{L}_{j(\cdot), :}`, :math:`[B, n, N_{\max}, d]`, or, for
        the diagonal prior, :math:`\mathrm{diag}(\hat{\sigma}_{j(\cdot)})`,
        :math:`[B, n, n, d]` (the same covariance when the indices are
        distinct)."""
        if self.full_covariance:
            return self.mu_hat[index], self.L_param[index]
        std = self.L_param.exp()[index]  # [B, n, d]
        L = torch.diag_embed(std.transpose(1, 2)).permute(0, 2, 3, 1)
        return self.mu_hat[index], L  # [B, n, d], [B, n, n, d]

    def kl(self, mu: Tensor, L: Tensor, mask: Tensor,
           matching: Optional[str] = None) -> Tensor:
        r"""KL divergence of the posterior :math:`\mathcal{N}(\mu, L L^{\top}
        + \epsilon I)` (``mu`` :math:`[B, n, d]`, square ``L``
        :math:`[B, n, n, d]`) from the matched prior, :math:`[B]`."""
        index = self.match(mu, mask, matching)  # [B, n]
        mu_p, L_p = self.prior_params(index)  # [B, n, d], [B, n, N, d]
        L = apply_mask(L, mask, 2)  # [B, n, n, d]
        return kl_mvn(mu, L, mu_p.to(mu.dtype), L_p.to(mu.dtype), mask,
                      self.eps)

    def sample(
        self, num_nodes: Union[Tensor, List[int]],
        generator: Optional[torch.Generator] = None,
        index: Optional[Tensor] = None, temperature: float = 1.0
    ) -> Tuple[Tensor, Tensor]:
        r"""Sample node latents for graphs of the given sizes.

        A graph of :math:`n` nodes draws a uniformly random subset
        :math:`S` of :math:`n` of the :math:`N_{\max}` prior nodes (in
        random order, so no node position is privileged), or takes the
        subset given in :obj:`index`, and samples their joint Gaussian
        :math:`\mathcal{N}(\hat{\mu}_S, \hat{L}_{S,:}
        \hat{L}_{S,:}^{\top} + \epsilon I)`.

        Args:
            num_nodes (torch.Tensor): Sizes :math:`[B]`, each at most
                :obj:`max_nodes`.
            generator (torch.Generator, optional): Source of randomness.
            index (torch.Tensor, optional): The prior node of every node,
                :math:`[B, n_{\max}]` (entries past a graph's size are
                ignored), e.g. the matched subsets of training graphs
                (see :meth:`match`). (default: uniformly random subsets)
            temperature (float): Scale :math:`T \geq 0` of the noise:
                :math:`z = \hat{\mu}_S + T(\hat{L}_{S,:}\varepsilon +
                \sqrt{\epsilon}\varepsilon')`. (default: :obj:`1.0`)

        Returns:
            :math:`z` :math:`[B, n_{\max}, d]` (:math:`n_{\max}` the largest
            size) and its node mask :math:`[B, n_{\max}]`.
        """
        temperature = check_float('temperature', temperature, strict=False)
        num_nodes = torch.as_tensor(num_nodes, dtype=torch.long).view(-1)
        if num_nodes.numel() > 0 and (int(num_nodes.max()) > self.max_nodes
                                      or int(num_nodes.min()) < 0):
            raise ValueError(
                f"Can only sample graphs of 0 to max_nodes={self.max_nodes} "
                f"nodes (got sizes {num_nodes.tolist()})")
        B, N = num_nodes.numel(), self.max_nodes
        n = int(num_nodes.max()) if B > 0 else 0
        device = self.mu_hat.device
        num_nodes = num_nodes.to(device)
        mask = torch.arange(n, device=device) < num_nodes.view(-1, 1)
        if index is None:
            gdev = generator.device if generator is not None else device
            keys = rand((B, N), generator, gdev)  # [B, N]
            index = keys.argsort(dim=1)[:, :n].to(device)  # [B, n]
        else:
            index = torch.as_tensor(index, dtype=torch.long, device=device)
            if index.shape != (B, n):
                raise ValueError(f"'index' has shape {tuple(index.shape)}, "
                                 f"expected {(B, n)}")
            index = index.masked_fill(~mask, 0)
            if B > 0 and n > 0 and (int(index.min()) < 0
                                    or int(index.max()) >= N):
                raise ValueError(f"'index' holds prior nodes outside "
                                 f"0..{N - 1}")
        mu_p, L_p = self.prior_params(index)  # [B, n, d], [B, n, N, d]
        eps = self.eps
        if temperature != 1.0:
            L_p, eps = temperature * L_p, eps * temperature**2
        z = mrf_sample(mu_p, L_p, mask, eps, generator)  # [B, n, d]
        return z, mask

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}(max_nodes={self.max_nodes}, '
                f'latent_channels={self.latent_channels}, full_covariance='
                f'{self.full_covariance}, matching={self.matching})')


__all__ = [
    'GaussianMRFHead', 'mrf_sample', 'kl_mvn', 'kl_mvn_standard', 'kl_diag',
    'LearnablePrior'
]
