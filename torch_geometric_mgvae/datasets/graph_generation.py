r"""Graph-generation benchmarks: community-small, ego-small and a generator.

The two datasets are the exact graph lists of `GDSS
<https://arxiv.org/abs/2202.02514>`_ (``data/community_small.pkl``,
``data/ego_small.pkl`` of harryjo97/GDSS), split as GDSS does: the *first*
20% of the stored list is the test set, the rest the training set
(``utils/data_loader.py``: ``test_size = int(0.2 * len(graphs))``).

**Graph list files.** A ``.edgelists.json`` file is a JSON list of
``{"num_nodes": n, "edges": [[u, v], ...]}`` objects (node ids
``0..n-1``); it is read by default and preferred when both formats lie in
one folder. A GDSS ``.pkl`` file (a pickled list of :class:`networkx.Graph`)
is read by default with a restricted unpickler that imports nothing: it
maps :class:`networkx.Graph` to an inert record of its node and adjacency
dictionaries and refuses every other global, so a crafted pickle cannot run
code. Only :obj:`allow_pickle=True` unpickles with :func:`pickle.load`
(with a warning: only for trusted files). :func:`write_graph_list` converts
a list once into the JSON format.

**Validation.** A graph list with bad structure raises one
:class:`ValueError` naming the file and the graph (the position in the
list): not a list, a graph without :obj:`num_nodes` / :obj:`edges`,
:obj:`num_nodes` not a non-negative integer, an edge that is not a pair of
integer node ids, or a node id outside :obj:`0..num_nodes-1`. Bad graphs
are not skipped: dropping one would shift the GDSS split, which is defined
by position. Self loops are dropped and repeated edges merged (both are
well-defined).
"""
import json
import os
import os.path as osp
import pickle
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
from torch import Tensor
from torch_geometric.data import Data
from torch_geometric.datasets.graph_generator import GraphGenerator
from torch_geometric.utils import remove_self_loops, to_undirected

from torch_geometric_mgvae.datasets.base import (
    CachedInMemoryDataset,
    atomic_write,
    warn_user,
)
from torch_geometric_mgvae.nn.checks import check_int

__all__ = [
    'CommunitySmall', 'EgoSmall', 'read_graph_list', 'write_graph_list',
    'graph_from_edges', 'gdss_split', 'community_graph',
    'CommunityGraphGenerator', 'make_community_dataset'
]

GDSS_COMMIT = '24cc490e0c5b39cbd265fda33ab2bc8b528d4454'
GDSS_URL = ('https://raw.githubusercontent.com/harryjo97/GDSS/'
            f'{GDSS_COMMIT}/data')
TEST_FRACTION = 0.2


def _is_int(value: Any) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(
        value, (bool, np.bool_))


def graph_from_edges(num_nodes: int, edges: Sequence[Sequence[int]]) -> Data:
    r"""An undirected :class:`~torch_geometric.data.Data` (both edge
    directions, coalesced, no self loops, no :obj:`x`) from an edge list.

    Raises:
        ValueError: if :obj:`num_nodes` is not a non-negative integer, an
            edge is not a pair of integers, or a node id lies outside
            :obj:`0..num_nodes-1` (the message names the first bad edge).
    """
    if not _is_int(num_nodes) or num_nodes < 0:
        raise ValueError(f"'num_nodes' must be a non-negative integer, got "
                         f"{num_nodes!r}")
    edges = list(edges)
    for i, edge in enumerate(edges):
        if not (isinstance(edge, (list, tuple)) and len(edge) == 2
                and all(_is_int(v) for v in edge)):
            raise ValueError(f'edge {i}: expected a pair [u, v] of integer '
                             f'node ids, got {edge!r}')
        for v in edge:
            if not 0 <= v < num_nodes:
                raise ValueError(
                    f'edge {i}: {list(edge)} refers to node {v}, but the '
                    f'graph has {num_nodes} nodes (ids 0..{num_nodes - 1})')
    edge_index = torch.tensor([[int(u), int(v)] for u, v in edges],
                              dtype=torch.long)
    edge_index = edge_index.view(-1, 2).t().contiguous()
    edge_index, _ = remove_self_loops(edge_index)
    edge_index = to_undirected(edge_index, num_nodes=num_nodes)
    return Data(edge_index=edge_index, num_nodes=int(num_nodes))


