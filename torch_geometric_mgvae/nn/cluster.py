r"""Learned hard clustering (paper Sec. 3.3) and its balanced-cut loss."""
import math
from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor
from torch_geometric.nn.pool.select import Select, SelectOutput
from torch_geometric.typing import Adj, OptTensor
from torch_geometric.utils import scatter, to_dense_batch

from torch_geometric_mgvae.nn.checks import check_int
from torch_geometric_mgvae.nn.conv import (
    ConvSpec,
    conv_inputs,
    make_conv,
    run_conv,
)
from torch_geometric_mgvae.nn.random import rand

#: Hard assignments of :class:`SelectLearned` in evaluation mode.
EVAL_ASSIGNS = ('argmax', 'balanced')


class ClusterOutput(SelectOutput):
    r"""The result of clustering the nodes of a batch of graphs: a PyG
    :class:`~torch_geometric.nn.pool.select.SelectOutput` in which every
    node is selected (:obj:`node_index` is :obj:`arange(N)`) and
    :obj:`cluster_index` is its cluster, with what MGN needs besides.

    Cluster ids are global over the batch and compact: cluster
    :math:`c \in \{0, \ldots, C-1\}` belongs to graph :obj:`batch[c]`, the
    clusters of a graph are consecutive and ordered by their local id, and
    empty clusters are dropped (a graph with fewer nodes than :math:`K` just
    gets fewer clusters).

    Args:
        cluster_index (torch.Tensor): Global cluster id of every node,
            shape :obj:`[N]`.
        num_clusters (int): The number of (non-empty) clusters :math:`C`.
        batch (torch.Tensor): The graph of every cluster, shape :obj:`[C]`.
        local (torch.Tensor): The local cluster id in :math:`\{0,\ldots,K-1\}`
            of every node, shape :obj:`[N]`.
        num_local (int): The number of clusters per graph :math:`K`.
        weight (torch.Tensor, optional): Straight-through weight of every
            node's assignment (exactly :obj:`1.` in the forward pass, carrying
            the gradient of the assignment probabilities), shape :obj:`[N]`.
        assignment (torch.Tensor, optional): The straight-through one-hot
            assignment matrix :math:`\Pi`, shape :obj:`[N, K]`.
        logits (torch.Tensor, optional): The clustering logits,
            shape :obj:`[N, K]`.
        noise (torch.Tensor, optional): The Gumbel noise used, shape
            :obj:`[N, K]`.
    """
    def __init__(self, cluster_index: Tensor, num_clusters: int,
                 batch: Tensor, local: Tensor, num_local: int,
                 weight: OptTensor = None, assignment: OptTensor = None,
                 logits: OptTensor = None, noise: OptTensor = None):
        if cluster_index.dim() != 1 or local.dim() != 1:
            raise ValueError("'cluster_index' and 'local' must be "
                             "one-dimensional")
        if batch.numel() != num_clusters:
            raise ValueError(f"'batch' holds {batch.numel()} entries for "
                             f"{num_clusters} clusters")
        N = cluster_index.numel()
        super().__init__(
            torch.arange(N, device=cluster_index.device), N, cluster_index,
            num_clusters, weight)
        self.batch = batch
        self.local = local
        self.num_local = num_local
        self.assignment = assignment
        self.logits = logits
        self.noise = noise

    def sizes(self) -> Tensor:
        r"""The number of nodes of every cluster, shape :obj:`[C]`."""
        return torch.bincount(self.cluster_index,
                              minlength=self.num_clusters)

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}(num_nodes={self.num_nodes}, '
                f'num_clusters={self.num_clusters})')


def compact_clusters(local: Tensor, batch: Tensor, num_local: int,
                     num_graphs: Optional[int] = None):
    r"""Turns per-graph cluster ids into compact global ones.

    The global id of :math:`(b, k)` is its rank among the non-empty
    :math:`(b, k)` pairs, so clusters of different graphs never mix, empty
    clusters are dropped, and the result is sorted by graph.

    Returns:
        (cluster [N], num_clusters, cluster_batch [C])
    """
    key = batch * num_local + local
    uniq, cluster = torch.unique(key, sorted=True, return_inverse=True)
    return cluster, uniq.numel(), torch.div(uniq, num_local,
                                            rounding_mode='floor')


