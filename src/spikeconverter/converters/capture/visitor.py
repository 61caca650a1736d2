"""The fx visitor: walks the traced graph once, building populations and linear expressions.

It knows how to make populations (input, ReLU, signed, readout) and how to push expressions
through ops; *which* fx targets exist and what they mean is the :class:`OpTable` it is given
(:mod:`spikeconverter.converters.capture.handlers`). Supporting another operation is one more
handler in that table.
"""

from __future__ import annotations

import operator
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.fx as fx
import torch.nn as nn

from spikeconverter.converters.capture import expr as ex
from spikeconverter.converters.capture.activations import (
    non_relu_activation,
    non_relu_reason,
    relu_clip,
)
from spikeconverter.converters.capture.errors import Blocker, ConversionError, blocked
from spikeconverter.converters.capture.expr import Expr, pop_expr
from spikeconverter.converters.capture.tracing import Recorder
from spikeconverter.converters.ir import LAYOUT_KINDS, Edge, Graph, Op, Population

__all__ = ["Capture", "Handler", "OpTable"]

Handler = Callable[["Capture", fx.Node], Any]
"""Turns one fx node into the expression of its value (raising ``cap.error(node, why)``); a
node whose value is a tuple of tensors (``chunk``) gives a tuple of expressions."""


class _Blocked(Exception):
    """A node's input could not be captured (its blocker is reported already)."""


_BLOCKED = object()  # the value of a node that is, or depends on, a blocker
#: the value of a ``get_attr`` node: a tensor stored on the model. Not a blocker of its own; the
#: op that uses it is (it is reported with the op's reason, or as an argument it cannot take)
_STORED = object()


@dataclass(frozen=True)
class OpTable:
    """Handlers by fx target: module class (subclasses match too), function, tensor method."""

    modules: dict[type[nn.Module], Handler]
    functions: dict[Callable[..., Any], Handler]
    methods: dict[str, Handler]


