"""Lava processes from a :class:`~spikeconverter.converters.to_lava.plan.LavaPlan`.

The input is a ``lava.proc.io.source.RingBuffer`` holding, for sample ``i``, its analog value at
step ``i * period`` (or its signed spike train over the ``T`` steps from there); populations are
:class:`spikeconverter.processes.ILIF`, :class:`~spikeconverter.processes.SpikingMaxPool` and
:class:`~spikeconverter.processes.Readout`; each edge is one Conv/Dense/Sparse synapse, behind a
:class:`~spikeconverter.processes.Delay` where the schedule asks for one. Several synapses into
one population connect to the same ``a_in``, which sums them. A sink RingBuffer records the
readout's ``v_out`` (the logits of each window).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from lava.magma.core.run_configs import Loihi2SimCfg

from spikeconverter import coding
from spikeconverter.converters.to_lava.layout import to_lava
from spikeconverter.converters.to_lava.plan import LavaPlan, synapse_shift
from spikeconverter.converters.to_lava.runtime import import_lava_runtime

__all__ = ["Built", "ProcessGraph", "build", "input_data", "run_config"]

#: Payload bits of graded spikes (analog input, signed trains): Loihi 2's 24-bit messages.
GRADED_BITS = 24


@dataclass
class Built:
    """The processes of one run (the sink collects the readout's ``v_out`` every step)."""

    source: Any
    sink: Any
    neurons: dict[str, Any] = field(default_factory=dict)
    synapses: list[Any] = field(default_factory=list)


@dataclass
class ProcessGraph:
    """A converted network's Lava Processes for a given input, ready to run (not yet run).

    Attributes
    ----------
    source : Process
        ``lava.proc.io.source.RingBuffer`` (unbatched graph) or
        :class:`~spikeconverter.processes.BatchFeed` (batched), holding all the input.
    sink : Process
        ``lava.proc.io.sink.RingBuffer`` recording the readout's ``v_out`` every step, or a
        :class:`~spikeconverter.processes.WindowCollector` (batched).
    neurons : dict of str to Process
        Population name (as in ``lnet.graph``) -> ILIF / SpikingMaxPool / Readout (batched:
        BatchILIF / BatchMaxPool / Readout of shape ``(B, ...)``). Lava layout ``(W, H, C)``.
    synapses : list of Process
        One synapse Process per edge, named ``syn_<target>_<edge>``.
    num_steps : int
        Steps to run for every sample's logits.
    run_cfg : RunConfig
        The run configuration that
        :meth:`~spikeconverter.converters.to_lava.network.LavaNetwork.run` uses (it selects the
        fast models).
    samples, batch : int
    plan, schedule
        What the graph was built from.
    """

    plan: LavaPlan
    schedule: Any
    samples: int
    batch: int
    source: Any
    sink: Any
    neurons: dict[str, Any]
    synapses: list[Any]
    num_steps: int
    run_cfg: Any

    def read_steps(self) -> list[int]:
        """Step (counted from 0) at which window ``w``'s logits leave the readout."""
        s, out = self.schedule, self.plan.output
        windows = -(-self.samples // self.batch)
        return [s.offset[out] + w * s.steps_per_sample + s.t_acc[out] - 1
                for w in range(windows)]

    def logits(self) -> np.ndarray:
        """The logits ``(samples, classes)``; call after running ``num_steps`` steps, before
        the runtime stops."""
        if self.batch == 1 and hasattr(self.sink, "data"):
            v = np.asarray(self.sink.data.get(), dtype=np.float64)
            return v[..., self.read_steps()].reshape(-1, self.samples).T / self.plan.output_gain
        rows = [np.asarray(self.sink.receive(), dtype=np.float64).reshape(self.batch, -1)
                for _ in self.read_steps()]
        return np.concatenate(rows)[: self.samples] / self.plan.output_gain


def input_data(plan: LavaPlan, images: np.ndarray, num_steps: int) -> np.ndarray:
    """The source's buffer ``(*lava_input_shape, num_steps)`` for ``images`` ``(N, *shape)``."""
    n = images.shape[0]
    torch_shape = images.shape[1:]
    x = to_lava(images.astype(np.float64), torch_shape)  # (N, *lava shape)
    fixed = plan.select_tag == "fixed_pt"
    dtype = np.int32 if fixed else np.float64
    data = np.zeros((*x.shape[1:], num_steps), dtype=dtype)
    if plan.input_encoding == "analog":
        frames = x[None]  # (1, N, ...)
        if fixed:
            frames = np.rint(frames * 2.0 ** plan.input_shift)
    else:
        theta = np.broadcast_to(np.asarray(plan.input_theta, dtype=np.float64),
                                torch_shape)
        frames = coding.encode(images.astype(np.float64), theta, plan.input_T, plan.k,
                               plan.rounding, signed=True)
        frames = to_lava(frames, torch_shape)
    for i in range(n):
        at = i * plan.period + plan.input_delay
        data[..., at:at + frames.shape[0]] = np.moveaxis(frames[:, i], 0, -1)
    return data


def build(plan: LavaPlan, data: np.ndarray) -> Built:
    """Create and connect the processes of ``plan``, fed by the source buffer ``data``."""
    import_lava_runtime()
    from lava.proc.io.source import RingBuffer as Source

    source = Source(data=data)
    outs: dict[str, Any] = {plan.input: source.s_out}
    ins: dict[str, Any] = {}
    built = Built(source=source, sink=None)
    for spec in plan.populations.values():
        if spec.kind != "input":
            _add_population(plan, spec, built, ins, outs, data.shape[-1])
    for syn in plan.synapses:
        built.synapses.append(_add_synapse(syn, outs[syn.source], ins[syn.target],
                                           synapse_shift(plan, syn)))
    return built


def _add_population(plan: LavaPlan, spec: Any, built: Built, ins: dict[str, Any],
                    outs: dict[str, Any], num_steps: int) -> None:
    from lava.proc.io.sink import RingBuffer as Sink

    from spikeconverter.processes import ILIF, Readout, SpikingMaxPool
    from spikeconverter.processes.loihi import SHIFT

    if spec.kind == "maxpool":
        p = SpikingMaxPool(shape=_source_shape(plan, spec.name), t_gen=spec.t_gen,
                           period=plan.period, offset=spec.offset, name=spec.name,
                           kernel_size=spec.pool["kernel_size"],
                           stride=spec.pool["stride"], padding=spec.pool["padding"])
        ins[spec.name], outs[spec.name] = p.s_in, p.s_out
    elif spec.kind == "readout":
        p = Readout(shape=spec.shape, k=plan.k, t_acc=spec.t_acc, period=plan.period,
                    offset=spec.offset, bias_mant=spec.bias, bias_exp=spec.bias_exp,
                    bias_shift=spec.bias_shift, a_in_shift=SHIFT + spec.a_in_exp,
                    name=spec.name)
        ins[spec.name] = p.a_in
        built.sink = Sink(shape=spec.shape, buffer=num_steps)
        p.v_out.connect(built.sink.a_in)
    else:
        p = ILIF(shape=spec.shape, vth=spec.vth, k=plan.k, t_acc=spec.t_acc,
                 t_gen=spec.t_gen, offset=spec.offset, bias_mant=spec.bias,
                 bias_exp=spec.bias_exp, bias_shift=spec.bias_shift,
                 a_in_shift=SHIFT + spec.a_in_exp, rounding=plan.rounding,
                 signed=spec.signed, double_buffered=plan.double_buffered,
                 name=spec.name)
        ins[spec.name], outs[spec.name] = p.a_in, p.s_out
    built.neurons[spec.name] = p
    if spec.kind == "maxpool":
        outs[_pool_source(plan, spec.name)].connect(p.s_in)


def _add_synapse(syn: Any, port: Any, target_in: Any, weight_exp: int) -> Any:
    """The Lava synapse of ``syn`` (Lava's own Conv/Dense/Sparse; their bit-accurate models
    shift the summed input by ``weight_exp``: :func:`~spikeconverter.converters.to_lava.plan.
    synapse_shift`), behind a Delay where the schedule asks for one."""
    from lava.proc.conv.process import Conv
    from lava.proc.dense.process import Dense
    from lava.proc.sparse.process import Sparse

    from spikeconverter.processes import Delay

    if syn.delay > 0:
        d = Delay(shape=syn.in_shape, delay=syn.delay, name=f"delay_{syn.target}_{syn.edge}")
        port.connect(d.a_in)
        port = d.s_out
    bits = GRADED_BITS if syn.graded else 0
    name = f"syn_{syn.target}_{syn.edge}" + (f"_{syn.part}" if syn.part else "")
    if syn.kind == "conv":
        c = syn.conv
        proc = Conv(weight=syn.weight, weight_exp=weight_exp,
                    input_shape=c["input_shape"], padding=c["padding"], stride=c["stride"],
                    dilation=c["dilation"], groups=c["groups"], num_message_bits=bits,
                    name=name)
        if tuple(proc.output_shape) != tuple(syn.out_shape):
            raise RuntimeError(f"Lava Conv for {syn.target!r} gives shape "
                               f"{proc.output_shape}, the graph expects {syn.out_shape}")
        port.connect(proc.s_in)
        out = proc.a_out
    else:
        cls = Dense if syn.kind == "dense" else Sparse
        proc = cls(weights=syn.weight, weight_exp=weight_exp, num_message_bits=bits,
                   name=name)
        (port.flatten() if len(syn.in_shape) > 1 else port).connect(proc.s_in)
        out = proc.a_out.reshape(syn.out_shape) if len(syn.out_shape) > 1 else proc.a_out
    out.connect(target_in)
    return proc


def _pool_source(plan: LavaPlan, name: str) -> str:
    return plan.populations[name].pool["source"]


def _source_shape(plan: LavaPlan, name: str) -> tuple[int, ...]:
    return plan.populations[_pool_source(plan, name)].shape


def run_config(plan: LavaPlan) -> Loihi2SimCfg:
    """Loihi2SimCfg with the fast im2col Conv models (and, in fixed point, the iLIF model that
    counts only data-losing saturations)."""
    import_lava_runtime()
    from spikeconverter.processes import ILIF
    from spikeconverter.processes.fastconv.config import fast_conv_run_config

    exceptions: dict[Any, Any] = {}
    if plan.select_tag == "fixed_pt":
        from spikeconverter.converters.to_lava.models import PyILIFModelBitAccDataLoss

        exceptions[ILIF] = PyILIFModelBitAccDataLoss
    return fast_conv_run_config(plan.select_tag, exception_proc_model_map=exceptions)
