"""Batched Lava simulation: ``B`` samples side by side in one runtime.

The unbatched graph (:mod:`spikeconverter.converters.to_lava.build`) is made of Lava's own
``Dense``/``Sparse``/``Conv`` synapses, one neuron per model neuron: what a Loihi mapping looks
like, and the reference.
Lava's CPU runtime costs a command/handshake round per Process per step whatever the Process
computes, which dominates a converted network's step time. Here every Process carries a leading
batch axis instead (:class:`~spikeconverter.processes.BatchConv`,
:class:`~spikeconverter.processes.BatchDense`, :class:`~spikeconverter.processes.BatchILIF`,
:class:`~spikeconverter.processes.BatchMaxPool`, Readout and Delay with shape ``(B, ...)``), so
the per-step cost is paid once for ``B`` samples. Each model computes a sample exactly as it
would alone (elementwise neurons; one product per sample or order-independent integer sums), so
logits are bit-identical per sample for every batch size, in float and in fixed point; the
fixed-point ones also equal the unbatched graph of Lava's own synapses.

What a step costs, per sample, is kept small without leaving exact arithmetic: spikes cross the
channels as ``int8``; models read a channel without Lava's zeros-plus-add pass
(:func:`spikeconverter.processes.loihi.receive`); the fixed-point membrane is int32 wherever
that is exact; Conv gathers its patches into a preallocated im2col matrix for one product per
sample (float) or per batch (integers, exact in any order); sparse edges with at most one
synapse per output (identity and option-A shortcuts) are a gather; silent inputs skip the
product. And where the arithmetic allows it (:mod:`spikeconverter.converters.to_lava.windowed`)
a population accumulates once per window: its synapses keep each input's spike code and apply
their weights once, at the window's end, instead of once per step (a delay in front of such a
synapse is folded into it: no Delay Process), and a fixed-point population sends its train as
the bits of one integer code (one message per window when every receiver is such a synapse of
its generate phase). ``run`` uses these windowed
models (``stats["accumulate"]`` lists the choice per population) and repeats a run step by step
in the (never yet seen) case where a fixed-point neuron cannot prove it equals the per-step
one; :meth:`~spikeconverter.converters.to_lava.network.LavaNetwork.processes` builds the
per-step graph, whose membranes evolve step by step.

Samples stream through the pipeline in windows: window ``w`` carries samples
``w*B .. w*B + B - 1`` (the last one padded with zeros), entering at step ``w * period``. The
host feeds windows through a :class:`~spikeconverter.processes.BatchFeed` and reads the logits
of each window from a :class:`~spikeconverter.processes.WindowCollector`, a few windows at a
time: memory does not grow with the number of samples.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from lava.magma.core.run_conditions import RunSteps

from spikeconverter import coding
from spikeconverter.converters.schedule import Schedule
from spikeconverter.converters.to_lava.build import ProcessGraph
from spikeconverter.converters.to_lava.layout import to_lava
from spikeconverter.converters.to_lava.plan import LavaPlan, synapse_shift
from spikeconverter.converters.to_lava.runtime import import_lava_runtime
from spikeconverter.converters.to_lava.windowed import WindowPlan, groups_fit, window_plan

__all__ = ["BatchedGraph", "DEFAULT_BATCH", "build_batched", "iter_batched", "prepared_batched",
           "window_frames"]

#: Default samples per batch: makes the per-step runtime cost small per sample. On ResNet-20
#: T=8 fixed point (``benchmarks/profile_lava.py``, CPU of all workers per image while the
#: pipeline is full) 128 took 10.6 ms per image against 10.3 at 256 and more at 64 (Lava's
#: per-step loop is shared by fewer images), with a peak memory (PSS of the parent and all
#: workers) of 5.2 GB against 8.4 GB at 256; see docs/lava-batched.md.
DEFAULT_BATCH = 128
#: Default windows per ``RunSteps`` call (and per pipe fill): bounds the input buffer.
DEFAULT_CHUNK_WINDOWS = 8
#: Payload bits of graded spikes (analog input, signed trains): Loihi 2's 24-bit messages.
GRADED_BITS = 24
#: Messages each Lava channel of a batched run holds (Lava's default is 64). Every channel
#: carries at most one message per step, read in the same step, so a few slots keep the
#: pipeline moving; each slot is one message of shared memory (``B`` samples: megabytes),
#: touched once the ring has come round to it, so 64 slots made memory grow with the run.
CHANNEL_SLOTS = 4


@dataclass
class BatchedGraph:
    """The Processes of a batched run.

    Attributes
    ----------
    source : BatchFeed
        Sends the input windows.
    sink : WindowCollector
        Hands the readout's logits of every window to the host.
    neurons : dict of str to Process
        Population name -> ``BatchILIF`` / ``BatchMaxPool`` / ``Readout`` (shape ``(B, ...)``).
    synapses : list of Process
        ``BatchConv`` / ``BatchDense``, one per edge of the graph.
    delays : list of Delay
    batch : int
    modes : WindowPlan or None
        The windowed/per-step choice (None: every population per step).
    """

    source: Any
    sink: Any
    batch: int
    neurons: dict[str, Any] = field(default_factory=dict)
    synapses: list[Any] = field(default_factory=list)
    delays: list[Any] = field(default_factory=list)
    modes: WindowPlan | None = None

    def modes_names(self) -> list[str]:
        """The populations that accumulate (iLIF and readout)."""
        from spikeconverter.processes import BatchMaxPool

        return [n for n, p in self.neurons.items() if not isinstance(p, BatchMaxPool)]

    def windowed_fixed(self) -> list[Any]:
        """The fixed-point populations that accumulate per window (they count ``unverified``)."""
        from spikeconverter.processes import BatchILIF

        if self.modes is None:
            return []
        return [p for name, p in self.neurons.items()
                if isinstance(p, BatchILIF) and self.modes.windowed(name)]


def window_frames(plan: LavaPlan, images: np.ndarray, batch: int) -> np.ndarray:
    """The input frames ``(frames, batch, *lava_shape)`` of one window of ``images``
    ``(b <= batch, *shape)`` (missing samples are zeros)."""
    torch_shape = tuple(images.shape[1:])
    x = np.zeros((batch, *torch_shape), dtype=np.float64)
    x[: len(images)] = images
    if plan.input_encoding == "analog":
        frames = to_lava(x, torch_shape)[None]
        if plan.select_tag == "fixed_pt":
            frames = np.rint(frames * 2.0 ** plan.input_shift)
        return frames
    theta = np.broadcast_to(np.asarray(plan.input_theta, dtype=np.float64), torch_shape)
    frames = coding.encode(x, theta, plan.input_T, plan.k, plan.rounding, signed=True)
    return to_lava(np.asarray(frames), torch_shape)


def _frames_count(plan: LavaPlan) -> int:
    return 1 if plan.input_encoding == "analog" else int(plan.input_T)


def build_batched(plan: LavaPlan, schedule: Schedule, batch: int, windows: int,
                  prefill: np.ndarray, buffer: int,
                  modes: WindowPlan | None = None) -> BatchedGraph:
    """Create and connect the batched Processes of ``plan`` for ``windows`` windows;
    ``modes`` (:func:`~spikeconverter.converters.to_lava.windowed.window_plan`) makes the
    populations it chooses windowed, None keeps every population per step."""
    import_lava_runtime()
    from spikeconverter.processes import BatchFeed, Delay, WindowCollector

    in_shape = plan.populations[plan.input].shape
    feed = BatchFeed(shape=in_shape, batch=batch, frames=_frames_count(plan), period=plan.period,
                     delay=plan.input_delay, windows=windows, prefill=prefill, buffer=buffer,
                     name="input")
    out = plan.output
    sink = WindowCollector(shape=(batch, *plan.populations[out].shape), period=plan.period,
                           offset=schedule.offset[out] + schedule.t_acc[out] - 1,
                           windows=windows, buffer=buffer, name="logits")
    g = BatchedGraph(source=feed, sink=sink, batch=batch, modes=modes)
    outs: dict[str, Any] = {plan.input: feed.s_out}
    ins: dict[str, Any] = {}
    for spec in plan.populations.values():
        if spec.kind == "input":
            continue
        p = _population(plan, spec, batch, modes)
        if spec.kind == "maxpool":
            outs[spec.pool["source"]].connect(p.s_in)
            outs[spec.name] = p.s_out
        elif spec.kind == "readout":
            ins[spec.name] = p.a_in
            p.v_out.connect(sink.a_in)
        else:
            ins[spec.name], outs[spec.name] = p.a_in, p.s_out
        g.neurons[spec.name] = p
    lows = {(s.target, s.edge): s for s in plan.synapses if s.part == 1}
    merged = set()
    for syn in plan.synapses:
        key = (syn.target, syn.edge)
        if syn.part == 1 and key in merged:
            continue  # summed inside its edge's first group
        port = outs[syn.source]
        window = None if modes is None else modes.windows.get(key)
        low = lows.get(key) if syn.part == 0 else None
        if low is not None and groups_fit(plan, syn, low, window):
            merged.add(key)
        else:
            low = None
        folded = window is not None and window.get("lead", 0) == syn.delay  # in the synapse
        if syn.delay > 0 and not folded:
            d = Delay(shape=(batch, *syn.in_shape), delay=syn.delay,
                      name=f"delay_{syn.target}_{syn.edge}")
            port.connect(d.a_in)
            port = d.s_out
            g.delays.append(d)
        proc = _synapse(syn, batch, window, synapse_shift(plan, syn), low,
                        None if low is None else synapse_shift(plan, low))
        port.connect(proc.s_in)
        proc.a_out.connect(ins[syn.target])
        g.synapses.append(proc)
    return g


def _population(plan: LavaPlan, spec, batch: int, modes: WindowPlan | None):
    from spikeconverter.processes import BatchILIF, BatchMaxPool, Readout
    from spikeconverter.processes.loihi import SHIFT

    shape = (batch, *spec.shape)
    if spec.kind == "maxpool":
        src = plan.populations[spec.pool["source"]]
        return BatchMaxPool(shape=src.shape, batch=batch, t_gen=spec.t_gen, period=plan.period,
                            offset=spec.offset, kernel_size=spec.pool["kernel_size"],
                            stride=spec.pool["stride"], padding=spec.pool["padding"],
                            name=spec.name)
    if spec.kind == "readout":
        return Readout(shape=shape, k=plan.k, t_acc=spec.t_acc, period=plan.period,
                       offset=spec.offset, bias_mant=spec.bias, bias_exp=spec.bias_exp,
                       bias_shift=spec.bias_shift, a_in_shift=SHIFT + spec.a_in_exp,
                       name=spec.name)
    fast = {}
    if modes is not None:
        name = spec.name
        fast = {"window_input": modes.windowed(name), "input_bound": modes.bound.get(name, 0),
                "prefix_gain": modes.prefix.get(name, 1),
                "code_output": modes.code_output.get(name, False),
                "code_send": modes.code_send.get(name, False)}
    return BatchILIF(shape=shape, vth=spec.vth, k=plan.k, t_acc=spec.t_acc, t_gen=spec.t_gen,
                     offset=spec.offset, bias_mant=spec.bias, bias_exp=spec.bias_exp,
                     bias_shift=spec.bias_shift, a_in_shift=SHIFT + spec.a_in_exp,
                     rounding=plan.rounding, signed=spec.signed,
                     double_buffered=plan.double_buffered, name=spec.name, **fast)


def _synapse(syn, batch: int, window: dict | None, weight_exp: int, low=None,
             low_exp: int | None = None):
    """The batched synapse of ``syn``; ``weight_exp``: the shift its model applies
    (:func:`~spikeconverter.converters.to_lava.plan.synapse_shift`); ``low``: the edge's
    second (low-order) group summed in the same Process, with its shift ``low_exp``."""
    from spikeconverter.processes import BatchConv, BatchDense

    bits = GRADED_BITS if syn.graded else 0
    name = f"syn_{syn.target}_{syn.edge}" + (f"_{syn.part}" if syn.part else "")
    groups = {} if low is None else {"low_weight_exp": low_exp}
    if syn.kind == "conv":
        c = syn.conv
        if low is not None:
            groups["low_weight"] = low.weight
        proc = BatchConv(weight=syn.weight, input_shape=c["input_shape"], batch=batch,
                         padding=c["padding"], stride=c["stride"], dilation=c["dilation"],
                         groups=c["groups"], weight_exp=weight_exp, num_message_bits=bits,
                         window=window, name=name, **groups)
        if tuple(proc.output_shape) != tuple(syn.out_shape):
            raise RuntimeError(f"BatchConv for {syn.target!r} gives shape {proc.output_shape}, "
                               f"the graph expects {syn.out_shape}")
        return proc
    if low is not None:
        groups["low_weights"] = low.weight
    return BatchDense(weights=syn.weight, batch=batch, in_shape=syn.in_shape,
                      out_shape=syn.out_shape, weight_exp=weight_exp, num_message_bits=bits,
                      window=window, name=name, **groups)


def _as_numpy(images: Any, start: int, stop: int) -> np.ndarray:
    part = images[start:stop]
    if isinstance(part, torch.Tensor):
        return part.detach().cpu().double().numpy()
    return np.asarray(part, dtype=np.float64)


class _Unverified(Exception):
    """A windowed fixed-point neuron could not prove it equals the per-step one."""


def iter_batched(plan: LavaPlan, schedule: Schedule, images: Any, batch: int,
                 chunk_windows: int = DEFAULT_CHUNK_WINDOWS,
                 stats: dict[str, Any] | None = None,
                 windowed: bool = True) -> Iterator[tuple[int, np.ndarray]]:
    """Run ``images`` ``(N, *shape)`` (numpy or torch; converted a window at a time) in
    batches of ``batch`` side by side; yield ``(first_index, logits)`` per window as it comes.

    The runtime is started and stopped through :func:`spikeconverter.processes.run.lava_runtime`
    (always stopped, also when the consumer stops early). ``windowed`` (default) uses the
    windowed models where :func:`~spikeconverter.converters.to_lava.windowed.window_plan`
    allows them; fixed-point windowed neurons are checked after every chunk and, should one
    count an ``unverified`` window, the whole run is repeated step by step (the windows
    already yielded are not yielded again; statistics are those of the per-step run).

    ``stats``, when given, receives ``steps_simulated``, ``batch_size``, the timing of the
    first ``RunSteps`` call (which compiles and starts the runtime: ``first_chunk_steps``,
    ``first_chunk_seconds``) and of the later ones (``stepping_steps``, ``stepping_seconds``:
    the step time of a running runtime), ``accumulate`` (population -> ``"window"`` or
    ``"step: reason"``), ``window_fallback`` (True when the run was repeated step by step)
    and, in fixed point, ``saturations`` (per population, data-losing clamps of the 24-bit
    membranes) once the run is complete.
    """
    modes = window_plan(plan, schedule) if windowed else None
    yielded = 0
    try:
        for first, logits in _stream(plan, schedule, images, batch, chunk_windows, stats,
                                     modes, 0):
            yielded += 1
            yield first, logits
        if stats is not None:
            stats["window_fallback"] = False
    except _Unverified:
        yield from _stream(plan, schedule, images, batch, chunk_windows, stats, None, yielded)
        if stats is not None:
            stats["window_fallback"] = True


def _stream(plan: LavaPlan, schedule: Schedule, images: Any, batch: int, chunk_windows: int,
            stats: dict[str, Any] | None, modes: WindowPlan | None,
            skip: int) -> Iterator[tuple[int, np.ndarray]]:
    """:func:`iter_batched` with the given ``modes``, not yielding the first ``skip`` windows;
    raises ``_Unverified`` (the runtime stopped) when a windowed neuron counts one."""
    n = len(images)
    windows = math.ceil(n / batch)
    steps = schedule.steps_for(windows)
    period = plan.period
    chunk = chunk_windows * period
    fixed = plan.select_tag == "fixed_pt"

    def frames(w: int) -> np.ndarray:
        return window_frames(plan, _as_numpy(images, w * batch, (w + 1) * batch), batch)

    def needed(upto: int) -> int:  # windows whose first input step is before step `upto`
        return min(windows, max(0, math.ceil((upto - plan.input_delay) / period)))

    first = min(chunk, steps)
    sent = needed(first)
    prefill = np.stack([frames(w) for w in range(sent)]) if sent else None
    g = build_batched(plan, schedule, batch, windows, prefill, buffer=chunk_windows + 2,
                      modes=modes)
    checked = g.windowed_fixed() if fixed else []
    from spikeconverter.processes.run import check_fixed_point, lava_runtime, run_config

    read_at = [g.sink.proc_params["offset"] + w * period for w in range(windows)]
    received = 0
    started = time.perf_counter()
    if fixed:
        check_fixed_point(g.sink)  # a model raising inside Lava would hang the run
    # the project's one signal policy: SIGINT/SIGTERM are held inside Lava calls and raised
    # between chunks (signals.check), the runtime and its workers always stopped
    with lava_runtime(g.sink, run_config(plan.select_tag),
                      {"pypy_channel_size": CHANNEL_SLOTS}) as signals:
        g.sink.run(condition=RunSteps(num_steps=first))
        done, stepping = first, 0.0
        first_seconds = time.perf_counter() - started
        while True:
            if any(int(np.asarray(p.unverified.get()).sum()) for p in checked):
                raise _Unverified
            while received < windows and read_at[received] < done:
                logits = _logits(g.sink.receive(), plan, n - received * batch)
                if received >= skip:
                    yield received * batch, logits
                received += 1
                signals.check()
            if done >= steps:
                break
            now = min(chunk, steps - done)
            for w in range(sent, needed(done + now)):
                g.source.send(frames(w))
            sent = needed(done + now)
            tic = time.perf_counter()
            g.sink.run(condition=RunSteps(num_steps=now))
            stepping += time.perf_counter() - tic
            done += now
            signals.check()
        if stats is not None:
            stats.update(steps_simulated=done, batch_size=batch, first_chunk_steps=first,
                         first_chunk_seconds=first_seconds, stepping_steps=done - first,
                         stepping_seconds=stepping,
                         accumulate=(modes.report() if modes is not None else
                                     {name: "step" for name in g.modes_names()}))
            if fixed:
                stats["saturations"] = _saturations(g)


def _logits(v: np.ndarray, plan: LavaPlan, left: int) -> np.ndarray:
    v = np.asarray(v, dtype=np.float64).reshape(v.shape[0], -1)[:left]
    return v / plan.output_gain


def _saturations(g: BatchedGraph) -> dict[str, int]:
    from spikeconverter.processes import BatchILIF, Readout

    out = {}
    for name, p in g.neurons.items():
        if isinstance(p, BatchILIF):
            out[name] = int(np.asarray(p.saturation_count.get()).sum())
        elif isinstance(p, Readout):
            out[name] = int(np.asarray(p.saturations.get()).sum())
    return out


def prepared_batched(plan: LavaPlan, schedule: Schedule, images: Any, batch: int) -> ProcessGraph:
    """The batched graph for ``images`` with all their windows loaded (no host feeding
    needed): for :meth:`~spikeconverter.converters.to_lava.network.LavaNetwork.processes`.
    Memory grows with ``len(images)``."""
    n = len(images)
    windows = math.ceil(n / batch)
    prefill = np.stack([window_frames(plan, _as_numpy(images, w * batch, (w + 1) * batch), batch)
                        for w in range(windows)])
    g = build_batched(plan, schedule, batch, windows, prefill, buffer=windows + 1)
    from spikeconverter.processes.run import run_config

    return ProcessGraph(plan=plan, schedule=schedule, samples=n, batch=batch, source=g.source,
                        sink=g.sink, neurons=g.neurons, synapses=g.synapses + g.delays,
                        num_steps=schedule.steps_for(windows),
                        run_cfg=run_config(plan.select_tag))
