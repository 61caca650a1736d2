"""The schedule of a converted network in Lava: one period for every population.

Lava's iLIF neurons cycle with period ``t_acc + t_gen``, and a stream of samples enters the
pipeline every ``P`` steps, so every spiking population must have ``t_acc + t_gen = P``. The
graph schedule (:func:`spikeconverter.converters.schedule.compute_schedule`) gives each
population ``t_acc`` = the longest incoming train; here a population whose own ``t_acc + t_gen``
would be shorter than ``P = max(longest incoming train + T)`` (the first layer after an analog
input: 1 + T) gets a longer accumulate window, ``t_acc = P - T``. Spike trains land at the start
of the window (as in the graph schedule; the synapse scale ``theta_source / k**(t_acc - 1)``
uses the Lava ``t_acc``); the analog input is sent ``t_acc - 1`` steps late instead, so that it
lands at the window's last step and is not doubled afterwards (which in fixed point would cost
input precision). The cost is ``P - T - 1`` steps of latency on the first layer; in return all
populations run in lock step and sample ``i`` is in every population's window ``i``.

Each Lava synapse (Dense, Sparse, Conv) adds one step (it sends last step's result); a max
pooling process is connected straight to its source's ``s_out`` and adds none.
"""

from __future__ import annotations

from spikeconverter.converters.ir import Edge, Graph, Population
from spikeconverter.converters.schedule import Schedule

__all__ = ["hop_latency", "lava_schedule"]


def hop_latency(target: Population, _edge: Edge) -> int:
    """Steps from a source's spike to the target: 0 into max pooling, 1 through a synapse."""
    return 0 if target.kind == "maxpool" else 1


def lava_schedule(graph: Graph) -> Schedule:
    """Offsets, windows and delays of ``graph`` when run in Lava (see the module docstring).

    Raises
    ------
    ValueError
        The graph is not calibrated.
    """
    graph.validate()
    t_gen: dict[str, int] = {}
    longest: dict[str, int] = {}
    for pop in graph:
        if pop.kind != "readout" and pop.T is None:
            raise ValueError(f"population {pop.name!r} has no T: calibrate the graph first")
        if pop.kind == "input":
            t_gen[pop.name] = int(pop.T)
            continue
        longest[pop.name] = max(t_gen[e.source] for e in pop.edges)
        if pop.kind == "maxpool":
            t_gen[pop.name] = longest[pop.name]
        else:
            t_gen[pop.name] = 0 if pop.kind == "readout" else int(pop.T)
    period = max([longest[n] + t_gen[n] for n in longest] + [t_gen[graph.input]])
    offset: dict[str, int] = {}
    t_acc: dict[str, int] = {}
    delay: dict[tuple[str, int], int] = {}
    arrival: dict[tuple[str, int], int] = {}
    for pop in graph:
        name = pop.name
        if pop.kind == "input":
            offset[name], t_acc[name] = 0, 0
            continue
        for i, e in enumerate(pop.edges):
            arrival[(name, i)] = offset[e.source] + t_acc[e.source] + hop_latency(pop, e)
        offset[name] = max(arrival[(name, i)] for i in range(len(pop.edges)))
        for i in range(len(pop.edges)):
            delay[(name, i)] = offset[name] - arrival[(name, i)]
        if pop.kind == "maxpool":
            t_acc[name] = 0
        elif pop.kind == "readout":
            t_acc[name] = longest[name]
        else:
            t_acc[name] = period - t_gen[name]
    out = graph.output
    return Schedule(
        offset=offset, t_acc=t_acc, t_gen=t_gen, delay=delay, arrival=arrival,
        hop_latency=None, latency_steps=offset[out] + t_acc[out], steps_per_sample=period,
        T={p.name: int(p.T) for p in graph if p.T is not None},
    )
