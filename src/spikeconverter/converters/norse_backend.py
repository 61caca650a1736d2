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
  phase is computed in closed form (the train is the binary expansion of an integer code,
  exact in floating point) and kept bit-packed, one integer per neuron; ``spikes``/``stats``
  unpack or count its bits.

All three give the same spikes, spike for spike, and the same logits (tested in float64).

Scaling (DESIGN.md): a source with threshold ``theta_s`` feeding a target that accumulates for
``t_acc`` steps has its synapses scaled by ``theta_s / k^(t_acc - 1)``; the target keeps its own
threshold and gets its bias once, at its last accumulate step. An analog input (``T = 1``,
``theta = 1``) delivers ``W x`` in one step. The readout only accumulates: its membrane after its
last accumulate step is the logits.
"""

from __future__ import annotations

import math
import re
from typing import Any

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from spikeconverter import coding
from spikeconverter.converters.ir import Graph, Op, Population
from spikeconverter.converters.schedule import Schedule, compute_schedule
from spikeconverter.converters.validate import check_batch, check_graph
from spikeconverter.plugin import ILIF, ILIFParameters, ILIFState

__all__ = ["MODES", "SpikingNetwork", "spike_max_pool2d"]

MODES = ("fused", "frame", "plugin")


def _key(*parts: Any) -> str:
    return "_" + re.sub(r"\W", "_", "__".join(str(p) for p in parts))


def spike_max_pool2d(frames: torch.Tensor, kernel_size, stride, padding=(0, 0), dilation=(1, 1),
                     ceil_mode: bool = False) -> torch.Tensor:
    """Max pooling of MSB-first binary trains, spike by spike (candidate masks).

    For each pooling window a mask of candidate inputs starts full; at each step the window
    emits a spike if any candidate spiked, and then keeps only the candidates that spiked
    (if one did). On MSB-first codes this emits the code of the largest input.

    Parameters
    ----------
    frames : torch.Tensor
        Spikes ``(T, B, C, H, W)`` in {0, 1}.

    Returns
    -------
    torch.Tensor
        ``(T, B, C, H_out, W_out)``, same dtype.
    """
    T, B, C, H, W = frames.shape
    k, s, p, d = (tuple(v) if isinstance(v, (tuple, list)) else (v, v)
                  for v in (kernel_size, stride, padding, dilation))
    out_hw, extra = [], []
    for size, ki, si, pi, di in zip((H, W), k, s, p, d, strict=True):
        span = size + 2 * pi - di * (ki - 1) - 1
        n = (-(-span // si) if ceil_mode else span // si) + 1
        if ceil_mode and (n - 1) * si >= size + pi:
            n -= 1
        out_hw.append(n)
        extra.append(max(0, (n - 1) * si + di * (ki - 1) + 1 - (size + 2 * pi)))
    # zero padding is max-neutral here: the trains are non-negative codes
    x = F.pad(frames.reshape(T * B, C, H, W), (p[1], p[1] + extra[1], p[0], p[0] + extra[0]))
    kk = k[0] * k[1]
    patches = F.unfold(x, k, dilation=d, stride=s).reshape(T, B, C, kk, -1) > 0
    cand = torch.ones(patches.shape[1:], dtype=torch.bool, device=frames.device)
    out = torch.empty((T, B, C, patches.shape[-1]), dtype=torch.bool, device=frames.device)
    for t in range(T):
        fired = patches[t] & cand
        any_fired = torch.any(fired, dim=2, out=out[t])
        cand = torch.where(any_fired.unsqueeze(2), fired, cand)
    return out.to(frames.dtype).reshape(T, B, C, *out_hw)


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
        Filled by every call: per population ``spikes`` (whole batch), ``firing_rate`` (spikes per
        neuron per generate step), ``synaptic_ops`` (paper Eq. 14: each spike times its neuron's
        fan-out, whole batch), ``ann_macs`` (per sample, of the layer's incoming synapses),
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
        self._saturations: dict[str, int] = {}
        s = self.schedule
        for pop in graph:
            if pop.theta is not None:
                self.register_buffer(_key("theta", pop.name), self._theta(pop).to(dtype))
            if pop.kind in ("relu", "signed", "readout"):
                self.register_buffer(_key("bias", pop.name),
                                     graph.population_bias(pop.name).to(dtype))
            for i, e in enumerate(pop.edges):
                if pop.kind == "maxpool":
                    continue
                src = graph[e.source]
                scale = self._theta(src) / float(graph.k) ** (s.t_acc[pop.name] - 1)
                self.register_buffer(_key("scale", pop.name, i), scale.to(dtype))
                for j, op in enumerate(e.ops):
                    if op.weight is not None:
                        self.register_buffer(_key("w", pop.name, i, j),
                                             torch.as_tensor(op.weight).to(dtype))
        self._fanout = {p.name: self._fan_out(p) for p in graph}
        self._macs = {p.name: self._ann_macs(p) for p in graph}

    # -- construction helpers -----------------------------------------------------------------

    @staticmethod
    def _theta(pop: Population) -> torch.Tensor:
        th = torch.as_tensor(np.asarray(pop.theta, dtype=np.float64))
        if th.ndim == 1 and len(pop.shape) == 3:
            th = th.reshape(-1, 1, 1)
        return th

    def _buf(self, *parts: Any) -> torch.Tensor:
        return getattr(self, _key(*parts))

    def _consumers(self, name: str) -> list[tuple[Population, int]]:
        return [(p, i) for p in self.graph for i, e in enumerate(p.edges) if e.source == name]

    @torch.enable_grad()  # counts synapses by autograd, also when built under no_grad
    def _fan_out(self, pop: Population) -> torch.Tensor:
        """Synapses leaving each neuron of ``pop`` (one sample), ``pop.shape``."""
        x = torch.zeros((1, *pop.shape), dtype=torch.float64, requires_grad=True)
        total = x.sum() * 0
        for target, i in self._consumers(pop.name):
            if target.kind == "maxpool":
                a = target.attrs
                total = total + F.unfold(x, a["kernel_size"], a.get("dilation", 1),
                                         a["padding"], a["stride"]).sum()
                continue
            y = x
            for op in target.edges[i].ops:
                y = _binary_op(op, y)
            total = total + y.sum()
        (grad,) = torch.autograd.grad(total, x, allow_unused=True)
        return torch.zeros(pop.shape) if grad is None else grad[0].float()

    def _ann_macs(self, pop: Population) -> int:
        macs = 0
        for e in pop.edges:
            shape = (1, *self.graph[e.source].shape)
            with torch.no_grad():
                y = torch.zeros(shape, dtype=torch.float32)
                for op in e.ops:
                    out = _apply(op, y, torch.zeros(op.weight.shape) if op.weight is not None
                                 else None)
                    if op.kind == "conv2d":
                        macs += out.numel() * math.prod(op.weight.shape[1:])
                    elif op.kind == "linear":
                        macs += op.weight.size
                    y = out
        return int(macs)

    # -- simulation ---------------------------------------------------------------------------

    @property
    def dtype(self) -> torch.dtype:
        return next(iter(self.buffers())).dtype

    def _window_start(self, pop: Population, i: int, src_start: int) -> int:
        """Index in ``pop``'s accumulate window where edge ``i``'s first spike lands."""
        s = self.schedule
        e = pop.edges[i]
        hop = s.arrival[(pop.name, i)] - s.generate_start(e.source)
        return src_start + hop + s.delay[(pop.name, i)] - s.offset[pop.name]

    # Subclasses whose synapses and thresholds are trainable parameters (fine-tuning, see
    # spikeconverter.training) set this: forward then keeps the autograd graph in grad mode.
    _differentiable = False

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Logits ``(B, classes)`` of a batch of inputs ``(B, *input_shape)`` (no gradients)."""
        g = self.graph
        x = check_batch(images, "the input", tuple(g[g.input].shape)).to(self.dtype)
        batch = x.shape[0]
        trains: dict[str, _Train] = {}
        remaining = {p.name: len(self._consumers(p.name)) for p in g}
        per_pop: dict[str, dict[str, Any]] = {}
        self.spikes = {}
        self._saturations: dict[str, int] = {}
        logits, steps = None, 0
        with torch.set_grad_enabled(self._differentiable and torch.is_grad_enabled()):
            for pop in g:
                if pop.kind == "input":
                    train = self._input_train(pop, x)
                elif pop.kind == "maxpool":
                    train = self._max_pool(pop, trains[pop.edges[0].source])
                elif pop.kind == "readout":
                    logits, steps = self._readout(pop, trains)
                else:
                    train = self._population(pop, trains)
                for e in pop.edges:  # free trains nobody needs any more
                    remaining[e.source] -= 1
                    if remaining[e.source] == 0:
                        trains.pop(e.source, None)
                if pop.kind == "readout":
                    per_pop[pop.name] = self._pop_stats(pop, None, batch)
                    continue
                trains[pop.name] = train
                if self.record:
                    self.spikes[pop.name] = train.frames()
                per_pop[pop.name] = self._pop_stats(pop, train, batch)
        self._finish_stats(per_pop, batch, steps)
        return logits

    def _max_pool(self, pop: Population, src: _Train) -> _Train:
        a = pop.attrs
        frames = spike_max_pool2d(src.frames(), a["kernel_size"], a["stride"], a["padding"],
                                  a.get("dilation", (1, 1)), a.get("ceil_mode", False))
        return _Train(src.theta, int(pop.T), self.schedule.generate_start(pop.name), k=src.k,
                      frames=frames)

    def _input_train(self, pop: Population, x: torch.Tensor) -> _Train:
        start = self.schedule.generate_start(pop.name)
        theta = self._buf("theta", pop.name)
        if pop.attrs.get("encoding", "analog") == "analog":
            return _Train(theta, 1, start, frames=x.unsqueeze(0))
        # spike-encoded input: signed iLIF neurons take the pixel in one step, then emit T spikes
        p = ILIFParameters(k=float(self.graph.k), v_th=theta, t_acc=1, t_gen=int(pop.T),
                           rounding=self.graph.rounding, signed=True)
        current = torch.cat([x.unsqueeze(0), x.new_zeros((int(pop.T), *x.shape))])
        z, state = ILIF(p)(current)
        self._count_saturated(pop, state.v, theta, True, int(pop.T), residual=True)
        return _Train(theta, int(pop.T), start, k=float(self.graph.k), frames=z[1:])

    def _arrivals(self, pop: Population, trains: dict) -> list[tuple[int, _Train, int]]:
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

    def _ops(self, pop: Population, i: int, x: torch.Tensor) -> torch.Tensor:
        for j, op in enumerate(pop.edges[i].ops):
            x = _apply(op, x, self._buf("w", pop.name, i, j) if op.weight is not None else None)
        return x

    def _membrane(self, pop: Population, trains: dict) -> torch.Tensor:
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
                cur = self._ops(pop, i, train.value(k ** (-at)))
            else:
                f = train.frames()
                n, b = f.shape[:2]
                w = torch.tensor([k ** (t_acc - 1 - (at + j)) for j in range(n)],
                                 dtype=f.dtype, device=f.device)
                scale = self._buf("scale", pop.name, i)
                if scale.ndim == 0:  # the synapses see the bare spikes; weights after
                    cur = self._ops(pop, i, f.reshape(n * b, *f.shape[2:]))
                    cur = torch.tensordot(w * scale, cur.reshape(n, b, *cur.shape[1:]), dims=1)
                else:
                    x = f * (w.reshape(-1, *([1] * (f.ndim - 1))) * scale)
                    cur = self._ops(pop, i, x.reshape(n * b, *f.shape[2:]))
                    cur = cur.reshape(n, b, *cur.shape[1:]).sum(0)
            total = cur if total is None else total + cur
        return total

    def _plugin_window(self, pop: Population, trains: dict, t_gen: int):
        """The population's window run step by step by :class:`spikeconverter.plugin.ILIF`."""
        s = self.schedule
        t_acc, off = s.t_acc[pop.name], s.offset[pop.name]
        current = None
        for i, train, at in self._arrivals(pop, trains):
            f = train.frames()
            n, b = f.shape[:2]
            cur = self._ops(pop, i, (f * self._buf("scale", pop.name, i)).reshape(
                n * b, *f.shape[2:]))
            cur = cur.reshape(n, b, *cur.shape[1:])
            if current is None:
                current = cur.new_zeros((t_acc + t_gen, *cur.shape[1:]))
            current[at:at + n] += cur
        readout = pop.kind == "readout"
        p = ILIFParameters(
            k=float(self.graph.k),
            v_th=torch.ones((), dtype=current.dtype) if readout else self._buf("theta", pop.name),
            t_acc=t_acc, t_gen=max(t_gen, 1), offset=off, bias=self._buf("bias", pop.name),
            rounding="floor" if readout else self.graph.rounding, signed=pop.kind == "signed",
        )
        z, state = ILIF(p)(current, ILIFState(torch.zeros_like(current[0]), torch.tensor(off)))
        return z[t_acc:], state

    def _readout(self, pop: Population, trains: dict) -> tuple[torch.Tensor, int]:
        s = self.schedule
        if self.mode == "plugin":
            _, state = self._plugin_window(pop, trains, 0)
            return state.v, int(state.n)  # the clock of the readout neurons
        v = self._membrane(pop, trains) + self._buf("bias", pop.name)
        return v, s.offset[pop.name] + s.t_acc[pop.name]

    def _population(self, pop: Population, trains: dict) -> _Train:
        s = self.schedule
        t_gen, start = s.t_gen[pop.name], s.generate_start(pop.name)
        theta = self._buf("theta", pop.name)
        signed = pop.kind == "signed"
        if self.mode == "plugin":
            z, state = self._plugin_window(pop, trains, t_gen)
            self._count_saturated(pop, state.v, theta, signed, t_gen, residual=True)
            return _Train(theta, t_gen, start, k=float(self.graph.k), frames=z)
        k = float(self.graph.k)
        v = self._membrane(pop, trains)
        if self.graph.rounding == "nearest":  # half an LSB at the last accumulate step
            half = theta * k ** (1 - t_gen) / 2
            v = v + self._buf("bias", pop.name)
            self._count_saturated(pop, v, theta, signed, t_gen)
            v = v + half * torch.sign(v) if signed else v.add_(half)
        else:
            v = v + self._buf("bias", pop.name)
            self._count_saturated(pop, v, theta, signed, t_gen)
        if self.mode == "fused" and k == 2.0:
            return _Train(theta, t_gen, start, code=_binary_code(v, theta, t_gen, signed))
        return _Train(theta, t_gen, start, k=k, frames=_generate(v, theta, t_gen, k, signed))

    # -- statistics ---------------------------------------------------------------------------

    @torch.no_grad()
    def _count_saturated(self, pop: Population, v: torch.Tensor, theta: torch.Tensor,
                         signed: bool, t_gen: int, residual: bool = False) -> None:
        """Count the neuron-samples whose input lay beyond the calibration range: a membrane
        more than half an LSB above :func:`coding.saturation_level` (``2 theta`` for k = 2,
        the calibration maximum with ``"max"`` thresholds), whose train is clipped to the top
        code with an error beyond the code's resolution (the margin also keeps float rounding
        at the calibration maximum itself from counting).

        ``v`` is the membrane when generation starts, before the rounding offset; or, with
        ``residual``, the membrane after the ``t_gen`` generate steps: above the level the
        excess ``V - level`` grows by ``k`` per step, below it the membrane stays below, so
        the test carries over exactly.
        """
        k = float(self.graph.k)
        excess = (v.abs() if signed else v) - coding.saturation_level(theta, k)
        margin = coding.lsb(theta, t_gen, k) / 2
        if residual:
            offset = coding.rounding_offset(theta, t_gen, k, self.graph.rounding)
            margin = k ** t_gen * (offset + margin)
        self._saturations[pop.name] = int((excess > margin).sum())

    @torch.no_grad()
    def _pop_stats(self, pop: Population, train: _Train | None, batch: int) -> dict[str, Any]:
        s = self.schedule
        st: dict[str, Any] = {
            "kind": pop.kind, "neurons": math.prod(pop.shape), "T": pop.T,
            "t_acc": s.t_acc[pop.name], "offset": s.offset[pop.name],
            "ann_macs": self._macs[pop.name],
        }
        analog = pop.kind == "input" and pop.attrs.get("encoding", "analog") == "analog"
        st["saturations"] = self._saturations.get(pop.name, 0)
        if train is None or analog:
            st.update(spikes=0, firing_rate=0.0, synaptic_ops=0)
            return st
        per_neuron = train.counts(pop.kind in ("signed", "input"))
        spikes = float(per_neuron.sum())
        fan = self._fanout[pop.name].to(per_neuron.dtype).to(per_neuron.device)
        st.update(
            spikes=int(spikes),
            firing_rate=spikes / (batch * st["neurons"] * train.T),
            synaptic_ops=int(float((per_neuron * fan).sum())),
        )
        return st

    def _finish_stats(self, per_pop: dict, batch: int, steps: int) -> None:
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

    def save(self, path) -> None:
        """Write graph, thresholds and schedule to one versioned file (atomically)."""
        from spikeconverter.converters.serialize import save

        save(self, path)


