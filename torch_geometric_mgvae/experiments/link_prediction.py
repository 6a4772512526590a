r"""The link prediction experiment of the paper (Sec. 5.1, Table 1, D.1).

Every seed draws its own 85/5/10 edge split with as many sampled non-edges
(:class:`torch_geometric.transforms.RandomLinkSplit`), trains PyG's
:class:`~torch_geometric.nn.models.VGAE` (GCN encoder, as PyG's
``examples/autoencoder.py``) and every MGVAE variant on the incomplete
training graph, selects each model's epoch on the validation AUC and
reports AUC and AP on the test edges (mean and std over seeds), the epoch
time of every model relative to VGAE's, and the balanced-cut statistics of
the finest clustering (paper Tables 4-5).

How MGVAE scores a pair (the defaults): the finest latent means'
inner product plus, for every clustered level :math:`\ell`, a learned
:math:`\beta_\ell \ge 0` where the two nodes share their cluster
(:obj:`comembership=True`), through the finest global decoder
:math:`\sigma(a (\mathbf{z}_i^\top \mathbf{z}_j + \sum_\ell \beta_\ell
[\pi_\ell(i) = \pi_\ell(j)]) + b)`. With :obj:`--hierarchical` the latent
means of the node's clusters at every coarser level join the embedding
(:obj:`hierarchical_decoding=True`); with :obj:`--levels 0` there is no
hierarchy and the score is the finest inner product alone.

The :obj:`mgvae link-pred` command and ``examples/link_prediction.py`` both
run :func:`run`.

Data-parallel (``torchrun`` or :obj:`--nproc`): every process encodes the
whole training graph and takes its share of the reconstruction terms (of
the positive pairs and the sampled non-edges, or of the clusters' dense
blocks: the :obj:`shard` of :func:`~torch_geometric_mgvae.nn.
pair_recon_loss`, :func:`link_loss_terms`), with its own noise; DDP averages
the gradients. Rank 0 evaluates, selects and writes.
"""
import argparse
import copy
import csv
import io
import os
import sys
import time
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import torch
import torch_geometric.transforms as T
from torch import Tensor
from torch_geometric import seed_everything
from torch_geometric.data import Data

from torch_geometric_mgvae.experiments.distributed import (
    Parallel,
    any_rank,
    gather_objects,
    get_rank,
    get_world_size,
    rank_seed,
)
from torch_geometric_mgvae.experiments.io import (
    copy_file,
    write_json,
    write_text,
)
from torch_geometric_mgvae.experiments.options import (
    UsageError,
    add_threads_argument,
    nonnegative_float,
    nonnegative_int,
    positive_float,
    positive_int,
)
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
    training_state,
)
from torch_geometric_mgvae.experiments.train import (
    LossModule,
    NonFiniteError,
    check_finite_grads,
    check_finite_loss,
)
from torch_geometric_mgvae.models import MGVAE
from torch_geometric_mgvae.nn import fixed_hierarchy

__all__ = [
    'DATASETS', 'VARIANTS', 'add_arguments', 'resolve_args', 'load_dataset',
    'split_edges', 'check_split', 'auc_ap', 'cluster_size_stats',
    'level_clusters', 'VariationalGCNEncoder', 'VGAEBaseline',
    'MGVAELinkModel', 'link_loss_terms', 'train_model', 'run_levels',
    'format_table', 'run', 'collapsed', 'random_balanced',
    'substitute_scores', 'cluster_dependence'
]

DATASETS = ('Cora', 'Citeseer')
VARIANTS = ('learned', 'spectral', 'kmeans')
TASK = 'link_prediction'
PROTOCOL = ('RandomLinkSplit(num_val=0.05, num_test=0.1, undirected, '
            'equal sampled non-edges), a new split per seed; epoch selected '
            'on validation AUC; AUC/AP on the test edges')
