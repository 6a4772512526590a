import json
import os
import os.path as osp
import pickle
import shutil
from urllib.error import URLError

import networkx as nx
import numpy as np
import pytest
import torch
from torch_geometric.datasets.graph_generator import GraphGenerator

import torch_geometric_mgvae.datasets.base as base
import torch_geometric_mgvae.datasets.graph_generation as gg
from torch_geometric_mgvae.datasets import (
    CommunityGraphGenerator,
    CommunitySmall,
    EgoSmall,
    community_graph,
    graph_from_edges,
    make_community_dataset,
    read_graph_list,
    write_graph_list,
)

SHARED = osp.abspath(osp.join(osp.dirname(__file__), '..', '..', '..',
                              'shared', 'data'))
needs_data = pytest.mark.skipif(
    not osp.isdir(osp.join(SHARED, 'community_small')),
    reason='shared GDSS data not available')


def _edge_set(data):
    ei = data.edge_index
    return {(int(u), int(v)) for u, v in ei.t().tolist()}


def _place_raw(tmp_path, name, suffixes):
    root = tmp_path / name
    os.makedirs(root / 'raw')
    for suffix in suffixes:
        shutil.copy(osp.join(SHARED, name, name + suffix), root / 'raw')
    return str(root)


@pytest.fixture
def no_download(monkeypatch):
    def fail(*args, **kwargs):
        raise AssertionError('a download was attempted')

    monkeypatch.setattr(base, 'download_url', fail)


@needs_data
@pytest.mark.parametrize('cls,name,total,num_test,sizes', [
    (CommunitySmall, 'community_small', 100, 20, (12, 20)),
    (EgoSmall, 'ego_small', 200, 40, (4, 18)),
])
@pytest.mark.parametrize('suffix', ['.edgelists.json', '.pkl'])
def test_dataset_splits(tmp_path, no_download, cls, name, total, num_test,
                        sizes, suffix):
    root = _place_raw(tmp_path, name, [suffix])
    train = cls(root, split='train')
    test = cls(root, split='test')
    full = cls(root, split='all')
    assert len(full) == total
    assert len(test) == num_test and len(train) == total - num_test
    assert str(test) == f'{cls.__name__}({num_test}, split=test)'

    # GDSS split: test = the first 20% of the stored list, train = rest.
    stored = read_graph_list(osp.join(root, 'raw', name + suffix))
    for i in range(num_test):
        assert _edge_set(test[i]) == _edge_set(stored[i])
        assert test[i].num_nodes == stored[i].num_nodes
    for i in range(len(train)):
        assert _edge_set(train[i]) == _edge_set(stored[num_test + i])
    # test + train is exactly the stored list, so the splits never share a
    # stored graph (index-disjoint).
    assert len(test) + len(train) == len(stored) == total

    lo, hi = sizes
    for data in full:
        assert lo <= data.num_nodes <= hi
        assert data.x is None
        ei = data.edge_index
        assert (ei[0] != ei[1]).all()
        assert _edge_set(data) == {(v, u) for u, v in _edge_set(data)}


@needs_data
@pytest.mark.parametrize('name', ['community_small', 'ego_small'])
def test_json_and_pickle_agree(name):
    from_json = read_graph_list(
        osp.join(SHARED, name, name + '.edgelists.json'))
    from_pkl = read_graph_list(osp.join(SHARED, name, name + '.pkl'))
    assert len(from_json) == len(from_pkl)
    for a, b in zip(from_json, from_pkl):
        assert a.num_nodes == b.num_nodes
        assert torch.equal(a.edge_index, b.edge_index)


@needs_data
def test_read_graph_list_directory_and_errors(tmp_path):
    root = _place_raw(tmp_path, 'community_small', ['.pkl'])
    graphs = read_graph_list(osp.join(root, 'raw'))
    assert len(graphs) == 100
    assert min(g.num_nodes for g in graphs) == 12
    assert max(g.num_nodes for g in graphs) == 20
    with pytest.raises(ValueError):
        read_graph_list(str(tmp_path))  # no graph file there
    bad = tmp_path / 'graphs.txt'
    bad.write_text('')
    with pytest.raises(ValueError):
        read_graph_list(str(bad))


def _four_nodes(data):
    return data.num_nodes == 4


