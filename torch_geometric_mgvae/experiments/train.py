r"""Small training helpers shared by the CLI, the examples and benchmarks,
and the stop at the first non-finite loss term or gradient."""
import math
from typing import Dict, Iterable, List, Optional

import torch
from torch import Tensor
from torch_geometric.data import Data
from torch_geometric.utils import degree, to_undirected

from torch_geometric_mgvae.models import MGN


def structural_features(data: Data, walk_length: int = 8) -> Tensor:
    r"""Permutation-equivariant node features for graphs without any:
    the degree and the return probabilities of random walks of length
    :math:`1, \ldots,` :obj:`walk_length` (RWPE), shape
    :obj:`[N, 1 + walk_length]`.

    Constant features would make every node look the same to a mean-
    aggregation network (and every node would fall into one cluster).
    Computed with a dense :math:`n \times n` walk matrix: for small graphs
    (use :class:`torch_geometric.transforms.AddRandomWalkPE` for large
    ones).
    """
    n = int(data.num_nodes)
    ei = data.edge_index
    deg = degree(ei[0], n) if ei.numel() else torch.zeros(n)
    feats = [deg.view(-1, 1) / 10.0]
    if n == 0:
        return torch.zeros(0, 1 + walk_length)
    A = torch.zeros(n, n)
    if ei.numel():
        A[ei[0], ei[1]] = 1.0
    P = A / deg.clamp(min=1).view(-1, 1)
    M = torch.eye(n)
    for _ in range(walk_length):
        M = M @ P
        feats.append(M.diagonal().view(-1, 1))
    return torch.cat(feats, dim=-1)


def with_structural_features(graphs: Iterable[Data],
                             walk_length: int = 8) -> List[Data]:
    r"""Copies of small graphs with :func:`structural_features` as :obj:`x`
    and undirected edges."""
    out = []
    for g in graphs:
        ei = to_undirected(g.edge_index, num_nodes=g.num_nodes)
        h = Data(edge_index=ei, num_nodes=g.num_nodes)
        h.x = structural_features(h, walk_length)
        out.append(h)
    return out


class NonFiniteError(RuntimeError):
    r"""A loss term or a gradient is NaN or infinite: training stops before
    the optimizer step, so no parameter, record or checkpoint ever holds
    that state.

    Args:
        kind (str): :obj:`"loss term"` or :obj:`"gradient"`.
        name (str): The loss term, or the parameter whose gradient it is.
        value (float): The offending value (for a gradient: its norm).
    """
    def __init__(self, kind: str, name: str, value: float = math.nan):
        self.kind, self.name, self.value = kind, name, value
        self.epoch: Optional[int] = None  # set by the training loop
        self.where: str = ''  # e.g. "seed 1", set by the training loop
        super().__init__()

    def __str__(self) -> str:
        at = f' in epoch {self.epoch}' if self.epoch is not None else ''
        if self.where:
            at += f' ({self.where})'
        return (f"non-finite {self.kind} '{self.name}' ({self.value}){at}; "
                f"training stopped, nothing written from this state (try a "
                f"smaller --lr or loss weights)")


def check_finite_loss(terms: Dict[str, Tensor]):
    r"""Raises :class:`NonFiniteError` naming the first loss term in
    :obj:`terms` that is not finite (one synchronisation for all)."""
    values = [v.detach().reshape(-1) for v in terms.values()]
    if not values or bool(torch.isfinite(torch.cat(values)).all()):
        return
    for k, v in terms.items():
        if not bool(torch.isfinite(v.detach()).all()):
            raise NonFiniteError('loss term', k, float(v.detach().sum()))


def check_finite_grads(module: torch.nn.Module):
    r"""Raises :class:`NonFiniteError` naming the first parameter of
    :obj:`module` whose gradient is not finite (call between
    :meth:`backward` and the optimizer step)."""
    named = [(k, p.grad) for k, p in module.named_parameters()
             if p.grad is not None]
    if not named or bool(torch.stack([torch.isfinite(g).all()
                                      for _, g in named]).all()):
        return
    for k, g in named:
        if not bool(torch.isfinite(g).all()):
            raise NonFiniteError('gradient', k, float(g.norm()))


DEFAULT_WEIGHTS = dict(local_recon=1.0, global_recon=1.0, feature_recon=1.0,
                       balanced_cut=1.0, kl=1.0)


def weighted_loss(terms: Dict[str, Tensor],
                  weights: Optional[Dict[str, float]] = None) -> Tensor:
    r"""Sums the loss terms of :meth:`MGN.loss_terms` with weights."""
    weights = {**DEFAULT_WEIGHTS, **(weights or {})}
    return sum(weights.get(k, 1.0) * v for k, v in terms.items())


def _forward_terms(model: MGN, batch,
                   generator: Optional[torch.Generator]) -> Dict[str, Tensor]:
    out = model(batch.x, batch.edge_index,
                getattr(batch, 'edge_weight', None), batch.batch,
                num_graphs=batch.num_graphs,
                edge_attr=getattr(batch, 'edge_attr', None)
                if getattr(model, 'edge_channels', 0) else None,
                generator=generator)
    return model.loss_terms(out, generator)


def run_epoch(model: MGN, loader,
              optimizer: Optional[torch.optim.Optimizer] = None,
              weights: Optional[Dict[str, float]] = None,
              generator: Optional[torch.Generator] = None
              ) -> Dict[str, float]:
    r"""One pass over :obj:`loader`: training steps when an
    :obj:`optimizer` is given, otherwise an evaluation pass (no gradients,
    evaluation mode). Returns the mean of every loss term (per graph) and of
    the weighted total (:obj:`"loss"`). Raises :class:`NonFiniteError` at
    the first non-finite loss term or gradient, before the optimizer step.
    """
    training = optimizer is not None
    model.train(training)
    sums: Dict[str, float] = {}
    count = 0
    with torch.set_grad_enabled(training):
        for batch in loader:
            if training:
                optimizer.zero_grad()
            terms = _forward_terms(model, batch, generator)
            loss = weighted_loss(terms, weights)
            check_finite_loss({**terms, 'loss': loss})
            if training:
                loss.backward()
                check_finite_grads(model)
                optimizer.step()
            n = batch.num_graphs
            count += n
            for k, v in terms.items():
                sums[k] = sums.get(k, 0.0) + v.item() * n
            sums['loss'] = sums.get('loss', 0.0) + loss.item() * n
    return {k: v / max(count, 1) for k, v in sums.items()}


def train_epoch(model: MGN, loader, optimizer: torch.optim.Optimizer,
                weights: Optional[Dict[str, float]] = None,
                generator: Optional[torch.Generator] = None
                ) -> Dict[str, float]:
    r"""One training epoch (see :func:`run_epoch`)."""
    return run_epoch(model, loader, optimizer, weights, generator)


def evaluate(model: MGN, loader,
             weights: Optional[Dict[str, float]] = None) -> Dict[str, float]:
    r"""The mean loss terms over :obj:`loader` in evaluation mode (a fixed
    seed for the sampled non-edges of large graphs)."""
    return run_epoch(model, loader, None, weights,
                     torch.Generator().manual_seed(0))


__all__ = ['structural_features', 'with_structural_features',
           'NonFiniteError', 'check_finite_loss', 'check_finite_grads',
           'weighted_loss', 'run_epoch', 'train_epoch', 'evaluate']
