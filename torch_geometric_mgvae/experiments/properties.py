r"""Molecular property prediction (paper Sec. 5, Table 3, appendix D.3,
D.4).

**Supervised** (:obj:`--mode supervised`, paper D.4): a
:class:`~torch_geometric_mgvae.models.property.HierarchicalRegressor` ("GINE
convolutions, then a pooling layer" at every level; the node features of
every level averaged per molecule, concatenated, a linear head) with
:class:`~torch_geometric_mgvae.nn.MGNPooling` (learned clusters, and the
fixed spectral hierarchy of
:class:`~torch_geometric_mgvae.transforms.FixedHierarchy`) beside PyG's
:class:`~torch_geometric.nn.pool.TopKPooling`,
:class:`~torch_geometric.nn.pool.SAGPooling`,
:class:`~torch_geometric.nn.pool.ASAPooling`,
:func:`~torch_geometric.nn.dense.dense_diff_pool` and global mean / add
pooling without hierarchy, all with the same convolutions, hidden size,
depth, optimiser, epochs and seeds. ZINC-12k (the benchmark's 10k/1k/1k
split): one model per target, the benchmark's normalised penalised logP
and plain RDKit (Crippen) logP. QM9: one multi-task model on the
standardised targets of the paper's Table 9, from the 2D graph only.

**Unsupervised** (:obj:`--mode unsupervised`, paper D.3, QM9 only): an
:class:`~torch_geometric_mgvae.MGVAE` is trained as an autoencoder on
training molecules (adjacency at every level, atom and bond types from the
finest latents, a fraction of the atom types hidden from the encoder:
:obj:`--bond-recon`, :obj:`--feature-mask`), frozen, and its latents
averaged per molecule (finest
level; all levels concatenated) feed one MLP per target (2 hidden layers of
512, sigmoid; :class:`~torch_geometric_mgvae.models.property.PerTargetMLP`).
Controls with the same MLP: an untrained encoder of the same architecture
and Morgan fingerprints.

Protocol: QM9 is split 80/10/10 at random with a fixed seed over all its
molecules (the paper used the split of Hy et al. 2018, which is not
available); epochs are selected on the validation MAE, the test set is read
once, with the selected model; mean and standard deviation over seeds.
MAE in the units of the paper's Table 9 (energies converted from Hartree to
eV; G, H, U, U0 are atomization energies).

Data-parallel (:mod:`torch_geometric_mgvae.experiments.distributed`):
under ``torchrun --nproc_per_node N`` or with :obj:`--nproc N`, the
supervised regressors (:func:`fit_regressor`) and the unsupervised
autoencoder train in :obj:`N` processes with
:class:`~torch.nn.parallel.DistributedDataParallel`, over global batches of
:obj:`--batch-size` (:class:`~torch_geometric_mgvae.experiments.
distributed.DistributedGraphSampler`); rank 0 alone validates and selects
the epoch, reads the test set, writes the records, parity plots and
checkpoints. The frozen features and the MLP fits of :obj:`--mode
unsupervised` run on rank 0 only (an epoch over frozen features takes
seconds; DDP would only add the exchange of the MLPs' gradients), the
others wait. Batch normalisation is synchronised on CUDA
(:class:`~torch.nn.SyncBatchNorm`); on the CPU every process normalises
over its share of the batch, so a run depends on :obj:`N` there; so does
one with the learned MGN pooling, whose Gumbel noise comes from torch's
global generator, seeded alike in every process. :obj:`--resume` needs the
same :obj:`N`.

The :obj:`mgvae properties` command and ``examples/property_prediction.py``
both call :func:`run`.
"""
import argparse
import copy
import math
import os
import sys
import time
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor
from torch_geometric.data import Data
from torch_geometric.loader import DataLoader

from torch_geometric_mgvae.experiments.distributed import (
    Parallel,
    gather_objects,
    get_world_size,
    is_main,
)
from torch_geometric_mgvae.experiments.io import (
    SHARED_DATA,
    copy_file,
    load_torch,
    save_torch,
)
from torch_geometric_mgvae.experiments.options import (
    int_list,
    nonnegative_float,
    parse_options,
    positive_float,
    positive_int,
    probability,
)
from torch_geometric_mgvae.experiments.plot import save_figure
from torch_geometric_mgvae.experiments.results import (
    current_command,
    machine,
    mean_std,
    read_records,
    record,
    write_dataset_records,
)
from torch_geometric_mgvae.experiments.state import (
    TrainingSession,
    model_checkpoint,
    training_state,
)
from torch_geometric_mgvae.experiments.train import (
    LossModule,
    NonFiniteError,
    run_epoch,
)
from torch_geometric_mgvae.models.property import (
    HierarchicalRegressor,
    MLPRegressor,
    PerTargetMLP,
    check_outputs,
    gine_conv,
    make_pools,
)

__all__ = [
    'HARTREE_TO_EV', 'ATOM_REF_HARTREE', 'QM9_TABLE9', 'ZINC_TARGETS',
    'METHODS', 'add_arguments', 'resolve_args', 'parse_args',
    'element_counts', 'qm9_table9_targets', 'zinc_targets', 'random_split',
    'build_regressor', 'regression_terms', 'fit_regressor', 'predict',
    'mae', 'run'
]

TASK = 'property_prediction'
MODES = ('supervised', 'unsupervised')
DATASETS = ('zinc', 'qm9')
LABELS = {'zinc': 'ZINC-12k', 'qm9': 'QM9'}
RESULTS_NAME = 'property_prediction.json'
# The unsupervised autoencoder's KL weight, chosen on the validation MAE
# of the frozen features (see the README).
KL_WEIGHT = 0.001
# Its pretext (with the bond types, --bond-recon), chosen the same way.
FEATURE_MASK = 0.2
SHARED = SHARED_DATA
RAW = {'zinc': ('zinc12k_benchgnn',
                ('smiles_score.csv', 'indexes_train_val_test.csv')),
       'qm9': ('qm9', ('qm9_qm9pack_compact.csv.gz', 'valid_idx_qm9.json'))}

#: Hartree to electronvolt (CODATA 2018, as torch_geometric.datasets.QM9).
HARTREE_TO_EV = 27.211386246

#: Energies of the free atoms in QM9 (its ``atomref`` table), in Hartree:
#: element -> (U0, U, H, G). An atomization energy is the molecule's energy
#: minus the sum of its atoms'.
ATOM_REF_HARTREE: Dict[str, Tuple[float, float, float, float]] = {
    'H': (-0.500273, -0.498857, -0.497912, -0.510927),
    'C': (-37.846772, -37.845355, -37.844411, -37.861317),
    'N': (-54.583861, -54.582445, -54.581501, -54.598897),
    'O': (-75.064579, -75.063162, -75.062219, -75.079532),
    'F': (-99.718730, -99.717314, -99.716370, -99.733544),
}
ELEMENTS = ('H', 'C', 'N', 'O', 'F')
_REF_COLUMN = {'U0': 0, 'U': 1, 'H': 2, 'G': 3}

#: The targets of the paper's Table 9 that the data holds, in its order:
#: (name, unit, column of QM9Molecules.y, conversion). Conversion
#: 'ev' = Hartree -> eV, 'atomization' = energy minus the atoms' (atomref)
#: in eV, None = the raw unit. Table 9's omega1 (highest vibrational
#: frequency) is not in the data (the qm9pack file keeps no frequencies).
QM9_TABLE9: List[Tuple[str, str, int, Optional[str]]] = [
    ('alpha', 'bohr^3', 1, None),
    ('Cv', 'cal/(mol K)', 11, None),
    ('G', 'eV', 10, 'atomization'),
    ('gap', 'eV', 4, 'ev'),
    ('H', 'eV', 9, 'atomization'),
    ('HOMO', 'eV', 2, 'ev'),
    ('LUMO', 'eV', 3, 'ev'),
    ('mu', 'D', 0, None),
    ('R2', 'bohr^2', 5, None),
    ('U', 'eV', 8, 'atomization'),
    ('U0', 'eV', 7, 'atomization'),
    ('ZPVE', 'eV', 6, 'ev'),
]
ZINC_TARGETS: List[Tuple[str, str]] = [
    ('penalized_logp', 'normalised penalised logP (benchmark target)'),
    ('logp', 'RDKit Crippen logP (the paper\'s target)'),
]

