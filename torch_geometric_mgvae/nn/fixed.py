r"""Fixed clusterings of the paper's appendix (D.1, D.6): spectral, k-means
on features and a grid (quadtree) clustering, and whole fixed hierarchies.

The spectral and k-means clusterings are functions of the graph: every graph
of a batch is clustered on its own (with its own random stream, seeded by
:obj:`seed`), so a batch gives what its graphs give one by one, and a
permuted graph gives the permuted clustering with the same labels (see
:func:`kmeans` for how, and for the one exception: ties)."""
import math
from typing import List, Optional, Sequence, Tuple

import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spla
import torch
from torch import Tensor
from torch_geometric.data import Data
from torch_geometric.typing import OptTensor
from torch_geometric.utils import scatter

from torch_geometric_mgvae.nn.cluster import (
    balanced_assignment,
    compact_clusters,
)
from torch_geometric_mgvae.nn.coarsen import coarsen

METHODS = ('spectral', 'kmeans', 'grid')
#: Relative inertia gain a later k-means restart needs to replace the best
#: one (restarts that reach the same partition differ by rounding only).
INERTIA_RTOL = 1e-9


def _graph_nodes(batch: Tensor, num_graphs: int) -> List[Tensor]:
    r"""The node indices of every graph of a batch, in node order."""
    order = torch.argsort(batch, stable=True)
    counts = torch.bincount(batch, minlength=num_graphs).tolist()
    return list(torch.split(order, counts))


def _check_batch(batch: OptTensor, num_nodes: int,
                 device: Optional[torch.device] = None
                 ) -> Tuple[Tensor, int]:
    if batch is None:
        return (torch.zeros(num_nodes, dtype=torch.long, device=device),
                1 if num_nodes else 0)
    batch = batch.view(-1).long()
    if batch.numel() != num_nodes:
        raise ValueError(f"'batch' holds {batch.numel()} entries for "
                         f"{num_nodes} nodes")
    if num_nodes and int(batch.min()) < 0:
        raise ValueError("'batch' must hold non-negative graph indices")
    return batch, int(batch.max()) + 1 if num_nodes else 0


def _check_kmeans_args(k: int, n_init: int, max_iter: int):
    if int(k) < 1:
        raise ValueError(f"'k' must be a positive integer (got {k})")
    if int(n_init) < 1:
        raise ValueError(f"'n_init' must be a positive integer (got {n_init})")
    if int(max_iter) < 1:
        raise ValueError(f"'max_iter' must be a positive integer "
                         f"(got {max_iter})")


def _sq_dist(x: Tensor, c: Tensor) -> Tensor:
    r"""Squared distances of every row of :obj:`x` to every row of
    :obj:`c`, :obj:`[n, m]`, as :math:`\|x\|^2 + \|c\|^2 - 2 x^\top c`
    (one matrix product; :func:`torch.cdist` is far slower on few
    threads)."""
    d2 = torch.addmm((c * c).sum(-1).unsqueeze(0), x, c.t(), alpha=-2.0)
    return d2.add_((x * x).sum(-1).unsqueeze(1)).clamp_(min=0)


def _kmeans_pp(x: Tensor, k: int, generator: torch.Generator) -> Tensor:
    r"""Greedy k-means++ seeding: every new center is the best (lowest
    potential) of :math:`2 + \lfloor\ln k\rfloor` candidates drawn with
    probability proportional to the squared distance to the nearest center.
    Draws index the rows in their given (canonical) order."""
    n = x.size(0)
    trials = 2 + int(math.log(k))
    centers = x.new_empty(k, x.size(1))
    first = int(torch.randint(n, (1, ), generator=generator))
    centers[0] = x[first]
    d2 = ((x - x[first])**2).sum(-1)  # [n]
    for j in range(1, k):
        u = torch.rand(trials, generator=generator, dtype=torch.float64)
        cdf = d2.cumsum(0)
        total = float(cdf[-1])
        if total > 0:
            cand = torch.searchsorted(cdf, u.to(cdf) * total, right=True)
        else:  # fewer distinct points than centers
            cand = (u * n).long()
        cand = cand.to(x.device).clamp(max=n - 1)
        cd2 = torch.minimum(_sq_dist(x[cand], x), d2)  # [trials, n]
        best = int(cd2.sum(-1).argmin())
        centers[j] = x[cand[best]]
        d2 = cd2[best]
    return centers


