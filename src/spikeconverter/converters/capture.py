"""Capture: trace a trained torch model with torch.fx into the graph IR (numpy parameters).

Rules (see :mod:`spikeconverter.converters.ir` for the IR itself):

* BatchNorm is folded into the conv/linear before it (``torch.nn.utils.fusion``). A BatchNorm
  with no conv/linear of its own before it becomes an affine op (a depthwise 1x1 conv, or a
  diagonal linear).
* Populations sit at ReLU/ReLU6 (``"relu"``, ReLU6 with ``clip=6``), max pooling
  (``"maxpool"``), the input and the output (``"readout"``).
* Everything linear between populations becomes the op chain of an edge. A residual add sums
  linear expressions, so its population gets one edge per term.
* An edge holds at most one weighted layer (conv/linear; it maps to one synapse group in
  hardware). A linear expression that already holds a weighted layer becomes a ``"signed"``
  population when it feeds another weighted layer, or when it is used more than once (a block
  output of MobileNet-v2 that feeds both the next block and its residual add).
* ``conv -> maxpool -> relu`` is reordered into ``relu -> maxpool`` (max and ReLU commute).
* An adaptive average pooling that is not an exact average pooling (e.g. 1x1 -> 7x7 in VGG on
  small inputs) is folded into the Linear layer that follows it.

The capture checks itself: the IR's float forward must reproduce the model's output on the
example input.
"""

from __future__ import annotations

import copy
import math
import operator
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.fx as fx
import torch.nn as nn
import torch.nn.functional as F
from torch.nn.utils.fusion import fuse_conv_bn_eval, fuse_linear_bn_eval

from spikeconverter.converters.ir import Edge, Graph, Op, Population, apply_op

__all__ = ["ConversionError", "SUPPORTED_OPERATIONS", "capture"]

SUPPORTED_OPERATIONS = (
    "Conv2d (any stride/padding/dilation/groups), Linear, BatchNorm1d/2d, ReLU, ReLU6, "
    "Hardtanh(0, m), clamp(min=0), MaxPool2d, AvgPool2d, AdaptiveAvgPool2d, mean over H,W, "
    "Flatten/flatten/view/reshape to (batch, features), Dropout, Identity, residual add, "
    "strided slicing x[:, a:b:s, ...], F.pad with constant 0"
)


class ConversionError(ValueError):
    """The model cannot be converted (unsupported operation, untraceable, failed self-check)."""


# --------------------------------------------------------------------------------------------
# linear expressions: what an fx node evaluates to between populations


@dataclass
class _Pending:
    """A linear map with no IR op of its own, to be folded into the next Linear layer."""

    fn: Callable[[torch.Tensor], torch.Tensor]
    in_shape: tuple[int, ...]
    origin: str


@dataclass
class _Term:
    source: str
    ops: list = field(default_factory=list)  # Op or _Pending

    @property
    def weighted(self) -> bool:
        return any(isinstance(o, Op) and o.kind in ("conv2d", "linear") for o in self.ops)


@dataclass
class _Expr:
    """Sum of ``terms``: each a population's value through a chain of linear ops."""

    terms: list[_Term]
    shape: tuple[int, ...]
    node: str
    pop: str | None = None  # set when the expression is exactly one population's value

    @property
    def weighted(self) -> bool:
        return any(t.weighted for t in self.terms)


def _pop_expr(pop: Population) -> _Expr:
    return _Expr([_Term(pop.name, [])], pop.shape, pop.name, pop.name)


# --------------------------------------------------------------------------------------------
# the tracer


def _trace(model: nn.Module) -> fx.GraphModule:
    try:
        return fx.symbolic_trace(model)
    except Exception as exc:  # noqa: BLE001 - fx raises many kinds (TraceError, TypeError, ...)
        raise ConversionError(
            f"{type(model).__name__} could not be traced by torch.fx ({type(exc).__name__}: "
            f"{exc}). Conversion needs a model whose forward has no data-dependent control flow "
            "(if/for on tensor values); move such logic out of forward or wrap it in a leaf "
            "module."
        ) from exc


