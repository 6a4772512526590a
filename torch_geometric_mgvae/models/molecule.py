r"""All-at-once molecule generation with MGVAE (paper appendix D.2)."""
import math
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F
from torch import Tensor
from torch_geometric.data import Data
from torch_geometric.data.data import BaseData
from torch_geometric.typing import Adj, OptTensor
from torch_geometric.utils import to_dense_adj, to_dense_batch

from torch_geometric_mgvae.chem.convert import AROMATIC, BOND_ORDERS
from torch_geometric_mgvae.models.mgn import MGNOutput
from torch_geometric_mgvae.models.mgvae import MGVAE
from torch_geometric_mgvae.nn.checks import check_int
from torch_geometric_mgvae.nn.second_order import (
    SecondOrderDecoder,
    apply_mask,
)

__all__ = ['MoleculeDecoder', 'MoleculeSample', 'MoleculeMGVAE',
           'valence_excess', 'bond_deficit', 'connect_fragments',
           'entry_ranks']


class MoleculeDecoder(torch.nn.Module):
    r"""Joint atom- and bond-type decoder of the finest level: one
    :class:`~torch_geometric_mgvae.nn.SecondOrderDecoder` with
    :math:`(1 + B) + A` output channels. Off the diagonal, the first
    :math:`1 + B` channels are the logits of the pair's bond class in
    :math:`\{\text{none}, \text{single}, \text{double}, \text{triple}\}`; on
    the diagonal, the last :math:`A` channels are the logits of the atom's
    type:

    .. math::
        p(\text{bond}_{ij} = c \mid \mathcal{Z}) =
        \mathrm{softmax}_c(X_{ij, :1+B}), \qquad
        p(\text{atom}_i = a \mid \mathcal{Z}) =
        \mathrm{softmax}_a(X_{ii, 1+B:})

    Atom types are decoded by the same second-order network as the bonds,
    so an atom's type sees the whole decoded structure (an MLP of
    :math:`z_i` alone could not tell an oxygen with two bonds from one with
    one). :math:`X` is symmetric, so is :math:`p(\text{bond}_{ij})`; the
    decoder is permutation equivariant.

    Args:
        latent_channels (int): Latent size :math:`d`.
        hidden_channels (int): Channels of the hidden layers.
        num_layers (int): Number of second-order layers.
        num_atom_types (int): :math:`A`.
        num_bond_types (int): :math:`B` (bond classes besides "none").
            (default: :obj:`3`)
        normalize (bool): The normalised second-order layers
            (:class:`~torch_geometric_mgvae.nn.SecondOrderConv`).
            (default: :obj:`True`)
        masked (bool): Condition on the atoms and bonds decoded so far
            (masked decoding, not in the paper): :meth:`forward` then takes
            the known atom types, bond classes and which of them are known,
            fed to the network as extra pair channels (:meth:`context`):
            off the diagonal the one-hot class of a known pair or a
            "masked" flag, on the diagonal the one-hot type of a known atom
            or a "masked" flag. Nothing known is the default.
            (default: :obj:`False`)
        distance_context (int): With :obj:`masked`, also the shortest-path
            distance :math:`d \in \{1, \ldots, L\}` (:math:`L` =
            :obj:`distance_context`) between the two atoms of a pair in the
            graph of the bonds known so far, one-hot, and a channel for
            "farther or not connected" (:math:`L + 1` channels; 0 for none):
            bonding the pair closes a ring of :math:`d + 1` atoms, which
            the decoder sees (not in the paper; equivariant, as distances
            are). (default: :obj:`0`)

    Shapes:
        - **input:** :math:`z` :math:`(G, n, d)`, mask :math:`(G, n)`;
          *(masked, optional)* atom types :math:`(G, n)`, bond classes
          :math:`(G, n, n)` and the known entries :math:`(G, n, n)` (the
          diagonal flags the atoms)
        - **output:** atom logits :math:`(G, n, A)`, bond logits
          :math:`(G, n, n, 1 + B)` (0 at padding)
    """
    def __init__(self, latent_channels: int, hidden_channels: int,
                 num_layers: int, num_atom_types: int,
                 num_bond_types: int = 3, normalize: bool = True,
                 masked: bool = False, distance_context: int = 0):
        super().__init__()
        distance_context = check_int('distance_context', distance_context,
                                     0)
        if distance_context and not masked:
            raise ValueError("'distance_context' is a context of masked "
                             "decoding (masked=True)")
        self.latent_channels = latent_channels
        self.hidden_channels = hidden_channels
        self.num_layers = num_layers
        self.num_atom_types = num_atom_types
        self.num_bond_types = num_bond_types
        self.masked = masked
        self.distance_context = distance_context
        context = (num_bond_types + 2) + (num_atom_types + 1) if masked else 0
        context += distance_context + 1 if distance_context else 0
        self.net = SecondOrderDecoder(latent_channels, hidden_channels,
                                      num_layers, 1 + num_bond_types +
                                      num_atom_types, normalize=normalize,
                                      context_channels=context)
        self.reset_parameters()

    def reset_parameters(self):
        self.net.reset_parameters()

    def context(self, atom: Tensor, bond: Tensor, known: Tensor,
                mask: Tensor) -> Tensor:
        r"""The context channels :math:`(G, n, n, (B + 2) + (A + 1))` of
        atom types :math:`(G, n)`, bond classes :math:`(G, n, n)` (0 =
        none) and known entries :math:`(G, n, n)` (bool, symmetric; the
        diagonal flags the atoms); the values of unknown entries are
        ignored."""
        n = mask.size(1)
        C, A = 1 + self.num_bond_types, self.num_atom_types
        off = ~torch.eye(n, dtype=torch.bool, device=mask.device)
        k = known.unsqueeze(-1).float()  # [G, n, n, 1]
        pair = torch.cat([F.one_hot(bond.clamp(0, C - 1), C) * k, 1 - k],
                         dim=-1) * off.unsqueeze(-1)  # [G, n, n, C + 1]
        ka = known.diagonal(dim1=1, dim2=2).unsqueeze(-1).float()  # [G,n,1]
        node = torch.cat([F.one_hot(atom.clamp(0, A - 1), A) * ka, 1 - ka],
                         dim=-1)  # [G, n, A + 1]
        node = torch.diag_embed(node.transpose(1, 2)).permute(0, 2, 3, 1)
        out = [pair, node]
        if self.distance_context:
            out.append(self.distances(bond, known, mask))
        return apply_mask(torch.cat(out, dim=-1), mask, 2)

    def distances(self, bond: Tensor, known: Tensor, mask: Tensor) -> Tensor:
        r"""The distance channels :math:`(G, n, n, L + 1)` of
        :obj:`distance_context`: the shortest-path distance of every pair
        of atoms in the graph of the known bonds, one-hot for :math:`1,
        \ldots, L`, then "farther or not connected"; 0 on the diagonal."""
        n = mask.size(1)
        eye = torch.eye(n, dtype=torch.bool, device=mask.device)
        adj = (known & (bond > 0) & ~eye).float()  # [G, n, n]
        reach = eye.expand_as(adj).float()  # within distance k - 1
        out = []
        for _ in range(self.distance_context):
            within = ((reach + reach @ adj) > 0).float()  # within k
            out.append(within - reach)  # exactly at distance k
            reach = within
        out.append(1 - reach)  # farther or not connected
        return torch.stack(out, dim=-1)  # the diagonal is within 0: 0

    def latent_preactivation(self, z: Tensor, mask: Tensor) -> Tensor:
        r"""The latents' part of the first layer
        (:meth:`~torch_geometric_mgvae.nn.SecondOrderDecoder.
        latent_preactivation`), to pass as :obj:`latent_pre` when the same
        latents are decoded given many contexts (masked decoding)."""
        return self.net.latent_preactivation(z, mask)

    def forward(self, z: Tensor, mask: Tensor, atom: OptTensor = None,
                bond: OptTensor = None, known: OptTensor = None,
                latent_pre: OptTensor = None):
        context = None
        if self.masked:
            G, n = mask.shape
            if known is None:  # nothing decoded yet
                known = mask.new_zeros(G, n, n)
                atom = mask.new_zeros(G, n, dtype=torch.long)
                bond = mask.new_zeros(G, n, n, dtype=torch.long)
            context = self.context(atom, bond, known, mask).to(z.dtype)
        elif known is not None:
            raise ValueError("Only a masked MoleculeDecoder takes known "
                             "atoms and bonds")
        X = self.net(z, mask, context=context,
                     latent_pre=latent_pre)  # [G, n, n, 1 + B + A]
        C = 1 + self.num_bond_types
        atom = X.diagonal(dim1=1, dim2=2).transpose(1, 2)[..., C:]
        return apply_mask(atom, mask, 1), X[..., :C]  # [G,n,A], [G,n,n,C]

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}({self.latent_channels}, '
                f'{self.hidden_channels}, num_layers={self.num_layers}, '
                f'num_atom_types={self.num_atom_types}, num_bond_types='
                f'{self.num_bond_types}' +
                (', masked=True' if self.masked else '') +
                (f', distance_context={self.distance_context}'
                 if self.distance_context else '') + ')')


