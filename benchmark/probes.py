r"""Reliability probes: a careful user trying to break the package.

Every probe tries one bad (or borderline) input and declares the correct
outcome beforehand: a clear error (an exception of a given type whose
one-line message names the problem; for the command line: the expected exit
code and one line ``mgvae: error: ...``) or a defined result checked by a
property (finite loss, sizes, a file left unchanged, nothing written outside
``--out``, ...). Running the probe classifies it as

* ``clear error``: the declared error;
* ``defined result``: a result with the declared property;
* ``traceback``: an uncaught exception, a multi-line error, an exception of
  the wrong type or an error message that does not name the problem (and an
  error where a result was expected);
* ``silent wrong``: a result that violates the declared property (NaN, a
  file written where it should not be, code run from a crafted file, bad
  input accepted without an error).

The probe classes are those of issue 12: model inputs, hyper-parameters of
every public class, every command line option, non-finite training,
interrupts and :obj:`--resume`, corrupt, truncated and crafted files,
missing raw files offline, and outputs outside :obj:`--out`.

Every probe runs in its own process, forked from a server that imported
torch and the package once: API probes call the library; command line
probes run :func:`torch_geometric_mgvae.cli.main` as
``python -m torch_geometric_mgvae.cli`` does (stdout/stderr to files, the
exit code, SIGINT/SIGTERM sent by this script); two probes start the real
entry point as a subprocess. Networking is switched off in the probe
processes (host name lookups fail), every file is written under a
temporary folder that is removed at the end, and the shared data folder
(``../shared/data``: a QM9 and a ZINC slice, Cora) is only read; probes
whose data is missing are skipped and not counted.

    python benchmark/probes.py                    # all probes (~4 min)
    python benchmark/probes.py --classes cli      # one class
    python benchmark/probes.py --only demo-lr-10  # probes by name (regex)
    python benchmark/probes.py --list             # names and expectations

Writes ``benchmark/results/reliability.json`` (records: task
``reliability``, per probe class the number of inputs tried and of every
outcome, with the list of probes and their outcomes) after a run of all
probes, unless :obj:`--results` names another file or :obj:`--no-write` is
given (a partial run writes only a file named by :obj:`--results`); prints
a table per class and overall.
"""
import argparse
import contextlib
import gzip
import json
import math
import multiprocessing
import os
import os.path as osp
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import traceback
import warnings
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

RESULTS = osp.join(ROOT, 'benchmark', 'results', 'reliability.json')
#: The shared data folder (read only); --shared sets it (through the
#: environment, so that the probe processes see it too).
SHARED = os.environ.get('MGVAE_PROBES_SHARED') or osp.abspath(
    osp.join(ROOT, '..', 'shared', 'data'))
COMMAND = 'python benchmark/probes.py'
TASK = 'reliability'

CLEAR, DEFINED, TRACEBACK, SILENT = ('clear error', 'defined result',
                                     'traceback', 'silent wrong')
OUTCOMES = (CLEAR, DEFINED, TRACEBACK, SILENT)
SKIPPED = 'skipped'
#: Probe classes: key -> the name in the tables.
CLASSES = OrderedDict([
    ('inputs', 'model inputs'),
    ('hparams', 'hyper-parameters'),
    ('cli', 'command line options'),
    ('nonfinite', 'non-finite training'),
    ('signals', 'interrupts and --resume'),
    ('files', 'corrupt, truncated and crafted files'),
    ('offline', 'missing raw files offline'),
    ('outputs', 'outputs only under --out'),
])
#: Modules the probe processes start with (imported once, then forked).
PRELOAD = ['torch', 'torch_geometric', 'numpy', 'scipy.optimize',
           'torch_geometric_mgvae', 'torch_geometric_mgvae.cli',
           'torch_geometric_mgvae.experiments.generation',
           'torch_geometric_mgvae.experiments.link_prediction',
           'torch_geometric_mgvae.experiments.molecules',
           'torch_geometric_mgvae.metrics', 'matplotlib.pyplot', 'rdkit.Chem']
#: A file that crafted pickles try to create (code execution).
PWNED = 'PWNED'


# The probe registry ######################################################

@dataclass
class Probe:
    r"""One input tried: :obj:`run(ctx)` returns :obj:`(outcome, detail)`;
    :obj:`local` probes run in a forked process, the others (command line
    probes) here, starting their own processes."""
    name: str
    cls: str
    what: str
    expect: str
    run: Callable[['Context'], Tuple[str, str]]
    local: bool = True
    needs: Tuple[str, ...] = ()  # shared data sets required


PROBES: 'OrderedDict[str, Probe]' = OrderedDict()


def add(probe: Probe) -> Probe:
    if probe.name in PROBES:
        raise ValueError(f'duplicate probe {probe.name}')
    if probe.cls not in CLASSES:
        raise ValueError(f'unknown class {probe.cls}')
    PROBES[probe.name] = probe
    return probe


def _one_line(text: str) -> bool:
    text = text.strip()
    return bool(text) and '\n' not in text


def _first(text: str, limit: int = 160) -> str:
    lines = [ln for ln in str(text).strip().splitlines() if ln.strip()]
    line = lines[0] if lines else ''
    more = f' (+{len(lines) - 1} lines)' if len(lines) > 1 else ''
    return (line[:limit - 3] + '...' if len(line) > limit else line) + more


def _check_result(check, value) -> Tuple[bool, str]:
    res = check(value)
    if isinstance(res, tuple):
        return bool(res[0]), str(res[1])
    return bool(res), ''


def api(cls: str, name: str, what: str, call: Callable[[], Any], *,
        error: Optional[Tuple[type, ...]] = None, match: Optional[str] = None,
        check: Optional[Callable[[Any], Any]] = None,
        warns: Optional[str] = None, expect: Optional[str] = None,
        needs: Tuple[str, ...] = ()) -> Probe:
    r"""A probe of the Python API. :obj:`error`: the exception types of a
    clear error, whose one-line message must match :obj:`match` (a regex,
    case-insensitive); :obj:`check`: the property of a defined result
    (returns a bool or :obj:`(bool, detail)`); :obj:`warns`: a warning the
    result must come with. At least one of :obj:`error` and :obj:`check`."""
    assert error is not None or check is not None
    if expect is None:
        parts = []
        if error is not None:
            parts.append('/'.join(t.__name__ for t in error) +
                         (f' naming /{match}/' if match else ''))
        if check is not None:
            parts.append('a result: ' + (check.__doc__ or 'checked').strip())
        expect = ' or '.join(parts)
    if warns:
        expect += f' (with a warning /{warns}/)'

    def run(ctx: 'Context') -> Tuple[str, str]:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter('always')
            try:
                value = call(ctx) if _takes_ctx(call) else call()
            except Exception as e:  # noqa: BLE001 (classified)
                msg = str(e)
                head = f'{type(e).__name__}: {_first(msg)}'
                if error is not None and isinstance(e, error):
                    if not _one_line(msg):
                        return TRACEBACK, f'multi-line message: {head}'
                    if match and not re.search(match, msg, re.I):
                        return TRACEBACK, f'message does not name the ' \
                            f'problem: {head}'
                    return CLEAR, head
                where = traceback.extract_tb(e.__traceback__)[-1]
                return TRACEBACK, (f'{head} [{osp.basename(where.filename)}'
                                   f':{where.lineno}]')
        if check is None:
            return SILENT, 'accepted without an error' + _result_note(value)
        ok, detail = _check_result(check, value)
        if ok and warns and not any(re.search(warns, str(w.message), re.I)
                                    for w in caught):
            ok, detail = False, f'no warning /{warns}/; {detail}'
        return (DEFINED if ok else SILENT), detail
    return add(Probe(name, cls, what, expect, run, True, needs))


def _takes_ctx(fn) -> bool:
    import inspect
    try:
        params = list(inspect.signature(fn).parameters)
    except (TypeError, ValueError):
        return False
    return bool(params) and params[0] == 'ctx'


def _result_note(value: Any) -> str:
    try:
        import torch
        if isinstance(value, torch.Tensor) and value.numel() == 1:
            return f' (value {float(value):.4g})'
    except Exception:  # noqa: BLE001
        pass
    return ''


# Command line probes #####################################################

@dataclass
class CliResult:
    rc: Optional[int]
    stdout: str
    stderr: str
    seconds: float
    cwd: str

    def lines(self) -> List[str]:
        return [ln.strip() for ln in self.stderr.splitlines()
                if ln.strip().startswith('mgvae:')]


def classify_cli(res: CliResult, rc: Sequence[int],
                 check: Optional[Callable[[CliResult], Any]] = None,
                 match: Optional[str] = None,
                 debug: bool = False) -> Tuple[str, str]:
    r"""The outcome of a command line run expected to exit with one of
    :obj:`rc` (0: a defined result satisfying :obj:`check`; else a clear
    error: one line ``mgvae: ...`` matching :obj:`match`, then
    :obj:`check`)."""
    if res.rc is None:
        return TRACEBACK, f'hung: killed after {res.seconds:.0f} s'
    lines = res.lines()
    last = lines[-1] if lines else _first(res.stderr) or '(no message)'
    if not debug and 'Traceback (most recent call last)' in res.stderr:
        tail = [ln for ln in res.stderr.strip().splitlines() if ln.strip()]
        return TRACEBACK, f'exit {res.rc}: traceback ending ' \
            f'{tail[-1][:160] if tail else ""}'
    if res.rc == 0:
        if 0 not in rc:
            return SILENT, 'exit 0: accepted'
        ok, detail = _check_result(check, res) if check else (True, 'exit 0')
        return (DEFINED if ok else SILENT), detail
    if res.rc not in rc:
        if tuple(rc) == (0, ):
            return TRACEBACK, f'exit {res.rc} where a result was expected: ' \
                f'{last}'
        return TRACEBACK, f'exit {res.rc} (expected ' \
            f'{"/".join(map(str, rc))}): {last}'
    if not lines:
        return TRACEBACK, f'exit {res.rc} without an mgvae: line: {last}'
    if len(lines) > 1 and res.rc != 130:
        return TRACEBACK, f'{len(lines)} error lines: {last}'
    if match and not re.search(match, last, re.I):
        return TRACEBACK, f'exit {res.rc}, message does not name the ' \
            f'problem (/{match}/): {last[:160]}'
    if check is not None:
        ok, detail = _check_result(check, res)
        if not ok:
            return SILENT, f'{detail} ({last[:120]})'
    return CLEAR, f'exit {res.rc}: {last[:200]}'


def cli(cls: str, name: str, what: str, argv: Sequence[str], *,
        rc: Sequence[int] = (2, ), setup: Optional[Callable] = None,
        check: Optional[Callable[[CliResult], Any]] = None,
        match: Optional[str] = None,
        expect: Optional[str] = None, timeout: float = 240,
        needs: Tuple[str, ...] = (), nothing_written: bool = True
        ) -> Probe:
    r"""A probe of the :obj:`mgvae` command: :obj:`argv` (with
    :obj:`{name}` fields filled from :obj:`setup(ctx, cwd)`'s dict) run in
    a fresh folder; exit code in :obj:`rc`; an error's line must match
    :obj:`match`. For errors with :obj:`nothing_written`, the folder must
    stay as :obj:`setup` left it.
    """
    rc = tuple(rc)
    if expect is None:
        expect = ('exit 0 and ' + (check.__doc__ or 'a result').strip()
                  if 0 in rc else
                  f'exit {"/".join(map(str, rc))} with one line '
                  f'"mgvae: ..."' + (f' naming /{match}/' if match else '')
                  + (', nothing written' if nothing_written
                                     else '') +
                  (f', {check.__doc__.strip()}' if check and check.__doc__
                   else ''))

    def run(ctx: 'Context') -> Tuple[str, str]:
        cwd = ctx.tmpdir(name)
        fields = setup(ctx, cwd) if setup else {}
        fields = dict(fields or {}, cwd=cwd, shared=SHARED)
        args = [a.format(**fields) for a in argv]
        before = snapshot(cwd)
        res = ctx.run_cli(args, cwd, timeout)
        chk = check
        if 0 not in rc and nothing_written:
            def chk(r, _inner=check):
                after = snapshot(cwd)
                if after != before:
                    new = sorted(set(after) - set(before))
                    changed = sorted(k for k in before
                                     if after.get(k) != before[k])
                    return False, f'wrote {new[:3]} changed {changed[:3]}'
                return _check_result(_inner, r) if _inner else (True, '')
        return classify_cli(res, rc, chk, match, debug='--debug' in args)
    return add(Probe(name, cls, what, expect, run, False, needs))


def snapshot(folder: str) -> Dict[str, Tuple[int, int]]:
    r"""Relative path -> (size, mtime in ns) of every file under
    :obj:`folder`."""
    out = {}
    for d, _, files in os.walk(folder):
        for f in files:
            p = osp.join(d, f)
            st = os.stat(p)
            out[osp.relpath(p, folder)] = (st.st_size, st.st_mtime_ns)
    return out


def files_under(folder: str) -> List[str]:
    return sorted(snapshot(folder))


# Processes ###############################################################

def offline() -> None:
    r"""No network in this process: every host name lookup fails (urllib,
    fsspec/aiohttp and requests all resolve names first), so the probes
    of missing raw files behave the same with or without internet."""
    import socket

    def refuse(*args, **kwargs):
        raise socket.gaierror(socket.EAI_NONAME, 'network switched off by '
                              'benchmark/probes.py')
    socket.getaddrinfo = refuse
    socket.gethostbyname = refuse


def _quiet() -> None:
    r"""The probe process's own stdout/stderr (download logs, progress) go
    to /dev/null; results come back through the pipe."""
    null = os.open(os.devnull, os.O_WRONLY)
    os.dup2(null, 1)
    os.dup2(null, 2)
    os.close(null)

def _child_probe(name: str, ctx_state: Dict[str, Any], conn) -> None:
    r"""Runs the local probe :obj:`name` (in a forked process)."""
    import torch
    _quiet()
    offline()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    ctx = Context(**ctx_state)
    try:
        out = PROBES[name].run(ctx)
    except BaseException as e:  # noqa: BLE001 (a bug of the probe)
        out = (TRACEBACK, f'probe failed: {type(e).__name__}: {_first(e)}')
    conn.send(out)
    conn.close()


def _child_cli(argv: List[str], cwd: str, out: str, err: str) -> None:
    r"""``python -m torch_geometric_mgvae.cli ARGV`` in :obj:`cwd` (in a
    forked process): stdout/stderr to files, the exit code of
    :func:`~torch_geometric_mgvae.cli.main`; an exception escaping it is
    printed as the interpreter would (a traceback)."""
    for fd, path in ((1, out), (2, err)):
        f = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        os.dup2(f, fd)
        os.close(f)
    offline()
    os.chdir(cwd)
    # As in a terminal, whatever started the probes: a shell starts a
    # background job (e.g. under nohup) with SIGINT ignored, which the
    # forked command would inherit.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    open(out + '.started', 'w').close()  # signals may be sent from now
    sys.argv = ['mgvae'] + list(argv)
    code = 1
    try:
        from torch_geometric_mgvae.cli import main
        code = main(list(argv))
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else 1
    except BaseException:  # noqa: BLE001
        traceback.print_exc()
        code = 1
    finally:
        with contextlib.suppress(Exception):
            sys.stdout.flush()
            sys.stderr.flush()
    # The exit code of the process (multiprocessing runs the finalizers,
    # e.g. of tqdm's locks, then exits with it).
    sys.exit(code if isinstance(code, int) else 1)


