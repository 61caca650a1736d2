"""The timing of a converted network: window offsets, edge delays, latency, throughput.

A population ``p`` accumulates during steps ``[offset, offset + t_acc)`` and emits its train
during ``[offset + t_acc, offset + t_acc + t_gen)``. The schedule is the longest path over the
DAG:

* the input is a generator: ``t_acc = 0``, ``t_gen = T_in`` (1 for an analog input), offset 0;
* a max pooling population acts in the step its source emits: ``t_acc = 0``, ``t_gen`` = the
  source's;
* any other population accumulates for ``t_acc = max`` over its sources' ``t_gen`` (shorter
  trains start at the window start); the readout only accumulates (``t_gen = 0``);
* ``offset(target) = max over edges of arrival(edge)``, with ``arrival = offset(source) +
  t_acc(source) + hop`` the step the source's first spike reaches the target, and
  ``delay(edge) = offset(target) - arrival(edge)`` (whole windows on the skip edges of a
  residual block).

``hop`` is the per-synapse latency: 0 for the Norse backend (direct delivery), 1 for Lava
Dense/Conv; it may also be a function of (target population, edge).

Streams: a population is busy ``t_acc + t_gen`` steps per sample with one membrane bank; with
two (``double_buffered``, :mod:`spikeconverter.plugin.functional`) it accumulates the next
sample while it generates this one and takes a sample every ``max(t_acc, t_gen)`` steps
(:func:`spikeconverter.coding.window_period`). The period ``P`` of the network is the largest
over its populations; ``N`` samples fed every ``P`` steps take ``latency + (N - 1) * P``
steps. Double buffering leaves offsets, delays and latency as they are and about halves ``P``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from spikeconverter.coding import window_period
from spikeconverter.converters.ir import Edge, Graph, Population

__all__ = ["Schedule", "compute_schedule"]


@dataclass
class Schedule:
    """Per-population windows and per-edge delays of a converted network.

    Attributes
    ----------
    offset, t_acc, t_gen : dict of str to int
        First accumulate step, accumulate length and generate length of each population.
    delay : dict of (str, int) to int
        Extra steps on edge ``i`` of population ``name``, keyed ``(name, i)``.
    arrival : dict of (str, int) to int
        Step at which the first spike of that edge's source reaches the target (before delay).
    hop_latency : int or None
        The per-hop latency it was computed with (None when given as a function).
    latency_steps : int
        Steps from the first input step until the logits are complete (one sample): the
        readout's last accumulate step plus one.
    steps_per_sample : int
        Steps a population is busy per sample (the largest ``t_acc + t_gen``, or with
        ``double_buffered`` the largest ``max(t_acc, t_gen)``): in a pipelined stream a new
        sample can enter every ``steps_per_sample`` steps (the period ``P``).
    double_buffered : bool
        The neurons have two membrane banks (see the module docstring).
    """

    offset: dict[str, int]
    t_acc: dict[str, int]
    t_gen: dict[str, int]
    delay: dict[tuple[str, int], int]
    arrival: dict[tuple[str, int], int]
    hop_latency: int | None
    latency_steps: int
    steps_per_sample: int
    T: dict[str, int] = field(default_factory=dict)
    double_buffered: bool = False

    def generate_start(self, name: str) -> int:
        """First step of population ``name``'s emitted train."""
        return self.offset[name] + self.t_acc[name]

    def steps_for(self, n_samples: int) -> int:
        """Steps to stream ``n_samples`` samples through the pipeline."""
        if n_samples < 1:
            raise ValueError(f"n_samples must be >= 1, got {n_samples!r}")
        return self.latency_steps + (n_samples - 1) * self.steps_per_sample

    def to_dict(self) -> dict[str, Any]:
        """Plain types only (delays as ``[name, i, steps]`` lists), for saving."""
        return {
            "offset": dict(self.offset), "t_acc": dict(self.t_acc), "t_gen": dict(self.t_gen),
            "delay": [[n, i, d] for (n, i), d in self.delay.items()],
            "arrival": [[n, i, a] for (n, i), a in self.arrival.items()],
            "hop_latency": self.hop_latency, "latency_steps": self.latency_steps,
            "steps_per_sample": self.steps_per_sample, "T": dict(self.T),
            "double_buffered": self.double_buffered,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Schedule:
        return cls(
            offset=dict(d["offset"]), t_acc=dict(d["t_acc"]), t_gen=dict(d["t_gen"]),
            delay={(n, int(i)): int(s) for n, i, s in d["delay"]},
            arrival={(n, int(i)): int(s) for n, i, s in d["arrival"]},
            hop_latency=d["hop_latency"], latency_steps=int(d["latency_steps"]),
            steps_per_sample=int(d["steps_per_sample"]), T=dict(d.get("T", {})),
            double_buffered=bool(d.get("double_buffered", False)),
        )


def _check_hop(hop_latency: int | Callable[[Population, Edge], int]
               ) -> tuple[Callable[[Population, Edge], int], int | None]:
    if callable(hop_latency):
        return hop_latency, None
    if isinstance(hop_latency, bool) or not isinstance(hop_latency, int) or hop_latency < 0:
        raise ValueError(f"hop_latency must be an integer >= 0, got {hop_latency!r}")
    return (lambda _p, _e: hop_latency), hop_latency


def _train_lengths(graph: Graph) -> tuple[dict[str, int], dict[str, int]]:
    """Each population's generate length and its longest incoming train."""
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
    return t_gen, longest


def compute_schedule(
    graph: Graph, hop_latency: int | Callable[[Population, Edge], int] = 0, *,
    lock_step: bool = False, double_buffered: bool = False,
) -> Schedule:
    """Schedule of a calibrated graph (every spiking population has its ``T``).

    Parameters
    ----------
    graph : Graph
        Calibrated graph, populations in topological order.
    hop_latency : int or callable
        Steps a spike takes over one edge: 0 for direct delivery (Norse), 1 for Lava synapses;
        or ``f(target, edge) -> int``.
    lock_step : bool
        Give every spiking population the same period ``t_acc + t_gen`` (Lava's neurons cycle
        with their period and a stream of samples enters every period): a population whose
        own window would be shorter than ``P = max(longest incoming train + T)`` accumulates
        longer, ``t_acc = P - T``; trains still land at the window start. Then sample ``i`` is
        in every population's window ``i``. With ``double_buffered`` the period is
        ``P = max(longest incoming train, T)`` over the populations and each accumulates for
        ``t_acc = P``.
    double_buffered : bool
        Neurons with two membrane banks: a population's period is ``max(t_acc, t_gen)``
        instead of ``t_acc + t_gen``; offsets and latency are unchanged.

    Raises
    ------
    ValueError
        A population is not calibrated, or a hop latency is negative.
    """
    hop, hop_value = _check_hop(hop_latency)
    if not isinstance(double_buffered, bool):
        raise ValueError(f"double_buffered must be True or False, got {double_buffered!r}")
    graph.validate()
    t_gen, longest = _train_lengths(graph)
    period = max([window_period(longest[n], t_gen[n], double_buffered) for n in longest]
                 + [t_gen[graph.input]])
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
            h = int(hop(pop, e))
            if h < 0:
                raise ValueError(f"hop latency of edge {e.source!r} -> {name!r} is {h} < 0")
            arrival[(name, i)] = offset[e.source] + t_acc[e.source] + h
        offset[name] = max(arrival[(name, i)] for i in range(len(pop.edges)))
        for i in range(len(pop.edges)):
            delay[(name, i)] = offset[name] - arrival[(name, i)]
        if pop.kind == "maxpool":
            t_acc[name] = 0
        elif lock_step and pop.kind != "readout":
            t_acc[name] = period if double_buffered else period - t_gen[name]
        else:
            t_acc[name] = longest[name]
    out = graph.output
    return Schedule(
        offset=offset, t_acc=t_acc, t_gen=t_gen, delay=delay, arrival=arrival,
        hop_latency=hop_value,
        latency_steps=offset[out] + t_acc[out],
        steps_per_sample=max(window_period(t_acc[n], t_gen[n], double_buffered)
                             for n in offset),
        T={p.name: int(p.T) for p in graph if p.T is not None},
        double_buffered=double_buffered,
    )