def test_json_with_isolated_nodes(tmp_path, no_download):
    root = tmp_path / 'mini'
    os.makedirs(root / 'raw')
    items = [{'num_nodes': 3, 'edges': []}, {'num_nodes': 1, 'edges': []}] + \
        [{'num_nodes': 4, 'edges': [[0, 1], [1, 2]]}] * 8
    with open(root / 'raw' / 'community_small.edgelists.json', 'w') as f:
        json.dump(items, f)
    test = CommunitySmall(str(root), split='test')
    assert len(test) == 2
    assert test[0].num_nodes == 3 and test[0].edge_index.size(1) == 0
    train = CommunitySmall(str(root), split='train', force_reload=True,
                           pre_filter=_four_nodes)
    assert len(train) == 8 and train[0].edge_index.size(1) == 4
    # The filter removed both test graphs: an empty split, no crash.
    assert len(CommunitySmall(str(root), split='test',
                              pre_filter=_four_nodes)) == 0
    with pytest.raises(ValueError):
        CommunitySmall(str(root), split='val')


def test_download_url_points_at_gdss(tmp_path, monkeypatch):
    calls = []

    def fake_download(url, folder, log=True, filename=None):
        calls.append(url)
        path = osp.join(folder, filename)
        os.makedirs(folder, exist_ok=True)
        with open(path, 'wb') as f:
            import pickle
            pickle.dump([nx.path_graph(3)] * 5, f)
        return path

    monkeypatch.setattr(base, 'download_url', fake_download)
    ds = EgoSmall(str(tmp_path / 'ego'), split='all')
    assert len(ds) == 5
    assert calls == [
        'https://raw.githubusercontent.com/harryjo97/GDSS/'
        '24cc490e0c5b39cbd265fda33ab2bc8b528d4454/data/ego_small.pkl'
    ]


def _communities_ok(data):
    n = data.num_nodes
    k = n // 2
    g = nx.Graph()
    g.add_nodes_from(range(n))
    g.add_edges_from(data.edge_index.t().tolist())
    assert nx.is_connected(g)
    inter = [(u, v) for u, v in g.edges() if (u < k) != (v < k)]
    intra = g.number_of_edges() - len(inter)
    pairs = k * (k - 1) // 2 + (n - k) * (n - k - 1) // 2
    return len(inter), intra / pairs


def test_community_generator():
    gen = CommunityGraphGenerator(seed=0)
    assert isinstance(gen, GraphGenerator)
    assert str(gen) == ('CommunityGraphGenerator(min_nodes=12, '
                        'max_nodes=20, p_intra=0.7, p_inter=None)')
    graphs = [gen() for _ in range(200)]
    sizes = [g.num_nodes for g in graphs]
    assert min(sizes) >= 12 and max(sizes) <= 20
    assert len(set(sizes)) >= 7  # sizes vary between graphs
    inter, density = zip(*map(_communities_ok, graphs))
    # Two dense communities (p = 0.7) and few bridges (>= 1 each).
    assert 0.62 < float(np.mean(density)) < 0.78
    assert min(inter) >= 1 and float(np.mean(inter)) < 2.5
    for g in graphs[:5]:
        ei = g.edge_index
        assert (ei[0] != ei[1]).all()

    # Reproducible with a seed, different across seeds.
    a = make_community_dataset(10, seed=3)
    b = make_community_dataset(10, seed=3)
    c = make_community_dataset(10, seed=4)
    assert all(torch.equal(x.edge_index, y.edge_index) for x, y in zip(a, b))
    assert any(x.num_nodes != y.num_nodes
               or not torch.equal(x.edge_index, y.edge_index)
               for x, y in zip(a, c))


def test_community_graph_arguments():
    gen = torch.Generator().manual_seed(0)
    g = community_graph(2, generator=gen)
    assert g.num_nodes == 2 and g.edge_index.size(1) == 2  # bridge edge
    g = community_graph(13, p_intra=1.0, p_inter=0.0, generator=gen)
    # Two cliques of 6 and 7 nodes plus the forced bridge 0-6.
    assert g.edge_index.size(1) == 2 * (15 + 21 + 1)
    assert (0, 6) in _edge_set(g)
    # p_intra = 0: every node is a component, all pairs bridged.
    g = community_graph(4, p_intra=0.0, p_inter=0.0, generator=gen)
    assert g.edge_index.size(1) == 2 * 6
    with pytest.raises(ValueError):
        community_graph(1)
    with pytest.raises(ValueError):
        CommunityGraphGenerator(min_nodes=10, max_nodes=5)


