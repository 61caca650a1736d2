"""Save and load converted networks: graph IR, thresholds and schedule in one versioned file.

The file is ``torch.save`` of plain containers (tensors, numbers, strings, tuples), read back
with ``weights_only=True``, so loading never runs code from the file. It is written to a
temporary file beside the target and moved into place with ``os.replace`` (atomic).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import torch

from spikeconverter.atomic import atomic_path
from spikeconverter.converters.ir import Edge, Graph, Op, Population
from spikeconverter.converters.schedule import Schedule
from spikeconverter.converters.validate import DTYPES, check_graph, check_options, check_schedule

__all__ = ["FORMAT", "VERSION", "graph_from_dict", "graph_to_dict", "load", "save"]

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
    pops = {}
    for p in d["populations"]:
        edges = [Edge(e["source"], [Op(o["kind"], _np(o["weight"]), _np(o["bias"]),
                                       _attrs(o["attrs"]), o["origin"]) for o in e["ops"]])
                 for e in p["edges"]]
        pops[p["name"]] = Population(p["name"], p["kind"], tuple(p["shape"]), edges,
                                     _np(p["theta"]), p["T"], p["clip"], _attrs(p["attrs"]),
                                     p["origin"])
    return Graph(pops, d["input"], d["output"], d["rounding"], d["k"], dict(d["meta"]))


def save(net: Any, path: str | os.PathLike) -> Path:
    """Write a network (graph, schedule, simulation options) to ``path``.

    A :class:`SpikingNetwork` stores its mode and dtype; another backend's network (e.g. the
    Lava backend's ``LavaNetwork``) stores its ``save_options`` and ``backend_state()``.
    """
    path = Path(path)
    if hasattr(net, "save_options"):
        options = dict(net.save_options)
    else:
        options = {"mode": net.mode, "dtype": str(net.dtype).removeprefix("torch."),
                   "backend": "norse"}
    blob = {
        "format": FORMAT, "version": VERSION,
        "graph": graph_to_dict(net.graph),
        "schedule": net.schedule.to_dict(),
        "options": options,
    }
    if hasattr(net, "backend_state"):
        blob["backend_state"] = net.backend_state()
    with atomic_path(path) as tmp:
        torch.save(blob, tmp)
    return path


def load(path: str | os.PathLike, *, mode: str | None = None,
         dtype: torch.dtype | None = None, backend: str | None = None):
    """Read a network written by :func:`save`.

    Parameters
    ----------
    path : str or PathLike
        The file.
    mode, dtype : optional
        Override the simulation mode / precision it was saved with (Norse).
    backend : {"norse", "lava"}, optional
        Backend of the network returned; default: the one it was saved from. A network saved
        from one backend loads into the other (its schedule is recomputed for it).

    Raises
    ------
    ValueError
        The file is missing, corrupt, not a spikeconverter network, or of a newer version.
    """
    from spikeconverter.converters.norse_backend import SpikingNetwork

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
    if backend not in (None, "norse", "lava"):
        raise ValueError(f"backend must be 'norse' or 'lava', got {backend!r}")
    if dtype not in (None, *DTYPES.values()):
        raise ValueError(f"dtype must be torch.float32 or torch.float64, got {dtype!r}")
    try:
        opts = check_options(blob.get("options", {}), ("norse", "lava"))
        saved = opts.get("backend", "norse")
        backend = backend or saved
        # every value checked before a backend allocates anything the file claims
        dt = torch.float64 if backend == "lava" else dtype or DTYPES[opts.get("dtype",
                                                                             "float32")]
        graph = check_graph(graph_from_dict(blob["graph"]), dt)
        schedule = Schedule.from_dict(blob["schedule"])
        if saved == backend:
            check_schedule(schedule, _expected_schedule(graph, backend))
        peaks = _membrane_peaks(blob.get("backend_state"))
    except (KeyError, TypeError, ValueError, AttributeError, IndexError) as exc:
        raise ValueError(f"{path}: damaged spikeconverter network file ({exc})") from None
    if backend == "lava":
        from spikeconverter.converters.lava_backend import LavaNetwork

        return LavaNetwork(graph, schedule if saved == "lava" else None,
                           membrane_peaks=peaks, margin=float(opts.get("margin", 0.5)))
    if saved != "norse":
        schedule = _expected_schedule(graph, "norse")
    return SpikingNetwork(graph, schedule, mode=mode or opts.get("mode", "fused"), dtype=dt)


def _expected_schedule(graph: Graph, backend: str) -> Schedule:
    """The schedule a backend computes for ``graph`` (what a saved one must equal)."""
    if backend == "lava":
        from spikeconverter.converters.to_lava.timing import lava_schedule

        return lava_schedule(graph)
    from spikeconverter.converters.schedule import compute_schedule

    return compute_schedule(graph, hop_latency=0)


def _membrane_peaks(state: Any) -> dict[str, float] | None:
    """The Lava backend's saved membrane peaks, checked: names to finite numbers >= 0."""
    if state is None:
        return None
    if not isinstance(state, dict):
        raise ValueError(f"backend_state must be a dict, got {type(state).__name__}")
    peaks = state.get("membrane_peaks")
    if peaks is None:
        return None
    if not isinstance(peaks, dict) or not all(
            isinstance(k, str) and isinstance(v, (int, float)) and np.isfinite(v) and v >= 0
            for k, v in peaks.items()):
        raise ValueError("backend_state['membrane_peaks'] must map names to finite numbers "
                         ">= 0")
    return {k: float(v) for k, v in peaks.items()}