class _Train:
    """A population's spike train over its generate window: as frames ``(T, B, ...)`` or
    bit-packed (``code``: one signed integer per neuron whose binary digits, most significant
    first, are the spikes; k = 2 only)."""

    def __init__(self, theta: torch.Tensor, T: int, start: int, *, k: float = 2.0,
                 frames: torch.Tensor | None = None, code: torch.Tensor | None = None):
        self.theta, self.T, self.start, self.k = theta, T, start, k
        self._frames, self.code = frames, code

    def frames(self) -> torch.Tensor:
        if self._frames is None:
            mag = self.code.abs().to(torch.int64)
            shifts = torch.arange(self.T - 1, -1, -1, device=mag.device).reshape(
                -1, *([1] * mag.ndim))
            bits = ((mag.unsqueeze(0) >> shifts) & 1).to(self.code.dtype)
            self._frames = bits * torch.sign(self.code)
        return self._frames

    def value(self, factor: float = 1.0) -> torch.Tensor:
        """Decoded value times ``factor``: ``factor * theta * sum_j k^-j s_j``."""
        if self.code is not None:
            # one multiply; exact like theta * (code * 2^(1-T)) when factor is a power of two
            return self.code * (self.theta * (factor * 2.0 ** (1 - self.T)))
        w = torch.tensor([factor * self.k ** -j for j in range(self.T)],
                         dtype=self._frames.dtype, device=self._frames.device)
        return self.theta * torch.tensordot(w, self._frames, dims=1)

    def counts(self, signed: bool) -> torch.Tensor:
        """Spikes (of either sign) per neuron over the window, summed over the batch."""
        if self.code is None:
            f = self._frames
            return (f.abs() if signed else f).sum((0, 1), dtype=torch.float64)
        return _popcount(self.code.abs() if signed else self.code).sum(0, dtype=torch.float64)


