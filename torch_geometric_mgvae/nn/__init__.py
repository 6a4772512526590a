"""Layers of the multiresolution graph network."""
from .cluster import (ClusterOutput, LearnedClustering, balanced_cut_kl,
                      compact_clusters, fixed_cluster_output, gumbel_cluster,
                      sample_gumbel, uniform_kl_bound)
from .coarsen import Coarsen, coarsen
from .conv import LocalEncoder, MeanConv, intra_cluster_edges, mean_aggregate
from .decoder import (InnerProductDecoder, pair_recon_loss,
                      sample_group_pairs, undirected_pairs)
from .fixed import (FixedHierarchy, feature_kmeans, fixed_hierarchy,
                    get_fixed_clusters, grid_clustering, kmeans,
                    spectral_clustering, spectral_embedding)
from .pool import ClusterPool

__all__ = [
    'ClusterOutput', 'LearnedClustering', 'balanced_cut_kl',
    'compact_clusters', 'fixed_cluster_output', 'gumbel_cluster',
    'sample_gumbel', 'uniform_kl_bound', 'Coarsen', 'coarsen',
    'LocalEncoder', 'MeanConv', 'intra_cluster_edges', 'mean_aggregate',
    'InnerProductDecoder', 'pair_recon_loss', 'sample_group_pairs',
    'undirected_pairs', 'FixedHierarchy', 'feature_kmeans',
    'fixed_hierarchy', 'get_fixed_clusters', 'grid_clustering', 'kmeans',
    'spectral_clustering', 'spectral_embedding', 'ClusterPool'
]
