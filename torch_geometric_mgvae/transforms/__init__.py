"""Graph transforms: structural features, fixed clustering hierarchies and
grid graphs of images."""
from .fixed import FixedHierarchy, get_fixed_clusters
from .grid import graph_to_image, grid_graph, image_to_graph
from .structural import AddStructuralFeatures

__all__ = ['AddStructuralFeatures', 'FixedHierarchy', 'get_fixed_clusters',
           'grid_graph', 'image_to_graph', 'graph_to_image']
