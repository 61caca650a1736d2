"""``convert`` and ``load``: trained model or network file -> a backend's spiking network.

The backend table is lazy: a built-in backend's module is imported the first time it is asked
for, so ``import spikeconverter`` never imports Lava. Third-party backends call
:func:`register_backend`.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable, Iterable
from typing import Any

import torch
import torch.nn as nn

from spikeconverter import coding
from spikeconverter.converters.calibrate import calibrate, iter_batches
from spikeconverter.converters.capture import capture
from spikeconverter.converters.correction import (
    WIDE_DRAW,
    WIDE_DRAW_T,
    chosen_settings,
    correct,
)
from spikeconverter.converters.norse_backend import MODES
from spikeconverter.converters.serialize import read
from spikeconverter.converters.validate import (
    check_batch_size,
    check_graph,
    check_T,
    check_T_per_layer,
)
from spikeconverter.devices import resolve_device

__all__ = ["BACKENDS", "convert", "load", "register_backend", "resolve_backend"]

#: Built-in backends, imported on first use: name -> module with ``build(graph, **options)``
#: and ``from_file(NetworkFile, **overrides)``.
BACKEND_MODULES = {
    "norse": "spikeconverter.converters.norse_backend",
    "lava": "spikeconverter.converters.lava_backend",
}
#: Backends resolved so far and those registered by :func:`register_backend`: name -> builder.
BACKENDS: dict[str, Callable[..., Any]] = {}
_LOADERS: dict[str, Callable[..., Any]] = {}


def register_backend(name: str, builder: Callable[..., Any],
                     loader: Callable[..., Any] | None = None) -> None:
    """Make ``convert(..., backend=name)`` call ``builder(graph, mode=..., dtype=...,
    calibration=..., progress=...)`` and, when ``loader`` is given, ``load(path,
    backend=name)`` call ``loader(network_file, **overrides)``
    (a :class:`~spikeconverter.converters.serialize.NetworkFile`)."""
    BACKENDS[name] = builder
    if loader is not None:
        _LOADERS[name] = loader


def _import_backend(name: str) -> None:
    if name in BACKENDS or name not in BACKEND_MODULES:
        return
    try:
        module = importlib.import_module(BACKEND_MODULES[name])
    except ImportError as exc:
        available = sorted(set(BACKENDS) | {"norse"})
        raise NotImplementedError(
            f"backend {name!r} is not available ({exc}); available: {', '.join(available)}"
        ) from exc
    register_backend(name, module.build, module.from_file)


def resolve_backend(name: str) -> Callable[..., Any]:
    """The builder ``build(graph, **options)`` of backend ``name`` (importing it on first use).

    Raises
    ------
    ValueError
        Unknown backend name.
    NotImplementedError
        A known backend whose dependencies are not installed (e.g. Lava).
    """
    _import_backend(name)
    if name not in BACKENDS:
        known = sorted(set(BACKENDS) | set(BACKEND_MODULES))
        raise ValueError(f"backend must be one of {known}, got {name!r}")
    return BACKENDS[name]


# kept for cli.py until it calls resolve_backend
_backend = resolve_backend


def load(path: str | os.PathLike, *, mode: str | None = None,
         dtype: torch.dtype | None = None, backend: str | None = None,
         device: torch.device | str | None = None,
         double_buffered: bool | None = None) -> Any:
    """Read a network written by a network's ``save`` and build it in a backend.

    Parameters
    ----------
    path : str or PathLike
        The file.
    mode, dtype : optional
        Override the simulation mode / precision it was saved with (Norse).
    backend : {"norse", "lava"}, optional
        Backend of the network returned; default: the one it was saved from. A network saved
        from one backend loads into the other (its schedule is recomputed for it).
    device : torch.device or str, optional
        Move a torch network (Norse) there (``"cpu"``, ``"cuda"``, ``"cuda:N"``).
    double_buffered : bool, optional
        Override the saved neuron option (one or two membrane banks; the schedule is
        recomputed).

    Raises
    ------
    ValueError
        The file is missing, corrupt, not a spikeconverter network, or of a newer version; or
        an unknown backend.
    """
    dev = resolve_device(device) if device is not None else None
    data = read(path)  # every value checked (validate.check_graph) before a backend builds
    name = backend or data.backend
    resolve_backend(name)
    if name not in _LOADERS:
        raise ValueError(f"backend {name!r} cannot load network files (registered without a "
                         "loader)")
    try:
        extra = {} if double_buffered is None else {"double_buffered": bool(double_buffered)}
        net = _LOADERS[name](data, mode=mode, dtype=dtype, **extra)
    except ValueError as exc:  # e.g. a T beyond the dtype's range, a forged schedule
        raise ValueError(f"{path}: {exc}") from None
    return _to_device(net, dev)


def _to_device(net: Any, device: torch.device | None) -> Any:
    """A torch network moved to ``device``; other backends' networks cannot move."""
    if device is None:
        return net
    if isinstance(net, nn.Module):
        return net.to(device)
    if device.type != "cpu":
        raise ValueError(f"a {type(net).__name__} runs on the CPU only; drop device={device}")
    return net


