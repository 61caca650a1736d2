"""The values a converted network may hold: one validation for ``convert`` and ``load``.

Structure (edges in topological order, one edge into a max pool, ...) is
:meth:`Graph.validate`'s business; this module checks the *values*, so that whatever a file says,
a network is either refused with a ValueError naming the culprit or it computes the right thing:

* the code: ``k`` in (1, 2], ``rounding`` known, every threshold finite and > 0;
* the train lengths: integers in ``[1, max_exact_T(dtype)]``. A neuron's train of ``T`` spikes
  is an integer code of ``T`` bits (the fused Norse mode keeps it packed in one number of the
  simulation's dtype), so it is exact only while ``2**T`` fits the dtype's mantissa: 24 bits in
  float32, 53 in float64. Longer trains would round silently (or overflow), so they are refused;
* shapes: positive integers, at most three per-sample dimensions, bounded sizes, and every
  edge's ops map its source's shape onto its target's -- checked on PyTorch's ``meta`` device,
  which computes shapes without allocating memory, so a hostile file cannot make the loader
  allocate what its fields claim;
* ``T_per_layer`` naming only populations that have a train length of their own;
* saved options and schedules well-formed.

Every function is pure (reads its arguments, raises or returns) and imports no backend.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from spikeconverter import coding
from spikeconverter.converters.ir import NEURON_KINDS, Graph, Op, Population, apply_op

__all__ = [
    "DTYPES",
    "MAX_NETWORK_NEURONS",
    "MAX_POPULATION_NEURONS",
    "check_batch",
    "check_batch_size",
    "check_graph",
    "check_options",
    "check_schedule",
    "check_T",
    "check_T_per_layer",
    "max_exact_T",
    "own_T",
]

#: Simulation dtypes by the name a network file stores.
DTYPES = {"float32": torch.float32, "float64": torch.float64}
#: Neurons of one population, per sample (VGG-16 at 224 px has 3.2 million in its largest).
MAX_POPULATION_NEURONS = 2**26
#: Neurons of a whole network, per sample.
MAX_NETWORK_NEURONS = 2**28


def max_exact_T(dtype: torch.dtype = torch.float32) -> int:
    """The longest spike train that is exact in ``dtype``: its mantissa bits (24 or 53).

    A ``T``-spike train is the ``T``-bit integer code of its value; every code up to
    ``2**T - 1`` is represented exactly only while ``T`` does not exceed the mantissa.
    """
    if dtype not in DTYPES.values():
        raise ValueError(f"dtype must be one of torch.float32, torch.float64, got {dtype!r}")
    return int(-math.log2(torch.finfo(dtype).eps)) + 1


def check_T(T: Any, what: str = "T", dtype: torch.dtype = torch.float32) -> int:
    """``T`` as an int; ValueError unless it is an integer in ``[1, max_exact_T(dtype)]``."""
    if isinstance(T, bool) or not isinstance(T, (int, np.integer)) or T < 1:
        raise ValueError(f"{what} must be an integer >= 1, got {T!r}")
    limit = max_exact_T(dtype)
    if T > limit:
        name = str(dtype).removeprefix("torch.")
        hint = ("use dtype=torch.float64 (exact up to T=53) or a smaller T"
                if limit < max_exact_T(torch.float64) else "use a smaller T")
        raise ValueError(
            f"{what}={int(T)} is too long: a train of T spikes is a T-bit integer code, exact "
            f"in {name} only up to T={limit} (its mantissa); longer trains would round or "
            f"overflow silently; {hint}"
        )
    return int(T)


def check_batch_size(batch_size: Any) -> int:
    """``batch_size`` as an int; ValueError unless it is an integer >= 1."""
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) \
            or batch_size < 1:
        raise ValueError(f"batch_size must be an integer >= 1, got {batch_size!r}")
    return int(batch_size)


def check_batch(x: Any, what: str, shape: tuple[int, ...] | None = None) -> torch.Tensor:
    """A batch of inputs ``(B, *shape)`` with ``B >= 1`` and only finite values.

    Parameters
    ----------
    x : Any
        The batch.
    what : str
        How the error names it, e.g. ``"calibration batch 3"`` or ``"the input"``.
    shape : tuple of int, optional
        The per-sample shape it must have (the network's input shape, or the first batch's:
        all calibration batches must have the same).

    Raises
    ------
    ValueError
        Not a tensor, empty, of another per-sample shape, or holding NaN/inf (counted).
    """
    shape = None if shape is None else tuple(shape)
    want = "(B, ...)" if shape is None else f"(B, {', '.join(map(str, shape))})"
    if not isinstance(x, torch.Tensor):
        raise ValueError(f"{what} must be a tensor {want}, got {type(x).__name__}")
    if x.ndim < 2 or x.shape[0] == 0 or (shape is not None and tuple(x.shape[1:]) != shape):
        raise ValueError(f"{what} must have shape {want} with B >= 1 samples, got "
                         f"{tuple(x.shape)}")
    if x.is_floating_point() or x.is_complex():
        bad = int((~torch.isfinite(x)).sum())
        if bad:
            nan = int(torch.isnan(x).sum())
            raise ValueError(f"{what} holds {bad} non-finite values ({nan} NaN, {bad - nan} "
                             "inf); remove or repair those samples")
    return x


# --------------------------------------------------------------------------------------------
# the graph


def own_T(pop: Population) -> bool:
    """Whether ``pop`` has a train length of its own (relu, signed, a spike-encoded input).

    A max pool emits its source's train; the readout only accumulates; an analog input
    delivers its value in one step.
    """
    return pop.kind in NEURON_KINDS or (
        pop.kind == "input" and pop.attrs.get("encoding") == "spikes")


def check_T_per_layer(graph: Graph, T_per_layer: Mapping[str, Any] | None,
                      dtype: torch.dtype = torch.float32) -> dict[str, int]:
    """``T_per_layer`` as ``{name: T}``; every name must be a population with its own ``T``.

    Raises
    ------
    ValueError
        Not a mapping, an unknown name, a population without a train length of its own (max
        pooling, readout, analog input: the reason and the alternative are given), a bad T.
    """
    if T_per_layer is None:
        return {}
    if not isinstance(T_per_layer, Mapping):
        raise ValueError(f"T_per_layer must be a dict of population name to T, got "
                         f"{type(T_per_layer).__name__}")
    own = [p.name for p in graph if own_T(p)]
    out = {}
    for name, t in T_per_layer.items():
        if name not in graph.populations:
            raise ValueError(f"T_per_layer names {name!r}, which is not a population; "
                             f"populations with a T of their own: {', '.join(own)}")
        pop = graph[name]
        if pop.kind == "maxpool":
            raise ValueError(f"T_per_layer names max pooling population {name!r}: it emits "
                             f"its source's train; set T_per_layer[{pop.edges[0].source!r}]")
        if pop.kind == "readout":
            raise ValueError(f"T_per_layer names the readout {name!r}: it only accumulates "
                             "and has no train length")
        if not own_T(pop):
            raise ValueError(f"T_per_layer names the analog input {name!r}: it delivers its "
                             "value in one step; convert with input_encoding='spikes' to give "
                             "it a train")
        out[name] = check_T(t, f"T_per_layer[{name!r}]", dtype)
    return out


def _check_shape(pop: Population) -> int:
    shape = pop.shape
    if not (isinstance(shape, tuple) and 1 <= len(shape) <= 3 and all(
            isinstance(n, (int, np.integer)) and not isinstance(n, bool) and n >= 1
            for n in shape)):
        raise ValueError(f"population {pop.name!r}: shape must be 1 to 3 positive integers "
                         f"(C, H, W) or (F,), got {shape!r}")
    size = math.prod(int(n) for n in shape)
    if size > MAX_POPULATION_NEURONS:
        raise ValueError(f"population {pop.name!r}: shape {shape} has {size} neurons per "
                         f"sample, more than the {MAX_POPULATION_NEURONS} supported")
    return size


def _check_theta(pop: Population) -> None:
    th = pop.theta
    if isinstance(th, torch.Tensor):
        th = th.detach().cpu().numpy()
    arr = np.asarray(th) if isinstance(th, (int, float, np.ndarray, np.floating)) \
        and not isinstance(th, bool) else None
    if arr is None or arr.dtype.kind not in "iuf":
        raise ValueError(f"population {pop.name!r}: theta must be a number or an array, got "
                         f"{type(pop.theta).__name__}")
    if arr.ndim > 1 or (arr.ndim == 1 and arr.size not in (1, pop.shape[0])):
        raise ValueError(f"population {pop.name!r}: theta must be a scalar or one value per "
                         f"channel ({pop.shape[0]}), got shape {arr.shape}")
    if arr.size == 0 or not np.all(np.isfinite(arr)) or not np.all(arr > 0):
        raise ValueError(f"population {pop.name!r}: theta must be finite and > 0, got "
                         f"{np.array2string(arr, threshold=6)}")


def _check_calibration(graph: Graph, pop: Population, dtype: torch.dtype) -> None:
    """theta and T of one population, as calibration sets them."""
    if pop.kind == "readout":
        return
    if pop.kind == "input" and not own_T(pop):
        if pop.T != 1 or pop.theta is None or np.any(np.asarray(pop.theta) != 1):
            raise ValueError(f"analog input {pop.name!r} must have T=1 and theta=1, got "
                             f"T={pop.T!r}, theta={pop.theta!r}")
        return
    check_T(pop.T, f"population {pop.name!r}: T", dtype)
    _check_theta(pop)
    if pop.kind == "maxpool":
        src = graph[pop.edges[0].source]
        if pop.T != src.T or not np.array_equal(np.asarray(pop.theta), np.asarray(src.theta)):
            raise ValueError(f"max pooling population {pop.name!r} must have its source "
                             f"{src.name!r}'s T and theta")
    if pop.clip is not None and not (isinstance(pop.clip, (int, float)) and
                                     math.isfinite(pop.clip) and pop.clip > 0):
        raise ValueError(f"population {pop.name!r}: clip must be finite and > 0, got "
                         f"{pop.clip!r}")


def _meta_edge(graph: Graph, pop: Population, i: int) -> None:
    """Apply edge ``i``'s ops to a source-shaped tensor on the meta device (no memory)."""
    e = pop.edges[i]
    x = torch.empty((1, *graph[e.source].shape), device="meta", dtype=torch.float64)
    for op in e.ops:
        x = _meta_op(op, x, e.source, pop.name)
    if tuple(x.shape[1:]) != tuple(pop.shape):
        raise ValueError(f"edge {e.source!r} -> {pop.name!r} produces shape "
                         f"{tuple(x.shape[1:])}, but the population has shape {pop.shape}")