class RunsCode:
    r"""Unpickling this runs :obj:`os.system('touch <marker>')`."""
    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.system, (f'touch {self.marker}', ))


def _write_pickle(path, obj):
    os.makedirs(osp.dirname(path), exist_ok=True)
    with open(path, 'wb') as f:
        pickle.dump(obj, f)
    return str(path)


def test_crafted_pickle_is_not_executed(tmp_path, no_download):
    marker = tmp_path / 'ran'
    root = tmp_path / 'community'
    path = _write_pickle(root / 'raw' / 'community_small.pkl',
                         [nx.path_graph(3), RunsCode(marker)])
    refused = f"refusing the global '{os.system.__module__}.system'"
    with pytest.raises(ValueError, match=refused) as e:
        CommunitySmall(str(root))
    assert str(e.value) == (
        f"'{path}' is not a plain pickled list of networkx graphs "
        f"({refused}); the safe reader does not run code from pickles: "
        f"convert it once with write_graph_list(read_graph_list(path, "
        f"allow_pickle=True), \"<name>.edgelists.json\") or pass "
        f"allow_pickle=True (mgvae demo: --allow-pickle), only if you trust "
        f"the file: full unpickling runs any code it holds")
    assert not marker.exists()
    assert os.listdir(root) == ['raw']  # no processed folder left
    # Hidden inside a graph's attributes: refused as well.
    graph = nx.path_graph(3)
    graph.graph['payload'] = RunsCode(marker)
    _write_pickle(path, [graph])
    with pytest.raises(ValueError, match=refused):
        read_graph_list(path)
    assert not marker.exists()
    # The payload is live: the explicit opt-in unpickles in full, with a
    # warning, and then finds no graph.
    with pytest.warns(UserWarning, match=r'allow_pickle=True\): this runs'):
        with pytest.raises(ValueError, match='graph 0: '):
            read_graph_list(_write_pickle(path, [RunsCode(marker)]),
                            allow_pickle=True)
    assert marker.exists()


@needs_data
def test_allow_pickle_reads_the_same_graphs():
    path = osp.join(SHARED, 'ego_small', 'ego_small.pkl')
    safe = read_graph_list(path)
    with pytest.warns(UserWarning, match='allow_pickle=True'):
        full = read_graph_list(path, allow_pickle=True)
    assert len(safe) == len(full) == 200
    for a, b in zip(safe, full):
        assert a.num_nodes == b.num_nodes
        assert torch.equal(a.edge_index, b.edge_index)


GOOD = {'num_nodes': 2, 'edges': [[0, 1]]}


@pytest.mark.parametrize('items,error', [
    ([GOOD, {'num_nodes': 3, 'edges': [[0, 1], [0, 7]]}],
     "graph 1: edge 1: [0, 7] refers to node 7, but the graph has 3 nodes "
     "(ids 0..2)"),
    ([GOOD, {'num_nodes': 3, 'edges': [[-1, 2]]}],
     "graph 1: edge 0: [-1, 2] refers to node -1, but the graph has 3 nodes "
     "(ids 0..2)"),
    ([GOOD, {'num_nodes': -2, 'edges': []}],
     "graph 1: 'num_nodes' must be a non-negative integer, got -2"),
    ([GOOD, {'num_nodes': True, 'edges': []}],
     "graph 1: 'num_nodes' must be a non-negative integer, got True"),
    ([GOOD, {'num_nodes': 3, 'edges': [[0, 1, 2]]}],
     "graph 1: edge 0: expected a pair [u, v] of integer node ids, got "
     "[0, 1, 2]"),
    ([GOOD, {'num_nodes': 3, 'edges': [[0, 1.5]]}],
     "graph 1: edge 0: expected a pair [u, v] of integer node ids, got "
     "[0, 1.5]"),
    ([GOOD, {'num_nodes': 3}],
     'graph 1: expected an object with "num_nodes" and "edges"'),
    ([GOOD, {'num_nodes': 3, 'edges': {'0': 1}}],
     'graph 1: "edges" must be a list of [u, v] pairs'),
    (GOOD, 'expected a JSON list of {"num_nodes": n, "edges": [[u, v], '
     '...]} objects, got a dict'),
])
def test_bad_graph_lists_name_file_and_graph(tmp_path, items, error):
    path = tmp_path / 'g.edgelists.json'
    path.write_text(json.dumps(items))
    with pytest.raises(ValueError) as e:
        read_graph_list(str(path))
    sep = ':' if error.startswith('expected') else ','
    assert str(e.value) == f"'{path}'{sep} {error}"