def sample_gumbel(shape, generator: Optional[torch.Generator] = None,
                  device=None, dtype=None) -> Tensor:
    r"""Draws i.i.d. :math:`\mathrm{Gumbel}(0, 1)` noise."""
    u = rand(shape, generator, device, dtype)
    tiny = torch.finfo(u.dtype).tiny
    return -torch.log(-torch.log(u.clamp(min=tiny, max=1.0 - 1e-7)))


def row_softmax(x: Tensor, log: bool = False) -> Tensor:
    r"""(Log-)softmax of every row of :obj:`x` :math:`(N, K)`. PyTorch's CPU
    kernel over a last dimension of fewer than 16 entries is several times
    slower than over the first dimension (measured: 0.93 ms against 0.15 ms
    forward and backward for :math:`2946 \times 12`), so narrow rows are
    normalised in the transposed layout; the values are the same."""
    fn = F.log_softmax if log else F.softmax
    if x.dim() == 2 and x.size(-1) < 16:
        return fn(x.t(), dim=0).t()
    return fn(x, dim=-1)


class _StraightThrough(torch.autograd.Function):
    r"""The one-hot rows :obj:`local` in the forward pass, the gradient of
    :obj:`soft` in the backward pass (:math:`\text{hard} + \text{soft} -
    \text{sg}(\text{soft})`, without building the sum)."""
    @staticmethod
    def forward(ctx, soft: Tensor, local: Tensor) -> Tensor:
        return F.one_hot(local, soft.size(-1)).to(soft.dtype)

    @staticmethod
    def backward(ctx, grad: Tensor):
        return grad, None


def gumbel_cluster(logits: Tensor, batch: Tensor, training: bool = True,
                   noise: OptTensor = None,
                   generator: Optional[torch.Generator] = None,
                   tau: float = 1.0) -> ClusterOutput:
    r"""Hard clustering by the Gumbel-max trick with a straight-through
    gradient (paper Sec. 3.3):

    .. math::
        \Pi_i = \mathrm{onehot}\left(\arg\max_k\, g_{ik} +
        \log p_{ik}\right), \qquad p_i = \mathrm{softmax}(\tilde{p}_i)

    In the backward pass, :math:`\Pi` has the gradient of
    :math:`\mathrm{softmax}((\log p_i + g_i) / \tau)`. In evaluation
    (:obj:`training=False`) the noise is zero, i.e. Eq. (4):
    :math:`\pi(i) = \arg\max_k \tilde{p}_{ik}`.

    Args:
        logits (torch.Tensor): Clustering logits :math:`\tilde{p}`,
            shape :obj:`[N, K]`.
        batch (torch.Tensor): Graph of every node, shape :obj:`[N]`.
        training (bool): Draw Gumbel noise. (default: :obj:`True`)
        noise (torch.Tensor, optional): Gumbel noise to use instead of
            drawing it (to repeat a forward pass, or to permute it along with
            the nodes). (default: :obj:`None`)
        generator (torch.Generator, optional): Random generator for the
            noise. (default: :obj:`None`)
        tau (float): Temperature of the relaxation used for the gradient.
            (default: :obj:`1.0`)
    """
    if logits.dim() != 2:
        raise ValueError(f"'logits' must be [N, K] (got {tuple(logits.shape)})")
    N, K = logits.shape
    if noise is None and training:
        noise = sample_gumbel((N, K), generator, logits.device, logits.dtype)
    if noise is not None and noise.shape != logits.shape:
        raise ValueError(f"'noise' has shape {tuple(noise.shape)}, expected "
                         f"{tuple(logits.shape)}")
    # log p = logits - logsumexp(logits) differs from the logits by a
    # constant per row, which neither the argmax nor the softmax sees (nor
    # their gradients), so the logits are used directly.
    scores = logits if noise is None else logits + noise
    return _hard_output(logits, batch, scores.argmax(dim=-1), noise, tau)


def _hard_output(logits: Tensor, batch: Tensor, local: Tensor,
                 noise: OptTensor, tau: float) -> ClusterOutput:
    r"""The :class:`ClusterOutput` of the hard assignment :obj:`local`, with
    the straight-through gradient of
    :math:`\mathrm{softmax}((\tilde{p} + g) / \tau)`."""
    scores = logits if noise is None else logits + noise
    soft = row_softmax(scores if tau == 1.0 else scores / tau)
    assignment = _StraightThrough.apply(soft, local)  # [N, K], one-hot
    weight = assignment.gather(1, local.view(-1, 1)).view(-1)
    cluster, C, cluster_batch = compact_clusters(local, batch,
                                                 logits.size(1))
    return ClusterOutput(cluster, C, cluster_batch, local, logits.size(1),
                         weight, assignment, logits, noise)