def _meta_op(op: Op, x: torch.Tensor, source: str, target: str) -> torch.Tensor:
    for name in ("weight", "bias"):
        arr = getattr(op, name)
        if arr is not None and not (isinstance(arr, np.ndarray) and arr.dtype.kind in "f"):
            raise ValueError(f"{name} of {op.kind} op on edge {source!r} -> {target!r} must be "
                             f"a float array, got {type(arr).__name__}")
    meta = Op(op.kind, _meta_array(op.weight), _meta_array(op.bias), op.attrs, op.origin)
    try:
        y = apply_op(meta, x)
    except Exception as exc:  # noqa: BLE001 - any op failure is a bad file or graph
        raise ValueError(f"{op.kind} op on edge {source!r} -> {target!r} does not apply to its "
                         f"input of shape {tuple(x.shape[1:])}: {exc}") from None
    if y.ndim < 2 or y[0].numel() > MAX_POPULATION_NEURONS:
        raise ValueError(f"{op.kind} op on edge {source!r} -> {target!r} gives shape "
                         f"{tuple(y.shape[1:])}, beyond the supported size")
    return y


def _meta_array(arr: np.ndarray | None) -> torch.Tensor | None:
    return None if arr is None else torch.empty(arr.shape, device="meta", dtype=torch.float64)


