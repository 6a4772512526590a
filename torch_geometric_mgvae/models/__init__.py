"""Multiresolution models: MGN and MGVAE."""

__all__ = []