VGAE_NAME = 'PyG VGAE'
#: The records go to OUT/RESULTS_NAME unless --results names a file (the
#: committed benchmark/results/link_prediction.json only when given).
RESULTS_NAME = 'link_prediction.json'
LEVELS = (0, 3, 7)
#: The method name of the MGVAE with the hierarchy switched off (L = 0).
FLAT_NAME = 'MGVAE (no hierarchy, L=0)'


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
    data.add_argument('--seeds', type=positive_int, default=5)
    data.add_argument('--variants', nargs='+', default=list(VARIANTS),
                      choices=VARIANTS, help='clusterings of MGVAE')
    data.add_argument('--levels', nargs='+', type=int, default=[3],
                      choices=LEVELS,
                      help='coarsening levels L: L = 3 uses 4^l clusters '
                      '(64, 16, 4), L = 7 uses 2^l (128, ..., 2), as in '
                      'the paper; L = 0 switches the hierarchy off (one '
                      'model, the finest level\'s encoder and decoder '
                      'only) (default: 3; L = 7 scored 0.6 points more '
                      'validation AUC at twice the step time, see the '
                      'README)')
    data.add_argument('--no-baseline', action='store_true',
                      help='skip the PyG VGAE baseline')
    data.add_argument('--out', default=os.path.join('outputs',
                                                    'link_prediction'),
                      help='folder for the table, CSV and plots')
    data.add_argument('--results', default=None,
                      help=f'JSON file of result records; the rows of the '
                      f'datasets run are replaced (default: '
                      f'OUT/{RESULTS_NAME}; benchmark/results/'
                      f'{RESULTS_NAME} holds the committed ones)')
    data.add_argument('--no-progress', action='store_true')
    add_threads_argument(data, 'on Planetoid-sized graphs more threads made '
                         'both VGAE and MGVAE slower here, see the README')

    model = parser.add_argument_group('MGVAE')
    model.add_argument('--hidden', type=positive_int, default=32)
    model.add_argument('--latent', type=positive_int, default=16)
    model.add_argument('--layers', type=positive_int, default=1,
                       help='message passing layers per encoder before the '
                       'latent heads (default: 1)')
    model.add_argument('--latent-head', default='conv',
                       choices=['linear', 'conv'],
                       help="maps to mu/logstd: 'conv' (default; GCN heads, "
                       "with --layers 1 the VGAE encoder) or 'linear'")
    model.add_argument('--norm', default='instance_norm',
                       help="normalisation in the encoders (a PyG name; "
                       "'none' for none; default: instance_norm)")
    model.add_argument('--cluster-layers', type=nonnegative_int, default=2)
    model.add_argument('--encoder-scope', default='graph',
                       choices=['cluster', 'graph'],
                       help="'cluster' is the paper's local encoder (weak "
                       "here, see the README); 'graph' (default)")
    model.add_argument('--hierarchical', action='store_true',
                       help='also score pairs with the latents of their '
                       'clusters at every coarser level')
    model.add_argument('--no-comembership', action='store_true',
                       help='no co-membership terms in the pair score and '
                       'no co-membership loss')
    model.add_argument('--cluster-balance', type=nonnegative_int, default=10,
                       help='Sinkhorn iterations balancing the learned '
                       'clustering (0: the paper\'s clustering; '
                       'default: 10)')
    model.add_argument('--eval-assign', default='balanced',
                       choices=['argmax', 'balanced'],
                       help='hard assignment of the learned clustering in '
                       "evaluation: 'balanced' (default, sizes within one "
                       "of each other) or the paper's 'argmax'")
    model.add_argument('--entropy-weight', type=nonnegative_float,
                       default=0.0,
                       help='weight of the assignment-entropy loss')
    model.add_argument('--cluster-features', type=nonnegative_int,
                       default=10,
                       help='learned clustering: the spectral embedding of '
                       'the training graph (this many eigenvectors, '
                       'standardised) as extra input of the finest '
                       'clustering (default: 10; 0: none)')
    model.add_argument('--cluster-init-epochs', type=nonnegative_int,
                       default=50,
                       help='learned clustering: for this many first epochs, '
                       'pull every level towards the balanced spectral '
                       'hierarchy of the training graph (default: 50; 0: '
                       'no pull)')

    opt = parser.add_argument_group('training')
    opt.add_argument('--epochs', type=positive_int, default=300)
    opt.add_argument('--lr', type=positive_float, default=0.01)
    opt.add_argument('--eval-every', type=positive_int, default=10)
    opt.add_argument('--kl-weight', type=nonnegative_float, default=None,
                     help='weight of the summed KL of all levels '
                     '(default: 1/N^2, the per-pair normalisation of the '
                     'ELBO; see the README)')
    opt.add_argument('--cut-weight', type=nonnegative_float, default=1.0,
                     help='weight of the balanced-cut KL')
    opt.add_argument('--comembership-weight', type=nonnegative_float,
                     default=1.0,
                     help='weight of the co-membership loss that trains the '
                     'learned clusterings (default: 1)')
    opt.add_argument('--multires-weight', type=nonnegative_float,
                     default=0.0,
                     help='weight of the reconstruction of the coarse '
                     'graphs and of every cluster (local decoders) next '
                     'to the input graph\'s (default: 0)')
    return parser


