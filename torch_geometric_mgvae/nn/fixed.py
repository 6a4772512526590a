r"""Fixed clusterings of the paper's appendix (D.1, D.6): spectral, k-means
on features and a grid (quadtree) clustering, and whole fixed hierarchies."""
from typing import List, Optional, Sequence

import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spla
import torch
from torch import Tensor
from torch_geometric.data import Data
from torch_geometric.utils import scatter

from torch_geometric_mgvae.nn.cluster import compact_clusters
from torch_geometric_mgvae.nn.coarsen import coarsen

METHODS = ('spectral', 'kmeans', 'grid')


def kmeans(x: Tensor, k: int, num_iters: int = 50,
           generator: Optional[torch.Generator] = None) -> Tensor:
    r"""Lloyd's k-means with k-means++ seeding on the rows of :obj:`x`.

    With :math:`n \le k` points, every point is its own cluster. Returns the
    cluster id of every row in :math:`\{0, \ldots, \min(n, k) - 1\}`, shape
    :obj:`[n]`.
    """
    n = x.size(0)
    if n <= k:
        return torch.arange(n, device=x.device)
    x = x.double()
    first = torch.randint(n, (1, ), generator=generator).item()
    centers = [x[first]]
    d2 = ((x - centers[0])**2).sum(-1)
    for _ in range(1, k):
        total = d2.sum()
        if total <= 0:  # fewer distinct points than k
            idx = torch.randint(n, (1, ), generator=generator).item()
        else:
            idx = torch.multinomial(d2 / total, 1, generator=generator).item()
        centers.append(x[idx])
        d2 = torch.minimum(d2, ((x - x[idx])**2).sum(-1))
    c = torch.stack(centers)  # [k, F]
    assign = torch.cdist(x, c).argmin(-1)
    for _ in range(num_iters):
        sums = scatter(x, assign, 0, dim_size=k, reduce='sum')
        cnt = torch.bincount(assign, minlength=k).view(-1, 1)
        c = torch.where(cnt > 0, sums / cnt.clamp(min=1), c)
        new = torch.cdist(x, c).argmin(-1)
        if torch.equal(new, assign):
            break
        assign = new
    # Relabel to 0..k'-1 in order of first appearance (canonical labels).
    first = torch.full((k, ), n, dtype=torch.long)
    first = first.scatter_reduce(0, assign, torch.arange(n), reduce='amin')
    rank = torch.empty(k, dtype=torch.long)
    rank[torch.argsort(first)] = torch.arange(k)
    return rank[assign]


def spectral_embedding(edge_index: Tensor, num_nodes: int,
                       num_eigs: int = 10) -> Tensor:
    r"""The node embedding of the paper's spectral clustering (D.1):
    :math:`(\xi_1(i)/\lambda_1, \ldots, \xi_{n}(i)/\lambda_{n})` from the
    eigenpairs of the random-walk Laplacian
    :math:`\mathcal{L} = D^{-1}(D - A)` with the smallest non-trivial
    eigenvalues (:math:`n =` :obj:`num_eigs`). Computed sparsely (ARPACK on
    :math:`D^{-1/2} A D^{-1/2}`) for large graphs. Eigenvalues are clamped
    at :math:`10^{-3}` (disconnected graphs)."""
    n = num_nodes
    k = min(num_eigs + 1, n)
    if n <= 1 or edge_index.numel() == 0:
        return torch.zeros(n, max(k - 1, 1))
    row, col = edge_index.cpu().numpy()
    A = sp.coo_matrix((np.ones(row.size), (row, col)), shape=(n, n)).tocsr()
    A = ((A + A.T) > 0).astype(np.float64)
    deg = np.asarray(A.sum(1)).ravel()
    dinv = np.where(deg > 0, 1.0 / np.sqrt(np.maximum(deg, 1e-12)), 0.0)
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
    return torch.from_numpy(np.ascontiguousarray(emb)).float()


def _per_graph(batch: Tensor, num_graphs: int):
    for b in range(num_graphs):
        yield b, (batch == b).nonzero().view(-1)


