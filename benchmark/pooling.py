r"""Cost of one pooling layer: MGNPooling beside PyG's pooling layers.

Forward + backward time and peak memory of ONE pooling layer, in the same
run, for

* ``MGNPooling`` (this library): learned Gumbel-max clustering with the
  logits read off the incoming features by a linear map (the default,
  ``num_layers=0``, as TopKPooling scores nodes), and with a 2-layer MGNConv
  GNN of 64 channels before it (``num_layers=2``, the paper's clustering
  network as MGN uses it), weighted-mean readout, Def. 2 coarsening;
  backward of ``x'.sum() + edge_weight'.sum() + cut_loss``,
* PyG ``TopKPooling``, ``SAGPooling``, ``ASAPooling`` (ratio 0.5) and
  ``EdgePooling``: backward of ``x'.sum()`` (plus the coarse edge weights
  where the layer returns them),
* PyG ``dense_diff_pool`` with a linear assignment on the dense batch:
  backward of ``x'.sum() + adj'.sum() + link_loss + ent_loss``,

on two inputs:

* ``zinc``: a batch of 128 ZINC-12k training molecules (the first 128 of
  the 10k split; about 2,970 nodes and 6,400 directed edges), node features
  = the one-hot atom types projected to 64 channels by a fixed random
  matrix; MGNPooling and dense_diff_pool with K = 12 clusters per graph
  (about half the 23 atoms of a molecule, like ratio 0.5);
* ``random``: one random graph of 10^5 nodes and average degree 10 (as
  ``benchmark/scale.py``), 64 random features; MGNPooling with K = 64
  clusters (the learned clustering has N x K logits, so K is the number of
  clusters of a coarse level, not N / 2); dense_diff_pool is refused (one
  dense N x N float32 adjacency needs 37 GiB).

Every (method, input) runs in a fresh subprocess with ONE torch thread, so
that the CPU time of the main thread (``time.thread_time``) is the cost of
the step even on a shared machine; wall-clock time is recorded too. Median
of the timed steps after one warm-up step; peak memory = the largest RSS
sampled during the steps minus the RSS before them.

    python benchmark/pooling.py                 # both inputs (~5 min)
    python benchmark/pooling.py --inputs zinc   # molecules only

Writes ``benchmark/results/pooling.json`` (records) and prints a table with
the ratio of every layer's time to TopKPooling's.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from scale import RssSampler, random_graph  # noqa: E402

RESULTS = os.path.join(ROOT, 'benchmark', 'results', 'pooling.json')
SHARED = os.path.join(ROOT, '..', 'shared', 'data')
METHODS = ('MGNPooling', 'MGNPooling (2-layer GNN select)', 'TopKPooling',
           'SAGPooling', 'ASAPooling', 'EdgePooling', 'dense_diff_pool')
INPUTS = ('zinc', 'random')
CHANNELS = 64
CLUSTERS = {'zinc': 12, 'random': 64}
MB = 2**20


def load_input(name: str, raw: str, seed: int = 0):
    import torch
    g = torch.Generator().manual_seed(seed)
    if name == 'zinc':
        import tempfile

        from torch_geometric.data import Batch

        from torch_geometric_mgvae.datasets import ZINC12k
        root = os.path.join(tempfile.gettempdir(), 'mgvae_zinc12k')
        os.makedirs(os.path.join(root, 'raw'), exist_ok=True)
        for f in ('smiles_score.csv', 'indexes_train_val_test.csv'):
            dst = os.path.join(root, 'raw', f)
            if not os.path.exists(dst):
                import shutil
                shutil.copy(os.path.join(raw, 'zinc12k_benchgnn', f), dst)
        data = ZINC12k(root, split='train')
        batch = Batch.from_data_list([data[i] for i in range(128)])
        proj = torch.randn(batch.x.size(1), CHANNELS, generator=g)
        return (batch.x.float() @ proj, batch.edge_index, batch.batch,
                dict(num_graphs=128, num_nodes=batch.num_nodes,
                     num_edges=batch.num_edges))
    n = 10**5
    _, edge_index = random_graph(n, seed)
    x = torch.randn(n, CHANNELS, generator=g)
    return (x, edge_index, torch.zeros(n, dtype=torch.long),
            dict(num_graphs=1, num_nodes=n, num_edges=edge_index.size(1)))


def make_step(method: str, x, edge_index, batch, K: int):
    import torch
    torch.manual_seed(0)
    if method.startswith('MGNPooling'):
        from torch_geometric_mgvae.nn import MGNPooling
        layers = 2 if 'GNN' in method else 0
        pool = MGNPooling(CHANNELS, K, num_layers=layers).train()

        def step():
            out = pool(x, edge_index, None, batch)
            (out[0].sum() + out[2].sum() + out[5]).backward()
            return out[0].size(0)
        return step
    if method in ('TopKPooling', 'SAGPooling', 'ASAPooling'):
        import torch_geometric.nn as pyg_nn
        pool = getattr(pyg_nn, method)(CHANNELS, ratio=0.5).train()

        def step():
            out = pool(x, edge_index, batch=batch)
            loss = out[0].sum()
            if method == 'ASAPooling' and out[2] is not None:
                loss = loss + out[2].sum()
            loss.backward()
            return out[0].size(0)
        return step
    if method == 'EdgePooling':
        from torch_geometric.nn import EdgePooling
        pool = EdgePooling(CHANNELS).train()

        def step():
            out = pool(x, edge_index, batch)
            out[0].sum().backward()
            return out[0].size(0)
        return step
    from torch_geometric.nn import dense_diff_pool
    from torch_geometric.utils import to_dense_adj, to_dense_batch
    xd, mask = to_dense_batch(x, batch)  # [B, n, F]
    adj = to_dense_adj(edge_index, batch, max_num_nodes=xd.size(1))
    lin = torch.nn.Linear(CHANNELS, K)

    def step():
        xd_, _ = to_dense_batch(x, batch)
        s = lin(xd_)
        out, out_adj, link, ent = dense_diff_pool(xd_, adj, s, mask)
        (out.sum() + out_adj.sum() + link + ent).backward()
        return out.size(0) * out.size(1)
    return step


def worker(args) -> dict:
    import torch
    torch.set_num_threads(args.threads)
    x, edge_index, batch, info = load_input(args.input, args.raw)
    info['threads'] = args.threads
    x = x.detach().requires_grad_()
    K = CLUSTERS[args.input]
    n = info['num_nodes']
    if args.method == 'dense_diff_pool':
        per_graph = int(torch.bincount(batch).max())
        need = 4 * info['num_graphs'] * per_graph**2
        if need > 8 * 2**30:
            info['error'] = (f'refused: one dense adjacency needs '
                             f'{need / 2**30:.0f} GiB of float32')
            return info
    step = make_step(args.method, x, edge_index, batch, K)
    sampler = RssSampler()
    before = sampler.rss()
    sampler.start()
    info['pooled_nodes'] = step()  # warm-up
    times, cpu = [], []
    for _ in range(args.repeats):
        x.grad = None
        t0, c0 = time.perf_counter(), time.thread_time()
        step()
        cpu.append(time.thread_time() - c0)
        times.append(time.perf_counter() - t0)
    peak = sampler.stop()
    info.update(step_seconds=statistics.median(times),
                step_seconds_all=times, repeats=args.repeats,
                cpu_seconds=statistics.median(cpu), cpu_seconds_all=cpu,
                load_avg_1min=os.getloadavg()[0],
                peak_mem_mb=(peak - before) / MB, clusters_per_graph=K
                if args.method in ('MGNPooling', 'dense_diff_pool') else None,
                input_nodes=n)
    return info


def launch(method: str, name: str, args) -> dict:
    cmd = [sys.executable, os.path.abspath(__file__), '--worker', method,
           '--input', name, '--repeats', str(args.repeats), '--threads',
           str(args.threads), '--raw', args.raw]
    env = dict(os.environ, OMP_WAIT_POLICY='PASSIVE')
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    lines = [line for line in proc.stdout.splitlines()
             if line.startswith('{')]
    if proc.returncode != 0 or not lines:
        tail = (proc.stderr.strip().splitlines() or ['?'])[-1]
        return dict(error=f'failed (exit {proc.returncode}): {tail}')
    return json.loads(lines[-1])


def to_records(results):
    from torch_geometric_mgvae.experiments.results import (
        current_command,
        record,
    )
    command = current_command()
    records = []
    for (name, method), r in results.items():
        dataset = ('ZINC-12k, 128 training molecules' if name == 'zinc' else
                   'random avg-degree-10 graph, 100000 nodes')
        protocol = (f'one pooling layer, forward + backward, 64 input '
                    f'channels; {r.get("repeats", "?")} timed steps after '
                    f'1 warm-up (median); fresh process; '
                    f'{r.get("threads", 1)} torch thread(s); cpu_seconds = '
                    f'CPU time of the main thread, step_seconds = wall '
                    f'clock')
        extra_load = {'load_avg_1min': round(r['load_avg_1min'], 2)} \
            if 'load_avg_1min' in r else {}
        extra = {k: r[k] for k in ('num_nodes', 'num_edges', 'num_graphs',
                                   'pooled_nodes', 'clusters_per_graph')
                 if r.get(k) is not None}
        for metric in ('cpu_seconds', 'step_seconds', 'peak_mem_mb'):
            value = r.get(metric)
            more = dict(extra_load)
            if metric != 'peak_mem_mb' and value is not None:
                more[f'{metric}_all'] = [round(t, 5)
                                         for t in r[f'{metric}_all']]
            records.append(record('pooling', dataset, method, metric, value,
                                  n=r.get('repeats'), protocol=protocol,
                                  command=command, error=r.get('error'),
                                  **extra, **more))
    return records


def print_table(results):
    print(f'{"input":<8}{"method":<33}{"CPU ms":>10}{"x TopK":>9}'
          f'{"wall ms":>10}{"peak MB":>10}{"pooled nodes":>14}')
    for name in INPUTS:
        topk = results.get((name, 'TopKPooling'), {}).get('cpu_seconds')
        for method in METHODS:
            r = results.get((name, method))
            if r is None:
                continue
            if r.get('error'):
                print(f'{name:<8}{method:<33}  {r["error"]}')
                continue
            t = r['cpu_seconds']
            ratio = f'{t / topk:.2f}' if topk else '-'
            print(f'{name:<8}{method:<33}{1e3 * t:>10.2f}{ratio:>9}'
                  f'{1e3 * r["step_seconds"]:>10.2f}'
                  f'{r["peak_mem_mb"]:>10.1f}{r["pooled_nodes"]:>14}')


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--inputs', nargs='+', default=list(INPUTS),
                        choices=INPUTS)
    parser.add_argument('--methods', nargs='+', default=list(METHODS),
                        choices=METHODS)
    parser.add_argument('--repeats', type=int, default=None,
                        help='timed steps (default: 20 for zinc, 5 for '
                        'random)')
    parser.add_argument('--threads', type=int, default=1)
    parser.add_argument('--raw', default=SHARED,
                        help='folder holding zinc12k_benchgnn/')
    parser.add_argument('--results', default=RESULTS,
                        help='records file (default: '
                        'benchmark/results/pooling.json)')
    parser.add_argument('--worker', default=None, help=argparse.SUPPRESS)
    parser.add_argument('--input', default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        args.method = args.worker
        print(json.dumps(worker(args)))
        return
    from torch_geometric_mgvae.experiments.results import write_records
    results = {}
    for name in args.inputs:
        repeats = args.repeats or (20 if name == 'zinc' else 5)
        for method in args.methods:
            a = argparse.Namespace(**vars(args))
            a.repeats = repeats
            t0 = time.time()
            results[(name, method)] = launch(method, name, a)
            print(f'{name} {method}: done in {time.time() - t0:.0f} s',
                  file=sys.stderr)
    print_table(results)
    write_records(args.results, to_records(results))
    print(f'wrote {os.path.relpath(args.results)}')


if __name__ == '__main__':
    main()