#: The default number of rounds of masked decoding.
DECODE_ROUNDS = 8


def _draw(p: Tensor, tau: float,
          generator: Optional[torch.Generator]) -> Tensor:
    r"""One draw per row of the categoricals :math:`\propto p^{1/\tau}`
    (:math:`p` of shape :math:`(..., C)`), :math:`(...)`."""
    logits = p.clamp(min=1e-30).log() / tau
    q = (logits - logits.amax(-1, keepdim=True)).exp()
    return torch.multinomial(q.reshape(-1, p.size(-1)), 1,
                             generator=generator).view(p.shape[:-1])


def entry_ranks(mask: Tensor, generator: Optional[torch.Generator] = None
                ) -> Tuple[Tensor, Tensor]:
    r"""A uniformly random order of the entries of every molecule, its
    :math:`n` atoms (the diagonal) and :math:`n(n-1)/2` pairs
    :math:`i < j`: the ranks :math:`(G, n, n)` (symmetric, :math:`\geq D`
    at padding) and the number of entries :math:`D = n(n+1)/2` per
    molecule :math:`(G)`. The order is drawn independently of the atoms'
    order, so decoding in it is equivariant in distribution."""
    G, n = mask.shape
    keys = torch.rand(G, n, n, generator=generator, device=mask.device)
    valid = (mask.unsqueeze(2) & mask.unsqueeze(1)).triu()  # [G, n, n]
    keys = keys.masked_fill(~valid, 2.)
    ranks = keys.view(G, -1).argsort(-1).argsort(-1).view(G, n, n)
    ranks = ranks.triu() + ranks.triu(1).transpose(1, 2)
    return ranks, valid.sum(dim=(1, 2))


def valence_excess(atom_logits: Tensor, bond_logits: Tensor, mask: Tensor,
                   max_valence: Tensor) -> Tensor:
    r"""How far the most probable molecule of dense decoder outputs exceeds
    the valences, with a straight-through gradient:

    .. math::
        \sum_i \mathrm{ReLU}\Big(\sum_{j \ne i} o(\hat{b}_{ij}) -
        v(\hat{a}_i)\Big), \qquad \hat{b}_{ij} = \arg\max_c
        p(b_{ij} = c), \;\hat{a}_i = \arg\max_a p(a_i = a),

    with :math:`o` the bond order of a class (0 for "none", then
    :const:`~torch_geometric_mgvae.chem.BOND_ORDERS`: 1.5 for aromatic) and
    :math:`v` the largest valence of an atom type. The forward value is that
    of the hard argmax decoding (exactly what :meth:`MoleculeSample.raw`
    builds: 0 iff no atom is over-valent; with aromatic bonds an estimate,
    as their valence depends on the Kekulé structure); the gradient is that
    of the same sum with the probabilities in place of the one-hot argmaxes
    (straight-through).

    Args:
        atom_logits (torch.Tensor): :math:`(G, n, A)`.
        bond_logits (torch.Tensor): :math:`(G, n, n, 1 + B)`.
        mask (torch.Tensor): Valid atoms :math:`(G, n)`.
        max_valence (torch.Tensor): Largest valence of every atom type
            :math:`(A)`.

    Returns:
        The excess per molecule, :math:`(G)`.
    """
    def hard(p: Tensor) -> Tensor:  # straight-through one-hot argmax
        one = F.one_hot(p.argmax(-1), p.size(-1)).to(p.dtype)
        return one - p.detach() + p

    p_atom = hard(atom_logits.softmax(-1))  # [G, n, A]
    p_bond = hard(bond_logits.softmax(-1))  # [G, n, n, 1 + B]
    orders = torch.tensor([0.0] + BOND_ORDERS[:p_bond.size(-1) - 1],
                          dtype=p_bond.dtype, device=p_bond.device)
    n = mask.size(1)
    off = ~torch.eye(n, dtype=torch.bool, device=mask.device)
    order = apply_mask((p_bond * orders).sum(-1) * off, mask, 2)  # [G,n,n]
    cap = p_atom @ max_valence.to(p_atom.dtype)  # [G, n]
    excess = apply_mask(F.relu(order.sum(-1) - cap), mask, 1)  # [G, n]
    return excess.sum(-1)


