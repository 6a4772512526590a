r"""Command line values checked when they are parsed, and the run options
shared by every :obj:`mgvae` command (:obj:`--checkpoint-every`,
:obj:`--resume`, :obj:`--debug`; :obj:`--device`, :obj:`--nproc`).

A bad value is an :class:`argparse.ArgumentTypeError` raised while parsing,
so the command stops with a one-line message before it reads data, trains or
creates a folder; a bad combination of values is a :class:`UsageError` (a
:class:`ValueError`) raised by the drivers' :obj:`resolve_args`.
"""
import argparse
import math
from typing import Any, Callable, List, Optional, Sequence

__all__ = ['UsageError', 'int_at_least', 'positive_int', 'nonnegative_int',
           'positive_float', 'nonnegative_float', 'probability',
           'int_list', 'add_run_arguments', 'add_parallel_arguments',
           'add_threads_argument', 'parse_options', 'LATENT_SAMPLERS',
           'check_matched_sampler']

#: Where the node latents of generated graphs come from
#: (:obj:`--latent-sampler` of :obj:`mgvae demo` and :obj:`mgvae generate`):
#: the model's prior, the Gaussian fitted to the training graphs'
#: posterior means (:func:`~torch_geometric_mgvae.experiments.generation.
#: fit_latent_gaussian`), or the learnable prior over the subsets of prior
#: nodes the training graphs were matched to (:func:`~torch_geometric_mgvae.
#: experiments.generation.fit_matched_subsets`).
LATENT_SAMPLERS = ('prior', 'fitted', 'matched')


class UsageError(ValueError):
    r"""A bad option value or combination of options (exit code 2)."""


def check_matched_sampler(sampler: str, prior: str):
    r"""The :obj:`"matched"` latent sampler draws subsets of the learnable
    prior's nodes: a :class:`UsageError` for it with another prior."""
    if sampler == 'matched' and prior != 'learnable':
        raise UsageError("'--latent-sampler matched' needs '--prior "
                         "learnable'")


def int_at_least(minimum: int) -> Callable[[str], int]:
    r"""An argparse :obj:`type`: an integer :math:`\geq` :obj:`minimum`."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"expected an integer >= {minimum}, got '{text}'") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(
                f"must be >= {minimum} (got {value})")
        return value
    parse.__name__ = f'int >= {minimum}'
    return parse


positive_int = int_at_least(1)
nonnegative_int = int_at_least(0)


def _float(text: str, what: str, ok: Callable[[float], bool]) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected {what}, got '{text}'") from None
    if not math.isfinite(value) or not ok(value):
        raise argparse.ArgumentTypeError(f"must be {what} (got {text})")
    return value


def positive_float(text: str) -> float:
    r"""An argparse :obj:`type`: a finite number :math:`> 0`."""
    return _float(text, 'a finite number > 0', lambda v: v > 0)


def nonnegative_float(text: str) -> float:
    r"""An argparse :obj:`type`: a finite number :math:`\geq 0`."""
    return _float(text, 'a finite number >= 0', lambda v: v >= 0)


def probability(text: str) -> float:
    r"""An argparse :obj:`type`: a number in :math:`[0, 1]`."""
    return _float(text, 'a number in [0, 1]', lambda v: 0 <= v <= 1)


def decay(text: str) -> float:
    r"""An argparse :obj:`type`: a decay rate in :math:`[0, 1)`."""
    return _float(text, 'a number in [0, 1)', lambda v: 0 <= v < 1)


def int_list(text: str) -> List[int]:
    r"""An argparse :obj:`type`: comma-separated positive integers, e.g.
    clusters per level :obj:`"2,1"`."""
    parts = [p.strip() for p in text.split(',')]
    try:
        values = [int(p) for p in parts]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated positive integers such as '2,1', "
            f"got '{text}'") from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated positive integers such as '2,1', "
            f"got '{text}'")
    return values


def nonnegative_float_list(text: str) -> List[float]:
    r"""An argparse :obj:`type`: comma-separated finite numbers
    :math:`\geq 0`, e.g. free bits per level :obj:`"0,8,8"`."""
    try:
        return [nonnegative_float(p.strip()) for p in text.split(',')]
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated finite numbers >= 0 such as "
            f"'0,8,8', got '{text}'") from None


def add_run_arguments(parser: argparse.ArgumentParser,
                      checkpoint_every: int = 10,
                      title: Optional[str] = 'checkpoints and errors'):
    r"""Adds :obj:`--checkpoint-every`, :obj:`--resume` and :obj:`--debug`
    (every :obj:`mgvae` command)."""
    group = parser.add_argument_group(title)
    group.add_argument(
        '--checkpoint-every', type=nonnegative_int, default=checkpoint_every,
        metavar='N', help=f'save the full training state (model, optimizer, '
        f'random states, epoch, history) to OUT/train_state.pt every N '
        f'epochs, at the end of every training run and on SIGINT/SIGTERM; '
        f'0: only at the end and on a signal (default: {checkpoint_every})')
    group.add_argument(
        '--resume', action='store_true',
        help='continue the run saved in OUT/train_state.pt (same options; '
        'finished seeds and models are not repeated); on the CPU the '
        'result equals an uninterrupted run\'s')
    group.add_argument('--debug', action='store_true',
                       help='print the full traceback of an error')
    return parser


def add_threads_argument(group, why: str):
    r"""Adds :obj:`--threads` (intra-op CPU threads per process, default 1)
    to :obj:`group`; :obj:`why` ends the help text: where more threads were
    measured to be slower."""
    group.add_argument('--threads', type=positive_int, default=1,
                       help=f'intra-op CPU threads per process (default: 1; '
                       f'{why})')
    return group


def add_parallel_arguments(parser: argparse.ArgumentParser,
                           title: Optional[str] = 'device and processes',
                           device: bool = True):
    r"""Adds :obj:`--device` and :obj:`--nproc` (the data-parallel
    :obj:`mgvae` commands; see :mod:`torch_geometric_mgvae.experiments.
    distributed`); :obj:`device=False`: only :obj:`--nproc` (for an
    experiment whose own options hold :obj:`--device`)."""
    group = parser.add_argument_group(title)
    if device:
        group.add_argument(
            '--device', default='auto',
            choices=['auto', 'cpu', 'cuda', 'mps'],
            help='where to train and sample: auto picks cuda, then mps, '
            'then the cpu (default: auto)')
    group.add_argument(
        '--nproc', type=positive_int, default=None, metavar='N',
        help='train data-parallel in N processes: re-launches the command '
        'through torchrun (torch.distributed.run --standalone '
        '--nproc_per_node N); the same as starting it with torchrun '
        '--nproc_per_node N -m torch_geometric_mgvae.cli ...; --batch-size '
        'stays the global batch (default: 1, or torchrun\'s)')
    return parser


def parse_options(doc: str,
                  add_arguments: Callable[[argparse.ArgumentParser], Any],
                  resolve_args: Callable[[argparse.Namespace],
                                         argparse.Namespace],
                  argv: Optional[Sequence[str]] = None,
                  prog: Optional[str] = None) -> argparse.Namespace:
    r"""The :obj:`parse_args` of an experiment module: a parser described
    by the first paragraph of the module's :obj:`doc`, filled by its
    :obj:`add_arguments`, then the parsed :obj:`argv` checked and completed
    by its :obj:`resolve_args`."""
    parser = argparse.ArgumentParser(prog=prog,
                                     description=doc.split('\n\n')[0])
    add_arguments(parser)
    return resolve_args(parser.parse_args(argv))