#: Methods: key -> (name in the records, pooling kind, readout).
METHODS: Dict[str, Tuple[str, str, str]] = {
    'mgn': ('MGN (MGNPooling, learned clusters)', 'mgn', 'mean'),
    'mgn_fixed': ('MGN (MGNPooling, fixed spectral clusters)', 'mgn_fixed',
                  'mean'),
    'topk': ('TopKPooling', 'topk', 'mean'),
    'sag': ('SAGPooling', 'sag', 'mean'),
    'asap': ('ASAPooling', 'asap', 'mean'),
    'diffpool': ('dense_diff_pool', 'diffpool', 'mean'),
    'mean': ('no pooling (global mean)', 'none', 'mean'),
    'add': ('no pooling (global add)', 'none', 'add'),
}
DEFAULT_METHODS = {'zinc': list(METHODS), 'qm9': ['mgn', 'mean']}

#: Numbers reported by others (not measured here), shown beside ours in the
#: README tables. MAE; ZINC: the paper's Table 3 bottom (baselines taken
#: from Yang et al. 2020); QM9: the paper's Table 3 top (units of Table 9,
#: split of Hy et al. 2018).
REPORTED = {
    'zinc': {
        'MGN (paper Table 3; authors\' code: plain logP, best test MAE '
        'over epochs)': 0.290,
        'GatedGCN-E (paper Table 3, from Yang et al. 2020)': 0.363,
        'FactorGCN (paper Table 3, from Yang et al. 2020)': 0.366,
        'GRIT (ZINC-12k leaderboard, penalised logP, 500k)': 0.059,
    },
    'qm9': {
        'MGVAE (paper Table 3)': dict(
            alpha=2.83, Cv=0.91, G=1.78, gap=0.66, H=1.87, HOMO=0.34,
            LUMO=0.58, mu=0.95, omega1=195, R2=90, U=1.89, U0=1.90,
            ZPVE=0.14),
        'CCN 2D (paper Table 3, Hy et al. 2018)': dict(
            alpha=1.30, Cv=0.93, G=2.75, gap=0.69, H=3.14, HOMO=0.23,
            LUMO=0.67, mu=0.72, omega1=120, R2=53, U=3.02, U0=2.99,
            ZPVE=0.35),
    },
}


# Command line #############################################################

def add_arguments(parser: argparse.ArgumentParser):
    r"""The options of the experiment (:obj:`mgvae properties` and
    ``examples/property_prediction.py``)."""
    data = parser.add_argument_group('data and protocol')
    data.add_argument('--dataset', required=True, choices=DATASETS)
    data.add_argument('--mode', default='supervised', choices=MODES)
    data.add_argument('--root', default=None,
                      help='dataset folder (default: data/<dataset>); raw '
                      'files in ROOT/raw')
    data.add_argument('--data', default=None,
                      help='folder holding the raw files, copied into '
                      'ROOT/raw when missing there (default: the shared '
                      'data folder if it exists)')
    data.add_argument('--methods', default=None,
                      help=f'comma-separated, from {",".join(METHODS)} '
                      f'(default: all on zinc; mgn,mean on qm9)')
    data.add_argument('--targets', default=None,
                      help='comma-separated target names (default: zinc '
                      'penalized_logp,logp; qm9 all of Table 9 in the data)')
    data.add_argument('--seeds', type=positive_int, default=3)
    data.add_argument('--split-seed', type=int, default=0,
                      help='seed of the random QM9 80/10/10 split')
    data.add_argument('--subset', type=positive_int, default=None,
                      help='use only the first N molecules of every split '
                      '(quick checks; the records say so)')
    data.add_argument('--out', default=None,
                      help='folder for records, parity plots, checkpoints '
                      '(default: outputs/properties/<dataset>_<mode>)')
    data.add_argument('--results', default=None,
                      help=f'JSON file of result records (default: '
                      f'OUT/{RESULTS_NAME}); the records of this dataset '
                      f'and mode are replaced')
    data.add_argument('--no-progress', action='store_true')

    model = parser.add_argument_group('model (supervised)')
    model.add_argument('--hidden', type=positive_int, default=64)
    model.add_argument('--layers', type=positive_int, default=2,
                       help='GINE convolutions per level (the no-pooling '
                       'baselines get levels x layers, the same depth)')
    model.add_argument('--clusters', type=int_list, default=[4, 2],
                       help='clusters per pooling level for MGN and '
                       'DiffPool (default: 4,2: three levels)')
    model.add_argument('--ratio', type=positive_float, default=0.5,
                       help='kept fraction of TopK/SAG/ASAP per level')
    model.add_argument('--cluster-layers', type=int, default=0,
                       help='GNN layers of the MGN clustering (0: linear on '
                       'the convolutions\' output)')
    model.add_argument('--aux-weight', type=nonnegative_float, default=0.1,
                       help='weight of the pooling losses (MGN balanced '
                       'cut, DiffPool link + entropy)')

    opt = parser.add_argument_group('training')
    opt.add_argument('--epochs', type=positive_int, default=20)
    opt.add_argument('--batch-size', type=positive_int, default=128)
    opt.add_argument('--lr', type=positive_float, default=1e-3)
    opt.add_argument('--device', default='auto',
                     choices=['auto', 'cpu', 'cuda', 'mps'],
                     help='auto: cuda, then mps, then cpu (default: '
                     'auto); mgvae properties trains data-parallel under '
                     'torchrun or with --nproc N (--batch-size is the '
                     'global batch)')

    un = parser.add_argument_group('unsupervised (qm9)')
    un.add_argument('--ae-train', type=positive_int, default=10000,
                    help='training molecules of the autoencoder (paper D.2:'
                    ' 10,000 random QM9 training molecules)')
    un.add_argument('--ae-epochs', type=positive_int, default=150,
                    help='autoencoder epochs (default: 150, chosen with '
                    '--kl-weight on the validation MAE; about 7 minutes per '
                    'seed on one CPU thread)')
    un.add_argument('--latent', type=positive_int, default=64)
    un.add_argument('--kl-weight', type=nonnegative_float, default=KL_WEIGHT,
                    help=f'weight of the autoencoder\'s KL terms (default: '
                    f'{KL_WEIGHT}; at 1 the posterior collapsed: KL 2.2 nats '
                    f'per molecule, atom types decoded at their marginal)')
    un.add_argument('--bond-recon', default=True,
                    action=argparse.BooleanOptionalAction,
                    help='the autoencoder also reconstructs the bond types '
                    'from the finest latents (MGVAE edge_feature_loss; not '
                    'in the paper; default: on, chosen with --feature-mask '
                    'on the validation MAE, see the README)')
    un.add_argument('--feature-mask', type=probability,
                    default=FEATURE_MASK,
                    help=f'fraction of atoms whose type the autoencoder\'s '
                    f'encoder does not see in training (MGVAE feature_mask, '
                    f'the masked-atom pretext; not in the paper; default: '
                    f'{FEATURE_MASK:g})')
    un.add_argument('--order', type=int, default=1, choices=[1, 2],
                    help='MGVAE encoder order (default: 1)')
    un.add_argument('--mlp-epochs', type=positive_int, default=20)
    un.add_argument('--mlp-batch-size', type=positive_int, default=512)
    un.add_argument('--mlp', default='per-target',
                    choices=['per-target', 'shared'],
                    help='one MLP per target (the paper\'s) or one MLP with '
                    'an output per target (about T times cheaper)')
    return parser


