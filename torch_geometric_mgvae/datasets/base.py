r"""The base class of the package's datasets: checked raw files, verified
caches, atomic writes.

Every dataset of :mod:`torch_geometric_mgvae.datasets` derives from
:class:`CachedInMemoryDataset`, a
:class:`~torch_geometric.data.InMemoryDataset` that

* downloads each missing raw file to a temporary name and moves it into
  place only when it is complete; without internet (or for a file that
  cannot be downloaded) it raises one :class:`RuntimeError` naming the
  expected files and where to get them, and removes the folders it created
  for the download;
* stores, next to the processed files, a manifest
  (``processed/<first processed file>.manifest.json``) with the SHA-256 and
  size of every raw file and the :obj:`pre_transform` / :obj:`pre_filter`
  used; when a raw file, :obj:`pre_transform` or :obj:`pre_filter` changed,
  or the manifest is missing, the cache is rebuilt with one warning
  (:obj:`pre_transform.pt` / :obj:`pre_filter.pt` of
  :class:`~torch_geometric.data.Dataset` are neither written nor read);
* loads processed files with :obj:`torch.load(weights_only=True)` only
  (never the full-unpickling retry of :func:`torch_geometric.io.fs.
  torch_load`): a file that cannot be read that way (truncated, corrupt,
  or holding objects outside the allowlist) is rebuilt with one warning,
  and if the rebuilt file still cannot be read a :class:`RuntimeError`
  says why;
* writes every file atomically (temporary file in the same folder, then
  :func:`os.replace`).
"""
import contextlib
import hashlib
import json
import os
import os.path as osp
import re
import sys
import tempfile
import threading
import types
import warnings
from typing import IO, Any, Callable, Dict, Iterator, List, Optional, Tuple

import torch
import torch_geometric
from torch_geometric.data import Data, InMemoryDataset, download_url
from torch_geometric.data.dataset import files_exist

__all__ = [
    'CachedInMemoryDataset', 'CacheError', 'atomic_write', 'save_atomic',
    'load_weights_only', 'raw_digest', 'callable_key', 'warn_user'
]

#: Version of the manifest layout (a change rebuilds every cache).
MANIFEST_VERSION = 1


class CacheError(Exception):
    r"""A processed file that cannot be read with
    :obj:`torch.load(weights_only=True)` or has an unexpected layout."""
    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"'{path}': {reason}")
        self.path = path
        self.reason = reason


def one_line(error: BaseException, limit: int = 200) -> str:
    r"""One line of an exception message, shortened to :obj:`limit`
    characters: the line naming what torch's weights-only unpickler
    refused (its errors span many lines), else the first line."""
    lines = [re.sub(r'\x1b\[[0-9;]*m', '', line).strip()
             for line in str(error).splitlines()]
    lines = [line for line in lines if line]
    text = next((line for line in lines
                 if 'GLOBAL' in line or line.startswith('Unsupported')),
                lines[0] if lines else '')
    text = text.split('. ')[0]  # the first sentence
    if len(text) > limit:
        text = text[:limit - 3] + '...'
    return f'{error.__class__.__name__}: {text}'


class _Writes:
    r"""How many :func:`signals_deferred` blocks of the main thread are
    open, and the signal handler deferred until the outermost one ends
    (:func:`defer_signal`)."""
    depth = 0
    pending: Optional[Callable[[], None]] = None


def defer_signal(handler: Callable[[], None]) -> bool:
    r"""Called first by a signal handler that raises: if the main thread is
    inside :func:`atomic_write` (a :func:`signals_deferred` block), keeps
    :obj:`handler` (the first one only) to run as soon as the outermost
    block has ended and returns :obj:`True`; else returns :obj:`False`.
    An exception raised inside :func:`torch.save`'s writer would otherwise
    surface as a :obj:`RuntimeError` of its C++ stream writer instead of
    itself."""
    if _Writes.depth == 0:
        return False
    if _Writes.pending is None:
        _Writes.pending = handler
    return True


@contextlib.contextmanager
def signals_deferred() -> Iterator[None]:
    r"""A block (in the main thread; elsewhere it does nothing) during which
    signal handlers that ask :func:`defer_signal` wait: the first one runs
    when the outermost such block ends."""
    main = threading.current_thread() is threading.main_thread()
    _Writes.depth += main
    try:
        yield
    finally:
        _Writes.depth -= main
        if main and _Writes.depth == 0 and _Writes.pending is not None:
            handler, _Writes.pending = _Writes.pending, None
            handler()


