r"""The link prediction experiment of the paper (Sec. 5.1, Table 1, D.1).

Every seed draws its own 85/5/10 edge split with as many sampled non-edges
(:class:`torch_geometric.transforms.RandomLinkSplit`), trains PyG's
:class:`~torch_geometric.nn.models.VGAE` (GCN encoder, as PyG's
``examples/autoencoder.py``) and every MGVAE variant on the incomplete
training graph, selects each model's epoch on the validation AUC and
reports AUC and AP on the test edges (mean and std over seeds), the epoch
time of every model relative to VGAE's, and the balanced-cut statistics of
the finest clustering (paper Tables 4-5).

How MGVAE scores a pair: the node embedding is the finest latent mean
concatenated with the latent means of the node's clusters at every coarser
level (:obj:`hierarchical_decoding=True`), scored by the finest global
inner-product decoder :math:`\sigma(a \sum_\ell \mathbf{z}^{(\ell)\top}_
{\pi(i)} \mathbf{z}^{(\ell)}_{\pi(j)} + b)`: two nodes of one cluster
share the coarse terms.

The :obj:`mgvae link-pred` command and ``examples/link_prediction.py`` both
run :func:`run`.
"""
import argparse
import copy
import json
import os
import shutil
import sys
import time
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import torch
import torch_geometric.transforms as T
from torch import Tensor
from torch_geometric import seed_everything
from torch_geometric.data import Data

from torch_geometric_mgvae.experiments.results import (
    current_command,
    machine,
    mean_std,
    record,
    write_dataset_records,
)
from torch_geometric_mgvae.experiments.train import weighted_loss
from torch_geometric_mgvae.models import MGVAE
from torch_geometric_mgvae.nn import fixed_hierarchy

__all__ = [
    'DATASETS', 'VARIANTS', 'add_arguments', 'resolve_args', 'load_dataset',
    'split_edges', 'check_split', 'auc_ap', 'cluster_size_stats',
    'level_clusters', 'VariationalGCNEncoder', 'VGAEBaseline',
    'MGVAELinkModel', 'train_model', 'run_levels', 'format_table', 'run'
]

DATASETS = ('Cora', 'Citeseer')
VARIANTS = ('learned', 'spectral', 'kmeans')
TASK = 'link_prediction'
PROTOCOL = ('RandomLinkSplit(num_val=0.05, num_test=0.1, undirected, '
            'equal sampled non-edges), a new split per seed; epoch selected '
            'on validation AUC; AUC/AP on the test edges')
VGAE_NAME = 'PyG VGAE'
DEFAULT_RESULTS = os.path.join('benchmark', 'results',
                               'link_prediction.json')


# Command line #############################################################

def add_arguments(parser: argparse.ArgumentParser):
    r"""Adds the options of the experiment to :obj:`parser` (shared by
    :obj:`mgvae link-pred` and ``examples/link_prediction.py``)."""
    data = parser.add_argument_group('data and protocol')
    data.add_argument('--dataset', nargs='+', default=list(DATASETS),
                      choices=DATASETS,
                      help='Planetoid datasets (default: Cora Citeseer)')
    data.add_argument('--root', default=os.path.join('data', 'Planetoid'),
                      help='Planetoid root: the raw files lie in '
                      'ROOT/<Name>/raw (downloaded if missing)')
    data.add_argument('--raw', default=None,
                      help='folder holding <name>/raw with the Planetoid '
                      'raw files (e.g. ../shared/data) to copy into ROOT '
                      'instead of downloading')
    data.add_argument('--seeds', type=int, default=5)
    data.add_argument('--variants', nargs='+', default=list(VARIANTS),
                      choices=VARIANTS, help='clusterings of MGVAE')
    data.add_argument('--levels', nargs='+', type=int, default=[7, 3],
                      help='coarsening levels L: L = 7 uses 2^l clusters '
                      '(128, ..., 2), L = 3 uses 4^l (64, 16, 4), as in '
                      'the paper (default: 7 3)')
    data.add_argument('--no-baseline', action='store_true',
                      help='skip the PyG VGAE baseline')
    data.add_argument('--out', default=os.path.join('outputs',
                                                    'link_prediction'),
                      help='folder for the table, CSV and plots')
    data.add_argument('--results', default=DEFAULT_RESULTS,
                      help='JSON file of result records (the rows of the '
                      'datasets run are replaced)')
    data.add_argument('--no-progress', action='store_true')

    model = parser.add_argument_group('MGVAE')
    model.add_argument('--hidden', type=int, default=32)
    model.add_argument('--latent', type=int, default=16)
    model.add_argument('--layers', type=int, default=2,
                       help='message passing layers per encoder')
    model.add_argument('--cluster-layers', type=int, default=2)
    model.add_argument('--encoder-scope', default='graph',
                       choices=['cluster', 'graph'],
                       help="'cluster' is the paper's local encoder (weak "
                       "here, see the README); 'graph' (default)")
    model.add_argument('--no-hierarchical', action='store_true',
                       help='score pairs with the finest latents only')
    model.add_argument('--cluster-balance', type=int, default=0,
                       help='Sinkhorn iterations balancing the learned '
                       'clustering (0: the paper\'s clustering)')
    model.add_argument('--entropy-weight', type=float, default=0.0,
                       help='weight of the assignment-entropy loss')

    opt = parser.add_argument_group('training')
    opt.add_argument('--epochs', type=int, default=400)
    opt.add_argument('--lr', type=float, default=0.01)
    opt.add_argument('--eval-every', type=int, default=5)
    opt.add_argument('--kl-weight', type=float, default=None,
                     help='weight of the summed KL of all levels '
                     '(default: 1/N^2, the per-pair normalisation of the '
                     'ELBO; see the README)')
    opt.add_argument('--cut-weight', type=float, default=1.0,
                     help='weight of the balanced-cut KL')
    return parser


