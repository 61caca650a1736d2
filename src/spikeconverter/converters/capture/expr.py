"""Linear expressions: what an fx node evaluates to between two populations.

Everything between populations is linear, so a node's value is a sum of *terms*, each a
population's value pushed through a chain of IR ops (:class:`~spikeconverter.converters.ir.Op`).
A chain may also hold a :class:`Pending` map: a linear map with no IR op of its own (an adaptive
average pooling that is no exact average pooling), folded into the next Linear layer.

The functions here know no fx node: they raise :class:`ExprError` with the reason, and the
visitor turns it into a :class:`~spikeconverter.converters.capture.errors.ConversionError` that
names the node.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch

from spikeconverter.converters.ir import LAYOUT_KINDS, Edge, Op, Population, apply_op

__all__ = ["MAX_DIAGONAL", "Expr", "ExprError", "Pending", "Term", "append_op", "append_pending",
           "channel_map", "concatenated", "edges", "fold_pending", "layout_gathers", "pop_expr",
           "scaled", "summed", "weighted"]

WEIGHTED_KINDS = ("conv2d", "linear")


class ExprError(Exception):
    """An expression the IR cannot hold; ``str(exc)`` says why."""


@dataclass
class Pending:
    """A linear map with no IR op of its own, to be folded into the next Linear layer."""

    fn: Callable[[torch.Tensor], torch.Tensor]
    in_shape: tuple[int, ...]
    origin: str


@dataclass
class Term:
    """One population's value (``source``) through a chain of ops (:class:`Op` or
    :class:`Pending`), times ``scale``.

    ``scale`` is a constant factor (``x * 0.5``, ``x / 2``, ``-x``) not yet folded into a
    weighted layer: a weighted term folds it into its layer at once (so its scale is 1), any
    other term carries it to the next weighted layer, or to its edge (:func:`edges`).
    """

    source: str
    ops: list = field(default_factory=list)
    scale: float = 1.0

    @property
    def weighted(self) -> bool:
        """Whether the chain holds a weighted layer (conv/linear)."""
        return any(isinstance(o, Op) and o.kind in WEIGHTED_KINDS for o in self.ops)

    @property
    def pending(self) -> Pending | None:
        """The first :class:`Pending` map of the chain, if any."""
        return next((o for o in self.ops if isinstance(o, Pending)), None)


@dataclass
class Expr:
    """Sum of ``terms``: each a population's value through a chain of linear ops."""

    terms: list[Term]
    shape: tuple[int, ...]
    node: str
    pop: str | None = None  # set when the expression is exactly one population's value

    @property
    def weighted(self) -> bool:
        """Whether any term holds a weighted layer."""
        return any(t.weighted for t in self.terms)


def pop_expr(pop: Population) -> Expr:
    """The expression that is exactly ``pop`` 's value."""
    return Expr([Term(pop.name, [])], pop.shape, pop.name, pop.name)


def append_op(e: Expr, op: Op, out_shape: tuple[int, ...]) -> Expr:
    """``e`` through a weight-free op (pooling, reshaping), appended to every term.

    A layout op after a gather is composed into it (chains of reshapes, shuffles and slices stay
    one op); a term that the composed gather leaves without any value (a chunk of channels that
    all came from other terms) is dropped.
    """
    terms = []
    for t in e.terms:
        ops = _then(t.ops, op)
        if ops is not None:
            terms.append(Term(t.source, ops, t.scale))
    if not terms:  # everything selected is zero: keep one (all-zero) term so the shape stays
        terms = [Term(e.terms[0].source, e.terms[0].ops + [op])]
    return Expr(terms, out_shape, op.origin)


def _then(ops: list, op: Op) -> list | None:
    """``ops + [op]``, with ``op`` composed into a trailing gather; None if nothing is left."""
    last = ops[-1] if ops else None
    if not (isinstance(last, Op) and last.kind == "gather" and op.kind in LAYOUT_KINDS):
        return ops + [op]
    # where each output of ``op`` comes from in ``last`` 's output (+1: 0 is a zero)
    n = math.prod(last.attrs["shape"])
    probe = torch.arange(1, n + 1, dtype=torch.float64).reshape(1, *last.attrs["shape"])
    with torch.no_grad():
        moved = apply_op(op, probe, with_bias=False)
    j = moved.reshape(-1).long() - 1
    prev = torch.as_tensor(last.attrs["index"], dtype=torch.long)
    index = torch.where(j >= 0, prev[j.clamp(min=0)], -1)
    if bool((index < 0).all()):
        return None
    gather = Op("gather", attrs={"shape": tuple(moved.shape[1:]), "index": tuple(index.tolist())},
                origin=f"{last.origin}+{op.origin}")
    return ops[:-1] + [gather]


