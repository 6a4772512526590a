r"""Atomic file writes for everything the experiments write.

Every checkpoint, record file, summary, table and picture goes through
:func:`atomic_write`: the content is written to a temporary file in the
same folder, flushed to disk, then moved over the target with
:func:`os.replace` (the datasets' :func:`~torch_geometric_mgvae.datasets.
base.atomic_write`). A write killed midway (an exception, SIGKILL, a full
disk) leaves the previous file intact and no half-written target behind.

In a data-parallel run only rank 0 writes: :func:`atomic_write` raises on
the other processes (see :mod:`torch_geometric_mgvae.experiments.
distributed`).
"""
import json
import math
import os
from typing import IO, Any, Callable

import torch

from torch_geometric_mgvae.datasets.base import atomic_write as _replace
from torch_geometric_mgvae.datasets.base import signals_deferred
from torch_geometric_mgvae.experiments.distributed import get_rank

__all__ = ['atomic_write', 'copy_file', 'write_text', 'write_json',
           'json_safe', 'save_torch', 'load_torch', 'SHARED_DATA']

#: The shared raw data folder of a source checkout, ``../shared/data`` next
#: to the repository (the experiments' default :obj:`--data` when it
#: exists).
SHARED_DATA = os.path.normpath(os.path.join(
    os.path.dirname(os.path.abspath(__file__)), '..', '..', '..', 'shared',
    'data'))


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write(path: str, write: Callable[[IO[bytes]], Any]) -> str:
    r"""Calls :obj:`write` on a temporary binary file next to :obj:`path`
    and replaces :obj:`path` with it once it is complete and synced
    (:func:`torch_geometric_mgvae.datasets.base.atomic_write`, the one
    implementation the datasets use too); creates the folder if needed and
    gives the file the usual permissions (the temporary file is private).
    If :obj:`write` raises, :obj:`path` is left as it was, no temporary
    file stays and the exception propagates. Returns :obj:`path`.

    Raises a :obj:`RuntimeError` on a process of rank > 0 of a process
    group (rank 0 writes for all)."""
    if get_rank() != 0:
        raise RuntimeError(f"Process {get_rank()} tried to write '{path}': "
                           f"only rank 0 writes in a data-parallel run")
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with signals_deferred():  # a signal's exception waits for the chmod
        _replace(path, write)
        os.chmod(path, 0o666 & ~_umask())
    return path


def copy_file(src: str, dst: str) -> str:
    r"""Copies the file :obj:`src` to :obj:`dst` atomically (a copy cut
    short leaves no truncated :obj:`dst`)."""
    import shutil

    def write(f):
        with open(src, 'rb') as s:
            shutil.copyfileobj(s, f)
    return atomic_write(dst, write)


def write_text(path: str, text: str) -> str:
    r"""Writes :obj:`text` (UTF-8) atomically."""
    return atomic_write(path, lambda f: f.write(text.encode('utf-8')))


def json_safe(obj: Any) -> Any:
    r""":obj:`obj` with every non-finite float (and NumPy/tensor scalar)
    replaced by :obj:`None`, tuples by lists: JSON has no NaN."""
    if isinstance(obj, dict):
        return {k: json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    if isinstance(obj, torch.Tensor) and obj.numel() == 1:
        obj = obj.item()
    elif hasattr(obj, 'item') and callable(obj.item) and \
            getattr(obj, 'shape', None) == ():  # NumPy scalars
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def write_json(path: str, obj: Any, indent: int = 1) -> str:
    r"""Writes :obj:`obj` as JSON atomically; non-finite numbers become
    :obj:`null` (see :func:`json_safe`), never a bare :obj:`NaN`."""
    text = json.dumps(json_safe(obj), indent=indent, allow_nan=False)
    return write_text(path, text + '\n')


def save_torch(obj: Any, path: str) -> str:
    r""":func:`torch.save` atomically. Store only tensors, plain containers,
    numbers, strings and :obj:`None`, so that :func:`load_torch` (with
    :obj:`weights_only=True`) can read it."""
    return atomic_write(path, lambda f: torch.save(obj, f))


def load_torch(path: str) -> Any:
    r""":func:`torch.load` on the CPU with :obj:`weights_only=True` (no
    arbitrary unpickling). A file that cannot be read that way (missing,
    truncated, corrupt, or holding objects outside the allowlist) raises
    one :class:`ValueError` naming it (:class:`FileNotFoundError` if it
    does not exist)."""
    from torch_geometric_mgvae.datasets.base import one_line
    if not os.path.exists(path):
        raise FileNotFoundError(f"No checkpoint '{path}'")
    try:
        return torch.load(path, map_location='cpu', weights_only=True)
    except Exception as e:  # any failure: the file is unusable
        raise ValueError(f"'{path}' cannot be read with torch.load("
                         f"weights_only=True) ({one_line(e)})") from e
