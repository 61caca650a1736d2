"""``LavaNetwork``: a converted network run in the Lava simulator, float or fixed point."""

from __future__ import annotations

import math
import os
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from lava.magma.core.run_conditions import RunSteps
from tqdm.auto import tqdm

from spikeconverter.converters.calibrate import iter_batches
from spikeconverter.converters.hardware import hardware_report, measure_activity
from spikeconverter.converters.ir import Graph
from spikeconverter.converters.schedule import Schedule
from spikeconverter.converters.serialize import write
from spikeconverter.converters.to_lava.batched import (
    DEFAULT_BATCH,
    DEFAULT_CHUNK_WINDOWS,
    iter_batched,
    prepared_batched,
)
from spikeconverter.converters.to_lava.build import ProcessGraph, build, input_data, run_config
from spikeconverter.converters.to_lava.fixed_point import (
    SPLIT_WEIGHTS,
    fixed_point_plan,
    membrane_peaks,
)
from spikeconverter.converters.to_lava.plan import LavaPlan, float_plan, synapse_groups
from spikeconverter.converters.to_lava.plancache import load_plans, plan_key, save_plans
from spikeconverter.converters.to_lava.stored import graph_fingerprint, store_peaks, stored_peaks
from spikeconverter.converters.to_lava.timing import lava_schedule
from spikeconverter.converters.validate import check_graph

__all__ = ["LavaNetwork"]


