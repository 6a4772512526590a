r"""The graph generation experiment of the paper (appendix D.5).

MGVAE is trained on the GDSS training split of community-small or ego-small
(test = the first 20% of the stored list, disjoint from training), graphs
are sampled all at once from the prior, and the squared MMD of the degree,
clustering and 4-node orbit statistics of the samples against the *test*
graphs is reported under the GraphRNN/GDSS kernels (:obj:`"graphrnn"`) and
the GRAN kernels (:obj:`"gran"`), mean and std over seeds. The same table
holds two references computed with the same protocol: the training set
itself (the floor any generator can hope to reach) and an Erdős–Rényi
baseline with matched sizes and density (the ceiling).

The :obj:`mgvae generate` command and ``examples/graph_generation.py``
both drive :class:`GenerationExperiment`::

    exp = GenerationExperiment(args)
    for seed in range(args.seeds):
        exp.start_seed(seed)
        for epoch in range(args.epochs):
            exp.train_epoch()
        exp.test()
    exp.finish()
"""
import argparse
import os
import sys
import time
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
from torch import Tensor
from torch_geometric.data import Data
from torch_geometric.loader import DataLoader
from torch_geometric.utils import to_undirected

from torch_geometric_mgvae.datasets import CommunitySmall, EgoSmall
from torch_geometric_mgvae.experiments.distributed import Parallel
from torch_geometric_mgvae.experiments.io import write_json
from torch_geometric_mgvae.experiments.options import (
    LATENT_SAMPLERS,
    UsageError,
    check_matched_sampler,
    int_list,
    nonnegative_float,
    nonnegative_int,
    parse_options,
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
    model_checkpoint,
    training_state,
)
from torch_geometric_mgvae.experiments.train import (
    LossModule,
    structural_transform,
    train_epoch,
)
from torch_geometric_mgvae.metrics import graph_mmd
from torch_geometric_mgvae.models import MGVAE

__all__ = [
    'DATASETS', 'MODEL_DEFAULTS', 'KERNELS', 'add_arguments',
    'resolve_args', 'load_splits', 'graph_density', 'mean_density',
    'erdos_renyi_graphs', 'matched_erdos_renyi', 'graph_stats',
    'split_overlap', 'mmd_scores', 'model_kwargs', 'build_model',
    'method_name',
    'fit_latent_gaussian', 'sample_fitted', 'fit_matched_subsets',
    'sample_matched', 'sample_graphs', 'GenerationExperiment', 'run'
]

DATASETS = {'community-small': CommunitySmall, 'ego-small': EgoSmall}
TASK = 'graph_generation'
KERNELS = ('graphrnn', 'gran')
STATISTICS = ('degree', 'clustering', 'orbit', 'avg')
KERNEL_DETAILS = {
    'graphrnn': 'GraphRNN/GDSS kernels: Gaussian-EMD on degree histograms '
    '(sigma 1) and on 100-bin clustering histograms (sigma 0.1), Gaussian '
    'on mean 4-node orbit counts (sigma 30)',
    'gran': 'GRAN kernels: Gaussian total variation on degree histograms '
    '(sigma 1), 100-bin clustering histograms (sigma 0.1) and mean 4-node '
    'orbit counts (sigma 30)',
}
FLOOR = 'train set (floor)'
ER = 'Erdos-Renyi (matched)'
#: The records go to OUT/RESULTS_NAME unless --results names a file (the
#: committed benchmark/results/graph_generation.json only when given).
RESULTS_NAME = 'graph_generation.json'

# Per-dataset defaults of the model options left at None on the command
# line. Paper D.5: L = 2 levels, K = 2^l clusters, a fully connected (MLP)
# global decoder at the finest level, and for ego-small the learnable
# equivariant prior, which this library defines with the second-order layers
# and Gaussian-MRF posteriors (there the second-order equivariant global
# decoder is the default: in one 30-epoch ego-small run its samples scored
# an average GraphRNN MMD of 0.045 against 0.053 for the MLP, at 1.35x the
# cost per epoch; not a tuned choice). Options that depend on the order:
# covariance ('mrf' for order 2, else 'diag') and the global decoder
# ('second_order' for order 2, else 'inner') when the dataset gives none.
MODEL_DEFAULTS: Dict[str, Dict[str, Any]] = {
    'community-small': dict(order=1, prior='standard', global_decoder='mlp',
                            random_features=4),
    'ego-small': dict(order=2, prior='learnable', random_features=0),
}


# Command line #############################################################

