r"""The molecule generation experiment of the paper (Sec. 5.2, appendix D.2).

A generator is trained on 10,000 training molecules of QM9 (GDSS split:
the molecules of ``valid_idx_qm9.json`` are the test set) or of ZINC-12k
(its 10,000 training molecules), 5,000 molecules are sampled, and the
standard metrics are reported for the molecules as decoded (*without
correction*), after the paper's valence correction (*with correction*;
the largest fragment is kept, as in GDSS/MoFlow) and after the correction
followed by joining the fragments (*with correction + joining*, ours):
validity (RDKit sanitization), validity of single-fragment molecules,
uniqueness, novelty (against the whole training split), QED (mean and
standard deviation over the valid molecules) and the Fréchet ChemNet
Distance to the test set (if :obj:`fcd_torch` is installed), with the
sampling time and, as a reference, the same metrics of 5,000 training
molecules. It writes a picture of generated molecules with their QED and
an interpolation between two test molecules in latent space.

Two generators: :obj:`"all-at-once"`
(:class:`~torch_geometric_mgvae.models.molecule.MoleculeMGVAE`, all atoms
and bonds decoded together from latents of the learnable prior) and
:obj:`"autoregressive"`
(:class:`~torch_geometric_mgvae.models.autoregressive.AutoregressiveMGN`,
one atom at a time under valence masks; no correction step, so only the
*without correction* rows).

The :obj:`mgvae molecules` command and ``examples/molecule_generation.py``
both drive :class:`MoleculeExperiment`::

    exp = MoleculeExperiment(args)
    exp.start()
    for epoch in range(args.epochs):
        exp.train_epoch()
    exp.test()
    exp.finish()
"""
import argparse
import math
import os
import sys
import time
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
from torch import Tensor
from torch_geometric.data import Data

from torch_geometric_mgvae.chem import (
    QM9_ATOMS,
    ZINC_ATOMS,
    canonical_set,
    canonical_smiles,
    mol_to_smiles,
    molecule_metrics,
    novelty,
    valid_mols,
)
from torch_geometric_mgvae.experiments.distributed import Parallel
from torch_geometric_mgvae.experiments.io import (
    SHARED_DATA,
    atomic_write,
    copy_file,
    write_json,
    write_text,
)
from torch_geometric_mgvae.experiments.options import (
    UsageError,
    decay,
    int_list,
    nonnegative_float,
    nonnegative_int,
    parse_options,
    positive_float,
    positive_int,
    probability,
)
from torch_geometric_mgvae.experiments.results import (
    current_command,
    machine,
    read_records,
    record,
    write_records,
)
from torch_geometric_mgvae.experiments.state import (
    TrainingSession,
    model_checkpoint,
    training_state,
)
from torch_geometric_mgvae.experiments.train import (
    LossModule,
    train_epoch,
)
from torch_geometric_mgvae.models.molecule import (
    DECODE_ROUNDS,
    MoleculeMGVAE,
)

__all__ = [
    'DATASETS', 'DECODERS', 'add_arguments', 'resolve_args', 'parse_args',
    'load_splits', 'model_class', 'model_kwargs', 'build_model',
    'method_name', 'align_latents',
    'interpolation_pair', 'interpolate', 'draw_molecules',
    'MoleculeExperiment', 'run'
]

TASK = 'molecule_generation'
DECODERS = ('all-at-once', 'autoregressive')
RAW, CORRECTED = 'w/o correction', 'with correction'
#: The paper's correction followed by joining the fragments (ours).
JOINED = 'with correction + joining'
#: The SMILES file under --out of each setting's samples (one per line, an
#: empty line for an invalid molecule).
SAMPLE_FILES = {RAW: 'samples_raw.smi', CORRECTED: 'samples_corrected.smi',
                JOINED: 'samples_joined.smi'}
REFERENCE = 'train set (reference)'
#: Options that --resume may change: the budget (raised to train a saved
#: run longer) and the learning rate of the epochs still to come.
BUDGET = ('epochs', 'max_minutes', 'lr')
#: The records go to OUT/RESULTS_NAME unless --results names a file (the
#: committed benchmark/results/molecule_generation.json only when given).
RESULTS_NAME = 'molecule_generation.json'
SHARED = SHARED_DATA

# name -> (dataset class name, atom vocabulary, label in the records,
# raw files, default --data folder, per-dataset model defaults)
DATASETS: Dict[str, Dict[str, Any]] = {
    'qm9': dict(cls='QM9Molecules', atoms=QM9_ATOMS, label='QM9',
                raw=('qm9_qm9pack_compact.csv.gz', 'valid_idx_qm9.json'),
                data=os.path.join(SHARED, 'qm9'), test='test',
                chem_features=False),
    'zinc': dict(cls='ZINC12k', atoms=ZINC_ATOMS, label='ZINC-12k',
                 raw=('smiles_score.csv', 'indexes_train_val_test.csv'),
                 data=os.path.join(SHARED, 'zinc12k_benchgnn'), test='test',
                 # Paper D.2: the RDKit features of Table 7 on ZINC.
                 chem_features=True),
}


# Command line #############################################################