def check_graph(graph: Graph, dtype: torch.dtype = torch.float32, *,
                calibrated: bool = True) -> Graph:
    """Check every value of ``graph`` (see the module docstring); return it.

    Parameters
    ----------
    graph : Graph
        The network.
    dtype : torch.dtype
        Simulation precision; sets the longest exact train (:func:`max_exact_T`).
    calibrated : bool
        Also require thresholds and train lengths (as calibration sets them).

    Raises
    ------
    ValueError
        The first bad value, with the population or edge that holds it. Nothing the graph's
        fields claim is allocated before its size has been checked.
    """
    if not isinstance(graph.k, (int, float)) or isinstance(graph.k, bool):
        raise ValueError(f"k must be a number in (1, 2], got {graph.k!r}")
    coding.validate_code_params(k=float(graph.k), rounding=graph.rounding)
    graph.validate()
    total = 0
    for pop in graph:
        total += _check_shape(pop)
        if total > MAX_NETWORK_NEURONS:
            raise ValueError(f"the network has more than {MAX_NETWORK_NEURONS} neurons per "
                             f"sample (at population {pop.name!r})")
        if pop.kind == "maxpool":  # its one edge carries the source's train unchanged
            _meta_max_pool(graph, pop)
        else:
            for i in range(len(pop.edges)):
                _meta_edge(graph, pop, i)
        if calibrated:
            _check_calibration(graph, pop, dtype)
    return graph