def _binary_code(v: torch.Tensor, theta: torch.Tensor, T: int, signed: bool) -> torch.Tensor:
    """The generate phase of k = 2 iLIF neurons in closed form: the integer whose T binary
    digits are the spikes ``z_j = [V_j >= theta]``, ``V_{j+1} = 2 (V_j - z_j theta)``.

    Each soft reset subtracts theta from a value in [theta, 2 theta) (exact in floating point,
    Sterbenz) and doubling is exact, so the iteration computes ``floor(V 2^(T-1) / theta)``
    clipped to ``[0, 2^T - 1]`` exactly; ``fmod`` gives that floor without rounding error.
    """
    work = v if T <= 24 or v.dtype == torch.float64 else v.double()
    a = work.abs() if signed else work
    scaled = a * float(2 ** (T - 1))
    th = theta.to(work.dtype)
    # negative values give n <= 0 (fmod keeps the dividend's sign): the clamp makes them 0
    n = torch.round((scaled - torch.fmod(scaled, th)) / th).clamp_(0, 2 ** T - 1)
    if signed:
        n = n * torch.sign(work)
    return n.to(v.dtype) if T <= 24 or v.dtype == torch.float64 else n


def _generate(v: torch.Tensor, theta: torch.Tensor, T: int, k: float,
              signed: bool) -> torch.Tensor:
    """The generate phase step by step, in place: ``z = [V >= theta]``, ``V <- k (V - z theta)``.

    For k = 2 it tracks ``U_j = V_j / 2^j`` instead (exactly the same comparisons, since scaling
    by powers of two is exact) and so saves the multiplication.
    """
    frames = torch.empty((T, *v.shape), dtype=v.dtype, device=v.device)
    u = v.clone()
    scalar = theta.ndim == 0
    for t in range(T):
        th = theta * k ** -t if k == 2.0 else theta
        z = frames[t]
        z.copy_(u >= th)
        if signed:
            z.sub_((u <= -th).to(u.dtype))
        if scalar:
            u.sub_(z, alpha=float(th))
        else:
            u.addcmul_(z, th, value=-1.0)
        if k != 2.0:
            u.mul_(k)
    return frames