def gather_clusters(select_output: ClusterOutput, x: Tensor,
                    batch: Tensor, num_graphs: Optional[int] = None,
                    assignment: OptTensor = None) -> Tensor:
    r"""Every node's row of the cluster features :obj:`x` :math:`(C, F)`,
    read through the assignment matrix:

    .. math::
        \mathbf{y}_i = \sum_k \Pi_{ik} \, \mathbf{x}_{(b_i, k)}

    With the straight-through one-hot :math:`\Pi` of a learned clustering
    the value is :obj:`x[cluster_index]` exactly, and the gradient reaches
    the assignment probabilities of *every* cluster a node could have joined
    (:math:`\partial \mathcal{L} / \partial \Pi_{ik} = \mathbf{g}_i^\top
    \mathbf{x}_{(b_i, k)}`), not only of the one it joined; with a soft
    :obj:`assignment` (rows of probabilities) it is the expected cluster
    feature. Without a gradient to pass (fixed clusters, evaluation) and
    without :obj:`assignment` it is the plain gather. Cost
    :math:`O(N K F)`; every graph on its own.

    Args:
        select_output (ClusterOutput): The clustering.
        x (torch.Tensor): Features of its clusters, shape :obj:`[C, F]`.
        batch (torch.Tensor): The graph of every node, shape :obj:`[N]`.
        num_graphs (int, optional): The number of graphs :math:`B`.
        assignment (torch.Tensor, optional): The :obj:`[N, K]` matrix to read
            through (default: :obj:`select_output.assignment`).
    """
    so = select_output
    A = assignment
    if A is None:
        A = so.assignment
        if A is None or not A.requires_grad:
            return x[so.cluster_index]
    if num_graphs is None:
        num_graphs = int(batch.max()) + 1 if batch.numel() > 0 else 0
    K = so.num_local
    local = so.local.new_zeros(so.num_clusters)
    local[so.cluster_index] = so.local
    full = x.new_zeros(num_graphs * K, x.size(-1)).index_copy(
        0, so.batch * K + local, x).view(num_graphs, K, -1)  # [B, K, F]
    if num_graphs == 1:
        return A @ full[0]
    dense, mask = to_dense_batch(A, batch, batch_size=num_graphs)  # [B,n,K]
    return torch.bmm(dense, full)[mask]


#: The smallest cluster mass the scaled Sinkhorn iterations accept, per
#: dtype (:math:`\epsilon_{tiny}^{1/3}`: the gradient :math:`1 / m^2`
#: stays far from overflow).
_SINKHORN_MIN_MASS = {
    dt: float(torch.finfo(dt).tiny)**(1 / 3)
    for dt in (torch.float16, torch.bfloat16, torch.float32, torch.float64)
}


