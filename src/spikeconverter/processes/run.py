"""Run a Lava process graph and always stop its runtime, also on SIGINT and SIGTERM.

Every Lava runtime of this package is started by :func:`lava_runtime` (directly, or through
:func:`simulation`), which applies the signal policy of :mod:`spikeconverter.interrupts`: the
worker processes are forked with SIGINT and SIGTERM blocked (a terminal's Ctrl-C reaches the
whole process group; workers that die of it print tracebacks and leave the parent waiting for
ever), the parent turns either signal into :class:`~spikeconverter.interrupts.Interrupted`, and
the runtime -- workers, shared-memory manager, shared memory -- is stopped with both signals held
until it is down.
"""

from __future__ import annotations

import multiprocessing
import time
from collections.abc import Iterator
from contextlib import contextmanager

from lava.magma.compiler.compiler_graphs import find_processes
from lava.magma.core.process.process import AbstractProcess
from lava.magma.core.run_conditions import RunSteps
from lava.magma.core.run_configs import Loihi2SimCfg, RunConfig
from threadpoolctl import threadpool_limits

from spikeconverter.interrupts import SignalGate, deferred_signals
from spikeconverter.processes.loihi import validate_fixed_point

__all__ = ["SELECT_TAGS", "check_fixed_point", "lava_runtime", "run_config", "simulation"]

#: Seconds a worker gets to exit after the runtime stopped, before it is killed.
WORKER_EXIT_SECONDS = 10.0
#: BLAS threads of each Lava worker. A converted network runs as dozens of worker processes,
#: many multiplying matrices at the same step: one OpenBLAS pool per worker (threads that
#: spin while they wait for work) oversubscribes the cores. With one thread each, a batched
#: 32x32x16 Conv's product took 15 ms instead of 28 on a loaded 2-core machine.
WORKER_BLAS_THREADS = 1

#: Tags of the CPU models: float64, or Loihi-style integers.
SELECT_TAGS = ("floating_pt", "fixed_pt")


def run_config(select_tag: str = "floating_pt", **kwargs) -> Loihi2SimCfg:
    """The CPU simulation config choosing the models tagged ``select_tag``.

    Parameters
    ----------
    select_tag : {"floating_pt", "fixed_pt"}
        Which ProcessModels to run (Lava's own processes carry the same tags).
    **kwargs
        Passed to :class:`lava.magma.core.run_configs.Loihi2SimCfg`
        (e.g. ``exception_proc_model_map``).
    """
    if select_tag not in SELECT_TAGS:
        raise ValueError(f"select_tag must be one of {SELECT_TAGS}, got {select_tag!r}")
    return Loihi2SimCfg(select_tag=select_tag, **kwargs)


def check_fixed_point(process: AbstractProcess) -> None:
    """Raise ValueError if an iLIF or Readout of the graph cannot run in the fixed-point models.

    Lava's runtime hangs when a ProcessModel raises while it is built or run (the error is
    printed by the child process, the parent waits for ever), so what the fixed-point models
    need is checked here, in the calling process: ``k = 2``, integer ``vth`` mantissas in
    ``[1, 2**17 - 1]`` and integer bias mantissas in ``[-2**12, 2**12 - 1]``.
    """
    # imported here: run.py is imported by the package before the Process folders are complete
    from spikeconverter.processes.ilif.process import ILIF
    from spikeconverter.processes.readout.process import Readout

    for proc in find_processes(process):
        if isinstance(proc, (ILIF, Readout)):
            validate_fixed_point(proc)


