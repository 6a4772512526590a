r"""Cost of second- vs first-order local encoders per training step.

One MGVAE training step (forward, ``sum(model.loss_terms(out).values())``,
backward) with ``order=1`` (MGNConv local encoders, inner-product decoders)
and ``order=2`` (the Eq. 3 + Maron-basis encoders and S_n decoders on dense
per-cluster blocks; also with Gaussian-MRF posteriors) on

* QM9-sized molecules: a batch of 128 graphs of 9 nodes,
* ZINC-sized molecules: a batch of 128 graphs of 23 nodes,
  (random connected molecule-like graphs: a random tree plus ~10% extra
  ring-closing edges, 4 bond types as edge features, paper D.2 hierarchy
  num_clusters = [4, 2, 1]),
* Cora (2,708 nodes, 1,433 features) with 128 learned clusters at the finest
  level (num_clusters = [128, 16, 1]).

The global decoders are inner products (sampled non-edges on Cora) in every
configuration, so the difference is the local encoders and decoders.

Every configuration runs in its own subprocess; peak memory is the largest
RSS sampled during the steps minus the RSS before them; ``step_seconds`` is
the median wall time of a step, ``cpu_seconds`` the median CPU time of the
process over a step (all threads; steadier than wall time on a loaded
machine).

With ``--before DIR`` every configuration also runs on the package in DIR
(an export of an earlier commit, e.g. ``git archive bfa3f15 | tar -x -C
DIR``), alternating with this checkout's in the same run, and the records
say which is which (``setting``).

    python benchmark/second_order.py [--quick] [--before DIR --before-name NAME]

Writes ``benchmark/results/second_order.json``.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from typing import Optional

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from scale import RssSampler  # noqa: E402

RESULTS = os.path.join(ROOT, 'benchmark', 'results')
SHARED = os.path.join(os.path.dirname(ROOT), 'shared', 'data')
CONFIGS = {
    'first order': dict(order=1),
    'second order': dict(order=2, edge_channels=4),
    'second order + MRF': dict(order=2, edge_channels=4,
                               covariance='mrf'),
}
MB = 2**20


def molecule_batch(num_graphs: int, n: int, seed: int):
    import torch
    from torch_geometric.data import Batch, Data
    g = torch.Generator().manual_seed(seed)
    graphs = []
    for _ in range(num_graphs):
        parent = [int(torch.randint(i, (1, ), generator=g)) for i in
                  range(1, n)]
        edges = {(p, i + 1) for i, p in enumerate(parent)}
        for _ in range(max(1, n // 10)):
            a, b = torch.randint(n, (2, ), generator=g).tolist()
            if a != b:
                edges.add((min(a, b), max(a, b)))
        ei = torch.tensor(sorted(edges)).t()
        bond = torch.nn.functional.one_hot(
            torch.randint(4, (ei.size(1), ), generator=g), 4).float()
        x = torch.nn.functional.one_hot(
            torch.randint(9, (n, ), generator=g), 9).float()
        graphs.append(Data(x=x, edge_index=torch.cat([ei, ei.flip(0)], 1),
                           edge_attr=torch.cat([bond, bond])))
    return Batch.from_data_list(graphs)


def cora():
    import shutil
    import tempfile

    from torch_geometric.datasets import Planetoid
    root = tempfile.mkdtemp()
    shutil.copytree(os.path.join(SHARED, 'cora', 'raw'),
                    os.path.join(root, 'Cora', 'raw'))
    data = Planetoid(root, 'Cora')[0]
    g = torch_generator(0)
    import torch
    data.edge_attr = torch.nn.functional.one_hot(
        torch.zeros(data.edge_index.size(1), dtype=torch.long), 4).float()
    data.batch = torch.zeros(data.num_nodes, dtype=torch.long)
    del g
    return data


def torch_generator(seed):
    import torch
    return torch.Generator().manual_seed(seed)


def make_step(data, clusters, config: str):
    r"""One training step (returning the model's output) of an MGVAE of
    :obj:`config` (hidden 32, latent 16, 2 layers, Adam, seed 0) on
    :obj:`data`. The package is imported here, after :obj:`--root` may have
    put another version first on the path."""
    import torch

    from torch_geometric_mgvae import MGVAE
    kw = dict(CONFIGS[config])
    edge_attr = data.edge_attr if kw.get('order') == 2 else None
    torch.manual_seed(0)
    model = MGVAE(data.num_features, 32, 16, clusters, num_layers=2, **kw)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    gen = torch.Generator().manual_seed(0)

    def step():
        opt.zero_grad()
        out = model(data.x, data.edge_index, batch=data.batch,
                    num_graphs=int(data.batch.max()) + 1,
                    edge_attr=edge_attr, generator=gen)
        loss = sum(model.loss_terms(out, gen).values())
        loss.backward()
        opt.step()
        return out
    return step


def worker(dataset: str, config: str, repeats: int,
           threads: int = 2) -> dict:
    import torch

    import torch_geometric_mgvae
    torch.set_num_threads(threads)
    if dataset == 'Cora':
        data, clusters = cora(), [128, 16, 1]
    else:
        n = 9 if dataset.startswith('QM9') else 23
        data, clusters = molecule_batch(128, n, 0), [4, 2, 1]
    step = make_step(data, clusters, config)

    sampler = RssSampler()
    before = sampler.rss()
    sampler.start()
    out = step()  # warm-up
    times, cpu = [], []
    for _ in range(repeats):
        t0, c0 = time.perf_counter(), time.process_time()
        step()
        times.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    peak = sampler.stop()
    sizes = out[0].select.sizes()
    return dict(step_seconds=statistics.median(times),
                cpu_seconds=statistics.median(cpu),
                package=os.path.dirname(torch_geometric_mgvae.__file__),
                peak_mem_mb=(peak - before) / MB, peak_rss_mb=peak / MB,
                repeats=repeats, max_cluster=int(sizes.max()),
                num_clusters=int(out[0].select.num_clusters),
                num_nodes=int(data.num_nodes))


def run_worker(ds: str, config: str, repeats: int,
               root: Optional[str], threads: int = 2) -> dict:
    cmd = [sys.executable, __file__, '--worker', ds, config,
           '--repeats', str(repeats), '--threads', str(threads)]
    if root:
        cmd += ['--root', root]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        err = proc.stderr.strip().splitlines()[-1:]
        return dict(error=' '.join(err)[:200])
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument('--quick', action='store_true',
                        help='1 repeat, molecules only')
    parser.add_argument('--worker', nargs=2, default=None)
    parser.add_argument('--root', default=None,
                        help='(worker) import the package from this folder')
    parser.add_argument('--repeats', type=int, default=3)
    parser.add_argument('--threads', type=int, default=2,
                        help='torch threads of every worker')
    parser.add_argument('--before', default=None,
                        help='folder holding an earlier version of the '
                        'package to measure in the same run')
    parser.add_argument('--before-name', default='before',
                        help='its name in the records')
    args = parser.parse_args()
    if args.worker:
        if args.root:
            sys.path.insert(0, os.path.abspath(args.root))
        print(json.dumps(worker(*args.worker, args.repeats,
                                args.threads)))
        return
    from torch_geometric_mgvae.experiments.results import (
        record,
        write_records,
    )
    datasets = ['QM9-sized (128 x 9 nodes)', 'ZINC-sized (128 x 23 nodes)']
    if not args.quick:
        datasets.append('Cora')
    repeats = 1 if args.quick else args.repeats
    command = 'python benchmark/second_order.py' + (
        ' --quick' if args.quick else '') + (
        f' --repeats {args.repeats}' if args.repeats != 3 else '') + (
        f' --threads {args.threads}' if args.threads != 2 else '') + (
        f' --before DIR --before-name "{args.before_name}"'
        if args.before else '')
    versions = {'this checkout': None}
    if args.before:
        versions = {args.before_name: args.before, 'after': None}
    results = {}
    for ds in datasets:
        for config in CONFIGS:
            for version, root in versions.items():
                r = run_worker(ds, config, repeats, root, args.threads)
                results[ds, config, version] = r
                print(ds, config, version, r, flush=True)

    records = []
    print(f'\n{"dataset":<30}{"encoder":<22}{"version":<26}{"step s":>9}'
          f'{"cpu s":>8}{"peak MB":>10}{"x time":>8}{"x cpu":>8}'
          f'{"x mem":>8}')
    for ds in datasets:
        for config in CONFIGS:
            for version in versions:
                base = results[ds, 'first order', version]
                r = results[ds, config, version]
                setting = version if args.before else None
                protocol = ('one MGVAE training step (forward + all loss '
                            'terms + backward + Adam), hidden 32, latent 16, '
                            '2 layers, learned clustering num_clusters='
                            f'{[128, 16, 1] if ds == "Cora" else [4, 2, 1]}'
                            f', {CONFIGS[config]}, {args.threads} torch '
                            f'thread(s)')
                extra = {k: r.get(k) for k in ('max_cluster', 'num_clusters',
                                               'num_nodes', 'peak_rss_mb')}
                if setting:
                    extra['setting'] = setting
                method = f'MGVAE ({config})'
                metrics = ('step_seconds', 'cpu_seconds', 'peak_mem_mb')
                if 'error' in r:
                    for metric in metrics:
                        records.append(record(
                            'second_order', ds, method, metric, None,
                            protocol=protocol, command=command,
                            error=r['error'], **extra))
                    continue
                for metric in metrics:
                    records.append(record('second_order', ds, method, metric,
                                          r[metric], n=r['repeats'],
                                          protocol=protocol, command=command,
                                          **extra))
                ratios = {}
                if 'error' not in base:
                    ratios = {
                        'time_ratio_vs_first_order':
                            r['step_seconds'] / base['step_seconds'],
                        'cpu_ratio_vs_first_order':
                            r['cpu_seconds'] / base['cpu_seconds'],
                        'mem_ratio_vs_first_order':
                            r['peak_mem_mb'] / max(base['peak_mem_mb'],
                                                   1e-9)}
                print(f'{ds:<30}{config:<22}{version:<26}'
                      f'{r["step_seconds"]:>9.3f}{r["cpu_seconds"]:>8.3f}'
                      f'{r["peak_mem_mb"]:>10.1f}' + ''.join(
                          f'{v:>8.2f}' for v in ratios.values()))
                if config == 'first order':
                    continue
                for metric, value in ratios.items():
                    records.append(record(
                        'second_order', ds, method, metric, value,
                        protocol=protocol, command=command,
                        **({'setting': setting} if setting else {})))
    path = os.path.join(RESULTS, 'second_order.json')
    write_records(path, records, replace=False)
    print(f'wrote {path}')


if __name__ == '__main__':
    main()
