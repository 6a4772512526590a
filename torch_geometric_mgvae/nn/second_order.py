r"""Second-order :math:`\mathbb{S}_n`-equivariant layers on dense blocks.

The second-order message passing of Hy & Kondor, "Multiresolution
Equivariant Graph Variational Autoencoder" (`arXiv:2106.00967
<https://arxiv.org/abs/2106.00967>`_, Example 2, Eq. 3, Proposition 1),
together with the 15 linear equivariant maps of Maron et al., "Invariant and
Equivariant Graph Networks" (`ICLR 2019
<https://arxiv.org/abs/1812.09902>`_).

Every function works on dense per-block tensors (one block per cluster or
per small graph) with a node mask:

* node features ``x``: :math:`[B, n, F]`,
* adjacency ``adj``: :math:`[B, n, n]`, weighted, **symmetric**, zero
  diagonal,
* edge features ``edge_attr``: :math:`[B, n, n, E]` *(optional)*,
* second-order features ``H``: :math:`[B, n, n, C]`,
* ``mask``: :math:`[B, n]` boolean, :obj:`True` on valid nodes.

A block with :math:`m` valid nodes is read on its first :math:`m` rows and
columns. Masks are applied in one place, :func:`apply_mask`; every public
function masks its inputs on entry (so padded garbage never leaks into
valid outputs) and its outputs on exit (so padded outputs are exactly 0).
Between the layers of :class:`SecondOrderEncoder` and
:class:`SecondOrderDecoder` the tensors are already masked, so the
layers skip their entry masks there.
Where an operation sums over a node index we divide by :math:`m` (a mean),
so feature scales do not grow with the block size.
"""
import math
import warnings
from functools import partial
from typing import Any, Dict, List, NamedTuple, Optional, Tuple

import torch
from torch import Tensor
from torch_geometric.typing import OptTensor

from torch_geometric_mgvae.nn.checks import check_int

NUM_BASIS = 15
NUM_CONTRACTIONS = 13
#: Gain of the first linear layer of :class:`SecondOrderConv` at
#: initialisation: its weights are :math:`\mathcal{N}(0, g^2 / (K C))` over
#: the :math:`K C` concatenated maps. He initialisation would use
#: :math:`g = \sqrt{2}`; most maps are means or diagonals, weaker than
#: :math:`H` itself, and :math:`g = 2.5` keeps the RMS of every layer's
#: output between about 0.25 and 2 over 4 layers on sparse, dense and
#: weighted graphs of 5 to 200 nodes (``tests/nn/test_second_order.py``).
INIT_GAIN = 2.5
# SecondOrderConv processes its blocks in chunks of at most this many
# entries times hidden channels (B n^2 h), so its transient buffers (5 of
# this size) stay small; the result does not depend on it.
CHUNK_ELEMENTS = 2**22


def apply_mask(t: Tensor, mask: Tensor, order: int) -> Tensor:
    r"""Zero the padded entries of a dense tensor (the one place masks are
    applied, cf. DiGress' ``PlaceHolder.mask``).

    Args:
        t (torch.Tensor): A tensor whose leading dimensions are
            :math:`[B, n]` (:obj:`order=1`) or :math:`[B, n, n]`
            (:obj:`order=2`); trailing dimensions (channels, a factor's
            column index) are kept.
        mask (torch.Tensor): Valid nodes :math:`[B, n]`.
        order (int): 1 masks the node index, 2 masks both node indices.

    Uses :func:`torch.where`, so a padded :obj:`nan`/:obj:`inf` becomes an
    exact 0 too.
    """
    if order == 1:
        m = mask  # [B, n]
    elif order == 2:
        m = mask.unsqueeze(2) & mask.unsqueeze(1)  # [B, n, n]
    else:
        raise ValueError(f"'order' must be 1 or 2 (got {order})")
    m = m.view(m.shape + (1, ) * (t.dim() - m.dim()))
    return torch.where(m, t, torch.zeros((), dtype=t.dtype, device=t.device))


def _num_nodes(mask: Tensor, dtype: torch.dtype) -> Tensor:
    r"""Valid nodes per block as a float :math:`[B]`, at least 1 so empty
    blocks divide by 1 (their sums are 0 anyway)."""
    return mask.sum(dim=1).clamp(min=1).to(dtype)  # [B]


def _t(h: Tensor) -> Tensor:
    r"""Transpose the two node indices of :math:`[B, n, n, C]`."""
    return h.transpose(1, 2)


def normalize_adjacency(adj: Tensor, mask: Tensor) -> Tensor:
    r"""The block adjacency the second-order layers read: masked and divided
    by its largest weight, :math:`\hat{A} = A / \max_{ij} A_{ij}` per block
    (0 for a block without edges).

    An unweighted graph is unchanged; the weighted coarse levels of Def. 2
    (an entry counts the edges between two clusters, tens on a molecule,
    hundreds on a citation graph) are brought to :math:`[0, 1]`, so no
    product with :math:`A` grows with the size of the clusters below. The
    relative weights are kept, and a per-block scalar keeps every layer
    permutation equivariant.

    Args:
        adj (torch.Tensor): Adjacency :math:`[B, n, n]`, non-negative.
        mask (torch.Tensor): Valid nodes :math:`[B, n]`.

    Returns:
        :math:`[B, n, n]`, 0 at padded entries.
    """
    A = apply_mask(adj, mask, 2)  # [B, n, n]
    top = A.flatten(1).amax(dim=1) if A.numel() else A.new_zeros(A.size(0))
    top = torch.where(top > 0, top, torch.ones_like(top))  # [B]
    return A / top.view(-1, 1, 1)


def _block_adjacency(adj: Tensor, mask: Tensor, normalize: bool) -> Tensor:
    r"""The adjacency the layers read: :func:`normalize_adjacency` or, with
    :obj:`normalize=False`, the masked adjacency as given."""
    return normalize_adjacency(adj, mask) if normalize else \
        apply_mask(adj, mask, 2)


def _scaled_degree(deg: Tensor, m: Tensor, normalize: bool) -> Tensor:
    r""":math:`\tilde{d}` :math:`[B, n]`: the degree relative to the mean
    degree, or with :obj:`normalize=False` the degree over :math:`m`
    (:obj:`m` :math:`[B]`)."""
    if not normalize:
        return deg / m.view(-1, 1)
    d_bar = deg.sum(dim=1, keepdim=True) / m.view(-1, 1)  # [B, 1]
    return _relative_degree(deg, d_bar)


def _relative_degree(deg: Tensor, d_bar: Tensor) -> Tensor:
    r""":math:`d_i / \bar{d}` :math:`[B, n]` (0 in a block without
    edges)."""
    return torch.where(d_bar > 0, deg / d_bar.clamp(min=1e-30),
                       torch.zeros_like(deg))


def equivariant_basis_2to2(H: Tensor, mask: Tensor) -> Tensor:
    r"""The 15 linear :math:`\mathbb{S}_n`-equivariant maps from second- to
    second-order tensors (Maron et al., 2019), applied channel by channel.

    With :math:`m` valid nodes, :math:`r_i = \frac{1}{m}\sum_k H_{ik}`
    (row means), :math:`c_i = \frac{1}{m}\sum_k H_{ki}` (column means),
    :math:`t = \frac{1}{m}\sum_k H_{kk}` (mean of the diagonal) and
    :math:`s = \frac{1}{m^2}\sum_{k,l} H_{kl}` (mean of all entries):

    .. math::
        \begin{array}{lll}
        L_1 = \delta_{ij} H_{ii} & L_2 = \delta_{ij}\, t &
        L_3 = \delta_{ij}\, r_i \\
        L_4 = \delta_{ij}\, c_i & L_5 = \delta_{ij}\, s &
        L_6 = r_i \\
        L_7 = r_j & L_8 = c_i & L_9 = c_j \\
        L_{10} = H_{ij} & L_{11} = H_{ji} & L_{12} = H_{ii} \\
        L_{13} = H_{jj} & L_{14} = t & L_{15} = s
        \end{array}

    :math:`L_1`-:math:`L_5` live on the diagonal, :math:`L_6`-:math:`L_9`
    broadcast row/column means along rows or columns, :math:`L_{10},
    L_{11}` are the identity and the transpose, :math:`L_{12}, L_{13}`
    broadcast the diagonal, :math:`L_{14}, L_{15}` broadcast the two
    invariants to all entries. They span the :math:`\mathrm{bell}(4) = 15`
    dimensional space of equivariant linear maps. Maron et al. use sums;
    we use means (divide by :math:`m` and :math:`m^2`), so the scale of
    the outputs does not grow with the number of nodes.

    Args:
        H (torch.Tensor): Second-order features :math:`[B, n, n, C]`.
        mask (torch.Tensor): Valid nodes :math:`[B, n]`.

    Returns:
        :math:`[B, n, n, 15 C]`; map :math:`L_k` occupies the channels
        :math:`(k-1) C, \dots, k C - 1`. Padded entries are 0.
    """
    B, n, _, C = H.shape
    H = apply_mask(H, mask, 2)  # [B, n, n, C]
    m = _num_nodes(mask, H.dtype).view(B, 1, 1)  # [B, 1, 1]
    eye = torch.eye(n, dtype=H.dtype, device=H.device).view(1, n, n, 1)

    diag = H.diagonal(dim1=1, dim2=2).transpose(1, 2)  # [B, n, C]
    row = H.sum(dim=2) / m  # [B, n, C]
    col = H.sum(dim=1) / m  # [B, n, C]
    tr = diag.sum(dim=1, keepdim=True) / m  # [B, 1, C]
    tot = row.sum(dim=1, keepdim=True) / m  # [B, 1, C]

    def on_diag(v: Tensor) -> Tensor:  # [B, n or 1, C] -> [B, n, n, C]
        return eye * v.unsqueeze(2)

    def along_j(v: Tensor) -> Tensor:  # out_ij = v_i, [B, n, n, C]
        return v.unsqueeze(2).expand(B, n, n, C)

    def along_i(v: Tensor) -> Tensor:  # out_ij = v_j, [B, n, n, C]
        return v.unsqueeze(1).expand(B, n, n, C)

    maps = [
        on_diag(diag),  # L1
        on_diag(tr),  # L2
        on_diag(row),  # L3
        on_diag(col),  # L4
        on_diag(tot),  # L5
        along_j(row),  # L6
        along_i(row),  # L7
        along_j(col),  # L8
        along_i(col),  # L9
        H,  # L10
        _t(H),  # L11
        along_j(diag),  # L12
        along_i(diag),  # L13
        along_j(tr.expand(B, n, C)),  # L14
        along_j(tot.expand(B, n, C)),  # L15
    ]
    return apply_mask(torch.cat(maps, dim=-1), mask, 2)  # [B, n, n, 15C]