class Context:
    r"""What a probe needs: a temporary folder, fixtures, processes."""
    def __init__(self, base: str, fixtures: Dict[str, str]):
        self.base = base
        self.fixtures = fixtures
        self._mp = None

    def state(self) -> Dict[str, Any]:
        return dict(base=self.base, fixtures=self.fixtures)

    def tmpdir(self, name: str) -> str:
        return tempfile.mkdtemp(prefix=re.sub(r'\W', '_', name) + '-',
                                dir=self.base)

    @property
    def mp(self):
        if self._mp is None:
            self._mp = multiprocessing.get_context('forkserver')
            self._mp.set_forkserver_preload(PRELOAD + [__name__])
        return self._mp

    def run_local(self, probe: Probe, timeout: float = 300
                  ) -> Tuple[str, str]:
        recv, send = self.mp.Pipe(duplex=False)
        p = self.mp.Process(target=_child_probe,
                            args=(probe.name, self.state(), send))
        p.start()
        send.close()
        out = None
        if recv.poll(timeout):
            with contextlib.suppress(EOFError):
                out = recv.recv()
        p.join(5)
        if p.is_alive():
            p.kill()
            p.join()
        if out is None:
            code = p.exitcode
            how = (f'killed by signal {-code}' if code and code < 0 else
                   f'exit {code}')
            return TRACEBACK, f'the process died ({how}; hung or crashed)'
        return out

    def start_cli(self, argv: Sequence[str], cwd: str):
        self._count = getattr(self, '_count', 0) + 1
        name = f'cli{self._count}'
        out, err = (osp.join(self.base, f'.{name}.{s}')
                    for s in ('out', 'err'))
        p = self.mp.Process(target=_child_cli, name=name,
                            args=(list(argv), cwd, out, err))
        p.start()
        return p, out, err

    def wait_started(self, p, timeout: float = 60) -> None:
        r"""Waits until the command process :obj:`p` runs the command."""
        flag = osp.join(self.base, f'.{p.name}.out.started')
        t0 = time.time()
        while p.is_alive() and not osp.exists(flag) and \
                time.time() - t0 < timeout:
            time.sleep(0.01)

    def finish_cli(self, p, out: str, err: str, cwd: str, t0: float,
                   timeout: float) -> CliResult:
        p.join(max(1.0, timeout - (time.time() - t0)))
        rc = p.exitcode
        if p.is_alive():
            p.kill()
            p.join()
            rc = None
        read = lambda f: open(f, errors='replace').read() \
            if osp.exists(f) else ''  # noqa: E731
        return CliResult(rc, read(out), read(err), time.time() - t0, cwd)

    def run_cli(self, argv: Sequence[str], cwd: str, timeout: float = 240,
                interrupt: Optional[Callable[[Any], None]] = None
                ) -> CliResult:
        r"""Runs the command; :obj:`interrupt(process)` (if given) is called
        once it runs, to send signals."""
        t0 = time.time()
        p, out, err = self.start_cli(argv, cwd)
        if interrupt is not None:
            interrupt(p)
        return self.finish_cli(p, out, err, cwd, t0, timeout)


# Fixtures ################################################################

def make_fixtures(base: str) -> Dict[str, str]:
    r"""Small data files shared by the probes (copied before use)."""
    from torch_geometric_mgvae.datasets import (
        make_community_dataset,
        write_graph_list,
    )
    fx = {}
    graphs = make_community_dataset(20, seed=0)
    fx['graphs_json'] = osp.join(base, 'fixtures', 'graphs.edgelists.json')
    os.makedirs(osp.dirname(fx['graphs_json']))
    write_graph_list(graphs, fx['graphs_json'])
    fx['community_root'] = osp.join(base, 'fixtures', 'community_small')
    os.makedirs(osp.join(fx['community_root'], 'raw'))
    shutil.copy(fx['graphs_json'], osp.join(
        fx['community_root'], 'raw', 'community_small.edgelists.json'))
    qm9 = osp.join(SHARED, 'qm9', 'qm9_qm9pack_compact.csv.gz')
    if osp.exists(qm9):
        fx['qm9_root'] = osp.join(base, 'fixtures', 'qm9')
        os.makedirs(osp.join(fx['qm9_root'], 'raw'))
        with gzip.open(qm9, 'rt') as f:
            lines = [next(f) for _ in range(81)]
        with gzip.open(osp.join(fx['qm9_root'], 'raw',
                                'qm9_qm9pack_compact.csv.gz'), 'wt') as f:
            f.writelines(lines)
        ids = [int(ln.split(',')[0]) for ln in lines[1:]]
        with open(osp.join(fx['qm9_root'], 'raw', 'valid_idx_qm9.json'),
                  'w') as f:
            json.dump({'valid_idxs': [f'{i - 1:06d}' for i in ids[::5]]}, f)
    zinc = osp.join(SHARED, 'zinc12k_benchgnn', 'smiles_score.csv')
    if osp.exists(zinc):
        fx['zinc_root'] = osp.join(base, 'fixtures', 'zinc')
        os.makedirs(osp.join(fx['zinc_root'], 'raw'))
        with open(zinc) as f:
            lines = [next(f) for _ in range(61)]
        with open(osp.join(fx['zinc_root'], 'raw', 'smiles_score.csv'),
                  'w') as f:
            f.writelines(lines)
        with open(osp.join(fx['zinc_root'], 'raw',
                           'indexes_train_val_test.csv'), 'w') as f:
            f.write('train,val,test\n')
            for i in range(40):
                f.write(f'{i},{40 + i if i < 10 else ""},'
                        f'{50 + i if i < 10 else ""}\n')
    return fx


def copy_fixture(ctx: Context, key: str, dst: str) -> str:
    shutil.copytree(ctx.fixtures[key], dst)
    return dst


# Checks and small builders (run inside the probe processes) ##############

def _torch():
    import torch
    return torch


def feats(n: int, c: int = 4, seed: int = 0):
    torch = _torch()
    return torch.randn(n, c, generator=torch.Generator().manual_seed(seed))


def cycle(n: int, offset: int = 0):
    torch = _torch()
    if n < 2:
        return torch.empty(2, 0, dtype=torch.long)
    i = torch.arange(n)
    j = (i + 1) % n
    ei = torch.cat([torch.stack([i, j]), torch.stack([j, i])], 1)
    if n == 2:
        ei = ei[:, :2]
    return ei + offset


def graph(n: int = 6, c: int = 4, edge_index=None, seed: int = 0, **kw):
    from torch_geometric.data import Data
    ei = cycle(n) if edge_index is None else edge_index
    return Data(x=feats(n, c, seed), edge_index=ei, num_nodes=n, **kw)


def without(data, key: str):
    del data[key]
    return data


def two_graphs(n1: int = 5, n2: int = 4):
    from torch_geometric.data import Batch
    return Batch.from_data_list([graph(n1, seed=1), graph(n2, seed=2)])


def mgvae(**kw):
    torch = _torch()
    from torch_geometric_mgvae import MGVAE
    torch.manual_seed(0)
    args = dict(in_channels=4, hidden_channels=8, latent_channels=4,
                num_clusters=[2, 1])
    args.update(kw)
    return MGVAE(**args)


def mgn(**kw):
    torch = _torch()
    from torch_geometric_mgvae import MGN
    torch.manual_seed(0)
    args = dict(in_channels=4, hidden_channels=8, latent_channels=4,
                num_clusters=[2, 1])
    args.update(kw)
    return MGN(**args)


def loss_terms(model, *args, **kw):
    r"""forward + loss_terms (training mode, seeded)."""
    torch = _torch()
    gen = torch.Generator().manual_seed(0)
    out = model(*args, generator=gen, **kw)
    return out, model.loss_terms(out, gen)


def finite_terms(res) -> Tuple[bool, str]:
    r"""every loss term finite"""
    out, terms = res
    vals = {k: float(v.detach()) for k, v in terms.items()}
    bad = [k for k, v in vals.items() if not math.isfinite(v)]
    text = ', '.join(f'{k} {v:.3g}' for k, v in vals.items() if v)
    return not bad, (f'non-finite {bad}' if bad else f'finite: {text}'
                     [:200])


def finite(value) -> Tuple[bool, str]:
    r"""a finite value"""
    v = float(value)
    return math.isfinite(v), f'{v:.4g}'


def crafted_pickle(path: str, marker: str) -> None:
    r"""A pickle whose loading runs code (creates :obj:`marker`)."""
    import pickle

    class Payload:
        def __reduce__(self):
            return (os.system, (f'touch {marker}', ))

    with open(path, 'wb') as f:
        pickle.dump([Payload()], f)


def crafted_torch(path: str, marker: str) -> None:
    r"""A torch file whose full unpickling runs code."""
    torch = _torch()

    class Payload:
        def __reduce__(self):
            return (os.system, (f'touch {marker}', ))

    torch.save({'data': Payload()}, path)


def truncate(path: str, fraction: float = 0.5) -> None:
    size = os.path.getsize(path)
    with open(path, 'r+b') as f:
        f.truncate(int(size * fraction))


def no_marker(marker: str) -> Callable[[Any], Tuple[bool, str]]:
    def check(_res) -> Tuple[bool, str]:
        r"""no code run from the file"""
        return (not osp.exists(marker),
                'code in the file ran' if osp.exists(marker) else 'not run')
    return check


# Probes: model inputs ####################################################

