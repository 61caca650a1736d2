"""Importing Lava's runtime once, when a Lava network is first built.

Lava calls ``multiprocessing.set_start_method("fork")`` when its runtime is first imported,
which raises if anything fixed the start method before (a tqdm progress bar does, through its
multiprocessing lock): then ``convert(..., backend="lava")`` after a Norse conversion would fail.
:func:`import_lava_runtime` imports it with that call tolerated when the method already is
``"fork"``; everything in :mod:`spikeconverter.converters.to_lava` that imports Lava processes
calls it first.
"""

from __future__ import annotations

import importlib
import multiprocessing

__all__ = ["import_lava_runtime"]

_RUNTIME = "lava.magma.runtime.message_infrastructure.multiprocessing"
_imported = False


def import_lava_runtime() -> None:
    """Import Lava's multiprocessing runtime (once per process; later calls return at once).

    Raises
    ------
    ImportError
        Lava is not installed, or the start method is already fixed to something other than
        ``"fork"``.
    """
    global _imported
    if _imported:
        return
    current = multiprocessing.get_start_method(allow_none=True)
    if current not in (None, "fork"):
        raise ImportError(f"Lava needs the 'fork' multiprocessing start method, but it is "
                          f"already set to {current!r}")
    original = multiprocessing.set_start_method

    def tolerant(method, force=False):
        if not force and multiprocessing.get_start_method(allow_none=True) == method:
            return
        original(method, force=force)

    multiprocessing.set_start_method = tolerant
    try:
        importlib.import_module(_RUNTIME)
    finally:
        multiprocessing.set_start_method = original
    _imported = True
