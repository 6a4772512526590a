import math
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple

from torch_geometric_mgvae.chem.convert import (
    Chem,
    _quiet_rdkit,
    _require_rdkit,
    canonical_smiles,
    mol_to_smiles,
)


def _to_mol(item: Any) -> Optional['Chem.Mol']:
    r"""Returns a sanitized copy of a SMILES string / RDKit molecule, or
    :obj:`None` if it is :obj:`None`, empty (no atoms) or RDKit fails to
    parse or sanitize it."""
    _require_rdkit()
    if item is None:
        return None
    try:
        with _quiet_rdkit():
            if isinstance(item, str):
                if len(item.strip()) == 0:
                    return None
                mol = Chem.MolFromSmiles(item.strip())
            else:
                mol = Chem.Mol(item)
                Chem.SanitizeMol(mol)
    except Exception:
        return None
    if mol is None or mol.GetNumAtoms() == 0:
        return None
    return mol


def valid_mols(smiles_or_mols: Iterable[Any]) -> List['Chem.Mol']:
    r"""Returns the sanitized molecules of all valid entries (see
    :func:`validity`), in order."""
    out = [_to_mol(item) for item in smiles_or_mols]
    return [mol for mol in out if mol is not None]


def validity(smiles_or_mols: Sequence[Any]) -> float:
    r"""The fraction of valid molecules.

    .. math::
        \textrm{validity} = \frac{\#\{\textrm{entries that RDKit parses and
        sanitizes}\}}{\#\{\textrm{all entries}\}}

    Entries are SMILES strings or RDKit molecules; :obj:`None`, empty
    strings, molecules without atoms and anything RDKit fails to parse or
    sanitize count as invalid (in the denominator). Returns :obj:`0.0` for
    an empty list.
    """
    items = list(smiles_or_mols)
    if len(items) == 0:
        return 0.0
    return len(valid_mols(items)) / len(items)


def _canonical(items: Iterable[Any]) -> List[str]:
    out = []
    for mol in valid_mols(items):
        smi = mol_to_smiles(mol)
        if smi is not None:
            out.append(smi)
    return out


def uniqueness(valid: Sequence[Any]) -> float:
    r"""The fraction of unique molecules among the valid ones.

    .. math::
        \textrm{uniqueness} = \frac{\#\{\textrm{distinct canonical SMILES of
        valid entries}\}}{\#\{\textrm{valid entries}\}}

    Invalid entries (see :func:`validity`) are ignored, *i.e.* they appear
    in neither numerator nor denominator. Canonical SMILES are written
    without stereo information. Returns :obj:`0.0` if there is no valid
    entry.
    """
    smiles = _canonical(valid)
    if len(smiles) == 0:
        return 0.0
    return len(set(smiles)) / len(smiles)


def novelty(valid: Sequence[Any], train_smiles: Iterable[str]) -> float:
    r"""The fraction of valid molecules that are not in the training set.

    .. math::
        \textrm{novelty} = \frac{\#\{\textrm{valid entries whose canonical
        SMILES is not a training canonical SMILES}\}}{\#\{\textrm{valid
        entries}\}}

    Duplicates are counted with multiplicity; invalid entries are ignored
    (in neither numerator nor denominator); invalid training SMILES are
    ignored. Canonical SMILES are written without stereo information.
    Returns :obj:`0.0` if there is no valid entry.
    """
    smiles = _canonical(valid)
    if len(smiles) == 0:
        return 0.0
    train = _train_set(train_smiles)
    return sum(smi not in train for smi in smiles) / len(smiles)


def canonical_set(smiles: Iterable[str]) -> frozenset:
    r"""The canonical SMILES (without stereo) of :obj:`smiles`, invalid
    entries dropped. Pass the result as :obj:`train_smiles` of
    :func:`novelty` or :func:`molecule_metrics` to canonicalise a training
    set once for several calls."""
    out = set()
    for smi in smiles:
        can = canonical_smiles(smi)
        if can is not None:
            out.add(can)
    return frozenset(out)


def _train_set(train_smiles: Iterable[str]) -> frozenset:
    if isinstance(train_smiles, frozenset):  # from canonical_set
        return train_smiles
    return canonical_set(train_smiles)


