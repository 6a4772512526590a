import csv
import gzip
import warnings
from typing import (
    Iterable,
    Iterator,
    List,
    Optional,
    Sequence,
    Tuple,
    Union,
)

import torch
from torch import Tensor
from torch_geometric.data import Data

try:  # RDKit is an optional dependency (``pip install .[chem]``).
    from rdkit import Chem, RDLogger
except ImportError:  # pragma: no cover
    Chem = None
    RDLogger = None

AtomType = Tuple[str, int]
"""An atom type: an ``(element symbol, formal charge)`` pair."""

#: Atom types of QM9 (heavy atoms C, N, O, F; the charged types occur in
#: the zwitterionic molecules of the data set).
QM9_ATOMS: List[AtomType] = [
    ('C', 0), ('N', 0), ('O', 0), ('F', 0),
    ('N', 1), ('O', -1), ('C', -1), ('N', -1),
]

#: Atom types of ZINC (C, N, O, F, P, S, Cl, Br, I and the charged types
#: that occur in ZINC-250k / ZINC-12k).
ZINC_ATOMS: List[AtomType] = [
    ('C', 0), ('N', 0), ('O', 0), ('F', 0), ('P', 0), ('S', 0),
    ('Cl', 0), ('Br', 0), ('I', 0),
    ('N', 1), ('O', -1), ('N', -1), ('S', -1), ('O', 1), ('S', 1),
]

#: Bond orders in the order of the one-hot ``edge_attr`` columns.
BOND_ORDERS: List[float] = [1.0, 2.0, 3.0, 1.5]

#: Index of the aromatic bond type in :const:`BOND_ORDERS` (the fourth
#: ``edge_attr`` column of graphs built with :obj:`kekulize=False`).
AROMATIC = 3

NUM_ATOM_FEATURES = 24
"""Number of chemical atom features of :func:`atom_features`."""


def _require_rdkit():
    if Chem is None:  # pragma: no cover
        raise ImportError("'torch_geometric_mgvae.chem' requires 'rdkit' "
                          "(install it via 'pip install rdkit')")


def _bond_types():
    return [
        Chem.BondType.SINGLE, Chem.BondType.DOUBLE, Chem.BondType.TRIPLE,
        Chem.BondType.AROMATIC
    ]


class AtomVocabulary(Sequence):
    r"""An :class:`~torch_geometric.nn.AtomEncoder`-like vocabulary that maps
    atom types, *i.e.* ``(element symbol, formal charge)`` pairs, to
    consecutive indices.

    Args:
        atoms (Iterable[Tuple[str, int]]): The atom types. Plain symbols
            (:obj:`"C"`) are read as neutral atoms.
    """
    def __init__(self, atoms: Iterable[Union[AtomType, str]]):
        self.atoms: List[AtomType] = []
        for atom in atoms:
            if isinstance(atom, str):
                atom = (atom, 0)
            atom = (str(atom[0]), int(atom[1]))
            if atom in self.atoms:
                raise ValueError(f"Duplicated atom type {atom}")
            self.atoms.append(atom)
        self._index = {atom: i for i, atom in enumerate(self.atoms)}

    def __len__(self) -> int:
        return len(self.atoms)

    def __getitem__(self, idx: int) -> AtomType:
        return self.atoms[idx]

    def __iter__(self) -> Iterator[AtomType]:
        return iter(self.atoms)

    def __eq__(self, other) -> bool:
        return list(self) == [tuple(a) for a in other]

    def index_of(self, symbol: str, charge: int = 0) -> Optional[int]:
        r"""Returns the index of the atom type or :obj:`None` if unknown."""
        return self._index.get((symbol, int(charge)))

    def encode(self, mol: 'Chem.Mol') -> Optional[Tensor]:
        r"""Returns the atom type indices ``[num_atoms]`` of an RDKit
        molecule, or :obj:`None` if an atom is not in the vocabulary."""
        out = []
        for atom in mol.GetAtoms():
            idx = self.index_of(atom.GetSymbol(), atom.GetFormalCharge())
            if idx is None:
                return None
            out.append(idx)
        return torch.tensor(out, dtype=torch.long)

    @classmethod
    def from_smiles(cls, smiles: Iterable[str]) -> 'AtomVocabulary':
        r"""Builds the vocabulary of all atom types (heavy atoms) found in a
        list of SMILES strings; invalid SMILES are ignored. Types are sorted
        neutral first, then by atomic number and charge."""
        return cls(build_atom_vocabulary(smiles))

    def __repr__(self) -> str:
        return f'{self.__class__.__name__}({self.atoms})'