def add_arguments(parser: argparse.ArgumentParser):
    r"""Adds the options of the experiment to :obj:`parser` (shared by
    :obj:`mgvae generate` and ``examples/graph_generation.py``)."""
    data = parser.add_argument_group('data and protocol')
    data.add_argument('--dataset', default='community-small',
                      choices=sorted(DATASETS))
    data.add_argument('--root', default=None,
                      help='dataset folder; the raw GDSS file '
                      '(<name>.edgelists.json or <name>.pkl) lies in '
                      'ROOT/raw (default: data/community_small or '
                      'data/ego_small; the .pkl is downloaded if missing)')
    data.add_argument('--seeds', type=positive_int, default=3,
                      help='training runs with seeds 0..SEEDS-1 '
                      '(default: 3)')
    data.add_argument('--num-samples', type=positive_int, default=1024,
                      help='graphs sampled per seed (default: 1024)')
    data.add_argument('--kernel', default='both',
                      choices=['both'] + list(KERNELS),
                      help='MMD kernels: graphrnn (GDSS protocol), gran '
                      'or both (default: both)')
    data.add_argument('--out', default=None,
                      help='folder for pictures, histories and checkpoints '
                      '(default: outputs/generation/<dataset>)')
    data.add_argument('--results', default=None,
                      help=f'JSON file of result records; this dataset\'s '
                      f'rows are replaced (default: OUT/{RESULTS_NAME}; '
                      f'benchmark/results/{RESULTS_NAME} holds the '
                      f'committed ones)')
    data.add_argument('--no-progress', action='store_true',
                      help='no progress bar')

    model = parser.add_argument_group(
        'model (None = per-dataset default, see MODEL_DEFAULTS)')
    model.add_argument('--clusters', type=int_list, default='2,1',
                       help='clusters per level, finest first '
                       '(default: 2,1: L = 2 levels, K = 2^l)')
    model.add_argument('--hidden', type=positive_int, default=64)
    model.add_argument('--latent', type=positive_int, default=16)
    model.add_argument('--layers', type=positive_int, default=2,
                       help='message passing layers per encoder '
                       '(default: 2; the paper used 10)')
    model.add_argument('--cluster-layers', type=nonnegative_int, default=2)
    model.add_argument('--order', type=int, default=None, choices=[1, 2],
                       help='first- or second-order encoders/decoders '
                       '(default: 1 community-small, 2 ego-small)')
    model.add_argument('--covariance', default=None, choices=['diag', 'mrf'],
                       help='posterior covariance (default: mrf for order '
                       '2, else diag)')
    model.add_argument('--prior', default=None,
                       choices=['standard', 'learnable'],
                       help='(default: standard community-small, learnable '
                       'ego-small)')
    model.add_argument('--matching', default='hungarian',
                       choices=['hungarian', 'free'],
                       help='matching of the learnable prior')
    model.add_argument('--global-decoder', default=None,
                       choices=['inner', 'second_order', 'mlp'],
                       help='(default: mlp for community-small, as in the '
                       'paper; second_order for order 2, else inner)')
    model.add_argument('--random-features', type=nonnegative_int,
                       default=None,
                       help='random node feature channels (default: 4 '
                       'community-small, 0 ego-small)')
    model.add_argument('--encoder-scope', default='cluster',
                       choices=['cluster', 'graph'])
    model.add_argument('--hierarchical-decoding', action='store_true')
    model.add_argument('--tau', type=positive_float, default=1.0,
                       help='straight-through temperature')
    model.add_argument('--latent-sampler', default=None,
                       choices=list(LATENT_SAMPLERS),
                       help='where the node latents of the samples come '
                       'from (default: matched with the learnable prior, '
                       'else prior): the model\'s prior, "fitted": a '
                       'diagonal Gaussian per node position and channel '
                       'fitted after training to the posterior means of '
                       'the training graphs (ex-post density estimation, '
                       'see fit_latent_gaussian), or "matched" (learnable '
                       'prior only): the learnable prior on a subset of '
                       'its nodes drawn from those the training graphs '
                       'were matched to (see fit_matched_subsets)')

    opt = parser.add_argument_group('training')
    opt.add_argument('--epochs', type=positive_int, default=300)
    opt.add_argument('--batch-size', type=positive_int, default=16)
    opt.add_argument('--lr', type=positive_float, default=3e-3)
    opt.add_argument('--kl-weight', type=nonnegative_float, default=1.0)
    opt.add_argument('--cut-weight', type=nonnegative_float, default=1.0,
                     help='weight of the balanced-cut KL')
    return parser


def resolve_args(args: argparse.Namespace) -> argparse.Namespace:
    r"""Fills the per-dataset defaults (options left at :obj:`None`),
    :obj:`root`, :obj:`out` and :obj:`results`, and checks the values
    (a :class:`~torch_geometric_mgvae.experiments.options.UsageError`,
    before any work)."""
    if args.dataset not in DATASETS:
        raise UsageError(f"Unknown dataset '{args.dataset}' (expected one "
                         f"of {sorted(DATASETS)})")
    for key, value in MODEL_DEFAULTS[args.dataset].items():
        if getattr(args, key, None) is None:
            setattr(args, key, value)
    if args.covariance is None:
        args.covariance = 'mrf' if args.order == 2 else 'diag'
    if args.global_decoder is None:
        args.global_decoder = 'second_order' if args.order == 2 else 'inner'
    slug = args.dataset.replace('-', '_')
    if args.root is None:
        args.root = os.path.join('data', slug)
    if args.out is None:
        args.out = os.path.join('outputs', 'generation', args.dataset)
    if args.results is None:
        args.results = os.path.join(args.out, RESULTS_NAME)
    if isinstance(args.clusters, str):
        args.clusters = [int(k) for k in args.clusters.split(',') if k]
    # Namespaces built without this option (older scripts) sample the prior;
    # left at None, the learnable prior samples its matched subsets (on
    # ego-small validation graphs: average MMD 0.025 against 0.038).
    args.latent_sampler = getattr(args, 'latent_sampler', 'prior')
    if args.latent_sampler is None:
        args.latent_sampler = ('matched' if args.prior == 'learnable'
                               else 'prior')
    if args.latent_sampler not in LATENT_SAMPLERS:
        raise UsageError(f"'--latent-sampler' must be one of "
                         f"{LATENT_SAMPLERS}")
    if args.latent_sampler == 'fitted' and args.hierarchical_decoding:
        raise UsageError("'--latent-sampler fitted' does not support "
                         "'--hierarchical-decoding'")
    if args.covariance == 'mrf' and args.order != 2:
        raise UsageError("'--covariance mrf' needs '--order 2'")
    check_matched_sampler(args.latent_sampler, args.prior)
    if args.latent_sampler == 'matched' and args.hierarchical_decoding:
        raise UsageError("'--latent-sampler matched' does not support "
                         "'--hierarchical-decoding'")
    read_records(args.results)  # a broken file fails now, not after training
    return args