def qed_stats(mols: Sequence[Any]) -> Tuple[float, float]:
    r"""The mean and (population, :obj:`ddof=0`) standard deviation of the
    QED drug-likeness of the valid entries (invalid ones are ignored).
    Returns :obj:`(nan, nan)` if there is no valid entry."""
    from rdkit.Chem import QED
    values = []
    for mol in valid_mols(mols):
        try:
            values.append(float(QED.qed(mol)))
        except Exception:  # pragma: no cover
            continue
    if len(values) == 0:
        return math.nan, math.nan
    mean = sum(values) / len(values)
    var = sum((v - mean)**2 for v in values) / len(values)
    return mean, math.sqrt(var)


def ring_stats(mols: Sequence[Any]) -> Dict[str, float]:
    r"""Ring statistics of the valid entries (invalid ones are ignored),
    the structure FCD and NSPDK summarise in one number:

    * :obj:`atoms`: heavy atoms per molecule;
    * :obj:`fragments`: connected fragments per molecule;
    * :obj:`rings`: rings (RDKit's smallest set of smallest rings) per
      molecule;
    * :obj:`aromatic`: the share of molecules with an aromatic ring;
    * :obj:`aromatic_rings`: aromatic rings (all bonds aromatic) per
      molecule;
    * :obj:`ring_3_4`, :obj:`ring_5_6`, :obj:`ring_7_plus`: the shares of
      the rings with 3-4, 5-6 and at least 7 atoms (:obj:`nan` without
      rings).

    All values are :obj:`nan` if there is no valid entry.
    """
    valid = valid_mols(mols)
    keys = ('atoms', 'fragments', 'rings', 'aromatic', 'aromatic_rings',
            'ring_3_4', 'ring_5_6', 'ring_7_plus')
    if len(valid) == 0:
        return {key: math.nan for key in keys}
    sizes = [len(r) for mol in valid for r in mol.GetRingInfo().AtomRings()]
    aromatic = sum(any(a.GetIsAromatic() for a in mol.GetAtoms())
                   for mol in valid)
    aromatic_rings = sum(
        all(mol.GetBondWithIdx(b).GetIsAromatic() for b in ring)
        for mol in valid for ring in mol.GetRingInfo().BondRings())

    def share(lo: int, hi: float) -> float:
        if not sizes:
            return math.nan
        return sum(lo <= k <= hi for k in sizes) / len(sizes)

    V = len(valid)
    return dict(
        atoms=sum(mol.GetNumAtoms() for mol in valid) / V,
        fragments=sum(len(Chem.GetMolFrags(mol)) for mol in valid) / V,
        rings=len(sizes) / V, aromatic=aromatic / V,
        aromatic_rings=aromatic_rings / V,
        ring_3_4=share(3, 4), ring_5_6=share(5, 6),
        ring_7_plus=share(7, math.inf))


def _fcd(smiles: List[str], train: List[str], device: Any = 'cpu'
         ) -> Optional[float]:
    try:
        from fcd_torch import FCD
    except ImportError:
        return None
    if len(smiles) < 2 or len(train) < 2:
        return None
    try:
        return float(FCD(device=str(device), n_jobs=1)(smiles, train))
    except Exception:  # pragma: no cover
        return None


