"""The capture pipeline: check the model, trace it, fold BatchNorm, visit, self-check."""

from __future__ import annotations

import copy
import math
import warnings

import torch
import torch.nn as nn

from spikeconverter.converters.capture.errors import ConversionError
from spikeconverter.converters.capture.handlers import OPS
from spikeconverter.converters.capture.tracing import fold_batchnorm, trace
from spikeconverter.converters.capture.visitor import Capture
from spikeconverter.converters.ir import Graph

__all__ = ["capture"]


def capture(
    model: nn.Module,
    example_input: torch.Tensor,
    *,
    check: bool = True,
    rtol: float | None = None,
) -> Graph:
    """Trace ``model`` into the graph IR (uncalibrated: no thresholds yet).

    Parameters
    ----------
    model : torch.nn.Module
        A trained model traceable by ``torch.fx`` (torchvision models are). It is not modified;
        a model in training mode is captured in eval mode, with a warning.
    example_input : torch.Tensor
        A batch ``(B, ...)`` of typical inputs: it fixes the per-sample input shape and drives
        the self-check.
    check : bool
        Compare the IR's float forward with the model's output on ``example_input``.
    rtol : float, optional
        Tolerance of the check relative to the largest output magnitude (default 1e-9 for
        float64 models, 1e-4 otherwise; BatchNorm folding changes the float rounding).

    Returns
    -------
    Graph
        Populations in topological order; ``meta`` holds the model's class name and input shape.

    Raises
    ------
    ConversionError
        The model cannot be traced, holds an unsupported operation (the message names the fx
        node, its op and target, and lists what is supported), or the self-check fails.
    ValueError
        Parameters with NaN/inf (the message names the layer) or a bad example input.
    """
    _check_arguments(model, example_input)
    model = copy.deepcopy(model).eval()
    dtype = next((p.dtype for p in model.parameters() if p.is_floating_point()), torch.float32)
    example_input = example_input.to(dtype)
    gm = trace(model)
    fold_batchnorm(gm)
    cap = Capture(gm, example_input, OPS)
    if not isinstance(cap.output, torch.Tensor):
        raise ConversionError("the model must return one tensor (the logits)")
    graph = cap.run()
    graph.meta.update(model=type(model).__name__, input_shape=tuple(example_input.shape[1:]),
                      dtype=str(dtype).removeprefix("torch."))
    graph.validate()
    if check:
        tol = rtol if rtol is not None else (1e-9 if dtype == torch.float64 else 1e-4)
        _self_check(graph, model, example_input, tol)
    return graph


def _check_arguments(model: nn.Module, example_input: torch.Tensor) -> None:
    """Fail on a non-module, a bad input, or NaN/inf parameters; warn on training mode."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if not isinstance(example_input, torch.Tensor) or example_input.ndim < 2:
        raise ValueError("example_input must be a tensor batch (B, ...) with at least 2 dims")
    if model.training:
        warnings.warn(f"{type(model).__name__} is in training mode; converting it in eval mode "
                      "(BatchNorm running statistics, Dropout off)", stacklevel=3)
    for name, p in list(model.named_parameters()) + list(model.named_buffers()):
        # a sum is NaN/inf when any entry is; only then look closer (sums may overflow)
        if p.is_floating_point() and not math.isfinite(float(p.detach().sum())) and not bool(
                torch.isfinite(p).all()):
            raise ValueError(f"parameter {name!r} of {type(model).__name__} contains NaN or inf")


def _self_check(graph: Graph, model: nn.Module, example_input: torch.Tensor,
                tol: float) -> None:
    """Fail unless the IR's float forward matches ``model`` to ``tol`` x its largest output."""
    with torch.no_grad():
        ours = graph.forward(example_input, quantized=False)[graph.output]
        ref = model(example_input)
    scale = float(ref.abs().max()) or 1.0
    err = float((ours - ref).abs().max())
    if not err <= tol * scale:
        raise ConversionError(
            f"capture self-check failed: the IR's output differs from "
            f"{type(model).__name__}'s by {err:.3g} (max |output| {scale:.3g}); the model "
            "does something the capture does not represent"
        )
