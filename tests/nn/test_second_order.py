import pytest
import torch

from torch_geometric_mgvae.nn.second_order import (
    NUM_BASIS,
    NUM_CONTRACTIONS,
    MLPDecoder,
    SecondOrderConv,
    SecondOrderDecoder,
    SecondOrderEncoder,
    apply_mask,
    contract_to_first_order,
    contractions_eq3,
    equivariant_basis_2to2,
    pair_features,
    to_second_order,
)

D = torch.float64


# ---------------------------------------------------------------- helpers
def dense_batch(sizes=(5, 3, 4), F=3, E=2, C=2, seed=0, garbage=True):
    r"""Random dense blocks padded to ``max(sizes)``; padded entries hold
    garbage (they must be ignored)."""
    g = torch.Generator().manual_seed(seed)
    B, n = len(sizes), max(sizes)
    mask = torch.arange(n) < torch.tensor(sizes).view(-1, 1)  # [B, n]
    w = torch.rand(B, n, n, generator=g, dtype=D) + 0.5
    e = (torch.rand(B, n, n, generator=g) < 0.5).to(D)
    adj = (e * w).triu(1)
    adj = adj + adj.transpose(1, 2)  # [B, n, n]
    ea = torch.randn(B, n, n, E, generator=g, dtype=D)
    ea = ea + ea.transpose(1, 2)  # [B, n, n, E]
    x = torch.randn(B, n, F, generator=g, dtype=D)
    H = torch.randn(B, n, n, C, generator=g, dtype=D)  # not symmetric
    z = torch.randn(B, n, F, generator=g, dtype=D)
    if garbage:
        pair = mask.unsqueeze(2) & mask.unsqueeze(1)
        adj = torch.where(pair, adj, 7.0)
        ea = torch.where(pair.unsqueeze(-1), ea, -3.0)
        H = torch.where(pair.unsqueeze(-1), H, 11.0)
        x = torch.where(mask.unsqueeze(-1), x, 5.0)
        z = torch.where(mask.unsqueeze(-1), z, -9.0)
    return dict(x=x, adj=adj, edge_attr=ea, H=H, z=z, mask=mask)


def node_perm(mask, seed=1):
    r"""Per block, a random permutation of the valid nodes (padded positions
    stay): ``perm[b, i]`` is the old position of new node ``i``."""
    g = torch.Generator().manual_seed(seed)
    B, n = mask.shape
    perm = torch.arange(n).repeat(B, 1)
    for b in range(B):
        m = int(mask[b].sum())
        perm[b, :m] = torch.randperm(m, generator=g)
    return perm


def p1(t, perm):
    return t[torch.arange(t.size(0)).view(-1, 1), perm]


def p2(t, perm):
    b = torch.arange(t.size(0)).view(-1, 1, 1)
    return t[b, perm.unsqueeze(2), perm.unsqueeze(1)]


def check_padding(out, mask, order):
    assert torch.equal(out, apply_mask(out, mask, order))


def T(rows):
    return torch.tensor(rows, dtype=D)


# ---------------------------------------------------------- equivariance
def _modules():
    torch.manual_seed(0)
    return dict(
        conv=SecondOrderConv(2, 4, hidden_channels=6).double(),
        conv_nb=SecondOrderConv(2, 4, basis=False).double(),
        enc=SecondOrderEncoder(3, 2, 6, 4, num_layers=2,
                               return_diag=True).double(),
        dec=SecondOrderDecoder(3, 6, num_layers=2, edge_channels=2).double(),
    )


def _apply(name, mods, d):
    r"""Outputs of each layer as a list of ``(tensor, order)``."""
    if name == 'basis':
        return [(equivariant_basis_2to2(d['H'], d['mask']), 2)]
    if name == 'contractions':
        return [(contractions_eq3(d['adj'], d['H'], d['mask']), 2)]
    if name == 'to_second_order':
        return [(to_second_order(d['x'], d['adj'], d['mask'],
                                 d['edge_attr']), 2)]
    if name == 'first_order':
        return [(contract_to_first_order(d['H'], d['mask'], True), 1)]
    if name == 'pair_features':
        return [(pair_features(d['z'], d['mask']), 2)]
    if name in ('conv', 'conv_nb'):
        return [(mods[name](d['H'], d['adj'], d['mask']), 2)]
    if name == 'enc':
        H, Z = mods['enc'](d['x'], d['adj'], d['mask'], d['edge_attr'])
        return [(H, 2), (Z, 1)]
    if name == 'dec':
        return [(mods['dec'](d['z'], d['mask']), 2),
                (mods['dec'](d['z'], d['mask'], d['adj']), 2)]
    raise KeyError(name)


NAMES = ['basis', 'contractions', 'to_second_order', 'first_order',
         'pair_features', 'conv', 'conv_nb', 'enc', 'dec']


def permute_inputs(d, perm):
    return dict(x=p1(d['x'], perm), z=p1(d['z'], perm),
                adj=p2(d['adj'], perm), edge_attr=p2(d['edge_attr'], perm),
                H=p2(d['H'], perm), mask=d['mask'])


@pytest.mark.parametrize('name', NAMES)
def test_equivariance_with_padding(name):
    mods = _modules()
    d = dense_batch()
    perm = node_perm(d['mask'])
    outs = _apply(name, mods, d)
    outs_p = _apply(name, mods, permute_inputs(d, perm))
    for (out, order), (out_p, _) in zip(outs, outs_p):
        check_padding(out, d['mask'], order)
        expected = p1(out, perm) if order == 1 else p2(out, perm)
        assert torch.allclose(out_p, expected, atol=1e-5, rtol=0)
        assert out.abs().sum() > 0


@pytest.mark.parametrize('name', NAMES)
def test_padding_independence(name):
    mods = _modules()
    d = dense_batch()
    outs = _apply(name, mods, d)
    for b, m in enumerate(d['mask'].sum(1).tolist()):
        single = dict(x=d['x'][b:b + 1, :m], z=d['z'][b:b + 1, :m],
                      adj=d['adj'][b:b + 1, :m, :m],
                      edge_attr=d['edge_attr'][b:b + 1, :m, :m],
                      H=d['H'][b:b + 1, :m, :m],
                      mask=d['mask'][b:b + 1, :m])
        for (out, order), (ref, _) in zip(outs, _apply(name, mods, single)):
            got = out[b, :m] if order == 1 else out[b, :m, :m]
            assert torch.allclose(got, ref[0], atol=1e-10, rtol=0)