def build_atom_vocabulary(smiles: Iterable[str]) -> List[AtomType]:
    r"""Returns the sorted list of atom types (``(symbol, charge)`` pairs)
    that occur in :obj:`smiles` (neutral types first, then by atomic number
    and charge). Invalid SMILES are ignored."""
    _require_rdkit()
    found = {}
    with _quiet_rdkit():
        for smi in smiles:
            mol = Chem.MolFromSmiles(smi) if smi else None
            if mol is None:
                continue
            for atom in mol.GetAtoms():
                key = (atom.GetSymbol(), atom.GetFormalCharge())
                found[key] = (key[1] != 0, atom.GetAtomicNum(), key[1])
    return sorted(found, key=lambda k: found[k])


def _vocab(atoms: Union[AtomVocabulary, Sequence]) -> AtomVocabulary:
    if isinstance(atoms, AtomVocabulary):
        return atoms
    return AtomVocabulary(atoms)


class _quiet_rdkit:
    r"""Context manager that silences RDKit's error log."""
    def __enter__(self):
        if RDLogger is not None:
            RDLogger.DisableLog('rdApp.*')

    def __exit__(self, *args):
        if RDLogger is not None:
            RDLogger.EnableLog('rdApp.*')


def mol_to_data(
    mol: Optional['Chem.Mol'],
    atoms: Union[AtomVocabulary, Sequence] = QM9_ATOMS,
    kekulize: bool = True,
    chem_features: bool = False,
) -> Optional[Data]:
    r"""Converts an RDKit molecule into a :class:`~torch_geometric.data.Data`
    graph of its heavy atoms (hydrogens are implicit).

    The graph holds :obj:`x` (one-hot atom types ``[num_atoms, len(atoms)]``),
    :obj:`edge_index` (both directions, ``[2, 2 * num_bonds]``),
    :obj:`edge_attr` (one-hot bond types single/double/triple
    ``[2 * num_bonds, 3]``; with :obj:`kekulize=False` a fourth aromatic
    column) and :obj:`smiles` (the canonical SMILES, without stereo).

    Args:
        mol (rdkit.Chem.Mol, optional): The molecule.
        atoms (AtomVocabulary or list): The atom types.
        kekulize (bool, optional): If :obj:`True`, aromatic bonds are
            kekulized (and aromatic flags cleared). (default: :obj:`True`)
        chem_features (bool, optional): If :obj:`True`, also stores the
            Table 7 features of :func:`atom_features` as :obj:`chem_x`.
            (default: :obj:`False`)

    Returns:
        The graph, or :obj:`None` if :obj:`mol` is :obj:`None`, cannot be
        kekulized, contains an atom type not in :obj:`atoms` or a bond that
        is not single/double/triple (or aromatic).
    """
    _require_rdkit()
    if mol is None:
        return None
    vocab = _vocab(atoms)
    try:
        mol = Chem.Mol(mol)
        mol = Chem.RemoveHs(mol)
        smiles = Chem.MolToSmiles(mol, isomericSmiles=False)
        if kekulize:
            Chem.Kekulize(mol, clearAromaticFlags=True)
    except Exception:
        return None
    if mol.GetNumAtoms() == 0:
        return None
    types = vocab.encode(mol)
    if types is None:
        return None
    bond_types = _bond_types()[:3 if kekulize else 4]
    rows, cols, attrs = [], [], []
    for bond in mol.GetBonds():
        bt = bond.GetBondType()
        if bt not in bond_types:
            return None
        i, j = bond.GetBeginAtomIdx(), bond.GetEndAtomIdx()
        rows += [i, j]
        cols += [j, i]
        attrs += [bond_types.index(bt)] * 2

    x = torch.nn.functional.one_hot(types, len(vocab)).float()
    edge_index = torch.tensor([rows, cols], dtype=torch.long)
    edge_index = edge_index.view(2, -1)
    edge_attr = torch.nn.functional.one_hot(
        torch.tensor(attrs, dtype=torch.long), len(bond_types)).float()
    edge_attr = edge_attr.view(-1, len(bond_types))
    if edge_index.numel() > 0:  # Sort by (row, col), PyG convention.
        perm = (edge_index[0] * x.size(0) + edge_index[1]).argsort()
        edge_index, edge_attr = edge_index[:, perm], edge_attr[perm]
    data = Data(x=x, edge_index=edge_index, edge_attr=edge_attr,
                smiles=smiles)
    if chem_features:
        data.chem_x = atom_features(mol)
    return data


