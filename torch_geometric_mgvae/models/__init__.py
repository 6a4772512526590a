"""Multiresolution models: MGN and MGVAE."""
from .autoregressive import AutoregressiveMGN
from .image import ConvVAE, ImageMGVAE, ImageOutput
from .mgn import MGN, MGNLevel, MGNOutput
from .mgvae import MGVAE, kl_normal
from .molecule import MoleculeMGVAE, MoleculeSample

__all__ = ['MGN', 'MGNLevel', 'MGNOutput', 'MGVAE', 'kl_normal',
           'AutoregressiveMGN', 'MoleculeMGVAE', 'MoleculeSample',
           'ImageMGVAE', 'ImageOutput', 'ConvVAE']
