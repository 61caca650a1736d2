"""Network files as plain data: graph IR, thresholds, schedule and options in one versioned file.

This module only reads and writes data; it never builds a network (that is the backends' job,
through :func:`spikeconverter.converters.api.load`).

The file is ``torch.save`` of plain containers (tensors, numbers, strings, tuples), read back
with ``weights_only=True``, so loading never runs code from the file. It is written to a
temporary file beside the target and moved into place with ``os.replace`` (atomic).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from spikeconverter.atomic import atomic_path
from spikeconverter.converters.ir import Edge, Graph, Op, Population
from spikeconverter.converters.schedule import Schedule
from spikeconverter.converters.validate import check_graph, check_options

__all__ = ["FORMAT", "VERSION", "NetworkFile", "graph_from_dict", "graph_to_dict", "read", "save",
           "write"]

FORMAT = "spikeconverter.snn"
VERSION = 1


def _arr(a: Any) -> Any:
    if isinstance(a, np.ndarray):
        return torch.from_numpy(np.ascontiguousarray(a))
    return a


def _np(a: Any) -> Any:
    return a.numpy() if isinstance(a, torch.Tensor) else a


def _attrs(d: dict[str, Any]) -> dict[str, Any]:
    return {k: (tuple(v) if isinstance(v, list) else v) for k, v in d.items()}


def graph_to_dict(graph: Graph) -> dict[str, Any]:
    """The graph as plain containers (numpy arrays as tensors)."""
    pops = []
    for p in graph:
        pops.append({
            "name": p.name, "kind": p.kind, "shape": tuple(p.shape), "T": p.T, "clip": p.clip,
            "theta": _arr(p.theta) if isinstance(p.theta, np.ndarray) else p.theta,
            "attrs": dict(p.attrs), "origin": p.origin,
            "edges": [{"source": e.source, "ops": [
                {"kind": o.kind, "weight": _arr(o.weight), "bias": _arr(o.bias),
                 "attrs": dict(o.attrs), "origin": o.origin} for o in e.ops]} for e in p.edges],
        })
    meta = {k: v for k, v in graph.meta.items() if isinstance(v, (str, int, float, tuple, bool))}
    return {"populations": pops, "input": graph.input, "output": graph.output,
            "rounding": graph.rounding, "k": float(graph.k), "meta": meta}


def graph_from_dict(d: dict[str, Any]) -> Graph:
    """Inverse of :func:`graph_to_dict`."""
    pops = {}
    for p in d["populations"]:
        edges = [Edge(e["source"], [Op(o["kind"], _np(o["weight"]), _np(o["bias"]),
                                       _attrs(o["attrs"]), o["origin"]) for o in e["ops"]])
                 for e in p["edges"]]
        pops[p["name"]] = Population(p["name"], p["kind"], tuple(p["shape"]), edges,
                                     _np(p["theta"]), p["T"], p["clip"], _attrs(p["attrs"]),
                                     p["origin"])
    return Graph(pops, d["input"], d["output"], d["rounding"], d["k"], dict(d["meta"]))


@dataclass
class NetworkFile:
    """The contents of a network file, as plain data.

    Attributes
    ----------
    graph : Graph
        The calibrated graph.
    schedule : Schedule
        The schedule it was saved with (of the backend that saved it).
    options : dict
        Simulation options; ``options["backend"]`` names the backend that saved it.
    state : dict
        Backend-specific plain data (e.g. Lava's fixed-point calibration).
    path : Path or None
        The file it was read from (a backend may keep derived data beside it).
    """

    graph: Graph
    schedule: Schedule
    options: dict[str, Any] = field(default_factory=dict)
    state: dict[str, Any] = field(default_factory=dict)
    path: Path | None = None

    @property
    def backend(self) -> str:
        """The backend that wrote the file (``"norse"`` for files that do not say)."""
        return str(self.options.get("backend", "norse"))


def write(path: str | os.PathLike, graph: Graph, schedule: Schedule,
          options: dict[str, Any], state: dict[str, Any] | None = None) -> Path:
    """Write a network file atomically: graph, schedule, the backend's options (plain values,
    ``"backend"`` naming it) and its plain-data state."""
    path = Path(path)
    blob = {
        "format": FORMAT, "version": VERSION,
        "graph": graph_to_dict(graph),
        "schedule": schedule.to_dict(),
        "options": dict(options),
    }
    if state is not None:
        blob["backend_state"] = dict(state)
    with atomic_path(path) as tmp:
        torch.save(blob, tmp)
    return path


def save(net: Any, path: str | os.PathLike) -> Path:
    """Write anything with ``graph``, ``schedule`` and either ``save_options`` (and optionally
    ``backend_state()``) or the Norse ``mode``/``dtype``. Prefer the network's own ``save``."""
    if hasattr(net, "save_options"):
        options = dict(net.save_options)
    else:
        options = {"mode": net.mode, "dtype": str(net.dtype).removeprefix("torch."),
                   "backend": "norse"}
    state = net.backend_state() if hasattr(net, "backend_state") else None
    return write(path, net.graph, net.schedule, options, state)


def read(path: str | os.PathLike) -> NetworkFile:
    """Read a file written by :func:`write` (any version up to ``VERSION``) as plain data.

    Raises
    ------
    ValueError
        The file is missing, corrupt, not a spikeconverter network, or of a newer version.
    """
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{path}: no such file")
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - corrupt files fail in many ways
        raise ValueError(f"{path}: not a readable spikeconverter network file "
                         f"({type(exc).__name__}: {exc})") from exc
    if not isinstance(blob, dict) or blob.get("format") != FORMAT:
        raise ValueError(f"{path}: not a spikeconverter network file (format "
                         f"{blob.get('format') if isinstance(blob, dict) else None!r}, "
                         f"expected {FORMAT!r})")
    version = blob.get("version")
    if not isinstance(version, int) or version > VERSION or version < 1:
        raise ValueError(f"{path}: file format version {version!r} is not supported by this "
                         f"spikeconverter (reads versions 1..{VERSION}); upgrade spikeconverter")
    try:
        options = check_options(blob.get("options", {}))
        # every value, before a backend allocates anything the file claims; the widest exact
        # range here, the backend checks its own dtype's
        graph = check_graph(graph_from_dict(blob["graph"]), torch.float64)
        schedule = Schedule.from_dict(blob["schedule"])
        return NetworkFile(graph, schedule, options, _state(blob.get("backend_state")), path)
    except (KeyError, TypeError, ValueError, AttributeError, IndexError) as exc:
        raise ValueError(f"{path}: damaged spikeconverter network file ({exc})") from None


def _state(state: Any) -> dict[str, Any]:
    """A backend's saved plain data, checked where its values size anything (membrane peaks:
    names to finite numbers >= 0)."""
    if state is None:
        return {}
    if not isinstance(state, dict):
        raise ValueError(f"backend_state must be a dict, got {type(state).__name__}")
    peaks = state.get("membrane_peaks")
    if peaks is not None and not (isinstance(peaks, dict) and all(
            isinstance(k, str) and isinstance(v, (int, float)) and np.isfinite(v) and v >= 0
            for k, v in peaks.items())):
        raise ValueError("backend_state['membrane_peaks'] must map names to finite numbers "
                         ">= 0")
    return dict(state)
