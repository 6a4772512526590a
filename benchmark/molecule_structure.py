r"""Ring structure of generated molecules against the test set.

FCD and NSPDK say how far the samples are from the test molecules, not
what differs. This reads the samples a ``mgvae molecules`` run wrote under
its ``--out`` (``samples_raw.smi``, ``samples_corrected.smi``,
``samples_joined.smi``) and reports, per setting and for the test split as
the reference, the ring statistics of the valid molecules
(:func:`torch_geometric_mgvae.chem.ring_stats`): heavy atoms, fragments
and rings per molecule, the share of molecules with an aromatic ring, the
aromatic rings per molecule and the shares of rings with 3-4, 5-6 and 7
or more atoms, with each value's ratio to the test set's.

    python benchmark/molecule_structure.py --dataset zinc --root ROOT OUT...

``ROOT`` is the run's ``--root`` (the raw files are copied there from
``../shared/data`` if missing, as ``mgvae molecules`` does). Writes
``benchmark/results/molecule_structure.json`` (records of other runs are
kept).
"""
import argparse
import json
import math
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from torch_geometric_mgvae.chem import ring_stats  # noqa: E402
from torch_geometric_mgvae.experiments.molecules import (  # noqa: E402
    DATASETS,
    SAMPLE_FILES,
    load_splits,
)
from torch_geometric_mgvae.experiments.results import (  # noqa: E402
    record,
    write_records,
)

RESULTS = os.path.join(ROOT, 'benchmark', 'results',
                       'molecule_structure.json')
TEST = 'test set (reference)'
COLUMNS = ('atoms', 'fragments', 'rings', 'aromatic', 'aromatic_rings',
           'ring_3_4', 'ring_5_6', 'ring_7_plus')


def run_method(out: str) -> str:
    r"""The method name the run recorded in its ``summary.json``."""
    path = os.path.join(out, 'summary.json')
    try:
        with open(path) as f:
            records = json.load(f)['records']
        return next(r['method'] for r in records
                    if r.get('setting') in SAMPLE_FILES)
    except (OSError, ValueError, KeyError, StopIteration) as e:
        raise SystemExit(f'error: {path} is not the summary of an '
                         f'all-at-once mgvae molecules run ({e!r})')


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('runs', nargs='+', metavar='OUT',
                        help='--out folders of mgvae molecules runs')
    parser.add_argument('--dataset', default='zinc', choices=sorted(DATASETS))
    parser.add_argument('--root', required=True)
    parser.add_argument('--results', default=RESULTS)
    args = parser.parse_args(argv)
    label = DATASETS[args.dataset]['label']
    methods = {out: run_method(out) for out in args.runs}
    _, test, _ = load_splits(args.dataset, args.root, num_train=1)
    rows = [('', TEST, None, ring_stats([d.smiles for d in test]))]
    for out, method in methods.items():
        for setting, name in SAMPLE_FILES.items():
            path = os.path.join(out, name)
            if not os.path.exists(path):
                continue
            with open(path) as f:
                rows.append((out, method, setting,
                             ring_stats(f.read().split('\n'))))
    ref = rows[0][3]
    print(f'{"run (--out)":<24}{"setting":<27}' +
          ''.join(f'{c:>15}' for c in COLUMNS))
    records = []
    protocol = ('ring statistics of the valid molecules (RDKit SSSR '
                'rings; aromatic = has an aromatic ring; aromatic_rings = '
                'rings with only aromatic bonds, per molecule); ratio = '
                'value / the test split\'s')
    for out, method, setting, stats in rows:
        name = os.path.basename(os.path.normpath(out)) if out else TEST
        print(f'{name[:23]:<24}{(setting or "")[:26]:<27}' +
              ''.join(f'{stats[c]:>15.3f}' for c in COLUMNS))
        extra = {} if setting is None else {'setting': setting}
        for c in COLUMNS:
            records.append(record('molecule_structure', label, method, c,
                                  stats[c], protocol=protocol, **extra))
            ratio = stats[c] / ref[c] if ref[c] else math.nan
            if setting is not None:
                records.append(record('molecule_structure', label, method,
                                      f'{c}_ratio', ratio,
                                      protocol=protocol, **extra))
    write_records(args.results, records)
    print(f'wrote {args.results}')


if __name__ == '__main__':
    main()
