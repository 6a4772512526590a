"""Graph datasets for multiresolution graph generation."""
from torch_geometric_mgvae.datasets.graph_generation import (
    CommunityGraphGenerator,
    CommunitySmall,
    EgoSmall,
    community_graph,
    gdss_split,
    graph_from_edges,
    make_community_dataset,
    read_graph_list,
    write_graph_list,
)
from torch_geometric_mgvae.datasets.mnist import MNISTGraphs, read_idx
from torch_geometric_mgvae.datasets.molecules import (
    MOSES,
    QM9_TARGETS,
    ZINC12K_TARGETS,
    QM9Molecules,
    ZINC12k,
    molecule_dataset_stats,
    penalized_logp,
)
from torch_geometric_mgvae.datasets.planetoid import Planetoid

__all__ = [
    'CommunitySmall',
    'EgoSmall',
    'read_graph_list',
    'write_graph_list',
    'graph_from_edges',
    'gdss_split',
    'community_graph',
    'CommunityGraphGenerator',
    'make_community_dataset',
    'QM9Molecules',
    'ZINC12k',
    'MOSES',
    'QM9_TARGETS',
    'ZINC12K_TARGETS',
    'molecule_dataset_stats',
    'penalized_logp',
    'Planetoid',
    'MNISTGraphs',
    'read_idx',
]
