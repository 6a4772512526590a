import pytest
import torch

Chem = pytest.importorskip('rdkit.Chem')

from torch_geometric_mgvae.chem import (  # noqa: E402
    MAX_VALENCE,
    QM9_ATOMS,
    ZINC_ATOMS,
    canonical_smiles,
    check_valence,
    data_to_mol,
    dense_bond_types,
    dense_to_mol,
    largest_fragment,
    max_valence,
    mol_to_smiles,
    smiles_to_data,
    valence_correct,
    valence_correct_mol,
)


def _perfect_probs(smiles, atoms, kekulize=True):
    data = smiles_to_data(smiles, atoms, kekulize=kekulize)
    n = data.num_nodes
    edge_prob = torch.zeros(n, n)
    edge_prob[data.edge_index[0], data.edge_index[1]] = 1.0
    bond_prob = torch.zeros(n, n, 3 if kekulize else 4)
    bond_prob[data.edge_index[0], data.edge_index[1]] = data.edge_attr
    return data, edge_prob, bond_prob


def test_max_valence():
    assert max_valence('C') == 4
    assert max_valence('N') == 3 and max_valence('N', 1) == 4
    assert max_valence('O') == 2 and max_valence('O', -1) == 1
    assert max_valence('S') == 6 and max_valence('P') == 5
    assert max_valence('Cl') == max_valence('I') == 1
    assert max_valence('Se', 0) == 2
    assert max_valence('Si', 1) >= 1  # RDKit fallback.
    for symbol, charge in ZINC_ATOMS + QM9_ATOMS:
        assert (symbol, charge) in MAX_VALENCE


def test_check_valence():
    assert check_valence(Chem.MolFromSmiles('CCO'))
    assert not check_valence(None)
    mol = Chem.MolFromSmiles('C(C)(C)(C)(C)C', sanitize=False)
    assert not check_valence(mol)
    mol = Chem.MolFromSmiles('CO(C)C', sanitize=False)
    assert not check_valence(mol)
    assert check_valence(Chem.MolFromSmiles('C[O+](C)C'))


@pytest.mark.parametrize('smiles,atoms', [
    ('c1ccc2[nH]ccc2c1', ZINC_ATOMS),
    ('O=[N+]([O-])c1ccc(Cl)cc1Br', ZINC_ATOMS),
    ('COP(=O)(OC)OC', ZINC_ATOMS),
    ('CS(=O)(=O)c1ccsc1', ZINC_ATOMS),
    ('CC#N', QM9_ATOMS),
    ('[NH3+]CC([O-])=O', QM9_ATOMS),
    ('OC1COC1', QM9_ATOMS),
])
def test_perfect_reconstruction(smiles, atoms):
    data, edge_prob, bond_prob = _perfect_probs(smiles, atoms)
    types = data.x.argmax(dim=-1)
    edge_index, bond_types = valence_correct(types, edge_prob, bond_prob,
                                             atoms)
    assert torch.equal(edge_index, data.edge_index)
    assert torch.equal(bond_types, data.edge_attr.argmax(dim=-1) + 1)
    mol = valence_correct_mol(data.x, edge_prob, bond_prob, atoms)
    assert mol_to_smiles(mol) == canonical_smiles(smiles)

    # A 4-channel bond distribution (no-bond first) works the same:
    bond_prob4 = torch.cat([1 - edge_prob.unsqueeze(-1), bond_prob], dim=-1)
    mol = valence_correct_mol(types, edge_prob, bond_prob4, atoms)
    assert mol_to_smiles(mol) == canonical_smiles(smiles)


def test_correction_order_and_threshold():
    atoms = [('C', 0), ('O', 0), ('F', 0)]
    # F (index 2) can bind once: the more probable edge wins.
    types = torch.tensor([0, 0, 2])
    edge_prob = torch.tensor([[0.0, 0.2, 0.7],
                              [0.2, 0.0, 0.9],
                              [0.7, 0.9, 0.0]])
    edge_index, bond_types = valence_correct(types, edge_prob, None, atoms)
    assert edge_index.tolist() == [[1, 2], [2, 1]]
    assert bond_types.tolist() == [1, 1]
    # Lower threshold adds the C-C edge:
    edge_index, _ = valence_correct(types, edge_prob, None, atoms,
                                    threshold=0.1)
    assert edge_index.size(1) == 4

    # Bond order is lowered to fit: O=O=O is impossible, O=O-O too.
    types = torch.tensor([1, 1, 0])
    edge_prob = torch.tensor([[0.0, 0.9, 0.8],
                              [0.9, 0.0, 0.0],
                              [0.8, 0.0, 0.0]])
    bond_prob = torch.zeros(3, 3, 3)
    bond_prob[..., 2] = 1.0  # Triple everywhere.
    edge_index, bond_types = valence_correct(types, edge_prob, bond_prob,
                                             atoms)
    dense = dense_bond_types(edge_index, bond_types, 3)
    assert dense[0, 1] == 2  # O=O (double, max for O).
    assert dense[0, 2] == 0  # No valence left on atom 0.

    mol = valence_correct_mol(torch.tensor([0, 0, 0, 0]), torch.tensor(
        [[0, 0.9, 0, 0], [0.9, 0, 0, 0], [0, 0, 0, 0.8], [0, 0, 0.8, 0.]]),
                              None, atoms, keep_largest_fragment=True)
    assert mol.GetNumAtoms() == 2