def add_arguments(parser: argparse.ArgumentParser):
    r"""Adds the options of the experiment to :obj:`parser` (shared by
    :obj:`mgvae molecules` and ``examples/molecule_generation.py``)."""
    data = parser.add_argument_group('data and protocol')
    data.add_argument('--dataset', default='qm9', choices=sorted(DATASETS))
    data.add_argument('--decoder', default='all-at-once', choices=DECODERS)
    data.add_argument('--root', default=None,
                      help='dataset folder (default: data/<dataset>); the '
                      'raw files lie in ROOT/raw')
    data.add_argument('--data', default=None,
                      help='folder holding the raw files, copied into '
                      'ROOT/raw when missing there (default: the shared '
                      'data folder if it exists)')
    data.add_argument('--num-train', type=positive_int, default=10000,
                      help='training molecules, a random subset of the '
                      'training split as in the paper (default: 10000)')
    data.add_argument('--num-samples', type=positive_int, default=5000,
                      help='molecules sampled (default: 5000)')
    data.add_argument('--seed', type=nonnegative_int, default=0,
                      help='seed of the subset, the model and sampling')
    data.add_argument('--no-fcd', action='store_true',
                      help='skip the distribution metrics: the Frechet '
                      'ChemNet Distance and the NSPDK MMD (optional '
                      'packages fcd_torch and eden-kernel)')
    data.add_argument('--out', default=None,
                      help='folder for pictures, SMILES, history and the '
                      'checkpoint (default: outputs/molecules/<dataset>)')
    data.add_argument('--results', default=None,
                      help=f'JSON file of result records; this (dataset, '
                      f'decoder)\'s rows are replaced (default: '
                      f'OUT/{RESULTS_NAME}; benchmark/results/'
                      f'{RESULTS_NAME} holds the committed ones)')
    data.add_argument('--no-progress', action='store_true')

    model = parser.add_argument_group('model')
    model.add_argument('--clusters', type=int_list, default='2,1',
                       help='clusters per level, finest first (default: '
                       '2,1: the paper\'s L = 3 levels, K = 2^(l-1))')
    model.add_argument('--hidden', type=positive_int, default=64)
    model.add_argument('--latent', type=positive_int, default=16)
    model.add_argument('--layers', type=positive_int, default=2,
                       help='second-order layers per encoder (default: 2)')
    model.add_argument('--decoder-layers', type=positive_int, default=3,
                       help='second-order layers of the atom/bond decoder '
                       '(default: 3)')
    model.add_argument('--no-local-decoding', action='store_true',
                       help='drop the per-cluster decoders (about half the '
                       'cost of a step; sampling does not use them)')
    model.add_argument('--masked-decoding', action='store_true',
                       help='decode atoms and bonds in rounds, each '
                       'conditioned on those decoded before '
                       '(MoleculeMGVAE masked_decoding; not in the paper)')
    model.add_argument('--covariance', default='mrf',
                       choices=['mrf', 'diag'],
                       help='posterior covariance (default: mrf, the '
                       'paper\'s Gaussian MRF)')
    model.add_argument('--matching', default='hungarian',
                       choices=['hungarian', 'free'])
    model.add_argument('--distance-context', type=nonnegative_int,
                       default=0,
                       help='with --masked-decoding: the decoder also sees '
                       'the shortest-path distance, up to this many bonds, '
                       'of every pair in the bonds decoded so far (a bond '
                       'at distance d closes a ring of d + 1 atoms; not in '
                       'the paper; default: 0 = off)')
    model.add_argument('--aromatic', action='store_true',
                       help='aromatic bonds as a fourth bond type instead '
                       'of Kekule structures (datasets with kekulize=False; '
                       'all-at-once decoder; not in the paper)')
    model.add_argument('--chem-features', default=None,
                       action=argparse.BooleanOptionalAction,
                       help='append the 24 RDKit atom features of Table 7 '
                       'to the encoder input (default: on for zinc, as in '
                       'the paper)')

    gen = parser.add_argument_group('generation')
    gen.add_argument('--temperature', type=positive_float, default=1.0,
                     help='scale of the prior noise when sampling '
                     '(default: 1.0)')
    gen.add_argument('--refine-steps', type=nonnegative_int, default=0,
                     help='encode-decode steps applied to the sampled '
                     'molecules (MoleculeMGVAE.refine; not in the paper; '
                     'needs --no-chem-features; default: 0)')
    gen.add_argument('--decode-rounds', type=positive_int, default=None,
                     help='rounds of masked decoding when sampling (with '
                     f'--masked-decoding; default: {DECODE_ROUNDS})')
    gen.add_argument('--decode-temperature', type=nonnegative_float,
                     default=0.0,
                     help='with --masked-decoding: draw every decoded '
                     'entry from the decoder\'s distribution at this '
                     'temperature (default: 0 = its most probable value)')
    gen.add_argument('--threshold', type=probability, default=0.5,
                     help='smallest edge probability the correction adds '
                     '(default: 0.5)')

    opt = parser.add_argument_group('training')
    opt.add_argument('--epochs', type=positive_int, default=20)
    opt.add_argument('--batch-size', type=positive_int, default=128)
    opt.add_argument('--lr', type=positive_float, default=1e-3,
                     help='Adam learning rate (default: 1e-3, the paper\'s); '
                     'with --resume, a new one applies to the epochs still '
                     'to come (the records say from which epoch)')
    opt.add_argument('--ema', type=decay, default=0.0,
                     help='keep an exponential moving average of the '
                     'weights with this decay per optimizer step (e.g. '
                     '0.999); sampling, the metrics and model.pt use it '
                     '(default: 0 = off, the trained weights)')
    opt.add_argument('--kl-weight', type=nonnegative_float, default=1.0)
    opt.add_argument('--kl-warmup', type=nonnegative_int, default=0,
                     help='epochs over which the KL weight grows linearly '
                     'from KL-WEIGHT/(KL-WARMUP+1) to KL-WEIGHT '
                     '(default: 0 = constant)')
    opt.add_argument('--cut-weight', type=nonnegative_float, default=1.0,
                     help='weight of the balanced-cut KL')
    opt.add_argument('--valence-weight', type=nonnegative_float,
                     default=0.0,
                     help='weight of the validity regulariser on prior '
                     'samples (MoleculeMGVAE.valence_loss; not in the '
                     'paper), from the epoch after the KL warm-up '
                     '(default: 0 = off)')
    opt.add_argument('--max-minutes', type=positive_float, default=None,
                     help='stop training after the epoch that passes this '
                     'many minutes of training (the records give the epochs '
                     'run); --resume with a larger --epochs or --max-minutes '
                     'trains a saved run on, finished or not')
    return parser


