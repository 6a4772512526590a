"""Layers of the multiresolution graph network."""

__all__ = []
