"""A stream of samples through a Norse :class:`SpikingNetwork`, step by step on one clock.

The network's modes compute each sample's windows on their own; a stream is what hardware
does: sample ``i`` enters at step ``i * P``, every population runs its
:class:`spikeconverter.plugin.ILIFCell` at every step of one global clock, and the samples
overlap in the pipeline. The schedule is the lock-step one (every population cycles with the
same period ``P``, :func:`~spikeconverter.converters.schedule.compute_schedule` with
``lock_step=True``) with direct delivery (``hop_latency=0``); skip edges wait their schedule
delay in a buffer of past frames. With one membrane bank ``P = 2T``; double-buffered neurons
(``schedule.double_buffered``) accumulate the next sample while generating this one, so
``P = T``. ``N`` samples take ``latency + (N - 1) * P`` steps, counted by the clock.

Max pooling acts in the step its source emits: at window step ``j`` it emits frame ``j`` of
:func:`spikeconverter.plugin.kernels.spike_max_pool2d` of the window's frames so far (causal).
The readout accumulates ``V <- k V + I`` over its window (``V <- I`` at its first step) and adds
its bias at the last; that membrane is the sample's logits.
"""

from __future__ import annotations

from collections import deque
from typing import Any

import torch
from tqdm.auto import tqdm

from spikeconverter import coding
from spikeconverter.converters.ir import NEURON_KINDS, Population
from spikeconverter.converters.schedule import Schedule, compute_schedule
from spikeconverter.plugin import ILIFCell, ILIFParameters
from spikeconverter.plugin.kernels import spike_max_pool2d

__all__ = ["stream", "stream_schedule"]


def stream_schedule(graph: Any, double_buffered: bool) -> Schedule:
    """The lock-step schedule a stream runs with (direct delivery)."""
    return compute_schedule(graph, 0, lock_step=True, double_buffered=double_buffered)


def _phase(n: int, offset: int, period: int) -> tuple[int, int]:
    """(window, step in the window) of global step ``n``; window -1 before ``offset``."""
    rel = n - offset
    return (-1, -1) if rel < 0 else divmod(rel, period)


