r"""Random draws with an optional :class:`torch.Generator`.

:obj:`torch.rand(..., generator=None)` fails under :func:`torch.compile`
with dynamic shapes, so the keyword is only passed when a generator is
given."""
from typing import Optional, Sequence

import torch
from torch import Tensor


def _gen(generator: Optional[torch.Generator]) -> dict:
    return {} if generator is None else {'generator': generator}


def rand(shape: Sequence[int], generator: Optional[torch.Generator] = None,
         device=None, dtype=None) -> Tensor:
    return torch.rand(shape, device=device, dtype=dtype, **_gen(generator))


def randn(shape: Sequence[int], generator: Optional[torch.Generator] = None,
          device=None, dtype=None) -> Tensor:
    return torch.randn(shape, device=device, dtype=dtype, **_gen(generator))


def randint(high: int, shape: Sequence[int],
            generator: Optional[torch.Generator] = None,
            device=None) -> Tensor:
    return torch.randint(high, shape, device=device, **_gen(generator))
