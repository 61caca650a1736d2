"""Loihi 2: the published limits in one place, a core mapping, and cost estimates.

Everything a person planning a Loihi 2 deployment asks of a converted network — does it fit,
on how many neurocores and chips, and what does one inference cost — computed from the graph,
its schedule and :mod:`spikeconverter.converters.counting`. Backend-independent (the Lava
backend's ``hardware_report`` and the ``spikeconverter report`` command call it).

**The figures** (:class:`Loihi2`, :data:`LOIHI2`; each field's source in :data:`SOURCES`, written
out in ``docs/loihi2.md``). Chip and core sizes are Intel's published Loihi 2 figures. Intel has
not published per-operation energy or time for Loihi 2, so the cost model uses the per-operation
figures of its predecessor Loihi (Davies et al. 2018, Table 2: pre-silicon SDF/SPICE simulation,
"consistent with early post-silicon characterization"; the synaptic-op energy is the table's
minimum, its time the table's maximum) — the only published per-op figures of a Loihi-class
chip. Loihi 2 is described as up to 10x faster and more efficient per operation, so energy and
time here are *estimates*, most likely upper bounds; they are labelled so in every report.

**The memory model of a neurocore** (assumptions, documented, not Intel's allocator): a core's
~128 KB memory holds neuron state, synapses and routing. Per neuron: a 24-bit membrane in a
32-bit word (two with double buffering); per stored synapse: an 8-bit weight, plus a 16-bit
index for sparse connectivity; per neuron and consumer population: a 32-bit output route. A
convolution stores its *kernel* once per core (weight sharing, as Loihi 2's convolutional
connectivity does), not one weight per connection; a layer split over several cores splits its
output channels first, so each core holds the kernels of its channels only. A lone linear layer
is a dense matrix; any other edge (average pooling, the option-A shortcut, flatten chains) is
stored like the Lava backend builds it: dense when at least a quarter of the full matrix is
nonzero, sparse otherwise. A layer gets the fewest cores with at most ``neurons_per_core``
neurons each whose state, synapses and routing fit ``core_memory_bytes``.

**The cost model** (per inference of a pipelined stream, i.e. per sample): every neuron of a
population is updated at each of the ``steps_per_sample`` steps of its sample slot (with double
buffering both of its banks are, so per sample the updates stay the same while the steps per
sample halve: the state doubles, the work per step doubles, the work per sample does not); each
spike costs one synaptic operation per synapse it drives (:func:`counting.edge_fan_out`), with
spike counts measured on data (the quantised ANN's codes, which the exact spiking network emits
spike for spike); energy = synops x E_synop + updates x E_update + spikes x E_spike. Time per
step is that of the busiest core (Loihi steps are barrier-synchronised): its neuron updates
times the per-update time plus its synaptic operations times the per-synop time.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import Any

import torch

from spikeconverter.coding import lsb
from spikeconverter.converters.counting import (
    ann_macs,
    edge_connections,
    edge_fan_out,
    fan_in,
    fan_out,
)
from spikeconverter.converters.ir import POPULATION_KINDS, Graph, theta_tensor
from spikeconverter.converters.schedule import Schedule
from spikeconverter.plugin.kernels import popcount

__all__ = ["LOIHI2", "SOURCES", "Loihi2", "core_mapping", "format_hardware_report",
           "hardware_report", "measure_activity", "spike_counts"]

BRIEF = ("Intel Labs, 'Taking Neuromorphic Computing to the Next Level with Loihi 2', "
         "Technology Brief, 2021")
DAVIES18 = ("M. Davies et al., 'Loihi: A Neuromorphic Manycore Processor with On-Chip Learning', "
            "IEEE Micro 38(1), 2018, Table 2 'Loihi pre-silicon performance and energy "
            "measurements' (Loihi, 14 nm, 0.75 V; from pre-silicon SDF and SPICE simulations, "
            "'consistent with early post-silicon characterization')")
DAVIES18_T1 = ("M. Davies et al., IEEE Micro 38(1), 2018, mapping constraints 3 and 4: at most "
               "4,096 core-to-core fan-out edges (N_axout) and 4,096 input axon distribution "
               "lists (N_axin) per core (Loihi; taken as the Loihi-class limit)")
ORCHARD21 = ("S. B. Shrestha et al., 'Efficient Video and Audio Processing with Loihi 2', ICASSP "
             "2024 (graded, integer-valued spikes); G. Orchard et al., 'Efficient Neuromorphic "
             "Signal Processing with Loihi 2', IEEE SiPS 2021 (cited for shared-weight "
             "convolutional connectivity; not confirmed against its text)")
LAVA_LIF = ("Lava 0.10 lava.proc.lif (PyLifModelBitAcc): 24-bit membrane, 17-bit vth mantissa "
            "<< 6, 13-bit bias mantissa with exponent; lava.proc.dense: 8-bit weights + exponent")

#: The source of every figure of :class:`Loihi2` (field name -> citation).
SOURCES: dict[str, str] = {
    "cores_per_chip": BRIEF + ": 128 neuromorphic cores per chip",
    "neurons_per_chip": BRIEF + ": up to 1 million neurons per chip",
    "synapses_per_chip": BRIEF + ": up to 120 million synapses per chip",
    "neurons_per_core": "1,048,576 neurons / 128 cores = 8,192 (from the brief's chip totals)",
    "core_memory_bytes": BRIEF + ": ~128 KB of SRAM per core, flexibly partitioned between "
                         "synapses, neuron state and routing",
    "max_fan_in": DAVIES18_T1,
    "max_fan_out": DAVIES18_T1,
    "membrane_bits": LAVA_LIF,
    "weight_bits": LAVA_LIF,
    "bias_mant_bits": LAVA_LIF,
    "vth_bits": LAVA_LIF,
    "energy_per_synop_pj": DAVIES18 + ": 23.6 pJ per synaptic spike operation (minimum)",
    "energy_per_neuron_update_pj": DAVIES18 + ": 81 pJ per active neuron update (52 pJ "
                                   "inactive; every update is charged as active)",
    "energy_per_spike_pj": DAVIES18 + ": 1.7 pJ per within-tile spike",
    "time_per_synop_ns": DAVIES18 + ": 3.5 ns per synaptic spike operation (maximum)",
    "time_per_neuron_update_ns": DAVIES18 + ": 8.4 ns per active neuron update (5.3 ns "
                                 "inactive)",
    "convolution": ORCHARD21,
}


@dataclass(frozen=True)
class Loihi2:
    """Published Loihi 2 limits and Loihi-class per-operation costs (see :data:`SOURCES`),
    and the assumed memory layout of a neurocore (module docstring)."""

    cores_per_chip: int = 128
    neurons_per_chip: int = 1_048_576
    synapses_per_chip: int = 120_000_000
    neurons_per_core: int = 8192
    core_memory_bytes: int = 128 * 1024
    max_fan_in: int = 4096
    max_fan_out: int = 4096
    membrane_bits: int = 24
    weight_bits: int = 8
    bias_mant_bits: int = 13
    bias_exp_max: int = 7
    vth_bits: int = 17
    # assumed memory layout (bytes)
    state_bytes: int = 4
    weight_bytes: int = 1
    index_bytes: int = 2
    route_bytes: int = 4
    # Loihi (2018) pre-silicon per-operation figures (Table 2): an estimate for Loihi 2
    energy_per_synop_pj: float = 23.6
    energy_per_neuron_update_pj: float = 81.0
    energy_per_spike_pj: float = 1.7
    time_per_synop_ns: float = 3.5
    time_per_neuron_update_ns: float = 8.4


LOIHI2 = Loihi2()
#: Matrices with at least this fraction of nonzeros are stored dense (the Lava backend's rule).
DENSE_FRACTION = 0.25
#: Populations that take a core: all but the input, which the host feeds.
_MAPPED = tuple(kind for kind in POPULATION_KINDS if kind != "input")


# -- storage ---------------------------------------------------------------------------------

def _edge_storage(graph: Graph, target: str, i: int, hw: Loihi2) -> dict[str, Any]:
    """How edge ``i`` of ``target`` is stored: kind, stored weights, bytes, connections."""
    e = graph[target].edges[i]
    connections = edge_connections(graph, target, i)
    ops = [op for op in e.ops if op.kind not in ("flatten", "identity")]
    if len(ops) == 1 and ops[0].kind == "conv2d":
        w = ops[0].weight
        stored = int((w != 0).sum())
        return {"kind": "conv", "stored": stored, "bytes": stored * hw.weight_bytes,
                "connections": connections, "channels": int(w.shape[0])}
    if len(ops) == 1 and ops[0].kind == "linear":
        stored = int((ops[0].weight != 0).sum())
        return {"kind": "dense", "stored": stored, "bytes": stored * hw.weight_bytes,
                "connections": connections, "channels": 1}
    full = math.prod(graph[e.source].shape) * math.prod(graph[target].shape)
    if connections >= DENSE_FRACTION * full:
        return {"kind": "dense", "stored": full, "bytes": full * hw.weight_bytes,
                "connections": connections, "channels": 1}
    return {"kind": "sparse", "stored": connections,
            "bytes": connections * (hw.weight_bytes + hw.index_bytes),
            "connections": connections, "channels": 1}


def _grouped(storage: dict[str, Any], groups: int) -> dict[str, Any]:
    """An edge's storage when ``groups`` synapse groups carry it (each stores the weights)."""
    return {**storage, "stored": storage["stored"] * groups,
            "bytes": storage["bytes"] * groups, "groups": int(groups)}