def smiles_to_data(
    smiles: Optional[str],
    atoms: Union[AtomVocabulary, Sequence] = QM9_ATOMS,
    kekulize: bool = True,
    chem_features: bool = False,
) -> Optional[Data]:
    r"""Converts a SMILES string into a graph, see :func:`mol_to_data`.
    Never raises: returns :obj:`None` for an invalid SMILES string or an
    atom type not in :obj:`atoms`."""
    _require_rdkit()
    if not isinstance(smiles, str) or len(smiles.strip()) == 0:
        return None
    try:
        with _quiet_rdkit():
            mol = Chem.MolFromSmiles(smiles.strip())
            return mol_to_data(mol, atoms, kekulize, chem_features)
    except Exception:
        return None


def dense_to_mol(
    atom_types: Union[Tensor, Sequence[int]],
    bond_types: Union[Tensor, Sequence[Sequence[int]]],
    atoms: Union[AtomVocabulary, Sequence] = QM9_ATOMS,
    sanitize: bool = True,
) -> Optional['Chem.Mol']:
    r"""Builds an RDKit molecule from dense atom types ``[n]`` (indices into
    :obj:`atoms`) and a dense bond type matrix ``[n, n]`` (:obj:`0` = no
    bond, :obj:`1`/:obj:`2`/:obj:`3` = single/double/triple, :obj:`4` =
    aromatic). Only the upper triangle of :obj:`bond_types` is read.

    Returns:
        The molecule, or :obj:`None` if :obj:`sanitize=True` and RDKit
        fails to sanitize it (*e.g.*, a valence violation).
    """
    atom_types = torch.as_tensor(atom_types, dtype=torch.long).view(-1)
    bond_types = torch.as_tensor(bond_types, dtype=torch.long)
    n = atom_types.numel()
    bond_types = bond_types.view(n, n).triu(1)
    row, col = bond_types.nonzero().t()
    edge_index = torch.stack([row, col], dim=0)
    return _build_mol(atom_types, edge_index, bond_types[row, col] - 1,
                      atoms, sanitize)


def data_to_mol(
    x: Tensor,
    edge_index: Tensor,
    edge_attr: Optional[Tensor],
    atoms: Union[AtomVocabulary, Sequence] = QM9_ATOMS,
    sanitize: bool = True,
) -> Optional['Chem.Mol']:
    r"""Builds an RDKit molecule from a sparse graph.

    Args:
        x (torch.Tensor): One-hot (or scores of) atom types
            ``[n, len(atoms)]`` (the argmax is taken), or atom type indices
            ``[n]``.
        edge_index (torch.Tensor): The bonds ``[2, E]`` (one or both
            directions; duplicates are merged).
        edge_attr (torch.Tensor, optional): One-hot (or scores of) bond types
            ``[E, 3]`` (single/double/triple) or ``[E, 4]`` (with
            aromatic), or bond type indices ``[E]`` with :obj:`0` = single.
            :obj:`None` means all single bonds.
        atoms (AtomVocabulary or list): The atom types.
        sanitize (bool, optional): If :obj:`True`, sanitizes the molecule
            and returns :obj:`None` on failure. (default: :obj:`True`)
    """
    types = x.argmax(dim=-1) if x.dim() == 2 else x.long()
    if edge_attr is None:
        bonds = edge_index.new_zeros(edge_index.size(1))
    elif edge_attr.dim() == 2:
        bonds = edge_attr.argmax(dim=-1)
    else:
        bonds = edge_attr.long()
    return _build_mol(types, edge_index, bonds, atoms, sanitize)