def _lloyd(x: Tensor, centers: Tensor,
           max_iter: int) -> Tuple[Tensor, float]:
    r"""Lloyd iterations until the assignment stops changing (at most
    :obj:`max_iter`); an empty cluster keeps its center. Returns the labels
    and the inertia :math:`\sum_i \|x_i - c_{\pi(i)}\|^2`."""
    k = centers.size(0)
    labels = _sq_dist(x, centers).argmin(-1)
    for _ in range(max_iter):
        sums = scatter(x, labels, 0, dim_size=k, reduce='sum')
        cnt = torch.bincount(labels, minlength=k).view(-1, 1)
        centers = torch.where(cnt > 0, sums / cnt.clamp(min=1), centers)
        new = _sq_dist(x, centers).argmin(-1)
        if torch.equal(new, labels):
            break
        labels = new
    sums = scatter(x, labels, 0, dim_size=k, reduce='sum')
    cnt = torch.bincount(labels, minlength=k).view(-1, 1)
    centers = torch.where(cnt > 0, sums / cnt.clamp(min=1), centers)
    return labels, float(((x - centers[labels])**2).sum())


def _first_appearance(labels: Tensor, k: int) -> Tensor:
    r"""Relabels to :math:`0, 1, \ldots` in order of first appearance."""
    n = labels.numel()
    first = torch.full((k, ), n, dtype=torch.long, device=labels.device)
    first = first.scatter_reduce(0, labels, torch.arange(
        n, device=labels.device), reduce='amin')
    rank = torch.empty(k, dtype=torch.long, device=labels.device)
    rank[torch.argsort(first)] = torch.arange(k, device=labels.device)
    return rank[labels]


def _kmeans_graph(x: Tensor, k: int, n_init: int, max_iter: int,
                  seed: int) -> Tensor:
    r"""k-means of the rows of one graph (see :func:`kmeans`)."""
    n = x.size(0)
    out = torch.empty(n, dtype=torch.long, device=x.device)
    if n == 0:
        return out
    x = x.double()
    # The canonical order: by squared distance to the centroid (invariant
    # under node permutations and isometries of the embedding).
    order = torch.argsort(((x - x.mean(0))**2).sum(-1), stable=True)
    if n <= k:
        out[order] = torch.arange(n, device=x.device)
        return out
    xs = x[order]
    generator = torch.Generator().manual_seed(int(seed))
    best, best_inertia = None, math.inf
    for _ in range(n_init):
        labels, inertia = _lloyd(xs, _kmeans_pp(xs, k, generator), max_iter)
        if inertia < best_inertia * (1.0 - INERTIA_RTOL):
            best, best_inertia = labels, inertia
    out[order] = _first_appearance(best, k)
    return out


