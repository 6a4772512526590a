r"""The :obj:`mgvae` command line tool.

``mgvae demo``: train an MGVAE on two-community graphs, sample graphs, print
degree and clustering MMD against held-out graphs and draw them;
``mgvae generate``, ``mgvae link-pred``, ``mgvae molecules`` and ``mgvae
images``: the paper's experiments (:mod:`torch_geometric_mgvae.experiments`).

Every command takes ``--device auto|cpu|cuda|mps`` and trains
data-parallel when launched by ``torchrun --nproc_per_node N -m
torch_geometric_mgvae.cli ...`` or given ``--nproc N``, which re-launches it
that way (:mod:`torch_geometric_mgvae.experiments.distributed`; rank 0
writes, ``--batch-size`` is the global batch).

Every command checks its options before it reads data or creates a folder,
writes only under ``--out`` (or a path given by an option), replaces files
atomically, saves its training state every few epochs and on
SIGINT/SIGTERM (``--resume`` continues), and stops at the first non-finite
loss. Errors are one line (``mgvae: error: ...``; the traceback with
``--debug``). Exit codes: 0 success, 1 runtime failure, 2 bad usage, 130
interrupted.
"""
import argparse
import os
import shlex
import signal
import subprocess
import sys
import time
import traceback
from typing import List, Optional

import torch

from torch_geometric_mgvae.experiments.options import (
    LATENT_SAMPLERS,
    UsageError,
    add_parallel_arguments,
    add_run_arguments,
    add_threads_argument,
    check_matched_sampler,
    int_at_least,
    int_list,
    nonnegative_float,
    nonnegative_int,
    positive_float,
    positive_int,
)

EXIT_CODES = ('exit codes: 0 success; 1 runtime failure (e.g. a '
              'non-finite loss: nothing is written from that state); 2 bad '
              'usage (checked before any work); 130 interrupted by '
              'SIGINT/SIGTERM (the training state is saved first: rerun '
              'with --resume)')
#: The demo holds out the first 20% of the graphs: at least one test graph.
MIN_GRAPHS = 5


class _Parser(argparse.ArgumentParser):
    r"""One-line usage errors, ``mgvae: error: ...``, exit code 2."""
    def error(self, message: str):
        self.exit(2, f"mgvae: error: {message} (see '{self.prog} "
                  f"--help')\n")