def layout_gathers(fn: Callable[[torch.Tensor], object], in_shape: tuple[int, ...], batch: int,
                   origin: str) -> list[Op | None]:
    """The gather ops of a function that only moves values of its per-sample input.

    ``fn`` is run on a batch of distinct numbers; each tensor it returns (one, or a tuple as
    from ``chunk``) must hold, per sample, values of that sample only. ``None`` stands for an
    output that is the input itself (``contiguous``).

    Raises
    ------
    ExprError
        ``fn`` mixes samples, computes new values, or returns no tensors.
    """
    n = math.prod(in_shape)
    probe = torch.arange(batch * n, dtype=torch.float64).reshape(batch, *in_shape)
    with torch.no_grad():
        out = fn(probe)
    outs = list(out) if isinstance(out, (tuple, list)) else [out]
    ops: list[Op | None] = []
    for o in outs:
        if not isinstance(o, torch.Tensor) or o.ndim < 1 or o.shape[0] != batch:
            raise ExprError("it does not keep the batch dimension first and whole")
        idx = o.reshape(batch, -1) - (torch.arange(batch, dtype=torch.float64) * n)[:, None]
        if not (bool((idx == idx[:1]).all()) and bool((idx >= 0).all()) and bool((idx < n).all())
                and bool((idx == idx.round()).all())):
            raise ExprError("it mixes samples of the batch or computes new values (only ops that "
                            "move values within a sample are layout ops)")
        index = idx[0].long()
        if tuple(o.shape[1:]) == tuple(in_shape) and bool(
                (index == torch.arange(n)).all()):
            ops.append(None)
        else:
            ops.append(Op("gather", attrs={"shape": tuple(o.shape[1:]),
                                           "index": tuple(index.tolist())}, origin=origin))
    return ops


def channel_map(ops: list, shape: tuple[int, ...]) -> list[int] | None:
    """Where each output channel of ``ops`` comes from, if they only place, select or permute
    whole channels of a ``(C, H, W)`` value (a concatenation's padding, a channel slice, a
    channel shuffle): the source channel, or -1 for a zero channel. None otherwise."""
    if len(shape) != 3 or not all(isinstance(o, Op) and o.kind in LAYOUT_KINDS for o in ops):
        return None
    c, h, w = shape
    probe = torch.arange(1, c * h * w + 1, dtype=torch.float64).reshape(1, c, h, w)
    y = probe
    with torch.no_grad():
        for o in ops:
            y = apply_op(o, y, with_bias=False)
    if y.ndim != 4 or tuple(y.shape[2:]) != (h, w):
        return None
    src = torch.div(y[0, :, 0, 0].long() - 1, h * w, rounding_mode="floor")
    expected = torch.where(src[:, None, None] >= 0, probe[0][src.clamp(min=0)], 0.0)
    return src.tolist() if torch.equal(y[0], expected) else None


def concatenated(parts: list[Expr], dim: int, name: str) -> Expr:
    """``cat(parts, dim)`` (``dim`` per sample): each part zero-padded into its slice, summed.

    ``W cat(a, b) = W_a a + W_b b``: every term reaches the consumer through its own synapses.
    """
    nd = len(parts[0].shape)
    for p in parts:
        if len(p.shape) != nd or any(p.shape[i] != parts[0].shape[i]
                                     for i in range(nd) if i != dim):
            raise ExprError(f"concatenation of shapes {[q.shape for q in parts]} along dim "
                            f"{dim + 1}")
    total = sum(p.shape[dim] for p in parts)
    out_shape = tuple(total if i == dim else s for i, s in enumerate(parts[0].shape))
    terms, start = [], 0
    for p in parts:
        before, after = start, total - start - p.shape[dim]
        start += p.shape[dim]
        pad = [0, 0] * (nd - dim)
        pad[-2:] = [before, after]
        placed = append_op(p, Op("pad", attrs={"pad": tuple(pad)}, origin=name), out_shape)
        terms += placed.terms
    return Expr(terms, out_shape, name)


def append_pending(e: Expr, pending: Pending, out_shape: tuple[int, ...]) -> Expr:
    """``e`` through a map that the next Linear layer has to absorb."""
    return Expr([Term(t.source, t.ops + [pending], t.scale) for t in e.terms], out_shape,
                pending.origin)


def summed(a: Expr, b: Expr, name: str) -> Expr:
    """``a + b`` (a residual add): the terms of both, no broadcasting."""
    if a.shape != b.shape:
        raise ExprError(f"add of shapes {a.shape} and {b.shape} (broadcasting)")
    return Expr(a.terms + b.terms, a.shape, name)


