"""The supported operations: one handler per fx target, collected in :data:`OPS`.

A handler takes the visitor and the node and returns the expression of the node's value; it
raises ``cap.error(node, why)`` for what it cannot represent. ReLU-like activations are not
here: the visitor recognises them first (:mod:`spikeconverter.converters.capture.activations`).
To support another operation, write its handler and add it to the table (and to
:data:`~spikeconverter.converters.capture.errors.SUPPORTED_OPERATIONS`).
"""

from __future__ import annotations

import operator
from typing import Any

import numpy as np
import torch
import torch.fx as fx
import torch.nn as nn
import torch.nn.functional as F
from torchvision.ops import StochasticDepth, stochastic_depth

from spikeconverter.converters.capture import expr as ex
from spikeconverter.converters.capture.expr import Expr, Pending, Term, append_pending, pop_expr
from spikeconverter.converters.capture.visitor import Capture, Handler, OpTable
from spikeconverter.converters.ir import Edge, Op
from spikeconverter.plugin.kernels import pair

__all__ = ["OPS"]

_MAX_POOL_ARGS = ["input", "kernel_size", "stride", "padding", "dilation", "ceil_mode",
                  "return_indices"]
_AVG_POOL_ARGS = ["input", "kernel_size", "stride", "padding", "ceil_mode", "count_include_pad",
                  "divisor_override"]
_MEAN_ARGS = ["input", "dim", "keepdim"]


def _np(t: torch.Tensor | None) -> np.ndarray | None:
    return None if t is None else t.detach().cpu().numpy().copy()


def _input(cap: Capture, node: fx.Node) -> Expr:
    return cap.expr(node, node.args[0])


# -- building blocks shared by several targets ------------------------------------------------


def _maxpool(cap: Capture, node: fx.Node, e: Expr, attrs: dict, out: tuple[int, ...]) -> Expr:
    if attrs.get("return_indices"):
        raise cap.error(node, "max pooling with return_indices is not supported")
    attrs = {k: attrs[k] for k in ("kernel_size", "stride", "padding", "dilation", "ceil_mode")}
    if e.pop is None and _channel_layout_of_codes(cap, e):
        return _maxpool_parts(cap, node, e, attrs, out)
    if e.pop is None:
        users = list(node.users)
        if len(users) == 1 and cap.relu_clip(users[0]) is not False:
            # conv -> maxpool -> relu: max and ReLU commute, so the ReLU goes first
            e = cap.relu(users[0], e, cap.relu_clip(users[0]))
        else:
            raise cap.error(node, "max pooling of a linear layer's output (no ReLU before it, "
                            "nor right after it) needs signed spikes, which max pooling cannot "
                            "compare")
    src = cap.pops[e.pop]
    if src.kind not in ("relu", "maxpool"):
        raise cap.error(node, f"max pooling of a {src.kind!r} population is not supported "
                        "(spike-based max pooling needs non-negative MSB-first trains)")
    pop = cap.new_pop(node.name, "maxpool", out, [Edge(src.name, [])], node.name, attrs=attrs)
    return pop_expr(pop)


def _channel_only(op: Any, nd: int) -> bool:
    """Whether a layout op only places or selects whole channels of a (C, H, W) value
    (independent of H and W, so it stays valid after pooling)."""
    if not isinstance(op, Op) or nd != 3:
        return False
    if op.kind == "pad":
        return len(op.attrs["pad"]) == 6 and not any(op.attrs["pad"][:4])
    if op.kind == "slice":
        return all(tuple(s) == (None, None, None) for s in op.attrs["index"][1:])
    return False


def _channel_layout_of_codes(cap: Capture, e: Expr) -> bool:
    """Whether ``e`` is a concatenation, channel selection or channel shuffle (whole channels
    moved only), times a positive constant, of non-negative populations: max pooling acts per
    channel and commutes with a positive factor, so it may pool each part on its own."""
    return all(cap.pops[t.source].kind in ("relu", "maxpool") and t.scale > 0
               and ex.channel_map(t.ops, cap.pops[t.source].shape) is not None
               for t in e.terms)


