r"""The Planetoid citation graphs on the package's cached dataset base."""
import os.path as osp
from typing import Callable, Dict, List, Optional

from torch_geometric.io import read_planetoid_data

from torch_geometric_mgvae.datasets.base import CachedInMemoryDataset

__all__ = ['Planetoid']

PLANETOID_URL = 'https://github.com/kimiyoung/planetoid/raw/master/data'
RAW_PARTS = ('x', 'tx', 'allx', 'y', 'ty', 'ally', 'graph', 'test.index')


class Planetoid(CachedInMemoryDataset):
    r"""The citation graphs :obj:`"Cora"`, :obj:`"CiteSeer"` and
    :obj:`"PubMed"` of the `"Revisiting Semi-Supervised Learning with Graph
    Embeddings" <https://arxiv.org/abs/1603.08861>`_ paper, with the public
    split masks: the graph of PyG's
    :class:`~torch_geometric.datasets.Planetoid` (the same
    :func:`~torch_geometric.io.read_planetoid_data`, the same folders
    :obj:`root/<name>/raw` and :obj:`root/<name>/processed`), on
    :class:`~torch_geometric_mgvae.datasets.base.CachedInMemoryDataset`:
    the processed file is read with :obj:`weights_only=True` only and
    rebuilt when it is unreadable or a raw file changed
    (:obj:`pre_transform.pt` is never unpickled, unlike PyG's, which reads
    it with :obj:`weights_only=False`), and offline without the raw files
    it raises one :class:`RuntimeError` naming them, leaving no empty
    folder behind.

    Args:
        root (str): Root directory; the raw files lie in
            :obj:`root/<name>/raw` (:obj:`ind.<name>.x`, ...).
        name (str): :obj:`"Cora"`, :obj:`"CiteSeer"` or :obj:`"PubMed"`
            (any case).
        transform (callable, optional): Applied to the graph on access.
            (default: :obj:`None`)
        pre_transform (callable, optional): Applied before saving to disk.
            (default: :obj:`None`)
        force_reload (bool, optional): Whether to re-process the dataset.
            (default: :obj:`False`)
    """
    splits = ('public', )
    names = ('cora', 'citeseer', 'pubmed')

    def __init__(self, root: str, name: str,
                 transform: Optional[Callable] = None,
                 pre_transform: Optional[Callable] = None,
                 force_reload: bool = False) -> None:
        if name.lower() not in self.names:
            raise ValueError(f"Unknown Planetoid dataset '{name}' (expected "
                             f"one of Cora, CiteSeer, PubMed)")
        self.name = name
        super().__init__(root, 'public', transform, pre_transform,
                         force_reload=force_reload)

    @property
    def raw_help(self) -> str:  # type: ignore[override]
        return (f"Place the Planetoid files ({PLANETOID_URL}/ind."
                f"{self.name.lower()}.*) in the raw folder.")

    @property
    def raw_dir(self) -> str:
        return osp.join(self.root, self.name, 'raw')

    @property
    def processed_dir(self) -> str:
        return osp.join(self.root, self.name, 'processed')

    def raw_sources(self) -> Dict[str, Optional[str]]:
        names = [f'ind.{self.name.lower()}.{part}' for part in RAW_PARTS]
        return {n: f'{PLANETOID_URL}/{n}' for n in names}

    @property
    def processed_file_names(self) -> List[str]:
        return ['data.pt']

    def process(self) -> None:
        data = read_planetoid_data(self.raw_dir, self.name)
        if self.pre_transform is not None:
            data = self.pre_transform(data)
        self.save([data], self.processed_paths[0])

    def __repr__(self) -> str:
        return f'{self.name}()'