def contractions_eq3(adj: Tensor, H: Tensor, mask: Tensor,
                     normalize: bool = True) -> Tensor:
    r"""Second-order contractions of :math:`\mathcal{A} \otimes \mathcal{H}`
    (the paper's Eq. 3), channel by channel.

    :math:`(\mathcal{A} \otimes \mathcal{H})_{abcd} = A_{ab} H_{cd}` is a
    fourth-order tensor; we contract it to second order in three ways.
    :math:`A` is the adjacency scaled to a largest weight of 1
    (:func:`normalize_adjacency`). With :math:`m` valid nodes,
    :math:`d_a = \sum_b A_{ab}` (degree),
    :math:`P = D^{-1} A` (row-normalised adjacency, as in Eq. 2; a node
    without neighbours gets a zero row), :math:`\tilde{d} = d / \bar{d}`
    (the degree relative to the mean degree
    :math:`\bar{d} = \frac{1}{m}\sum_a d_a`, i.e. the sum over edges
    divided by the edge count; 0 without edges),
    :math:`\bar{a} = \frac{1}{m^2}\sum_{ab} A_{ab}` (the density),
    :math:`\bar{h} = \frac{1}{m^2}\sum_{cd} H_{cd}`, and row/column means
    :math:`r_i = \frac{1}{m}\sum_k H_{ik}`,
    :math:`c_i = \frac{1}{m}\sum_k H_{ki}`:

    **Identify-and-sum** (identify one index of :math:`A` with one of
    :math:`H` and sum over it; normalised by the degree of the remaining
    index of :math:`A`, i.e. :math:`D^{-1}A` as in Eq. 2):

    .. math::
        T_1 = P H,\quad T_2 = P H^{\top},\quad
        T_3 = H P^{\top} = T_2^{\top},\quad T_4 = H^{\top} P^{\top} =
        T_1^{\top}

    e.g. :math:`(T_1)_{ij} = \frac{1}{d_i}\sum_k A_{ik} H_{kj}`.

    **Identify without summing** (identify both index pairs):

    .. math::
        T_5 = A \odot H,\quad T_6 = A \odot H^{\top} = T_5^{\top}

    **Sum-out** (Def. 11: sum two indices separately, normalised by the
    node and edge counts as above, so that every form is of the order of
    :math:`H` whatever the size of the graph):

    .. math::
        T_7 = \bar{a}\, H \;(\downarrow_{1,2}),\quad
        T_8 = \bar{a}\, H^{\top},\quad
        T_9 = \bar{h}\, A \;(\downarrow_{3,4}),

        (T_{10})_{ij} = \tilde{d}_i\, c_j \;(\downarrow_{1,3}),\quad
        (T_{11})_{ij} = c_i\, \tilde{d}_j,\quad
        (T_{12})_{ij} = \tilde{d}_i\, r_j \;(\downarrow_{1,4}),\quad
        (T_{13})_{ij} = r_i\, \tilde{d}_j.

    A contraction leaves two free indices whose order is a choice, so every
    form whose transpose is a different tensor appears in both orders
    (:math:`T_3, T_4, T_6, T_8, T_{11}, T_{13}`). Dropped as redundant,
    because :math:`A` is symmetric with a zero diagonal: identifying
    :math:`a` instead of :math:`b` with an index of :math:`H` (it gives
    the same tensor), the sum-outs :math:`\downarrow_{2,3}` and
    :math:`\downarrow_{2,4}` (equal to :math:`\downarrow_{1,3}`,
    :math:`\downarrow_{1,4}`), and every form that identifies :math:`a`
    with :math:`b` (:math:`A_{aa} = 0`). Contractions inside :math:`H`
    alone (its trace, diagonal, ...) are not products with :math:`A`; the
    Maron basis (:func:`equivariant_basis_2to2`) provides them.

    Args:
        adj (torch.Tensor): Symmetric adjacency :math:`[B, n, n]`.
        H (torch.Tensor): Second-order features :math:`[B, n, n, C]`.
        mask (torch.Tensor): Valid nodes :math:`[B, n]`.
        normalize (bool): As above; :obj:`False` reads the masked
            adjacency as given and :math:`\tilde{d} = d / m` (the earlier
            definition, whose forms grow with the edge weights and shrink
            with :math:`m`). (default: :obj:`True`)

    Returns:
        :math:`[B, n, n, 13 C]`; form :math:`T_k` occupies the channels
        :math:`(k-1) C, \dots, k C - 1`. Padded entries are 0.
    """
    B, n, _, C = H.shape
    H = apply_mask(H, mask, 2)  # [B, n, n, C]
    A = _block_adjacency(adj.to(H.dtype), mask, normalize)  # [B, n, n]
    m = _num_nodes(mask, H.dtype).view(B, 1, 1)  # [B, 1, 1]

    deg = A.sum(dim=2)  # [B, n]
    inv = torch.where(deg > 0, 1.0 / deg.clamp(min=1e-30),
                      torch.zeros_like(deg))  # [B, n]
    P = inv.unsqueeze(2) * A  # [B, n, n]

    # (P X)_{ij} = sum_k P_ik X_kj for every channel:
    PH = torch.einsum('bik,bkjc->bijc', P, H)  # [B, n, n, C]
    PHt = torch.einsum('bik,bjkc->bijc', P, H)  # [B, n, n, C]
    AH = A.unsqueeze(-1) * H  # [B, n, n, C]

    a_bar = (A.sum(dim=(1, 2)) / m.view(B)**2).view(B, 1, 1, 1)
    h_bar = H.sum(dim=(1, 2)).view(B, 1, 1, C) / m.view(B, 1, 1, 1)**2
    d = _scaled_degree(deg, m.view(B), normalize).view(B, n, 1, 1)
    row = H.sum(dim=2) / m  # [B, n, C]
    col = H.sum(dim=1) / m  # [B, n, C]

    forms = [
        PH,  # T1
        PHt,  # T2
        _t(PHt),  # T3
        _t(PH),  # T4
        AH,  # T5
        _t(AH),  # T6
        a_bar * H,  # T7
        a_bar * _t(H),  # T8
        h_bar * A.unsqueeze(-1),  # T9
        d * col.unsqueeze(1),  # T10
        _t(d * col.unsqueeze(1)),  # T11
        d * row.unsqueeze(1),  # T12
        _t(d * row.unsqueeze(1)),  # T13
    ]
    return apply_mask(torch.cat(forms, dim=-1), mask, 2)  # [B, n, n, 13C]


class _AdjStats(NamedTuple):
    r"""Adjacency-derived quantities shared by every layer of a stack."""
    A: Tensor  # [B, n, n] masked adjacency
    P: Tensor  # [B, n, n] D^{-1} A (zero rows for isolated nodes)
    a_bar: Tensor  # [B] mean of A over the valid pairs
    d: Tensor  # [B, n] degree / mean degree
    m: Tensor  # [B] valid nodes, at least 1


def _adj_stats(adj: Tensor, mask: Tensor, dtype: torch.dtype,
               normalize: bool = True) -> _AdjStats:
    r"""The quantities :func:`contractions_eq3` derives from the adjacency,
    computed once (they are the same for every layer)."""
    A = _block_adjacency(adj.to(dtype), mask, normalize)  # [B, n, n]
    m = _num_nodes(mask, dtype)  # [B]
    deg = A.sum(dim=2)  # [B, n]
    inv = torch.where(deg > 0, 1.0 / deg.clamp(min=1e-30),
                      torch.zeros_like(deg))  # [B, n]
    P = inv.unsqueeze(2) * A  # [B, n, n]
    a_bar = A.sum(dim=(1, 2)) / m**2  # [B]
    return _AdjStats(A, P, a_bar, _scaled_degree(deg, m, normalize), m)


# The factorised SecondOrderConv.forward. Map k of features() (T1-T13 are
# k = 0-12, L1-L15 are k = 13-27) enters the first linear layer as
# map_k(H) W_k, W_k = lin1.weight[:, k C:(k + 1) C]^T [C, h]; as map_k acts
# on the node indices only, map_k(H) W_k = map_k(H W_k). With r, c, diag
# the row means, column means and diagonal of H [B, n, C], t, s the means
# of its diagonal and of all entries [B, C], d = deg / mean deg [B, n], the
# pre-activation is
#   acc = S_id + S_tr^T + diag(w),
#   S_id = H W22 + a_bar H W6 + A * (H W4 + q) + P (H W0 + (H W1)^T)
#          + u_i + d_i g_j + bias,
#   S_tr = H W23 + a_bar H W7 + A * (H W5) + P (H W3 + (H W2)^T)
#          + v_i + d_i f_j,
# where the first-order vectors u, v, g, f, w [B, n, h] and the constants
# q [B, h] are small projections of (r, c, diag) and (t, s) (tables below);
# S_tr gathers the maps that end in a transpose (L7, L9, L11, L13, T3, T4,
# T6, T8, T11, T13), added as a view. Only H W_k is ever [B, n, n, h].
# Full second-order slices of S_id and S_tr: [self, a_bar-scaled self,
# A-product, P-product, transposed P-product].
_FULL_ID = (22, 6, 4, 0, 1)  # L10, T7, T5, T1, T2
_FULL_TR = (23, 7, 5, 3, 2)  # L11, T8, T6, T4, T3
# For a symmetric H the pairs (L10, L11), (T7, T8), (T5, T6), (T1, T2),
# (T4, T3) coincide up to a transpose of the output (SecondOrderConv.
# _symmetric_terms):
_SYM_A = (22, 6, 4, 0, 3)
_SYM_B = (23, 7, 5, 1, 2)
# Both groups in one GEMM, ordered so that every kind of term of S_id and
# S_tr is one contiguous [.., 2h] slice: P-products, transposed
# P-products, self, a_bar-scaled self, A-products.
_FULL_BOTH = tuple(zip(_FULL_ID, _FULL_TR))
_FULL_BOTH = _FULL_BOTH[3:5] + _FULL_BOTH[:3]
_FULL_BOTH = tuple(k for pair in _FULL_BOTH for k in pair)
# First-order inputs [r, c, diag] -> vectors g, f (contractions) and
# u, v, w (Maron maps, only with basis):
_FIRST = (
    (11, 9, None),  # g: T12 d_i r_j, T10 d_i c_j
    (12, 10, None),  # f: T13 r_i d_j, T11 c_i d_j (in S_tr)
    (18, 20, 24),  # u: L6 r_i, L8 c_i, L12 H_ii
    (19, 21, 25),  # v: L7 r_j, L9 c_j, L13 H_jj (in S_tr)
    (15, 16, 13),  # w: L3, L4, L1 on the diagonal
)
# Zeroth-order inputs [t, s] -> q (contractions), u, w (Maron maps):
_ZEROTH = (
    (None, 8),  # q: T9 h_bar A (h_bar = s)
    (26, 27),  # u: L14 t, L15 s
    (14, 17),  # w: L2 t, L5 s on the diagonal
)


