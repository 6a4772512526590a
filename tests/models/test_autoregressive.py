import pytest
import torch
import torch.nn.functional as F
from torch_geometric.data import Batch, Data

from tests.conftest import permute_within_graphs
from torch_geometric_mgvae.chem import (
    QM9_ATOMS,
    check_valence,
    smiles_to_data,
)
from torch_geometric_mgvae.models.autoregressive import (
    AutoregressiveMGN,
    bfs_order,
    wl_hash,
)

Chem = pytest.importorskip('rdkit.Chem')

QM9_LIKE = [
    'C', 'CO', 'CC=O', 'CC#N', 'OCC(N)C(=O)C#N', 'CC(C)(C)O', 'C1CC1C=O',
    'N#CC1=CC=CO1', 'CC1=CNC=C1', 'OC1COC1', 'CN(C)C=O', 'C#CC1(C)CC1',
    'FC(F)C(O)C#C', 'CC12CC1(C)O2', 'O=C1CCCN1', 'NC(=O)C1CC1',
    'C[NH2+]CC([O-])=O', 'CC(=O)OC=N', 'C1=CC2CC2=C1', 'OC1=NC=CO1'
]


def model_for_test(**kwargs):
    torch.manual_seed(0)
    kw = dict(hidden_channels=16, latent_channels=4, num_layers=2,
              max_nodes=9)
    kw.update(kwargs)
    return AutoregressiveMGN(len(QM9_ATOMS), **kw)


def batch_of(smiles):
    return Batch.from_data_list([smiles_to_data(s) for s in smiles])


def test_bfs_order_hand_built():
    # O=C(N)C: atoms O0, C1, N2, C3; bonds 0=1, 1-2, 1-3.
    data = smiles_to_data('O=C(N)C')
    ei = data.edge_index
    assert bfs_order(ei, 4, start=3).tolist() == [3, 1, 0, 2]
    assert bfs_order(ei, 4, start=0).tolist() == [0, 1, 2, 3]
    # Neighbours in ascending key order, then by index:
    key = -ei[1]
    assert bfs_order(ei, 4, start=3, edge_key=key).tolist() == [3, 1, 2, 0]
    # The model's order: siblings by bond order first (N single before O
    # double), whatever the input order:
    model = model_for_test()
    types, bonds, n, orders = model.bfs_dense(data, start=torch.tensor([3]))
    assert orders[0].tolist() == [3, 1, 2, 0]
    assert types[0].tolist() == [0, 0, 1, 2]  # C, C, N, O
    assert n.tolist() == [4]
    expected = torch.zeros(4, 4, dtype=torch.long)
    for i, j, b in [(0, 1, 1), (1, 2, 1), (1, 3, 2)]:
        expected[i, j] = expected[j, i] = b
    assert torch.equal(bonds[0], expected)
    # A chain visited from its middle, branches level by level:
    ei = torch.tensor([[0, 1, 1, 2, 2, 3, 3, 4, 1, 5],
                       [1, 0, 2, 1, 3, 2, 4, 3, 5, 1]])
    assert bfs_order(ei, 6, start=2).tolist() == [2, 1, 3, 0, 5, 4]


def test_wl_hash_is_invariant():
    data = smiles_to_data('OCC(N)C(=O)C#N')
    label = data.x.argmax(-1)
    bond = data.edge_attr.argmax(-1)
    h = wl_hash(label, data.edge_index, bond)
    perm = torch.randperm(data.num_nodes, generator=torch.Generator()
                          .manual_seed(0))
    inv = torch.empty_like(perm)
    inv[perm] = torch.arange(perm.numel())
    h2 = wl_hash(label[perm], inv[data.edge_index], bond)
    assert torch.equal(h2, h[perm])