def sinkhorn_balance(logits: Tensor, batch: Tensor,
                     num_graphs: Optional[int] = None,
                     num_iters: int = 10) -> Tensor:
    r"""Balances clustering logits with Sinkhorn-Knopp iterations, per
    graph: alternately normalises every node's distribution over the
    :math:`K` clusters to 1 and every cluster's total mass to :math:`n / K`.
    The result is the log of a (nearly) doubly stochastic assignment
    :math:`\log p_{ik}` whose clusters have equal expected sizes, so that
    Gumbel-max samples *and* the evaluation-mode :math:`\arg\max` are
    balanced, not only random assignments of near-uniform logits (not in the
    paper; a balanced-cut constraint built into the assignment, as in
    optimal-transport clustering).

    The iterations scale :math:`E_{ik} = \exp(\tilde{p}_{ik} - \max_k
    \tilde{p}_{ik})` by a node vector :math:`u` and a cluster vector
    :math:`v` per graph, :math:`p_{ik} = u_i E_{ik} v_k`: one exponential in
    all, then two matrix-vector products per iteration (several times
    faster, forward and backward, than normalising :math:`\log p` in the
    log domain, the same values to float precision). Where a cluster's
    mass nearly underflows (logits about 30 apart in float32) the
    log-domain iterations are used instead.

    Permutation equivariant (only per-node and per-graph sums). Rows are
    normalised last, so :obj:`softmax` of the output is the output's
    :obj:`exp`.
    """
    if num_graphs is None:
        num_graphs = int(batch.max()) + 1 if batch.numel() > 0 else 0
    N, K = logits.shape
    if N == 0 or num_iters <= 0:
        return row_softmax(logits, log=True)
    count = torch.bincount(batch, minlength=num_graphs).to(logits.dtype)
    target = count.clamp(min=1).view(-1, 1) / K  # [B, 1]
    shifted = logits - logits.detach().max(dim=-1, keepdim=True).values
    E = shifted.exp()  # [N, K], every row's largest entry is 1
    u = 1.0 / E.sum(dim=-1)  # [N]
    one = num_graphs == 1
    smallest = []
    for _ in range(num_iters):
        if one:
            col = (u @ E).view(1, K)
        else:
            col = scatter(E * u.view(-1, 1), batch, 0, dim_size=num_graphs,
                          reduce='sum')  # [B, K]
        smallest.append(col.detach().min())
        v = target / col  # [B, K]
        u = 1.0 / (E @ v[0] if one else (E * v[batch]).sum(dim=-1))
    # A nearly empty cluster column (its gradient 1 / col^2 overflows):
    # the log domain instead.
    if not float(torch.stack(smallest).min()) >= \
            _SINKHORN_MIN_MASS[E.dtype]:  # (also NaN after an empty one)
        return _sinkhorn_log_domain(logits, batch, num_graphs, num_iters)
    return shifted + u.log().view(-1, 1) + v.log()[batch]


def _sinkhorn_log_domain(logits: Tensor, batch: Tensor, num_graphs: int,
                         num_iters: int) -> Tensor:
    r""":func:`sinkhorn_balance` normalising :math:`\log p` itself (slower;
    never underflows)."""
    K = logits.size(1)
    count = torch.bincount(batch, minlength=num_graphs).to(logits.dtype)
    log_target = (count.clamp(min=1) / K).log()[batch].view(-1, 1)
    out = row_softmax(logits, log=True)
    index = batch.view(-1, 1).expand(-1, K)
    for _ in range(num_iters):
        col_max = scatter(out.detach(), batch, 0, dim_size=num_graphs,
                          reduce='max')  # [B, K]
        col = scatter((out - col_max[batch]).exp(), batch, 0,
                      dim_size=num_graphs, reduce='sum')
        log_col = col.clamp(min=1e-30).log() + col_max  # [B, K]
        out = out - log_col.gather(0, index) + log_target
        out = row_softmax(out, log=True)
    return out


def balanced_capacities(logits: Tensor, batch: Tensor,
                        num_graphs: Optional[int] = None) -> Tensor:
    r"""The cluster sizes of a balanced partition of every graph: with
    :math:`n = qK + r` nodes, :math:`q + 1` for the :math:`r` clusters of
    largest soft mass :math:`\sum_i \mathrm{softmax}(\tilde{p}_i)_k` (ties:
    the lower cluster index) and :math:`q` for the others (for
    :math:`n < K`: :math:`n` clusters of one node). Invariant under node
    permutations.

    Args:
        logits (torch.Tensor): Clustering logits, shape :obj:`[N, K]`.
        batch (torch.Tensor): Graph of every node, shape :obj:`[N]`.
        num_graphs (int, optional): The number of graphs :math:`B`.

    Returns:
        torch.Tensor: Sizes, shape :obj:`[B, K]` (long), row sums :math:`n`.
    """
    if num_graphs is None:
        num_graphs = int(batch.max()) + 1 if batch.numel() > 0 else 0
    K = logits.size(1)
    mass = scatter(F.softmax(logits.detach(), dim=-1), batch, 0,
                   dim_size=num_graphs, reduce='sum')  # [B, K]
    n = torch.bincount(batch, minlength=num_graphs).view(-1, 1)
    q, r = torch.div(n, K, rounding_mode='floor'), n % K
    order = torch.argsort(mass, dim=1, descending=True, stable=True)
    extra = (torch.arange(K, device=logits.device).view(1, -1) < r).long()
    caps = torch.empty_like(order)
    caps.scatter_(1, order, q + extra)
    return caps