def _read_json(path: str) -> List[Data]:
    try:
        with open(path) as f:
            items = json.load(f)
    except ValueError as e:  # JSONDecodeError, UnicodeDecodeError
        raise ValueError(f"'{path}' is not a valid JSON file ({e})") from None
    if not isinstance(items, list):
        raise ValueError(f"'{path}': expected a JSON list of "
                         f'{{"num_nodes": n, "edges": [[u, v], ...]}} '
                         f'objects, got a {type(items).__name__}')
    out = []
    for i, item in enumerate(items):
        try:
            if not isinstance(item, dict) or not {'num_nodes', 'edges'
                                                  } <= set(item):
                raise ValueError('expected an object with "num_nodes" and '
                                 '"edges"')
            if not isinstance(item['edges'], list):
                raise ValueError('"edges" must be a list of [u, v] pairs')
            out.append(graph_from_edges(item['num_nodes'], item['edges']))
        except ValueError as e:
            raise ValueError(f"'{path}', graph {i}: {e}") from None
    return out


class _PickledGraph:
    r"""What the restricted unpickler builds for a pickled
    :class:`networkx.Graph`: the attribute dictionary, nothing else."""
    def __new__(cls, *args: Any, **kwargs: Any) -> '_PickledGraph':
        return super().__new__(cls)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.state: Any = None

    def __setstate__(self, state: Any) -> None:
        self.state = state


class _Global:
    r"""An inert stand-in for an allowed global that is not a graph class
    (:obj:`builtins.dict`, the factories stored in every graph)."""
    def __init__(self, name: str) -> None:
        self.name = name


class _GraphUnpickler(pickle.Unpickler):
    r"""Unpickles lists of :class:`networkx.Graph` without importing or
    calling anything: :meth:`find_class` returns :class:`_PickledGraph` for
    the graph class, an inert :class:`_Global` for :obj:`builtins.dict` and
    refuses every other global (persistent ids are refused by
    :class:`pickle.Unpickler` itself)."""
    graphs = {('networkx.classes.graph', 'Graph')}
    inert = {('builtins', 'dict')}

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in self.graphs:
            return _PickledGraph
        if (module, name) in self.inert:
            return _Global(f'{module}.{name}')
        raise pickle.UnpicklingError(f"refusing the global '{module}.{name}'")


def _graph_state(graph: Any) -> Tuple[List[Any], List[Tuple[Any, Any]]]:
    r"""Nodes (in :obj:`G.nodes()` order) and adjacency pairs of a graph
    read by :class:`_GraphUnpickler` (networkx 2+: :obj:`_node`,
    :obj:`_adj`; networkx 1: :obj:`node`, :obj:`adj`)."""
    state = graph.state if isinstance(graph, _PickledGraph) else None
    if not isinstance(state, dict):
        raise ValueError('not a pickled networkx.Graph')
    nodes = state.get('_node', state.get('node'))
    adj = state.get('_adj', state.get('adj'))
    if not isinstance(nodes, dict) or not isinstance(adj, dict) or not all(
            isinstance(nbrs, dict) for nbrs in adj.values()):
        raise ValueError('a networkx.Graph without node and adjacency '
                         'dictionaries')
    edges = [(u, v) for u, nbrs in adj.items() for v in nbrs]
    return list(nodes), edges