def bond_deficit(bond_logits: Tensor, mask: Tensor) -> Tensor:
    r"""How many bonds the most probable molecule lacks to possibly be
    connected, :math:`\mathrm{ReLU}(n - 1 - \#\{i < j : \hat{b}_{ij} \ne
    \text{none}\})`, with the straight-through gradient of
    :func:`valence_excess`; :math:`(G)`. A connected molecule of :math:`n`
    atoms has at least :math:`n - 1` bonds."""
    p = bond_logits.softmax(-1)
    one = F.one_hot(p.argmax(-1), p.size(-1)).to(p.dtype)
    bonded = 1 - (one - p.detach() + p)[..., 0]  # [G, n, n]
    bonded = apply_mask(bonded.triu(1), mask, 2)
    n = mask.sum(-1).to(p.dtype)
    return F.relu(n - 1 - bonded.sum(dim=(1, 2)))


def connect_fragments(atom_types: Tensor, edge_index: Tensor,
                      bond_types: Tensor, edge_prob: Tensor,
                      atoms: Sequence) -> Tuple[Tensor, Tensor]:
    r"""Joins the fragments of a molecule (not in the paper): the pairs of
    atoms in different fragments are visited in descending edge probability
    and joined by a single bond when both atoms have a free valence
    (:func:`~torch_geometric_mgvae.chem.max_valence` minus their bond
    orders), as in Kruskal's algorithm. Fragments that cannot be joined
    stay apart.

    Args:
        atom_types (torch.Tensor): Atom type indices :math:`(n)`.
        edge_index (torch.Tensor): Bonds in both directions
            :math:`(2, 2m)`.
        bond_types (torch.Tensor): Their types 1/2/3 (single/double/triple)
            or 4 (aromatic, one valence unit as in
            :func:`~torch_geometric_mgvae.chem.valence_correct`)
            :math:`(2m)`.
        edge_prob (torch.Tensor): Edge probabilities :math:`(n, n)`.
        atoms (list): The atom vocabulary.

    Returns:
        :obj:`(edge_index, bond_types)` with the added bonds, in the format
        of the input (sorted by row, then column).
    """
    from torch_geometric_mgvae.chem.valence import max_valence, valence_units
    n = atom_types.numel()
    free = [max_valence(*tuple(atoms[int(t)])) for t in atom_types]
    parent = list(range(n))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for (i, j), b in zip(edge_index.t().tolist(), bond_types.tolist()):
        free[i] -= valence_units(b)  # both directions listed: once each
        if i < j:
            parent[find(i)] = find(j)
    row, col = torch.triu_indices(n, n, offset=1)
    prob = edge_prob.detach().float()
    prob = 0.5 * (prob + prob.t())[row, col]
    added = []
    for k in prob.argsort(descending=True, stable=True).tolist():
        i, j = int(row[k]), int(col[k])
        if free[i] < 1 or free[j] < 1 or find(i) == find(j):
            continue
        parent[find(i)] = find(j)
        free[i] -= 1
        free[j] -= 1
        added.append((i, j))
    if not added:
        return edge_index, bond_types
    new = torch.tensor(added, dtype=torch.long).t()
    ei = torch.cat([edge_index, new, new.flip(0)], dim=1)
    bt = torch.cat([bond_types, torch.ones(2 * len(added),
                                           dtype=bond_types.dtype)])
    perm = (ei[0] * n + ei[1]).argsort()
    return ei[:, perm], bt[perm]


def _edge_prob(bond_prob: Tensor) -> Tensor:
    r""":math:`p(\text{bond}_{ij} \ne \text{none})` from bond class
    probabilities :math:`(..., n, n, 1 + B)`, 0 on the diagonal."""
    p = 1 - bond_prob[..., 0]
    eye = torch.eye(p.size(-1), dtype=torch.bool, device=p.device)
    return p.masked_fill(eye, 0)


