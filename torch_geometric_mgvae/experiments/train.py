r"""Small training helpers shared by the CLI, the examples and benchmarks,
and the stop at the first non-finite loss term or gradient.

The training step of every graph data set is :func:`run_epoch` over a
:class:`LossModule` (the model and its loss terms in one :meth:`forward`,
what :class:`~torch.nn.parallel.DistributedDataParallel` wraps); see
:mod:`torch_geometric_mgvae.experiments.distributed` for the processes."""
import math
from typing import Any, Callable, Dict, Optional

import torch
from torch import Tensor
from torch_geometric.transforms import Compose, ToUndirected

from torch_geometric_mgvae.experiments.distributed import (
    all_sum,
    any_rank,
    gather_objects,
    get_world_size,
)
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


def _first_non_finite(terms: Dict[str, Tensor]) -> Optional[NonFiniteError]:
    values = [v.detach().reshape(-1) for v in terms.values()]
    if not values or bool(torch.isfinite(torch.cat(values)).all()):
        return None
    for k, v in terms.items():
        if not bool(torch.isfinite(v.detach()).all()):
            return NonFiniteError('loss term', k, float(v.detach().sum()))
    return None  # pragma: no cover


def check_finite_loss(terms: Dict[str, Tensor]):
    r"""Raises :class:`NonFiniteError` naming the first loss term in
    :obj:`terms` that is not finite (one synchronisation for all).

    Collective in a process group: every process calls it at the same step,
    and all of them raise if the loss of any is not finite (naming the
    first such process's term), so that none waits for the others in the
    backward pass."""
    err = _first_non_finite(terms)
    if get_world_size() == 1:
        if err is not None:
            raise err
        return
    if not any_rank(err is not None)[0]:
        return
    found = [(r, e) for r, e in enumerate(gather_objects(
        None if err is None else (err.name, err.value))) if e is not None]
    rank, (name, value) = found[0]
    raise NonFiniteError('loss term', f'{name} (process {rank})', value)


def check_finite_grads(module: torch.nn.Module):
    r"""Raises :class:`NonFiniteError` naming the first parameter of
    :obj:`module` whose gradient is not finite (call between
    :meth:`backward` and the optimizer step). Under
    :class:`~torch.nn.parallel.DistributedDataParallel` the gradients are
    the same all-reduced tensors on every process (a NaN or infinity on one
    process makes the sum non-finite on all), so every process decides the
    same without another collective."""
    named = [(k, p.grad) for k, p in module.named_parameters()
             if p.grad is not None and p.grad.numel() > 0]
    # One fused pass: the largest magnitude of every gradient (NaN and
    # infinity propagate; no overflow, unlike the 2-norm).
    if not named or bool(torch.isfinite(torch.stack(torch._foreach_norm(
            [g for _, g in named], float('inf')))).all()):
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


def mgn_loss_terms(model: MGN, batch,
                   generator: Optional[torch.Generator] = None,
                   **loss_kwargs: Any) -> Dict[str, Tensor]:
    r"""The loss terms of an :class:`~torch_geometric_mgvae.MGN` (or
    subclass) on a batch: :meth:`forward`, then :meth:`loss_terms` (with
    :obj:`loss_kwargs`, e.g. the :obj:`free_bits` of :class:`~
    torch_geometric_mgvae.models.image.ImageMGVAE`)."""
    out = model(batch, generator=generator)
    return model.loss_terms(out, generator, **loss_kwargs)


LossFn = Callable[..., Dict[str, Tensor]]


class LossModule(torch.nn.Module):
    r"""A model and its loss in one module, whose :meth:`forward` returns
    the loss terms by name: what
    :class:`~torch.nn.parallel.DistributedDataParallel` wraps, so that the
    whole loss is computed inside the wrapped :meth:`forward` (the losses
    of :class:`~torch_geometric_mgvae.MGN` are methods called after its
    :meth:`forward`).

    Args:
        model (torch.nn.Module): The model (its parameters are this
            module's).
        loss (callable, optional): :obj:`loss(model, batch, generator) ->
            dict` of loss terms (default: :func:`mgn_loss_terms`).
    """
    def __init__(self, model: torch.nn.Module,
                 loss: Optional[LossFn] = None):
        super().__init__()
        self.model = model
        self.loss = loss

    def forward(self, batch, generator: Optional[torch.Generator] = None,
                **kwargs) -> Dict[str, Tensor]:
        loss = self.loss or mgn_loss_terms
        return loss(self.model, batch, generator, **kwargs)

    def __repr__(self) -> str:
        loss = self.loss or mgn_loss_terms
        name = getattr(loss, '__name__', type(loss).__name__)
        return f'{self.__class__.__name__}({self.model}, loss={name})'


