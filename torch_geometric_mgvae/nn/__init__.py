"""PyG operators of the multiresolution graph network: convolutions,
pooling (Select / Connect / Aggregation and MGNPooling), decoders, priors."""
from .cluster import (
    ClusterOutput,
    SelectFixed,
    SelectLearned,
    assignment_entropy,
    balanced_assignment,
    balanced_capacities,
    balanced_cut_kl,
    compact_clusters,
    fixed_cluster_output,
    gather_clusters,
    gumbel_cluster,
    sample_gumbel,
    sinkhorn_balance,
    uniform_kl_bound,
)
from .coarsen import CoarsenEdges, coarsen
from .conv import (
    LocalEncoder,
    MGNConv,
    intra_cluster_edges,
    make_conv,
    mean_norm,
    run_conv,
)
from .decoder import (
    BlockInnerProductDecoder,
    DenseEdgeDecoder,
    InnerProductDecoder,
    onehot_pair_dot,
    pair_recon_loss,
    sample_group_pairs,
    undirected_pairs,
)
from .dense import DenseBlocks, to_dense_blocks
from .fixed import (
    feature_kmeans,
    fixed_hierarchy,
    grid_clustering,
    kmeans,
    spectral_clustering,
    spectral_embedding,
)
from .image import DCGANDecoder
from .pool import ClusterReadout, MGNPooling, PooledGraph
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
    normalize_adjacency,
    pair_features,
    to_second_order,
)

__all__ = [
    # Convolutions
    'MGNConv', 'mean_norm', 'LocalEncoder', 'intra_cluster_edges',
    'make_conv', 'run_conv',
    # Pooling: Select, Connect, Aggregation and the pooling layer
    'SelectLearned', 'SelectFixed', 'ClusterOutput', 'gumbel_cluster',
    'sample_gumbel', 'sinkhorn_balance', 'balanced_assignment',
    'balanced_capacities', 'compact_clusters',
    'fixed_cluster_output', 'gather_clusters', 'balanced_cut_kl',
    'assignment_entropy',
    'uniform_kl_bound', 'CoarsenEdges', 'coarsen', 'ClusterReadout',
    'MGNPooling', 'PooledGraph',
    # Fixed clusterings
    'fixed_hierarchy', 'feature_kmeans', 'grid_clustering', 'kmeans',
    'spectral_clustering', 'spectral_embedding',
    # Decoders
    'DCGANDecoder', 'InnerProductDecoder', 'DenseEdgeDecoder',
    'pair_recon_loss', 'sample_group_pairs', 'undirected_pairs',
    'onehot_pair_dot', 'BlockInnerProductDecoder',
    # Dense blocks, second-order layers
    'DenseBlocks', 'to_dense_blocks', 'NUM_BASIS', 'NUM_CONTRACTIONS',
    'MLPDecoder', 'SecondOrderConv', 'SecondOrderDecoder',
    'SecondOrderEncoder', 'apply_mask', 'contract_to_first_order',
    'contractions_eq3', 'equivariant_basis_2to2', 'normalize_adjacency',
    'pair_features', 'to_second_order',
    # Priors
    'GaussianMRFHead', 'LearnablePrior', 'kl_diag', 'kl_mvn',
    'kl_mvn_standard', 'mrf_sample',
]