def _model_input_probes():
    torch = _torch()
    V = (ValueError, )

    def one_graph(n, **kw):
        return lambda: loss_terms(mgvae(**kw), graph(n))

    api('inputs', 'empty-graph', 'MGVAE on a graph with 0 nodes',
        lambda: loss_terms(mgvae(), feats(0), torch.empty(2, 0,
                                                          dtype=torch.long)),
        error=V, check=finite_terms)
    api('inputs', 'one-node', 'MGVAE on a 1-node graph', one_graph(1),
        check=finite_terms)
    api('inputs', 'no-edges', 'MGVAE on a graph without edges',
        lambda: loss_terms(mgvae(), feats(5),
                           torch.empty(2, 0, dtype=torch.long)),
        check=finite_terms)

    def k_gt_n():
        out, terms = loss_terms(mgvae(num_clusters=[8, 4, 1]), graph(3))
        ok, d = finite_terms((out, terms))
        C = out[0].select.num_clusters
        return ok and C <= 3, f'{C} clusters for 3 nodes; {d}'
    api('inputs', 'k-gt-n', 'MGVAE with K = 8 clusters on a 3-node graph',
        lambda: k_gt_n(), check=lambda r: r)
    for name, value in (('nan', math.nan), ('inf', math.inf),
                        ('huge', 1e20)):
        def call(value=value):
            x = feats(6)
            x[2, 1] = value
            return loss_terms(mgvae(), x, cycle(6))
        api('inputs', f'x-{name}', f'node features holding {value}', call,
            error=V, match='x')
    api('inputs', 'x-1e11', 'node features of magnitude 1e11 (below the '
        'accepted limit)', lambda: loss_terms(mgvae(), feats(6) * 1e11,
                                              cycle(6)),
        error=V, check=finite_terms)
    api('inputs', 'x-1d', "'x' of shape [N]",
        lambda: mgvae()(feats(6)[:, 0], cycle(6)), error=V, match='x')
    api('inputs', 'x-int', "integer 'x'",
        lambda: mgvae()(feats(6).long(), cycle(6)), error=V, match='x')
    api('inputs', 'x-wrong-width', "'x' with 5 channels for in_channels=4",
        lambda: mgvae()(feats(6, 5), cycle(6)), error=V,
        match='channel|in_channels|feature')
    api('inputs', 'x-float64', 'float64 features into a float32 model',
        lambda: loss_terms(mgvae(), feats(6).double(), cycle(6)),
        error=(ValueError, TypeError), match='dtype|float', check=finite_terms)
    api('inputs', 'x-requires-grad', 'features that require grad',
        lambda: loss_terms(mgvae(), feats(6).requires_grad_(), cycle(6)),
        check=finite_terms)
    api('inputs', 'edge-index-float', 'float edge_index',
        lambda: mgvae()(feats(6), cycle(6).float()), error=V,
        match='edge_index')
    api('inputs', 'edge-index-3xE', 'edge_index of shape [3, E]',
        lambda: mgvae()(feats(6), torch.zeros(3, 4, dtype=torch.long)),
        error=V, match='edge_index')
    api('inputs', 'edge-index-Ex2', 'edge_index transposed, [E, 2]',
        lambda: mgvae()(feats(6), cycle(6).t().contiguous()), error=V,
        match='edge_index')
    api('inputs', 'edge-index-1d', 'edge_index of shape [E]',
        lambda: mgvae()(feats(6), cycle(6)[0]), error=V, match='edge_index')
    api('inputs', 'edge-out-of-range', 'an edge to node 9 of a 6-node graph',
        lambda: mgvae()(feats(6), torch.tensor([[0, 9], [9, 0]])), error=V,
        match='edge_index|node')
    api('inputs', 'edge-negative', 'an edge to node -1',
        lambda: mgvae()(feats(6), torch.tensor([[0, -1], [-1, 0]])), error=V,
        match='edge_index|node')

    def unsorted():
        b = two_graphs()
        perm = torch.tensor([0, 5, 1, 6, 2, 7, 3, 8, 4])
        inv = torch.empty_like(perm)
        inv[perm] = torch.arange(9)
        return mgvae()(b.x[perm], inv[b.edge_index], batch=b.batch[perm])
    api('inputs', 'batch-unsorted', 'interleaved nodes of two graphs '
        '(unsorted batch)', unsorted, error=V, match='batch')

    def unsorted_prior():
        b = two_graphs()
        perm = torch.tensor([0, 5, 1, 6, 2, 7, 3, 8, 4])
        inv = torch.empty_like(perm)
        inv[perm] = torch.arange(9)
        m = mgvae(prior='learnable', max_nodes=6)
        return loss_terms(m, b.x[perm], inv[b.edge_index],
                          batch=b.batch[perm])
    api('inputs', 'batch-unsorted-learnable-prior', 'unsorted batch into '
        "MGVAE(prior='learnable') (issue 12 item 9)", unsorted_prior,
        error=V, match='batch')

    def cross():
        b = two_graphs()
        ei = torch.cat([b.edge_index, torch.tensor([[0, 6], [6, 0]])], 1)
        return mgvae()(b.x, ei, batch=b.batch)
    api('inputs', 'cross-graph-edge', 'an edge joining two graphs of a batch',
        cross, error=V, match='graph')

    def one_way():
        ei = cycle(6)[:, :6]  # one direction only
        return loss_terms(mgvae(), feats(6), ei)
    api('inputs', 'one-way-edges', 'edges in one direction only',
        one_way, check=finite_terms, warns='direct')
    api('inputs', 'batch-wrong-length', 'batch with 5 entries for 6 nodes',
        lambda: mgvae()(feats(6), cycle(6), batch=torch.zeros(5,
                                                               dtype=torch.long
                                                               )),
        error=V, match='batch')
    api('inputs', 'batch-negative', 'batch vector holding -1',
        lambda: loss_terms(mgvae(), feats(6), cycle(6),
                           batch=torch.full((6, ), -1, dtype=torch.long)),
        error=V, match='batch', check=finite_terms)
    api('inputs', 'batch-float', 'a float batch vector',
        lambda: loss_terms(mgvae(), feats(6), cycle(6),
                           batch=torch.zeros(6)),
        error=(ValueError, TypeError), match='batch', check=finite_terms)

    def gap():
        b = two_graphs()
        batch = b.batch * 2  # graph ids 0 and 2: graph 1 has no nodes
        out, terms = loss_terms(mgvae(), b.x, b.edge_index, batch=batch)
        ok, d = finite_terms((out, terms))
        return ok and out[0].num_graphs == 3, f'{out[0].num_graphs} ' \
            f'graphs; {d}'
    api('inputs', 'batch-gap', 'batch ids 0 and 2 (an empty graph between)',
        gap, check=lambda r: r)
    api('inputs', 'num-graphs-too-small', 'num_graphs=1 for a batch of 2',
        lambda: loss_terms(mgvae(), two_graphs().x, two_graphs().edge_index,
                           batch=two_graphs().batch, num_graphs=1),
        error=V, match='num_graphs|graph')
    api('inputs', 'edge-weight-nan', 'NaN edge weight',
        lambda: mgvae()(feats(6), cycle(6),
                        torch.tensor([1., math.nan] + [1.] * 10)),
        error=V, match='edge_weight')
    api('inputs', 'edge-weight-negative', 'negative edge weight',
        lambda: mgvae()(feats(6), cycle(6), -torch.ones(12)), error=V,
        match='edge_weight')
    api('inputs', 'edge-weight-length', 'edge_weight of the wrong length',
        lambda: mgvae()(feats(6), cycle(6), torch.ones(5)), error=V,
        match='edge_weight')
    api('inputs', 'edge-weight-huge', 'edge weights of 1e30 (finite)',
        lambda: loss_terms(mgvae(), feats(6), cycle(6),
                           torch.full((12, ), 1e30)),
        error=V, match='edge_weight', check=finite_terms)

    def so_model():
        return mgvae(order=2, edge_channels=3)

    def so_attr(value=None, rows=12):
        attr = torch.zeros(rows, 3)
        attr[:, 0] = 1
        if value is not None:
            attr[1, 1] = value
        return attr
    api('inputs', 'edge-attr-nan', "NaN in edge_attr (order=2)",
        lambda: so_model()(feats(6), cycle(6), edge_attr=so_attr(math.nan)),
        error=V, match='edge_attr')
    api('inputs', 'edge-attr-inf', "inf in edge_attr (order=2)",
        lambda: so_model()(feats(6), cycle(6), edge_attr=so_attr(math.inf)),
        error=V, match='edge_attr')
    api('inputs', 'edge-attr-huge', "edge_attr of 1e30 (order=2)",
        lambda: loss_terms(so_model(), feats(6), cycle(6),
                           edge_attr=so_attr(1e30)),
        error=V, match='edge_attr', check=finite_terms)
    api('inputs', 'edge-attr-rows', "edge_attr with 5 rows for 12 edges",
        lambda: so_model()(feats(6), cycle(6), edge_attr=so_attr(rows=5)),
        error=V, match='edge_attr')
    api('inputs', 'edge-attr-width', "edge_attr with 2 columns for "
        "edge_channels=3", lambda: so_model()(
            feats(6), cycle(6), edge_attr=torch.ones(12, 2)),
        error=V, match='edge_attr|edge_channels|column')
    api('inputs', 'edge-attr-missing', "order=2, edge_channels=3 without "
        "edge_attr", lambda: so_model()(feats(6), cycle(6)), error=V,
        match='edge_attr')

    def coo(n=6, size=None):
        ei = cycle(n)
        size = size or (n, n)
        return torch.sparse_coo_tensor(ei.flip(0), torch.ones(ei.size(1)),
                                       size)

    def sparse_equal(adj):
        m = mgvae().eval()
        a = m(feats(6), cycle(6))
        b = m(feats(6), adj)
        same = all(torch.allclose(la.z, lb.z) for la, lb in
                   zip(a.levels, b.levels))
        return same, 'equal to edge_index' if same else 'differs'
    api('inputs', 'sparse-coo', 'a torch.sparse COO adjacency',
        lambda: sparse_equal(coo()), check=lambda r: r,
        expect='the same output as the edge_index input')
    api('inputs', 'sparse-csr', 'a torch.sparse CSR adjacency',
        lambda: sparse_equal(coo().to_sparse_csr()), check=lambda r: r,
        expect='the same output as the edge_index input')
    api('inputs', 'sparse-wrong-size', 'a 7 x 7 sparse adjacency for 6 nodes',
        lambda: mgvae()(feats(6), coo(6, (7, 7))), error=V,
        match='adj|size|node')
    api('inputs', 'sparse-plus-weight', 'a sparse adjacency and edge_weight',
        lambda: mgvae()(feats(6), coo(), torch.ones(12)), error=V,
        match='weight')
    api('inputs', 'sparse-nan-values', 'a sparse adjacency with NaN values',
        lambda: mgvae()(feats(6), torch.sparse_coo_tensor(
            cycle(6), torch.full((12, ), math.nan), (6, 6))), error=V,
        match='weight|nan')
    api('inputs', 'data-no-x', 'a Data object without x',
        lambda: mgvae()(without(graph(6), 'x')), error=V, match="x")
    api('inputs', 'data-no-edges', 'a Data object without edge_index',
        lambda: mgvae()(without(graph(6), 'edge_index')), error=V,
        match='edge_index')
    api('inputs', 'edge-index-none', 'x without edge_index',
        lambda: mgvae()(feats(6)), error=V, match='edge_index')

    def too_big(matching):
        def call():
            m = mgvae(prior='learnable', max_nodes=4,
                      prior_kwargs=dict(matching=matching))
            return loss_terms(m, feats(6), cycle(6))
        return call
    for matching in ('hungarian', 'free'):
        api('inputs', f'larger-than-prior-{matching}', f'a 6-node graph into '
            f"a learnable prior of max_nodes=4 ({matching} matching)",
            too_big(matching), error=V, match='max_nodes')
    api('inputs', 'sample-larger-than-prior', 'sample(num_nodes=9) from a '
        'learnable prior of max_nodes=4',
        lambda: mgvae(prior='learnable', max_nodes=4).eval().sample(
            2, num_nodes=9), error=V, match='max_nodes')
    api('inputs', 'sample-zero', 'sample(0)',
        lambda: mgvae().eval().sample(0, num_nodes=4),
        check=lambda r: (r == [], f'{r!r}'))
    api('inputs', 'sample-negative', 'sample(-1)',
        lambda: mgvae().eval().sample(-1, num_nodes=4), error=V,
        match='num_graphs|negative|graph')
    api('inputs', 'sample-zero-nodes', 'sample(2, num_nodes=0)',
        lambda: mgvae().eval().sample(2, num_nodes=0), error=V,
        match='num_nodes')
    api('inputs', 'sample-unfitted', 'sample() before fit_num_nodes()',
        lambda: mgvae().eval().sample(2), error=(RuntimeError, ValueError),
        match='fit_num_nodes')
    api('inputs', 'fit-num-nodes-empty', 'fit_num_nodes([])',
        lambda: mgvae().fit_num_nodes([]), error=V, match='graph')

    def sample_threshold():
        out = mgvae().eval().sample(3, num_nodes=5, threshold=2.0)
        return all(d.edge_index.numel() == 0 for d in out), \
            'no edges above probability 2'
    api('inputs', 'sample-threshold-2', 'sample(threshold=2.0)',
        sample_threshold, error=V, match='threshold', check=lambda r: r)
    api('inputs', 'fixed-without-clusters', "clustering='fixed' without "
        "cluster ids", lambda: mgvae(clustering='fixed')(feats(6), cycle(6)),
        error=V, match='cluster')
    api('inputs', 'fixed-ids-out-of-range', 'fixed cluster id 5 with K=2',
        lambda: mgvae(clustering='fixed')(
            feats(6), cycle(6), clusters=[torch.tensor([0, 1, 5, 0, 1, 0]),
                                          torch.zeros(2, dtype=torch.long)]),
        error=V, match='cluster')
    api('inputs', 'fixed-ids-length', 'fixed cluster ids for 4 of 6 nodes',
        lambda: mgvae(clustering='fixed')(
            feats(6), cycle(6), clusters=[torch.zeros(4, dtype=torch.long),
                                          torch.zeros(2, dtype=torch.long)]),
        error=V, match='cluster|ids')
    api('inputs', 'noise-wrong-shape', 'Gumbel noise of the wrong shape',
        lambda: mgvae()(feats(6), cycle(6), noise=[{'gumbel': torch.zeros(
            3, 2)}]), error=V, match='noise')

    def pool(x, ei, batch=None, K=2):
        from torch_geometric_mgvae.nn import MGNPooling
        torch.manual_seed(0)
        return MGNPooling(x.size(1), K)(x, ei, None, batch)

    def pool_ok(res):
        r"""finite pooled features and cut loss"""
        x, ei, w, b, so, cut = res
        ok = bool(torch.isfinite(x).all()) and \
            math.isfinite(float(cut.detach()))
        return ok, f'{x.size(0)} clusters, cut {float(cut):.3g}'
    api('inputs', 'pool-empty', 'MGNPooling on 0 nodes',
        lambda: pool(feats(0), torch.empty(2, 0, dtype=torch.long)),
        check=pool_ok)
    api('inputs', 'pool-k-gt-n', 'MGNPooling(K=8) on 3 nodes',
        lambda: pool(feats(3), cycle(3), K=8), check=pool_ok)
    api('inputs', 'pool-edge-out-of-range', 'MGNPooling with an edge to '
        'node 9 of 6', lambda: pool(feats(6), torch.tensor([[0, 9], [9, 0]])),
        error=(ValueError, IndexError), match='index|node|range|bound')

    def ar_model(**kw):
        from torch_geometric_mgvae import AutoregressiveMGN
        from torch_geometric_mgvae.chem import QM9_ATOMS
        torch.manual_seed(0)
        return AutoregressiveMGN(len(QM9_ATOMS), hidden_channels=8,
                                 latent_channels=4, **kw)

    def mol(smiles):
        from torch_geometric_mgvae.chem import QM9_ATOMS, smiles_to_data
        return smiles_to_data(smiles, QM9_ATOMS)
    api('inputs', 'ar-too-large', 'AutoregressiveMGN(max_nodes=3) on a '
        '6-atom molecule', lambda: ar_model(max_nodes=3).loss(mol('CCCCCC')),
        error=V, match='max_nodes|atoms|large')

    def disconnected():
        from torch_geometric.data import Data
        d = mol('CC')
        x = torch.cat([d.x, d.x])
        ei = torch.cat([d.edge_index, d.edge_index + 2], 1)
        ea = torch.cat([d.edge_attr, d.edge_attr])
        return ar_model().loss(Data(x=x, edge_index=ei, edge_attr=ea))
    api('inputs', 'ar-disconnected', 'AutoregressiveMGN on a disconnected '
        'molecule', disconnected, error=V, match='connect')

    def molecule_model(**kw):
        from torch_geometric_mgvae.chem import QM9_ATOMS
        from torch_geometric_mgvae.models import MoleculeMGVAE
        torch.manual_seed(0)
        return MoleculeMGVAE(len(QM9_ATOMS), 8, 4, [2, 1], max_nodes=4,
                             decoder_layers=1, atoms=QM9_ATOMS, **kw)
    api('inputs', 'molecule-too-large', 'MoleculeMGVAE(max_nodes=4) on a '
        '6-atom molecule',
        lambda: loss_terms(molecule_model(), mol('CCCCCC')), error=V,
        match='max_nodes')
    api('inputs', 'molecule-one-atom', 'MoleculeMGVAE on a 1-atom molecule',
        lambda: loss_terms(molecule_model(), mol('C')), check=finite_terms)

    def decoder_with_pre(context: int, pre_shape):
        from torch_geometric_mgvae.nn import SecondOrderDecoder
        dec = SecondOrderDecoder(3, 5, 2, context_channels=context)
        z, mask = torch.randn(2, 4, 3), torch.ones(2, 4, dtype=torch.bool)
        ctx = torch.zeros(2, 4, 4, context) if context else None
        return dec(z, mask, context=ctx, latent_pre=torch.zeros(*pre_shape))
    api('inputs', 'decoder-latent-pre-shape', 'SecondOrderDecoder given a '
        'latent_pre of the wrong shape',
        lambda: decoder_with_pre(2, (2, 4, 4, 4)), error=V,
        match='latent_pre')
    api('inputs', 'decoder-latent-pre-no-context', 'SecondOrderDecoder '
        'without a context given a latent_pre',
        lambda: decoder_with_pre(0, (2, 4, 4, 5)), error=V,
        match='context')

    def mmd(pred, ref):
        from torch_geometric_mgvae.metrics import graph_mmd
        return graph_mmd(pred, ref, metrics=('degree', 'clustering'))

    def mmd_ok(res):
        r"""finite MMDs"""
        vals = [res[k] for k in ('degree', 'clustering')]
        return all(math.isfinite(v) for v in vals), f'{vals}'
    api('inputs', 'mmd-empty-list', 'graph_mmd([], graphs)',
        lambda: mmd([], [graph(5)]), error=V, match='graph|empty')
    def regress(x=None, edge_attr=None, method='mean'):
        from torch_geometric.data import Data

        from torch_geometric_mgvae.models.property import (
            HierarchicalRegressor,
            MGNLevelPool,
        )
        torch.manual_seed(0)
        pools = [MGNLevelPool(8, 2)] if method == 'mgn' else []
        model = HierarchicalRegressor(4, 3, 8, 2, pools=pools).eval()
        x = feats(6) if x is None else x
        ea = torch.ones(12, 3) if edge_attr is None else edge_attr
        return model(Data(x=x, edge_index=cycle(6), edge_attr=ea))

    def finite_pred(out):
        r"""finite predictions"""
        pred = out[0] if isinstance(out, tuple) else out
        ok = bool(_torch().isfinite(pred).all())
        return ok, f'predictions {pred.detach().view(-1).tolist()}'[:120]
    nanx = feats(6)
    nanx[0, 0] = math.nan
    for method in ('mean', 'mgn'):
        api('inputs', f'regressor-{method}-nan-x', f'HierarchicalRegressor '
            f'({method}) on NaN node features',
            lambda method=method: regress(nanx, method=method),
            error=V, match='x')
    nan_attr = torch.ones(12, 3)
    nan_attr[0, 0] = math.nan
    api('inputs', 'regressor-nan-edge-attr', 'HierarchicalRegressor on NaN '
        'edge features', lambda: regress(edge_attr=nan_attr),
        error=V, match='edge_attr')
    api('inputs', 'regressor-edge-attr-too-wide', 'HierarchicalRegressor '
        'with 5 edge feature columns for edge_channels=3',
        lambda: regress(edge_attr=torch.ones(12, 5)), error=V,
        match='edge_attr')
    api('inputs', 'mmd-empty-graphs', 'graph_mmd of graphs without nodes',
        lambda: mmd([graph(0)], [graph(5)]), error=V, check=mmd_ok)


# Probes: hyper-parameters ################################################

