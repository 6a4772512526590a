r"""Resumable training: one training-state file per run, saved every few
epochs and on SIGINT/SIGTERM, and :obj:`--resume`.

Every :obj:`mgvae` command runs inside a :class:`TrainingSession`. Its file
``OUT/train_state.pt`` holds

* :obj:`"args"`: the options of the run (a plain dict; :obj:`--resume`
  refuses a state written with other options),
* :obj:`"done"`: what the driver has finished (e.g. the metrics of the
  finished seeds of :obj:`mgvae generate`), so a resumed run does not redo
  it, and
* :obj:`"current"`: the :func:`training_state` of the model in training:
  its weights, class and constructor arguments, the optimizer and
  scheduler, the random states (torch, Python :mod:`random`, NumPy and the
  driver's :class:`torch.Generator` objects), the epoch and the driver's
  history.

Only tensors, plain containers, numbers and strings are stored, so the
file loads with :obj:`torch.load(weights_only=True)`. States are saved at
the end of an epoch, so a resumed run continues exactly where the saved one
was: on the CPU, its final parameters equal an uninterrupted run's.

Data-parallel runs (:mod:`~torch_geometric_mgvae.experiments.distributed`):
every process calls the session's methods at the same points; the state
holds the random states of every process (:obj:`"rng_ranks"`) and the
number of processes, rank 0 writes it, and :obj:`--resume` needs the same
number of processes. The decisions to stop (a signal, the driver's
:obj:`stop`) are taken by all processes together after an epoch.
"""
import argparse
import os
import random
import signal
import sys
import threading
from typing import Any, Callable, Dict, Optional, Tuple

import numpy as np
import torch

from torch_geometric_mgvae.datasets.base import defer_signal
from torch_geometric_mgvae.experiments.distributed import (
    any_rank,
    gather_objects,
    get_rank,
    get_world_size,
    is_distributed,
    is_main,
)
from torch_geometric_mgvae.experiments.io import load_torch, save_torch
from torch_geometric_mgvae.experiments.options import UsageError
from torch_geometric_mgvae.experiments.train import NonFiniteError

__all__ = ['STATE_FILE', 'Interrupted', 'plain', 'plain_args', 'rng_state',
           'set_rng_state', 'training_state', 'restore_training_state',
           'model_checkpoint', 'TrainingSession']

STATE_FILE = 'train_state.pt'
FORMAT = 1
#: Options that may differ between a run and its :obj:`--resume` (the
#: state is found in :obj:`--out`, so its spelling may change too).
RESUME_FREE = ('resume', 'checkpoint_every', 'no_progress', 'debug',
               'results', 'out', 'device', 'nproc',
               # sampling only: a finished training state can be sampled
               # again with other refinement steps or decoding rounds
               'refine_steps', 'decode_rounds', 'decode_temperature')


def _same_option(old: Dict[str, Any], new: Dict[str, Any],
                 key: str) -> bool:
    if key in old and key in new:
        return old[key] == new[key]
    # An option that a state saved by an earlier version lacks was added
    # since: it matches when it is off now (None, False or 0).
    value = new.get(key, old.get(key))
    return value is None or (isinstance(value, (int, float)) and value == 0)


class Interrupted(KeyboardInterrupt):
    r"""SIGINT or SIGTERM stopped a run (exit code 130)."""
    def __init__(self, signame: str, path: Optional[str],
                 epoch: Optional[int] = None, where: str = ''):
        super().__init__(signame)
        self.signame, self.path, self.epoch, self.where = (signame, path,
                                                           epoch, where)

    def __str__(self) -> str:
        msg = f'interrupted by {self.signame}'
        if self.epoch is not None:
            msg += f' after epoch {self.epoch}'
            if self.where:
                msg += f' ({self.where})'
            msg += f'; training state saved to {self.path}'
        elif self.path and os.path.exists(self.path):
            msg += f'; the last training state saved is {self.path}'
        else:
            return msg + '; no training state saved'
        return msg + '; run the same command with --resume to continue'


# Plain values ##############################################################

def _is_plain(v: Any) -> bool:
    if v is None or isinstance(v, (bool, int, float, str, torch.Tensor)):
        return True
    if isinstance(v, (list, tuple)):
        return all(_is_plain(x) for x in v)
    if isinstance(v, dict):
        return all(isinstance(k, (str, int)) and _is_plain(x)
                   for k, x in v.items())
    return False