def _maxpool_parts(cap: Capture, node: fx.Node, e: Expr, attrs: dict,
                   out: tuple[int, ...]) -> Expr:
    """``maxpool(cat(a, b)) = cat(maxpool(a), maxpool(b))``, and likewise for a channel shuffle
    or selection: one max pooling population per part, then the same channel moves on the
    pooled values (a zero channel pools to zero, so the placement commutes with the pooling)."""
    terms = []
    for t in e.terms:
        src = cap.pops[t.source]
        shape = (src.shape[0], *out[1:])
        pop = cap.new_pop(f"{node.name}_{src.name}", "maxpool", shape, [Edge(src.name, [])],
                          node.name, attrs=attrs)
        terms.append(Term(pop.name, _pooled_layout(t.ops, src.shape, out, node.name), t.scale))
    return Expr(terms, out, node.name)


def _pooled_layout(ops: list, shape: tuple[int, ...], out: tuple[int, ...],
                   origin: str) -> list:
    """The channel moves ``ops`` (of a ``shape`` value) redone on pooled values of
    per-channel size ``out[1:]``: padding and slicing of channels as they are, anything else
    (a shuffle) as one gather of whole channels."""
    if all(_channel_only(o, 3) for o in ops):
        return list(ops)
    cmap = ex.channel_map(ops, shape)
    n = out[1] * out[2]
    if cmap == list(range(shape[0])):
        return []
    index = tuple(k * n + i if k >= 0 else -1 for k in cmap for i in range(n))
    return [Op("gather", attrs={"shape": (len(cmap), *out[1:]), "index": index}, origin=origin)]


def _avgpool(cap: Capture, x: Expr, node: fx.Node, kernel: Any, stride: Any, padding: Any,
             ceil_mode: bool, count_include_pad: bool, out: tuple[int, ...]) -> Expr:
    kernel = pair(kernel)
    stride = kernel if stride is None or stride == [] else pair(stride)
    attrs = {"kernel_size": kernel, "stride": stride, "padding": pair(padding),
             "ceil_mode": bool(ceil_mode), "count_include_pad": bool(count_include_pad)}
    return cap.linear_op(x, Op("avgpool2d", attrs=attrs, origin=node.name), out)