def spectral_clustering(edge_index: Tensor, num_nodes: int, k: int,
                        batch: Optional[Tensor] = None, num_eigs: int = 10,
                        seed: int = 0) -> Tensor:
    r"""Spectral clustering of every graph of a batch into :math:`k`
    clusters: k-means on :func:`spectral_embedding` (paper D.1). Returns
    local cluster ids, shape :obj:`[N]`."""
    if batch is None:
        batch = torch.zeros(num_nodes, dtype=torch.long)
    num_graphs = int(batch.max()) + 1 if batch.numel() else 0
    out = torch.zeros(num_nodes, dtype=torch.long)
    gen = torch.Generator().manual_seed(seed)
    glob2loc = torch.full((num_nodes, ), -1, dtype=torch.long)
    for b, idx in _per_graph(batch, num_graphs):
        if idx.numel() == 0:
            continue
        glob2loc[idx] = torch.arange(idx.numel())
        ei = glob2loc[edge_index[:, batch[edge_index[0]] == b]]
        emb = spectral_embedding(ei, idx.numel(), num_eigs)
        out[idx] = kmeans(emb, k, generator=gen)
    return out


def feature_kmeans(x: Tensor, k: int, batch: Optional[Tensor] = None,
                   pca_dim: int = 10, seed: int = 0) -> Tensor:
    r"""k-means clustering of every graph on its node features compressed
    to :obj:`pca_dim` dimensions by PCA (paper D.1). Returns local cluster
    ids, shape :obj:`[N]`."""
    if batch is None:
        batch = torch.zeros(x.size(0), dtype=torch.long)
    num_graphs = int(batch.max()) + 1 if batch.numel() else 0
    out = torch.zeros(x.size(0), dtype=torch.long)
    gen = torch.Generator().manual_seed(seed)
    for _, idx in _per_graph(batch, num_graphs):
        feats = x[idx].double()
        feats = feats - feats.mean(0, keepdim=True)
        q = min(pca_dim, feats.size(0), feats.size(1))
        if q > 0 and feats.abs().sum() > 0:
            _, _, V = torch.linalg.svd(feats, full_matrices=False)
            feats = feats @ V[:q].t()
        out[idx] = kmeans(feats, k, generator=gen)
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
        batch = torch.zeros(pos.size(0), dtype=torch.long)
    h, w = cell
    num_graphs = int(batch.max()) + 1 if batch.numel() else 0
    width = scatter(pos[:, 1], batch, 0, dim_size=num_graphs, reduce='max')
    cols = torch.div(width + w, w, rounding_mode='floor')  # ceil((W) / w)
    return (torch.div(pos[:, 0], h, rounding_mode='floor') * cols[batch] +
            torch.div(pos[:, 1], w, rounding_mode='floor'))


def fixed_hierarchy(data: Data, method: str,
                    num_clusters: Sequence[int], cell: Sequence[int] = (2, 2),
                    seed: int = 0) -> List[Tensor]:
    r"""Precomputes a whole fixed clustering hierarchy of one graph (or a
    batch): the local cluster ids of every level, finest first, in the order
    :class:`~torch_geometric_mgvae.MGN` builds the coarse graphs (so they
    can be passed as :obj:`clusters=`). Coarse levels are clustered on the
    coarsened graph (spectral), on the cluster means of the (PCA) features
    (k-means) or on the coarsened grid.

    Args:
        data (Data): A graph with :obj:`edge_index`, and :obj:`x` for
            :obj:`"kmeans"` or integer :obj:`pos` for :obj:`"grid"`.
        method (str): :obj:`"spectral"`, :obj:`"kmeans"` or :obj:`"grid"`.
        num_clusters (List[int]): Clusters per level, finest first.
        cell (tuple): Cluster size :math:`(h, w)` of the grid clustering.
        seed (int): Seed of the k-means initialisation.
    """
    if method not in METHODS:
        raise ValueError(f"'method' must be one of {METHODS}")
    N = int(data.num_nodes)
    batch = getattr(data, 'batch', None)
    if batch is None:
        batch = torch.zeros(N, dtype=torch.long)
    edge_index = data.edge_index
    feats = data.x.float() if method == 'kmeans' else None
    pos = data.pos if method == 'grid' else None
    out: List[Tensor] = []
    for K in num_clusters:
        if K == 1:
            local = torch.zeros(N, dtype=torch.long)
        elif method == 'spectral':
            local = spectral_clustering(edge_index, N, K, batch, seed=seed)
        elif method == 'kmeans':
            local = feature_kmeans(feats, K, batch, seed=seed)
        else:
            local = grid_clustering(pos, cell, batch)
        local = local.clamp(max=K - 1) if method != 'grid' else local
        if method == 'grid' and int(local.max()) >= K:
            raise ValueError(f"The grid clustering gives {int(local.max())+1}"
                             f" clusters per graph, more than K={K}")
        out.append(local)
        cluster, C, cbatch = compact_clusters(local, batch, K)
        edge_index, _ = coarsen(edge_index, None, cluster, C)
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