def balanced_assignment(logits: Tensor, batch: Tensor,
                        num_graphs: Optional[int] = None,
                        num_iters: int = 10) -> Tensor:
    r"""A balanced hard assignment of the nodes of every graph into
    :math:`K` clusters, rounding the balanced (optimal-transport) plan of
    the logits: the sizes are :func:`balanced_capacities`, :math:`\lfloor
    n/K \rfloor` or :math:`\lceil n/K \rceil`, so the balanced-cut KL is
    the smallest a graph of :math:`n` nodes admits
    (:func:`uniform_kl_bound`).

    The scores :math:`s_{ik} = \log p_{ik}` are the logits balanced by
    :obj:`num_iters` Sinkhorn iterations (:func:`sinkhorn_balance`, the
    entropic optimal transport of the nodes onto equally large clusters).
    The assignment is the *stable* one: no node :math:`i` and cluster
    :math:`k` with :math:`s_{ik} > s_{i\pi(i)}` such that :math:`k` has a
    free place or a member :math:`j` with :math:`s_{jk} < s_{ik}`. As nodes
    and clusters rank each other by the same scores, it is unique and equals
    the greedy rounding (pairs taken in decreasing :math:`s_{ik}`, a node
    joining a cluster that still has room). It is computed by deferred
    acceptance in rounds: every unplaced node proposes to its best cluster
    not yet tried, every cluster keeps its best candidates up to its size.
    Memory :math:`O(NK)` (no :math:`N \times N` tensor); every graph of a
    batch on its own.

    Permutation equivariant: only the scores decide. Exact ties are broken
    by cluster index on the node's side and by node index on the cluster's
    side; the latter only matters for nodes with equal scores for a cluster
    (e.g. identical logits), which are then interchangeable: their clusters
    may swap under a permutation, the cluster sizes never change.

    Args:
        logits (torch.Tensor): Clustering logits :math:`\tilde{p}`,
            shape :obj:`[N, K]`.
        batch (torch.Tensor): Graph of every node, shape :obj:`[N]`.
        num_graphs (int, optional): The number of graphs :math:`B`.
        num_iters (int): Sinkhorn iterations before the rounding (0: round
            the log-softmax of the logits). (default: :obj:`10`)

    Returns:
        torch.Tensor: The local cluster id of every node, shape :obj:`[N]`.
    """
    if logits.dim() != 2:
        raise ValueError(f"'logits' must be [N, K] (got {tuple(logits.shape)})")
    if batch.numel() != logits.size(0):
        raise ValueError(f"'batch' holds {batch.numel()} entries for "
                         f"{logits.size(0)} nodes")
    if num_iters < 0:
        raise ValueError(f"'num_iters' must be >= 0 (got {num_iters})")
    if not bool(torch.isfinite(logits).all()):
        raise ValueError("'logits' holds non-finite values")
    if num_graphs is None:
        num_graphs = int(batch.max()) + 1 if batch.numel() > 0 else 0
    N, K = logits.shape
    device = logits.device
    logits = logits.detach()
    caps = balanced_capacities(logits, batch, num_graphs).view(-1)  # [B*K]
    score = sinkhorn_balance(logits, batch, num_graphs, num_iters)  # [N, K]
    pref = torch.argsort(score, dim=1, descending=True, stable=True)
    tried = torch.zeros(N, dtype=torch.long, device=device)
    local = torch.full((N, ), -1, dtype=torch.long, device=device)
    free = torch.arange(N, device=device)
    while free.numel() > 0:
        if int(tried[free].max()) >= K:  # cannot happen: sizes sum to n
            raise RuntimeError("balanced_assignment: a node was refused by "
                               "every cluster")
        want = pref[free, tried[free]]
        tried[free] += 1
        # The candidates of the clusters proposed to: their members and the
        # proposing nodes.
        key = batch * K  # [N]
        hit = torch.zeros(num_graphs * K, dtype=torch.bool, device=device)
        hit[key[free] + want] = True
        held = (local >= 0).nonzero().view(-1)
        held = held[hit[key[held] + local[held]]]
        node = torch.cat([held, free])
        clus = torch.cat([local[held], want])
        # Order: by group, then decreasing score, then node index.
        order = torch.argsort(node, stable=True)
        s = score[node, clus]
        order = order[torch.argsort(-s[order], stable=True)]
        group = key[node] + clus
        order = order[torch.argsort(group[order], stable=True)]
        node, clus, group = node[order], clus[order], group[order]
        start = torch.ones_like(group, dtype=torch.bool)
        start[1:] = group[1:] != group[:-1]
        first = torch.cummax(torch.where(start, torch.arange(
            group.numel(), device=device), 0), dim=0).values
        rank = torch.arange(group.numel(), device=device) - first
        accept = rank < caps[group]
        local[node] = torch.where(accept, clus, -1)
        free = node[~accept]
    return local