class _Recorder(fx.Interpreter):
    """Runs the traced model once, keeping each node's shape (tensors) or value (the rest)."""

    def __init__(self, gm: fx.GraphModule):
        super().__init__(gm)
        self.values: dict[str, Any] = {}

    def run_node(self, n: fx.Node) -> Any:
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


def _fold_batchnorm(gm: fx.GraphModule) -> None:
    """Fold every BatchNorm whose input is a conv/linear used nowhere else into it."""
    calls: dict[str, int] = {}
    for n in gm.graph.nodes:
        if n.op == "call_module":
            calls[n.target] = calls.get(n.target, 0) + 1
    for n in list(gm.graph.nodes):
        if n.op != "call_module":
            continue
        bn = gm.get_submodule(n.target)
        if not isinstance(bn, (nn.BatchNorm1d, nn.BatchNorm2d)) or not bn.track_running_stats:
            continue
        prev = n.args[0]
        if not (isinstance(prev, fx.Node) and prev.op == "call_module" and len(prev.users) == 1
                and calls[prev.target] == 1):
            continue
        layer = gm.get_submodule(prev.target)
        if isinstance(layer, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d):
            fused = fuse_conv_bn_eval(layer, bn)
        elif isinstance(layer, nn.Linear) and isinstance(bn, nn.BatchNorm1d):
            fused = fuse_linear_bn_eval(layer, bn)
        else:
            continue
        _set_module(gm, prev.target, fused)
        n.replace_all_uses_with(prev)
        gm.graph.erase_node(n)
    gm.graph.lint()
    gm.recompile()


def _np(t: torch.Tensor | None) -> np.ndarray | None:
    return None if t is None else t.detach().cpu().numpy().copy()


def _pair(v: Any) -> tuple[int, int]:
    return (int(v[0]), int(v[1])) if isinstance(v, (tuple, list)) else (int(v), int(v))


_RELU_FUNCTIONS = {F.relu, torch.relu, torch.relu_, F.relu6, F.hardtanh, torch.clamp,
                   torch.clip, torch.clamp_min}
_RELU_METHODS = {"relu", "relu_", "clamp", "clamp_", "clamp_min", "clamp_min_", "clip"}
_IDENTITY_MODULES = (nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Identity, nn.AlphaDropout)
_IDENTITY_FUNCTIONS = {F.dropout, F.dropout1d, F.dropout2d, torch.dropout}
_ADD_FUNCTIONS = {operator.add, operator.iadd, torch.add}