def parse_args(argv: Optional[Sequence[str]] = None,
               prog: Optional[str] = None) -> argparse.Namespace:
    return parse_options(__doc__, add_arguments, resolve_args, argv, prog)


# Data and baselines #######################################################

def load_splits(dataset: str, root: str) -> Tuple[List[Data], List[Data]]:
    r"""The GDSS training and test graphs of :obj:`dataset` (test = the
    first 20% of the stored list, train = the rest)."""
    cls = DATASETS[dataset]
    train = [d for d in cls(root, split='train')]
    test = [d for d in cls(root, split='test')]
    return train, test


def _pairs(g: Data) -> Tuple[int, int]:
    n = int(g.num_nodes)
    ei = g.edge_index
    m = int((ei[0] < ei[1]).sum()) if ei.numel() else 0
    return n, m


def graph_density(g: Data) -> float:
    r"""Edges over node pairs, :math:`|E| / \binom{n}{2}` (0 below 2
    nodes), for an undirected graph stored in both directions."""
    n, m = _pairs(g)
    return 2.0 * m / (n * (n - 1)) if n > 1 else 0.0


def mean_density(graphs: Sequence[Data]) -> float:
    r"""The mean of :func:`graph_density` over graphs."""
    return float(np.mean([graph_density(g) for g in graphs]))


def erdos_renyi_graphs(sizes: Sequence[int], p: float,
                       generator: Optional[torch.Generator] = None
                       ) -> List[Data]:
    r""":math:`G(n, p)` graphs, one per size in :obj:`sizes` (undirected,
    both edge directions, no self loops)."""
    out = []
    for n in sizes:
        n = int(n)
        row, col = torch.triu_indices(n, n, offset=1)
        keep = torch.rand(row.numel(), generator=generator) < p
        ei = torch.stack([row[keep], col[keep]])
        out.append(Data(edge_index=to_undirected(ei, num_nodes=n),
                        num_nodes=n))
    return out


def matched_erdos_renyi(train: Sequence[Data], num_graphs: int,
                        generator: Optional[torch.Generator] = None
                        ) -> List[Data]:
    r"""The Erdős–Rényi baseline matched to the training set: every graph
    gets a size drawn (with replacement) from the training sizes and edge
    probability = the mean density of the training graphs."""
    sizes = torch.tensor([int(g.num_nodes) for g in train])
    idx = torch.randint(len(train), (num_graphs, ), generator=generator)
    return erdos_renyi_graphs(sizes[idx].tolist(), mean_density(train),
                              generator)


def graph_stats(graphs: Sequence[Data]) -> Dict[str, float]:
    r"""Mean nodes, edges, density, local clustering coefficient (nodes of
    degree below 2 count 0, as in :obj:`networkx.average_clustering`) and
    connected components per graph, and the fraction of isolated nodes."""
    from scipy.sparse.csgraph import connected_components

    from torch_geometric_mgvae.metrics import local_clustering
    from torch_geometric_mgvae.metrics.orbits import union_adjacency

    adj, sizes = union_adjacency(graphs)
    coef, deg, graph_id = local_clustering(graphs)
    B = len(graphs)
    clust = np.bincount(graph_id, weights=coef, minlength=B) / np.maximum(
        sizes, 1)
    _, label = connected_components(adj, directed=False)
    first = np.unique(label, return_index=True)[1]  # a node per component
    comps = np.bincount(graph_id[first], minlength=B)
    edges = [_pairs(g)[1] for g in graphs]
    return dict(nodes=float(np.mean(sizes)), edges=float(np.mean(edges)),
                density=mean_density(graphs),
                clustering=float(np.mean(clust)),
                components=float(np.mean(comps)),
                isolated=int((deg == 0).sum()) / max(int(sizes.sum()), 1))


def split_overlap(train: Sequence[Data], test: Sequence[Data]
                  ) -> Dict[str, int]:
    r"""How many test graphs also occur in the training graphs: as the
    same labelled graph (:obj:`"exact"`) and up to isomorphism
    (:obj:`"isomorphic"`). The GDSS lists repeat graphs, so a split of the
    stored list that is disjoint by position is not disjoint by content."""
    import networkx as nx

    from torch_geometric_mgvae.metrics import to_nx

    def key(g):
        return int(g.num_nodes), frozenset(
            map(tuple, g.edge_index.t().tolist()))

    def invariant(G):
        return G.number_of_nodes(), G.number_of_edges(), tuple(
            sorted(d for _, d in G.degree()))

    exact_keys = {key(g) for g in train}
    by_invariant: Dict[Any, List[Any]] = {}
    for g in train:
        G = to_nx(g)
        by_invariant.setdefault(invariant(G), []).append(G)
    exact = iso = 0
    for g in test:
        if key(g) in exact_keys:
            exact += 1
            iso += 1
            continue
        G = to_nx(g)
        iso += any(nx.is_isomorphic(G, H)
                   for H in by_invariant.get(invariant(G), []))
    return dict(exact=exact, isomorphic=int(iso), test=len(test))