def _meta_max_pool(graph: Graph, pop: Population) -> None:
    a = pop.attrs
    x = torch.empty((1, *graph[pop.edges[0].source].shape), device="meta")
    try:
        y = torch.nn.functional.max_pool2d(x, a["kernel_size"], a["stride"], a["padding"],
                                           a.get("dilation", 1), a.get("ceil_mode", False))
    except Exception as exc:  # noqa: BLE001 - any failure is a bad file or graph
        raise ValueError(f"max pooling population {pop.name!r}: attributes {a!r} do not "
                         f"apply to its source's shape: {exc}") from None
    if tuple(y.shape[1:]) != tuple(pop.shape):
        raise ValueError(f"max pooling population {pop.name!r} has shape {pop.shape}, but its "
                         f"pooling gives {tuple(y.shape[1:])}")


# --------------------------------------------------------------------------------------------
# saved options and schedule


def check_options(options: Any, backends: tuple[str, ...] | None = None) -> dict[str, Any]:
    """The ``options`` of a network file as a dict; ValueError naming a malformed entry.

    Known keys: ``backend`` (str, one of ``backends`` when given), ``mode`` (str; the backend
    checks its value), ``dtype`` (a name in :data:`DTYPES`), ``margin`` (number in (0, 1]).
    """
    if not isinstance(options, Mapping):
        raise ValueError(f"options must be a dict, got {type(options).__name__}")
    opts = dict(options)
    for key in ("backend", "mode", "dtype"):
        if key in opts and not isinstance(opts[key], str):
            raise ValueError(f"options[{key!r}] must be a string, got {opts[key]!r}")
    if backends is not None and opts.get("backend", "norse") not in backends:
        raise ValueError(f"options['backend'] must be one of {list(backends)}, got "
                         f"{opts['backend']!r}")
    if "dtype" in opts and opts["dtype"] not in DTYPES:
        raise ValueError(f"options['dtype'] must be one of {list(DTYPES)}, got "
                         f"{opts['dtype']!r}")
    if "margin" in opts:
        m = opts["margin"]
        if isinstance(m, bool) or not isinstance(m, (int, float)) or not 0 < m <= 1:
            raise ValueError(f"options['margin'] must be a number in (0, 1], got {m!r}")
    return opts


def check_schedule(saved: Any, expected: Any) -> None:
    """ValueError unless a saved schedule equals the one the graph gives (``expected``).

    A schedule follows from the graph; a file whose schedule differs was damaged or forged
    (offsets and window lengths size the simulation's buffers).
    """
    a, b = saved.to_dict(), expected.to_dict()
    for key in ("offset", "t_acc", "t_gen", "latency_steps", "steps_per_sample"):
        if a[key] != b[key]:
            raise ValueError(f"the saved schedule's {key} does not match the network's "
                             f"(saved {a[key]!r}, computed {b[key]!r})")
    for key in ("delay", "arrival"):
        if sorted(map(tuple, a[key])) != sorted(map(tuple, b[key])):
            raise ValueError(f"the saved schedule's {key} does not match the network's")