class _Capture:
    def __init__(self, gm: fx.GraphModule, example: torch.Tensor):
        self.gm = gm
        rec = _Recorder(gm)
        with torch.no_grad():
            self.output = rec.run(example)
        self.meta = rec.values
        self.pops: dict[str, Population] = {}
        self.values: dict[str, Any] = {}
        self.input: str | None = None
        self.readout: str | None = None

    # -- helpers ------------------------------------------------------------------------------

    def error(self, node: fx.Node, why: str) -> ConversionError:
        target = node.target if isinstance(node.target, str) else getattr(
            node.target, "__qualname__", repr(node.target))
        if node.op == "call_module":
            target = f"{node.target} ({type(self.gm.get_submodule(node.target)).__name__})"
        return ConversionError(
            f"cannot convert node {node.name!r} (op {node.op}, target {target}): {why}. "
            f"Supported: {SUPPORTED_OPERATIONS}."
        )

    def shape(self, node: fx.Node) -> tuple[int, ...]:
        kind, v = self.meta[node.name]
        assert kind == "tensor"
        return v[1:]

    def arg(self, a: Any) -> Any:
        """Concrete value of a non-tensor argument (ints from ``x.size()`` and the like)."""
        return fx.node.map_arg(a, lambda n: self.meta[n.name][1] if self.meta[n.name][0] ==
                               "value" else n)

    def expr(self, node: fx.Node, a: Any) -> _Expr:
        if not isinstance(a, fx.Node) or not isinstance(self.values.get(a.name), _Expr):
            raise self.error(node, f"argument {a!r} is not a tensor computed from the input")
        return self.values[a.name]

    def new_pop(self, name: str, kind: str, shape: tuple[int, ...], edges: list[Edge],
                origin: str, **kw: Any) -> Population:
        base, i = name, 1
        while name in self.pops:
            name, i = f"{base}_{i}", i + 1
        pop = Population(name, kind, tuple(shape), edges, origin=origin, **kw)
        self.pops[name] = pop
        return pop

    def edges_of(self, e: _Expr, node: fx.Node) -> list[Edge]:
        edges = []
        for t in e.terms:
            if any(isinstance(o, _Pending) for o in t.ops):
                p = next(o for o in t.ops if isinstance(o, _Pending))
                raise self.error(node, f"{p.origin} is not an exact average pooling and no Linear "
                                 "layer follows it to fold it into")
            edges.append(Edge(t.source, list(t.ops)))
        return edges

    def materialize(self, e: _Expr, node: fx.Node) -> _Expr:
        """The expression as a population of its own (signed trains)."""
        if e.pop is not None:
            return e
        pop = self.new_pop(e.node, "signed", e.shape, self.edges_of(e, node), e.node)
        return _pop_expr(pop)

    def linear_op(self, e: _Expr, op: Op, out_shape: tuple[int, ...]) -> _Expr:
        """Append a weight-free op (pooling, reshaping) to every term."""
        terms = [_Term(t.source, t.ops + [op]) for t in e.terms]
        return _Expr(terms, out_shape, op.origin)

    def weighted_op(self, e: _Expr, op: Op, node: fx.Node, out_shape: tuple[int, ...]) -> _Expr:
        if e.weighted:
            e = self.materialize(e, node)
        terms = []
        for i, t in enumerate(e.terms):
            this = op if i == 0 else Op(op.kind, op.weight, None, dict(op.attrs), op.origin)
            ops = list(t.ops)
            if any(isinstance(o, _Pending) for o in ops):
                ops = self.fold_pending(ops, this, node)
            else:
                ops.append(this)
            terms.append(_Term(t.source, ops))
        return _Expr(terms, out_shape, node.name)

    def fold_pending(self, ops: list, op: Op, node: fx.Node) -> list:
        if op.kind != "linear":
            raise self.error(node, "an adaptive average pooling that is not an exact average "
                             "pooling can only be folded into a following Linear layer")
        i = next(j for j, o in enumerate(ops) if isinstance(o, _Pending))
        in_shape = ops[i].in_shape
        # W o f for the linear map f of the removed ops: the vector-Jacobian product of f with
        # each row of W (cheap, whereas materialising f's matrix is not)
        w = torch.as_tensor(op.weight, dtype=torch.float64)
        x = torch.zeros((w.shape[0], *in_shape), dtype=torch.float64, requires_grad=True)
        with torch.enable_grad():
            y = x
            for o in ops[i:]:
                y = o.fn(y) if isinstance(o, _Pending) else apply_op(o, y, with_bias=False)
            if y.shape[1:] != w.shape[1:]:
                raise self.error(node, f"Linear expects {tuple(w.shape[1:])} features, gets "
                                 f"{tuple(y.shape[1:])}")
            (w,) = torch.autograd.grad((y * w).sum(), x)
        w = w.reshape(w.shape[0], -1).detach()
        folded = Op("linear", w.numpy().astype(op.weight.dtype), op.bias, {},
                    f"{'+'.join(o.origin for o in ops[i:])}+{op.origin}")
        head = ops[:i]
        if len(in_shape) > 1:
            head = head + [Op("flatten", origin=ops[i].origin)]
        return head + [folded]

    def relu(self, node: fx.Node, e: _Expr, clip: float | None) -> _Expr:
        if e.pop is not None:
            src = self.pops[e.pop]
            src_clip = src.clip if src.kind != "maxpool" else self.pops[src.edges[0].source].clip
            if src.kind in ("relu", "maxpool") and (clip is None or (src_clip is not None
                                                                      and src_clip <= clip)):
                return e  # already non-negative and within the clip
        pop = self.new_pop(node.name, "relu", e.shape, self.edges_of(e, node), node.name,
                           clip=clip)
        return _pop_expr(pop)

    def maxpool(self, node: fx.Node, e: _Expr, attrs: dict, out_shape) -> _Expr:
        if attrs.get("return_indices"):
            raise self.error(node, "max pooling with return_indices is not supported")
        attrs = {k: attrs[k] for k in ("kernel_size", "stride", "padding", "dilation",
                                       "ceil_mode")}
        if e.pop is None:
            users = list(node.users)
            if len(users) == 1 and self.relu_clip(users[0]) is not False:
                # conv -> maxpool -> relu: max and ReLU commute, so the ReLU goes first
                e = self.relu(users[0], e, self.relu_clip(users[0]))
            else:
                raise self.error(node, "max pooling of a linear layer's output (no ReLU before "
                                 "it, nor right after it) needs signed spikes, which max pooling "
                                 "cannot compare")
        src = self.pops[e.pop]
        if src.kind not in ("relu", "maxpool"):
            raise self.error(node, f"max pooling of a {src.kind!r} population is not supported "
                             "(spike-based max pooling needs non-negative MSB-first trains)")
        pop = self.new_pop(node.name, "maxpool", out_shape, [Edge(src.name, [])], node.name,
                           attrs=attrs)
        return _pop_expr(pop)

    def relu_clip(self, node: fx.Node) -> float | None | bool:
        """Upper clip if ``node`` is a ReLU-like activation (None: no clip), else False."""
        if node.op == "call_module":
            m = self.gm.get_submodule(node.target)
            if isinstance(m, nn.ReLU6):
                return 6.0
            if isinstance(m, nn.ReLU):
                return None
            if isinstance(m, nn.Hardtanh) and m.min_val == 0.0:
                return float(m.max_val)
            return False
        if node.op == "call_function" and node.target in _RELU_FUNCTIONS:
            if node.target in (F.relu, torch.relu, torch.relu_):
                return None
            if node.target is F.relu6:
                return 6.0
            return self.clamp_bounds(node)
        if node.op == "call_method" and node.target in _RELU_METHODS:
            return None if node.target.startswith("relu") else self.clamp_bounds(node)
        return False

    def clamp_bounds(self, node: fx.Node) -> float | None | bool:
        args = [self.arg(a) for a in node.args[1:]]
        kw = {k: self.arg(v) for k, v in node.kwargs.items() if k != "inplace"}
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

    # -- node dispatch ------------------------------------------------------------------------

    def run(self) -> Graph:
        for node in self.gm.graph.nodes:
            if node.op == "placeholder":
                if self.input is not None:
                    raise self.error(node, "models with more than one input are not supported")
                pop = self.new_pop(node.name, "input", self.shape(node), [], node.name,
                                   attrs={"encoding": "analog"})
                self.input = pop.name
                self.values[node.name] = _pop_expr(pop)
            elif node.op == "output":
                out = node.args[0]
                if not isinstance(out, fx.Node) or not isinstance(self.values.get(out.name),
                                                                  _Expr):
                    raise self.error(node, "the model must return one tensor (the logits)")
                e = self.values[out.name]
                pop = self.new_pop(e.node, "readout", e.shape, self.edges_of(e, node), e.node)
                self.readout = pop.name
            elif self.meta[node.name][0] == "value":
                self.values[node.name] = None  # shapes, sizes: used through self.arg
            elif node.op == "get_attr":
                raise self.error(node, "tensors stored on the model (get_attr) are not supported")
            else:
                self.values[node.name] = self.visit(node)
                e = self.values[node.name]
                if e.pop is None and e.weighted and len(node.users) > 1:
                    self.values[node.name] = self.materialize(e, node)
        return Graph(self.pops, self.input, self.readout)

    def visit(self, node: fx.Node) -> _Expr:
        clip = self.relu_clip(node)
        if clip is not False:
            return self.relu(node, self.expr(node, node.args[0]), clip)
        if node.op == "call_module":
            return self.visit_module(node, self.gm.get_submodule(node.target))
        if node.op == "call_function":
            return self.visit_function(node)
        if node.op == "call_method":
            return self.visit_method(node)
        raise self.error(node, "unexpected fx node kind")

    def visit_module(self, node: fx.Node, m: nn.Module) -> _Expr:
        out = self.shape(node)
        x = self.expr(node, node.args[0])
        if isinstance(m, _IDENTITY_MODULES):
            return x
        if isinstance(m, nn.Conv2d):
            if m.padding_mode != "zeros":
                raise self.error(node, f"padding_mode {m.padding_mode!r} (only 'zeros')")
            padding = m.padding
            if isinstance(padding, str):
                padding = self.string_padding(node, m, padding)
            attrs = {"stride": _pair(m.stride), "padding": _pair(padding),
                     "dilation": _pair(m.dilation), "groups": int(m.groups)}
            op = Op("conv2d", _np(m.weight), _np(m.bias), attrs, node.name)
            return self.weighted_op(x, op, node, out)
        if isinstance(m, nn.Linear):
            if len(x.shape) != 1:
                raise self.error(node, f"Linear on a per-sample shape {x.shape}; flatten first")
            return self.weighted_op(x, Op("linear", _np(m.weight), _np(m.bias), {}, node.name),
                                    node, out)
        if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
            return self.batchnorm(node, m, x, out)
        if isinstance(m, nn.MaxPool2d):
            return self.maxpool(node, x, {"kernel_size": _pair(m.kernel_size),
                                          "stride": _pair(m.stride), "padding": _pair(m.padding),
                                          "dilation": _pair(m.dilation),
                                          "ceil_mode": bool(m.ceil_mode),
                                          "return_indices": m.return_indices}, out)
        if isinstance(m, nn.AvgPool2d):
            if m.divisor_override is not None:
                raise self.error(node, "AvgPool2d with divisor_override")
            return self.avgpool(x, node, m.kernel_size, m.stride, m.padding, m.ceil_mode,
                                m.count_include_pad, out)
        if isinstance(m, nn.AdaptiveAvgPool2d):
            return self.adaptive_avgpool(node, x, out)
        if isinstance(m, nn.Flatten):
            return self.flatten(node, x, out)
        raise self.error(node, "unsupported module")

    def string_padding(self, node: fx.Node, m: nn.Conv2d, padding: str) -> tuple[int, int]:
        if padding == "valid":
            return (0, 0)
        pads = []
        for k, d in zip(_pair(m.kernel_size), _pair(m.dilation), strict=True):
            if (d * (k - 1)) % 2:
                raise self.error(node, "padding='same' with an even receptive field")
            pads.append(d * (k - 1) // 2)
        return tuple(pads)

    def batchnorm(self, node: fx.Node, m: nn.Module, x: _Expr, out) -> _Expr:
        if not m.track_running_stats or m.running_var is None:
            raise self.error(node, "BatchNorm without running statistics")
        scale = (m.weight if m.affine else 1.0) / torch.sqrt(m.running_var + m.eps)
        shift = (m.bias if m.affine else 0.0) - m.running_mean * scale
        c = scale.numel()
        if isinstance(m, nn.BatchNorm2d):
            op = Op("conv2d", _np(scale.reshape(c, 1, 1, 1)), _np(shift),
                    {"stride": (1, 1), "padding": (0, 0), "dilation": (1, 1), "groups": c},
                    node.name)
        else:
            if len(x.shape) != 1:
                raise self.error(node, "BatchNorm1d on a sequence (only (batch, features))")
            op = Op("linear", _np(torch.diag(scale)), _np(shift), {}, node.name)
        return self.weighted_op(x, op, node, out)

    def avgpool(self, x: _Expr, node: fx.Node, kernel, stride, padding, ceil_mode,
                count_include_pad, out) -> _Expr:
        kernel = _pair(kernel)
        stride = kernel if stride is None or stride == [] else _pair(stride)
        attrs = {"kernel_size": kernel, "stride": stride, "padding": _pair(padding),
                 "ceil_mode": bool(ceil_mode), "count_include_pad": bool(count_include_pad)}
        return self.linear_op(x, Op("avgpool2d", attrs=attrs, origin=node.name), out)

    def adaptive_avgpool(self, node: fx.Node, x: _Expr, out) -> _Expr:
        if len(x.shape) != 3:
            raise self.error(node, f"adaptive average pooling of per-sample shape {x.shape}")
        (_, h, w), (oh, ow) = x.shape, out[1:]
        if (h, w) == (oh, ow):
            return x
        if h % oh == 0 and w % ow == 0:
            k = (h // oh, w // ow)
            return self.avgpool(x, node, k, k, 0, False, True, out)
        size = (oh, ow)
        pending = _Pending(lambda t: F.adaptive_avg_pool2d(t, size), x.shape, node.name)
        return _Expr([_Term(t.source, t.ops + [pending]) for t in x.terms], out, node.name)

    def flatten(self, node: fx.Node, x: _Expr, out) -> _Expr:
        if len(out) != 1:
            if out == x.shape:
                return x
            raise self.error(node, f"reshaping {x.shape} to {out} per sample (only flattening "
                             "to (batch, features) is supported)")
        if len(x.shape) == 1:
            return x
        return self.linear_op(x, Op("flatten", origin=node.name), out)

    def add(self, node: fx.Node, a: Any, b: Any) -> _Expr:
        ea, eb = self.expr(node, a), self.expr(node, b)
        if ea.shape != eb.shape:
            raise self.error(node, f"add of shapes {ea.shape} and {eb.shape} (broadcasting)")
        return _Expr(ea.terms + eb.terms, ea.shape, node.name)

    def visit_function(self, node: fx.Node) -> _Expr:
        f, args, kw = node.target, node.args, node.kwargs
        out = self.shape(node)
        if f in _ADD_FUNCTIONS:
            if kw.get("alpha", 1) != 1 or len(args) != 2:
                raise self.error(node, "add with alpha or a constant")
            return self.add(node, args[0], args[1])
        x = self.expr(node, args[0])
        if f in _IDENTITY_FUNCTIONS:
            return x
        if f is torch.flatten:
            return self.flatten(node, x, out)
        if f is operator.getitem:
            return self.getitem(node, x, self.arg(args[1]), out)
        if f is F.pad:
            pad = tuple(int(p) for p in self.arg(args[1]))
            mode = self.arg(kw.get("mode", args[2] if len(args) > 2 else "constant"))
            value = self.arg(kw.get("value", args[3] if len(args) > 3 else None))
            if mode != "constant" or value not in (None, 0, 0.0):
                raise self.error(node, f"F.pad with mode {mode!r}, value {value!r} (only "
                                 "constant 0)")
            if len(pad) > 2 * len(x.shape):
                raise self.error(node, "F.pad of the batch dimension")
            return self.linear_op(x, Op("pad", attrs={"pad": pad}, origin=node.name), out)
        call = self.bind(node)
        if f is F.max_pool2d:
            stride = call.get("stride") or call["kernel_size"]
            return self.maxpool(node, x, {"kernel_size": _pair(call["kernel_size"]),
                                          "stride": _pair(stride),
                                          "padding": _pair(call.get("padding", 0)),
                                          "dilation": _pair(call.get("dilation", 1)),
                                          "ceil_mode": bool(call.get("ceil_mode", False)),
                                          "return_indices": call.get("return_indices", False)},
                                out)
        if f is F.avg_pool2d:
            if call.get("divisor_override") is not None:
                raise self.error(node, "avg_pool2d with divisor_override")
            return self.avgpool(x, node, call["kernel_size"], call.get("stride"),
                                call.get("padding", 0), call.get("ceil_mode", False),
                                call.get("count_include_pad", True), out)
        if f is F.adaptive_avg_pool2d:
            return self.adaptive_avgpool(node, x, out)
        if f is torch.mean:
            return self.mean(node, x, call, out)
        raise self.error(node, "unsupported function")

    def bind(self, node: fx.Node) -> dict[str, Any]:
        """Arguments of a torch function call by name, with concrete non-tensor values."""
        names = {
            F.max_pool2d: ["input", "kernel_size", "stride", "padding", "dilation", "ceil_mode",
                           "return_indices"],
            F.avg_pool2d: ["input", "kernel_size", "stride", "padding", "ceil_mode",
                           "count_include_pad", "divisor_override"],
            F.adaptive_avg_pool2d: ["input", "output_size"],
            torch.mean: ["input", "dim", "keepdim"],
        }.get(node.target)
        if names is None:
            raise self.error(node, "unsupported function")
        call = dict(zip(names, node.args, strict=False))
        call.update(node.kwargs)
        return {k: self.arg(v) if k != "input" else v for k, v in call.items()}

    def mean(self, node: fx.Node, x: _Expr, call: dict, out) -> _Expr:
        dims = call.get("dim")
        dims = (dims,) if isinstance(dims, int) else tuple(dims or ())
        nd = len(x.shape) + 1
        if len(x.shape) != 3 or sorted(d % nd for d in dims) != [2, 3]:
            raise self.error(node, "mean over anything but the spatial dims of (B, C, H, W)")
        _, h, w = x.shape
        pooled = self.avgpool(x, node, (h, w), (h, w), 0, False, True, (x.shape[0], 1, 1))
        return self.flatten(node, pooled, out) if not call.get("keepdim") else pooled

    def getitem(self, node: fx.Node, x: _Expr, index: Any, out) -> _Expr:
        index = index if isinstance(index, tuple) else (index,)
        if not all(isinstance(i, slice) for i in index) or not index or index[0] != slice(None):
            raise self.error(node, f"indexing with {index!r} (only slices that keep the batch "
                             "dimension whole)")
        per_sample = [(s.start, s.stop, s.step) for s in index[1:]]
        if len(per_sample) > len(x.shape):
            raise self.error(node, "too many indices")
        per_sample += [(None, None, None)] * (len(x.shape) - len(per_sample))
        if all(s == (None, None, None) for s in per_sample):
            return x
        return self.linear_op(x, Op("slice", attrs={"index": tuple(per_sample)},
                                    origin=node.name), out)

    def visit_method(self, node: fx.Node) -> _Expr:
        m, args = node.target, node.args
        out = self.shape(node)
        if m in ("add", "add_", "__add__", "__iadd__"):
            if node.kwargs.get("alpha", 1) != 1:
                raise self.error(node, "add with alpha")
            return self.add(node, args[0], args[1])
        x = self.expr(node, args[0])
        if m in ("view", "reshape", "flatten"):
            return self.flatten(node, x, out)
        if m in ("contiguous", "clone", "detach"):
            return x
        if m == "mean":
            call = dict(zip(["self", "dim", "keepdim"], args, strict=False))
            call.update(node.kwargs)
            return self.mean(node, x, {k: self.arg(v) for k, v in call.items()}, out)
        raise self.error(node, "unsupported tensor method")


# --------------------------------------------------------------------------------------------


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
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if not isinstance(example_input, torch.Tensor) or example_input.ndim < 2:
        raise ValueError("example_input must be a tensor batch (B, ...) with at least 2 dims")
    if model.training:
        warnings.warn(f"{type(model).__name__} is in training mode; converting it in eval mode "
                      "(BatchNorm running statistics, Dropout off)", stacklevel=2)
    for name, p in list(model.named_parameters()) + list(model.named_buffers()):
        # a sum is NaN/inf when any entry is; only then look closer (sums may overflow)
        if p.is_floating_point() and not math.isfinite(float(p.detach().sum())) and not bool(
                torch.isfinite(p).all()):
            raise ValueError(f"parameter {name!r} of {type(model).__name__} contains NaN or inf")
    model = copy.deepcopy(model).eval()
    dtype = next((p.dtype for p in model.parameters() if p.is_floating_point()), torch.float32)
    example_input = example_input.to(dtype)
    gm = _trace(model)
    _fold_batchnorm(gm)
    cap = _Capture(gm, example_input)
    if not isinstance(cap.output, torch.Tensor):
        raise ConversionError("the model must return one tensor (the logits)")
    graph = cap.run()
    graph.meta.update(model=type(model).__name__, input_shape=tuple(example_input.shape[1:]),
                      dtype=str(dtype).removeprefix("torch."))
    graph.validate()
    if check:
        with torch.no_grad():
            ours = graph.forward(example_input, quantized=False)[graph.output]
            ref = model(example_input)
        tol = rtol if rtol is not None else (1e-9 if dtype == torch.float64 else 1e-4)
        scale = float(ref.abs().max()) or 1.0
        err = float((ours - ref).abs().max())
        if not err <= tol * scale:
            raise ConversionError(
                f"capture self-check failed: the IR's output differs from "
                f"{type(model).__name__}'s by {err:.3g} (max |output| {scale:.3g}); the model "
                "does something the capture does not represent"
            )
    return graph