def _gather(W: Tensor, table: Tuple[Tuple[Optional[int], ...], ...],
            num_maps: int) -> Tensor:
    r"""Stacks first-layer weight slices into one matrix.

    Args:
        W (torch.Tensor): The first layer's weight viewed as
            :math:`[h, K + 1, C]` (map-major, as in :meth:`features`),
            with a zero slice :math:`K` appended.
        table: :math:`n_{out}` rows of :math:`n_{in}` map indices
            (:obj:`None`, or a Maron map missing without :obj:`basis`,
            picks the zero slice).
        num_maps (int): :math:`K`.

    Returns:
        :math:`[n_{in} C, n_{out} h]`: input block :math:`a` to output
        block :math:`o` is :math:`W_{k}^{\top}` with :math:`k` =
        :obj:`table[o][a]`.
    """
    h, _, C = W.shape
    key = (table, num_maps, W.device)
    idx = _GATHER_INDEX.get(key)
    if idx is None:  # built once per table (it is the same every call)
        idx = _GATHER_INDEX[key] = torch.tensor(
            [[num_maps if k is None or k >= num_maps else k for k in row]
             for row in table], device=W.device)
    n_out, n_in = idx.shape
    Ws = W.index_select(1, idx.view(-1)).view(h, n_out, n_in, C)
    return Ws.permute(2, 3, 1, 0).reshape(n_in * C, n_out * h)


_GATHER_INDEX: Dict[Any, Tensor] = {}
_COMBINE_COEF: Dict[Any, Tensor] = {}

# Sums of first-layer slices the complete-graph path reads
# (SecondOrderConv._complete_terms): the three parts c_0, c_1, c_2 of M_1
# (S_id) and of M_2 (S_tr), and W_4 + W_5 for the diagonal.
_COMPLETE_ID = ((22, 4), (6, ), (0, 2))
_COMPLETE_TR = ((23, 5), (7, ), (1, 3))
_COMPLETE_DIAG = ((4, 5), )
# (the column sums' [2C, 2h] matrix: inputs (col, row), outputs (e_j, e_i))
_COMPLETE_RC = ((0, 1), (3, 2))


class _Weights:
    r"""The first linear layer of a :class:`SecondOrderConv` in the forms
    its factorised forward reads: the weight as :math:`[h, K + 1, C]` (a
    zero slice appended for missing maps), its slices stacked into
    matrices (:func:`_gather`) and summed (:meth:`combine`). Each form is
    built once and shared by every chunk and size bucket of one forward
    call, so the autograd graph holds one copy of each, and the backward
    pass one gradient scatter into the weight per form instead of one per
    chunk and bucket. It must not outlive that call (the parameters
    change).

    Args:
        conv (SecondOrderConv): The layer.
        channels (slice, optional): Only these input channels.
    """
    def __init__(self, conv: 'SecondOrderConv',
                 channels: Optional[slice] = None):
        h, C = conv.hidden_channels, conv.in_channels
        self.K = conv.lin1.in_features // C  # number of maps
        W = conv.lin1.weight.view(h, self.K, C)
        if channels is not None:
            W = W[:, :, channels]
        self.W = torch.cat([W, W.new_zeros(h, 1, W.size(-1))],
                           dim=1)  # [h, K + 1, C]
        self.channels = channels
        self._made: Dict[Any, Tensor] = {}

    def gather(self, table: Tuple[Tuple[Optional[int], ...], ...]
               ) -> Tensor:
        r""":func:`_gather` of :obj:`table`: :math:`[n_{in} C, n_{out}
        h]`."""
        key = ('gather', table)
        if key not in self._made:
            self._made[key] = _gather(self.W, table, self.K)
        return self._made[key]

    def combine(self, rows: Tuple[Tuple[int, ...], ...]) -> Tensor:
        r"""Sums of slices, :math:`[R, C, h]`: row :math:`r` is
        :math:`\sum_{k \in \text{rows}[r]} W_k^{\top}` (a missing map adds
        0), in one product with a 0/1 coefficient matrix."""
        key = ('combine', rows)
        if key not in self._made:
            ckey = (rows, self.K, self.W.device, self.W.dtype)
            coef = _COMBINE_COEF.get(ckey)
            if coef is None:  # the same every call
                coef = torch.zeros(len(rows), self.K + 1,
                                   dtype=self.W.dtype, device=self.W.device)
                for r, row in enumerate(rows):
                    for k in row:
                        if k < self.K:
                            coef[r, k] += 1
                _COMBINE_COEF[ckey] = coef
            self._made[key] = torch.einsum('rk,hkc->rch', coef, self.W)
        return self._made[key]


