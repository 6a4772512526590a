r"""Regenerates the README's results tables from benchmark/results/*.json.

    python benchmark/make_tables.py          # rewrite README.md in place
    python benchmark/make_tables.py --check  # fail if README.md is stale

The tables sit between ``<!-- results:NAME -->`` and ``<!-- /results:NAME
-->`` markers; NAME is the JSON file's stem.
"""
import argparse
import json
import os
import re
import sys
from collections import OrderedDict

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RESULTS = os.path.join(ROOT, 'benchmark', 'results')
# The renderers import this checkout's package, not an installed one.
sys.path.insert(0, ROOT)


def fmt(v, std=None):
    if v is None:
        return '—'
    if isinstance(v, float):
        a = abs(v)
        s = (f'{v:.0f}' if a >= 100 else f'{v:.2f}' if a >= 1 else
             f'{v:.3g}')
    else:
        s = str(v)
    if std is not None:
        s += f' ± {std:.2g}'
    return s


def table(records):
    r"""One Markdown table: rows = (dataset, method, setting), columns =
    metrics; a command column lists the command of every row."""
    metrics = list(OrderedDict.fromkeys(r['metric'] for r in records))
    rows = OrderedDict()
    for r in records:
        key = (r['dataset'], r['method'], str(r.get('setting') or ''))
        rows.setdefault(key, {})[r['metric']] = r
    head = ['dataset', 'method'] + metrics + ['command']
    has_setting = any(k[2] for k in rows)
    if has_setting:
        head.insert(2, 'setting')
    lines = ['| ' + ' | '.join(head) + ' |',
             '|' + '---|' * len(head)]
    for (ds, method, setting), cells in rows.items():
        cmd = next(iter(cells.values())).get('command', '')
        vals = []
        for m in metrics:
            r = cells.get(m)
            if r is None:
                vals.append('')
            elif r.get('value') is None:
                vals.append(r.get('error', 'failed'))
            else:
                vals.append(fmt(r['value'], r.get('std')))
        row = [ds, method] + ([setting] if has_setting else []) + vals
        row.append(f'`{cmd}`' if cmd else '')
        lines.append('| ' + ' | '.join(row) + ' |')
    return '\n'.join(lines)


def _pct(r):
    return '' if r is None or r.get('value') is None else \
        f"{100 * r['value']:.2f}%"


def molecule_table(records):
    r"""The molecule generation table: one row per (dataset, method,
    correction setting); rates in percent, QED as mean ± std over the
    valid molecules, FCD and NSPDK MMD against the test set, seconds to
    sample."""
    rows = OrderedDict()
    for r in records:
        key = (r['dataset'], r['method'], str(r.get('setting') or ''))
        rows.setdefault(key, {})[r['metric']] = r
    train = {(r['dataset'], r['method']): r for r in records
             if r['metric'] == 'train_seconds'}
    head = ['dataset', 'method', 'correction', 'validity',
            'valid & connected', 'uniqueness', 'novelty',
            'novelty (vs trained-on)', 'QED', 'FCD', 'NSPDK MMD',
            'sampling (s)', 'training (s)', 'command']
    lines = ['| ' + ' | '.join(head) + ' |', '|' + '---|' * len(head)]
    for (ds, method, setting), cells in rows.items():
        if set(cells) == {'train_seconds'}:
            continue
        get = cells.get
        qed = get('QED')
        fcd = get('FCD')
        fcd_cell = ('' if fcd is None else fmt(fcd['value']) if
                    fcd.get('value') is not None else
                    fcd.get('error', 'failed'))
        nspdk = get('NSPDK MMD')
        t = train.get((ds, method))
        cmd = next(iter(cells.values())).get('command', '')
        row = [ds, method, setting or '—', _pct(get('validity')),
               _pct(get('valid_connected')), _pct(get('uniqueness')),
               _pct(get('novelty')), _pct(get('novelty_seen')),
               '' if qed is None else fmt(qed['value'], qed.get('std')),
               fcd_cell, '' if nspdk is None else fmt(nspdk['value']),
               '' if get('sample_seconds') is None else
               fmt(get('sample_seconds')['value']),
               '' if t is None or setting not in ('', 'w/o correction')
               else fmt(t['value']),
               f'`{cmd}`' if cmd else '']
        lines.append('| ' + ' | '.join(row) + ' |')
    return '\n'.join(lines)


def link_table(records):
    r"""The link prediction table of
    :func:`torch_geometric_mgvae.experiments.link_prediction.format_table`,
    followed by the command(s) that produced it."""
    from torch_geometric_mgvae.experiments.link_prediction import format_table
    commands = list(OrderedDict.fromkeys(r.get('command', '')
                                         for r in records))
    return format_table(records) + '\n\n' + '\n\n'.join(
        f'Command: `{c}`' for c in commands if c)