def _demo_parser(sub):
    p = sub.add_parser(
        'demo', help='train MGVAE on two-community graphs and sample',
        description='Trains an MGVAE on two-community graphs (a built-in '
        'GraphRNN-style generator, or the GDSS community-small file with '
        '--data), samples graphs, prints degree/clustering MMD against '
        'held-out graphs and writes a picture.', epilog=EXIT_CODES)
    p.add_argument('--data', default=None,
                   help='GDSS community_small.pkl / .edgelists.json or a '
                   'folder holding one (default: generate graphs)')
    p.add_argument('--allow-pickle', action='store_true',
                   help='read a --data .pkl with pickle.load, which runs '
                   'code the file holds (default: a restricted reader that '
                   'accepts only networkx graphs)')
    p.add_argument('--num-graphs', type=int_at_least(MIN_GRAPHS),
                   default=100,
                   help=f'graphs to generate without --data, at least '
                   f'{MIN_GRAPHS} (the first 20%% are held out; default: '
                   f'100)')
    p.add_argument('--epochs', type=positive_int, default=300)
    p.add_argument('--batch-size', type=positive_int, default=16)
    p.add_argument('--lr', type=positive_float, default=3e-3)
    p.add_argument('--hidden', type=positive_int, default=64)
    p.add_argument('--latent', type=positive_int, default=16)
    p.add_argument('--clusters', type=int_list, default='2,1',
                   help='clusters per level, finest first (default: 2,1)')
    p.add_argument('--layers', type=positive_int, default=2,
                   help='message passing layers per encoder (default: 2)')
    p.add_argument('--order', type=int, default=1, choices=[1, 2],
                   help='first- or second-order encoders/decoders')
    p.add_argument('--prior', default='standard',
                   choices=['standard', 'learnable'])
    p.add_argument('--decoder', default='mlp',
                   choices=['inner', 'second_order', 'mlp'],
                   help='global decoder of the finest level (default: mlp, '
                   "the paper's choice for community-small, D.5)")
    p.add_argument('--covariance', default='diag', choices=['diag', 'mrf'])
    p.add_argument('--random-features', type=nonnegative_int, default=4,
                   help='random node feature channels (default: 4)')
    p.add_argument('--kl-weight', type=nonnegative_float, default=0.1,
                   help='weight of the KL terms (default: 0.1, chosen on '
                   'held-out graphs of generator seeds 10-15)')
    p.add_argument('--latent-sampler', default=None,
                   choices=list(LATENT_SAMPLERS),
                   help='where the node latents of the samples come from: '
                   '"fitted": a diagonal Gaussian per node position and '
                   'channel fitted to the posterior means of the training '
                   'graphs after training; "matched" (--prior learnable): '
                   'the prior on subsets of its nodes the training graphs '
                   'were matched to; "prior": the model\'s prior '
                   '(default: fitted for --decoder mlp, else prior)')
    p.add_argument('--num-samples', type=positive_int, default=256)
    p.add_argument('--seed', type=nonnegative_int, default=0)
    p.add_argument('--out', default='outputs/demo',
                   help='folder for the checkpoint, JSON and pictures')
    p.add_argument('--no-progress', action='store_true')
    add_threads_argument(p, 'two threads made the demo\'s training twice '
                         'as slow here')
    add_run_arguments(p)
    add_parallel_arguments(p)
    p.set_defaults(func=run_demo, resolve=resolve_demo_args)


def _generate_parser(sub):
    from torch_geometric_mgvae.experiments import generation
    p = sub.add_parser(
        'generate', help='the paper\'s graph generation experiment '
        '(community-small / ego-small, MMD vs the GDSS test split)',
        description='Trains MGVAE on the GDSS training split of '
        'community-small or ego-small for every seed, samples graphs, and '
        'reports the squared MMD (degree, clustering, orbit) against the '
        'test split under the GraphRNN/GDSS and GRAN kernels, with the '
        'training set (floor) and a matched Erdos-Renyi baseline in the '
        'same table; writes result records, pictures and checkpoints.',
        epilog=EXIT_CODES)
    generation.add_arguments(p)
    add_run_arguments(p)
    add_parallel_arguments(p)
    p.set_defaults(func=generation.run, resolve=generation.resolve_args)


def _link_pred_parser(sub):
    from torch_geometric_mgvae.experiments import link_prediction
    p = sub.add_parser(
        'link-pred', help='the paper\'s link prediction experiment '
        '(Cora / Citeseer, AUC and AP vs PyG VGAE)',
        description='For every seed, draws an 85/5/10 edge split '
        '(RandomLinkSplit), trains PyG VGAE and MGVAE with learned, '
        'spectral and k-means clusterings on the training graph, selects '
        'epochs on validation AUC and reports test AUC/AP, epoch time and '
        'balanced-cut statistics; writes result records, a table, a CSV '
        'and cluster-size plots.', epilog=EXIT_CODES)
    link_prediction.add_arguments(p)
    add_run_arguments(p)
    add_parallel_arguments(p)
    p.set_defaults(func=link_prediction.run,
                   resolve=link_prediction.resolve_args)


def _molecules_parser(sub):
    from torch_geometric_mgvae.experiments import molecules
    p = sub.add_parser(
        'molecules', help='the paper\'s molecule generation experiment '
        '(QM9 / ZINC-12k, all-at-once MGVAE or autoregressive MGN)',
        description='Trains a molecule generator on 10,000 training '
        'molecules of QM9 or ZINC-12k, samples 5,000 molecules and reports '
        'validity (without and with valence correction), uniqueness, '
        'novelty, QED and FCD against the test set; writes result records, '
        'pictures (generated molecules with QED, a latent interpolation) '
        'and a checkpoint.', epilog=EXIT_CODES)
    molecules.add_arguments(p)
    # An epoch over 10,000 molecules takes minutes: save after every one.
    add_run_arguments(p, checkpoint_every=1)
    add_parallel_arguments(p)
    p.set_defaults(func=molecules.run, resolve=molecules.resolve_args)