def balanced_cut_kl(assignment: Tensor, batch: Tensor,
                    num_graphs: Optional[int] = None,
                    num_clusters: Optional[int] = None,
                    dtype: Optional[torch.dtype] = None) -> Tensor:
    r"""The balanced-cut loss of the paper (Sec. 3.3), per graph:

    .. math::
        D_{KL}(P \,\|\, Q) = \sum_{k} P(k) \log \frac{P(k)}{Q(k)}, \quad
        P(k) = \frac{|\mathcal{V}_k|}{|\mathcal{V}|}

    with :math:`Q` uniform. :math:`P` is computed from the straight-through
    assignment, so its value is that of the hard cluster sizes and its
    gradient reaches the clustering logits. For a graph with
    :math:`n < K` nodes, :math:`Q` is uniform over :math:`n` clusters (the
    most balanced partition it admits), so the optimum is always 0.

    Args:
        assignment (torch.Tensor): (Straight-through) one-hot assignment,
            shape :obj:`[N, K]`, or the local cluster id of every node,
            shape :obj:`[N]` (then give :obj:`num_clusters`; no gradient,
            no dense :math:`N \times K` tensor, for fixed clusterings).
        batch (torch.Tensor): Graph of every node, shape :obj:`[N]`.
        num_graphs (int, optional): The number of graphs :math:`B`.
        num_clusters (int, optional): :math:`K`, with local ids.

    Returns:
        torch.Tensor: The KL divergence of every graph, shape :obj:`[B]`
        (0 for a graph with no nodes).
    """
    if num_graphs is None:
        num_graphs = int(batch.max()) + 1 if batch.numel() > 0 else 0
    if assignment.dim() == 1:
        if num_clusters is None:
            raise ValueError("'num_clusters' is needed with local ids")
        K = num_clusters
        dtype = torch.get_default_dtype() if dtype is None else dtype
        counts = torch.bincount(batch * K + assignment,
                                minlength=num_graphs * K)
        counts = counts.view(num_graphs, K).to(dtype)  # [B, K]
    else:
        K = assignment.size(1)
        dtype = assignment.dtype
        counts = scatter(assignment, batch, 0, dim_size=num_graphs,
                         reduce='sum')  # [B, K]
    n = torch.bincount(batch, minlength=num_graphs).to(dtype)
    P = counts / n.clamp(min=1).view(-1, 1)
    k_eff = n.clamp(min=1, max=K).view(-1, 1)
    # 0 log 0 = 0, written so that the gradient at P = 0 stays finite:
    terms = torch.where(P > 0, P * torch.log(P.clamp(min=1e-12) * k_eff),
                        torch.zeros_like(P))
    return terms.sum(dim=-1)


def assignment_entropy(logits: Tensor, batch: Tensor,
                       num_graphs: Optional[int] = None) -> Tensor:
    r"""The mean entropy of the nodes' cluster distributions
    :math:`p_i = \mathrm{softmax}(\tilde{p}_i)` of every graph,
    :math:`\frac{1}{n}\sum_i -\sum_k p_{ik} \log p_{ik}` (as DiffPool's
    entropy regulariser).

    The balanced-cut KL alone is satisfied by *random* balanced assignments:
    with near-uniform :math:`p_i`, the Gumbel-max samples are balanced in
    training while the evaluation-mode :math:`\arg\max` can put every node
    into one cluster. Minimising this entropy makes the assignments decisive,
    so training and evaluation cluster alike.

    Returns:
        torch.Tensor: Shape :obj:`[B]` (0 for a graph with no nodes).
    """
    if num_graphs is None:
        num_graphs = int(batch.max()) + 1 if batch.numel() > 0 else 0
    log_p = row_softmax(logits, log=True)
    ent = -(log_p.exp() * log_p).sum(dim=-1)  # [N]
    return scatter(ent, batch, 0, dim_size=num_graphs, reduce='mean')