def mmd_scores(pred: Sequence[Data], ref: Sequence[Data],
               kernels: Sequence[str] = KERNELS) -> Dict[str, float]:
    r"""Squared MMD of degree, clustering and orbit statistics and their
    average for every kernel, keyed :obj:`"<stat>_mmd_<kernel>"`."""
    out = {}
    for kernel in kernels:
        res = graph_mmd(pred, ref, kernel=kernel)
        for stat in STATISTICS:
            out[f'{stat}_mmd_{kernel}'] = float(res[stat])
    return out


# Model ####################################################################

def model_kwargs(args: argparse.Namespace, in_channels: int,
                 max_nodes: int) -> Dict[str, Any]:
    r"""The constructor arguments of the experiment's :class:`MGVAE` from
    the (resolved) options (stored in the checkpoints)."""
    return dict(in_channels=in_channels, hidden_channels=args.hidden,
                latent_channels=args.latent, num_clusters=args.clusters,
                num_layers=args.layers, order=args.order,
                cluster_kwargs=dict(num_layers=args.cluster_layers,
                                    tau=args.tau),
                covariance=args.covariance, prior=args.prior,
                prior_kwargs=dict(matching=args.matching)
                if args.prior == 'learnable' else None,
                global_decoder=args.global_decoder,
                random_features=args.random_features, max_nodes=max_nodes,
                encoder_scope=args.encoder_scope,
                hierarchical_decoding=args.hierarchical_decoding)


def build_model(args: argparse.Namespace, in_channels: int,
                max_nodes: int) -> MGVAE:
    r"""The MGVAE of the experiment from the (resolved) options."""
    return MGVAE(**model_kwargs(args, in_channels, max_nodes))


@torch.no_grad()
def fit_latent_gaussian(model: MGVAE, graphs: Sequence[Data],
                        max_nodes: int, batch_size: int = 256,
                        seed: int = 0) -> Tuple[Tensor, Tensor]:
    r"""Ex-post density estimation of the finest latents (the two-stage
    recipe of Dai & Wipf, 2019, and Ghosh et al., 2020, in its simplest
    form): the posterior means :math:`\mu^{(L)}` of the training
    :obj:`graphs` (with structural features, evaluation mode) padded to
    :obj:`max_nodes` node positions, and a diagonal Gaussian fitted to every
    (node position, channel) over the graphs that have that position.
    Returns its mean and standard deviation, :math:`[N_{\max}, d]` each.

    With a small KL weight the aggregate posterior the decoder was trained
    on drifts away from the prior :math:`\mathcal{N}(0, I)`; sampling from
    this fit instead closes that prior hole. It is fitted on training graphs
    only (like the size distribution of :meth:`MGVAE.fit_num_nodes`).
    Positions are meaningful for the position-dependent (:obj:`"mlp"`)
    global decoder; for the equivariant decoders prefer the prior."""
    from torch_geometric.utils import to_dense_batch
    model.eval()
    device = model.mu_heads[0].weight.device
    gen = torch.Generator(device=device).manual_seed(seed)
    zs, masks = [], []
    for batch in DataLoader(list(graphs), batch_size=batch_size):
        batch = batch.to(device)
        out = model(batch.x, batch.edge_index, None, batch.batch,
                    num_graphs=batch.num_graphs, generator=gen)
        z, mask = to_dense_batch(out[0].mu, out[0].batch,
                                 batch_size=batch.num_graphs,
                                 max_num_nodes=max_nodes)
        zs.append(z)
        masks.append(mask)
    z, w = torch.cat(zs), torch.cat(masks).to(zs[0].dtype).unsqueeze(-1)
    count = w.sum(0).clamp(min=1)  # [N, 1]
    mean = (z * w).sum(0) / count
    std = ((((z - mean)**2) * w).sum(0) / count).sqrt()
    return mean, std


@torch.no_grad()
def sample_fitted(model: MGVAE, mean: Tensor, std: Tensor, num_graphs: int,
                  generator: Optional[torch.Generator] = None) -> List[Data]:
    r"""Samples :obj:`num_graphs` graphs like :meth:`MGVAE.sample` (sizes
    from :meth:`MGVAE.fit_num_nodes`, independent Bernoulli edges from the
    finest global decoder), but with node latents drawn from the fitted
    Gaussian of :func:`fit_latent_gaussian` instead of the prior."""
    if model.num_nodes_count is None:
        raise RuntimeError("Call fit_num_nodes() first")
    sizes = torch.multinomial(model.num_nodes_count.to(mean.device),
                              num_graphs, True, generator=generator)
    N, d = mean.shape
    if int(sizes.max()) > N:
        raise ValueError(f"Sizes up to {int(sizes.max())} but the fit has "
                         f"{N} node positions")
    z = mean + std * torch.randn(num_graphs, N, d, generator=generator,
                                 dtype=mean.dtype, device=mean.device)
    m = int(sizes.max())
    mask = torch.arange(m, device=mean.device) < sizes.view(-1, 1)
    return _decode_edges(model, z[:, :m], mask, sizes, generator)


def _decode_edges(model: MGVAE, z: Tensor, mask: Tensor, sizes: Tensor,
                  generator: Optional[torch.Generator]) -> List[Data]:
    r"""Graphs with independent Bernoulli edges from the finest global
    decoder of :obj:`model` at node latents :obj:`z` :math:`[B, m, d]`."""
    prob = model.global_decoders[0].forward_all(z, mask=mask)
    draw = torch.rand(prob.shape, generator=generator, dtype=prob.dtype,
                      device=prob.device) < prob
    draw = (draw & (mask.unsqueeze(2) & mask.unsqueeze(1))).triu(1)
    draw = draw | draw.transpose(1, 2)
    return [Data(edge_index=draw[b, :n, :n].nonzero().t().contiguous(),
                 num_nodes=n) for b, n in enumerate(sizes.tolist())]


