"""Multiresolution Graph Networks and Multiresolution Graph VAEs for PyG."""

__version__ = '0.1.0'

__all__ = ['__version__']
