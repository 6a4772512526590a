"""Evaluation metrics: graph MMD, link prediction, molecules, FID."""
from torch_geometric_mgvae.metrics.fid import (
    InceptionFeatures,
    fid_from_features,
    frechet_distance,
)
from torch_geometric_mgvae.metrics.graph_mmd import (
    KERNEL_SETTINGS,
    clustering_histograms,
    clustering_mmd,
    compute_mmd,
    degree_histograms,
    degree_mmd,
    graph_mmd,
    local_clustering,
    orbit_features,
    orbit_mmd,
    pairwise_kernel,
    to_nx,
)
from torch_geometric_mgvae.metrics.orbits import (
    NUM_ORBITS,
    orbit_counts,
    orbit_counts_many,
)

__all__ = [
    'InceptionFeatures',
    'fid_from_features',
    'frechet_distance',
    'graph_mmd',
    'local_clustering',
    'degree_mmd',
    'clustering_mmd',
    'orbit_mmd',
    'compute_mmd',
    'pairwise_kernel',
    'degree_histograms',
    'clustering_histograms',
    'orbit_features',
    'to_nx',
    'KERNEL_SETTINGS',
    'orbit_counts',
    'orbit_counts_many',
    'NUM_ORBITS',
]