def resolve_args(args: argparse.Namespace) -> argparse.Namespace:
    r"""Fills the defaults that depend on the dataset and checks the
    combinations (before any work)."""
    if args.mode == 'unsupervised' and args.dataset != 'qm9':
        raise ValueError("--mode unsupervised is the QM9 experiment "
                         "(paper D.3): use --dataset qm9")
    if isinstance(args.methods, str):
        args.methods = [m.strip() for m in args.methods.split(',')
                        if m.strip()]
    if args.methods is None:
        args.methods = list(DEFAULT_METHODS[args.dataset])
    bad = [m for m in args.methods if m not in METHODS]
    if bad or not args.methods:
        raise ValueError(f"--methods: unknown {bad} (known: "
                         f"{','.join(METHODS)})")
    names = target_names(args.dataset)
    if isinstance(args.targets, str):
        args.targets = [t.strip() for t in args.targets.split(',')
                        if t.strip()]
    if args.targets is None:
        args.targets = names
    bad = [t for t in args.targets if t not in names]
    if bad or not args.targets:
        raise ValueError(f"--targets: unknown {bad} for {args.dataset} "
                         f"(known: {','.join(names)})")
    from torch_geometric_mgvae.experiments.distributed import select_device
    args.device = select_device(args.device).type
    if args.feature_mask >= 1:
        raise ValueError("--feature-mask must be < 1 (the encoder would see "
                         "no atom types)")
    if args.cluster_layers < 0:
        raise ValueError("--cluster-layers must be >= 0")
    if not 0 < args.ratio <= 1:
        raise ValueError("--ratio must lie in (0, 1]")
    if args.root is None:
        args.root = os.path.join('data', args.dataset)
    if args.data is None:
        shared = os.path.join(SHARED, RAW[args.dataset][0])
        if os.path.isdir(shared):
            args.data = shared
    elif not os.path.isdir(args.data):
        raise ValueError(f"--data: no such folder '{args.data}'")
    if args.out is None:
        args.out = os.path.join('outputs', 'properties',
                                f'{args.dataset}_{args.mode}')
    if args.results is None:
        args.results = os.path.join(args.out, RESULTS_NAME)
    read_records(args.results)  # a broken file fails now, not after
    return args


def parse_args(argv: Optional[Sequence[str]] = None,
               prog: Optional[str] = None) -> argparse.Namespace:
    return parse_options(__doc__, add_arguments, resolve_args, argv, prog)


def target_names(dataset: str) -> List[str]:
    if dataset == 'zinc':
        return [t[0] for t in ZINC_TARGETS]
    return [t[0] for t in QM9_TABLE9]


def target_units(dataset: str) -> Dict[str, str]:
    if dataset == 'zinc':
        return {t[0]: '' for t in ZINC_TARGETS}
    return {t[0]: t[1] for t in QM9_TABLE9}


# Targets and splits #######################################################

def element_counts(smiles: Sequence[str]) -> Tensor:
    r"""The number of H, C, N, O and F atoms (hydrogens included) of every
    molecule, :math:`(N, 5)`."""
    from rdkit import Chem
    out = torch.zeros(len(smiles), len(ELEMENTS), dtype=torch.long)
    col = {e: i for i, e in enumerate(ELEMENTS)}
    for i, smi in enumerate(smiles):
        mol = Chem.MolFromSmiles(smi)
        if mol is None:
            raise ValueError(f"Cannot parse SMILES {smi!r}")
        for atom in mol.GetAtoms():
            sym = atom.GetSymbol()
            if sym not in col:
                raise ValueError(f"Element {sym} of {smi!r} has no QM9 "
                                 f"reference energy")
            out[i, col[sym]] += 1
            out[i, 0] += atom.GetTotalNumHs()
    return out


def atomization_energy(energy: Tensor, counts: Tensor, kind: str) -> Tensor:
    r"""The atomization energy in eV of molecules with total energies
    :obj:`energy` (Hartree) and element counts :obj:`counts`
    (:func:`element_counts`); :obj:`kind` is :obj:`"U0"`, :obj:`"U"`,
    :obj:`"H"` or :obj:`"G"`."""
    ref = torch.tensor([ATOM_REF_HARTREE[e][_REF_COLUMN[kind]]
                        for e in ELEMENTS], dtype=torch.float64)
    atoms = counts.to(torch.float64) @ ref
    return (energy.to(torch.float64) - atoms) * HARTREE_TO_EV


def qm9_table9_targets(y: Tensor, counts: Tensor) -> Tensor:
    r"""The targets of the paper's Table 9 (:const:`QM9_TABLE9`, in its
    units) from the 15 raw properties :math:`(N, 15)` of
    :class:`~torch_geometric_mgvae.datasets.QM9Molecules` and the element
    counts; float64 :math:`(N, 12)`."""
    y = y.to(torch.float64)
    cols = []
    for name, _, col, conv in QM9_TABLE9:
        v = y[:, col]
        if conv == 'ev':
            v = v * HARTREE_TO_EV
        elif conv == 'atomization':
            v = atomization_energy(v, counts, name)
        cols.append(v)
    return torch.stack(cols, dim=1)


def zinc_targets(smiles: Sequence[str], y: Tensor) -> Tensor:
    r"""ZINC-12k targets :math:`(N, 2)`: the normalised penalised logP
    (:func:`~torch_geometric_mgvae.datasets.penalized_logp` from the file's
    logP and SA) and the plain logP."""
    from torch_geometric_mgvae.datasets import penalized_logp
    plogp = [penalized_logp(s, float(v[0]), float(v[1]))
             for s, v in zip(smiles, y)]
    return torch.stack([torch.tensor(plogp, dtype=torch.float64),
                        y[:, 0].to(torch.float64)], dim=1)


def random_split(num: int, seed: int = 0,
                 fractions: Tuple[float, float] = (0.8, 0.1)
                 ) -> Dict[str, Tensor]:
    r"""A random train/val/test split of :obj:`num` items (the rest after
    train and val is test), seeded."""
    perm = torch.randperm(num, generator=torch.Generator().manual_seed(seed))
    n_train = int(fractions[0] * num)
    n_val = int(fractions[1] * num)
    return {'train': perm[:n_train].sort().values,
            'val': perm[n_train:n_train + n_val].sort().values,
            'test': perm[n_train + n_val:].sort().values}


def _copy_raw(dataset: str, root: str, data: Optional[str]):
    if data is None:
        return
    for name in RAW[dataset][1]:
        dst = os.path.join(root, 'raw', name)
        src = os.path.join(data, name)
        if not os.path.exists(dst) and os.path.exists(src):
            copy_file(src, dst)