def test_apply_mask():
    mask = torch.tensor([[True, False]])
    t = torch.full((1, 2, 2, 3), float('nan'))
    out = apply_mask(t, mask, 2)
    assert out[0, 0, 0].isnan().all() and (out[0, 1] == 0).all()
    assert (out[0, 0, 1] == 0).all()
    out = apply_mask(torch.full((1, 2, 4, 3), 2.0), mask, 1)
    assert (out[0, 0] == 2).all() and (out[0, 1] == 0).all()
    with pytest.raises(ValueError, match='order'):
        apply_mask(t, mask, 3)


def test_empty_block_and_isolated_nodes():
    mask = torch.tensor([[False, False], [True, True]])
    H = torch.randn(2, 2, 2, 1, dtype=D)
    adj = torch.zeros(2, 2, 2, dtype=D)  # no edges: D^{-1} A = 0
    for out in (equivariant_basis_2to2(H, mask),
                contractions_eq3(adj, H, mask)):
        assert out.isfinite().all() and (out[0] == 0).all()
    out = contractions_eq3(adj, H, mask).view(2, 2, 2, NUM_CONTRACTIONS)
    assert (out[1, ..., :6] == 0).all()  # A-dependent forms vanish


# ------------------------------------------------------- hand-built values
# 2 nodes, one edge, H = [[1, 2], [3, 4]] (one channel), m = 2:
# diag (1, 4), row means r = (1.5, 3.5), column means c = (2, 3),
# diagonal mean t = 2.5, total mean s = 10 / 4 = 2.5.
A2 = T([[0, 1], [1, 0]])
H2 = T([[1, 2], [3, 4]])
BASIS2 = [
    [[1, 0], [0, 4]],  # L1 diag(H)
    [[2.5, 0], [0, 2.5]],  # L2 t on diag
    [[1.5, 0], [0, 3.5]],  # L3 r on diag
    [[2, 0], [0, 3]],  # L4 c on diag
    [[2.5, 0], [0, 2.5]],  # L5 s on diag
    [[1.5, 1.5], [3.5, 3.5]],  # L6 r_i
    [[1.5, 3.5], [1.5, 3.5]],  # L7 r_j
    [[2, 2], [3, 3]],  # L8 c_i
    [[2, 3], [2, 3]],  # L9 c_j
    [[1, 2], [3, 4]],  # L10 H
    [[1, 3], [2, 4]],  # L11 H^T
    [[1, 1], [4, 4]],  # L12 H_ii
    [[1, 4], [1, 4]],  # L13 H_jj
    [[2.5, 2.5], [2.5, 2.5]],  # L14 t
    [[2.5, 2.5], [2.5, 2.5]],  # L15 s
]
# degrees (1, 1), so P = D^{-1} A = A; a_bar = 2 / 4, h_bar = 2.5,
# d~ = deg / mean degree = (1, 1).
CONTR2 = [
    [[3, 4], [1, 2]],  # T1 P H (rows of H swapped)
    [[2, 4], [1, 3]],  # T2 P H^T
    [[2, 1], [4, 3]],  # T3 H P^T
    [[3, 1], [4, 2]],  # T4 H^T P^T
    [[0, 2], [3, 0]],  # T5 A * H
    [[0, 3], [2, 0]],  # T6 A * H^T
    [[0.5, 1], [1.5, 2]],  # T7 a_bar H
    [[0.5, 1.5], [1, 2]],  # T8 a_bar H^T
    [[0, 2.5], [2.5, 0]],  # T9 h_bar A
    [[2, 3], [2, 3]],  # T10 d~_i c_j
    [[2, 2], [3, 3]],  # T11 c_i d~_j
    [[1.5, 3.5], [1.5, 3.5]],  # T12 d~_i r_j
    [[1.5, 1.5], [3.5, 3.5]],  # T13 r_i d~_j
]

# Path 0 - 1 - 2, H = [[1, 6, 0], [0, 2, 0], [0, 0, 3]], m = 3:
# diag (1, 2, 3), r = (7/3, 2/3, 1), c = (1/3, 8/3, 1), t = 2, s = 12/9.
A3 = T([[0, 1, 0], [1, 0, 1], [0, 1, 0]])
H3 = T([[1, 6, 0], [0, 2, 0], [0, 0, 3]])
r3, c3 = [7 / 3, 2 / 3, 1], [1 / 3, 8 / 3, 1]
BASIS3 = [
    torch.diag(T([1, 2, 3])),  # L1
    2 * torch.eye(3, dtype=D),  # L2
    torch.diag(T(r3)),  # L3
    torch.diag(T(c3)),  # L4
    4 / 3 * torch.eye(3, dtype=D),  # L5
    T([[7 / 3] * 3, [2 / 3] * 3, [1] * 3]),  # L6 r_i
    T([r3] * 3),  # L7 r_j
    T([[1 / 3] * 3, [8 / 3] * 3, [1] * 3]),  # L8 c_i
    T([c3] * 3),  # L9 c_j
    H3,  # L10
    H3.t(),  # L11
    T([[1] * 3, [2] * 3, [3] * 3]),  # L12 H_ii
    T([[1, 2, 3]] * 3),  # L13 H_jj
    2 * torch.ones(3, 3, dtype=D),  # L14
    4 / 3 * torch.ones(3, 3, dtype=D),  # L15
]
# degrees (1, 2, 1), P = [[0, 1, 0], [.5, 0, .5], [0, 1, 0]],
# a_bar = 4/9, h_bar = 12/9, mean degree 4/3, d~ = (3/4, 3/2, 3/4).
PH3 = T([[0, 2, 0], [0.5, 3, 1.5], [0, 2, 0]])
PHt3 = T([[6, 2, 0], [0.5, 0, 1.5], [6, 2, 0]])
T10_3 = T([[1 / 4, 2, 3 / 4], [1 / 2, 4, 3 / 2],
           [1 / 4, 2, 3 / 4]])
T12_3 = T([[7 / 4, 1 / 2, 3 / 4], [7 / 2, 1, 3 / 2],
           [7 / 4, 1 / 2, 3 / 4]])