def _loss_module(model: torch.nn.Module) -> torch.nn.Module:
    inner = getattr(model, 'module', model)  # DistributedDataParallel
    return model if isinstance(inner, LossModule) else LossModule(model)


def _device(module: torch.nn.Module) -> torch.device:
    p = next(module.parameters(), None)
    return torch.device('cpu') if p is None else p.device


def run_epoch(model: torch.nn.Module, loader,
              optimizer: Optional[torch.optim.Optimizer] = None,
              weights: Optional[Dict[str, float]] = None,
              generator: Optional[torch.Generator] = None,
              epoch: Optional[int] = None) -> Dict[str, float]:
    r"""One pass over :obj:`loader`: training steps when an
    :obj:`optimizer` is given, otherwise an evaluation pass (no gradients,
    evaluation mode). Returns the mean of every loss term (per graph) and of
    the weighted total (:obj:`"loss"`). Raises :class:`NonFiniteError` at
    the first non-finite loss term or gradient, before the optimizer step.

    :obj:`model` is a :class:`LossModule`, one in
    :class:`~torch.nn.parallel.DistributedDataParallel`, or a bare
    :class:`~torch_geometric_mgvae.MGN` (then wrapped in a
    :class:`LossModule`). Batches are moved to the model's device. With a
    :class:`~torch_geometric_mgvae.experiments.distributed.
    DistributedGraphSampler` (set to :obj:`epoch` first, when given), every
    process's loss is weighted by its share of the global batch, so that
    the gradient DDP averages is the global batch's, and the returned means
    are over all processes' graphs (the same on every process). A loader
    that yields :obj:`(data, scale)` pairs (:class:`~torch_geometric_mgvae.
    loader.PartitionLoader`: subgraphs of one graph) has each loss scaled
    by its :obj:`scale` (0: a stand-in) and counted as one graph.

    In a process group it is collective (the non-finite check after every
    step, the means at the end): every process calls it, also for an
    evaluation pass.
    """
    training = optimizer is not None
    net = _loss_module(model)
    net.train(training)
    device = _device(net)
    sampler = getattr(loader, 'sampler', None)
    if epoch is not None and hasattr(sampler, 'set_epoch'):
        sampler.set_epoch(epoch)
    counts = (sampler.step_counts() if hasattr(sampler, 'step_counts')
              else None)
    world = get_world_size()
    sums: Dict[str, float] = {}
    count = 0
    with torch.set_grad_enabled(training):
        for step, batch in enumerate(loader):
            if training:
                optimizer.zero_grad()
            scale = 1.0
            if isinstance(batch, tuple):  # (subgraph, scale)
                batch, scale = batch
            batch = batch.to(device)
            terms = net(batch, generator)
            loss = weighted_loss(terms, weights)
            check_finite_loss({**terms, 'loss': loss})
            n = getattr(batch, 'num_graphs', 1) if scale > 0 else 0
            if counts is not None:
                n, total = counts[step]
                if batch.num_graphs != max(n, 1):
                    raise ValueError(
                        f'The loader\'s batches do not follow its '
                        f'{type(sampler).__name__} (batch_size must be '
                        f'{sampler.local_batch_size}; use '
                        f'Parallel.loader)')
                scale = n * world / total
            if training:
                (loss * scale if scale != 1.0 else loss).backward()
                check_finite_grads(net)
                optimizer.step()
            count += n
            for k, v in terms.items():
                sums[k] = sums.get(k, 0.0) + v.item() * n
            sums['loss'] = sums.get('loss', 0.0) + loss.item() * n
    keys = sorted(sums)
    values = all_sum([sums[k] for k in keys] + [count])
    count = values.pop()
    return {k: v / max(count, 1) for k, v in zip(keys, values)}


def train_epoch(model: torch.nn.Module, loader,
                optimizer: torch.optim.Optimizer,
                weights: Optional[Dict[str, float]] = None,
                generator: Optional[torch.Generator] = None,
                epoch: Optional[int] = None) -> Dict[str, float]:
    r"""One training epoch (see :func:`run_epoch`)."""
    return run_epoch(model, loader, optimizer, weights, generator, epoch)


def evaluate(model: torch.nn.Module, loader,
             weights: Optional[Dict[str, float]] = None) -> Dict[str, float]:
    r"""The mean loss terms over :obj:`loader` in evaluation mode (a fixed
    seed for the sampled non-edges of large graphs)."""
    gen = torch.Generator(device=_device(model)).manual_seed(0)
    return run_epoch(model, loader, None, weights, gen)


__all__ = ['structural_transform', 'NonFiniteError', 'check_finite_loss',
           'check_finite_grads', 'weighted_loss', 'mgn_loss_terms',
           'LossModule', 'run_epoch', 'train_epoch', 'evaluate']
