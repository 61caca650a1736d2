"""Helpers of the Lava Process tests: build a source -> processes -> sink chain, run it and
always stop the runtime (through :func:`spikeconverter.processes.simulation`)."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("lava", reason="the Lava Processes need lava-nc 0.10.0 (Python 3.10)")

from lava.proc.io.sink import RingBuffer as Sink  # noqa: E402
from lava.proc.io.source import RingBuffer as Source  # noqa: E402

from spikeconverter.processes import simulation  # noqa: E402


def _port(proc, names):
    return next(getattr(proc, n) for n in names if hasattr(proc, n))


def run_chain(data, procs, out_shape, select_tag="floating_pt", read=()):
    """Feed ``data`` (shape ``(*in_shape, steps)``) through ``procs`` in a chain, record the last.

    Returns the recorded output ``(*out_shape, steps)`` and the values of the Vars in ``read``
    (``(process, var_name)`` pairs), read before the runtime stops.
    """
    steps = data.shape[-1]
    source = Source(data=np.asarray(data))
    sink = Sink(shape=tuple(out_shape), buffer=steps)
    prev = source.s_out
    for proc in procs:
        prev.connect(_port(proc, ("a_in", "s_in")))
        prev = _port(proc, ("s_out", "v_out", "a_out"))
    prev.connect(sink.a_in)
    with simulation(sink, num_steps=steps, select_tag=select_tag):
        out = sink.data.get()
        values = [getattr(p, name).get() for p, name in read]
    return out, values