_POPCOUNT16 = torch.tensor([bin(i).count("1") for i in range(1 << 16)], dtype=torch.uint8)


def _popcount(x: torch.Tensor) -> torch.Tensor:
    """Set bits of non-negative integer-valued floats (16-bit table lookups)."""
    if x.numel() == 0 or float(x.max()) < 2**16:
        return _POPCOUNT16.to(x.device)[x.to(torch.int32)]
    n = x.to(torch.int64)
    total = torch.zeros(n.shape, dtype=torch.uint8, device=n.device)
    table = _POPCOUNT16.to(n.device)
    while bool((n > 0).any()):
        total += table[n & 0xFFFF]
        n = n >> 16
    return total


def _apply(op: Op, x: torch.Tensor, weight: torch.Tensor | None) -> torch.Tensor:
    """:func:`ir.apply_op` without bias, with a pre-converted weight."""
    a = op.attrs
    if op.kind == "conv2d":
        return F.conv2d(x, weight, None, a.get("stride", 1), a.get("padding", 0),
                        a.get("dilation", 1), a.get("groups", 1))
    if op.kind == "linear":
        return F.linear(x, weight)
    if op.kind == "avgpool2d":
        return F.avg_pool2d(x, a["kernel_size"], a.get("stride"), a.get("padding", 0),
                            a.get("ceil_mode", False), a.get("count_include_pad", True))
    if op.kind == "flatten":
        return x.reshape(x.shape[0], -1)
    if op.kind == "slice":
        return x[(slice(None),) + tuple(slice(*t) for t in a["index"])]
    if op.kind == "pad":
        return F.pad(x, tuple(a["pad"]))
    raise ValueError(f"unknown op kind {op.kind!r}")


def _binary_op(op: Op, x: torch.Tensor) -> torch.Tensor:
    """The op with every synapse weighted 1 (pooling as sums): counts connections."""
    if op.weight is not None:
        return _apply(op, x, torch.as_tensor(op.weight != 0, dtype=x.dtype))
    if op.kind == "avgpool2d":
        k = op.attrs["kernel_size"]
        area = k[0] * k[1] if isinstance(k, (tuple, list)) else k * k
        return _apply(op, x, None) * area
    return _apply(op, x, None)
