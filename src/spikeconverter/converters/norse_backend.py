"""Norse backend: a calibrated graph + schedule as a time-stepped iLIF simulation.

Every population runs over its own window on the global clock of the schedule (its neurons' step
counter starts at the schedule's offset), in topological order. Each population's complete spike
train -- every spike of every neuron -- is produced and passed on:

* ``mode="frame"``: a source's ``T`` spike frames go through each edge's synapses as one batched
  op (``T * B`` samples), land in the target's accumulate window at the step the schedule says,
  and the target's :class:`spikeconverter.plugin.ILIF` neurons run step by step over their whole
  window (accumulate, bias, generate).
* ``mode="fused"``: the accumulate phase is linear, so ``sum_t k^(t_acc-1-t) W s_t`` is formed as
  ``W (sum_t k^(t_acc-1-t) s_t)``: one synapse op per edge and window. The generate phase then
  runs the iLIF dynamics (``z = [V >= v_th]``, ``V <- k (V - z v_th)``) step by step, in place.
  The result is the frame mode's, spike for spike (tested).

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

from spikeconverter.converters.ir import Graph, Op, Population
from spikeconverter.converters.schedule import Schedule, compute_schedule
from spikeconverter.plugin import ILIF, ILIFParameters, ILIFState

__all__ = ["MODES", "SpikingNetwork", "spike_max_pool2d"]

MODES = ("fused", "frame")


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
    mode : {"fused", "frame"}
        Simulation of the accumulate phase (see the module docstring); both produce every spike.
    dtype : torch.dtype
        Precision of the simulation (float32; float64 for exactness checks).

    Attributes
    ----------
    graph, schedule : Graph, Schedule
    stats : dict or None
        Filled by every call: per population ``spikes`` (whole batch), ``firing_rate`` (spikes per
        neuron per generate step), ``synaptic_ops`` (paper Eq. 14: each spike times its neuron's
        fan-out, whole batch), ``ann_macs`` (per sample, of the layer's incoming synapses),
        ``T``, ``t_acc``, ``offset``; and totals ``synaptic_ops_per_sample``,
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
        graph.validate()
        for pop in graph:
            if pop.kind != "readout" and (pop.theta is None or pop.T is None):
                raise ValueError(f"population {pop.name!r} is not calibrated (theta/T missing); "
                                 "run calibrate() first")
        self.graph = graph
        self.schedule = schedule if schedule is not None else compute_schedule(graph, 0)
        self.mode = mode
        self.record = False
        self.spikes: dict[str, torch.Tensor] = {}
        self.stats: dict[str, Any] | None = None
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

    def _edge_current(self, pop: Population, i: int, frames: torch.Tensor,
                      weights: torch.Tensor | None) -> torch.Tensor:
        """Synaptic current of edge ``i`` for source frames ``(T, B, ...)`` -> ``(T', B, ...)``.

        ``weights`` (per frame) turns the frames into one weighted sum first (fused mode).
        """
        e = pop.edges[i]
        scale = self._buf("scale", pop.name, i)
        if weights is not None:
            x = torch.tensordot(weights, frames, dims=1).unsqueeze(0)
        else:
            x = frames
        t, b = x.shape[:2]
        x = (x * scale).reshape(t * b, *x.shape[2:])
        for j, op in enumerate(e.ops):
            x = _apply(op, x, self._buf("w", pop.name, i, j) if op.weight is not None else None)
        return x.reshape(t, b, *x.shape[1:])

    def _window_start(self, pop: Population, i: int, src_start: int) -> int:
        """Index in ``pop``'s accumulate window where edge ``i``'s first spike lands."""
        s = self.schedule
        e = pop.edges[i]
        hop = s.arrival[(pop.name, i)] - s.generate_start(e.source)
        return src_start + hop + s.delay[(pop.name, i)] - s.offset[pop.name]

    def _params(self, pop: Population, t_acc: int, t_gen: int) -> ILIFParameters:
        return ILIFParameters(
            k=float(self.graph.k), v_th=self._buf("theta", pop.name), t_acc=t_acc, t_gen=t_gen,
            offset=self.schedule.offset[pop.name], bias=self._buf("bias", pop.name),
            rounding=self.graph.rounding, signed=pop.kind == "signed",
        )

    # Subclasses whose synapses and thresholds are trainable parameters (fine-tuning, see
    # spikeconverter.training) set this: forward then keeps the autograd graph in grad mode.
    _differentiable = False

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Logits ``(B, classes)`` of a batch of inputs ``(B, *input_shape)`` (no gradients)."""
        g, s = self.graph, self.schedule
        in_shape = tuple(g[g.input].shape)
        if not isinstance(images, torch.Tensor) or tuple(images.shape[1:]) != in_shape:
            got = tuple(images.shape) if isinstance(images, torch.Tensor) else type(images)
            raise ValueError(f"input must be a tensor (B, {', '.join(map(str, in_shape))}), "
                             f"got {got}")
        dtype = self.dtype
        x = images.to(dtype)
        batch = x.shape[0]
        trains: dict[str, tuple[torch.Tensor, int]] = {}  # frames, global step of frame 0
        remaining = {p.name: len(self._consumers(p.name)) for p in g}
        per_pop: dict[str, dict[str, Any]] = {}
        self.spikes = {}
        logits, steps = None, 0
        with torch.set_grad_enabled(self._differentiable and torch.is_grad_enabled()):
            for pop in g:
                if pop.kind == "input":
                    frames = self._input_frames(pop, x)
                elif pop.kind == "maxpool":
                    frames = self._max_pool(pop, trains[pop.edges[0].source][0])
                else:
                    current = self._accumulate(pop, trains, batch)
                    if pop.kind == "readout":
                        logits, steps = self._readout(pop, current)
                    else:
                        frames = self._generate(pop, current)
                for e in pop.edges:  # free trains nobody needs any more
                    remaining[e.source] -= 1
                    if remaining[e.source] == 0 and not self.record:
                        trains.pop(e.source, None)
                if pop.kind == "readout":
                    per_pop[pop.name] = self._pop_stats(pop, None, batch)
                    continue
                start = s.generate_start(pop.name)
                trains[pop.name] = (frames, start)
                if self.record:
                    self.spikes[pop.name] = frames
                per_pop[pop.name] = self._pop_stats(pop, frames.detach(), batch)
        self._finish_stats(per_pop, batch, steps)
        return logits

    def _input_frames(self, pop: Population, x: torch.Tensor) -> torch.Tensor:
        if pop.attrs.get("encoding", "analog") == "analog":
            return x.unsqueeze(0)
        # spike-encoded input: signed iLIF neurons take the pixel in one step, then emit T spikes
        p = ILIFParameters(k=float(self.graph.k), v_th=self._buf("theta", pop.name), t_acc=1,
                           t_gen=int(pop.T), rounding=self.graph.rounding, signed=True)
        current = torch.cat([x.unsqueeze(0), x.new_zeros((int(pop.T), *x.shape))])
        z, _ = ILIF(p)(current)
        return z[1:]

    def _max_pool(self, pop: Population, frames: torch.Tensor) -> torch.Tensor:
        a = pop.attrs
        return spike_max_pool2d(frames, a["kernel_size"], a["stride"], a["padding"],
                                a.get("dilation", (1, 1)), a.get("ceil_mode", False))

    def _accumulate(self, pop: Population, trains: dict, batch: int) -> torch.Tensor:
        """Input current over the accumulate window ``(t_acc, B, ...)``, or (fused) the
        accumulated membrane before bias ``(B, ...)``."""
        t_acc = self.schedule.t_acc[pop.name]
        k = float(self.graph.k)
        total = None
        for i, e in enumerate(pop.edges):
            frames, src_start = trains[e.source]
            n = frames.shape[0]
            at = self._window_start(pop, i, src_start)
            if at < 0 or at + n > t_acc:
                raise RuntimeError(
                    f"schedule error: the train of {e.source!r} reaches {pop.name!r} at window "
                    f"step {at}..{at + n - 1}, outside its accumulate window of {t_acc} steps"
                )
            if self.mode == "fused":
                w = torch.tensor([k ** (t_acc - 1 - (at + j)) for j in range(n)],
                                 dtype=frames.dtype, device=frames.device)
                cur = self._edge_current(pop, i, frames, w)[0]
                total = cur if total is None else total + cur
            else:
                cur = self._edge_current(pop, i, frames, None)
                if total is None:
                    total = cur.new_zeros((t_acc, *cur.shape[1:]))
                total[at:at + n] += cur
        return total

    def _readout(self, pop: Population, current: torch.Tensor) -> tuple[torch.Tensor, int]:
        s = self.schedule
        t_acc, off = s.t_acc[pop.name], s.offset[pop.name]
        if self.mode == "fused":
            return current + self._buf("bias", pop.name), off + t_acc
        # an accumulate-only population: one window's accumulate phase of iLIF neurons
        p = ILIFParameters(k=float(self.graph.k), v_th=torch.ones((), dtype=current.dtype),
                           t_acc=t_acc, t_gen=1, offset=off, bias=self._buf("bias", pop.name))
        state = ILIFState(torch.zeros_like(current[0]), torch.tensor(off))
        _, state = ILIF(p)(current, state)
        return state.v, int(state.n)

    def _generate(self, pop: Population, current: torch.Tensor) -> torch.Tensor:
        s = self.schedule
        t_acc, t_gen, off = s.t_acc[pop.name], s.t_gen[pop.name], s.offset[pop.name]
        p = self._params(pop, t_acc, t_gen)
        if self.mode == "frame":
            drive = torch.cat([current, current.new_zeros((t_gen, *current.shape[1:]))])
            z, state = ILIF(p)(drive, ILIFState(torch.zeros_like(current[0]), torch.tensor(off)))
            return z[t_acc:]
        return _generate_fused(current, p)

    # -- statistics ---------------------------------------------------------------------------

    def _pop_stats(self, pop: Population, frames: torch.Tensor | None,
                   batch: int) -> dict[str, Any]:
        s = self.schedule
        st: dict[str, Any] = {
            "kind": pop.kind, "neurons": math.prod(pop.shape), "T": pop.T,
            "t_acc": s.t_acc[pop.name], "offset": s.offset[pop.name],
            "ann_macs": self._macs[pop.name],
        }
        analog = pop.kind == "input" and pop.attrs.get("encoding", "analog") == "analog"
        if frames is None or analog:
            st.update(spikes=0, firing_rate=0.0, synaptic_ops=0)
            return st
        per_neuron = (frames.abs() if pop.kind == "signed" or pop.kind == "input"
                      else frames).sum(0)
        spikes = float(per_neuron.sum())
        fan = self._fanout[pop.name].to(per_neuron.dtype).to(per_neuron.device)
        st.update(
            spikes=int(spikes),
            firing_rate=spikes / (batch * st["neurons"] * frames.shape[0]),
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


def _generate_fused(v: torch.Tensor, p: ILIFParameters) -> torch.Tensor:
    """The iLIF window from its accumulated membrane ``v`` (bias not yet added): bias and
    rounding at the last accumulate step, then ``t_gen`` generate steps, in place."""
    v = v + p.bias
    th = p.v_th
    if p.rounding == "nearest":
        half = th * float(p.k) ** (1 - p.t_gen) / 2
        v = v + (half * torch.sign(v) if p.signed else half)
    frames = torch.empty((p.t_gen, *v.shape), dtype=v.dtype, device=v.device)
    scalar = th.ndim == 0
    th_value = float(th) if scalar else None
    k = float(p.k)
    for t in range(p.t_gen):
        z = frames[t]
        z.copy_(v >= th)
        if p.signed:
            z.sub_((v <= -th).to(v.dtype))
        if scalar:
            v.sub_(z, alpha=th_value)
        else:
            v.addcmul_(z, th, value=-1.0)
        v.mul_(k)
    return frames


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