def load_data(args: argparse.Namespace, log=print
              ) -> Tuple[Dict[str, List[Data]], Dict[str, Any]]:
    r"""The train/val/test molecules with :obj:`y` = the selected targets
    in report units :math:`(1, T)` (float64 kept in :obj:`y64` for the
    MAE), and a description of the split."""
    from torch_geometric_mgvae import datasets
    _copy_raw(args.dataset, args.root, args.data)
    t0 = time.perf_counter()
    if args.dataset == 'zinc':
        ds = datasets.ZINC12k(args.root, split='all')
        smiles = list(ds._data.smiles)
        targets = zinc_targets(smiles, ds._data.y)
        split = {k: v.clone() for k, v in ds.split_idx.items()}
        desc = ('Benchmarking-GNNs ZINC-12k split (10,000/1,000/1,000, '
                'graphium indexes_train_val_test.csv)')
    else:
        ds = datasets.QM9Molecules(args.root, split='all')
        smiles = list(ds._data.smiles)
        targets = qm9_table9_targets(ds._data.y, element_counts(smiles))
        split = random_split(len(ds), args.split_seed)
        desc = (f'random 80/10/10 split of all {len(ds)} QM9 molecules '
                f'(seed {args.split_seed}); the paper used the split of Hy '
                f'et al. 2018, which is not available')
    names = target_names(args.dataset)
    cols = [names.index(t) for t in args.targets]
    targets = targets[:, cols]
    out: Dict[str, List[Data]] = {}
    for key in ('train', 'val', 'test'):
        idx = split[key]
        if args.subset is not None:
            idx = idx[:args.subset]
        graphs = []
        for i in idx.tolist():
            d = ds[i]
            g = Data(x=d.x, edge_index=d.edge_index, edge_attr=d.edge_attr,
                     y=targets[i].view(1, -1).float(), idx=d.idx,
                     num_nodes=d.num_nodes)
            g.smiles = d.smiles
            graphs.append(g)
        out[key] = graphs
    if args.subset is not None:
        desc += f'; only the first {args.subset} molecules of every split'
    info = dict(split=desc, sizes={k: len(v) for k, v in out.items()},
                seconds=time.perf_counter() - t0)
    log(f'{LABELS[args.dataset]}: ' + ', '.join(
        f'{k} {len(v)}' for k, v in out.items()) +
        f' molecules (loaded in {info["seconds"]:.0f}s)')
    return out, info


def add_fixed_hierarchy(graphs: Dict[str, List[Data]], clusters: List[int],
                        cache: str, log=print):
    r"""Adds the spectral hierarchy of
    :class:`~torch_geometric_mgvae.transforms.FixedHierarchy` to every
    molecule (computed once, cached in :obj:`cache`)."""
    from torch_geometric_mgvae.transforms import FixedHierarchy
    key = {k: [int(g.idx) for g in v] for k, v in graphs.items()}
    stored = None
    if os.path.exists(cache):
        stored = load_torch(cache)
        if stored.get('key') != key or stored.get('clusters') != clusters:
            stored = None
    if stored is None:
        t0 = time.perf_counter()
        fh = FixedHierarchy('spectral', clusters)
        levels = {k: [fh(Data(edge_index=g.edge_index,
                              num_nodes=g.num_nodes)) for g in v]
                  for k, v in graphs.items()}
        stored = dict(key=key, clusters=list(clusters), levels={
            k: [[h[f'fixed_cluster_{i}'] for i in range(len(clusters))]
                for h in v] for k, v in levels.items()})
        if is_main():  # the others wait (main_first) and read it
            save_torch(stored, cache)
        log(f'fixed spectral hierarchy {clusters} computed in '
            f'{time.perf_counter() - t0:.0f}s ({cache})')
    for k, v in graphs.items():
        for g, lv in zip(v, stored['levels'][k]):
            for i, c in enumerate(lv):
                g[f'fixed_cluster_{i}'] = c


# Supervised training ######################################################

def build_regressor(method: str, args: argparse.Namespace, in_channels: int,
                    num_targets: int) -> HierarchicalRegressor:
    r"""The model of one method: same convolutions, hidden size and depth
    for every pooling."""
    _, kind, readout = METHODS[method]
    H = args.hidden
    if kind == 'none':
        pools, layers = [], args.layers * (len(args.clusters) + 1)
    else:
        levels = (args.clusters if kind in ('mgn', 'mgn_fixed', 'diffpool')
                  else [args.ratio] * len(args.clusters))
        kwargs = dict(cluster_layers=args.cluster_layers,
                      conv=gine_conv(EDGE_CHANNELS)) if kind == 'mgn' else {}
        pools, layers = make_pools(kind, H, levels, **kwargs), args.layers
    return HierarchicalRegressor(in_channels, EDGE_CHANNELS, H, num_targets,
                                 pools, layers, readout=readout)


#: Edge features: 3 bond-type (counts) + 1 weight channel (ASAP).
EDGE_CHANNELS = 4


def _check_finite(loss: Tensor, where: str):
    r"""Stops at a non-finite loss, before the optimiser step
    (:class:`~torch_geometric_mgvae.experiments.train.NonFiniteError`).
    Local to this process (no collective): the MLP fits of
    :func:`fit_mlp` run on rank 0 alone."""
    if not bool(torch.isfinite(loss.detach()).all()):
        e = NonFiniteError('loss term', 'loss', float(loss.detach().sum()))
        e.where = where
        raise e


def mae(pred: Tensor, y: Tensor) -> Tensor:
    r"""MAE per target :math:`(T)`."""
    return (pred.double() - y.double()).abs().mean(dim=0)


@torch.no_grad()
def predict(model: torch.nn.Module, loader, mean: Tensor, std: Tensor
            ) -> Tuple[Tensor, Tensor]:
    r"""Predictions (in target units) and targets over :obj:`loader`."""
    model.eval()
    dev = next(model.parameters()).device
    preds, ys = [], []
    for batch in loader:
        batch = batch.to(dev)
        p, _ = model(batch)
        check_outputs(p, batch.y)
        preds.append(p.double().cpu() * std + mean)
        ys.append(batch.y.double().cpu())
    return torch.cat(preds), torch.cat(ys)


def regression_terms(mean: Tensor, std: Tensor):
    r"""The loss of the regressors as a :class:`~torch_geometric_mgvae.
    experiments.train.LossModule` loss: :obj:`"l1"`, the L1 loss of the
    targets standardised with :obj:`mean` and :obj:`std`, and
    :obj:`"pooling"`, the summed auxiliary losses of the pooling layers
    (weighed by :obj:`--aux-weight`)."""
    def terms(model, batch, generator=None) -> Dict[str, Tensor]:
        pred, aux = model(batch)
        check_outputs(pred, batch.y)
        return {'l1': F.l1_loss(pred, (batch.y - mean) / std),
                'pooling': torch.as_tensor(aux, dtype=pred.dtype,
                                           device=pred.device)}
    return terms


