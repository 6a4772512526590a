"""Multiresolution Graph Networks and Multiresolution Graph VAEs for PyG."""
from torch_geometric_mgvae.models import MGN, MGVAE, MGNLevel, MGNOutput

__version__ = '0.1.0'

__all__ = ['MGN', 'MGVAE', 'MGNLevel', 'MGNOutput', '__version__']
