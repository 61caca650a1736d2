"""Figures in the style of the SpikeConverter paper, written as PNG files.

* :func:`plot_accuracy` -- top-1 accuracy against the code length ``T`` and against the
  end-to-end latency in steps, log x (paper Fig. 6);
* :func:`plot_synops` -- synaptic operations per image against ``T`` and latency (paper Fig. 7);
* :func:`plot_conversion_error` -- expected conversion error over ``theta / U_max`` and ``k``
  for uniform inputs (paper Fig. 5, Eq. 13);
* :func:`plot_raster` -- spikes of one layer over time with the pipeline's windows marked;
* :func:`plot_schedule` -- every population's accumulate and generate windows (a Gantt chart),
  for one sample or several pipelined ones;
* :func:`plot_hardware` -- neurocores and synaptic operations per layer of a Loihi 2 mapping.

The curve plots are built in two steps so that what they show can be checked without looking at
pixels: :func:`accuracy_figure` and :func:`synops_figure` return a :class:`FigureSpec` (titles,
axis labels, the series' x and y values), :func:`draw` turns a spec into a matplotlib figure.
Figures are drawn with matplotlib's object API on an Agg canvas (no pyplot state, no display
needed) and written atomically.

Why two x axes: for iLIF, ``T`` is the length of each layer's code, and a sample needs about
``depth * T`` steps from its first input step to its logits (each layer accumulates for ``T``
steps while the one before it generates; the schedule's ``latency_steps``: 77 for ResNet-20 at
T = 4); for rate coding, ``T`` *is* the number of steps. Plotting both methods over ``T`` alone
flatters iLIF, so every curve plot has a second panel over the end-to-end latency.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import LogFormatterSciNotation

from spikeconverter import coding
from spikeconverter.atomic import atomic_path

__all__ = [
    "FigureSpec",
    "Panel",
    "Series",
    "accuracy_figure",
    "draw",
    "plot_accuracy",
    "plot_conversion_error",
    "plot_hardware",
    "plot_raster",
    "plot_schedule",
    "plot_synops",
    "schedule_bars",
    "synops_figure",
]

_MARKERS = "os^Dv<>p*h"
T_LABEL = "code length T (iLIF: spikes per layer; rate coding: time steps)"
LATENCY_LABEL = "end-to-end latency (time steps from first input to logits)"

Curves = Mapping[str, Mapping[int, float]]


@dataclass(frozen=True)
class Series:
    """One curve: ``label`` and its points ``(x[i], y[i])``, sorted by x."""

    label: str
    x: tuple[float, ...]
    y: tuple[float, ...]


@dataclass(frozen=True)
class Panel:
    """One axes of a figure: its series, labels, scales and horizontal reference lines.

    Attributes
    ----------
    xscale, yscale : str
        ``"linear"``, ``"log"`` (base 10) or ``"log2"`` (ticks at the data's x values).
    ylim : tuple of (float or None)
        Bottom and top of the y axis (None: matplotlib chooses).
    references : tuple of (float, str)
        Horizontal dashed lines ``(y, label)``, e.g. the ANN's accuracy.
    """

    title: str
    xlabel: str
    ylabel: str
    series: tuple[Series, ...]
    xscale: str = "linear"
    yscale: str = "linear"
    ylim: tuple[float | None, float | None] = (None, None)
    references: tuple[tuple[float, str], ...] = ()


@dataclass(frozen=True)
class FigureSpec:
    """What a curve figure shows: a title over one or more panels side by side."""

    title: str
    panels: tuple[Panel, ...] = field(default_factory=tuple)


def _figure(width: float = 6.4, height: float = 4.2, ncols: int = 1) -> tuple[Figure, Any]:
    fig = Figure(figsize=(width, height), dpi=120, layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, ncols)
    return fig, axes


def _save(fig: Figure, path: str | os.PathLike) -> Path:
    path = Path(path)
    if path.suffix.lower() != ".png":
        raise ValueError(f"plots are written as PNG: give a path ending in .png, got {str(path)!r}")
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    return path


def _check_curves(curves: Curves, what: str) -> None:
    if not curves:
        raise ValueError(f"{what}: no curves to plot")
    for label, pts in curves.items():
        if not pts:
            raise ValueError(f"{what}: curve {label!r} has no points")
        if any(int(t) < 1 for t in pts):
            raise ValueError(f"{what}: curve {label!r} has time steps < 1: {sorted(pts)}")


def _series(curves: Curves, latency: Curves | None = None) -> tuple[Series, ...]:
    """Curves as series over T, or over each point's latency when ``latency`` is given."""
    out = []
    for label, pts in curves.items():
        ts = sorted(pts)
        if latency is None:
            xs = [float(t) for t in ts]
        else:
            lat = latency.get(label, {})
            missing = [t for t in ts if lat.get(t) is None]
            if missing:
                raise ValueError(f"curve {label!r} has no latency for T = {missing}")
            xs = [float(lat[t]) for t in ts]
        out.append(Series(label, tuple(xs), tuple(float(pts[t]) for t in ts)))
    return tuple(out)


def _images_note(images: int | None) -> str:
    return f", {images:,} test images" if images else ""


def _curve_figure(
    curves: Curves, latency: Curves | None, title: str, ylabel: str, **panel: Any
) -> FigureSpec:
    panels = [Panel(title="against T", xlabel=T_LABEL, ylabel=ylabel,
                    series=_series(curves), **panel)]
    if latency is not None:
        panels.append(Panel(title="against end-to-end latency", xlabel=LATENCY_LABEL,
                            ylabel=ylabel, series=_series(curves, latency), **panel))
    return FigureSpec(title, tuple(panels))


def accuracy_figure(
    curves: Curves,
    *,
    latency: Curves | None = None,
    ann: float | None = None,
    images: int | None = None,
    title: str = "Accuracy",
    ylabel: str = "top-1 accuracy (%)",
) -> FigureSpec:
    """The data of the accuracy plot: one panel over ``T``, one over latency.

    Parameters
    ----------
    curves : mapping of label to (mapping of T to accuracy in %)
        E.g. ``{"iLIF (ours)": {4: 88.0, 8: 91.5}, "soft reset": {32: 60.1, ...}}``.
    latency : mapping of label to (mapping of T to steps), optional
        End-to-end latency of each point: for iLIF the schedule's ``latency_steps`` at that
        ``T``, for rate coding ``T`` itself. Without it the latency panel is left out.
    ann : float, optional
        The ANN's accuracy, drawn as a dashed reference line.
    images : int, optional
        Number of test images, shown in the title.
    """
    _check_curves(curves, "accuracy_figure")
    refs = ((float(ann), f"ANN ({ann:.2f} %)"),) if ann is not None else ()
    # accuracies are percentages: the axis stops at 100 (points on it are drawn unclipped)
    return _curve_figure(curves, latency, title + _images_note(images), ylabel,
                         xscale="log2", ylim=(None, 100.0), references=refs)


def synops_figure(
    curves: Curves,
    *,
    latency: Curves | None = None,
    ann_macs: float | None = None,
    images: int | None = None,
    title: str = "Synaptic operations",
) -> FigureSpec:
    """The data of the synaptic-operations plot (log-log), panels as :func:`accuracy_figure`."""
    _check_curves(curves, "synops_figure")
    # a point with no operations at all cannot sit on a log axis: draw it at the bottom
    floored = {label: {t: max(v, 1e-9) for t, v in pts.items()} for label, pts in curves.items()}
    refs = ((float(ann_macs), f"ANN MACs ({ann_macs:.3g})"),) if ann_macs is not None else ()
    return _curve_figure(floored, latency, title + _images_note(images),
                         "synaptic operations per image", xscale="log2", yscale="log",
                         references=refs)


def _log2_ticks(ax: Any, panel: Panel) -> None:
    steps = sorted({int(round(x)) for s in panel.series for x in s.x})
    ax.set_xscale("log", base=2)
    ax.set_xticks(steps)
    ax.set_xticklabels([str(t) for t in steps], fontsize=8, rotation=45 if len(steps) > 8 else 0)
    ax.minorticks_off()


def _draw_panel(ax: Any, panel: Panel) -> None:
    for i, s in enumerate(panel.series):
        ax.plot(s.x, s.y, marker=_MARKERS[i % len(_MARKERS)], label=s.label, clip_on=False)
    for y, label in panel.references:
        ax.axhline(y, color="k", ls="--", lw=1, label=label)
    if panel.xscale == "log2":
        _log2_ticks(ax, panel)
    elif panel.xscale != "linear":
        ax.set_xscale(panel.xscale)
    if panel.yscale != "linear":
        ax.set_yscale(panel.yscale)
        if panel.yscale == "log":  # label some minor ticks: data often spans 1-2 decades
            ax.yaxis.set_minor_formatter(LogFormatterSciNotation(minor_thresholds=(2, 0.5)))
    bottom, top = panel.ylim
    if top is not None:
        ax.set_ylim(top=top)
    if bottom is not None:
        ax.set_ylim(bottom=bottom)
    ax.set_xlabel(panel.xlabel, fontsize=9)
    ax.set_ylabel(panel.ylabel)
    ax.set_title(panel.title, fontsize=10)
    ax.grid(True, which="major", alpha=0.3)
    ax.legend(fontsize=7)


def draw(spec: FigureSpec) -> Figure:
    """A matplotlib figure (Agg canvas) showing ``spec``: its panels side by side."""
    n = len(spec.panels)
    if n == 0:
        raise ValueError("a figure needs at least one panel")
    fig, axes = _figure(5.6 * n, 4.4, ncols=n)
    for ax, panel in zip(np.atleast_1d(axes), spec.panels, strict=True):
        _draw_panel(ax, panel)
    fig.suptitle(spec.title)
    return fig


def plot_accuracy(
    curves: Curves,
    path: str | os.PathLike,
    ann: float | None = None,
    title: str = "Accuracy",
    ylabel: str = "top-1 accuracy (%)",
    *,
    latency: Curves | None = None,
    images: int | None = None,
) -> Path:
    """Draw :func:`accuracy_figure` (same arguments) into the PNG file ``path``."""
    spec = accuracy_figure(curves, latency=latency, ann=ann, images=images, title=title,
                           ylabel=ylabel)
    return _save(draw(spec), path)


def plot_synops(
    curves: Curves,
    path: str | os.PathLike,
    ann_macs: float | None = None,
    title: str = "Synaptic operations",
    *,
    latency: Curves | None = None,
    images: int | None = None,
) -> Path:
    """Draw :func:`synops_figure` (same arguments) into the PNG file ``path``."""
    spec = synops_figure(curves, latency=latency, ann_macs=ann_macs, images=images, title=title)
    return _save(draw(spec), path)


def conversion_error_grid(
    ratios: np.ndarray, k_values: Sequence[float], T: int, samples: int = 20000,
    rounding: str = "floor",
) -> np.ndarray:
    """Eq. 13 for ``U_in ~ U(0, 1)``: error per ``k`` (rows) and ``theta / U_max`` (columns).

    The expectation is taken on the midpoints of ``samples`` equal bins (deterministic, and
    closer to the integral than as many random draws).
    """
    u = (np.arange(samples) + 0.5) / samples
    return np.stack([coding.conversion_error(u, ratios, k=float(k), T=T, rounding=rounding)
                     for k in k_values])


def plot_conversion_error(
    path: str | os.PathLike,
    T: int = 6,
    k_values: Sequence[float] = (1.2, 1.4, 1.6, 1.8, 2.0),
    ratios: np.ndarray | None = None,
    samples: int = 20000,
    rounding: str = "floor",
) -> dict[str, Any]:
    """Expected conversion error over ``theta / U_max`` and ``k`` (paper Fig. 5).

    Inputs are uniform on ``[0, U_max]`` (``samples`` bin midpoints): left, one curve per ``k``
    with its minimum marked; right, the error over a finer ``k`` grid as a heat map with the
    best ratio per ``k``.

    Returns
    -------
    dict
        ``"path"``, ``"ratios"``, ``"k"``, ``"error"`` (rows per ``k``), ``"best_ratio"``
        (``theta / U_max`` minimising the error, per ``k`` of ``k_values``) and
        ``"colorbar_label"`` (the heat map's colour bar).
    """
    coding.validate_code_params(T=T, rounding=rounding)
    ratios = np.linspace(0.02, 1.0, 197) if ratios is None else np.asarray(ratios, float)
    if ratios.ndim != 1 or ratios.size < 2 or np.any(ratios <= 0):
        raise ValueError("ratios must be a 1-d array of at least 2 values > 0")
    err = conversion_error_grid(ratios, k_values, T, samples, rounding)
    best = ratios[np.argmin(err, axis=1)]
    fig, (ax, hx) = _figure(11.0, 4.2, ncols=2)
    for i, k in enumerate(k_values):
        line = ax.plot(ratios, err[i], label=f"k = {k:g}")[0]
        ax.plot(best[i], err[i].min(), marker="o", color=line.get_color())
    ax.set_xlabel(r"$\theta\,/\,U_{max}$")
    ax.set_ylabel(r"$E|U_{in} - U_{out}|\,/\,U_{max}$")
    ax.set_title(f"Conversion error, uniform input, T = {T}")
    ax.set_ylim(0, min(float(err.max()), 0.5))
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    fine_k = np.linspace(min(1.05, min(k_values)), 2.0, 40)
    grid = conversion_error_grid(ratios, fine_k, T, min(samples, 5000), rounding)
    im = hx.imshow(np.log10(grid), origin="lower", aspect="auto", cmap="viridis",
                   extent=(ratios[0], ratios[-1], fine_k[0], fine_k[-1]))
    hx.plot(ratios[np.argmin(grid, axis=1)], fine_k, color="w", lw=1.5, label="best threshold")
    hx.set_xlabel(r"$\theta\,/\,U_{max}$")
    hx.set_ylabel("k")
    hx.set_title(f"log10 error over threshold and k (T = {T})")
    hx.legend(fontsize=8, loc="upper right")
    bar_label = r"$\log_{10}\,E|U_{in} - U_{out}|\,/\,U_{max}$"
    fig.colorbar(im, ax=hx, label=bar_label)
    out = _save(fig, path)
    return {"path": out, "ratios": ratios, "k": list(k_values), "error": err,
            "colorbar_label": bar_label,
            "best_ratio": dict(zip(k_values, best.tolist(), strict=True))}


def plot_raster(
    spikes: Any,
    path: str | os.PathLike,
    windows: Sequence[tuple[int, int, str]] = (),
    title: str = "Spike raster",
    max_neurons: int = 64,
    start: int = 0,
) -> Path:
    """Spikes of one layer over time, with the pipeline's windows shaded.

    Parameters
    ----------
    spikes : array of shape (T, N)
        Spikes (0/1, or -1/0/1 for signed trains: negative spikes are drawn in red).
    path : str or path
        Output ``.png``.
    windows : sequence of (start, stop, label)
        Step ranges ``[start, stop)`` to shade and label (e.g. the layer's accumulate and
        generate phases).
    max_neurons : int
        Draw at most this many neurons (the first ones).
    start : int
        Time step of row 0 of ``spikes`` (for a raster cut out of a longer run).
    """
    s = np.asarray(spikes.detach().cpu() if hasattr(spikes, "detach") else spikes, float)
    if s.ndim != 2:
        raise ValueError(f"spikes must have shape (T, N), got {s.shape}")
    s = s[:, :max_neurons]
    T, N = s.shape
    fig, ax = _figure(8.0, 3.6)
    colors = ["#dde7f3", "#f6e3cf", "#e2f0dc", "#efdcef"]
    for i, (a, b, label) in enumerate(windows):
        ax.axvspan(a - 0.5, b - 0.5, color=colors[i % len(colors)], zorder=0)
        ax.text((a + b - 1) / 2, N + 0.1, label, ha="center", va="bottom", fontsize=8)
    t_pos, n_pos = np.nonzero(s > 0)
    ax.scatter(t_pos + start, n_pos, marker="|", s=40, color="k", lw=1.2, zorder=2)
    t_neg, n_neg = np.nonzero(s < 0)
    if t_neg.size:
        ax.scatter(t_neg + start, n_neg, marker="|", s=40, color="tab:red", lw=1.2, zorder=2,
                   label="-1 spikes")
        ax.legend(fontsize=8, loc="lower right")
    ax.set_xlim(start - 0.5, start + T - 0.5)
    ax.set_ylim(-0.7, N + max(1.5, 0.08 * N))
    ax.set_xlabel("time step")
    ax.set_ylabel("neuron")
    ax.set_title(title)
    return _save(fig, path)


_PHASE_COLORS = {"accumulate": "#4c72b0", "generate": "#dd8452"}


def schedule_bars(schedule: Any, samples: int = 1) -> list[dict[str, Any]]:
    """The windows of every population, one row per (population, sample, phase).

    Parameters
    ----------
    schedule : Schedule
        A converted network's schedule (``net.schedule``): ``offset``, ``t_acc``, ``t_gen``
        per population and ``steps_per_sample``.
    samples : int
        Samples streamed back to back: sample ``s`` enters ``s * steps_per_sample`` steps
        after sample 0 (inter-sample pipelining).

    Returns
    -------
    list of dict
        Keys ``population``, ``sample``, ``phase`` (``"accumulate"`` or ``"generate"``),
        ``start`` (first step) and ``length`` (steps); empty phases are left out.
    """
    if isinstance(samples, bool) or not isinstance(samples, int) or samples < 1:
        raise ValueError(f"samples must be an integer >= 1, got {samples!r}")
    rows = []
    for name, off in schedule.offset.items():
        acc, gen = int(schedule.t_acc[name]), int(schedule.t_gen[name])
        for s in range(samples):
            start = int(off) + s * int(schedule.steps_per_sample)
            for phase, a, n in (("accumulate", start, acc), ("generate", start + acc, gen)):
                if n > 0:
                    rows.append({"population": name, "sample": s, "phase": phase, "start": a,
                                 "length": n})
    return rows


def plot_schedule(
    schedule: Any,
    path: str | os.PathLike,
    samples: int = 1,
    title: str = "Schedule",
) -> dict[str, Any]:
    """Gantt chart of :func:`schedule_bars`: populations top to bottom, time to the right.

    Accumulate windows are blue, generate windows orange; with ``samples > 1`` each sample's
    windows carry its number, and the latency of sample 0 is marked. A double-buffered schedule
    (``schedule.double_buffered``) draws each iLIF row's two membrane banks as two half rows
    (sample ``s`` in bank ``s mod 2``), where the next sample's accumulate window runs beside
    this one's generate window.

    Returns
    -------
    dict
        ``"path"``, ``"bars"`` (the rows drawn) and ``"populations"`` (row order, top first).
    """
    bars = schedule_bars(schedule, samples)
    names = list(schedule.offset)
    fig, ax = _figure(9.0, 1.2 + 0.24 * len(names))
    row = {n: len(names) - 1 - i for i, n in enumerate(names)}
    double = getattr(schedule, "double_buffered", False)
    for b in bars:
        alpha = 1.0 if b["sample"] == 0 else 0.55
        name = b["population"]  # iLIF rows (both phases) have two banks; input/readout one
        banks = 2 if double and schedule.t_acc[name] and schedule.t_gen[name] else 1
        y = row[name] - 0.4 + 0.8 / banks * (b["sample"] % banks)
        ax.broken_barh([(b["start"] - 0.5, b["length"])], (y, 0.8 / banks),
                       color=_PHASE_COLORS[b["phase"]], alpha=alpha)
        if samples > 1 and b["length"] >= 3:
            ax.text(b["start"] - 0.5 + b["length"] / 2, y + 0.4 / banks, str(b["sample"]),
                    ha="center", va="center", fontsize=6, color="w")
    ax.axvline(schedule.latency_steps - 0.5, color="k", ls="--", lw=1,
               label=f"logits of sample 0 complete ({schedule.latency_steps} steps)")
    for phase, color in _PHASE_COLORS.items():
        ax.bar(0, 0, color=color, label=phase)  # legend entries only
    ax.set_yticks(range(len(names)))
    ax.set_yticklabels(names[::-1], fontsize=7)
    ax.set_xlabel("time step")
    ax.set_ylabel("population")
    ax.set_title(title + (f" ({samples} samples, a new one every "
                          f"{schedule.steps_per_sample} steps)" if samples > 1 else ""))
    ax.legend(fontsize=7, loc="upper right")
    ax.grid(True, axis="x", alpha=0.3)
    return {"path": _save(fig, path), "bars": bars, "populations": names}


def plot_hardware(report: Mapping[str, Any], path: str | os.PathLike,
                  title: str = "Loihi 2 mapping per layer") -> Path:
    """Neurocores (left) and synaptic operations per inference with the ANN's MACs (right) of
    every layer of a hardware report (:func:`spikeconverter.converters.hardware
    .hardware_report`)."""
    layers = report.get("layers") or {}
    if not layers:
        raise ValueError("plot_hardware: the report has no layers")
    names = list(layers)
    x = np.arange(len(names))
    fig, (left, right) = _figure(width=11.0, height=4.2, ncols=2)
    left.bar(x, [layers[n]["cores"] for n in names], color="tab:blue")
    t = report["totals"]
    left.set_title(f"neurocores: {t['cores']} in all, {t['chips']} chip(s)")
    left.set_ylabel("neurocores")
    width = 0.4
    right.bar(x - width / 2, [max(layers[n].get("synaptic_ops", 0.0), 1e-9) for n in names],
              width, label="synaptic ops (SNN, measured)")
    right.bar(x + width / 2, [max(layers[n].get("ann_macs", 0), 1e-9) for n in names], width,
              label="MACs (ANN)")
    right.set_yscale("log")
    right.set_ylabel("operations per inference")
    right.legend(fontsize=8)
    right.set_title("synaptic operations vs ANN MACs")
    for ax in (left, right):
        ax.set_xticks(x)
        ax.set_xticklabels(names, rotation=90, fontsize=7)
    fig.suptitle(title + (" (double-buffered)" if report.get("double_buffered") else ""))
    return _save(fig, path)