def resolve_args(args: argparse.Namespace) -> argparse.Namespace:
    r"""Fills :obj:`root`, :obj:`out`, :obj:`results`, :obj:`data` and the
    per-dataset defaults, and checks what the parser cannot (a
    :class:`~torch_geometric_mgvae.experiments.options.UsageError`, before
    any work)."""
    if args.dataset not in DATASETS:
        raise UsageError(f"Unknown dataset '{args.dataset}' (expected one "
                         f"of {sorted(DATASETS)})")
    if args.decoder not in DECODERS:
        raise UsageError(f"Unknown decoder '{args.decoder}' (expected one "
                         f"of {DECODERS})")
    spec = DATASETS[args.dataset]
    if args.root is None:
        args.root = os.path.join('data', args.dataset)
    if args.out is None:
        args.out = os.path.join('outputs', 'molecules',
                                f'{args.dataset}_{args.decoder}')
    if args.results is None:
        args.results = os.path.join(args.out, RESULTS_NAME)
    if args.data is None and os.path.isdir(spec['data']):
        args.data = spec['data']
    elif args.data is not None and not os.path.isdir(args.data):
        raise UsageError(f"--data: no such folder '{args.data}'")
    if args.chem_features is None:
        args.chem_features = spec['chem_features']
    if args.decoder == 'autoregressive':
        args.chem_features = False
        if args.refine_steps:
            raise UsageError('--refine-steps refines all-at-once samples '
                             '(--decoder all-at-once)')
        if args.masked_decoding:
            raise UsageError('--masked-decoding is an all-at-once decoder '
                             '(--decoder all-at-once)')
        if args.aromatic:
            raise UsageError('--aromatic is for the all-at-once decoder '
                             '(--decoder all-at-once)')
    if args.distance_context and not args.masked_decoding:
        raise UsageError('--distance-context is a context of masked '
                         'decoding: add --masked-decoding')
    if not args.masked_decoding and (args.decode_rounds is not None or
                                     args.decode_temperature):
        raise UsageError('--decode-rounds and --decode-temperature set the '
                         'masked decoder: add --masked-decoding')
    if args.masked_decoding and args.decode_rounds is None:
        args.decode_rounds = DECODE_ROUNDS
    if args.refine_steps and args.chem_features:
        raise UsageError('--refine-steps re-encodes decoded molecules, '
                         'whose RDKit features are undefined: add '
                         '--no-chem-features')
    if isinstance(args.clusters, str):
        args.clusters = [int(k) for k in args.clusters.split(',') if k]
    read_records(args.results)  # a broken file fails now, not after training
    return args


def parse_args(argv: Optional[Sequence[str]] = None,
               prog: Optional[str] = None) -> argparse.Namespace:
    return parse_options(__doc__, add_arguments, resolve_args, argv, prog)


# Data #####################################################################

def _copy_raw(dataset: str, root: str, data: Optional[str]):
    raw = os.path.join(root, 'raw')
    names = DATASETS[dataset]['raw']
    if data is None or all(os.path.exists(os.path.join(raw, n))
                           for n in names):
        return
    for name in names:
        src = os.path.join(data, name)
        if not os.path.exists(os.path.join(raw, name)) and \
                os.path.exists(src):
            copy_file(src, os.path.join(raw, name))


def _chem_inputs(graphs: List[Data], mean: Tensor, std: Tensor
                 ) -> List[Data]:
    r"""Copies whose :obj:`x` is the one-hot atom types followed by the
    standardised RDKit atom features."""
    out = []
    for g in graphs:
        h = g.clone()
        h.x = torch.cat([g.x, (g.chem_x - mean) / std], dim=-1)
        del h.chem_x
        out.append(h)
    return out


def load_splits(dataset: str, root: str, num_train: int, seed: int = 0,
                data: Optional[str] = None, chem_features: bool = False,
                kekulize: bool = True
                ) -> Tuple[List[Data], List[Data], List[str]]:
    r"""The :obj:`num_train` training molecules (a random subset of the
    training split, seeded), the test molecules and the SMILES of the whole
    training split (for novelty).

    With :obj:`chem_features`, :obj:`x` of both lists is the one-hot atom
    types followed by the 24 RDKit features of the paper's Table 7,
    standardised with the training molecules' mean and deviation. With
    :obj:`kekulize=False`, :obj:`edge_attr` has a fourth (aromatic) bond
    type."""
    from torch_geometric_mgvae import datasets
    _copy_raw(dataset, root, data)
    spec = DATASETS[dataset]
    cls = getattr(datasets, spec['cls'])
    train_split = cls(root, split='train', chem_features=chem_features,
                      kekulize=kekulize)
    test = list(cls(root, split=spec['test'], chem_features=chem_features,
                    kekulize=kekulize))
    # One list lookup per molecule instead of materialising 117k Data
    # objects (the split is a view on the collated dataset).
    all_smiles = train_split._data.smiles
    train_smiles = [all_smiles[i] for i in train_split.indices()]
    g = torch.Generator().manual_seed(seed)
    perm = torch.randperm(len(train_split), generator=g)[:num_train]
    train = [train_split[int(i)] for i in perm]
    if chem_features:
        chem = torch.cat([d.chem_x for d in train])
        mean, std = chem.mean(0), chem.std(0).clamp(min=1e-6)
        train, test = _chem_inputs(train, mean, std), _chem_inputs(
            test, mean, std)
    return train, test, train_smiles


# Model ####################################################################

