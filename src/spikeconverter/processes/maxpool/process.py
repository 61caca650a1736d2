"""Exact max pooling of MSB-first spike trains (the candidate-mask rule)."""

from __future__ import annotations

from typing import Any

import numpy as np
from lava.magma.core.process.ports.ports import InPort, OutPort
from lava.magma.core.process.process import LogConfig
from lava.magma.core.process.variable import Var

from spikeconverter.processes.base import ShapedProcess, validate_int, validate_shape

__all__ = ["SpikingMaxPool", "pool_indices", "pooled_shape"]


def _pair(proc: str, name: str, value: Any, minimum: int) -> tuple[int, int]:
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        value = (value, value)
    try:
        a, b = value
    except (TypeError, ValueError):
        raise ValueError(
            f"{proc}: {name} must be an int or a pair of ints, got {value!r}"
        ) from None
    return validate_int(proc, name, a, minimum), validate_int(proc, name, b, minimum)


def pooled_shape(
    shape: tuple[int, int, int],
    kernel_size: tuple[int, int],
    stride: tuple[int, int],
    padding: tuple[int, int],
) -> tuple[int, int, int]:
    """Output shape ``(W', H', C)`` of a pooling over a ``(W, H, C)`` input."""
    w, h, c = shape
    return (
        (w + 2 * padding[0] - kernel_size[0]) // stride[0] + 1,
        (h + 2 * padding[1] - kernel_size[1]) // stride[1] + 1,
        c,
    )


def pool_indices(
    shape: tuple[int, int, int],
    kernel_size: tuple[int, int],
    stride: tuple[int, int],
    padding: tuple[int, int],
) -> np.ndarray:
    """Flat (C-order) input index of every tap of every pooling window.

    Returns
    -------
    numpy.ndarray of int, shape ``(prod(pooled_shape), kw * kh)``
        Row ``i`` lists the inputs of output ``i`` (C-order over ``(W', H', C)``); taps in the
        zero padding point at index ``W * H * C``, one past the input, where a model keeps a 0.
    """
    w, h, c = shape
    wo, ho, _ = pooled_shape(shape, kernel_size, stride, padding)
    ow, oh, ch, kx, ky = np.meshgrid(
        np.arange(wo), np.arange(ho), np.arange(c), np.arange(kernel_size[0]),
        np.arange(kernel_size[1]), indexing="ij",
    )
    x = ow * stride[0] - padding[0] + kx
    y = oh * stride[1] - padding[1] + ky
    inside = (x >= 0) & (x < w) & (y >= 0) & (y < h)
    flat = np.where(inside, (x * h + y) * c + ch, w * h * c)
    return flat.reshape(wo * ho * c, kernel_size[0] * kernel_size[1])


class SpikingMaxPool(ShapedProcess):
    """Max pooling over ``(W, H, C)`` MSB-first trains, exact and without latency.

    All inputs must come from one population (one threshold, the same ``t_gen``) and carry
    non-negative binary codes. In every window, at its first step all inputs of a pooling
    window are candidates; at each step the output is 1 if any candidate spiked, and then the
    candidates that did not spike are dropped. The output train is the code of the largest
    input (the first spike where codes differ decides), so ``decode(out) = max(decode(in))``.

    Windows start at ``offset`` (the first step of the incoming trains, i.e. the upstream
    ``ILIF``'s ``offset + t_acc``) and repeat every ``period`` steps; the trains last ``t_gen``
    steps. The pool sends in the step it receives (connect it between a population's
    ``s_out`` and the synapse of the next layer; it adds no step of latency).

    Parameters
    ----------
    shape : tuple of int
        Input shape ``(W, H, C)`` (Lava's Conv order).
    kernel_size : int or (int, int)
        Pooling window ``(kw, kh)``.
    stride : int or (int, int), optional
        Step between windows; default ``kernel_size``.
    padding : int or (int, int)
        Zero padding on each side of ``W`` and ``H`` (padded taps never spike).
    t_gen : int
        Length of the incoming trains, >= 1.
    period : int, optional
        Steps from one train to the next, >= ``t_gen``; default ``2 * t_gen``.
    offset : int
        First step of the first train, >= 0.
    name : str, optional
        Name of the Process.
    log_config : LogConfig, optional
        Lava logging configuration.
    """

    def __init__(
        self,
        *,
        shape: tuple[int, int, int],
        kernel_size: Any,
        stride: Any = None,
        padding: Any = 0,
        t_gen: int = 16,
        period: int | None = None,
        offset: int = 0,
        name: str | None = None,
        log_config: LogConfig | None = None,
    ) -> None:
        proc = "SpikingMaxPool"
        shape = validate_shape(proc, shape)
        if len(shape) != 3:
            raise ValueError(f"{proc}: shape must be (W, H, C), got {shape!r}")
        kernel_size = _pair(proc, "kernel_size", kernel_size, 1)
        stride = kernel_size if stride is None else _pair(proc, "stride", stride, 1)
        padding = _pair(proc, "padding", padding, 0)
        if any(2 * p > k for p, k in zip(padding, kernel_size, strict=True)):
            raise ValueError(
                f"{proc}: padding must be at most half of kernel_size, got padding={padding} "
                f"for kernel_size={kernel_size}"
            )
        if any(s + 2 * p < k for s, p, k in zip(shape[:2], padding, kernel_size, strict=True)):
            raise ValueError(
                f"{proc}: kernel_size {kernel_size} is larger than the padded input {shape[:2]}"
            )
        t_gen = validate_int(proc, "t_gen", t_gen, 1)
        period = 2 * t_gen if period is None else validate_int(proc, "period", period, t_gen)
        offset = validate_int(proc, "offset", offset, 0)
        out_shape = pooled_shape(shape, kernel_size, stride, padding)
        super().__init__(
            shape=shape,
            out_shape=out_shape,
            kernel_size=kernel_size,
            stride=stride,
            padding=padding,
            t_gen=t_gen,
            period=period,
            offset=offset,
            name=name,
            log_config=log_config,
        )
        self.s_in = InPort(shape=shape)
        self.s_out = OutPort(shape=out_shape)
        taps = kernel_size[0] * kernel_size[1]
        self.candidates = Var(
            shape=(int(np.prod(out_shape)), taps), init=np.ones((int(np.prod(out_shape)), taps))
        )

    @property
    def out_shape(self) -> tuple[int, int, int]:
        """Output shape ``(W', H', C)``."""
        return self.proc_params["out_shape"]