def _build_mol(atom_types: Tensor, edge_index: Tensor, bonds: Tensor,
               atoms, sanitize: bool,
               repair: bool = False) -> Optional['Chem.Mol']:
    _require_rdkit()
    vocab = _vocab(atoms)
    bond_types = _bond_types()
    mol = Chem.RWMol()
    for t in atom_types.tolist():
        symbol, charge = vocab[t]
        atom = Chem.Atom(symbol)
        atom.SetFormalCharge(charge)
        mol.AddAtom(atom)
    seen = set()
    for (i, j), b in zip(edge_index.t().tolist(), bonds.tolist()):
        if i == j or (min(i, j), max(i, j)) in seen:
            continue
        seen.add((min(i, j), max(i, j)))
        mol.AddBond(i, j, bond_types[b])
        if b == AROMATIC:
            mol.GetBondBetweenAtoms(i, j).SetIsAromatic(True)
            mol.GetAtomWithIdx(i).SetIsAromatic(True)
            mol.GetAtomWithIdx(j).SetIsAromatic(True)
    mol = mol.GetMol()
    if sanitize:
        return sanitize_aromatic(mol, repair)
    return mol


def _try_sanitize(mol: 'Chem.Mol') -> Optional['Chem.Mol']:
    mol = Chem.Mol(mol)
    try:
        with _quiet_rdkit():
            Chem.SanitizeMol(mol)
    except Exception:
        return None
    return mol


def _problem_atoms(mol: 'Chem.Mol') -> List[int]:
    out: List[int] = []
    with _quiet_rdkit():
        problems = Chem.DetectChemistryProblems(mol)
    for p in problems:
        if hasattr(p, 'GetAtomIndices'):
            out += list(p.GetAtomIndices())
        elif hasattr(p, 'GetAtomIdx'):
            out.append(p.GetAtomIdx())
    return out


def _with_pyrrole_hydrogens(mol: 'Chem.Mol') -> Optional['Chem.Mol']:
    # A graph of aromatic bonds does not say which aromatic nitrogen
    # carries a hydrogen (pyrrole-type [nH] against pyridine-type n): try
    # one, then two, of the neutral two-bonded aromatic nitrogens that
    # RDKit could not kekulize (all such nitrogens if it named none).
    problems = set(_problem_atoms(mol))
    cand = [a.GetIdx() for a in mol.GetAtoms()
            if a.GetIsAromatic() and a.GetSymbol() == 'N'
            and a.GetFormalCharge() == 0 and a.GetDegree() == 2
            and a.GetNumExplicitHs() == 0]
    cand = [i for i in cand if i in problems] or cand
    cand = cand[:8]
    tries = [(i, ) for i in cand] + [(i, j) for k, i in enumerate(cand)
                                     for j in cand[k + 1:]]
    for subset in tries:
        trial = Chem.RWMol(mol)
        for i in subset:
            trial.GetAtomWithIdx(i).SetNumExplicitHs(1)
        out = _try_sanitize(trial.GetMol())
        if out is not None:
            return out
    return None