class Capture:
    """One pass over ``gm`` 's nodes: :meth:`run` returns the (uncalibrated) graph IR.

    Parameters
    ----------
    gm : torch.fx.GraphModule
        The traced model (BatchNorm already folded where it can be).
    example : torch.Tensor
        An input batch: it fixes every node's shape and the value of shape arithmetic.
    ops : OpTable
        What each supported fx target means.
    """

    def __init__(self, gm: fx.GraphModule, example: torch.Tensor, ops: OpTable):
        self.gm = gm
        self.ops = ops
        rec = Recorder(gm)
        with torch.no_grad():
            self.output = rec.run(example)
        self.meta = rec.values
        self.pops: dict[str, Population] = {}
        self.values: dict[str, Any] = {}
        self.input: str | None = None
        self.readout: str | None = None

    # -- node facts -----------------------------------------------------------------------------

    def error(self, node: fx.Node, why: str) -> ConversionError:
        """The error to raise for ``node``: names it, its op, target and source location."""
        target = node.target if isinstance(node.target, str) else getattr(
            node.target, "__qualname__", repr(node.target))
        if node.op == "call_module":
            target = f"{node.target} ({type(self.gm.get_submodule(node.target)).__name__})"
        b = Blocker(node.name, node.op, str(target), _location(node), why)
        return ConversionError(str(b), (b,))

    def shape(self, node: fx.Node) -> tuple[int, ...]:
        """Per-sample shape of a tensor node."""
        kind, v = self.meta[node.name]
        assert kind == "tensor"
        return v[1:]

    def arg(self, a: Any) -> Any:
        """Concrete value of a non-tensor argument (ints from ``x.size()`` and the like)."""
        return fx.node.map_arg(a, lambda n: self.meta[n.name][1] if self.meta[n.name][0] ==
                               "value" else n)

    def expr(self, node: fx.Node, a: Any) -> Expr:
        """The expression of argument ``a`` of ``node`` (it must be a tensor from the input)."""
        if isinstance(a, fx.Node) and self.values.get(a.name) is _BLOCKED:
            raise _Blocked
        if isinstance(a, fx.Node) and self.values.get(a.name) is _STORED:
            raise self.error(node, f"argument {a.name!r} is a tensor stored on the model "
                             f"({a.target}: a learned constant, class token or positional "
                             "embedding), not one computed from the input; the spiking network "
                             "only carries values computed from its input")
        if not isinstance(a, fx.Node) or not isinstance(self.values.get(a.name), Expr):
            raise self.error(node, f"argument {a!r} is not a tensor computed from the input")
        return self.values[a.name]

    def stored(self, a: Any) -> bool:
        """Whether argument ``a`` is a tensor stored on the model (a ``get_attr`` node)."""
        return isinstance(a, fx.Node) and self.values.get(a.name) is _STORED

    def module(self, node: fx.Node) -> nn.Module:
        """The module a ``call_module`` node calls."""
        return self.gm.get_submodule(node.target)

    def relu_clip(self, node: fx.Node) -> float | None | bool:
        """Upper clip if ``node`` is a ReLU-like activation (None: no clip), else False."""
        return relu_clip(node, self.gm, self.arg)

    def bind(self, node: fx.Node, names: list[str]) -> dict[str, Any]:
        """Arguments of a call by name (positional ones named by ``names``), with concrete
        non-tensor values."""
        call = dict(zip(names, node.args, strict=False))
        call.update(node.kwargs)
        return {k: self.arg(v) if k != "input" else v for k, v in call.items()}

    # -- building the graph -----------------------------------------------------------------------

    def new_pop(self, name: str, kind: str, shape: tuple[int, ...], edges: list[Edge],
                origin: str, **kw: Any) -> Population:
        """Add a population, renaming it ``name_1``, ``name_2``, ... if ``name`` is taken."""
        base, i = name, 1
        while name in self.pops:
            name, i = f"{base}_{i}", i + 1
        pop = Population(name, kind, tuple(shape), edges, origin=origin, **kw)
        self.pops[name] = pop
        return pop

    def edges_of(self, e: Expr, node: fx.Node) -> list[Edge]:
        """The edges of a population whose input is ``e``."""
        try:
            return ex.edges(e, lambda name: self.pops[name].shape)
        except ex.ExprError as exc:
            raise self.error(node, str(exc)) from None

    def materialize(self, e: Expr, node: fx.Node) -> Expr:
        """The expression as a population of its own (signed trains)."""
        if e.pop is not None:
            return e
        pop = self.new_pop(e.node, "signed", e.shape, self.edges_of(e, node), e.node)
        return pop_expr(pop)

    def linear_op(self, e: Expr, op: Op, out_shape: tuple[int, ...]) -> Expr:
        """Append a weight-free op (pooling, reshaping) to every term."""
        return ex.append_op(e, op, out_shape)

    def weighted_op(self, e: Expr, op: Op, node: fx.Node, out_shape: tuple[int, ...]) -> Expr:
        """``e`` through a weighted layer; at most one per edge, so an ``e`` that already holds
        one becomes a population first."""
        if e.weighted:
            e = self.materialize(e, node)
        try:
            return ex.weighted(e, op, out_shape, node.name)
        except ex.ExprError as exc:
            raise self.error(node, str(exc)) from None

    def add(self, node: fx.Node, a: Any, b: Any) -> Expr:
        """``a + b`` of two arguments of ``node``."""
        ea, eb = self.expr(node, a), self.expr(node, b)
        try:
            return ex.summed(ea, eb, node.name)
        except ex.ExprError as exc:
            raise self.error(node, str(exc)) from None

    def relu(self, node: fx.Node, e: Expr, clip: float | None) -> Expr:
        """A ReLU population of ``e`` (clipped at ``clip``), unless ``e`` already is one."""
        if e.pop is not None:
            src = self.pops[e.pop]
            src_clip = src.clip if src.kind != "maxpool" else self.pops[src.edges[0].source].clip
            if src.kind in ("relu", "maxpool") and (clip is None or (src_clip is not None
                                                                      and src_clip <= clip)):
                return e  # already non-negative and within the clip
        if e.pop is None and self.codes_within(e, clip):
            return e  # a concatenation/reshaping of such populations
        pop = self.new_pop(node.name, "relu", e.shape, self.edges_of(e, node), node.name,
                           clip=clip)
        return pop_expr(pop)

    def codes_within(self, e: Expr, clip: float | None) -> bool:
        """Whether every term of ``e`` is a ReLU/max-pooling population through layout ops only,
        times a positive constant, within ``clip``: then ``e`` is non-negative and within the
        clip."""
        for t in e.terms:
            src = self.pops[t.source]
            if src.kind == "maxpool":
                src = self.pops[src.edges[0].source]
            if src.kind != "relu" or t.scale <= 0 or not all(
                    isinstance(o, Op) and o.kind in LAYOUT_KINDS for o in t.ops):
                return False
            if clip is not None and (src.clip is None or src.clip * t.scale > clip):
                return False
        return True

    # -- the walk ---------------------------------------------------------------------------------

    def run(self) -> Graph:
        """Visit every node in order; the graph of populations.

        Raises
        ------
        ConversionError
            Listing every node that cannot be represented (nodes that only depend on one are
            not listed again).
        """
        self.blockers: list[Blocker] = []
        for node in self.gm.graph.nodes:
            try:
                self.step(node)
            except _Blocked:
                self.values[node.name] = _BLOCKED
            except ConversionError as exc:
                if not exc.blockers:
                    raise
                self.blockers.extend(exc.blockers)
                self.values[node.name] = _BLOCKED
        if self.blockers:
            raise blocked(type(self.gm).__name__, self.blockers)
        return Graph(self.pops, self.input, self.readout)

    def step(self, node: fx.Node) -> None:
        """Capture one node."""
        if node.op == "placeholder":
            self.placeholder(node)
        elif node.op == "output":
            self.output_node(node)
        elif node.op == "get_attr":
            self.values[node.name] = _STORED
        elif self.meta[node.name][0] == "value" and not _tensors(self.meta[node.name][1]):
            self.values[node.name] = None  # shapes, sizes: used through self.arg
        else:
            e = self.visit(node)
            if isinstance(e, Expr) and e.pop is None and e.weighted and len(node.users) > 1:
                e = self.materialize(e, node)
            self.values[node.name] = e

    def placeholder(self, node: fx.Node) -> None:
        """The model's input: an ``"input"`` population."""
        if self.input is not None:
            raise self.error(node, "models with more than one input are not supported")
        pop = self.new_pop(node.name, "input", self.shape(node), [], node.name,
                           attrs={"encoding": "analog"})
        self.input = pop.name
        self.values[node.name] = pop_expr(pop)

    def output_node(self, node: fx.Node) -> None:
        """The model's output: a ``"readout"`` population."""
        out = node.args[0]
        if isinstance(out, fx.Node) and self.values.get(out.name) is _BLOCKED:
            raise _Blocked
        if not isinstance(out, fx.Node) or not isinstance(self.values.get(out.name), Expr):
            raise self.error(node, "the model must return one tensor (the logits)")
        e = self.values[out.name]
        pop = self.new_pop(e.node, "readout", e.shape, self.edges_of(e, node), e.node)
        self.readout = pop.name

    def visit(self, node: fx.Node) -> Any:
        """The expression of a call node's value: an activation, or the handler of its target."""
        clip = self.relu_clip(node)
        if clip is not False:
            return self.relu(node, self.expr(node, node.args[0]), clip)
        handler, what = self.handler(node)
        if handler is not None:
            return handler(self, node)
        activation = non_relu_activation(node, self.gm)
        if activation is not None:
            raise self.error(node, non_relu_reason(activation))
        try:  # a bad input is named before the unknown target (a stored one is no reason)
            if node.args and not self.stored(node.args[0]):
                self.expr(node, node.args[0])
        except _Blocked:
            pass  # the target is unsupported whatever its input
        raise self.error(node, f"unsupported {what}{_hint(node)}")

    def handler(self, node: fx.Node) -> tuple[Handler | None, str]:
        """The handler of ``node`` 's target (None if unsupported) and what kind it is."""
        if node.op == "call_module":
            for cls in type(self.module(node)).__mro__:
                if cls in self.ops.modules:
                    return self.ops.modules[cls], "module"
            return None, "module"
        if node.op == "call_function":
            return self.ops.functions.get(node.target), "function"
        if node.op == "call_method":
            return self.ops.methods.get(node.target), "tensor method"
        raise self.error(node, "unexpected fx node kind")