def molecule_metrics(
    generated: Sequence[Any],
    train_smiles: Sequence[str],
    fcd: bool = True,
    device: Any = 'cpu',
) -> Dict[str, float]:
    r"""Computes the standard molecule generation metrics.

    With :math:`N` generated entries (SMILES strings or RDKit molecules,
    :obj:`None` allowed) of which :math:`V` are valid:

    * :obj:`num_generated`: :math:`N`; :obj:`num_valid`: :math:`V`.
    * :obj:`validity`: :math:`V / N` (see :func:`validity`).
    * :obj:`validity_connected`: the number of valid entries that are a
      single connected fragment, divided by :math:`N` (the validity
      without the "keep the largest fragment" relaxation).
    * :obj:`uniqueness`: distinct canonical SMILES of valid entries
      divided by :math:`V` (see :func:`uniqueness`).
    * :obj:`novelty`: valid entries (with multiplicity) not in
      :obj:`train_smiles` divided by :math:`V` (see :func:`novelty`).
    * :obj:`valid_unique_novel`: distinct canonical SMILES of valid entries
      not in :obj:`train_smiles`, divided by :math:`N`.
    * :obj:`qed_mean`, :obj:`qed_std`: QED over the :math:`V` valid
      entries (see :func:`qed_stats`).
    * :obj:`fcd`: Fréchet ChemNet Distance between the valid canonical
      SMILES and :obj:`train_smiles`, only if :obj:`fcd=True` and the
      optional :obj:`fcd_torch` package is importable (ChemNet runs on
      :obj:`device`, default the CPU).

    Ratios with a zero denominator are :obj:`0.0`; QED statistics are
    :obj:`nan` without valid entries.
    """
    items = list(generated)
    n = len(items)
    mols = valid_mols(items)
    smiles = [mol_to_smiles(mol) for mol in mols]
    v = len(mols)
    train = _train_set(train_smiles)
    connected = sum(len(Chem.GetMolFrags(mol)) == 1 for mol in mols)
    unique = set(smiles)
    qed_mean, qed_std = qed_stats(mols)
    out = {
        'num_generated': float(n),
        'num_valid': float(v),
        'validity': v / n if n > 0 else 0.0,
        'validity_connected': connected / n if n > 0 else 0.0,
        'uniqueness': len(unique) / v if v > 0 else 0.0,
        'novelty': (sum(s not in train for s in smiles) / v if v > 0 else
                    0.0),
        'valid_unique_novel': (len(unique - train) / n if n > 0 else 0.0),
        'qed_mean': qed_mean,
        'qed_std': qed_std,
    }
    if fcd:
        value = _fcd(smiles, sorted(train), device)
        if value is not None:
            out['fcd'] = value
    return out


def mol_to_nx(mol: 'Chem.Mol'):
    r"""A :class:`networkx.Graph` of a molecule for graph kernels: nodes
    labelled with the atom symbol, edges with the bond order of the
    Kekulé form (1, 2 or 3; aromatic rings become alternating single and
    double bonds), as GDSS labels molecules for NSPDK."""
    import networkx as nx
    _require_rdkit()
    mol = Chem.Mol(mol)
    try:
        Chem.Kekulize(mol, clearAromaticFlags=True)
    except Exception:  # a molecule RDKit cannot kekulize keeps 1.5
        pass
    g = nx.Graph()
    for atom in mol.GetAtoms():
        g.add_node(atom.GetIdx(), label=atom.GetSymbol())
    for bond in mol.GetBonds():
        g.add_edge(bond.GetBeginAtomIdx(), bond.GetEndAtomIdx(),
                   label=int(bond.GetBondTypeAsDouble()))
    return g


def nspdk_features(items: Sequence[Any]):
    r"""NSPDK feature vectors (EDeN's :obj:`vectorize` with
    :obj:`complexity=4, discrete=True`, unit-normalised, the setting of
    GDSS's NSPDK MMD) of the valid entries of :obj:`items` (SMILES strings
    or RDKit molecules; invalid ones are dropped), a SciPy sparse matrix
    with one row per valid molecule. Needs the optional :obj:`eden-kernel`
    package (:obj:`pip install torch_geometric_mgvae[chem]`)."""
    try:
        from eden.graph import vectorize
    except ImportError as e:
        raise ImportError("NSPDK needs the optional 'eden-kernel' package "
                          "(pip install eden-kernel)") from e
    graphs = [mol_to_nx(mol) for mol in valid_mols(items)]
    if not graphs:
        raise ValueError('NSPDK: no valid molecule to compare')
    return vectorize(graphs, complexity=4, discrete=True)


def nspdk_mmd(generated: Any, reference: Any) -> float:
    r"""Squared MMD between two sets of molecules under the NSPDK graph
    kernel (a linear kernel of :func:`nspdk_features`), the molecule
    metric GDSS reports beside FCD:

    .. math::
        \mathrm{MMD}^2 = \overline{K(X, X)} + \overline{K(Y, Y)}
        - 2\,\overline{K(X, Y)} = \lVert \bar{x} - \bar{y} \rVert^2,

    the means over all pairs (diagonals included), computed as the
    squared distance of the mean feature vectors. :obj:`generated` and
    :obj:`reference` are sequences of SMILES strings or RDKit molecules
    (invalid entries dropped) or feature matrices of
    :func:`nspdk_features` (to reuse a reference's features)."""
    import numpy as np

    def mean(x):
        if not hasattr(x, 'tocsr'):
            x = nspdk_features(x)
        return np.asarray(x.mean(axis=0)).ravel()
    diff = mean(generated) - mean(reference)
    return float(diff @ diff)
