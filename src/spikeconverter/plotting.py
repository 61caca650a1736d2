"""Figures in the style of the SpikeConverter paper, written as PNG files.

* :func:`plot_accuracy` -- top-1 accuracy against time steps, log x (paper Fig. 6);
* :func:`plot_synops` -- synaptic operations per image against time steps (paper Fig. 7);
* :func:`plot_conversion_error` -- expected conversion error over ``theta / U_max`` and ``k``
  for uniform inputs (paper Fig. 5, Eq. 13);
* :func:`plot_raster` -- spikes of one layer over time with the pipeline's windows marked;
* :func:`plot_hardware` -- neurocores and synaptic operations per layer of a Loihi 2 mapping.

Figures are drawn with matplotlib's object API on an Agg canvas (no pyplot state, no display
needed) and written atomically.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from spikeconverter import coding
from spikeconverter.atomic import atomic_path

__all__ = ["plot_accuracy", "plot_conversion_error", "plot_hardware", "plot_raster",
           "plot_synops"]

_MARKERS = "os^Dv<>p*h"


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


def _curves(curves: Mapping[str, Mapping[int, float]], what: str) -> None:
    if not curves:
        raise ValueError(f"{what}: no curves to plot")
    for label, pts in curves.items():
        if not pts:
            raise ValueError(f"{what}: curve {label!r} has no points")
        if any(int(t) < 1 for t in pts):
            raise ValueError(f"{what}: curve {label!r} has time steps < 1: {sorted(pts)}")


def _log2_steps(ax: Any, curves: Mapping[str, Mapping[int, float]]) -> None:
    steps = sorted({int(t) for pts in curves.values() for t in pts})
    ax.set_xscale("log", base=2)
    ax.set_xticks(steps)
    ax.set_xticklabels([str(t) for t in steps], fontsize=8)
    ax.minorticks_off()
    ax.set_xlabel("time steps T")
    ax.grid(True, which="major", alpha=0.3)


def plot_accuracy(
    curves: Mapping[str, Mapping[int, float]],
    path: str | os.PathLike,
    ann: float | None = None,
    title: str = "Accuracy vs time steps",
    ylabel: str = "top-1 accuracy (%)",
) -> Path:
    """Accuracy of each method against its time steps (log x), the ANN as a dashed line.

    Parameters
    ----------
    curves : mapping of label to (mapping of T to accuracy)
        E.g. ``{"iLIF (ours)": {4: 88.0, 8: 91.5}, "soft reset": {32: 60.1, ...}}``.
    path : str or path
        Output ``.png``.
    ann : float, optional
        The ANN's accuracy, drawn as a horizontal reference.
    """
    _curves(curves, "plot_accuracy")
    fig, ax = _figure()
    for i, (label, pts) in enumerate(curves.items()):
        ts = sorted(pts)
        ax.plot(ts, [pts[t] for t in ts], marker=_MARKERS[i % len(_MARKERS)], label=label)
    if ann is not None:
        ax.axhline(ann, color="k", ls="--", lw=1, label=f"ANN ({ann:.2f})")
    _log2_steps(ax, curves)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.legend(fontsize=8)
    return _save(fig, path)


def plot_synops(
    curves: Mapping[str, Mapping[int, float]],
    path: str | os.PathLike,
    ann_macs: float | None = None,
    title: str = "Synaptic operations vs time steps",
) -> Path:
    """Synaptic operations per image against time steps (log-log), ANN MACs as a reference."""
    _curves(curves, "plot_synops")
    fig, ax = _figure()
    for i, (label, pts) in enumerate(curves.items()):
        ts = sorted(pts)
        ax.plot(ts, [max(pts[t], 1e-9) for t in ts], marker=_MARKERS[i % len(_MARKERS)],
                label=label)
    if ann_macs is not None:
        ax.axhline(ann_macs, color="k", ls="--", lw=1, label=f"ANN MACs ({ann_macs:.3g})")
    _log2_steps(ax, curves)
    ax.set_yscale("log")
    ax.set_ylabel("synaptic operations per image")
    ax.set_title(title)
    ax.legend(fontsize=8)
    return _save(fig, path)


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
        ``"path"``, ``"ratios"``, ``"k"``, ``"error"`` (rows per ``k``) and ``"best_ratio"``
        (``theta / U_max`` minimising the error, per ``k`` of ``k_values``).
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
    fig.colorbar(im, ax=hx)
    out = _save(fig, path)
    return {"path": out, "ratios": ratios, "k": list(k_values), "error": err,
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