def atomic_write(path: str, write: Callable[[IO[bytes]], None]) -> None:
    r"""Calls :obj:`write` on a temporary binary file in the folder of
    :obj:`path` and moves it to :obj:`path` (:func:`os.replace`) once it is
    complete and synced; on any error the temporary file is removed and
    :obj:`path` is left as it was. Signal handlers that ask
    :func:`defer_signal` run after the write (:func:`signals_deferred`)."""
    folder = osp.dirname(osp.abspath(path))
    with signals_deferred():
        fd, tmp = tempfile.mkstemp(dir=folder,
                                   prefix=f'.{osp.basename(path)}.',
                                   suffix='.tmp')
        try:
            with os.fdopen(fd, 'wb') as f:
                write(f)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.remove(tmp)
            raise


def save_atomic(obj: Any, path: str) -> None:
    r""":func:`torch.save` through :func:`atomic_write`."""
    atomic_write(path, lambda f: torch.save(obj, f))


def load_weights_only(path: str) -> Any:
    r""":func:`torch.load` with :obj:`weights_only=True` and no fallback.

    Raises:
        CacheError: if the file is missing, truncated, corrupt or holds an
            object that the weights-only unpickler refuses.
    """
    try:
        with open(path, 'rb') as f:
            return torch.load(f, weights_only=True)
    except Exception as e:  # Any failure means: this cache is unusable.
        raise CacheError(path, f'torch.load(weights_only=True) failed '
                         f'({one_line(e)})') from e


def raw_digest(paths: List[str]) -> Dict[str, Dict[str, Any]]:
    r"""File name -> :obj:`{"size": bytes, "sha256": hex digest}` of every
    file in :obj:`paths`."""
    out = {}
    for path in paths:
        h = hashlib.sha256()
        size = 0
        with open(path, 'rb') as f:
            for chunk in iter(lambda: f.read(1 << 20), b''):
                h.update(chunk)
                size += len(chunk)
        out[osp.basename(path)] = {'size': size, 'sha256': h.hexdigest()}
    return out


def callable_key(obj: Any) -> str:
    r"""A stable text key of a :obj:`pre_transform` / :obj:`pre_filter`.

    Functions and classes are keyed by module and qualified name (two
    lambdas of one module share a key), other objects by :func:`repr`
    without memory addresses (PyG transforms print their arguments).
    Unlike PyG's :obj:`_repr`, two different named functions differ."""
    if obj is None:
        return 'None'
    if isinstance(obj, (types.FunctionType, types.BuiltinFunctionType,
                        types.MethodType, type)):
        return f'{obj.__module__}.{obj.__qualname__}'
    return re.sub(r' at 0x[0-9a-fA-F]+', '', repr(obj))


@contextlib.contextmanager
def removing_new_dirs(path: str) -> Iterator[None]:
    r"""On an error inside the block, removes the folders on the way to
    :obj:`path` that did not exist before it, as long as they are empty."""
    new = []
    p = osp.abspath(path)
    while not osp.exists(p) and osp.dirname(p) != p:
        new.append(p)
        p = osp.dirname(p)
    try:
        yield
    except BaseException:
        for p in new:  # deepest first
            try:
                os.rmdir(p)
            except OSError:  # not empty (or gone): keep it and its parents
                break
        raise


_INTERNAL = (osp.dirname(osp.abspath(__file__)),
             osp.dirname(osp.abspath(torch_geometric.__file__)))


def warn_user(message: str) -> None:
    r"""Warns with the location of the first caller outside this package's
    datasets and :mod:`torch_geometric` (the line constructing the
    dataset)."""
    frame = sys._getframe(1)
    level = 1
    while frame is not None and frame.f_code.co_filename.startswith(
            _INTERNAL):
        frame = frame.f_back
        level += 1
    warnings.warn(message, stacklevel=level)