def _hparam_probes():
    V = (ValueError, TypeError)

    def ctor(name, what, make, match):
        api('hparams', name, what, make, error=V, match=match)

    for key, value in (('in_channels', 0), ('in_channels', -1),
                       ('hidden_channels', 0), ('latent_channels', 0),
                       ('num_layers', 0), ('num_layers', -2)):
        ctor(f'mgvae-{key}-{value}', f'MGVAE({key}={value})',
             lambda key=key, value=value: mgvae(**{key: value}), key)
    ctor('mgvae-hidden-str', "MGVAE(hidden_channels='64')",
         lambda: mgvae(hidden_channels='64'), 'hidden_channels')
    ctor('mgvae-in-float', 'MGVAE(in_channels=2.5)',
         lambda: mgvae(in_channels=2.5), 'in_channels')
    for value in ([], [0], [-1], [2, 0], 4, [2.5], None):
        slug = 'empty' if value == [] else re.sub(
            r'[\[\] ]', '', repr(value)).replace(',', '_')
        ctor(f'mgvae-clusters-{slug}',
             f'MGVAE(num_clusters={value!r})',
             lambda value=value: mgvae(num_clusters=value), 'num_clusters')
    for key, value in (('order', 3), ('clustering', 'spectral'),
                       ('encoder_scope', 'global'),
                       ('global_decoder', 'dense'),
                       ('feature_loss', 'l1'), ('random_features', -1),
                       ('edge_channels', -1), ('covariance', 'full'),
                       ('prior', 'gamma'), ('max_nodes', 0),
                       ('max_nodes', -3)):
        kw = {key: value}
        if key == 'max_nodes':
            kw['global_decoder'] = 'mlp'
        ctor(f'mgvae-{key}-{value}', f'MGVAE({key}={value!r})',
             lambda kw=kw: mgvae(**kw), key)
    for value in (-0.1, 1.0, math.nan):
        ctor(f'mgvae-feature_mask-{value}', f'MGVAE(feature_mask={value})',
             lambda value=value: mgvae(feature_mask=value), 'feature_mask')
    ctor('mgvae-edge-loss-no-channels', "MGVAE(edge_feature_loss='ce') "
         "without edge_channels", lambda: mgvae(edge_feature_loss='ce'),
         'edge_channels')
    ctor('mgvae-edge-loss-no-edge-conv', "MGVAE(edge_feature_loss='ce', "
         "edge_channels=3) with MGNConv (reads no edge features)",
         lambda: mgvae(edge_feature_loss='ce', edge_channels=3),
         'edge features')
    ctor('mgvae-edge-loss-l1', "MGVAE(edge_feature_loss='l1')",
         lambda: mgvae(edge_feature_loss='l1', edge_channels=3),
         'edge_feature_loss')
    ctor('mgvae-mlp-no-max-nodes', "MGVAE(global_decoder='mlp') without "
         "max_nodes", lambda: mgvae(global_decoder='mlp'), 'max_nodes')
    ctor('mgvae-learnable-no-max-nodes', "MGVAE(prior='learnable') without "
         "max_nodes", lambda: mgvae(prior='learnable'), 'max_nodes')
    ctor('mgvae-learnable-max-nodes-0', "MGVAE(prior='learnable', "
         "max_nodes=0)", lambda: mgvae(prior='learnable', max_nodes=0),
         'max_nodes')
    ctor('mgvae-mrf-order-1', "MGVAE(covariance='mrf', order=1)",
         lambda: mgvae(covariance='mrf'), 'order')
    ctor('mgvae-conv-order-2', 'MGVAE(order=2, conv=GCNConv)',
         lambda: mgvae(order=2, conv=__import__(
             'torch_geometric.nn', fromlist=['GCNConv']).GCNConv), 'conv')
    ctor('mgvae-conv-not-callable', "MGVAE(conv='gcn')",
         lambda: mgvae(conv='gcn'), 'conv')
    ctor('mgvae-prior-kwargs-standard', "prior_kwargs with the standard "
         "prior", lambda: mgvae(prior_kwargs=dict(matching='free')),
         'prior')
    for key, value, match in (
            ('matching', 'greedy', 'matching'), ('eps', 0.0, 'eps'),
            ('eps', -1.0, 'eps'), ('eps', math.nan, 'eps'),
            ('unknown', 1, 'unknown|unexpected')):
        ctor(f'mgvae-prior-{key}-{value}',
             f"MGVAE(prior='learnable', prior_kwargs={{{key!r}: {value}}})",
             lambda key=key, value=value: mgvae(
                 prior='learnable', max_nodes=6,
                 prior_kwargs={key: value}), match)
    for key, value in (('tau', 0.0), ('tau', -1.0), ('tau', math.nan),
                       ('tau', math.inf), ('balance', -1),
                       ('num_layers', -1), ('hidden_channels', 0),
                       ('unknown', 1)):
        ctor(f'mgvae-cluster-{key}-{value}',
             f'MGVAE(cluster_kwargs={{{key!r}: {value}}})',
             lambda key=key, value=value: mgvae(
                 cluster_kwargs={key: value}), f'{key}|unknown')
    for key, value in (('max_dense_pairs', -1), ('num_neg_samples', -5),
                       ('balanced', 'yes'), ('unknown', 1)):
        ctor(f'mgvae-recon-{key}-{value}',
             f'MGVAE(recon_kwargs={{{key!r}: {value!r}}})',
             lambda key=key, value=value: mgvae(
                 recon_kwargs={key: value}), f'{key}|unknown')
    ctor('mgn-clusters-0', 'MGN(num_clusters=[0])',
         lambda: mgn(num_clusters=[0]), 'num_clusters')

    def molecule(**kw):
        from torch_geometric_mgvae.chem import QM9_ATOMS
        from torch_geometric_mgvae.models import MoleculeMGVAE
        args = dict(num_atom_types=len(QM9_ATOMS), hidden_channels=8,
                    latent_channels=4, num_clusters=[2, 1], max_nodes=9)
        args.update(kw)
        return MoleculeMGVAE(**args)
    for key, value in (('num_atom_types', 0), ('max_nodes', 0),
                       ('num_bond_types', 0), ('num_bond_types', -1),
                       ('decoder_layers', 0), ('node_channels', -1),
                       ('feature_loss', 'mse'), ('global_decoder', None),
                       ('edge_feature_loss', 'ce'),
                       ('order', 1), ('atoms', [('C', 0)]),
                       ('decode_rounds', 0)):
        ctor(f'molecule-{key}-{value}', f'MoleculeMGVAE({key}={value!r})',
             lambda key=key, value=value: molecule(**{key: value}),
             key if key not in ('feature_loss', 'global_decoder', 'order',
                                'edge_feature_loss')
             else f'{key}|decoder|order')

    def ar(**kw):
        from torch_geometric_mgvae import AutoregressiveMGN
        from torch_geometric_mgvae.chem import QM9_ATOMS
        args = dict(num_atom_types=len(QM9_ATOMS))
        args.update(kw)
        return AutoregressiveMGN(**args)
    for key, value in (('num_atom_types', 3), ('max_nodes', 0),
                       ('hidden_channels', 0), ('latent_channels', -1),
                       ('num_layers', 0), ('num_bond_types', 0),
                       ('max_offset', -1)):
        ctor(f'ar-{key}-{value}', f'AutoregressiveMGN({key}={value!r})',
             lambda key=key, value=value: ar(**{key: value}),
             key if key != 'num_atom_types' else 'atoms|num_atom_types')

    def nn(name):
        import torch_geometric_mgvae.nn as mnn
        return getattr(mnn, name)
    for what, make, match in (
            ('MGNPooling(4, num_clusters=0)',
             lambda: nn('MGNPooling')(4, 0), 'num_clusters'),
            ("MGNPooling(4, 2, select='topk')",
             lambda: nn('MGNPooling')(4, 2, select='topk'), 'select'),
            ('MGNPooling(4, 2, tau=0)',
             lambda: nn('MGNPooling')(4, 2, tau=0.0), 'tau'),
            ('MGNPooling(4, 2, balance=-1)',
             lambda: nn('MGNPooling')(4, 2, balance=-1), 'balance'),
            ("MGNPooling(4, 2, diagonal='none')",
             lambda: nn('MGNPooling')(4, 2, diagonal='none'), 'diagonal'),
            ('MGNPooling(0, 2)', lambda: nn('MGNPooling')(0, 2),
             'in_channels'),
            ("MGNPooling(4, 2, eval_assign='round')",
             lambda: nn('MGNPooling')(4, 2, eval_assign='round'),
             'eval_assign'),
            ('SelectLearned(4, 0)', lambda: nn('SelectLearned')(4, 0),
             'num_clusters'),
            ('SelectLearned(4, 2, tau=inf)',
             lambda: nn('SelectLearned')(4, 2, tau=math.inf), 'tau'),
            ('SelectLearned(4, 2, hidden_channels=0)',
             lambda: nn('SelectLearned')(4, 2, hidden_channels=0),
             'hidden_channels'),
            ('SelectLearned(4, 2, num_layers=-1)',
             lambda: nn('SelectLearned')(4, 2, num_layers=-1), 'num_layers'),
            ('SelectFixed(0)', lambda: nn('SelectFixed')(0), 'num_clusters'),
            ('LearnablePrior(0, 4)', lambda: nn('LearnablePrior')(0, 4),
             'max_nodes'),
            ('LearnablePrior(4, 0)', lambda: nn('LearnablePrior')(4, 0),
             'latent_channels'),
            ("LearnablePrior(4, 4, matching='greedy')",
             lambda: nn('LearnablePrior')(4, 4, matching='greedy'),
             'matching'),
            ('LearnablePrior(4, 4, eps=0)',
             lambda: nn('LearnablePrior')(4, 4, eps=0.0), 'eps'),
            ('LearnablePrior(4, 4, eps=-1)',
             lambda: nn('LearnablePrior')(4, 4, eps=-1.0), 'eps'),
            ('GaussianMRFHead(0, 4)', lambda: nn('GaussianMRFHead')(0, 4),
             'in_channels'),
            ("CoarsenEdges('none')", lambda: nn('CoarsenEdges')('none'),
             'diagonal'),
            ('MGNConv(0, 4)', lambda: nn('MGNConv')(0, 4), 'in_channels'),
            ('SecondOrderEncoder(4, 0, 0, 8, 2)',
             lambda: nn('SecondOrderEncoder')(4, 0, 0, 8, 2), 'channels'),
            ('LocalEncoder(4, 8, num_layers=0)',
             lambda: nn('LocalEncoder')(4, 8, 0), 'num_layers'),
    ):
        name = 'nn-' + re.sub(r'[^\w]+', '-', what).strip('-').lower()
        ctor(name, what, make, match)

    def tr(name):
        import torch_geometric_mgvae.transforms as t
        return getattr(t, name)
    ctor('fixed-hierarchy-method', "FixedHierarchy('louvain', [4, 1])",
         lambda: tr('FixedHierarchy')('louvain', [4, 1]), 'method')
    ctor('fixed-hierarchy-empty', "FixedHierarchy('spectral', [])",
         lambda: tr('FixedHierarchy')('spectral', []), 'num_clusters')
    ctor('fixed-hierarchy-zero', "FixedHierarchy('spectral', [4, 0])",
         lambda: tr('FixedHierarchy')('spectral', [4, 0]), 'num_clusters')
    ctor('fixed-hierarchy-n-init-0', "FixedHierarchy('kmeans', [4, 1], "
         "n_init=0)", lambda: tr('FixedHierarchy')('kmeans', [4, 1],
                                                    n_init=0), 'n_init')

    def fixed_n_init_applied():
        return tr('FixedHierarchy')('kmeans', [2, 1], n_init=0)(graph(6))
    api('hparams', 'fixed-hierarchy-n-init-0-applied', "FixedHierarchy("
        "'kmeans', [2, 1], n_init=0) applied to a graph",
        fixed_n_init_applied, error=(ValueError, TypeError), match='n_init')
    ctor('structural-walk-0', 'AddStructuralFeatures(walk_length=0)',
         lambda: tr('AddStructuralFeatures')(0), 'walk_length')

    def ds(name):
        import torch_geometric_mgvae.datasets as d
        return getattr(d, name)
    ctor('generator-min-1', 'CommunityGraphGenerator(min_nodes=1)',
         lambda: ds('CommunityGraphGenerator')(min_nodes=1), 'min_nodes')
    ctor('generator-min-gt-max', 'CommunityGraphGenerator(min_nodes=9, '
         'max_nodes=4)', lambda: ds('CommunityGraphGenerator')(
             min_nodes=9, max_nodes=4), 'min_nodes|max_nodes')
    def image(cls, **kw):
        import torch_geometric_mgvae.models as models
        return getattr(models, cls)(**kw)
    for cls, key, value in (('ImageMGVAE', 'image_size', 30),
                            ('ImageMGVAE', 'num_levels', 1),
                            ('ImageMGVAE', 'latent_channels', 0),
                            ('ImageMGVAE', 'hidden_channels', 0),
                            ('ImageMGVAE', 'cell', 0),
                            ('ImageMGVAE', 'readout_grid', [4, 4]),
                            ('ImageMGVAE', 'readout_grid', [4, 4, 16]),
                            ('ImageMGVAE', 'hierarchical_readout', 'yes'),
                            ('ImageMGVAE', 'top_down_prior', 'yes'),
                            ('ConvVAE', 'channels', 0),
                            ('ConvVAE', 'image_size', 33)):
        ctor(f'{cls.lower()}-{key}-{value}', f'{cls}({key}={value})',
             lambda cls=cls, key=key, value=value: image(cls, **{key: value}),
             f'{key}|side|cell|levels')
    for value in (-1.0, float('nan'), [1.0, 2.0]):
        def bits(value=value):
            from torch_geometric_mgvae.models.image import free_bits_of
            return free_bits_of(value, 3)
        api('hparams', f'free-bits-{value}', f'free_bits_of({value!r}, 3)',
            bits, error=(ValueError, ), match='free_bits')

    def regressor(**kw):
        from torch_geometric_mgvae.models.property import (
            HierarchicalRegressor,
        )
        args = dict(in_channels=4, edge_channels=3, hidden_channels=8,
                    out_channels=2)
        args.update(kw)
        return HierarchicalRegressor(**args)
    for key, value in (('in_channels', 0), ('edge_channels', -1),
                       ('hidden_channels', 0), ('out_channels', 0),
                       ('num_layers', 0), ('readout', 'max')):
        ctor(f'regressor-{key}-{value}', f'HierarchicalRegressor({key}='
             f'{value!r})', lambda key=key, value=value: regressor(
                 **{key: value}), key)
    ctor('community-dataset-negative', 'make_community_dataset(-3)',
         lambda: ds('make_community_dataset')(-3), 'num_graphs')

    def split_probe(ctx):
        root = copy_fixture(ctx, 'community_root',
                            osp.join(ctx.tmpdir('split'), 'c'))
        return ds('CommunitySmall')(root, split='val')
    ctor('community-split', "CommunitySmall(root, split='val')",
         split_probe, 'split')
    api('hparams', 'gdss-split', "gdss_split(10, 'val')",
        lambda: ds('gdss_split')(10, 'val'), error=(ValueError, ),
        match='split')
    api('hparams', 'mmd-kernel', "graph_mmd(..., kernel='rbf')",
        lambda: __import__('torch_geometric_mgvae.metrics', fromlist=['x'])
        .graph_mmd([graph(4)], [graph(4)], kernel='rbf'),
        error=(ValueError, ), match='kernel')


# Probes: command line options ############################################

DEMO_TINY = ['--num-graphs', '10', '--epochs', '1', '--num-samples', '4',
             '--hidden', '8', '--latent', '4', '--batch-size', '8',
             '--no-progress', '--out', 'out']


def gen_args(extra=()):
    return (['generate', '--dataset', 'community-small', '--root', 'cs',
             '--out', 'out', '--seeds', '1', '--epochs', '1',
             '--num-samples', '8', '--kernel', 'graphrnn', '--hidden', '8',
             '--latent', '4', '--batch-size', '16', '--no-progress'] +
            list(extra))


def gen_setup(ctx, cwd):
    copy_fixture(ctx, 'community_root', osp.join(cwd, 'cs'))
    return {}


def lp_args(extra=()):
    return (['link-pred', '--dataset', 'Cora', '--root', 'planetoid',
             '--raw', '{shared}', '--out', 'out', '--seeds', '1',
             '--variants', 'learned', '--levels', '3', '--no-baseline',
             '--epochs', '2', '--eval-every', '1', '--hidden', '8',
             '--latent', '4', '--no-progress'] + list(extra))


def mol_args(extra=()):
    return (['molecules', '--dataset', 'qm9', '--root', 'qm9', '--out',
             'out', '--num-train', '40', '--num-samples', '8', '--no-fcd',
             '--epochs', '1', '--batch-size', '16', '--hidden', '8',
             '--latent', '4', '--layers', '1', '--decoder-layers', '1',
             '--no-progress'] + list(extra))


def mol_setup(ctx, cwd):
    copy_fixture(ctx, 'qm9_root', osp.join(cwd, 'qm9'))
    return {}


def prop_args(extra=()):
    return (['properties', '--dataset', 'zinc', '--root', 'zinc', '--out',
             'out', '--methods', 'mgn', '--seeds', '1', '--epochs', '1',
             '--batch-size', '16', '--hidden', '8', '--no-progress'] +
            list(extra))


def prop_setup(ctx, cwd):
    copy_fixture(ctx, 'zinc_root', osp.join(cwd, 'zinc'))
    return {}