def _read_pickle(path: str, allow_pickle: bool) -> List[Data]:
    how = ('convert it once with write_graph_list(read_graph_list(path, '
           'allow_pickle=True), "<name>.edgelists.json") or pass '
           'allow_pickle=True (mgvae demo: --allow-pickle), only if you '
           'trust the file: full unpickling runs any code it holds')
    with open(path, 'rb') as f:
        if allow_pickle:
            warn_user(f"Unpickling '{path}' with pickle.load "
                      f"(allow_pickle=True): this runs any code the file "
                      f"holds; use it for trusted files only")
            graphs = pickle.load(f)
        else:
            try:
                graphs = _GraphUnpickler(f).load()
            except Exception as e:
                raise ValueError(
                    f"'{path}' is not a plain pickled list of networkx "
                    f"graphs ({e}); the safe reader does not run code from "
                    f"pickles: {how}") from None
    if not isinstance(graphs, (list, tuple)):
        raise ValueError(f"'{path}': expected a pickled list of graphs, "
                         f"got a {type(graphs).__name__}")
    out = []
    for i, graph in enumerate(graphs):
        try:
            if allow_pickle:
                nodes = list(graph.nodes())
                edges = list(graph.edges())
            else:
                nodes, edges = _graph_state(graph)
            index = {v: j for j, v in enumerate(nodes)}
            if any(u not in index or v not in index for u, v in edges):
                raise ValueError('an edge joins a node that is not in the '
                                 'node list')
            out.append(graph_from_edges(len(index), [(index[u], index[v])
                                                     for u, v in edges]))
        except (ValueError, AttributeError, TypeError) as e:
            raise ValueError(f"'{path}', graph {i}: {e}") from None
    return out


def read_graph_list(path: str, allow_pickle: bool = False) -> List[Data]:
    r"""Reads a list of graphs in the GDSS formats.

    Args:
        path (str): A ``.edgelists.json`` file (a JSON list of
            ``{"num_nodes": n, "edges": [[u, v], ...]}``), a GDSS ``.pkl``
            file (a pickled list of :class:`networkx.Graph`, nodes
            renumbered in ``G.nodes()`` order), or a directory holding
            exactly one of them (JSON preferred when both exist).
        allow_pickle (bool, optional): If :obj:`False`, a ``.pkl`` file is
            read by a restricted unpickler that accepts only
            :class:`networkx.Graph` objects and never runs code from the
            file; if :obj:`True`, with :func:`pickle.load` (any pickle,
            e.g. of graph subclasses; runs code the file holds; warns).
            (default: :obj:`False`)

    Returns:
        A list of :class:`~torch_geometric.data.Data` with undirected
        :obj:`edge_index` (both directions) and :obj:`num_nodes`, in the
        stored order.

    Raises:
        ValueError: for a file that is not a valid graph list, naming the
            file and the graph (see the module documentation).
    """
    if osp.isdir(path):
        names = sorted(os.listdir(path))
        jsons = [n for n in names if n.endswith('.edgelists.json')]
        pkls = [n for n in names if n.endswith('.pkl')]
        found = jsons or pkls
        if len(found) != 1:
            raise ValueError(f"Expected exactly one '*.edgelists.json' or "
                             f"'*.pkl' file in '{path}', found {found}")
        path = osp.join(path, found[0])
    if path.endswith('.json'):
        return _read_json(path)
    if path.endswith('.pkl') or path.endswith('.pickle'):
        return _read_pickle(path, allow_pickle)
    raise ValueError(f"Unsupported graph list file '{path}' (expected "
                     f"'.edgelists.json' or '.pkl')")


def write_graph_list(graphs: Sequence[Data], path: str) -> None:
    r"""Writes graphs as a ``.edgelists.json`` file (each undirected edge
    once, :obj:`u < v`, sorted), atomically; :func:`read_graph_list` reads
    it back to the same :obj:`edge_index` for graphs without self loops."""
    items = []
    for data in graphs:
        row, col = data.edge_index
        mask = row < col
        pairs = sorted(set(zip(row[mask].tolist(), col[mask].tolist())))
        items.append({'num_nodes': int(data.num_nodes),
                      'edges': [list(p) for p in pairs]})
    text = json.dumps(items)
    atomic_write(path, lambda f: f.write(text.encode()))


def gdss_split(num_graphs: int, split: str) -> slice:
    r"""The GDSS split: test = the first :obj:`int(0.2 * num_graphs)`
    graphs, train = the rest, all = everything."""
    num_test = int(TEST_FRACTION * num_graphs)
    if split == 'train':
        return slice(num_test, num_graphs)
    if split == 'test':
        return slice(0, num_test)
    if split == 'all':
        return slice(0, num_graphs)
    raise ValueError(f"Invalid split '{split}' (expected 'train', 'test' "
                     f"or 'all')")


