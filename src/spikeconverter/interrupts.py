"""One policy for SIGINT and SIGTERM: raise in the main thread, defer while cleaning up.

Work that owns outside resources (a Lava runtime with its worker processes and shared memory,
a file being written) must be stopped by *one* process, in order, when the user presses Ctrl-C
(SIGINT, sent to the whole process group by a terminal) or a job manager sends SIGTERM:

* :func:`raise_on_signals` turns both signals into :class:`Interrupted` (a
  ``KeyboardInterrupt``, so every ``finally`` runs and code that already handles Ctrl-C
  handles SIGTERM too); the command line maps it to exit status ``128 + signum`` (130, 143);
* :func:`deferred_signals` holds them while something must not be cut short (starting,
  running or stopping a runtime) and raises the first one afterwards, or at a safe point
  the block chooses (:meth:`SignalGate.check`). With ``block=True`` the signals are
  also blocked in the calling thread, so processes forked inside inherit them blocked: workers
  never see the terminal's Ctrl-C (no tracebacks, no half-dead workers) and are stopped by
  their parent instead.

Nothing here runs at import; handlers are installed by the context managers and restored on
exit. Outside the main thread (where Python cannot install handlers) only the blocking applies.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

__all__ = ["HANDLED_SIGNALS", "Interrupted", "SignalGate", "deferred_signals", "exit_status",
           "raise_on_signals"]

#: The signals that stop work cleanly.
HANDLED_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Interrupted(KeyboardInterrupt):
    """SIGINT or SIGTERM arrived; ``signum`` says which.

    Parameters
    ----------
    signum : int
        The signal number.
    """

    def __init__(self, signum: int):
        self.signum = int(signum)
        super().__init__(f"interrupted by {signal.Signals(self.signum).name}")


def exit_status(exc: BaseException) -> int:
    """The shell's exit status for an interrupt: ``128 + signum`` (SIGINT when not known)."""
    return 128 + int(getattr(exc, "signum", signal.SIGINT))


def _in_main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


def _raise(signum: int, _frame: Any) -> None:
    raise Interrupted(signum)


@contextmanager
def _handlers(handler: Any) -> Iterator[None]:
    """Install ``handler`` for :data:`HANDLED_SIGNALS` (main thread only); restore on exit."""
    if not _in_main_thread():
        yield
        return
    old = {s: signal.signal(s, handler) for s in HANDLED_SIGNALS}
    try:
        yield
    finally:
        for s, h in old.items():
            signal.signal(s, h)


@contextmanager
def raise_on_signals() -> Iterator[None]:
    """Inside the block, SIGINT and SIGTERM raise :class:`Interrupted` in the main thread."""
    with _handlers(_raise):
        yield


class SignalGate:
    """The signals a :func:`deferred_signals` block has held so far."""

    def __init__(self) -> None:
        self.pending: list[int] = []

    def check(self) -> None:
        """Raise the first held signal as :class:`Interrupted` (a safe point of the block)."""
        if self.pending:
            raise Interrupted(self.pending[0])


@contextmanager
def deferred_signals(block: bool = False) -> Iterator[SignalGate]:
    """Hold SIGINT and SIGTERM until the block ends, then raise the first as :class:`Interrupted`.

    Parameters
    ----------
    block : bool
        Also block both signals in this thread while inside, so that processes forked inside
        start with them blocked (the parent alone decides when its workers stop).

    Yields
    ------
    SignalGate
        Its ``check()`` raises a held signal at a point the block chooses (e.g. between two
        chunks of a Lava run: an exception inside Lava's channel code can leave the runtime
        unable to stop).

    Notes
    -----
    A signal held here is raised on exit only when the block itself did not raise: cleanup
    that fails keeps its own error.
    """
    gate = SignalGate()

    def record(signum: int, _frame: Any) -> None:
        gate.pending.append(signum)

    with _handlers(record):
        mask = signal.pthread_sigmask(signal.SIG_BLOCK, HANDLED_SIGNALS) if block else None
        try:
            yield gate
        finally:
            if mask is not None:
                # delivers what arrived meanwhile, to ``record`` (still installed)
                signal.pthread_sigmask(signal.SIG_SETMASK, mask)
    gate.check()
