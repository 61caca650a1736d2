"""A batch of convolutional synapse groups: Lava's ``Conv`` with a leading batch axis."""

from __future__ import annotations

from typing import Any

import numpy as np
from lava.magma.core.process.ports.ports import InPort, OutPort
from lava.magma.core.process.process import LogConfig
from lava.proc.conv import utils

from spikeconverter.processes.base import (
    BatchedProcess,
    validate_int,
    validate_shape,
    validate_window,
)

__all__ = ["BatchConv"]


class BatchConv(BatchedProcess):
    """``B`` copies of one ``lava.proc.conv.process.Conv``, one per sample of the batch.

    Per sample ``b`` the semantics are Lava's ``Conv``: a true convolution over ``(W, H, C)``
    (the kernel ``(C_out, kw, kh, C_in / groups)`` is flipped), ``padding``, ``stride``,
    ``dilation`` and ``groups`` in Lava's (W, H) order, the result of step ``n - 1`` sent at
    step ``n`` (one step of latency), binary input for ``num_message_bits == 0`` and graded
    otherwise. The fixed-point model applies ``weight_exp`` as Lava's bit-accurate Dense does
    and wraps the result to 24 bits (``lava.proc.conv.utils.signed_clamp``), as
    :class:`spikeconverter.processes.fastconv.models.PyConvModelIm2colFixed`.

    Ports: ``s_in`` ``(B, W, H, C)``, ``a_out`` ``(B, W', H', C_out)``. The models multiply,
    per kernel tap, each sample's strided input slab by the tap's weight block; a sample's
    result never depends on the other samples or on ``B`` (bit-identical per sample).

    With ``window`` (see :func:`spikeconverter.processes.base.validate_window` and
    :mod:`spikeconverter.converters.to_lava.windowed`) the synapse sums once per window
    instead: it keeps the code ``c <- k c + s`` of each input over the ``length`` steps from
    ``start + w * period`` and sends the convolution of ``c`` (fixed point: shifted by
    ``weight_exp``, wrapped to 24 bits only for an analog payload) at step
    ``start + w * period + length``, and nothing on ``a_out`` at the other steps: its target
    must read ``a_in`` only at those steps (a windowed
    :class:`~spikeconverter.processes.BatchILIF`).

    Parameters
    ----------
    weight : numpy.ndarray
        ``(C_out, kw, kh, C_in / groups)``, Lava's Conv layout.
    input_shape : tuple of int
        Per-sample ``(W, H, C_in)``.
    batch : int
        Samples side by side, >= 1.
    padding, stride, dilation : int or (int, int)
    groups : int
    weight_exp : int
    num_message_bits : int
    window : dict, optional
        Sum once per window (above); default per step.
    low_weight : numpy.ndarray, optional
        A second synapse group on the same connection, shaped as ``weight`` (fixed point's
        split weights: the low-order mantissas), with its own ``low_weight_exp``; groups 1
        only. ``a_out`` is the sum of both groups' outputs, each computed as it would be
        alone (shifted, and wrapped per step, by its own exponent): what two Processes into
        the same target send, with one gathering of the input and one message instead of two.
    low_weight_exp : int
        The exponent of ``low_weight``.
    name : str, optional
    log_config : LogConfig, optional
    """

    def __init__(self, *, weight: np.ndarray, input_shape: tuple[int, int, int], batch: int,
                 padding: Any = 0, stride: Any = 1, dilation: Any = 1, groups: int = 1,
                 weight_exp: int = 0, num_message_bits: int = 0,
                 window: dict[str, Any] | None = None, low_weight: np.ndarray | None = None,
                 low_weight_exp: int = 0, name: str | None = None,
                 log_config: LogConfig | None = None) -> None:
        proc = "BatchConv"
        weight = np.asarray(weight)
        if low_weight is not None:
            low_weight = np.asarray(low_weight)
            if low_weight.shape != weight.shape or int(groups) != 1:
                raise ValueError(f"{proc}: low_weight must have the shape of weight "
                                 f"{weight.shape} and groups be 1, got {low_weight.shape} "
                                 f"and groups={groups}")
        input_shape = validate_shape(proc, input_shape)
        if weight.ndim != 4 or len(input_shape) != 3:
            raise ValueError(f"{proc}: weight must be (C_out, kw, kh, C_in/groups) and "
                             f"input_shape (W, H, C), got {weight.shape} and {input_shape}")
        batch = validate_int(proc, "batch", batch, 1)
        groups = validate_int(proc, "groups", groups, 1)
        if input_shape[2] % groups or weight.shape[0] % groups \
                or weight.shape[3] * groups != input_shape[2]:
            raise ValueError(f"{proc}: {input_shape[2]} input channels, {weight.shape[0]} "
                             f"outputs and kernel {weight.shape} do not fit groups={groups}")
        padding, stride, dilation = (utils.make_tuple(v) for v in (padding, stride, dilation))
        out_shape = tuple(int(v) for v in utils.output_shape(
            input_shape, weight.shape[0], weight.shape[1:3], stride, padding, dilation))
        super().__init__(shape=input_shape, weight=weight, input_shape=input_shape,
                         output_shape=out_shape,
                         batch=batch, padding=tuple(padding), stride=tuple(stride),
                         dilation=tuple(dilation), groups=groups,
                         weight_exp=validate_int(proc, "weight_exp", weight_exp, -64),
                         num_message_bits=validate_int(proc, "num_message_bits",
                                                       num_message_bits, 0),
                         window=validate_window(proc, window), low_weight=low_weight,
                         low_weight_exp=validate_int(proc, "low_weight_exp", low_weight_exp,
                                                     -64),
                         name=name, log_config=log_config)
        self.s_in = InPort(shape=(batch, *input_shape))
        self.a_out = OutPort(shape=(batch, *out_shape))

    @property
    def output_shape(self) -> tuple[int, int, int]:
        """Per-sample output shape ``(W', H', C_out)``."""
        return self.proc_params["output_shape"]