def resolve_args(args: argparse.Namespace) -> argparse.Namespace:
    r"""Checks the values of :obj:`args`."""
    for name in ('seeds', 'epochs', 'eval_every'):
        if getattr(args, name) < 1:
            raise ValueError(f"'--{name.replace('_', '-')}' must be >= 1")
    for L in args.levels:
        if L not in (3, 7):
            raise ValueError(f"'--levels' must be 3 or 7 (got {L})")
    return args


def clusters_per_level(L: int) -> List[int]:
    r"""The paper's clusters per level, finest first: :math:`2^\ell` for
    :math:`L = 7`, :math:`4^\ell` for :math:`L = 3`."""
    base = 2 if L == 7 else 4
    return [base**level for level in range(L, 0, -1)]


# Data #####################################################################

def load_dataset(name: str, root: str, raw: Optional[str] = None) -> Data:
    r"""The Planetoid graph :obj:`name` with row-normalised features. Raw
    files found in :obj:`raw/<name>/raw` are copied into
    :obj:`root/<Name>/raw` first, so nothing is downloaded."""
    from torch_geometric.datasets import Planetoid
    if raw is not None:
        src = os.path.join(raw, name.lower(), 'raw')
        if not os.path.isdir(src):
            src = os.path.join(raw, name, 'raw')
        dst = os.path.join(root, name, 'raw')
        if os.path.isdir(src) and not os.path.isdir(dst):
            shutil.copytree(src, dst)
    return Planetoid(root, name, transform=T.NormalizeFeatures())[0]


def split_edges(data: Data, seed: int) -> Tuple[Data, Data, Data]:
    r"""The 85/5/10 split of Kipf & Welling with :obj:`seed`: training
    graph, and validation/test graphs holding :obj:`pos_edge_label_index`
    and as many sampled :obj:`neg_edge_label_index`."""
    seed_everything(seed)  # PyG's negative sampling draws from random
    split = T.RandomLinkSplit(num_val=0.05, num_test=0.1,
                              is_undirected=True, split_labels=True,
                              add_negative_train_samples=False)
    train, val, test = split(data)
    check_split(train, val, test)
    return train, val, test


def check_split(train: Data, val: Data, test: Data):
    r"""Raises if a validation or test edge (either direction) is in the
    training graph, or a held-out non-edge is an edge of the graph."""
    n = train.num_nodes

    def keys(ei: Tensor) -> Tensor:
        lo, hi = ei.min(0).values, ei.max(0).values
        return lo * n + hi

    train_keys = keys(train.edge_index)
    for name, d in (('validation', val), ('test', test)):
        if torch.isin(keys(d.pos_edge_label_index), train_keys).any():
            raise RuntimeError(f'A {name} edge is in the training graph')
        if torch.isin(keys(d.neg_edge_label_index), train_keys).any():
            raise RuntimeError(f'A {name} non-edge is a training edge')