class SecondOrderConv(torch.nn.Module):
    r"""One layer of the paper's second-order message passing (Eq. 3):

    .. math::
        \mathcal{M}_t = \mathcal{W}_t \Big[ \bigoplus_k
        T_k(\mathcal{A}, \mathcal{H}_{t-1}) \;\oplus\; \bigoplus_{k=1}^{15}
        L_k(\mathcal{H}_{t-1}) \Big]

    where :math:`T_k` are the 13 contractions of
    :math:`\mathcal{A} \otimes \mathcal{H}` (:func:`contractions_eq3`),
    :math:`L_k` the 15 linear equivariant maps
    (:func:`equivariant_basis_2to2`, only with :obj:`basis=True`), and
    :math:`\mathcal{W}_t` a two-layer MLP (Linear-ReLU-Linear) applied to
    every entry :math:`(i, j)` over the channels. It is
    :math:`\mathbb{S}_n`-equivariant (Proposition 1).

    :meth:`features` builds the :math:`K C`-channel concatenation
    (:math:`K = 28`, or 13 without the basis) literally; it is the
    reference. :meth:`forward` computes the same function without it: the
    first linear layer commutes with every map (they act on the node
    indices only), so each map is applied *after* its slice of the first
    weight, :math:`L_k(H) W_k = L_k(H W_k)`. Maps that broadcast means,
    diagonals or invariants project those :math:`[B, n, C]` or
    :math:`[B, C]` quantities and broadcast-add them; the maps on the
    whole tensor (identity, transpose, :math:`A \odot H`, the
    :math:`P`-products, ...) need 10 projections :math:`H W_k` (one GEMM
    with :math:`10h` outputs), combined by one batched :math:`P`-product
    over :math:`2h` channels, transposes (views) and in-place additions
    into one :math:`[B, n, n, h]` accumulator. That costs
    :math:`O(n^3 h + 10\, n^2 C h)` time and
    :math:`O(n^2 (C + 10h))` memory per block instead of
    :math:`O(n^3 C + K n^2 C h)` and :math:`O(K n^2 C)`; blocks are
    processed in chunks of :obj:`CHUNK_ELEMENTS`.

    Args:
        in_channels (int): Channels :math:`C` of :math:`\mathcal{H}`.
        out_channels (int): Output channels.
        hidden_channels (int, optional): Width of the MLP's hidden layer.
            (default: :obj:`out_channels`)
        basis (bool): Also feed the 15 Maron maps. (default: :obj:`True`)
        normalize (bool): Read the adjacency scaled to a largest weight of
            1 and the degrees relative to the mean degree
            (:func:`contractions_eq3`), with the scale-aware
            initialisation of :meth:`reset_parameters`, so activations are
            of order one at initialisation whatever the graph size and
            edge weights. :obj:`False` gives the earlier, unnormalised
            layer (raw adjacency, degrees over :math:`m`, PyTorch's
            default initialisation), kept to reproduce stored models.
            (default: :obj:`True`)

    Shapes:
        - **input:** :math:`H` :math:`(B, n, n, C_{in})`, adjacency
          :math:`(B, n, n)`, mask :math:`(B, n)`
        - **output:** :math:`(B, n, n, C_{out})`, 0 at padded entries
    """
    # State dicts record it: version 1 came from the unnormalised layers
    # (before issue 17), 2 from layers that have the normalize option.
    _version = 2

    def __init__(self, in_channels: int, out_channels: int,
                 hidden_channels: Optional[int] = None, basis: bool = True,
                 normalize: bool = True):
        super().__init__()
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.hidden_channels = hidden_channels or out_channels
        self.basis = basis
        self.normalize = normalize
        num_maps = NUM_CONTRACTIONS + (NUM_BASIS if basis else 0)
        self.lin1 = torch.nn.Linear(num_maps * in_channels,
                                    self.hidden_channels)
        self.lin2 = torch.nn.Linear(self.hidden_channels, out_channels)
        self.reset_parameters()

    def _load_from_state_dict(self, state_dict, prefix, local_metadata,
                              *args, **kwargs):
        version = local_metadata.get('version')
        if version is not None and version < 2 and self.normalize:
            warnings.warn(
                "Loading second-order weights saved before the layers were "
                "normalised into normalised layers: the model computes a "
                "different function. Build it with "
                "normalize_second_order=False (SecondOrderConv: "
                "normalize=False) to reproduce the saved one.",
                stacklevel=2)
        super()._load_from_state_dict(state_dict, prefix, local_metadata,
                                      *args, **kwargs)

    def reset_parameters(self):
        r"""Scale-aware initialisation: zero biases, the first layer
        :math:`\mathcal{N}(0, g^2 / (K C))` with :obj:`INIT_GAIN`
        :math:`g`, the second :math:`\mathcal{N}(0, 1 / h)`, so that the
        outputs are of the order of the inputs whatever the graph size
        (PyTorch's default, :math:`\mathcal{U}(\pm 1/\sqrt{\text{fan-in}})`
        weights and biases, shrank the signal about threefold per linear
        layer until the biases dominated; it is kept with
        :obj:`normalize=False`)."""
        if not self.normalize:
            self.lin1.reset_parameters()
            self.lin2.reset_parameters()
            return
        fan_in = self.lin1.in_features
        torch.nn.init.normal_(self.lin1.weight, std=INIT_GAIN / fan_in**0.5)
        torch.nn.init.zeros_(self.lin1.bias)
        torch.nn.init.normal_(self.lin2.weight,
                              std=self.lin2.in_features**-0.5)
        torch.nn.init.zeros_(self.lin2.bias)

    def features(self, H: Tensor, adj: Tensor, mask: Tensor) -> Tensor:
        r"""The concatenated equivariant features fed to the MLP."""
        feats = [contractions_eq3(adj, H, mask,
                                  self.normalize)]  # [B, n, n, 13C]
        if self.basis:
            feats.append(equivariant_basis_2to2(H, mask))  # [B, n, n, 15C]
        return torch.cat(feats, dim=-1)  # [B, n, n, K C]

    def forward(self, H: Tensor, adj: Tensor, mask: Tensor) -> Tensor:
        r"""Equal to ``lin2(relu(lin1(features(H, adj, mask))))``, masked,
        but evaluated without the :math:`K C` features (see the class
        description)."""
        H = apply_mask(H, mask, 2)  # [B, n, n, C]
        st = _adj_stats(adj, mask, H.dtype, self.normalize)
        return self._forward(H, st, mask)

    def weights(self, channels: Optional[slice] = None) -> _Weights:
        r"""The first layer's weights as the factorised forward reads them
        (:class:`_Weights`), for one forward call on the input channels
        :obj:`channels` (all by default)."""
        return _Weights(self, channels)

    def _forward(self, H: Tensor, st: _AdjStats, mask: Tensor,
                 symmetric: bool = False, complete: bool = False,
                 channels: Optional[slice] = None, bias: bool = True,
                 pre: OptTensor = None, activate: bool = True,
                 weights: Optional[_Weights] = None) -> Tensor:
        r"""The factorised forward on a masked :obj:`H`, in chunks of
        blocks (:obj:`CHUNK_ELEMENTS`): blocks are independent, and the
        autograd graph of a chunk holds only that chunk's buffers, so the
        peak memory of the forward and the backward pass shrinks with the
        chunk size while the saved tensors stay the same. With
        :obj:`symmetric=True` the caller guarantees :math:`H^{\top} = H`
        (and a symmetric adjacency), and half the projections are saved
        (:meth:`_symmetric_terms`). With :obj:`complete=True` the caller
        guarantees that :obj:`st` describes the complete graph on the valid
        nodes (:class:`SecondOrderDecoder` without an adjacency), and every
        map collapses to one or two projections (:meth:`_complete_terms`).

        The pre-activation (the first linear layer's output) is linear in
        the input channels, so it can be computed in parts: :obj:`H` may
        hold only the input channels :obj:`channels` (a slice; all by
        default), :obj:`bias` adds the first layer's bias, :obj:`pre` (a
        pre-activation :math:`[B, n, n, h]` of the other channels) is
        added, and :obj:`activate=False` returns the (masked)
        pre-activation instead of the output.

        :obj:`weights` (:meth:`weights`, for the same :obj:`channels`)
        lets callers that run the layer on several parts of a batch (size
        buckets) share the first layer's gathered weights; by default they
        are built here, once for all chunks.
        """
        B, n = mask.shape
        step = max(1, CHUNK_ELEMENTS // max(1, n * n * self.hidden_channels))
        if weights is None:
            weights = self.weights(channels)
        elif weights.channels != channels:
            raise ValueError("'weights' were built for other input channels")
        opts = (symmetric, complete, weights, bias)
        if B <= step:
            return self._forward_chunk(H, st, mask, *opts, pre, activate)
        # split (not slicing), so the backward pass concatenates the chunk
        # gradients once instead of padding each to the full size:
        pres = [None] * B if pre is None else pre.split(step)
        chunks = zip(H.split(step), zip(*(t.split(step) for t in st)),
                     mask.split(step), pres)
        return torch.cat([
            self._forward_chunk(H_c, _AdjStats(*st_c), mask_c, *opts, pre_c,
                                activate)
            for H_c, st_c, mask_c, pre_c in chunks
        ], dim=0)

    @staticmethod
    def _symmetric_terms(H: Tensor, wts: _Weights, st: _AdjStats,
                         A4: Tensor) -> Tensor:
        r"""The second-order terms of the pre-activation for a symmetric
        :math:`H` (:math:`H^{\top} = H`): every map that ends in a
        transpose equals its untransposed twin up to the order of the free
        indices, so the slices pair up, :math:`H W_{22} + (H W_{23})^{\top}
        = H (W_{22} + W_{23})` and so on, and 5 projections
        :math:`H W` replace 10:

        .. math::
            H (W_{22} + W_{23}) + \bar{a} H (W_6 + W_7) + A \odot
            H (W_4 + W_5) + P H (W_0 + W_1) + (P H (W_2 + W_3))^{\top}
        """
        B, n, _, C = H.shape
        h = wts.W.size(0)
        Wf = wts.combine(tuple(zip(_SYM_A, _SYM_B)))  # [5, C, h]
        Wf = Wf.permute(1, 0, 2).reshape(C, 5 * h)  # [C, 5h]
        G = H.reshape(B * n * n, C) @ Wf  # one GEMM, [B n^2, 5h]
        g_self, g_a, g_A, g_P, g_Pt = G.view(B, n, n, 5 * h).split(h, -1)
        S = g_self + torch.bmm(st.P, g_P.reshape(B, n, n * h)).view(
            B, n, n, h)
        S.add_(torch.bmm(st.P, g_Pt.reshape(B, n, n * h)).view(
            B, n, n, h).transpose(1, 2))
        S.addcmul_(st.a_bar.view(B, 1, 1, 1), g_a)
        S.addcmul_(A4, g_A)
        return S

    @staticmethod
    def _general_terms(H: Tensor, wts: _Weights, st: _AdjStats,
                       A4: Tensor) -> Tensor:
        r"""The second-order terms of the pre-activation for any :math:`H`
        and adjacency, :math:`S_{id} + S_{tr}^{\top}` with

        .. math::
            S_{id} = H W_{22} + \bar{a} H W_6 + A \odot H W_4 +
            P (H W_0 + (H W_1)^{\top}), \quad
            S_{tr} = H W_{23} + \bar{a} H W_7 + A \odot H W_5 +
            P (H W_3 + (H W_2)^{\top}),

        both sides at once: the 10 projections in one GEMM, the two
        :math:`P`-products in one batched GEMM over :math:`2h` channels.
        """
        B, n, _, C = H.shape
        h = wts.W.size(0)
        Wf = wts.gather(tuple((k, ) for k in _FULL_BOTH))  # [C, 10h]
        G = (H.reshape(B * n * n, C) @ Wf).view(B, n, n, 10 * h)
        g_P, g_Pt, g_self, g_a, g_A = G.split(2 * h, dim=-1)  # [.., 2h]
        Q = g_P + g_Pt.transpose(1, 2)  # [B, n, n, 2h]
        # Out of place, so S is no view (in-place ops on a view would each
        # clone the gradient in the backward pass):
        S = g_self + torch.bmm(st.P, Q.view(B, n, n * 2 * h)).view(
            B, n, n, 2 * h)
        S.addcmul_(st.a_bar.view(B, 1, 1, 1), g_a)
        S.addcmul_(A4, g_A)
        S_id, S_tr = S.split(h, dim=-1)
        return S_id + S_tr.transpose(1, 2)

    @staticmethod
    def _complete_terms(H: Tensor, wts: _Weights, st: _AdjStats,
                        symmetric: bool) -> Tuple[Tensor, Tensor, Tensor]:
        r"""The terms of the pre-activation that read :math:`H` at the
        entry or its transpose, when :math:`A` is the complete graph
        :math:`J - I` on the :math:`m` valid nodes. Then
        :math:`A \odot X = X - \delta_{ij} X_{ii}` and
        :math:`(P X)_{ij} = \kappa (\sum_k X_{kj} - X_{ij})` with
        :math:`\kappa = 1 / (m - 1)` (0 for :math:`m = 1`), so the ten
        projections of the general case sum to

        .. math::
            H M_1 + (H M_2)^{\top},\quad
            M_1 = W_{22} + \bar{a} W_6 + W_4 - \kappa (W_0 + W_2),\quad
            M_2 = W_{23} + \bar{a} W_7 + W_5 - \kappa (W_1 + W_3)

        (per-block matrices, one batched GEMM; :math:`H (M_1 + M_2)` for a
        symmetric :math:`H`) plus first-order terms: the column sums
        :math:`\lambda (c W_0 + r W_1)_j` and
        :math:`\lambda (c W_3 + r W_2)_i` (:math:`\lambda = m \kappa`)
        and the diagonal :math:`-H_{ii} (W_4 + W_5)`.

        Returns:
            The second-order part :math:`[B, n, n, h]`, the vectors
            :math:`[B, n, h]` indexed by :math:`j` and by :math:`i`, and
            the diagonal :math:`[B, n, h]`.
        """
        B, n, _, C = H.shape
        h = wts.W.size(0)
        m = st.m  # [B]
        kappa = torch.where(m > 1, 1.0 / (m - 1).clamp(min=1),
                            torch.zeros_like(m)).view(B, 1, 1)
        a = st.a_bar.view(B, 1, 1)

        # M_1, M_2 = c_0 + a_bar c_1 - kappa c_2 per block: the three
        # shared parts stacked, combined by one [B, 3] x [3, C h'] product
        # (one pass over the per-block matrices instead of one per term):
        if symmetric:  # H (M_1 + M_2)
            c = wts.combine(tuple(x + y for x, y in zip(
                _COMPLETE_ID, _COMPLETE_TR)))  # [3, C, h]
        else:  # H [M_1 | M_2]
            c = wts.combine(_COMPLETE_ID + _COMPLETE_TR).view(
                2, 3, C, h).permute(1, 2, 0, 3).reshape(3, C, 2 * h)
        coef = torch.cat([torch.ones_like(a), a, -kappa], dim=-1)  # [B,1,3]
        M = (coef.view(B, 3) @ c.view(3, -1)).view(B, C, c.size(-1))
        if isinstance(H, _Pairs):  # first-order channels kept as such
            G = H.project(M)  # [B, n, n, h or 2h]
        else:
            G = torch.bmm(H.reshape(B, n * n, C), M).view(
                B, n, n, M.size(-1))
        if symmetric:
            S = G
        else:
            g1, g2 = G.split(h, dim=-1)
            S = g1 + g2.transpose(1, 2)  # [B, n, n, h]
        row = H.sum(dim=2)  # [B, n, C], m r
        col = H.sum(dim=1)  # [B, n, C], m c (so lambda c = kappa m c)
        e = torch.cat([col, row], dim=-1) @ wts.gather(
            _COMPLETE_RC)  # [B, n, 2h]
        e_j, e_i = (kappa * e).split(h, dim=-1)
        diag = H.diagonal(dim1=1, dim2=2).transpose(1, 2)  # [B, n, C]
        return S, e_j, e_i, diag @ wts.combine(_COMPLETE_DIAG)[0]

    def _forward_chunk(self, H: Tensor, st: _AdjStats,
                       mask: Tensor, symmetric: bool, complete: bool,
                       wts: _Weights, bias: bool = True,
                       pre: OptTensor = None,
                       activate: bool = True) -> Tensor:
        r"""The factorised forward on a masked :obj:`H` (0 at padded
        entries) with precomputed adjacency statistics :obj:`st` and first
        layer :obj:`wts` (the other options as in :meth:`_forward`).

        Masking: no mask is needed between the entry mask (of :obj:`H`,
        :obj:`A`) and the output mask. Every term evaluated at a valid
        entry :math:`(i, j)` reads only valid entries of :math:`H`,
        :math:`A`, :math:`P` (padded ones are 0, so the sums and matrix
        products over a node index only see valid nodes) and divides by
        the valid count :math:`m`. Padded entries of the accumulator do
        receive garbage (the bias, the row vectors :math:`u_i` at
        :math:`(i, \text{pad})`, the diagonal vector :math:`w` at padded
        diagonal entries), but the MLP acts entry by entry, so this stays
        on padded entries and the output mask zeroes it (and stops its
        gradient).
        """
        B, n, _, C = H.shape
        h = self.hidden_channels
        W = wts.W  # [h, K + 1, C]
        A, P, a_bar, d, m = st

        # First- and zeroth-order statistics of H (cheap, [B, n, C]):
        row = H.sum(dim=2) / m.view(B, 1, 1)  # [B, n, C]
        col = H.sum(dim=1) / m.view(B, 1, 1)  # [B, n, C]
        diag = H.diagonal(dim1=1, dim2=2).transpose(1, 2)  # [B, n, C]
        tr = diag.sum(dim=1) / m.view(B, 1)  # [B, C]
        tot = row.sum(dim=1) / m.view(B, 1)  # [B, C] (also h_bar)
        nf, nz = (5, 3) if self.basis else (2, 1)
        first = torch.cat([row, col, diag], dim=-1) @ wts.gather(
            _FIRST[:nf])  # [B, n, nf h]
        zeroth = torch.cat([tr, tot], dim=-1) @ wts.gather(
            _ZEROTH[:nz])  # [B, nz h]
        first, zeroth = first.split(h, dim=-1), zeroth.split(h, dim=-1)
        g, f, q = first[0], first[1], zeroth[0]
        u = (self.lin1.bias if bias else W.new_zeros(h)).view(
            1, 1, h)  # bias, broadcast everywhere
        v = w = None
        if self.basis:
            u = u + first[2] + zeroth[1].unsqueeze(1)  # [B, n, h]
            v = first[3]  # [B, n, h]
            w = first[4] + zeroth[2].unsqueeze(1)  # [B, n, h]

        # T6 is (A * H)^T (contractions_eq3), so S_tr also takes A itself:
        A4 = A.unsqueeze(-1)  # [B, n, n, 1]
        if complete:
            acc, e_j, e_i, dW = self._complete_terms(H, wts, st, symmetric)
            acc.add_(e_j.unsqueeze(1))  # [B, n, n, h]
            acc.add_(e_i.unsqueeze(2))
            acc.add_(q.view(B, 1, 1, h))  # A * q off the diagonal, below
            acc.addcmul_(d.view(B, n, 1, 1), g.unsqueeze(1))  # d_i g_j
            acc.addcmul_(f.unsqueeze(2), d.view(B, 1, n, 1))  # f_i d_j
            acc.add_(u.unsqueeze(2))  # u_i (and the bias)
            if v is not None:
                acc.add_(v.unsqueeze(1))  # v_j
            acc.diagonal(dim1=1, dim2=2).sub_(
                (dW + q.view(B, 1, h)).transpose(1, 2))
        else:
            terms = (self._symmetric_terms if symmetric else
                     self._general_terms)
            acc = terms(H, wts, st, A4)  # [B, n, n, h]
            acc.addcmul_(A4, q.view(B, 1, 1, h))
            acc.addcmul_(d.view(B, n, 1, 1), g.unsqueeze(1))  # d_i g_j
            acc.addcmul_(f.unsqueeze(2), d.view(B, 1, n, 1))  # f_i d_j
            acc.add_(u.unsqueeze(2))  # u_i (and the bias)
            if v is not None:
                acc.add_(v.unsqueeze(1))  # v_j
        if w is not None:
            acc.diagonal(dim1=1, dim2=2).add_(w.transpose(1, 2))
        if pre is not None:
            acc.add_(pre)
        if not activate:
            return apply_mask(acc, mask, 2)  # [B, n, n, h]
        out = self.lin2(acc.relu_())  # [B, n, n, C_out]
        return apply_mask(out, mask, 2)

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}({self.in_channels}, '
                f'{self.out_channels}, hidden_channels='
                f'{self.hidden_channels}, basis={self.basis}'
                f'{_norm_repr(self.normalize)})')