def test_shapes_and_errors():
    model = model_for_test()
    batch = batch_of(QM9_LIKE[:6])
    nll = model.nll(batch, generator=torch.Generator().manual_seed(0))
    assert nll.shape == (6, ) and torch.isfinite(nll).all()
    assert (nll > 0).all()
    assert model.loss(batch).dim() == 0
    out = model.sample(7, generator=torch.Generator().manual_seed(0))
    assert len(out) == 7
    for d in out:
        n, E = d.num_nodes, d.edge_index.size(1)
        assert 1 <= n <= 9
        assert d.x.shape == (n, len(QM9_ATOMS))
        assert d.edge_attr.shape == (E, 3)
        assert torch.equal(d.x.sum(-1), torch.ones(n))
        assert E % 2 == 0 and (d.edge_index[0] != d.edge_index[1]).all()
        adj = torch.zeros(n, n, dtype=torch.long)
        adj[d.edge_index[0], d.edge_index[1]] = d.edge_attr.argmax(-1) + 1
        assert torch.equal(adj, adj.t())
    with pytest.raises(ValueError, match='not connected'):
        model.nll(smiles_to_data('C.O'))
    with pytest.raises(ValueError, match='max_nodes'):
        model.nll(smiles_to_data('CCCCCCCCCC'))
    with pytest.raises(ValueError, match='bond types'):
        model.nll(smiles_to_data('c1ccccc1', kekulize=False))


def test_nll_by_hand_on_three_atoms():
    # CC=O from the first carbon: C0, C1 (parent 0, single), O2 (parent 1,
    # double; a pointer over {0, 1}); no ring closures.
    model = model_for_test().double()
    data = smiles_to_data('CC=O')
    z = torch.randn(1, 3, 4, dtype=torch.double)
    types, bonds, n, orders = model.bfs_dense(data, start=torch.tensor([0]))
    assert orders[0].tolist() == [0, 1, 2]
    nll = model.nll_dense(types, bonds, n, z)

    c_type, o_type = 0, 2
    h = model.h0.view(1, -1)
    lp = model.node_head(h)[0, 1:].log_softmax(-1)[c_type]  # type of v_0
    bond1 = torch.zeros(1, 1, 1, dtype=torch.long)
    node, r = model._encode(types[:, :1], bond1, z[:, :1])  # G_1 = {C}
    h = model.gru(r, h)
    lp = lp + model.node_head(h)[0].log_softmax(-1)[1 + c_type]  # continue, C
    e = model._pair(node, torch.tensor([c_type]), h, torch.tensor([0]))
    out = model.parent_head(e)[0]  # [1, 1 + K]: one candidate parent
    lp = lp + out[0, 1:].log_softmax(-1)[0]  # single (all 3 fit)
    bond2 = torch.tensor([[[0, 1], [1, 0]]])
    node, r = model._encode(types[:, :2], bond2, z[:, :2])  # G_2 = C-C
    h = model.gru(r, h)
    lp = lp + model.node_head(h)[0].log_softmax(-1)[1 + o_type]
    e = model._pair(node, torch.tensor([o_type]), h, torch.tensor([0]))
    out = model.parent_head(e)[0]  # [2, 1 + K]
    lp = lp + out[:, 0].log_softmax(-1)[1]  # parent = v_1
    lp = lp + out[1, 1:3].log_softmax(-1)[1]  # double; O caps at 2
    node, r = model._encode(types[:, :3], bonds, z[:, :3])  # G_3
    h = model.gru(r, h)
    lp = lp + model.node_head(h)[0].log_softmax(-1)[0]  # stop
    assert torch.allclose(nll, -lp.view(1), atol=1e-10)


def test_nll_matches_step_by_step_generation():
    # The vectorised teacher-forced loss equals the sampling code forced
    # to the same choices (rings, closures, charges, several sizes).
    model = model_for_test().double()
    batch = batch_of(QM9_LIKE)
    g = torch.Generator().manual_seed(3)
    types, bonds, n, _ = model.bfs_dense(batch, generator=g)
    z = torch.randn(types.size(0), 9, 4, dtype=torch.double, generator=g)
    nll = model.nll_dense(types, bonds, n, z[:, :types.size(1)])
    with torch.no_grad():
        t2, b2, n2, logp = model._generate(types.size(0), z,
                                           targets=(types, bonds, n))
    N = types.size(1)
    assert torch.equal(n2, n)
    assert torch.equal(t2[:, :N], types)
    assert torch.equal(b2[:, :N, :N], bonds)
    assert torch.allclose(nll.detach(), -logp, atol=1e-8)