def auc_ap(pos: Tensor, neg: Tensor) -> Tuple[float, float]:
    r"""ROC AUC and average precision of scores of positive and negative
    pairs."""
    from sklearn.metrics import average_precision_score, roc_auc_score
    y = torch.cat([torch.ones(pos.numel()), torch.zeros(neg.numel())])
    s = torch.cat([pos.view(-1), neg.view(-1)]).detach().float()
    if not torch.isfinite(s).all():
        raise ValueError('Scores must be finite')
    return float(roc_auc_score(y, s)), float(average_precision_score(y, s))


def cluster_size_stats(cluster: Tensor, num_clusters: int
                       ) -> Dict[str, float]:
    r"""Min, max and std of the sizes of :obj:`num_clusters` clusters (empty
    clusters count as 0) and the KL divergence of the distribution of
    nodes into clusters from the uniform one (paper Tables 4-5)."""
    sizes = torch.bincount(cluster.view(-1), minlength=num_clusters)
    sizes = sizes[:num_clusters].double()
    p = sizes / sizes.sum().clamp(min=1)
    nz = p > 0
    kl = float((p[nz] * (p[nz] * num_clusters).log()).sum())
    return dict(cluster_min=float(sizes.min()),
                cluster_max=float(sizes.max()),
                cluster_std=float(sizes.std(unbiased=False)),
                cluster_kl=kl, cluster_empty=float((sizes == 0).sum()))


# Models ###################################################################

class VariationalGCNEncoder(torch.nn.Module):
    r"""The GCN encoder of PyG's ``examples/autoencoder.py``: one GCN layer
    of :math:`2d` channels, then GCN heads for :math:`\mu` and
    :math:`\log\sigma` (:math:`d` channels each)."""
    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        from torch_geometric.nn import GCNConv
        self.conv1 = GCNConv(in_channels, 2 * out_channels)
        self.conv_mu = GCNConv(2 * out_channels, out_channels)
        self.conv_logstd = GCNConv(2 * out_channels, out_channels)

    def forward(self, x: Tensor, edge_index: Tensor) -> Tuple[Tensor, Tensor]:
        x = self.conv1(x, edge_index).relu()
        return self.conv_mu(x, edge_index), self.conv_logstd(x, edge_index)


class VGAEBaseline(torch.nn.Module):
    r"""PyG's :class:`~torch_geometric.nn.models.VGAE` with the GCN
    encoder of PyG's ``examples/autoencoder.py`` (hidden :math:`2d`, latent
    :math:`d`), loss :math:`\mathcal{L}_{rec} + \frac{1}{N}\mathrm{KL}`."""
    name = VGAE_NAME

    def __init__(self, in_channels: int, out_channels: int = 16):
        super().__init__()
        from torch_geometric.nn import VGAE
        self.model = VGAE(VariationalGCNEncoder(in_channels, out_channels))

    def loss(self, train: Data) -> Tensor:
        z = self.model.encode(train.x, train.edge_index)
        return (self.model.recon_loss(z, train.edge_index) +
                self.model.kl_loss() / train.num_nodes)

    @torch.no_grad()
    def scorer(self, train: Data) -> Callable[[Tensor], Tensor]:
        z = self.model.encode(train.x, train.edge_index)
        return lambda ei: self.model.decoder(z, ei, sigmoid=False)


