r"""Scaling of one training step with the number of nodes.

Forward + backward time and peak memory of ONE training step on random sparse
graphs of average degree ~10 (N nodes, ~5N undirected edges stored in both
directions), from 10^3 to 10^6 nodes, for

* ``MGVAE`` (this library): ``loss = sum(model.loss_terms(out).values())``,
* PyG ``VGAE`` with the GCN encoder of PyG's ``examples/autoencoder.py``:
  ``recon_loss(z, pos_edge_index) + (1 / N) * kl_loss()``,
* PyG ``dense_diff_pool`` with a ``DenseGCNConv`` assignment network on the
  dense adjacency ``[1, N, N]`` (expected to run out of memory at a few 10^4
  nodes).

Every (method, size) runs in a fresh subprocess with ``RLIMIT_AS`` set (so
the machine never meets the OOM killer) and 2 torch threads. Peak memory is
the largest RSS sampled by a background thread (``/proc/self/statm`` every
few ms) during the warm-up and timed steps, minus the RSS just before the
first step; the absolute peak RSS is recorded too.

    python benchmark/scale.py                       # full run (~15-20 min)
    python benchmark/scale.py --sizes 1e3 1e4       # quick check

Writes ``benchmark/results/scale.{json,csv,png}``.

Mini-batched training of one graph larger than one step's memory
(:mod:`torch_geometric_mgvae.loader`): ``--minibatch N`` generates a random
graph of N nodes and ~10 N directed edges in chunks straight into CSR form,
partitions it once (:func:`~torch_geometric_mgvae.loader.
smoothed_bisection_partition`) and trains MGVAE for one epoch over
subgraphs of one part each, with their cut edges
(:class:`~torch_geometric_mgvae.loader.PartitionLoader`), reporting the
epoch time and the peak RSS of the whole process; the full-batch step it
replaces is extrapolated from the table above. ``--sbm`` compares the
link-prediction AUC of held-out edges after full-batch and mini-batched
training on a stochastic block model graph (10^5 nodes). The first adds
rows to ``scale.json`` (the CSV and the picture are the table's), the
second writes ``scale_sbm.json``::

    python benchmark/scale.py --minibatch 1e7 --nodes-per-part 1e5
    python benchmark/scale.py --sbm
"""
import argparse
import gc
import json
import math
import os
import resource
import statistics
import subprocess
import sys
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)  # this checkout's package, in workers too
RESULTS = os.path.join(ROOT, 'benchmark', 'results')
METHODS = ('MGVAE', 'MGVAE (all decoders sampled)', 'PyG VGAE',
           'PyG dense_diff_pool')
SHORT = {'mgvae': 'MGVAE', 'mgvae-sampled': 'MGVAE (all decoders sampled)',
         'vgae': 'PyG VGAE', 'diffpool': 'PyG dense_diff_pool'}
PROTOCOLS = {
    'MGVAE': ('one training step = forward + sum(model.loss_terms(out)'
              '.values()) + backward; MGVAE(16, 32, 16, num_clusters={K}, '
              'global_decoder=True), learned clustering, default '
              'max_dense_pairs=2**18 (decoders over larger blocks use '
              'sampled non-edges); {threads} torch threads; median of {n} '
              'steps after 1 warm-up step'),
    'MGVAE (all decoders sampled)': (
        'as MGVAE but max_dense_pairs=0: every decoder uses the edges plus '
        'as many sampled non-edges (like VGAE) instead of the exact dense '
        'likelihood of small blocks; {threads} torch threads; median of {n} '
        'steps after 1 warm-up step'),
    'PyG VGAE': ('one training step = encode + recon_loss(z, '
                 'pos_edge_index) (PyG negative_sampling) + (1/N) * kl_loss() '
                 '+ backward; VGAE with the GCN encoder of PyG '
                 'examples/autoencoder.py (GCNConv 16->32, mu/logstd GCNConv '
                 '32->16), positives = the undirected edges once; {threads} '
                 'torch threads; median of {n} steps after 1 warm-up step'),
    'PyG dense_diff_pool': ('one training step = s = DenseGCNConv(16, 64)'
                            '(x, adj) on the dense adjacency [1, N, N], '
                            'dense_diff_pool(x, adj, s), backward of '
                            'out.sum() + link_loss + ent_loss; {threads} '
                            'torch threads; median of {n} steps after 1 '
                            'warm-up step'),
}
MB = 2**20


def parse_size(s: str) -> int:
    return int(float(s))


def default_repeats(n: int) -> int:
    if n <= 10**4:
        return 5
    if n <= 10**5:
        return 3
    return 2


# Worker (one method at one size, in its own process) #########################


class RssSampler(threading.Thread):
    r"""Samples the resident set size of this process every
    :obj:`interval` seconds and keeps the maximum."""
    def __init__(self, interval: float = 0.002):
        super().__init__(daemon=True)
        self.interval = interval
        self.page = os.sysconf('SC_PAGE_SIZE')
        self.fd = os.open('/proc/self/statm', os.O_RDONLY)
        self.peak = self.rss()
        self.running = True

    def rss(self) -> int:
        return int(os.pread(self.fd, 128, 0).split()[1]) * self.page

    def run(self):
        while self.running:
            r = self.rss()
            if r > self.peak:
                self.peak = r
            time.sleep(self.interval)

    def stop(self) -> int:
        self.running = False
        self.join()
        self.peak = max(self.peak, self.rss())
        return self.peak


def random_graph(n: int, seed: int):
    r"""A random graph with ~5n undirected edges (average degree ~10),
    stored in both directions, no self loops, no duplicates."""
    import torch
    from torch_geometric.utils import to_undirected
    g = torch.Generator().manual_seed(seed)
    m = 5 * n
    row = torch.randint(n, (m, ), generator=g)
    col = torch.randint(n, (m, ), generator=g)
    keep = row != col
    edge_index = to_undirected(torch.stack([row[keep], col[keep]]),
                               num_nodes=n)
    x = torch.randn(n, 16, generator=g)
    return x, edge_index


