import math

import numpy as np
import pytest

Chem = pytest.importorskip('rdkit.Chem')

from rdkit.Chem import QED  # noqa: E402

from torch_geometric_mgvae.chem import (  # noqa: E402
    canonical_set,
    mol_to_nx,
    molecule_metrics,
    novelty,
    nspdk_features,
    nspdk_mmd,
    qed_stats,
    ring_stats,
    uniqueness,
    valid_mols,
    validity,
)


def test_validity():
    items = ['CCO', 'OCC', 'xyz', None, '', 'C1CC',
             Chem.MolFromSmiles('c1ccccc1'),
             Chem.MolFromSmiles('C(C)(C)(C)(C)C', sanitize=False)]
    assert validity(items) == 3 / 8
    assert len(valid_mols(items)) == 3
    assert validity([]) == 0.0
    assert validity(['C', 'N']) == 1.0


def test_uniqueness():
    # 'CCO', 'OCC' and 'C(O)C' are the same molecule; invalid ignored.
    items = ['CCO', 'OCC', 'C(O)C', 'c1ccccc1', 'C1=CC=CC=C1', 'xyz', None]
    assert uniqueness(items) == 2 / 5
    assert uniqueness(['xyz']) == 0.0
    assert uniqueness(['C', 'N', 'O']) == 1.0
    # Stereo is ignored:
    assert uniqueness(['C[C@H](N)O', 'C[C@@H](N)O']) == 1 / 2


def test_novelty():
    train = ['OCC', 'c1ccccc1', 'invalid-train']
    items = ['CCO', 'CCO', 'CCN', 'C1=CC=CC=C1', 'CCCC', 'xyz']
    # Valid: 5 (with duplicates); novel: CCN, CCCC.
    assert novelty(items, train) == 2 / 5
    assert novelty([], train) == 0.0
    assert novelty(['C'], []) == 1.0
    # A training set canonicalised once is used as is, with the same result.
    canon = canonical_set(train)
    assert canon == frozenset({'CCO', 'c1ccccc1'})
    assert novelty(items, canon) == 2 / 5
    assert molecule_metrics(items, canon, fcd=False) == molecule_metrics(
        items, train, fcd=False)


def test_qed_stats():
    smiles = ['CCO', 'c1ccccc1', 'CC(=O)Oc1ccccc1C(=O)O']
    values = [QED.qed(Chem.MolFromSmiles(s)) for s in smiles]
    mean, std = qed_stats(smiles + ['xyz', None])
    expected_mean = sum(values) / 3
    expected_std = math.sqrt(sum((v - expected_mean)**2
                                 for v in values) / 3)
    assert abs(mean - expected_mean) < 1e-12
    assert abs(std - expected_std) < 1e-12
    mean, std = qed_stats(['xyz'])
    assert math.isnan(mean) and math.isnan(std)


def test_ring_stats_hand_values():
    # benzene (aromatic 6-ring), cyclopropane + methane (3-ring, 2
    # fragments), cyclooctane (8-ring), propanol (no ring); two invalid.
    stats = ring_stats(['c1ccccc1', 'C1CC1.C', 'C1CCCCCCC1', 'CCCO',
                        'C1CC', None])
    assert stats == pytest.approx(dict(
        atoms=(6 + 4 + 8 + 4) / 4, fragments=5 / 4, rings=3 / 4,
        aromatic=1 / 4, aromatic_rings=1 / 4, ring_3_4=1 / 3,
        ring_5_6=1 / 3, ring_7_plus=1 / 3))
    # Fused rings count once each (naphthalene: two 6-rings, both
    # aromatic; a Kekule SMILES reads as aromatic too):
    assert ring_stats(['c1ccc2ccccc2c1'])['rings'] == 2
    assert ring_stats(['c1ccc2ccccc2c1'])['aromatic_rings'] == 2
    assert ring_stats(['C1=CC=CC=C1'])['aromatic_rings'] == 1
    # A diene ring and a ring fused to benzene that is not aromatic:
    assert ring_stats(['C1=CC=CCC1'])['aromatic_rings'] == 0
    tetralin = ring_stats(['c1ccc2c(c1)CCCC2'])
    assert tetralin['rings'] == 2 and tetralin['aromatic_rings'] == 1
    no_rings = ring_stats(['CCO'])
    assert no_rings['rings'] == 0 and math.isnan(no_rings['ring_5_6'])
    assert all(math.isnan(v) for v in ring_stats(['xyz', '']).values())
    assert all(math.isnan(v) for v in ring_stats([]).values())


def test_molecule_metrics():
    train = ['CCO', 'c1ccccc1']
    generated = ['OCC', 'CCO', 'CCN', 'CC.O', 'xyz', None, 'CCCC', 'CCN']
    out = molecule_metrics(generated, train)
    assert out['num_generated'] == 8
    assert out['num_valid'] == 6
    assert out['validity'] == 6 / 8
    assert out['validity_connected'] == 5 / 8
    # Distinct valid: CCO, CCN, CC.O, CCCC.
    assert out['uniqueness'] == 4 / 6
    # Novel (with multiplicity): CCN, CC.O, CCCC, CCN.
    assert out['novelty'] == 4 / 6
    assert out['valid_unique_novel'] == 3 / 8
    mean, std = qed_stats(generated)
    assert out['qed_mean'] == mean and out['qed_std'] == std

    out = molecule_metrics([], train)
    assert out['validity'] == 0.0 and out['uniqueness'] == 0.0
    assert math.isnan(out['qed_mean'])


def test_mol_to_nx_labels_atoms_and_kekule_bond_orders():
    g = mol_to_nx(Chem.MolFromSmiles('c1ccccc1O'))
    assert g.number_of_nodes() == 7 and g.number_of_edges() == 7
    assert sorted(d['label'] for _, d in g.nodes(data=True)) == \
        ['C'] * 6 + ['O']
    orders = sorted(d['label'] for _, _, d in g.edges(data=True))
    assert orders == [1, 1, 1, 1, 2, 2, 2]  # Kekulé benzene + C-O


def test_nspdk_mmd_is_the_kernel_mean_formula():
    pytest.importorskip('eden')
    a = ['CCO', 'c1ccccc1', 'CC(=O)O', 'CCN', 'C1CC1']
    b = ['CCCC', 'c1ccncc1', 'CC(C)O', 'CCCl', 'O=C=O', None, 'C1CC']
    X, Y = nspdk_features(a), nspdk_features(b)
    assert X.shape[0] == 5 and Y.shape[0] == 5  # invalid entries dropped
    K = lambda P, Q: (P @ Q.T).toarray()  # noqa: E731
    assert np.allclose(np.diag(K(X, X)), 1.0)  # unit-normalised features
    expected = K(X, X).mean() + K(Y, Y).mean() - 2 * K(X, Y).mean()
    assert nspdk_mmd(a, b) == pytest.approx(expected, abs=1e-12)
    assert nspdk_mmd(a, Y) == pytest.approx(expected, abs=1e-12)
    assert 0.05 < expected < 2
    assert nspdk_mmd(a, list(reversed(a))) == pytest.approx(0, abs=1e-12)
    with pytest.raises(ValueError, match='no valid molecule'):
        nspdk_mmd(['C1CC', None], a)