def sanitize_aromatic(mol: Optional['Chem.Mol'],
                      repair: bool = False) -> Optional['Chem.Mol']:
    r"""Sanitizes a molecule built from a graph that may hold aromatic
    bonds; returns the sanitized copy, or :obj:`None` on failure.

    Without aromatic bonds this is RDKit's :obj:`SanitizeMol`. With them,
    a molecule that RDKit cannot kekulize is tried again with an explicit
    hydrogen on one or two of its neutral two-bonded aromatic nitrogens
    (the graph does not say which ring nitrogen is pyrrole-type, *e.g.* in
    indole or imidazole). With :obj:`repair`, the aromatic bonds at the
    atoms RDKit names as the problem are then made single, one round at a
    time, until the molecule sanitizes; a molecule whose aromatic bonds
    count one valence unit each (as :func:`~torch_geometric_mgvae.chem.
    valence_correct` counts them) thus always sanitizes."""
    _require_rdkit()
    if mol is None:
        return None
    out = _try_sanitize(mol)
    if out is not None:
        return out
    if not any(b.GetIsAromatic() for b in mol.GetBonds()):
        return None
    out = _with_pyrrole_hydrogens(mol)
    if out is not None or not repair:
        return out
    mol = Chem.RWMol(mol)
    while any(b.GetIsAromatic() for b in mol.GetBonds()):
        bad = set(_problem_atoms(mol.GetMol()))
        arom = [b for b in mol.GetBonds() if b.GetIsAromatic()]
        hit = [b for b in arom if b.GetBeginAtomIdx() in bad
               or b.GetEndAtomIdx() in bad] or arom
        for b in hit:
            b.SetBondType(Chem.BondType.SINGLE)
            b.SetIsAromatic(False)
        for a in mol.GetAtoms():
            a.SetIsAromatic(any(b.GetIsAromatic() for b in a.GetBonds()))
        out = _try_sanitize(mol.GetMol())
        if out is None and any(b.GetIsAromatic() for b in mol.GetBonds()):
            out = _with_pyrrole_hydrogens(mol.GetMol())
        if out is not None:
            return out
    return None


def mol_to_smiles(mol: Optional['Chem.Mol'],
                  isomeric: bool = False) -> Optional[str]:
    r"""Returns the canonical SMILES of :obj:`mol` (without stereo
    information unless :obj:`isomeric=True`), or :obj:`None` if :obj:`mol`
    is :obj:`None` or cannot be written."""
    _require_rdkit()
    if mol is None:
        return None
    try:
        with _quiet_rdkit():
            return Chem.MolToSmiles(mol, isomericSmiles=isomeric)
    except Exception:
        return None


def canonical_smiles(smiles: Optional[str],
                     isomeric: bool = False) -> Optional[str]:
    r"""Returns the canonical form of a SMILES string (without stereo
    information unless :obj:`isomeric=True`), or :obj:`None` if invalid."""
    _require_rdkit()
    if not isinstance(smiles, str) or len(smiles.strip()) == 0:
        return None
    with _quiet_rdkit():
        mol = Chem.MolFromSmiles(smiles.strip())
    if mol is None or mol.GetNumAtoms() == 0:
        return None
    return mol_to_smiles(mol, isomeric)


def _explicit_valence(atom: 'Chem.Atom') -> int:
    # RDKit >= 2024.09 deprecates ``GetExplicitValence()``.
    if hasattr(Chem, 'ValenceType') and hasattr(atom, 'GetValence'):
        return atom.GetValence(Chem.ValenceType.EXPLICIT)
    return atom.GetExplicitValence()  # pragma: no cover