def kmeans(x: Tensor, k: int, batch: OptTensor = None, n_init: int = 10,
           max_iter: int = 300, seed: int = 0) -> Tensor:
    r"""k-means of the rows of :obj:`x` into :math:`k` clusters, every
    graph of a batch on its own: the best (lowest inertia
    :math:`\sum_i \|\mathbf{x}_i - \mathbf{c}_{\pi(i)}\|^2`) of
    :obj:`n_init` runs of Lloyd's algorithm from greedy k-means++ seeds, as
    scikit-learn's :class:`~sklearn.cluster.KMeans`.

    The result is a function of the *set* of points of every graph, so that
    a batch gives what its graphs give one by one and permuting the rows
    permutes the labels:

    * every graph draws from its own random stream, seeded by :obj:`seed`;
    * the rows of a graph are first put in a *canonical order*, by their
      squared distance to the graph's centroid
      :math:`\|\mathbf{x}_i - \bar{\mathbf{x}}\|^2`; the k-means++ draws
      index the rows in that order, so they pick the same points whatever
      the node order (the order, hence the result, is also unchanged by
      rotations and reflections of the points, e.g. the sign of an
      eigenvector of :func:`spectral_embedding`);
    * a later restart replaces the best one only if it lowers the inertia
      by a relative :math:`10^{-9}` (restarts that reach the same partition
      differ by rounding only, so the earlier one is kept in every node
      order);
    * labels are numbered :math:`0, 1, \ldots` in order of first
      appearance in the canonical order.

    Ties are the exception: rows at the same distance from the centroid
    keep their input order. Coinciding rows (e.g. the embeddings of nodes
    with the same neighbours) are harmless, they always share a cluster;
    distinct rows tied by a symmetry of the graph can be clustered
    differently in another node order.

    With :math:`n \le k` points, every point is its own cluster.

    Args:
        x (torch.Tensor): Points, shape :obj:`[N, F]`.
        k (int): Number of clusters per graph.
        batch (torch.Tensor, optional): Graph of every row, shape
            :obj:`[N]`. (default: one graph)
        n_init (int): Number of k-means++ restarts. (default: :obj:`10`)
        max_iter (int): Most Lloyd iterations of a run (it stops earlier
            when the assignment no longer changes). (default: :obj:`300`)
        seed (int): Seed of every graph's random stream. (default: :obj:`0`)

    Returns:
        torch.Tensor: The cluster id of every row in
        :math:`\{0, \ldots, \min(n, k) - 1\}` (:math:`n` the size of its
        graph), shape :obj:`[N]`.
    """
    _check_kmeans_args(k, n_init, max_iter)
    if x.dim() != 2:
        raise ValueError(f"'x' must be [N, F] (got {tuple(x.shape)})")
    if not torch.isfinite(x).all():
        raise ValueError("'x' holds non-finite values")
    batch, num_graphs = _check_batch(batch, x.size(0))
    out = torch.empty(x.size(0), dtype=torch.long, device=x.device)
    for idx in _graph_nodes(batch.to(x.device), num_graphs):
        out[idx] = _kmeans_graph(x[idx], int(k), int(n_init), int(max_iter),
                                 seed)
    return out


def spectral_embedding(edge_index: Tensor, num_nodes: int,
                       num_eigs: int = 10,
                       edge_weight: OptTensor = None) -> Tensor:
    r"""The node embedding of the paper's spectral clustering (D.1):
    :math:`(\xi_1(i)/\lambda_1, \ldots, \xi_{n}(i)/\lambda_{n})` from the
    eigenpairs of the random-walk Laplacian
    :math:`\mathcal{L} = D^{-1}(D - A)` with the smallest non-trivial
    eigenvalues (:math:`n =` :obj:`num_eigs`), :math:`D_{ii} = \sum_j
    A_{ij}`. :math:`A` is weighted by :obj:`edge_weight` (duplicate edges
    summed, made symmetric by :math:`\max(A, A^\top)`; self loops count in
    the degree, so a coarse node's degree includes the edges inside it);
    without weights it is the 0/1 adjacency. Computed sparsely (ARPACK on
    :math:`D^{-1/2} A D^{-1/2}`, from a constant start vector) for graphs
    of more than 1,000 nodes. Eigenvalues are clamped at :math:`10^{-3}`
    (disconnected graphs), the sign of every eigenvector is fixed (largest
    entry positive).

    Args:
        edge_index (torch.Tensor): Edge indices, shape :obj:`[2, E]`.
        num_nodes (int): Number of nodes :math:`n`.
        num_eigs (int): Number of eigenvectors. (default: :obj:`10`)
        edge_weight (torch.Tensor, optional): Non-negative edge weights,
            shape :obj:`[E]`. (default: :obj:`None`)

    Returns:
        torch.Tensor: Shape :obj:`[n, min(num_eigs, n - 1)]`, float64 (one
        zero column for a graph without edges or with one node).
    """
    n = num_nodes
    k = min(num_eigs + 1, n)
    if edge_weight is not None and edge_weight.numel() != edge_index.size(1):
        raise ValueError(f"'edge_weight' holds {edge_weight.numel()} "
                         f"entries for {edge_index.size(1)} edges")
    if edge_weight is not None and not bool((edge_weight >= 0).all()):
        raise ValueError("'edge_weight' must be non-negative and finite")
    if n <= 1 or edge_index.numel() == 0:
        return torch.zeros(n, max(k - 1, 1), dtype=torch.float64,
                           device=edge_index.device)
    row, col = edge_index.cpu().numpy()  # SciPy works on the host
    w = (np.ones(row.size) if edge_weight is None else
         edge_weight.detach().cpu().double().numpy())
    A = sp.coo_matrix((w, (row, col)), shape=(n, n)).tocsr()
    A = A.maximum(A.T).tocsr()
    A.eliminate_zeros()
    if edge_weight is None:
        A.data[:] = 1.0  # a duplicated unweighted edge counts once
    deg = np.asarray(A.sum(1)).ravel()
    dinv = np.where(deg > 0, 1.0 / np.sqrt(np.maximum(deg, 1e-300)), 0.0)
    M = sp.diags(dinv) @ A @ sp.diags(dinv)
    if n <= 1000 or k >= n - 1:
        vals, vecs = np.linalg.eigh(M.toarray())
        vals, vecs = vals[::-1][:k], vecs[:, ::-1][:, :k]
    else:
        v0 = np.ones(n) / np.sqrt(n)  # deterministic start vector
        vals, vecs = spla.eigsh(M + sp.identity(n), k=k, which='LA', v0=v0)
        vals = vals - 1.0
        order = np.argsort(-vals)
        vals, vecs = vals[order], vecs[:, order]
    lam = 1.0 - vals  # eigenvalues of the random-walk Laplacian
    xi = dinv[:, None] * vecs  # its right eigenvectors
    # Fix the sign of every eigenvector (largest |entry| positive).
    sign = np.sign(xi[np.abs(xi).argmax(0), np.arange(xi.shape[1])])
    xi = xi * np.where(sign == 0, 1, sign)
    emb = xi[:, 1:] / np.maximum(lam[1:], 1e-3)
    return torch.from_numpy(np.ascontiguousarray(emb)).to(edge_index.device)


