import pytest
import torch
import torch.nn.functional as F
from torch_geometric.data import Batch

from tests.conftest import permute_within_graphs
from tests.models.test_mgn import permuted_noise
from torch_geometric_mgvae.models.molecule import (
    MoleculeDecoder,
    MoleculeMGVAE,
    MoleculeSample,
    entry_ranks,
)

Chem = pytest.importorskip('rdkit.Chem')

from torch_geometric_mgvae.chem import (  # noqa: E402
    QM9_ATOMS,
    check_valence,
    mol_to_smiles,
    smiles_to_data,
)

SMILES = ['CCO', 'C1=CC=CN1', 'CC(=O)N', 'C#N', 'O=C1CC1', 'C']


def molecules(smiles=SMILES):
    data = Batch.from_data_list([smiles_to_data(s) for s in smiles])
    data.x, data.edge_attr = data.x.double(), data.edge_attr.double()
    return data


def make(**kwargs):
    torch.manual_seed(0)
    kw = dict(num_layers=2, decoder_layers=2)
    kw.update(kwargs)
    return MoleculeMGVAE(len(QM9_ATOMS), 8, 4, [2, 1], max_nodes=9,
                         **kw).double()


def test_repr_and_config():
    model = make()
    assert str(model) == ('MoleculeMGVAE(8, 8, 4, num_clusters=[2, 1], '
                          'max_nodes=9)')
    assert str(model.decoder) == ('MoleculeDecoder(4, 8, num_layers=2, '
                                  'num_atom_types=8, num_bond_types=3)')
    assert (model.order, model.covariance, model.prior_type,
            model.encoder_scope) == (2, 'mrf', 'learnable', 'graph')
    assert model.decoder is model.global_decoders[0]
    assert len(make(local_decoding=False).local_decoders) == 0
    with pytest.raises(ValueError, match='feature_loss'):
        MoleculeMGVAE(8, 8, 4, [2, 1], 9, feature_loss='ce')
    with pytest.raises(ValueError, match='decodes the bond types'):
        MoleculeMGVAE(8, 8, 4, [2, 1], 9, edge_feature_loss='ce')
    with pytest.raises(ValueError, match='order'):
        MoleculeMGVAE(8, 8, 4, [2, 1], 9, order=1, covariance='diag')
    with pytest.raises(ValueError, match='edge_attr'):
        data = molecules()
        make()(data.x, data.edge_index, batch=data.batch)


def test_decoder_shapes_symmetry_and_equivariance():
    torch.manual_seed(0)
    dec = MoleculeDecoder(4, 8, 2, num_atom_types=5).double()
    z = torch.randn(2, 6, 4, dtype=torch.double)
    mask = torch.tensor([[True] * 6, [True] * 4 + [False] * 2])
    atom, bond = dec(z, mask)
    assert atom.shape == (2, 6, 5) and bond.shape == (2, 6, 6, 4)
    assert torch.allclose(bond, bond.transpose(1, 2))
    assert (atom[1, 4:] == 0).all() and (bond[1, 4:] == 0).all()
    # Padding does not change the valid entries:
    atom2, bond2 = dec(z[1:, :4], mask[1:, :4])
    assert torch.allclose(atom2[0], atom[1, :4], atol=1e-10)
    assert torch.allclose(bond2[0], bond[1, :4, :4], atol=1e-10)
    perm = torch.tensor([3, 0, 5, 1, 4, 2])
    atom_p, bond_p = dec(z[:1, perm], mask[:1])
    assert torch.allclose(atom_p[0], atom[0, perm], atol=1e-10)
    assert torch.allclose(bond_p[0], bond[0][perm][:, perm], atol=1e-10)


def test_loss_terms_are_invariant_and_train():
    data = molecules()
    model = make().train()
    out = model(data.x, data.edge_index, batch=data.batch,
                edge_attr=data.edge_attr,
                generator=torch.Generator().manual_seed(0))
    terms = model.loss_terms(out)
    assert {'atom_recon', 'bond_recon', 'kl', 'local_recon',
            'global_recon'} <= set(terms)
    perm, inv = permute_within_graphs(data.batch, seed=3)
    out2 = model(data.x[perm], inv[data.edge_index], batch=data.batch,
                 edge_attr=data.edge_attr,
                 noise=permuted_noise(out.noise, perm))
    terms2 = model.loss_terms(out2)
    for key in terms:
        assert torch.isfinite(terms[key]), key
        assert torch.allclose(terms[key], terms2[key], atol=1e-6), key
    sum(terms.values()).backward()
    assert model.decoder.net.lin_in.weight.grad is not None


