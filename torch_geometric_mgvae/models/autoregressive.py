r"""The autoregressive MGN molecule generator of Hy & Kondor (Section 5.2 and
Appendix D.2 of "Multiresolution Equivariant Graph Variational
Autoencoder", `arXiv:2106.00967 <https://arxiv.org/abs/2106.00967>`_).

The paper describes the model in one paragraph (Appendix D.2, "Autoregressive"):
node latents are sampled independently, a start node :math:`v_0` is picked
at random, breadth-first search (BFS) from :math:`v_0` fixes a node order,
and the graph is built iteratively, one edge at a time (following Liu et al.,
"Constrained Graph Variational Autoencoders for Molecule Design", NeurIPS
2018), by a "second-order MGN with gated recurrent architecture" that gives
the probability of an edge between a node of the current graph and a node
outside it, and of its bond type. Everything below that paragraph is our
design; :class:`AutoregressiveMGN` documents which part is which.
"""
from collections import deque
from typing import List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor
from torch_geometric.data import Batch, Data

from torch_geometric_mgvae.chem.convert import QM9_ATOMS, AtomVocabulary
from torch_geometric_mgvae.chem.valence import max_valence
from torch_geometric_mgvae.nn.checks import check_int
from torch_geometric_mgvae.nn.second_order import SecondOrderEncoder

_HASH_MOD = 2147483647  # 2^31 - 1, so products of two hashes fit in int64


def _mix(h: Tensor) -> Tensor:
    r"""A non-linear integer mixing of hashes in :math:`[0, 2^{31} - 1)`."""
    h = (h * 48271 + 11) % _HASH_MOD
    return (h * h % _HASH_MOD * 69621 + h) % _HASH_MOD


def wl_hash(node_label: Tensor, edge_index: Tensor, edge_label: Tensor,
            num_iterations: int = 3) -> Tensor:
    r"""Weisfeiler-Lehman colour refinement as integer hashes.

    Starts from :obj:`node_label` and replaces, :obj:`num_iterations` times,
    every node's hash by a hash of itself and the multiset of
    :obj:`(edge label, neighbour hash)` pairs (a sum of mixed terms, so it
    does not depend on the order of the edges). The result is invariant
    under node permutations: equal hashes mark nodes that WL cannot tell
    apart (up to unlikely hash collisions).

    Args:
        node_label (torch.Tensor): Non-negative node labels :math:`[N]`.
        edge_index (torch.Tensor): Directed edges :math:`[2, E]` (list both
            directions for an undirected graph).
        edge_label (torch.Tensor): Non-negative edge labels :math:`[E]`.
        num_iterations (int): Refinement rounds. (default: :obj:`3`)

    Returns:
        Hashes :math:`[N]` (:obj:`torch.long`).
    """
    h = _mix(node_label.long().cpu() + 1)
    src, dst = edge_index.cpu()
    lab = edge_label.long().cpu()
    for _ in range(num_iterations):
        msg = _mix((h[src] * 131 + lab + 7) % _HASH_MOD)
        agg = torch.zeros_like(h).index_add_(0, dst, msg) % _HASH_MOD
        h = _mix((h * 65599 + agg) % _HASH_MOD)
    return h


def _bfs(nbrs: Sequence[int], rowptr: Sequence[int], start: int) -> List[int]:
    r"""BFS over CSR neighbour lists (already in visiting order)."""
    order = [start]
    seen = {start}
    queue = deque(order)
    while queue:
        u = queue.popleft()
        for w in nbrs[rowptr[u]:rowptr[u + 1]]:
            if w not in seen:
                seen.add(w)
                order.append(w)
                queue.append(w)
    return order


def _sorted_csr(edge_index: Tensor, num_nodes: int,
                keys: Sequence[np.ndarray]) -> Tuple[List[int], List[int]]:
    r"""Neighbour lists sorted by :obj:`keys` (most significant first, as
    arrays over the edges), then by neighbour index."""
    src, dst = edge_index.cpu().numpy()
    perm = np.lexsort(tuple([dst] + list(reversed(keys)) + [src]))
    nbrs = dst[perm].tolist()
    rowptr = np.zeros(num_nodes + 1, dtype=np.int64)
    np.cumsum(np.bincount(src, minlength=num_nodes), out=rowptr[1:])
    return nbrs, rowptr.tolist()


def bfs_order(edge_index: Tensor, num_nodes: int, start: int = 0,
              edge_key: Optional[Tensor] = None) -> Tensor:
    r"""The breadth-first-search node order of a graph from :obj:`start`.

    When a node is dequeued, its unvisited neighbours are appended in
    ascending order of :obj:`edge_key` (of the edge leading to them), then
    of their node index. Only the connected component of :obj:`start` is
    visited.

    Args:
        edge_index (torch.Tensor): Edges :math:`[2, E]`, both directions.
        num_nodes (int): Number of nodes.
        start (int): The start node. (default: :obj:`0`)
        edge_key (torch.Tensor, optional): Integer sort key per edge
            :math:`[E]`. (default: :obj:`None`)

    Returns:
        The visited nodes in BFS order (position :math:`\to` node index).
    """
    keys = [] if edge_key is None else [edge_key.cpu().numpy()]
    nbrs, rowptr = _sorted_csr(edge_index, num_nodes, keys)
    return torch.tensor(_bfs(nbrs, rowptr, int(start)), dtype=torch.long)