def spectral_clustering(edge_index: Tensor, num_nodes: int, k: int,
                        batch: OptTensor = None,
                        edge_weight: OptTensor = None, num_eigs: int = 10,
                        n_init: int = 10, seed: int = 0,
                        balanced: bool = False) -> Tensor:
    r"""Spectral clustering of every graph of a batch into :math:`k`
    clusters (paper D.1): :func:`kmeans` on the (weighted)
    :func:`spectral_embedding` of every graph on its own, so a batch gives
    what its graphs give one by one, and a permuted graph the permuted
    labels (on graphs without ties, see :func:`kmeans`; an eigenvalue
    repeated across the cut-off at :obj:`num_eigs` is a tie too, the
    embedding then depends on the eigensolver's choice of basis).

    Args:
        edge_index (torch.Tensor): Edge indices, shape :obj:`[2, E]`.
        num_nodes (int): Number of nodes :math:`N`.
        k (int): Number of clusters per graph.
        batch (torch.Tensor, optional): Graph of every node, shape
            :obj:`[N]`. (default: one graph)
        edge_weight (torch.Tensor, optional): Non-negative edge weights,
            shape :obj:`[E]`. (default: :obj:`None`)
        num_eigs (int): Eigenvectors of the embedding. (default: :obj:`10`)
        n_init (int): k-means restarts. (default: :obj:`10`)
        seed (int): Seed of every graph's k-means. (default: :obj:`0`)
        balanced (bool): Instead of every node's nearest k-means centre,
            the balanced assignment to the centres
            (:func:`~torch_geometric_mgvae.nn.balanced_assignment` of minus
            the squared distances): cluster sizes within one of each other.
            (default: :obj:`False`)

    Returns:
        torch.Tensor: Local cluster ids, shape :obj:`[N]`.
    """
    _check_kmeans_args(k, n_init, 1)
    if edge_index.numel() and int(edge_index.max()) >= num_nodes:
        raise ValueError(f"'edge_index' refers to node "
                         f"{int(edge_index.max())} of a graph with "
                         f"{num_nodes} nodes")
    if edge_weight is not None and edge_weight.numel() != edge_index.size(1):
        raise ValueError(f"'edge_weight' holds {edge_weight.numel()} "
                         f"entries for {edge_index.size(1)} edges")
    device = edge_index.device
    batch, num_graphs = _check_batch(batch, num_nodes)
    # The eigenvectors and k-means run in SciPy/NumPy, on the host:
    batch = batch.cpu()
    edge_index = edge_index.cpu()
    out = torch.zeros(num_nodes, dtype=torch.long)
    glob2loc = torch.full((num_nodes, ), -1, dtype=torch.long)
    edge_batch = batch[edge_index[0]]
    for b, idx in enumerate(_graph_nodes(batch, num_graphs)):
        if idx.numel() == 0:
            continue
        glob2loc[idx] = torch.arange(idx.numel())
        mask = edge_batch == b
        emb = spectral_embedding(
            glob2loc[edge_index[:, mask]], idx.numel(), num_eigs,
            None if edge_weight is None else edge_weight.cpu()[mask])
        labels = _kmeans_graph(emb, k, n_init, 300, seed)
        if balanced and idx.numel() > k:
            labels = _balanced_to_centres(emb.double(), labels, k)
        out[idx] = labels
    return out.to(device)


