import json
import os
import os.path as osp
import shutil

import networkx as nx
import numpy as np
import pytest
import torch
from torch_geometric.datasets.graph_generator import GraphGenerator

import torch_geometric_mgvae.datasets.graph_generation as gg
from torch_geometric_mgvae.datasets import (
    CommunityGraphGenerator,
    CommunitySmall,
    EgoSmall,
    community_graph,
    make_community_dataset,
    read_graph_list,
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

    monkeypatch.setattr(gg, 'download_url', fail)


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

    def fake_download(url, folder):
        calls.append(url)
        path = osp.join(folder, osp.basename(url))
        os.makedirs(folder, exist_ok=True)
        with open(path, 'wb') as f:
            import pickle
            pickle.dump([nx.path_graph(3)] * 5, f)
        return path

    monkeypatch.setattr(gg, 'download_url', fake_download)
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
