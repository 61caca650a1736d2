"""Norse backend: a calibrated graph + schedule as a time-stepped iLIF simulation.

Every population runs over its own window on the global clock of the schedule (its neurons' step
counter starts at the schedule's offset), in topological order. Each population's complete spike
train -- every spike of every neuron -- is produced and passed on:

* ``mode="plugin"``: the reference. A source's ``T`` spike frames go through each edge's
  synapses as one batched op (``T * B`` samples), land in the target's accumulate window at the
  step the schedule says, and the target's :class:`spikeconverter.plugin.ILIF` neurons run step
  by step over their whole window (accumulate, bias, generate) on the schedule's clock; the
  readout neurons' clock gives ``stats["steps_simulated"]``. Slow (every step touches every
  membrane about ten times).
* ``mode="frame"``: the same frame-by-frame synaptic traffic, with the neuron equations run by
  a lean in-place kernel: ``V = sum_t k^(t_acc-1-t) I(t)`` over the frames' currents, bias and
  rounding at the last accumulate step, then the generate steps ``z = [V >= v_th]``,
  ``V <- k (V - z v_th)`` one by one.
* ``mode="fused"``: the accumulate phase is linear, so ``sum_t k^(t_acc-1-t) W s_t`` is formed as
  ``W (sum_t k^(t_acc-1-t) s_t)``: one synapse op per edge and window. For k = 2 the generate
  phase is computed in closed form (:func:`spikeconverter.coding.binary_code`: the train is the
  binary expansion of an integer code, exact in floating point) and kept bit-packed, one
  integer per neuron; ``spikes``/``stats`` unpack or count its bits.

The whole-window kernels (trains, generate, spike max pooling) are the neuron's and live in
:mod:`spikeconverter.plugin.kernels`.

All three give the same spikes, spike for spike, and the same logits (tested in float64).

Scaling: a source with threshold ``theta_s`` feeding a target that accumulates for ``t_acc``
steps has its synapses scaled by ``theta_s / k^(t_acc - 1)``
(:func:`spikeconverter.coding.synapse_scale`); the target keeps its own threshold and gets its
bias once, at its last accumulate step. An analog input (``T = 1``,
``theta = 1``) delivers ``W x`` in one step. The readout only accumulates: its membrane after its
last accumulate step is the logits.
"""

from __future__ import annotations

import itertools
import math
import re
import threading
from typing import Any

import torch
import torch.nn as nn

from spikeconverter import coding
from spikeconverter.converters import counting
from spikeconverter.converters.ir import NEURON_KINDS, Graph, Population, apply_op, theta_tensor
from spikeconverter.converters.norse_stream import stream
from spikeconverter.converters.schedule import Schedule, compute_schedule
from spikeconverter.converters.serialize import NetworkFile, write
from spikeconverter.converters.validate import check_batch, check_graph, check_schedule
from spikeconverter.plugin import ILIF, ILIFParameters, ILIFState
from spikeconverter.plugin.kernels import (
    BLOCK,
    SpikeTrain,
    accumulate_weights,
    code_max_pool2d,
    fast_code,
    generate,
    generate_code,
    saturation_margin,
    spike_max_pool2d,
    start_and_code,
    start_generate,
)

__all__ = ["MODES", "SpikingNetwork", "build", "from_file", "tensor_key"]

MODES = ("fused", "frame", "plugin")


def tensor_key(*parts: Any) -> str:
    """Attribute name of a network tensor: ``tensor_key("w", population, edge, op)``,
    ``("theta", population)``, ``("bias", population)``, ``("scale", population, edge)``
    (also the ``state_dict`` keys)."""
    return "_" + re.sub(r"\W", "_", "__".join(str(p) for p in parts))