def pooling_table(records):
    r"""One row per (input, pooling layer): forward + backward time, its
    ratio to TopKPooling's on the same input, peak memory, nodes after
    pooling."""
    cells = OrderedDict()
    for r in records:
        cells.setdefault((r['dataset'], r['method']), {})[r['metric']] = r
    lines = ['| input | layer | CPU ms (fwd + bwd) | x TopKPooling | '
             'wall ms | peak MB | nodes after pooling |',
             '|---|---|---|---|---|---|---|']
    for (ds, method), c in cells.items():
        t, m = c.get('cpu_seconds', {}), c.get('peak_mem_mb', {})
        w = c.get('step_seconds', {})
        topk = cells.get((ds, 'TopKPooling'), {}).get('cpu_seconds', {})
        if t.get('value') is None:
            lines.append(f'| {ds} | {method} | {t.get("error", "failed")} '
                         f'| | | | |')
            continue
        ratio = (f'{t["value"] / topk["value"]:.2f}'
                 if topk.get('value') else '')
        lines.append(f'| {ds} | {method} | {1e3 * t["value"]:.2f} | '
                     f'{ratio} | {1e3 * w["value"]:.2f} | '
                     f'{fmt(m.get("value"))} | '
                     f'{t.get("pooled_nodes", "")} |')
    cmds = OrderedDict.fromkeys(r['command'] for r in records)
    lines.append('')
    lines += [f'Command: `{c}`' for c in cmds]
    return '\n'.join(lines)


def reliability_table(records):
    r"""The reliability probes of ``benchmark/probes.py``: one row per
    probe class (inputs tried and the count of every outcome), then the
    total and the command."""
    metrics = ('inputs tried', 'clear errors', 'defined results',
               'tracebacks', 'silent wrong')
    cells = OrderedDict()
    for r in records:
        cells.setdefault(r['dataset'], {})[r['metric']] = r['value']
    lines = ['| probe class | ' + ' | '.join(metrics) + ' |',
             '|---|' + '---|' * len(metrics)]
    for cls, c in cells.items():
        row = [cls] + ['' if c.get(m) is None else str(int(c[m]))
                       for m in metrics]
        if cls == 'total':
            row = [f'**{x}**' for x in row]
        lines.append('| ' + ' | '.join(row) + ' |')
    cmds = OrderedDict.fromkeys(r['command'] for r in records)
    lines.append('')
    lines += [f'Command: `{c}`' for c in cmds]
    return '\n'.join(lines)


def image_table(records):
    r"""The FID table of :func:`torch_geometric_mgvae.experiments.images.
    format_table` (with the paper's Table 11 quoted below the measured
    rows), followed by the command(s) that produced it."""
    from torch_geometric_mgvae.experiments.images import format_table
    commands = list(OrderedDict.fromkeys(r.get('command', '')
                                         for r in records))
    return format_table(records) + '\n\n' + '\n\n'.join(
        f'Command: `{c}`' for c in commands if c)


def _mae(r):
    if r is None:
        return ''
    if r.get('value') is None:
        return r.get('error', 'failed')
    return fmt(r['value'], r.get('std'))