@pytest.mark.parametrize('aromatic', [False, True])
@pytest.mark.parametrize('atoms', [QM9_ATOMS, ZINC_ATOMS])
def test_random_correction_is_valid(atoms, aromatic):
    gen = torch.Generator().manual_seed(12345)
    B = 4 if aromatic else 3
    for trial in range(200):
        n = int(torch.randint(1, 16, (1, ), generator=gen))
        types = torch.randint(len(atoms), (n, ), generator=gen)
        edge_prob = torch.rand(n, n, generator=gen)
        bond_prob = torch.rand(n, n, B, generator=gen)
        if aromatic:
            bond_prob[..., 3] *= 3  # mostly aromatic
        bond_prob = bond_prob.softmax(dim=-1)
        threshold = [0.5, 0.2, 0.0][trial % 3]
        edge_index, bond_types = valence_correct(types, edge_prob, bond_prob,
                                                 atoms, threshold=threshold,
                                                 aromatic=aromatic)
        assert bond_types.min() >= 1 if bond_types.numel() > 0 else True
        # Symmetric edges:
        dense = dense_bond_types(edge_index, bond_types, n)
        assert torch.equal(dense, dense.t())
        # Valence constraint of each atom (an aromatic bond: one unit):
        units = torch.where(dense == 4, 1, dense)
        for i, t in enumerate(types.tolist()):
            assert int(units[i].sum()) <= max_valence(*atoms[t])

        if aromatic:  # RDKit sanitization succeeds after the repair.
            mol = valence_correct_mol(types, edge_prob, bond_prob, atoms,
                                      threshold=threshold, aromatic=True)
            assert mol is not None and check_valence(mol), trial
            continue
        mol = dense_to_mol(types, dense, atoms, sanitize=False)
        assert check_valence(mol)
        mol = data_to_mol(types, edge_index, bond_types - 1, atoms)
        assert mol is not None  # RDKit sanitization succeeds.
        assert check_valence(mol)
        assert Chem.MolFromSmiles(mol_to_smiles(mol)) is not None

        mol = valence_correct_mol(types, edge_prob, bond_prob, atoms,
                                  threshold, keep_largest_fragment=True)
        assert mol is not None and check_valence(mol)
        assert len(Chem.GetMolFrags(mol)) == 1


def test_largest_fragment():
    mol = Chem.MolFromSmiles('CCO.C.CCCC')
    assert mol_to_smiles(largest_fragment(mol)) == 'CCCC'
    assert largest_fragment(None) is None


# Aromatic bonds as a fourth bond type (kekulize=False) ####################

@pytest.mark.parametrize('smiles', [
    'c1ccccc1', 'c1ccc2ccccc2c1', 'c1ccncc1', 'c1ccoc1', 'c1ccsc1',
    'Cn1ccnc1', 'O=[N+]([O-])c1ccc(Cl)cc1Br', 'CS(=O)(=O)c1ccsc1',
    # the graph does not say which ring nitrogen carries the hydrogen:
    'c1cc[nH]c1', 'c1ccc2[nH]ccc2c1', 'c1c[nH]cn1',
])
def test_aromatic_graph_round_trip(smiles):
    data, edge_prob, bond_prob = _perfect_probs(smiles, ZINC_ATOMS,
                                                kekulize=False)
    assert data.edge_attr.size(1) == 4
    mol = data_to_mol(data.x, data.edge_index, data.edge_attr, ZINC_ATOMS)
    assert mol_to_smiles(mol) == canonical_smiles(smiles)

    # The correction with the graph's own probabilities rebuilds it too:
    edge_index, bond_types = valence_correct(data.x, edge_prob, bond_prob,
                                             ZINC_ATOMS, aromatic=True)
    assert torch.equal(edge_index, data.edge_index)
    assert torch.equal(bond_types, data.edge_attr.argmax(dim=-1) + 1)
    for probs in [bond_prob, torch.cat([1 - edge_prob[..., None],
                                        bond_prob], dim=-1)]:
        mol = valence_correct_mol(data.x, edge_prob, probs, ZINC_ATOMS,
                                  aromatic=True)
        assert mol_to_smiles(mol) == canonical_smiles(smiles)


def test_sanitize_aromatic_repair():
    from torch_geometric_mgvae.chem.convert import sanitize_aromatic
    C = [('C', 0), ('N', 0)]
    # An aromatic triangle and an aromatic bond outside any ring have no
    # Kekule structure: not a molecule as they are, single bonds repaired.
    ring = torch.tensor([[0, 1, 2], [1, 2, 0]])
    arom = torch.full((3, ), 3)
    assert data_to_mol(torch.zeros(3, dtype=torch.long), ring, arom,
                       C) is None
    from torch_geometric_mgvae.chem.convert import _build_mol
    mol = _build_mol(torch.zeros(3, dtype=torch.long), ring, arom, C,
                     sanitize=True, repair=True)
    assert mol_to_smiles(mol) == 'C1CC1'
    mol = _build_mol(torch.zeros(2, dtype=torch.long),
                     torch.tensor([[0], [1]]), torch.tensor([3]), C,
                     sanitize=True, repair=True)
    assert mol_to_smiles(mol) == 'CC'
    # Benzene with one atom over-bonded (an aromatic carbon with two more
    # single bonds): only the bonds at the problem atoms are made single,
    # the rest of the ring stays as it can.
    six = torch.tensor([[0, 1, 2, 3, 4, 5, 0, 0], [1, 2, 3, 4, 5, 0, 6, 7]])
    kinds = torch.tensor([3, 3, 3, 3, 3, 3, 0, 0])
    mol = _build_mol(torch.zeros(8, dtype=torch.long), six, kinds, C,
                     sanitize=True, repair=True)
    assert mol is not None and check_valence(mol)
    assert data_to_mol(torch.zeros(8, dtype=torch.long), six, kinds,
                       C) is None
    # Without aromatic bonds nothing is repaired, and None stays None:
    bad = Chem.MolFromSmiles('CO(C)C', sanitize=False)
    assert sanitize_aromatic(bad, repair=True) is None
    assert sanitize_aromatic(None) is None
