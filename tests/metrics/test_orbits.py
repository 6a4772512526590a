import itertools

import networkx as nx
import numpy as np
import pytest
import torch
from torch_geometric.data import Data

from torch_geometric_mgvae.metrics.orbits import (
    NUM_ORBITS,
    PATTERN_OVERLAP,
    edge_arrays,
    orbit_counts,
    orbit_counts_many,
)


def _orbit_of(num_edges, degrees, v):
    r"""ORCA orbit of node v in a connected graphlet on len(degrees) nodes,
    identified from the edge count and the degree pattern."""
    k, dv, ds = len(degrees), degrees[v], sorted(degrees.values())
    if k == 2:
        return 0
    if k == 3:
        return 3 if num_edges == 3 else (1 if dv == 1 else 2)
    if num_edges == 3:
        if ds == [1, 1, 2, 2]:  # path P4
            return 4 if dv == 1 else 5
        return 6 if dv == 1 else 7  # star K_{1,3}
    if num_edges == 4:
        if ds == [2, 2, 2, 2]:  # cycle C4
            return 8
        return {1: 9, 2: 10, 3: 11}[dv]  # paw
    if num_edges == 5:  # diamond
        return 12 if dv == 2 else 13
    return 14  # K4


def brute_force_orbits(graph: nx.Graph) -> np.ndarray:
    nodes = list(graph.nodes())
    index = {v: i for i, v in enumerate(nodes)}
    out = np.zeros((len(nodes), NUM_ORBITS), dtype=np.int64)
    for k in (2, 3, 4):
        for subset in itertools.combinations(nodes, k):
            sub = graph.subgraph(subset)
            if not nx.is_connected(sub):
                continue
            degrees = dict(sub.degree())
            for v in subset:
                out[index[v], _orbit_of(sub.number_of_edges(), degrees,
                                        v)] += 1
    return out


@pytest.mark.parametrize('p', [0.15, 0.35, 0.6, 0.85])
def test_orbit_counts_match_brute_force(p):
    rng = np.random.default_rng(int(p * 100))
    for _ in range(12):
        n = int(rng.integers(5, 13))
        graph = nx.gnp_random_graph(n, p, seed=int(rng.integers(1 << 30)))
        assert np.array_equal(orbit_counts(graph), brute_force_orbits(graph))


def test_orbit_counts_many_equals_single():
    graphs = [nx.gnp_random_graph(n, 0.5, seed=n) for n in (4, 7, 9, 1, 0)]
    many = orbit_counts_many(graphs)
    assert len(many) == len(graphs)
    for graph, counts in zip(graphs, many):
        assert np.array_equal(counts, orbit_counts(graph))


def test_pattern_overlap_table():
    # Recompute the overlap table: for every 4-node graphlet and node
    # position, count the connected spanning edge-subsets by orbit.
    reps = {
        4: [(0, 1), (1, 2), (2, 3)],
        6: [(0, 1), (0, 2), (0, 3)],
        8: [(0, 1), (1, 2), (2, 3), (3, 0)],
        9: [(0, 1), (1, 2), (2, 3), (3, 1)],
        12: [(0, 1), (1, 2), (2, 3), (3, 0), (0, 2)],
        14: list(itertools.combinations(range(4), 2)),
    }
    table = {}
    for edges in reps.values():
        full = nx.Graph(edges)
        deg = dict(full.degree())
        for x in range(4):
            row = {}
            for k in range(3, len(edges) + 1):
                for sub in itertools.combinations(edges, k):
                    g = nx.Graph(list(sub))
                    if g.number_of_nodes() < 4 or not nx.is_connected(g):
                        continue
                    o = _orbit_of(k, dict(g.degree()), x)
                    row[o] = row.get(o, 0) + 1
            table[_orbit_of(len(edges), deg, x)] = row
    assert table == PATTERN_OVERLAP


def _row(**entries):
    out = np.zeros(NUM_ORBITS, dtype=np.int64)
    for key, value in entries.items():
        out[int(key[1:])] = value
    return out


