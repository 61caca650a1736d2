"""What a network file keeps for Lava: the fixed-point calibration, tied to the graph it fits.

The membrane peaks of the fixed-point calibration
(:func:`~spikeconverter.converters.to_lava.fixed_point.membrane_peaks`) and the margin are
kept in ``graph.meta`` (plain tuples, so every network file carries them, whichever
backend wrote it) together with a fingerprint of the graph's values: a graph changed afterwards
(fine-tuned thresholds or weights) no longer matches and its stale peaks are ignored.
"""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np

from spikeconverter.converters.ir import Graph

__all__ = ["PEAKS_KEY", "graph_fingerprint", "stored_peaks", "store_peaks"]

PEAKS_KEY = "lava_membrane_peaks"
_PRINT_KEY = "lava_peaks_fingerprint"
_MARGIN_KEY = "lava_margin"


def _plain(value: Any) -> Any:
    """Lists as tuples, numpy scalars as Python numbers (a saved and loaded graph hashes the
    same as the original)."""
    if isinstance(value, (list, tuple)):
        return tuple(_plain(v) for v in value)
    if isinstance(value, np.generic):
        return value.item()
    return value


def _feed(h: Any, value: Any) -> None:
    if value is None:
        h.update(b"none")
    elif isinstance(value, np.ndarray):
        h.update(str(value.dtype).encode() + str(value.shape).encode())
        h.update(np.ascontiguousarray(value).tobytes())
    else:
        h.update(repr(_plain(value)).encode())


def graph_fingerprint(graph: Graph) -> str:
    """SHA-256 of everything that decides the network's values (structure, T, thresholds,
    weights, biases, attributes, k, rounding); not of ``meta``."""
    h = hashlib.sha256()
    _feed(h, (graph.input, graph.output, graph.rounding, float(graph.k)))
    for p in graph:
        _feed(h, (p.name, p.kind, tuple(p.shape), p.T, p.clip,
                  sorted((k, _plain(v)) for k, v in p.attrs.items())))
        _feed(h, np.asarray(p.theta, dtype=np.float64) if p.theta is not None else None)
        for e in p.edges:
            _feed(h, e.source)
            for o in e.ops:
                _feed(h, (o.kind, sorted((k, _plain(v)) for k, v in o.attrs.items())))
                for a in (o.weight, o.bias):
                    _feed(h, None if a is None else np.asarray(a, dtype=np.float64))
    return h.hexdigest()


def store_peaks(graph: Graph, peaks: dict[str, float], margin: float) -> None:
    """Keep ``peaks`` and ``margin`` in ``graph.meta`` with the graph's fingerprint."""
    graph.meta[PEAKS_KEY] = tuple((str(k), float(v)) for k, v in sorted(peaks.items()))
    graph.meta[_MARGIN_KEY] = float(margin)
    graph.meta[_PRINT_KEY] = graph_fingerprint(graph)


def stored_peaks(graph: Graph) -> tuple[dict[str, float] | None, str]:
    """The peaks kept in ``graph.meta`` and why they are (not) usable: ``(peaks, "")``,
    ``(None, reason)``."""
    raw = graph.meta.get(PEAKS_KEY)
    if raw is None:
        return None, "the network holds no fixed-point calibration (membrane peaks)"
    if graph.meta.get(_PRINT_KEY) != graph_fingerprint(graph):
        return None, ("the network's fixed-point calibration was measured on a different "
                      "version of it (thresholds or weights changed since)")
    try:
        return {str(k): float(v) for k, v in raw}, ""
    except (TypeError, ValueError):
        return None, "the network's fixed-point calibration is damaged"