def test_molecule_recon_loss_is_the_categorical_likelihood():
    data = molecules(['CC=O', 'N'])
    model = make().eval()
    out = model(data.x, data.edge_index, batch=data.batch,
                edge_attr=data.edge_attr)
    z = torch.zeros(2, 3, 4, dtype=torch.double)
    z[0] = out[0].z[:3]
    z[1, :1] = out[0].z[3:]
    mask = torch.tensor([[True] * 3, [True, False, False]])
    atom, bond = model.decode_molecule(z, mask)
    # Atoms C, C, O, N; bonds: (0, 1) single, (1, 2) double, (0, 2) none.
    atom_nll = -(atom[0, :3].log_softmax(-1)[[0, 1, 2], [0, 0, 2]].sum() +
                 atom[1, 0].log_softmax(-1)[1])
    logp = bond[0].log_softmax(-1)
    bond_nll = -(logp[0, 1, 1] + logp[1, 2, 2] + logp[0, 2, 0])
    terms = model.molecule_recon_loss(out)
    assert torch.allclose(terms['atom_recon'], atom_nll / 2)
    assert torch.allclose(terms['bond_recon'], bond_nll / 2)


def _hand_sample():
    # Molecule 0: C-C=O with an ambiguous pair; molecule 1: an oxygen with
    # three most-probable single bonds (over-valent without correction).
    atom = torch.zeros(2, 4, len(QM9_ATOMS))
    atom[0, :3] = F.one_hot(torch.tensor([0, 0, 2]), len(QM9_ATOMS)).float()
    atom[1] = F.one_hot(torch.tensor([2, 0, 0, 0]), len(QM9_ATOMS)).float()
    bond = torch.zeros(2, 4, 4, 4)
    bond[..., 0] = 1.0

    def put(b, i, j, p):
        bond[b, i, j] = bond[b, j, i] = torch.tensor(p)

    put(0, 0, 1, [0.1, 0.8, 0.1, 0.0])
    put(0, 1, 2, [0.2, 0.1, 0.7, 0.0])
    put(0, 0, 2, [0.6, 0.4, 0.0, 0.0])
    put(1, 0, 1, [0.05, 0.95, 0.0, 0.0])
    put(1, 0, 2, [0.1, 0.9, 0.0, 0.0])
    put(1, 0, 3, [0.2, 0.8, 0.0, 0.0])
    mask = torch.tensor([[True, True, True, False], [True] * 4])
    bond[0, 3] = bond[0, :, 3] = 0
    return MoleculeSample(atom, bond, mask)


def test_molecule_probabilities_are_its_block_of_the_sample():
    sample = _hand_sample()
    for i, n in enumerate([3, 4]):
        mol = sample.molecule(i)
        assert torch.equal(mol['edge_prob'], sample.edge_prob[i, :n, :n])
        assert mol['atom_prob'].shape == (n, len(QM9_ATOMS))
        assert mol['bond_type_prob'].shape == (n, n, 3)
    assert sample.molecule(0)['edge_prob'][0, 1].item() == \
        pytest.approx(0.9)
    assert sample.molecule(0)['edge_prob'].diagonal().abs().sum() == 0


def test_sample_raw_and_corrected_molecules():
    sample = _hand_sample()
    assert len(sample) == 2 and sample.num_nodes.tolist() == [3, 4]
    m = sample.molecule(0)
    assert m['edge_prob'].shape == (3, 3)
    assert torch.allclose(m['edge_prob'][0, 2], torch.tensor(0.4))
    assert torch.allclose(m['bond_type_prob'][1, 2],
                          torch.tensor([0.1, 0.7, 0.0]) / 0.8)
    assert (m['edge_prob'].diagonal() == 0).all()
    raw = sample.raw()
    assert raw[0].edge_index.tolist() == [[0, 1, 1, 2], [1, 0, 2, 1]]
    assert raw[0].edge_attr.argmax(-1).tolist() == [0, 0, 1, 1]
    mols = sample.raw_mols(QM9_ATOMS)
    assert mol_to_smiles(mols[0]) == 'CC=O'
    assert mols[1] is None  # O with three bonds fails sanitization
    fixed = sample.corrected_mols(QM9_ATOMS)
    assert mol_to_smiles(fixed[0]) == 'CC=O'
    # Descending probability: O-C (0.95), O-C (0.9), then O is full;
    # the largest fragment is kept.
    assert check_valence(fixed[1]) and mol_to_smiles(fixed[1]) == 'COC'