def _core_bytes(c: int, fixed: int, edges: list[dict[str, Any]]) -> float:
    """Bytes on each of ``c`` cores: shared state and routing split evenly; a conv kernel
    split by output channels (replicated once channels run out), other synapses split."""
    synapses = 0.0
    for e in edges:
        if e["kind"] == "conv":
            synapses += e["bytes"] / min(c, e["channels"])
        else:
            synapses += e["bytes"] / c
    return fixed / c + synapses


def _cores_for(neurons: int, fixed: int, edges: list[dict[str, Any]], hw: Loihi2) -> int | None:
    """Fewest cores whose memory holds the layer, or None if no split fits."""
    lo = max(1, math.ceil(neurons / hw.neurons_per_core))
    if _core_bytes(neurons, fixed, edges) > hw.core_memory_bytes:
        return None
    hi = neurons
    while lo < hi:  # bytes per core never grow with more cores
        mid = (lo + hi) // 2
        if _core_bytes(mid, fixed, edges) <= hw.core_memory_bytes:
            hi = mid
        else:
            lo = mid + 1
    return lo


def core_mapping(graph: Graph, hw: Loihi2 = LOIHI2, double_buffered: bool = False,
                 synapse_groups: dict[str, list[int]] | None = None) -> dict[str, Any]:
    """Partition every population onto neurocores (module docstring).

    ``synapse_groups`` (population -> per edge, the synapse groups that carry it; default 1):
    an edge carried by two 8-bit groups (fixed point's split weights) stores its weights twice.

    Returns
    -------
    dict
        ``layers`` (per mapped population: ``kind``, ``neurons``, ``cores``, ``state_bytes``,
        ``synapse_bytes``, ``routing_bytes``, ``stored_weights``, ``connections``,
        ``synapse_kinds``, ``synapses`` (per edge: ``source``, ``kind``, ``stored``,
        ``bytes``, ``connections``, ``channels``), ``max_fan_in``, ``max_fan_out``,
        ``limits``) and ``totals``
        (``neurons``, ``cores``, ``chips``, ``stored_weights``, ``connections``,
        ``memory_bytes``, ``fits``, ``limits``). The input population is fed by the host and
        takes no core; its fan-out is reported under ``input_fan_out``.
    """
    layers: dict[str, dict[str, Any]] = {}
    banks = 2 if double_buffered else 1
    for pop in graph:
        if pop.kind not in _MAPPED:
            continue
        neurons = math.prod(pop.shape)
        groups = (synapse_groups or {}).get(pop.name) or [1] * len(pop.edges)
        edges = [_grouped(_edge_storage(graph, pop.name, i, hw), groups[i])
                 for i in range(len(pop.edges))]
        consumers = len(graph.consumers(pop.name))
        state = neurons * hw.state_bytes * banks
        routing = neurons * hw.route_bytes * consumers
        cores = _cores_for(neurons, state + routing, edges, hw)
        info = {
            "kind": pop.kind, "neurons": neurons, "cores": cores or neurons,
            "state_bytes": state, "routing_bytes": routing,
            "synapse_bytes": sum(e["bytes"] for e in edges),
            "stored_weights": sum(e["stored"] for e in edges),
            "connections": sum(e["connections"] for e in edges),
            "synapse_kinds": [e["kind"] for e in edges],
            "synapses": [{"source": e.source, **d} for e, d in zip(pop.edges, edges,
                                                                    strict=True)],
            "max_fan_in": int(fan_in(graph, pop.name).max()),
            "max_fan_out": int(fan_out(graph, pop.name).max()),
        }
        info["limits"] = _layer_limits(info, cores is None, hw)
        layers[pop.name] = info
    return {"layers": layers, "totals": _totals(graph, layers, hw),
            "input_fan_out": int(fan_out(graph, graph.input).max())}