def plain(obj: Any) -> Any:
    r""":obj:`obj` as a value :func:`torch.load` reads with
    :obj:`weights_only=True`: an :class:`argparse.Namespace` becomes the
    dict of its plain options (:func:`plain_args`); anything else but
    tensors, plain containers, numbers, strings and :obj:`None` raises a
    :obj:`TypeError`."""
    if isinstance(obj, argparse.Namespace):
        return plain_args(obj)
    if isinstance(obj, dict):
        return {k: plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(plain(v) for v in obj)
    if not _is_plain(obj):
        raise TypeError(f'Cannot store {type(obj).__name__} in a checkpoint '
                        f'(only tensors, plain containers, numbers and '
                        f'strings)')
    return obj


def plain_args(args: argparse.Namespace) -> Dict[str, Any]:
    r"""The options of :obj:`args` with plain values (functions and other
    objects the parser attached are left out)."""
    return {k: v for k, v in vars(args).items() if _is_plain(v)}


# Random states ############################################################

def rng_state(generators: Optional[Dict[str, torch.Generator]] = None
              ) -> Dict[str, Any]:
    r"""The states of torch's global generator (and CUDA's, if used),
    Python's :mod:`random`, NumPy's global generator and the named
    :obj:`generators`, as tensors and numbers."""
    version, internal, gauss = random.getstate()
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    out = dict(torch=torch.get_rng_state(),
               python=dict(version=version, gauss=gauss,
                           state=torch.tensor(internal, dtype=torch.long)),
               numpy=dict(kind=kind, pos=int(pos), has_gauss=int(has_gauss),
                          cached=float(cached),
                          keys=torch.from_numpy(keys.astype(np.int64))),
               generators={k: g.get_state()
                           for k, g in (generators or {}).items()})
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        out['cuda'] = torch.cuda.get_rng_state_all()
    return out


def set_rng_state(state: Dict[str, Any],
                  generators: Optional[Dict[str, torch.Generator]] = None):
    r"""Restores the states of :func:`rng_state`."""
    torch.set_rng_state(state['torch'])
    py = state['python']
    random.setstate((py['version'], tuple(py['state'].tolist()),
                     py['gauss']))
    n = state['numpy']
    np.random.set_state((n['kind'], n['keys'].numpy().astype(np.uint32),
                         n['pos'], n['has_gauss'], n['cached']))
    for k, g in (generators or {}).items():
        g.set_state(state['generators'][k])
    if 'cuda' in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state['cuda'])


# Training and model states ################################################

def training_state(model: torch.nn.Module, optimizer: torch.optim.Optimizer,
                   model_kwargs: Dict[str, Any], epoch: int = 0,
                   scheduler: Optional[Any] = None,
                   generators: Optional[Dict[str, torch.Generator]] = None,
                   model_class: Optional[str] = None,
                   **extra: Any) -> Dict[str, Any]:
    r"""Everything needed to continue training :obj:`model` exactly: its
    weights, class name and constructor arguments (:obj:`model_kwargs`,
    the dict the driver passes to the class), the optimizer and scheduler
    states, the random states (:func:`rng_state`), the :obj:`epoch` and the
    driver's :obj:`extra` values (history, best-so-far, ...)."""
    return dict(model=model.state_dict(),
                model_class=model_class or type(model).__name__,
                model_kwargs=plain(model_kwargs),
                optimizer=optimizer.state_dict(),
                scheduler=None if scheduler is None else
                scheduler.state_dict(),
                rng=rng_state(generators), epoch=epoch, **plain(extra))


def restore_training_state(state: Dict[str, Any], model: torch.nn.Module,
                           optimizer: torch.optim.Optimizer,
                           scheduler: Optional[Any] = None,
                           generators: Optional[Dict[str,
                                                     torch.Generator]] = None
                           ) -> Dict[str, Any]:
    r"""Loads a :func:`training_state` into a freshly built :obj:`model`,
    :obj:`optimizer`, :obj:`scheduler` and :obj:`generators` and restores
    the random states; returns :obj:`state`."""
    model.load_state_dict(state['model'])
    optimizer.load_state_dict(state['optimizer'])
    if scheduler is not None and state.get('scheduler') is not None:
        scheduler.load_state_dict(state['scheduler'])
    set_rng_state(state['rng'], generators)
    return state


def model_checkpoint(path: str, model: torch.nn.Module,
                     model_kwargs: Dict[str, Any],
                     model_class: Optional[str] = None,
                     **extra: Any) -> str:
    r"""Saves a trained model (atomically) as :obj:`{"model": state_dict,
    "model_class": name, "model_kwargs": kwargs, **extra}`, so that
    ``cls(**ckpt["model_kwargs"]).load_state_dict(ckpt["model"])`` rebuilds
    it; it loads with :obj:`weights_only=True`."""
    return save_torch(dict(model=model.state_dict(),
                           model_class=model_class or type(model).__name__,
                           model_kwargs=plain(model_kwargs), **plain(extra)),
                      path)