class _GDSSGraphList(CachedInMemoryDataset):
    name: str = ''
    splits = ('train', 'test', 'all')

    def __init__(
        self,
        root: str,
        split: str = 'train',
        transform: Optional[Callable] = None,
        pre_transform: Optional[Callable] = None,
        pre_filter: Optional[Callable] = None,
        force_reload: bool = False,
        allow_pickle: bool = False,
    ) -> None:
        self.allow_pickle = bool(allow_pickle)
        super().__init__(root, split, transform, pre_transform, pre_filter,
                         force_reload=force_reload)

    @property
    def raw_help(self) -> str:  # type: ignore[override]
        return (f"Place '{self.name}.edgelists.json' (a JSON list of "
                f'{{"num_nodes": n, "edges": [[u, v], ...]}}) or the GDSS '
                f"file '{self.name}.pkl' ({GDSS_URL}/{self.name}.pkl) in "
                f"the raw folder.")

    def raw_sources(self) -> Dict[str, Optional[str]]:
        # Our networkx-free JSON copy is used when it lies in raw/, else the
        # original GDSS pickle (downloaded if missing).
        json_name = f'{self.name}.edgelists.json'
        if osp.exists(osp.join(self.raw_dir, json_name)):
            return {json_name: None}
        return {f'{self.name}.pkl': f'{GDSS_URL}/{self.name}.pkl'}

    @property
    def processed_file_names(self) -> List[str]:
        return [f'{split}.pt' for split in self.splits]

    def load_processed(self) -> None:
        self.load(osp.join(self.processed_dir, f'{self.split}.pt'))

    def process(self) -> None:
        graphs = read_graph_list(self.raw_paths[0], self.allow_pickle)
        for split in self.splits:
            data_list = graphs[gdss_split(len(graphs), split)]
            if self.pre_filter is not None:
                data_list = [d for d in data_list if self.pre_filter(d)]
            if self.pre_transform is not None:
                data_list = [self.pre_transform(d) for d in data_list]
            self.save(data_list, osp.join(self.processed_dir, f'{split}.pt'))


class CommunitySmall(_GDSSGraphList):
    r"""The community-small dataset of GraphRNN/GDSS: 100 graphs made of two
    Erdős–Rényi communities (:math:`p = 0.7`) joined by a few edges, with
    12 to 20 nodes (only even sizes in the stored list).

    The graphs are the exact list GDSS trains and evaluates on
    (``data/community_small.pkl`` of harryjo97/GDSS). The split follows
    GDSS: the first 20 graphs are the test set, the other 80 the training
    set; :obj:`split="all"` gives all 100 in the stored order. Graphs carry
    :obj:`edge_index` (both directions) and :obj:`num_nodes`, no features.

    **Raw files** (in :obj:`root/raw`): ``community_small.edgelists.json``
    (a networkx-free copy, used when present) or GDSS's
    ``community_small.pkl`` (downloaded if neither is present; read by the
    restricted unpickler unless :obj:`allow_pickle=True`, see
    :func:`read_graph_list`). Without internet and without raw files a
    :class:`RuntimeError` names the expected files.

    **Processed files**: ``root/processed/{train,test,all}.pt`` and
    ``train.manifest.json`` (digests of the raw files); a changed raw file,
    :obj:`pre_transform` or :obj:`pre_filter`, or an unreadable processed
    file, is re-processed with a warning (see
    :class:`~torch_geometric_mgvae.datasets.base.CachedInMemoryDataset`).

    Args:
        root (str): Root directory where the dataset should be saved.
        split (str, optional): :obj:`"train"`, :obj:`"test"` or
            :obj:`"all"`. (default: :obj:`"train"`)
        transform (callable, optional): A function/transform applied to
            every :class:`~torch_geometric.data.Data` on access.
            (default: :obj:`None`)
        pre_transform (callable, optional): A function/transform applied
            before saving to disk. (default: :obj:`None`)
        pre_filter (callable, optional): A function deciding whether a graph
            is kept (applied after splitting). (default: :obj:`None`)
        force_reload (bool, optional): Whether to re-process the dataset.
            (default: :obj:`False`)
        allow_pickle (bool, optional): Whether a raw ``.pkl`` file may be
            read with :func:`pickle.load` (runs code the file holds; only
            for trusted files) instead of the restricted unpickler.
            (default: :obj:`False`)

    **STATS:**

    .. list-table::
        :widths: 10 10 10 10
        :header-rows: 1

        * - #graphs
          - #nodes
          - #edges
          - split (train/test)
        * - 100
          - 12-20 (mean 15.3)
          - 21-60 (mean 35.2)
          - 80/20
    """
    name = 'community_small'