def test_sampling_from_the_prior():
    model = make().eval()
    with pytest.raises(RuntimeError, match='fit_num_nodes'):
        model.sample(2)
    model.fit_num_nodes(torch.tensor([3, 5, 9]))
    gen = torch.Generator().manual_seed(0)
    sample = model.sample(7, generator=gen, batch_size=3)
    assert set(sample.num_nodes.tolist()) <= {3, 5, 9}
    assert torch.allclose(sample.atom_prob.sum(-1)[sample.mask],
                          torch.ones(()).double())
    assert torch.allclose(sample.bond_prob, sample.bond_prob.transpose(1, 2))
    mols = sample.corrected_mols(QM9_ATOMS)
    assert all(check_valence(m) for m in mols)
    assert len(sample.raw()) == 7
    again = model.sample(7, generator=torch.Generator().manual_seed(0),
                         batch_size=3)
    assert torch.equal(again.bond_prob, sample.bond_prob)
    cold = model.sample(4, num_nodes=6, temperature=1e-3,
                        generator=torch.Generator().manual_seed(1))
    assert cold.num_nodes.tolist() == [6] * 4
    with pytest.raises(ValueError, match='num_nodes'):
        model.sample(1, num_nodes=10)
    assert len(model.sample(0, num_nodes=3)) == 0


def test_prior_temperature_scales_the_noise():
    model = make().eval()
    sizes = torch.tensor([5, 5])
    z1, _ = model.prior_sample(sizes, torch.Generator().manual_seed(0), 1.0)
    z0, _ = model.prior_sample(sizes, torch.Generator().manual_seed(0), 0.0)
    zh, _ = model.prior_sample(sizes, torch.Generator().manual_seed(0), 0.5)
    # Same prior nodes and noise: z(T) = mean + T (z(1) - mean).
    assert torch.allclose(zh, z0 + 0.5 * (z1 - z0), atol=1e-6)
    z, mask = model.prior_sample(torch.tensor([2, 4]), None, 1.0)
    assert z.shape == (2, 4, 4) and (z[0, 2:] == 0).all()


def test_encode_and_decode_latents():
    model = make().train()
    data = molecules(['CC(=O)N'])
    z = model.encode_latents(data)
    assert z.shape == (4, 4) and model.training
    mean = model.encode_latents(data, sample=False)
    assert torch.allclose(model.eval()(data.x, data.edge_index,
                                       edge_attr=data.edge_attr)[0].mu, mean)
    sample = model.decode_latents(z.unsqueeze(0))
    assert sample.num_nodes.tolist() == [4]
    assert len(sample.corrected_mols(QM9_ATOMS)) == 1


def test_valence_excess_exact_and_straight_through():
    from torch_geometric_mgvae.models.molecule import valence_excess
    sample = _hand_sample()
    maxval = torch.tensor([4., 3., 2., 1., 4., 1., 3., 2.])
    atom = sample.atom_prob.log().clamp(min=-30).requires_grad_()
    bond = sample.bond_prob.clamp(min=1e-9).log().requires_grad_()
    out = valence_excess(atom, bond, sample.mask, maxval)
    # Molecule 0 (C-C=O) is valid; in molecule 1 the oxygen has three
    # single bonds for a valence of 2:
    assert torch.allclose(out, torch.tensor([0., 1.]), atol=1e-6)
    out.sum().backward()
    assert bond.grad[1].abs().sum() > 0 and atom.grad[1].abs().sum() > 0
    assert bond.grad[0].abs().sum() == 0


def test_valence_regularizer_term():
    data = molecules()
    with pytest.raises(ValueError, match='atoms'):
        make(valence_regularizer=True, atoms=None)
    model = make(valence_regularizer=True, atoms=QM9_ATOMS).train()
    out = model(data.x, data.edge_index, batch=data.batch,
                edge_attr=data.edge_attr)
    terms = model.loss_terms(out, torch.Generator().manual_seed(0))
    assert terms['valence'] >= 0 and torch.isfinite(terms['valence'])
    terms['valence'].backward()
    assert model.prior.mu_hat.grad is None  # only the decoder learns
    assert 'valence' not in model.eval().loss_terms(out)