class LavaNetwork:
    """A calibrated graph, scheduled for Lava; built into Lava processes at every :meth:`run`
    (:meth:`processes` hands the graph to a Lava user instead).

    Parameters
    ----------
    graph : Graph
        Calibrated graph (every spiking population has ``theta`` and ``T``).
    schedule : Schedule, optional
        A Lava schedule (:func:`~spikeconverter.converters.to_lava.timing.lava_schedule`, the
        default): every population cycles with ``period = steps_per_sample``.
    double_buffered : bool
        Without ``schedule``: neurons with two membrane banks (a sample every ``T`` steps
        instead of ``2 T``, the same logits; ``lava_schedule(graph, double_buffered)``).
    membrane_peaks : dict of str to float, optional
        Largest ``|V|`` of each population's accumulate phase on calibration data (float
        units), as :func:`~spikeconverter.converters.to_lava.fixed_point.membrane_peaks`
        returns; needed for ``run(..., fixed_point=True)``. :func:`spikeconverter.convert`
        with ``backend="lava"`` measures it on the calibration data.
    margin : float
        Fixed point: the calibration peak of every membrane is scaled to ``margin * 2**23``.
    allow_violations : bool
        Fixed point: build a plan that breaks a Loihi 2 number format instead of refusing it
        (the breaks are listed in every report, ``stats["violations"]`` included).
    split_weights : bool, optional
        Fixed point: carry every edge's weights by two 8-bit synapse groups (the second holds
        the first's rounding residual, about 8 more bits of precision, twice the synapses;
        ``fixed_point_plan(split_weights=)``). Default
        :data:`~spikeconverter.converters.to_lava.fixed_point.SPLIT_WEIGHTS`.
    activity : dict, optional
        Spikes and synaptic operations per sample measured on calibration data
        (:func:`~spikeconverter.converters.hardware.measure_activity`), for
        :meth:`hardware_report`; measured by :meth:`calibrate_fixed_point`.

    Attributes
    ----------
    graph, schedule : Graph, Schedule
    stats : dict or None
        Filled by every :meth:`run`: ``latency_steps``, ``steps_per_sample``,
        ``steps_simulated`` (steps actually run), ``samples``, ``seconds``,
        ``seconds_per_sample``, ``fixed_point`` and per population ``populations[name]``:
        ``kind``, ``neurons``, ``T``, ``t_acc``, ``offset`` and, in fixed point, ``saturations``
        (data-losing clamps of the 24-bit membrane, counted by the neurons); ``batch_size``
        (1 for ``graph="lava"``) and, for the batched graph, ``timing``: the first
        ``RunSteps`` call (compiles and starts the runtime) and the later ones
        (``first_chunk_steps``/``_seconds``, ``stepping_steps``/``_seconds``).
    """

    def __init__(self, graph: Graph, schedule: Schedule | None = None, *,
                 membrane_peaks: dict[str, float] | None = None, margin: float = 0.5,
                 activity: dict[str, Any] | None = None, allow_violations: bool = False,
                 double_buffered: bool = False, split_weights: bool | None = None):
        for pop in graph:
            if pop.kind != "readout" and (pop.theta is None or pop.T is None):
                raise ValueError(f"population {pop.name!r} is not calibrated (theta/T missing); "
                                 "run calibrate() first")
        check_graph(graph, torch.float64)  # every value, before anything is built
        if not 0 < margin <= 1:
            raise ValueError(f"margin must be in (0, 1], got {margin!r}")
        self.graph = graph
        self.schedule = schedule if schedule is not None else lava_schedule(graph,
                                                                            double_buffered)
        self.margin = float(margin)
        self.activity = activity
        self._allow_violations = bool(allow_violations)
        self._split_weights = SPLIT_WEIGHTS if split_weights is None else bool(split_weights)
        self._no_peaks_reason = ""
        if membrane_peaks is not None:
            self.membrane_peaks: dict[str, float] | None = dict(membrane_peaks)
            store_peaks(graph, self.membrane_peaks, self.margin)
        else:  # a loaded network's file may hold them (see .stored)
            self.membrane_peaks, self._no_peaks_reason = stored_peaks(graph)
        self.stats: dict[str, Any] | None = None
        self._plans: dict[bool, LavaPlan] = {}
        self._plan_cache: Path | None = None
        self._fixed_report: dict[str, Any] | None = None

    @property
    def allow_violations(self) -> bool:
        """Fixed point: simulate a plan that breaks a Loihi 2 number format (marked in every
        report) instead of refusing it; setting it drops the cached fixed-point plan."""
        return self._allow_violations

    @allow_violations.setter
    def allow_violations(self, value: bool) -> None:
        self._allow_violations = bool(value)
        self._drop_fixed_plan()

    @property
    def split_weights(self) -> bool:
        """Fixed point: two 8-bit synapse groups per edge (see the class parameters);
        setting it drops the cached fixed-point plan."""
        return self._split_weights

    @split_weights.setter
    def split_weights(self, value: bool) -> None:
        self._split_weights = bool(value)
        self._drop_fixed_plan()

    def _drop_fixed_plan(self) -> None:
        """Forget the fixed-point plan and its report (rebuilt by the next ``plan(True)``)."""
        self._plans.pop(True, None)
        self._fixed_report = None

    # -- plans --------------------------------------------------------------------------------

    def use_plan_cache(self, path: str | os.PathLike) -> None:
        """Keep the plans in the file ``path`` (e.g. beside the network file): read from it
        when it holds plans of this very network (same fingerprint, membrane peaks, margin and
        planner version, see :mod:`spikeconverter.converters.to_lava.plancache`), written
        whenever a plan is built."""
        self._plan_cache = Path(path)

    def plan(self, fixed_point: bool = False) -> LavaPlan:
        """The float or fixed-point :class:`LavaPlan` (computed once, then cached in memory
        and, after :meth:`use_plan_cache`, in a file)."""
        if fixed_point not in self._plans and self._plan_cache is not None:
            key = self._plan_key()
            cached = load_plans(self._plan_cache, key)
            refused = cached is not None and cached[1] is not None and cached[1].get(
                "violations") and not self.allow_violations  # built with allow_violations
            if cached is not None and fixed_point in cached[0] and not refused:
                self._plans.update(cached[0])
                self._fixed_report = cached[1] if True in cached[0] else self._fixed_report
        if fixed_point not in self._plans:
            self._build_plan(fixed_point)
            if self._plan_cache is not None:
                key = self._plan_key()
                try:
                    save_plans(self._plan_cache, key, self._plans, self._fixed_report)
                except OSError as err:  # a read-only folder: run without the cache
                    warnings.warn(f"could not write the plan cache {self._plan_cache} ({err})",
                                  stacklevel=2)
        return self._plans[fixed_point]

    def _plan_key(self) -> str:
        # the plans hold the schedule's windows: one bank or two is part of what they depend on
        banks = "|double_buffered" if self.schedule.double_buffered else ""
        split = "|split_weights" if self.split_weights else ""
        return plan_key(graph_fingerprint(self.graph) + banks + split, self.membrane_peaks,
                        self.margin)

    def _build_plan(self, fixed_point: bool) -> None:
        if fixed_point not in self._plans:
            base = self._plans.get(False) or float_plan(self.graph, self.schedule)
            self._plans[False] = base
            if fixed_point:
                if self.membrane_peaks is None:
                    why = f" ({self._no_peaks_reason})" if self._no_peaks_reason else ""
                    raise ValueError(
                        f"fixed point needs the membrane peaks of calibration data{why}: "
                        "convert with backend='lava' or with 'spikeconverter convert' (both "
                        "measure them) or call lnet.calibrate_fixed_point(calibration) first")
                self._plans[True], self._fixed_report = fixed_point_plan(
                    base, self.graph, self.schedule, self.membrane_peaks, self.margin,
                    allow_violations=self.allow_violations, split_weights=self.split_weights)

    def calibrate_fixed_point(self, calibration: Any, progress: bool = True) -> None:
        """Measure the membrane peaks on ``calibration`` (tensor or iterable of batches) and
        keep them in ``graph.meta`` (so every file saved from this graph carries them)."""
        _, batches, _ = iter_batches(calibration)
        self.membrane_peaks = membrane_peaks(self.graph, self.schedule, batches,
                                             progress=progress)
        store_peaks(self.graph, self.membrane_peaks, self.margin)  # saved with the graph
        self.activity = measure_activity(self.graph, batches)
        self._drop_fixed_plan()

    def hardware_report(self, images: Any = None, *,
                        double_buffered: bool | None = None) -> dict[str, Any]:
        """Loihi 2 core mapping and per-inference cost estimate
        (:func:`spikeconverter.converters.hardware.hardware_report`).

        Parameters
        ----------
        images : tensor or iterable of batches, optional
            Inputs to count spikes on; default: the calibration data's counts.
        double_buffered : bool, optional
            Default: as this network runs (``schedule.double_buffered``). A different value
            reports what the other option would cost (its own Lava schedule: two banks double
            the neuron state and halve the steps per sample).

        Returns
        -------
        dict
            Layers, totals (cores, chips, fits), per-inference estimate, figures and sources.
        """
        if images is not None:
            _, batches, _ = iter_batches(images)
            activity = measure_activity(self.graph, batches)
        elif self.activity is not None:
            activity = self.activity
        else:
            raise ValueError("the hardware report needs measured activity: pass images, or "
                             "convert with backend='lava' and calibration data")
        schedule = self.schedule
        if double_buffered is not None and double_buffered != schedule.double_buffered:
            schedule = lava_schedule(self.graph, double_buffered)
        groups = None
        if self.split_weights and self.membrane_peaks is not None:  # as fixed point runs it
            groups = synapse_groups(self.plan(fixed_point=True))
        report = hardware_report(self.graph, schedule, activity, synapse_groups=groups)
        if self._fixed_report is not None:
            report["violations"] = list(self._fixed_report.get("violations", []))
        return report

    def fixed_point_report(self) -> dict[str, Any]:
        """Per layer: neurons, synapses, fan-in/out, membrane bits, weight error, exponents,
        limits broken (and, after a fixed-point run, saturation events).
        See :mod:`spikeconverter.converters.to_lava.fixed_point`."""
        self.plan(fixed_point=True)
        return self._fixed_report

    # -- running ------------------------------------------------------------------------------

    def run(self, images: Any, fixed_point: bool = False, *, batch_size: int | None = None,
            graph: str = "batched", progress: bool = True,
            chunk_steps: int | None = None, windowed: bool = True) -> np.ndarray:
        """Stream ``images`` through the network in Lava; return the logits.

        Two process graphs run the same plan (see :mod:`spikeconverter.converters.to_lava.batched`):

        * ``graph="batched"`` (default): ``batch_size`` samples side by side in one runtime,
          every Process with a leading batch axis (the project's vectorised models). Window
          ``w`` carries samples ``w*B .. w*B + B - 1``; the run takes
          ``latency_steps + (ceil(N / B) - 1) * steps_per_sample`` steps. Logits are
          bit-identical per sample for every ``batch_size``. Input is fed a few windows at a
          time (memory does not grow with ``N``). Populations accumulate once per window where
          that is exact (``windowed``, :mod:`spikeconverter.converters.to_lava.windowed`;
          ``stats["accumulate"]`` says which): the same fixed-point logits as step by step.
        * ``graph="lava"``: the unbatched graph of Lava's own ``Dense``/``Sparse``/``Conv``
          synapses, one sample after the other (``latency_steps + (N - 1) *
          steps_per_sample`` steps): what a Loihi mapping looks like. Its fixed-point logits
          equal the batched ones; float ones differ only by summation order (~1e-16).

        The runtime is always stopped.

        Parameters
        ----------
        images : torch.Tensor or numpy.ndarray
            ``(N, *input_shape)``.
        fixed_point : bool
            Run the Loihi-style integer models (8-bit weights, 24-bit membranes).
        batch_size : int, optional
            Samples side by side (``graph="batched"``); default ``min(N, DEFAULT_BATCH)``.
        graph : {"batched", "lava"}
        progress : bool
            Show a tqdm bar (samples, with rate and ETA).
        chunk_steps : int, optional
            Steps per ``RunSteps`` call (default: ``steps_per_sample``; batched: rounded up to
            whole windows, default 8 windows).
        windowed : bool
            Batched graph: accumulate once per window where exact (default); False runs every
            population step by step (slower; the reference the windowed run equals).

        Returns
        -------
        numpy.ndarray
            Logits ``(N, classes)`` (float64).
        """
        n, batch = self._check_run(images, batch_size, graph, chunk_steps)
        plan = self.plan(bool(fixed_point))
        if graph == "lava":
            return self._run_lava_graph(images, plan, progress, chunk_steps)
        logits = np.zeros((n, math.prod(self.graph[self.graph.output].shape)))
        with tqdm(total=n, desc="lava " + plan.select_tag, unit="img",
                  disable=not progress) as bar:  # stays on screen: the run's rate and time
            for first, part in self.iter_run(images, fixed_point, batch_size=batch,
                                             chunk_steps=chunk_steps, windowed=windowed):
                logits[first:first + len(part)] = part
                bar.update(len(part))
        return logits

    def iter_run(self, images: Any, fixed_point: bool = False, *,
                 batch_size: int | None = None, chunk_steps: int | None = None,
                 windowed: bool = True) -> Iterator[tuple[int, np.ndarray]]:
        """:meth:`run` on the batched graph, yielding ``(first_index, logits)`` per window as
        the simulation produces it (``logits`` of samples ``first_index ..``), for long runs
        that report or write results as they go. :attr:`stats` is set once the last window
        is out. Stopping the iteration early stops the runtime."""
        n, batch = self._check_run(images, batch_size, "batched", chunk_steps)
        plan = self.plan(bool(fixed_point))
        windows = DEFAULT_CHUNK_WINDOWS if chunk_steps is None else \
            max(1, math.ceil(chunk_steps / self.schedule.steps_per_sample))
        run_stats: dict[str, Any] = {}
        start = time.perf_counter()
        yield from iter_batched(plan, self.schedule, images, batch, windows, stats=run_stats,
                                windowed=bool(windowed))
        self._finish_stats(n, run_stats["steps_simulated"], time.perf_counter() - start,
                           bool(fixed_point), run_stats.get("saturations", {}), batch)
        self.stats["timing"] = {k: v for k, v in run_stats.items()
                                if k.startswith(("first_chunk", "stepping"))}
        self.stats["accumulate"] = run_stats.get("accumulate", {})
        self.stats["window_fallback"] = run_stats.get("window_fallback", False)

    def _check_run(self, images: Any, batch_size: int | None, graph: str,
                   chunk_steps: int | None) -> tuple[int, int]:
        """Validate the arguments of :meth:`run` before any work; ``(N, batch)``."""
        if graph not in ("batched", "lava"):
            raise ValueError(f"graph must be 'batched' or 'lava', got {graph!r}")
        in_shape = tuple(self.graph[self.graph.input].shape)
        shape = tuple(images.shape) if hasattr(images, "shape") else None
        if shape is None or len(shape) != len(in_shape) + 1 or shape[1:] != in_shape \
                or shape[0] < 1:
            raise ValueError(f"images must have shape (N, {', '.join(map(str, in_shape))}) with "
                             f"N >= 1, got {shape}")
        finite = bool(torch.isfinite(images).all()) if isinstance(images, torch.Tensor) \
            else bool(np.all(np.isfinite(np.asarray(images))))
        if not finite:
            raise ValueError("images contain NaN or inf")
        if chunk_steps is not None and (isinstance(chunk_steps, bool) or chunk_steps < 1):
            raise ValueError(f"chunk_steps must be an integer >= 1 (or None: one window's "
                             f"steps), got {chunk_steps!r}")
        n = int(shape[0])
        if batch_size is None:
            return n, min(n, DEFAULT_BATCH)
        if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) \
                or batch_size < 1:
            raise ValueError(f"batch_size must be an integer >= 1, got {batch_size!r}")
        if graph == "lava" and batch_size != 1:
            raise ValueError("graph='lava' (Lava's own synapses) runs one sample at a time: "
                             "batch_size must be 1 or None")
        return n, min(n, int(batch_size))

    def _run_lava_graph(self, images: Any, plan: LavaPlan, progress: bool,
                        chunk_steps: int | None) -> np.ndarray:
        """The unbatched graph of Lava's own synapse Processes (see :meth:`run`)."""
        pg = self.processes(images, plan.select_tag == "fixed_pt", graph="lava")
        from spikeconverter.processes.run import check_fixed_point, lava_runtime

        if plan.select_tag == "fixed_pt":
            check_fixed_point(pg.sink)  # a model raising inside Lava would hang the run
        chunk = int(chunk_steps or self.schedule.steps_per_sample)
        done = 0
        start = time.perf_counter()
        # one policy for every Lava runtime: always stopped, workers never orphaned by a signal
        with tqdm(total=pg.num_steps, desc="lava " + plan.select_tag, unit="step",
                  disable=not progress) as bar, \
                lava_runtime(pg.sink, pg.run_cfg) as signals:
            while done < pg.num_steps:
                now = min(chunk, pg.num_steps - done)
                pg.sink.run(condition=RunSteps(num_steps=now))
                done += now
                bar.update(now)
                signals.check()  # Ctrl-C / SIGTERM stop the run here, between chunks
            logits = pg.logits()
            sat = {name: int(np.sum(p.saturations.get())) for name, p in pg.neurons.items()
                   if plan.select_tag == "fixed_pt" and hasattr(p, "saturations")}
        self._finish_stats(pg.samples, done, time.perf_counter() - start,
                           plan.select_tag == "fixed_pt", sat, 1)
        return logits

    def processes(self, images: Any, fixed_point: bool = False, *, graph: str = "lava",
                  batch_size: int | None = None) -> ProcessGraph:
        """The Lava Processes that :meth:`run` would build for ``images``, not yet run.

        For Lava users who want to attach their own Processes: a
        :class:`lava.proc.monitor.process.Monitor` on a population's Var (``v``, ``s_out``),
        another sink, or a different run configuration. Run it yourself, e.g. with
        :func:`spikeconverter.processes.simulation` (always stops the runtime), for
        ``num_steps`` steps and read the logits with :meth:`ProcessGraph.logits` before the
        runtime stops. All input is loaded up front, so keep ``images`` small.

        Parameters
        ----------
        images : torch.Tensor or numpy.ndarray
            ``(N, *input_shape)``.
        fixed_point : bool
            Integer (Loihi-style) plan and models.
        graph : {"lava", "batched"}
            ``"lava"`` (default): Lava's own Dense/Sparse/Conv synapses, populations of the
            per-sample shape (what a Loihi mapping looks like); ``"batched"``: every Process
            with a leading batch axis of ``batch_size`` (see :meth:`run`).
        batch_size : int, optional
            ``graph="batched"`` only; default ``min(N, DEFAULT_BATCH)``.

        Returns
        -------
        ProcessGraph
            ``source``, ``sink``, ``neurons`` (population name -> Process), ``synapses``,
            ``num_steps``, ``run_cfg``, :meth:`ProcessGraph.logits`.
        """
        n, batch = self._check_run(images, batch_size, graph, None)
        plan = self.plan(bool(fixed_point))
        if graph == "lava":
            x = images.detach().cpu().double().numpy() if isinstance(images, torch.Tensor) \
                else np.asarray(images, dtype=np.float64)
            steps = self.schedule.steps_for(n)
            built = build(plan, input_data(plan, x, steps))
            return ProcessGraph(plan=plan, schedule=self.schedule, samples=n, batch=1,
                                source=built.source, sink=built.sink, neurons=built.neurons,
                                synapses=built.synapses, num_steps=steps,
                                run_cfg=run_config(plan))
        return prepared_batched(plan, self.schedule, images, batch)

    def _finish_stats(self, n: int, steps: int, seconds: float, fixed: bool,
                      sat: dict[str, int], batch: int) -> None:
        s = self.schedule
        pops = {}
        for p in self.graph:
            st = {"kind": p.kind, "neurons": math.prod(p.shape), "T": p.T,
                  "t_acc": s.t_acc[p.name], "offset": s.offset[p.name]}
            if p.name in sat:
                st["saturations"] = sat[p.name]
            pops[p.name] = st
        self.stats = {
            "populations": pops, "latency_steps": s.latency_steps,
            "steps_per_sample": s.steps_per_sample, "steps_simulated": steps, "samples": n,
            "batch_size": batch, "seconds": seconds, "seconds_per_sample": seconds / n,
            "fixed_point": fixed, "T": dict(s.T),
        }
        if fixed:
            self.stats["saturations"] = sum(sat.values())
            self.stats["violations"] = list((self._fixed_report or {}).get("violations", []))
            if self._fixed_report is not None:
                for name, count in sat.items():
                    if name in self._fixed_report["layers"]:
                        self._fixed_report["layers"][name]["saturations"] = count

    # -- persistence --------------------------------------------------------------------------

    @property
    def save_options(self) -> dict[str, Any]:
        """What a network file stores to rebuild this network (plain values)."""
        return {"backend": "lava", "margin": self.margin,
                "allow_violations": self.allow_violations, "split_weights": self.split_weights}

    def backend_state(self) -> dict[str, Any]:
        """What a network file stores besides graph, schedule and options (plain data)."""
        peaks = None if self.membrane_peaks is None else {
            k: float(v) for k, v in self.membrane_peaks.items()}
        return {"membrane_peaks": peaks, "activity": self.activity}

    def save(self, path) -> None:
        """Write graph, schedule and fixed-point calibration to one file (atomically)."""
        write(path, self.graph, self.schedule, self.save_options, self.backend_state())

    def __repr__(self) -> str:
        s = self.schedule
        return (f"LavaNetwork({len(self.graph.populations)} populations, latency "
                f"{s.latency_steps} steps, {s.steps_per_sample} steps/sample, fixed point "
                f"{'ready' if self.membrane_peaks is not None else 'not calibrated'})")
