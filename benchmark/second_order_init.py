r"""Numerics of second-order MGVAEs at initialisation (issue 17, item 1).

An ``order=2`` MGVAE is built, run once in training mode and trained for 40
Adam steps on one fixed batch, with the normalised second-order layers
(``normalize_second_order=True``, the default) and with the earlier,
unnormalised ones (``False``):

* networkx's karate club (34 nodes, one graph; node features the one-hot
  degree capped at 9), ``MGVAE(10, 32, 16, [4, 2, 1], order=2)``,
  diagonal and Gaussian-MRF posteriors;
* 4 ZINC-12k training molecules (seed 0; the 24 RDKit atom features of the
  paper's Table 7), the all-at-once ``MoleculeMGVAE`` of
  ``mgvae molecules --dataset zinc`` with its defaults (hidden 64, latent
  16, clusters 2,1, Gaussian-MRF posterior, learnable prior).

Recorded: the KL term of the ELBO per graph (summed over levels, nodes and
channels) before any step, the same divided by nodes x latent channels
(the number of latent scalars; a KL of order one per scalar is the target),
the largest |mu|, the largest log standard deviation (diagonal posteriors)
or log of the largest diagonal entry of L (MRF), how many log standard
deviations sit at the clamp of 10, and the smallest, largest and last KL over
the 40 steps.

    python benchmark/second_order_init.py

Writes ``benchmark/results/second_order_init.json``.
"""
import argparse
import math
import os
import sys

import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from torch_geometric_mgvae.experiments.results import (  # noqa: E402
    record,
    write_records,
)

RESULTS = os.path.join(ROOT, 'benchmark', 'results')
SHARED = os.path.join(os.path.dirname(ROOT), 'shared', 'data')
COMMAND = 'python benchmark/second_order_init.py'
STEPS = 40


def karate():
    import networkx as nx
    from torch_geometric.data import Batch
    from torch_geometric.utils import degree, from_networkx
    data = from_networkx(nx.karate_club_graph())
    deg = degree(data.edge_index[0], data.num_nodes).long().clamp(max=9)
    data.x = torch.nn.functional.one_hot(deg, 10).float()
    for key in ('club', 'weight', 'name'):
        if key in data:
            del data[key]
    return Batch.from_data_list([data])


def zinc(root: str):
    from torch_geometric.data import Batch

    from torch_geometric_mgvae.experiments.molecules import load_splits
    train, test, _ = load_splits(
        'zinc', root, 4, seed=0, chem_features=True,
        data=os.path.join(SHARED, 'zinc12k_benchgnn'))
    max_nodes = max(int(g.num_nodes) for g in train + test)
    batch = Batch.from_data_list(train)
    return batch, max_nodes


def build(dataset, covariance, normalize, batch, max_nodes):
    from torch_geometric_mgvae import MGVAE
    from torch_geometric_mgvae.experiments.molecules import (
        DATASETS,
        model_kwargs,
        parse_args,
    )
    from torch_geometric_mgvae.models.molecule import MoleculeMGVAE
    torch.manual_seed(0)
    if dataset == 'karate':
        return MGVAE(batch.num_features, 32, 16, [4, 2, 1], order=2,
                     covariance=covariance,
                     normalize_second_order=normalize)
    args = parse_args(['--dataset', 'zinc', '--covariance', covariance])
    kw = model_kwargs(args, len(DATASETS['zinc']['atoms']),
                      batch.num_features, max_nodes)
    return MoleculeMGVAE(**kw, normalize_second_order=normalize)


def run_model(model, batch, gen):
    if hasattr(model, 'decode_molecule'):
        return model(batch, generator=gen)
    kw = {}
    if model.uses_edge_attr:
        kw['edge_attr'] = batch.edge_attr
    return model(batch.x, batch.edge_index, batch=batch.batch,
                 num_graphs=batch.num_graphs, generator=gen, **kw)


def measure(dataset, covariance, normalize, batch, max_nodes):
    from torch_geometric_mgvae.models.mgvae import MAX_LOGSTD
    model = build(dataset, covariance, normalize, batch, max_nodes)
    if model.prior is not None:
        model.fit_num_nodes([batch])
    model.train()
    gen = torch.Generator().manual_seed(0)
    scales = []  # the MRF heads' log-scales s (before their clamp)
    hooks = [head.lin_logstd.register_forward_hook(
        lambda m, i, o: scales.append(o.detach()))
        for head in (model.mrf_heads or []) if head.lin_logstd is not None]
    out = run_model(model, batch, gen)
    for h in hooks:
        h.remove()
    kl = float(model.multires_kl_loss(out).detach())
    scalars = sum(lvl.num_nodes for lvl in out.levels) / batch.num_graphs \
        * model.latent_channels
    mu = max(float(lvl.mu.abs().max()) for lvl in out.levels)
    if covariance == 'diag':
        top = max(float(lvl.logstd.max()) for lvl in out.levels)
        clamped = sum(int((lvl.logstd >= MAX_LOGSTD - 1e-6).sum())
                      for lvl in out.levels)
    else:
        top = max(float(lvl.L.diagonal(dim1=1, dim2=2).abs().max().log())
                  for lvl in out.levels)
        clamped = sum(int((s >= MAX_LOGSTD).sum()) for s in scales)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    kls = []
    for _ in range(STEPS):
        opt.zero_grad()
        out = run_model(model, batch, gen)
        terms = model.loss_terms(out, gen)
        kls.append(float(terms['kl']))
        loss = sum(terms.values())
        if not math.isfinite(float(loss)):
            break
        loss.backward()
        opt.step()
    return dict(kl_init=kl, kl_per_latent_scalar=kl / scalars,
                max_abs_mu=mu, max_log_scale=top, clamped=clamped,
                kl_steps_min=min(kls), kl_steps_max=max(kls),
                kl_steps_last=kls[-1], steps=len(kls))


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument('--root', default=os.path.join('data', 'zinc'),
                        help='ZINC-12k dataset folder (processed once)')
    args = parser.parse_args()
    torch.set_num_threads(2)
    data = {'karate': (karate(), None)}
    data['ZINC-12k (4 molecules)'] = zinc(args.root)
    records = []
    for name, (batch, max_nodes) in data.items():
        key = 'karate' if name == 'karate' else 'zinc'
        for covariance in ('diag', 'mrf'):
            for normalize in (False, True):
                r = measure(key, covariance, normalize, batch, max_nodes)
                setting = (f'{covariance} posterior, '
                           f'normalize_second_order={normalize}')
                print(name, setting, r, flush=True)
                method = ('MGVAE (order 2)' if key == 'karate' else
                          'MoleculeMGVAE (all-at-once)')
                protocol = (f'one forward in training mode at '
                            f'initialisation (torch.manual_seed(0)), then '
                            f'{STEPS} Adam steps (lr 1e-3) on the same '
                            f'batch; KL per graph summed over levels')
                for metric, value in r.items():
                    if metric == 'steps':
                        continue
                    records.append(record(
                        'second_order_init', name, method, metric, value,
                        setting=setting, protocol=protocol, command=COMMAND,
                        steps=r['steps']))
    path = os.path.join(RESULTS, 'second_order_init.json')
    write_records(path, records, replace=False)
    print(f'wrote {path}')


if __name__ == '__main__':
    main()
