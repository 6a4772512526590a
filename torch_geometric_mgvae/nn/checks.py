r"""Checks of constructor arguments and of input graphs, with one-line
errors that name the argument (shared by the models and the layers)."""
import math
import numbers
import warnings
from typing import Any, List, Optional, Sequence

import torch
from torch import Tensor
from torch_geometric.typing import OptTensor

__all__ = ['check_int', 'check_int_list', 'check_float', 'check_graph',
           'is_symmetric', 'MAX_FEATURE']

#: Largest magnitude accepted in the input features (node and edge).
MAX_FEATURE = 1e12


def _is_int(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def check_int(name: str, value: Any, minimum: int = 1,
              optional: bool = False) -> Optional[int]:
    r"""Returns :obj:`value` as an :obj:`int` if it is an integer
    :math:`\geq` :obj:`minimum` (or :obj:`None` with :obj:`optional`);
    raises a :class:`TypeError` (not an integer) or :class:`ValueError`
    naming :obj:`name` otherwise."""
    if value is None and optional:
        return None
    what = 'a positive integer' if minimum == 1 else \
        f'an integer >= {minimum}'
    if not _is_int(value):
        raise TypeError(f"'{name}' must be {what} (got {value!r})")
    if value < minimum:
        raise ValueError(f"'{name}' must be {what} (got {value})")
    return int(value)


def check_int_list(name: str, values: Any, minimum: int = 1) -> List[int]:
    r"""Returns :obj:`values` as a list of :obj:`int` if it is a non-empty
    sequence of integers :math:`\geq` :obj:`minimum`; raises a
    :class:`TypeError` or :class:`ValueError` naming :obj:`name`."""
    kind = 'positive integers' if minimum == 1 else \
        f'integers >= {minimum}'
    what = f"'{name}' must be a non-empty list of {kind}"
    if isinstance(values, Tensor):
        values = values.tolist()
    if isinstance(values, (str, bytes)) or not isinstance(values, Sequence):
        raise TypeError(f'{what} (got {values!r})')
    if len(values) == 0 or not all(_is_int(v) for v in values):
        raise (ValueError if len(values) == 0 else TypeError)(
            f'{what} (got {list(values)!r})')
    if min(values) < minimum:
        raise ValueError(f'{what} (got {list(values)!r})')
    return [int(v) for v in values]


def check_float(name: str, value: Any, minimum: float = 0.0,
                strict: bool = True) -> float:
    r"""Returns :obj:`value` as a :obj:`float` if it is a finite number
    :math:`>` :obj:`minimum` (:math:`\geq` without :obj:`strict`); raises a
    :class:`TypeError` or :class:`ValueError` naming :obj:`name`."""
    what = f"'{name}' must be a finite number {'>' if strict else '>='} " \
        f"{minimum:g}"
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f'{what} (got {value!r})')
    value = float(value)
    if not math.isfinite(value) or value < minimum or (strict and
                                                         value == minimum):
        raise ValueError(f'{what} (got {value})')
    return value


def _finite(t: Tensor) -> bool:
    # One reduction first (no boolean tensor on the common path); the exact
    # test only when the sum is not finite (NaN/inf, or overflow).
    return bool(torch.isfinite(t.sum())) or bool(torch.isfinite(t).all())


def _check_values(name: str, t: Tensor):
    r"""Raises for NaN/infinite entries of :obj:`t` or entries larger than
    :obj:`MAX_FEATURE` in magnitude (one pass: :func:`torch.aminmax`
    propagates NaN)."""
    if t.numel() == 0:
        return
    lo, hi = torch.aminmax(t)
    lo, hi = float(lo), float(hi)
    if not (math.isfinite(lo) and math.isfinite(hi)):
        raise ValueError(f"'{name}' contains NaN or infinite values")
    big = max(abs(lo), abs(hi))
    if big > MAX_FEATURE:
        raise ValueError(f"'{name}' holds values of magnitude {big:.3g}: "
                         f"standardise the features (|{name}| <= "
                         f"{MAX_FEATURE:.0e} accepted)")


#: A prime below 2**31 (products of two residues fit in int64).
_P = 2147483629