def _images_parser(sub):
    from torch_geometric_mgvae.experiments import images
    p = sub.add_parser(
        'images', help='the paper\'s image generation experiment (MNIST '
        'grid graphs, quadtree MGVAE, FID per resolution)',
        description='Trains the image MGVAE (grid graphs, fixed quadtree '
        '32 -> 16 -> 8, one latent and one DCGAN decoder per resolution) '
        'and a convolutional VAE with the same decoder on MNIST, samples '
        'every resolution from N(0, I) and reports the FID per resolution '
        'against the test set, with the FID of training images (floor) in '
        'the same table; writes result records, sample grids, '
        'reconstruction strips and checkpoints.', epilog=EXIT_CODES)
    images.add_arguments(p)
    # An epoch over 60,000 grid graphs takes minutes: save after every one.
    add_run_arguments(p, checkpoint_every=1)
    add_parallel_arguments(p, device=False)  # --device is the experiment's
    p.set_defaults(func=images.run, resolve=images.resolve_args)


def resolve_demo_args(args: argparse.Namespace) -> argparse.Namespace:
    r"""Checks the combinations of the demo's options (the single values
    are checked while parsing)."""
    if args.data is not None and not os.path.exists(args.data):
        raise UsageError(f"--data: no such file or folder '{args.data}'")
    if args.covariance == 'mrf' and args.order != 2:
        raise UsageError("--covariance mrf needs --order 2")
    if args.latent_sampler is None:  # positions mean something to mlp only
        args.latent_sampler = 'fitted' if args.decoder == 'mlp' else 'prior'
    check_matched_sampler(args.latent_sampler, args.prior)
    return args


def _properties_parser(sub):
    from torch_geometric_mgvae.experiments import properties
    p = sub.add_parser(
        'properties', help='the paper\'s property prediction experiments '
        '(ZINC-12k / QM9; supervised MGN against PyG pooling layers, '
        'unsupervised MGVAE features)',
        description='Supervised (paper D.4): MGN (GINE convolutions, then '
        'MGNPooling, per level; latents of every level averaged and '
        'concatenated; a linear head) beside TopK/SAG/ASAP/DiffPool and '
        'global pooling with the same convolutions, on ZINC-12k (penalised '
        'logP, logP) or QM9 (the targets of Table 9). Unsupervised (D.3, '
        'qm9): a frozen MGVAE autoencoder\'s latents, an untrained encoder '
        'and Morgan fingerprints, each with one MLP per target. Writes '
        'result records, parity plots and checkpoints under --out.',
        epilog=EXIT_CODES)
    properties.add_arguments(p)
    # Every model trains in about a minute or more: save after every epoch.
    add_run_arguments(p, checkpoint_every=1)
    add_parallel_arguments(p, device=False)  # --device is the experiment's

    def run(args):
        command = ' '.join(shlex.quote(a) for a in ['mgvae'] + sys.argv[1:])
        return properties.run(args, command=command)
    p.set_defaults(func=run, resolve=properties.resolve_args)


def load_graphs(args):
    from torch_geometric_mgvae.datasets import (
        gdss_split,
        make_community_dataset,
        read_graph_list,
    )
    if args.data:
        graphs = read_graph_list(args.data, allow_pickle=args.allow_pickle)
        source = args.data
        if len(graphs) < MIN_GRAPHS:
            raise ValueError(f"'{args.data}' holds {len(graphs)} graphs; "
                             f"the demo needs at least {MIN_GRAPHS} (the "
                             f"first 20% are held out)")
    else:
        graphs = make_community_dataset(args.num_graphs, seed=args.seed)
        source = f'built-in two-community generator (seed {args.seed})'
    # GDSS split: the first 20% are the test graphs, the rest train.
    return (graphs[gdss_split(len(graphs), 'train')],
            graphs[gdss_split(len(graphs), 'test')], source)


