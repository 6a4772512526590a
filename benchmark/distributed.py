r"""Throughput of the molecule trainer in 1 and N data-parallel processes.

Runs ``mgvae molecules`` (QM9, the all-at-once MGVAE and/or the
autoregressive MGN) for a few epochs with ``--nproc 1`` and ``--nproc N``
(``torchrun`` underneath: gloo on the CPU, NCCL with ``--device cuda``),
with the same global batch, and reports training graphs per second: the
training molecules times the epochs over the training seconds the run
records (rank 0's clock around every epoch, the first epoch included; data
loading, sampling and metrics excluded).

On this 2-core CPU machine two processes get one thread each
(``OMP_NUM_THREADS=1``, torchrun's default) against two threads for one
process: the same cores, split differently. So the CPU rows measure the
overhead and the gain of splitting two cores into processes, not a
speed-up from more hardware. The machine is shared: the 1-minute load
average before every run is recorded.

    python benchmark/distributed.py                         # CPU, 1 and 2
    python benchmark/distributed.py --device cuda --nproc 1 2 4 \
        --num-train 10000 --epochs 3                        # GPUs, NCCL

Writes ``benchmark/results/distributed.json`` (the rows of the device
measured are replaced).
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

RESULTS = os.path.join(ROOT, 'benchmark', 'results', 'distributed.json')
QM9 = os.path.join(ROOT, '..', 'shared', 'data', 'qm9')


def run_one(args, decoder: str, nproc: int, threads: int, work: str
            ) -> dict:
    out = os.path.join(work, f'{decoder}_{nproc}_{threads}')
    cmd = [sys.executable, '-m', 'torch_geometric_mgvae.cli', 'molecules',
           '--decoder', decoder, '--data', args.data, '--root',
           os.path.abspath(args.root), '--num-train', str(args.num_train),
           '--num-samples', '16', '--epochs', str(args.epochs),
           '--batch-size', str(args.batch_size), '--no-fcd', '--no-progress',
           '--checkpoint-every', '0', '--device', args.device,
           '--nproc', str(nproc), '--out', out]
    env = dict(os.environ, OMP_NUM_THREADS=str(threads),
               OMP_WAIT_POLICY='PASSIVE',
               PYTHONPATH=os.pathsep.join(
                   [ROOT] + [p for p in os.environ.get(
                       'PYTHONPATH', '').split(os.pathsep) if p]))
    load = os.getloadavg()[0]
    t0 = time.time()
    p = subprocess.run(cmd, capture_output=True, text=True, env=env,
                       cwd=work)
    wall = time.time() - t0
    if p.returncode != 0:
        tail = (p.stderr.strip().splitlines() or ['?'])[-1]
        return dict(error=f'exit {p.returncode}: {tail}', wall=wall,
                    load=load)
    with open(os.path.join(out, 'molecule_generation.json')) as f:
        recs = json.load(f)
    secs = next(r['value'] for r in recs if r['metric'] == 'train_seconds')
    return dict(train_seconds=secs, wall=wall, load=load,
                graphs_per_second=args.num_train * args.epochs / secs)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--device', default='cpu',
                        choices=['cpu', 'cuda'])
    parser.add_argument('--nproc', nargs='+', type=int, default=[1, 2])
    parser.add_argument('--decoders', nargs='+',
                        default=['all-at-once', 'autoregressive'],
                        choices=['all-at-once', 'autoregressive'])
    parser.add_argument('--num-train', type=int, default=1024)
    parser.add_argument('--epochs', type=int, default=2)
    parser.add_argument('--batch-size', type=int, default=128,
                        help='the global batch (default: 128, the '
                        'experiment\'s)')
    parser.add_argument('--threads', type=int, default=None,
                        help='torch threads of the whole run, split among '
                        'the processes (default: the CPU cores; 1 per '
                        'process on CUDA)')
    parser.add_argument('--data', default=QM9)
    parser.add_argument('--root', default=os.path.join(ROOT, 'data', 'qm9'),
                        help='dataset folder (processed once, kept)')
    parser.add_argument('--results', default=RESULTS)
    parser.add_argument('--no-write', action='store_true')
    args = parser.parse_args()

    from torch_geometric_mgvae.experiments.results import (
        current_command,
        machine,
        read_records,
        record,
        write_records,
    )
    cores = os.cpu_count() or 1
    total = args.threads or cores
    records = []
    with tempfile.TemporaryDirectory(prefix='mgvae_ddp_') as work:
        for decoder in args.decoders:
            base = None
            for nproc in args.nproc:
                threads = 1 if args.device == 'cuda' else max(
                    1, total // nproc)
                r = run_one(args, decoder, nproc, threads, work)
                name = ('all-at-once MGVAE' if decoder == 'all-at-once'
                        else 'autoregressive MGN')
                method = f'{name}, {nproc} process(es) x {threads} thread(s)'
                protocol = (f'mgvae molecules --decoder {decoder}, QM9, '
                            f'{args.num_train} training molecules, '
                            f'{args.epochs} epochs, global batch '
                            f'{args.batch_size} ({args.batch_size // nproc} '
                            f'per process), default model; graphs/s = '
                            f'molecules x epochs / rank 0\'s training '
                            f'seconds (first epoch included); '
                            f'{"gloo" if args.device == "cpu" else "NCCL"}, '
                            f'{nproc} process(es) x {threads} torch '
                            f'thread(s) on {cores} cores; {machine()} '
                            f'(shared: 1-min load {r["load"]:.1f} before)')
                common = dict(task='distributed', dataset='QM9',
                              method=method, command=current_command(),
                              device=args.device, processes=nproc,
                              threads_per_process=threads, protocol=protocol,
                              load_avg_1min_before=round(r['load'], 2))
                if 'error' in r:
                    print(f'{method}: {r["error"]}', flush=True)
                    records.append(record(metric='graphs_per_second',
                                          value=None, error=r['error'],
                                          **common))
                    continue
                if base is None:
                    base = r['graphs_per_second']
                speedup = r['graphs_per_second'] / base
                print(f'{method}: {r["graphs_per_second"]:.1f} graphs/s '
                      f'({r["train_seconds"]:.1f} s training, '
                      f'{r["wall"]:.0f} s wall, x{speedup:.2f} vs the first '
                      f'row, load {r["load"]:.1f})', flush=True)
                records.append(record(metric='graphs_per_second',
                                      value=r['graphs_per_second'],
                                      **common))
                records.append(record(metric='train_seconds',
                                      value=r['train_seconds'], **common))
                records.append(record(metric='speedup_vs_1_process',
                                      value=speedup, **common))
    if args.no_write:
        return
    old = [r for r in read_records(args.results)
           if r.get('device') != args.device]
    write_records(args.results, old + records, replace=False)
    print(f'wrote {args.results}')


if __name__ == '__main__':
    main()