def to_second_order(x: Tensor, adj: Tensor, mask: Tensor,
                    edge_attr: OptTensor = None,
                    normalize: bool = True) -> Tensor:
    r"""The initial second-order message :math:`\mathcal{H}_0` of Example 2:
    node features as self-loop features on the diagonal, edge features off
    it, and the adjacency itself (scaled to a largest weight of 1,
    :func:`normalize_adjacency`) as a last channel:

    .. math::
        (\mathcal{H}_0)_{ij} = \big[\delta_{ij}\, x_i \;\oplus\;
        (1 - \delta_{ij})\, e_{ij} \;\oplus\; \hat{A}_{ij}\big]

    Args:
        x (torch.Tensor): Node features :math:`[B, n, F]`.
        adj (torch.Tensor): Adjacency :math:`[B, n, n]`.
        mask (torch.Tensor): Valid nodes :math:`[B, n]`.
        edge_attr (torch.Tensor, optional): Edge features
            :math:`[B, n, n, E]`. (default: :obj:`None`)
        normalize (bool): Scale the adjacency channel to a largest weight
            of 1 (:obj:`False`: the weights as given).
            (default: :obj:`True`)

    Returns:
        :math:`[B, n, n, F + E + 1]`, 0 at padded entries.
    """
    B, n, _ = x.shape
    x = apply_mask(x, mask, 1)  # [B, n, F]
    eye = torch.eye(n, dtype=x.dtype, device=x.device)  # [n, n]
    parts = [eye.view(1, n, n, 1) * x.unsqueeze(2)]  # [B, n, n, F]
    if edge_attr is not None:
        off = (1 - eye).view(1, n, n, 1)
        e = apply_mask(edge_attr.to(x.dtype), mask, 2)  # [B, n, n, E]
        parts.append(off * e)
    parts.append(_block_adjacency(adj.to(x.dtype), mask,
                                  normalize).unsqueeze(-1))
    return torch.cat(parts, dim=-1)  # [B, n, n, F + E + 1]


def contract_to_first_order(H: Tensor, mask: Tensor,
                            diag: bool = False) -> Tensor:
    r"""First-order latent :math:`\mathcal{Z} = \mathcal{H}_{\downarrow 1}
    \oplus \mathcal{H}_{\downarrow 2}` (means instead of sums):

    .. math::
        Z_i = \Big[\frac{1}{m}\sum_k H_{ki} \;\oplus\;
        \frac{1}{m}\sum_k H_{ik} \;(\oplus\; H_{ii})\Big]

    Args:
        H (torch.Tensor): :math:`[B, n, n, C]`.
        mask (torch.Tensor): Valid nodes :math:`[B, n]`.
        diag (bool): Append the diagonal as a third part.
            (default: :obj:`False`)

    Returns:
        :math:`[B, n, 2C]` (or :math:`[B, n, 3C]`), 0 at padded nodes.
    """
    H = apply_mask(H, mask, 2)  # [B, n, n, C]
    return _first_order(H, _num_nodes(mask, H.dtype), diag)