def test_connect_fragments():
    from torch_geometric_mgvae.models.molecule import connect_fragments
    sample = _hand_sample()
    joined = sample.corrected_mols(QM9_ATOMS, connect=True)
    assert mol_to_smiles(joined[0]) == 'CC=O'  # already connected
    # O-C, O-C by the correction; the third carbon cannot bond to the full
    # oxygen (p = 0.8), so it joins the first carbon (ties in order):
    assert mol_to_smiles(joined[1]) == 'CCOC'
    # Two fragments C=C and O=O: no free valence on either oxygen, so the
    # join goes through the carbons' most probable pair.
    types = torch.tensor([0, 0, 2, 2])
    ei = torch.tensor([[0, 1, 2, 3], [1, 0, 3, 2]])
    bonds = torch.tensor([2, 2, 2, 2])
    prob = torch.zeros(4, 4)
    prob[0, 2] = prob[2, 0] = 0.9
    ei2, b2 = connect_fragments(types, ei, bonds, prob, QM9_ATOMS)
    assert torch.equal(ei2, ei) and torch.equal(b2, bonds)
    types = torch.tensor([0, 0, 2, 0])  # C=C, O=C
    ei2, b2 = connect_fragments(types, ei, bonds, prob, QM9_ATOMS)
    # (0, 2): O is full; next in order (0, 3) joins with a single bond.
    assert ei2.tolist() == [[0, 0, 1, 2, 3, 3], [1, 3, 0, 3, 0, 2]]
    assert b2.tolist() == [2, 1, 2, 2, 1, 2]


def test_bond_deficit():
    from torch_geometric_mgvae.models.molecule import bond_deficit
    sample = _hand_sample()
    bond = sample.bond_prob.clamp(min=1e-9).log().requires_grad_()
    out = bond_deficit(bond, sample.mask)
    # Molecule 0: 3 atoms, 2 bonds; molecule 1: 4 atoms, 3 bonds.
    assert out.tolist() == [0.0, 0.0]
    empty = torch.zeros(1, 3, 3, 4)
    empty[..., 0] = 5.0
    out = bond_deficit(empty.requires_grad_(), torch.ones(1, 3).bool())
    assert out.tolist() == [2.0]
    out.sum().backward()
    assert empty.grad[0, 0, 1, 0] > 0  # pushes 'none' down


@pytest.mark.parametrize('kwargs, match', [
    (dict(num_atom_types=0), 'num_atom_types'),
    (dict(num_bond_types=0), 'num_bond_types'),
    (dict(decoder_layers=0), 'decoder_layers'),
    (dict(node_channels=-1), 'node_channels'),
])
def test_nonsensical_sizes_are_rejected(kwargs, match):
    args = dict(num_atom_types=len(QM9_ATOMS), hidden_channels=8,
                latent_channels=4, num_clusters=[2, 1], max_nodes=9)
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        MoleculeMGVAE(**args)


def test_refinement_is_one_encode_decode_step():
    model = make().eval()
    model.fit_num_nodes(torch.tensor([3, 5, 9]))
    sample = model.sample(5, generator=torch.Generator().manual_seed(0))
    assert model.refine(sample, 0) is sample
    gen = torch.Generator().manual_seed(1)
    refined = model.refine(sample, 1, gen, batch_size=2)
    assert not model.training  # the mode is restored
    assert torch.equal(refined.mask, sample.mask)
    assert torch.allclose(refined.atom_prob.sum(-1)[refined.mask],
                          torch.ones(()).double())
    assert torch.allclose(refined.bond_prob,
                          refined.bond_prob.transpose(1, 2))
    # By hand: a posterior draw of the uncorrected molecules, decoded.
    gen = torch.Generator().manual_seed(1)
    for start in (0, 2, 4):
        raw = Batch.from_data_list(sample.raw()[start:start + 2])
        model.train()
        out = model(raw.x.double(), raw.edge_index, batch=raw.batch,
                    num_graphs=raw.num_graphs,
                    edge_attr=raw.edge_attr.double(), generator=gen)
        model.eval()
        for i in range(raw.num_graphs):
            zi = out[0].z[raw.batch == i].unsqueeze(0)
            one = model.decode_latents(zi)
            n = int(one.mask.sum())
            assert torch.allclose(refined.atom_prob[start + i, :n],
                                  one.atom_prob[0], atol=1e-10)
            assert torch.allclose(refined.bond_prob[start + i, :n, :n],
                                  one.bond_prob[0], atol=1e-10)
    # sample(refine_steps=K) is sample() then refine(K) on one generator:
    g1 = torch.Generator().manual_seed(2)
    two = model.refine(model.sample(5, generator=g1), 2, g1)
    g2 = torch.Generator().manual_seed(2)
    assert torch.equal(model.sample(5, generator=g2, refine_steps=2).bond_prob,
                       two.bond_prob)
    with pytest.raises(ValueError, match='steps'):
        model.refine(sample, -1)
    with pytest.raises(ValueError, match='refine_steps'):
        model.sample(2, refine_steps=-1)
    torch.manual_seed(0)
    chem = MoleculeMGVAE(len(QM9_ATOMS), 8, 4, [2, 1], max_nodes=9,
                         node_channels=3).double().eval()
    chem.fit_num_nodes(torch.tensor([3]))
    with pytest.raises(ValueError, match='node_channels=0'):
        chem.sample(2, refine_steps=1)
    with pytest.raises(ValueError, match='node_channels=0'):
        chem.refine(sample, 1)


