r"""A smoke test of the reliability probe runner (benchmark/probes.py); the
probes themselves are a benchmark, not part of the test suite."""
import json
import os
import sys

import pytest

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), '..')
sys.path.insert(0, os.path.join(ROOT, 'benchmark'))

import probes  # noqa: E402


def test_the_probe_classes_of_the_issue_are_covered():
    probes.build()
    by_class = {}
    for p in probes.PROBES.values():
        by_class.setdefault(p.cls, []).append(p)
        assert p.expect and p.what, p.name
    assert set(by_class) == set(probes.CLASSES)
    assert len(probes.PROBES) >= 200


def _res(rc, stderr='', stdout=''):
    return probes.CliResult(rc, stdout, stderr, 0.1, '/nonexistent')


def test_command_line_outcomes_are_classified():
    one = 'mgvae: error: argument --lr: must be > 0\n'
    assert probes.classify_cli(_res(2, one), (2, ))[0] == probes.CLEAR
    assert probes.classify_cli(_res(0), (2, ))[0] == probes.SILENT
    tb = 'Traceback (most recent call last):\n  File "x"\nKeyError: 1\n'
    assert probes.classify_cli(_res(1, tb), (1, ))[0] == probes.TRACEBACK
    # the wrong exit code, or a message that does not name the problem:
    assert probes.classify_cli(_res(1, one), (2, ))[0] == probes.TRACEBACK
    assert probes.classify_cli(_res(2, one), (2, ), match='epoch')[0] == \
        probes.TRACEBACK
    assert probes.classify_cli(_res(None), (2, ))[0] == probes.TRACEBACK
    # a declared property that does not hold is silently wrong:
    assert probes.classify_cli(_res(0), (0, ), lambda r: (False, 'NaN'))[0] \
        == probes.SILENT
    assert probes.classify_cli(_res(0), (0, ), lambda r: True)[0] == \
        probes.DEFINED
    assert probes.classify_cli(_res(1, one), (0, ))[0] == probes.TRACEBACK


def test_runner_writes_records_and_a_table(tmp_path):
    names = ['x-nan', 'one-way-edges', 'mgvae-clusters-4', 'demo-lr-0']
    results = probes.run_probes(names, verbose=False)
    outcome = {r['name']: r['outcome'] for r in results}
    assert outcome == {'x-nan': probes.CLEAR,
                       'one-way-edges': probes.DEFINED,
                       'mgvae-clusters-4': probes.CLEAR,
                       'demo-lr-0': probes.CLEAR}, results
    records = probes.to_records(results, 1.0)
    total = {r['metric']: r['value'] for r in records
             if r['dataset'] == 'total'}
    assert total == {'inputs tried': 4, 'clear errors': 3,
                     'defined results': 1, 'tracebacks': 0,
                     'silent wrong': 0}
    per_class = [r for r in records if r['metric'] == 'inputs tried'
                 and r['dataset'] != 'total']
    assert sum(len(r['probes']) for r in per_class) == 4
    json.dumps(records, allow_nan=False)
    table = probes.format_table(probes.summarize(results))
    assert '| **total** | **4** | **3** | **1** | **0** | **0** |' in table


@pytest.mark.parametrize('name', ['x-nan'])
def test_a_probe_runs_in_this_process_too(name, tmp_path):
    probes.build()
    ctx = probes.Context(str(tmp_path), {})
    outcome, detail = probes.PROBES[name].run(ctx)
    assert outcome == probes.CLEAR, detail


def test_a_partial_run_keeps_the_records(tmp_path, monkeypatch, capsys):
    # --only must not replace the full record with a few probes
    default = tmp_path / 'reliability.json'
    monkeypatch.setattr(probes, 'RESULTS', str(default))
    assert probes.main(['--only', '^x-nan$']) == 0
    assert not default.exists()
    assert 'not written' in capsys.readouterr().out
    named = tmp_path / 'some.json'
    assert probes.main(['--only', '^x-nan$', '--results', str(named)]) == 0
    records = json.loads(named.read_text())
    assert {r['value'] for r in records
            if r['metric'] == 'inputs tried' and r['dataset'] == 'total'} \
        == {1}
