r"""MNIST digits as grid graphs (the image experiment of the paper, D.6)."""
import gzip
import os.path as osp
from typing import Callable, Dict, List, Optional

import numpy as np
import torch
from torch import Tensor
from torch_geometric.data import Data

from torch_geometric_mgvae.datasets.base import CachedInMemoryDataset
from torch_geometric_mgvae.transforms.grid import grid_graph

__all__ = ['MNISTGraphs', 'read_idx']

#: The mirror torchvision downloads MNIST from.
MNIST_URL = 'https://ossci-datasets.s3.amazonaws.com/mnist'
IDX_FILES = {
    'train': ('train-images-idx3-ubyte.gz', 'train-labels-idx1-ubyte.gz'),
    'test': ('t10k-images-idx3-ubyte.gz', 't10k-labels-idx1-ubyte.gz'),
}
#: The MNIST training images restored from PNG copies (within one grey
#: level of MNIST; see ``shared/data/mnist/SOURCE.txt``), used for the
#: training split when the exact idx file is not in the raw folder.
RECONSTRUCTED = 'mnist_train_reconstructed.npz'
_MAGIC = {2049: 1, 2051: 3}  # labels: 1 dimension, images: 3


def read_idx(path: str) -> np.ndarray:
    r"""Reads an MNIST idx file (``.gz`` or plain) of unsigned bytes:
    labels :math:`(n)` or images :math:`(n, 28, 28)`, checked against the
    header (a :class:`ValueError` names the file otherwise)."""
    opener = gzip.open if path.endswith('.gz') else open
    try:
        with opener(path, 'rb') as f:
            raw = f.read()
    except (OSError, EOFError) as e:
        raise ValueError(f"'{path}' cannot be read ({e})") from e
    if len(raw) < 8:
        raise ValueError(f"'{path}' is not an MNIST idx file (too short)")
    magic = int.from_bytes(raw[:4], 'big')
    if magic not in _MAGIC:
        raise ValueError(f"'{path}' is not an MNIST idx file of unsigned "
                         f"bytes (magic number {magic})")
    ndim = _MAGIC[magic]
    dims = [int.from_bytes(raw[4 + 4 * i:8 + 4 * i], 'big')
            for i in range(ndim)]
    offset = 4 + 4 * ndim
    if len(raw) != offset + int(np.prod(dims)):
        raise ValueError(f"'{path}' holds {len(raw) - offset} bytes for "
                         f"shape {tuple(dims)} (truncated?)")
    return np.frombuffer(raw, dtype=np.uint8, offset=offset).reshape(dims)


def _read_reconstructed(path: str):
    try:
        with np.load(path, allow_pickle=False) as f:
            return f['x_train'], f['y_train']
    except (OSError, ValueError, KeyError) as e:
        raise ValueError(f"'{path}' is not the reconstructed MNIST training "
                         f"set (x_train, y_train) ({e})") from e