# Masked decoding ##########################################################

def test_entry_ranks_order_the_atoms_and_pairs():
    mask = torch.tensor([[True] * 3, [True, False, False]])
    ranks, D = entry_ranks(mask, torch.Generator().manual_seed(0))
    assert D.tolist() == [6, 1]
    assert torch.equal(ranks, ranks.transpose(1, 2))
    upper = torch.ones(3, 3, dtype=torch.bool).triu()
    assert sorted(ranks[0][upper].tolist()) == list(range(6))
    assert ranks[1, 0, 0] == 0 and (ranks[1][upper][1:] >= 1).all()


def test_masked_decoder_context_and_equivariance():
    torch.manual_seed(0)
    dec = MoleculeDecoder(4, 8, 2, num_atom_types=3, masked=True).double()
    assert 'masked=True' in str(dec)
    mask = torch.ones(1, 3, dtype=torch.bool)
    atom = torch.tensor([[0, 2, 1]])
    bond = torch.tensor([[[0, 1, 0], [1, 0, 3], [0, 3, 0]]])
    known = torch.tensor([[[True, True, False], [True, False, False],
                           [False, False, True]]])
    ctx = dec.context(atom, bond, known, mask)[0]  # [3, 3, (3+2)+(3+1)]
    assert ctx.shape == (3, 3, 9)
    assert ctx[0, 1].tolist() == [0, 1, 0, 0, 0, 0, 0, 0, 0]  # single
    assert ctx[1, 2].tolist() == [0, 0, 0, 0, 1, 0, 0, 0, 0]  # masked pair
    assert ctx[0, 0].tolist() == [0, 0, 0, 0, 0, 1, 0, 0, 0]  # atom 0
    assert ctx[1, 1].tolist() == [0, 0, 0, 0, 0, 0, 0, 0, 1]  # masked
    assert ctx[2, 2].tolist() == [0, 0, 0, 0, 0, 0, 1, 0, 0]  # atom 1
    z = torch.randn(1, 3, 4, dtype=torch.double)
    a, b = dec(z, mask, atom, bond, known)
    assert torch.allclose(b, b.transpose(1, 2))
    p = torch.tensor([2, 0, 1])
    a2, b2 = dec(z[:, p], mask, atom[:, p], bond[:, p][:, :, p],
                 known[:, p][:, :, p])
    assert torch.allclose(a2, a[:, p], atol=1e-10)
    assert torch.allclose(b2, b[:, p][:, :, p], atol=1e-10)
    # Nothing known is the default; the context changes the output:
    none = torch.zeros_like(known)
    assert torch.equal(dec(z, mask)[1], dec(z, mask, atom, bond, none)[1])
    assert not torch.allclose(dec(z, mask)[1], b)
    with pytest.raises(ValueError, match='Only a masked'):
        MoleculeDecoder(4, 8, 2, 3)(z.float(), mask, atom, bond, known)