class EgoSmall(_GDSSGraphList):
    r"""The ego-small dataset of GraphRNN/GDSS: 200 one-hop ego graphs of
    the CiteSeer citation network with 4 to 18 nodes (4 to 17 in the stored
    list).

    The graphs are the exact list of GDSS (``data/ego_small.pkl`` of
    harryjo97/GDSS), split as GDSS does: the first 40 graphs are the test
    set, the other 160 the training set. See :class:`CommunitySmall` for the
    arguments and the raw files (``ego_small.edgelists.json`` or
    ``ego_small.pkl``).

    **STATS:**

    .. list-table::
        :widths: 10 10 10 10
        :header-rows: 1

        * - #graphs
          - #nodes
          - #edges
          - split (train/test)
        * - 200
          - 4-17 (mean 6.4)
          - 3-66 (mean 8.7)
          - 160/40
    """
    name = 'ego_small'


def _rand(shape: Tuple[int, ...],
          generator: Optional[torch.Generator]) -> Tensor:
    return torch.rand(shape, generator=generator)


def community_graph(
    num_nodes: int,
    p_intra: float = 0.7,
    p_inter: Optional[float] = None,
    generator: Optional[torch.Generator] = None,
) -> Data:
    r"""Samples a two-community graph as the community-small generator does.

    The nodes :obj:`0..k-1` and :obj:`k..num_nodes-1` (:math:`k =`
    :obj:`num_nodes // 2`) form two Erdős–Rényi :math:`G(n, p_{intra})`
    communities. Then, as in the original generator (GraphRNN's
    ``n_community``, EDP-GNN/GDSS ``data/data_generators.py``), for every
    pair of *connected components* of the union of the two ER graphs each
    node pair gets a bridge edge with probability :obj:`p_inter`, and if no
    bridge was drawn one edge joins the lowest-numbered nodes of the two
    components, so the graph is always connected.

    Differences from the GDSS/EDP-GNN code that produced community-small:

    * GDSS seeds the two ER graphs with the fixed seeds 0 and 1
      (``nx.gnp_random_graph(size, 0.7, seed=i)``), so all graphs of the
      same size share identical communities (the stored dataset holds only 5
      distinct pairs of communities, one per size) and only the bridges are
      random. Here every community is freshly sampled.
    * GDSS draws ``max_nodes`` in 12..20 and uses two communities of
      ``max_nodes // 2`` nodes, so only even sizes 12..20 occur (12, 14, 16,
      18 each with probability 2/9, 20 with 1/9). Here :obj:`num_nodes` is
      used as given, with communities of sizes :obj:`num_nodes // 2` and
      :obj:`num_nodes - num_nodes // 2`.
    * GraphRNN's own ``community`` datasets draw the community sizes once
      and give every graph the same size (3000 copies of one size).

    Args:
        num_nodes (int): Number of nodes (at least 2).
        p_intra (float): Edge probability inside a community.
            (default: :obj:`0.7`, as in GraphRNN and GDSS)
        p_inter (float, optional): Bridge probability per node pair across
            two components. If :obj:`None`, the GDSS value
            :math:`2 \cdot 0.05 / k` with :math:`k =` :obj:`num_nodes // 2`
            (``p_make_a_bridge`` with ``p_inter=0.05``: about
            :math:`0.1\,k` expected bridges). (default: :obj:`None`)
        generator (torch.Generator, optional): Random number generator.
            (default: :obj:`None`)
    """
    num_nodes = int(num_nodes)
    if num_nodes < 2:
        raise ValueError(f'A two-community graph needs at least 2 nodes, '
                         f'got {num_nodes}')
    k = num_nodes // 2
    if p_inter is None:
        p_inter = 2 * 0.05 / k
    community = torch.zeros(num_nodes, dtype=torch.long)
    community[k:] = 1

    # ER inside every community: sample the upper triangle.
    row, col = torch.triu_indices(num_nodes, num_nodes, offset=1)
    same = community[row] == community[col]
    row, col = row[same], col[same]
    keep = _rand((row.numel(), ), generator) < p_intra
    row, col = row[keep], col[keep]

    # Components of the union of the ER graphs (usually the 2 communities).
    adj = coo_matrix((np.ones(row.numel()), (row.numpy(), col.numpy())),
                     shape=(num_nodes, num_nodes))
    num_comp, labels = connected_components(adj, directed=False)
    comps = [np.flatnonzero(labels == c) for c in range(num_comp)]
    comps.sort(key=lambda nodes: nodes[0])
    bridges = []
    for i in range(num_comp):
        for j in range(i + 1, num_comp):
            a = torch.from_numpy(comps[i])
            b = torch.from_numpy(comps[j])
            hit = (_rand((a.numel(), b.numel()), generator) < p_inter)
            src, dst = hit.nonzero(as_tuple=True)
            if src.numel() == 0:
                bridges.append(torch.stack([a[:1], b[:1]]))
            else:
                bridges.append(torch.stack([a[src], b[dst]]))
    edge_index = torch.cat([torch.stack([row, col])] + bridges, dim=1)
    edge_index = to_undirected(edge_index, num_nodes=num_nodes)
    return Data(edge_index=edge_index, num_nodes=num_nodes)


