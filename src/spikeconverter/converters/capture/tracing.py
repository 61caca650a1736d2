"""Tracing: the model as a ``torch.fx`` graph, BatchNorm folded, each node's shape recorded."""

from __future__ import annotations

from typing import Any

import torch
import torch.fx as fx
import torch.nn as nn
from torch.nn.utils.fusion import fuse_conv_bn_eval, fuse_linear_bn_eval

from spikeconverter.converters.capture.errors import ConversionError

__all__ = ["Recorder", "fold_batchnorm", "trace"]


def trace(model: nn.Module) -> fx.GraphModule:
    """``torch.fx.symbolic_trace`` of ``model`` (recording each node's source location for
    error messages), failing with a :class:`ConversionError`."""
    try:
        tracer = fx.Tracer()
        tracer.record_stack_traces = True
        graph = tracer.trace(model)
        return fx.GraphModule(tracer.root, graph, type(model).__name__)
    except Exception as exc:  # noqa: BLE001 - fx raises many kinds (TraceError, TypeError, ...)
        raise ConversionError(
            f"{type(model).__name__} could not be traced by torch.fx ({type(exc).__name__}: "
            f"{exc}). Conversion needs a model whose forward has no data-dependent control flow "
            "(if/for on tensor values); move such logic out of forward or wrap it in a leaf "
            "module."
        ) from exc


class Recorder(fx.Interpreter):
    """Runs the traced model once, keeping each node's shape (tensors) or value (the rest).

    ``values[name]`` is ``("tensor", shape)`` (shape with the batch dimension) or
    ``("value", value)``.
    """

    def __init__(self, gm: fx.GraphModule):
        super().__init__(gm)
        self.values: dict[str, Any] = {}

    def run_node(self, n: fx.Node) -> Any:
        """Run ``n`` and record what it gave."""
        out = super().run_node(n)
        if isinstance(out, torch.Tensor):
            self.values[n.name] = ("tensor", tuple(out.shape))
        else:
            self.values[n.name] = ("value", out)
        return out


def _set_module(gm: fx.GraphModule, target: str, module: nn.Module) -> None:
    parent_name, _, name = target.rpartition(".")
    parent = gm.get_submodule(parent_name) if parent_name else gm
    setattr(parent, name, module)


def _fused(gm: fx.GraphModule, n: fx.Node, calls: dict[str, int]) -> nn.Module | None:
    """The conv/linear before BatchNorm node ``n`` with the BatchNorm folded in, if it has one.

    Only a layer called once and used by nothing else may absorb the BatchNorm: folding changes
    the layer for every caller.
    """
    bn = gm.get_submodule(n.target)
    if not isinstance(bn, (nn.BatchNorm1d, nn.BatchNorm2d)) or not bn.track_running_stats:
        return None
    prev = n.args[0]
    if not (isinstance(prev, fx.Node) and prev.op == "call_module" and len(prev.users) == 1
            and calls[prev.target] == 1):
        return None
    layer = gm.get_submodule(prev.target)
    if isinstance(layer, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d):
        return fuse_conv_bn_eval(layer, bn)
    if isinstance(layer, nn.Linear) and isinstance(bn, nn.BatchNorm1d):
        return fuse_linear_bn_eval(layer, bn)
    return None


def fold_batchnorm(gm: fx.GraphModule) -> None:
    """Fold every BatchNorm whose input is a conv/linear used nowhere else into it (in place)."""
    calls: dict[str, int] = {}
    for n in gm.graph.nodes:
        if n.op == "call_module":
            calls[n.target] = calls.get(n.target, 0) + 1
    for n in list(gm.graph.nodes):
        if n.op != "call_module":
            continue
        fused = _fused(gm, n, calls)
        if fused is None:
            continue
        prev = n.args[0]
        _set_module(gm, prev.target, fused)
        n.replace_all_uses_with(prev)
        gm.graph.erase_node(n)
    gm.graph.lint()
    gm.recompile()
