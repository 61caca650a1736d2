"""The schedule of a converted network in Lava: one period for every population.

Lava's iLIF neurons cycle with period ``t_acc + t_gen``, and a stream of samples enters the
pipeline every ``P`` steps, so every spiking population must have ``t_acc + t_gen = P``: the
graph schedule (:func:`spikeconverter.converters.schedule.compute_schedule`) in lock step. It
gives each population ``t_acc`` = the longest incoming train, except that a population whose own
``t_acc + t_gen`` would be shorter than ``P = max(longest incoming train + T)`` (the first layer
after an analog input: 1 + T) gets a longer accumulate window, ``t_acc = P - T``. Spike trains
land at the start of the window (as in the graph schedule; the synapse scale ``theta_source /
k**(t_acc - 1)`` uses the Lava ``t_acc``); the analog input is sent ``t_acc - 1`` steps late
instead, so that it lands at the window's last step and is not doubled afterwards (which in
fixed point would cost input precision). The cost is ``P - T - 1`` steps of latency on the first
layer; in return all populations run in lock step and sample ``i`` is in every population's
window ``i``.

Each Lava synapse (Dense, Sparse, Conv) adds one step (it sends last step's result); a max
pooling process is connected straight to its source's ``s_out`` and adds none.
"""

from __future__ import annotations

from spikeconverter.converters.ir import Edge, Graph, Population
from spikeconverter.converters.schedule import Schedule, compute_schedule

__all__ = ["hop_latency", "lava_schedule"]


def hop_latency(target: Population, _edge: Edge) -> int:
    """Steps from a source's spike to the target: 0 into max pooling, 1 through a synapse."""
    return 0 if target.kind == "maxpool" else 1


def lava_schedule(graph: Graph, double_buffered: bool = False) -> Schedule:
    """Offsets, windows and delays of ``graph`` when run in Lava (see the module docstring):
    :func:`~spikeconverter.converters.schedule.compute_schedule` in lock step, with
    :func:`hop_latency`; ``double_buffered`` neurons (two membrane banks) take a sample every
    ``P = T`` steps instead of ``2 T`` (every population accumulates for ``P``).

    Raises
    ------
    ValueError
        The graph is not calibrated.
    """
    return compute_schedule(graph, hop_latency, lock_step=True, double_buffered=double_buffered)