CONTR3 = [
    PH3,  # T1
    PHt3,  # T2
    T([[6, 0.5, 6], [2, 0, 2], [0, 1.5, 0]]),  # T3 = T2^T
    T([[0, 0.5, 0], [2, 3, 2], [0, 1.5, 0]]),  # T4 = T1^T
    T([[0, 6, 0], [0, 0, 0], [0, 0, 0]]),  # T5 A * H
    T([[0, 0, 0], [6, 0, 0], [0, 0, 0]]),  # T6 A * H^T
    4 / 9 * H3,  # T7
    4 / 9 * H3.t(),  # T8
    4 / 3 * A3,  # T9
    T10_3,  # T10
    T10_3.t(),  # T11
    T12_3,  # T12
    T12_3.t(),  # T13
]


@pytest.mark.parametrize('A,H,basis,contr', [(A2, H2, BASIS2, CONTR2),
                                             (A3, H3, BASIS3, CONTR3)])
@pytest.mark.parametrize('padded', [False, True])
def test_hand_values(A, H, basis, contr, padded):
    n = A.size(0)
    adj, Hb = A.view(1, n, n), H.view(1, n, n, 1)
    mask = torch.ones(1, n, dtype=torch.bool)
    if padded:  # one more padded node holding garbage
        adj = torch.nn.functional.pad(adj, (0, 1, 0, 1), value=5.0)
        Hb = torch.nn.functional.pad(Hb, (0, 0, 0, 1, 0, 1), value=-2.0)
        mask = torch.tensor([[True] * n + [False]])
    out_b = equivariant_basis_2to2(Hb, mask)[0, :n, :n]  # [n, n, 15]
    out_c = contractions_eq3(adj, Hb, mask)[0, :n, :n]  # [n, n, 13]
    assert out_b.size(-1) == NUM_BASIS and out_c.size(-1) == NUM_CONTRACTIONS
    for k, expected in enumerate(basis):
        assert torch.allclose(out_b[..., k], T(expected) if isinstance(
            expected, list) else expected), f'L{k + 1}'
    for k, expected in enumerate(contr):
        assert torch.allclose(out_c[..., k], T(expected) if isinstance(
            expected, list) else expected), f'T{k + 1}'
    # The conv feeds exactly these features, contractions first:
    conv = SecondOrderConv(1, 2).double()
    feats = conv.features(Hb, adj, mask)[0, :n, :n]
    assert torch.equal(feats, torch.cat([out_c, out_b], dim=-1))


def test_hand_values_unnormalised():
    # normalize=False keeps the earlier forms: raw weights, d~ = deg / m.
    # Two nodes joined by an edge of weight 3 (degrees 3, m = 2):
    adj, H = 3 * A2.view(1, 2, 2), H2.view(1, 2, 2, 1)
    mask = torch.ones(1, 2, dtype=torch.bool)
    old = contractions_eq3(adj, H, mask, normalize=False)[0]  # C = 1
    new = contractions_eq3(adj, H, mask)[0]
    assert torch.allclose(old[..., 4], 3 * A2 * H2)  # T5 = A * H
    assert torch.allclose(new[..., 4], A2 * H2)
    assert torch.allclose(old[..., 9], 1.5 * T([[2, 3], [2, 3]]))  # T10
    assert torch.allclose(new[..., 9], T([[2, 3], [2, 3]]))
    assert torch.allclose(old[..., 6], 1.5 * H2)  # T7, a_bar = 6 / 4
    Hb = to_second_order(torch.ones(1, 2, 1, dtype=D), adj, mask,
                         normalize=False)
    assert torch.equal(Hb[0, ..., -1], 3 * A2)
    assert torch.equal(to_second_order(torch.ones(1, 2, 1, dtype=D), adj,
                                       mask)[0, ..., -1], A2)


def test_channel_layout_is_map_major():
    # Two channels: map k occupies channels [k C, (k + 1) C).
    H = torch.stack([H2, 10 * H2], dim=-1).view(1, 2, 2, 2)
    mask = torch.ones(1, 2, dtype=torch.bool)
    out = equivariant_basis_2to2(H, mask)[0].view(2, 2, NUM_BASIS, 2)
    assert torch.allclose(out[..., 1], 10 * out[..., 0])
    assert torch.equal(out[..., 10, 0], H2.t())  # L11 = transpose
    out = contractions_eq3(A2.view(1, 2, 2), H, mask)[0]
    out = out.view(2, 2, NUM_CONTRACTIONS, 2)
    assert torch.allclose(out[..., 1], 10 * out[..., 0])


def test_to_second_order_and_first_order_hand_values():
    x = T([[1], [2]]).view(1, 2, 1)
    ea = T([[0, 5], [5, 0]]).view(1, 2, 2, 1)
    mask = torch.ones(1, 2, dtype=torch.bool)
    H0 = to_second_order(x, A2.view(1, 2, 2), mask, ea)[0]
    assert H0.shape == (2, 2, 3)
    assert torch.equal(H0[..., 0], T([[1, 0], [0, 2]]))
    assert torch.equal(H0[..., 1], T([[0, 5], [5, 0]]))
    assert torch.equal(H0[..., 2], A2)
    assert to_second_order(x, A2.view(1, 2, 2), mask).shape == (1, 2, 2, 2)
    # Z = H_{down 1} + H_{down 2} (+ diag): column means, row means.
    Z = contract_to_first_order(H2.view(1, 2, 2, 1), mask, diag=True)[0]
    assert torch.equal(Z, T([[2, 1.5, 1], [3, 3.5, 4]]))
    Z = contract_to_first_order(H2.view(1, 2, 2, 1), mask)[0]
    assert torch.equal(Z, T([[2, 1.5], [3, 3.5]]))


def test_pair_features_hand_values():
    z = T([[1, -1], [3, 2]]).view(1, 2, 2)
    mask = torch.ones(1, 2, dtype=torch.bool)
    H = pair_features(z, mask)[0]  # [2, 2, 8]
    assert torch.equal(H[0, 1], T([3, -2, 4, 1, 2, 3, 0, 0]))
    assert torch.equal(H[1, 1], T([9, 4, 6, 4, 0, 0, 3, 2]))
    assert torch.equal(H, H.transpose(0, 1))


