"""Result records in the tidy format of the project's benchmarks.

A list of flat records per JSON file: the benchmark scripts write
``benchmark/results/<name>.json`` (committed, behind the README tables);
the :obj:`mgvae` commands write ``OUT/<task>.json`` unless :obj:`--results`
names a file. Files are replaced atomically and hold no bare NaN::

    {"task": "link_prediction", "dataset": "Cora", "method": "MGVAE",
     "metric": "AUC", "value": 0.951, "std": 0.004, "n": 5,
     "protocol": "RandomLinkSplit(0.05,0.1)", "command": "python ...",
     "device": "cpu"}
"""
import json
import math
import os
import platform
import shlex
import sys
from typing import (
    Any,
    Callable,
    Dict,
    Iterable,
    List,
    Optional,
    Sequence,
    Tuple,
)

from torch_geometric_mgvae.experiments.io import write_json

REQUIRED = ('task', 'dataset', 'method', 'metric', 'value')


def record(task: str, dataset: str, method: str, metric: str,
           value: Optional[float],
           std: Optional[float] = None, n: Optional[int] = None,
           protocol: Optional[str] = None, command: Optional[str] = None,
           device: str = 'cpu', **extra: Any) -> Dict[str, Any]:
    r"""Builds one flat result record.

    :obj:`command` defaults to the command line of the running process. A
    failed measurement has :obj:`value=None` and says why in :obj:`error`;
    a non-finite :obj:`value` is stored that way (JSON has no NaN), a
    non-finite :obj:`std` as :obj:`None`.
    """
    if value is not None and not math.isfinite(float(value)):
        extra.setdefault('error', f'non-finite value ({float(value)})')
        value = None
    if std is not None and not math.isfinite(float(std)):
        std = None
    out: Dict[str, Any] = dict(task=task, dataset=dataset, method=method,
                               metric=metric,
                               value=None if value is None else float(value))
    out['std'] = None if std is None else float(std)
    out['n'] = n
    out['protocol'] = protocol
    out['command'] = command if command is not None else current_command()
    out['device'] = device
    out.update(extra)
    return out


def current_command() -> str:
    r"""The command line of this process, as a user would type it."""
    argv = list(sys.argv)
    if argv and argv[0].endswith('.py'):
        argv = ['python', os.path.relpath(argv[0])] + argv[1:]
    elif argv:
        argv[0] = os.path.basename(argv[0])
    return ' '.join(shlex.quote(a) for a in argv)


def machine() -> str:
    r"""A short description of the machine the numbers were measured on."""
    return f'{platform.machine()} {os.cpu_count()} cores, {platform.system()}'


def read_records(path: str) -> List[Dict[str, Any]]:
    r"""The records of the JSON file at :obj:`path` (:obj:`[]` if there is
    none); a file that is not a JSON list raises a :obj:`ValueError` naming
    it (checked before a run, so that it fails before training, not
    after)."""
    if not os.path.exists(path):
        return []
    try:
        with open(path) as f:
            records = json.load(f)
    except (ValueError, UnicodeDecodeError) as e:
        raise ValueError(f"Result file '{path}' is not valid JSON ({e}); "
                         f"move it away or give another --results") from e
    except OSError as e:  # a folder, unreadable, ...
        raise ValueError(f"Result file '{path}' cannot be read "
                         f"({e.strerror or e}); give another --results"
                         ) from e
    if not isinstance(records, list) or not all(
            isinstance(r, dict) for r in records):
        raise ValueError(f"Result file '{path}' is not a JSON list of "
                         f"records; move it away or give another --results")
    return records


def write_records(path: str, records: Iterable[Dict[str, Any]],
                  replace: bool = True) -> List[Dict[str, Any]]:
    r"""Writes :obj:`records` to the JSON file at :obj:`path`.

    With :obj:`replace=True`, records already in the file that share
    ``(task, dataset, method, metric)`` and any extra keys used as settings
    (``setting``) with a new record are replaced; the others are kept, so
    several commands can contribute to one file. The file is replaced
    atomically (:func:`~torch_geometric_mgvae.experiments.io.write_json`).
    """
    records = list(records)
    for r in records:
        missing = [k for k in REQUIRED if k not in r]
        if missing:
            raise ValueError(f"Record {r} misses the keys {missing}")
    old = read_records(path) if replace else []

    def key(r: Dict[str, Any]) -> tuple:
        return (r['task'], r['dataset'], r['method'], r['metric'],
                str(r.get('setting')))

    new_keys = {key(r) for r in records}
    merged = [r for r in old if key(r) not in new_keys] + records
    write_json(path, merged)
    return merged


def write_dataset_records(path: str, task: str, dataset: str,
                          records: List[Dict[str, Any]],
                          same_run: Optional[Callable[[Dict[str, Any]],
                                                      bool]] = None):
    r"""Writes :obj:`records` to :obj:`path`, first dropping every old
    record of :obj:`(task, dataset)` (a rerun with another configuration
    renames the MGVAE method, which :func:`write_records` alone would
    keep). With :obj:`same_run`, only the old records of
    :obj:`(task, dataset)` for which it returns :obj:`True` are dropped, so
    runs of different kinds (e.g. other coarsening depths) stay side by
    side."""
    old = read_records(path)
    if old:
        kept = [r for r in old
                if (r.get('task'), r.get('dataset')) != (task, dataset)
                or (same_run is not None and not same_run(r))]
        if len(kept) != len(old):
            write_records(path, kept, replace=False)
    return write_records(path, records, replace=True)


def mean_std(values: Sequence[float]) -> Tuple[float, Optional[float]]:
    r"""Mean and sample standard deviation (:obj:`None` for one value) of
    the per-seed :obj:`values` of a record."""
    n = len(values)
    mean = sum(float(v) for v in values) / n
    if n < 2:
        return mean, None
    var = sum((float(v) - mean)**2 for v in values) / (n - 1)
    return mean, var**0.5