def is_symmetric(edge_index: Tensor, num_nodes: int) -> bool:
    r"""Whether every edge :math:`(u, v)` of :obj:`edge_index` (counted
    with its multiplicity) has its reverse :math:`(v, u)`, in :math:`O(E)`
    without sorting: whether
    :math:`\sum_{(u, v)} a_u a_v (a_v - a_u) \equiv 0` modulo a prime for
    pseudo-random node values :math:`a` drawn from a fixed seed. An edge
    and its reverse cancel; what remains is a non-zero polynomial of degree
    3 in :math:`a` unless the edges are symmetric, so a one-way edge list
    passes with probability below :math:`10^{-8}` (Schwartz-Zippel)."""
    row, col = edge_index[0], edge_index[1]
    gen = torch.Generator().manual_seed(0x5EED)
    a = torch.randint(_P, (num_nodes, ), generator=gen).to(row.device)
    x, y = a[row], a[col]
    xy = (x * y) % _P
    return int(((xy * ((y - x) % _P)) % _P).sum()) % _P == 0


def check_graph(x: Tensor, edge_index: Tensor, edge_weight: OptTensor,
                batch: OptTensor, edge_attr: OptTensor = None,
                num_graphs: Optional[int] = None,
                warn_directed: bool = True):
    r"""Validates the input of a forward pass with clear errors: shapes and
    dtypes, NaN/infinite or absurdly large values, edges to nodes that do
    not exist or between two graphs of a batch, a batch vector that is not
    sorted, negative or inconsistent with :obj:`num_graphs`; warns about
    one-way edges (graphs are taken as undirected) unless
    :obj:`warn_directed=False` (that test is half the cost of the
    checks)."""
    # The checks read values, never gradients (and reading a scalar off a
    # tensor that requires grad warns).
    x = x.detach()
    edge_weight = None if edge_weight is None else edge_weight.detach()
    edge_attr = None if edge_attr is None else edge_attr.detach()
    if x.dim() != 2:
        raise ValueError(f"'x' must be [num_nodes, channels] "
                         f"(got shape {tuple(x.shape)})")
    if not x.is_floating_point():
        raise ValueError(f"'x' must hold floating point features (got "
                         f"{x.dtype})")
    _check_values('x', x)
    if edge_index.dim() != 2 or edge_index.size(0) != 2:
        raise ValueError(f"'edge_index' must be [2, num_edges] "
                         f"(got shape {tuple(edge_index.shape)})")
    if edge_index.is_floating_point() or edge_index.dtype == torch.bool:
        raise ValueError(f"'edge_index' must hold integer node ids (got "
                         f"{edge_index.dtype})")
    if edge_index.numel() > 0 and (int(edge_index.min()) < 0 or
                                   int(edge_index.max()) >= x.size(0)):
        raise ValueError("'edge_index' refers to nodes that do not exist")
    E = edge_index.size(1)
    if edge_weight is not None:
        if edge_weight.dim() != 1 or edge_weight.numel() != E:
            raise ValueError("'edge_weight' must hold one value per edge")
        if not _finite(edge_weight):
            raise ValueError("'edge_weight' contains NaN or infinite values")
        if E and float(edge_weight.min()) < 0:
            raise ValueError("'edge_weight' must not be negative")
    if edge_attr is not None:
        if edge_attr.size(0) != E:
            raise ValueError(f"'edge_attr' must hold one row per edge (got "
                             f"{edge_attr.size(0)} rows for {E} edges)")
        if edge_attr.is_floating_point():
            _check_values('edge_attr', edge_attr)
    if batch is not None:
        if batch.dim() != 1 or batch.numel() != x.size(0):
            raise ValueError("'batch' must hold one entry per node")
        if batch.is_floating_point() or batch.dtype == torch.bool:
            raise ValueError(f"'batch' must hold integer graph ids (got "
                             f"{batch.dtype})")
        if batch.numel() and int(batch.min()) < 0:
            raise ValueError("'batch' holds negative graph ids")
        if batch.numel() > 1 and bool((batch[1:] < batch[:-1]).any()):
            raise ValueError("'batch' must be sorted (the nodes of every "
                             "graph contiguous and in graph order, as "
                             "torch_geometric.data.Batch builds it)")
        if num_graphs is not None and batch.numel() and \
                int(batch[-1]) >= num_graphs:
            raise ValueError(f"'batch' refers to graph {int(batch[-1])} "
                             f"but 'num_graphs' is {num_graphs}")
        if E and bool((batch[edge_index[0]] != batch[edge_index[1]]).any()):
            raise ValueError("'edge_index' holds edges between two graphs "
                             "of the batch")
    if warn_directed and E and not is_symmetric(edge_index, x.size(0)):
        warnings.warn("'edge_index' looks directed (some edges lack their "
                      "reverse); MGN takes graphs as undirected, with "
                      "every edge in both directions "
                      "(torch_geometric.transforms.ToUndirected)",
                      stacklevel=3)