@torch.no_grad()
def fit_matched_subsets(model: MGVAE, graphs: Sequence[Data],
                        batch_size: int = 256) -> List[Tensor]:
    r"""The prior nodes every training graph uses: the finest posterior of
    each of :obj:`graphs` (with structural features, evaluation mode) is
    matched to the learnable prior as in its KL
    (:meth:`~torch_geometric_mgvae.nn.LearnablePrior.match`), and the
    sorted indices of the matched prior nodes are returned, one tensor per
    graph.

    Training fits each prior node to the posterior nodes matched to it, so
    a prior node stands for a role (e.g. the centre of an ego graph), and
    most graphs use few of the :math:`N_{\max}` prior nodes. The subsets
    are the discrete part of the latent: their empirical distribution is
    the maximum-likelihood prior over them (the aggregate posterior), while
    :meth:`LearnablePrior.sample` draws uniform subsets, which may leave
    out the centre or take prior nodes no graph was matched to.
    :func:`sample_matched` samples from it; the size of a sample is the
    size of its subset, so this also replaces
    :meth:`~torch_geometric_mgvae.models.MGVAE.fit_num_nodes`."""
    if model.prior is None:
        raise ValueError("The matched sampler needs the learnable prior "
                         "(prior='learnable')")
    if len(graphs) == 0:
        raise ValueError("Need at least one graph to fit the subsets")
    model.eval()
    device = model.mu_heads[0].weight.device
    subsets: List[Tensor] = []
    for batch in DataLoader(list(graphs), batch_size=batch_size):
        batch = batch.to(device)
        out = model(batch.x, batch.edge_index, None, batch.batch,
                    num_graphs=batch.num_graphs)
        mu, _, mask = model._graph_posterior(out[0])
        index = model.prior.match(mu, mask)
        subsets += [index[b][mask[b]].sort().values.cpu()
                    for b in range(batch.num_graphs)]
    return subsets


@torch.no_grad()
def sample_matched(model: MGVAE, subsets: Sequence[Tensor], num_graphs: int,
                   generator: Optional[torch.Generator] = None
                   ) -> List[Data]:
    r"""Samples :obj:`num_graphs` graphs like :meth:`MGVAE.sample`, with
    the prior nodes of every graph a subset drawn uniformly from
    :obj:`subsets` (:func:`fit_matched_subsets`) in random order, instead
    of a uniform subset; its node latents come from the learnable prior
    on those nodes."""
    if model.prior is None:
        raise ValueError("The matched sampler needs the learnable prior "
                         "(prior='learnable')")
    if len(subsets) == 0:
        raise ValueError("No subsets to sample from")
    device = model.prior.mu_hat.device
    gdev = generator.device if generator is not None else device
    pick = torch.randint(len(subsets), (num_graphs, ), generator=generator,
                         device=gdev).tolist()
    sizes = torch.tensor([len(subsets[i]) for i in pick], dtype=torch.long,
                         device=device)
    m = int(sizes.max()) if num_graphs > 0 else 0
    index = torch.zeros(num_graphs, m, dtype=torch.long, device=device)
    for b, i in enumerate(pick):
        order = torch.randperm(len(subsets[i]), generator=generator,
                               device=gdev).cpu()
        index[b, :len(order)] = subsets[i][order].to(device)
    z, mask = model.prior.sample(sizes, generator, index=index)
    dtype = model.mu_heads[0].weight.dtype
    return _decode_edges(model, z.to(dtype), mask, sizes, generator)


def sample_graphs(model: MGVAE, sampler: str, train_set: Sequence[Data],
                  max_nodes: int, num_graphs: int,
                  generator: Optional[torch.Generator] = None
                  ) -> Tuple[List[Data], Dict[str, Any]]:
    r"""Samples :obj:`num_graphs` graphs with the latent sampler
    :obj:`sampler` (one of
    :obj:`~torch_geometric_mgvae.experiments.options.LATENT_SAMPLERS`),
    fitting it to :obj:`train_set` (with structural features) first where it
    needs a fit. Returns the samples and what was fitted, to store with the
    model: :obj:`latent_mean`/:obj:`latent_std` (:func:`sample_fitted`),
    :obj:`prior_subsets` (:func:`sample_matched`) or nothing."""
    if sampler == 'fitted':
        mean, std = fit_latent_gaussian(model, train_set, max_nodes)
        return (sample_fitted(model, mean, std, num_graphs, generator),
                dict(latent_mean=mean.cpu(), latent_std=std.cpu()))
    if sampler == 'matched':
        subsets = fit_matched_subsets(model, train_set)
        return (sample_matched(model, subsets, num_graphs, generator),
                dict(prior_subsets=subsets))
    if sampler != 'prior':
        raise ValueError(f"'sampler' must be one of {LATENT_SAMPLERS} (got "
                         f"{sampler!r})")
    return model.sample(num_graphs, generator=generator), {}