def decoder_modes(model, out) -> list:
    r"""For every decoder: dense exact likelihood or sampled non-edges
    (the rule of :func:`pair_recon_loss`: groups * m^2 > max_dense_pairs)."""
    import torch
    modes = []
    for i, lvl in enumerate(out.levels):
        groups = []
        if lvl.select is not None:
            groups.append(('local', lvl.select.cluster_index,
                           lvl.select.num_clusters))
        groups.append(('global', lvl.batch, lvl.num_graphs))
        for name, group, G in groups:
            m = int(torch.bincount(group, minlength=G).max())
            limit = model.recon_kwargs['max_dense_pairs']
            mode = 'dense' if G * m * m <= limit else \
                'sampled'
            modes.append(f'level {i} {name}: {mode} (N={lvl.num_nodes}, '
                         f'E={lvl.edge_index.size(1)}, {G} groups, '
                         f'largest {m})')
    return modes


def worker(args) -> dict:
    import torch
    torch.set_num_threads(args.threads)
    method = SHORT[args.method]
    n = args.num_nodes
    x, edge_index = random_graph(n, args.seed)
    E = edge_index.size(1)
    info = dict(method=method, num_nodes=n, num_edges=E)
    torch.manual_seed(args.seed)

    if method.startswith('MGVAE'):
        from torch_geometric_mgvae import MGVAE
        kwargs = dict(recon_kwargs=dict(max_dense_pairs=0)) \
            if 'sampled' in method else {}
        model = MGVAE(16, 32, 16, num_clusters=args.num_clusters, **kwargs)
        model.train()

        def step():
            out = model(x, edge_index)
            loss = sum(model.loss_terms(out).values())
            loss.backward()
            return out
    elif method == 'PyG VGAE':
        from torch_geometric.nn import VGAE

        from torch_geometric_mgvae.experiments.link_prediction import (
            VariationalGCNEncoder,
        )
        model = VGAE(VariationalGCNEncoder(16, 16))
        model.train()
        pos_edge_index = edge_index[:, edge_index[0] < edge_index[1]]

        def step():
            z = model.encode(x, edge_index)
            loss = model.recon_loss(z, pos_edge_index)
            loss = loss + (1 / n) * model.kl_loss()
            loss.backward()
    else:
        from torch_geometric.nn import DenseGCNConv, dense_diff_pool
        from torch_geometric.utils import to_dense_adj
        need = 4 * n * n  # one dense float32 N x N tensor
        if need > args.mem_limit:
            info['error'] = (f'OOM (refused: one dense N x N float32 tensor '
                             f'needs {need / 2**30:.1f} GiB > the '
                             f'{args.mem_limit / 2**30:.1f} GiB address-space '
                             f'limit)')
            return info
        model = DenseGCNConv(16, 64)
        adj = to_dense_adj(edge_index, max_num_nodes=n)  # [1, N, N]
        xd = x.unsqueeze(0)  # [1, N, 16]

        def step():
            s = model(xd, adj)  # [1, N, K]
            out, out_adj, link_loss, ent_loss = dense_diff_pool(xd, adj, s)
            loss = out.sum() + link_loss + ent_loss
            loss.backward()

    params = list(model.parameters())
    gc.collect()
    sampler = RssSampler(args.interval)
    base = sampler.rss()
    sampler.start()
    times = []
    repeats = args.repeats
    try:
        k = 0
        while k < 1 + repeats:
            for p in params:
                p.grad = None
            t0 = time.perf_counter()
            res = step()
            dt = time.perf_counter() - t0
            if k > 0:
                times.append(dt)
            else:  # keep slow runs within the time budget
                repeats = min(repeats, max(1, int(args.time_budget // dt)))
            if k == 0 and method.startswith('MGVAE'):
                info['decoders'] = decoder_modes(model, res)
            res = None
            gc.collect()
            k += 1
    except (MemoryError, RuntimeError) as e:
        peak = sampler.stop()
        msg = str(e).strip().splitlines()[0][:200]
        if isinstance(e, MemoryError) or 'alloc' in msg.lower() or \
                'memory' in msg.lower():
            info['error'] = (f'OOM at N={n} under a '
                             f'{args.mem_limit / 2**30:.1f} GiB address-space'
                             f' limit after reaching {peak / MB:.0f} MB RSS: '
                             f'{type(e).__name__}: {msg}')
            return info
        raise
    peak = sampler.stop()
    info.update(step_seconds=statistics.median(times),
                step_seconds_all=times, n=len(times),
                baseline_rss_mb=base / MB, peak_rss_mb=peak / MB,
                peak_mem_mb=(peak - base) / MB,
                ru_maxrss_mb=resource.getrusage(
                    resource.RUSAGE_SELF).ru_maxrss / 1024)
    if method == 'PyG VGAE':
        # How much of the step is PyG's (Python-level) negative sampling:
        from torch_geometric.utils import (
            add_self_loops,
            negative_sampling,
            remove_self_loops,
        )
        pos, _ = remove_self_loops(pos_edge_index)
        pos, _ = add_self_loops(pos)
        t0 = time.perf_counter()
        negative_sampling(pos, n)
        info['neg_sampling_seconds'] = time.perf_counter() - t0
    return info


def run_worker_main(args):
    limit = int(args.mem_limit)
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    try:
        info = worker(args)
    except MemoryError as e:
        info = dict(method=SHORT[args.method], num_nodes=args.num_nodes,
                    error=f'OOM at N={args.num_nodes}: MemoryError {e}')
    print('RESULT ' + json.dumps(info), flush=True)


# Driver ######################################################################


def mem_available() -> int:
    with open('/proc/meminfo') as f:
        for line in f:
            if line.startswith('MemAvailable:'):
                return int(line.split()[1]) * 1024
    return 0


def launch(method_key: str, n: int, args) -> dict:
    limit = min(int(args.mem_limit_gb * 2**30),
                mem_available() - int(1.5 * 2**30))
    repeats = args.repeats or default_repeats(n)
    cmd = [sys.executable, os.path.abspath(__file__), '--worker',
           '--method', method_key, '--num-nodes', str(n),
           '--repeats', str(repeats), '--seed', str(args.seed),
           '--threads', str(args.threads), '--mem-limit', str(limit),
           '--interval', str(args.interval),
           '--time-budget', str(args.time_budget),
           '--num-clusters', *[str(k) for k in args.num_clusters]]
    load = round(os.getloadavg()[0], 2)  # other processes share the cores
    env = dict(os.environ)
    if args.omp_wait_policy:
        env['OMP_WAIT_POLICY'] = args.omp_wait_policy
    t0 = time.time()
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, env=env,
                           timeout=args.timeout, cwd=ROOT)
    except subprocess.TimeoutExpired:
        return dict(method=SHORT[method_key], num_nodes=n,
                    error=f'timeout after {args.timeout} s at N={n}',
                    mem_limit_gb=limit / 2**30)
    info = None
    for line in p.stdout.splitlines():
        if line.startswith('RESULT '):
            info = json.loads(line[len('RESULT '):])
    if info is None:
        tail = (p.stderr.strip().splitlines() or ['?'])[-1][:300]
        oom = p.returncode in (-9, 137) or 'memory' in tail.lower() or \
            'alloc' in tail.lower()
        info = dict(method=SHORT[method_key], num_nodes=n,
                    error=(f'OOM at N={n} ' if oom else
                           f'failed at N={n} ') +
                    f'(exit {p.returncode}): {tail}')
    info['mem_limit_gb'] = limit / 2**30
    info['wall_seconds'] = time.time() - t0
    info['load_avg_1min'] = load
    return info


def to_records(results, args):
    from torch_geometric_mgvae.experiments.results import (
        current_command,
        record,
    )
    command = current_command()
    records = []
    for r in results:
        n = r['num_nodes']
        dataset = f'random avg-degree-10 graph, {n} nodes'
        method = r['method']
        extra = dict(num_nodes=n, num_edges=r.get('num_edges'),
                     mem_limit_gb=round(r['mem_limit_gb'], 2),
                     threads=args.threads)
        if 'load_avg_1min' in r:
            extra['load_avg_1min_before'] = r['load_avg_1min']
        protocol = PROTOCOLS[method].format(K=args.num_clusters,
                                            threads=args.threads,
                                            n=r.get('n', args.repeats or
                                                    default_repeats(n)))
        protocol += (f'; OMP_WAIT_POLICY={args.omp_wait_policy or "unset"}; '
                     f'fresh process per (method, size), RLIMIT_AS '
                     f'{r["mem_limit_gb"]:.1f} GiB')
        if 'error' in r:
            for metric in ('step_seconds', 'peak_mem_mb'):
                records.append(record('scale', dataset, method, metric, None,
                                      protocol=protocol, command=command,
                                      device='cpu', error=r['error'],
                                      **extra))
            continue
        times = r['step_seconds_all']
        std = statistics.stdev(times) if len(times) > 1 else None
        more = dict(step_seconds_all=[round(t, 4) for t in times])
        if 'decoders' in r:
            more['decoders'] = r['decoders']
        if 'neg_sampling_seconds' in r:
            more['neg_sampling_seconds'] = round(r['neg_sampling_seconds'], 4)
        records.append(record('scale', dataset, method, 'step_seconds',
                              r['step_seconds'], std=std, n=r['n'],
                              protocol=protocol, command=command,
                              device='cpu', **extra, **more))
        records.append(record(
            'scale', dataset, method, 'peak_mem_mb', r['peak_mem_mb'],
            n=r['n'] + 1,
            protocol=protocol + '; peak RSS (sampled every '
            f'{args.interval * 1e3:g} ms) over the warm-up and timed steps '
            'minus the RSS just before them', command=command, device='cpu',
            baseline_rss_mb=round(r['baseline_rss_mb'], 1),
            peak_rss_mb=round(r['peak_rss_mb'], 1),
            ru_maxrss_mb=round(r['ru_maxrss_mb'], 1), **extra))
    return records


def write_csv(path, results):
    cols = ['num_nodes', 'num_edges', 'method', 'step_seconds', 'n',
            'peak_mem_mb', 'baseline_rss_mb', 'peak_rss_mb', 'error']
    with open(path, 'w') as f:
        f.write(','.join(cols) + '\n')
        for r in results:
            vals = []
            for c in cols:
                v = r.get(c)
                if v is None:
                    vals.append('')
                elif isinstance(v, float):
                    vals.append(f'{v:.6g}')
                else:
                    v = str(v)
                    vals.append('"' + v.replace('"', '""') + '"'
                                if (',' in v or '"' in v) else v)
            f.write(','.join(vals) + '\n')


def plot(path, results, mem_limit_gb):
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    styles = {'MGVAE': 'o-', 'MGVAE (all decoders sampled)': 'o--',
              'PyG VGAE': 's-', 'PyG dense_diff_pool': '^-'}
    for ax, key, label in ((axes[0], 'step_seconds', 'step time [s]'),
                           (axes[1], 'peak_mem_mb', 'step peak memory [MB]')):
        for method in METHODS:
            rs = sorted((r for r in results if r['method'] == method),
                        key=lambda r: r['num_nodes'])
            ok = [r for r in rs if 'error' not in r]
            if ok:
                line, = ax.plot([r['num_nodes'] for r in ok],
                                [r[key] for r in ok], styles[method],
                                label=method)
                fails = [r for r in rs if 'error' in r and
                         r['error'].startswith('OOM')]
                if fails:
                    f = fails[0]
                    y = ok[-1][key]
                    ax.plot([f['num_nodes']], [y], 'x', ms=11, mew=2.5,
                            color=line.get_color())
                    ax.annotate(f"OOM at N={f['num_nodes']:.0e}",
                                (f['num_nodes'], y), textcoords='offset '
                                'points', xytext=(6, -12), fontsize=8,
                                color=line.get_color())
        xs = sorted({r['num_nodes'] for r in results})
        ref = [r for r in results if r['method'] == 'MGVAE' and
               'error' not in r]
        if ref:
            r0 = max(ref, key=lambda r: r['num_nodes'])
            ax.plot(xs, [r0[key] * x / r0['num_nodes'] for x in xs], 'k:',
                    lw=1, label='slope 1 (linear), through MGVAE at the '
                    'largest N')
        ax.set_xscale('log')
        ax.set_yscale('log')
        ax.set_xlabel('number of nodes N (|E| ~ 10 N directed edges)')
        ax.set_ylabel(label)
        ax.grid(True, which='both', alpha=0.3)
        ax.legend(fontsize=8)
    if any(r['method'] == 'PyG dense_diff_pool' for r in results):
        axes[1].axhline(mem_limit_gb * 1024, color='grey', lw=0.8, ls='--')
        axes[1].annotate(f'RLIMIT_AS {mem_limit_gb:g} GiB',
                         (min(r['num_nodes'] for r in results),
                          mem_limit_gb * 1024), textcoords='offset points',
                         xytext=(2, -10), fontsize=7, color='grey')
    fig.suptitle('One training step (forward + backward) on random graphs '
                 'of average degree 10, CPU, 2 threads', fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=130)
    plt.close(fig)


def print_table(results):
    by = {(r['num_nodes'], r['method']): r for r in results}
    sizes = sorted({r['num_nodes'] for r in results})
    head = (f"{'N':>8} {'edges':>9} {'method':<29} {'step s':>8} "
            f"{'peak MB':>8} {'B/edge':>6} {'RSS MB':>7} "
            f"{'t/VGAE':>7} {'mem/VGAE':>8}")
    print(head)
    print('-' * len(head))
    for n in sizes:
        vg = by.get((n, 'PyG VGAE'))
        vg_ok = vg is not None and 'error' not in vg
        for method in METHODS:
            r = by.get((n, method))
            if r is None:
                continue
            E = r.get('num_edges') or 0
            if 'error' in r:
                print(f"{n:>8} {E:>9} {method:<29} {r['error'][:100]}")
                continue
            ratio_t = ratio_m = ''
            if method.startswith('MGVAE') and vg_ok:
                ratio_t = f"{r['step_seconds'] / vg['step_seconds']:.2f}x"
                ratio_m = f"{r['peak_mem_mb'] / vg['peak_mem_mb']:.2f}x"
            bpe = r['peak_mem_mb'] * MB / max(E, 1)
            extra = ''
            if 'neg_sampling_seconds' in r:
                extra = (f"  (PyG negative_sampling alone "
                         f"{r['neg_sampling_seconds']:.3f} s)")
            print(f"{n:>8} {E:>9} {method:<29} {r['step_seconds']:>8.4f} "
                  f"{r['peak_mem_mb']:>8.1f} {bpe:>6.0f} "
                  f"{r['peak_rss_mb']:>7.0f} {ratio_t:>7} {ratio_m:>8}"
                  f"{extra}")
    sys.stdout.flush()


def summary(results):
    r"""The checks of the benchmark: MGVAE within 3x of VGAE, memory linear
    in |E| (log-log slopes between consecutive sizes)."""
    by = {(r['num_nodes'], r['method']): r for r in results
          if 'error' not in r}
    sizes = sorted({r['num_nodes'] for r in results})
    print('\nMGVAE / VGAE step time (goal: <= 3x):')
    for n in sizes:
        mg, vg = by.get((n, 'MGVAE')), by.get((n, 'PyG VGAE'))
        if mg and vg:
            q = mg['step_seconds'] / vg['step_seconds']
            print(f"  N={n:>8}: {q:6.2f}x  {'ok' if q <= 3 else 'OVER 3x'}")
    for method in ('MGVAE', 'PyG VGAE'):
        rs = [by[(n, method)] for n in sizes if (n, method) in by]
        if len(rs) < 2:
            continue
        print(f'{method}: log-log slope vs |E| between consecutive sizes '
              f'(1 = linear), time / memory:')
        for a, b in zip(rs[:-1], rs[1:]):
            le = math.log(b['num_edges'] / a['num_edges'])
            st = math.log(b['step_seconds'] / a['step_seconds']) / le
            sm = math.log(b['peak_mem_mb'] / a['peak_mem_mb']) / le
            print(f"  {a['num_nodes']:>8} -> {b['num_nodes']:>8}: "
                  f"{st:5.2f} / {sm:5.2f}")
    fails = [r for r in results if 'error' in r]
    for r in fails:
        print(f"  {r['method']} at N={r['num_nodes']}: {r['error']}")


# Mini-batched training of one large graph #################################

def random_csr(n: int, seed: int, chunk: int = 10**7):
    r"""A random graph of :obj:`n` nodes from :obj:`5 n` uniform node pairs
    (self loops dropped; a few duplicate pairs, ~12 at 10^7 nodes, kept),
    both directions stored: ~10 n directed edges, generated in chunks of
    pairs straight into CSR :obj:`(rowptr, col)` (two passes over the same
    seeded chunks: the degrees, then the columns), never as an edge list."""
    import torch
    m = 5 * n
    spans = [(c, min(chunk, m - c * chunk)) for c in range(-(-m // chunk))]

    def pairs(c, k):
        g = torch.Generator().manual_seed(seed * 1_000_003 + c)
        u = torch.randint(n, (k, ), generator=g)
        v = torch.randint(n, (k, ), generator=g)
        keep = u != v
        return u[keep], v[keep]

    deg = torch.zeros(n, dtype=torch.long)
    for c, k in spans:
        u, v = pairs(c, k)
        deg += torch.bincount(u, minlength=n) + torch.bincount(v, minlength=n)
    rowptr = torch.zeros(n + 1, dtype=torch.long)
    torch.cumsum(deg, 0, out=rowptr[1:])
    del deg
    col = torch.empty(int(rowptr[-1]), dtype=torch.long)
    fill = rowptr[:-1].clone()
    for c, k in spans:
        u, v = pairs(c, k)
        src, dst = torch.cat([u, v]), torch.cat([v, u])
        del u, v
        order = torch.argsort(src, stable=True)
        src, dst = src[order], dst[order]
        del order
        first = torch.searchsorted(src, src, right=False)
        pos = fill[src] + (torch.arange(src.numel()) - first)
        col[pos] = dst
        fill += torch.bincount(src, minlength=n)
        del src, dst, first, pos
    return rowptr, col


def minibatch_worker(args) -> dict:
    import torch

    from torch_geometric_mgvae import MGVAE
    from torch_geometric_mgvae.experiments.train import run_epoch
    from torch_geometric_mgvae.loader import (
        PartitionData,
        PartitionLoader,
        smoothed_bisection_partition,
    )
    torch.set_num_threads(args.threads)
    sampler = RssSampler(args.interval)
    sampler.start()
    n = args.minibatch
    info = dict(num_nodes=n)
    t0 = time.perf_counter()
    rowptr, col = random_csr(n, args.seed)
    g = torch.Generator().manual_seed(args.seed)
    x = torch.cat([torch.randn(min(10**6, n - i), 16, generator=g)
                   for i in range(0, n, 10**6)])
    info['generate_seconds'] = time.perf_counter() - t0
    info['num_edges'] = col.numel()
    print(f'generated {n} nodes, {col.numel()} directed edges in '
          f'{info["generate_seconds"]:.0f} s, RSS '
          f'{sampler.rss() / MB:.0f} MB', flush=True)
    parts = max(1, round(n / args.nodes_per_part))
    t0 = time.perf_counter()
    part = smoothed_bisection_partition(rowptr, col, parts,
                                        num_iters=args.smooth_iters,
                                        seed=args.seed)
    data = PartitionData(x, rowptr, col, part)
    info['partition_seconds'] = time.perf_counter() - t0
    info['num_parts'] = parts
    info['cut_fraction'] = data.cut_fraction()
    print(f'partitioned into {parts} parts in '
          f'{info["partition_seconds"]:.0f} s (cut fraction '
          f'{info["cut_fraction"]:.3f}), RSS {sampler.rss() / MB:.0f} MB',
          flush=True)
    torch.manual_seed(args.seed)
    model = MGVAE(16, 32, 16, num_clusters=args.num_clusters)
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    loader = PartitionLoader(data, 1, cut_edges=not args.no_cut_edges,
                             seed=args.seed)
    steps = [0]
    sizes = []

    class Logged:  # prints every step, for long runs
        def __iter__(self):
            t = time.perf_counter()
            for item in loader:
                sizes.append((item[0].num_nodes, item[0].num_edges))
                yield item
                steps[0] += 1
                if steps[0] % max(1, len(loader) // 20) == 0:
                    print(f'  step {steps[0]}/{len(loader)}: '
                          f'{time.perf_counter() - t:.0f} s, RSS '
                          f'{sampler.rss() / MB:.0f} MB (peak '
                          f'{sampler.peak / MB:.0f})', flush=True)

    t0 = time.perf_counter()
    stats = run_epoch(model, Logged(), opt,
                      generator=torch.Generator().manual_seed(args.seed))
    info['epoch_seconds'] = time.perf_counter() - t0
    peak = sampler.stop()
    info.update(steps=steps[0], peak_rss_mb=peak / MB, loss=stats['loss'],
                mean_batch_nodes=sum(a for a, _ in sizes) / len(sizes),
                mean_batch_edges=sum(b for _, b in sizes) / len(sizes),
                cut_edges=not args.no_cut_edges,
                ru_maxrss_mb=resource.getrusage(
                    resource.RUSAGE_SELF).ru_maxrss / 1024)
    return info


def full_batch_extrapolation(n: int, path: str):
    r"""The full-batch MGVAE step's peak memory at :obj:`n` nodes,
    extrapolated log-log from the two largest sizes of the landed table."""
    from torch_geometric_mgvae.experiments.results import read_records
    rows = sorted((r for r in read_records(path)
                   if r.get('task') == 'scale' and r['method'] == 'MGVAE'
                   and r['metric'] == 'peak_mem_mb' and r['value']),
                  key=lambda r: r['num_nodes'])
    if len(rows) < 2 or n <= rows[-1]['num_nodes']:
        return None  # measured (or too little to extrapolate from)
    a, b = rows[-2], rows[-1]
    slope = math.log(b['value'] / a['value']) / math.log(
        b['num_nodes'] / a['num_nodes'])
    value = b['value'] * (n / b['num_nodes'])**slope
    return dict(value=value, slope=slope, base=b['num_nodes'],
                base_value=b['value'], base_rss=b.get('peak_rss_mb'))


def run_minibatch(args):
    from torch_geometric_mgvae.experiments.results import (
        current_command,
        machine,
        record,
        write_records,
    )
    n = args.minibatch
    cmd = [sys.executable, os.path.abspath(__file__), '--minibatch-worker',
           '--minibatch', str(n), '--nodes-per-part',
           str(args.nodes_per_part), '--seed', str(args.seed), '--threads',
           str(args.threads), '--smooth-iters', str(args.smooth_iters),
           '--num-clusters', *[str(k) for k in args.num_clusters]]
    if args.no_cut_edges:
        cmd.append('--no-cut-edges')
    env = dict(os.environ, OMP_WAIT_POLICY=args.omp_wait_policy or '',
               PYTHONPATH=ROOT)
    load = os.getloadavg()[0]
    t0 = time.time()
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, env=env,
                         cwd=ROOT)
    info = None
    for line in p.stdout:
        if line.startswith('RESULT '):
            info = json.loads(line[len('RESULT '):])
        else:
            print(line, end='', flush=True)
    p.wait()
    if info is None:
        print(f'failed (exit {p.returncode})')
        return
    wall = time.time() - t0
    ext = full_batch_extrapolation(n, args.out + '.json')
    dataset = (f'random graph, {n} nodes, {info["num_edges"]} directed '
               f'edges (5n uniform pairs, both directions)')
    method = 'MGVAE (mini-batched)'
    protocol = (f'one epoch over {info["steps"]} subgraphs of one part each '
                f'(PartitionLoader, cut_edges={info["cut_edges"]}: mean '
                f'{info["mean_batch_nodes"]:.0f} nodes, '
                f'{info["mean_batch_edges"]:.0f} directed edges), '
                f'{info["num_parts"]} parts of ~{args.nodes_per_part} nodes '
                f'from smoothed_bisection_partition(num_iters='
                f'{args.smooth_iters}) (cut fraction '
                f'{info["cut_fraction"]:.3f}, '
                f'{info["partition_seconds"]:.0f} s; the graph generated in '
                f'{info["generate_seconds"]:.0f} s); MGVAE(16, 32, 16, '
                f'num_clusters={args.num_clusters}) learned clustering, '
                f'Adam; {args.threads} torch threads; {machine()} (shared, '
                f'1-min load {load:.1f} before)')
    common = dict(protocol=protocol, command=current_command(),
                  device='cpu', num_nodes=n, num_edges=info['num_edges'],
                  threads=args.threads)
    recs = [
        record('scale', dataset, method, 'epoch_seconds',
               info['epoch_seconds'], n=1, steps=info['steps'], **common),
        record('scale', dataset, method, 'peak_rss_mb', info['peak_rss_mb'],
               n=1, **dict(common, protocol=protocol + '; peak RSS of the '
                           'whole process (graph generation, partition and '
                           'the epoch), sampled every 2 ms')),
    ]
    if ext is not None:
        recs.append(record(
            'scale', dataset, 'MGVAE (full batch, extrapolated)',
            'peak_mem_mb', ext['value'], n=None, **dict(
                common, protocol=f'not run: the peak memory of one '
                f'full-batch step extrapolated from the measured table '
                f'(log-log slope {ext["slope"]:.2f} between its two '
                f'largest sizes; {ext["base_value"]:.0f} MB at '
                f'{ext["base"]} nodes)')))
    for r in recs:
        print(f"{r['method']}: {r['metric']} = {r['value']:.1f}")
    print(f'wall {wall:.0f} s')
    if not args.no_write:
        write_records(args.out + '.json', recs)
        print(f'wrote {args.out}.json')


def sbm_graph(n: int, blocks: int, degree: int, intra: float, seed: int):
    r"""A stochastic block model graph: :obj:`blocks` equal blocks,
    :obj:`n * degree / 2` undirected edges of which a fraction
    :obj:`intra` inside a block (uniform pairs of the block) and the rest
    between blocks (uniform pairs of different blocks), node ids shuffled
    (no partition can read the blocks off the ids). Returns the edges and
    the block of every node."""
    import torch
    from torch_geometric.utils import to_undirected
    g = torch.Generator().manual_seed(seed)
    size = n // blocks
    m = n * degree // 2
    m_in = int(m * intra)
    b = torch.randint(blocks, (m_in, ), generator=g)
    u = b * size + torch.randint(size, (m_in, ), generator=g)
    v = b * size + torch.randint(size, (m_in, ), generator=g)
    u2 = torch.randint(n, (2 * (m - m_in), ), generator=g)
    v2 = torch.randint(n, (2 * (m - m_in), ), generator=g)
    other = (u2 // size) != (v2 // size)
    u2, v2 = u2[other][:m - m_in], v2[other][:m - m_in]
    u, v = torch.cat([u, u2]), torch.cat([v, v2])
    keep = u != v
    perm = torch.randperm(n, generator=g)
    block = torch.empty(n, dtype=torch.long)
    block[perm] = torch.arange(n) // size
    return to_undirected(torch.stack([perm[u[keep]], perm[v[keep]]]),
                         num_nodes=n), block


def sbm_link_terms(model, data, generator=None):
    r"""MGVAE's loss terms on a graph with the KL weighted 1/N^2 (the
    per-pair normalisation of the link-prediction ELBO)."""
    out = model(data.x, data.edge_index, generator=generator)
    terms = model.loss_terms(out, generator)
    terms['kl'] = terms['kl'] / data.num_nodes**2
    return terms


def run_sbm(args):
    import torch
    import torch_geometric.transforms as T
    from torch_geometric import seed_everything
    from torch_geometric.data import Data

    from torch_geometric_mgvae import MGVAE
    from torch_geometric_mgvae.experiments.link_prediction import auc_ap
    from torch_geometric_mgvae.experiments.results import (
        current_command,
        machine,
        record,
        write_records,
    )
    from torch_geometric_mgvae.experiments.train import LossModule, run_epoch
    from torch_geometric_mgvae.loader import PartitionData, PartitionLoader
    torch.set_num_threads(args.threads)
    n = args.sbm_nodes
    ei, block = sbm_graph(n, args.sbm_blocks, 10, 0.8, args.seed)
    g = torch.Generator().manual_seed(args.seed)
    # Contextual SBM: features = the block's random mean + as much noise.
    means = torch.randn(args.sbm_blocks, 16, generator=g)
    data = Data(x=means[block] + torch.randn(n, 16, generator=g),
                edge_index=ei, num_nodes=n)
    seed_everything(args.seed)
    train, val, test = T.RandomLinkSplit(
        num_val=0.05, num_test=0.1, is_undirected=True, split_labels=True,
        add_negative_train_samples=False)(data)
    print(f'SBM: {n} nodes, {ei.size(1)} directed edges, '
          f'{args.sbm_blocks} blocks; train graph '
          f'{train.edge_index.size(1)} directed edges', flush=True)
    t0 = time.perf_counter()
    parted = PartitionData.from_edge_index(train.x, train.edge_index,
                                           args.sbm_parts, seed=args.seed)
    part_seconds = time.perf_counter() - t0
    cut = parted.cut_fraction()
    print(f'partition: {args.sbm_parts} parts, cut fraction {cut:.3f}, '
          f'{part_seconds:.1f} s', flush=True)

    def evaluate(model):
        model.eval()
        with torch.no_grad():
            z = model.encode(train.x, train.edge_index)
            s = lambda e: model.decode(z, e, sigmoid=False)  # noqa: E731
            val_auc, _ = auc_ap(s(val.pos_edge_label_index),
                                s(val.neg_edge_label_index))
            auc, ap = auc_ap(s(test.pos_edge_label_index),
                             s(test.neg_edge_label_index))
        return val_auc, auc, ap

    results = {}
    epochs = {'full batch': args.sbm_full_epochs,
              'mini-batched': args.sbm_epochs}
    for mode in ('full batch', 'mini-batched'):
        torch.manual_seed(args.seed)
        model = MGVAE(16, 32, 16, num_clusters=args.sbm_clusters,
                      encoder_scope='graph',
                      recon_kwargs=dict(balanced=True))
        net = LossModule(model, sbm_link_terms)
        opt = torch.optim.Adam(model.parameters(), lr=args.sbm_lr)
        gen = torch.Generator().manual_seed(args.seed)
        if mode == 'full batch':
            loader = [train]
        else:
            loader = PartitionLoader(parted, 1, cut_edges=True,
                                     seed=args.seed)
        best = (-1.0, None, None, None)
        seconds, steps = 0.0, 0
        for epoch in range(1, epochs[mode] + 1):
            t0 = time.perf_counter()
            stats = run_epoch(net, loader, opt, generator=gen, epoch=epoch)
            seconds += time.perf_counter() - t0
            steps += len(loader)
            if epoch % args.sbm_eval_every == 0 or epoch == epochs[mode]:
                val_auc, auc, ap = evaluate(model)
                if val_auc > best[0]:
                    best = (val_auc, auc, ap, epoch)
                print(f'{mode} epoch {epoch}: loss {stats["loss"]:.4f}, '
                      f'val AUC {val_auc:.4f}, test AUC {auc:.4f} '
                      f'({seconds:.0f} s)', flush=True)
        results[mode] = dict(val_auc=best[0], auc=best[1], ap=best[2],
                             epoch=best[3], seconds=seconds,
                             epochs=epochs[mode], steps=steps)
    diff = results['mini-batched']['auc'] - results['full batch']['auc']
    print(f'test AUC: full batch {results["full batch"]["auc"]:.4f}, '
          f'mini-batched {results["mini-batched"]["auc"]:.4f} '
          f'({100 * diff:+.2f} points)')
    dataset = (f'contextual SBM, {n} nodes, {args.sbm_blocks} blocks, '
               f'average degree 10, 80% of the edges inside blocks')
    protocol = (f'RandomLinkSplit(0.05, 0.1), seed {args.seed}; node '
                f'features: a random N(0, I) mean per block plus N(0, I) '
                f'noise (16 dimensions, contextual SBM); MGVAE(16, 32, 16, '
                f'num_clusters={args.sbm_clusters}, encoder_scope="graph", '
                f'balanced reconstruction, KL / N^2), Adam {args.sbm_lr}, '
                f'full batch {args.sbm_full_epochs} epochs (one step each), '
                f'mini-batched {args.sbm_epochs} epochs ({args.sbm_parts} '
                f'steps each), epoch selected on validation AUC (every '
                f'{args.sbm_eval_every}), '
                f'pairs scored by the finest latents of a full-graph '
                f'forward; mini-batched: {args.sbm_parts} parts '
                f'(smoothed_bisection_partition, cut fraction {cut:.3f}, '
                f'{part_seconds:.1f} s), one part per batch with its cut '
                f'edges; {args.threads} torch threads; {machine()} (shared)')
    recs = []
    for mode, r in results.items():
        method = f'MGVAE ({mode})'
        common = dict(protocol=protocol, command=current_command(),
                      device='cpu', num_nodes=n, seed=args.seed,
                      selected_epoch=r['epoch'], epochs=r['epochs'],
                      steps=r['steps'], val_auc=r['val_auc'],
                      setting=f"{r['epochs']} epochs = {r['steps']} steps")
        recs.append(record('scale_sbm', dataset, method, 'AUC', r['auc'],
                           n=1, **common))
        recs.append(record('scale_sbm', dataset, method, 'AP', r['ap'],
                           n=1, **common))
        recs.append(record('scale_sbm', dataset, method, 'selected_epoch',
                           r['epoch'], n=1, **common))
        recs.append(record('scale_sbm', dataset, method, 'train_seconds',
                           r['seconds'], n=1, **common))
    if not args.no_write:
        write_records(args.out + '_sbm.json', recs)
        print(f'wrote {args.out}_sbm.json')


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--sizes', nargs='+', type=parse_size,
                        default=[10**3, 3 * 10**3, 10**4, 3 * 10**4,
                                 5 * 10**4, 10**5, 3 * 10**5, 10**6])
    parser.add_argument('--methods', nargs='+', default=list(SHORT),
                        choices=list(SHORT))
    parser.add_argument('--sampled-max-nodes', type=parse_size,
                        default=10**4, help='largest size for "MGVAE (all '
                        'decoders sampled)" (above ~4096 nodes the default '
                        'MGVAE samples its level-0 decoders anyway)')
    parser.add_argument('--num-clusters', nargs='+', type=int,
                        default=[64, 8, 1])
    parser.add_argument('--repeats', type=int, default=0,
                        help='timed steps after the warm-up (default: 5 up '
                        'to 1e4 nodes, 3 up to 1e5, 2 above; see '
                        '--time-budget)')
    parser.add_argument('--threads', type=int, default=2)
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--omp-wait-policy', default='PASSIVE',
                        help='OMP_WAIT_POLICY of the runs: with the default '
                        '(spinning) policy and another process busy on the '
                        'shared cores, small steps take ~1 s of OpenMP '
                        'waiting; PASSIVE avoids that ("" to leave it unset)')
    parser.add_argument('--mem-limit-gb', type=float, default=20.0,
                        help='RLIMIT_AS of every run (lowered to the '
                        'available memory minus 1.5 GiB)')
    parser.add_argument('--interval', type=float, default=0.002,
                        help='RSS sampling interval in seconds')
    parser.add_argument('--time-budget', type=float, default=90,
                        help='fewer timed steps (at least 1) when the warm-up '
                        'step shows they would take longer than this many '
                        'seconds')
    parser.add_argument('--timeout', type=float, default=900)
    parser.add_argument('--out', default=os.path.join(RESULTS, 'scale'),
                        help='output path without extension')
    parser.add_argument('--no-write', action='store_true')
    mb = parser.add_argument_group('mini-batched training of one graph')
    mb.add_argument('--minibatch', type=parse_size, default=None,
                    metavar='N', help='train one epoch mini-batched on a '
                    'random graph of N nodes')
    mb.add_argument('--nodes-per-part', type=parse_size, default=10**5)
    mb.add_argument('--smooth-iters', type=int, default=10)
    mb.add_argument('--no-cut-edges', action='store_true')
    mb.add_argument('--sbm', action='store_true',
                    help='full-batch vs mini-batched link prediction AUC on '
                    'a stochastic block model graph')
    mb.add_argument('--sbm-nodes', type=parse_size, default=10**5)
    mb.add_argument('--sbm-blocks', type=int, default=100)
    mb.add_argument('--sbm-parts', type=int, default=10)
    mb.add_argument('--sbm-epochs', type=int, default=20,
                    help='mini-batched epochs (--sbm-parts steps each)')
    mb.add_argument('--sbm-full-epochs', type=int, default=200,
                    help='full-batch epochs (one step each; default: as '
                    'many steps as the mini-batched run)')
    mb.add_argument('--sbm-eval-every', type=int, default=5)
    mb.add_argument('--sbm-lr', type=float, default=0.02)
    mb.add_argument('--sbm-clusters', nargs='+', type=int,
                    default=[16, 4, 1])
    mb.add_argument('--minibatch-worker', action='store_true',
                    help=argparse.SUPPRESS)
    # Worker mode (internal):
    parser.add_argument('--worker', action='store_true',
                        help=argparse.SUPPRESS)
    parser.add_argument('--method', help=argparse.SUPPRESS)
    parser.add_argument('--num-nodes', type=int, help=argparse.SUPPRESS)
    parser.add_argument('--mem-limit', type=float, help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.worker:
        return run_worker_main(args)
    if args.minibatch_worker:
        print('RESULT ' + json.dumps(minibatch_worker(args)), flush=True)
        return
    if args.minibatch is not None:
        return run_minibatch(args)
    if args.sbm:
        return run_sbm(args)

    results = []
    failed = {}  # method -> size at which it ran out of memory
    t_start = time.time()
    for n in sorted(args.sizes):
        edges_at_n = None
        for key in args.methods:
            method = SHORT[key]
            if key == 'mgvae-sampled' and n > args.sampled_max_nodes:
                continue
            if method in failed:
                gib = 4 * n * n / 2**30
                r = dict(method=method, num_nodes=n, num_edges=edges_at_n,
                         mem_limit_gb=args.mem_limit_gb,
                         error=f'OOM (not run: out of memory already at '
                         f'N={failed[method]}; one dense N x N float32 '
                         f'tensor alone needs {gib:.1f} GiB)')
                results.append(r)
                print(f'[{time.time() - t_start:6.0f}s] N={n} {method}: '
                      f'{r["error"]}', flush=True)
                continue
            r = launch(key, n, args)
            if r.get('num_edges') is None:
                r['num_edges'] = edges_at_n
            edges_at_n = r.get('num_edges') or edges_at_n
            results.append(r)
            status = r.get('error') or (
                f"{r['step_seconds']:.4f} s, {r['peak_mem_mb']:.1f} MB "
                f"(RSS {r['peak_rss_mb']:.0f} MB), n={r['n']}")
            print(f'[{time.time() - t_start:6.0f}s] N={n} '
                  f'E={r.get("num_edges")} {method}: {status}', flush=True)
            for d in r.get('decoders', []):
                print(f'        {d}', flush=True)
            if 'neg_sampling_seconds' in r:
                print(f"        PyG negative_sampling alone: "
                      f"{r['neg_sampling_seconds']:.4f} s", flush=True)
            if 'error' in r and r['error'].startswith('OOM'):
                failed[method] = n
    print()
    print_table(results)
    summary(results)
    print(f'total {time.time() - t_start:.0f} s')
    if args.no_write:
        return
    from torch_geometric_mgvae.experiments.results import write_records
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    write_records(args.out + '.json', to_records(results, args))
    write_csv(args.out + '.csv', results)
    plot(args.out + '.png', results, args.mem_limit_gb)
    print(f'wrote {args.out}.json, .csv, .png')


if __name__ == '__main__':
    main()