def test_distance_context_hand_values_and_equivariance():
    torch.manual_seed(0)
    dec = MoleculeDecoder(4, 8, 2, num_atom_types=3, masked=True,
                          distance_context=2).double()
    assert 'distance_context=2' in str(dec)
    # Known bonds 0-1, 1-2, 2-3 (a path), 4 apart; 5 is padding. The
    # unknown pair (3, 4) is no bond of the graph, and neither is a known
    # "none" pair (0, 4).
    G, n = 1, 6
    mask = torch.tensor([[True] * 5 + [False]])
    bond = torch.zeros(G, n, n, dtype=torch.long)
    for i, j, c in [(0, 1, 1), (1, 2, 2), (2, 3, 1), (3, 4, 1)]:
        bond[0, i, j] = bond[0, j, i] = c
    known = torch.ones(G, n, n, dtype=torch.bool)
    known[0, 3, 4] = known[0, 4, 3] = False
    dist = dec.distances(bond, known, mask)[0]  # [n, n, 3]
    expect = torch.tensor([[0, 1, 2, 3, 3, 3],
                           [1, 0, 1, 2, 3, 3],
                           [2, 1, 0, 1, 3, 3],
                           [3, 2, 1, 0, 3, 3],
                           [3, 3, 3, 3, 0, 3],
                           [3, 3, 3, 3, 3, 0]])
    got = torch.where(dist.sum(-1) > 0, dist.argmax(-1) + 1, 0)
    assert torch.equal(got, expect)
    assert dist.sum(-1).max() == 1  # one-hot
    atom = torch.tensor([[0, 1, 2, 0, 1, 0]])
    ctx = dec.context(atom, bond, known, mask)[0]
    assert ctx.shape == (n, n, 9 + 3)
    assert torch.equal(ctx[:5, :5, 9:], dist[:5, :5])
    assert ctx[5].abs().sum() == 0 and ctx[:, 5].abs().sum() == 0
    # Equivariant: permuting the atoms permutes the outputs.
    z = torch.randn(G, n, 4, dtype=torch.double)
    a, b = dec(z, mask, atom, bond, known)
    p = torch.tensor([3, 0, 4, 1, 2, 5])
    a2, b2 = dec(z[:, p], mask[:, p], atom[:, p], bond[:, p][:, :, p],
                 known[:, p][:, :, p])
    assert torch.allclose(a2, a[:, p], atol=1e-10)
    assert torch.allclose(b2, b[:, p][:, :, p], atol=1e-10)
    with pytest.raises(ValueError, match='masked decoding'):
        MoleculeDecoder(4, 8, 2, 3, distance_context=2)
    with pytest.raises(ValueError, match='distance_context'):
        MoleculeDecoder(4, 8, 2, 3, masked=True, distance_context=-1)
    # In the model: trains and samples.
    data = molecules()
    model = make(masked_decoding=True, distance_context=3)
    out = model(data.x, data.edge_index, batch=data.batch,
                edge_attr=data.edge_attr)
    terms = model.loss_terms(out, torch.Generator().manual_seed(0))
    sum(terms.values()).backward()
    sample = model.eval().sample(4, num_nodes=6,
                                 generator=torch.Generator().manual_seed(2))
    assert all(check_valence(m) for m in sample.corrected_mols(QM9_ATOMS))


def test_masked_recon_loss_is_the_order_agnostic_nll():
    # 'CO' has D = 3 entries (two atoms, one pair). Over many copies the
    # estimate averages to the order-agnostic NLL: the mean over the 3!
    # orders of the sum of each entry's NLL given those before it.
    model = make(masked_decoding=True).eval()
    one = molecules(['CO'])
    out = model(one.x, one.edge_index, batch=one.batch,
                edge_attr=one.edge_attr)
    z, mask = out[0].z.unsqueeze(0), torch.ones(1, 2, dtype=torch.bool)
    atom, bond = torch.tensor([[0, 2]]), torch.tensor([[[0, 1], [1, 0]]])
    entries = [(0, 0), (1, 1), (0, 1)]
    import itertools
    exact = []
    for order in itertools.permutations(range(3)):
        known, total = torch.zeros(1, 2, 2, dtype=torch.bool), 0.
        for e in order:
            a, b = model.decode_molecule(z, mask, atom, bond, known)
            i, j = entries[e]
            logits = a[0, i] if i == j else b[0, i, j]
            target = atom[0, i] if i == j else bond[0, i, j]
            total = total - logits.log_softmax(-1)[target]
            known[0, i, j] = known[0, j, i] = True
        exact.append(total)
    exact = torch.stack(exact).mean()
    many = molecules(['CO'] * 4000)
    out = model(many.x, many.edge_index, batch=many.batch,
                edge_attr=many.edge_attr)
    terms = model.molecule_recon_loss(out,
                                      torch.Generator().manual_seed(0))
    estimate = terms['atom_recon'] + terms['bond_recon']
    assert abs(float(estimate / exact) - 1) < 0.03, (estimate, exact)
    # One atom: nothing to reveal, the estimate is its exact NLL.
    single = molecules(['N'])
    out = model(single.x, single.edge_index, batch=single.batch,
                edge_attr=single.edge_attr)
    a, _ = model.decode_molecule(out[0].z.unsqueeze(0),
                                 torch.ones(1, 1, dtype=torch.bool))
    terms = model.molecule_recon_loss(out, torch.Generator())
    assert torch.allclose(terms['atom_recon'], -a[0, 0].log_softmax(-1)[1])
    assert float(terms['bond_recon']) == 0