def _cli_option_probes():
    bad = [
        ('demo', ['--lr', '0']), ('demo', ['--lr', '-1']),
        ('demo', ['--lr', 'nan']), ('demo', ['--lr', 'inf']),
        ('demo', ['--lr', 'abc']), ('demo', ['--epochs', '0']),
        ('demo', ['--epochs', '-3']), ('demo', ['--epochs', '1.5']),
        ('demo', ['--batch-size', '0']), ('demo', ['--hidden', '0']),
        ('demo', ['--latent', '0']), ('demo', ['--clusters', '']),
        ('demo', ['--clusters', '4,x']), ('demo', ['--clusters', '2,0']),
        ('demo', ['--clusters', '2,-1']), ('demo', ['--layers', '0']),
        ('demo', ['--order', '3']), ('demo', ['--prior', 'gamma']),
        ('demo', ['--decoder', 'dense']), ('demo', ['--covariance', 'mrf']),
        ('demo', ['--random-features', '-1']),
        ('demo', ['--kl-weight', 'inf']), ('demo', ['--kl-weight', '-1']),
        ('demo', ['--num-samples', '0']), ('demo', ['--num-graphs', '2']),
        ('demo', ['--seed', '-1']), ('demo', ['--data', 'missing.json']),
        ('demo', ['--checkpoint-every', '-1']), ('demo', ['--resume']),
        ('demo', ['--foo']), ('demo', ['--epochs']),
        ('demo', ['--latent-sampler', 'kde']), ('demo', ['--threads', '0']),
        ('demo', ['--prior', 'learnable', '--order', '1', '--covariance',
                  'mrf']),
        ('generate', ['--dataset', 'grid']), ('generate', ['--seeds', '0']),
        ('generate', ['--num-samples', '0']), ('generate', ['--tau', '0']),
        ('generate', ['--tau', 'nan']), ('generate', ['--lr', '1e400']),
        ('generate', ['--kernel', 'rbf']), ('generate', ['--clusters', '0']),
        ('generate', ['--cut-weight', '-1']),
        ('generate', ['--latent-sampler', 'fitted',
                      '--hierarchical-decoding']),
        ('generate', ['--order', '1', '--covariance', 'mrf']),
        ('link-pred', ['--levels', '5']), ('link-pred', ['--levels', '1']),
        ('link-pred', ['--eval-every', '0']), ('link-pred', ['--threads', '0']),
        ('link-pred', ['--cluster-features', '-1']),
        ('link-pred', ['--cluster-init-epochs', 'x']),
        ('link-pred', ['--raw', 'missing']),
        ('link-pred', ['--dataset', 'PubMed']),
        ('link-pred', ['--variants', 'louvain']),
        ('link-pred', ['--seeds', '0']), ('link-pred', ['--epochs', '0']),
        ('link-pred', ['--kl-weight', '-1']),
        ('link-pred', ['--cluster-balance', '-1']),
        ('link-pred', ['--entropy-weight', 'nan']),
        ('molecules', ['--threshold', '2']),
        ('molecules', ['--temperature', '0']),
        ('molecules', ['--batch-size', '0']),
        ('molecules', ['--data', 'missing']),
        ('molecules', ['--dataset', 'zinc250k']),
        ('molecules', ['--decoder', 'gan']),
        ('molecules', ['--num-train', '0']),
        ('molecules', ['--kl-warmup', '-1']),
        ('molecules', ['--max-minutes', '0']),
        ('molecules', ['--valence-weight', '-1']),
        ('molecules', ['--clusters', 'x']),
        ('molecules', ['--refine-steps', '-1']),
        ('molecules', ['--refine-steps', '1', '--dataset', 'zinc']),
        ('molecules', ['--refine-steps', '1', '--decoder',
                       'autoregressive']),
        ('molecules', ['--masked-decoding', '--decoder', 'autoregressive']),
        ('molecules', ['--decode-rounds', '4']),
        ('molecules', ['--masked-decoding', '--decode-temperature', 'nan']),
        ('molecules', ['--aromatic', '--decoder', 'autoregressive']),
        ('molecules', ['--distance-context', '6']),
        ('molecules', ['--masked-decoding', '--distance-context', '-1']),
        ('molecules', ['--ema', '1']), ('molecules', ['--ema', 'nan']),
        ('properties', []), ('properties', ['--dataset', 'pcqm4m']),
        ('properties', ['--dataset', 'zinc', '--mode', 'unsupervised']),
        ('properties', ['--dataset', 'qm9', '--mode', 'unsupervised',
                        '--kl-weight', '-1']),
        ('properties', ['--dataset', 'qm9', '--mode', 'unsupervised',
                        '--feature-mask', '1']),
        ('properties', ['--dataset', 'qm9', '--mode', 'unsupervised',
                        '--feature-mask', 'nan']),
        ('properties', ['--dataset', 'zinc', '--methods', 'gat']),
        ('properties', ['--dataset', 'zinc', '--methods', ',']),
        ('properties', ['--dataset', 'zinc', '--targets', 'qed']),
        ('properties', ['--dataset', 'zinc', '--seeds', '0']),
        ('properties', ['--dataset', 'zinc', '--subset', '0']),
        ('properties', ['--dataset', 'zinc', '--hidden', '0']),
        ('properties', ['--dataset', 'zinc', '--layers', '0']),
        ('properties', ['--dataset', 'zinc', '--clusters', '0']),
        ('properties', ['--dataset', 'zinc', '--clusters', 'x']),
        ('properties', ['--dataset', 'zinc', '--ratio', '0']),
        ('properties', ['--dataset', 'zinc', '--ratio', '1.5']),
        ('properties', ['--dataset', 'zinc', '--cluster-layers', '-1']),
        ('properties', ['--dataset', 'zinc', '--aux-weight', 'nan']),
        ('properties', ['--dataset', 'zinc', '--epochs', '0']),
        ('properties', ['--dataset', 'zinc', '--batch-size', '0']),
        ('properties', ['--dataset', 'zinc', '--lr', 'inf']),
        ('properties', ['--dataset', 'zinc', '--device', 'tpu']),
        ('properties', ['--dataset', 'qm9', '--mode', 'unsupervised',
                        '--ae-train', '0']),
        ('properties', ['--dataset', 'qm9', '--mode', 'unsupervised',
                        '--latent', '0']),
        ('properties', ['--dataset', 'qm9', '--mode', 'unsupervised',
                        '--order', '3']),
        ('properties', ['--dataset', 'zinc', '--mlp', 'deep']),
        ('properties', ['--dataset', 'zinc', '--data', 'missing']),
        ('images', ['--num-train', '0']), ('images', ['--models', 'gan']),
        ('images', ['--models', '']), ('images', ['--fid-samples', '1']),
        ('images', ['--fid-batch-size', '0']), ('images', ['--seed', '-1']),
        ('images', ['--device', 'tpu']), ('images', ['--hidden', '0']),
        ('images', ['--latent', '0']), ('images', ['--layers', '0']),
        ('images', ['--decoder-channels', '0']),
        ('images', ['--conv-channels', '0']), ('images', ['--epochs', '0']),
        ('images', ['--batch-size', '0']), ('images', ['--lr', 'nan']),
        ('images', ['--kl-weight', '-1']), ('images', ['--max-minutes', '0']),
        ('images', ['--data', 'missing']), ('images', ['--norm', 'group']),
        ('images', ['--readout-grid', '3']),
        ('images', ['--readout-grid', '0']),
        ('images', ['--readout-grid', '4,4']),
        ('images', ['--readout-grid', '4,4,16']),
        ('images', ['--readout-grid', '4,,8']),
        ('images', ['--free-bits', '-1']), ('images', ['--free-bits', '1,2']),
        ('images', ['--free-bits', 'inf']), ('images', ['--free-bits', '']),
        # Devices and data-parallel launch (issue 15):
        ('demo', ['--nproc', '0']), ('demo', ['--nproc', '-1']),
        ('link-pred', ['--nproc', 'abc']), ('demo', ['--device', 'tpu']),
    ]
    torch = _torch()
    if not torch.cuda.is_available():  # a device that is not there
        bad += [('demo', ['--device', 'cuda']),
                ('generate', ['--dataset', 'community-small', '--device',
                              'cuda'])]
    if not torch.backends.mps.is_available():
        bad += [('molecules', ['--device', 'mps'])]
    for command, extra in bad:
        name = f'{command}-' + ('-'.join(
            re.sub(r'[^\w.]+', '', a) or 'empty' for a in extra) or
            'no-options')
        cli('cli', name, f'mgvae {command} {" ".join(extra) or "(nothing)"}',
            [command] + extra + ['--out', 'out'])
    cli('cli', 'no-command', 'mgvae (no command)', [])
    cli('cli', 'unknown-command', 'mgvae train', ['train'])
    cli('cli', 'help', 'mgvae demo --help', ['demo', '--help'], rc=(0, ),
        check=lambda r: ('usage' in r.stdout and 'exit codes' in r.stdout,
                         'usage and exit codes printed'),
        expect='exit 0 with the usage and the exit codes')

    def debug_check(r):
        r"""--debug: the traceback is shown"""
        return 'Traceback' in r.stderr, 'traceback shown' \
            if 'Traceback' in r.stderr else 'no traceback'
    cli('cli', 'debug-runtime-error', 'mgvae demo --data <a JSON list of 0 '
        'graphs> --debug', ['demo', '--data', 'empty.edgelists.json',
                            '--debug', '--out', 'out'],
        rc=(1, 2), setup=lambda ctx, cwd: _write(
            osp.join(cwd, 'empty.edgelists.json'), '[]'),
        check=debug_check, nothing_written=False,
        expect='exit 1/2, one line mgvae: error and the traceback')

    def entry_point(argv, rc):
        def run(ctx):
            cwd = ctx.tmpdir('entry')
            env = dict(os.environ, PYTHONPATH=ROOT)
            t0 = time.time()
            p = subprocess.run([sys.executable, '-m',
                                'torch_geometric_mgvae.cli'] + argv,
                               cwd=cwd, env=env, capture_output=True,
                               text=True, timeout=300)
            res = CliResult(p.returncode, p.stdout, p.stderr,
                            time.time() - t0, cwd)
            return classify_cli(res, rc, lambda r: (
                files_under(cwd) == [], 'nothing written'))
        return run
    add(Probe('entry-point-usage', 'cli', 'python -m '
              'torch_geometric_mgvae.cli demo --lr 0 (a real process)',
              'exit 2 with one line "mgvae: ...", nothing written',
              entry_point(['demo', '--lr', '0'], (2, )), local=False))
    add(Probe('entry-point-sys-exit', 'cli', 'python -m '
              'torch_geometric_mgvae.cli demo --data missing.json (a real '
              'process)', 'exit 2 with one line "mgvae: ...", nothing '
              'written', entry_point(['demo', '--data', 'missing.json'],
                                     (2, )), local=False))
    # Bad combinations that only show with data:
    cli('cli', 'generate-clusters-gt-nodes', 'mgvae generate --clusters '
        '64,1 (more clusters than nodes)', gen_args(['--clusters', '64,1']),
        rc=(0, ), setup=gen_setup, check=records_ok('out/graph_generation'
                                                    '.json'))
    cli('cli', 'link-pred-eval-every-gt-epochs', 'mgvae link-pred --epochs '
        '2 --eval-every 5 (no evaluation epoch)',
        lp_args(['--eval-every', '5']), rc=(0, 2),
        check=records_ok('out/link_prediction.json'), needs=('cora', ))
    cli('cli', 'molecules-num-train-gt-data', 'mgvae molecules '
        '--num-train 100000 (more than the data holds)',
        mol_args(['--num-train', '100000']), rc=(0, 1, 2), setup=mol_setup,
        check=records_ok('out/molecule_generation.json'), needs=('qm9', ),
        nothing_written=False)


def _write(path: str, text: str) -> Dict[str, str]:
    os.makedirs(osp.dirname(path) or '.', exist_ok=True)
    with open(path, 'w') as f:
        f.write(text)
    return {}


def _strict_json(path: str) -> Any:
    def bad(c):
        raise ValueError(f'bare {c} in JSON')
    with open(path) as f:
        return json.load(f, parse_constant=bad)


def records_ok(rel: str) -> Callable[[CliResult], Tuple[bool, str]]:
    def check(r: CliResult) -> Tuple[bool, str]:
        r"""valid records JSON, every value finite or null with an error"""
        path = osp.join(r.cwd, rel)
        if not osp.exists(path):
            return False, f'no {rel}'
        try:
            recs = _strict_json(path)
        except ValueError as e:
            return False, f'{rel}: {e}'
        bad = [x for x in recs if x.get('value') is None
               and not x.get('error')]
        return not bad, f'{len(recs)} records' + (
            f', {len(bad)} null without error' if bad else '')
    return check


# Probes: non-finite training #############################################

def nothing_written_by_nan(r: CliResult) -> Tuple[bool, str]:
    r"""no model, record or summary written"""
    found = [f for f in files_under(r.cwd) if re.search(
        r'(^|/)out/.*\.(json|png|csv|md|smi)$|mgvae.*\.pt$|model\.pt$', f)]
    return not found, f'wrote {found[:4]}' if found else 'nothing written'


#: The line of a stop at a non-finite loss: the term and the epoch.
NONFINITE = r"non-finite .*'.+'.* epoch"


def _both(*checks):
    def check(r):
        details = []
        for c in checks:
            ok, d = _check_result(c, r)
            details.append(d)
            if not ok:
                return False, d
        return True, '; '.join(details)
    check.__doc__ = ', '.join((c.__doc__ or '').strip() for c in checks)
    return check