def _first_order(H: Tensor, m: Tensor, diag: bool) -> Tensor:
    r""":func:`contract_to_first_order` of a masked :obj:`H` (0 at padded
    entries, so the padded nodes' outputs are 0 too) with :math:`m`
    :math:`[B]` valid nodes per block."""
    m = m.view(-1, 1, 1)  # [B, 1, 1]
    parts = [H.sum(dim=1) / m, H.sum(dim=2) / m]  # 2 x [B, n, C]
    if diag:
        parts.append(H.diagonal(dim1=1, dim2=2).transpose(1, 2))
    return torch.cat(parts, dim=-1)  # [B, n, 2C or 3C]


#: Blocks whose size is at least this fraction of their bucket's padded
#: size share that bucket (:func:`size_buckets`): a block of size
#: :math:`k` padded to :math:`s` costs :math:`s^2` entries instead of
#: :math:`k^2`, at most :math:`1/0.75^2 \approx 1.8` times.
BUCKET_RATIO = 0.75


def size_buckets(mask: Tensor, ratio: float = BUCKET_RATIO
                 ) -> List[Tuple[Tensor, int]]:
    r"""Groups the blocks of a padded batch by size, so that each group can
    be processed padded to its own largest size instead of the batch's.

    Blocks hold their :math:`k` valid nodes first (the layout of
    :func:`torch_geometric.utils.to_dense_batch`). Going from the largest
    size :math:`s` down, a bucket takes every block with
    :math:`k \ge \lceil` :obj:`ratio` :math:`\cdot s \rceil`. Empty blocks
    belong to no bucket.

    Returns:
        A list of :obj:`(index, s)`: the blocks of the bucket (sorted) and
        its padded size.
    """
    sizes = mask.sum(dim=1)  # [B]
    out: List[Tuple[Tensor, int]] = []
    if sizes.numel() == 0:
        return out
    values = sorted(set(sizes.tolist()), reverse=True)
    i = 0
    while i < len(values) and values[i] > 0:
        s = values[i]
        low = max(1, math.ceil(ratio * s - 1e-9))
        while i < len(values) and values[i] >= low:
            i += 1
        index = ((sizes >= low) & (sizes <= s)).nonzero().view(-1)
        out.append((index, int(s)))
    return out


def _gather_blocks(t: Tensor, index: Tensor, s: int, order: int) -> Tensor:
    r"""The blocks :obj:`index` of :obj:`t` cut to :math:`s` nodes."""
    t = t.index_select(0, index)
    return t[:, :s] if order == 1 else t[:, :s, :s]


def _scatter_blocks(parts: List[Tensor], buckets: List[Tuple[Tensor, int]],
                    B: int, n: int, order: int) -> Tensor:
    r"""Inverse of :func:`_gather_blocks` over all buckets: pads every part
    back to :math:`n` nodes and puts its blocks back in place (blocks in
    no bucket are 0)."""
    padded, index = [], []
    for t, (idx, s) in zip(parts, buckets):
        pad = [0, 0] * (t.dim() - 1 - order) + [0, n - s] * order
        padded.append(torch.nn.functional.pad(t, pad))
        index.append(idx)
    ref = parts[0]
    out = ref.new_zeros((B, ) + (n, ) * order + ref.shape[1 + order:])
    return out.index_copy(0, torch.cat(index), torch.cat(padded))


def run_bucketed(fn, mask: Tensor, first: List[OptTensor],
                 second: List[OptTensor], out_orders: Tuple[int, ...]):
    r"""Runs :obj:`fn` on every size bucket of the blocks
    (:func:`size_buckets`) and reassembles its outputs in the padded batch
    layout. Block by block the result is exactly that of one call on the
    whole batch (every block is computed independently of the others and
    of its padding); the cost follows the sizes of the blocks instead of
    the largest.

    Args:
        fn (callable): :obj:`fn(mask, *first, *second)` returning a tuple of
            tensors of the node orders :obj:`out_orders` (masked).
        mask (torch.Tensor): Valid nodes :math:`[B, n]`.
        first (list): First-order inputs :math:`[B, n, \ldots]`
            (or :obj:`None`).
        second (list): Second-order inputs :math:`[B, n, n, \ldots]`
            (or :obj:`None`).
        out_orders (tuple): The node order (1 or 2) of every output, 0
            for a per-block value :math:`[B, \ldots]` (0 for blocks in no
            bucket, the empty ones), or :obj:`None` for an output the
            caller does not use (returned as :obj:`None`, not
            assembled).
    """
    B, n = mask.shape
    buckets = size_buckets(mask)
    if not buckets or (len(buckets) == 1 and buckets[0][1] == n and
                       buckets[0][0].numel() == B):
        return tuple(None if order is None else out for out, order in zip(
            fn(mask, *first, *second), out_orders))
    outs = []
    for idx, s in buckets:
        args = [None if t is None else _gather_blocks(t, idx, s, 1)
                for t in first]
        args += [None if t is None else _gather_blocks(t, idx, s, 2)
                 for t in second]
        outs.append(fn(_gather_blocks(mask, idx, s, 1), *args))
    return tuple(None if order is None else _scatter_blocks(
        [o[k] for o in outs], buckets, B, n, order)
        for k, order in enumerate(out_orders))


class SecondOrderEncoder(torch.nn.Module):
    r"""The paper's second-order encoder (Example 2): :math:`\mathcal{H}_0`
    from :func:`to_second_order`, :obj:`num_layers` :class:`SecondOrderConv`
    layers with ReLU between them (the last layer is left linear so its
    output can parameterise means and covariance factors), then the
    contraction to a first-order latent
    :math:`\mathcal{Z} = \mathcal{H}_{T\downarrow 1} \oplus
    \mathcal{H}_{T\downarrow 2}` (:func:`contract_to_first_order`).

    Args:
        node_channels (int): Node feature size :math:`F`.
        edge_channels (int): Edge feature size :math:`E` (0 for none).
        hidden_channels (int): Channels of the hidden layers.
        out_channels (int): Channels of :math:`\mathcal{H}_T`.
        num_layers (int): Number of :class:`SecondOrderConv` layers.
        basis (bool): Use the Maron basis in every layer.
            (default: :obj:`True`)
        return_diag (bool): Append :math:`\mathrm{diag}(\mathcal{H}_T)` to
            :math:`\mathcal{Z}` as a third part. (default: :obj:`False`)
        normalize (bool): The normalised layers (see
            :class:`SecondOrderConv`). (default: :obj:`True`)

    Shapes:
        - **input:** :math:`x` :math:`(B, n, F)`, adjacency
          :math:`(B, n, n)`, mask :math:`(B, n)`, edge features
          :math:`(B, n, n, E)` *(optional)*
        - **output:** :math:`\mathcal{H}_T` :math:`(B, n, n, C_{out})`
          (:obj:`None` with :obj:`return_second_order=False`) and
          :math:`\mathcal{Z}` :math:`(B, n, 2 C_{out})` (or
          :math:`3 C_{out}`)
    """
    def __init__(self, node_channels: int, edge_channels: int,
                 hidden_channels: int, out_channels: int, num_layers: int,
                 basis: bool = True, return_diag: bool = False,
                 normalize: bool = True):
        super().__init__()
        node_channels = check_int('node_channels', node_channels, 0)
        edge_channels = check_int('edge_channels', edge_channels, 0)
        hidden_channels = check_int('hidden_channels', hidden_channels)
        out_channels = check_int('out_channels', out_channels)
        num_layers = check_int('num_layers', num_layers)
        self.node_channels = node_channels
        self.edge_channels = edge_channels
        self.hidden_channels = hidden_channels
        self.out_channels = out_channels
        self.num_layers = num_layers
        self.basis = basis
        self.return_diag = return_diag
        self.normalize = normalize
        dims = ([node_channels + edge_channels + 1] +
                [hidden_channels] * (num_layers - 1) + [out_channels])
        self.convs = torch.nn.ModuleList([
            SecondOrderConv(dims[i], dims[i + 1], hidden_channels, basis,
                            normalize) for i in range(num_layers)
        ])
        self.reset_parameters()

    @property
    def first_order_channels(self) -> int:
        r"""Channels of :math:`\mathcal{Z}`."""
        return (3 if self.return_diag else 2) * self.out_channels

    def reset_parameters(self):
        for conv in self.convs:
            conv.reset_parameters()

    def forward(self, x: Tensor, adj: Tensor, mask: Tensor,
                edge_attr: OptTensor = None,
                return_second_order: bool = True
                ) -> Tuple[OptTensor, Tensor]:
        r"""Returns :math:`(\mathcal{H}_T, \mathcal{Z})`; with
        :obj:`return_second_order=False`, :math:`(\text{None},
        \mathcal{Z})`, which saves assembling the padded
        :math:`\mathcal{H}_T` when only :math:`\mathcal{Z}` is used."""
        if (edge_attr is None) != (self.edge_channels == 0):
            raise ValueError(
                f"'edge_attr' must be given iff edge_channels > 0 "
                f"(edge_channels={self.edge_channels})")
        weights = [conv.weights() for conv in self.convs]
        return run_bucketed(partial(self._forward, weights=weights), mask,
                            [x], [adj, edge_attr],
                            (2 if return_second_order else None, 1))

    def _forward(self, mask: Tensor, x: Tensor, adj: Tensor,
                 edge_attr: OptTensor,
                 weights: Optional[List[_Weights]] = None
                 ) -> Tuple[Tensor, Tensor]:
        H = to_second_order(x, adj, mask, edge_attr,
                            self.normalize)  # [B, n, n, F+E+1]
        # H is masked here and after every layer (ReLU keeps the zeros), so
        # the layers skip their entry masks and share the adjacency stats.
        st = _adj_stats(adj, mask, H.dtype, self.normalize)
        # H_0 is symmetric when the edge features are (undirected graphs):
        sym = torch.equal(H, H.transpose(1, 2))
        for i, conv in enumerate(self.convs):
            H = conv._forward(H, st, mask, sym and i == 0, weights=None if
                              weights is None else weights[i])  # [B,n,n,C]
            if i < self.num_layers - 1:
                H = H.relu()
        Z = _first_order(H, st.m, self.return_diag)  # [B, n, 2C]
        return H, Z

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}({self.node_channels}, '
                f'{self.edge_channels}, {self.hidden_channels}, '
                f'{self.out_channels}, num_layers={self.num_layers}'
                f'{_norm_repr(self.normalize)})')