def method_name(args: argparse.Namespace) -> str:
    r"""The :obj:`method` of the MGVAE records: the configuration."""
    parts = [f'K={",".join(map(str, args.clusters))}',
             f'order {args.order}', args.covariance,
             f'{args.prior} prior', f'{args.global_decoder} decoder']
    if args.prior == 'learnable':
        parts.append(f'{args.matching} matching')
    if args.random_features:
        parts.append(f'{args.random_features} random features')
    if args.encoder_scope != 'cluster':
        parts.append(f'{args.encoder_scope} encoders')
    if args.hierarchical_decoding:
        parts.append('hierarchical decoding')
    if args.latent_sampler != 'prior':
        parts.append(f'{args.latent_sampler} latent sampler')
    if args.kl_weight != 1.0:
        parts.append(f'KL weight {args.kl_weight:g}')
    parts.append(f'{args.layers} layers, {args.epochs} epochs')
    return f'MGVAE ({", ".join(parts)})'


def _kernels(args) -> Tuple[str, ...]:
    return KERNELS if args.kernel == 'both' else (args.kernel, )


# The experiment ###########################################################

class GenerationExperiment:
    r"""The state of one :obj:`generate` run: data, baselines, the model of
    the current seed and the results of every finished seed.

    Args:
        args (argparse.Namespace): Options of :func:`add_arguments`
            (resolved with :func:`resolve_args`).
        command (str, optional): The command line stored in the records
            (default: the running process's).
        log (callable, optional): Where lines are printed.
        parallel (Parallel, optional): The device and processes (default:
            :obj:`args.device`, or auto, in one process). Every process
            trains; the references and :meth:`test` are rank 0's.
    """
    def __init__(self, args: argparse.Namespace,
                 command: Optional[str] = None, log=print,
                 parallel: Optional[Parallel] = None):
        self.args = resolve_args(args)
        self.command = command or current_command()
        self.par = parallel or Parallel.from_args(args)
        self.log = log if self.par.is_main else (lambda *a, **k: None)
        self.kernels = _kernels(args)
        with self.par.main_first():  # rank 0 processes the raw file
            self.train_graphs, self.test_graphs = load_splits(
                args.dataset, args.root)
        if not self.train_graphs or not self.test_graphs:
            raise ValueError(f"Empty split in '{args.root}'")
        features = structural_transform()
        self.train_set = [features(g) for g in self.train_graphs]
        self.in_channels = self.train_set[0].num_features
        self.max_nodes = max(int(g.num_nodes) for g in
                             self.train_graphs + self.test_graphs)
        self.method = method_name(args)
        self.runs: List[Dict[str, Any]] = []
        if not self.par.is_main:
            return  # the references are for rank 0's test() and finish()
        self.floor = mmd_scores(self.train_graphs, self.test_graphs,
                                self.kernels)
        self.floor_stats = graph_stats(self.train_graphs)
        self.test_stats = graph_stats(self.test_graphs)
        self.duplicates = split_overlap(self.train_graphs, self.test_graphs)
        self.log(f'{args.dataset}: {len(self.train_graphs)} train / '
                 f'{len(self.test_graphs)} test graphs (GDSS split; '
                 f'{self._overlap()}), max {self.max_nodes} nodes, train '
                 f'density {self.floor_stats["density"]:.3f}; {self.method}')

    def _overlap(self) -> str:
        d = self.duplicates
        return (f'{d["isomorphic"]}/{d["test"]} test graphs isomorphic to a '
                f'training graph, {d["exact"]} identical')

    def start_seed(self, seed: int) -> MGVAE:
        r"""A fresh model, optimizer and loader for :obj:`seed`."""
        torch.manual_seed(seed)
        self.seed = seed
        self.model_kwargs = model_kwargs(self.args, self.in_channels,
                                         self.max_nodes)
        self.model = MGVAE(**self.model_kwargs).to(self.par.device)
        self.net = self.par.wrap(LossModule(self.model))
        self.optimizer = torch.optim.Adam(self.model.parameters(),
                                          lr=self.args.lr)
        self.loader = self.par.loader(self.train_set, self.args.batch_size,
                                      seed=seed)
        self.generator = self.par.generator(seed)
        self.weights = {'kl': self.args.kl_weight,
                        'balanced_cut': self.args.cut_weight}
        self.history: List[Dict[str, float]] = []
        self.train_seconds = 0.0
        return self.model

    def training_state(self) -> Dict[str, Any]:
        r"""The current seed's training state (see
        :func:`~torch_geometric_mgvae.experiments.state.training_state`)."""
        return training_state(self.model, self.optimizer, self.model_kwargs,
                              generators={'generator': self.generator},
                              history=self.history,
                              train_seconds=self.train_seconds)

    def restore(self, session: TrainingSession) -> Optional[Dict[str, Any]]:
        r"""Continues the current seed from :obj:`session`'s saved state, if
        it was saved while training this seed."""
        state = session.restore(f'seed {self.seed}', self.model,
                                self.optimizer,
                                generators={'generator': self.generator})
        if state is not None:
            self.history = state['history']
            self.train_seconds = state['train_seconds']
        return state

    def train_epoch(self) -> Dict[str, float]:
        r"""One epoch of the current model; returns the mean loss terms."""
        t0 = time.perf_counter()
        stats = train_epoch(self.net, self.loader, self.optimizer,
                            self.weights, generator=self.generator,
                            epoch=len(self.history) + 1)
        self.train_seconds += time.perf_counter() - t0
        self.history.append(dict(epoch=len(self.history) + 1, **stats))
        return stats

    @torch.no_grad()
    def test(self) -> Dict[str, float]:
        r"""Samples :obj:`num_samples` graphs from the current model (sizes
        from the training set, seeded), scores them and the matched
        Erdős–Rényi graphs of the same seed against the test set."""
        args, seed = self.args, self.seed
        model = self.model
        model.fit_num_nodes(self.train_graphs)
        model.eval()
        gen = torch.Generator(device=self.par.device).manual_seed(
            10_000 + seed)
        t0 = time.perf_counter()
        samples, _ = sample_graphs(model, args.latent_sampler,
                                   self.train_set, self.max_nodes,
                                   args.num_samples, gen)
        samples = [g.cpu() for g in samples]
        sample_seconds = time.perf_counter() - t0
        scores = mmd_scores(samples, self.test_graphs, self.kernels)
        er_gen = torch.Generator().manual_seed(20_000 + seed)
        t0 = time.perf_counter()
        er = matched_erdos_renyi(self.train_graphs, args.num_samples, er_gen)
        er_seconds = time.perf_counter() - t0
        er_scores = mmd_scores(er, self.test_graphs, self.kernels)
        run = dict(seed=seed, scores=scores, er_scores=er_scores,
                   stats=graph_stats(samples), er_stats=graph_stats(er),
                   sample_seconds=sample_seconds, er_seconds=er_seconds,
                   train_seconds=self.train_seconds, history=self.history,
                   samples=samples[:8], er=er[:8])
        self.runs.append(run)
        model_checkpoint(os.path.join(args.out, f'mgvae_seed{seed}.pt'),
                         model, self.model_kwargs, args=args,
                         in_channels=self.in_channels,
                         max_nodes=self.max_nodes)
        k = self.kernels[0]
        s = run['stats']
        self.log(f'seed {seed}: trained {self.train_seconds:.1f}s, sampled '
                 f'{args.num_samples} graphs in {sample_seconds:.2f}s; '
                 f'avg MMD ({k}) {scores[f"avg_mmd_{k}"]:.4f} (ER '
                 f'{er_scores[f"avg_mmd_{k}"]:.4f}, train '
                 f'{self.floor[f"avg_mmd_{k}"]:.4f}); density '
                 f'{s["density"]:.3f} (test '
                 f'{self.test_stats["density"]:.3f}), clustering '
                 f'{s["clustering"]:.3f} (test '
                 f'{self.test_stats["clustering"]:.3f})')
        return scores

    # Summary ##############################################################

    def _protocol(self, kernel: Optional[str], what: str) -> str:
        base = (f'GDSS split (test = first 20%, {len(self.test_graphs)} '
                f'graphs; train {len(self.train_graphs)}; '
                f'{self._overlap()}), {what} vs test, squared MMD')
        return base if kernel is None else f'{base}, {KERNEL_DETAILS[kernel]}'

    def records(self) -> List[Dict[str, Any]]:
        r"""The flat result records of all finished seeds."""
        args, runs = self.args, self.runs
        n = len(runs)
        samples = f'{args.num_samples} samples'
        common = dict(task=TASK, dataset=args.dataset, command=self.command,
                      device=self.par.device.type,
                      processes=self.par.world_size)
        out = []
        metrics = [m for m in self.floor]
        for metric in metrics:
            kernel = metric.rsplit('_', 1)[1]
            for method, key, what in ((self.method, 'scores', samples),
                                      (ER, 'er_scores', samples)):
                v, s = mean_std([r[key][metric] for r in runs])
                out.append(record(method=method, metric=metric, value=v,
                                  std=s, n=n, protocol=self._protocol(
                                      kernel, what), **common))
            out.append(record(method=FLOOR, metric=metric,
                              value=self.floor[metric], std=None, n=1,
                              protocol=self._protocol(
                                  kernel, f'all {len(self.train_graphs)} '
                                  f'training graphs (deterministic)'),
                              **common))
        for stat in ('density', 'clustering', 'edges'):
            for method, vals in (
                    (self.method, [r['stats'][stat] for r in runs]),
                    (ER, [r['er_stats'][stat] for r in runs]),
                    (FLOOR, [self.floor_stats[stat]])):
                v, s = mean_std(vals)
                out.append(record(
                    method=method, metric=f'mean_{stat}', value=v, std=s,
                    n=len(vals), protocol=f'mean per graph; test set: '
                    f'{self.test_stats[stat]:.4f}',
                    test_value=self.test_stats[stat], **common))
        scale = 1024 / args.num_samples
        timing = (f'wall-clock seconds per 1024 graphs ({args.num_samples} '
                  f'sampled in one call, scaled), torch '
                  f'{torch.__version__}, {torch.get_num_threads()} threads, '
                  f'{machine()} (shared, loaded)')
        for method, key in ((self.method, 'sample_seconds'),
                            (ER, 'er_seconds')):
            v, s = mean_std([r[key] * scale for r in runs])
            out.append(record(method=method, metric='sample_seconds',
                              value=v, std=s, n=n, protocol=timing,
                              **common))
        v, s = mean_std([r['train_seconds'] for r in runs])
        out.append(record(method=self.method, metric='train_seconds',
                          value=v, std=s, n=n, protocol=f'{args.epochs} '
                          f'epochs, batch {args.batch_size}, '
                          f'{torch.get_num_threads()} threads, {machine()} '
                          f'(shared, loaded)', **common))
        return out

    def table(self) -> str:
        r"""The MMD table as text (mean ± std over seeds)."""
        rows = [('MGVAE', 'scores'), (ER, 'er_scores'), (FLOOR, None)]
        width = max(len(m) for m, _ in rows) + 2
        lines = [f'MGVAE = {self.method}; mean ± std over '
                 f'{len(self.runs)} seed(s), {self.args.num_samples} '
                 f'samples vs {len(self.test_graphs)} test graphs '
                 f'({self._overlap()})', '']
        for kernel in self.kernels:
            head = f'{"squared MMD, kernel " + kernel:<{width}}' + ''.join(
                f'{s:>20}' for s in STATISTICS)
            lines.append(head)
            for method, key in rows:
                cells = []
                for stat in STATISTICS:
                    metric = f'{stat}_mmd_{kernel}'
                    if key is None:
                        cells.append(f'{self.floor[metric]:>20.4g}')
                        continue
                    v, s = mean_std([r[key][metric] for r in self.runs])
                    cell = f'{v:.4g}' + ('' if s is None else f' ± {s:.2g}')
                    cells.append(f'{cell:>20}')
                lines.append(f'{method:<{width}}' + ''.join(cells))
            lines.append('')
        head = f'{"graph statistics (mean)":<{width}}' + ''.join(
            f'{s:>12}' for s in ('nodes', 'edges', 'density', 'clustering',
                                 'components', 'isolated'))
        lines.append(head)
        stat_rows = [
            ('MGVAE', [r['stats'] for r in self.runs]),
            (ER, [r['er_stats'] for r in self.runs]),
            (FLOOR.replace(' (floor)', ''), [self.floor_stats]),
            ('test set', [self.test_stats]),
        ]
        for method, stats in stat_rows:
            vals = [np.mean([s[k] for s in stats]) for k in (
                'nodes', 'edges', 'density', 'clustering', 'components',
                'isolated')]
            lines.append(f'{method:<{width}}' + ''.join(
                f'{v:>12.3f}' for v in vals))
        return '\n'.join(lines)

    def finish(self) -> List[Dict[str, Any]]:
        r"""Prints the table, writes the records (replacing this dataset's
        rows in :obj:`--results`), the pictures and a summary JSON."""
        from torch_geometric_mgvae.experiments.plot import (
            plot_curves,
            plot_graph_grid,
        )
        if not self.runs:
            raise RuntimeError('No finished seed: call test() first')
        args = self.args
        self.log('')
        self.log(self.table())
        recs = self.records()
        write_dataset_records(args.results, TASK, args.dataset, recs)
        first = self.runs[0]
        pic = plot_graph_grid(
            {'MGVAE (seed 0)': first['samples'], 'Erdos-Renyi': first['er'],
             'test': self.test_graphs[:8]},
            os.path.join(args.out, 'generated_vs_test.png'),
            title=f'{args.dataset}: {self.method}')
        curve = plot_curves(first['history'],
                            os.path.join(args.out, 'training_curve.png'),
                            keys=[k for k in first['history'][0]
                                  if k != 'epoch'])
        summary = dict(records=recs, histories=[r['history']
                                                for r in self.runs],
                       test_stats=self.test_stats,
                       split_overlap=self.duplicates)
        write_json(os.path.join(args.out, 'summary.json'), summary)
        self.log(f'wrote {args.results}, {pic}, {curve}')
        return recs