class MGVAELinkModel(torch.nn.Module):
    r"""An :class:`~torch_geometric_mgvae.MGVAE` trained on one incomplete
    graph, with fixed (precomputed on the training graph) or learned
    clusters."""
    def __init__(self, in_channels: int, num_clusters: Sequence[int],
                 variant: str, args: argparse.Namespace,
                 clusters: Optional[List[Tensor]] = None):
        super().__init__()
        self.variant = variant
        self.clusters = clusters
        self.mgvae = MGVAE(
            in_channels, args.hidden, args.latent, list(num_clusters),
            num_layers=args.layers,
            clustering='learned' if variant == 'learned' else 'fixed',
            cluster_kwargs=dict(num_layers=args.cluster_layers,
                                balance=args.cluster_balance),
            encoder_scope=args.encoder_scope,
            recon_kwargs=dict(balanced=True),
            hierarchical_decoding=not args.no_hierarchical)
        self.weights = dict(kl=args.kl_weight, balanced_cut=args.cut_weight,
                            cluster_entropy=args.entropy_weight)

    def forward(self, train: Data):
        return self.mgvae(train.x, train.edge_index, clusters=self.clusters)

    def loss(self, train: Data) -> Tensor:
        out = self(train)
        weights = dict(self.weights)
        if weights['kl'] is None:
            weights['kl'] = 1.0 / train.num_nodes**2
        return weighted_loss(self.mgvae.loss_terms(out), weights)

    @torch.no_grad()
    def scorer(self, train: Data) -> Callable[[Tensor], Tensor]:
        z = self.mgvae.encode(train.x, train.edge_index,
                              clusters=self.clusters)
        return lambda ei: self.mgvae.decode(z, ei, sigmoid=False)

    def finest_clusters(self, train: Data, training: bool) -> Tensor:
        r"""The finest local cluster ids: the evaluation-mode argmax, or a
        training-mode (Gumbel) sample."""
        was = self.mgvae.training
        self.mgvae.train(training)
        with torch.no_grad():
            out = self(train)
        self.mgvae.train(was)
        return out[0].select.local


def level_clusters(train: Data, variant: str, num_clusters: Sequence[int],
                   seed: int) -> Optional[List[Tensor]]:
    r"""The fixed clustering hierarchy of the *training* graph (the held-out
    edges never enter it): spectral or k-means on 10 PCA components of the
    features (paper D.1); :obj:`None` for the learned clustering."""
    if variant == 'learned':
        return None
    method = 'spectral' if variant == 'spectral' else 'kmeans'
    return fixed_hierarchy(Data(x=train.x, edge_index=train.edge_index,
                                num_nodes=train.num_nodes), method,
                           list(num_clusters), seed=seed)


def train_model(model: torch.nn.Module, train: Data, val: Data, test: Data,
                epochs: int, lr: float, eval_every: int = 5,
                progress: Optional[Callable[[int, float, float], None]] = None
                ) -> Dict[str, Any]:
    r"""Adam on :obj:`model.loss(train)`; every :obj:`eval_every` epochs the
    validation AUC is measured and, when it improves, the test AUC/AP and
    the weights are kept. Returns the selected epoch's numbers and the mean
    training step time (evaluation excluded)."""
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    best: Dict[str, Any] = dict(val_auc=-1.0)
    step_time = 0.0
    for epoch in range(1, epochs + 1):
        model.train()
        t0 = time.perf_counter()
        opt.zero_grad()
        loss = model.loss(train)
        loss.backward()
        opt.step()
        step_time += time.perf_counter() - t0
        if epoch % eval_every and epoch != epochs:
            continue
        model.eval()
        score = model.scorer(train)
        val_auc, val_ap = auc_ap(score(val.pos_edge_label_index),
                                 score(val.neg_edge_label_index))
        if val_auc > best['val_auc']:
            auc, ap = auc_ap(score(test.pos_edge_label_index),
                             score(test.neg_edge_label_index))
            best = dict(val_auc=val_auc, val_ap=val_ap, auc=auc, ap=ap,
                        epoch=epoch, state=copy.deepcopy(model.state_dict()))
        if progress is not None:
            progress(epoch, loss.item(), val_auc)
    best['step_seconds'] = step_time / epochs
    best['loss'] = loss.item()
    model.load_state_dict(best.pop('state'))
    model.eval()
    return best


# Experiment ###############################################################

def method_name(variant: str, L: int) -> str:
    return f'MGVAE ({variant}, L={L})'