def fit_regressor(model: torch.nn.Module, loaders: Dict[str, Any],
                  mean: Tensor, std: Tensor, epochs: int, lr: float,
                  aux_weight: float = 0.0, where: str = '',
                  on_epoch: Optional[Callable[[int, Dict[str, float]],
                                              None]] = None,
                  session: Optional[TrainingSession] = None,
                  model_kwargs: Optional[Dict[str, Any]] = None,
                  parallel: Optional[Parallel] = None) -> Dict[str, Any]:
    r"""Trains :obj:`model` with Adam on the L1 loss of the standardised
    targets (plus :obj:`aux_weight` times the pooling losses), selects the
    epoch of the lowest mean validation MAE (standardised, so targets weigh
    alike), reads the test set once with that model. Returns the history,
    the best epoch, validation and test MAE per target (target units), the
    test predictions, the mean training-epoch time and the best state.
    With a :obj:`session`, the training state (with the best state so far)
    is saved under the key :obj:`where` every few epochs and on a signal,
    and a saved one is continued.

    The training epochs are :func:`~torch_geometric_mgvae.experiments.
    train.run_epoch` over a :class:`~torch_geometric_mgvae.experiments.
    train.LossModule` (:func:`regression_terms`). Data-parallel with a
    :obj:`parallel` in a process group: the model is wrapped in
    :class:`~torch.nn.parallel.DistributedDataParallel`
    (:meth:`~torch_geometric_mgvae.experiments.distributed.Parallel.wrap`,
    synchronised batch normalisation on CUDA), :obj:`loaders["train"]`
    should come from :meth:`~torch_geometric_mgvae.experiments.distributed.
    Parallel.loader` (the global batch), rank 0 alone validates after every
    epoch, selects the epoch, reads the test set and calls
    :obj:`on_epoch`, and the result (without :obj:`"state"` on the other
    processes) is rank 0's on every process."""
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    st: Dict[str, Any] = dict(best=math.inf, best_state=None, best_epoch=0,
                              history=[], seconds=[])
    resumed = None
    if session is not None:
        resumed = session.restore(where, model, opt)
        if resumed is not None:
            st.update({k: resumed[k] for k in st})
    history, seconds = st['history'], st['seconds']
    dev = next(model.parameters()).device
    m_dev, s_dev = mean.float().to(dev), std.float().to(dev)
    net = LossModule(model, regression_terms(m_dev, s_dev))
    if parallel is not None:
        net = parallel.wrap(net, sync_batchnorm=True)
    main = is_main()

    def step(epoch: int):
        t0 = time.perf_counter()
        loss = run_epoch(net, loaders['train'], opt,
                         weights=dict(pooling=aux_weight), epoch=epoch)
        seconds.append(time.perf_counter() - t0)
        if not main:  # rank 0 validates and selects
            return
        p, y = predict(model, loaders['val'], mean, std)
        val = mae(p, y)
        score = float((val / std).mean())
        stats = dict(epoch=epoch, loss=loss['loss'], val_score=score,
                     seconds=seconds[-1])
        history.append(stats)
        if score < st['best']:
            st['best'], st['best_epoch'] = score, epoch
            st['best_state'] = copy.deepcopy(model.state_dict())
        if on_epoch is not None:
            on_epoch(epoch, stats)

    if session is None:
        for epoch in range(1, epochs + 1):
            try:
                step(epoch)
            except NonFiniteError as e:
                e.epoch, e.where = epoch, e.where or where
                raise
    else:
        session.train(where, step, epochs, lambda: training_state(
            model, opt, model_kwargs or {}, **st), resumed)
    out = None
    if main:
        best_epoch, best_state = st['best_epoch'], st['best_state']
        model.load_state_dict(best_state)
        val_p, val_y = predict(model, loaders['val'], mean, std)
        test_p, test_y = predict(model, loaders['test'], mean, std)
        out = dict(history=history, best_epoch=best_epoch,
                   val_mae=mae(val_p, val_y).tolist(),
                   test_mae=mae(test_p, test_y).tolist(),
                   test_pred=test_p, test_y=test_y,
                   epoch_seconds=sum(seconds) / len(seconds))
    if get_world_size() > 1:  # rank 0's result everywhere
        out = dict(gather_objects(out)[0])
    out['state'] = st['best_state'] if main else None
    return out


def num_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


# Outputs ##################################################################

def write_result_records(path: str, records: List[Dict[str, Any]],
                         dataset: str, mode: str):
    r"""Replaces the records of :obj:`(dataset, mode)` in :obj:`path`
    (atomically), keeping the others."""
    write_dataset_records(path, TASK, dataset, records,
                          same_run=lambda r: r.get('mode') == mode)