def test_loss_permutation_invariant_with_fixed_start():
    model = model_for_test().double()
    smiles = ['OCC(N)C(=O)C#N', 'CC(C)(C)O', 'C1CC1C=O', 'N#CC1=CC=CO1',
              'C[NH2+]CC([O-])=O']
    batch = batch_of(smiles)
    batch.x = batch.x.double()
    start = torch.tensor([2, 1, 0, 3, 4])
    nll = model.nll(batch, generator=torch.Generator().manual_seed(0),
                    start=start)
    perm, inv = permute_within_graphs(batch.batch, seed=5)
    ptr = batch.ptr
    batch2 = batch.clone()
    batch2.x = batch.x[perm]
    ei = inv[batch.edge_index]
    batch2.edge_index = ei
    start2 = inv[ptr[:-1] + start] - ptr[:-1]
    nll2 = model.nll(batch2, generator=torch.Generator().manual_seed(0),
                     start=start2)
    assert torch.allclose(nll, nll2, atol=1e-8)


def test_untrained_samples_respect_valence_and_are_connected():
    model = model_for_test()
    mols = model.sample_mols(200, generator=torch.Generator().manual_seed(0))
    assert all(m is not None for m in mols)  # RDKit sanitizes all of them
    assert all(check_valence(m) for m in mols)
    assert all(len(Chem.GetMolFrags(m)) == 1 for m in mols)


def test_training_decreases_loss_and_samples_are_valid():
    model = model_for_test()
    batch = batch_of(QM9_LIKE)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    g = torch.Generator().manual_seed(0)
    start = torch.zeros(len(QM9_LIKE), dtype=torch.long)
    with torch.no_grad():
        before = float(model.loss(batch, g, start))
    for _ in range(30):
        opt.zero_grad()
        loss = model.loss(batch, g)
        assert torch.isfinite(loss)
        loss.backward()
        opt.step()
    with torch.no_grad():
        after = float(model.loss(batch, torch.Generator().manual_seed(0),
                                 start))
    assert after < before - 3.0
    datas = model.sample(100, generator=torch.Generator().manual_seed(1))
    mols = model.sample_mols(100, generator=torch.Generator().manual_seed(1))
    assert all(m is not None for m in mols)
    smiles = [Chem.MolToSmiles(m) for m in mols]
    uniqueness = len(set(smiles)) / len(smiles)
    print(f'uniqueness after tiny training: {uniqueness:.2f}')
    assert uniqueness > 0.2
    assert [d.num_nodes for d in datas] == [m.GetNumAtoms() for m in mols]


def test_single_atom_and_no_latents():
    model = model_for_test(latent_channels=0, max_nodes=1)
    data = Data(x=F.one_hot(torch.tensor([2]), len(QM9_ATOMS)).float(),
                edge_index=torch.empty(2, 0, dtype=torch.long),
                edge_attr=torch.empty(0, 3))
    nll = model.nll(data)
    # max_nodes = 1: stop is forced, only the atom type costs.
    expected = -model.node_head(model.h0)[1:].log_softmax(-1)[2]
    assert torch.allclose(nll, expected.view(1))
    out = model.sample(5)
    assert all(d.num_nodes == 1 for d in out)


def test_zinc_vocabulary_samples_are_valid():
    from torch_geometric_mgvae.chem import ZINC_ATOMS
    torch.manual_seed(0)
    model = AutoregressiveMGN(len(ZINC_ATOMS), hidden_channels=16,
                              latent_channels=4, max_nodes=38,
                              atoms=ZINC_ATOMS)
    with torch.no_grad():  # favour long molecules and heavy elements
        model.node_head[2].bias[0] -= 3.0
    mols = model.sample_mols(60, generator=torch.Generator().manual_seed(0))
    assert all(m is not None and check_valence(m) for m in mols)
    assert all(len(Chem.GetMolFrags(m)) == 1 for m in mols)
    assert max(m.GetNumAtoms() for m in mols) > 20
    data = smiles_to_data('CC(=O)Nc1ccc(S(=O)(=O)N2CCOCC2)cc1Cl', ZINC_ATOMS)
    assert torch.isfinite(model.nll(data)).all()


@pytest.mark.parametrize('kwargs', [
    dict(hidden_channels=0), dict(latent_channels=-1),
    dict(num_bond_types=0), dict(max_offset=-1), dict(num_layers=0),
    dict(max_nodes=0),
])
def test_nonsensical_sizes_are_rejected(kwargs):
    name = next(iter(kwargs))
    with pytest.raises(ValueError, match=f"'{name}'"):
        AutoregressiveMGN(len(QM9_ATOMS), **kwargs)