def _layer_limits(info: dict[str, Any], no_split: bool, hw: Loihi2) -> list[str]:
    limits = []
    if no_split:
        limits.append(f"synapses do not fit {hw.core_memory_bytes} B per core at any split")
    if info["max_fan_in"] > hw.max_fan_in:
        limits.append(f"fan-in {info['max_fan_in']} > {hw.max_fan_in}")
    if info["max_fan_out"] > hw.max_fan_out:
        limits.append(f"fan-out {info['max_fan_out']} > {hw.max_fan_out}")
    return limits


def _totals(graph: Graph, layers: dict[str, dict[str, Any]], hw: Loihi2) -> dict[str, Any]:
    neurons = sum(i["neurons"] for i in layers.values())
    cores = sum(i["cores"] for i in layers.values())
    stored = sum(i["stored_weights"] for i in layers.values())
    chips = max(1, math.ceil(cores / hw.cores_per_chip))
    limits = [f"{name}: {m}" for name, i in layers.items() for m in i["limits"]]
    if neurons > hw.neurons_per_chip * chips:
        limits.append(f"{neurons} neurons > {hw.neurons_per_chip} per chip x {chips}")
    if stored > hw.synapses_per_chip * chips:
        limits.append(f"{stored} stored synapses > {hw.synapses_per_chip} per chip x {chips}")
    return {
        "neurons": neurons, "cores": cores, "chips": chips, "stored_weights": stored,
        "connections": sum(i["connections"] for i in layers.values()),
        "memory_bytes": sum(i["state_bytes"] + i["synapse_bytes"] + i["routing_bytes"]
                            for i in layers.values()),
        "fits_one_chip": cores <= hw.cores_per_chip and not limits,
        "fits": not limits, "limits": limits,
    }


