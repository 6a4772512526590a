r"""Fixed clustering hierarchies precomputed as a transform."""
from typing import List, Sequence

from torch import Tensor
from torch_geometric.data import Data
from torch_geometric.transforms import BaseTransform

from torch_geometric_mgvae.nn.checks import check_int, check_int_list
from torch_geometric_mgvae.nn.fixed import METHODS, fixed_hierarchy


class FixedHierarchy(BaseTransform):
    r"""Stores :func:`fixed_hierarchy` of a graph as attributes
    :obj:`fixed_cluster_0`, :obj:`fixed_cluster_1`, ... (they batch
    correctly with :class:`~torch_geometric.loader.DataLoader`; read them
    back with :func:`get_fixed_clusters`).

    Args:
        method (str): :obj:`"spectral"`, :obj:`"kmeans"` or :obj:`"grid"`.
        num_clusters (List[int]): Clusters per level, finest first.
        cell (tuple): Cluster size :math:`(h, w)` of the grid clustering.
            (default: :obj:`(2, 2)`)
        seed (int): Seed of the k-means. (default: :obj:`0`)
        n_init (int): k-means restarts. (default: :obj:`10`)
    """
    def __init__(self, method: str, num_clusters: Sequence[int],
                 cell: Sequence[int] = (2, 2), seed: int = 0,
                 n_init: int = 10):
        if method not in METHODS:
            raise ValueError(f"'method' must be one of {METHODS}")
        self.method = method
        self.num_clusters = check_int_list('num_clusters', num_clusters)
        self.cell = tuple(cell)
        self.seed = seed
        self.n_init = check_int('n_init', n_init)

    def forward(self, data: Data) -> Data:
        levels = fixed_hierarchy(data, self.method, self.num_clusters,
                                 self.cell, self.seed, self.n_init)
        for i, local in enumerate(levels):
            data[f'fixed_cluster_{i}'] = local
        return data

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}({self.method}, '
                f'num_clusters={self.num_clusters})')


def get_fixed_clusters(data: Data) -> List[Tensor]:
    r"""The fixed cluster ids stored by :class:`FixedHierarchy`."""
    out, i = [], 0
    while f'fixed_cluster_{i}' in data:
        out.append(data[f'fixed_cluster_{i}'])
        i += 1
    return out