# The session ##############################################################

class TrainingSession:
    r"""Checkpoints, :obj:`--resume` and SIGINT/SIGTERM handling of one run.

    Use it as a context manager around the whole run. Inside, the first
    SIGINT or SIGTERM during a training epoch lets the epoch finish, saves
    the training state and raises :class:`Interrupted`; outside an epoch
    (data loading, evaluation, writing) and on a second signal it raises
    :class:`Interrupted` at once (the last saved state is intact: files are
    replaced atomically), or, during a file write, as soon as that file is
    complete.

    Args:
        out (str, optional): The run's folder; the state is
            :obj:`out/train_state.pt`. :obj:`None`: nothing is saved (plain
            training loops of the examples and tests).
        args (argparse.Namespace, optional): The run's options, stored and,
            with :obj:`resume`, compared with the saved ones.
        every (int): Save every :obj:`every` epochs (0: only at the end of
            a training run and on a signal).
        resume (bool): Load the saved state (a :class:`UsageError` if there
            is none or its options differ).
        budget (tuple): Options of a command with one training run that
            may differ on :obj:`resume` (e.g. :obj:`('epochs',
            'max_minutes')`, or a learning rate the driver applies to the
            epochs to come): a finished run resumed with a larger budget
            trains on (:meth:`train`). (default: :obj:`()`)
    """
    def __init__(self, out: Optional[str] = None,
                 args: Optional[argparse.Namespace] = None, every: int = 0,
                 resume: bool = False, budget: Tuple[str, ...] = ()):
        self.path = None if out is None else os.path.join(out, STATE_FILE)
        self.args = plain_args(args) if args is not None else {}
        self.every = every
        self.budget = tuple(budget)
        #: The options of the loaded state (empty without :obj:`resume`).
        self.saved_args: Dict[str, Any] = {}
        self.done: Dict[str, Any] = {}
        self._current: Optional[Dict[str, Any]] = None
        self._signal: Optional[str] = None
        self._in_epoch = False
        self._handlers: Dict[int, Any] = {}
        if resume:
            self._load()

    @classmethod
    def from_args(cls, args: argparse.Namespace,
                  budget: Tuple[str, ...] = ()) -> 'TrainingSession':
        r"""The session of a command: :obj:`args.out`,
        :obj:`args.checkpoint_every` and :obj:`args.resume` (defaults
        10 and :obj:`False` for scripts without these options), and the
        :obj:`budget` options."""
        return cls(args.out, args, getattr(args, 'checkpoint_every', 10),
                   getattr(args, 'resume', False), budget)

    def _load(self):
        if self.path is None or not os.path.exists(self.path):
            raise UsageError(f"--resume: no training state '{self.path}' "
                             f"(the run's --out holds it)")
        try:
            saved = load_torch(self.path)
        except ValueError as e:  # load_torch names the file
            raise UsageError(f"--resume: {e}") from e
        if not (isinstance(saved, dict) and saved.get('format') == FORMAT
                and isinstance(saved.get('args'), dict)
                and isinstance(saved.get('done'), dict)
                and isinstance(saved.get('current'), (dict, type(None)))):
            raise UsageError(f"--resume: '{self.path}' is not a training "
                             f"state of this version")
        old = self.saved_args = saved['args']
        diff = [k for k in sorted(set(old) | set(self.args))
                if k not in RESUME_FREE and k not in self.budget
                and not _same_option(old, self.args, k)]
        if diff:
            changes = ', '.join(
                f"--{k.replace('_', '-')} {old.get(k)!r} (now "
                f"{self.args.get(k)!r})" for k in diff)
            raise UsageError(f"--resume: '{self.path}' was saved by a run "
                             f"with other options: {changes}")
        saved_world = saved.get('world_size', 1)
        if saved_world != get_world_size():
            raise UsageError(
                f"--resume: '{self.path}' was saved by a run in "
                f"{saved_world} process(es), this one has "
                f"{get_world_size()} (start it with --nproc {saved_world})")
        self.done = saved['done']
        self._current = saved['current']

    # Signals ##############################################################

    def __enter__(self) -> 'TrainingSession':
        if self.path is not None and \
                threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._handlers[sig] = signal.signal(sig, self._on_signal)
        return self

    def __exit__(self, *exc) -> None:
        for sig, handler in self._handlers.items():
            signal.signal(sig, handler)
        self._handlers = {}

    def _on_signal(self, signum: int, frame: Any):
        if defer_signal(lambda: self._on_signal(signum, frame)):
            return  # raised once the file being written is complete
        name = signal.Signals(signum).name
        if self._in_epoch and self._signal is None:
            self._signal = name
            if is_main():
                print(f'\nmgvae: {name}: saving the training state after '
                      f'this epoch (send it again to stop at once)',
                      file=sys.stderr, flush=True)
            return
        if self._in_epoch and is_distributed():
            # torchrun passes the terminal's signal on to its processes,
            # which got it already: the epoch still finishes and is saved.
            return
        raise Interrupted(name, self.path)

    @property
    def stop_requested(self) -> bool:
        return self._signal is not None

    # Saving and restoring #################################################

    def save(self, current: Optional[Dict[str, Any]] = None):
        r"""Writes the state file (atomically): the options, :obj:`done`
        and the :obj:`current` training state (:obj:`None` between
        models). In a process group, with a :obj:`current` state, every
        process must call it (their random states are gathered); rank 0
        writes."""
        if self.path is None:
            return
        if current is not None and is_distributed():
            current = dict(current,
                           rng_ranks=gather_objects(current.get('rng')))
        if not is_main():
            return
        save_torch(dict(format=FORMAT, args=self.args, done=plain(self.done),
                        current=current, world_size=get_world_size()),
                   self.path)

    def restore(self, key: str, model: torch.nn.Module,
                optimizer: torch.optim.Optimizer,
                scheduler: Optional[Any] = None,
                generators: Optional[Dict[str, torch.Generator]] = None
                ) -> Optional[Dict[str, Any]]:
        r"""If the loaded state was saved while training :obj:`key`, loads
        it into the freshly built :obj:`model`, :obj:`optimizer`,
        :obj:`scheduler` and :obj:`generators` (:func:`
        restore_training_state`) and returns it (once); else :obj:`None`.
        """
        cur = self._current
        if cur is None or cur.get('key') != key:
            return None
        self._current = None
        if cur.get('rng_ranks') is not None:  # this process's own
            cur = dict(cur, rng=cur['rng_ranks'][get_rank()])
        try:
            return restore_training_state(cur, model, optimizer, scheduler,
                                          generators)
        except (KeyError, AttributeError, TypeError, ValueError,
                RuntimeError) as e:
            what = f"missing {e}" if isinstance(e, KeyError) else \
                str(e).strip().splitlines()[0]
            raise UsageError(f"--resume: '{self.path}' does not fit this "
                             f"run's model ({type(e).__name__}: "
                             f"{what})") from e

    def train(self, key: str, step: Callable[[int], Any], epochs: int,
              state: Callable[[], Dict[str, Any]],
              resumed: Optional[Dict[str, Any]] = None,
              stop: Optional[Callable[[], bool]] = None) -> int:
        r"""Runs :obj:`step(epoch)` for the epochs after :obj:`resumed`'s
        (all, from 1, without one) up to :obj:`epochs`, or until
        :obj:`stop()` returns :obj:`True` after an epoch. Saves
        :obj:`state()` (a :func:`training_state`) as the current state of
        :obj:`key` every :obj:`every` epochs, after the last epoch and on a
        signal (then raises :class:`Interrupted`). A
        :class:`~torch_geometric_mgvae.experiments.train.NonFiniteError`
        from :obj:`step` gets the epoch and :obj:`key` and propagates, with
        nothing saved. Returns the last epoch trained.

        A finished run stays finished, unless the session has
        :obj:`budget` options and the budget now allows more (:obj:`epochs`
        beyond the saved epoch and :obj:`stop()` false): then it trains
        on."""
        start = 1
        if resumed is not None:
            start = resumed['epoch'] + 1
            if resumed.get('finished'):
                stay = not (self.budget and start <= epochs and
                            not (stop is not None and stop()))
                if is_distributed():  # one decision for all processes
                    stay, = any_rank(stay)
                if stay:
                    return resumed['epoch']
        last = start - 1
        for epoch in range(start, epochs + 1):
            self._in_epoch = True
            try:
                step(epoch)
            except NonFiniteError as e:
                e.epoch, e.where = epoch, key
                raise
            finally:
                self._in_epoch = False
            last = epoch
            early = stop is not None and stop()
            if is_distributed():  # one decision for all processes
                early, signalled = any_rank(early, self._signal is not None)
                if signalled and self._signal is None:
                    self._signal = 'a signal to another process'
            end = early or epoch == epochs
            if end or self._signal or (self.every and
                                       epoch % self.every == 0):
                self.save(dict(state(), key=key, epoch=epoch, finished=end))
            if self._signal:
                raise Interrupted(self._signal, self.path, epoch, key)
            if early:
                break
        return last