def test_masked_decode_conditions_each_round_on_the_ones_before():
    model = make(masked_decoding=True, decode_rounds=2).eval()
    torch.manual_seed(1)
    z = torch.randn(1, 3, 4, dtype=torch.double)
    mask = torch.ones(1, 3, dtype=torch.bool)
    ranks, _ = entry_ranks(mask, torch.Generator().manual_seed(3))
    atom_prob, bond_prob = model.masked_decode(z, mask, ranks=ranks)
    # Round 1: ranks 0-2 from nothing known; round 2: ranks 3-5 given them.
    # (masked_decode computes the latents' part of the first layer once,
    # decode_molecule here the whole layer: the same conditionals.)
    first = ranks < 3
    a1, b1 = model.decode_molecule(z, mask)
    atom = a1.argmax(-1)
    bond = b1.argmax(-1)
    a2, b2 = model.decode_molecule(z, mask, atom, bond, first)
    diag = first.diagonal(dim1=1, dim2=2)
    for i in range(3):
        want = (a1 if diag[0, i] else a2)[0, i].softmax(-1)
        assert torch.allclose(atom_prob[0, i], want, atol=1e-12)
        for j in range(i + 1, 3):
            want = (b1 if first[0, i, j] else b2)[0, i, j].softmax(-1)
            assert torch.allclose(bond_prob[0, i, j], want, atol=1e-12)
            assert torch.equal(bond_prob[0, i, j], bond_prob[0, j, i])
    # Permuting the latents and the order permutes the result:
    p = torch.tensor([1, 2, 0])
    ap, bp = model.masked_decode(z[:, p], mask, ranks=ranks[:, p][:, :, p])
    assert torch.allclose(ap, atom_prob[:, p], atol=1e-12)
    assert torch.allclose(bp, bond_prob[:, p][:, :, p], atol=1e-12)
    # One round is the unconditional decoder (pairs; the diagonal holds
    # the atoms):
    a, b = model.masked_decode(z, mask, rounds=1)
    off = ~torch.eye(3, dtype=torch.bool)
    assert torch.allclose(b[:, off], b1.softmax(-1)[:, off])
    assert torch.allclose(a, a1.softmax(-1)) and (b[:, ~off] == 0).all()
    with pytest.raises(ValueError, match='rounds'):
        model.masked_decode(z, mask, rounds=0)
    for bad in (-1., float('nan'), float('inf')):
        with pytest.raises(ValueError, match='decode_temperature'):
            model.masked_decode(z, mask, decode_temperature=bad)
    with pytest.raises(ValueError, match='masked_decoding=True'):
        make().masked_decode(z, mask)


def test_masked_sampling_is_seeded_and_trains():
    model = make(masked_decoding=True, decode_rounds=3).eval()
    model.fit_num_nodes(torch.tensor([1, 4, 9]))
    s1 = model.sample(6, generator=torch.Generator().manual_seed(0))
    s2 = model.sample(6, generator=torch.Generator().manual_seed(0))
    assert torch.equal(s1.bond_prob, s2.bond_prob)
    assert torch.allclose(s1.bond_prob, s1.bond_prob.transpose(1, 2))
    assert torch.allclose(s1.atom_prob.sum(-1)[s1.mask],
                          torch.ones(()).double())
    assert len(s1.raw()) == 6
    s3 = model.sample(6, generator=torch.Generator().manual_seed(0),
                      rounds=1, refine_steps=1)
    assert s3.bond_prob.shape == s1.bond_prob.shape
    with pytest.raises(ValueError, match='rounds'):
        model.sample(2, rounds=0)
    data = molecules()
    model.train()
    out = model(data.x, data.edge_index, batch=data.batch,
                edge_attr=data.edge_attr,
                generator=torch.Generator().manual_seed(0))
    terms = model.loss_terms(out, torch.Generator().manual_seed(0))
    sum(terms.values()).backward()
    assert model.decoder.net.convs[0].lin1.weight.grad.abs().sum() > 0
    with pytest.raises(ValueError, match='decode_rounds'):
        make(masked_decoding=True, decode_rounds=0)