def _tensors(v: Any) -> bool:
    """Whether a recorded value is a tuple/list holding tensors (``chunk``, ``split``; or an
    attention module's ``(output, None)``, which is visited and refused, not taken for a
    shape)."""
    return isinstance(v, (tuple, list)) and any(isinstance(t, torch.Tensor) for t in v)


def _location(node: fx.Node) -> str:
    """``file:line in function`` of the model code that made ``node`` (fx's stack trace)."""
    trace = node.meta.get("stack_trace") or ""
    frames = [ln.strip() for ln in trace.splitlines() if ln.strip().startswith("File ")
              and not any(f"{sep}torch{sep}{pkg}" in ln for sep in "/\\"
                          for pkg in ("fx", "nn", "overrides.py"))]
    if not frames:
        return ""
    # 'File "/x/y.py", line 12, in forward'
    parts = frames[-1].split(", ")
    path = parts[0].removeprefix("File ").strip('"')
    line = parts[1].removeprefix("line ") if len(parts) > 1 else "?"
    func = parts[2].removeprefix("in ") if len(parts) > 2 else "?"
    return f"{path}:{line} in {func}"


def _hint(node: fx.Node) -> str:
    """What an unsupported target usually is, when the reason is known."""
    if node.op == "call_function" and node.target in (operator.mul, torch.mul) or (
            node.op == "call_method" and node.target in ("mul", "mul_", "__mul__")):
        return (" (a product; of two computed tensors, as in a squeeze-and-excitation gate, it "
                "is not linear, and no synapse can compute it)")
    return ""