# -- activity ------------------------------------------------------------------------------------

def spike_counts(graph: Graph, batches: Iterable[torch.Tensor]) -> tuple[dict[str, torch.Tensor],
                                                                         int]:
    """Mean spikes per sample of every neuron, measured on data; and the number of samples.

    The exact spiking network emits, per population, the MSB-first code of its quantised
    value (:meth:`Graph.forward` with ``quantized=True``), so its spikes are the set bits of
    ``|value| / lsb`` (k = 2). An analog input sends one graded event per nonzero value.
    """
    if float(graph.k) != 2.0:
        raise ValueError(f"spike counting from codes needs k = 2, the graph has k = {graph.k}")
    totals: dict[str, torch.Tensor] = {}
    n = 0
    with torch.no_grad():
        for x in batches:
            values = graph.forward(x.double(), quantized=True)
            n += x.shape[0]
            for pop in graph:
                spikes = _spikes(graph, pop, values[pop.name])
                if spikes is not None:
                    totals[pop.name] = totals.get(pop.name, 0) + spikes.sum(0)
    if n == 0:
        raise ValueError("spike_counts needs at least one sample")
    return {k: v / n for k, v in totals.items()}, n


def _spikes(graph: Graph, pop, value: torch.Tensor) -> torch.Tensor | None:
    if pop.kind == "readout":
        return None
    if pop.kind == "input" and pop.attrs.get("encoding", "analog") == "analog":
        return (value != 0).double()
    src = pop
    if pop.kind == "maxpool":  # the max of codes of one population: its source's threshold
        src = graph[pop.edges[0].source]
    th = theta_tensor(src, value.dtype)
    code = torch.round(value.abs() / lsb(th, int(src.T)))
    return popcount(code).double()


