from typing import Dict, Optional, Sequence, Tuple, Union

import torch
from torch import Tensor

from torch_geometric_mgvae.chem.convert import (
    AROMATIC,
    AtomType,
    AtomVocabulary,
    Chem,
    _build_mol,
    _quiet_rdkit,
    _require_rdkit,
    _vocab,
)

#: Maximum total bond order (explicit valence, hydrogens excluded) of each
#: ``(element, formal charge)`` atom type used by :func:`valence_correct`.
#: Neutral P and S use the largest of RDKit's default allowed valences
#: (P: 3/5, S: 2/4/6); halogens (including I) are kept monovalent; charged
#: atoms follow their isoelectronic neutral element (N+ 4, O- 1, ...).
#: Every entry is accepted by RDKit's sanitization.
MAX_VALENCE: Dict[AtomType, int] = {
    ('C', 0): 4, ('N', 0): 3, ('O', 0): 2, ('F', 0): 1,
    ('P', 0): 5, ('S', 0): 6, ('Cl', 0): 1, ('Br', 0): 1, ('I', 0): 1,
    ('B', 0): 3, ('Si', 0): 4, ('Se', 0): 2,
    ('C', 1): 3, ('C', -1): 3, ('N', 1): 4, ('N', -1): 2,
    ('O', 1): 3, ('O', -1): 1, ('S', 1): 3, ('S', -1): 1,
    ('P', 1): 4, ('P', -1): 2,
}


def max_valence(symbol: str, charge: int = 0) -> int:
    r"""Returns the maximum explicit valence of an atom type, see
    :obj:`MAX_VALENCE`. Unknown types fall back to the largest RDKit
    default valence of the isoelectronic neutral element (or :obj:`4` if
    RDKit does not restrict it)."""
    key = (symbol, int(charge))
    if key in MAX_VALENCE:
        return MAX_VALENCE[key]
    _require_rdkit()
    table = Chem.GetPeriodicTable()
    z = table.GetAtomicNumber(symbol) - int(charge)
    valences = [v for v in table.GetValenceList(max(z, 1)) if v >= 0]
    return max(valences) if len(valences) > 0 else 4


def valence_units(bond_type: int) -> int:
    r"""The valence units a bond of type :obj:`bond_type` (:obj:`1`/:obj:`2`
    /:obj:`3` = single/double/triple, :obj:`4` = aromatic) takes from each
    of its atoms in :func:`valence_correct`: its order, and one for an
    aromatic bond."""
    return 1 if bond_type == AROMATIC + 1 else int(bond_type)


def _symmetrize(prob: Tensor) -> Tensor:
    return 0.5 * (prob + prob.transpose(0, 1))


