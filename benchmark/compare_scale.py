r"""A/B of ``benchmark/scale.py``'s MGVAE step between an earlier commit and
the working tree, in the same session, interleaved.

The landed scale table was measured on a quieter machine than later runs,
so a new run cannot be compared with it directly; this script runs the
MGVAE rows of ``scale.py`` for the base commit (checked out into a temporary
git worktree) and for the working tree one after the other, for several
rounds, so both see the same load::

    python benchmark/compare_scale.py --base de4d3f5 --rounds 2

Writes ``benchmark/results/scale_ab.json`` (one record per code version,
size and metric: the mean over rounds, every round's value kept) and prints
the ratio new / base.
"""
import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RESULTS = os.path.join(ROOT, 'benchmark', 'results', 'scale_ab.json')
ROW = re.compile(r'^\s*(\d+)\s+(\d+)\s+MGVAE\s+([\d.]+)\s+([\d.]+)')


def run_scale(src: str, sizes, nice: int) -> dict:
    env = dict(os.environ, PYTHONPATH=src)
    cmd = ['nice', '-n', str(nice), sys.executable,
           os.path.join(src, 'benchmark', 'scale.py'), '--methods', 'mgvae',
           '--no-write', '--sizes'] + list(sizes)
    out = subprocess.run(cmd, env=env, capture_output=True, text=True,
                         cwd=tempfile.gettempdir()).stdout
    rows = {}
    for line in out.splitlines():
        m = ROW.match(line)
        if m:
            rows[int(m.group(1))] = (float(m.group(3)), float(m.group(4)))
    return rows


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--base', default='de4d3f5',
                        help='the earlier commit (default: the last commit '
                        'before MGN was rebuilt on PyG operators)')
    parser.add_argument('--rounds', type=int, default=2)
    parser.add_argument('--sizes', nargs='+', default=['1e4', '1e5', '1e6'])
    parser.add_argument('--nice', type=int, default=0,
                        help='niceness of the runs (negative needs root)')
    parser.add_argument('--results', default=RESULTS)
    args = parser.parse_args()
    sys.path.insert(0, ROOT)
    from torch_geometric_mgvae.experiments.results import (
        current_command,
        record,
        write_records,
    )
    base_dir = tempfile.mkdtemp(prefix='mgvae_base_')
    subprocess.run(['git', '-C', ROOT, 'worktree', 'add', '--detach',
                    base_dir, args.base], check=True, capture_output=True)
    head = subprocess.run(['git', '-C', ROOT, 'rev-parse', '--short',
                           'HEAD'], capture_output=True,
                          text=True).stdout.strip()
    runs = {'base': [], 'new': []}
    try:
        for r in range(args.rounds):
            for version, src in (('base', base_dir), ('new', ROOT)):
                rows = run_scale(src, args.sizes, args.nice)
                runs[version].append(rows)
                print(f'round {r + 1} {version}: {rows}', flush=True)
    finally:
        subprocess.run(['git', '-C', ROOT, 'worktree', 'remove', '--force',
                        base_dir], capture_output=True)
    load = os.getloadavg()[0]
    command = current_command()
    records = []
    print(f'\n{"N":>9}{"base s":>10}{"new s":>10}{"new/base":>10}'
          f'{"base MB":>10}{"new MB":>10}')
    for n in sorted({n for rows in runs['base'] for n in rows}):
        means = {}
        for version in runs:
            t = [rows[n][0] for rows in runs[version] if n in rows]
            m = [rows[n][1] for rows in runs[version] if n in rows]
            means[version] = (statistics.mean(t), statistics.mean(m))
            code = (f'{args.base} (before the rebuild)' if version == 'base'
                    else f'{head} + working tree')
            protocol = (f'benchmark/scale.py MGVAE row (one training step, '
                        f'2 threads, fresh process) for the code at {code}; '
                        f'{args.rounds} rounds interleaved with the other '
                        f'version, mean over rounds; load average '
                        f'{load:.1f} at the end')
            for metric, values in (('step_seconds', t), ('peak_mem_mb', m)):
                records.append(record(
                    'scale_ab', f'random avg-degree-10 graph, {n} nodes',
                    f'MGVAE ({version})', metric, statistics.mean(values),
                    std=statistics.stdev(values) if len(values) > 1 else None,
                    n=len(values), protocol=protocol, command=command,
                    rounds=values, code=code, num_nodes=n))
        print(f'{n:>9}{means["base"][0]:>10.3f}{means["new"][0]:>10.3f}'
              f'{means["new"][0] / means["base"][0]:>10.2f}'
              f'{means["base"][1]:>10.0f}{means["new"][1]:>10.0f}')
    write_records(args.results, records)
    print(f'wrote {os.path.relpath(args.results)}')


if __name__ == '__main__':
    main()