def resolve_args(args: argparse.Namespace) -> argparse.Namespace:
    r"""Fills :obj:`results` and checks what the parser cannot (a
    :class:`~torch_geometric_mgvae.experiments.options.UsageError`, before
    any work)."""
    if args.raw is not None and not os.path.isdir(args.raw):
        raise UsageError(f"--raw: no such folder '{args.raw}'")
    if args.norm in ('none', 'None', ''):
        args.norm = None
    if args.norm is not None:
        from torch_geometric.nn.resolver import normalization_resolver
        try:
            normalization_resolver(args.norm, 2)
        except ValueError:
            raise UsageError(f"--norm: unknown normalisation '{args.norm}' "
                             f"(e.g. instance_norm, layer_norm, none)")
    if args.results is None:
        args.results = os.path.join(args.out, RESULTS_NAME)
    read_records(args.results)  # a broken file fails now, not after training
    return args


def clusters_per_level(L: int) -> List[int]:
    r"""The paper's clusters per level, finest first: :math:`2^\ell` for
    :math:`L = 7`, :math:`4^\ell` for :math:`L = 3`; for :math:`L = 0` (no
    hierarchy) one cluster holding the whole graph, whose level the score
    never reads."""
    if L == 0:
        return [1]
    base = 2 if L == 7 else 4
    return [base**level for level in range(L, 0, -1)]


# Data #####################################################################