def parity_plot(pred: Tensor, y: Tensor, title: str, unit: str,
                path: str) -> str:
    r"""Predicted against true values of one target (test set), with the
    diagonal and the MAE, saved as PNG."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    pred, y = pred.double().numpy(), y.double().numpy()
    fig, ax = plt.subplots(figsize=(4, 4))
    ax.scatter(y, pred, s=3, alpha=0.4, linewidths=0)
    lo, hi = float(min(y.min(), pred.min())), float(max(y.max(), pred.max()))
    ax.plot([lo, hi], [lo, hi], 'k--', lw=0.8)
    err = float(abs(pred - y).mean())
    u = f' ({unit})' if unit else ''
    ax.set_xlabel(f'true{u}')
    ax.set_ylabel(f'predicted{u}')
    ax.set_title(title.replace(': ', ':\n', 1) + f'\ntest MAE {err:.4g}{u}',
                 fontsize=7)
    fig.tight_layout()
    return save_figure(fig, path)


def _summary_records(args, label: str, mode: str, rows, protocol: str,
                     command: str, extra_common: Dict[str, Any]):
    r"""MAE records (mean ± std over seeds) from :obj:`rows`:
    method -> target -> list of per-seed dicts."""
    units = target_units(args.dataset)
    out = []
    for method, per_target in rows.items():
        for target, runs in per_target.items():
            values = [r['test_mae'] for r in runs]
            m, s = mean_std(values)
            extra = {k: v for k, v in runs[0].items()
                     if k in ('num_params', 'feature_channels')}
            out.append(record(
                TASK, label, method, 'MAE', m, std=s, n=len(values),
                protocol=protocol, command=command, device=args.device,
                setting=target, unit=units[target], mode=mode,
                per_seed=values,
                val_mae=[r['val_mae'] for r in runs],
                best_epoch=[r['best_epoch'] for r in runs],
                **extra, **extra_common))
    return out


# Supervised experiment ####################################################

def run_supervised(args, graphs, info, session: TrainingSession, log=print,
                   command=None, parallel: Optional[Parallel] = None):
    par = parallel or Parallel(args.device)
    label = LABELS[args.dataset]
    runs = session.done
    in_channels = graphs['train'][0].num_features
    T = len(args.targets)
    if 'mgn_fixed' in args.methods:
        with par.main_first():  # rank 0 computes and caches it
            add_fixed_hierarchy(graphs, args.clusters,
                                os.path.join(args.out, 'fixed_spectral.pt'),
                                log)
    # ZINC: one model per target; QM9: one multi-task model.
    tasks = ([[t] for t in range(T)] if args.dataset == 'zinc'
             else [list(range(T))])
    rows: Dict[str, Dict[str, List[Dict[str, Any]]]] = {}
    seconds: Dict[Tuple[str, str], List[float]] = {}
    ckpt_dir = os.path.join(args.out, 'checkpoints')
    if par.is_main:
        os.makedirs(ckpt_dir, exist_ok=True)
    y_all = torch.cat([g.y for g in graphs['train']]).double()
    from tqdm import tqdm
    for method in args.methods:
        name = METHODS[method][0]
        for cols in tasks:
            tnames = [args.targets[c] for c in cols]
            tag = '+'.join(tnames) if len(cols) < T or T == 1 else 'all'
            sub = {k: [_select(g, cols) for g in v]
                   for k, v in graphs.items()}
            mean = y_all[:, cols].mean(0)
            std = y_all[:, cols].std(0)
            for seed in range(args.seeds):
                key = f'{method}|{tag}|{seed}'
                res = runs.get(key)
                if res is None:
                    # The global batch of --batch-size, shuffled with the
                    # seed (DistributedGraphSampler); rank 0 evaluates.
                    loaders = dict(
                        train=par.loader(sub['train'], args.batch_size,
                                         seed=seed),
                        val=DataLoader(sub['val'], batch_size=512),
                        test=DataLoader(sub['test'], batch_size=512))
                    torch.manual_seed(seed)
                    model = build_regressor(method, args, in_channels,
                                            len(cols)).to(par.device)
                    bar = tqdm(total=args.epochs, desc=f'{method} {tag} '
                               f'seed {seed}',
                               disable=args.no_progress or not par.is_main,
                               file=sys.stdout, leave=False)

                    def on_epoch(epoch, stats, key=key, bar=bar):
                        bar.update()
                        bar.set_postfix(loss=f"{stats['loss']:.3f}",
                                        val=f"{stats['val_score']:.3f}")
                        if args.no_progress:
                            log(f'{key} epoch {epoch}: loss '
                                f'{stats["loss"]:.4f}, val (std. MAE) '
                                f'{stats["val_score"]:.4f} '
                                f'({stats["seconds"]:.1f}s)')
                    kwargs = dict(method=method, in_channels=in_channels,
                                  num_targets=len(cols), hidden=args.hidden,
                                  layers=args.layers,
                                  clusters=list(args.clusters),
                                  ratio=args.ratio,
                                  cluster_layers=args.cluster_layers)
                    fit = fit_regressor(model, loaders, mean, std,
                                        args.epochs, args.lr,
                                        args.aux_weight, key, on_epoch,
                                        session, kwargs, parallel=par)
                    bar.close()
                    if par.is_main:
                        model_checkpoint(
                            os.path.join(ckpt_dir, f'{method}_{tag}_'
                                         f'seed{seed}.pt'), model, kwargs,
                            targets=tnames, seed=seed, mean=mean, std=std,
                            best_epoch=fit['best_epoch'])
                    res = dict(test_mae=fit['test_mae'],
                               val_mae=fit['val_mae'],
                               best_epoch=fit['best_epoch'],
                               epoch_seconds=fit['epoch_seconds'],
                               num_params=num_params(model),
                               history=fit['history'])
                    if seed == 0 and method == args.methods[0] and \
                            par.is_main:
                        for j, t in enumerate(tnames):
                            parity_plot(
                                fit['test_pred'][:, j], fit['test_y'][:, j],
                                f'{label} {t}: {name}, seed 0',
                                target_units(args.dataset)[t],
                                os.path.join(args.out, f'parity_'
                                             f'{args.dataset}_{t}.png'))
                    runs[key] = res
                    session.save()  # finished: --resume does not redo it
                log(f'{name} [{tag}] seed {seed}: test MAE ' + ', '.join(
                    f'{t} {v:.4g}' for t, v in zip(tnames, res['test_mae']))
                    + f' (epoch {res["best_epoch"]}, '
                    f'{res["epoch_seconds"]:.1f}s/epoch, '
                    f'{res["num_params"]} parameters)')
                for j, t in enumerate(tnames):
                    rows.setdefault(name, {}).setdefault(t, []).append(dict(
                        test_mae=res['test_mae'][j],
                        val_mae=res['val_mae'][j],
                        best_epoch=res['best_epoch'],
                        num_params=res['num_params']))
                seconds.setdefault((name, tag), []).append(
                    res['epoch_seconds'])
    command = command or current_command()
    protocol = (f'{info["split"]}; {args.epochs} epochs, Adam lr {args.lr}, '
                f'batch {args.batch_size}, L1 loss on standardised targets, '
                f'epoch selected on validation MAE, test read once; '
                f'{args.seeds} seeds; GINE convolutions (bond types as edge '
                f'features), hidden {args.hidden}, '
                f'{len(args.clusters) + 1} levels x {args.layers} layers '
                f'(no-pooling baselines: '
                f'{(len(args.clusters) + 1) * args.layers} layers), '
                f'clusters {args.clusters} (MGN, DiffPool), ratio '
                f'{args.ratio} (TopK/SAG/ASAP), pooling-loss weight '
                f'{args.aux_weight}')
    recs = _summary_records(args, label, 'supervised', rows, protocol,
                            command, dict(epochs=args.epochs))
    for (name, tag), secs in seconds.items():
        m, s = mean_std(secs)
        recs.append(record(
            TASK, label, name, 'epoch_seconds', m, std=s, n=len(secs),
            protocol=f'wall-clock seconds of one training epoch over '
            f'{info["sizes"]["train"]} molecules, batch {args.batch_size}, '
            f'{torch.get_num_threads()} threads, {machine()} (shared)',
            command=command, device=args.device, setting=tag,
            mode='supervised', processes=par.world_size))
    return recs


def _select(g: Data, cols: List[int]) -> Data:
    h = copy.copy(g)
    h.y = g.y[:, cols]
    return h


# Unsupervised experiment ##################################################

def autoencoder_kwargs(args, in_channels: int) -> Dict[str, Any]:
    r"""The :class:`~torch_geometric_mgvae.MGVAE` arguments of the
    unsupervised autoencoder (and of its untrained control)."""
    kwargs = dict(in_channels=in_channels, hidden_channels=args.hidden,
                  latent_channels=args.latent, num_clusters=args.clusters,
                  order=args.order, encoder_scope='graph',
                  feature_loss='ce', global_decoder='inner',
                  edge_channels=3,
                  edge_feature_loss='ce' if args.bond_recon else None,
                  feature_mask=args.feature_mask)
    if args.order == 1:
        kwargs['conv'] = gine_conv(3)
    return kwargs


def build_autoencoder(args, in_channels: int):
    from torch_geometric_mgvae import MGVAE
    kwargs = autoencoder_kwargs(args, in_channels)
    return MGVAE(**kwargs), kwargs


@torch.no_grad()
def latent_features(model, graphs: List[Data], batch_size: int = 1024
                    ) -> Tuple[Tensor, Tensor]:
    r"""Per-molecule features of a frozen MGVAE (evaluation mode: the
    posterior means): the finest latents averaged, and the averages of all
    levels concatenated."""
    from torch_geometric.nn import global_mean_pool
    model.eval()
    dev = next(model.parameters()).device
    fine, every = [], []
    for batch in DataLoader(graphs, batch_size=batch_size):
        out = model(batch.to(dev))
        parts = [global_mean_pool(lvl.z, lvl.batch, size=lvl.num_graphs)
                 for lvl in out.levels]
        fine.append(parts[0].cpu())
        every.append(torch.cat(parts, dim=-1).cpu())
    return torch.cat(fine), torch.cat(every)


def morgan_features(smiles: Sequence[str], radius: int = 2,
                    bits: int = 2048) -> Tensor:
    r"""Morgan (ECFP-like) bit fingerprints, :math:`(N, \text{bits})`."""
    from rdkit import Chem
    from rdkit.Chem import rdFingerprintGenerator
    gen = rdFingerprintGenerator.GetMorganGenerator(radius=radius,
                                                    fpSize=bits)
    out = torch.zeros(len(smiles), bits, dtype=torch.uint8)
    for i, smi in enumerate(smiles):
        fp = gen.GetFingerprintAsNumPy(Chem.MolFromSmiles(smi))
        out[i] = torch.from_numpy(fp)
    return out


def fit_mlp(feats: Dict[str, Tensor], ys: Dict[str, Tensor], epochs: int,
            lr: float, batch_size: int, seed: int, where: str = '',
            standardize: bool = True, shared: bool = False,
            binary: bool = False, device: str = 'cpu') -> Dict[str, Any]:
    r"""One MLP per target (:class:`PerTargetMLP`; :obj:`shared`: one
    :class:`MLPRegressor` with an output per target) on standardised
    targets (L1 loss); every target's epoch selected on its validation MAE
    (:obj:`shared`: the epoch of the lowest mean standardised validation
    MAE), test read once with the selected weights. :obj:`binary`: 0/1
    features (fingerprints), neither standardised nor densified in the
    first layer."""
    torch.manual_seed(seed)
    standardize = standardize and not binary
    x_tr = feats['train'].float()
    mu = x_tr.mean(0) if standardize else torch.zeros(x_tr.size(1))
    sd = x_tr.std(0).clamp(min=1e-6) if standardize else \
        torch.ones(x_tr.size(1))

    feats = {k: v.to(device) for k, v in feats.items()}
    ys = {k: v.to(device) for k, v in ys.items()}
    x_tr, mu, sd = x_tr.to(device), mu.to(device), sd.to(device)

    def prep(x):
        return (x.float() - mu) / sd
    y_tr = ys['train']
    ym, ysd = y_tr.mean(0), y_tr.std(0)
    T = y_tr.size(1)
    if shared:
        model = MLPRegressor(x_tr.size(1), T, binary_input=binary)
    else:
        model = PerTargetMLP(x_tr.size(1), T)
    model = model.to(device)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    best = torch.full((T, ), math.inf, dtype=torch.float64, device=device)
    best_epoch = [0] * T
    best_params = [p.detach().clone() for p in model.parameters()]
    n = x_tr.size(0)
    seconds = []
    for epoch in range(1, epochs + 1):
        model.train()
        t0 = time.perf_counter()
        perm = torch.randperm(n, device=device)
        for s in range(0, n, batch_size):
            idx = perm[s:s + batch_size]
            opt.zero_grad()
            pred = model(prep(x_tr[idx]))
            loss = F.l1_loss(pred, ((y_tr[idx] - ym) / ysd).float(),
                             reduction='none').mean(0).sum()
            _check_finite(loss, f'{where} epoch {epoch}')
            loss.backward()
            opt.step()
        seconds.append(time.perf_counter() - t0)
        with torch.no_grad():
            model.eval()
            val = mae(model(prep(feats['val'])).double() * ysd + ym,
                      ys['val'])
        if shared:
            if float((val / ysd).mean()) < float((best / ysd).mean()):
                best, best_epoch = val, [epoch] * T
                best_params = [p.detach().clone()
                               for p in model.parameters()]
            continue
        better = val < best
        for t in better.nonzero().view(-1).tolist():
            best[t] = val[t]
            best_epoch[t] = epoch
            for bp, p in zip(best_params, model.parameters()):
                bp[t] = p.detach()[t]
    with torch.no_grad():
        for bp, p in zip(best_params, model.parameters()):
            p.copy_(bp)
        model.eval()
        pred = model(prep(feats['test'])).double() * ysd + ym
    return dict(val_mae=best.tolist(), test_mae=mae(pred, ys['test']).tolist(),
                best_epoch=best_epoch, test_pred=pred.cpu(),
                epoch_seconds=sum(seconds) / len(seconds))


def step_seconds(model, graphs: List[Data], batch_size: int,
                 steps: int = 3) -> float:
    r"""Median wall-clock seconds of one autoencoder training step (after a
    warm-up step)."""
    from torch_geometric_mgvae.experiments.train import weighted_loss
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    batch = next(iter(DataLoader(graphs, batch_size=batch_size)))
    times = []
    model.train()
    for i in range(steps + 1):
        t0 = time.perf_counter()
        opt.zero_grad()
        out = model(batch)
        weighted_loss(model.loss_terms(out)).backward()
        opt.step()
        if i:
            times.append(time.perf_counter() - t0)
    return sorted(times)[len(times) // 2]


def run_unsupervised(args, graphs, info, session: TrainingSession,
                     log=print, command=None,
                     parallel: Optional[Parallel] = None):
    r"""The unsupervised experiment: the autoencoder is trained
    data-parallel (every process; :obj:`parallel`), the features and the
    MLP fits on them run on rank 0 alone (the others return :obj:`[]`):
    an epoch of the MLPs over frozen features takes seconds, and DDP would
    only add the exchange of their gradients."""
    from tqdm import tqdm
    par = parallel or Parallel(args.device)

    from torch_geometric_mgvae.experiments.train import train_epoch
    label = LABELS[args.dataset]
    runs = session.done
    command = command or current_command()
    in_channels = graphs['train'][0].num_features
    ys = {k: torch.cat([g.y for g in v]).double()
          for k, v in graphs.items()}
    # The autoencoder: MGVAE trained on --ae-train random training molecules.
    g = torch.Generator().manual_seed(args.split_seed)
    perm = torch.randperm(len(graphs['train']), generator=g)[:args.ae_train]
    ae_graphs = [graphs['train'][int(i)] for i in perm]
    model_kwargs = autoencoder_kwargs(args, in_channels)
    step = {}
    for order in (1, 2):  # measured, to justify --order
        o_args = copy.copy(args)
        o_args.order = order
        torch.manual_seed(0)
        m, _ = build_autoencoder(o_args, in_channels)
        step[order] = step_seconds(m, ae_graphs, args.batch_size)
        log(f'MGVAE order {order}: {step[order]:.3f}s per training step '
            f'(batch {args.batch_size})')
    plain_kwargs = {k: v for k, v in model_kwargs.items() if k != 'conv'}
    if 'conv' in model_kwargs:
        plain_kwargs['conv'] = 'GINEConv(MLP([i, o, o]), edge_dim=3)'
    def train_autoencoder(seed: int):
        r"""The autoencoder of :obj:`seed` (its initialisation, batch order
        and noise), trained or read back from its checkpoint."""
        key = f'autoencoder|{seed}'
        ckpt = os.path.join(args.out, f'mgvae_autoencoder_seed{seed}.pt')
        torch.manual_seed(seed)
        model, _ = build_autoencoder(args, in_channels)
        model = model.to(par.device)
        if runs.get(key) is not None:  # finished: read back
            model.load_state_dict(load_torch(ckpt)['model'])
            return model
        opt = torch.optim.Adam(model.parameters(), lr=args.lr)
        # The global batch of --batch-size (DistributedGraphSampler).
        loader = par.loader(ae_graphs, args.batch_size, seed=seed)
        net = par.wrap(LossModule(model), sync_batchnorm=True)
        gen = par.generator(seed)  # the training noise of this process
        resumed = session.restore(key, model, opt, generators={'gen': gen})
        clock = dict(history=resumed['history'] if resumed else [],
                     train_seconds=resumed['train_seconds'] if resumed
                     else 0.0)
        bar = tqdm(total=args.ae_epochs, initial=len(clock['history']),
                   desc=f'autoencoder seed {seed}',
                   disable=args.no_progress or not par.is_main,
                   file=sys.stdout)

        def ae_step(epoch: int):
            t0 = time.perf_counter()
            # Stops at a non-finite loss term or gradient (NonFiniteError).
            stats = train_epoch(net, loader, opt, {'kl': args.kl_weight},
                                generator=gen, epoch=epoch)
            clock['train_seconds'] += time.perf_counter() - t0
            clock['history'].append(dict(epoch=epoch, **stats))
            bar.update()
            bar.set_postfix(loss=f"{stats['loss']:.2f}")
            if args.no_progress:
                log(f'autoencoder seed {seed} epoch {epoch}: ' + ', '.join(
                    f'{k} {v:.3f}' for k, v in stats.items()))

        session.train(key, ae_step, args.ae_epochs,
                      lambda: training_state(model, opt, plain_kwargs,
                                             generators={'gen': gen},
                                             **clock), resumed)
        bar.close()
        if par.is_main:
            model_checkpoint(ckpt, model, plain_kwargs, model_class='MGVAE',
                             **clock)
        runs[key] = dict(clock)
        session.save()
        return model

    models = [train_autoencoder(seed) for seed in range(args.seeds)]
    # The finished training runs (history, seconds), one per seed:
    trained = [runs[f'autoencoder|{seed}'] for seed in range(args.seeds)]
    if not par.is_main:  # rank 0 computes the features and fits the MLPs
        return []
    t0 = time.perf_counter()
    # feats[key][seed][split]: every seed has its own autoencoder and its
    # own untrained control; the fingerprints are the same for every seed.
    feats: Dict[str, List[Dict[str, Tensor]]] = {}
    for seed, model in enumerate(models):
        torch.manual_seed(12345 + seed)
        random_model, _ = build_autoencoder(args, in_channels)
        random_model = random_model.to(par.device)
        for name, m in (('MGVAE', model), ('random', random_model)):
            per = {k: latent_features(m, v) for k, v in graphs.items()}
            feats.setdefault(f'{name} finest', []).append(
                {k: v[0] for k, v in per.items()})
            feats.setdefault(f'{name} all', []).append(
                {k: v[1] for k, v in per.items()})
    morgan = {k: morgan_features([h.smiles for h in v])
              for k, v in graphs.items()}
    feats['Morgan'] = [morgan] * args.seeds
    log(f'features in {time.perf_counter() - t0:.0f}s')
    methods = {
        'MGVAE finest': 'MGVAE latents, finest level (paper D.3)',
        'MGVAE all': 'MGVAE latents, all levels concatenated',
        'random finest': 'untrained encoder, finest level (control)',
        'random all': 'untrained encoder, all levels (control)',
        'Morgan': 'Morgan fingerprint r=2, 2048 bits (control)',
    }
    rows: Dict[str, Dict[str, List[Dict[str, Any]]]] = {}
    mlp_seconds = {}
    units = target_units(args.dataset)
    for key, name in methods.items():
        for seed in range(args.seeds):
            rkey = f'{key}|{seed}'
            res = runs.get(rkey)
            if res is None:
                fit = fit_mlp(feats[key][seed], ys, args.mlp_epochs, args.lr,
                              args.mlp_batch_size, seed, rkey,
                              shared=args.mlp == 'shared',
                              binary=key == 'Morgan', device=par.device)
                res = {k: v for k, v in fit.items() if k != 'test_pred'}
                if seed == 0 and key == 'MGVAE finest':
                    for j, t in enumerate(args.targets):
                        parity_plot(fit['test_pred'][:, j], ys['test'][:, j],
                                    f'{label} {t}: {name}, seed 0',
                                    units[t], os.path.join(
                                        args.out, f'parity_qm9_unsup_{t}.png'))
                runs[rkey] = res
                session.save()
            log(f'{name} seed {seed}: test MAE ' + ', '.join(
                f'{t} {v:.4g}' for t, v in zip(args.targets,
                                                res['test_mae'])))
            mlp_seconds.setdefault(name, []).append(res['epoch_seconds'])
            for j, t in enumerate(args.targets):
                rows.setdefault(name, {}).setdefault(t, []).append(dict(
                    test_mae=res['test_mae'][j], val_mae=res['val_mae'][j],
                    best_epoch=res['best_epoch'][j],
                    feature_channels=int(feats[key][0]['train'].size(1))))
    order_why = ('first order: a second-order training step took '
                 f'{step[2]:.2f}s against {step[1]:.2f}s (batch '
                 f'{args.batch_size}, measured in this run)'
                 if args.order == 1 else
                 f'second order ({step[2]:.2f}s per step; first order '
                 f'{step[1]:.2f}s)')
    protocol = (f'{info["split"]}; MGVAE ({order_why}; hidden {args.hidden}'
                f', latent {args.latent}, clusters {args.clusters}, GINE '
                f'encoders over the whole level graph, atom-type'
                + (', bond-type' if args.bond_recon else '') +
                ' and adjacency reconstruction'
                + (f', {args.feature_mask:g} of the atom types masked in '
                   f'training' if args.feature_mask else '') +
                f', KL weight {args.kl_weight}) '
                f'trained {args.ae_epochs} epochs '
                f'on {len(ae_graphs)} random training molecules, frozen; '
                f'features = posterior means averaged per molecule; '
                + ('one MLP per target' if args.mlp == 'per-target' else
                   f'one MLP with {len(args.targets)} outputs (the paper: '
                   f'one per target)') +
                f' (2 x 512, sigmoid), {args.mlp_epochs} epochs, '
                f'Adam lr {args.lr}, batch {args.mlp_batch_size}, L1 on '
                f'standardised targets, epoch selected per target on '
                f'validation MAE, test read once; {args.seeds} seeds, each '
                f'with its own autoencoder, untrained encoder and MLP')
    recs = _summary_records(args, label, 'unsupervised', rows, protocol,
                            command, dict(mlp_epochs=args.mlp_epochs,
                                          ae_epochs=args.ae_epochs))
    for order, secs in step.items():
        recs.append(record(
            TASK, label, f'MGVAE order {order} (autoencoder)',
            'step_seconds', secs, protocol=f'median seconds of one '
            f'training step, batch {args.batch_size}, '
            f'{torch.get_num_threads()} threads, {machine()} (shared)',
            command=command, device=args.device, mode='unsupervised'))
    secs, s_secs = mean_std([t['train_seconds'] for t in trained])
    recs.append(record(
        TASK, label, f'MGVAE order {args.order} (autoencoder)',
        'train_seconds', secs, std=s_secs, n=len(trained),
        protocol=f'{args.ae_epochs} epochs over {len(ae_graphs)} molecules, '
        f'per seed', command=command, device=args.device,
        mode='unsupervised',
        final_loss=[t['history'][-1]['loss'] for t in trained],
        final_terms=[{k: round(v, 4) for k, v in t['history'][-1].items()}
                     for t in trained],
        processes=par.world_size))
    for name, secs in mlp_seconds.items():
        m, s = mean_std(secs)
        recs.append(record(
            TASK, label, name, 'mlp_epoch_seconds', m, std=s, n=len(secs),
            protocol=f'one epoch of the {len(args.targets)} per-target MLPs '
            f'over {info["sizes"]["train"]} molecules', command=command,
            device=args.device, mode='unsupervised'))
    return recs


# Entry point ##############################################################

def _quiet(*args: Any, **kwargs: Any):
    return None


def table(records: List[Dict[str, Any]]) -> str:
    r"""The MAE records as text: one row per method, one column per
    target."""
    maes = [r for r in records if r['metric'] == 'MAE']
    targets = list(dict.fromkeys(r['setting'] for r in maes))
    methods = list(dict.fromkeys(r['method'] for r in maes))
    cell = {(r['method'], r['setting']): r for r in maes}
    width = max(len(m) for m in methods) + 2
    lines = [f'{"":<{width}}' + ''.join(f'{t[:16]:>18}' for t in targets)]
    for m in methods:
        row = f'{m:<{width}}'
        for t in targets:
            r = cell.get((m, t))
            v = '' if r is None else (
                f'{r["value"]:.4g}' + ('' if r['std'] is None else
                                       f'±{r["std"]:.2g}'))
            row += f'{v:>18}'
        lines.append(row)
    return '\n'.join(lines)


def run(args: argparse.Namespace, command: Optional[str] = None,
        log=print) -> List[Dict[str, Any]]:
    r"""The whole experiment: data, training, records (into
    :obj:`args.results`), parity plots and checkpoints under
    :obj:`args.out`. Inside a
    :class:`~torch_geometric_mgvae.experiments.state.TrainingSession`: the
    training state is saved every :obj:`--checkpoint-every` epochs and on
    SIGINT/SIGTERM, finished runs (method, target, seed) are kept in it,
    and :obj:`--resume` continues without redoing them."""
    args = resolve_args(args)
    with Parallel.from_args(args) as par, \
            TrainingSession.from_args(args) as session:
        main = par.is_main  # (the group ends with the block)
        if not main:  # rank 0 reports
            log = _quiet
        else:
            os.makedirs(args.out, exist_ok=True)
        with par.main_first():  # rank 0 copies and processes the data
            graphs, info = load_data(args, log)
        if args.mode == 'supervised':
            recs = run_supervised(args, graphs, info, session, log, command,
                                  par)
        else:
            recs = run_unsupervised(args, graphs, info, session, log,
                                    command, par)
        if par.is_main:  # the others wait at the barrier
            write_result_records(args.results, recs, LABELS[args.dataset],
                                 args.mode)
        par.barrier()
    if not main:
        return recs
    log('')
    log(table(recs))
    log(f'wrote {args.results} and the parity plots in {args.out}')
    return recs