def test_bad_graph_list_is_not_cached(tmp_path, no_download):
    root = tmp_path / 'community'
    os.makedirs(root / 'raw')
    path = root / 'raw' / 'community_small.edgelists.json'
    path.write_text('[{"num_nodes": 3, "edges": [[0, 1]]}, {"num_nod')
    with pytest.raises(ValueError, match=rf"^'{path}' is not a valid JSON "
                       r"file \(Unterminated string"):
        CommunitySmall(str(root))
    assert os.listdir(root) == ['raw']


def test_changed_graph_list_is_reprocessed(tmp_path, no_download):
    root = tmp_path / 'community'
    os.makedirs(root / 'raw')
    path = root / 'raw' / 'community_small.edgelists.json'
    path.write_text(json.dumps([GOOD] * 5))
    assert len(CommunitySmall(str(root), split='all')) == 5
    path.write_text(json.dumps([{'num_nodes': 3, 'edges': [[0, 2]]}] * 10))
    with pytest.warns(UserWarning, match=r'raw files '
                      r"\['community_small.edgelists.json'\] changed"):
        full = CommunitySmall(str(root), split='all')
    assert len(full) == 10 and full[0].num_nodes == 3
    assert _edge_set(full[0]) == {(0, 2), (2, 0)}
    assert len(CommunitySmall(str(root), split='test')) == 2


def test_offline_without_raw_files(tmp_path, monkeypatch):
    def offline(url, folder, log=True, filename=None):
        raise URLError('no internet')

    monkeypatch.setattr(base, 'download_url', offline)
    root = tmp_path / 'data' / 'community_small'
    with pytest.raises(RuntimeError) as e:
        CommunitySmall(str(root))
    url = f'{gg.GDSS_URL}/community_small.pkl'
    assert str(e.value) == (
        f"CommunitySmall: raw file 'community_small.pkl' is missing in "
        f"'{root / 'raw'}' and downloading {url} failed (URLError: "
        f"<urlopen error no internet>). Expected raw files: "
        f"['community_small.pkl']. Place 'community_small.edgelists.json' "
        f'(a JSON list of {{"num_nodes": n, "edges": [[u, v], ...]}}) or '
        f"the GDSS file 'community_small.pkl' ({url}) in the raw folder.")
    assert os.listdir(tmp_path) == []  # no empty data/<name>/raw left


def test_write_graph_list_round_trip(tmp_path):
    graphs = make_community_dataset(4, seed=1) + [
        graph_from_edges(3, []), graph_from_edges(1, [])]
    path = str(tmp_path / 'c.edgelists.json')
    write_graph_list(graphs, path)
    assert os.listdir(tmp_path) == ['c.edgelists.json']
    back = read_graph_list(path)
    assert [g.num_nodes for g in back] == [g.num_nodes for g in graphs]
    assert all(torch.equal(a.edge_index, b.edge_index)
               for a, b in zip(back, graphs))


def test_demo_data_reads_pickles_safely(tmp_path):
    from torch_geometric_mgvae.cli import build_parser, load_graphs
    marker = tmp_path / 'ran'
    bad = _write_pickle(tmp_path / 'bad.pkl', [RunsCode(marker)])
    args = build_parser().parse_args(['demo', '--data', bad])
    with pytest.raises(ValueError, match='--allow-pickle'):
        load_graphs(args)
    assert not marker.exists()
    good = _write_pickle(tmp_path / 'good.pkl', [nx.cycle_graph(4)] * 10)
    args = build_parser().parse_args(['demo', '--data', good])
    train, test, _ = load_graphs(args)
    assert (len(train), len(test)) == (8, 2)
    args = build_parser().parse_args(['demo', '--data', good,
                                      '--allow-pickle'])
    with pytest.warns(UserWarning, match='allow_pickle=True'):
        assert len(load_graphs(args)[0]) == 8


def test_make_community_dataset_rejects_a_negative_count():
    assert make_community_dataset(0) == []
    with pytest.raises(ValueError, match="'num_graphs'"):
        make_community_dataset(-3)