def edges(e: Expr, source_shape: Callable[[str], tuple[int, ...]]) -> list[Edge]:
    """One IR edge per term of ``e`` (every pending map must have been folded by now).

    A term that still carries a constant factor (no weighted layer to fold it into) gets one
    of its own at the start of its chain: a depthwise 1x1 conv (``(C, H, W)`` sources) or a
    diagonal Linear (``(F,)`` sources) of that factor; ``source_shape`` gives a population's
    per-sample shape.
    """
    out = []
    for t in e.terms:
        p = t.pending
        if p is not None:
            raise ExprError(f"{p.origin} is not an exact average pooling and no Linear layer "
                            "follows it to fold it into")
        ops = list(t.ops)
        if t.scale != 1.0:
            ops.insert(0, _scale_op(t.scale, source_shape(t.source), e.node))
        out.append(Edge(t.source, ops))
    return out


#: the largest (F,) population scaled by a diagonal Linear of its own (F * F weights)
MAX_DIAGONAL = 4096


def _scale_op(c: float, shape: tuple[int, ...], origin: str) -> Op:
    """The weighted op that multiplies a population's value of ``shape`` by ``c``."""
    if len(shape) == 3:
        w = np.full((shape[0], 1, 1, 1), c)
        return Op("conv2d", w, None, {"stride": (1, 1), "padding": (0, 0), "dilation": (1, 1),
                                      "groups": shape[0]}, origin)
    if len(shape) == 1 and shape[0] <= MAX_DIAGONAL:
        return Op("linear", np.diag(np.full(shape[0], c)), None, {}, origin)
    raise ExprError(f"a constant factor ({c:g}) on a population of per-sample shape {shape} "
                    "with no conv/linear layer after it to fold it into")


def scaled(e: Expr, c: float, name: str) -> Expr:
    """``c * e`` for a constant ``c``: folded into each term's weighted layer (weight and
    bias: ``c (W x + b) = (c W) x + c b``; the ops after it are linear and bias-free), or
    carried by the term to the next one (:class:`Term`)."""
    if not math.isfinite(c):
        raise ExprError(f"multiplication by {c} (not a finite number)")
    terms = []
    for t in e.terms:
        i = next((j for j, o in enumerate(t.ops) if isinstance(o, Op)
                  and o.kind in WEIGHTED_KINDS), None)
        if i is None:
            terms.append(Term(t.source, list(t.ops), t.scale * c))
            continue
        o = t.ops[i]
        folded = Op(o.kind, o.weight * c, None if o.bias is None else o.bias * c,
                    dict(o.attrs), f"{o.origin}*{name}")
        terms.append(Term(t.source, t.ops[:i] + [folded] + t.ops[i + 1:]))
    return Expr(terms, e.shape, name)


def weighted(e: Expr, op: Op, out_shape: tuple[int, ...], name: str) -> Expr:
    """``e`` through the weighted layer ``op``; ``e`` must hold no weighted layer yet.

    The layer is applied to every term (a sum of terms is one synapse group per term); the first
    term keeps the bias, so that it is added once. A term's constant factor is folded into its
    copy of the weight (``W (c x) = (c W) x``).
    """
    terms = []
    for i, t in enumerate(e.terms):
        w = op.weight if t.scale == 1.0 else op.weight * t.scale
        this = op if i == 0 and t.scale == 1.0 else Op(
            op.kind, w, op.bias if i == 0 else None, dict(op.attrs), op.origin)
        ops = list(t.ops)
        if t.pending is not None:
            ops = fold_pending(ops, this)
        else:
            ops.append(this)
        terms.append(Term(t.source, ops))
    return Expr(terms, out_shape, name)


def fold_pending(ops: list, op: Op) -> list:
    """The chain ``ops + [op]`` with its pending map and everything after folded into ``op``.

    Raises
    ------
    ExprError
        ``op`` is no Linear layer, or its input size does not fit.
    """
    if op.kind != "linear":
        raise ExprError("an adaptive average pooling that is not an exact average pooling can "
                        "only be folded into a following Linear layer")
    i = next(j for j, o in enumerate(ops) if isinstance(o, Pending))
    in_shape = ops[i].in_shape
    # W o f for the linear map f of the removed ops: the vector-Jacobian product of f with
    # each row of W (cheap, whereas materialising f's matrix is not)
    w = torch.as_tensor(op.weight, dtype=torch.float64)
    x = torch.zeros((w.shape[0], *in_shape), dtype=torch.float64, requires_grad=True)
    with torch.enable_grad():
        y = x
        for o in ops[i:]:
            y = o.fn(y) if isinstance(o, Pending) else apply_op(o, y, with_bias=False)
        if y.shape[1:] != w.shape[1:]:
            raise ExprError(f"Linear expects {tuple(w.shape[1:])} features, gets "
                            f"{tuple(y.shape[1:])}")
        (w,) = torch.autograd.grad((y * w).sum(), x)
    w = w.reshape(w.shape[0], -1).detach()
    folded = Op("linear", w.numpy().astype(op.weight.dtype), op.bias, {},
                f"{'+'.join(o.origin for o in ops[i:])}+{op.origin}")
    head = ops[:i]
    if len(in_shape) > 1:
        head = head + [Op("flatten", origin=ops[i].origin)]
    return head + [folded]
