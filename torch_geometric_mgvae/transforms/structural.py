r"""Structural node features for graphs without (informative) features."""
from typing import Optional

import torch
from torch_geometric.data import Data
from torch_geometric.transforms import AddRandomWalkPE, BaseTransform
from torch_geometric.transforms.add_positional_encoding import add_node_attr
from torch_geometric.utils import degree


class AddStructuralFeatures(BaseTransform):
    r"""Adds permutation-equivariant structural node features: the degree
    (divided by 10) and the return probabilities of random walks of length
    :math:`1, \ldots,` :obj:`walk_length` (PyG's
    :class:`~torch_geometric.transforms.AddRandomWalkPE`), :math:`1 +`
    :obj:`walk_length` columns. Every other attribute is kept.

    Constant features would make every node look the same to a mean-
    aggregation network (and every node would fall into one cluster). Apply
    it after :class:`~torch_geometric.transforms.ToUndirected` for graphs
    stored with one direction per edge.

    Args:
        walk_length (int): The number of random walk steps.
            (default: :obj:`8`)
        attr_name (str, optional): The attribute to store the features in;
            :obj:`None` concatenates them to :obj:`data.x` (or sets
            :obj:`x` when there is none). (default: :obj:`None`)
    """
    def __init__(self, walk_length: int = 8,
                 attr_name: Optional[str] = None):
        if walk_length < 1:
            raise ValueError("'walk_length' must be at least 1")
        self.walk_length = walk_length
        self.attr_name = attr_name
        self.random_walk = AddRandomWalkPE(walk_length, 'pe')

    def forward(self, data: Data) -> Data:
        N = int(data.num_nodes)
        edge_index = data.edge_index
        deg = degree(edge_index[0], N) if edge_index.numel() else \
            torch.zeros(N, device=edge_index.device)
        pe = self.random_walk(
            Data(edge_index=edge_index, edge_weight=data.get('edge_weight'),
                 num_nodes=N)).pe.view(N, self.walk_length)
        feats = torch.cat([deg.view(-1, 1) / 10.0, pe.to(deg.dtype)], dim=-1)
        return add_node_attr(data, feats, attr_name=self.attr_name)

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}(walk_length={self.walk_length})')
