r"""How much do the learned clusters matter for link prediction?

Trains the MGVAE link predictor of ``mgvae link-pred`` (learned clustering,
L = 7 levels, the driver's defaults) on the training graph of each seed's
``RandomLinkSplit``, keeps the epoch with the best validation AUC, and then
scores the *same* weights on the test edges with the clusters of every level
replaced at evaluation time:

* ``argmax``: the model's own evaluation-mode clusters (what
  ``mgvae link-pred`` reports),
* ``random balanced``: every level's nodes dealt into its K clusters at
  random (sizes differ by at most one),
* ``spectral``: the spectral hierarchy of the training graph (paper D.1),
* ``finest latent only``: the coarse-level parts of the hierarchical node
  embedding set to zero (the pair score keeps only the finest level's inner
  product).

If the AUC barely moves, the coarse levels carry (almost) nothing the score
uses, whatever the clustering. Also reports the mean norm of each level's
part of the node embedding and the balanced-cut KL of the finest level.

    python benchmark/link_cluster_dependence.py --dataset Cora --seeds 3

Writes ``benchmark/results/link_cluster_dependence.json`` (record format).
"""
import argparse
import os
import sys
import time

os.environ.setdefault('OMP_WAIT_POLICY', 'PASSIVE')

import torch  # noqa: E402
from torch_geometric import seed_everything  # noqa: E402

from torch_geometric_mgvae.experiments import link_prediction as lp  # noqa: E402
from torch_geometric_mgvae.experiments.results import (  # noqa: E402
    current_command,
    mean_std,
    record,
    write_dataset_records,
)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RESULTS = os.path.join(ROOT, 'benchmark', 'results',
                       'link_cluster_dependence.json')
TASK = 'link_prediction_cluster_dependence'
MODES = ('argmax', 'random balanced', 'spectral', 'finest latent only')


def random_balanced(num_clusters, num_nodes, generator):
    r"""Random balanced clusters of every level: level :obj:`i` holds
    :obj:`num_nodes` nodes for :obj:`i = 0`, else the clusters of level
    :obj:`i - 1`."""
    out, n = [], num_nodes
    for K in num_clusters:
        out.append(torch.randperm(n, generator=generator) % K)
        n = K
    return out


@torch.no_grad()
def test_scores(model, train, test, clusters=None, finest_only=False):
    model.clusters = clusters
    model.eval()
    out = model(train)
    z = model.mgvae.decoding_latents(out, 0)
    d = out[0].z.size(-1)
    if finest_only:
        z = torch.cat([z[:, :d], torch.zeros_like(z[:, d:])], dim=-1)
    pos, neg = test.pos_edge_label_index, test.neg_edge_label_index
    auc, ap = model.mgvae.test(z, pos, neg)
    norms = z.view(z.size(0), -1, d).norm(dim=-1).mean(0)
    finest = out[0].select.local
    return auc, ap, norms, finest


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--dataset', default='Cora', choices=lp.DATASETS)
    parser.add_argument('--seeds', type=int, default=3)
    parser.add_argument('--epochs', type=int, default=300)
    parser.add_argument('--raw', default=os.path.join(ROOT, '..', 'shared',
                                                      'data'))
    parser.add_argument('--root', default=os.path.join(ROOT, 'data'))
    parser.add_argument('--results', default=RESULTS)
    args = parser.parse_args(argv)
    command = current_command()
    lp_parser = argparse.ArgumentParser()
    lp.add_arguments(lp_parser)
    opts = lp.resolve_args(lp_parser.parse_args([
        '--dataset', args.dataset, '--raw', args.raw, '--root', args.root,
        '--levels', '7', '--variants', 'learned', '--cluster-balance', '10',
        '--epochs', str(args.epochs), '--eval-every', '10']))
    torch.set_num_threads(max(1, min(torch.get_num_threads(), 4)))
    data = lp.load_dataset(args.dataset, opts.root, opts.raw)
    K = lp.clusters_per_level(7)
    rows = {m: [] for m in MODES}
    for seed in range(args.seeds):
        train, val, test = lp.split_edges(data, seed)
        seed_everything(seed)
        model = lp.MGVAELinkModel(data.num_features, K, 'learned', opts)
        t0 = time.perf_counter()
        res = lp.train_model(model, train, val, test, args.epochs, opts.lr,
                             opts.eval_every)
        g = torch.Generator().manual_seed(seed)
        substitutes = {
            'argmax': dict(clusters=None),
            'random balanced': dict(clusters=random_balanced(
                K, data.num_nodes, g)),
            'spectral': dict(clusters=lp.level_clusters(
                train, 'spectral', K, seed)),
            'finest latent only': dict(clusters=None, finest_only=True),
        }
        for mode, kw in substitutes.items():
            auc, ap, norms, finest = test_scores(model, train, test, **kw)
            stats = lp.cluster_size_stats(finest, K[0])
            rows[mode].append(dict(auc=auc, ap=ap, kl=stats['cluster_kl'],
                                   norms=norms.tolist()))
            print(f'{args.dataset} seed {seed} {mode:>18}: test AUC '
                  f'{auc:.4f} AP {ap:.4f} finest KL '
                  f'{stats["cluster_kl"]:.3f} level norms '
                  + ' '.join(f'{v:.3f}' for v in norms.tolist()),
                  flush=True)
        print(f'  (driver test AUC {res["auc"]:.4f}, trained in '
              f'{time.perf_counter() - t0:.0f}s)', flush=True)
    protocol = (f'{lp.PROTOCOL}; MGVAE learned clustering, L=7, trained '
                f'{args.epochs} epochs with validation-AUC selection, then '
                'the clusters replaced at evaluation only')
    recs = []
    for mode, rs in rows.items():
        for key, metric in (('auc', 'AUC'), ('ap', 'AP'),
                            ('kl', 'finest_cluster_kl')):
            mean, std = mean_std([r[key] for r in rs])
            recs.append(record(TASK, args.dataset, 'MGVAE (learned, L=7)',
                               metric, mean, std, n=len(rs),
                               protocol=protocol, command=command,
                               setting=f'eval clusters: {mode}'))
        norms = torch.tensor([r['norms'] for r in rs]).mean(0).tolist()
        recs.append(record(TASK, args.dataset, 'MGVAE (learned, L=7)',
                           'level_norms', norms[0], None, n=len(rs),
                           protocol=protocol + '; value: finest level; '
                           'per_level: mean norm of each level\'s part of '
                           'the node embedding, finest first',
                           command=command,
                           setting=f'eval clusters: {mode}',
                           per_level=norms))
    write_dataset_records(args.results, TASK, args.dataset, recs)
    print('\n| eval clusters | test AUC (%) | test AP (%) | finest KL |')
    print('|---|---|---|---|')
    for mode, rs in rows.items():
        a = mean_std([r['auc'] for r in rs])
        p = mean_std([r['ap'] for r in rs])
        k = mean_std([r['kl'] for r in rs])
        print(f'| {mode} | {100 * a[0]:.2f} ± {100 * (a[1] or 0):.2f} | '
              f'{100 * p[0]:.2f} ± {100 * (p[1] or 0):.2f} | {k[0]:.3f} |')
    print(f'wrote {args.results}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
