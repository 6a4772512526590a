"""Graph datasets for multiresolution graph generation."""

__all__ = []
