r"""How much do the learned clusters matter for link prediction?

Trains the MGVAE link predictor of ``mgvae link-pred`` (learned clustering,
L = 3 levels, the driver's defaults) on the training graph of each seed's
``RandomLinkSplit``, keeps the epoch with the best validation AUC, and then
scores the *same* weights on the test edges with the clusters of every level
replaced at evaluation time:

* ``own``: the model's own evaluation-mode clusters (what
  ``mgvae link-pred`` reports),
* ``random balanced``: every level's nodes dealt into its K clusters at
  random (sizes differ by at most one),
* ``spectral``: the spectral hierarchy of the training graph (paper D.1),
* ``finest latent only``: its own clusters, with every part of the node
  embedding beyond the finest latent (co-membership rows, coarse latents)
  set to zero (the pair score keeps only the finest level's inner product).

If the AUC barely moves, the coarse levels carry (almost) nothing the score
uses, whatever the clustering. Also reports the same on the validation
edges and the KL to uniform of the finest level's cluster sizes. Driver
options after the benchmark's own (e.g. ``--no-comembership``,
``--levels 7``) change the trained model; ``--variant spectral`` trains the
model on the fixed spectral hierarchy of the training graph instead (its
``own`` clusters are then that hierarchy).

    python benchmark/link_cluster_dependence.py --dataset Cora --seeds 5

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
MODES = lp.DEPENDENCE_MODES


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--dataset', default='Cora', choices=lp.DATASETS)
    parser.add_argument('--seeds', type=int, default=3)
    parser.add_argument('--epochs', type=int, default=300)
    parser.add_argument('--raw', default=os.path.join(ROOT, '..', 'shared',
                                                      'data'))
    parser.add_argument('--root', default=os.path.join(ROOT, 'data'))
    parser.add_argument('--results', default=RESULTS)
    parser.add_argument('--variant', default='learned',
                        choices=lp.VARIANTS,
                        help='clustering the model is trained with (a fixed '
                        'one is computed on the training graph)')
    args, extra = parser.parse_known_args(argv)
    command = current_command()
    lp_parser = argparse.ArgumentParser()
    lp.add_arguments(lp_parser)
    # The driver's defaults (the README's configuration); further driver
    # options (e.g. --no-comembership) pass through.
    opts = lp.resolve_args(lp_parser.parse_args([
        '--dataset', args.dataset, '--raw', args.raw, '--root', args.root,
        '--variants', args.variant, '--epochs', str(args.epochs)] + extra))
    L = opts.levels[0]
    if L == 0:
        parser.error('the dependence on clusters needs --levels 3 or 7')
    torch.set_num_threads(opts.threads)
    data = lp.load_dataset(args.dataset, opts.root, opts.raw)
    K = lp.clusters_per_level(L)
    rows = {m: [] for m in MODES}
    val_rows = {m: [] for m in MODES}
    for seed in range(args.seeds):
        train, val, test = lp.split_edges(data, seed)
        seed_everything(seed)
        clusters = lp.level_clusters(train, args.variant, K, seed)
        model = lp.MGVAELinkModel(data.num_features, K, args.variant, opts,
                                  clusters)
        t0 = time.perf_counter()
        res = lp.train_model(model, train, val, test, args.epochs, opts.lr,
                             opts.eval_every)
        dep = lp.cluster_dependence(model, train, test, seed)
        vdep = lp.cluster_dependence(model, train, val, seed)
        for mode in MODES:
            rows[mode].append(dep[mode])
            val_rows[mode].append(vdep[mode])
            print(f'{args.dataset} seed {seed} {mode:>18}: test AUC '
                  f'{dep[mode]["auc"]:.4f} AP {dep[mode]["ap"]:.4f} '
                  f'(val AUC {vdep[mode]["auc"]:.4f}) finest KL '
                  f'{dep[mode]["kl"]:.3f}', flush=True)
        print(f'  (driver test AUC {res["auc"]:.4f}, trained in '
              f'{time.perf_counter() - t0:.0f}s)', flush=True)
    method = lp.method_name(args.variant, L)
    protocol = (f'{lp.PROTOCOL}; MGVAE {args.variant} clustering, L={L}, '
                f'trained {args.epochs} epochs with validation-AUC '
                'selection (the '
                'driver\'s defaults' + (f' and {" ".join(extra)}' if extra
                                         else '') + '), then the clusters '
                'replaced at evaluation only; val_AUC: the same on the '
                'validation edges')
    recs = []
    for mode, rs in rows.items():
        for key, metric, src in (('auc', 'AUC', rs), ('ap', 'AP', rs),
                                 ('auc', 'val_AUC', val_rows[mode]),
                                 ('kl', 'finest_cluster_kl', rs)):
            mean, std = mean_std([r[key] for r in src])
            recs.append(record(TASK, args.dataset, method, metric, mean, std,
                               n=len(rs), protocol=protocol, command=command,
                               setting=f'eval clusters: {mode}'))
    # The rows of other depths (another method name) stay beside these.
    write_dataset_records(args.results, TASK, args.dataset, recs,
                          same_run=lambda r: r.get('method') == method)
    print('\n| eval clusters | test AUC (%) | test AP (%) | val AUC (%) | '
          'finest KL |')
    print('|---|---|---|---|---|')
    for mode, rs in rows.items():
        a = mean_std([r['auc'] for r in rs])
        p = mean_std([r['ap'] for r in rs])
        v = mean_std([r['auc'] for r in val_rows[mode]])
        k = mean_std([r['kl'] for r in rs])
        print(f'| {mode} | {100 * a[0]:.2f} ± {100 * (a[1] or 0):.2f} | '
              f'{100 * p[0]:.2f} ± {100 * (p[1] or 0):.2f} | '
              f'{100 * v[0]:.2f} | {k[0]:.3f} |')
    gap = [o['auc'] - r['auc'] for o, r in zip(rows['own'],
                                                rows['random balanced'])]
    print(f'own - random balanced: {100 * mean_std(gap)[0]:+.2f} AUC points '
          f'(per seed: ' + ', '.join(f'{100 * g:+.2f}' for g in gap) + ')')
    print(f'wrote {args.results}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