@contextmanager
def simulation(
    process: AbstractProcess,
    num_steps: int,
    select_tag: str = "floating_pt",
    run_cfg: RunConfig | None = None,
    **kwargs,
) -> Iterator[AbstractProcess]:
    """Run the graph of ``process`` for ``num_steps`` steps; stop the runtime on exit.

    Read Vars (``sink.data.get()``, ``neurons.v.get()``) inside the ``with`` block: they are
    gone once the runtime stops. The runtime is stopped even when the run or the block raises,
    so a failure leaves no Lava OS processes behind. For ``select_tag="fixed_pt"`` the graph is
    first checked with :func:`check_fixed_point` (a model raising inside Lava hangs the run).

    Parameters
    ----------
    process : AbstractProcess
        Any Process of the graph (Lava runs everything connected to it).
    num_steps : int
        Steps to run, >= 1.
    select_tag : {"floating_pt", "fixed_pt"}
        Which models to run, see :func:`run_config`.
    run_cfg : RunConfig, optional
        A ready run configuration (e.g. one choosing faster Conv models); it replaces
        ``select_tag`` and ``kwargs``.
    **kwargs
        Passed to :func:`run_config`.

    Examples
    --------
    >>> with simulation(sink, num_steps=24) as _:
    ...     spikes = sink.data.get()
    """
    if isinstance(num_steps, bool) or not isinstance(num_steps, int) or num_steps < 1:
        raise ValueError(f"num_steps must be an integer >= 1, got {num_steps!r}")
    cfg = run_cfg if run_cfg is not None else run_config(select_tag, **kwargs)
    if getattr(cfg, "select_tag", select_tag) == "fixed_pt":
        check_fixed_point(process)
    with lava_runtime(process, cfg):
        process.run(condition=RunSteps(num_steps=num_steps))
        yield process


@contextmanager
def lava_runtime(process: AbstractProcess, run_cfg: RunConfig,
                 compile_config: dict | None = None) -> Iterator[SignalGate]:
    """Compile and start the runtime of ``process``'s graph; always stop it on exit.

    Inside the block run it with ``process.run(condition=...)`` (no ``run_cfg``) as often as
    needed and read its Vars. SIGINT and SIGTERM are held inside the block (an exception
    raised inside Lava's channel code can leave the runtime unable to stop) and raised as
    :class:`~spikeconverter.interrupts.Interrupted` by the yielded gate's ``check()`` -- call it
    between chunks of a long run -- or at the end of the block; the workers never see them
    (they start with both blocked). The workers are forked with numpy's BLAS limited to
    :data:`WORKER_BLAS_THREADS` thread(s); the calling process keeps its own setting. On
    exit -- normal, error or signal -- the runtime is stopped with both signals held, and
    worker processes still alive :data:`WORKER_EXIT_SECONDS` later are killed, so nothing
    outlives the call.

    Parameters
    ----------
    process : AbstractProcess
        Any Process of the graph.
    run_cfg : RunConfig
        The run configuration (see :func:`run_config`).
    compile_config : dict, optional
        Passed to Lava's compiler (e.g. ``{"pypy_channel_size": 4}``: messages each
        channel holds, 64 by default, each slot one message's bytes of shared memory).

    Raises
    ------
    spikeconverter.interrupts.Interrupted
        SIGINT or SIGTERM arrived (after the runtime was stopped).
    """
    before = set(multiprocessing.active_children())
    try:
        # the workers are forked here and keep the BLAS limit; the caller's is restored after
        with deferred_signals(block=True), \
                threadpool_limits(limits=WORKER_BLAS_THREADS, user_api="blas"):
            process.create_runtime(run_cfg=run_cfg, compile_config=compile_config)
        with deferred_signals() as gate:
            yield gate
    finally:
        with deferred_signals():
            try:
                _stop(process)
            finally:
                _reap(set(multiprocessing.active_children()) - before)


def _stop(process: AbstractProcess) -> None:
    runtime = process.runtime
    if runtime is None:
        return
    # Lava stops only a runtime that ran at least once (``_is_started``); a runtime that was
    # built but never run would otherwise leave its workers waiting for a command for ever.
    if getattr(runtime, "_is_initialized", False) and not getattr(runtime, "_is_started", True):
        runtime._is_started = True
    process.stop()


def _reap(children: set) -> None:
    """Kill the worker processes that did not exit after the runtime stopped."""
    deadline = time.monotonic() + WORKER_EXIT_SECONDS
    for child in children:
        child.join(max(0.0, deadline - time.monotonic()))
        if child.is_alive():
            child.kill()  # SIGTERM is blocked in Lava's workers
            child.join(1.0)