def model_class(args: argparse.Namespace) -> type:
    r"""The generator class of the experiment."""
    if args.decoder == 'autoregressive':
        from torch_geometric_mgvae.models.autoregressive import (
            AutoregressiveMGN,
        )
        return AutoregressiveMGN
    return MoleculeMGVAE


def model_kwargs(args: argparse.Namespace, num_atom_types: int,
                 in_channels: int, max_nodes: int) -> Dict[str, Any]:
    r"""The constructor arguments of the :func:`model_class` from the
    (resolved) options (stored in the checkpoints)."""
    atoms = DATASETS[args.dataset]['atoms']
    if args.decoder == 'autoregressive':
        return dict(num_atom_types=num_atom_types, num_bond_types=3,
                    hidden_channels=args.hidden,
                    latent_channels=args.latent, num_layers=args.layers,
                    max_nodes=max_nodes, atoms=atoms)
    return dict(num_atom_types=num_atom_types, hidden_channels=args.hidden,
                num_bond_types=4 if args.aromatic else 3,
                latent_channels=args.latent, num_clusters=args.clusters,
                max_nodes=max_nodes,
                node_channels=in_channels - num_atom_types,
                num_layers=args.layers, decoder_layers=args.decoder_layers,
                local_decoding=not args.no_local_decoding, atoms=atoms,
                masked_decoding=args.masked_decoding,
                decode_rounds=args.decode_rounds or DECODE_ROUNDS,
                distance_context=args.distance_context,
                valence_regularizer=args.valence_weight > 0,
                covariance=args.covariance,
                prior_kwargs=dict(matching=args.matching))


def autoregressive_loss_terms(model: torch.nn.Module, batch,
                              generator: Optional[torch.Generator] = None
                              ) -> Dict[str, Tensor]:
    r"""The loss of :class:`~torch_geometric_mgvae.models.autoregressive.
    AutoregressiveMGN`: the mean negative log-likelihood per molecule
    (:obj:`"nll"`)."""
    return dict(nll=model.loss(batch, generator))


def loss_terms_fn(args: argparse.Namespace):
    r"""The loss terms of the experiment's generator (what
    :class:`~torch_geometric_mgvae.experiments.train.LossModule`
    computes; :obj:`None`: its default, :func:`~torch_geometric_mgvae.
    experiments.train.mgn_loss_terms`)."""
    return (autoregressive_loss_terms if args.decoder == 'autoregressive'
            else None)


def build_model(args: argparse.Namespace, num_atom_types: int,
                in_channels: int, max_nodes: int) -> torch.nn.Module:
    r"""The generator of the experiment from the (resolved) options."""
    return model_class(args)(**model_kwargs(args, num_atom_types,
                                            in_channels, max_nodes))


def lr_steps(history: Sequence[Dict[str, Any]]) -> str:
    r"""The learning rates of a run whose :obj:`--lr` changed on
    :obj:`--resume`, from the :obj:`"lr"` of its history's epochs, e.g.
    :obj:`"lr 0.0003 from epoch 68"`; empty while it never changed."""
    steps, last = [], None
    for row in history:
        lr = row.get('lr')
        if lr is not None and last is not None and lr != last:
            steps.append(f'lr {lr:g} from epoch {row["epoch"]}')
        last = lr if lr is not None else last
    return ', '.join(steps)


def method_name(args: argparse.Namespace, epochs: int,
                history: Sequence[Dict[str, Any]] = ()) -> str:
    r"""The :obj:`method` of the records: the generator and its
    configuration (with the learning-rate changes of :obj:`history`,
    :func:`lr_steps`)."""
    steps = lr_steps(history)
    training = (f'EMA {args.ema:g}, ' if args.ema else '') + (
        f'{steps}, ' if steps else '')
    if args.decoder == 'autoregressive':
        return (f'autoregressive MGN (hidden {args.hidden}, latent '
                f'{args.latent}, {args.layers} layers, {training}{epochs} '
                f'epochs)')
    parts = [f'K={",".join(map(str, args.clusters))}',
             f'hidden {args.hidden}', f'latent {args.latent}',
             f'{args.layers}+{args.decoder_layers} layers']
    if args.covariance != 'mrf':
        parts.append(f'{args.covariance} posterior')
    if args.no_local_decoding:
        parts.append('no local decoders')
    if args.masked_decoding:
        parts.append(f'masked decoding in {args.decode_rounds} round'
                     f'{"s" if args.decode_rounds > 1 else ""}')
        if args.decode_temperature:
            parts.append(f'decoding T={args.decode_temperature:g}')
        if args.distance_context:
            parts.append(f'distances up to {args.distance_context}')
    if args.aromatic:
        parts.append('aromatic bonds')
    if args.chem_features:
        parts.append('chem features')
    if args.valence_weight > 0:
        parts.append(f'valence weight {args.valence_weight:g}')
    if args.kl_weight != 1.0:
        parts.append(f'KL weight {args.kl_weight:g}')
    if args.kl_warmup:
        parts.append(f'KL warm-up {args.kl_warmup}')
    if args.temperature != 1.0:
        parts.append(f'T={args.temperature:g}')
    if args.refine_steps:
        parts.append(f'{args.refine_steps} refinement '
                     f'step{"s" if args.refine_steps > 1 else ""}')
    parts.append(f'{training}{epochs} epochs')
    return f'all-at-once MGVAE ({", ".join(parts)})'


# Interpolation and pictures ###############################################

def align_latents(za: Tensor, zb: Tensor) -> Tensor:
    r"""The permutation of the rows of :obj:`zb` that pairs them with the
    rows of :obj:`za` at least total distance (Hungarian), so that a line
    between the two latent sets does not depend on their node orders."""
    from scipy.optimize import linear_sum_assignment
    cost = torch.cdist(za, zb).cpu().numpy()  # SciPy works on the host
    row, col = linear_sum_assignment(cost)
    perm = torch.empty(za.size(0), dtype=torch.long)
    perm[torch.as_tensor(row)] = torch.as_tensor(col)
    return perm.to(za.device)