def load_dataset(name: str, root: str, raw: Optional[str] = None) -> Data:
    r"""The Planetoid graph :obj:`name` with row-normalised features
    (:class:`~torch_geometric_mgvae.datasets.Planetoid`: a verified cache,
    never unpickled in full). Raw files found in :obj:`raw/<name>/raw` and
    missing in :obj:`root/<Name>/raw` are copied there first (atomically),
    so nothing is downloaded."""
    from torch_geometric_mgvae.datasets import Planetoid
    if raw is not None:
        src = os.path.join(raw, name.lower(), 'raw')
        if not os.path.isdir(src):
            src = os.path.join(raw, name, 'raw')
        dst = os.path.join(root, name, 'raw')
        if os.path.isdir(src):
            for f in sorted(os.listdir(src)):
                if not os.path.exists(os.path.join(dst, f)):
                    copy_file(os.path.join(src, f), os.path.join(dst, f))
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
    pairs. Raises a :class:`~torch_geometric_mgvae.experiments.train.
    NonFiniteError` for NaN/infinite scores (a diverged model: training
    stops there, as at a non-finite loss)."""
    from sklearn.metrics import average_precision_score, roc_auc_score
    y = torch.cat([torch.ones(pos.numel()), torch.zeros(neg.numel())])
    # scikit-learn reads host memory:
    s = torch.cat([pos.view(-1), neg.view(-1)]).detach().float().cpu()
    bad = ~torch.isfinite(s)
    if bool(bad.any()):
        raise NonFiniteError('edge score', 'evaluated pairs',
                             float(s[bad][0]))
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
        self.model_kwargs = dict(in_channels=in_channels,
                                 out_channels=out_channels)
        self.model = VGAE(VariationalGCNEncoder(in_channels, out_channels))

    def loss_terms(self, train: Data,
                   shard: Optional[Tuple[int, int]] = None
                   ) -> Dict[str, Tensor]:
        r"""PyG's reconstruction loss (:obj:`shard` = :obj:`(rank, world)`:
        over every :obj:`world`-th edge and as many negative samples) and
        the KL."""
        from torch_geometric.utils import negative_sampling
        z = self.model.encode(train.x, train.edge_index)
        if shard is None or shard[1] == 1:
            recon = self.model.recon_loss(z, train.edge_index)
        else:
            pos = train.edge_index[:, shard[0]::shard[1]]
            neg = negative_sampling(train.edge_index, train.num_nodes,
                                    num_neg_samples=pos.size(1))
            recon = self.model.recon_loss(z, pos, neg)
        return dict(recon=recon, kl=self.model.kl_loss() / train.num_nodes)

    def loss(self, train: Data) -> Tensor:
        return sum(self.loss_terms(train).values())

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
        # The spectral start applies to the learned clustering only.
        learned = variant == 'learned'
        self.cluster_features = args.cluster_features if learned else 0
        self.cluster_init_epochs = args.cluster_init_epochs if learned else 0
        #: The constructor arguments of :obj:`self.mgvae` (checkpoints).
        self.mgvae_kwargs = dict(
            in_channels=in_channels, hidden_channels=args.hidden,
            latent_channels=args.latent, num_clusters=list(num_clusters),
            num_layers=args.layers, conv='GCNConv',
            clustering='learned' if variant == 'learned' else 'fixed',
            cluster_kwargs=dict(num_layers=args.cluster_layers,
                                balance=args.cluster_balance,
                                eval_assign=args.eval_assign,
                                extra_channels=self.cluster_features),
            encoder_scope=args.encoder_scope, latent_head=args.latent_head,
            norm=args.norm, recon_kwargs=dict(balanced=True),
            hierarchical_decoding=args.hierarchical and variant != 'flat',
            comembership=not args.no_comembership and variant != 'flat')
        self.mgvae = MGVAE(**self.mgvae_kwargs)
        self.weights = dict(kl=args.kl_weight, balanced_cut=args.cut_weight,
                            cluster_entropy=args.entropy_weight,
                            comembership=args.comembership_weight,
                            multires=args.multires_weight)
        self.epoch = 1
        self._graph: Optional[Tuple[Tensor, Dict[str, Any]]] = None

    def set_epoch(self, epoch: int):
        r"""The epoch of the next training step (1-based; set by
        :func:`train_model`): the balanced spectral targets pull the
        learned clusterings during the first :obj:`--cluster-init-epochs`
        epochs."""
        self.epoch = epoch

    def graph_inputs(self, train: Data) -> Dict[str, Any]:
        r"""What the model derives from its (training) graph, computed once
        per graph: the standardised spectral embedding read by the finest
        clustering (:obj:`--cluster-features`) and the balanced spectral
        hierarchy the clusterings start from (:obj:`--cluster-init-epochs`).
        Both are functions of the graph
        (:func:`~torch_geometric_mgvae.nn.fixed_hierarchy`)."""
        if self._graph is not None and self._graph[0] is train.edge_index:
            return self._graph[1]
        from torch_geometric_mgvae.nn.fixed import spectral_embedding
        out: Dict[str, Any] = dict(cluster_x=None, targets=None)
        n = train.num_nodes
        if self.cluster_features > 0:
            e = spectral_embedding(train.edge_index, n,
                                   self.cluster_features)
            e = (e - e.mean(0)) / e.std(0).clamp(min=1e-12)
            out['cluster_x'] = e.to(train.x.dtype).to(train.x.device)
        if self.cluster_init_epochs > 0:
            out['targets'] = fixed_hierarchy(
                Data(edge_index=train.edge_index, num_nodes=n), 'spectral',
                self.mgvae.num_clusters, balanced=True)
        self._graph = (train.edge_index, out)
        return out

    def forward(self, train: Data):
        return self.mgvae(train.x, train.edge_index, clusters=self.clusters,
                          cluster_x=self.graph_inputs(train)['cluster_x'])

    def _weights(self, train: Data) -> Dict[str, float]:
        weights = dict(self.weights)
        if weights['kl'] is None:
            weights['kl'] = 1.0 / train.num_nodes**2
        return weights

    def loss_terms(self, train: Data,
                   shard: Optional[Tuple[int, int]] = None
                   ) -> Dict[str, Tensor]:
        r"""The weighted loss terms: the reconstruction of the training
        graph (PyG GAE style, finest global decoder), the KL of every level,
        the balanced-cut KL and, where weighted, the co-membership loss, the
        assignment entropy and the reconstruction of the coarse graphs and
        clusters (terms of weight 0 are not computed). :obj:`shard`: this
        process's share of the reconstruction terms in a process group (see
        :func:`~torch_geometric_mgvae.nn.pair_recon_loss`; the other terms
        are whole)."""
        m, out, w = self.mgvae, self(train), self._weights(train)
        terms = dict(recon=m.global_recon_loss(out, levels=[0], shard=shard),
                     kl=w['kl'] * m.multires_kl_loss(out))
        if w['multires'] > 0:
            terms['multires_recon'] = w['multires'] * (
                m.global_recon_loss(out, levels=range(1, len(out)),
                                    shard=shard) +
                m.local_recon_loss(out, shard=shard))
        if self.variant == 'learned':
            terms['balanced_cut'] = w['balanced_cut'] * \
                m.balanced_cut_loss(out)
            if w['cluster_entropy'] > 0:
                terms['cluster_entropy'] = w['cluster_entropy'] * \
                    m.cluster_entropy_loss(out)
            if m.comembership and w['comembership'] > 0:
                terms['comembership'] = w['comembership'] * \
                    m.comembership_loss(out)
            if self.training and self.epoch <= self.cluster_init_epochs:
                terms['cluster_init'] = m.cluster_target_loss(
                    out, self.graph_inputs(train)['targets'])
        return terms

    def loss(self, train: Data) -> Tensor:
        return sum(self.loss_terms(train).values())

    @torch.no_grad()
    def scorer(self, train: Data) -> Callable[[Tensor], Tensor]:
        z = self.mgvae.encode(train.x, train.edge_index,
                              clusters=self.clusters,
                              cluster_x=self.graph_inputs(train)['cluster_x'])
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


#: The clusterings :func:`cluster_dependence` scores a trained model with.
DEPENDENCE_MODES = ('own', 'random balanced', 'spectral', 'finest latent only')


def random_balanced(num_clusters: Sequence[int], num_nodes: int,
                    generator: Optional[torch.Generator] = None
                    ) -> List[Tensor]:
    r"""Random balanced clusters of every level (sizes differ by at most
    one): level :obj:`i` deals :obj:`num_nodes` nodes for :obj:`i = 0`, else
    the clusters of level :obj:`i - 1`, into its :obj:`num_clusters[i]`."""
    out, n = [], num_nodes
    for K in num_clusters:
        out.append(torch.randperm(n, generator=generator) % K)
        n = K
    return out


@torch.no_grad()
def substitute_scores(model: 'MGVAELinkModel', train: Data, edges: Data,
                      clusters: Optional[List[Tensor]] = None,
                      finest_only: bool = False
                      ) -> Tuple[float, float, Tensor]:
    r"""Test (or validation) AUC and AP of a trained
    :class:`MGVAELinkModel` on :obj:`edges` with the clusters of every level
    replaced by :obj:`clusters` at evaluation only (:obj:`None`: its own);
    with :obj:`finest_only`, every part of the decoding embedding beyond the
    finest latent is zeroed (the pair score keeps only the finest inner
    product). Also returns the finest cluster of every node."""
    keep = model.clusters
    model.clusters = clusters
    model.eval()
    try:
        out = model(train)
    finally:
        model.clusters = keep
    z = model.mgvae.decoding_latents(out, 0)
    if finest_only:
        d = out[0].z.size(-1)
        z = torch.cat([z[:, :d], torch.zeros_like(z[:, d:])], dim=-1)
    auc, ap = model.mgvae.test(z, edges.pos_edge_label_index,
                               edges.neg_edge_label_index)
    return auc, ap, out[0].select.local


def cluster_dependence(model: 'MGVAELinkModel', train: Data, edges: Data,
                       seed: int = 0,
                       modes: Sequence[str] = DEPENDENCE_MODES
                       ) -> Dict[str, Dict[str, float]]:
    r"""How much a trained :class:`MGVAELinkModel`'s score depends on its
    clusters: AUC, AP and finest-level KL to uniform on :obj:`edges` with
    the model's :obj:`"own"` clusters, :obj:`"random balanced"` ones
    (:func:`random_balanced`, seeded), the :obj:`"spectral"` hierarchy of
    the training graph, and its own clusters with only the finest latent
    scored (:obj:`"finest latent only"`). The substitutes replace the
    clusters at evaluation only, on the same weights."""
    K = model.mgvae.num_clusters
    n = train.num_nodes
    g = torch.Generator().manual_seed(seed)
    subs = {'own': dict(clusters=model.clusters),
            'random balanced': dict(clusters=random_balanced(K, n, g)),
            'finest latent only': dict(clusters=model.clusters,
                                       finest_only=True)}
    out = {}
    for mode in modes:
        if mode == 'spectral':
            kw = dict(clusters=level_clusters(train, 'spectral', K, seed))
        else:
            kw = subs[mode]
        auc, ap, finest = substitute_scores(model, train, edges, **kw)
        out[mode] = dict(auc=auc, ap=ap, kl=cluster_size_stats(
            finest, K[0])['cluster_kl'])
    return out


def level_clusters(train: Data, variant: str, num_clusters: Sequence[int],
                   seed: int) -> Optional[List[Tensor]]:
    r"""The fixed clustering hierarchy of the *training* graph (the held-out
    edges never enter it): spectral or k-means on 10 PCA components of the
    features (paper D.1); :obj:`None` for the learned clustering."""
    if variant == 'learned':
        return None
    if variant == 'flat':
        return [torch.zeros(train.num_nodes, dtype=torch.long)]
    method = 'spectral' if variant == 'spectral' else 'kmeans'
    return fixed_hierarchy(Data(x=train.x, edge_index=train.edge_index,
                                num_nodes=train.num_nodes), method,
                           list(num_clusters), seed=seed)


def _checkpointed(model: torch.nn.Module
                  ) -> Tuple[torch.nn.Module, Dict[str, Any]]:
    r"""The module a checkpoint stores and its constructor arguments: the
    :class:`MGVAE` inside an :class:`MGVAELinkModel`, else the model."""
    if isinstance(model, MGVAELinkModel):
        return model.mgvae, model.mgvae_kwargs
    return model, getattr(model, 'model_kwargs', {})


def link_loss_terms(model: torch.nn.Module, train: Data,
                    generator: Optional[torch.Generator] = None
                    ) -> Dict[str, Tensor]:
    r"""The loss terms of a link prediction model on its training graph
    (what :class:`~torch_geometric_mgvae.experiments.train.LossModule`
    computes): :obj:`model.loss_terms(train, shard)` with this process's
    share of the pairs in a process group, else :obj:`model.loss(train)`.
    (The noise comes from torch's global generator, seeded per process.)"""
    if not hasattr(model, 'loss_terms'):
        return dict(loss=model.loss(train))
    world = get_world_size()
    if world == 1:
        return model.loss_terms(train)
    return model.loss_terms(train, (get_rank(), world))


def train_model(model: torch.nn.Module, train: Data, val: Data, test: Data,
                epochs: int, lr: float, eval_every: int = 5,
                progress: Optional[Callable[[int, float, float], None]] = None,
                session: Optional[TrainingSession] = None, key: str = '',
                parallel: Optional[Parallel] = None) -> Dict[str, Any]:
    r"""Adam on :obj:`model.loss(train)` (the sum of
    :obj:`model.loss_terms(train)` where the model has them); every
    :obj:`eval_every` epochs the validation AUC is measured and, when it
    improves, the test AUC/AP and the weights are kept. Returns the selected
    epoch's numbers and the mean training step time (evaluation excluded).

    Stops with a
    :class:`~torch_geometric_mgvae.experiments.train.NonFiniteError` at the
    first non-finite loss term or gradient. With a :obj:`session`, the
    training state (including the best weights so far) is saved as
    :obj:`key`'s, and a saved state of :obj:`key` is continued.

    The model and the graphs are on one device; in a process group
    (:obj:`parallel`) every process trains on its share of the pairs
    (:func:`link_loss_terms`), and rank 0 evaluates and returns the
    results (the others return :obj:`None`)."""
    session = session or TrainingSession()
    par = parallel or Parallel('cpu')
    main = par.is_main
    net = par.wrap(LossModule(model, link_loss_terms))
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    ckpt_net, kwargs = _checkpointed(model)
    run: Dict[str, Any] = dict(best=dict(val_auc=-1.0), step_time=0.0,
                               loss=float('nan'))
    resumed = session.restore(key, ckpt_net, opt)
    if resumed is not None:
        run = resumed['run']

    def step(epoch: int):
        if hasattr(model, 'set_epoch'):
            model.set_epoch(epoch)
        net.train()
        t0 = time.perf_counter()
        opt.zero_grad()
        terms = net(train)
        loss = sum(terms.values())
        check_finite_loss({**terms, 'loss': loss})
        loss.backward()
        check_finite_grads(model)
        opt.step()
        run['step_time'] += time.perf_counter() - t0
        run['loss'] = loss.item()
        if epoch % eval_every and epoch != epochs:
            return
        # Rank 0 evaluates; a non-finite score stops every process (the
        # others would otherwise wait in the next step's collectives).
        error = None
        if main:
            try:
                evaluate(epoch)
            except NonFiniteError as e:
                error = e
        if any_rank(error is not None)[0]:
            raise error or NonFiniteError('edge score',
                                          'evaluated pairs on rank 0')

    def evaluate(epoch: int):
        model.eval()
        score = model.scorer(train)
        val_auc, val_ap = auc_ap(score(val.pos_edge_label_index),
                                 score(val.neg_edge_label_index))
        if val_auc > run['best']['val_auc']:
            auc, ap = auc_ap(score(test.pos_edge_label_index),
                             score(test.neg_edge_label_index))
            run['best'] = dict(val_auc=val_auc, val_ap=val_ap, auc=auc,
                               ap=ap, epoch=epoch,
                               state=copy.deepcopy(model.state_dict()))
        if progress is not None:
            progress(epoch, run['loss'], val_auc)

    session.train(key, step, epochs,
                  lambda: training_state(ckpt_net, opt, kwargs, run=run),
                  resumed)
    if not main:
        return None
    best = dict(run['best'])
    best['step_seconds'] = run['step_time'] / epochs
    best['loss'] = run['loss']
    model.load_state_dict(best.pop('state'))
    model.eval()
    return best


# Experiment ###############################################################

def method_name(variant: str, L: int) -> str:
    if variant == 'flat':
        return FLAT_NAME
    return f'MGVAE ({variant}, L={L})'


def collapsed(cluster: Tensor, num_clusters: int) -> bool:
    r"""Whether a clustering into :obj:`num_clusters > 1` clusters put
    every node into one cluster."""
    return num_clusters > 1 and int(torch.unique(cluster).numel()) <= 1


def run(args: argparse.Namespace, command: Optional[str] = None
        ) -> List[Dict[str, Any]]:
    r"""The whole experiment: every dataset, seed and model; prints the
    table, writes records (replacing the rows of the datasets run), a CSV,
    a Markdown table, the cluster-size plot and a summary JSON.

    Inside a :class:`~torch_geometric_mgvae.experiments.state.
    TrainingSession`: the training state of the model in training is saved
    every :obj:`--checkpoint-every` epochs and on SIGINT/SIGTERM, the
    results of every finished (dataset, seed, model) are kept in it, and
    :obj:`--resume` continues without redoing them. The records are written
    once every model has finished."""
    from tqdm import tqdm
    args = resolve_args(args)
    command = command or current_command()
    torch.set_num_threads(args.threads)
    all_records: List[Dict[str, Any]] = []
    summary: Dict[str, Any] = {}
    plots = []
    with Parallel.from_args(args) as par, \
            TrainingSession.from_args(args) as session:
        log = print if par.is_main else (lambda *a, **k: None)
        done = session.done.setdefault('jobs', {})
        done_sizes = session.done.setdefault('sizes', {})
        for name in args.dataset:
            with par.main_first():  # rank 0 copies and processes
                data = load_dataset(name, args.root, args.raw)
            runs: Dict[str, List[Dict[str, Any]]] = {}
            sizes: Dict[str, Tensor] = {}
            jobs = [] if args.no_baseline else [('vgae', None, None)]
            jobs += [(v, L, clusters_per_level(L)) for L in args.levels
                     for v in (['flat'] if L == 0 else args.variants)]
            for seed in range(args.seeds):
                methods = [VGAE_NAME if v == 'vgae' else method_name(v, L)
                           for v, L, _ in jobs]
                keys = [f'{name} seed {seed} {m}' for m in methods]
                if any(k not in done for k in keys):
                    train, val, test = split_edges(data, seed)
                for (variant, L, K), method, key in zip(jobs, methods, keys):
                    if key not in done:
                        done[key] = _run_job(args, data, train, val, test,
                                             seed, variant, K, key, session,
                                             tqdm, par)
                        # The finest clusters of seed 0 go to the plot;
                        # no tensor stays in the results (summary.json).
                        clusters = done[key].pop('clusters', None)
                        if seed == 0 and clusters is not None:
                            done_sizes[f'{name} {method}'] = clusters
                        session.save()  # finished: --resume skips it
                    res = done[key]
                    if seed == 0 and f'{name} {method}' in done_sizes:
                        sizes[method] = done_sizes[f'{name} {method}']
                    runs.setdefault(method, []).append(res)
                    log(f'{key}: test AUC {res["auc"]:.4f} AP '
                        f'{res["ap"]:.4f} (epoch {res["epoch"]}, val AUC '
                        f'{res["val_auc"]:.4f}, '
                        f'{res["step_seconds"] * 1e3:.0f} ms/epoch)'
                        + (', COLLAPSED to one cluster'
                           if res.get('collapsed') else ''))
            all_records += dataset_records(name, data, runs, args, command,
                                           par.device.type, par.world_size)
            summary[name] = {m: [{k: v for k, v in r.items()}
                                 for r in rs] for m, rs in runs.items()}
            if sizes:
                plots.append((sizes, name))
        if par.is_main:  # the others wait at the barrier
            _write_results(args, all_records, plots, summary)
        par.barrier()
    return all_records


def _write_results(args: argparse.Namespace,
                   all_records: List[Dict[str, Any]], plots: list,
                   summary: Dict[str, Any]):
    levels = sorted(args.levels)
    for name in args.dataset:
        write_dataset_records(
            args.results, TASK, name,
            [r for r in all_records if r['dataset'] == name],
            lambda r, levels=levels: run_levels(r) == levels)
    for sizes, name in plots:
        plot_cluster_sizes(sizes, os.path.join(
            args.out, f'cluster_sizes_{name}.png'), name)
    table = format_table(all_records)
    print(table)
    write_text(os.path.join(args.out, 'link_prediction.md'), table + '\n')
    write_csv(all_records, os.path.join(args.out, 'link_prediction.csv'))
    write_json(os.path.join(args.out, 'summary.json'), summary)
    print(f'wrote {args.results} and {args.out}/')


def _run_job(args: argparse.Namespace, data: Data, train: Data, val: Data,
             test: Data, seed: int, variant: str, K: Optional[List[int]],
             key: str, session: TrainingSession, tqdm,
             par: Optional[Parallel] = None) -> Dict[str, Any]:
    r"""Trains and measures one model of :func:`run` (VGAE or an MGVAE
    variant) on one seed's split; returns its results (with the finest
    clusters under :obj:`"clusters"`), rank 0's on every process."""
    par = par or Parallel('cpu')
    device = par.device
    seed_everything(seed)  # negative sampling uses random
    if variant == 'vgae':
        model = VGAEBaseline(data.num_features)
    else:
        clusters = level_clusters(train, variant, K, seed)
        if clusters is not None:
            clusters = [c.to(device) for c in clusters]
        model = MGVAELinkModel(data.num_features, K, variant, args, clusters)
    model = model.to(device)
    train, val, test = train.to(device), val.to(device), test.to(device)
    if isinstance(model, MGVAELinkModel):
        # What the model derives from the graph, once, before the timed
        # steps (as the fixed hierarchies above).
        model.graph_inputs(train)
    if par.world_size > 1:  # every process draws its own noise
        seed_everything(rank_seed(seed))
    bar = tqdm(total=args.epochs, file=sys.stdout,
               disable=args.no_progress or not par.is_main, desc=key)

    def progress(epoch, loss, val_auc):
        bar.update(epoch - bar.n)
        bar.set_postfix(loss=f'{loss:.3f}', val_auc=f'{val_auc:.3f}')

    res = train_model(model, train, val, test, args.epochs, args.lr,
                      args.eval_every, progress, session, key, par)
    bar.close()
    if par.is_main:
        if variant not in ('vgae', 'flat'):
            ev = model.finest_clusters(train, training=False)
            res.update(cluster_size_stats(ev, K[0]))
            if variant == 'learned':
                tr = model.finest_clusters(train, training=True)
                res.update({f'train_{k}': v for k, v in
                            cluster_size_stats(tr, K[0]).items()})
                res['collapsed'] = float(collapsed(ev, K[0]))
                if res['collapsed']:
                    print(f'{key}: WARNING: the learned clustering '
                          f'collapsed: all {ev.numel()} nodes in one of the '
                          f'{K[0]} finest clusters (evaluation mode)',
                          flush=True)
            res['clusters'] = ev.cpu()
        res['seed'] = seed
    return gather_objects(res)[0]


STAT_METRICS = ('cluster_min', 'cluster_max', 'cluster_std', 'cluster_kl',
                'cluster_empty', 'train_cluster_min', 'train_cluster_max',
                'train_cluster_std', 'train_cluster_kl')


def dataset_records(name: str, data: Data,
                    runs: Dict[str, List[Dict[str, Any]]],
                    args: argparse.Namespace, command: str,
                    device: str = 'cpu', processes: int = 1
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
                   latent_head=args.latent_head, norm=args.norm,
                   encoder_scope=args.encoder_scope,
                   hierarchical=args.hierarchical,
                   comembership=not args.no_comembership,
                   kl_weight=args.kl_weight or '1/N^2',
                   cluster_balance=args.cluster_balance,
                   eval_assign=args.eval_assign,
                   comembership_weight=args.comembership_weight,
                   multires_weight=args.multires_weight,
                   entropy_weight=args.entropy_weight,
                   eval_every=args.eval_every, levels=sorted(args.levels),
                   threads=args.threads,
                   cluster_features=args.cluster_features,
                   cluster_init_epochs=args.cluster_init_epochs)
    for method, rs in runs.items():
        n = len(rs)
        common = dict(n=n, protocol=PROTOCOL, command=command,
                      device=device, processes=processes,
                      machine=machine(), num_nodes=data.num_nodes)
        # The baseline is trained again in every run: its rows carry the
        # levels of the run they belong to, so the rows of a run with other
        # levels stay beside them (see run_levels).
        common['setting'] = (setting if method != VGAE_NAME else
                             dict(levels=setting['levels']))
        if method == FLAT_NAME:  # no clusters: no terms that read them
            common['setting'] = dict(setting, hierarchical=False,
                                     comembership=False)
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
        if 'collapsed' in rs[0]:
            # How many of the n runs put every node into one cluster.
            recs.append(record(TASK, name, method, 'collapsed_runs',
                               sum(r.get('collapsed', 0.0) for r in rs),
                               None, **common))
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
        if g('collapsed_runs') is not None and g('collapsed_runs')['value']:
            stats += (f" (collapsed to one cluster in "
                      f"{g('collapsed_runs')['value']:.0f} of "
                      f"{g('collapsed_runs')['n']} runs)")
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
    r"""The records' main columns as CSV (written atomically)."""
    keys = ['task', 'dataset', 'method', 'metric', 'value', 'std', 'n']
    f = io.StringIO()
    w = csv.DictWriter(f, keys, extrasaction='ignore')
    w.writeheader()
    for r in records:
        w.writerow(r)
    write_text(path, f.getvalue())


def plot_cluster_sizes(clusters: Dict[str, Tensor], path: str,
                       title: str) -> str:
    r"""Histograms of the finest cluster sizes of every method."""
    import matplotlib

    from torch_geometric_mgvae.experiments.plot import save_figure
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
    return save_figure(fig, path, dpi=100)