def valence_correct(
    atom_types: Tensor,
    edge_prob: Tensor,
    bond_type_prob: Optional[Tensor],
    atoms: Union[AtomVocabulary, Sequence],
    threshold: float = 0.5,
    aromatic: bool = False,
) -> Tuple[Tensor, Tensor]:
    r"""The valence correcting process of the MGVAE paper (Appendix D.2).

    Candidate edges :math:`\{i, j\}` (with :math:`i < j`) are sorted by
    their (symmetrized) probability in descending order. Going down the
    list, an edge is added with its most probable bond type if both end
    points still have enough free valence (see :obj:`MAX_VALENCE`), with
    the largest lower bond order that fits otherwise, and it is skipped if
    not even a single bond fits. Candidates with probability below
    :obj:`threshold` are never added. Hence, the result never violates a
    valence constraint (hydrogens fill the free valences).

    Args:
        atom_types (torch.Tensor): Atom type indices into :obj:`atoms`
            ``[n]`` (or scores ``[n, len(atoms)]``, the argmax is taken).
        edge_prob (torch.Tensor): Edge probabilities ``[n, n]``
            (symmetrized as :math:`(\mathbf{P} + \mathbf{P}^{\top}) / 2`;
            the diagonal is ignored).
        bond_type_prob (torch.Tensor, optional): Bond type probabilities
            ``[n, n, 3]`` (single/double/triple), or ``[n, n, 4]`` whose
            first channel (no bond) is ignored; with :obj:`aromatic`
            ``[n, n, 4]`` (single/double/triple/aromatic) or ``[n, n, 5]``
            (no bond first). :obj:`None` means single bonds only.
        atoms (AtomVocabulary or list): The atom types.
        threshold (float, optional): Minimum edge probability.
            (default: :obj:`0.5`)
        aromatic (bool, optional): Whether the bond types include the
            aromatic one (graphs of
            :func:`~torch_geometric_mgvae.chem.mol_to_data` with
            :obj:`kekulize=False`). An aromatic bond takes one valence unit
            of each end, as a single bond does, and is skipped where that
            is not free; whether the aromatic bonds admit a Kekulé
            structure is left to
            :func:`~torch_geometric_mgvae.chem.sanitize_aromatic`.
            (default: :obj:`False`)

    Returns:
        :obj:`(edge_index, bond_types)`: the bonds in both directions
        ``[2, 2 * num_bonds]`` (sorted by row, then column) and their bond
        types ``[2 * num_bonds]`` with :obj:`1`/:obj:`2`/:obj:`3` =
        single/double/triple (and :obj:`4` = aromatic).
    """
    vocab = _vocab(atoms)
    if atom_types.dim() == 2:
        atom_types = atom_types.argmax(dim=-1)
    atom_types = atom_types.long().view(-1)
    n = atom_types.numel()
    edge_prob = _symmetrize(edge_prob.detach().float().view(n, n))

    if bond_type_prob is None:
        preferred = torch.ones(n, n, dtype=torch.long)
    else:
        bond_type_prob = bond_type_prob.detach().float()
        B = 4 if aromatic else 3
        if bond_type_prob.size(-1) == B + 1:
            bond_type_prob = bond_type_prob[..., 1:]
        bond_type_prob = _symmetrize(bond_type_prob.reshape(n, n, B))
        preferred = bond_type_prob.argmax(dim=-1) + 1

    free = [max_valence(*vocab[t]) for t in atom_types.tolist()]

    row, col = torch.triu_indices(n, n, offset=1, device=edge_prob.device)
    prob = edge_prob[row, col]
    mask = prob >= threshold
    row, col, prob = row[mask], col[mask], prob[mask]
    perm = prob.argsort(descending=True, stable=True)
    bonds = []
    for i, j in zip(row[perm].tolist(), col[perm].tolist()):
        kind = int(preferred[i, j])
        units = min(valence_units(kind), free[i], free[j])
        if units < 1:
            continue
        free[i] -= units
        free[j] -= units
        bonds.append((i, j, kind if kind == AROMATIC + 1 else units))

    if len(bonds) == 0:
        return (torch.empty(2, 0, dtype=torch.long),
                torch.empty(0, dtype=torch.long))
    out = torch.tensor(bonds, dtype=torch.long)
    edge_index = torch.cat([out[:, :2], out[:, :2].flip(1)], dim=0).t()
    bond_types = torch.cat([out[:, 2], out[:, 2]], dim=0)
    perm = (edge_index[0] * n + edge_index[1]).argsort()
    return edge_index[:, perm], bond_types[perm]


def largest_fragment(mol: Optional['Chem.Mol']) -> Optional['Chem.Mol']:
    r"""Returns the connected fragment of :obj:`mol` with the most atoms
    (the first one on ties), or :obj:`None` if :obj:`mol` is :obj:`None`."""
    _require_rdkit()
    if mol is None or mol.GetNumAtoms() == 0:
        return mol
    frags = Chem.GetMolFrags(mol, asMols=True, sanitizeFrags=False)
    return max(frags, key=lambda m: m.GetNumAtoms())


def valence_correct_mol(
    atom_types: Tensor,
    edge_prob: Tensor,
    bond_type_prob: Optional[Tensor],
    atoms: Union[AtomVocabulary, Sequence],
    threshold: float = 0.5,
    keep_largest_fragment: bool = False,
    aromatic: bool = False,
) -> Optional['Chem.Mol']:
    r"""Runs :func:`valence_correct` and returns the sanitized RDKit
    molecule (optionally only its largest connected fragment). Returns
    :obj:`None` only if RDKit fails to sanitize it, which the valence
    constraints are designed to prevent (aromatic bonds that admit no
    Kekulé structure are made single by
    :func:`~torch_geometric_mgvae.chem.sanitize_aromatic`)."""
    edge_index, bond_types = valence_correct(atom_types, edge_prob,
                                             bond_type_prob, atoms, threshold,
                                             aromatic)
    if atom_types.dim() == 2:
        atom_types = atom_types.argmax(dim=-1)
    mol = _build_mol(atom_types.long().view(-1), edge_index, bond_types - 1,
                     atoms, sanitize=True, repair=True)
    if mol is not None and keep_largest_fragment:
        mol = largest_fragment(mol)
    return mol


def check_valence(mol: Optional['Chem.Mol']) -> bool:
    r"""Returns :obj:`True` if no atom of :obj:`mol` exceeds its allowed
    valence according to RDKit (:obj:`False` for :obj:`None`)."""
    _require_rdkit()
    if mol is None:
        return False
    mol = Chem.Mol(mol)
    try:
        with _quiet_rdkit():
            Chem.SanitizeMol(mol, sanitizeOps=Chem.SANITIZE_PROPERTIES)
    except Exception:
        return False
    return True


def dense_bond_types(edge_index: Tensor, bond_types: Tensor,
                     num_nodes: int) -> Tensor:
    r"""Converts sparse bonds into a dense bond type matrix ``[n, n]``
    (:obj:`0` = no bond)."""
    out = torch.zeros(num_nodes, num_nodes, dtype=torch.long)
    out[edge_index[0], edge_index[1]] = bond_types.long()
    return out