def interpolation_pair(graphs: Sequence[Data]
                       ) -> Optional[Tuple[Data, Data]]:
    r"""The first two molecules (in list order) of the most common size
    with different SMILES, or :obj:`None`."""
    sizes = torch.tensor([int(g.num_nodes) for g in graphs])
    if sizes.numel() < 2:
        return None
    n = int(torch.bincount(sizes).argmax())
    same = [g for g in graphs if int(g.num_nodes) == n]
    b = next((g for g in same[1:] if g.smiles != same[0].smiles), None)
    return None if b is None else (same[0], b)


@torch.no_grad()
def interpolate(model: MoleculeMGVAE, a: Data, b: Data, atoms,
                steps: int = 8, threshold: float = 0.5,
                seed: int = 0) -> List[Any]:
    r"""Decodes :obj:`steps` points on the line between posterior draws
    (:meth:`MoleculeMGVAE.encode_latents`, seeded) of two molecules with
    the same number of atoms (rows aligned by :func:`align_latents`), with
    the valence correction; returns RDKit molecules (the endpoints are
    reconstructions of :obj:`a` and :obj:`b`)."""
    if a.num_nodes != b.num_nodes:
        raise ValueError('Interpolation needs two molecules with the same '
                         'number of atoms')
    device = model.mu_heads[0].weight.device
    gen = torch.Generator(device=device).manual_seed(seed)
    za = model.encode_latents(a.to(device), generator=gen)
    zb = model.encode_latents(b.to(device), generator=gen)
    zb = zb[align_latents(za, zb)]
    t = torch.linspace(0, 1, steps, dtype=za.dtype,
                       device=device).view(-1, 1, 1)
    z = (1 - t) * za + t * zb  # [steps, n, d]
    return model.decode_latents(z).to('cpu').corrected_mols(
        atoms, threshold, connect=True)


def draw_molecules(mols: Sequence[Any], legends: Sequence[str], path: str,
                   per_row: int = 8, size: int = 180) -> str:
    r"""Draws molecules in a grid with a legend under each (RDKit Draw)
    and saves it as PNG. :obj:`None` entries are drawn empty."""
    from rdkit import Chem
    from rdkit.Chem import Draw
    mols = [m if m is not None else Chem.Mol() for m in mols]
    img = Draw.MolsToGridImage(list(mols), molsPerRow=per_row,
                               subImgSize=(size, size),
                               legends=list(legends))
    return atomic_write(path, lambda f: img.save(f, format='PNG'))


def _qed(mol) -> float:
    from rdkit.Chem import QED
    try:
        return float(QED.qed(mol))
    except Exception:  # pragma: no cover
        return math.nan


# The experiment ###########################################################

