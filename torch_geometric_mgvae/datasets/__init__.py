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
)

__all__ = [
    'CommunitySmall',
    'EgoSmall',
    'read_graph_list',
    'graph_from_edges',
    'gdss_split',
    'community_graph',
    'CommunityGraphGenerator',
    'make_community_dataset',
]