class _Stream:
    """State of one streamed run: cells, past frames, readout membrane."""

    def __init__(self, net: Any, images: torch.Tensor, schedule: Schedule):
        self.net, self.g, self.s = net, net.graph, schedule
        self.x = images.to(device=net.device, dtype=net.dtype)
        self.period = schedule.steps_per_sample
        self.k = float(self.g.k)
        depth = max([0, *schedule.delay.values()]) + 1
        self.past: dict[str, deque] = {p.name: deque(maxlen=depth) for p in self.g}
        self.cells: dict[str, tuple[ILIFCell, Any]] = {}
        self.pool_frames: dict[str, list[torch.Tensor]] = {}
        self.v: torch.Tensor | None = None
        self.logits: list[torch.Tensor] = []
        inp = self.g[self.g.input]
        self.encoded = None
        if inp.attrs.get("encoding", "analog") != "analog":
            theta = net.theta(inp.name)
            self.encoded = coding.encode(self.x, theta, int(inp.T), self.k, self.g.rounding,
                                         signed=True)
        for pop in self.g:
            if pop.kind in NEURON_KINDS:
                p = ILIFParameters(
                    k=self.k, v_th=net.theta(pop.name), t_acc=schedule.t_acc[pop.name],
                    t_gen=schedule.t_gen[pop.name], offset=schedule.offset[pop.name],
                    bias=net.population_bias(pop.name), rounding=self.g.rounding,
                    signed=pop.kind == "signed", double_buffered=schedule.double_buffered)
                self.cells[pop.name] = (ILIFCell(p), None)

    def frame(self, name: str, delay: int) -> torch.Tensor:
        """Output of population ``name`` ``delay`` steps ago (zeros before the first step)."""
        past = self.past[name]
        return past[-1 - delay] if delay < len(past) else torch.zeros_like(past[-1])

    def current(self, pop: Population) -> torch.Tensor:
        """Input current of ``pop`` at this step (synapse scale of the lock-step ``t_acc``)."""
        total = None
        for i, e in enumerate(pop.edges):
            scale = coding.synapse_scale(self.net.theta(e.source), self.s.t_acc[pop.name], self.k)
            cur = self.net.apply_edge(pop, i, self.frame(e.source, self.s.delay[(pop.name, i)])
                                      * scale)
            total = cur if total is None else total + cur
        return total

    def input_frame(self, n: int) -> torch.Tensor:
        w, tau = _phase(n, 0, self.period)
        inp = self.g[self.g.input]
        out = self.x.new_zeros((1, *inp.shape))
        if w < self.x.shape[0] and tau < self.s.t_gen[inp.name]:
            out[0] = self.x[w] if self.encoded is None else self.encoded[tau, w]
        return out

    def step(self, n: int) -> None:
        for pop in self.g:
            name = pop.name
            if pop.kind == "input":
                out = self.input_frame(n)
            elif pop.kind == "maxpool":
                out = self.max_pool(pop, n)
            elif pop.kind == "readout":
                self.readout(pop, n)
                continue
            else:
                cell, state = self.cells[name]
                w, tau = _phase(n, self.s.offset[name], self.period)
                cur = (self.current(pop) if 0 <= tau < self.s.t_acc[name]
                       else self.x.new_zeros((1, *pop.shape)))
                out, state = cell(cur, state)
                self.cells[name] = (cell, state)
            self.past[name].append(out)

    def max_pool(self, pop: Population, n: int) -> torch.Tensor:
        _, tau = _phase(n, self.s.offset[pop.name], self.period)
        src = self.frame(pop.edges[0].source, self.s.delay[(pop.name, 0)])
        if tau == 0:
            self.pool_frames[pop.name] = []
        if not 0 <= tau < self.s.t_gen[pop.name]:
            return self.x.new_zeros((1, *pop.shape))
        frames = self.pool_frames[pop.name]
        frames.append(src)
        a = pop.attrs
        out = spike_max_pool2d(torch.stack(frames), a["kernel_size"], a["stride"], a["padding"],
                               a.get("dilation", (1, 1)), a.get("ceil_mode", False))
        return out[-1]

    def readout(self, pop: Population, n: int) -> None:
        w, tau = _phase(n, self.s.offset[pop.name], self.period)
        t_acc = self.s.t_acc[pop.name]
        if not 0 <= tau < t_acc or w >= self.x.shape[0]:
            return
        cur = self.current(pop)
        self.v = cur if tau == 0 else self.k * self.v + cur
        if tau == t_acc - 1:
            self.logits.append((self.v + self.net.population_bias(pop.name))[0])


@torch.no_grad()
def stream(net: Any, images: torch.Tensor, *, progress: bool = False
           ) -> tuple[torch.Tensor, dict[str, Any]]:
    """Stream ``images`` ``(N, *input_shape)`` through ``net`` one after another (module
    docstring).

    Parameters
    ----------
    net : SpikingNetwork
        The Norse network (its graph, thresholds, biases, weights and
        ``schedule.double_buffered``).
    images : torch.Tensor
        The samples, in the order they enter (the network's input shape checked by the
        caller).
    progress : bool
        A tqdm bar over the steps.

    Returns
    -------
    (torch.Tensor, dict)
        Logits ``(N, classes)`` and ``latency_steps``, ``steps_per_sample`` (the period
        ``P``), ``steps_simulated`` (counted), ``samples``, ``double_buffered``.
    """
    schedule = stream_schedule(net.graph, net.schedule.double_buffered)
    n = images.shape[0]
    run = _Stream(net, images, schedule)
    expected = schedule.steps_for(n)
    steps = 0
    with tqdm(total=expected, desc="stream steps", disable=not progress) as bar:
        while len(run.logits) < n:  # until the readout has the last sample's logits
            if steps > 2 * expected:
                raise RuntimeError(f"stream: {len(run.logits)} of {n} logits after {steps} "
                                   "steps (schedule error)")
            run.step(steps)
            steps += 1
            bar.update()
    stats = {"latency_steps": schedule.latency_steps,
             "steps_per_sample": schedule.steps_per_sample, "steps_simulated": steps,
             "samples": n, "double_buffered": schedule.double_buffered}
    return torch.stack(run.logits), stats