# ------------------------------------------------------------ the modules
def test_conv_encoder_decoder_shapes_and_repr():
    d = dense_batch()
    mods = _modules()
    conv, enc, dec = mods['conv'], mods['enc'], mods['dec']
    assert conv.lin1.in_features == (NUM_BASIS + NUM_CONTRACTIONS) * 2
    assert mods['conv_nb'].lin1.in_features == NUM_CONTRACTIONS * 2
    assert conv(d['H'], d['adj'], d['mask']).shape == (3, 5, 5, 4)
    H, Z = enc(d['x'], d['adj'], d['mask'], d['edge_attr'])
    assert H.shape == (3, 5, 5, 4) and Z.shape == (3, 5, 12)
    assert enc.first_order_channels == 12
    out = dec(d['z'], d['mask'])
    assert out.shape == (3, 5, 5, 2)
    assert torch.equal(out, out.transpose(1, 2))
    assert str(conv) == ('SecondOrderConv(2, 4, hidden_channels=6, '
                         'basis=True)')
    assert str(mods['conv_nb']) == ('SecondOrderConv(2, 4, hidden_channels=4,'
                                    ' basis=False)')
    assert str(enc) == 'SecondOrderEncoder(3, 2, 6, 4, num_layers=2)'
    assert str(dec) == ('SecondOrderDecoder(3, 6, num_layers=2, '
                        'edge_channels=2)')
    assert str(SecondOrderEncoder(3, 0, 6, 4, 2, normalize=False)) == (
        'SecondOrderEncoder(3, 0, 6, 4, num_layers=2, normalize=False)')
    assert str(SecondOrderConv(2, 4, normalize=False)) == (
        'SecondOrderConv(2, 4, hidden_channels=4, basis=True, '
        'normalize=False)')
    with pytest.raises(ValueError, match='edge_attr'):
        enc(d['x'], d['adj'], d['mask'])
    with pytest.raises(ValueError, match='num_layers'):
        SecondOrderEncoder(3, 0, 4, 4, num_layers=0)
    with pytest.raises(ValueError, match='num_layers'):
        SecondOrderDecoder(3, 4, num_layers=0)


def test_encoder_gradients_and_reset():
    d = dense_batch()
    enc = SecondOrderEncoder(3, 0, 6, 4, num_layers=3).double()
    H, Z = enc(d['x'], d['adj'], d['mask'])
    (H.pow(2).sum() + Z.sum()).backward()
    for p in enc.parameters():
        assert p.grad is not None and p.grad.isfinite().all()
    w = enc.convs[0].lin1.weight.clone()
    enc.reset_parameters()
    assert not torch.equal(w, enc.convs[0].lin1.weight)


def test_mlp_decoder():
    torch.manual_seed(0)
    d = dense_batch()
    dec = MLPDecoder(3, max_nodes=6, hidden_channels=16,
                     edge_channels=2).double()
    out = dec(d['z'], d['mask'])
    assert out.shape == (3, 5, 5, 2)
    check_padding(out, d['mask'], 2)
    assert torch.equal(out, out.transpose(1, 2))
    sigmoids = [m for m in dec.mlp if isinstance(m, torch.nn.Sigmoid)]
    assert len(sigmoids) == 2
    # Padded garbage is ignored ...
    z = d['z'].clone()
    z[~d['mask']] = 100.0
    assert torch.equal(dec(z, d['mask']), out)
    # ... but the decoder is NOT permutation equivariant (Table 6 baseline).
    perm = node_perm(d['mask'])
    out_p = dec(p1(d['z'], perm), d['mask'])
    assert not torch.allclose(out_p, p2(out, perm), atol=1e-5)
    with pytest.raises(ValueError, match='max_nodes'):
        dec(torch.randn(1, 7, 3, dtype=D), torch.ones(1, 7, dtype=torch.bool))
    assert str(MLPDecoder(3, 6)) == ('MLPDecoder(3, max_nodes=6, '
                                     'hidden_channels=512, edge_channels=1)')
    assert dec.mlp[0].out_features == 16


# ------------------------------------- factorised forward == reference MLP
def ref_conv(conv, H, adj, mask):
    r"""The definition: the MLP on the explicit concatenation."""
    feats = conv.features(H, adj, mask)  # [B, n, n, K C]
    return apply_mask(conv.lin2(conv.lin1(feats).relu()), mask, 2)


def ref_encoder(enc, x, adj, mask, edge_attr=None):
    H = to_second_order(x, adj, mask, edge_attr, enc.normalize)
    for i, conv in enumerate(enc.convs):
        H = ref_conv(conv, H, adj, mask)
        if i < enc.num_layers - 1:
            H = H.relu()
    return H, contract_to_first_order(H, mask, enc.return_diag)


def ref_decoder(dec, z, mask, adj=None):
    B, n, _ = z.shape
    if adj is None:
        adj = (1 - torch.eye(n, dtype=z.dtype)).expand(B, n, n)
    H = pair_features(dec.lin_in(z), mask)
    for i, conv in enumerate(dec.convs):
        H = ref_conv(conv, H, adj, mask)
        if i < dec.num_layers - 1:
            H = H.relu()
    return apply_mask(0.5 * (H + H.transpose(1, 2)), mask, 2)


def _grads(module, outs, inputs, seed=3):
    r"""Gradients of a random linear functional of :obj:`outs` w.r.t. the
    parameters and :obj:`inputs`."""
    g = torch.Generator().manual_seed(seed)
    loss = sum((o * torch.randn(o.shape, generator=g, dtype=o.dtype)).sum()
               for o in outs)
    return torch.autograd.grad(loss, list(module.parameters()) + inputs,
                               allow_unused=True)


def _assert_close(got, ref, atol=1e-10):
    for a, b in zip(got, ref):
        assert (a is None) == (b is None)
        if a is not None:
            assert a.shape == b.shape
            assert torch.allclose(a, b, atol=atol, rtol=0), \
                (a - b).abs().max()


SIZES = [(5, 3, 4), (1, ), (7, 7), (2, 6, 1, 4, 6), (9, 2)]


def _no_features(self, *args):
    raise AssertionError('forward must not build the K C features')


