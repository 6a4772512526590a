import os
import warnings

import pytest
import torch

Chem = pytest.importorskip('rdkit.Chem')

from torch_geometric_mgvae.chem import (  # noqa: E402
    NUM_ATOM_FEATURES,
    QM9_ATOMS,
    ZINC_ATOMS,
    AtomVocabulary,
    atom_features,
    build_atom_vocabulary,
    canonical_smiles,
    data_to_mol,
    dense_to_mol,
    mol_to_data,
    mol_to_smiles,
    read_smiles_file,
    smiles_to_data,
)

SHARED = os.path.abspath(
    os.path.join(os.path.dirname(__file__), '..', '..', '..', 'shared',
                 'data'))

# Real molecules: aromatic rings, charged atoms, nitro groups and every atom
# type of ZINC (F, Cl, Br, I, P, S).
ZINC_SMILES = [
    'c1ccccc1',  # benzene
    'c1ccncc1',  # pyridine
    'c1ccoc1',  # furan
    'c1ccsc1',  # thiophene
    'c1ccc2[nH]ccc2c1',  # indole
    'c1cc[nH]c1',  # pyrrole
    'Cn1cnc2c1c(=O)n(C)c(=O)n2C',  # caffeine
    'C[N+](C)(C)C',  # tetramethylammonium
    'CC(=O)[O-]',  # acetate
    'O=[N+]([O-])c1ccccc1',  # nitrobenzene
    'C[N+](=O)[O-]',  # nitromethane
    'FC(F)(F)c1ccc(Cl)cc1Br',
    'Ic1ccccc1',
    'COP(=O)(OC)OC',  # trimethyl phosphate
    'CS(=O)(=O)N',  # methanesulfonamide
    'CS(C)=O',  # DMSO
    'C[S-]',
    'C#N',
    'CC#CC',
    'O=C(NC(=S)Nc1ccc(NC(=O)c2ccccc2)cc1)c1ccc(Cl)cc1',
    'CC(C)Cc1ccc(cc1)[C@@H](C)C(=O)O',  # ibuprofen (stereo dropped)
    'c1ccc2c(c1)ccc1ccccc12',  # phenanthrene
    '[NH3+]CC(=O)[O-]',  # glycine zwitterion
]

QM9_SMILES = [
    'C', 'N', 'O', 'CC#N', 'OC1COC1', 'FC(F)F', 'c1cnc[nH]1',
    '[NH3+]CC([O-])=O', 'CC1(C)CC1O', 'O=C1C=CC(=O)C=C1',
]


@pytest.mark.parametrize('smiles', ZINC_SMILES)
def test_round_trip_zinc(smiles):
    data = smiles_to_data(smiles, ZINC_ATOMS)
    assert data is not None
    mol = Chem.MolFromSmiles(smiles)
    n, e = mol.GetNumAtoms(), mol.GetNumBonds()
    assert data.x.size() == (n, len(ZINC_ATOMS))
    assert data.edge_index.size() == (2, 2 * e)
    assert data.edge_attr.size() == (2 * e, 3)
    assert torch.all(data.x.sum(dim=-1) == 1)
    assert torch.all(data.edge_attr.sum(dim=-1) == 1)
    expected = canonical_smiles(smiles)
    assert data.smiles == expected

    out = data_to_mol(data.x, data.edge_index, data.edge_attr, ZINC_ATOMS)
    assert mol_to_smiles(out) == expected

    # Dense path:
    dense = torch.zeros(n, n, dtype=torch.long)
    dense[data.edge_index[0], data.edge_index[1]] = (
        data.edge_attr.argmax(dim=-1) + 1)
    out = dense_to_mol(data.x.argmax(dim=-1), dense, ZINC_ATOMS)
    assert mol_to_smiles(out) == expected


@pytest.mark.parametrize('smiles', QM9_SMILES)
def test_round_trip_qm9(smiles):
    data = smiles_to_data(smiles, QM9_ATOMS)
    assert data is not None
    assert data.x.size(1) == len(QM9_ATOMS)
    out = data_to_mol(data.x, data.edge_index, data.edge_attr, QM9_ATOMS)
    assert mol_to_smiles(out) == canonical_smiles(smiles)


def test_kekulized_edge_attr():
    data = smiles_to_data('c1ccccc1', QM9_ATOMS)
    counts = data.edge_attr.sum(dim=0)  # Both directions.
    assert counts.tolist() == [6.0, 6.0, 0.0]  # Three single, three double.

    data = smiles_to_data('c1ccccc1', QM9_ATOMS, kekulize=False)
    assert data.edge_attr.size() == (12, 4)
    assert data.edge_attr[:, 3].sum() == 12
    out = data_to_mol(data.x, data.edge_index, data.edge_attr, QM9_ATOMS)
    assert mol_to_smiles(out) == 'c1ccccc1'


@pytest.mark.parametrize('smiles', [
    None, '', '   ', 'not a smiles', 'C1CC', 'c1cccc1', 'C(C)(C)(C)(C)C',
    'CCCl',  # Cl not in QM9_ATOMS
    'C[S+](C)(C)C',  # S not in QM9_ATOMS
    '[Na+].[Cl-]',
])
def test_invalid_returns_none(smiles):
    assert smiles_to_data(smiles, QM9_ATOMS) is None


def test_unknown_charge_returns_none():
    assert smiles_to_data('C[O+](C)C', QM9_ATOMS) is None
    assert smiles_to_data('CC(=O)[O-]', [('C', 0), ('O', 0)]) is None
    assert smiles_to_data('CC(=O)[O-]', [('C', 0), ('O', 0),
                                         ('O', -1)]) is not None