class SelectLearned(Select):
    r"""The learned hard clustering of the paper (Sec. 3.3) as a PyG
    :class:`~torch_geometric.nn.pool.select.Select`: a GNN gives :math:`K`
    logits per node and :func:`gumbel_cluster` draws a hard assignment into
    :math:`K` clusters per graph with a straight-through gradient (in
    evaluation mode the :math:`\arg\max`, or with
    :obj:`eval_assign="balanced"` the balanced :func:`balanced_assignment`).
    Returns a :class:`ClusterOutput` (a
    :class:`~torch_geometric.nn.pool.select.SelectOutput` whose
    :obj:`weight` carries the straight-through gradient).

    The clustering is permutation equivariant: permuting the nodes (and the
    Gumbel noise with them) permutes the assignment (the balanced one up to
    nodes with equal scores, see :func:`balanced_assignment`).

    Args:
        in_channels (int): Size of the node features.
        num_clusters (int): Number of clusters per graph :math:`K`.
        hidden_channels (int): Hidden size of the GNN. (default: :obj:`64`)
        num_layers (int): Number of message passing layers (0: a linear map
            of the features). (default: :obj:`2`)
        tau (float): Temperature of the straight-through relaxation,
            positive. (default: :obj:`1.0`)
        balance (int): Sinkhorn iterations of :func:`sinkhorn_balance`
            applied to the logits before the Gumbel-max (0: the paper's plain
            softmax). (default: :obj:`0`)
        conv (MessagePassing class or callable, optional): The convolution
            of the GNN (see :class:`~torch_geometric_mgvae.nn.LocalEncoder`).
            (default: :class:`~torch_geometric_mgvae.nn.MGNConv`)
        eval_assign (str): The hard assignment in evaluation mode:
            :obj:`"argmax"` (the paper's Eq. 4) or :obj:`"balanced"`
            (:func:`balanced_assignment`: cluster sizes within one of each
            other in every graph, the smallest balanced-cut KL; not in the
            paper). Training draws Gumbel-max samples either way.
            (default: :obj:`"argmax"`)

    Shapes:
        - **input:** node features :math:`(N, F)`, edge indices
          :math:`(2, E)` or a sparse adjacency, edge weights :math:`(E)`
          *(optional)*, batch vector :math:`(N)` *(optional)*
        - **output:** :class:`ClusterOutput`
    """
    def __init__(self, in_channels: int, num_clusters: int,
                 hidden_channels: int = 64, num_layers: int = 2,
                 tau: float = 1.0, balance: int = 0,
                 conv: Optional[ConvSpec] = None,
                 eval_assign: str = 'argmax'):
        super().__init__()
        if num_clusters < 1:
            raise ValueError("'num_clusters' must be at least 1")
        if eval_assign not in EVAL_ASSIGNS:
            raise ValueError(f"'eval_assign' must be one of {EVAL_ASSIGNS} "
                             f"(got {eval_assign!r})")
        if not tau > 0 or not math.isfinite(tau):
            raise ValueError(f"'tau' must be a positive number (got {tau})")
        if num_layers < 0 or balance < 0:
            raise ValueError("'num_layers' and 'balance' must be >= 0")
        if num_layers > 0:
            check_int('hidden_channels', hidden_channels)
        self.balance = balance
        self.eval_assign = eval_assign
        self.in_channels = in_channels
        self.num_clusters = num_clusters
        self.hidden_channels = hidden_channels
        self.num_layers = num_layers
        self.tau = tau
        self.convs = torch.nn.ModuleList()
        for i in range(num_layers):
            self.convs.append(
                make_conv(conv, in_channels if i == 0 else hidden_channels,
                          hidden_channels))
        self._takes = [conv_inputs(c) for c in self.convs]
        last = hidden_channels if num_layers > 0 else in_channels
        self.lin = torch.nn.Linear(last, num_clusters)
        self.reset_parameters()

    def reset_parameters(self):
        for conv in self.convs:
            conv.reset_parameters()
        self.lin.reset_parameters()

    def logits(self, x: Tensor, edge_index: Adj,
               edge_weight: OptTensor = None,
               edge_attr: OptTensor = None) -> Tensor:
        r"""The clustering logits :math:`\tilde{p}`, shape :obj:`[N, K]`."""
        for conv, takes in zip(self.convs, self._takes):
            x = F.relu(run_conv(conv, x, edge_index, edge_weight, edge_attr,
                                takes))
        return self.lin(x)

    def forward(self, x: Tensor, edge_index: Adj,
                edge_weight: OptTensor = None, batch: OptTensor = None,
                edge_attr: OptTensor = None, noise: OptTensor = None,
                generator: Optional[torch.Generator] = None
                ) -> ClusterOutput:
        if batch is None:
            batch = x.new_zeros(x.size(0), dtype=torch.long)
        logits = self.logits(x, edge_index, edge_weight, edge_attr)
        if self.balance > 0:
            logits = sinkhorn_balance(logits, batch, num_iters=self.balance)
        if not self.training and self.eval_assign == 'balanced':
            if noise is not None and noise.shape != logits.shape:
                raise ValueError(f"'noise' has shape {tuple(noise.shape)}, "
                                 f"expected {tuple(logits.shape)}")
            scores = logits if noise is None else logits + noise
            return _hard_output(logits, batch,
                                balanced_assignment(scores, batch), noise,
                                self.tau)
        return gumbel_cluster(logits, batch, self.training, noise, generator,
                              self.tau)

    def __repr__(self) -> str:
        extra = ('' if self.eval_assign == 'argmax' else
                 f', eval_assign={self.eval_assign!r}')
        return (f'{self.__class__.__name__}({self.in_channels}, '
                f'num_clusters={self.num_clusters}, '
                f'num_layers={self.num_layers}{extra})')