class MNISTGraphs(CachedInMemoryDataset):
    r"""The MNIST digits (LeCun et al.) as grid graphs, as in the image
    experiment of the `"Multiresolution Equivariant Graph Variational
    Autoencoder" <https://arxiv.org/abs/2106.00967>`_ paper (D.6): every
    :math:`28 \times 28` image is padded with two zero pixels on every side
    to :math:`32 \times 32` and becomes a 4-neighbour
    :func:`~torch_geometric_mgvae.transforms.grid_graph` of 1,024 nodes
    and 3,968 directed edges, with the intensity in :math:`[0, 1]` as the
    node feature :obj:`x` :math:`(1024, 1)`, the integer pixel position
    :math:`(r, c)` as :obj:`pos` and the digit as :obj:`y`.

    The images are stored once as bytes (every graph shares the grid), and
    a graph is built when it is accessed; :attr:`images` gives them as one
    tensor (e.g. for convolutional baselines and FID). Combine with
    :obj:`transform=FixedHierarchy('grid', [256, 64])` for the quadtree of
    the paper (or apply that transform to collated batches, which is
    faster).

    **Raw files** (in :obj:`root/raw`): the idx files
    ``t10k-images-idx3-ubyte.gz``, ``t10k-labels-idx1-ubyte.gz``,
    ``train-images-idx3-ubyte.gz`` and ``train-labels-idx1-ubyte.gz``
    (downloaded from the mirror torchvision uses when missing). When
    ``train-images-idx3-ubyte.gz`` is absent but
    ``mnist_train_reconstructed.npz`` (arrays :obj:`x_train`
    :math:`(60000, 28, 28)` and :obj:`y_train`) lies there, the training
    split is read from it instead (:attr:`exact_train` is then
    :obj:`False`). Without internet and without raw files a
    :class:`RuntimeError` names the expected files.

    **Processed files**: ``root/processed/{train,test}.pt`` (images and
    labels) and ``train.manifest.json`` (digests of the raw files); see
    :class:`~torch_geometric_mgvae.datasets.base.CachedInMemoryDataset`.

    Args:
        root (str): Root directory where the dataset should be saved.
        split (str, optional): :obj:`"train"` (60,000 images) or
            :obj:`"test"` (10,000). (default: :obj:`"train"`)
        transform (callable, optional): A function/transform applied to
            every :class:`~torch_geometric.data.Data` on access.
            (default: :obj:`None`)
        pre_filter (callable, optional): A function deciding whether an
            image's graph is kept. (default: :obj:`None`)
        force_reload (bool, optional): Whether to re-process the dataset.
            (default: :obj:`False`)

    A :obj:`pre_transform` is refused: the processed files hold the images,
    not the graphs (use :obj:`transform`).

    **STATS:**

    .. list-table::
        :widths: 10 10 10 10
        :header-rows: 1

        * - #graphs
          - #nodes
          - #edges
          - #classes
        * - 70,000 (60,000 / 10,000)
          - 1,024
          - 3,968
          - 10
    """
    splits = ('train', 'test')
    #: Side of the padded images.
    size = 32
    raw_help = (f"Place the MNIST idx files "
                f"({', '.join(IDX_FILES['train'] + IDX_FILES['test'])}, "
                f"from {MNIST_URL}) in the raw folder; for the training "
                f"split, '{RECONSTRUCTED}' may stand in for the training "
                f"idx files.")

    def __init__(self, root: str, split: str = 'train',
                 transform: Optional[Callable] = None,
                 pre_transform: Optional[Callable] = None,
                 pre_filter: Optional[Callable] = None,
                 force_reload: bool = False) -> None:
        if pre_transform is not None:
            raise ValueError(
                "MNISTGraphs stores the images, not the graphs, so it takes "
                "no 'pre_transform'; pass it as 'transform' (applied on "
                "access), or apply it to collated batches")
        super().__init__(root, split, transform, None, pre_filter,
                         force_reload=force_reload)
        edge_index, pos = grid_graph(self.size, self.size)
        self._edge_index, self._pos = edge_index, pos

    def raw_sources(self) -> Dict[str, Optional[str]]:
        out: Dict[str, Optional[str]] = {
            name: f'{MNIST_URL}/{name}' for name in IDX_FILES['test']
        }
        if not osp.exists(osp.join(self.raw_dir, IDX_FILES['train'][0])) \
                and osp.exists(osp.join(self.raw_dir, RECONSTRUCTED)):
            out[RECONSTRUCTED] = None
        else:
            out.update({name: f'{MNIST_URL}/{name}'
                        for name in IDX_FILES['train']})
        return out

    @property
    def exact_train(self) -> bool:
        r"""Whether the training images are MNIST's idx file (:obj:`False`:
        the reconstruction within one grey level)."""
        return RECONSTRUCTED not in self.raw_sources()

    @property
    def processed_file_names(self) -> List[str]:
        return [f'{split}.pt' for split in self.splits]

    def _read_split(self, split: str):
        if split == 'train' and not self.exact_train:
            images, labels = _read_reconstructed(
                osp.join(self.raw_dir, RECONSTRUCTED))
        else:
            img_name, lbl_name = IDX_FILES[split]
            images = read_idx(osp.join(self.raw_dir, img_name))
            labels = read_idx(osp.join(self.raw_dir, lbl_name))
        if images.ndim != 3 or images.shape[1:] != (28, 28) or \
                images.dtype != np.uint8:
            raise ValueError(f"The {split} images must be uint8 of shape "
                             f"(n, 28, 28) (got {images.dtype} "
                             f"{images.shape})")
        if labels.shape != (images.shape[0], ):
            raise ValueError(f"{labels.shape[0]} {split} labels for "
                             f"{images.shape[0]} images")
        pad = (self.size - 28) // 2
        padded = np.zeros((images.shape[0], self.size, self.size), np.uint8)
        padded[:, pad:pad + 28, pad:pad + 28] = images
        return torch.from_numpy(padded), torch.from_numpy(
            labels.astype(np.int64))

    def process(self) -> None:
        for split in self.splits:
            images, labels = self._read_split(split)
            if self.pre_filter is not None:
                edge_index, pos = grid_graph(self.size, self.size)
                keep = [i for i in range(images.size(0)) if self.pre_filter(
                    self._graph(images[i], labels[i], edge_index, pos))]
                images, labels = images[keep], labels[keep]
            self.save_file(dict(images=images.contiguous(), labels=labels),
                           osp.join(self.processed_dir, f'{split}.pt'))

    def load_processed(self) -> None:
        from torch_geometric_mgvae.datasets.base import CacheError
        path = osp.join(self.processed_dir, f'{self.split}.pt')
        out = self.load_file(path)
        if not (isinstance(out, dict) and isinstance(
                out.get('images'), Tensor) and isinstance(
                    out.get('labels'), Tensor)
                and out['images'].dtype == torch.uint8
                and out['images'].shape[1:] == (self.size, self.size)
                and out['labels'].shape == out['images'].shape[:1]):
            raise CacheError(path, 'not an MNISTGraphs file')
        self._images, self._labels = out['images'], out['labels']

    # Access ##################################################################

    @staticmethod
    def _graph(image: Tensor, label: Tensor, edge_index: Tensor,
               pos: Tensor) -> Data:
        x = image.reshape(-1, 1).to(torch.get_default_dtype()) / 255.0
        return Data(x=x, edge_index=edge_index.clone(), pos=pos.clone(),
                    y=label.view(1))

    def len(self) -> int:
        return self._images.size(0)

    def get(self, idx: int) -> Data:
        return self._graph(self._images[idx], self._labels[idx],
                           self._edge_index, self._pos)

    @property
    def images(self) -> Tensor:
        r"""The images of this dataset (its indices, in order) as
        intensities in :math:`[0, 1]`, :math:`(n, 1, 32, 32)`."""
        idx = torch.as_tensor(self.indices(), dtype=torch.long)
        return (self._images[idx].unsqueeze(1).to(torch.get_default_dtype())
                / 255.0)

    @property
    def labels(self) -> Tensor:
        r"""The digits of this dataset (its indices, in order), :math:`(n)`."""
        idx = torch.as_tensor(self.indices(), dtype=torch.long)
        return self._labels[idx]

    @property
    def num_classes(self) -> int:
        return 10