def _norm_repr(normalize: bool) -> str:
    return '' if normalize else ', normalize=False'


def pair_features(z: Tensor, mask: Tensor) -> Tensor:
    r"""Promote node latents to a second-order tensor for decoding:

    .. math::
        (\mathcal{H}_0)_{ij} = \big[z_i \odot z_j \;\oplus\; z_i + z_j
        \;\oplus\; |z_i - z_j| \;\oplus\; \delta_{ij}\, z_i\big]

    Args:
        z (torch.Tensor): :math:`[B, n, d]`.
        mask (torch.Tensor): Valid nodes :math:`[B, n]`.

    Returns:
        :math:`[B, n, n, 4d]`, symmetric in :math:`(i, j)`, 0 at padding.
    """
    B, n, d = z.shape
    z = apply_mask(z, mask, 1)  # [B, n, d]
    zi, zj = z.unsqueeze(2), z.unsqueeze(1)  # [B, n, 1, d], [B, 1, n, d]
    eye = torch.eye(n, dtype=z.dtype, device=z.device).view(1, n, n, 1)
    H = torch.cat([
        zi * zj, zi + zj, (zi - zj).abs(), eye * zi
    ], dim=-1)  # [B, n, n, 4d]
    return apply_mask(H, mask, 2)


#: Blocks (of a size bucket) padded to at least this many nodes keep the
#: pair features' first-order channels first order in a decoder's first
#: layer (:class:`_Pairs`); on smaller blocks the extra small products cost
#: more than the :math:`n^2`-sized channels they save (measured: 20-40%
#: slower at 2-4 nodes, about even at 6, 4% faster at 9 and 21-33% at 23).
PAIRS_MIN_NODES = 8


class _Pairs:
    r"""The decoder's first-layer input :math:`[\mathcal{H}_0 \oplus
    \mathcal{C}]` (:func:`pair_features` of node vectors :math:`a`, then an
    optional context) without its two first-order parts at :math:`n^2`
    size: the channels :math:`a_i + a_j` and :math:`\delta_{ij} a_i` are
    kept as :math:`a` itself, and only :math:`a_i \odot a_j`,
    :math:`|a_i - a_j|` and the context are dense. It provides what the
    complete-graph path of :class:`SecondOrderConv` reads (the sums over
    either node index, the diagonal and the projection :math:`H M` by
    per-block matrices), equal to those of the dense tensor at the valid
    entries; padded entries of the projection hold other values, which the
    layer masks like the rest of its padded entries.

    Args:
        a (torch.Tensor): Node vectors :math:`[B, n, h]`, 0 at padding.
        dense (torch.Tensor): :math:`[B, n, n, 2h + C]`, the products, the
            absolute differences and the context, 0 at padding.
        mask (torch.Tensor): Valid nodes :math:`[B, n]`.
    """
    def __init__(self, a: Tensor, dense: Tensor, mask: Tensor):
        self.a, self.dense, self.mask = a, dense, mask
        self.m = _num_nodes(mask, a.dtype)  # [B]
        B, n, _, Cd = dense.shape
        self.shape = torch.Size((B, n, n, Cd + 2 * a.size(-1)))

    @classmethod
    def build(cls, a: Tensor, mask: Tensor,
              context: OptTensor = None) -> '_Pairs':
        a = apply_mask(a, mask, 1)  # [B, n, h]
        ai, aj = a.unsqueeze(2), a.unsqueeze(1)
        parts = [ai * aj, (ai - aj).abs()]
        if context is not None:
            parts.append(context)
        dense = apply_mask(torch.cat(parts, dim=-1), mask, 2)
        return cls(a, dense, mask)

    def _order(self, prod: Tensor, plus: Tensor, absd: Tensor,
               diag: Tensor, ctx: Tensor) -> Tensor:
        # pair_features' channel order, then the context
        return torch.cat([prod, plus, absd, diag, ctx], dim=-1)

    def _split(self, t: Tensor) -> Tuple[Tensor, Tensor, Tensor]:
        h = self.a.size(-1)
        return t[..., :h], t[..., h:2 * h], t[..., 2 * h:]

    def sum(self, dim: int) -> Tensor:
        r"""Sums over node index :obj:`dim` (1 or 2): :math:`[B, n, C]`."""
        prod, absd, ctx = self._split(self.dense.sum(dim=dim))
        # sum_k (a_i + a_k) over the m valid k at a valid i, 0 at padding
        # (both channel kinds are symmetric: either index gives the same):
        total = self.a.sum(dim=1, keepdim=True)  # [B, 1, h]
        plus = self.m.view(-1, 1, 1) * self.a + total * \
            self.mask.unsqueeze(-1).to(self.a.dtype)
        return self._order(prod, plus, absd, self.a, ctx)

    def diagonal(self, dim1: int = 1, dim2: int = 2) -> Tensor:
        r"""The diagonal :math:`[B, C, n]` (as :meth:`torch.Tensor.diagonal`
        of the dense tensor over its node indices 1 and 2)."""
        if (dim1, dim2) != (1, 2):
            raise ValueError("_Pairs.diagonal is over the node indices")
        d = self.dense.diagonal(dim1=1, dim2=2).transpose(1, 2)  # [B, n, Cd]
        prod, absd, ctx = self._split(d)
        return self._order(prod, 2 * self.a, absd, self.a,
                           ctx).transpose(1, 2)

    def project(self, M: Tensor) -> Tensor:
        r""":math:`H M` with per-block matrices :math:`M` :math:`[B, C,
        k]`: :math:`[B, n, n, k]`."""
        B, n, _, Cd = self.dense.shape
        h = self.a.size(-1)
        M_prod, M_plus, M_absd, M_diag = M[:, :h], M[:, h:2 * h], \
            M[:, 2 * h:3 * h], M[:, 3 * h:4 * h]
        M_dense = torch.cat([M_prod, M_absd, M[:, 4 * h:]], dim=1)
        G = torch.bmm(self.dense.reshape(B, n * n, Cd), M_dense).view(
            B, n, n, M.size(-1))
        alpha = torch.bmm(self.a, M_plus)  # [B, n, k]
        G = G + alpha.unsqueeze(2) + alpha.unsqueeze(1)
        G.diagonal(dim1=1, dim2=2).add_(
            torch.bmm(self.a, M_diag).transpose(1, 2))
        return G

    def split(self, step: int) -> List['_Pairs']:
        return [_Pairs(a, dense, mask) for a, dense, mask in zip(
            self.a.split(step), self.dense.split(step),
            self.mask.split(step))]


def _symmetrise(X: Tensor) -> Tensor:
    return 0.5 * (X + _t(X))  # [B, n, n, E]


