"""Graph transforms: structural features and fixed clustering hierarchies."""
from .fixed import FixedHierarchy, get_fixed_clusters
from .structural import AddStructuralFeatures

__all__ = ['AddStructuralFeatures', 'FixedHierarchy', 'get_fixed_clusters']