@pytest.mark.parametrize('sizes', SIZES)
@pytest.mark.parametrize('basis', [True, False])
@pytest.mark.parametrize('symmetric', [True, False])
@pytest.mark.parametrize('normalize', [True, False])
def test_conv_matches_reference(sizes, basis, symmetric, normalize,
                                monkeypatch):
    torch.manual_seed(0)
    d = dense_batch(sizes, C=3, seed=len(sizes))
    adj = d['adj']
    if not symmetric:  # A * H^T etc. must use A^T, not assume symmetry
        adj = adj * torch.rand(adj.shape, dtype=D)
    H = d['H'].requires_grad_()
    conv = SecondOrderConv(3, 4, hidden_channels=5, basis=basis,
                           normalize=normalize).double()
    ref = ref_conv(conv, H, adj, d['mask'])
    ref_g = _grads(conv, [ref], [H])
    monkeypatch.setattr(SecondOrderConv, 'features', _no_features)
    out = conv(H, adj, d['mask'])
    _assert_close([out], [ref])
    check_padding(out, d['mask'], 2)
    _assert_close(_grads(conv, [out], [H]), ref_g)


def test_conv_matches_reference_wide_and_garbage():
    # C != hidden != out, weighted adjacency, nan / inf in the padding.
    torch.manual_seed(1)
    d = dense_batch((6, 2, 5), C=7, seed=4)
    pair = d['mask'].unsqueeze(2) & d['mask'].unsqueeze(1)
    H = torch.where(pair.unsqueeze(-1), d['H'], float('nan'))
    adj = torch.where(pair, d['adj'], float('inf'))
    conv = SecondOrderConv(7, 3, hidden_channels=11).double()
    out = conv(H.requires_grad_(), adj, d['mask'])
    ref = ref_conv(conv, H, adj, d['mask'])
    assert out.isfinite().all()
    _assert_close([out], [ref])
    _assert_close(_grads(conv, [out], [H]), _grads(conv, [ref], [H]))


def test_conv_float32_and_state_dict():
    # Same parameters give the same function: the layout is unchanged.
    torch.manual_seed(2)
    d = dense_batch((5, 3, 4), C=2, seed=5)
    a, b = SecondOrderConv(2, 4, 6), SecondOrderConv(2, 4, 6)
    b.load_state_dict(a.state_dict())
    assert set(a.state_dict()) == {'lin1.weight', 'lin1.bias',
                                   'lin2.weight', 'lin2.bias'}
    H, adj = d['H'].float(), d['adj'].float()
    out = b(H, adj, d['mask'])
    assert out.dtype == torch.float32
    assert torch.allclose(out, ref_conv(a, H, adj, d['mask']), atol=1e-5)


def test_conv_chunks(monkeypatch):
    import torch_geometric_mgvae.nn.second_order as so
    torch.manual_seed(3)
    d = dense_batch((5, 3, 4, 1, 5, 2, 4), C=2, seed=6)
    H = d['H'].requires_grad_()
    conv = SecondOrderConv(2, 3, hidden_channels=4).double()
    out = conv(H, d['adj'], d['mask'])
    grads = _grads(conv, [out], [H])
    for chunk in (1, 2 * 25 * 4, 3 * 25 * 4 + 7):  # 1, 2, 3 blocks
        monkeypatch.setattr(so, 'CHUNK_ELEMENTS', chunk)
        out_c = conv(H, d['adj'], d['mask'])
        _assert_close([out_c], [out])
        _assert_close(_grads(conv, [out_c], [H]), grads)


def test_conv_empty_blocks():
    mask = torch.tensor([[False, False, False], [True, False, False]])
    H = torch.randn(2, 3, 3, 2, dtype=D)
    adj = torch.ones(2, 3, 3, dtype=D)
    conv = SecondOrderConv(2, 3).double()
    out = conv(H, adj, mask)
    assert out.isfinite().all() and (out[0] == 0).all()
    _assert_close([out], [ref_conv(conv, H, adj, mask)])
    out = conv(H[:, :0, :0], adj[:, :0, :0], mask[:, :0])
    assert out.shape == (2, 0, 0, 3)


@pytest.mark.parametrize('sizes', SIZES)
@pytest.mark.parametrize('edge_channels', [0, 2])
@pytest.mark.parametrize('normalize', [True, False])
def test_encoder_matches_reference(sizes, edge_channels, normalize,
                                   monkeypatch):
    torch.manual_seed(4)
    d = dense_batch(sizes, F=3, E=max(edge_channels, 1), seed=len(sizes))
    ea = d['edge_attr'] if edge_channels else None
    x = d['x'].requires_grad_()
    enc = SecondOrderEncoder(3, edge_channels, 5, 4, num_layers=3,
                             return_diag=True, normalize=normalize).double()
    ref = ref_encoder(enc, x, d['adj'], d['mask'], ea)
    ref_g = _grads(enc, list(ref), [x])
    monkeypatch.setattr(SecondOrderConv, 'features', _no_features)
    out = enc(x, d['adj'], d['mask'], ea)
    _assert_close(out, ref)
    _assert_close(_grads(enc, list(out), [x]), ref_g)


@pytest.mark.parametrize('sizes', SIZES)
@pytest.mark.parametrize('given_adj', [False, True])
@pytest.mark.parametrize('normalize', [True, False])
def test_decoder_matches_reference(sizes, given_adj, normalize, monkeypatch):
    torch.manual_seed(5)
    d = dense_batch(sizes, F=3, seed=len(sizes))
    adj = d['adj'] if given_adj else None
    z = d['z'].requires_grad_()
    dec = SecondOrderDecoder(3, 5, num_layers=2, edge_channels=2,
                             normalize=normalize).double()
    ref = ref_decoder(dec, z, d['mask'], adj)
    ref_g = _grads(dec, [ref], [z])
    monkeypatch.setattr(SecondOrderConv, 'features', _no_features)
    out = dec(z, d['mask'], adj)
    _assert_close([out], [ref])
    _assert_close(_grads(dec, [out], [z]), ref_g)