class MoleculeExperiment:
    r"""The state of one :obj:`molecules` run: data, the model, its
    training history and the measured metrics.

    Args:
        args (argparse.Namespace): Options of :func:`add_arguments`
            (resolved with :func:`resolve_args`).
        command (str, optional): The command line stored in the records
            (default: the running process's).
        log (callable, optional): Where lines are printed.
        parallel (Parallel, optional): The device and processes (default:
            :obj:`args.device`, or auto, in one process). Every process
            trains; :meth:`test` and :meth:`finish` are rank 0's.
    """
    def __init__(self, args: argparse.Namespace,
                 command: Optional[str] = None, log=print,
                 parallel: Optional[Parallel] = None):
        self.args = resolve_args(args)
        self.command = command or current_command()
        self.par = parallel or Parallel.from_args(args)
        self.log = log if self.par.is_main else (lambda *a, **k: None)
        spec = DATASETS[args.dataset]
        self.atoms = spec['atoms']
        self.label = spec['label']
        t0 = time.perf_counter()
        with self.par.main_first():  # rank 0 copies and processes
            self.train_graphs, self.test_graphs, self.train_smiles = \
                load_splits(args.dataset, args.root, args.num_train,
                            args.seed, args.data, args.chem_features,
                            kekulize=not args.aromatic)
        self.num_atom_types = len(self.atoms)
        self.in_channels = self.train_graphs[0].num_features
        self.max_nodes = max(int(g.num_nodes) for g in
                             self.train_graphs + self.test_graphs)
        self.test_smiles = [d.smiles for d in self.test_graphs]
        self.results: Dict[str, Dict[str, float]] = {}
        self.history: List[Dict[str, float]] = []
        self.train_seconds = 0.0
        self.log(f'{self.label}: {len(self.train_graphs)} training '
                 f'molecules (of {len(self.train_smiles)}), '
                 f'{len(self.test_graphs)} test, at most {self.max_nodes} '
                 f'atoms, {self.in_channels} input features '
                 f'(loaded in {time.perf_counter() - t0:.1f}s)')

    @property
    def all_at_once(self) -> bool:
        return self.args.decoder == 'all-at-once'

    def start(self) -> torch.nn.Module:
        r"""A fresh model, optimizer and loader."""
        args = self.args
        torch.manual_seed(args.seed)
        self.model_kwargs = model_kwargs(args, self.num_atom_types,
                                         self.in_channels, self.max_nodes)
        self.model = model_class(args)(**self.model_kwargs).to(
            self.par.device)
        self.net = self.par.wrap(LossModule(self.model, loss_terms_fn(args)))
        self.optimizer = torch.optim.Adam(self.model.parameters(),
                                          lr=args.lr)
        self.ema = None
        if args.ema:
            from torch.optim.swa_utils import (
                AveragedModel,
                get_ema_multi_avg_fn,
            )
            self.ema = AveragedModel(
                self.model, multi_avg_fn=get_ema_multi_avg_fn(args.ema))
            self.optimizer.register_step_post_hook(
                lambda *_: self.ema.update_parameters(self.model))
        self.loader = self.par.loader(self.train_graphs, args.batch_size,
                                      seed=args.seed)
        self.generator = self.par.generator(args.seed)
        self.weights = {'kl': args.kl_weight,
                        'balanced_cut': args.cut_weight,
                        'valence': args.valence_weight}
        self.history, self.train_seconds = [], 0.0
        return self.model

    def training_state(self) -> Dict[str, Any]:
        r"""The training state (see
        :func:`~torch_geometric_mgvae.experiments.state.training_state`)."""
        return training_state(self.model, self.optimizer, self.model_kwargs,
                              generators={'generator': self.generator},
                              history=self.history,
                              train_seconds=self.train_seconds,
                              ema=None if self.ema is None else
                              self.ema.state_dict())

    def restore(self, session: TrainingSession) -> Optional[Dict[str, Any]]:
        r"""Continues from :obj:`session`'s saved training state, if any."""
        state = session.restore('', self.model, self.optimizer,
                                generators={'generator': self.generator})
        if state is not None:
            self.history = state['history']
            self.train_seconds = state['train_seconds']
            if self.ema is not None:
                self.ema.load_state_dict(state['ema'])
            # --lr may change on --resume (BUDGET): the restored optimizer
            # has the saved one. Epochs saved before the rate was recorded
            # per epoch ran at the saved run's --lr.
            for row in self.history:
                row.setdefault('lr', session.saved_args.get('lr'))
            for group in self.optimizer.param_groups:
                group['lr'] = self.args.lr
        return state

    def use_average(self):
        r"""With :obj:`--ema`, loads the moving average of the weights into
        the model, for sampling, the metrics and :obj:`model.pt` (the
        training state keeps the trained weights and the average)."""
        if self.ema is not None:
            with torch.no_grad():
                for p, q in zip(self.model.parameters(),
                                self.ema.module.parameters()):
                    p.copy_(q)

    def train_epoch(self) -> Dict[str, float]:
        r"""One epoch; returns the mean loss terms per molecule."""
        t0 = time.perf_counter()
        warm = self.args.kl_warmup
        epoch = len(self.history) + 1
        self.weights['kl'] = self.args.kl_weight * min(1.0,
                                                       epoch / (warm + 1))
        # The validity regulariser rewards decoding no bond at all, so it
        # starts once the warm-up is over (the decoder has learnt bonds):
        self.weights['valence'] = (self.args.valence_weight if epoch > warm
                                   else 0.0)
        stats = train_epoch(self.net, self.loader, self.optimizer,
                            self.weights, generator=self.generator,
                            epoch=epoch)
        self.train_seconds += time.perf_counter() - t0
        self.history.append(dict(epoch=len(self.history) + 1, **stats,
                                 lr=self.optimizer.param_groups[0]['lr']))
        return stats

    def out_of_time(self) -> bool:
        m = self.args.max_minutes
        return m is not None and self.train_seconds >= 60 * m

    # Sampling and metrics #################################################

    def _fcd(self, smiles: List[str]) -> Optional[float]:
        r"""FCD of :obj:`smiles` to the test set (:obj:`None` without
        :obj:`fcd_torch`); the ChemNet statistics of the test set are
        computed once."""
        try:
            from fcd_torch import FCD
        except ImportError:
            return None
        if len(smiles) < 2:
            return None
        if getattr(self, '_fcd_ref', None) is None:
            self._fcd_model = FCD(device=str(self.par.device), n_jobs=1)
            self._fcd_ref = self._fcd_model.precalc(self.test_smiles)
        return float(self._fcd_model.metric(
            self._fcd_ref, self._fcd_model.precalc(smiles)))

    def _metrics(self, mols: Sequence[Any]) -> Dict[str, float]:
        if getattr(self, '_canonical', None) is None:  # once per run
            self._canonical = (canonical_set(self.train_smiles),
                               canonical_set(g.smiles
                                             for g in self.train_graphs))
        split, seen = self._canonical
        res = molecule_metrics(mols, split, fcd=False)
        # The paper's novelty is against the molecules trained on; QM9 lists
        # nearly every small molecule, so the whole split is stricter.
        valid = valid_mols(mols)  # sanitized once for the metrics below
        res['novelty_seen'] = novelty(valid, seen)
        if not self.args.no_fcd:
            smiles = [s for s in map(mol_to_smiles, valid) if s]
            fcd = self._fcd(smiles)
            if fcd is not None:
                res['fcd'] = fcd
            nspdk = self._nspdk(valid)
            if nspdk is not None:
                res['nspdk'] = nspdk
        return res

    def _nspdk(self, mols: Sequence[Any]) -> Optional[float]:
        r"""NSPDK MMD of the valid molecules :obj:`mols` to the test set,
        GDSS's second molecule metric (:obj:`None` without the optional
        :obj:`eden-kernel` or without a molecule); the test set's features
        are computed once."""
        from torch_geometric_mgvae.chem import nspdk_features, nspdk_mmd
        try:
            import eden.graph  # noqa: F401
        except ImportError:
            return None
        if not mols:
            return None
        if getattr(self, '_nspdk_ref', None) is None:
            self._nspdk_ref = nspdk_features(self.test_smiles)
        return nspdk_mmd(mols, self._nspdk_ref)

    @torch.no_grad()
    def test(self) -> Dict[str, Dict[str, float]]:
        r"""Samples :obj:`num_samples` molecules (seeded) and measures them
        without and (all-at-once) with the valence correction, and the
        training-set reference."""
        args, model = self.args, self.model
        model.eval()
        gen = torch.Generator(device=self.par.device).manual_seed(
            10_000 + args.seed)
        t0 = time.perf_counter()
        if self.all_at_once:
            model.fit_num_nodes(self.train_graphs)
            sample = model.sample(args.num_samples, generator=gen,
                                  temperature=args.temperature,
                                  refine_steps=args.refine_steps,
                                  rounds=args.decode_rounds,
                                  decode_temperature=args.decode_temperature
                                  ).to('cpu')
            decode_seconds = time.perf_counter() - t0
            t1 = time.perf_counter()
            raw = sample.raw_mols(self.atoms)
            raw_seconds = decode_seconds + time.perf_counter() - t1
            t1 = time.perf_counter()
            corrected = sample.corrected_mols(self.atoms, args.threshold)
            cor_seconds = decode_seconds + time.perf_counter() - t1
            t1 = time.perf_counter()
            joined = sample.corrected_mols(self.atoms, args.threshold,
                                           connect=True)
            join_seconds = decode_seconds + time.perf_counter() - t1
            self.sample = sample
            sets = {RAW: (raw, raw_seconds),
                    CORRECTED: (corrected, cor_seconds),
                    JOINED: (joined, join_seconds)}
        else:
            raw = model.sample_mols(args.num_samples, generator=gen)
            sets = {RAW: (raw, time.perf_counter() - t0)}
        self.mols = {}
        for name, (mols, seconds) in sets.items():
            res = self._metrics(mols)
            res['sample_seconds'] = seconds
            self.results[name] = res
            self.mols[name] = mols
        g = torch.Generator().manual_seed(20_000 + args.seed)
        ref = torch.randperm(len(self.train_smiles), generator=g)[
            :args.num_samples]
        self.reference = self._metrics(
            [self.train_smiles[int(i)] for i in ref])
        for name, res in self.results.items():
            self.log(f'{name}: ' + self._line(res))
        self.log(f'{REFERENCE}: ' + self._line(self.reference))
        return self.results

    @staticmethod
    def _line(res: Dict[str, float]) -> str:
        keys = ('validity', 'validity_connected', 'uniqueness', 'novelty',
                'novelty_seen', 'qed_mean', 'fcd', 'nspdk', 'sample_seconds')
        return ', '.join(f'{k} {res[k]:.4g}' for k in keys if k in res)

    # Summary ##############################################################

    def _protocol(self) -> str:
        spec = ('GDSS test split (valid_idx_qm9.json)' if
                self.args.dataset == 'qm9' else
                'Benchmarking-GNNs test split')
        return (f'{self.args.num_samples} sampled molecules; train on '
                f'{len(self.train_graphs)} random training molecules '
                f'(seed {self.args.seed}); novelty vs all '
                f'{len(self.train_smiles)} training molecules, '
                f'novelty_seen vs the {len(self.train_graphs)} trained on; '
                f'FCD vs the '
                f'{len(self.test_graphs)} molecules of the {spec}; '
                f'canonical SMILES without stereo, '
                f'{"aromatic bonds" if self.args.aromatic else "kekulized"}'
                f', implicit H')

    def records(self) -> List[Dict[str, Any]]:
        r"""The flat result records of the run."""
        args = self.args
        epochs = len(self.history)
        method = method_name(args, epochs, self.history)
        common = dict(task=TASK, dataset=self.label, command=self.command,
                      device=self.par.device.type,
                      processes=self.par.world_size,
                      protocol=self._protocol())
        out = []
        settings = [(method, name, res) for name, res in
                    self.results.items()]
        settings.append((REFERENCE, None, self.reference))
        for meth, setting, res in settings:
            extra = {} if setting is None else dict(setting=setting)
            for key, metric in (('validity', 'validity'),
                                ('validity_connected', 'valid_connected'),
                                ('uniqueness', 'uniqueness'),
                                ('novelty', 'novelty'),
                                ('novelty_seen', 'novelty_seen')):
                out.append(record(method=meth, metric=metric,
                                  value=res[key], **extra, **common))
            out.append(record(
                method=meth, metric='QED', value=res['qed_mean'],
                std=res['qed_std'], **extra, **dict(
                    common, protocol=common['protocol'] + '; QED mean and '
                    'std over the valid molecules')))
            if 'fcd' in res:
                out.append(record(method=meth, metric='FCD',
                                  value=res['fcd'], **extra, **common))
            elif not args.no_fcd:
                out.append(record(method=meth, metric='FCD', value=None,
                                  error='fcd_torch not installed', **extra,
                                  **common))
            if 'nspdk' in res:
                out.append(record(
                    method=meth, metric='NSPDK MMD', value=res['nspdk'],
                    **extra, **dict(common, protocol=common['protocol'] +
                                    '; NSPDK: EDeN vectorize, complexity 4, '
                                    'linear kernel, vs the test set')))
            if 'sample_seconds' in res:
                rounding = {RAW: 'argmax', CORRECTED: 'valence correction',
                            JOINED: 'valence correction, joining'}[setting]
                out.append(record(
                    method=meth, metric='sample_seconds',
                    value=res['sample_seconds'], **extra, **dict(
                        common, protocol=f'wall-clock seconds to sample '
                        f'{args.num_samples} molecules as RDKit molecules '
                        f'(prior, decoder, {rounding}), '
                        f'torch {torch.__version__}, '
                        f'{torch.get_num_threads()} threads, {machine()} '
                        f'(shared)')))
        out.append(record(
            method=method, metric='train_seconds', value=self.train_seconds,
            **dict(common, protocol=f'{epochs} epochs over '
                   f'{len(self.train_graphs)} molecules, batch '
                   f'{args.batch_size}, {torch.get_num_threads()} threads, '
                   f'{machine()} (shared)')))
        return out

    def table(self) -> str:
        r"""The results as text."""
        cols = ('validity', 'validity_connected', 'uniqueness', 'novelty',
                'novelty_seen', 'qed_mean', 'fcd', 'nspdk', 'sample_seconds')
        rows = list(self.results.items()) + [(REFERENCE, self.reference)]
        width = max(len(r) for r, _ in rows) + 2
        method = method_name(self.args, len(self.history), self.history)
        lines = [f'{self.label}: {method}, {self.args.num_samples} samples',
                 f'{"":<{width}}' + ''.join(f'{c[:12]:>13}' for c in cols)]
        for name, res in rows:
            cells = [f'{res[c]:>13.4g}' if c in res else f'{"—":>13}'
                     for c in cols]
            lines.append(f'{name:<{width}}' + ''.join(cells))
        return '\n'.join(lines)

    def pictures(self) -> List[str]:
        r"""A grid of generated molecules with their QED (the corrected ones
        for the all-at-once model) and the latent interpolation between two
        test molecules of equal size."""
        args, paths = self.args, []
        name = JOINED if JOINED in self.mols else RAW
        mols = [m for m in self.mols[name] if m is not None][:32]
        paths.append(draw_molecules(
            mols, [f'QED {_qed(m):.3f}' for m in mols],
            os.path.join(args.out, 'generated.png')))
        pair = interpolation_pair(self.test_graphs)
        if self.all_at_once and pair is not None:
            from rdkit import Chem
            a, b = pair
            inter = interpolate(self.model, a, b, self.atoms,
                                threshold=args.threshold, seed=args.seed)
            self.interpolation = dict(
                a=a.smiles, b=b.smiles,
                path=[mol_to_smiles(m) for m in inter])
            ends = [Chem.MolFromSmiles(canonical_smiles(g.smiles))
                    for g in pair]
            legends = [f't = {t:.2f}' for t in np.linspace(0, 1, len(inter))]
            paths.append(draw_molecules(
                [ends[0]] + inter + [ends[1]],
                ['test molecule A'] + legends + ['test molecule B'],
                os.path.join(args.out, 'interpolation.png'),
                per_row=len(inter) + 2))
        return paths

    def finish(self) -> List[Dict[str, Any]]:
        r"""Prints the table, writes the records (replacing this dataset's
        and decoder's rows in :obj:`--results`), the pictures, the SMILES
        and a summary JSON."""
        from torch_geometric_mgvae.experiments.plot import plot_curves
        if not self.results:
            raise RuntimeError('Nothing measured: call test() first')
        args = self.args
        self.log('')
        self.log(self.table())
        recs = self.records()
        self._write(recs)
        paths = self.pictures()
        if self.history:
            paths.append(plot_curves(
                self.history, os.path.join(args.out, 'training_curve.png'),
                keys=[k for k in self.history[0]
                      if k not in ('epoch', 'lr')]))
        for name, mols in self.mols.items():
            write_text(os.path.join(args.out, SAMPLE_FILES[name]),
                       ''.join(f'{mol_to_smiles(m) or ""}\n' for m in mols))
        model_checkpoint(os.path.join(args.out, 'model.pt'), self.model,
                         self.model_kwargs, args=args)
        summary = dict(records=recs, history=self.history,
                       results=self.results, reference=self.reference,
                       interpolation=getattr(self, 'interpolation', None))
        write_json(os.path.join(args.out, 'summary.json'), summary)
        self.log(f'wrote {args.results}, ' + ', '.join(paths))
        return recs

    def _write(self, recs: List[Dict[str, Any]]):
        r"""Replaces the records of this dataset and generator kind."""
        path = self.args.results
        kind = 'all-at-once' if self.all_at_once else 'autoregressive'
        old = read_records(path)
        kept = [r for r in old if not (
            r.get('task') == TASK and r.get('dataset') == self.label and
            (r['method'].startswith(kind) or r['method'] == REFERENCE))]
        write_records(path, kept + recs, replace=False)