def run_demo(args) -> Optional[dict]:
    from tqdm import tqdm

    from torch_geometric_mgvae import MGVAE
    from torch_geometric_mgvae.experiments.distributed import Parallel
    from torch_geometric_mgvae.experiments.state import (
        TrainingSession,
        training_state,
    )
    from torch_geometric_mgvae.experiments.train import (
        LossModule,
        structural_transform,
        train_epoch,
    )

    result = None
    torch.set_num_threads(args.threads)
    with Parallel.from_args(args) as par, \
            TrainingSession.from_args(args) as session:
        torch.manual_seed(args.seed)
        train_graphs, test_graphs, source = load_graphs(args)
        if par.is_main:
            print(f'data: {source}: {len(train_graphs)} train / '
                  f'{len(test_graphs)} test graphs; {par}')
        features = structural_transform()
        train_set = [features(g) for g in train_graphs]
        loader = par.loader(train_set, args.batch_size, seed=args.seed)
        max_nodes = max(g.num_nodes for g in train_graphs + test_graphs)
        model_kwargs = dict(
            in_channels=train_set[0].num_features,
            hidden_channels=args.hidden, latent_channels=args.latent,
            num_clusters=args.clusters, num_layers=args.layers,
            order=args.order, prior=args.prior, covariance=args.covariance,
            random_features=args.random_features, max_nodes=max_nodes,
            global_decoder=args.decoder)
        model = MGVAE(**model_kwargs)
        model.fit_num_nodes(train_graphs)
        model = model.to(par.device)
        net = par.wrap(LossModule(model))
        opt = torch.optim.Adam(model.parameters(), lr=args.lr)
        gen = par.generator(args.seed)
        resumed = session.restore('', model, opt, generators={'gen': gen})
        history = resumed['history'] if resumed else []
        clock = dict(seconds=resumed['train_seconds'] if resumed else 0.0)
        bar = tqdm(total=args.epochs, initial=len(history), desc='train',
                   disable=args.no_progress or not par.is_main,
                   file=sys.stdout)

        def step(epoch: int):
            t0 = time.time()
            stats = train_epoch(net, loader, opt, {'kl': args.kl_weight},
                                generator=gen, epoch=epoch)
            clock['seconds'] += time.time() - t0
            history.append(dict(epoch=epoch, **stats))
            bar.update()
            bar.set_postfix(loss=f"{stats['loss']:.1f}",
                            cut=f"{stats['balanced_cut']:.3f}")

        session.train('', step, args.epochs, lambda: training_state(
            model, opt, model_kwargs, generators={'gen': gen},
            history=history, train_seconds=clock['seconds']), resumed)
        bar.close()
        if par.is_main:
            result = _demo_results(args, model, model_kwargs, gen, history,
                                   clock['seconds'], train_graphs, train_set,
                                   test_graphs, source, max_nodes,
                                   par.device)
        par.barrier()  # the other processes wait for rank 0's writes
    return result