def test_masked_decoding_draws_at_a_temperature():
    model = make(masked_decoding=True, decode_rounds=2).eval()
    torch.manual_seed(1)
    z = torch.randn(64, 4, 4, dtype=torch.double)
    mask = torch.ones(64, 4, dtype=torch.bool)
    greedy = model.masked_decode(z, mask, generator=torch.Generator()
                                 .manual_seed(0))
    # A vanishing temperature draws the most probable values (same order):
    cold = model.masked_decode(z, mask, generator=torch.Generator()
                               .manual_seed(0), decode_temperature=1e-6)
    assert torch.equal(cold[0].argmax(-1), greedy[0].argmax(-1))
    assert torch.equal(cold[1].argmax(-1), greedy[1].argmax(-1))
    # At T = 1, values are drawn (they differ from the argmax somewhere);
    # each entry holds (one-hot + p) / 2: its argmax is the drawn value,
    # its mass at least one half, and symmetric:
    atom, bond = model.masked_decode(z, mask, generator=torch.Generator()
                                     .manual_seed(0), decode_temperature=1.)
    assert torch.allclose(atom.sum(-1), torch.ones(()).double())
    assert (atom.max(-1).values >= 0.5).all()
    off = ~torch.eye(4, dtype=torch.bool)
    assert (bond[:, off].max(-1).values >= 0.5).all()
    assert torch.equal(bond, bond.transpose(1, 2))
    assert not torch.equal(atom.argmax(-1), greedy[0].argmax(-1))
    s = model.sample(3, 4, torch.Generator().manual_seed(0),
                     decode_temperature=1.)
    assert len(s.corrected_mols(QM9_ATOMS)) == 3


def test_aromatic_bond_type_sample_and_model():
    from torch_geometric_mgvae.models.molecule import valence_excess
    # Benzene and pyrrole as 5-class bond probabilities (none, single,
    # double, triple, aromatic), most probable class 'aromatic' on the ring.
    n = 6
    atom = torch.zeros(2, n, len(QM9_ATOMS))
    atom[0, :, 0] = 1.0
    atom[1, :5] = F.one_hot(torch.tensor([1, 0, 0, 0, 0]),
                            len(QM9_ATOMS)).float()
    bond = torch.zeros(2, n, n, 5)
    bond[..., 0] = 1.0
    for b, size in [(0, 6), (1, 5)]:
        for i in range(size):
            j = (i + 1) % size
            bond[b, i, j] = bond[b, j, i] = torch.tensor(
                [0.1, 0.2, 0.05, 0.0, 0.65])
    mask = torch.tensor([[True] * 6, [True] * 5 + [False]])
    sample = MoleculeSample(atom, bond, mask)
    assert sample.aromatic and not _hand_sample().aromatic
    assert sample.molecule(0)['bond_type_prob'].shape == (6, 6, 4)
    assert [mol_to_smiles(m) for m in sample.raw_mols(QM9_ATOMS)] == \
        ['c1ccccc1', 'c1cc[nH]c1']
    for connect in [False, True]:
        mols = sample.corrected_mols(QM9_ATOMS, connect=connect)
        assert [mol_to_smiles(m) for m in mols] == \
            ['c1ccccc1', 'c1cc[nH]c1']
    # Aromatic bonds count 1.5 in the valence excess: 3 per ring atom.
    maxval = torch.tensor([4., 3., 2., 1., 4., 1., 3., 2.])
    out = valence_excess(sample.atom_prob.clamp(min=1e-9).log(),
                         sample.bond_prob.clamp(min=1e-9).log(),
                         sample.mask, maxval)
    assert out.tolist() == [0.0, 0.0]
    maxval[0] = 2.0
    out = valence_excess(sample.atom_prob.clamp(min=1e-9).log(),
                         sample.bond_prob.clamp(min=1e-9).log(),
                         sample.mask, maxval)
    assert out.tolist() == [6.0, 4.0]

    # A model of aromatic graphs (kekulize=False) trains and samples:
    data = Batch.from_data_list([
        smiles_to_data(s, kekulize=False)
        for s in ['c1ccoc1', 'CCO', 'c1cc[nH]c1', 'C#N']])
    assert data.edge_attr.size(1) == 4
    model = make(num_bond_types=4, masked_decoding=True).float()
    out = model(data.x, data.edge_index, batch=data.batch,
                edge_attr=data.edge_attr)
    terms = model.loss_terms(out, torch.Generator().manual_seed(0))
    loss = sum(terms.values())
    assert torch.isfinite(loss)
    loss.backward()
    sample = model.eval().sample(8, num_nodes=5,
                                 generator=torch.Generator().manual_seed(1))
    assert sample.aromatic and sample.bond_prob.size(-1) == 5
    assert all(check_valence(m) for m in sample.corrected_mols(QM9_ATOMS))