def run(args: argparse.Namespace, command: Optional[str] = None
        ) -> List[Dict[str, Any]]:
    r"""The whole experiment (what :obj:`mgvae molecules` runs): training
    with a progress bar, sampling, metrics, then :meth:`finish`. Inside a
    :class:`~torch_geometric_mgvae.experiments.state.TrainingSession`: the
    training state is saved every :obj:`--checkpoint-every` epochs and on
    SIGINT/SIGTERM, and :obj:`--resume` continues it."""
    from tqdm import tqdm
    args = resolve_args(args)
    with Parallel.from_args(args) as par, \
            TrainingSession.from_args(args, budget=BUDGET) as session:
        exp = MoleculeExperiment(args, command, parallel=par)
        exp.start()
        resumed = exp.restore(session)
        bar = tqdm(total=args.epochs, initial=len(exp.history), desc='train',
                   disable=args.no_progress or not par.is_main,
                   file=sys.stdout)

        def step(epoch: int):
            stats = exp.train_epoch()
            shown = {k: f'{v:.2f}' for k, v in stats.items()
                     if k in ('loss', 'kl', 'bond_recon')}
            bar.update()
            bar.set_postfix(shown)
            if args.no_progress and par.is_main:  # one line per epoch
                print(f'epoch {len(exp.history)}: ' + ', '.join(
                    f'{k} {v}' for k, v in shown.items()) +
                    f' ({exp.train_seconds:.0f}s)', flush=True)

        session.train('', step, args.epochs, exp.training_state, resumed,
                      stop=exp.out_of_time)
        bar.close()
        exp.use_average()
        records = None
        if par.is_main:  # the others wait at the barrier
            exp.test()
            records = exp.finish()
        par.barrier()
        return records