def convert(
    model: nn.Module,
    calibration: Any,
    T: int = 16,
    *,
    backend: str = "norse",
    calibration_mode: str | None = None,
    threshold_granularity: str | None = None,
    correction: str | None = None,
    rounding: str = "nearest",
    percentile: float = 99.99,
    headroom: float = 1.0,
    input_encoding: str = "analog",
    mode: str = "fused",
    dtype: torch.dtype = torch.float32,
    T_per_layer: dict[str, int] | None = None,
    k: float = 2.0,
    progress: bool = True,
    input_shape: tuple[int, ...] | None = None,
    batch_size: int = 64,
    device: torch.device | str | None = None,
    double_buffered: bool = False,
) -> Any:
    """Convert a trained model into a spiking network of iLIF neurons.

    Parameters
    ----------
    model : torch.nn.Module
        Trained model, traceable by ``torch.fx`` (torchvision classifiers are).
    calibration : torch.Tensor or iterable
        Typical inputs: a tensor ``(N, ...)`` or an iterable of batches or ``(x, y)`` pairs.
    T : int
        Spike-train length of every layer (its generate window; accumulate windows follow).
    backend : str
        ``"norse"`` (a :class:`SpikingNetwork`, an ``nn.Module``) or ``"lava"`` when installed.
    calibration_mode : {"max", "percentile", "optimal"}, optional
        Threshold choice (see :func:`calibrate`).
    threshold_granularity : {"layer", "channel"}, optional
        One threshold per population or one per channel.
    correction : str, optional
        Post-training correction against the ANN, layer by layer
        (:func:`~spikeconverter.converters.correction.correct`): one of ``CORRECTIONS``,
        "both", "network", "refit", "reconstruct", "block", "bias", "threshold", "none".
        Left out, these three take the best measured setting for ``T``
        (:func:`~spikeconverter.converters.correction.default_settings`: per-channel ``max``
        thresholds with the block reconstruction at T = 2 and 3 (minutes per conversion), and
        at T = 4 with 600 steps per block when ``calibration`` holds at least 1,024 images;
        per-layer ones with both corrections up to T = 8 otherwise, plain per-layer ``max``
        above). Both granularities also run in the
        Lava backend's fixed point (per-neuron ``vth``).
    rounding : {"nearest", "floor"}
        Quantisation of each layer's code; ``"nearest"`` (half an LSB added before generating)
        is unbiased and holds up at small T.
    percentile, headroom : float
        For ``"percentile"``/``"max"`` thresholds.
    input_encoding : {"analog", "spikes"}
        Input as an analog current into the first layer, or as signed spike trains.
    mode : {"fused", "frame", "plugin"}
        Norse simulation mode (all exact and spike-for-spike equal; ``"fused"`` is fastest,
        ``"plugin"`` steps the plugin's ILIF modules and is slowest).
    dtype : torch.dtype
        Simulation precision.
    T_per_layer : dict of str to int, optional
        Train length per population name (``net.graph.populations``), others use ``T``.
    k : float
        Inverse leak (2 gives the binary code).
    progress : bool
        Progress bar during calibration.
    input_shape : tuple of int, optional
        Per-sample input shape, when it should not be taken from the calibration data.
    batch_size : int
        Calibration batch size when ``calibration`` is one tensor.
    device : torch.device or str, optional
        Where calibration runs and the network lives (``"cpu"``, ``"cuda"``, ``"cuda:N"``;
        default: the CPU). Checked first.
    double_buffered : bool
        Neurons with two membrane banks (beyond the paper): each population accumulates the
        next sample while it generates this one, so a stream takes a sample every ``T`` steps
        instead of ``2 T``, with the same logits; the neuron state doubles. Saved with the
        network (its schedule). Norse: :meth:`SpikingNetwork.stream`; Lava: ``lnet.run``.

    Returns
    -------
    SpikingNetwork (Norse) or the backend's network
        With ``.graph``, ``.schedule``, ``.stats`` (after a call) and ``.save(path)``.

    Raises
    ------
    ValueError
        Bad arguments (T < 1, T beyond the longest train exact in the simulation's dtype --
        24 in float32, 53 in float64 and Lava --, unknown mode, ``T_per_layer`` naming a
        population without a train of its own, ``batch_size`` < 1), empty or mixed-shape
        calibration batches, NaN/inf in a calibration batch (named), NaN weights. The values
        are checked by :mod:`spikeconverter.converters.validate`, as :func:`load` checks them.
    ConversionError
        Unsupported operation or untraceable model (names the node).
    """
    dev = resolve_device(device)
    coding.validate_code_params(k=k, rounding=rounding)
    if not isinstance(double_buffered, bool):
        raise ValueError(f"double_buffered must be True or False, got {double_buffered!r}")
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    build = resolve_backend(backend)
    # the longest exact train depends on the simulation's precision (Lava runs float64)
    sim_dtype = torch.float64 if backend == "lava" else dtype
    T = check_T(T, dtype=sim_dtype)
    check_batch_size(batch_size)
    # read once: a one-shot iterator must not be consumed twice
    first, batches, _ = iter_batches(calibration, batch_size)
    example = first[:2]
    if input_shape is not None:
        if tuple(input_shape) != tuple(first.shape[1:]):
            raise ValueError(f"input_shape {tuple(input_shape)} does not match the calibration "
                             f"data's per-sample shape {tuple(first.shape[1:])}")
    graph = capture(model, example)
    graph.rounding, graph.k = rounding, float(k)
    graph.populations[graph.input].attrs["encoding"] = input_encoding
    check_T_per_layer(graph, T_per_layer, sim_dtype)  # before the calibration pass
    # counted only where the best setting depends on it (the count reads the data)
    run = chosen_settings(T, _images_up_to(batches, WIDE_DRAW) if T == WIDE_DRAW_T else None,
                          calibration_mode=calibration_mode,
                          threshold_granularity=threshold_granularity, correction=correction)
    work = torch.float64 if dtype == torch.float64 else torch.float32
    calibrate(graph, batches, T, mode=run["calibration_mode"],
              granularity=run["threshold_granularity"],
              percentile=percentile, headroom=headroom, T_per_layer=T_per_layer,
              input_encoding=input_encoding, batch_size=batch_size, progress=progress,
              dtype=work, device=dev)
    correct(graph, batches, method=run["correction"], batch_size=batch_size,
            search_images=run["search_images"], dtype=work, device=dev, progress=progress,
            reconstruct_steps=run["reconstruct_steps"])
    check_graph(graph, sim_dtype)  # T_per_layer too: every value the network will hold
    # backends that need the calibration data again (Lava's fixed point) take it; Norse ignores it
    # passed only when set: a third-party builder need not know the option
    extra = {"double_buffered": True} if double_buffered else {}
    net = build(graph, mode=mode, dtype=dtype, calibration=batches, progress=progress, **extra)
    return _to_device(net, dev if device is not None else None)


def _images_up_to(batches: Iterable[torch.Tensor], n: int) -> int:
    """How many inputs ``batches`` hold, counted only up to the batch that reaches ``n`` (a
    whole data set passed as calibration data is not read through for it)."""
    seen = 0
    for batch in batches:
        seen += len(batch)
        if seen >= n:
            break
    return seen