# ------------------------------------------- stability at initialisation
def _graph(n, kind, g):
    if kind == 'tree':  # molecule-like: a random tree and a few rings
        A = torch.zeros(n, n)
        for i in range(1, n):
            p = int(torch.randint(i, (1, ), generator=g))
            A[i, p] = A[p, i] = 1
        for _ in range(max(1, n // 10)):
            a, b = torch.randint(n, (2, ), generator=g).tolist()
            if a != b:
                A[a, b] = A[b, a] = 1
        return A
    A = (torch.rand(n, n, generator=g) < 0.3).float().triu(1)
    if kind == 'weighted':  # coarse-level counts of tens of edges
        A = A * torch.randint(1, 40, (n, n), generator=g).float()
    return A + A.t()


@pytest.mark.parametrize('kind', ['tree', 'dense', 'weighted'])
def test_activations_stay_of_order_one_for_any_size(kind):
    # Scale-aware init, normalised adjacency and contractions: the RMS of
    # every layer's output stays O(1) from 5 to 200 nodes (the default init
    # shrank it to the biases' ~0.1; weighted adjacencies made it grow).
    g = torch.Generator().manual_seed(0)
    for n in (5, 20, 50, 200):
        torch.manual_seed(n)
        B = 3 if n < 200 else 1
        adj = torch.stack([_graph(n, kind, g) for _ in range(B)])
        mask = torch.ones(B, n, dtype=torch.bool)
        enc = SecondOrderEncoder(9, 0, 16, 16, num_layers=4)
        dec = SecondOrderDecoder(8, 16, num_layers=3, edge_channels=4)
        rms = []
        hooks = [c.register_forward_hook(
            lambda m, i, o: rms.append(float(o.pow(2).mean().sqrt())))
            for c in enc.convs]
        with torch.no_grad():
            for c in enc.convs:  # _forward is what the stack calls
                c.forward = c._forward
            H = to_second_order(torch.randn(B, n, 9, generator=g), adj, mask)
            from torch_geometric_mgvae.nn.second_order import _adj_stats
            st = _adj_stats(adj, mask, H.dtype)
            for i, c in enumerate(enc.convs):
                H = c(H, st, mask)
                H = H.relu() if i < 3 else H
            logits = dec(torch.randn(B, n, 8, generator=g), mask)
        for h in hooks:
            h.remove()
        assert len(rms) == 4
        assert all(0.15 < r < 4 for r in rms), (n, rms)
        assert 0.1 < float(logits.pow(2).mean().sqrt()) < 10, n


def test_adjacency_scale_does_not_matter():
    from torch_geometric_mgvae.nn.second_order import normalize_adjacency
    d = dense_batch(garbage=False)
    adj = (d['adj'] > 0).to(D) * torch.arange(1, 6, dtype=D).view(1, 1, 5)
    adj = adj + adj.transpose(1, 2)
    A = normalize_adjacency(adj, d['mask'])
    assert A.max() == 1 and torch.equal(A, normalize_adjacency(
        40 * adj, d['mask']))
    assert torch.equal(normalize_adjacency(torch.zeros(1, 2, 2),
                                           torch.ones(1, 2, dtype=bool)),
                       torch.zeros(1, 2, 2))
    torch.manual_seed(0)
    enc = SecondOrderEncoder(3, 2, 6, 4, num_layers=2).double()
    H1, Z1 = enc(d['x'], adj, d['mask'], d['edge_attr'])
    H2, Z2 = enc(d['x'], 37 * adj, d['mask'], d['edge_attr'])
    assert torch.allclose(H1, H2) and torch.allclose(Z1, Z2)


# ----------------------------------- the fast paths compute the same thing
def test_symmetric_path_equals_general_path():
    from torch_geometric_mgvae.nn.second_order import _adj_stats
    d = dense_batch(garbage=False)
    H = d['H'] + d['H'].transpose(1, 2)  # symmetric
    H = apply_mask(H, d['mask'], 2).requires_grad_()
    conv = SecondOrderConv(2, 3, hidden_channels=5).double()
    st = _adj_stats(d['adj'], d['mask'], D)
    out = conv._forward(H, st, d['mask'])
    out_s = conv._forward(H, st, d['mask'], symmetric=True)
    assert torch.allclose(out, out_s, atol=1e-12)
    g = torch.randn_like(out)
    ref = torch.autograd.grad(out, [H] + list(conv.parameters()), g)
    got = torch.autograd.grad(out_s, [H] + list(conv.parameters()), g)
    # The two agree on symmetric H, so do their gradients along symmetric
    # directions (H = to_second_order(...) or pair_features(z) is built
    # symmetric: what reaches x, z and the weights is the same):
    assert torch.allclose(ref[0] + ref[0].transpose(1, 2),
                          got[0] + got[0].transpose(1, 2), atol=1e-12)
    for a, b in zip(ref[1:], got[1:]):
        assert torch.allclose(a, b, atol=1e-12)


def test_size_buckets_and_bucketed_run():
    from torch_geometric_mgvae.nn.second_order import size_buckets
    mask = torch.arange(10) < torch.tensor([10, 0, 3, 8, 4, 1, 9]).view(-1, 1)
    buckets = size_buckets(mask)
    assert [(i.tolist(), s) for i, s in buckets] == [
        ([0, 3, 6], 10), ([2, 4], 4), ([5], 1)]
    # The bucketed encoder and decoder equal one call on the padded batch
    # (outputs and gradients):
    d = dense_batch(sizes=(9, 3, 8, 2, 5), garbage=False)
    torch.manual_seed(0)
    enc = SecondOrderEncoder(3, 2, 6, 4, num_layers=2).double()
    dec = SecondOrderDecoder(3, 6, num_layers=2, edge_channels=2).double()
    x = d['x'].clone().requires_grad_()
    z = d['z'].clone().requires_grad_()
    outs = list(enc(x, d['adj'], d['mask'], d['edge_attr'])) + [
        dec(z, d['mask'])]
    refs = list(enc._forward(d['mask'], x, d['adj'], d['edge_attr'])) + [
        dec._forward(d['mask'], z, None)[0]]
    params = [x, z] + list(enc.parameters()) + list(dec.parameters())
    loss = sum((o * torch.randn_like(o)).sum() for o in outs)
    torch.manual_seed(1)
    ref_loss = sum((o * torch.randn_like(o)).sum() for o in refs)
    for o, r in zip(outs, refs):
        assert torch.allclose(o, r, atol=1e-12)
    # Without the second-order output only Z is assembled:
    none, Z = enc(x, d['adj'], d['mask'], d['edge_attr'],
                  return_second_order=False)
    assert none is None and torch.equal(Z, outs[1])
    torch.manual_seed(1)
    loss = sum((o * torch.randn_like(o)).sum() for o in outs)
    for a, b in zip(torch.autograd.grad(loss, params, allow_unused=True),
                    torch.autograd.grad(ref_loss, params,
                                        allow_unused=True)):
        assert (a is None) == (b is None)
        if a is not None:
            assert torch.allclose(a, b, atol=1e-10)


@pytest.mark.parametrize('basis', [True, False])
@pytest.mark.parametrize('normalize', [True, False])
@pytest.mark.parametrize('symmetric', [True, False])
def test_complete_graph_path_equals_general_path(basis, normalize,
                                                 symmetric):
    from torch_geometric_mgvae.nn.second_order import _adj_stats
    d = dense_batch(sizes=(5, 1, 3, 2, 5, 4), garbage=False)
    mask = d['mask']
    B, n = mask.shape
    H = d['H'] + d['H'].transpose(1, 2) if symmetric else d['H']
    H = apply_mask(H, mask, 2).requires_grad_()
    adj = (1 - torch.eye(n, dtype=D)).expand(B, n, n)
    st = _adj_stats(adj, mask, D, normalize)
    conv = SecondOrderConv(2, 3, hidden_channels=5, basis=basis,
                           normalize=normalize).double()
    # Non-zero biases: with the zero ones of the initialisation some
    # pre-activations are exactly 0, where ReLU's gradient depends on the
    # last bit (both sides are then right).
    torch.nn.init.normal_(conv.lin1.bias)
    ref = conv._forward(H, st, mask)
    out = conv._forward(H, st, mask, symmetric, complete=True)
    assert torch.allclose(out, ref, atol=1e-12)
    gen = torch.Generator().manual_seed(0)
    g = torch.randn(out.shape, generator=gen, dtype=D)
    params = [H] + list(conv.parameters())
    got = torch.autograd.grad(out, params, g)
    want = torch.autograd.grad(ref, params, g)
    # H is masked wherever the layers run (padded entries hold 0 and take
    # no gradient upstream), so its gradient is compared at valid entries:
    got = (apply_mask(got[0], mask, 2), ) + got[1:]
    want = (apply_mask(want[0], mask, 2), ) + want[1:]
    if symmetric:  # equal along symmetric directions (as above)
        got = (got[0] + got[0].transpose(1, 2), ) + got[1:]
        want = (want[0] + want[0].transpose(1, 2), ) + want[1:]
    for a, b in zip(got, want):
        assert torch.allclose(a, b, atol=1e-10)


def test_loading_unnormalised_weights_warns():
    old = SecondOrderConv(2, 3, normalize=False)
    state = old.state_dict()
    state._metadata[''] = {'version': 1}  # as saved before issue 17
    with pytest.warns(UserWarning, match='normalize_second_order=False'):
        SecondOrderConv(2, 3).load_state_dict(state)
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter('error')
        SecondOrderConv(2, 3, normalize=False).load_state_dict(state)
        SecondOrderConv(2, 3).load_state_dict(SecondOrderConv(
            2, 3).state_dict())
        SecondOrderConv(2, 3).load_state_dict(dict(state))  # no metadata


@pytest.mark.parametrize('sizes', SIZES)
def test_decoder_with_context_matches_reference(sizes, monkeypatch):
    # The context is appended to the pair features of the first layer;
    # a symmetric context keeps the fast symmetric path and the output
    # symmetric and equivariant.
    torch.manual_seed(6)
    d = dense_batch(sizes, F=3, seed=len(sizes))
    B, n = d['mask'].shape
    # (gradients w.r.t. the symmetric context are compared through a
    # leaf it is built from: the symmetric path's gradient is another
    # representative of the same linear functional on symmetric inputs)
    leaf = torch.randn(B, n, n, 2, dtype=torch.double, requires_grad=True)
    ctx = leaf + leaf.transpose(1, 2)
    z = d['z'].requires_grad_()
    dec = SecondOrderDecoder(3, 5, num_layers=2, edge_channels=2,
                             context_channels=2).double()
    assert 'context_channels=2' in repr(dec)
    H0 = torch.cat([pair_features(dec.lin_in(z), d['mask']),
                    apply_mask(ctx, d['mask'], 2)], dim=-1)
    H = H0
    for i, conv in enumerate(dec.convs):
        H = ref_conv(conv, H, (1 - torch.eye(n, dtype=z.dtype)).expand(
            B, n, n), d['mask'])
        H = H.relu() if i == 0 else H
    ref = apply_mask(0.5 * (H + H.transpose(1, 2)), d['mask'], 2)
    ref_g = _grads(dec, [ref], [z, leaf])
    monkeypatch.setattr(SecondOrderConv, 'features', _no_features)
    out = dec(z, d['mask'], context=ctx)
    _assert_close([out], [ref])
    _assert_close(_grads(dec, [out], [z, leaf]), ref_g)
    assert torch.allclose(out, out.transpose(1, 2), atol=1e-12)
    perm = torch.randperm(n)
    full = d['mask'][:1].clone().fill_(True)
    a = dec(z[:1, perm], full, context=ctx[:1, perm][:, :, perm])
    b = dec(z[:1], full, context=ctx[:1])
    assert torch.allclose(a, b[:, perm][:, :, perm], atol=1e-10)


def test_decoder_context_is_required_exactly_with_its_channels():
    z, mask = torch.randn(2, 4, 3), torch.ones(2, 4, dtype=torch.bool)
    with pytest.raises(ValueError, match='context_channels=2'):
        SecondOrderDecoder(3, 5, 1, context_channels=2)(z, mask)
    with pytest.raises(ValueError, match='context_channels=0'):
        SecondOrderDecoder(3, 5, 1)(z, mask, context=torch.zeros(2, 4, 4, 2))
    with pytest.raises(ValueError, match=r'shape \[B, n, n, 2\]'):
        SecondOrderDecoder(3, 5, 1, context_channels=2)(
            z, mask, context=torch.zeros(2, 4, 4, 3))
    with pytest.raises(ValueError, match='>= 0'):
        SecondOrderDecoder(3, 5, 1, context_channels=-1)


def _decoder_inputs(sizes, seed, ctx_seed, symmetric):
    r"""A dense batch, a (symmetric) random context and latents that
    require gradients."""
    d = dense_batch(sizes, F=3, seed=seed)
    B, n = d['mask'].shape
    g = torch.Generator().manual_seed(ctx_seed)
    ctx = torch.randn(B, n, n, 2, generator=g, dtype=D)
    if symmetric:
        ctx = ctx + ctx.transpose(1, 2)
    return d, ctx, d['z'].requires_grad_()


@pytest.mark.parametrize('sizes', SIZES)
@pytest.mark.parametrize('given_adj', [False, True])
@pytest.mark.parametrize('symmetric', [False, True])
def test_decoder_latent_preactivation(sizes, given_adj, symmetric,
                                      monkeypatch):
    # The latents' part of the first layer, computed once and passed as
    # latent_pre, gives the output and gradients of the plain forward
    # (general, symmetric and complete-graph paths, buckets, chunks).
    import torch_geometric_mgvae.nn.second_order as so
    d, ctx, z = _decoder_inputs(sizes, len(sizes) + 1, 2, symmetric)
    B, n = d['mask'].shape
    adj = d['adj'] if given_adj else None
    dec = SecondOrderDecoder(3, 5, num_layers=2, edge_channels=2,
                             context_channels=2).double()
    ref = dec(z, d['mask'], adj, ctx)
    ref_g = _grads(dec, [ref], [z])
    for chunk in (so.CHUNK_ELEMENTS, 2 * 25 * 5):
        monkeypatch.setattr(so, 'CHUNK_ELEMENTS', chunk)
        pre = dec.latent_preactivation(z, d['mask'], adj)
        assert pre.shape == (B, n, n, 5)
        assert not pre[~(d['mask'].unsqueeze(2) &
                         d['mask'].unsqueeze(1))].any()
        out = dec(z, d['mask'], adj, ctx, latent_pre=pre)
        _assert_close([out], [ref])
        _assert_close(_grads(dec, [out], [z]), ref_g)


def test_decoder_latent_preactivation_errors():
    z, mask = torch.randn(2, 4, 3), torch.ones(2, 4, dtype=torch.bool)
    dec = SecondOrderDecoder(3, 5, 1, context_channels=2)
    ctx = torch.zeros(2, 4, 4, 2)
    with pytest.raises(ValueError, match=r"'latent_pre' must have shape "
                       r"\[B, n, n, 5\]"):
        dec(z, mask, context=ctx, latent_pre=torch.zeros(2, 4, 4, 4))
    plain = SecondOrderDecoder(3, 5, 1)
    with pytest.raises(ValueError, match='context_channels > 0'):
        plain(z, mask, latent_pre=plain.latent_preactivation(z, mask))


@pytest.mark.parametrize('context', [0, 2])
def test_decoder_empty_batch(context):
    # no blocks at all (a batch of 0 graphs) gives an empty output
    dec = SecondOrderDecoder(3, 5, 2, edge_channels=2,
                             context_channels=context)
    z, mask = torch.zeros(0, 4, 3), torch.zeros(0, 4, dtype=torch.bool)
    ctx = torch.zeros(0, 4, 4, context) if context else None
    assert dec(z, mask, context=ctx).shape == (0, 4, 4, 2)
    conv = SecondOrderConv(3, 2)  # the general path
    assert conv(torch.zeros(0, 4, 4, 3), torch.zeros(0, 4, 4),
                mask).shape == (0, 4, 4, 2)


@pytest.mark.parametrize('symmetric', [False, True])
def test_decoder_first_order_pair_channels(symmetric, monkeypatch):
    # The first layer with the pair features' first-order channels kept
    # first order (any block size) equals the one with all channels dense
    # (no block size), with and without a context, in buckets and chunks.
    import torch_geometric_mgvae.nn.second_order as so
    d, ctx, z = _decoder_inputs((9, 2, 5, 1, 8, 9), 4, 5, symmetric)
    for context in (None, ctx):
        dec = SecondOrderDecoder(3, 5, num_layers=2, edge_channels=2,
                                 context_channels=0 if context is None
                                 else 2).double()
        outs = []
        for threshold, chunk in ((10**9, so.CHUNK_ELEMENTS), (1, 2 * 81 * 5),
                                 (1, so.CHUNK_ELEMENTS)):
            monkeypatch.setattr(so, 'PAIRS_MIN_NODES', threshold)
            monkeypatch.setattr(so, 'CHUNK_ELEMENTS', chunk)
            out = dec(z, d['mask'], context=context)
            outs.append((out, _grads(dec, [out], [z])))
            if context is not None:
                pre = dec.latent_preactivation(z, d['mask'])
                _assert_close([dec(z, d['mask'], context=context,
                                   latent_pre=pre)], [out])
        for out, grads in outs[1:]:
            _assert_close([out], [outs[0][0]])
            _assert_close(grads, outs[0][1])


def test_conv_weights_forms():
    from torch_geometric_mgvae.nn.second_order import _gather
    torch.manual_seed(0)
    conv = SecondOrderConv(3, 2, hidden_channels=4, basis=False).double()
    wts = conv.weights()
    K = 13  # contractions only: map 22 (a Maron map) is missing
    W = conv.lin1.weight.view(4, K, 3)
    assert wts.K == K and wts.W.shape == (4, K + 1, 3)
    assert (wts.W[:, K] == 0).all()
    c = wts.combine(((0, 2), (22, ), (5, 22)))  # [3, C, h]
    assert torch.equal(c[0], (W[:, 0] + W[:, 2]).t())
    assert (c[1] == 0).all() and torch.equal(c[2], W[:, 5].t())
    assert wts.combine(((0, 2), (22, ), (5, 22))) is c  # built once
    table = ((0, 1), (3, None))
    g = wts.gather(table)
    assert torch.equal(g, _gather(wts.W, table, K)) and g.shape == (6, 8)
    assert torch.equal(g[:3, 4:], W[:, 3].t()) and (g[3:, 4:] == 0).all()
    part = conv.weights(slice(1, 3))
    assert part.W.shape == (4, K + 1, 2)
    assert torch.equal(part.W[:, :K], W[:, :, 1:3])
    # Weights for other input channels than the call's are refused:
    d = dense_batch(sizes=(3, 2), F=3, garbage=False)
    H = torch.randn(2, 3, 3, 3, dtype=D)
    from torch_geometric_mgvae.nn.second_order import _adj_stats
    st = _adj_stats(d['adj'], d['mask'], D)
    with pytest.raises(ValueError, match='other input channels'):
        conv._forward(H, st, d['mask'], weights=part)
    out = conv._forward(H[..., 1:], st, d['mask'], channels=slice(1, 3),
                        weights=part)
    assert torch.equal(out, conv._forward(H[..., 1:], st, d['mask'],
                                          channels=slice(1, 3)))
