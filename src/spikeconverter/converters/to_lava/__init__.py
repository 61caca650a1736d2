"""Emitting a converted graph as a Lava process graph (used by :mod:`..lava_backend`).

Lava calls ``multiprocessing.set_start_method("fork")`` when it is first imported, which raises
if anything fixed the start method before (a tqdm progress bar does, through its
multiprocessing lock): then ``convert(..., backend="lava")`` after a Norse conversion would fail.
Importing this package imports Lava's runtime with that call tolerated when the method already
is ``"fork"``.
"""

import multiprocessing as _mp


def _import_lava_runtime() -> None:
    current = _mp.get_start_method(allow_none=True)
    if current not in (None, "fork"):
        raise ImportError(f"Lava needs the 'fork' multiprocessing start method, but it is "
                          f"already set to {current!r}")
    original = _mp.set_start_method

    def tolerant(method, force=False):
        if not force and _mp.get_start_method(allow_none=True) == method:
            return
        original(method, force=force)

    _mp.set_start_method = tolerant
    try:
        import lava.magma.runtime.message_infrastructure.multiprocessing  # noqa: F401
    finally:
        _mp.set_start_method = original


_import_lava_runtime()
