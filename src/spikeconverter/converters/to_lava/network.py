"""``LavaNetwork``: a converted network run in the Lava simulator, float or fixed point."""

from __future__ import annotations

import math
import time
from typing import Any

import numpy as np
import torch
from lava.magma.core.run_conditions import RunSteps
from tqdm.auto import tqdm

from spikeconverter.converters.calibrate import iter_batches
from spikeconverter.converters.ir import Graph
from spikeconverter.converters.schedule import Schedule
from spikeconverter.converters.serialize import write
from spikeconverter.converters.to_lava.build import build, input_data, run_config
from spikeconverter.converters.to_lava.fixed_point import fixed_point_plan, membrane_peaks
from spikeconverter.converters.to_lava.plan import LavaPlan, float_plan
from spikeconverter.converters.to_lava.timing import lava_schedule
from spikeconverter.converters.validate import check_graph

__all__ = ["LavaNetwork"]


class LavaNetwork:
    """A calibrated graph, scheduled for Lava; built into Lava processes at every :meth:`run`.

    Parameters
    ----------
    graph : Graph
        Calibrated graph (every spiking population has ``theta`` and ``T``).
    schedule : Schedule, optional
        A Lava schedule (:func:`~spikeconverter.converters.to_lava.timing.lava_schedule`, the
        default): every population cycles with ``period = steps_per_sample``.
    membrane_peaks : dict of str to float, optional
        Largest ``|V|`` of each population's accumulate phase on calibration data (float
        units), as :func:`~spikeconverter.converters.to_lava.fixed_point.membrane_peaks`
        returns; needed for ``run(..., fixed_point=True)``. :func:`spikeconverter.convert`
        with ``backend="lava"`` measures it on the calibration data.
    margin : float
        Fixed point: the calibration peak of every membrane is scaled to ``margin * 2**23``.

    Attributes
    ----------
    graph, schedule : Graph, Schedule
    stats : dict or None
        Filled by every :meth:`run`: ``latency_steps``, ``steps_per_sample``,
        ``steps_simulated`` (steps actually run), ``samples``, ``seconds``,
        ``seconds_per_sample``, ``fixed_point`` and per population ``populations[name]``:
        ``kind``, ``neurons``, ``T``, ``t_acc``, ``offset`` and, in fixed point, ``saturations``
        (data-losing clamps of the 24-bit membrane, counted by the neurons).
    """

    def __init__(self, graph: Graph, schedule: Schedule | None = None, *,
                 membrane_peaks: dict[str, float] | None = None, margin: float = 0.5):
        for pop in graph:
            if pop.kind != "readout" and (pop.theta is None or pop.T is None):
                raise ValueError(f"population {pop.name!r} is not calibrated (theta/T missing); "
                                 "run calibrate() first")
        check_graph(graph, torch.float64)  # every value, before anything is built
        if not 0 < margin <= 1:
            raise ValueError(f"margin must be in (0, 1], got {margin!r}")
        self.graph = graph
        self.schedule = schedule if schedule is not None else lava_schedule(graph)
        self.membrane_peaks = dict(membrane_peaks) if membrane_peaks is not None else None
        self.margin = float(margin)
        self.stats: dict[str, Any] | None = None
        self._plans: dict[bool, LavaPlan] = {}
        self._fixed_report: dict[str, Any] | None = None

    # -- plans --------------------------------------------------------------------------------

    def plan(self, fixed_point: bool = False) -> LavaPlan:
        """The float or fixed-point :class:`LavaPlan` (computed once, then cached)."""
        if fixed_point not in self._plans:
            base = self._plans.get(False) or float_plan(self.graph, self.schedule)
            self._plans[False] = base
            if fixed_point:
                if self.membrane_peaks is None:
                    raise ValueError(
                        "fixed point needs the membrane peaks of calibration data: convert with "
                        "backend='lava' (it measures them) or call "
                        "lnet.calibrate_fixed_point(calibration) first")
                self._plans[True], self._fixed_report = fixed_point_plan(
                    base, self.graph, self.schedule, self.membrane_peaks, self.margin)
        return self._plans[fixed_point]

    def calibrate_fixed_point(self, calibration: Any, progress: bool = True) -> None:
        """Measure the membrane peaks on ``calibration`` (tensor or iterable of batches)."""
        _, batches, _ = iter_batches(calibration)
        self.membrane_peaks = membrane_peaks(self.graph, self.schedule, batches,
                                             progress=progress)
        self._plans.pop(True, None)

    def fixed_point_report(self) -> dict[str, Any]:
        """Per layer: neurons, synapses, fan-in/out, membrane bits, weight error, exponents,
        limits broken (and, after a fixed-point run, saturation events).
        See :mod:`spikeconverter.converters.to_lava.fixed_point`."""
        self.plan(fixed_point=True)
        return self._fixed_report

    # -- running ------------------------------------------------------------------------------

    def run(self, images: Any, fixed_point: bool = False, *, progress: bool = True,
            chunk_steps: int | None = None) -> np.ndarray:
        """Stream ``images`` back to back through the network in Lava; return the logits.

        Sample ``i`` enters at step ``i * steps_per_sample``; the run takes exactly
        ``latency_steps + (N - 1) * steps_per_sample`` steps. The runtime is always stopped.

        Parameters
        ----------
        images : torch.Tensor or numpy.ndarray
            ``(N, *input_shape)``.
        fixed_point : bool
            Run the Loihi-style integer models (8-bit weights, 24-bit membranes).
        progress : bool
            Show a tqdm bar over the steps.
        chunk_steps : int, optional
            Steps per ``RunSteps`` call (default: ``steps_per_sample``).

        Returns
        -------
        numpy.ndarray
            Logits ``(N, classes)`` (float64).
        """
        x = images.detach().cpu().double().numpy() if isinstance(images, torch.Tensor) \
            else np.asarray(images, dtype=np.float64)
        in_shape = tuple(self.graph[self.graph.input].shape)
        if x.ndim != len(in_shape) + 1 or tuple(x.shape[1:]) != in_shape or x.shape[0] < 1:
            raise ValueError(f"images must have shape (N, {', '.join(map(str, in_shape))}) with "
                             f"N >= 1, got {tuple(x.shape)}")
        if not np.all(np.isfinite(x)):
            raise ValueError("images contain NaN or inf")
        plan = self.plan(bool(fixed_point))
        s = self.schedule
        n = x.shape[0]
        steps = s.steps_for(n)
        chunk = s.steps_per_sample if chunk_steps is None else chunk_steps
        if isinstance(chunk, bool) or not isinstance(chunk, (int, np.integer)) or chunk < 1:
            raise ValueError(f"chunk_steps must be an integer >= 1 (or None: one sample's "
                             f"{s.steps_per_sample} steps), got {chunk_steps!r}")
        chunk = int(chunk)
        net = build(plan, input_data(plan, x, steps))
        # imported here, after build() imported Lava's runtime the tolerant way (to_lava.runtime)
        from spikeconverter.processes.run import lava_runtime

        cfg = run_config(plan)
        out = self.graph.output
        read = [s.offset[out] + i * s.steps_per_sample + s.t_acc[out] - 1 for i in range(n)]
        done = 0
        start = time.perf_counter()
        # one policy for every Lava runtime: always stopped, workers never orphaned by a signal
        with lava_runtime(net.sink, cfg) as signals:
            with tqdm(total=steps, desc="lava " + plan.select_tag, unit="step",
                      disable=not progress, leave=False) as bar:
                while done < steps:
                    now = min(chunk, steps - done)
                    net.sink.run(condition=RunSteps(num_steps=now))
                    done += now
                    bar.update(now)
                    signals.check()  # Ctrl-C / SIGTERM stop the run here, between chunks
            v = np.asarray(net.sink.data.get(), dtype=np.float64)
            sat = {name: int(np.sum(p.saturations.get())) for name, p in net.neurons.items()
                   if plan.select_tag == "fixed_pt" and hasattr(p, "saturations")}
        seconds = time.perf_counter() - start
        logits = v[..., read].reshape(-1, n).T / plan.output_gain
        self._finish_stats(n, done, seconds, bool(fixed_point), sat)
        return logits

    def _finish_stats(self, n: int, steps: int, seconds: float, fixed: bool,
                      sat: dict[str, int]) -> None:
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
            "batch_size": n, "seconds": seconds, "seconds_per_sample": seconds / n,
            "fixed_point": fixed, "T": dict(s.T),
        }
        if fixed:
            self.stats["saturations"] = sum(sat.values())
            if self._fixed_report is not None:
                for name, count in sat.items():
                    if name in self._fixed_report["layers"]:
                        self._fixed_report["layers"][name]["saturations"] = count

    # -- persistence --------------------------------------------------------------------------

    @property
    def save_options(self) -> dict[str, Any]:
        """What a network file stores to rebuild this network (plain values)."""
        return {"backend": "lava", "margin": self.margin}

    def backend_state(self) -> dict[str, Any]:
        """What a network file stores besides graph, schedule and options (plain data)."""
        peaks = None if self.membrane_peaks is None else {
            k: float(v) for k, v in self.membrane_peaks.items()}
        return {"membrane_peaks": peaks}

    def save(self, path) -> None:
        """Write graph, schedule and fixed-point calibration to one file (atomically)."""
        write(path, self.graph, self.schedule, self.save_options, self.backend_state())

    def __repr__(self) -> str:
        s = self.schedule
        return (f"LavaNetwork({len(self.graph.populations)} populations, latency "
                f"{s.latency_steps} steps, {s.steps_per_sample} steps/sample, fixed point "
                f"{'ready' if self.membrane_peaks is not None else 'not calibrated'})")