def _masked_log_softmax(logits: Tensor, allowed: Tensor) -> Tensor:
    return logits.masked_fill(~allowed, float('-inf')).log_softmax(dim=-1)


def _pick(logp: Tensor, target: Tensor) -> Tensor:
    r"""Log-probability of :obj:`target` (0 where every class is masked)."""
    out = logp.gather(-1, target.unsqueeze(-1)).squeeze(-1)
    return torch.where(torch.isfinite(out), out, torch.zeros_like(out))


def _random(shape: Tuple[int, ...], generator: Optional[torch.Generator],
            device: torch.device, dtype: torch.dtype,
            normal: bool = False) -> Tensor:
    r"""Uniform (or standard normal) noise drawn on the generator's device
    and moved to :obj:`device`, so a CPU generator also drives a GPU
    model."""
    gen_device = device if generator is None else generator.device
    fn = torch.randn if normal else torch.rand
    return fn(shape, generator=generator, device=gen_device,
              dtype=dtype).to(device)


def _sample_categorical(logits: Tensor, allowed: Tensor,
                        generator: Optional[torch.Generator]) -> Tensor:
    r"""Gumbel-max sampling from masked logits."""
    u = _random(tuple(logits.shape), generator, logits.device,
                logits.dtype).clamp(min=1e-20, max=1 - 1e-7)
    g = logits - torch.log(-torch.log(u))
    return g.masked_fill(~allowed, float('-inf')).argmax(dim=-1)


