"""What to build in Lava: populations and synapses with their final (float or integer) values.

A :class:`LavaPlan` is plain numpy data; :func:`float_plan` derives it from a calibrated graph and
its Lava schedule, :func:`spikeconverter.converters.to_lava.fixed_point.fixed_point_plan` turns it
into Loihi-style integers, and :mod:`spikeconverter.converters.to_lava.build` makes the Lava
processes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from spikeconverter.converters.ir import NEURON_KINDS, Graph, theta_tensor
from spikeconverter.converters.schedule import Schedule
from spikeconverter.converters.to_lava.layout import lava_shape, to_lava
from spikeconverter.converters.to_lava.synapses import SynapseSpec, edge_synapse, input_landing
from spikeconverter.plugin.kernels import pair

__all__ = ["LavaPlan", "PopulationSpec", "float_plan", "synapse_groups", "synapse_shift"]


@dataclass
class PopulationSpec:
    """One neuron population (or the input, or a max pooling) to build.

    ``bias_shift``: the bias enters that many steps before the window's last accumulate step
    (fixed point's bias-shift trick, :class:`spikeconverter.processes.ILIF`).
    ``a_in_exp`` (fixed point, ``<= 0``): the part of its synapses' weight exponents that the
    neuron applies: Loihi scales a weight mantissa by ``2**(6 + weight_exp)``; the neuron
    shifts its summed input left by ``6 + a_in_exp`` and each synapse into it by
    ``weight_exp - a_in_exp`` (:func:`synapse_shift`), so an exponent down to ``a_in_exp`` is
    applied exactly, without flooring the summed input. 0: Lava LIF's ``a_in << 6``.
    ``vth``/``bias``/``bias_exp`` are floats in a float plan and integer mantissas (Lava LIF
    conventions, see :class:`spikeconverter.processes.ILIF`) in a fixed-point plan. ``shape`` is
    the Lava shape; ``pool`` holds max pooling's ``kernel_size``, ``stride``, ``padding`` in
    Lava's (W, H) order.
    """

    name: str
    kind: str
    shape: tuple[int, ...]
    t_acc: int
    t_gen: int
    offset: int
    signed: bool = False
    vth: Any = None
    bias: Any = 0.0
    bias_exp: Any = 0
    bias_shift: int = 0
    pool: dict[str, Any] = field(default_factory=dict)
    a_in_exp: int = 0


@dataclass
class LavaPlan:
    """Everything needed to build and run a converted network in Lava.

    Attributes
    ----------
    populations : dict of str to PopulationSpec
        In topological order.
    synapses : list of SynapseSpec
        One per edge (max pooling edges excluded: they are direct connections).
    input, output : str
        Names of the input and readout populations.
    period : int
        Steps per sample (every population's ``t_acc + t_gen``; the readout's window period).
    k : float
        Inverse leak.
    rounding : str
        ``"floor"`` or ``"nearest"``.
    select_tag : {"floating_pt", "fixed_pt"}
        Which ProcessModels run it.
    input_encoding : {"analog", "spikes"}
    input_theta, input_T : float, int
        Spike-encoded input: threshold and train length.
    input_delay : int
        Sample ``i`` enters at step ``i * period + input_delay`` (the end of its targets'
        accumulate windows).
    input_shift : int
        Fixed point, analog input: the input is sent as ``round(x * 2**input_shift)``.
    output_gain : float
        The readout sends ``output_gain *`` the logits.
    double_buffered : bool
        The iLIF populations have two membrane banks (period ``max(t_acc, t_gen)``).
    """

    populations: dict[str, PopulationSpec]
    synapses: list[SynapseSpec]
    input: str
    output: str
    period: int
    k: float
    rounding: str
    select_tag: str = "floating_pt"
    input_encoding: str = "analog"
    input_theta: Any = 1.0
    input_T: int = 1
    input_delay: int = 0
    input_shift: int = 0
    output_gain: float = 1.0
    double_buffered: bool = False


def float_plan(graph: Graph, schedule: Schedule) -> LavaPlan:
    """The float64 plan of a calibrated graph (weights scaled by
    :func:`spikeconverter.coding.synapse_scale`).

    Raises
    ------
    ValueError
        A max pooling the Lava process cannot express (dilation, ceil_mode, an edge with ops).
    """
    pops: dict[str, PopulationSpec] = {}
    synapses: list[SynapseSpec] = []
    for pop in graph:
        name, s = pop.name, schedule
        spec = PopulationSpec(name=name, kind=pop.kind, shape=lava_shape(pop.shape),
                              t_acc=s.t_acc[name], t_gen=s.t_gen[name], offset=s.offset[name],
                              signed=pop.kind == "signed")
        if pop.kind in NEURON_KINDS:
            theta = theta_tensor(pop).numpy()
            spec.vth = to_lava(np.broadcast_to(theta, pop.shape), pop.shape).copy()
        if pop.kind in (*NEURON_KINDS, "readout"):
            spec.bias = to_lava(graph.population_bias(pop.name).numpy(), pop.shape).copy()
        if pop.kind == "maxpool":
            a = pop.attrs
            if pop.edges[0].ops:
                raise ValueError(f"max pooling {name!r}: its edge must carry no ops for Lava")
            if pair(a.get("dilation", 1)) != (1, 1) or a.get("ceil_mode", False):
                raise ValueError(f"max pooling {name!r}: dilation and ceil_mode are not "
                                 "supported by the Lava backend (SpikingMaxPool)")
            kh, kw = pair(a["kernel_size"])
            sh, sw = pair(a.get("stride") or a["kernel_size"])
            ph, pw = pair(a.get("padding", 0))
            spec.pool = {"kernel_size": (kw, kh), "stride": (sw, sh), "padding": (pw, ph),
                         "source": pop.edges[0].source}
        pops[name] = spec
        if pop.kind not in ("input", "maxpool"):
            synapses.extend(edge_synapse(graph, schedule, pop, i) for i in range(len(pop.edges)))
    inp = graph[graph.input]
    return LavaPlan(
        populations=pops, synapses=synapses, input=graph.input, output=graph.output,
        period=schedule.steps_per_sample, k=float(graph.k), rounding=graph.rounding,
        input_encoding=inp.attrs.get("encoding", "analog"),
        input_theta=theta_tensor(inp).numpy() if inp.theta is not None else 1.0,
        input_T=int(inp.T or 1), input_delay=input_landing(graph, schedule),
        double_buffered=schedule.double_buffered,
    )


def synapse_shift(plan: LavaPlan, syn: SynapseSpec) -> int:
    """The exponent a synapse Process applies to its summed input (left shift, arithmetic right
    shift when negative): its weight exponent less the part its target neuron applies
    (``PopulationSpec.a_in_exp``). Never negative when the planner aligned the target to its
    smallest exponent, so nothing is floored."""
    return int(syn.weight_exp) - int(plan.populations[syn.target].a_in_exp)


def synapse_groups(plan: LavaPlan) -> dict[str, list[int]]:
    """Population -> per incoming edge, the synapse groups that carry it (2 where fixed
    point's split weights add a low-order group), for the hardware report."""
    out: dict[str, list[int]] = {}
    for syn in plan.synapses:
        groups = out.setdefault(syn.target, [])
        groups.extend([0] * (syn.edge + 1 - len(groups)))
        groups[syn.edge] += 1
    return out