class CommunityGraphGenerator(GraphGenerator):
    r"""Generates community-small style graphs (see :func:`community_graph`),
    drawing the number of nodes of *every* graph independently and
    uniformly from :obj:`[min_nodes, max_nodes]`.

    Args:
        min_nodes (int): Smallest number of nodes. (default: :obj:`12`)
        max_nodes (int): Largest number of nodes. (default: :obj:`20`)
        p_intra (float): Edge probability inside a community.
            (default: :obj:`0.7`)
        p_inter (float, optional): Bridge probability, see
            :func:`community_graph`. (default: :obj:`None`)
        seed (int, optional): Seeds a private :class:`torch.Generator` so
            that the sequence of graphs is reproducible; if :obj:`None`,
            the global torch RNG is used. (default: :obj:`None`)
    """
    def __init__(
        self,
        min_nodes: int = 12,
        max_nodes: int = 20,
        p_intra: float = 0.7,
        p_inter: Optional[float] = None,
        seed: Optional[int] = None,
    ) -> None:
        super().__init__()
        if not 2 <= min_nodes <= max_nodes:
            raise ValueError(f'Need 2 <= min_nodes <= max_nodes, got '
                             f'{min_nodes} and {max_nodes}')
        self.min_nodes = min_nodes
        self.max_nodes = max_nodes
        self.p_intra = p_intra
        self.p_inter = p_inter
        self.seed = seed
        self.generator = (torch.Generator().manual_seed(seed)
                          if seed is not None else None)

    def __call__(self) -> Data:
        num_nodes = int(
            torch.randint(self.min_nodes, self.max_nodes + 1, (1, ),
                          generator=self.generator))
        return community_graph(num_nodes, self.p_intra, self.p_inter,
                               generator=self.generator)

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}(min_nodes={self.min_nodes}, '
                f'max_nodes={self.max_nodes}, p_intra={self.p_intra}, '
                f'p_inter={self.p_inter})')


def make_community_dataset(num_graphs: int = 100, seed: int = 0,
                           min_nodes: int = 12,
                           max_nodes: int = 20) -> List[Data]:
    r"""A reproducible list of :obj:`num_graphs` two-community graphs from
    :class:`CommunityGraphGenerator` (sizes drawn per graph)."""
    num_graphs = check_int('num_graphs', num_graphs, 0)
    gen = CommunityGraphGenerator(min_nodes, max_nodes, seed=seed)
    return [gen() for _ in range(num_graphs)]