def measure_activity(graph: Graph, batches: Iterable[torch.Tensor]) -> dict[str, Any]:
    """Mean spikes and synaptic operations per sample, as plain data (saved with a network).

    Returns
    -------
    dict
        ``samples`` (how many were measured), ``spikes`` (per population: spikes it emits per
        sample) and ``synaptic_ops`` (per population: synaptic operations of its incoming
        synapses per sample, each spike times the synapses it drives through that edge),
        ``edge_synaptic_ops`` (the same per incoming edge, a list).
    """
    spikes, n = spike_counts(graph, batches)
    edge_ops = {}
    for pop in graph:
        if pop.kind in _MAPPED:
            edge_ops[pop.name] = [
                float((spikes[e.source] * edge_fan_out(graph, pop.name, i)).sum())
                for i, e in enumerate(pop.edges)]
    return {"samples": n, "spikes": {k: float(v.sum()) for k, v in spikes.items()},
            "synaptic_ops": {k: sum(v) for k, v in edge_ops.items()},
            "edge_synaptic_ops": edge_ops}


# -- the report --------------------------------------------------------------------------------

def hardware_report(graph: Graph, schedule: Schedule, activity: dict[str, Any],
                    hw: Loihi2 = LOIHI2, double_buffered: bool | None = None,
                    steps_per_sample: int | None = None,
                    synapse_groups: dict[str, list[int]] | None = None) -> dict[str, Any]:
    """Core mapping and per-inference cost estimate of a converted network (module docstring).

    Parameters
    ----------
    graph, schedule : Graph, Schedule
        The calibrated graph and the schedule it runs with.
    activity : dict
        :func:`measure_activity` of some inputs (e.g. the calibration or test images).
    hw : Loihi2
        The hardware figures.
    double_buffered : bool, optional
        Two membrane banks per neuron (state x 2); default and only accepted value: the
        schedule's (``schedule.double_buffered``, which also sets the steps per sample).
    steps_per_sample : int, optional
        Steps per sample of a stream (default: the schedule's).
    synapse_groups : dict, optional
        Population -> per edge, the synapse groups that carry it (fixed point's split
        weights: 2); each group stores the weights and is driven by every spike. Activity
        measured before per-edge counts existed scales a population's operations by its
        largest count (an upper bound).

    Returns
    -------
    dict
        :func:`core_mapping`'s ``layers`` and ``totals`` with, per layer, ``spikes``,
        ``synaptic_ops``, ``neuron_updates``, ``ann_macs`` (per sample); ``per_inference``
        (``time_steps``, ``steps_per_sample``, ``spikes``, ``synaptic_ops``,
        ``neuron_updates``, ``ann_macs``, ``energy_uj_estimate``, ``latency_us_estimate``,
        ``seconds_per_sample_estimate``, ``samples_measured``); ``hardware`` (the figures)
        and ``sources``; ``estimate_note``.
    """
    if double_buffered is None:
        double_buffered = schedule.double_buffered
    if bool(double_buffered) != schedule.double_buffered:
        raise ValueError(
            f"double_buffered={double_buffered!r} but the schedule is "
            f"{'double' if schedule.double_buffered else 'single'}-banked: pass a schedule "
            "computed with compute_schedule(..., double_buffered=...) (its period differs)")
    mapping = core_mapping(graph, hw, double_buffered, synapse_groups)
    period = int(steps_per_sample or schedule.steps_per_sample)
    layers = mapping["layers"]
    # two banks: both are updated at every step (one accumulates, one generates), so per
    # sample the bank updates are the same as with one bank over twice the steps
    banks = 2 if double_buffered else 1
    step_ns = 0.0
    for name, info in layers.items():
        synops = _grouped_synops(activity, name, info["synapses"])
        info.update(spikes=float(activity["spikes"].get(name, 0.0)), synaptic_ops=synops,
                    neuron_updates=info["neurons"] * period * banks,
                    ann_macs=ann_macs(graph, name))
        # Loihi steps are barrier-synchronised: the busiest core sets the step time
        core_ns = (info["neuron_updates"] * hw.time_per_neuron_update_ns
                   + synops * hw.time_per_synop_ns) / info["cores"] / period
        step_ns = max(step_ns, core_ns)
    per = _per_inference(schedule, layers, activity, period, step_ns, hw)
    return {
        "layers": layers, "totals": mapping["totals"], "input_fan_out": mapping["input_fan_out"],
        "per_inference": per, "double_buffered": bool(double_buffered),
        "hardware": asdict(hw), "sources": dict(SOURCES),
        "estimate_note": ("energy and time are estimates from Loihi (2018) pre-silicon per-op "
                          "figures; Intel has not published Loihi 2 per-op costs"),
    }