def test_mol_to_data_none():
    assert mol_to_data(None, QM9_ATOMS) is None


def test_data_to_mol_invalid():
    # A carbon with five single bonds fails sanitization:
    x = torch.zeros(6, dtype=torch.long)
    edge_index = torch.tensor([[0, 0, 0, 0, 0], [1, 2, 3, 4, 5]])
    assert data_to_mol(x, edge_index, None, QM9_ATOMS) is None
    assert data_to_mol(x, edge_index, None, QM9_ATOMS,
                       sanitize=False) is not None


def test_vocabulary():
    vocab = AtomVocabulary(['C', ('N', 1), ('O', -1)])
    assert len(vocab) == 3
    assert vocab[1] == ('N', 1)
    assert vocab.index_of('O', -1) == 2
    assert vocab.index_of('O') is None
    assert vocab == [('C', 0), ('N', 1), ('O', -1)]
    with pytest.raises(ValueError):
        AtomVocabulary(['C', 'C'])

    vocab = AtomVocabulary.from_smiles(
        ['C[N+](C)(C)C', 'CC(=O)[O-]', 'ClCBr', 'invalid'])
    assert list(vocab) == [('C', 0), ('O', 0), ('Cl', 0), ('Br', 0),
                           ('N', 1), ('O', -1)]
    assert build_atom_vocabulary(['CCO']) == [('C', 0), ('O', 0)]

    data = smiles_to_data('CC(=O)[O-]', vocab)
    assert data.x.argmax(dim=-1).tolist() == [0, 0, 1, 5]

    # All default atom types are valid RDKit atoms:
    for symbol, charge in ZINC_ATOMS + QM9_ATOMS:
        assert Chem.Atom(symbol).GetSymbol() == symbol


def test_atom_features():
    mol = Chem.MolFromSmiles('c1ccccc1')
    feat = atom_features(mol)
    assert feat.size() == (6, NUM_ATOM_FEATURES) == (6, 24)
    c = feat[0]
    assert c[0] == 6  # GetAtomicNum
    assert c[1] == 1  # IsInRing
    assert c[2:11].tolist() == [0, 0, 0, 0, 0, 1, 0, 0, 0]  # Ring size 6
    assert c[11] == 1  # GetIsAromatic
    assert c[12] == 2  # GetDegree
    assert c[13] == 3  # Explicit valence (1.5 + 1.5)
    assert c[14] == 0  # GetFormalCharge
    assert c[15] == 0  # GetIsotope
    assert abs(c[16] - 12.011) < 1e-3  # GetMass
    assert c[19] == 1  # GetNumImplicitHs
    assert c[21] == 3  # GetTotalDegree
    assert c[22] == 1  # GetTotalNumHs
    assert c[23] == 4  # GetTotalValence

    # Kekulized (as in `mol_to_data`): only the aromatic flag changes.
    Chem.Kekulize(mol, clearAromaticFlags=True)
    kek = atom_features(mol)
    assert torch.all(kek[:, 11] == 0)
    mask = torch.ones(24, dtype=torch.bool)
    mask[11] = False
    assert torch.equal(kek[:, mask], feat[:, mask])

    # Charged nitrogen and an isotope:
    feat = atom_features(Chem.MolFromSmiles('C[N+](C)(C)C'))
    assert feat[1, 0] == 7 and feat[1, 14] == 1 and feat[1, 13] == 4
    assert feat[1, 22] == 0
    feat = atom_features(Chem.MolFromSmiles('[13CH3]O'))
    assert feat[0, 15] == 13 and feat[0, 17] == 1 and feat[0, 18] == 3
    assert feat[1, 1] == 0 and feat[1, 22] == 1

    data = smiles_to_data('c1ccoc1', QM9_ATOMS, chem_features=True)
    assert data.chem_x.size() == (5, 24)
    assert torch.all(data.chem_x[:, 6] == 1)  # Ring of size 5.


def test_read_smiles_file(tmp_path):
    path = tmp_path / 'mols.csv'
    rows = ['SMILES,score', 'CCO,1.0', 'xyz,2.0', 'c1ccccc1,3.0',
            'CCCl,4.0', ',5.0', 'C1CC,6.0']
    path.write_text('\n'.join(rows) + '\n')
    with pytest.warns(UserWarning, match='Skipped 4'):
        data_list, num_invalid = read_smiles_file(str(path), 'SMILES',
                                                  QM9_ATOMS)
    assert num_invalid == 4
    assert [d.smiles for d in data_list] == ['CCO', 'c1ccccc1']

    # By column position, with a larger vocabulary and no invalid rows:
    with warnings.catch_warnings():
        warnings.simplefilter('error')
        data_list, num_invalid = read_smiles_file(str(path), 0, ZINC_ATOMS,
                                                  max_num=1)
    assert num_invalid == 0 and len(data_list) == 1

    with pytest.raises(KeyError):
        read_smiles_file(str(path), 'smiles', QM9_ATOMS)


@pytest.mark.parametrize('name,column,atoms', [
    ('zinc12k_benchgnn/smiles_score.csv', 'SMILES', ZINC_ATOMS),
    ('qm9/qm9_qm9pack_compact.csv.gz', 'SMILES', QM9_ATOMS),
])
def test_real_data_vocabulary(name, column, atoms):
    path = os.path.join(SHARED, name)
    if not os.path.exists(path):
        pytest.skip(f"'{path}' not found")
    data_list, num_invalid = read_smiles_file(path, column, atoms,
                                              max_num=300)
    assert num_invalid == 0 and len(data_list) == 300
    for data in data_list[:100]:
        mol = data_to_mol(data.x, data.edge_index, data.edge_attr, atoms)
        assert mol_to_smiles(mol) == data.smiles