def run(args: argparse.Namespace, command: Optional[str] = None
        ) -> List[Dict[str, Any]]:
    r"""The whole experiment: every dataset, seed and model; prints the
    table, writes records (replacing the rows of the datasets run), a CSV,
    a Markdown table, the cluster-size plot and a summary JSON."""
    from tqdm import tqdm
    args = resolve_args(args)
    command = command or current_command()
    os.makedirs(args.out, exist_ok=True)
    torch.set_num_threads(max(1, min(torch.get_num_threads(), 4)))
    all_records: List[Dict[str, Any]] = []
    summary: Dict[str, Any] = {}
    for name in args.dataset:
        data = load_dataset(name, args.root, args.raw)
        runs: Dict[str, List[Dict[str, Any]]] = {}
        sizes: Dict[str, Tensor] = {}
        jobs = [] if args.no_baseline else [('vgae', None, None)]
        jobs += [(v, L, clusters_per_level(L)) for L in args.levels
                 for v in args.variants]
        for seed in range(args.seeds):
            train, val, test = split_edges(data, seed)
            for variant, L, K in jobs:
                seed_everything(seed)  # negative sampling uses random
                if variant == 'vgae':
                    model, method = VGAEBaseline(data.num_features), VGAE_NAME
                else:
                    method = method_name(variant, L)
                    model = MGVAELinkModel(
                        data.num_features, K, variant, args,
                        level_clusters(train, variant, K, seed))
                bar = tqdm(total=args.epochs, file=sys.stdout,
                           disable=args.no_progress,
                           desc=f'{name} seed {seed} {method}')

                def progress(epoch, loss, val_auc, bar=bar):
                    bar.update(epoch - bar.n)
                    bar.set_postfix(loss=f'{loss:.3f}',
                                    val_auc=f'{val_auc:.3f}')

                res = train_model(model, train, val, test, args.epochs,
                                  args.lr, args.eval_every, progress)
                bar.close()
                if variant != 'vgae':
                    ev = model.finest_clusters(train, training=False)
                    res.update(cluster_size_stats(ev, K[0]))
                    if variant == 'learned':
                        tr = model.finest_clusters(train, training=True)
                        res.update({f'train_{k}': v for k, v in
                                    cluster_size_stats(tr, K[0]).items()})
                    if seed == 0:
                        sizes[method] = ev
                res['seed'] = seed
                runs.setdefault(method, []).append(res)
                print(f'{name} seed {seed} {method}: test AUC '
                      f'{res["auc"]:.4f} AP {res["ap"]:.4f} (epoch '
                      f'{res["epoch"]}, val AUC {res["val_auc"]:.4f}, '
                      f'{res["step_seconds"] * 1e3:.0f} ms/epoch)')
        recs = dataset_records(name, data, runs, args, command)
        levels = sorted(args.levels)
        write_dataset_records(args.results, TASK, name, recs,
                              lambda r, levels=levels: run_levels(r) ==
                              levels)
        all_records += recs
        summary[name] = {m: [{k: v for k, v in r.items()}
                             for r in rs] for m, rs in runs.items()}
        if sizes:
            plot_cluster_sizes(sizes, os.path.join(
                args.out, f'cluster_sizes_{name}.png'), name)
    table = format_table(all_records)
    print(table)
    with open(os.path.join(args.out, 'link_prediction.md'), 'w') as f:
        f.write(table + '\n')
    write_csv(all_records, os.path.join(args.out, 'link_prediction.csv'))
    with open(os.path.join(args.out, 'summary.json'), 'w') as f:
        json.dump(summary, f, indent=1)
    print(f'wrote {args.results} and {args.out}/')
    return all_records


STAT_METRICS = ('cluster_min', 'cluster_max', 'cluster_std', 'cluster_kl',
                'train_cluster_min', 'train_cluster_max', 'train_cluster_std',
                'train_cluster_kl')


def dataset_records(name: str, data: Data,
                    runs: Dict[str, List[Dict[str, Any]]],
                    args: argparse.Namespace, command: str
                    ) -> List[Dict[str, Any]]:
    r"""Mean/std records of every method: AUC, AP (test, selected on
    validation), validation AUC, step time, its ratio to VGAE's, and the
    finest-level cluster statistics (evaluation-mode argmax; for the learned
    clustering also one training-mode Gumbel sample)."""
    recs = []
    base = runs.get(VGAE_NAME)
    base_time = (mean_std([r['step_seconds'] for r in base])[0]
                 if base else None)
    setting = dict(epochs=args.epochs, lr=args.lr, hidden=args.hidden,
                   latent=args.latent, layers=args.layers,
                   encoder_scope=args.encoder_scope,
                   hierarchical=not args.no_hierarchical,
                   kl_weight=args.kl_weight or '1/N^2',
                   cluster_balance=args.cluster_balance,
                   entropy_weight=args.entropy_weight,
                   eval_every=args.eval_every, levels=sorted(args.levels))
    for method, rs in runs.items():
        n = len(rs)
        common = dict(n=n, protocol=PROTOCOL, command=command,
                      device='cpu', machine=machine(),
                      num_nodes=data.num_nodes)
        # The baseline is trained again in every run: its rows carry the
        # levels of the run they belong to, so the rows of a run with other
        # levels stay beside them (see run_levels).
        common['setting'] = (setting if method != VGAE_NAME else
                             dict(levels=setting['levels']))
        for key, metric in (('auc', 'AUC'), ('ap', 'AP'),
                            ('val_auc', 'val_AUC'),
                            ('epoch', 'selected_epoch'),
                            ('step_seconds', 'step_seconds')):
            mean, std = mean_std([r[key] for r in rs])
            recs.append(record(TASK, name, method, metric, mean, std,
                               **common))
        if base_time and method != VGAE_NAME:
            mean, _ = mean_std([r['step_seconds'] for r in rs])
            recs.append(record(TASK, name, method, 'time_ratio_vs_vgae',
                               mean / base_time, None, **common))
        for metric in STAT_METRICS:
            if metric in rs[0]:
                mean, std = mean_std([r[metric] for r in rs])
                recs.append(record(TASK, name, method, metric, mean, std,
                                   **common))
    return recs