def atom_features(mol: 'Chem.Mol') -> Tensor:
    r"""The 24 chemical atom features of Table 7 of the MGVAE paper.

    Per atom: :obj:`GetAtomicNum`, :obj:`IsInRing`, :obj:`IsInRingSize(k)`
    for :obj:`k = 1, ..., 9` (nine booleans), :obj:`GetIsAromatic`,
    :obj:`GetDegree`, explicit valence, :obj:`GetFormalCharge`,
    :obj:`GetIsotope`, :obj:`GetMass`, :obj:`GetNoImplicit`,
    :obj:`GetNumExplicitHs`, :obj:`GetNumImplicitHs`,
    :obj:`GetNumRadicalElectrons`, :obj:`GetTotalDegree`,
    :obj:`GetTotalNumHs`, :obj:`GetTotalValence`.

    The explicit valence is read via
    :obj:`GetValence(Chem.ValenceType.EXPLICIT)` (the RDKit >= 2024.09
    replacement of the deprecated :obj:`GetExplicitValence`). Features are
    read from :obj:`mol` as given: for a molecule kekulized with
    :obj:`clearAromaticFlags=True` (as in :func:`mol_to_data`),
    :obj:`GetIsAromatic` is :obj:`0`, while all other features are
    unchanged (*e.g.*, a benzene carbon has explicit valence :obj:`3` both
    as :math:`1.5 + 1.5` and as :math:`1 + 2`, one implicit hydrogen and
    :obj:`IsInRingSize(6)` set).

    Column order: :obj:`0` atomic number, :obj:`1` in ring, :obj:`2-10` in
    ring of size 1-9, :obj:`11` aromatic, :obj:`12` degree, :obj:`13`
    explicit valence, :obj:`14` formal charge, :obj:`15` isotope, :obj:`16`
    mass, :obj:`17` no implicit, :obj:`18` explicit Hs, :obj:`19` implicit
    Hs, :obj:`20` radical electrons, :obj:`21` total degree, :obj:`22` total
    Hs, :obj:`23` total valence.

    Returns:
        A float tensor ``[num_atoms, 24]``.
    """
    _require_rdkit()
    mol.UpdatePropertyCache(strict=False)
    try:
        with _quiet_rdkit():
            mol.GetRingInfo().NumRings()
    except RuntimeError:  # Ring information not initialized.
        Chem.FastFindRings(mol)
    rows = []
    for atom in mol.GetAtoms():
        row = [atom.GetAtomicNum(), int(atom.IsInRing())]
        row += [int(atom.IsInRingSize(k)) for k in range(1, 10)]
        row += [
            int(atom.GetIsAromatic()),
            atom.GetDegree(),
            _explicit_valence(atom),
            atom.GetFormalCharge(),
            atom.GetIsotope(),
            atom.GetMass(),
            int(atom.GetNoImplicit()),
            atom.GetNumExplicitHs(),
            atom.GetNumImplicitHs(),
            atom.GetNumRadicalElectrons(),
            atom.GetTotalDegree(),
            atom.GetTotalNumHs(),
            atom.GetTotalValence(),
        ]
        rows.append(row)
    out = torch.tensor(rows, dtype=torch.float)
    return out.view(-1, NUM_ATOM_FEATURES)


def _open(path: str):
    if str(path).endswith('.gz'):
        return gzip.open(path, 'rt', newline='')
    return open(path, newline='')


def read_smiles_file(
    path: str,
    column: Union[str, int] = 'SMILES',
    atoms: Union[AtomVocabulary, Sequence] = QM9_ATOMS,
    kekulize: bool = True,
    max_num: Optional[int] = None,
) -> Tuple[List[Data], int]:
    r"""Reads a (optionally gzipped) CSV file of SMILES strings into graphs.

    Invalid SMILES strings and molecules with atom types not in
    :obj:`atoms` are skipped and counted; a warning reports the count.
    Never raises for bad molecules.

    Args:
        path (str): The CSV file (with a header row).
        column (str or int, optional): The SMILES column, by name or
            position. (default: :obj:`"SMILES"`)
        atoms (AtomVocabulary or list): The atom types.
        kekulize (bool, optional): See :func:`mol_to_data`.
            (default: :obj:`True`)
        max_num (int, optional): Reads at most this many rows.

    Returns:
        The list of graphs and the number of skipped rows.
    """
    vocab = _vocab(atoms)
    data_list: List[Data] = []
    num_invalid = 0
    with _open(path) as f:
        reader = csv.reader(f)
        header = next(reader, None)
        if header is None:
            return data_list, 0
        if isinstance(column, str):
            if column not in header:
                raise KeyError(f"Column '{column}' not found in '{path}' "
                               f"(available: {header})")
            col = header.index(column)
        else:
            col = int(column)
        for i, row in enumerate(reader):
            if max_num is not None and i >= max_num:
                break
            smiles = row[col] if col < len(row) else None
            data = smiles_to_data(smiles, vocab, kekulize)
            if data is None:
                num_invalid += 1
            else:
                data_list.append(data)
    if num_invalid > 0:
        warnings.warn(f"Skipped {num_invalid} invalid SMILES strings (or "
                      f"with unknown atom types) in '{path}'")
    return data_list, num_invalid