class SecondOrderDecoder(torch.nn.Module):
    r"""The paper's :math:`\mathbb{S}_n`-equivariant second-order decoder for
    small graphs (Appendix D.2, "all-at-once"): node latents are projected
    to :obj:`hidden_channels` by a linear map (so the second-order
    features do not grow with :math:`d`, e.g. the paper's :math:`d = 256`),
    promoted to a second-order tensor (:func:`pair_features`), passed through
    :obj:`num_layers` :class:`SecondOrderConv` layers (ReLU between them),
    and symmetrised into edge logits

    .. math::
        \hat{X} = \tfrac{1}{2}(X + X^{\top}).

    Eq. 3 needs an adjacency; the decoder has none, so by default it uses
    the complete graph on the valid nodes (:math:`J - I`; any graph built
    from the mask alone keeps the decoder equivariant, and with no edges the
    adjacency-dependent contractions would vanish), for which
    :math:`P H` averages over the other nodes. A known (e.g. coarser)
    adjacency can be passed instead. The diagonal (self-loop logits) is
    returned as computed; mask it in the loss if self loops are not
    modelled. On the complete graph and blocks of at least
    :obj:`PAIRS_MIN_NODES` nodes, the first layer never forms the
    first-order channels :math:`z_i + z_j` and :math:`\delta_{ij} z_i` of
    the pair features at :math:`n^2` size: their sums, diagonal and
    projections come from :math:`z` itself (the same function; a
    decoder's forward and backward pass takes up to a third less time at
    23 nodes).

    Args:
        latent_channels (int): Latent size :math:`d`.
        hidden_channels (int): Channels of the hidden layers.
        num_layers (int): Number of :class:`SecondOrderConv` layers.
        edge_channels (int): Output logits per pair (1 for edge / no
            edge, or the number of bond types). (default: :obj:`1`)
        basis (bool): Use the Maron basis. (default: :obj:`True`)
        normalize (bool): The normalised layers (see
            :class:`SecondOrderConv`). (default: :obj:`True`)
        context_channels (int): Channels of a second-order input
            :math:`\mathcal{C}` that :meth:`forward` then requires and
            appends to the pair features, :math:`\mathcal{H}_0 \oplus
            \mathcal{C}` (e.g. the parts of the graph already decoded, see
            :class:`~torch_geometric_mgvae.models.MoleculeDecoder`); it
            must be symmetric in :math:`(i, j)` for the output to be.
            (default: :obj:`0`)

    Shapes:
        - **input:** :math:`z` :math:`(B, n, d)`, mask :math:`(B, n)`,
          adjacency :math:`(B, n, n)` *(optional)*, context
          :math:`(B, n, n, C)` *(with* :obj:`context_channels` *)*
        - **output:** logits :math:`(B, n, n, E)`, symmetric, 0 at padding
    """
    def __init__(self, latent_channels: int, hidden_channels: int,
                 num_layers: int, edge_channels: int = 1,
                 basis: bool = True, normalize: bool = True,
                 context_channels: int = 0):
        super().__init__()
        if num_layers < 1:
            raise ValueError(f"'num_layers' must be >= 1 (got {num_layers})")
        self.latent_channels = latent_channels
        self.hidden_channels = hidden_channels
        self.num_layers = num_layers
        self.edge_channels = edge_channels
        self.basis = basis
        self.normalize = normalize
        if context_channels < 0:
            raise ValueError(f"'context_channels' must be >= 0 (got "
                             f"{context_channels})")
        self.context_channels = context_channels
        self.lin_in = torch.nn.Linear(latent_channels, hidden_channels)
        dims = ([4 * hidden_channels + context_channels] +
                [hidden_channels] *
                (num_layers - 1) + [edge_channels])
        self.convs = torch.nn.ModuleList([
            SecondOrderConv(dims[i], dims[i + 1], hidden_channels, basis,
                            normalize) for i in range(num_layers)
        ])
        self.reset_parameters()

    def reset_parameters(self):
        self.lin_in.reset_parameters()
        for conv in self.convs:
            conv.reset_parameters()

    def forward(self, z: Tensor, mask: Tensor, adj: OptTensor = None,
                context: OptTensor = None,
                latent_pre: OptTensor = None) -> Tensor:
        r"""The edge logits. :obj:`latent_pre`, the
        :meth:`latent_preactivation` of the same :obj:`z`, :obj:`mask` and
        :obj:`adj`, saves recomputing the latents' part of the first layer
        when the same latents are decoded under many contexts (masked
        decoding); the result is the same up to float rounding."""
        if (context is None) != (self.context_channels == 0):
            raise ValueError(
                f"This decoder has context_channels="
                f"{self.context_channels}: pass a context "
                f"[B, n, n, {self.context_channels}] exactly when that is "
                f"positive")
        if context is not None and (context.dim() != 4 or context.shape[
                :3] != mask.shape + mask.shape[-1:] or context.size(-1) !=
                                    self.context_channels):
            raise ValueError(f"'context' must have shape [B, n, n, "
                             f"{self.context_channels}] (got "
                             f"{list(context.shape)})")
        if latent_pre is not None:
            h = self.convs[0].hidden_channels
            if context is None:
                raise ValueError("'latent_pre' is the latents' part of the "
                                 "first layer; it needs a decoder with a "
                                 "context (context_channels > 0)")
            if latent_pre.shape != mask.shape + mask.shape[-1:] + (h, ):
                raise ValueError(f"'latent_pre' must have shape [B, n, n, "
                                 f"{h}] (latent_preactivation; got "
                                 f"{list(latent_pre.shape)})")
        weights = [conv.weights(self._context_slice() if i == 0 and
                                latent_pre is not None else None)
                   for i, conv in enumerate(self.convs)]
        return run_bucketed(partial(self._forward, weights=weights), mask,
                            [z], [adj, context, latent_pre], (2, ))[0]

    def latent_preactivation(self, z: Tensor, mask: Tensor,
                             adj: OptTensor = None) -> Tensor:
        r"""The part of the first layer's pre-activation that comes from
        the latents (the pair features, with the bias), :math:`(B, n, n,
        h)`: it does not depend on the context, which enters the first
        layer linearly, so :meth:`forward` can take it as
        :obj:`latent_pre` and compute only the context's part."""
        weights = self.convs[0].weights(slice(
            0, self.convs[0].in_channels - self.context_channels))
        return run_bucketed(partial(self._latent_pre, weights=weights), mask,
                            [z], [adj], (2, ))[0]

    def _context_slice(self) -> slice:
        r"""The first layer's input channels that the context feeds."""
        return slice(self.convs[0].in_channels - self.context_channels, None)

    def _stats(self, mask: Tensor, adj: OptTensor, dtype: torch.dtype
               ) -> Tuple[_AdjStats, bool]:
        B, n = mask.shape
        complete = adj is None  # the fast path of SecondOrderConv
        if adj is None:
            eye = torch.eye(n, dtype=dtype, device=mask.device)
            adj = (1 - eye).expand(B, n, n)  # [B, n, n], masked in convs
        return _adj_stats(adj, mask, dtype, self.normalize), complete

    def _pair_input(self, z: Tensor, mask: Tensor, complete: bool,
                    context: OptTensor = None):
        r"""The first layer's input, the pair features of the latents and
        the (masked) context: :class:`_Pairs` on the complete graph from
        :obj:`PAIRS_MIN_NODES` nodes on, else the dense
        :math:`[B, n, n, 4h + C]`."""
        if complete and mask.size(1) >= PAIRS_MIN_NODES:
            return _Pairs.build(self.lin_in(z), mask, context)
        H = pair_features(self.lin_in(z), mask)  # [B, n, n, 4h]
        return H if context is None else torch.cat([H, context], dim=-1)

    def _latent_pre(self, mask: Tensor, z: Tensor, adj: OptTensor,
                    weights: _Weights) -> Tuple[Tensor]:
        st, complete = self._stats(mask, adj, z.dtype)
        H = self._pair_input(z, mask, complete)
        sym = torch.equal(st.A, st.A.transpose(1, 2))
        return (self.convs[0]._forward(
            H, st, mask, sym, complete, channels=weights.channels,
            activate=False, weights=weights), )  # [B, n, n, h]

    def _forward(self, mask: Tensor, z: Tensor, adj: OptTensor,
                 context: OptTensor = None, latent_pre: OptTensor = None,
                 weights: Optional[List[_Weights]] = None
                 ) -> Tuple[Tensor]:
        st, complete = self._stats(mask, adj, z.dtype)
        if weights is None:
            weights = [None] * self.num_layers
        if context is not None:
            context = apply_mask(context.to(z.dtype), mask, 2)
        kw = {}
        if latent_pre is not None:  # the first layer reads only the context
            H = context
            kw = dict(channels=self._context_slice(), bias=False,
                      pre=latent_pre)
        else:
            H = self._pair_input(z, mask, complete, context)
        # The pair features are symmetric; so is the adjacency if given
        # symmetric (checked, the decoder takes any), and the context if
        # given symmetric (checked likewise):
        sym = torch.equal(st.A, st.A.transpose(1, 2)) and (
            context is None or torch.equal(context, _t(context)))
        for i, conv in enumerate(self.convs):
            H = conv._forward(H, st, mask, sym and i == 0, complete,
                              weights=weights[i],
                              **(kw if i == 0 else {}))  # [B, n, n, C]
            if i < self.num_layers - 1:
                H = H.relu()
        return (apply_mask(_symmetrise(H), mask, 2), )  # [B, n, n, E]

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}({self.latent_channels}, '
                f'{self.hidden_channels}, num_layers={self.num_layers}, '
                f'edge_channels={self.edge_channels}'
                f'{_norm_repr(self.normalize)}'
                + (f', context_channels={self.context_channels}'
                   if self.context_channels else '') + ')')


class MLPDecoder(torch.nn.Module):
    r"""The non-equivariant MLP decoder of the paper's Table 6 comparison:
    the padded latents :math:`Z \in \mathbb{R}^{N_{\max} \times d}` are
    flattened and mapped by an MLP with two hidden layers of size 512 and
    sigmoid nonlinearities to all :math:`N_{\max}^2 E` edge logits, then
    symmetrised, :math:`\frac{1}{2}(X + X^{\top})`.

    This decoder is **not** permutation equivariant: flattening ties every
    weight to a node position, so permuting the nodes of :math:`Z` does not
    permute the output. It exists only as the baseline of Table 6.

    Args:
        latent_channels (int): Latent size :math:`d`.
        max_nodes (int): :math:`N_{\max}`, the padded block size.
        hidden_channels (int): Hidden layer size. (default: :obj:`512`)
        edge_channels (int): Output logits per pair. (default: :obj:`1`)

    Shapes:
        - **input:** :math:`z` :math:`(B, n, d)` with
          :math:`n \le N_{\max}` (zero-padded to :math:`N_{\max}`
          internally), mask :math:`(B, n)`
        - **output:** logits :math:`(B, n, n, E)` (the top-left block of
          the :math:`N_{\max} \times N_{\max}` output), 0 at padding
    """
    def __init__(self, latent_channels: int, max_nodes: int,
                 hidden_channels: int = 512, edge_channels: int = 1):
        super().__init__()
        self.latent_channels = latent_channels
        self.max_nodes = max_nodes
        self.hidden_channels = hidden_channels
        self.edge_channels = edge_channels
        self.mlp = torch.nn.Sequential(
            torch.nn.Linear(max_nodes * latent_channels, hidden_channels),
            torch.nn.Sigmoid(),
            torch.nn.Linear(hidden_channels, hidden_channels),
            torch.nn.Sigmoid(),
            torch.nn.Linear(hidden_channels,
                            max_nodes * max_nodes * edge_channels),
        )
        self.reset_parameters()

    def reset_parameters(self):
        for layer in self.mlp:
            if isinstance(layer, torch.nn.Linear):
                layer.reset_parameters()

    def forward(self, z: Tensor, mask: Tensor) -> Tensor:
        B, n, d = z.shape
        N = self.max_nodes
        if n > N:
            raise ValueError(f"Got blocks of {n} nodes but 'max_nodes' is "
                             f"{N}")
        z = apply_mask(z, mask, 1)  # [B, n, d]
        z = torch.cat([z, z.new_zeros(B, N - n, d)], dim=1)  # [B, N, d]
        X = self.mlp(z.reshape(B, N * d))  # [B, N * N * E]
        X = X.view(B, N, N, self.edge_channels)[:, :n, :n]  # [B, n, n, E]
        return apply_mask(_symmetrise(X), mask, 2)

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}({self.latent_channels}, '
                f'max_nodes={self.max_nodes}, hidden_channels='
                f'{self.hidden_channels}, edge_channels='
                f'{self.edge_channels})')


__all__: List[str] = [
    'apply_mask', 'normalize_adjacency', 'equivariant_basis_2to2',
    'contractions_eq3',
    'SecondOrderConv', 'to_second_order', 'contract_to_first_order',
    'SecondOrderEncoder', 'pair_features', 'SecondOrderDecoder',
    'MLPDecoder', 'NUM_BASIS', 'NUM_CONTRACTIONS'
]