def _demo_results(args, model, model_kwargs, gen, history, train_time,
                  train_graphs, train_set, test_graphs, source, max_nodes,
                  device) -> dict:
    from torch_geometric_mgvae.experiments.generation import (
        sample_graphs,
        split_overlap,
    )
    from torch_geometric_mgvae.experiments.io import write_json
    from torch_geometric_mgvae.experiments.plot import (
        plot_curves,
        plot_graph_grid,
    )
    from torch_geometric_mgvae.experiments.state import model_checkpoint
    from torch_geometric_mgvae.metrics import graph_mmd

    model.eval()
    t0 = time.time()
    samples, fitted = sample_graphs(model, args.latent_sampler, train_set,
                                    max_nodes, args.num_samples, gen)
    samples = [g.cpu() for g in samples]
    sample_time = time.time() - t0
    # The fitted Gaussian travels with the model: sample_fitted(model,
    # ckpt['latent_mean'], ckpt['latent_std'], n) repeats the demo's samples.
    ckpt = model_checkpoint(os.path.join(args.out, 'mgvae.pt'), model,
                            model_kwargs, args=args, **fitted)
    metrics = ('degree', 'clustering')
    gen_mmd = graph_mmd(samples, test_graphs, metrics=metrics)
    ref_mmd = graph_mmd(train_graphs, test_graphs, metrics=metrics)
    seen = split_overlap(train_graphs, samples)['isomorphic']
    novel = 1 - seen / len(samples)
    print()
    print(f'{"":<28}{"degree MMD":>12}{"clustering MMD":>16}')
    print(f'{"MGVAE samples vs test":<28}{gen_mmd["degree"]:>12.4f}'
          f'{gen_mmd["clustering"]:>16.4f}')
    print(f'{"train vs test (floor)":<28}{ref_mmd["degree"]:>12.4f}'
          f'{ref_mmd["clustering"]:>16.4f}')
    print(f'(squared MMD, GraphRNN Gaussian-EMD kernels; latents from the '
          f'{args.latent_sampler} sampler; {100 * novel:.1f}% of the samples '
          f'are not isomorphic to a training graph)')
    pic = plot_graph_grid({'generated': samples, 'test': test_graphs},
                          os.path.join(args.out, 'generated_vs_test.png'))
    curve = plot_curves(history, os.path.join(args.out, 'loss.png'))
    result = dict(source=source, epochs=args.epochs,
                  train_seconds=round(train_time, 2),
                  sample_seconds=round(sample_time, 3),
                  num_samples=args.num_samples,
                  latent_sampler=args.latent_sampler, mmd_generated=gen_mmd,
                  mmd_train_vs_test=ref_mmd, novel=novel,
                  mean_nodes=sum(g.num_nodes for g in samples) /
                  len(samples),
                  mean_edges=sum(g.edge_index.size(1) // 2
                                 for g in samples) / len(samples),
                  final=history[-1], device=str(device))
    write_json(os.path.join(args.out, 'demo.json'), result)
    print(f'trained in {train_time:.1f}s, sampled {args.num_samples} '
          f'graphs in {sample_time:.2f}s; wrote {ckpt}, {pic}, {curve}')
    return result


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog='mgvae', description='Multiresolution graph networks and '
        'VAEs (Hy & Kondor) on PyTorch Geometric.', epilog=EXIT_CODES)
    sub = parser.add_subparsers(dest='command', required=True)
    _demo_parser(sub)
    _generate_parser(sub)
    _link_pred_parser(sub)
    _molecules_parser(sub)
    _properties_parser(sub)
    _images_parser(sub)
    return parser


def _one_line(e: BaseException) -> str:
    from torch_geometric_mgvae.experiments.train import NonFiniteError
    text = ' '.join(str(e).split())
    if isinstance(e, (UsageError, NonFiniteError)):
        return text
    return f'{type(e).__name__}: {text}' if text else type(e).__name__


def _without_nproc(argv: List[str]) -> List[str]:
    out, skip = [], False
    for a in argv:
        if skip:
            skip = False
        elif a == '--nproc':
            skip = True
        elif not a.startswith('--nproc='):
            out.append(a)
    return out


def check_processes(args: argparse.Namespace) -> int:
    r"""The number of processes of the run (:obj:`--nproc`, or
    ``torchrun``'s), checked against the options: a global
    :obj:`--batch-size` they divide (every command is data-parallel)."""
    from torch_geometric_mgvae.experiments.distributed import (
        launched_by_torchrun,
    )
    nproc = getattr(args, 'nproc', None)
    if launched_by_torchrun():
        world = int(os.environ['WORLD_SIZE'])
        if nproc not in (None, world):
            raise UsageError(f'--nproc {nproc} under torchrun with '
                             f'{world} processes')
        nproc = world
    nproc = nproc or 1
    batch = getattr(args, 'batch_size', None)
    if batch is not None and batch % nproc:
        raise UsageError(f'--batch-size {batch} is the global batch: it '
                         f'must be a multiple of the {nproc} processes')
    return nproc


