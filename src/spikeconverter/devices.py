"""Where the work runs: one check of a ``device`` option, shared by the API and the CLI.

``device`` is ``None`` (the CPU, as before), ``"cpu"``, ``"cuda"``, ``"cuda:N"`` or a
:class:`torch.device`; ``"meta"`` is accepted for shape-only checks. The check happens before
any expensive work and says what would work instead. The command line's ``--device`` option
is defined in :mod:`spikeconverter.cliparser`.
"""

from __future__ import annotations

from typing import Any

import torch

__all__ = ["resolve_device"]


def resolve_device(device: Any = None) -> torch.device:
    """The :class:`torch.device` named by ``device`` (default: the CPU).

    Raises
    ------
    ValueError
        An unknown device name, or a CUDA device when CUDA is not available or the index does
        not exist.
    """
    if device is None:
        return torch.device("cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as e:
        raise ValueError(f"device must be 'cpu', 'cuda' or 'cuda:N', got {device!r} ({e})"
                         ) from None
    if dev.type not in ("cpu", "cuda", "meta"):
        raise ValueError(f"device must be 'cpu', 'cuda' or 'cuda:N', got {device!r}")
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device {device!r} asked for, but CUDA is not available here "
                             "(no GPU or a CPU-only torch build); use --device cpu")
        count = torch.cuda.device_count()
        if dev.index is not None and dev.index >= count:
            raise ValueError(f"device {device!r} does not exist: this machine has {count} CUDA "
                             f"device(s), cuda:0 .. cuda:{count - 1}")
    return dev
