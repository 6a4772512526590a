r"""Mini-batches of subgraphs of one large graph."""
from torch_geometric_mgvae.loader.partition import (
    PartitionData,
    PartitionLoader,
    smoothed_bisection_partition,
    to_csr,
)

__all__ = ['to_csr', 'smoothed_bisection_partition', 'PartitionData',
           'PartitionLoader']
