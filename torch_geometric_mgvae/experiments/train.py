r"""Small training helpers shared by the CLI, the examples and benchmarks."""
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
    the weighted total (:obj:`"loss"`)."""
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
            if training:
                loss.backward()
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


__all__ = ['structural_transform',
           'weighted_loss', 'run_epoch', 'train_epoch', 'evaluate']