class AutoregressiveMGN(torch.nn.Module):
    r"""The autoregressive MGN molecule generator of the paper (Section 5.2,
    Appendix D.2): a molecule is built in breadth-first order, one atom at a
    time, and every new atom is bonded to atoms already placed, with bond
    types; a second-order :math:`\mathbb{S}_n`-equivariant network
    (:class:`~torch_geometric_mgvae.nn.SecondOrderEncoder`) reads the
    partial graph at every step and a GRU carries a graph-level state.

    **From the paper:** node latents :math:`z_i` sampled independently, a
    BFS order from a random start node, edges (and their bond labels)
    added iteratively between the current graph :math:`\mathcal{G}_t` and
    a node outside it as a sequence of classifications, a second-order
    network with a gated recurrent state, Adam with learning rate
    :math:`10^{-3}` (the caller's choice).

    **Our design** (the paper gives no further detail):

    1. *Generative process.* With :math:`\mathcal{G}_t` the graph of the
       first :math:`t` atoms :math:`v_0, \dots, v_{t-1}`, each with a
       latent :math:`z_i \sim \mathcal{N}(0, I)` drawn independently and
       given to the encoder as extra node features (random node features
       that break ties between equal atoms):

       * step 0: sample the atom type of :math:`v_0` from the initial
         state :math:`h_0` (learned);
       * step :math:`t \geq 1`: encode :math:`\mathcal{G}_t` with the
         second-order encoder (node features one-hot atom type
         :math:`\oplus\, z_i`, edge features one-hot bond type), read it out
         (mean and size-scaled sum of the node embeddings) and update the
         GRU state :math:`h_t = \mathrm{GRU}(r_t, h_{t-1})`; then
       * choose *stop* or the atom type of :math:`v_t` (one categorical
         over :math:`1 + T` classes; the number of atoms is not sampled
         up front);
       * choose the BFS **parent** :math:`p_t` of :math:`v_t`, a pointer over
         the earlier atoms (softmax over the allowed ones), and the parent
         bond's type;
       * for every later earlier atom :math:`u` (:math:`p_t < u < t`, in
         order) choose *no bond* / single / double / triple (ring
         closures); a small GRU over :math:`u` carries the decisions made
         for :math:`v_t` so far.

       Edge logits use the second-order encoder's node embedding of
       :math:`u`, the new atom's type, :math:`h_t`, and two position
       embeddings (:math:`t - 1 - u` and :math:`u - p_{t-1}`, clipped at
       :obj:`max_offset`); the positions are where the model stops being
       equivariant, as the BFS order already is.

    2. *Masks* (hard constraints, the same in training and sampling, so the
       loss is the exact negative log-likelihood of the ordered graph):

       * **valence:** a bond of order :math:`k` between :math:`u` and
         :math:`v_t` is allowed only if both have :math:`k` free valence
         left (:func:`~torch_geometric_mgvae.chem.max_valence` of the atom
         type, i.e. element *and* formal charge, minus the bond orders
         placed so far); implicit hydrogens fill what is left;
       * **BFS structure:** in a BFS order the parent :math:`p_t` (the
         earliest neighbour of :math:`v_t`) satisfies
         :math:`p_{t-1} \le p_t < t` and every other earlier neighbour
         comes after :math:`p_t`; only those choices are offered;
       * **connectivity:** every atom after the first has a parent (a bond
         is always placed), and *stop* is forced when no atom in
         :math:`[p_{t-1}, t)` has free valence or :math:`t` reaches
         :obj:`max_nodes`. Sampled molecules are therefore connected and
         never exceed a valence, by construction. Training molecules whose
         true choice is masked (a valence above :obj:`MAX_VALENCE`) keep
         that choice allowed, so their loss stays finite.

    3. *Node order of the training data:* a random start node per molecule
       and call (paper), then BFS visiting the unvisited neighbours of a
       node by (bond order, atom type, Weisfeiler-Lehman hash
       (:func:`wl_hash`), node index). All keys but the last are invariant,
       so with a fixed start atom the loss does not depend on the input
       node order (exactly, unless two non-automorphic siblings have equal
       keys, which WL makes rare). A canonical sibling order lowers the
       entropy the model must spend on orderings.

    4. *Loss:* :meth:`nll` is :math:`-\log p(\text{types}, \text{bonds},
       \text{stop} \mid \pi, z)` of the BFS-ordered molecule with teacher
       forcing, summed over decisions; :meth:`loss` is its mean over the
       molecules. It is an upper bound of :math:`-\log p(G)` (one order
       :math:`\pi` and one latent draw), as in GraphRNN. There is no
       encoder/KL term: the latents come from the prior in training too.

    5. *Cost:* step :math:`t` re-encodes :math:`\mathcal{G}_t` from scratch
       (blocks of exactly :math:`t` atoms, batched over the molecules that
       are that far), so a molecule of :math:`n` atoms costs
       :math:`O(\sum_t t^2 h) = O(n^3 h)` in the second-order layers; ring
       closures add one small GRU step per earlier atom. Sampling runs
       the same steps for a whole batch of molecules at once.

    Bond types are kekulized single/double/triple (bond order :math:`k =`
    column :math:`+ 1` of :obj:`edge_attr`), as produced by
    :func:`~torch_geometric_mgvae.chem.smiles_to_data`. Aromatic bonds,
    disconnected molecules and molecules larger than :obj:`max_nodes` are
    rejected with a :class:`ValueError`.

    Args:
        num_atom_types (int): Number of atom types (columns of :obj:`x`).
        num_bond_types (int): Number of bond types (columns of
            :obj:`edge_attr`); type :math:`k` has bond order :math:`k + 1`.
            (default: :obj:`3`)
        hidden_channels (int): Hidden size of every part. (default:
            :obj:`64`)
        latent_channels (int): Size of the node latents :math:`z_i`
            (:obj:`0` disables them). (default: :obj:`16`)
        num_layers (int): Layers of the second-order encoder. (default:
            :obj:`2`)
        max_nodes (int): Largest number of atoms (9 for QM9, 38 for ZINC).
            (default: :obj:`9`)
        atoms (list): The atom vocabulary (:obj:`(symbol, charge)` pairs,
            one per column of :obj:`x`), for the valence masks.
            (default: :obj:`QM9_ATOMS`)
        max_offset (int): Clip of the two position embeddings. (default:
            :obj:`12`)
        basis (bool): Use the Maron basis in the encoder. (default:
            :obj:`True`)
        normalize_second_order (bool): The normalised second-order layers
            (:class:`~torch_geometric_mgvae.nn.SecondOrderConv`);
            :obj:`False`: the earlier, unnormalised ones.
            (default: :obj:`True`)

    Example:
        >>> model = AutoregressiveMGN(len(QM9_ATOMS), max_nodes=9)
        >>> loss = model.loss(batch)  # a Batch of smiles_to_data graphs
        >>> mols = model.sample_mols(100)
    """
    def __init__(self, num_atom_types: int, num_bond_types: int = 3,
                 hidden_channels: int = 64, latent_channels: int = 16,
                 num_layers: int = 2, max_nodes: int = 9,
                 atoms: Union[AtomVocabulary, Sequence] = QM9_ATOMS,
                 max_offset: int = 12, basis: bool = True,
                 normalize_second_order: bool = True):
        super().__init__()
        vocab = atoms if isinstance(atoms, AtomVocabulary) else \
            AtomVocabulary(atoms)
        if len(vocab) != num_atom_types:
            raise ValueError(f"'atoms' has {len(vocab)} types but "
                             f"'num_atom_types' is {num_atom_types}")
        num_bond_types = check_int('num_bond_types', num_bond_types)
        hidden_channels = check_int('hidden_channels', hidden_channels)
        latent_channels = check_int('latent_channels', latent_channels, 0)
        num_layers = check_int('num_layers', num_layers)
        max_nodes = check_int('max_nodes', max_nodes)
        max_offset = check_int('max_offset', max_offset, 0)
        self.atoms = vocab
        self.num_atom_types = num_atom_types
        self.num_bond_types = num_bond_types
        self.hidden_channels = hidden_channels
        self.latent_channels = latent_channels
        self.num_layers = num_layers
        self.max_nodes = max_nodes
        self.max_offset = max_offset
        self.register_buffer(
            'max_val',
            torch.tensor([max_valence(*a) for a in vocab], dtype=torch.long),
            persistent=False)

        h, T, K = hidden_channels, num_atom_types, num_bond_types
        self.encoder = SecondOrderEncoder(T + latent_channels, K, h, h,
                                          num_layers, basis=basis,
                                          return_diag=True,
                                          normalize=normalize_second_order)
        self.node_lin = torch.nn.Linear(self.encoder.first_order_channels, h)
        self.h0 = torch.nn.Parameter(torch.zeros(h))
        self.gru = torch.nn.GRUCell(2 * h, h)
        self.node_head = torch.nn.Sequential(torch.nn.Linear(h, h),
                                             torch.nn.ReLU(),
                                             torch.nn.Linear(h, 1 + T))
        self.type_emb = torch.nn.Embedding(T, h)
        self.pair_node = torch.nn.Linear(h, h)
        self.pair_state = torch.nn.Linear(h, h, bias=False)
        self.recency_emb = torch.nn.Embedding(max_offset + 1, h)
        self.head_emb = torch.nn.Embedding(max_offset + 1, h)
        self.parent_head = torch.nn.Sequential(torch.nn.Linear(h, h),
                                               torch.nn.ReLU(),
                                               torch.nn.Linear(h, 1 + K))
        self.edge_init = torch.nn.Linear(h, h)
        self.edge_gru = torch.nn.GRUCell(h + K + 2, h)
        self.closure_head = torch.nn.Sequential(torch.nn.Linear(2 * h, h),
                                                torch.nn.ReLU(),
                                                torch.nn.Linear(h, 1 + K))
        self.reset_parameters()

    def reset_parameters(self):
        for module in self.modules():
            if module is not self and hasattr(module, 'reset_parameters'):
                module.reset_parameters()
        torch.nn.init.zeros_(self.h0)

    # ------------------------------------------------------------------
    # Shared building blocks (used by training and sampling alike)
    # ------------------------------------------------------------------
    def _encode(self, types: Tensor, bonds: Tensor,
                z: Tensor) -> Tuple[Tensor, Tensor]:
        r"""Encodes complete blocks of :math:`t` atoms.

        Args:
            types: :math:`[B, t]` atom types. bonds: :math:`[B, t, t]` bond
            orders (0 = none). z: :math:`[B, t, d]` latents.

        Returns:
            Node embeddings :math:`[B, t, h]` and readouts :math:`[B, 2h]`.
        """
        B, t = types.shape
        x = F.one_hot(types, self.num_atom_types).to(z.dtype)
        if self.latent_channels > 0:
            x = torch.cat([x, z], dim=-1)
        adj = (bonds > 0).to(z.dtype)
        edge_attr = F.one_hot(bonds, self.num_bond_types + 1)[..., 1:]
        mask = torch.ones(B, t, dtype=torch.bool, device=types.device)
        _, Z = self.encoder(x, adj, mask, edge_attr.to(z.dtype))
        node = self.node_lin(Z)  # [B, t, h]
        r = torch.cat([node.mean(dim=1), node.sum(dim=1) / self.max_nodes],
                      dim=-1)  # [B, 2h]
        return node, r

    def _node_allowed(self, t: int, free: Tensor,
                      prev_parent: Tensor) -> Tensor:
        r"""Allowed node decisions :math:`[B, 1 + T]` (column 0 = stop) at
        step :math:`t \ge 1`, from the free valences :math:`[B, t]` of the
        placed atoms and the previous parent :math:`[B]`."""
        B = free.size(0)
        pos = torch.arange(t, device=free.device)
        frontier = (pos.unsqueeze(0) >= prev_parent.unsqueeze(1)) & (free >= 1)
        can = frontier.any(dim=1) & (t < self.max_nodes)  # [B]
        allowed = can.unsqueeze(1).expand(B, 1 + self.num_atom_types).clone()
        allowed[:, 0] = True
        return allowed

    def _pair(self, node: Tensor, new_type: Tensor, h: Tensor,
              prev_parent: Tensor) -> Tensor:
        r"""Pair features :math:`[B, t, h]` of the new atom (type
        :math:`[B]`) with every placed atom."""
        B, t, _ = node.shape
        pos = torch.arange(t, device=node.device)
        recency = (t - 1 - pos).clamp(max=self.max_offset)  # [t]
        off = (pos.unsqueeze(0) - prev_parent.unsqueeze(1)).clamp(
            min=0, max=self.max_offset)  # [B, t]
        e = (self.pair_node(node) +
             (self.type_emb(new_type) + self.pair_state(h)).unsqueeze(1) +
             self.recency_emb(recency).unsqueeze(0) + self.head_emb(off))
        return e.relu()

    def _parent_allowed(self, free: Tensor, prev_parent: Tensor) -> Tensor:
        t = free.size(1)
        pos = torch.arange(t, device=free.device)
        return (pos.unsqueeze(0) >= prev_parent.unsqueeze(1)) & (free >= 1)

    def _bond_allowed(self, cap: Tensor, with_none: bool) -> Tensor:
        r"""Allowed bond classes for a valence cap :math:`[...]`: orders
        :math:`1..K` up to the cap (and class 0, no bond, if
        :obj:`with_none`)."""
        k = torch.arange(0 if with_none else 1, self.num_bond_types + 1,
                         device=cap.device)
        allowed = k <= cap.unsqueeze(-1)
        if with_none:
            allowed[..., 0] = True
        return allowed

    def _edge_input(self, e_u: Tensor, bond: Tensor,
                    is_parent: Tensor) -> Tensor:
        r"""Input of the per-atom edge GRU after deciding atom :math:`u`."""
        return torch.cat([
            e_u,
            F.one_hot(bond, self.num_bond_types + 1).to(e_u.dtype),
            is_parent.to(e_u.dtype).unsqueeze(-1)
        ], dim=-1)

    # ------------------------------------------------------------------
    # Data handling
    # ------------------------------------------------------------------
    def bfs_dense(self, batch: Union[Data, Batch],
                  generator: Optional[torch.Generator] = None,
                  start: Optional[Tensor] = None
                  ) -> Tuple[Tensor, Tensor, Tensor, List[Tensor]]:
        r"""Orders every molecule of :obj:`batch` by BFS (see the class
        description) and returns dense padded tensors.

        Args:
            batch (Data or Batch): Molecules with one-hot :obj:`x` (or atom
                type indices), :obj:`edge_index` (both directions) and
                one-hot :obj:`edge_attr` (or :obj:`None`: single bonds).
            generator (torch.Generator, optional): For the random starts.
            start (torch.Tensor, optional): Start atom per molecule (index
                inside the molecule) :math:`[B]` instead of random ones.

        Returns:
            :obj:`(types, bonds, num_nodes, orders)`: atom types
            :math:`[B, N]` (-1 at padding), bond orders :math:`[B, N, N]`
            (0 = none), the atom counts :math:`[B]`, and each molecule's
            order (BFS position :math:`\to` local input index).
        """
        device = batch.edge_index.device
        x = batch.x
        types = (x.argmax(dim=-1) if x.dim() == 2 else x.long()).cpu()
        N = types.numel()
        edge_index = batch.edge_index.cpu()
        ea = getattr(batch, 'edge_attr', None)
        if ea is None:
            bond = torch.ones(edge_index.size(1), dtype=torch.long)
        elif ea.dim() == 2:
            if ea.size(1) != self.num_bond_types:
                raise ValueError(
                    f"'edge_attr' has {ea.size(1)} bond types, expected "
                    f"{self.num_bond_types} (kekulize aromatic bonds)")
            bond = ea.argmax(dim=-1).cpu() + 1
        else:
            bond = ea.long().cpu() + 1
        ptr = getattr(batch, 'ptr', None)
        ptr = torch.tensor([0, N]) if ptr is None else ptr.cpu()
        B = ptr.numel() - 1
        sizes = ptr[1:] - ptr[:-1]
        if B > 0 and int(sizes.min()) < 1:
            raise ValueError('Every molecule needs at least one atom')
        if B > 0 and int(sizes.max()) > self.max_nodes:
            raise ValueError(f"A molecule has {int(sizes.max())} atoms but "
                             f"'max_nodes' is {self.max_nodes}")
        if start is None:
            u = _random((B, ), generator, torch.device('cpu'),
                        torch.float64)
            start = (u * sizes).long().clamp(max=sizes - 1)
        start = start.cpu().long()

        wl = wl_hash(types, edge_index, bond).numpy()
        t_np = types.numpy()
        dst = edge_index[1].numpy()
        nbrs, rowptr = _sorted_csr(edge_index, N,
                                   [bond.numpy(), t_np[dst], wl[dst]])
        ptr_l, start_l = ptr.tolist(), start.tolist()
        pos = torch.empty(N, dtype=torch.long)
        orders = []
        for b in range(B):
            order = _bfs(nbrs, rowptr, ptr_l[b] + start_l[b])
            if len(order) != ptr_l[b + 1] - ptr_l[b]:
                raise ValueError(f'Molecule {b} is not connected; the '
                                 f'autoregressive model builds connected '
                                 f'graphs only')
            order = torch.tensor(order, dtype=torch.long)
            pos[order] = torch.arange(order.numel())
            orders.append(order - ptr_l[b])
        n_max = int(sizes.max()) if B > 0 else 1
        graph = torch.repeat_interleave(torch.arange(B), sizes)
        types_d = torch.full((B, n_max), -1, dtype=torch.long)
        types_d[graph, pos] = types
        bonds_d = torch.zeros(B, n_max, n_max, dtype=torch.long)
        src, dst_t = edge_index
        bonds_d[graph[src], pos[src], pos[dst_t]] = bond
        return (types_d.to(device), bonds_d.to(device), sizes.to(device),
                orders)

    def _latents(self, B: int, N: int, generator: Optional[torch.Generator],
                 device, dtype) -> Tensor:
        return _random((B, N, self.latent_channels), generator, device,
                       dtype, normal=True)

    # ------------------------------------------------------------------
    # Training
    # ------------------------------------------------------------------
    def nll(self, batch: Union[Data, Batch],
            generator: Optional[torch.Generator] = None,
            start: Optional[Tensor] = None) -> Tensor:
        r"""Negative log-likelihood of every molecule in its BFS order
        (teacher forcing), :math:`[B]` in nats.

        Args:
            batch (Data or Batch): The molecules (see :meth:`bfs_dense`).
            generator (torch.Generator, optional): For the random starts and
                the node latents.
            start (torch.Tensor, optional): Fixed start atoms :math:`[B]`.
        """
        types, bonds, n, _ = self.bfs_dense(batch, generator, start)
        dtype = self.h0.dtype
        z = self._latents(types.size(0), types.size(1), generator,
                          types.device, dtype)
        return self.nll_dense(types, bonds, n, z)

    def loss(self, batch: Union[Data, Batch],
             generator: Optional[torch.Generator] = None,
             start: Optional[Tensor] = None) -> Tensor:
        r"""Mean negative log-likelihood per molecule (see :meth:`nll`)."""
        return self.nll(batch, generator, start).mean()

    def nll_dense(self, types: Tensor, bonds: Tensor, n: Tensor,
                  z: Tensor) -> Tensor:
        r"""Teacher-forced negative log-likelihood of BFS-ordered dense
        molecules (the output of :meth:`bfs_dense`) with latents
        :math:`z` :math:`[B, N, d]`. Vectorised over molecules: one encoder
        call per step :math:`t` on the molecules with at least :math:`t`
        atoms (blocks of exactly :math:`t` atoms, no padding), and one GRU
        call per earlier-atom index for the ring closures."""
        B, N = types.shape
        device = types.device
        ar = torch.arange(N, device=device)
        mv = torch.where(types >= 0, self.max_val[types.clamp(min=0)],
                         torch.zeros_like(types))  # [B, N]
        cum = bonds.cumsum(dim=-1)  # cum[b, u, w] = sum_{w' <= w} bonds
        # parent p_t = the earliest earlier neighbour of v_t (0 for t = 0):
        lower = (bonds > 0) & (ar.view(1, 1, N) < ar.view(1, N, 1))
        has = lower.any(dim=-1)  # [B, N]
        first = torch.where(lower, ar.view(1, 1, N), N).min(dim=-1).values
        parent = torch.where(has, first, torch.zeros_like(first))  # [B, N]

        logp = torch.zeros(B, dtype=self.h0.dtype, device=device)
        h = self.h0.expand(B, -1)
        lp = self.node_head(h)[:, 1:].log_softmax(dim=-1)
        logp = logp + _pick(lp, types[:, 0])

        rows = []  # (graph, t, e [Bc, t, h], free [Bc, t], h_t [Bc, h])
        for t in range(1, N + 1):
            idx = (n >= t).nonzero().view(-1)
            if idx.numel() == 0:
                break
            node, r = self._encode(types[idx, :t], bonds[idx, :t, :t],
                                   z[idx, :t])
            h_t = self.gru(r, h[idx])
            h = h.index_copy(0, idx, h_t)
            free = mv[idx, :t] - cum[idx, :t, t - 1]  # [Bt, t]
            prev = parent[idx, t - 1]  # p_{t-1} (0 for t = 1)
            cont = n[idx] > t
            if t < N:  # 0 = stop, 1 + type = continue
                target = torch.where(cont, 1 + types[idx, t], 0)
            else:
                target = torch.zeros_like(idx)
            allowed = self._node_allowed(t, free, prev)
            allowed[torch.arange(idx.numel(), device=device), target] = True
            lp = _masked_log_softmax(self.node_head(h_t), allowed)
            logp = logp.index_add(0, idx, _pick(lp, target))
            if t == N or not bool(cont.any()):
                continue
            c = cont.nonzero().view(-1)
            g = idx[c]
            e = self._pair(node[c], types[g, t], h_t[c], prev[c])
            free_c, p_t = free[c], parent[g, t]
            Bc = c.numel()
            arc = torch.arange(Bc, device=device)
            # parent pointer and the parent bond's type:
            allowed_p = self._parent_allowed(free_c, prev[c])
            allowed_p[arc, p_t] = True
            out = self.parent_head(e)  # [Bc, t, 1 + K]
            lp_p = _masked_log_softmax(out[..., 0], allowed_p)
            pb = bonds[g, t, p_t]  # 1..K
            cap = torch.minimum(free_c[arc, p_t], mv[g, t])
            allowed_b = self._bond_allowed(cap, with_none=False)
            allowed_b[arc, pb - 1] = True
            lp_b = _masked_log_softmax(out[arc, p_t, 1:], allowed_b)
            logp = logp.index_add(0, g, _pick(lp_p, p_t) + _pick(lp_b, pb - 1))
            rows.append((g, t, e, free_c, h_t[c]))

        if len(rows) == 0:
            return -logp
        # Ring closures, all (molecule, t) rows at once, one GRU step per u:
        g = torch.cat([row[0] for row in rows])
        tt = torch.cat([torch.full_like(row[0], row[1]) for row in rows])
        M = g.numel()
        e = torch.cat([F.pad(row[2], (0, 0, 0, N - row[1])) for row in rows])
        free = torch.cat([F.pad(row[3], (0, N - row[1])) for row in rows])
        s = self.edge_init(torch.cat([row[4] for row in rows]))
        p_t = parent[g, tt]
        mv_t = mv[g, tt]
        row_bonds = bonds[g, tt]  # [M, N]
        cum_t = cum[g, tt]  # [M, N]
        lp_rows = torch.zeros(M, dtype=logp.dtype, device=device)
        for u in range(N - 1):
            decide = (u > p_t) & (u < tt)
            if not bool((u < tt).any()):
                break
            target = row_bonds[:, u]
            if bool(decide.any()):
                used = cum_t[:, u - 1] if u > 0 else torch.zeros_like(mv_t)
                cap = torch.minimum(free[:, u], mv_t - used)
                allowed = self._bond_allowed(cap, with_none=True)
                allowed[torch.arange(M, device=device), target] = True
                logits = self.closure_head(torch.cat([e[:, u], s], dim=-1))
                lp = _masked_log_softmax(logits, allowed)
                lp_rows = lp_rows + torch.where(decide, _pick(lp, target),
                                                torch.zeros_like(lp_rows))
            s = self.edge_gru(
                self._edge_input(e[:, u], target, p_t == u), s)
        logp = logp.index_add(0, g, lp_rows)
        return -logp

    # ------------------------------------------------------------------
    # Sampling
    # ------------------------------------------------------------------
    def _batch_size(self, batch_size: Optional[int]) -> int:
        if batch_size is not None:
            return max(1, int(batch_size))
        # about 2^17 entries of the largest second-order block per chunk
        return max(1, 2**17 // self.max_nodes**2)

    @torch.no_grad()
    def sample(self, num_molecules: int,
               generator: Optional[torch.Generator] = None,
               batch_size: Optional[int] = None) -> List[Data]:
        r"""Samples molecules.

        Args:
            num_molecules (int): How many.
            generator (torch.Generator, optional): Random generator (on the
                model's device).
            batch_size (int, optional): Molecules generated in parallel
                (default: about :math:`2^{17} / N_{\max}^2`, e.g. 1618
                for QM9 and 90 for ZINC).

        Returns:
            A list of :class:`~torch_geometric.data.Data` with one-hot
            :obj:`x` :math:`[n, T]`, :obj:`edge_index` (both directions,
            sorted) and one-hot :obj:`edge_attr` :math:`[E, K]`, atoms
            numbered in generation (BFS) order.
        """
        out: List[Data] = []
        dev = self.h0.device
        batch_size = self._batch_size(batch_size)
        for lo in range(0, num_molecules, batch_size):
            B = min(batch_size, num_molecules - lo)
            z = self._latents(B, self.max_nodes, generator, dev,
                              self.h0.dtype)
            types, bonds, n, _ = self._generate(B, z, generator)
            out.extend(self._to_data(types, bonds, n))
        return out

    def sample_mols(self, num_molecules: int,
                    generator: Optional[torch.Generator] = None,
                    batch_size: Optional[int] = None,
                    sanitize: bool = True) -> list:
        r"""Samples molecules as RDKit molecules (:obj:`None` where RDKit
        fails to sanitize one, which the valence masks should prevent), via
        :func:`~torch_geometric_mgvae.chem.data_to_mol`."""
        from torch_geometric_mgvae.chem.convert import data_to_mol
        return [
            data_to_mol(d.x, d.edge_index, d.edge_attr, self.atoms, sanitize)
            for d in self.sample(num_molecules, generator, batch_size)
        ]

    def _to_data(self, types: Tensor, bonds: Tensor, n: Tensor) -> List[Data]:
        types, bonds, n = types.cpu(), bonds.cpu(), n.cpu()
        out = []
        for b in range(types.size(0)):
            m = int(n[b])
            bt = bonds[b, :m, :m]
            row, col = (bt > 0).nonzero().t()  # sorted by (row, col)
            out.append(Data(
                x=F.one_hot(types[b, :m], self.num_atom_types).float(),
                edge_index=torch.stack([row, col]),
                edge_attr=F.one_hot(bt[row, col] - 1,
                                    self.num_bond_types).float().view(
                                        -1, self.num_bond_types),
                num_nodes=m))
        return out

    def _generate(self, B: int, z: Tensor,
                  generator: Optional[torch.Generator] = None,
                  targets: Optional[Tuple[Tensor, Tensor, Tensor]] = None
                  ) -> Tuple[Tensor, Tensor, Tensor, Tensor]:
        r"""Step-by-step generation of :math:`B` molecules with latents
        :math:`z` :math:`[B, N_{\max}, d]`. With :obj:`targets` =
        :obj:`(types, bonds, n)` (BFS-ordered dense molecules) every choice
        is forced to the target instead of sampled (teacher forcing
        through the sampling code, a reference for :meth:`nll_dense`).

        Returns:
            :obj:`(types, bonds, n, logp)`: atom types :math:`[B, N]`,
            bond orders :math:`[B, N, N]`, atom counts :math:`[B]` and the
            log-probability of all choices :math:`[B]`.
        """
        N = self.max_nodes
        dev = self.h0.device
        types = torch.full((B, N), -1, dtype=torch.long, device=dev)
        bonds = torch.zeros(B, N, N, dtype=torch.long, device=dev)
        n = torch.ones(B, dtype=torch.long, device=dev)
        mv = torch.zeros(B, N, dtype=torch.long, device=dev)
        parent = torch.zeros(B, N, dtype=torch.long, device=dev)
        logp = torch.zeros(B, dtype=self.h0.dtype, device=dev)

        def choose(logits: Tensor, allowed: Tensor, forced: Optional[Tensor]):
            lp = _masked_log_softmax(logits, allowed)
            if forced is None:
                c = _sample_categorical(logits, allowed, generator)
            else:
                c = forced
            return c, _pick(lp, c)

        def tgt(fn):
            return None if targets is None else fn(*targets)

        h = self.h0.expand(B, -1)
        c, lp = choose(self.node_head(h)[:, 1:],
                       torch.ones(B, self.num_atom_types, dtype=torch.bool,
                                  device=dev),
                       tgt(lambda T_, B_, n_: T_[:, 0]))
        types[:, 0] = c
        mv[:, 0] = self.max_val[c]
        logp += lp
        for t in range(1, N + 1):
            idx = (n == t).nonzero().view(-1)  # molecules still growing
            if idx.numel() == 0:
                break
            node, r = self._encode(types[idx, :t], bonds[idx, :t, :t],
                                   z[idx, :t])
            h_t = self.gru(r, h[idx])
            h = h.index_copy(0, idx, h_t)
            used = bonds[idx, :t, :t].sum(dim=-1)
            free = mv[idx, :t] - used  # [Bt, t]
            prev = parent[idx, t - 1]
            allowed = self._node_allowed(t, free, prev)
            forced = tgt(lambda T_, B_, n_: torch.where(
                n_[idx] > t, 1 + T_[idx, min(t, T_.size(1) - 1)], 0))
            ar_i = torch.arange(idx.numel(), device=dev)
            if forced is not None:
                allowed[ar_i, forced] = True
            c, lp = choose(self.node_head(h_t), allowed, forced)
            logp = logp.index_add(0, idx, lp)
            cont = c > 0
            if t == N or not bool(cont.any()):
                continue
            k = cont.nonzero().view(-1)
            g = idx[k]
            new_type = c[k] - 1
            types[g, t] = new_type
            mv[g, t] = self.max_val[new_type]
            n[g] = t + 1
            Bc = k.numel()
            arc = torch.arange(Bc, device=dev)
            e = self._pair(node[k], new_type, h_t[k], prev[k])
            free_c = free[k]
            # parent pointer and the parent bond's type:
            out = self.parent_head(e)
            allowed_p = self._parent_allowed(free_c, prev[k])
            fp = tgt(lambda T_, B_, n_: (B_[g, t, :t] > 0).float().argmax(-1))
            if fp is not None:
                allowed_p[arc, fp] = True
            p_t, lp_p = choose(out[..., 0], allowed_p, fp)
            cap = torch.minimum(free_c[arc, p_t], mv[g, t])
            allowed_b = self._bond_allowed(cap, with_none=False)
            fb = tgt(lambda T_, B_, n_: B_[g, t, p_t] - 1)
            if fb is not None:
                allowed_b[arc, fb] = True
            pb, lp_b = choose(out[arc, p_t, 1:], allowed_b, fb)
            pb = pb + 1
            bonds[g, t, p_t] = pb
            bonds[g, p_t, t] = pb
            parent[g, t] = p_t
            lp_e = lp_p + lp_b
            # ring closures u = p_t + 1, ..., t - 1, in order:
            s = self.edge_init(h_t[k])
            left = mv[g, t] - pb  # free valence of the new atom
            for u in range(t):
                decide = u > p_t
                bond_u = bonds[g, t, u]
                if bool(decide.any()):
                    cap = torch.minimum(free_c[:, u], left)
                    allowed_c = self._bond_allowed(cap, with_none=True)
                    fc = tgt(lambda T_, B_, n_: B_[g, t, u])
                    if fc is not None:
                        allowed_c[arc, fc] = True
                    logits = self.closure_head(torch.cat([e[:, u], s], -1))
                    bc, lp_c = choose(logits, allowed_c, fc)
                    bc = torch.where(decide, bc, bond_u)
                    lp_e = lp_e + torch.where(decide, lp_c,
                                              torch.zeros_like(lp_c))
                    bonds[g, t, u] = bc
                    bonds[g, u, t] = bc
                    left = left - torch.where(decide, bc,
                                              torch.zeros_like(bc))
                    bond_u = bc
                s = self.edge_gru(self._edge_input(e[:, u], bond_u, p_t == u),
                                  s)
            logp = logp.index_add(0, g, lp_e)
        return types, bonds, n, logp

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}({self.num_atom_types}, '
                f'num_bond_types={self.num_bond_types}, hidden_channels='
                f'{self.hidden_channels}, latent_channels='
                f'{self.latent_channels}, num_layers={self.num_layers}, '
                f'max_nodes={self.max_nodes})')


__all__ = ['AutoregressiveMGN', 'bfs_order', 'wl_hash']