def _balanced_to_centres(x: Tensor, labels: Tensor, k: int) -> Tensor:
    r"""The balanced assignment of the rows of :obj:`x` to the :obj:`k`
    centres (means) of the clusters :obj:`labels`."""
    centres = scatter(x, labels, 0, dim_size=k, reduce='mean')
    score = -torch.cdist(x, centres)**2
    # A cluster k-means left empty has no centre: last choice for all.
    empty = torch.bincount(labels, minlength=k) == 0
    score[:, empty] = score.min() - 1.0
    return balanced_assignment(score, torch.zeros(x.size(0), dtype=torch.long))


def feature_kmeans(x: Tensor, k: int, batch: OptTensor = None,
                   pca_dim: int = 10, n_init: int = 10,
                   seed: int = 0) -> Tensor:
    r"""k-means clustering of every graph on its node features compressed
    to :obj:`pca_dim` dimensions by PCA (paper D.1): :func:`kmeans` on
    every graph's :obj:`pca_dim` leading principal components (the PCA of
    each graph on its own; its signs and rotations do not change the
    k-means, see :func:`kmeans`).

    Args:
        x (torch.Tensor): Node features, shape :obj:`[N, F]`.
        k (int): Number of clusters per graph.
        batch (torch.Tensor, optional): Graph of every node, shape
            :obj:`[N]`. (default: one graph)
        pca_dim (int): PCA components kept. (default: :obj:`10`)
        n_init (int): k-means restarts. (default: :obj:`10`)
        seed (int): Seed of every graph's k-means. (default: :obj:`0`)

    Returns:
        torch.Tensor: Local cluster ids, shape :obj:`[N]`.
    """
    _check_kmeans_args(k, n_init, 1)
    if x.dim() != 2:
        raise ValueError(f"'x' must be [N, F] (got {tuple(x.shape)})")
    if not torch.isfinite(x).all():
        raise ValueError("'x' holds non-finite values")
    batch, num_graphs = _check_batch(batch, x.size(0), x.device)
    out = torch.zeros(x.size(0), dtype=torch.long, device=x.device)
    for idx in _graph_nodes(batch.to(x.device), num_graphs):
        feats = x[idx].double()
        feats = feats - feats.mean(0, keepdim=True)
        q = min(pca_dim, feats.size(0), feats.size(1))
        if q > 0 and feats.abs().sum() > 0:
            _, _, V = torch.linalg.svd(feats, full_matrices=False)
            feats = feats @ V[:q].t()
        out[idx] = _kmeans_graph(feats, k, n_init, 300, seed)
    return out


def grid_clustering(pos: Tensor, cell: Sequence[int] = (2, 2),
                    batch: Optional[Tensor] = None) -> Tensor:
    r"""The fixed clustering of grid graphs (images, paper D.6): the pixel
    at integer position :math:`(r, c)` joins cluster
    :math:`\lfloor r / h \rfloor \lceil W / w \rceil + \lfloor c / w \rfloor`
    (a quadtree for :math:`h = w = 2`). Returns local cluster ids."""
    if pos.dim() != 2 or pos.size(1) != 2:
        raise ValueError("'pos' must be [N, 2] integer (row, col) positions")
    pos = pos.long()
    if batch is None:
        batch = torch.zeros(pos.size(0), dtype=torch.long, device=pos.device)
    h, w = cell
    num_graphs = int(batch.max()) + 1 if batch.numel() else 0
    width = scatter(pos[:, 1], batch, 0, dim_size=num_graphs, reduce='max')
    cols = torch.div(width + w, w, rounding_mode='floor')  # ceil((W) / w)
    return (torch.div(pos[:, 0], h, rounding_mode='floor') * cols[batch] +
            torch.div(pos[:, 1], w, rounding_mode='floor'))