def _nonfinite_probes():
    either = ('exit 1 naming the non-finite term and the epoch, no model, '
              'record or summary written; or exit 0 with finite results')
    for lr in ('10', '1e6'):
        cli('nonfinite', f'demo-lr-{lr}', f'mgvae demo --lr {lr}',
            ['demo'] + _set(DEMO_TINY, '--epochs', '3') + ['--lr', lr],
            rc=(0, 1), match=NONFINITE, check=_nan_or_finite_demo,
            nothing_written=False, expect=either)
    cli('nonfinite', 'demo-kl-weight-1e30', 'mgvae demo --kl-weight 1e30',
        ['demo'] + DEMO_TINY + ['--kl-weight', '1e30'], rc=(0, 1),
        match=NONFINITE, check=_nan_or_finite_demo, nothing_written=False,
        expect=either)
    cli('nonfinite', 'generate-lr-10', 'mgvae generate --lr 10',
        gen_args(['--lr', '10', '--epochs', '3']), rc=(1, ), setup=gen_setup,
        match=NONFINITE, check=nothing_written_by_nan, nothing_written=False)
    cli('nonfinite', 'generate-tau-1e-30', 'mgvae generate --tau 1e-30',
        gen_args(['--tau', '1e-30']), rc=(0, 1), setup=gen_setup,
        match=NONFINITE, check=_nan_or_records('out/graph_generation.json'),
        nothing_written=False, expect=either)
    cli('nonfinite', 'link-pred-lr-1e4', 'mgvae link-pred --lr 1e4',
        lp_args(['--lr', '1e4']), rc=(1, ), match=NONFINITE,
        check=nothing_written_by_nan, nothing_written=False,
        needs=('cora', ))
    cli('nonfinite', 'molecules-lr-1e4', 'mgvae molecules --lr 1e4',
        mol_args(['--lr', '1e4', '--epochs', '2']), rc=(1, ),
        setup=mol_setup, match=NONFINITE, check=nothing_written_by_nan,
        nothing_written=False, needs=('qm9', ))

    cli('nonfinite', 'properties-lr-1e30', 'mgvae properties --lr 1e30',
        prop_args(['--lr', '1e30', '--epochs', '2']), rc=(0, 1),
        setup=prop_setup, match=NONFINITE,
        check=_nan_or_records('out/property_prediction.json'),
        nothing_written=False, needs=('zinc', ), expect=either)

    torch = _torch()

    def loader():
        from torch_geometric.loader import DataLoader
        return DataLoader([graph(6, seed=i) for i in range(8)], batch_size=4)

    def run_epoch_nan():
        from torch_geometric_mgvae.experiments.train import (
            NonFiniteError,
            train_epoch,
        )
        model = mgvae()
        opt = torch.optim.SGD(model.parameters(), lr=1e30)
        try:
            for _ in range(20):
                train_epoch(model, loader(), opt)
        except NonFiniteError as e:
            params = [p for p in model.parameters()]
            ok = all(bool(torch.isfinite(p).all()) for p in params)
            return ok, f'{"finite" if ok else "NON-FINITE"} parameters; {e}'
        return False, 'no NonFiniteError after 20 epochs at lr 1e30'
    api('nonfinite', 'train-epoch-lr-1e30', 'train_epoch with SGD(lr=1e30)',
        run_epoch_nan, check=lambda r: r,
        expect='NonFiniteError before the optimizer step; the parameters '
        'stay finite')

    def kl_weight_inf():
        from torch_geometric_mgvae.experiments.train import train_epoch
        model = mgvae()
        opt = torch.optim.Adam(model.parameters(), lr=1e-3)
        return train_epoch(model, loader(), opt, {'kl': math.inf})
    from torch_geometric_mgvae.experiments.train import NonFiniteError
    api('nonfinite', 'train-epoch-kl-weight-inf', "train_epoch(weights="
        "{'kl': inf})", kl_weight_inf, error=(NonFiniteError, ValueError),
        match='kl|loss|weight')

    def kl_loss_huge():
        m = mgvae()
        return m.kl_loss(torch.zeros(3, 4), torch.full((3, 4), 1e4))
    api('nonfinite', 'kl-loss-logstd-1e4', 'kl_loss(mu, logstd=1e4)',
        kl_loss_huge, error=(ValueError, ), check=finite)

    def prior_eps_tiny():
        m = mgvae(order=2, covariance='mrf', prior='learnable', max_nodes=6,
                  prior_kwargs=dict(eps=1e-30))
        return loss_terms(m, graph(6))
    api('nonfinite', 'prior-eps-1e-30', "learnable prior with eps=1e-30",
        prior_eps_tiny, error=(ValueError, ), match='eps',
        check=finite_terms)

    def kl_of_nan_factor():
        from torch_geometric_mgvae.nn import kl_mvn_standard
        L = torch.full((1, 3, 3, 2), 1e200, dtype=torch.float64)
        return kl_mvn_standard(torch.zeros(1, 3, 2, dtype=torch.float64), L,
                               torch.ones(1, 3, dtype=torch.bool))
    api('nonfinite', 'kl-mvn-overflowing-factor', 'kl_mvn_standard with '
        'factors of 1e200 (L L^T overflows)', kl_of_nan_factor,
        error=(ValueError, ), match='definite|finite',
        check=lambda v: (not bool(_torch().isfinite(v).all()),
                         f'{v.tolist()} (non-finite, stops a trainer)'),
        expect='a clear error, or a non-finite KL (which every trainer '
        'stops at)')


def _set(args: List[str], key: str, value: str) -> List[str]:
    args = list(args)
    args[args.index(key) + 1] = value
    return args


def _nan_or_finite_demo(r: CliResult) -> Tuple[bool, str]:
    if r.rc != 0:
        return nothing_written_by_nan(r)
    path = osp.join(r.cwd, 'out', 'demo.json')
    try:
        res = _strict_json(path)
    except (OSError, ValueError) as e:
        return False, f'demo.json: {e}'
    vals = [res['mmd_generated'][k] for k in ('degree', 'clustering')]
    vals += [v for v in res['final'].values() if isinstance(v, float)]
    ok = all(v is not None and math.isfinite(v) for v in vals)
    return ok, f'final loss {res["final"].get("loss")}'


def _nan_or_records(rel):
    def check(r):
        if r.rc != 0:
            return nothing_written_by_nan(r)
        return records_ok(rel)(r)
    return check


# Probes: interrupts and --resume #########################################

def _load_state(path: str):
    torch = _torch()
    return torch.load(path, map_location='cpu', weights_only=True)


def _interrupt_probe(name, what, argv, sigs, setup=None, wait_for=None,
                     delay=0.0, needs=()):
    r"""Runs :obj:`argv`, waits for :obj:`wait_for` (a file, relative to
    the folder) or :obj:`delay` seconds, sends :obj:`sigs`; expects exit
    130, one line, and a loadable training state if one was saved."""
    def run(ctx):
        cwd = ctx.tmpdir(name)
        if setup:
            setup(ctx, cwd)
        args = [a.format(shared=SHARED, cwd=cwd) for a in argv]

        def interrupt(p):
            t0 = time.time()
            ctx.wait_started(p)
            if wait_for:
                while not osp.exists(osp.join(cwd, wait_for)) and \
                        p.is_alive() and time.time() - t0 < 200:
                    time.sleep(0.02)
            time.sleep(delay)
            for s in sigs:
                if p.is_alive():
                    os.kill(p.pid, s)
                time.sleep(0.05)
        res = ctx.run_cli(args, cwd, 300, interrupt)

        def check(r):
            last = r.lines()[-1] if r.lines() else ''
            if not last.startswith('mgvae: interrupted'):
                return False, f'last line {last!r}'
            state = [f for f in files_under(cwd)
                     if f.endswith('train_state.pt')]
            for f in state:
                try:
                    _load_state(osp.join(cwd, f))
                except Exception as e:  # noqa: BLE001
                    return False, f'{f} unreadable: {_first(e)}'
            return True, last[:160]
        if res.rc == 0:
            return DEFINED, 'finished before the signal arrived'
        return classify_cli(res, (130, ), check)
    add(Probe(name, 'signals', what, 'exit 130 with one line "mgvae: '
              'interrupted ...", any saved training state loads', run,
              local=False, needs=needs))


def _resume_equal_probe():
    argv = ['demo', '--num-graphs', '16', '--epochs', '25', '--num-samples',
            '4', '--hidden', '8', '--latent', '4', '--batch-size', '4',
            '--checkpoint-every', '1', '--out', 'out']

    def run(ctx):
        torch = _torch()
        a = ctx.tmpdir('resume-a')
        ra = ctx.run_cli(argv + ['--no-progress'], a)
        if ra.rc != 0:
            return classify_cli(ra, (0, ))
        b = ctx.tmpdir('resume-b')

        def interrupt(p):
            t0 = time.time()
            while p.is_alive() and time.time() - t0 < 200 and not osp.exists(
                    osp.join(b, 'out', 'train_state.pt')):
                time.sleep(0.01)
            if p.is_alive():
                os.kill(p.pid, signal.SIGINT)
        rb = ctx.run_cli(argv + ['--no-progress'], b, 300, interrupt)
        stopped = rb.rc == 130
        if rb.rc not in (0, 130):
            return classify_cli(rb, (130, ))
        rc = ctx.run_cli(argv + ['--resume', '--no-progress'], b)
        if rc.rc != 0:
            return classify_cli(rc, (0, ))
        sa = torch.load(osp.join(a, 'out', 'mgvae.pt'), weights_only=True)
        sb = torch.load(osp.join(b, 'out', 'mgvae.pt'), weights_only=True)
        same = sa['model'].keys() == sb['model'].keys() and all(
            torch.equal(sa['model'][k], sb['model'][k]) for k in sa['model']
            if isinstance(sa['model'][k], torch.Tensor))
        how = 'interrupted, resumed' if stopped else \
            'finished before the signal, resumed'
        return ((DEFINED if same else SILENT),
                f'{how}: parameters {"equal" if same else "differ"}')
    add(Probe('demo-resume-equals-uninterrupted', 'signals',
              'mgvae demo: SIGINT after epoch 1, then --resume',
              'the final parameters equal an uninterrupted run\'s', run,
              local=False))


def _signal_probes():
    long_demo = ['demo', '--num-graphs', '16', '--epochs', '2000',
                 '--num-samples', '4', '--hidden', '8', '--latent', '4',
                 '--checkpoint-every', '1', '--no-progress', '--out', 'out']
    _interrupt_probe('demo-sigint', 'mgvae demo: SIGINT during training',
                     long_demo, [signal.SIGINT], wait_for='out/'
                     'train_state.pt')
    _interrupt_probe('demo-sigterm', 'mgvae demo: SIGTERM during training',
                     long_demo, [signal.SIGTERM], wait_for='out/'
                     'train_state.pt')
    _interrupt_probe('demo-sigint-twice', 'mgvae demo: SIGINT twice',
                     long_demo, [signal.SIGINT, signal.SIGINT],
                     wait_for='out/train_state.pt')
    _interrupt_probe('demo-sigint-options', 'mgvae demo: SIGINT at once '
                     '(while the options are read)', long_demo,
                     [signal.SIGINT])
    _interrupt_probe('demo-sigint-startup', 'mgvae demo: SIGINT after 50 ms '
                     '(before training)', long_demo, [signal.SIGINT],
                     delay=0.05)
    _interrupt_probe('generate-sigterm', 'mgvae generate: SIGTERM during '
                     'training', gen_args(['--epochs', '2000',
                                           '--checkpoint-every', '1']),
                     [signal.SIGTERM], setup=gen_setup,
                     wait_for='out/train_state.pt')
    _interrupt_probe('link-pred-sigint', 'mgvae link-pred: SIGINT during '
                     'training', lp_args(['--epochs', '2000',
                                          '--checkpoint-every', '1']),
                     [signal.SIGINT], wait_for='out/train_state.pt',
                     needs=('cora', ))
    _interrupt_probe('molecules-sigint', 'mgvae molecules: SIGINT during '
                     'training', mol_args(['--epochs', '2000']),
                     [signal.SIGINT], setup=mol_setup,
                     wait_for='out/train_state.pt', needs=('qm9', ))
    _interrupt_probe('properties-sigint', 'mgvae properties: SIGINT during '
                     'training', prop_args(['--epochs', '2000']),
                     [signal.SIGINT], setup=prop_setup,
                     wait_for='out/train_state.pt', needs=('zinc', ))
    _resume_equal_probe()

    # --resume mismatches and broken states:
    def with_state(ctx, cwd, extra=()):
        r = ctx.run_cli(['demo'] + DEMO_TINY + list(extra), cwd)
        if r.rc != 0:
            raise RuntimeError(f'setup run failed: {r.stderr[-300:]}')
        return {}

    def resume_probe(name, what, mutate, argv_extra=(), rc=(2, ),
                     state_extra=()):
        def setup(ctx, cwd):
            with_state(ctx, cwd, state_extra)
            if mutate:
                mutate(osp.join(cwd, 'out', 'train_state.pt'), cwd)
            return {}
        cli('signals', name, what, ['demo'] + DEMO_TINY + list(argv_extra)
            + ['--resume'], rc=rc, setup=setup,
            check=no_marker_cli)
    resume_probe('resume-other-lr', 'mgvae demo --resume with another --lr',
                 None, ['--lr', '0.01'])
    resume_probe('resume-other-epochs', 'mgvae demo --resume with more '
                 '--epochs', None, ['--epochs', '2'], rc=(0, 2))
    resume_probe('resume-other-command', 'mgvae demo --resume on a '
                 'generate run\'s state', lambda p, cwd: _state_of_other(p))
    resume_probe('resume-empty-out', 'mgvae demo --resume in an empty --out',
                 lambda p, cwd: os.remove(p))


def no_marker_cli(r: CliResult) -> Tuple[bool, str]:
    r"""no code run from a crafted file"""
    m = osp.join(r.cwd, PWNED)
    return not osp.exists(m), 'code ran' if osp.exists(m) else 'not run'


def _state_of_other(path: str) -> None:
    state = _load_state(path)
    state['args']['command'] = 'generate'
    state['args']['dataset'] = 'community-small'
    _torch().save(state, path)


# Probes: corrupt, truncated and crafted files ############################

