r"""Time to sample molecules from a trained masked-decoding MoleculeMGVAE.

Loads a ``model.pt`` written by ``mgvae molecules --masked-decoding`` (its
size distribution comes with it) and times ``model.sample`` (prior, then
the masked decoder in K rounds; no RDKit) for every number of rounds, in
two ways in the same run:

* ``latent part once`` (this checkout's sampler): the latents' part of the
  decoder's first layer (``SecondOrderDecoder.latent_preactivation``) is
  computed once per sample and only the context's part in every round;
* ``latent part every round`` (the baseline, the sampler before it): the
  whole first layer in every round (the pair features and the context
  concatenated).

Both draw the same molecules from the same seed; the record gives the
largest difference of their class probabilities. The times are wall
seconds of one call after a warm-up call on 100 molecules, with
``torch.set_num_threads(--threads)``; the load average of the machine at
the start is recorded (another job on the machine slows both ways alike).

    python benchmark/sampling.py --checkpoint OUT/model.pt

Writes ``benchmark/results/sampling.json``.
"""
import argparse
import os
import sys
import time

import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from torch_geometric_mgvae.experiments.io import write_json  # noqa: E402
from torch_geometric_mgvae.models.molecule import MoleculeMGVAE  # noqa: E402

RESULTS = os.path.join(ROOT, 'benchmark', 'results')
METHODS = ('latent part once', 'latent part every round')


def load_model(path: str):
    r"""The model of a ``model.pt`` and the options of its run."""
    try:
        ck = torch.load(path, map_location='cpu', weights_only=False)
    except Exception as e:  # a missing, corrupt or foreign file
        raise SystemExit(f"sampling.py: cannot read '{path}' "
                         f"({type(e).__name__})") from e
    if not (isinstance(ck, dict) and 'model_kwargs' in ck):
        raise SystemExit(f"sampling.py: '{path}' is not a model.pt written "
                         f"by mgvae molecules")
    if not ck['model_kwargs'].get('masked_decoding'):
        raise SystemExit(f"sampling.py: '{path}' was trained without "
                         f"--masked-decoding")
    model = MoleculeMGVAE(**ck['model_kwargs'])
    model.load_state_dict(ck['model'])
    return model.eval(), ck.get('args') or {}


def sample(model: MoleculeMGVAE, method: str, num: int, rounds: int,
           tau: float):
    if method == METHODS[1]:  # recompute the first layer every round
        model.decoder.latent_preactivation = lambda z, mask: None
    try:
        t0 = time.perf_counter()
        out = model.sample(num, generator=torch.Generator().manual_seed(0),
                           rounds=rounds, decode_temperature=tau)
        return time.perf_counter() - t0, out
    finally:
        model.decoder.__dict__.pop('latent_preactivation', None)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--checkpoint', required=True,
                        help='model.pt of a mgvae molecules run with '
                        '--masked-decoding')
    parser.add_argument('--num-samples', type=int, default=5000)
    parser.add_argument('--rounds', type=int, nargs='+', default=[45, 16])
    parser.add_argument('--threads', type=int, default=1)
    parser.add_argument('--dataset', default='QM9',
                        help='the data set the checkpoint was trained on '
                        '(for the record)')
    parser.add_argument('--out', default=os.path.join(RESULTS,
                                                      'sampling.json'))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    model, ck_args = load_model(args.checkpoint)
    tau = float(ck_args.get('decode_temperature') or 0.0)
    load = os.getloadavg()[0]
    with torch.no_grad():
        sample(model, METHODS[0], 100, 2, tau)  # warm-up
    records, cmd = [], ('python benchmark/sampling.py --checkpoint '
                        'OUT/model.pt' +
                        (f' --threads {args.threads}'
                         if args.threads != 1 else ''))
    print(f'{"rounds":>6}  {"method":<24} {"seconds":>8}')
    for rounds in args.rounds:
        times, outs = {}, {}
        for method in METHODS:
            times[method], outs[method] = sample(model, method,
                                                 args.num_samples, rounds,
                                                 tau)
            print(f'{rounds:>6}  {method:<24} {times[method]:8.1f}',
                  flush=True)
        a, b = outs[METHODS[0]], outs[METHODS[1]]
        diff = max((a.atom_prob - b.atom_prob).abs().max().item(),
                   (a.bond_prob - b.bond_prob).abs().max().item())
        same = bool(torch.equal(a.atom_prob.argmax(-1),
                                b.atom_prob.argmax(-1)) and
                    torch.equal(a.bond_prob.argmax(-1),
                                b.bond_prob.argmax(-1)))
        ratio = times[METHODS[1]] / times[METHODS[0]]
        print(f'{rounds:>6}  speed-up {ratio:.2f}x, same molecules: {same} '
              f'(largest probability difference {diff:.1e})')
        for method, metric in ([(m, 'seconds') for m in METHODS] +
                               [(METHODS[0], 'speedup')]):
            records.append(dict(
                task='sampling', dataset=args.dataset,
                method=f'MGVAE masked decoding, {method}',
                setting=f'{rounds} rounds, {args.threads} thread(s)',
                metric=metric, value=(ratio if metric == 'speedup' else
                                      times[method]), std=None, n=1,
                protocol=(f'{args.num_samples} molecules, model.sample '
                          f'(prior + decoder, no RDKit), decoding '
                          f'temperature {tau}, torch threads '
                          f'{args.threads}, load average {load:.2f} at '
                          f'the start'),
                command=cmd, device='cpu', num_samples=args.num_samples,
                rounds=rounds, threads=args.threads, load_average=load,
                trained={k: ck_args.get(k) for k in (
                    'dataset', 'hidden', 'latent', 'epochs',
                    'decode_rounds', 'decode_temperature')},
                same_molecules=same, max_prob_difference=diff))
    write_json(args.out, records)
    print(f'wrote {args.out}')


if __name__ == '__main__':
    main()