def fixed_hierarchy(data: Data, method: str,
                    num_clusters: Sequence[int], cell: Sequence[int] = (2, 2),
                    seed: int = 0, n_init: int = 10,
                    balanced: bool = False) -> List[Tensor]:
    r"""Precomputes a whole fixed clustering hierarchy of one graph (or a
    batch): the local cluster ids of every level, finest first, in the order
    :class:`~torch_geometric_mgvae.MGN` builds the coarse graphs (so they
    can be passed as :obj:`clusters=`). Coarse levels are clustered on the
    weighted coarsened graph :math:`A' = \Pi^\top A \Pi` as
    :func:`~torch_geometric_mgvae.nn.coarsen` returns it (spectral), on the
    cluster means of the features (k-means) or on the coarsened grid.

    Every graph of a batch is clustered on its own, so a batch gives what
    its graphs give one by one; the labels, hence the coarse graphs, do not
    depend on the node order (on graphs without ties, see
    :func:`kmeans`).

    Args:
        data (Data): A graph with :obj:`edge_index` (and :obj:`edge_weight`
            if weighted), and :obj:`x` for :obj:`"kmeans"` or integer
            :obj:`pos` for :obj:`"grid"`.
        method (str): :obj:`"spectral"`, :obj:`"kmeans"` or :obj:`"grid"`.
        num_clusters (List[int]): Clusters per level, finest first.
        cell (tuple): Cluster size :math:`(h, w)` of the grid clustering.
            (default: :obj:`(2, 2)`)
        seed (int): Seed of every graph's k-means. (default: :obj:`0`)
        n_init (int): k-means restarts. (default: :obj:`10`)
        balanced (bool): Balanced spectral clusters (sizes within one of
            each other, see :func:`spectral_clustering`); spectral only.
            (default: :obj:`False`)
    """
    if method not in METHODS:
        raise ValueError(f"'method' must be one of {METHODS}")
    if balanced and method != 'spectral':
        raise ValueError("'balanced' applies to method='spectral' only")
    N = int(data.num_nodes)
    edge_index = data.edge_index
    device = edge_index.device
    batch = getattr(data, 'batch', None)
    if batch is None:
        batch = torch.zeros(N, dtype=torch.long, device=device)
    edge_weight = getattr(data, 'edge_weight', None)
    feats = data.x.float() if method == 'kmeans' else None
    pos = data.pos if method == 'grid' else None
    out: List[Tensor] = []
    for K in num_clusters:
        if K == 1:
            local = torch.zeros(N, dtype=torch.long, device=device)
        elif method == 'spectral':
            local = spectral_clustering(edge_index, N, K, batch, edge_weight,
                                        n_init=n_init, seed=seed,
                                        balanced=balanced)
        elif method == 'kmeans':
            local = feature_kmeans(feats, K, batch, n_init=n_init, seed=seed)
        else:
            local = grid_clustering(pos, cell, batch)
        if method == 'grid' and int(local.max()) >= K:
            raise ValueError(f"The grid clustering gives {int(local.max())+1}"
                             f" clusters per graph, more than K={K}")
        out.append(local)
        cluster, C, cbatch = compact_clusters(local, batch, K)
        edge_index, edge_weight = coarsen(edge_index, edge_weight, cluster, C)
        if feats is not None:
            feats = scatter(feats, cluster, 0, dim_size=C, reduce='mean')
        if pos is not None:
            h, w = cell
            pos = scatter(torch.stack([
                torch.div(pos[:, 0], h, rounding_mode='floor'),
                torch.div(pos[:, 1], w, rounding_mode='floor')
            ], 1), cluster, 0, dim_size=C, reduce='max')
        batch, N = cbatch, C
    return out
