"""The Lava backend: ``convert(model, calibration, T, backend="lava")`` -> :class:`LavaNetwork`.

The pieces live in :mod:`spikeconverter.converters.to_lava`: ``timing`` (one period for all
populations), ``synapses`` (edges as Conv/Dense/Sparse), ``plan`` and ``build`` (Lava
processes), ``fixed_point`` (Loihi-style integers and the per-layer report), ``network``
(running) and ``runtime`` (importing Lava once, lazily). :func:`build` and :func:`from_file`
are the hooks :mod:`spikeconverter.converters.api` calls.
"""

from __future__ import annotations

from typing import Any

from spikeconverter.converters.ir import Graph
from spikeconverter.converters.serialize import NetworkFile
from spikeconverter.converters.to_lava.network import LavaNetwork
from spikeconverter.converters.to_lava.plancache import plan_cache_path
from spikeconverter.converters.to_lava.timing import lava_schedule
from spikeconverter.converters.validate import check_schedule

__all__ = ["LavaNetwork", "build", "from_file", "lava_schedule"]


def build(graph: Graph, *, calibration: Any = None, progress: bool = True,
          margin: float = 0.5, allow_violations: bool = False, double_buffered: bool = False,
          split_weights: bool | None = None, **_: Any) -> LavaNetwork:
    """A :class:`LavaNetwork` of a calibrated graph (``double_buffered``: neurons with two
    membrane banks; ``split_weights``: fixed point with two 8-bit synapse groups per edge); with
    ``calibration`` data it also measures the membrane peaks that fixed point needs. Norse
    options (``mode``, ``dtype``) are ignored."""
    net = LavaNetwork(graph, margin=margin, allow_violations=allow_violations,
                      double_buffered=double_buffered, split_weights=split_weights)
    if calibration is not None:
        net.calibrate_fixed_point(calibration, progress=progress)
    return net


def from_file(data: NetworkFile, *, double_buffered: bool | None = None,
              **_: Any) -> LavaNetwork:
    """A :class:`LavaNetwork` from a read network file (a file saved by another backend gets
    the Lava schedule; a Lava file keeps its fixed-point calibration). ``double_buffered``
    overrides the saved option (the schedule is then recomputed). Its plans are cached beside
    the file (:func:`~spikeconverter.converters.to_lava.plancache.plan_cache_path`): reused
    when they belong to this very network, rebuilt and written otherwise."""
    saved = data.schedule.double_buffered
    double = saved if double_buffered is None else bool(double_buffered)
    keep = data.backend == "lava" and double == saved
    if keep:  # a schedule follows from the graph: a different one is forged
        check_schedule(data.schedule, lava_schedule(data.graph, double))
    net = LavaNetwork(data.graph, data.schedule if keep else None, double_buffered=double,
                      membrane_peaks=data.state.get("membrane_peaks"),
                      margin=float(data.options.get("margin", 0.5)),
                      activity=data.state.get("activity"),
                      allow_violations=bool(data.options.get("allow_violations", False)),
                      split_weights=data.options.get("split_weights"))
    if data.path is not None:
        net.use_plan_cache(plan_cache_path(data.path))
    return net