class MoleculeSample:
    r"""Decoded molecules as dense probabilities, before any rounding.

    Attributes:
        atom_prob (torch.Tensor): Atom type probabilities :math:`(G, n, A)`.
        bond_prob (torch.Tensor): Bond class probabilities
            :math:`(G, n, n, 1 + B)` (class 0 = no bond), symmetric.
        mask (torch.Tensor): Valid atoms :math:`(G, n)`.
    """
    def __init__(self, atom_prob: Tensor, bond_prob: Tensor, mask: Tensor):
        self.atom_prob = atom_prob
        self.bond_prob = bond_prob
        self.mask = mask

    def to(self, device: Union[str, torch.device]) -> 'MoleculeSample':
        r"""The same molecules with their tensors on :obj:`device` (e.g.
        the CPU, where RDKit reads them)."""
        return MoleculeSample(self.atom_prob.to(device),
                              self.bond_prob.to(device),
                              self.mask.to(device))

    def __len__(self) -> int:
        return self.mask.size(0)

    @property
    def num_nodes(self) -> Tensor:
        return self.mask.sum(dim=1)

    @property
    def aromatic(self) -> bool:
        r"""Whether the bond classes are none/single/double/triple/aromatic
        (a model of graphs built with :obj:`kekulize=False`) rather than
        none/single/double/triple."""
        return self.bond_prob.size(-1) == 2 + AROMATIC

    @property
    def edge_prob(self) -> Tensor:
        r""":math:`p(\text{bond}_{ij} \ne \text{none})`, :math:`(G, n, n)`,
        0 on the diagonal and at padding."""
        return apply_mask(_edge_prob(self.bond_prob), self.mask, 2)

    def molecule(self, i: int) -> Dict[str, Tensor]:
        r"""The probabilities of molecule :obj:`i` cut to its :math:`n`
        atoms: :obj:`atom_prob` :math:`(n, A)`, :obj:`edge_prob`
        :math:`(n, n)` and :obj:`bond_type_prob` :math:`(n, n, B)` (the bond
        type given a bond)."""
        n = int(self.mask[i].sum())
        bond = self.bond_prob[i, :n, :n, 1:]
        bond = bond / bond.sum(dim=-1, keepdim=True).clamp(min=1e-12)
        # Only this molecule's block: edge_prob of the whole sample per
        # molecule made a loop over molecules quadratic (and ran a 5,000
        # molecule ZINC sample out of memory).
        return dict(atom_prob=self.atom_prob[i, :n],
                    edge_prob=_edge_prob(self.bond_prob[i, :n, :n]),
                    bond_type_prob=bond)

    def raw(self) -> List[Data]:
        r"""The most probable molecules, without any correction: every
        atom's most probable type and every pair's most probable class
        (:obj:`"none"` included). Returns :class:`Data` with one-hot
        :obj:`x`, :obj:`edge_index` (both directions) and one-hot
        :obj:`edge_attr` (the format of
        :func:`~torch_geometric_mgvae.chem.smiles_to_data`)."""
        atoms = self.atom_prob.argmax(dim=-1)  # [G, n]
        bonds = self.bond_prob.argmax(dim=-1).triu(1)  # [G, n, n]
        A = self.atom_prob.size(-1)
        B = self.bond_prob.size(-1) - 1
        out = []
        for i in range(len(self)):
            n = int(self.mask[i].sum())
            b = bonds[i, :n, :n]
            b = b + b.t()
            ei = b.nonzero().t()
            out.append(Data(x=F.one_hot(atoms[i, :n], A).float(),
                            edge_index=ei, edge_attr=F.one_hot(
                                b[ei[0], ei[1]] - 1, B).float(),
                            num_nodes=n))
        return out

    def raw_mols(self, atoms: Sequence) -> List[Any]:
        r"""RDKit molecules of :meth:`raw` (:obj:`None` where sanitization
        fails, e.g. a valence violation); :obj:`atoms` is the atom
        vocabulary."""
        from torch_geometric_mgvae.chem import data_to_mol
        return [data_to_mol(d.x, d.edge_index, d.edge_attr, atoms)
                for d in self.raw()]

    def corrected_mols(self, atoms: Sequence, threshold: float = 0.5,
                       keep_largest_fragment: bool = True,
                       connect: bool = False) -> List[Any]:
        r"""RDKit molecules after the paper's correcting process
        (:func:`~torch_geometric_mgvae.chem.valence_correct`): the pairs
        are visited in descending edge probability and a bond is added
        (with its most probable type, or the largest lower order that
        fits) while both atoms keep a valid valence; pairs below
        :obj:`threshold` are never bonded.

        With :obj:`connect` (not in the paper), the fragments left are then
        joined by :func:`connect_fragments`: the remaining pairs, in
        descending edge probability, get a single bond when they join two
        fragments and both atoms have a free valence. With
        :obj:`keep_largest_fragment` (GDSS/MoFlow protocol) only the
        largest connected fragment of the result is kept."""
        from torch_geometric_mgvae.chem import largest_fragment
        from torch_geometric_mgvae.chem.convert import _build_mol
        from torch_geometric_mgvae.chem.valence import valence_correct
        out = []
        for i in range(len(self)):
            m = self.molecule(i)
            types = m['atom_prob'].argmax(dim=-1)
            edge_index, bonds = valence_correct(
                types, m['edge_prob'], m['bond_type_prob'], atoms, threshold,
                aromatic=self.aromatic)
            if connect:
                edge_index, bonds = connect_fragments(
                    types, edge_index, bonds, m['edge_prob'], atoms)
            mol = _build_mol(types, edge_index, bonds - 1, atoms,
                             sanitize=True, repair=True)
            if mol is not None and keep_largest_fragment:
                mol = largest_fragment(mol)
            out.append(mol)
        return out

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}(num_molecules={len(self)}, '
                f'max_atoms={self.mask.size(1)})')