def _grouped_synops(activity: dict[str, Any], name: str,
                    synapses: list[dict[str, Any]]) -> float:
    """Synaptic operations per sample of a population whose edges are carried by
    ``synapses[i]["groups"]`` synapse groups each."""
    groups = [int(s.get("groups", 1)) for s in synapses]
    per_edge = activity.get("edge_synaptic_ops", {}).get(name)
    if per_edge is not None and len(per_edge) == len(groups):
        return float(sum(o * g for o, g in zip(per_edge, groups, strict=True)))
    return float(activity["synaptic_ops"][name]) * max(groups, default=1)


def _per_inference(schedule: Schedule, layers: dict[str, dict[str, Any]],
                   activity: dict[str, Any], period: int, step_ns: float,
                   hw: Loihi2) -> dict[str, Any]:
    synops = sum(i["synaptic_ops"] for i in layers.values())
    updates = sum(i["neuron_updates"] for i in layers.values())
    n_spikes = sum(activity["spikes"].values())
    energy_pj = (synops * hw.energy_per_synop_pj + updates * hw.energy_per_neuron_update_pj
                 + n_spikes * hw.energy_per_spike_pj)
    return {
        "time_steps": schedule.latency_steps, "steps_per_sample": period,
        "spikes": n_spikes, "synaptic_ops": synops, "neuron_updates": updates,
        "ann_macs": sum(i["ann_macs"] for i in layers.values()),
        "energy_uj_estimate": energy_pj * 1e-6,
        "latency_us_estimate": schedule.latency_steps * step_ns * 1e-3,
        "seconds_per_sample_estimate": period * step_ns * 1e-9,
        "samples_measured": int(activity["samples"]),
    }


def format_hardware_report(report: dict[str, Any]) -> str:
    """The report as a text table (per layer, then totals and the per-inference estimate)."""
    head = (f"{'layer':<16}{'kind':>8}{'neurons':>9}{'cores':>7}{'syn KB':>9}{'weights':>10}"
            f"{'fan-in':>8}{'fan-out':>9}{'synops':>12}{'MACs':>12}  limits")
    rows = [head, "-" * len(head)]
    for name, i in report["layers"].items():
        rows.append(f"{name[:15]:<16}{i['kind']:>8}{i['neurons']:>9}{i['cores']:>7}"
                    f"{i['synapse_bytes'] / 1024:>9.1f}{i['stored_weights']:>10}"
                    f"{i['max_fan_in']:>8}{i['max_fan_out']:>9}{i.get('synaptic_ops', 0):>12.0f}"
                    f"{i.get('ann_macs', 0):>12}  {'; '.join(i['limits'])}")
    t, p = report["totals"], report["per_inference"]
    rows += [
        "-" * len(head),
        f"total: {t['neurons']} neurons, {t['cores']} cores, {t['chips']} chip(s) of "
        f"{report['hardware']['cores_per_chip']} cores; fits: {'yes' if t['fits'] else 'no'}"
        f"{'' if t['fits'] else ' (' + '; '.join(t['limits']) + ')'}"
        f"{'; double-buffered (state x2)' if report.get('double_buffered') else ''}",
        f"per inference (mean of {p['samples_measured']} samples): {p['time_steps']} steps "
        f"latency, {p['steps_per_sample']} steps/sample, {p['spikes']:.0f} spikes, "
        f"{p['synaptic_ops']:.0f} synaptic ops, {p['neuron_updates']} neuron updates; "
        f"ANN: {p['ann_macs']} MACs",
        f"ESTIMATE: {p['energy_uj_estimate']:.1f} uJ, {p['latency_us_estimate']:.0f} us latency, "
        f"{p['seconds_per_sample_estimate'] * 1e6:.0f} us/sample ({report['estimate_note']})",
    ]
    if report.get("violations"):
        rows.append("FIXED-POINT LIMITS VIOLATED (allow_violations=True): "
                    + "; ".join(report["violations"]))
    return "\n".join(rows)
