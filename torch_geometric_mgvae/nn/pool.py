r"""Permutation-invariant pooling of clusters into next-level nodes."""
import torch
import torch.nn.functional as F
from torch import Tensor
from torch_geometric.typing import OptTensor
from torch_geometric.utils import scatter


class ClusterPool(torch.nn.Module):
    r"""The pooling network :math:`\mathbf{p}` of the paper (Def. 4): a
    Deep Sets readout of every cluster,

    .. math::
        \tilde{\mathbf{z}}_k = \rho\left( \frac{\sum_{i \in \mathcal{V}_k}
        w_i \, \phi(\mathbf{z}_i)}{\sum_{i \in \mathcal{V}_k} w_i} \right)

    with :math:`\phi, \rho` one-layer MLPs and :math:`w_i` the
    straight-through assignment weights (exactly 1 in the forward pass, so
    this is a mean; the gradient reaches the clustering). It is permutation
    invariant within each cluster.

    Args:
        in_channels (int): Size of the node latents.
        out_channels (int): Size of the cluster features.
        hidden_channels (int, optional): Size of :math:`\phi`'s output
            (default: :obj:`out_channels`).

    Shapes:
        - **input:** node latents :math:`(N, F)`, cluster index :math:`(N)`,
          weights :math:`(N)` *(optional)*
        - **output:** cluster features :math:`(C, F_{out})`
    """
    def __init__(self, in_channels: int, out_channels: int,
                 hidden_channels: int = None):
        super().__init__()
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.hidden_channels = hidden_channels or out_channels
        self.phi = torch.nn.Linear(in_channels, self.hidden_channels)
        self.rho = torch.nn.Linear(self.hidden_channels, out_channels)
        self.reset_parameters()

    def reset_parameters(self):
        self.phi.reset_parameters()
        self.rho.reset_parameters()

    def forward(self, z: Tensor, cluster: Tensor, num_clusters: int,
                weight: OptTensor = None) -> Tensor:
        h = F.relu(self.phi(z))
        if weight is None:
            agg = scatter(h, cluster, 0, dim_size=num_clusters, reduce='mean')
        else:
            num = scatter(h * weight.view(-1, 1), cluster, 0,
                          dim_size=num_clusters, reduce='sum')
            den = scatter(weight, cluster, 0, dim_size=num_clusters,
                          reduce='sum')
            agg = num / den.clamp(min=1e-12).view(-1, 1)
        return self.rho(agg)

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}({self.in_channels}, '
                f'{self.out_channels})')