def _graphs_to_plain(graphs: Sequence[Data]) -> List[Dict[str, Any]]:
    return [dict(edge_index=g.edge_index, num_nodes=int(g.num_nodes))
            for g in graphs]


def _graphs_from_plain(graphs: Sequence[Dict[str, Any]]) -> List[Data]:
    return [Data(edge_index=g['edge_index'], num_nodes=g['num_nodes'])
            for g in graphs]


def _run_to_plain(run: Dict[str, Any]) -> Dict[str, Any]:
    return dict(run, samples=_graphs_to_plain(run['samples']),
                er=_graphs_to_plain(run['er']))


def _run_from_plain(run: Dict[str, Any]) -> Dict[str, Any]:
    return dict(run, samples=_graphs_from_plain(run['samples']),
                er=_graphs_from_plain(run['er']))


def run(args: argparse.Namespace, command: Optional[str] = None
        ) -> List[Dict[str, Any]]:
    r"""The whole experiment (what :obj:`mgvae generate` runs): every seed
    trained with a progress bar, tested, then :meth:`finish`. Inside a
    :class:`~torch_geometric_mgvae.experiments.state.TrainingSession`: the
    training state is saved every :obj:`--checkpoint-every` epochs and on
    SIGINT/SIGTERM, every finished seed's results are kept in it, and
    :obj:`--resume` continues without redoing finished seeds."""
    from tqdm import tqdm
    args = resolve_args(args)
    with Parallel.from_args(args) as par, \
            TrainingSession.from_args(args) as session:
        exp = GenerationExperiment(args, command, parallel=par)
        exp.runs = [_run_from_plain(r) for r in session.done.get('runs', [])]
        if exp.runs:
            exp.log(f'seeds 0-{len(exp.runs) - 1} finished in the saved run '
                    f'(not repeated)')
        for seed in range(len(exp.runs), args.seeds):
            exp.start_seed(seed)
            resumed = exp.restore(session)
            bar = tqdm(total=args.epochs, initial=len(exp.history),
                       desc=f'seed {seed}',
                       disable=args.no_progress or not par.is_main,
                       file=sys.stdout)

            def step(epoch: int, bar=bar):
                stats = exp.train_epoch()
                bar.update()
                bar.set_postfix(loss=f"{stats['loss']:.1f}",
                                kl=f"{stats['kl']:.1f}")

            session.train(f'seed {seed}', step, args.epochs,
                          exp.training_state, resumed)
            bar.close()
            if par.is_main:  # the others wait at the barrier
                exp.test()
                session.done['runs'] = [_run_to_plain(r) for r in exp.runs]
                session.save()  # this seed is finished: --resume skips it
            par.barrier()
        records = exp.finish() if par.is_main else None
        par.barrier()
        return records
