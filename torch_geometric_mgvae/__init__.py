"""Multiresolution Graph Networks and Multiresolution Graph VAEs for PyG."""
import os

# OpenMP threads that spin while waiting make 2-thread CPU steps up to ~70x
# slower on small shared machines (measured in benchmark/scale.py). The
# setting only takes effect if torch is not imported yet; set the variable
# yourself to override it.
os.environ.setdefault('OMP_WAIT_POLICY', 'PASSIVE')

from torch_geometric_mgvae.models import (
    MGN,
    MGVAE,
    AutoregressiveMGN,
    MGNLevel,
    MGNOutput,
)

__version__ = '0.1.0'

__all__ = [
    'MGN', 'MGVAE', 'MGNLevel', 'MGNOutput', 'AutoregressiveMGN',
    '__version__'
]
