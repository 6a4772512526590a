import glob
import json
import math
import os
import subprocess
import sys

import pytest

from torch_geometric_mgvae.experiments.results import (
    REQUIRED,
    record,
    write_records,
)

ROOT = os.path.join(os.path.dirname(__file__), '..')


@pytest.mark.parametrize('path', sorted(
    glob.glob(os.path.join(ROOT, 'benchmark', 'results', '*.json'))))
def test_result_files_use_the_record_format(path):
    with open(path) as f:
        records = json.load(f)
    assert isinstance(records, list) and records
    for r in records:
        for key in REQUIRED + ('command', 'device', 'protocol'):
            assert key in r, (path, key)
        v = r['value']
        assert v is None or isinstance(v, (int, float))
        if v is None or (isinstance(v, float) and math.isnan(v)):
            assert r.get('error'), r  # a failure says why


def test_readme_tables_are_up_to_date():
    proc = subprocess.run([sys.executable, 'benchmark/make_tables.py',
                           '--check'], cwd=ROOT, capture_output=True,
                          text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_write_records_merges_by_key(tmp_path):
    path = str(tmp_path / 'r.json')
    a = record('t', 'd', 'm', 'AUC', 0.5, command='c')
    b = record('t', 'd', 'm', 'AP', 0.6, command='c')
    write_records(path, [a, b])
    write_records(path, [record('t', 'd', 'm', 'AUC', 0.7, command='c')])
    with open(path) as f:
        out = {r['metric']: r['value'] for r in json.load(f)}
    assert out == {'AUC': 0.7, 'AP': 0.6}
    with pytest.raises(ValueError):
        write_records(path, [{'task': 't'}])
