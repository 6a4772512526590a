r"""Small training helpers shared by the CLI, the examples and benchmarks,
and the stop at the first non-finite loss term or gradient."""
import math
from typing import Dict, Optional

import torch
from torch import Tensor
from torch_geometric.transforms import Compose, ToUndirected

from torch_geometric_mgvae.models import MGN
from torch_geometric_mgvae.transforms import AddStructuralFeatures


def structural_transform(walk_length: int = 8) -> Compose:
    r"""The node features of the featureless graph-generation data sets:
    both edge directions, then :class:`~torch_geometric_mgvae.transforms.
    AddStructuralFeatures` (degree and random-walk return probabilities)."""
    return Compose([ToUndirected(), AddStructuralFeatures(walk_length)])


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
    out = model(batch, generator=generator)
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


__all__ = ['structural_transform', 'NonFiniteError', 'check_finite_loss',
           'check_finite_grads',
           'weighted_loss', 'run_epoch', 'train_epoch', 'evaluate']