def _fmt(rec: Optional[Dict[str, Any]], scale: float = 1.0,
         digits: int = 2) -> str:
    if rec is None or rec['value'] is None:
        return '-'
    out = f"{rec['value'] * scale:.{digits}f}"
    if rec.get('std') is not None:
        out += f" ± {rec['std'] * scale:.{digits}f}"
    return out


def run_levels(record: Dict[str, Any]) -> List[int]:
    r"""The coarsening levels of the run that wrote :obj:`record` (records
    without them come from runs with the default L = 7)."""
    setting = record.get('setting')
    if isinstance(setting, dict) and 'levels' in setting:
        return list(setting['levels'])
    return [7]


def format_table(records: Sequence[Dict[str, Any]]) -> str:
    r"""A Markdown table: one row per dataset, run (its levels) and method;
    each run's baseline is the VGAE trained in that run."""
    def run_of(r):
        return ','.join(map(str, run_levels(r)))

    index = {(r['dataset'], run_of(r), r['method'], r['metric']): r
             for r in records}
    rows = sorted({(r['dataset'], run_of(r), r['method']) for r in records},
                  key=lambda k: (k[0], -len(k[1]), k[1], k[2] != VGAE_NAME,
                                 k[2]))
    lines = ['| dataset | run | method | AUC (%) | AP (%) | epoch s | '
             'vs VGAE | finest clusters min / max / std | KL to uniform '
             '(eval / train sample) |', '|' + '---|' * 9]
    for d, run, m in rows:
        g = lambda k: index.get((d, run, m, k))  # noqa: E731
        stats = '-'
        if g('cluster_min') is not None:
            stats = ' / '.join(f"{g(k)['value']:.1f}" for k in
                               ('cluster_min', 'cluster_max', 'cluster_std'))
        kl = _fmt(g('cluster_kl'), digits=3)
        if g('train_cluster_kl') is not None:
            kl += f" / {g('train_cluster_kl')['value']:.3f}"
        ratio = g('time_ratio_vs_vgae')
        ratio = '-' if ratio is None else f"{ratio['value']:.2f}x"
        lines.append(
            f"| {d} | L={run} | {m} | {_fmt(g('AUC'), 100)} | "
            f"{_fmt(g('AP'), 100)} | "
            f"{g('step_seconds')['value']:.3f} | "
            f"{ratio} | "
            f"{stats} | {kl} |")
    return '\n'.join(lines)


def write_csv(records: Sequence[Dict[str, Any]], path: str):
    import csv
    keys = ['task', 'dataset', 'method', 'metric', 'value', 'std', 'n']
    with open(path, 'w', newline='') as f:
        w = csv.DictWriter(f, keys, extrasaction='ignore')
        w.writeheader()
        for r in records:
            w.writerow(r)


def plot_cluster_sizes(clusters: Dict[str, Tensor], path: str,
                       title: str) -> str:
    r"""Histograms of the finest cluster sizes of every method."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, len(clusters), squeeze=False,
                             figsize=(4 * len(clusters), 3))
    for ax, (method, c) in zip(axes[0], clusters.items()):
        sizes = torch.bincount(c.view(-1)).numpy()
        ax.hist(sizes, bins=30)
        ax.set_title(method, fontsize=9)
        ax.set_xlabel('cluster size')
        ax.set_ylabel('clusters')
    fig.suptitle(f'{title}: finest-level cluster sizes (seed 0)')
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
