r"""Second- vs first-order training step, timed alternately in one process.

``benchmark/second_order.py`` runs every configuration in its own process,
so its ratios divide by a first-order step timed at another moment; on a
shared machine that step (a few hundredths of a second) varies by 50% or
more between runs. Here one process builds both models on the same
molecule-sized batch (as ``second_order.py``: random connected graphs of 9
or 23 nodes, 128 per batch, ``num_clusters=[4, 2, 1]``, hidden 32, latent
16, 2 layers, Adam) and alternates their training steps, so both see the
same load; the ratio is the median over the pairs of
``cpu(second) / cpu(first)``.

    python benchmark/second_order_ratio.py [--pairs 25] [--threads 1]

Writes ``benchmark/results/second_order_ratio.json``.
"""
import argparse
import os
import statistics
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from second_order import CONFIGS, make_step, molecule_batch  # noqa: E402

from torch_geometric_mgvae.experiments.results import (  # noqa: E402
    record,
    write_records,
)

RESULTS = os.path.join(ROOT, 'benchmark', 'results',
                       'second_order_ratio.json')
SIZES = {'QM9-sized (128 x 9 nodes)': 9, 'ZINC-sized (128 x 23 nodes)': 23}
CLUSTERS = [4, 2, 1]


def cpu_time(fn) -> float:
    t0 = time.process_time()
    fn()
    return time.process_time() - t0


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--pairs', type=int, default=25)
    parser.add_argument('--threads', type=int, default=1)
    parser.add_argument('--out', default=RESULTS)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    command = 'python benchmark/second_order_ratio.py' + (
        f' --pairs {args.pairs}' if args.pairs != 25 else '') + (
        f' --threads {args.threads}' if args.threads != 1 else '')
    load = os.getloadavg()[0]
    records = []
    print(f'{"dataset":<30}{"encoder":<22}{"first s":>9}{"second s":>10}'
          f'{"ratio":>8}')
    for ds, n in SIZES.items():
        data = molecule_batch(128, n, 0)
        for config in [c for c in CONFIGS if c != 'first order']:
            first, second = (make_step(data, CLUSTERS, c)
                             for c in ('first order', config))
            first(), second()  # warm-up
            t1, t2 = [], []
            for _ in range(args.pairs):
                t1.append(cpu_time(first))
                t2.append(cpu_time(second))
            ratio = statistics.median(b / a for a, b in zip(t1, t2))
            m1, m2 = statistics.median(t1), statistics.median(t2)
            print(f'{ds:<30}{config:<22}{m1:>9.4f}{m2:>10.4f}{ratio:>8.2f}',
                  flush=True)
            protocol = (f'one MGVAE training step of each order, alternated '
                        f'in one process ({args.pairs} pairs, '
                        f'{args.threads} torch thread(s), load average '
                        f'{load:.2f} at the start); median CPU seconds and '
                        f'median ratio over the pairs; {CONFIGS[config]}')
            for metric, value in (('first_order_cpu_seconds', m1),
                                  ('cpu_seconds', m2),
                                  ('cpu_ratio_vs_first_order', ratio)):
                records.append(record(
                    'second_order_ratio', ds, f'MGVAE ({config})', metric,
                    value, n=args.pairs, protocol=protocol, command=command,
                    load_average=load))
    write_records(args.out, records, replace=False)
    print(f'wrote {args.out}')


if __name__ == '__main__':
    main()