class SelectFixed(Select):
    r"""A fixed (precomputed) clustering as a PyG
    :class:`~torch_geometric.nn.pool.select.Select`: the local cluster id
    of every node in :math:`\{0, \ldots, K-1\}` is passed in (e.g. from the
    spectral, k-means or grid clusterings of
    :class:`~torch_geometric_mgvae.transforms.FixedHierarchy`), and made
    global and compact over the batch (:func:`fixed_cluster_output`). With
    :math:`K = 1` and no ids, every graph becomes one cluster.

    Args:
        num_clusters (int): Number of clusters per graph :math:`K`.

    Shapes:
        - **input:** local cluster ids :math:`(N)`, batch vector :math:`(N)`
          *(optional)*
        - **output:** :class:`ClusterOutput`
    """
    def __init__(self, num_clusters: int):
        super().__init__()
        if num_clusters < 1:
            raise ValueError("'num_clusters' must be at least 1")
        self.num_clusters = num_clusters

    def forward(self, x: Tensor, edge_index: Adj = None,
                edge_weight: OptTensor = None, batch: OptTensor = None,
                edge_attr: OptTensor = None, cluster: OptTensor = None,
                **kwargs) -> ClusterOutput:
        N = x.size(0)
        if batch is None:
            batch = torch.zeros(N, dtype=torch.long, device=x.device)
        if cluster is None:
            if self.num_clusters != 1:
                raise ValueError(f"{self.__class__.__name__} needs the "
                                 f"cluster ids ('cluster') of every node")
            cluster = torch.zeros_like(batch)
        cluster = cluster.to(x.device).long().view(-1)
        if cluster.numel() != N:
            raise ValueError(f"The fixed clustering holds {cluster.numel()} "
                             f"ids for {N} nodes")
        return fixed_cluster_output(cluster, batch, self.num_clusters,
                                    x.dtype)

    def __repr__(self) -> str:
        return f'{self.__class__.__name__}(num_clusters={self.num_clusters})'


def fixed_cluster_output(local: Tensor, batch: Tensor, num_local: int,
                         dtype: Optional[torch.dtype] = None
                         ) -> ClusterOutput:
    r"""Wraps a fixed (precomputed) clustering into a :class:`ClusterOutput`
    (no gradient; the weights are exactly 1, and no :math:`N \times K`
    assignment matrix is built: the balanced-cut KL reads the local ids)."""
    if local.numel() and (int(local.min()) < 0
                          or int(local.max()) >= num_local):
        raise ValueError(f"Cluster ids must lie in [0, {num_local})")
    cluster, C, cluster_batch = compact_clusters(local, batch, num_local)
    dtype = dtype or torch.get_default_dtype()
    weight = torch.ones(local.numel(), dtype=dtype, device=local.device)
    return ClusterOutput(cluster, C, cluster_batch, local, num_local, weight)


def uniform_kl_bound(n: int, K: int) -> float:
    r"""The smallest balanced-cut KL a graph of :math:`n` nodes can reach
    with :math:`K` clusters (0 when :math:`K` divides :math:`n`)."""
    k = min(n, K)
    q, r = divmod(n, k)
    sizes = [q + 1] * r + [q] * (k - r)
    return sum(s / n * math.log(s / n * k) for s in sizes if s > 0)