class SpikingNetwork(nn.Module):
    """A converted network simulated with iLIF neurons in Norse.

    Parameters
    ----------
    graph : Graph
        Calibrated graph (every spiking population has ``theta`` and ``T``).
    schedule : Schedule, optional
        Timing; computed with direct delivery (``hop_latency=0``) when omitted.
    mode : {"fused", "frame", "plugin"}
        How the neurons are simulated (see the module docstring); all produce every spike and
        agree spike for spike. ``"plugin"`` steps :class:`spikeconverter.plugin.ILIF` itself.
    dtype : torch.dtype
        Precision of the simulation (float32; float64 for exactness checks).

    Attributes
    ----------
    graph, schedule : Graph, Schedule
    stats : dict or None
        Filled by every call (bit-packed trains are counted when it is first read): per
        population ``spikes`` (whole batch), ``firing_rate`` (spikes per neuron per generate
        step), ``synaptic_ops`` (paper Eq. 14: each spike times its neuron's fan-out, whole
        batch), ``ann_macs`` (per sample, of the layer's incoming synapses),
        ``T``, ``t_acc``, ``offset``, ``saturations`` (neuron-samples whose input lay beyond
        the calibration range, clipped to the top code; whole batch); and totals
        ``saturations``, ``synaptic_ops_per_sample``,
        ``ann_macs_per_sample``, ``analog_input_macs_per_sample`` (the first layer's MACs on an
        analog input), ``latency_steps`` (from the schedule), ``steps_simulated`` (counted by
        the readout neurons' clocks), ``steps_per_sample``, ``batch_size``.
    record : bool
        Keep every population's spike train in ``spikes`` (``(T, B, ...)``) after a call.
    """

    def __init__(self, graph: Graph, schedule: Schedule | None = None, *, mode: str = "fused",
                 dtype: torch.dtype = torch.float32):
        super().__init__()
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        if dtype not in (torch.float32, torch.float64):
            raise ValueError(f"dtype must be torch.float32 or torch.float64, got {dtype!r}")
        for pop in graph:
            if pop.kind != "readout" and (pop.theta is None or pop.T is None):
                raise ValueError(f"population {pop.name!r} is not calibrated (theta/T missing); "
                                 "run calibrate() first")
        check_graph(graph, dtype)  # every value, before any buffer is allocated
        self.graph = graph
        self.schedule = schedule if schedule is not None else compute_schedule(graph, 0)
        self.mode = mode
        self.record = False
        self.spikes: dict[str, torch.Tensor] = {}
        self.stats: dict[str, Any] | None = None
        self._saturations: dict[str, Any] = {}
        self._counted: dict[str, torch.Tensor] = {}
        self._work: dict[tuple, torch.Tensor] = {}
        self.init_tensors(dtype)
        fan_out = counting.fan_outs(graph)
        self._fanout = {name: f.float() for name, f in fan_out.items()}
        self._fanout_cache: dict[tuple, torch.Tensor | None] = {}
        self._macs = {p.name: counting.ann_macs(graph, p.name) for p in graph}
        self._consumer_count = {p.name: len(graph.consumers(p.name)) for p in graph}

    # -- the network's tensors: hooks that subclasses (fine-tuning) override -------------------

    def init_tensors(self, dtype: torch.dtype) -> None:
        """Register the simulation's tensors under :func:`tensor_key` names: each population's
        ``theta`` and folded ``bias``, each edge's synapse ``scale`` and each op's weight
        ``w``, as buffers of ``dtype``. Called once by ``__init__``."""
        graph, s = self.graph, self.schedule
        for pop in graph:
            if pop.theta is not None:
                self.register_buffer(tensor_key("theta", pop.name),
                                     theta_tensor(pop).to(dtype))
            if pop.kind in (*NEURON_KINDS, "readout"):
                self.register_buffer(tensor_key("bias", pop.name),
                                     graph.population_bias(pop.name).to(dtype))
            if pop.kind == "maxpool":
                continue
            for i, e in enumerate(pop.edges):
                scale = coding.synapse_scale(theta_tensor(graph[e.source]), s.t_acc[pop.name],
                                             float(graph.k))
                self.register_buffer(tensor_key("scale", pop.name, i), scale.to(dtype))
                for j, op in enumerate(e.ops):
                    if op.weight is not None:
                        self.register_buffer(tensor_key("w", pop.name, i, j),
                                             torch.as_tensor(op.weight).to(dtype))

    def theta(self, name: str) -> torch.Tensor:
        """Threshold of population ``name``, broadcastable to its values (no batch dim)."""
        return getattr(self, tensor_key("theta", name))

    def population_bias(self, name: str) -> torch.Tensor:
        """The folded bias of population ``name`` (``pop.shape``), added once per window."""
        return getattr(self, tensor_key("bias", name))

    def synapse_scale(self, name: str, i: int) -> torch.Tensor:
        """Factor on edge ``i`` of population ``name``
        (:func:`spikeconverter.coding.synapse_scale` of its source's threshold)."""
        return getattr(self, tensor_key("scale", name, i))

    def weight(self, name: str, i: int, j: int) -> torch.Tensor:
        """Weight of op ``j`` on edge ``i`` of population ``name``."""
        return getattr(self, tensor_key("w", name, i, j))

    # -- simulation ---------------------------------------------------------------------------

    @property
    def dtype(self) -> torch.dtype:
        return next(iter(self.buffers())).dtype

    @property
    def device(self) -> torch.device:
        """Where the network's tensors are (``net.to(device)`` moves them)."""
        return next(itertools.chain(self.parameters(), self.buffers())).device

    def _window_start(self, pop: Population, i: int, src_start: int) -> int:
        """Index in ``pop``'s accumulate window where edge ``i``'s first spike lands."""
        s = self.schedule
        e = pop.edges[i]
        hop = s.arrival[(pop.name, i)] - s.generate_start(e.source)
        return src_start + hop + s.delay[(pop.name, i)] - s.offset[pop.name]

    #: Subclasses whose synapses and thresholds are trainable parameters (fine-tuning, see
    #: :mod:`spikeconverter.training`) set this: forward then keeps the autograd graph in grad
    #: mode.
    differentiable = False

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Logits ``(B, classes)`` of a batch of inputs ``(B, *input_shape)`` (no gradients)."""
        g = self.graph
        x = check_batch(images, "the input", tuple(g[g.input].shape)).to(self.dtype)
        batch = x.shape[0]
        trains: dict[str, SpikeTrain] = {}
        remaining = dict(self._consumer_count)
        per_pop: dict[str, dict[str, Any]] = {}
        self.spikes = {}
        self._saturations = {}
        self._counted = {}
        self.stats = None  # the last call's uncounted codes go now, not after this call
        logits, steps = None, 0
        with torch.set_grad_enabled(self.differentiable and torch.is_grad_enabled()):
            for pop in g:
                if pop.kind == "readout":
                    logits, steps = self._readout(pop, trains)
                    per_pop[pop.name] = self._pop_stats(pop, None, batch)
                    continue
                train = self._train(pop, trains, x)
                # free trains nobody needs any more (once per source: a population may have
                # several edges from one, as in ``a + 0.5 * a``)
                for src in dict.fromkeys(e.source for e in pop.edges):
                    remaining[src] -= 1
                    if remaining[src] == 0:
                        trains.pop(src, None)
                trains[pop.name] = train
                if self.record:
                    self.spikes[pop.name] = train.frames()
                per_pop[pop.name] = self._pop_stats(pop, train, batch)
        self.stats = None
        self._pending = (per_pop, batch, steps)  # finished when read (see stats)
        return logits

    def _train(self, pop: Population, trains: dict[str, SpikeTrain],
               x: torch.Tensor) -> SpikeTrain:
        if pop.kind == "input":
            return self._input_train(pop, x)
        if pop.kind == "maxpool":
            return self.max_pool(pop, trains[pop.edges[0].source])
        return self.population_train(pop, trains)

    def max_pool(self, pop: Population, src: SpikeTrain) -> SpikeTrain:
        """The train of max pooling population ``pop`` from its source's train
        (:func:`spikeconverter.plugin.kernels.spike_max_pool2d`)."""
        a = pop.attrs
        args = (a["kernel_size"], a["stride"], a["padding"], a.get("dilation", (1, 1)),
                a.get("ceil_mode", False))
        start = self.schedule.generate_start(pop.name)
        if src.code is not None and self.graph[pop.edges[0].source].kind != "signed":
            # packed non-negative trains: the max of the codes is the spike max pool, exactly
            return SpikeTrain(src.theta, int(pop.T), start, code=code_max_pool2d(src.code, *args))
        return SpikeTrain(src.theta, int(pop.T), start, k=src.k,
                          frames=spike_max_pool2d(src.frames(), *args))

    def _input_train(self, pop: Population, x: torch.Tensor) -> SpikeTrain:
        start = self.schedule.generate_start(pop.name)
        theta = self.theta(pop.name)
        if pop.attrs.get("encoding", "analog") == "analog":
            return SpikeTrain(theta, 1, start, frames=x.unsqueeze(0))
        # spike-encoded input: signed iLIF neurons take the pixel in one step, then emit T spikes
        p = ILIFParameters(k=float(self.graph.k), v_th=theta, t_acc=1, t_gen=int(pop.T),
                           rounding=self.graph.rounding, signed=True)
        current = torch.cat([x.unsqueeze(0), x.new_zeros((int(pop.T), *x.shape))])
        z, state = ILIF(p)(current)
        self._count_saturated(pop, state.v, theta, True, int(pop.T), int(pop.T))
        return SpikeTrain(theta, int(pop.T), start, k=float(self.graph.k), frames=z[1:])

    def _arrivals(self, pop: Population, trains: dict) -> list[tuple[int, SpikeTrain, int]]:
        """(edge index, source train, window index of its first spike) for every edge."""
        t_acc = self.schedule.t_acc[pop.name]
        out = []
        for i, e in enumerate(pop.edges):
            train = trains[e.source]
            at = self._window_start(pop, i, train.start)
            if at < 0 or at + train.T > t_acc:
                raise RuntimeError(
                    f"schedule error: the train of {e.source!r} reaches {pop.name!r} at window "
                    f"step {at}..{at + train.T - 1}, outside its accumulate window of {t_acc} "
                    "steps"
                )
            out.append((i, train, at))
        return out

    def apply_edge(self, pop: Population, i: int, x: torch.Tensor) -> torch.Tensor:
        """Edge ``i`` of ``pop`` (its ops with this network's weights, no bias) on ``x``."""
        for j, op in enumerate(pop.edges[i].ops):
            x = apply_op(op, x, with_bias=False,
                         weight=self.weight(pop.name, i, j) if op.weight is not None else None)
        return x

    def membrane(self, pop: Population, trains: dict[str, SpikeTrain]) -> torch.Tensor:
        """Membrane after the accumulate phase, bias not yet added (frame and fused modes).

        frame: every spike frame crosses the synapses (``T * B`` batch), weighted by its
        accumulate step, ``V = sum_t k^(t_acc-1-t) I(t)``. fused: by linearity the frames are
        weighted and summed first (``theta * sum_j k^-j s_j``, read from the packed train),
        then cross the synapses once.
        """
        t_acc = self.schedule.t_acc[pop.name]
        k = float(self.graph.k)
        total = None
        for i, train, at in self._arrivals(pop, trains):
            if self.mode == "fused":
                cur = self._fused_current(pop, i, train, k ** (-at))
            else:
                f = train.frames()
                cur = self._frame_current(pop, i, f, accumulate_weights(f.shape[0], k, t_acc,
                                                                        at, f))
            # every current is a fresh tensor: the sum can grow in place (not under autograd)
            total = cur if total is None else (
                total + cur if total.requires_grad else total.add_(cur))
        return total

    def _fused_current(self, pop: Population, i: int, train: SpikeTrain,
                       factor: float) -> torch.Tensor:
        """Edge ``i``'s current from a whole train (fused mode): its decoded value through the
        edge's synapses. Outside autograd a packed train's value is formed in a reused work
        buffer (it lives only until the synapses have read it)."""
        if train.code is None or torch.is_grad_enabled():
            return self.apply_edge(pop, i, train.value(factor))
        shape = train.code.shape
        buf = self._workspace("a", shape, self.theta(pop.edges[i].source).dtype,
                              train.code.device)
        x = train.value(factor, out=buf)  # the buffer, or the train's own decoded values
        cur = self.apply_edge(pop, i, x)
        if cur.untyped_storage().data_ptr() == x.untyped_storage().data_ptr():
            cur = cur.clone()  # an edge without synapse ops passes its input itself on
        return cur

    def _workspace(self, slot: str, shape: tuple[int, ...], dtype: torch.dtype,
                   device: torch.device) -> torch.Tensor:
        """A tensor of ``shape`` and ``dtype`` on ``device`` in work buffer ``slot`` (one per
        thread), reused by every population and call: big fresh tensors cost the CPU a page
        fault per 4 KiB on first touch, often more than the arithmetic on them. The buffers
        grow to the largest population's size and are kept (:meth:`release_workspace`)."""
        n = math.prod(shape) * dtype.itemsize
        key = (threading.get_ident(), slot, device)
        buf = self._work.get(key)
        if buf is None or buf.numel() < n:
            buf = None  # the old one freed before the new one is allocated
            buf = self._work[key] = torch.empty(max(n, 1), dtype=torch.uint8, device=device)
        return buf[:n].view(dtype).view(shape)

    def release_workspace(self) -> None:
        """Free the work buffers (they are made again, at their full size, by the next call)."""
        self._work.clear()

    def __getstate__(self) -> dict[str, Any]:
        state = super().__getstate__()
        state["_work"] = {}  # scratch space is not state (and not copied)
        return state

    def _frame_current(self, pop: Population, i: int, f: torch.Tensor,
                       w: torch.Tensor) -> torch.Tensor:
        n, b = f.shape[:2]
        scale = self.synapse_scale(pop.name, i)
        if scale.ndim == 0:  # the synapses see the bare spikes; weights after
            cur = self.apply_edge(pop, i, f.reshape(n * b, *f.shape[2:]))
            return torch.tensordot(w * scale, cur.reshape(n, b, *cur.shape[1:]), dims=1)
        x = f * (w.reshape(-1, *([1] * (f.ndim - 1))) * scale)
        cur = self.apply_edge(pop, i, x.reshape(n * b, *f.shape[2:]))
        return cur.reshape(n, b, *cur.shape[1:]).sum(0)

    def _plugin_window(self, pop: Population, trains: dict, t_gen: int):
        """The population's window run step by step by :class:`spikeconverter.plugin.ILIF`."""
        s = self.schedule
        t_acc, off = s.t_acc[pop.name], s.offset[pop.name]
        current = None
        for i, train, at in self._arrivals(pop, trains):
            f = train.frames()
            n, b = f.shape[:2]
            cur = self.apply_edge(pop, i, (f * self.synapse_scale(pop.name, i)).reshape(
                n * b, *f.shape[2:]))
            cur = cur.reshape(n, b, *cur.shape[1:])
            if current is None:
                current = cur.new_zeros((t_acc + t_gen, *cur.shape[1:]))
            current[at:at + n] += cur
        readout = pop.kind == "readout"
        p = ILIFParameters(
            k=float(self.graph.k),
            v_th=torch.ones((), dtype=current.dtype) if readout else self.theta(pop.name),
            t_acc=t_acc, t_gen=max(t_gen, 1), offset=off, bias=self.population_bias(pop.name),
            rounding="floor" if readout else self.graph.rounding, signed=pop.kind == "signed",
        )
        z, state = ILIF(p)(current, ILIFState(torch.zeros_like(current[0]), torch.tensor(off)))
        return z[t_acc:], state

    def _readout(self, pop: Population, trains: dict) -> tuple[torch.Tensor, int]:
        s = self.schedule
        if self.mode == "plugin":
            _, state = self._plugin_window(pop, trains, 0)
            return state.v, int(state.n)  # the clock of the readout neurons
        v = self.membrane(pop, trains) + self.population_bias(pop.name)
        return v, s.offset[pop.name] + s.t_acc[pop.name]

    def population_train(self, pop: Population, trains: dict[str, SpikeTrain]) -> SpikeTrain:
        """The train of a ``relu``/``signed`` population over its whole window, from the trains
        of its sources (accumulate, bias and rounding, generate)."""
        if self.mode == "plugin":
            t_gen = self.schedule.t_gen[pop.name]
            z, state = self._plugin_window(pop, trains, t_gen)
            self._count_saturated(pop, state.v, self.theta(pop.name), pop.kind == "signed",
                                  t_gen, t_gen)
            return SpikeTrain(self.theta(pop.name), t_gen, self.schedule.generate_start(pop.name),
                              k=float(self.graph.k), frames=z)
        return self.generate_train(pop, self.membrane(pop, trains))

    def generate_train(self, pop: Population, v: torch.Tensor) -> SpikeTrain:
        """The train of ``relu``/``signed`` population ``pop`` (frame and fused modes) from
        its accumulated membrane ``v`` (bias not yet added; overwritten outside autograd)."""
        s = self.schedule
        t_gen, start = s.t_gen[pop.name], s.generate_start(pop.name)
        theta = self.theta(pop.name)
        signed = pop.kind == "signed"
        k = float(self.graph.k)
        if self.mode == "fused" and k == 2.0 and fast_code(v, t_gen) and not v.requires_grad:
            # float32: start, saturation count and code in one blocked pass (the same values)
            cpu = v.device.type == "cpu"
            work = self._workspace("q", (BLOCK if cpu else v.numel(),), torch.float64, v.device)
            found: dict[str, torch.Tensor] = {}
            code, self._saturations[pop.name] = start_and_code(
                v, self.population_bias(pop.name), theta, t_gen, self.graph.rounding, signed,
                work=work, weight=self._int_fan_out(pop.name), found=found)
            if "totals" in found:  # counted on the way (the compiled kernel): nothing left
                self._counted[pop.name] = found["totals"]
            return SpikeTrain(theta, t_gen, start, code=code, decoded=found.get("value"))
        v = start_generate(v, self.population_bias(pop.name), theta, t_gen, k,
                           self.graph.rounding, signed, inplace=not v.requires_grad)
        self._count_saturated(pop, v, theta, signed, t_gen, 0)
        if self.mode == "fused" and k == 2.0:
            return SpikeTrain(theta, t_gen, start, code=generate_code(v, theta, t_gen, signed))
        return SpikeTrain(theta, t_gen, start, k=k, frames=generate(v, theta, t_gen, k, signed))

    def stream(self, images: torch.Tensor, *, progress: bool = False) -> torch.Tensor:
        """Logits ``(N, classes)`` of ``images`` streamed one after another, step by step on one
        clock, a sample every ``P`` steps (``P = T`` when ``schedule.double_buffered``, else
        ``2 T``; :mod:`spikeconverter.converters.norse_stream`). Same logits as ``net(images)``
        (the same spikes); ``stats`` gets ``latency_steps``, ``steps_per_sample`` and the
        counted ``steps_simulated`` = ``latency + (N - 1) * P``."""
        g = self.graph
        x = check_batch(images, "the input", tuple(g[g.input].shape))
        logits, self.stats = stream(self, x, progress=progress)
        return logits

    # -- statistics ---------------------------------------------------------------------------

    @torch.no_grad()
    def _count_saturated(self, pop: Population, v: torch.Tensor, theta: torch.Tensor,
                         signed: bool, t_gen: int, steps: int) -> None:
        """Count the neuron-samples whose input lay beyond the calibration range: when
        generation started (after the rounding offset), more than half an LSB above
        :func:`coding.code_range` (``2 theta`` for k = 2: the calibration maximum with
        ``"max"`` thresholds), so that their train is clipped to the top code with an error
        beyond the code's resolution (the margin also keeps float rounding at the calibration
        maximum itself from counting).

        ``v`` is the membrane ``steps`` generate steps later (0: at the start; ``t_gen``: the
        residual after the window). Above the range the excess ``V - range`` grows by ``k``
        per step, below it the membrane stays below, so the test carries over exactly.
        """
        k = float(self.graph.k)
        excess = (v.abs() if signed else v) - coding.code_range(theta, k)
        margin = saturation_margin(theta, t_gen, k, self.graph.rounding)
        # a device tensor: read with the spike counts when the stats are (no host sync here)
        self._saturations[pop.name] = (excess > k ** steps * margin).sum()

    @torch.no_grad()
    def _pop_stats(self, pop: Population, train: SpikeTrain | None,
                   batch: int) -> dict[str, Any]:
        s = self.schedule
        st: dict[str, Any] = {
            "kind": pop.kind, "neurons": math.prod(pop.shape), "T": pop.T,
            "t_acc": s.t_acc[pop.name], "offset": s.offset[pop.name],
            "ann_macs": self._macs[pop.name],
        }
        analog = pop.kind == "input" and pop.attrs.get("encoding", "analog") == "analog"
        sat = self._saturations.get(pop.name, 0)
        st["saturations"] = sat
        if isinstance(sat, torch.Tensor):
            st["_saturations"] = sat  # a device count: read with the others (_read_counts)
        if train is None or analog:
            st.update(spikes=0, firing_rate=0.0, synaptic_ops=0)
            return st
        signed = pop.kind in ("signed", "input")
        if pop.name in self._counted:  # [spikes, synaptic ops], counted with the codes
            st["_counts"] = self._counted.pop(pop.name)
        elif train.code is not None:
            # bit-packed: counted when the stats are first read (the codes are kept, one
            # number per neuron), so a caller who only wants logits never pays for counting
            st["_train"] = (train, signed)
        else:  # frames are T times bigger: counted now
            st["_counts"] = self._count(pop.name, train, signed)
        st["_window"] = batch * st["neurons"] * train.T
        return st

    def _count(self, name: str, train: SpikeTrain, signed: bool) -> torch.Tensor:
        """``[spikes, synaptic ops]`` of population ``name``'s train, on its device (read back
        with all others at once by :meth:`_read_counts`)."""
        per_neuron = train.counts(signed)
        fan = self._fan_out(name, per_neuron)
        return torch.stack([per_neuron.sum(), torch.dot(per_neuron.reshape(-1), fan.reshape(-1))])

    def _fan_out(self, name: str, like: torch.Tensor) -> torch.Tensor:
        """Fan-out of population ``name`` in ``like``'s dtype and device (cached there)."""
        key = (name, like.dtype, like.device)
        fan = self._fanout_cache.get(key)
        if fan is None:
            fan = self._fanout_cache[key] = self._fanout[name].to(like.device, like.dtype)
        return fan

    def _int_fan_out(self, name: str) -> torch.Tensor | None:
        """Fan-out of population ``name`` as int32 on the CPU (cached; ``None`` where a
        neuron's spikes times its fan-out could leave int32, ``2**31 / 64``: then the codes are
        counted afterwards, in float64)."""
        key = (name, torch.int32, torch.device("cpu"))
        if key not in self._fanout_cache:
            f = self._fanout[name]
            self._fanout_cache[key] = f.to(torch.int32) if float(f.max()) < 2**25 else None
        return self._fanout_cache[key]

    @torch.no_grad()
    def _read_counts(self, per_pop: dict) -> None:
        """Spike, synaptic-op and saturation totals of every population: one read from the
        device."""
        for n, st in per_pop.items():
            if "_train" in st:
                st["_counts"] = self._count(n, *st.pop("_train"))
        names = [n for n, st in per_pop.items() if "_counts" in st]
        sats = [n for n, st in per_pop.items() if "_saturations" in st]
        if not names and not sats:
            return
        parts = [per_pop[n].pop("_counts") for n in names]
        parts += [per_pop[n].pop("_saturations").to(torch.float64).reshape(1) for n in sats]
        flat = torch.cat([p.reshape(-1) for p in parts]).tolist()  # exact: all below 2**53
        for j, n in enumerate(names):
            spikes, synops = flat[2 * j], flat[2 * j + 1]
            st = per_pop[n]
            st.update(spikes=int(spikes), firing_rate=spikes / st.pop("_window"),
                      synaptic_ops=int(synops))
        for j, n in enumerate(sats):
            per_pop[n]["saturations"] = int(flat[2 * len(names) + j])

    @property
    def stats(self) -> dict[str, Any] | None:
        """The last call's statistics (see the class docstring); bit-packed trains are counted
        on the first read after a call."""
        if self._pending is not None:
            self._finish_stats(*self._pending)
            self._pending = None
        return self._stats

    @stats.setter
    def stats(self, value: dict[str, Any] | None) -> None:
        self._pending, self._stats = None, value

    def _finish_stats(self, per_pop: dict, batch: int, steps: int) -> None:
        self._read_counts(per_pop)
        s, g = self.schedule, self.graph
        analog = g[g.input].attrs.get("encoding", "analog") == "analog"
        first_macs = sum(self._macs[p.name] for p in g
                         if any(e.source == g.input for e in p.edges)) if analog else 0
        self.stats = {
            "populations": per_pop,
            "spikes": sum(v["spikes"] for v in per_pop.values()),
            "saturations": sum(v["saturations"] for v in per_pop.values()),
            "synaptic_ops_per_sample": sum(v["synaptic_ops"] for v in per_pop.values()) / batch,
            "ann_macs_per_sample": sum(self._macs.values()),
            "analog_input_macs_per_sample": first_macs,
            "latency_steps": s.latency_steps,
            "steps_simulated": steps,
            "steps_per_sample": s.steps_per_sample,
            "T": dict(s.T),
            "batch_size": batch,
            "mode": self.mode,
        }

    # -- persistence --------------------------------------------------------------------------

    @property
    def save_options(self) -> dict[str, Any]:
        """What a network file stores to rebuild this network (plain values)."""
        return {"mode": self.mode, "dtype": str(self.dtype).removeprefix("torch."),
                "backend": "norse"}

    def save(self, path) -> None:
        """Write graph, thresholds and schedule to one versioned file (atomically)."""
        write(path, self.graph, self.schedule, self.save_options)


def build(graph: Graph, *, mode: str = "fused", dtype: torch.dtype = torch.float32,
          double_buffered: bool = False, **_: Any) -> SpikingNetwork:
    """The Norse backend's builder: a :class:`SpikingNetwork` with direct delivery
    (``hop_latency=0``; ``double_buffered``: neurons with two membrane banks, for
    :meth:`SpikingNetwork.stream`). Options for other backends (e.g. ``calibration``) are
    ignored."""
    schedule = compute_schedule(graph, hop_latency=0, double_buffered=double_buffered)
    return SpikingNetwork(graph, schedule, mode=mode, dtype=dtype)


def from_file(data: NetworkFile, *, mode: str | None = None, dtype: torch.dtype | None = None,
              double_buffered: bool | None = None, **_: Any) -> SpikingNetwork:
    """A :class:`SpikingNetwork` from a read network file; a file saved by another backend gets
    the Norse schedule. ``mode``/``dtype``/``double_buffered`` override the saved ones."""
    saved = data.schedule.double_buffered
    double = saved if double_buffered is None else bool(double_buffered)
    schedule = compute_schedule(data.graph, 0, double_buffered=double)
    # a schedule follows from the graph: a different one is forged
    if data.backend == "norse" and double == saved:
        check_schedule(data.schedule, schedule)
        schedule = data.schedule
    dt = dtype or getattr(torch, data.options.get("dtype", "float32"))
    return SpikingNetwork(data.graph, schedule, mode=mode or data.options.get("mode", "fused"),
                          dtype=dt)
