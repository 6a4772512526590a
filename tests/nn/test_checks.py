r"""Argument and input-graph checks (found by benchmark/probes.py)."""
import math
import warnings

import pytest
import torch
from torch_geometric.utils import erdos_renyi_graph, to_undirected

from torch_geometric_mgvae.nn import (
    GaussianMRFHead,
    LearnablePrior,
    MGNConv,
    MGNPooling,
    SecondOrderEncoder,
    SelectLearned,
    kl_mvn_standard,
)
from torch_geometric_mgvae.nn.checks import (
    check_float,
    check_graph,
    check_int,
    check_int_list,
    is_symmetric,
)


def test_check_int_and_lists_name_the_argument():
    assert check_int('k', 3) == 3 and check_int('k', None, optional=True) \
        is None
    assert check_int_list('num_clusters', (4, 1)) == [4, 1]
    for value, error in (('64', TypeError), (2.5, TypeError),
                         (True, TypeError), (0, ValueError)):
        with pytest.raises(error, match="'hidden_channels' must be a "
                           "positive integer"):
            check_int('hidden_channels', value)
    with pytest.raises(ValueError, match=r"'seed' must be an integer >= 0"):
        check_int('seed', -1, 0)
    for value, error in ((4, TypeError), (None, TypeError), ([], ValueError),
                         ([2.5], TypeError), ([2, 0], ValueError),
                         ('21', TypeError)):
        with pytest.raises(error, match="'num_clusters' must be a non-empty "
                           "list of positive integers"):
            check_int_list('num_clusters', value)
    assert check_float('eps', 1e-4) == 1e-4
    for value in (0.0, -1.0, math.nan, math.inf):
        with pytest.raises(ValueError, match="'eps' must be a finite "
                           "number > 0"):
            check_float('eps', value)


def test_is_symmetric_sees_one_way_edges_with_balanced_degrees():
    i = torch.arange(6)
    directed_cycle = torch.stack([i, (i + 1) % 6])  # in = out degree
    assert not is_symmetric(directed_cycle, 6)
    assert is_symmetric(to_undirected(directed_cycle), 6)
    torch.manual_seed(0)
    ei = to_undirected(erdos_renyi_graph(40, 0.2))
    assert is_symmetric(ei, 40)
    assert is_symmetric(torch.cat([ei, ei[:, :3], ei[:, :3].flip(0)], 1), 40)
    assert not is_symmetric(torch.cat([ei, ei[:, :3]], 1), 40)  # one extra
    perm = torch.randperm(100)  # a union of directed cycles
    assert not is_symmetric(torch.stack([torch.arange(100), perm]), 100)


def test_check_graph_rejects_bad_ids_and_batches():
    x = torch.randn(4, 2)
    ei = torch.tensor([[0, 1, 2, 3], [1, 0, 3, 2]])
    batch = torch.tensor([0, 0, 1, 1])
    with pytest.raises(ValueError, match="'edge_index' must hold integer"):
        check_graph(x, ei.float(), None, None)
    with pytest.raises(ValueError, match="'batch' must hold integer"):
        check_graph(x, ei, None, batch.float())
    with pytest.raises(ValueError, match="'batch' holds negative"):
        check_graph(x, ei, None, batch - 1)
    with pytest.raises(ValueError, match="'num_graphs' is 1"):
        check_graph(x, ei, None, batch, num_graphs=1)
    attr = torch.ones(4, 3)
    attr[1, 1] = 1e30
    with pytest.raises(ValueError, match="'edge_attr' holds values of "
                       "magnitude"):
        check_graph(x, ei, None, batch, attr)
    with pytest.warns(UserWarning, match='looks directed'):
        check_graph(x, torch.tensor([[0, 1, 2], [1, 2, 0]]), None, None)


def test_layers_reject_nonsensical_sizes():
    with pytest.raises(ValueError, match="'in_channels'"):
        MGNPooling(0, 2)
    with pytest.raises(ValueError, match="'hidden_channels'"):
        SelectLearned(4, 2, hidden_channels=0)
    with pytest.raises(ValueError, match="'in_channels'"):
        MGNConv(0, 4)
    with pytest.raises(ValueError, match="'in_channels'"):
        GaussianMRFHead(0, 4)
    for eps in (0.0, -1.0, math.nan):
        with pytest.raises(ValueError, match="'eps'"):
            LearnablePrior(4, 4, eps=eps)
    with pytest.raises(ValueError, match="'hidden_channels'"):
        SecondOrderEncoder(4, 0, 0, 8, 2)


def test_pooling_checks_its_input():
    pool = MGNPooling(4, 2)
    with pytest.raises(ValueError, match='nodes that do not exist'):
        pool(torch.randn(6, 4), torch.tensor([[0, 9], [9, 0]]))


def test_kl_of_an_unfactorisable_covariance_is_nan_not_an_exception():
    # Factors that overflow (a diverged training step) give a NaN KL, which
    # the trainers stop at with NonFiniteError, instead of a LinAlgError.
    L = torch.full((1, 3, 3, 2), 1e200, dtype=torch.float64)
    kl = kl_mvn_standard(torch.zeros(1, 3, 2, dtype=torch.float64), L,
                         torch.ones(1, 3, dtype=torch.bool))
    assert torch.isnan(kl).all()
    L = torch.full((1, 3, 3, 2), 0.1, dtype=torch.float64)
    L[0, 0, 0, 0] = math.nan
    kl = kl_mvn_standard(torch.zeros(1, 3, 2, dtype=torch.float64), L,
                         torch.ones(1, 3, dtype=torch.bool))
    assert torch.isnan(kl).all()


def test_pooling_takes_directed_graphs_without_warning():
    # Coarsening is defined for directed graphs; only MGN's models (which
    # take graphs as undirected) warn about one-way edges.
    x, edge_index = torch.randn(4, 4), torch.tensor([[0, 1, 2], [1, 2, 3]])
    with warnings.catch_warnings():
        warnings.simplefilter('error')
        MGNPooling(4, 2)(x, edge_index)
    with pytest.warns(UserWarning, match='looks directed'):
        check_graph(x, edge_index, None, None)


def test_checks_of_tensors_that_require_grad_do_not_warn():
    x = torch.randn(4, 3, requires_grad=True)
    w = torch.rand(4, requires_grad=True)
    a = torch.randn(4, 2, requires_grad=True)
    edge_index = torch.tensor([[0, 1, 2, 3], [1, 0, 3, 2]])
    with warnings.catch_warnings():
        warnings.simplefilter('error')
        check_graph(x, edge_index, w, torch.tensor([0, 0, 1, 1]), a)
        MGNPooling(3, 2)(x, edge_index, w)
