"""Layers of the multiresolution graph network."""
from .cluster import (
                      ClusterOutput,
                      LearnedClustering,
                      balanced_cut_kl,
                      compact_clusters,
                      fixed_cluster_output,
                      gumbel_cluster,
                      sample_gumbel,
                      sinkhorn_balance,
                      uniform_kl_bound,
)
from .coarsen import Coarsen, coarsen
from .conv import LocalEncoder, MeanConv, intra_cluster_edges, mean_aggregate
from .decoder import (
                      InnerProductDecoder,
                      pair_recon_loss,
                      sample_group_pairs,
                      undirected_pairs,
)
from .dense import DenseBlocks, to_dense_blocks
from .fixed import (
                      FixedHierarchy,
                      feature_kmeans,
                      fixed_hierarchy,
                      get_fixed_clusters,
                      grid_clustering,
                      kmeans,
                      spectral_clustering,
                      spectral_embedding,
)
from .pool import ClusterPool
from .prior import (
                      GaussianMRFHead,
                      LearnablePrior,
                      kl_diag,
                      kl_mvn,
                      kl_mvn_standard,
                      mrf_sample,
)
from .second_order import (
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

__all__ = [
    'ClusterOutput', 'LearnedClustering', 'assignment_entropy',
    'balanced_cut_kl',
    'compact_clusters', 'fixed_cluster_output', 'gumbel_cluster',
    'sinkhorn_balance',
    'sample_gumbel', 'uniform_kl_bound', 'Coarsen', 'coarsen',
    'LocalEncoder', 'MeanConv', 'intra_cluster_edges', 'mean_aggregate',
    'InnerProductDecoder', 'pair_recon_loss', 'sample_group_pairs',
    'undirected_pairs', 'FixedHierarchy', 'feature_kmeans',
    'fixed_hierarchy', 'get_fixed_clusters', 'grid_clustering', 'kmeans',
    'spectral_clustering', 'spectral_embedding', 'ClusterPool',
    'DenseBlocks', 'to_dense_blocks', 'GaussianMRFHead', 'LearnablePrior',
    'kl_diag', 'kl_mvn', 'kl_mvn_standard', 'mrf_sample', 'NUM_BASIS',
    'NUM_CONTRACTIONS', 'MLPDecoder', 'SecondOrderConv',
    'SecondOrderDecoder', 'SecondOrderEncoder', 'apply_mask',
    'contract_to_first_order', 'contractions_eq3', 'equivariant_basis_2to2',
    'pair_features', 'to_second_order'
]