def _file_probes():
    torch = _torch()

    # Training states (mgvae ... --resume):
    def state_probe(name, what, mutate, rc=(2, )):
        def setup(ctx, cwd):
            r = ctx.run_cli(['demo'] + DEMO_TINY, cwd)
            if r.rc != 0:
                raise RuntimeError(f'setup run failed: {r.stderr[-300:]}')
            mutate(osp.join(cwd, 'out', 'train_state.pt'), cwd)
            return {}
        cli('files', name, what, ['demo'] + DEMO_TINY + ['--resume'],
            rc=rc, setup=setup, check=no_marker_cli)
    state_probe('state-truncated', 'train_state.pt cut in half, --resume',
                lambda p, cwd: truncate(p))
    state_probe('state-empty', 'train_state.pt of 0 bytes, --resume',
                lambda p, cwd: truncate(p, 0))
    state_probe('state-garbage', 'train_state.pt of random bytes, --resume',
                lambda p, cwd: open(p, 'wb').write(os.urandom(4096)))
    state_probe('state-crafted', 'train_state.pt whose unpickling runs '
                'code, --resume',
                lambda p, cwd: crafted_torch(p, osp.join(cwd, PWNED)))
    state_probe('state-json', 'train_state.pt holding JSON text, --resume',
                lambda p, cwd: open(p, 'w').write('{"format": 1}'))
    state_probe('state-list', 'train_state.pt holding a list, --resume',
                lambda p, cwd: torch.save([1, 2], p))
    state_probe('state-no-args', "train_state.pt {'format': 1} without "
                "args, --resume", lambda p, cwd: torch.save({'format': 1}, p))

    def other_shapes(p, cwd):
        s = _load_state(p)
        s['current']['model'] = {k: torch.zeros(1) for k in
                                 s['current']['model']}
        torch.save(s, p)
    state_probe('state-wrong-shapes', 'train_state.pt with weights of '
                'other shapes, --resume', other_shapes, rc=(1, 2))

    def no_rng(p, cwd):
        s = _load_state(p)
        s['current'].pop('rng')
        torch.save(s, p)
    state_probe('state-missing-rng', 'train_state.pt without random '
                'states, --resume', no_rng, rc=(1, 2))

    # Checkpoints through the documented loader:
    def ckpt(ctx, mutate):
        from torch_geometric_mgvae.experiments.io import load_torch
        from torch_geometric_mgvae.experiments.state import model_checkpoint
        d = ctx.tmpdir('ckpt')
        m = mgvae()
        path = model_checkpoint(osp.join(d, 'mgvae.pt'), m,
                                dict(in_channels=4, hidden_channels=8,
                                     latent_channels=4, num_clusters=[2, 1]))
        mutate(path, d)
        return load_torch(path), d
    LOAD = (RuntimeError, ValueError, OSError)
    api('files', 'checkpoint-truncated', 'load_torch(mgvae.pt cut in half)',
        lambda ctx: ckpt(ctx, lambda p, d: truncate(p)), error=LOAD,
        match=r'mgvae\.pt')
    api('files', 'checkpoint-empty', 'load_torch(mgvae.pt of 0 bytes)',
        lambda ctx: ckpt(ctx, lambda p, d: truncate(p, 0)), error=LOAD,
        match=r'mgvae\.pt')

    api('files', 'checkpoint-crafted', 'load_torch(a checkpoint whose '
        'unpickling runs code)', lambda ctx: ckpt(
            ctx, lambda p, d: crafted_torch(p, osp.join(d, PWNED))),
        error=LOAD,
        match=r'mgvae\.pt')

    # Result records (--results):
    def results_probe(name, what, content, argv=None):
        def setup(ctx, cwd):
            if content is None:
                os.makedirs(osp.join(cwd, 'res.json'))
            else:
                _write(osp.join(cwd, 'res.json'), content)
            return {}
        cli('files', name, what, argv or gen_args(['--results', 'res.json']),
            rc=(2, ), setup=setup)
    results_probe('results-truncated', 'mgvae generate --results <JSON cut '
                  'mid-record>', '[{"task": "graph_generation", "val')
    results_probe('results-object', 'mgvae generate --results <a JSON '
                  'object>', '{"task": "x"}')
    results_probe('results-numbers', 'mgvae generate --results <a JSON list '
                  'of numbers>', '[1, 2, 3]')
    results_probe('results-directory', 'mgvae generate --results <a '
                  'directory>', None)
    results_probe('results-binary', 'mgvae generate --results <binary '
                  'bytes>', '\x00\xff\xfe garbage')
    results_probe('results-link-pred-truncated', 'mgvae link-pred --results '
                  '<JSON cut mid-record>', '[{"task": ',
                  lp_args(['--results', 'res.json']))
    results_probe('results-molecules-object', 'mgvae molecules --results <a '
                  'JSON object>', '{}', mol_args(['--results', 'res.json']))
    results_probe('results-properties-truncated', 'mgvae properties '
                  '--results <JSON cut mid-record>', '[{"task": "prop',
                  prop_args(['--results', 'res.json']))

    # Processed caches of the datasets:
    def cached(ctx, mutate, split='train', key='community_root',
               cls='CommunitySmall', marker=True):
        import torch_geometric_mgvae.datasets as ds
        d = ctx.tmpdir('cache')
        root = copy_fixture(ctx, key, osp.join(d, 'root'))
        first = getattr(ds, cls)(root, split=split)
        n = len(first)
        mutate(root, d)
        again = getattr(ds, cls)(root, split=split)
        return n, len(again), d

    def same_len(d_marker=True):
        def check(res):
            r"""the cache is rebuilt: same data, no code run"""
            n, m, d = res
            ran = osp.exists(osp.join(d, PWNED))
            return n == m and not ran, f'{m} of {n} graphs' + (
                '; code in the cache ran' if ran else '')
        return check

    def proc(root, name):
        return osp.join(root, 'processed', name)
    for name, what, mutate in (
            ('cache-truncated', 'processed/train.pt cut in half',
             lambda r, d: truncate(proc(r, 'train.pt'))),
            ('cache-empty', 'processed/train.pt of 0 bytes',
             lambda r, d: truncate(proc(r, 'train.pt'), 0)),
            ('cache-crafted', 'processed/train.pt whose unpickling runs code',
             lambda r, d: crafted_torch(proc(r, 'train.pt'),
                                        osp.join(d, PWNED))),
            ('cache-pre-transform-crafted', 'a crafted processed/'
             'pre_transform.pt', lambda r, d: crafted_torch(
                 proc(r, 'pre_transform.pt'), osp.join(d, PWNED))),
            ('cache-manifest-garbage', 'a garbage manifest', lambda r, d: [
                open(p, 'w').write('{not json') for p in [
                    osp.join(r, 'processed', f) for f in os.listdir(
                        osp.join(r, 'processed'))
                    if f.endswith('manifest.json')]]),
            ('cache-manifest-deleted', 'the manifest deleted', lambda r, d: [
                os.remove(osp.join(r, 'processed', f)) for f in os.listdir(
                    osp.join(r, 'processed')) if f.endswith('manifest.json')]),
    ):
        api('files', f'community-{name}', f'CommunitySmall: {what}',
            lambda ctx, mutate=mutate: cached(ctx, mutate),
            check=same_len())

    def raw_changed(ctx):
        import torch_geometric_mgvae.datasets as ds
        d = ctx.tmpdir('rawchange')
        root = copy_fixture(ctx, 'community_root', osp.join(d, 'root'))
        n = len(ds.CommunitySmall(root, split='all'))
        raw = osp.join(root, 'raw', 'community_small.edgelists.json')
        items = json.load(open(raw))[:10]
        _write(raw, json.dumps(items))
        return n, len(ds.CommunitySmall(root, split='all'))
    api('files', 'community-raw-replaced', 'CommunitySmall: raw file '
        'replaced by one with 10 graphs after processing', raw_changed,
        check=lambda r: (r[1] == 10, f'{r[1]} graphs served (was {r[0]})'))

    def qm9_cache(mutate):
        def call(ctx):
            return cached(ctx, mutate, key='qm9_root', cls='QM9Molecules')
        return call
    api('files', 'qm9-cache-truncated', 'QM9Molecules: processed file cut in '
        'half', qm9_cache(lambda r, d: [truncate(osp.join(r, 'processed', f))
                                        for f in os.listdir(osp.join(
                                            r, 'processed'))
                                        if f.endswith('.pt')]),
        check=same_len(), needs=('qm9', ))
    api('files', 'qm9-cache-crafted', 'QM9Molecules: processed files whose '
        'unpickling runs code', qm9_cache(lambda r, d: [
            crafted_torch(osp.join(r, 'processed', f), osp.join(d, PWNED))
            for f in os.listdir(osp.join(r, 'processed'))
            if f.endswith('.pt')]), check=same_len(), needs=('qm9', ))

    # Planetoid caches of link-pred:
    def planetoid(ctx, mutate):
        from torch_geometric_mgvae.experiments.link_prediction import (
            load_dataset,
        )
        d = ctx.tmpdir('planetoid')
        root = osp.join(d, 'root')
        n = load_dataset('Cora', root, SHARED).num_nodes
        mutate(osp.join(root, 'Cora', 'processed'), d)
        m = load_dataset('Cora', root, SHARED).num_nodes
        return n, m, d
    api('files', 'planetoid-cache-crafted', 'link-pred: Planetoid '
        'processed/data.pt whose unpickling runs code',
        lambda ctx: planetoid(ctx, lambda p, d: crafted_torch(
            osp.join(p, 'data.pt'), osp.join(d, PWNED))),
        error=(ValueError, RuntimeError), match='data.pt|cache|processed',
        check=same_len(), needs=('cora', ))
    api('files', 'planetoid-pre-transform-crafted', 'link-pred: a crafted '
        'Planetoid processed/pre_transform.pt',
        lambda ctx: planetoid(ctx, lambda p, d: crafted_torch(
            osp.join(p, 'pre_transform.pt'), osp.join(d, PWNED))),
        error=(ValueError, RuntimeError), match='pre_transform|processed',
        check=same_len(), needs=('cora', ))
    api('files', 'planetoid-cache-truncated', 'link-pred: Planetoid '
        'processed/data.pt cut in half',
        lambda ctx: planetoid(ctx, lambda p, d: truncate(
            osp.join(p, 'data.pt'))),
        error=(ValueError, RuntimeError), match='data.pt|processed',
        check=same_len(), needs=('cora', ))

    # Raw graph lists:
    def graph_list(content, name='g.edgelists.json', allow_pickle=False):
        def call(ctx):
            from torch_geometric_mgvae.datasets import read_graph_list
            d = ctx.tmpdir('glist')
            path = osp.join(d, name)
            if callable(content):
                content(path, d)
            else:
                _write(path, content)
            return read_graph_list(path, allow_pickle=allow_pickle)
        return call
    V = (ValueError, )
    for name, what, content, match in (
            ('edge-to-missing-node', 'an edge to node 7 of a 3-node graph',
             '[{"num_nodes": 3, "edges": [[0, 7]]}]', 'node 7|graph 0'),
            ('negative-id', 'an edge to node -1',
             '[{"num_nodes": 3, "edges": [[0, -1]]}]', 'graph 0'),
            ('num-nodes-negative', 'num_nodes -2',
             '[{"num_nodes": -2, "edges": []}]', 'num_nodes'),
            ('three-element-edge', 'an edge [0, 1, 2]',
             '[{"num_nodes": 3, "edges": [[0, 1, 2]]}]', 'edge'),
            ('not-a-list', 'a JSON object', '{"graphs": []}', 'list'),
            ('truncated', 'JSON cut mid-graph',
             '[{"num_nodes": 3, "edges": [[0, 1]', 'JSON'),
            ('bool-id', 'node ids true/false',
             '[{"num_nodes": 3, "edges": [[true, false]]}]', 'edge'),
            ('float-id', 'node id 1.0',
             '[{"num_nodes": 3, "edges": [[0, 1.0]]}]', 'edge'),
            ('num-nodes-string', 'num_nodes "3"',
             '[{"num_nodes": "3", "edges": []}]', 'num_nodes'),
            ('missing-edges', 'a graph without "edges"',
             '[{"num_nodes": 3}]', 'edges'),
            ('binary', 'binary bytes', '\x00\x01\x02', 'JSON'),
    ):
        api('files', f'graph-json-{name}', f'graph list JSON: {what}',
            graph_list(content), error=V, match=match)
    api('files', 'graph-json-empty-list', 'graph list JSON: []',
        graph_list('[]'), check=lambda r: (r == [], f'{len(r)} graphs'))

    def pickled(obj_or_fn):
        def write(path, d):
            import pickle
            if callable(obj_or_fn):
                obj_or_fn(path, d)
            else:
                with open(path, 'wb') as f:
                    pickle.dump(obj_or_fn, f)
        return write

    for name, what, content in (
            ('crafted', 'a pickle whose loading runs code',
             pickled(lambda p, d: crafted_pickle(p, osp.join(d, PWNED)))),
            ('dict', 'a pickled dict', pickled({'a': 1})),
            ('truncated', 'a pickle cut in half', pickled(
                lambda p, d: (open(p, 'wb').write(__import__('pickle').dumps(
                    [[1, 2, 3]] * 50)[:100])))),
            ('list-of-ints', 'a pickled list of ints', pickled([1, 2, 3])),
    ):
        api('files', f'graph-pickle-{name}', f'graph list pickle: {what}',
            graph_list(content, 'g.pkl'), error=V, match='pkl|pickle|graph')

    def pickle_marker(ctx):
        d = ctx.tmpdir('pk')
        path = osp.join(d, 'g.pkl')
        crafted_pickle(path, osp.join(d, PWNED))
        from torch_geometric_mgvae.datasets import read_graph_list
        try:
            read_graph_list(path)
        except ValueError:
            pass
        return d
    api('files', 'graph-pickle-crafted-not-run', 'graph list pickle whose '
        'loading runs code: is the code run?', pickle_marker,
        check=lambda d: no_marker(osp.join(d, PWNED))(None),
        expect='the code is not run')
    cli('files', 'demo-data-crafted-pickle', 'mgvae demo --data <a pickle '
        'whose loading runs code>', ['demo'] + DEMO_TINY + ['--data',
                                                            'g.pkl'],
        rc=(1, 2), setup=lambda ctx, cwd: crafted_pickle(
            osp.join(cwd, 'g.pkl'), osp.join(cwd, PWNED)) or {},
        check=no_marker_cli)
    cli('files', 'demo-data-empty-graphs', 'mgvae demo --data <5 graphs of '
        '0 nodes>', ['demo'] + DEMO_TINY + ['--data', 'g.edgelists.json'],
        rc=(1, 2), setup=lambda ctx, cwd: _write(
            osp.join(cwd, 'g.edgelists.json'),
            json.dumps([{'num_nodes': 0, 'edges': []}] * 5)))
    cli('files', 'demo-data-single-nodes', 'mgvae demo --data <6 graphs of '
        '1 node>', ['demo'] + DEMO_TINY + ['--data', 'g.edgelists.json'],
        rc=(0, 1, 2), setup=lambda ctx, cwd: _write(
            osp.join(cwd, 'g.edgelists.json'),
            json.dumps([{'num_nodes': 1, 'edges': []}] * 6)),
        check=_nan_or_finite_demo, nothing_written=False,
        expect='a clear error, or exit 0 with finite results')
    cli('files', 'demo-data-directory-two', 'mgvae demo --data <a folder '
        'with two graph lists>', ['demo'] + DEMO_TINY + ['--data', 'd'],
        rc=(1, 2), setup=lambda ctx, cwd: [_write(osp.join(
            cwd, 'd', f'{k}.edgelists.json'), '[]') for k in 'ab'] and {})

    # Raw molecule tables:
    def qm9_raw(mutate):
        def call(ctx):
            from torch_geometric_mgvae.datasets import QM9Molecules
            d = ctx.tmpdir('qm9raw')
            root = copy_fixture(ctx, 'qm9_root', osp.join(d, 'qm9'))
            raw = osp.join(root, 'raw')
            mutate(raw)
            return QM9Molecules(root, split='all')
        return call

    def rewrite_csv(fn):
        def mutate(raw):
            path = osp.join(raw, 'qm9_qm9pack_compact.csv.gz')
            with gzip.open(path, 'rt') as f:
                text = f.read()
            text = fn(text)
            if isinstance(text, bytes):
                open(path, 'wb').write(text)
            else:
                with gzip.open(path, 'wt') as f:
                    f.write(text)
        return mutate

    def n_all(expected):
        def check(ds):
            r"""the expected molecules"""
            return len(ds) == expected, f'{len(ds)} molecules'
        return check

    def nan_free(ds):
        r"""no NaN property stored"""
        bad = int((~_torch().isfinite(ds._data.y)).any(1).sum())
        return bad == 0, f'{len(ds)} molecules, {bad} with NaN/inf targets'
    for name, what, fn, error, match, check in (
            ('cut-mid-line', 'CSV cut mid-line',
             lambda t: t[:len(t) // 2], V, 'line', None),
            ('missing-column', 'CSV without the SMILES column',
             lambda t: t.replace('SMILES', 'Smiles', 1),
             (ValueError, KeyError), 'SMILES', None),
            ('empty', 'an empty CSV', lambda t: '', V, 'empty', None),
            ('header-only', 'a CSV with the header only',
             lambda t: t.splitlines()[0] + '\n', (ValueError, RuntimeError),
             'no molecule|empty|rows', None),
            ('duplicate-id', 'a GDB id twice',
             lambda t: t + t.splitlines()[1] + '\n', V, 'GDB id|line', None),
            ('bad-smiles', 'an unparsable SMILES row',
             lambda t: t + '999999,C1CC(X,3' + ',1.0' * 15 + '\n', None,
             None, n_all(80)),
            ('nan-property', "property values 'nan' and 'inf'",
             lambda t: '\n'.join(
                 [ln if i not in (3, 4) else ','.join(
                     ln.split(',')[:5] + ['nan' if i == 3 else 'inf'] +
                     ln.split(',')[6:]) for i, ln in enumerate(
                         t.splitlines())]) + '\n', V, 'line|nan|finite',
             nan_free),
            ('not-gzip', 'a plain-text file named .csv.gz',
             lambda t: t.encode(), (ValueError, OSError), 'gz|gzip', None),
            ('garbage-gzip', 'random bytes named .csv.gz',
             lambda t: os.urandom(2000), (ValueError, OSError), 'gz|gzip',
             None),
    ):
        api('files', f'qm9-csv-{name}', f'QM9Molecules: {what}',
            qm9_raw(rewrite_csv(fn)), error=error, match=match, check=check,
            needs=('qm9', ))
    for name, what, text, match in (
            ('truncated', 'valid_idx_qm9.json cut', '{"valid_idxs": ["00',
             'valid_idx|JSON'),
            ('not-numbers', 'valid_idx entries that are not numbers',
             '{"valid_idxs": ["abc"]}', 'valid_idx'),
            ('list', 'valid_idx_qm9.json holding a list', '[1, 2]',
             'valid_idx'),
    ):
        api('files', f'qm9-valid-idx-{name}', f'QM9Molecules: {what}',
            qm9_raw(lambda raw, text=text: _write(
                osp.join(raw, 'valid_idx_qm9.json'), text)),
            error=V, match=match, needs=('qm9', ))

    def zinc_raw(mutate):
        def call(ctx):
            from torch_geometric_mgvae.datasets import ZINC12k
            d = ctx.tmpdir('zincraw')
            root = copy_fixture(ctx, 'zinc_root', osp.join(d, 'zinc'))
            mutate(osp.join(root, 'raw'))
            return ZINC12k(root, split='train')
        return call
    for name, what, text, match in (
            ('overlap', 'split indices in train and test',
             'train,val,test\n0,1,0\n2,3,4\n', 'already|overlap|split'),
            ('out-of-range', 'a split index beyond the table',
             'train,val,test\n0,1,999\n', 'row|outside|range'),
            ('not-int', "a split index 'abc'", 'train,val,test\nabc,1,2\n',
             'row|line|abc'),
            ('missing-column', 'a split file without the test column',
             'train,val\n0,1\n', 'test'),
            ('empty-split', 'a split file listing no validation rows',
             'train,val,test\n0,,2\n', 'val|no rows|split'),
    ):
        api('files', f'zinc-split-{name}', f'ZINC12k: {what}',
            zinc_raw(lambda raw, text=text: _write(
                osp.join(raw, 'indexes_train_val_test.csv'), text)),
            error=(ValueError, KeyError), match=match, needs=('zinc', ))
    api('files', 'zinc-smiles-cut', 'ZINC12k: smiles_score.csv cut to 30 '
        'rows (the split lists rows up to 54)',
        zinc_raw(lambda raw: _write(
            osp.join(raw, 'smiles_score.csv'),
            ''.join(open(osp.join(raw, 'smiles_score.csv')).readlines()[:31])
        )), error=V, match='row|outside|range', needs=('zinc', ))


# Probes: missing raw files offline #######################################

def _offline_probes():
    def dataset(cls, prepare=None):
        def call(ctx):
            import torch_geometric_mgvae.datasets as ds
            d = ctx.tmpdir('offline')
            root = osp.join(d, 'root')
            if prepare:
                prepare(ctx, root)
            try:
                return getattr(ds, cls)(root)
            except RuntimeError as e:
                left = files_under(d) if osp.isdir(d) else []
                dirs = [p for p, _, _ in os.walk(d) if p != d]
                if not prepare and (left or dirs):
                    raise AssertionError(f'left behind {dirs[:3]} '
                                         f'{left[:3]}: {e}') from None
                raise
        return call
    for cls, match in (('MNISTGraphs', 'idx'),
                       ('CommunitySmall', 'community_small'),
                       ('EgoSmall', 'ego_small'),
                       ('QM9Molecules', 'qm9'), ('ZINC12k', 'smiles'),
                       ('MOSES', 'csv')):
        api('offline', f'{cls.lower()}-no-raw', f'{cls}(empty root) '
            'offline', dataset(cls), error=(RuntimeError, ),
            match=match,
            expect=f'RuntimeError naming the raw files ({match}...), no '
            f'folder left behind')

    def qm9_without_idx(ctx, root):
        shutil.copytree(ctx.fixtures['qm9_root'], root)
        os.remove(osp.join(root, 'raw', 'valid_idx_qm9.json'))
    api('offline', 'qm9-no-valid-idx', 'QM9Molecules with the CSV but '
        'without valid_idx_qm9.json, offline',
        dataset('QM9Molecules', qm9_without_idx), error=(RuntimeError, ),
        match='valid_idx', needs=('qm9', ))

    def no_folder_left(rel):
        def check(r):
            r"""no empty data folder left"""
            p = osp.join(r.cwd, rel)
            left = [d for d, _, fs in os.walk(p)] if osp.isdir(p) else []
            return not left, f'left {left[:3]}' if left else 'nothing left'
        return check

    cli('offline', 'generate-no-raw', 'mgvae generate --root <empty> '
        'offline', gen_args(['--root', 'data/cs']), rc=(1, ),
        match='community_small', check=no_folder_left('data'))
    cli('offline', 'link-pred-no-raw', 'mgvae link-pred --root <empty> '
        'offline, without --raw',
        [a for a in lp_args() if a not in ('--raw', '{shared}')],
        rc=(1, ), match=r'ind\.cora', check=no_folder_left('planetoid'))
    cli('offline', 'molecules-no-raw', 'mgvae molecules --root <empty> '
        '--data <an empty folder> offline (without --data the shared QM9 '
        'files are copied)', mol_args(['--data', 'empty']), rc=(1, ),
        setup=lambda ctx, cwd: os.makedirs(osp.join(cwd, 'empty')) or {},
        match='qm9', check=no_folder_left('qm9'))
    cli('offline', 'images-no-raw', 'mgvae images --root <empty> --data '
        '<an empty folder> offline',
        ['images', '--root', 'mnist', '--data', 'empty', '--out', 'out',
         '--epochs', '1', '--num-train', '10', '--no-fid', '--no-progress'],
        rc=(1, ), setup=lambda ctx, cwd: os.makedirs(
            osp.join(cwd, 'empty')) or {},
        match='idx', check=no_folder_left('mnist'))
    cli('offline', 'link-pred-raw-without-cora', 'mgvae link-pred --raw '
        '<a folder without cora> offline',
        _set(lp_args(), '--raw', 'empty'), rc=(1, 2), match=r'ind\.cora',
        setup=lambda ctx, cwd: os.makedirs(osp.join(cwd, 'empty')) or {},
        check=no_folder_left('planetoid'))


# Probes: outputs only under --out ########################################

def _outputs_probes():
    def only_under(*prefixes):
        def check(r: CliResult) -> Tuple[bool, str]:
            files = files_under(r.cwd)
            out = [f for f in files
                   if not f.startswith(tuple(p + '/' for p in prefixes))]
            return not out, f'wrote {out[:4]}' if out else \
                f'{len(files)} files under {"/".join(prefixes)}'
        check.__doc__ = f'files only under {", ".join(prefixes)}'
        return check
    cli('outputs', 'demo-only-out', 'mgvae demo --out out',
        ['demo'] + DEMO_TINY, rc=(0, ),
        check=_both(only_under('out'), _nan_or_finite_demo))
    cli('outputs', 'generate-only-out', 'mgvae generate --root cs --out out',
        gen_args(), rc=(0, ), setup=gen_setup,
        check=_both(only_under('out', 'cs'),
                    records_ok('out/graph_generation.json')))
    cli('outputs', 'link-pred-only-out', 'mgvae link-pred --root planetoid '
        '--out out', lp_args(), rc=(0, ),
        check=_both(only_under('out', 'planetoid'),
                    records_ok('out/link_prediction.json')),
        needs=('cora', ))
    cli('outputs', 'molecules-only-out', 'mgvae molecules --root qm9 --out '
        'out', mol_args(), rc=(0, ), setup=mol_setup,
        check=_both(only_under('out', 'qm9'),
                    records_ok('out/molecule_generation.json')),
        needs=('qm9', ))
    cli('outputs', 'properties-only-out', 'mgvae properties --root zinc '
        '--out out', prop_args(), rc=(0, ), setup=prop_setup,
        check=_both(only_under('out', 'zinc'),
                    records_ok('out/property_prediction.json')),
        needs=('zinc', ))
    cli('outputs', 'demo-out-is-file', 'mgvae demo --out <an existing file>',
        ['demo'] + _set(DEMO_TINY, '--out', 'taken'), rc=(1, 2),
        setup=lambda ctx, cwd: _write(osp.join(cwd, 'taken'), 'keep'))
    cli('outputs', 'generate-results-unchanged-on-usage-error',
        'mgvae generate --tau 0 --results <existing records>',
        gen_args(['--tau', '0', '--results', 'res.json']),
        setup=lambda ctx, cwd: _write(osp.join(cwd, 'res.json'), '[]'))
    cli('outputs', 'demo-nan-writes-nothing', 'mgvae demo --lr 1e6: no '
        'files', ['demo'] + _set(DEMO_TINY, '--epochs', '5') +
        ['--lr', '1e6'], rc=(0, 1), check=_nan_or_finite_demo,
        nothing_written=False)
    cli('outputs', 'generate-nan-keeps-results', 'mgvae generate --lr 10 '
        '--results <existing records>: file unchanged',
        gen_args(['--lr', '10', '--epochs', '3', '--results', 'res.json']),
        rc=(1, ), setup=lambda ctx, cwd: gen_setup(ctx, cwd) or _write(
            osp.join(cwd, 'res.json'), '[]'),
        check=lambda r: (open(osp.join(r.cwd, 'res.json')).read() == '[]',
                         'res.json unchanged'), nothing_written=False)
    cli('outputs', 'generate-results-elsewhere', 'mgvae generate --results '
        'elsewhere/res.json (a path outside --out, asked for)',
        gen_args(['--results', 'elsewhere/res.json']), rc=(0, ),
        setup=gen_setup, check=_both(only_under('out', 'cs', 'elsewhere'),
                                     records_ok('elsewhere/res.json')))


# Running #################################################################

def build() -> None:
    if PROBES:
        return
    _model_input_probes()
    _hparam_probes()
    _cli_option_probes()
    _nonfinite_probes()
    _signal_probes()
    _file_probes()
    _offline_probes()
    _outputs_probes()


NEEDS = {'qm9': 'qm9_root', 'zinc': 'zinc_root',
         'cora': None}


def _available(probe: Probe, fixtures: Dict[str, str]) -> bool:
    for need in probe.needs:
        key = NEEDS[need]
        if key is None:
            if not osp.isdir(osp.join(SHARED, need, 'raw')):
                return False
        elif key not in fixtures:
            return False
    return True


def run_probes(names: Sequence[str], verbose: bool = True,
               keep: bool = False) -> List[Dict[str, Any]]:
    r"""Runs the probes :obj:`names`; returns one dict per probe."""
    os.environ['PYTHONPATH'] = os.pathsep.join(
        [ROOT] + [p for p in os.environ.get('PYTHONPATH', '').split(
            os.pathsep) if p])
    os.environ.setdefault('MPLBACKEND', 'Agg')
    os.environ.setdefault('OMP_WAIT_POLICY', 'PASSIVE')
    base = tempfile.mkdtemp(prefix='mgvae-probes-')
    results = []
    try:
        fixtures = make_fixtures(base)
        ctx = Context(base, fixtures)
        for i, name in enumerate(names):
            probe = PROBES[name]
            t0 = time.time()
            if not _available(probe, fixtures):
                outcome, detail = SKIPPED, f'needs {probe.needs} in {SHARED}'
            elif probe.local:
                outcome, detail = ctx.run_local(probe)
            else:
                try:
                    outcome, detail = probe.run(ctx)
                except Exception as e:  # noqa: BLE001 (a bug of the probe)
                    outcome, detail = TRACEBACK, \
                        f'probe failed: {type(e).__name__}: {_first(e)}'
            seconds = time.time() - t0
            detail = detail.replace(base, '<tmp>').replace(SHARED,
                                                           '<shared>')
            results.append(dict(name=name, cls=CLASSES[probe.cls],
                                input=probe.what, expected=probe.expect,
                                outcome=outcome, detail=detail,
                                seconds=round(seconds, 2)))
            if verbose:
                print(f'[{i + 1:3d}/{len(names)}] {outcome:<14} {name:<44} '
                      f'{seconds:5.1f}s  {detail[:110]}', flush=True)
    finally:
        if keep:
            print(f'kept {base}')
        else:
            shutil.rmtree(base, ignore_errors=True)
    return results


def summarize(results: List[Dict[str, Any]]
              ) -> 'OrderedDict[str, Dict[str, int]]':
    counts: 'OrderedDict[str, Dict[str, int]]' = OrderedDict()
    for title in list(CLASSES.values()) + ['total']:
        counts[title] = {k: 0 for k in ('inputs',) + OUTCOMES}
    for r in results:
        if r['outcome'] == SKIPPED:
            continue
        for title in (r['cls'], 'total'):
            counts[title]['inputs'] += 1
            counts[title][r['outcome']] += 1
    return OrderedDict((k, v) for k, v in counts.items() if v['inputs'])


def format_table(counts) -> str:
    head = ['probe class', 'inputs tried', 'clear errors', 'defined results',
            'tracebacks', 'silent wrong']
    lines = ['| ' + ' | '.join(head) + ' |', '|' + '---|' * len(head)]
    for title, c in counts.items():
        cells = [title, c['inputs'], c[CLEAR], c[DEFINED], c[TRACEBACK],
                 c[SILENT]]
        if title == 'total':
            cells = [f'**{x}**' for x in cells]
        lines.append('| ' + ' | '.join(map(str, cells)) + ' |')
    return '\n'.join(lines)


def to_records(results: List[Dict[str, Any]], seconds: float
               ) -> List[Dict[str, Any]]:
    from torch_geometric_mgvae import __version__
    from torch_geometric_mgvae.experiments.results import machine, record
    counts = summarize(results)
    recs = []
    for title, c in counts.items():
        probes = [r for r in results if title == 'total' or r['cls'] == title]
        for metric, key in (('inputs tried', 'inputs'),
                            ('clear errors', CLEAR),
                            ('defined results', DEFINED),
                            ('tracebacks', TRACEBACK),
                            ('silent wrong', SILENT)):
            extra = {}
            if metric == 'inputs tried':
                extra['seconds'] = round(seconds, 1) if title == 'total' \
                    else round(sum(r['seconds'] for r in probes), 1)
                if title != 'total':
                    extra['probes'] = [{k: r[k] for k in (
                        'name', 'input', 'expected', 'outcome', 'detail')}
                        for r in probes]
            recs.append(record(
                TASK, title, f'torch_geometric_mgvae {__version__}', metric,
                c[key], protocol='one input per probe, its correct outcome '
                'declared beforehand (a clear one-line error of a given '
                'type, or a result with a checked property); outcome of '
                'running it without --debug', command=COMMAND,
                device=machine(), **extra))
    return recs


def main(argv: Optional[Sequence[str]] = None) -> int:
    global SHARED
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--classes', nargs='+', choices=list(CLASSES),
                        help='probe classes to run (default: all)')
    parser.add_argument('--only', default=None,
                        help='run the probes whose name matches this regex')
    parser.add_argument('--list', action='store_true',
                        help='list the probes and their expected outcomes')
    parser.add_argument('--results', default=None,
                        help=f'records file (default: {RESULTS}, written '
                        f'only by a run of all probes)')
    parser.add_argument('--no-write', action='store_true',
                        help='print the table only')
    parser.add_argument('--keep', action='store_true',
                        help='keep the temporary folder')
    parser.add_argument('--shared', default=None,
                        help=f'the shared data folder, read only (default: '
                        f'{SHARED})')
    args = parser.parse_args(argv)
    if args.shared:
        SHARED = os.environ['MGVAE_PROBES_SHARED'] = osp.abspath(args.shared)
    build()
    names = [n for n, p in PROBES.items()
             if (not args.classes or p.cls in args.classes)
             and (not args.only or re.search(args.only, n))]
    if args.list:
        for n in names:
            p = PROBES[n]
            print(f'{p.cls:<10} {n:<44} {p.what}\n{"":<55} expect: '
                  f'{p.expect}')
        print(f'{len(names)} probes')
        return 0
    t0 = time.time()
    results = run_probes(names, keep=args.keep)
    seconds = time.time() - t0
    counts = summarize(results)
    print()
    print(format_table(counts))
    skipped = [r['name'] for r in results if r['outcome'] == SKIPPED]
    if skipped:
        print(f'skipped (data missing): {skipped}')
    bad = [r for r in results if r['outcome'] in (TRACEBACK, SILENT)]
    for r in bad:
        print(f'- {r["outcome"]}: {r["name"]}: {r["input"]} -> '
              f'{r["detail"]}')
    print(f'{len(results)} probes in {seconds:.0f} s')
    partial = len(names) < len(PROBES)
    if args.results is None and partial and not args.no_write:
        print(f'a partial run (--only/--classes): {RESULTS} not written '
              f'(name a file with --results)')
    elif not args.no_write:
        from torch_geometric_mgvae.experiments.io import write_json
        path = args.results or RESULTS
        write_json(path, to_records(results, seconds))
        print(f'wrote {path}')
    return 0


build()

if __name__ == '__main__':
    sys.exit(main())