def relaunch(argv: List[str], nproc: int) -> int:
    r"""Runs the command :obj:`argv` in :obj:`nproc` processes through
    ``torchrun`` and returns its exit code (130 if this process got
    SIGINT/SIGTERM, which it passes on once to ``torchrun``, whose
    processes save their training state)."""
    import torch_geometric_mgvae
    from torch_geometric_mgvae.experiments.distributed import (
        relaunch_command,
    )
    env = dict(os.environ)
    # The processes import this very package, wherever it lies:
    root = os.path.dirname(os.path.dirname(torch_geometric_mgvae.__file__))
    env['PYTHONPATH'] = os.pathsep.join(
        [root] + [p for p in env.get('PYTHONPATH', '').split(os.pathsep)
                  if p])
    # Its own session: a Ctrl-C reaches it once, through this process.
    child = subprocess.Popen(relaunch_command(_without_nproc(argv), nproc),
                             env=env, start_new_session=True)
    got: List[int] = []

    def forward(signum, frame):
        if not got:
            child.send_signal(signum)
        got.append(signum)

    old = {s: signal.signal(s, forward)
           for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        code = child.wait()
    finally:
        for s, h in old.items():
            signal.signal(s, h)
    return 130 if got else code


def main(argv: Optional[List[str]] = None) -> int:
    r"""Runs a command; returns the exit code (0 success, 1 runtime
    failure, 2 bad usage, 130 interrupted)."""
    from torch_geometric_mgvae.experiments.state import Interrupted
    from torch_geometric_mgvae.experiments.train import NonFiniteError
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as e:  # usage error (2) or --help (0)
        return e.code if isinstance(e.code, int) else 0
    except KeyboardInterrupt:  # Ctrl-C while the options are read
        if is_main_process():
            print('\nmgvae: interrupted', file=sys.stderr)
        return 130
    debug = args.debug
    # Only rank 0 reports (every process stops on the same error).
    report = is_main_process()
    try:
        try:
            args = args.resolve(args)
            nproc = check_processes(args)
        except ValueError as e:
            raise UsageError(str(e)) from e
        if nproc > 1 and not _under_torchrun():
            return relaunch(argv, nproc)
        torch.set_num_threads(max(1, min(torch.get_num_threads(), 4)))
        args.func(args)
    except UsageError as e:
        if debug:
            traceback.print_exc()
        if report:
            print(f'mgvae: error: {_one_line(e)}', file=sys.stderr)
        return 2
    except Interrupted as e:
        if report:
            print(f'\nmgvae: {e}', file=sys.stderr)
        return 130
    except KeyboardInterrupt:
        if report:
            print('\nmgvae: interrupted', file=sys.stderr)
        return 130
    except Exception as e:
        if debug:
            traceback.print_exc()
        hint = '' if debug or isinstance(e, NonFiniteError) else \
            ' (--debug shows the traceback)'
        if report or not isinstance(e, NonFiniteError):
            who = '' if report else \
                f' (process {os.environ.get("RANK", "?")})'
            print(f'mgvae: error{who}: {_one_line(e)}{hint}',
                  file=sys.stderr)
        return 1
    return 0


def _under_torchrun() -> bool:
    from torch_geometric_mgvae.experiments.distributed import (
        launched_by_torchrun,
    )
    return launched_by_torchrun()


def is_main_process() -> bool:
    r"""Rank 0 of ``torchrun``, or a process started without it."""
    return int(os.environ.get('RANK', 0)) == 0 if _under_torchrun() \
        else True


if __name__ == '__main__':
    sys.exit(main())