def _adaptive_avgpool(cap: Capture, node: fx.Node, x: Expr, out: tuple[int, ...]) -> Expr:
    if len(x.shape) != 3:
        raise cap.error(node, f"adaptive average pooling of per-sample shape {x.shape}")
    (_, h, w), (oh, ow) = x.shape, out[1:]
    if (h, w) == (oh, ow):
        return x
    if h % oh == 0 and w % ow == 0:
        k = (h // oh, w // ow)
        return _avgpool(cap, x, node, k, k, 0, False, True, out)
    size = (oh, ow)
    pending = Pending(lambda t: F.adaptive_avg_pool2d(t, size), x.shape, node.name)
    return append_pending(x, pending, out)


def _flatten(cap: Capture, node: fx.Node, x: Expr, out: tuple[int, ...]) -> Expr:
    if len(out) != 1:
        if out == x.shape:
            return x
        return _layout(cap, node)
    if len(x.shape) == 1:
        return x
    return cap.linear_op(x, Op("flatten", origin=node.name), out)


def _mean(cap: Capture, node: fx.Node, x: Expr, call: dict, out: tuple[int, ...]) -> Expr:
    dims = call.get("dim")
    dims = (dims,) if isinstance(dims, int) else tuple(dims or ())
    nd = len(x.shape) + 1
    if len(x.shape) != 3 or sorted(d % nd for d in dims) != [2, 3]:
        raise cap.error(node, "mean over anything but the spatial dims of (B, C, H, W)")
    _, h, w = x.shape
    pooled = _avgpool(cap, x, node, (h, w), (h, w), 0, False, True, (x.shape[0], 1, 1))
    return _flatten(cap, node, pooled, out) if not call.get("keepdim") else pooled


def _call(cap: Capture, node: fx.Node) -> Any:
    """``node`` 's computation as a function of its first argument (the others concrete)."""
    args = [cap.arg(a) for a in node.args[1:]]
    kwargs = {k: cap.arg(v) for k, v in node.kwargs.items()}
    if _has_node((args, kwargs)):
        raise cap.error(node, "a layout op with tensor-valued arguments (e.g. index tensors)")
    if node.op == "call_method":
        return lambda t: getattr(t, node.target)(*args, **kwargs)
    if node.op == "call_module":
        m = cap.module(node)
        return lambda t: m(t)
    return lambda t: node.target(t, *args, **kwargs)


def _has_node(a: Any) -> bool:
    found = []
    fx.node.map_arg(a, found.append)
    return bool(found)


def _layout(cap: Capture, node: fx.Node) -> Expr | tuple[Expr, ...]:
    """An op that only moves values within each sample (reshape, transpose, chunk, channel
    shuffle, integer indexing, ...): a gather op on every term, found by running the op on
    distinct numbers; a tuple of expressions for ops that return several tensors."""
    x = _input(cap, node)
    batch = cap.meta[node.args[0].name][1][0]
    try:
        ops = ex.layout_gathers(_call(cap, node), x.shape, batch, node.name)
    except ex.ExprError as exc:
        raise cap.error(node, f"not a layout op: {exc}") from None
    except Exception as exc:  # noqa: BLE001 - whatever the op raises on the probe
        raise cap.error(node, f"could not be run as a layout op ({type(exc).__name__}: {exc})"
                        ) from None
    parts = []
    for op in ops:
        if op is None:
            parts.append(x)
        elif len(op.attrs["shape"]) == 1 and op.attrs["index"] == tuple(range(
                op.attrs["shape"][0])):
            parts.append(cap.linear_op(x, Op("flatten", origin=node.name), op.attrs["shape"]))
        else:
            parts.append(cap.linear_op(x, op, op.attrs["shape"]))
    many = cap.meta[node.name][0] == "value"
    return tuple(parts) if many else parts[0]


def _cat(cap: Capture, node: fx.Node) -> Expr:
    """``torch.cat``: each part placed in its slice along ``dim`` and summed."""
    call = dict(zip(["tensors", "dim"], node.args, strict=False))
    call.update(node.kwargs)
    parts = [cap.expr(node, a) for a in call["tensors"]]
    dim = int(cap.arg(call.get("dim", 0)))
    nd = len(parts[0].shape) + 1
    if dim % nd == 0:
        raise cap.error(node, "concatenation along the batch dimension")
    try:
        return ex.concatenated(parts, dim % nd - 1, node.name)
    except ex.ExprError as exc:
        raise cap.error(node, str(exc)) from None


def _stochastic_depth(cap: Capture, node: fx.Node) -> Expr:
    """torchvision's stochastic depth: the identity unless called in training mode."""
    call = cap.bind(node, ["input", "p", "mode", "training"])
    if call.get("training", True) and call.get("p", 0.0) > 0:
        raise cap.error(node, "stochastic_depth with training=True drops rows even in eval "
                        "mode; pass training=self.training")
    return _input(cap, node)


def _dropout_function(cap: Capture, node: fx.Node) -> Expr:
    """Functional dropout: the identity when not training (``F.dropout`` defaults to training)."""
    names = ["input", "p", "train" if node.target is torch.dropout else "training", "inplace"]
    call = cap.bind(node, names)
    default = node.target not in (F.alpha_dropout, F.feature_alpha_dropout)
    training = call.get("training", call.get("train", default))
    if training and call.get("p", 0.5) > 0:
        raise cap.error(node, f"{getattr(node.target, '__name__', node.target)} with "
                        "training=True drops values even in eval mode; pass "
                        "training=self.training")
    return _input(cap, node)


def _number(cap: Capture, a: Any) -> float | None:
    """The constant number argument ``a`` stands for (a Python number, a value computed from
    shapes, or a one-element tensor stored on the model), else None."""
    if isinstance(a, fx.Node):
        kind, v = cap.meta[a.name]
        if kind == "value":
            a = v
        elif cap.stored(a):
            t = _attr(cap.gm, a.target)
            a = float(t) if isinstance(t, torch.Tensor) and t.numel() == 1 else None
    if isinstance(a, (int, float)) and not isinstance(a, bool):
        return float(a)
    return None


def _attr(root: nn.Module, target: str) -> Any:
    for part in target.split("."):
        root = getattr(root, part)
    return root


def _scaled(cap: Capture, node: fx.Node, x: Any, c: float) -> Expr:
    """``c * x``: folded into the synapses next to it (see :func:`ex.scaled`)."""
    try:
        return ex.scaled(cap.expr(node, x), c, node.name)
    except ex.ExprError as exc:
        raise cap.error(node, str(exc)) from None


def _mul(cap: Capture, node: fx.Node) -> Expr:
    """``x * c`` or ``c * x`` for a constant number ``c`` (linear: no population of its own)."""
    a, b = node.args[:2]
    ca, cb = _number(cap, a), _number(cap, b)
    if ca is None and cb is None:
        if cap.stored(a) or cap.stored(b):
            raise cap.error(node, "multiplication by a tensor stored on the model (e.g. a layer "
                            "scale); only multiplication by a constant number is supported")
        raise cap.error(node, "a product of two computed tensors (as in a squeeze-and-"
                        "excitation gate) is not linear, and no synapse can compute it")
    return _scaled(cap, node, b, ca) if ca is not None else _scaled(cap, node, a, cb)


def _div(cap: Capture, node: fx.Node) -> Expr:
    """``x / c`` for a constant number ``c`` (true division only)."""
    a, b = node.args[:2]
    c = _number(cap, b)
    mode = cap.arg(node.kwargs.get("rounding_mode", node.args[2] if len(node.args) > 2 and
                                   node.op != "call_method" else None))
    if c is None or c == 0 or mode is not None:
        raise cap.error(node, "division is linear only by a non-zero constant number without "
                        "rounding (x / c)")
    return _scaled(cap, node, a, 1.0 / c)


def _neg(cap: Capture, node: fx.Node) -> Expr:
    return _scaled(cap, node, node.args[0], -1.0)


def _sub(cap: Capture, node: fx.Node) -> Expr:
    """``a - alpha * b`` of two computed tensors (a sum of terms, the second negated)."""
    alpha = _number(cap, node.kwargs.get("alpha", 1))
    if len(node.args) != 2 or alpha is None or _number(cap, node.args[1]) is not None:
        raise cap.error(node, "subtraction of a constant (only of two computed tensors)")
    ea, eb = cap.expr(node, node.args[0]), cap.expr(node, node.args[1])
    try:
        return ex.summed(ea, ex.scaled(eb, -alpha, node.name), node.name)
    except ex.ExprError as exc:
        raise cap.error(node, str(exc)) from None


# -- modules ------------------------------------------------------------------------------------


def _identity(cap: Capture, node: fx.Node) -> Expr:
    return _input(cap, node)


def _conv2d(cap: Capture, node: fx.Node) -> Expr:
    x, m = _input(cap, node), cap.module(node)
    if m.padding_mode != "zeros":
        raise cap.error(node, f"padding_mode {m.padding_mode!r} (only 'zeros')")
    padding = m.padding
    if isinstance(padding, str):
        padding = _string_padding(cap, node, m, padding)
    attrs = {"stride": pair(m.stride), "padding": pair(padding),
             "dilation": pair(m.dilation), "groups": int(m.groups)}
    op = Op("conv2d", _np(m.weight), _np(m.bias), attrs, node.name)
    return cap.weighted_op(x, op, node, cap.shape(node))


def _string_padding(cap: Capture, node: fx.Node, m: nn.Conv2d, padding: str) -> tuple[int, int]:
    if padding == "valid":
        return (0, 0)
    pads = []
    for k, d in zip(pair(m.kernel_size), pair(m.dilation), strict=True):
        if (d * (k - 1)) % 2:
            raise cap.error(node, "padding='same' with an even receptive field")
        pads.append(d * (k - 1) // 2)
    return tuple(pads)


def _linear(cap: Capture, node: fx.Node) -> Expr:
    x, m = _input(cap, node), cap.module(node)
    if len(x.shape) != 1:
        raise cap.error(node, f"Linear on a per-sample shape {x.shape}; flatten first")
    op = Op("linear", _np(m.weight), _np(m.bias), {}, node.name)
    return cap.weighted_op(x, op, node, cap.shape(node))


def _batchnorm(cap: Capture, node: fx.Node) -> Expr:
    """A BatchNorm that could not be folded into a layer before it: an affine op of its own."""
    x, m = _input(cap, node), cap.module(node)
    if not m.track_running_stats or m.running_var is None:
        raise cap.error(node, "BatchNorm without running statistics")
    scale = (m.weight if m.affine else 1.0) / torch.sqrt(m.running_var + m.eps)
    shift = (m.bias if m.affine else 0.0) - m.running_mean * scale
    c = scale.numel()
    if isinstance(m, nn.BatchNorm2d):
        op = Op("conv2d", _np(scale.reshape(c, 1, 1, 1)), _np(shift),
                {"stride": (1, 1), "padding": (0, 0), "dilation": (1, 1), "groups": c},
                node.name)
    else:
        if len(x.shape) != 1:
            raise cap.error(node, "BatchNorm1d on a sequence (only (batch, features))")
        op = Op("linear", _np(torch.diag(scale)), _np(shift), {}, node.name)
    return cap.weighted_op(x, op, node, cap.shape(node))


def _maxpool_module(cap: Capture, node: fx.Node) -> Expr:
    x, m = _input(cap, node), cap.module(node)
    attrs = {"kernel_size": pair(m.kernel_size), "stride": pair(m.stride),
             "padding": pair(m.padding), "dilation": pair(m.dilation),
             "ceil_mode": bool(m.ceil_mode), "return_indices": m.return_indices}
    return _maxpool(cap, node, x, attrs, cap.shape(node))


def _avgpool_module(cap: Capture, node: fx.Node) -> Expr:
    x, m = _input(cap, node), cap.module(node)
    if m.divisor_override is not None:
        raise cap.error(node, "AvgPool2d with divisor_override")
    return _avgpool(cap, x, node, m.kernel_size, m.stride, m.padding, m.ceil_mode,
                    m.count_include_pad, cap.shape(node))


def _adaptive_avgpool_module(cap: Capture, node: fx.Node) -> Expr:
    return _adaptive_avgpool(cap, node, _input(cap, node), cap.shape(node))


def _flatten_module(cap: Capture, node: fx.Node) -> Expr:
    return _flatten(cap, node, _input(cap, node), cap.shape(node))


# -- functions ----------------------------------------------------------------------------------


def _add_function(cap: Capture, node: fx.Node) -> Expr:
    """``a + alpha * b``; adding the constant 0 is the identity (``sum([a, b, c])`` starts
    with it)."""
    a, b = node.args[:2] if len(node.args) >= 2 else (node.args[0], node.kwargs.get("other"))
    alpha = _number(cap, node.kwargs.get("alpha", node.args[2] if len(node.args) > 2 else 1))
    ca, cb = _number(cap, a), _number(cap, b)
    if ca == 0 or cb == 0:
        return cap.expr(node, b if ca == 0 else a)
    if ca is not None or cb is not None or alpha is None:
        raise cap.error(node, "adding a constant (a bias with no layer of its own; only the "
                        "sum of computed tensors is supported)")
    if alpha == 1:
        return cap.add(node, a, b)
    ea, eb = cap.expr(node, a), cap.expr(node, b)
    try:
        return ex.summed(ea, ex.scaled(eb, alpha, node.name), node.name)
    except ex.ExprError as exc:
        raise cap.error(node, str(exc)) from None


def _getitem(cap: Capture, node: fx.Node) -> Expr:
    src = node.args[0]
    if isinstance(src, fx.Node) and isinstance(cap.values.get(src.name), tuple):
        return cap.values[src.name][cap.arg(node.args[1])]  # one part of chunk/split
    x = _input(cap, node)
    index = cap.arg(node.args[1])
    index = index if isinstance(index, tuple) else (index,)
    if not all(isinstance(i, slice) for i in index) or not index or index[0] != slice(None):
        return _layout(cap, node)  # integer indices, None, Ellipsis: a gather
    per_sample = [(s.start, s.stop, s.step) for s in index[1:]]
    if len(per_sample) > len(x.shape):
        raise cap.error(node, "too many indices")
    per_sample += [(None, None, None)] * (len(x.shape) - len(per_sample))
    if all(s == (None, None, None) for s in per_sample):
        return x
    op = Op("slice", attrs={"index": tuple(per_sample)}, origin=node.name)
    return cap.linear_op(x, op, cap.shape(node))


def _pad(cap: Capture, node: fx.Node) -> Expr:
    x, args, kw = _input(cap, node), node.args, node.kwargs
    pad = tuple(int(p) for p in cap.arg(args[1]))
    mode = cap.arg(kw.get("mode", args[2] if len(args) > 2 else "constant"))
    value = cap.arg(kw.get("value", args[3] if len(args) > 3 else None))
    if mode != "constant" or value not in (None, 0, 0.0):
        raise cap.error(node, f"F.pad with mode {mode!r}, value {value!r} (only constant 0)")
    if len(pad) > 2 * len(x.shape):
        raise cap.error(node, "F.pad of the batch dimension")
    return cap.linear_op(x, Op("pad", attrs={"pad": pad}, origin=node.name), cap.shape(node))


def _flatten_function(cap: Capture, node: fx.Node) -> Expr:
    return _flatten(cap, node, _input(cap, node), cap.shape(node))


def _max_pool2d(cap: Capture, node: fx.Node) -> Expr:
    x = _input(cap, node)
    call = cap.bind(node, _MAX_POOL_ARGS)
    stride = call.get("stride") or call["kernel_size"]
    attrs = {"kernel_size": pair(call["kernel_size"]), "stride": pair(stride),
             "padding": pair(call.get("padding", 0)), "dilation": pair(call.get("dilation", 1)),
             "ceil_mode": bool(call.get("ceil_mode", False)),
             "return_indices": call.get("return_indices", False)}
    return _maxpool(cap, node, x, attrs, cap.shape(node))


def _avg_pool2d(cap: Capture, node: fx.Node) -> Expr:
    x = _input(cap, node)
    call = cap.bind(node, _AVG_POOL_ARGS)
    if call.get("divisor_override") is not None:
        raise cap.error(node, "avg_pool2d with divisor_override")
    return _avgpool(cap, x, node, call["kernel_size"], call.get("stride"),
                    call.get("padding", 0), call.get("ceil_mode", False),
                    call.get("count_include_pad", True), cap.shape(node))


def _adaptive_avg_pool2d(cap: Capture, node: fx.Node) -> Expr:
    return _adaptive_avgpool(cap, node, _input(cap, node), cap.shape(node))


def _mean_function(cap: Capture, node: fx.Node) -> Expr:
    x = _input(cap, node)
    return _mean(cap, node, x, cap.bind(node, _MEAN_ARGS), cap.shape(node))


# -- tensor methods -----------------------------------------------------------------------------


def _flatten_method(cap: Capture, node: fx.Node) -> Expr:
    return _flatten(cap, node, _input(cap, node), cap.shape(node))


def _mean_method(cap: Capture, node: fx.Node) -> Expr:
    x = _input(cap, node)
    call = dict(zip(["self", "dim", "keepdim"], node.args, strict=False))
    call.update(node.kwargs)
    return _mean(cap, node, x, {k: cap.arg(v) for k, v in call.items()}, cap.shape(node))


def _table(handler: Handler, *keys: Any) -> dict[Any, Handler]:
    return dict.fromkeys(keys, handler)


OPS = OpTable(
    modules={
        **_table(_identity, nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.Identity,
                 nn.AlphaDropout, nn.FeatureAlphaDropout, StochasticDepth),
        **_table(_layout, nn.Unflatten, nn.PixelShuffle, nn.PixelUnshuffle, nn.ChannelShuffle),
        nn.Conv2d: _conv2d,
        nn.Linear: _linear,
        **_table(_batchnorm, nn.BatchNorm1d, nn.BatchNorm2d),
        nn.MaxPool2d: _maxpool_module,
        nn.AvgPool2d: _avgpool_module,
        nn.AdaptiveAvgPool2d: _adaptive_avgpool_module,
        nn.Flatten: _flatten_module,
    },
    functions={
        **_table(_add_function, operator.add, operator.iadd, torch.add),
        **_table(_dropout_function, F.dropout, F.dropout1d, F.dropout2d, F.dropout3d,
                 F.alpha_dropout, F.feature_alpha_dropout, torch.dropout),
        stochastic_depth: _stochastic_depth,
        **_table(_cat, torch.cat, torch.concat, torch.concatenate),
        **_table(_layout, torch.reshape, torch.transpose, torch.permute, torch.chunk,
                 torch.split, torch.tensor_split, torch.unbind, torch.squeeze, torch.unsqueeze,
                 torch.narrow, torch.movedim, torch.moveaxis, torch.swapaxes, torch.swapdims,
                 torch.select, torch.unflatten, F.pixel_shuffle, F.pixel_unshuffle,
                 torch.channel_shuffle, F.channel_shuffle),
        torch.flatten: _flatten_function,
        operator.getitem: _getitem,
        F.pad: _pad,
        F.max_pool2d: _max_pool2d,
        F.avg_pool2d: _avg_pool2d,
        F.adaptive_avg_pool2d: _adaptive_avg_pool2d,
        torch.mean: _mean_function,
        **_table(_mul, operator.mul, operator.imul, torch.mul, torch.multiply),
        **_table(_div, operator.truediv, operator.itruediv, torch.div, torch.divide,
                 torch.true_divide),
        **_table(_neg, operator.neg, torch.neg, torch.negative),
        **_table(_sub, operator.sub, operator.isub, torch.sub, torch.subtract),
    },
    methods={
        **_table(_add_function, "add", "add_", "__add__", "__iadd__", "__radd__"),
        **_table(_flatten_method, "flatten"),
        **_table(_layout, "view", "reshape", "transpose", "permute", "chunk", "split",
                 "tensor_split", "unbind", "squeeze", "unsqueeze", "narrow", "movedim",
                 "moveaxis", "swapaxes", "swapdims", "select", "unflatten", "t", "expand",
                 "repeat"),
        **_table(_identity, "contiguous", "clone", "detach"),
        "mean": _mean_method,
        **_table(_mul, "mul", "mul_", "multiply", "__mul__", "__rmul__"),
        **_table(_div, "div", "div_", "divide", "true_divide", "__truediv__"),
        **_table(_neg, "neg", "neg_", "negative", "__neg__"),
        **_table(_sub, "sub", "sub_", "subtract", "__sub__"),
    },
)
"""Every supported fx target and its handler."""