def property_table(records):
    r"""Property prediction: a ZINC-12k table (one row per method: MAE of
    both targets, parameters, epoch time) and a QM9 table (one row per
    method, one column per Table-9 target), each followed by the numbers
    reported by others (not measured here) and the commands."""
    from torch_geometric_mgvae.experiments.properties import (
        QM9_TABLE9,
        REPORTED,
    )
    out = []
    for ds, key in (('ZINC-12k', 'zinc'), ('QM9', 'qm9')):
        recs = [r for r in records if r['dataset'] == ds]
        if not recs:
            continue
        maes = [r for r in recs if r['metric'] == 'MAE']
        targets = list(OrderedDict.fromkeys(r['setting'] for r in maes))
        if key == 'qm9':
            targets = [t for t, *_ in QM9_TABLE9 if t in targets]
        cell = {(r['mode'], r['method'], r['setting']): r for r in maes}
        secs = {}
        for r in recs:
            if r['metric'] == 'epoch_seconds':
                secs.setdefault(r['method'], []).append(r)
        rows = list(OrderedDict.fromkeys((r['mode'], r['method'])
                                         for r in maes))
        units = {r['setting']: r.get('unit') for r in maes}
        head = ['mode', 'method'] + [
            f'{t} ({units[t]})' if units.get(t) else t for t in targets]
        if key == 'qm9':
            head.append('omega1 (cm^-1)')
        head += ['parameters', 'epochs', 's / epoch']
        lines = [f'**{ds}** (test MAE, mean ± std over seeds)', '',
                 '| ' + ' | '.join(head) + ' |', '|' + '---|' * len(head)]
        for mode, method in rows:
            first = next(r for r in maes if (r['mode'], r['method']) ==
                         (mode, method))
            vals = [_mae(cell.get((mode, method, t))) for t in targets]
            if key == 'qm9':
                vals.append('not in the data')
            ep = first.get('epochs') or first.get('mlp_epochs')
            s = secs.get(method, [])
            sec = ', '.join(fmt(r['value']) for r in s)
            params = first.get('num_params',
                               f"{first.get('feature_channels', '')} "
                               f"features")
            lines.append('| ' + ' | '.join(
                [mode, method] + vals + [str(params), str(ep or ''),
                                         sec]) + ' |')
        for name, value in REPORTED[key].items():
            if isinstance(value, dict):
                vals = [fmt(value.get(t)) for t in targets]
                vals.append(fmt(value.get('omega1')))
            else:
                vals = [''] * len(targets)
                vals[-1 if name.startswith('MGN') else 0] = fmt(value)
            lines.append('| reported | ' + name + ' | ' + ' | '.join(
                vals + ['', '', '']) + ' |')
        cmds = OrderedDict.fromkeys(r['command'] for r in recs)
        lines.append('')
        lines += [f'Command: `{c}`' for c in cmds]
        lines.append('')
        out.append('\n'.join(lines))
    return '\n'.join(out).rstrip()


def sbm_table(records):
    r"""The mini-batched against full-batch link prediction table of
    ``scale.py --sbm``: one row per (method, training length), AUC and AP
    in percent, and the mini-batched AUC minus the full-batch AUC of as
    many optimizer steps, in points."""
    rows = OrderedDict()
    for r in records:
        key = (r['method'], str(r.get('setting') or ''), r.get('steps'))
        rows.setdefault(key, {})[r['metric']] = r
    full = {steps: cells['AUC']['value'] for (m, _, steps), cells
            in rows.items() if 'full batch' in m and 'AUC' in cells}
    datasets = OrderedDict.fromkeys(r['dataset'] for r in records)
    lines = [f'Graph: {d}.' for d in datasets] + ['']
    lines += ['| method | training | AUC (%) | AP (%) | mini-batched - full '
              'batch (AUC points) | selected epoch | train s | command |',
              '|---|---|---|---|---|---|---|---|']

    def v(cells, m, scale=1.0):
        r = cells.get(m)
        return '' if r is None or r.get('value') is None else \
            fmt(scale * r['value'])

    for (method, setting, steps), cells in rows.items():
        auc = cells.get('AUC', {}).get('value')
        diff = ''
        if 'mini' in method and auc is not None and steps in full:
            diff = f'{100 * (auc - full[steps]):+.2f}'
        sel = cells.get('selected_epoch', {}).get('value')
        cmd = next(iter(cells.values())).get('command', '')
        lines.append('| ' + ' | '.join([
            method, setting, v(cells, 'AUC', 100), v(cells, 'AP', 100), diff,
            '' if sel is None else str(int(sel)), v(cells, 'train_seconds'),
            f'`{cmd}`']) + ' |')
    return '\n'.join(lines)


#: Results files with a table of their own (the others use :func:`table`).
RENDERERS = {'molecule_generation': molecule_table,
             'link_prediction': link_table, 'pooling': pooling_table,
             'reliability': reliability_table,
             'property_prediction': property_table,
             'image_generation': image_table, 'scale_sbm': sbm_table}


def render(readme: str) -> str:
    def repl(m):
        name = m.group(1)
        path = os.path.join(RESULTS, f'{name}.json')
        if not os.path.exists(path):
            return m.group(0)
        with open(path) as f:
            records = json.load(f)
        body = RENDERERS.get(name, table)(records)
        return (f'<!-- results:{name} -->\n{body}\n'
                f'<!-- /results:{name} -->')
    return re.sub(r'<!-- results:(\w+) -->.*?<!-- /results:\1 -->', repl,
                  readme, flags=re.S)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument('--check', action='store_true')
    args = parser.parse_args()
    path = os.path.join(ROOT, 'README.md')
    with open(path) as f:
        old = f.read()
    new = render(old)
    if args.check:
        if new != old:
            print('README.md results tables are stale: run '
                  'python benchmark/make_tables.py')
            return 1
        return 0
    with open(path, 'w') as f:
        f.write(new)
    return 0


if __name__ == '__main__':
    sys.exit(main())