class MoleculeMGVAE(MGVAE):
    r"""All-at-once MGVAE for molecules (paper appendix D.2): second-order
    encoders with one-hot bond types as edge features, Gaussian-MRF
    posteriors, the learnable equivariant prior at the finest level, and a
    joint atom/bond decoder (:class:`MoleculeDecoder`) as the finest global
    decoder. Coarser levels are reconstructed as in :class:`MGVAE` (local
    second-order decoders per cluster, global ones per level).

    The input node features are the one-hot atom types, optionally followed
    by :obj:`node_channels` extra features (e.g. the RDKit features of the
    paper's Table 7); :obj:`edge_attr` holds the one-hot bond types. The
    loss adds two terms to :meth:`MGVAE.loss_terms`, per molecule:

    .. math::
        \mathcal{L}_{\text{atom}} = -\sum_i \log p(a_i \mid \mathcal{Z}),
        \qquad \mathcal{L}_{\text{bond}} = -\sum_{i < j}
        \log p(b_{ij} \mid \mathcal{Z}),

    with :math:`b_{ij} = 0` for non-bonded pairs; they replace the
    Bernoulli adjacency likelihood of the finest global decoder.
    :meth:`sample` draws latents from the prior and returns a
    :class:`MoleculeSample` with the atom-type, edge and bond-type
    probabilities; its :meth:`~MoleculeSample.raw` and
    :meth:`~MoleculeSample.corrected_mols` give the molecules without and
    with the valence correction.

    Args:
        num_atom_types (int): Size :math:`A` of the atom vocabulary.
        hidden_channels (int): Hidden size of all networks.
        latent_channels (int): Size :math:`d_z` of the node latents.
        num_clusters (List[int]): Clusters per level, finest first.
        max_nodes (int): The largest molecule (prior nodes).
        num_bond_types (int): Bond types besides "none": :obj:`3`
            (single/double/triple, kekulized graphs) or :obj:`4` (with
            aromatic, graphs of :obj:`kekulize=False`; the samples'
            conversions read the fourth type as aromatic).
            (default: :obj:`3`)
        node_channels (int): Extra input node features after the one-hot
            atom types. (default: :obj:`0`)
        decoder_layers (int, optional): Second-order layers of the
            :class:`MoleculeDecoder` (default: :obj:`num_layers`).
        atoms (list, optional): The atom vocabulary (:obj:`(symbol,
            charge)` pairs); needed for :obj:`valence_regularizer`.
        valence_regularizer (bool): Add the :obj:`"valence"` loss term
            :meth:`valence_loss` (not in the paper). (default:
            :obj:`False`)
        local_decoding (bool): Keep the local (per-cluster) decoders of
            :class:`MGN` and their loss (the paper reconstructs every
            resolution). Sampling never uses them; without them a training
            step costs about half. (default: :obj:`True`)
        masked_decoding (bool): Decode with a masked
            :class:`MoleculeDecoder` (not in the paper): the atoms and bonds
            are decoded in :obj:`decode_rounds` parallel rounds, each
            conditioned on those decoded before, instead of all independently
            given the latents. Training uses the order-agnostic
            autoregressive bound (Uria et al., 2014; Hoogeboom et al.,
            2022): per molecule, :math:`t` of its :math:`D = n(n+1)/2`
            entries (atoms and pairs), :math:`t \sim \mathcal{U}\{0, \ldots,
            D-1\}`, are revealed in a random order and the others' negative
            log-likelihoods are summed and weighted by :math:`D / (D - t)`,
            an unbiased estimate of the negative log-likelihood of the
            molecule under a random decoding order (an upper bound on
            :math:`-\log p(\mathcal{G} \mid \mathcal{Z})`).
            (default: :obj:`False`)
        decode_rounds (int): Rounds :math:`K` of masked decoding when
            sampling: round :math:`k` decodes the entries of rank below
            :math:`\lceil k D / K \rceil` in a uniformly random order
            (:func:`entry_ranks`; values as in :meth:`masked_decode`). One
            round is independent decoding. (default: :obj:`8`)
        distance_context (int): With :obj:`masked_decoding`, the decoder
            also sees the shortest-path distances (up to this many bonds)
            of the bonds decoded so far (:class:`MoleculeDecoder`; not in
            the paper). (default: :obj:`0`)
        encoder_scope (str): As in :class:`MGN`; the default
            :obj:`"graph"` lets the finest latents see the whole molecule,
            which the all-at-once decoder needs to place the bonds between
            clusters (with :obj:`"cluster"`, the finest latents know nothing
            of those bonds). (default: :obj:`"graph"`)
        **kwargs: Other arguments of :class:`MGVAE` (defaults here:
            :obj:`order=2`, :obj:`covariance="mrf"`,
            :obj:`prior="learnable"`, :obj:`global_decoder="second_order"`).
    """
    def __init__(self, num_atom_types: int, hidden_channels: int,
                 latent_channels: int, num_clusters: Sequence[int],
                 max_nodes: int, num_bond_types: int = 3,
                 node_channels: int = 0,
                 decoder_layers: Optional[int] = None,
                 atoms: Optional[Sequence] = None,
                 valence_regularizer: bool = False,
                 local_decoding: bool = True,
                 masked_decoding: bool = False,
                 decode_rounds: int = DECODE_ROUNDS,
                 distance_context: int = 0,
                 encoder_scope: str = 'graph', **kwargs):
        kwargs.setdefault('order', 2)
        kwargs.setdefault('covariance', 'mrf')
        kwargs.setdefault('prior', 'learnable')
        kwargs.setdefault('global_decoder', 'second_order')
        if kwargs.get('feature_loss') is not None:
            raise ValueError("MoleculeMGVAE decodes the atom types itself "
                             "('feature_loss' must be None)")
        if kwargs.get('edge_feature_loss') is not None:
            raise ValueError("MoleculeMGVAE decodes the bond types itself "
                             "('edge_feature_loss' must be None)")
        if not kwargs['global_decoder']:
            raise ValueError("MoleculeMGVAE needs the global decoders")
        num_atom_types = check_int('num_atom_types', num_atom_types)
        num_bond_types = check_int('num_bond_types', num_bond_types)
        node_channels = check_int('node_channels', node_channels, 0)
        decoder_layers = check_int('decoder_layers', decoder_layers,
                                   optional=True)
        decode_rounds = check_int('decode_rounds', decode_rounds)
        super().__init__(num_atom_types + node_channels, hidden_channels,
                         latent_channels, num_clusters, max_nodes=max_nodes,
                         edge_channels=num_bond_types,
                         encoder_scope=encoder_scope, **kwargs)
        if self.order != 2:
            raise ValueError("MoleculeMGVAE uses bond types as edge "
                             "features: it needs order=2")
        self.num_atom_types = num_atom_types
        self.num_bond_types = num_bond_types
        self.node_channels = node_channels
        self.decoder_layers = decoder_layers or self.num_layers
        self.local_decoding = local_decoding
        self.masked_decoding = masked_decoding
        self.decode_rounds = decode_rounds
        self.valence_regularizer = valence_regularizer
        if atoms is not None and len(atoms) != num_atom_types:
            raise ValueError(f"'atoms' has {len(atoms)} types but "
                             f"'num_atom_types' is {num_atom_types}")
        if valence_regularizer and atoms is None:
            raise ValueError("'valence_regularizer' needs 'atoms'")
        self.atoms = None if atoms is None else [tuple(a) for a in atoms]
        if atoms is not None:
            from torch_geometric_mgvae.chem.valence import max_valence
            self.register_buffer('max_valence', torch.tensor(
                [max_valence(*a) for a in self.atoms], dtype=torch.float),
                persistent=False)
        if not local_decoding:
            self.local_decoders = torch.nn.ModuleList()
        # The finest global decoder decodes atoms and bonds jointly:
        self.global_decoders[0] = MoleculeDecoder(
            latent_channels, hidden_channels, self.decoder_layers,
            num_atom_types, num_bond_types,
            normalize=self.normalize_second_order, masked=masked_decoding,
            distance_context=distance_context)

    @property
    def decoder(self) -> MoleculeDecoder:
        return self.global_decoders[0]

    def forward(self, x: Union[Tensor, BaseData], edge_index: Adj = None,
                edge_weight: OptTensor = None, batch: OptTensor = None,
                num_graphs: Optional[int] = None,
                edge_attr: OptTensor = None, **kwargs) -> MGNOutput:
        r"""As :meth:`MGN.forward`; :obj:`edge_attr` (one-hot bond types
        :math:`(E, B)`) is required and kept on the finest level as the
        target of the bond decoder."""
        if edge_attr is None and (not isinstance(x, BaseData) or
                                  x.get('edge_attr') is None):
            raise ValueError("MoleculeMGVAE needs 'edge_attr' (one-hot bond "
                             "types)")
        return super().forward(x, edge_index, edge_weight, batch, num_graphs,
                               edge_attr, **kwargs)

    # Decoding ###############################################################

    def _dense_targets(self, out: MGNOutput):
        lvl = out[0]
        B = lvl.num_graphs
        atom = lvl.x[:, :self.num_atom_types].argmax(dim=-1)
        atom, mask = to_dense_batch(atom, lvl.batch, batch_size=B)  # [B, n]
        bond = lvl.edge_attr.argmax(dim=-1) + 1  # classes 1..B
        bond = to_dense_adj(lvl.edge_index, lvl.batch, bond, batch_size=B,
                            max_num_nodes=mask.size(1)).long()  # [B, n, n]
        return atom, bond, mask

    def decode_molecule(self, z: Tensor, mask: Tensor, *known: Tensor,
                        latent_pre: OptTensor = None):
        r"""Atom logits :math:`(G, n, A)` and bond logits
        :math:`(G, n, n, 1 + B)` of dense finest-level latents
        :math:`(G, n, d)` (with :obj:`masked_decoding`, optionally given
        the known atom types, bond classes and known entries of
        :class:`MoleculeDecoder`, nothing known by default, and the
        latents' part of its first layer, :obj:`latent_pre`)."""
        return self.decoder(z, mask, *known, latent_pre=latent_pre)

    def molecule_recon_loss(self, out: MGNOutput,
                            generator: Optional[torch.Generator] = None
                            ) -> Dict[str, Tensor]:
        r"""Negative log-likelihoods of the atom types
        (:obj:`"atom_recon"`) and of the bond classes of all pairs
        :math:`i < j` (:obj:`"bond_recon"`), per molecule; with
        :obj:`masked_decoding`, their order-agnostic estimates (a random
        part of the molecule revealed, see the class description)."""
        lvl = out[0]
        B = max(lvl.num_graphs, 1)
        if lvl.num_nodes == 0:
            zero = lvl.z.sum() * 0.
            return dict(atom_recon=zero, bond_recon=zero)
        atom, bond, mask = self._dense_targets(out)
        z, _ = to_dense_batch(lvl.z, lvl.batch, batch_size=lvl.num_graphs,
                              max_num_nodes=mask.size(1))  # [B, n, d]
        pairs = (mask.unsqueeze(2) & mask.unsqueeze(1)).triu(1)  # [B, n, n]
        if not self.masked_decoding:
            atom_logits, bond_logits = self.decode_molecule(z, mask)
            atom_loss = F.cross_entropy(atom_logits[mask], atom[mask],
                                        reduction='sum')
            bond_loss = F.cross_entropy(bond_logits[pairs], bond[pairs],
                                        reduction='sum')
            return dict(atom_recon=atom_loss / B, bond_recon=bond_loss / B)
        ranks, D = entry_ranks(mask, generator)
        t = (torch.rand(D.shape, generator=generator, device=D.device) *
             D).floor().long()  # revealed entries per molecule, [B]
        known = ranks < t.view(-1, 1, 1)  # [B, n, n]
        weight = (D / (D - t).clamp(min=1)).to(z.dtype)  # [B]
        atom_logits, bond_logits = self.decode_molecule(z, mask, atom, bond,
                                                        known)
        hidden = mask & ~known.diagonal(dim1=1, dim2=2)  # [B, n]
        nll = F.cross_entropy(atom_logits.transpose(1, 2), atom,
                              reduction='none')  # [B, n]
        atom_loss = (nll * hidden * weight.view(-1, 1)).sum()
        hidden = pairs & ~known  # [B, n, n]
        nll = F.cross_entropy(bond_logits.permute(0, 3, 1, 2), bond,
                              reduction='none')  # [B, n, n]
        bond_loss = (nll * hidden * weight.view(-1, 1, 1)).sum()
        return dict(atom_recon=atom_loss / B, bond_recon=bond_loss / B)

    def masked_decode(self, z: Tensor, mask: Tensor,
                      rounds: Optional[int] = None,
                      generator: Optional[torch.Generator] = None,
                      ranks: OptTensor = None,
                      decode_temperature: float = 0.
                      ) -> Tuple[Tensor, Tensor]:
        r"""Masked decoding (needs :obj:`masked_decoding`): in round
        :math:`k = 1, \ldots, K` (:obj:`rounds`, default
        :obj:`decode_rounds`), the entries (atoms and pairs) of rank below
        :math:`\lceil k D / K \rceil` not decoded yet are decoded given
        the latents and the entries decoded before: their most probable
        value (:obj:`decode_temperature` 0), or a draw from the decoder's
        categorical at temperature :math:`\tau`,
        :math:`\propto p^{1/\tau}` (1 is the model's own distribution).
        The ranks are those of :func:`entry_ranks` unless given.

        Returns:
            The atom and bond class probabilities :math:`(G, n, A)`,
            :math:`(G, n, n, 1 + B)` of every entry in the round that
            decoded it, 0 at padding. The argmax is the decoded molecule:
            a drawn value's entry holds :math:`(\text{one-hot} + p) / 2`,
            so that the correction (:meth:`MoleculeSample.corrected_mols`)
            still ranks the bonds by their probabilities.
        """
        if not self.masked_decoding:
            raise ValueError("masked_decode needs a model built with "
                             "masked_decoding=True")
        K = check_int('rounds', self.decode_rounds if rounds is None
                      else rounds)
        tau = float(decode_temperature)
        if not tau >= 0 or math.isinf(tau):
            raise ValueError(f"'decode_temperature' must be finite and >= 0 "
                             f"(got {decode_temperature})")
        if ranks is None:
            ranks, _ = entry_ranks(mask, generator)
        sizes = mask.sum(dim=1)
        D = sizes * (sizes + 1) // 2  # entries per molecule
        G, n = mask.shape
        off = ~torch.eye(n, dtype=torch.bool, device=mask.device)
        valid = mask.unsqueeze(2) & mask.unsqueeze(1)
        atom = mask.new_zeros(G, n, dtype=torch.long)
        bond = mask.new_zeros(G, n, n, dtype=torch.long)
        known = torch.zeros_like(valid)
        atom_prob = z.new_zeros(G, n, self.num_atom_types)
        bond_prob = z.new_zeros(G, n, n, 1 + self.num_bond_types)
        # The latents' part of the first layer is the same in every round:
        pre = self.decoder.latent_preactivation(z, mask)
        for k in range(1, K + 1):
            t = torch.div(k * D + K - 1, K, rounding_mode='floor')  # ceil
            new = (ranks < t.view(-1, 1, 1)) & valid & ~known
            if not bool(new.any()):
                continue
            a, b = self.decode_molecule(z, mask, atom, bond, known,
                                        latent_pre=pre)
            a, b = a.softmax(-1), b.softmax(-1)
            if tau == 0:
                va, vb = a.argmax(-1), b.argmax(-1)
            else:
                va, vb = _draw(a, tau, generator), _draw(b, tau, generator)
                vb = vb.triu(1) + vb.triu(1).transpose(1, 2)
                a = 0.5 * (F.one_hot(va, a.size(-1)).to(a.dtype) + a)
                b = 0.5 * (F.one_hot(vb, b.size(-1)).to(b.dtype) + b)
            na = new.diagonal(dim1=1, dim2=2)  # [G, n]
            atom_prob = torch.where(na.unsqueeze(-1), a, atom_prob)
            atom = torch.where(na, va, atom)
            nb = new & off
            bond_prob = torch.where(nb.unsqueeze(-1), b, bond_prob)
            bond = torch.where(nb, vb, bond)
            known = known | new
        return apply_mask(atom_prob, mask, 1), apply_mask(bond_prob, mask, 2)

    def local_recon_loss(self, out: MGNOutput,
                         generator: Optional[torch.Generator] = None,
                         shard: Optional[Tuple[int, int]] = None) -> Tensor:
        r"""As :meth:`MGN.local_recon_loss`; 0 without
        :obj:`local_decoding`."""
        if not self.local_decoding:
            return out[0].z.new_zeros(())
        return super().local_recon_loss(out, generator, shard)

    def global_recon_loss(self, out: MGNOutput,
                          generator: Optional[torch.Generator] = None,
                          shard: Optional[Tuple[int, int]] = None
                          ) -> Tensor:
        r"""Bernoulli adjacency likelihood of the coarser levels under their
        global decoders (the finest level is decoded by
        :meth:`molecule_recon_loss`)."""
        loss = out[0].z.new_zeros(())
        for i, lvl in enumerate(out.levels[1:], start=1):
            loss = loss + self._pair_loss(out, i, lvl.batch, lvl.num_graphs,
                                          self.global_decoders[i], generator,
                                          shard)
        return loss / max(out[0].num_graphs, 1)

    def loss_terms(self, out: MGNOutput,
                   generator: Optional[torch.Generator] = None,
                   shard: Optional[Tuple[int, int]] = None
                   ) -> Dict[str, Tensor]:
        if shard is not None:
            raise ValueError("MoleculeMGVAE trains data-parallel over "
                             "molecules (DistributedGraphSampler), not over "
                             "the pairs of one graph ('shard')")
        terms = super().loss_terms(out, generator)
        terms.update(self.molecule_recon_loss(out, generator))
        if self.valence_regularizer and self.training:
            sizes = torch.bincount(out[0].batch, minlength=out[0].num_graphs)
            terms['valence'] = self.valence_loss(sizes[sizes > 0],
                                                 generator)
        return terms

    def valence_loss(self, num_nodes: Tensor,
                     generator: Optional[torch.Generator] = None) -> Tensor:
        r"""A validity regulariser in the spirit of Ma et al. (NeurIPS
        2018), not in the paper: molecules of the given sizes are decoded
        from latents drawn from the prior (detached: only the decoder is
        regularised) and their most probable molecules' valence excess
        (:func:`valence_excess`) plus bond deficit (:func:`bond_deficit`)
        is averaged (straight-through gradients). It is 0 exactly when
        every such molecule respects the valences and has enough bonds to
        be connected. The excess alone is minimised by decoding no bond at
        all (fragments of single atoms are valid molecules); the deficit
        rules that out."""
        if num_nodes.numel() == 0:
            return self.mu_heads[0].weight.sum() * 0.
        z, mask = self.prior_sample(num_nodes, generator)
        atom, bond = self.decode_molecule(z.detach(), mask)
        return (valence_excess(atom, bond, mask, self.max_valence) +
                bond_deficit(bond, mask)).mean()

    # Generation #############################################################

    def _sizes(self, num: int, num_nodes: Optional[Union[int, Tensor]],
               generator: Optional[torch.Generator]) -> Tensor:
        device = self.mu_heads[0].weight.device
        if num_nodes is None:
            if self.num_nodes_count is None:
                raise RuntimeError("Pass 'num_nodes' or call fit_num_nodes() "
                                   "first")
            num_nodes = torch.multinomial(self.num_nodes_count.to(device),
                                          num, True, generator=generator)
        elif isinstance(num_nodes, int):
            num_nodes = torch.full((num, ), num_nodes, device=device)
        num_nodes = torch.as_tensor(num_nodes).long().view(-1).to(device)
        if num_nodes.numel() != num or (num > 0 and (
                int(num_nodes.min()) < 1 or
                int(num_nodes.max()) > self.max_nodes)):
            raise ValueError(f"'num_nodes' must hold one size in "
                             f"[1, {self.max_nodes}] per molecule")
        return num_nodes

    def prior_sample(self, num_nodes: Tensor,
                     generator: Optional[torch.Generator] = None,
                     temperature: float = 1.0):
        r"""Finest-level latents from the prior for molecules of the given
        sizes, :math:`(G, n, d)` and the mask :math:`(G, n)`. With a
        :obj:`temperature` :math:`T`, the learnable prior's noise is scaled
        by :math:`T` (:math:`z = \hat{\mu} + T (\hat{L}\varepsilon +
        \sqrt{\epsilon}\varepsilon')`), the standard one's likewise."""
        dtype = self.mu_heads[0].weight.dtype
        device = num_nodes.device
        m = int(num_nodes.max())
        mask = torch.arange(m, device=device) < num_nodes.view(-1, 1)
        if self.prior is None:
            z = temperature * torch.randn(
                num_nodes.numel(), m, self.latent_channels,
                generator=generator, device=device, dtype=dtype)
            return apply_mask(z, mask, 1), mask
        z, mask = self.prior.sample(num_nodes, generator,
                                    temperature=temperature)
        return z.to(dtype), mask

    @torch.no_grad()
    def sample(self, num: int,
               num_nodes: Optional[Union[int, Tensor]] = None,
               generator: Optional[torch.Generator] = None,
               temperature: float = 1.0,
               batch_size: int = 1024,
               refine_steps: int = 0,
               rounds: Optional[int] = None,
               decode_temperature: float = 0.) -> MoleculeSample:
        r"""Generates molecules all at once: sizes from the training
        distribution (:meth:`fit_num_nodes`) unless given, latents from the
        prior (:meth:`prior_sample`), then the joint atom/bond decoder
        (with :obj:`masked_decoding`, :meth:`masked_decode` in
        :obj:`rounds` rounds, default :obj:`decode_rounds`, at
        :obj:`decode_temperature`), and
        :obj:`refine_steps` steps of :meth:`refine`.

        Returns:
            A :class:`MoleculeSample` (probabilities; call
            :meth:`~MoleculeSample.raw` / :meth:`~MoleculeSample.raw_mols`
            or :meth:`~MoleculeSample.corrected_mols` for molecules).
        """
        refine_steps = check_int('refine_steps', refine_steps, 0)
        rounds = check_int('rounds', rounds, optional=True)
        if refine_steps > 0:
            self._check_refinable()
        num_nodes = self._sizes(num, num_nodes, generator)
        m = int(num_nodes.max()) if num > 0 else 1
        parts = []
        for start in range(0, num, batch_size):
            z, mask = self.prior_sample(num_nodes[start:start + batch_size],
                                        generator, temperature)
            parts.append(self._decode_probabilities(
                z, mask, m, generator, rounds, decode_temperature))
        if num == 0:
            dev = self.mu_heads[0].weight.device
            return MoleculeSample(
                torch.zeros(0, 1, self.num_atom_types, device=dev),
                torch.zeros(0, 1, 1, 1 + self.num_bond_types, device=dev),
                torch.zeros(0, 1, dtype=torch.bool, device=dev))
        sample = MoleculeSample(*map(torch.cat, zip(*parts)))
        return self.refine(sample, refine_steps, generator, batch_size,
                           rounds, decode_temperature)

    def _decode_probabilities(self, z: Tensor, mask: Tensor, m: int,
                              generator: Optional[torch.Generator] = None,
                              rounds: Optional[int] = None,
                              decode_temperature: float = 0.
                              ) -> Tuple[Tensor, Tensor, Tensor]:
        r"""Atom and bond class probabilities decoded at the latents
        :obj:`z` :math:`(G, n, d)` padded to :obj:`m` atoms, and the padded
        mask (the parts of a :class:`MoleculeSample`)."""
        pad = m - z.size(1)
        z, mask = F.pad(z, (0, 0, 0, pad)), F.pad(mask, (0, pad))
        if self.masked_decoding:
            return self.masked_decode(
                z, mask, rounds, generator,
                decode_temperature=decode_temperature) + (mask, )
        atom, bond = self.decode_molecule(z, mask)
        return (apply_mask(atom.softmax(-1), mask, 1),
                apply_mask(bond.softmax(-1), mask, 2), mask)

    def _check_refinable(self):
        if self.node_channels > 0:
            raise ValueError(
                f"Refinement re-encodes decoded molecules, whose extra node "
                f"features (node_channels={self.node_channels}, e.g. RDKit "
                f"features) are undefined: it needs node_channels=0")

    @torch.no_grad()
    def refine(self, sample: MoleculeSample, steps: int = 1,
               generator: Optional[torch.Generator] = None,
               batch_size: int = 1024,
               rounds: Optional[int] = None,
               decode_temperature: float = 0.) -> MoleculeSample:
        r"""Iterative refinement of generated molecules (not in the
        paper): :obj:`steps` times, the most probable molecules of
        :obj:`sample` (:meth:`MoleculeSample.raw`, uncorrected) are encoded
        and a draw of their posterior is decoded, one
        encode-decode step of the autoencoder's Markov chain (Rezende et
        al., 2014), which moves prior samples towards the molecules the
        autoencoder reconstructs. Encoder and decoder are equivariant, so
        the step is too: permuting a molecule's atoms permutes its refined
        probabilities. Atoms keep their order and number.

        It re-encodes decoded molecules, so the encoder input must be the
        one-hot atom types alone (:obj:`node_channels=0`): the extra RDKit
        features are undefined for invalid molecules.

        Returns:
            A :class:`MoleculeSample` (:obj:`sample` itself for
            :obj:`steps=0`).
        """
        from torch_geometric.data import Batch
        steps = check_int('steps', steps, 0)
        if steps == 0 or len(sample) == 0:
            return sample
        self._check_refinable()
        was = self.training
        weight = self.mu_heads[0].weight
        try:
            for _ in range(steps):
                graphs = sample.raw()
                parts = []
                for start in range(0, len(graphs), batch_size):
                    b = Batch.from_data_list(
                        graphs[start:start + batch_size]).to(weight.device)
                    self.train()  # a posterior draw (see encode_latents)
                    out = self(b.x.to(weight.dtype), b.edge_index,
                               batch=b.batch, num_graphs=b.num_graphs,
                               edge_attr=b.edge_attr.to(weight.dtype),
                               generator=generator)
                    self.eval()
                    z, mask = to_dense_batch(out[0].z, out[0].batch,
                                             batch_size=b.num_graphs)
                    parts.append(self._decode_probabilities(
                        z, mask, sample.mask.size(1), generator, rounds,
                        decode_temperature))
                sample = MoleculeSample(*map(torch.cat, zip(*parts)))
        finally:
            self.train(was)
        return sample

    @torch.no_grad()
    def encode_latents(self, data: Data, sample: bool = True,
                       generator: Optional[torch.Generator] = None
                       ) -> Tensor:
        r"""The finest latents of one molecule, :math:`(n, d)`: a draw from
        the posterior (:obj:`sample=True`), or its mean.

        With the Gaussian-MRF posterior the mean alone decodes poorly: the
        encoder also writes the bonds into the covariance
        (:math:`z = \mu + L\varepsilon`, bonded atoms share noise), which
        the decoder learns to read, so a posterior draw is the latent that
        reconstructs the molecule."""
        was = self.training
        self.train(sample)
        batch = torch.zeros(data.num_nodes, dtype=torch.long,
                            device=data.x.device)
        out = self(data.x, data.edge_index, batch=batch,
                   edge_attr=data.edge_attr, generator=generator)
        self.train(was)
        return out[0].z

    @torch.no_grad()
    def decode_latents(self, z: Tensor,
                       generator: Optional[torch.Generator] = None,
                       rounds: Optional[int] = None,
                       decode_temperature: float = 0.) -> MoleculeSample:
        r"""Decodes latents :math:`(G, n, d)` of molecules with :math:`n`
        atoms each (with :obj:`masked_decoding`, by :meth:`masked_decode`).
        """
        mask = torch.ones(z.shape[:2], dtype=torch.bool, device=z.device)
        return MoleculeSample(*self._decode_probabilities(
            z, mask, z.size(1), generator, rounds, decode_temperature))

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}({self.num_atom_types}, '
                f'{self.hidden_channels}, {self.latent_channels}, '
                f'num_clusters={self.num_clusters}, max_nodes='
                f'{self.max_nodes})')