def test_hand_cases():
    # Triangle: degree 2, no 3-paths, one triangle.
    tri = orbit_counts(nx.complete_graph(3))
    assert (tri == _row(o0=2, o3=1)).all()

    # Star K_{1,3} (centre 0): centre is the middle of 3 paths P3 and the
    # centre of one star; each leaf ends 2 paths P3 and is a star leaf.
    star = orbit_counts(nx.star_graph(3))
    assert (star[0] == _row(o0=3, o2=3, o7=1)).all()
    for leaf in (1, 2, 3):
        assert (star[leaf] == _row(o0=1, o1=2, o6=1)).all()

    # Path P4 0-1-2-3: ends are orbit 4, inner nodes orbit 5.
    path = orbit_counts(nx.path_graph(4))
    assert (path[0] == _row(o0=1, o1=1, o4=1)).all()
    assert (path[1] == _row(o0=2, o1=1, o2=1, o5=1)).all()

    # K4: every node in 3 edges, 3 triangles, 1 clique.
    k4 = orbit_counts(nx.complete_graph(4))
    assert (k4 == _row(o0=3, o3=3, o14=1)).all()

    # Cycle C4: 2 edges, ends 2 P3s, middle of 1 P3, one 4-cycle.
    c4 = orbit_counts(nx.cycle_graph(4))
    assert (c4 == _row(o0=2, o1=2, o2=1, o8=1)).all()

    # Paw: triangle 0-1-2 plus pendant 3 on node 0.
    paw = orbit_counts(nx.Graph([(0, 1), (1, 2), (2, 0), (0, 3)]))
    assert paw[3, 9] == 1 and paw[1, 10] == 1 and paw[0, 11] == 1

    # Diamond: 4-cycle 0-1-2-3 with chord 0-2.
    diamond = orbit_counts(nx.Graph([(0, 1), (1, 2), (2, 3), (3, 0),
                                     (0, 2)]))
    assert diamond[1, 12] == diamond[3, 12] == 1
    assert diamond[0, 13] == diamond[2, 13] == 1


def test_degenerate_graphs_and_inputs():
    assert orbit_counts(nx.Graph()).shape == (0, NUM_ORBITS)
    single = nx.Graph()
    single.add_node(0)
    assert (orbit_counts(single) == 0).all()
    assert (orbit_counts(nx.empty_graph(5)) == 0).all()

    # Self loops and duplicate / directed edges are ignored; isolated nodes
    # are kept.
    data = Data(edge_index=torch.tensor([[0, 1, 1, 2, 2], [1, 0, 2, 1, 2]]),
                num_nodes=4)
    counts = orbit_counts(data)
    assert counts.shape == (4, NUM_ORBITS)
    expected = np.vstack([orbit_counts(nx.path_graph(3)),
                          np.zeros((1, NUM_ORBITS), dtype=np.int64)])
    assert np.array_equal(counts, expected)
    adj = np.zeros((4, 4))
    adj[0, 1] = adj[1, 2] = 1  # one direction only
    assert np.array_equal(orbit_counts(adj), counts)
    assert np.array_equal(orbit_counts(torch.from_numpy(adj)), counts)

    n, row, col = edge_arrays(data)
    assert n == 4 and row.tolist() == [0, 1] and col.tolist() == [1, 2]
    with pytest.raises(TypeError):
        orbit_counts([[0, 1]])
    with pytest.raises(ValueError):
        orbit_counts(np.zeros((2, 3)))


def test_larger_graph_fast():
    graph = nx.gnp_random_graph(300, 0.05, seed=0)
    counts = orbit_counts(graph)
    # Consistency checks that need no brute force: orbit 0 = degree,
    # sum of orbit 3 = 3 * triangles, sum of orbit 14 = 4 * K4 count.
    assert counts[:, 0].tolist() == [d for _, d in graph.degree()]
    assert counts[:, 3].sum() == sum(nx.triangles(graph).values())
    k4 = sum(1 for c in nx.enumerate_all_cliques(graph) if len(c) == 4)
    assert counts[:, 14].sum() == 4 * k4


@pytest.mark.parametrize('n,p,seed', [(10, 0.3, 0), (20, 0.2, 1),
                                      (30, 0.5, 2), (50, 0.1, 3),
                                      (15, 0.9, 4), (40, 0.05, 5)])
def test_orbit_counts_equal_the_orca_package(n, p, seed):
    # The `orca-graphlets` wheel ports ORCA's C++ (Hocevar & Demsar) to
    # Python: our counts must equal its node orbits of graphlet size 4, on
    # graphs with isolated nodes too.
    orca = pytest.importorskip('orca')
    g = nx.gnp_random_graph(n, p, seed=seed)
    edges = np.array(list(g.edges()), dtype=np.int64).reshape(-1, 2)
    expected = np.asarray(orca.orca_nodes(edges, num_nodes=n,
                                          graphlet_size=4), dtype=np.int64)
    assert np.array_equal(orbit_counts(g), expected)
