"""Recognising ReLU-like activations (ReLU, ReLU6, Hardtanh(0, m), clamp(min=0)) in fx nodes.

Each becomes a ``"relu"`` population; the upper bound, if any, becomes its ``clip``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.fx as fx
import torch.nn as nn
import torch.nn.functional as F

__all__ = ["non_relu_activation", "non_relu_reason", "relu_clip"]

_RELU_FUNCTIONS = {F.relu, torch.relu, torch.relu_, F.relu6, F.hardtanh, torch.clamp,
                   torch.clip, torch.clamp_min}
_RELU_METHODS = {"relu", "relu_", "clamp", "clamp_", "clamp_min", "clamp_min_", "clip"}


_NON_RELU_MODULES = (nn.SiLU, nn.GELU, nn.Hardswish, nn.Hardsigmoid, nn.Sigmoid, nn.Tanh,
                     nn.ELU, nn.SELU, nn.CELU, nn.Mish, nn.LeakyReLU, nn.PReLU, nn.Softplus,
                     nn.Softsign, nn.Tanhshrink, nn.LogSigmoid, nn.RReLU, nn.GLU, nn.Hardtanh)
_NON_RELU_FUNCTIONS = {F.silu: "silu", F.gelu: "gelu", F.hardswish: "hardswish",
                       F.hardsigmoid: "hardsigmoid", torch.sigmoid: "sigmoid",
                       F.sigmoid: "sigmoid", torch.tanh: "tanh", F.tanh: "tanh", F.elu: "elu",
                       F.selu: "selu", F.celu: "celu", F.mish: "mish", F.leaky_relu: "leaky_relu",
                       F.softplus: "softplus", F.logsigmoid: "logsigmoid", F.glu: "glu",
                       F.hardtanh: "hardtanh", torch.clamp: "clamp", torch.clip: "clip"}
_NON_RELU_METHODS = {"sigmoid", "sigmoid_", "tanh", "tanh_", "clamp", "clamp_", "clip"}


def non_relu_activation(node: fx.Node, gm: fx.GraphModule) -> str | None:
    """The name of the activation ``node`` computes if it is one iLIF cannot represent (called
    after :func:`relu_clip` said it is no ReLU-like one), else None."""
    if node.op == "call_module":
        m = gm.get_submodule(node.target)
        return type(m).__name__ if isinstance(m, _NON_RELU_MODULES) else None
    if node.op == "call_function":
        return _NON_RELU_FUNCTIONS.get(node.target)
    if node.op == "call_method" and node.target in _NON_RELU_METHODS:
        return node.target.rstrip("_")
    return None


def non_relu_reason(name: str) -> str:
    """Why a non-ReLU activation blocks conversion, and what to do instead."""
    return (f"{name} is not a ReLU-family activation: iLIF neurons represent ReLU-family "
            f"activations (ReLU, ReLU6, clipped ReLU) exactly, and {name} has no exact spiking "
            f"form; retrain the model with ReLU (or ReLU6) in place of {name}, then convert it")


def relu_clip(node: fx.Node, gm: fx.GraphModule,
              value: Callable[[Any], Any]) -> float | None | bool:
    """Upper clip if ``node`` is a ReLU-like activation (None: no clip), else False.

    Parameters
    ----------
    node : torch.fx.Node
        The node to look at.
    gm : torch.fx.GraphModule
        Its graph module (for ``call_module`` nodes).
    value : callable
        Concrete value of a non-tensor argument (bounds may be computed in the graph).
    """
    if node.op == "call_module":
        return _module_clip(gm.get_submodule(node.target))
    if node.op == "call_function" and node.target in _RELU_FUNCTIONS:
        if node.target in (F.relu, torch.relu, torch.relu_):
            return None
        if node.target is F.relu6:
            return 6.0
        return _clamp_bounds(node, value)
    if node.op == "call_method" and node.target in _RELU_METHODS:
        return None if node.target.startswith("relu") else _clamp_bounds(node, value)
    return False


def _module_clip(m: nn.Module) -> float | None | bool:
    if isinstance(m, nn.ReLU6):
        return 6.0
    if isinstance(m, nn.ReLU):
        return None
    if isinstance(m, nn.Hardtanh) and m.min_val == 0.0:
        return float(m.max_val)
    return False


def _clamp_bounds(node: fx.Node, value: Callable[[Any], Any]) -> float | None | bool:
    """The upper bound of a clamp/hardtanh with lower bound 0 (None: none), else False."""
    args = [value(a) for a in node.args[1:]]
    kw = {k: value(v) for k, v in node.kwargs.items() if k != "inplace"}
    if node.target is F.hardtanh:
        names = ["min_val", "max_val"]
        defaults = {"min_val": -1.0, "max_val": 1.0}
    elif node.target in (torch.clamp_min, "clamp_min", "clamp_min_"):
        names, defaults = ["min"], {"min": None}
    else:
        names, defaults = ["min", "max"], {"min": None, "max": None}
    vals = dict(defaults)
    vals.update(dict(zip(names, args, strict=False)))
    vals.update(kw)
    lo, hi = vals.get(names[0]), vals.get(names[1]) if len(names) > 1 else None
    if lo != 0 or isinstance(lo, torch.Tensor) or isinstance(hi, torch.Tensor):
        return False
    return None if hi is None else float(hi)
