r"""Atomic file writes for everything the experiments write.

Every checkpoint, record file, summary, table and picture goes through
:func:`atomic_write`: the content is written to a temporary file in the
same folder, flushed to disk, then moved over the target with
:func:`os.replace`. A write killed midway (an exception, SIGKILL, a full
disk) leaves the previous file intact and no half-written target behind.
"""
import json
import math
import os
import tempfile
from typing import Any, Callable

import torch

__all__ = ['atomic_write', 'write_text', 'write_json', 'json_safe',
           'save_torch', 'load_torch']


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write(path: str, write: Callable[[str], Any]) -> str:
    r"""Calls :obj:`write(tmp)` with the path of a new temporary file next
    to :obj:`path` (same folder, same extension, so writers that infer the
    format from the name still work), then replaces :obj:`path` with it.
    Creates the folder if needed. If :obj:`write` raises, the temporary
    file is removed, :obj:`path` is left as it was and the exception
    propagates. Returns :obj:`path`."""
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    base = os.path.basename(path)
    ext = os.path.splitext(base)[1]
    fd, tmp = tempfile.mkstemp(prefix=f'.{base}.', suffix=f'.tmp{ext}',
                               dir=folder)
    os.close(fd)
    try:
        write(tmp)
        with open(tmp, 'rb+') as f:
            os.fsync(f.fileno())
        # mkstemp creates the file 0600; give it the usual permissions.
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
    return path


def write_text(path: str, text: str) -> str:
    r"""Writes :obj:`text` (UTF-8) atomically."""
    def write(tmp):
        with open(tmp, 'w', encoding='utf-8', newline='') as f:
            f.write(text)
    return atomic_write(path, write)


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
    return atomic_write(path, lambda tmp: torch.save(obj, tmp))


def load_torch(path: str) -> Any:
    r""":func:`torch.load` on the CPU with :obj:`weights_only=True` (no
    arbitrary unpickling)."""
    return torch.load(path, map_location='cpu', weights_only=True)