def _remove(path: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.remove(path)


class CachedInMemoryDataset(InMemoryDataset):
    r"""An :class:`~torch_geometric.data.InMemoryDataset` with a split,
    named raw sources, atomic downloads and a verified processed cache
    (see the module documentation).

    Subclasses set :attr:`splits` and :attr:`raw_help`, and implement
    :meth:`raw_sources`, :attr:`processed_file_names`, :meth:`process`
    (writing with :meth:`save` / :meth:`save_file`) and, if they store more
    than one processed file per split, :meth:`load_processed` (reading with
    :meth:`load` / :meth:`load_file`).

    Args:
        root (str): Root directory where the dataset should be saved.
        split (str): One of :attr:`splits`.
        transform (callable, optional): A function/transform applied to
            every data object on access. (default: :obj:`None`)
        pre_transform (callable, optional): A function/transform applied
            before saving to disk. (default: :obj:`None`)
        pre_filter (callable, optional): A function deciding whether a data
            object is kept. (default: :obj:`None`)
        log (bool, optional): Whether to print progress messages.
            (default: :obj:`True`)
        force_reload (bool, optional): Whether to re-process the dataset.
            (default: :obj:`False`)
    """
    #: The valid values of :obj:`split`.
    splits: Tuple[str, ...] = ()
    #: How to obtain the raw files, shown when they are missing.
    raw_help: str = ''

    def __init__(
        self,
        root: str,
        split: str,
        transform: Optional[Callable] = None,
        pre_transform: Optional[Callable] = None,
        pre_filter: Optional[Callable] = None,
        log: bool = True,
        force_reload: bool = False,
    ) -> None:
        if split not in self.splits:
            raise ValueError(f"Invalid split '{split}' (expected one of "
                             f"{list(self.splits)})")
        self.split = split
        self._rebuilt = False  # set by _rebuild
        super().__init__(root, transform, pre_transform, pre_filter,
                         log=log, force_reload=force_reload)
        try:
            try:
                self.load_processed()
            except CacheError as e:
                if self._rebuilt:
                    raise  # just built: building again would not help
                self._rebuild(f'a processed file cannot be read ({e})')
                self.load_processed()
        except CacheError as e:
            raise RuntimeError(
                f'{self.__class__.__name__}: a freshly built processed file '
                f'cannot be read ({e}); caches are never unpickled in full: '
                f'let pre_transform store tensors and builtin types only, or '
                f'allowlist the class with torch.serialization.'
                f'add_safe_globals') from None

    # Raw files ###############################################################

    def raw_sources(self) -> Dict[str, Optional[str]]:
        r"""Raw file name -> download URL (:obj:`None`: not
        downloadable)."""
        raise NotImplementedError

    @property
    def raw_file_names(self) -> List[str]:
        return list(self.raw_sources())

    def _download(self) -> None:
        if files_exist(self.raw_paths):
            return
        with removing_new_dirs(self.raw_dir):
            os.makedirs(self.raw_dir, exist_ok=True)
            self.download()

    def download(self) -> None:
        for name, url in self.raw_sources().items():
            if osp.exists(osp.join(self.raw_dir, name)):
                continue
            if url is None:
                self.missing_raw(name, 'it cannot be downloaded')
            self._fetch(name, url)

    def _fetch(self, name: str, url: str) -> None:
        r"""Downloads :obj:`url` to a temporary file and moves it to
        :obj:`raw_dir/name` once complete (and, for :obj:`.gz` names, once
        it is a gzip file: a Git LFS pointer is not)."""
        part = f'.{name}.part'
        tmp = osp.join(self.raw_dir, part)
        _remove(tmp)  # download_url would reuse a left-over part
        try:
            download_url(url, self.raw_dir, log=self.log, filename=part)
            if name.endswith('.gz'):
                with open(tmp, 'rb') as f:
                    if f.read(2) != b'\x1f\x8b':
                        raise _NotGzip()
            os.replace(tmp, osp.join(self.raw_dir, name))
        except BaseException as e:
            _remove(tmp)
            if isinstance(e, _NotGzip):
                self.missing_raw(name, f'{url} did not return a gzip file')
            if isinstance(e, Exception):  # e.g. no internet
                self.missing_raw(name,
                                 f'downloading {url} failed ({one_line(e)})')
            raise

    def missing_raw(self, name: str, why: str) -> None:
        r"""Raises the :class:`RuntimeError` for a missing raw file."""
        raise RuntimeError(
            f"{self.__class__.__name__}: raw file '{name}' is missing in "
            f"'{self.raw_dir}' and {why}. Expected raw files: "
            f"{self.raw_file_names}. {self.raw_help}")

    # Processed cache #########################################################

    @property
    def manifest_path(self) -> str:
        r"""The manifest of the processed files (raw digests and
        pre-processing keys)."""
        return osp.splitext(self.processed_paths[0])[0] + '.manifest.json'

    def _cache_key(self) -> Dict[str, Any]:
        return {
            'version': MANIFEST_VERSION,
            'dataset': self.__class__.__name__,
            'processed': self.processed_file_names,
            'raw': raw_digest(self.raw_paths),
            'pre_transform': callable_key(self.pre_transform),
            'pre_filter': callable_key(self.pre_filter),
        }

    def _stale(self, key: Dict[str, Any]) -> Optional[str]:
        r"""Why the cache must be (re)built: :obj:`''` if it was never
        built, :obj:`None` if it is up to date."""
        present = [osp.exists(p) for p in self.processed_paths]
        if not osp.exists(self.manifest_path):
            if not any(present):
                return ''
            return ('it has no manifest of the raw files it was built from '
                    '(written by an older version)')
        try:
            with open(self.manifest_path) as f:
                old = json.load(f)
            if not isinstance(old, dict):
                raise ValueError('not a JSON object')
        except (OSError, ValueError) as e:
            return f'its manifest cannot be read ({one_line(e)})'
        if not all(present):
            missing = [osp.basename(p)
                       for p, ok in zip(self.processed_paths, present)
                       if not ok]
            return f'processed files {missing} are missing'
        old_raw, new_raw = old.get('raw'), key['raw']
        if old_raw != new_raw:
            if not isinstance(old_raw, dict):
                old_raw = {}
            changed = sorted(n for n in set(old_raw) | set(new_raw)
                             if old_raw.get(n) != new_raw.get(n))
            return f'raw files {changed} changed since it was built'
        for name in ('pre_transform', 'pre_filter'):
            if old.get(name) != key[name]:
                return (f'it was built with {name}={old.get(name)}, now '
                        f'{name}={key[name]}')
        if old != key:
            return 'its manifest is from another version'
        return None

    def _process(self) -> None:
        # Replaces Dataset._process, which compares pre_transform.pt and
        # pre_filter.pt with torch.load(weights_only=False) and reuses any
        # processed files that exist.
        key = self._cache_key()
        self._key = key
        why = None if self.force_reload else self._stale(key)
        if self.force_reload or why is not None:
            self._rebuild(why or None)

    def _rebuild(self, why: Optional[str]) -> None:
        r"""Runs :meth:`process` and writes the manifest; warns with
        :obj:`why` (a rebuild of an existing cache)."""
        name = self.__class__.__name__
        if why:
            warn_user(f"{name}: rebuilding the processed files in "
                      f"'{self.processed_dir}': {why}")
        elif self.log and 'PYTEST_CURRENT_TEST' not in os.environ:
            print('Processing...', file=sys.stderr)
        key = getattr(self, '_key', None) or self._cache_key()
        self._rebuilt = True
        with removing_new_dirs(self.processed_dir):
            os.makedirs(self.processed_dir, exist_ok=True)
            # No manifest while the files are rewritten: an interrupted
            # rebuild is rebuilt again.
            stale = [self.manifest_path] + [
                osp.join(self.processed_dir, f)
                for f in ('pre_transform.pt', 'pre_filter.pt')
            ]
            for path in stale:
                _remove(path)
            self.process()
            text = json.dumps(key, indent=1, sort_keys=True) + '\n'
            atomic_write(self.manifest_path, lambda f: f.write(text.encode()))
        if not why and self.log and 'PYTEST_CURRENT_TEST' not in os.environ:
            print('Done!', file=sys.stderr)

    def load_processed(self) -> None:
        r"""Loads the processed files of :attr:`split` (raising
        :class:`CacheError` if one cannot be read)."""
        self.load(self.processed_paths[0])

    @classmethod
    def save(cls, data_list: List[Data], path: str) -> None:
        r"""Saves :obj:`data_list` (possibly empty) atomically in the layout
        of :meth:`InMemoryDataset.save`."""
        if len(data_list) == 0:  # e.g. everything removed by pre_filter
            empty = Data(edge_index=torch.empty((2, 0), dtype=torch.long))
            out = (empty.to_dict(), {
                'edge_index': torch.zeros(1, dtype=torch.long)
            }, Data)
        else:
            data, slices = cls.collate(data_list)
            out = (data.to_dict(), slices, data.__class__)
        save_atomic(out, path)

    def load(self, path: str, data_cls: type = Data) -> None:
        r"""Loads a file written by :meth:`save` with
        :obj:`weights_only=True` only."""
        out = load_weights_only(path)
        if not (isinstance(out, tuple) and len(out) in (2, 3)
                and isinstance(out[0], dict)):
            raise CacheError(path, 'not a dataset file of this package')
        if len(out) == 3:
            data_cls = out[2]
        self.data = data_cls.from_dict(out[0])
        self.slices = out[1]
        self._data_list = None

    @staticmethod
    def save_file(obj: Any, path: str) -> None:
        r"""Saves an extra processed object (tensors and builtin types)
        atomically."""
        save_atomic(obj, path)

    @staticmethod
    def load_file(path: str) -> Any:
        r"""Loads an extra processed object with :obj:`weights_only=True`
        only."""
        return load_weights_only(path)

    def __repr__(self) -> str:
        return f'{self.__class__.__name__}({len(self)}, split={self.split})'


class _NotGzip(Exception):
    pass
