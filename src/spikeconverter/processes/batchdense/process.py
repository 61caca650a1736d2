"""A batch of dense or sparse synapse groups: Lava's ``Dense``/``Sparse`` with a batch axis."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import scipy.sparse as sp
from lava.magma.core.process.ports.ports import InPort, OutPort
from lava.magma.core.process.process import LogConfig

from spikeconverter.processes.base import (
    BatchedProcess,
    validate_int,
    validate_shape,
    validate_window,
)

__all__ = ["BatchDense"]


class BatchDense(BatchedProcess):
    """``B`` copies of one synapse matrix, each fed by its own sample (a leading batch axis).

    Per sample ``b`` this is Lava's ``Dense`` (or ``Sparse`` for a scipy sparse matrix):
    ``a_out[b]`` at step ``n`` is ``W @ s_in[b]`` of step ``n - 1`` (one step of latency, as
    every Lava synapse), with ``s_in[b]`` cast to binary when ``num_message_bits == 0`` and
    taken as a graded payload otherwise. The fixed-point model follows Lava's bit-accurate
    Dense: 8-bit weights (clipped and truncated with :mod:`lava.utils.weightutils`), the sum
    shifted by ``weight_exp`` (left, or arithmetic right when negative), no clamp.

    Ports flatten nothing: ``s_in`` has shape ``(B, *in_shape)`` and ``a_out``
    ``(B, *out_shape)``, flattened per sample in C order (Lava's order) for the product.
    Each sample's sum is computed with the same operation whatever ``B`` (one matrix-vector
    product per sample, or a sparse product whose per-row order does not depend on ``B``), so
    results are bit-identical per sample for every batch size, in float as in fixed point.

    With ``window`` the synapse sums once per window, as
    :class:`~spikeconverter.processes.BatchConv` (``W c`` of the window's code ``c``, sent
    at the target's last accumulate step only).

    Parameters
    ----------
    weights : numpy.ndarray or scipy.sparse matrix
        ``(n_out, n_in)``; float (floating_pt) or integer mantissas (fixed_pt).
    batch : int
        Samples side by side, >= 1.
    in_shape, out_shape : tuple of int, optional
        Per-sample shapes of the ports (default ``(n_in,)`` and ``(n_out,)``).
    weight_exp : int
        Fixed point: the summed input is shifted by this exponent.
    num_message_bits : int
        0 for binary spikes, > 0 for graded payloads.
    window : dict, optional
        Sum once per window; default per step.
    low_weights : numpy.ndarray or scipy.sparse matrix, optional
        A second synapse group on the same connection, shaped as ``weights`` (fixed point's
        split weights: the low-order mantissas), with its own ``low_weight_exp``. ``a_out`` is
        the sum of both groups' outputs, each computed as it would be alone (its own 8-bit
        truncation and shift): what two Processes into the same target send, in one Process
        and one message.
    low_weight_exp : int
        The exponent of ``low_weights``.
    name : str, optional
    log_config : LogConfig, optional
    """

    def __init__(self, *, weights: Any, batch: int, in_shape: tuple[int, ...] | None = None,
                 out_shape: tuple[int, ...] | None = None, weight_exp: int = 0,
                 num_message_bits: int = 0, window: dict[str, Any] | None = None,
                 low_weights: Any = None, low_weight_exp: int = 0,
                 name: str | None = None, log_config: LogConfig | None = None) -> None:
        proc = "BatchDense"
        w = weights.tocsr() if sp.issparse(weights) else np.asarray(weights)
        if w.ndim != 2:
            raise ValueError(f"{proc}: weights must be a 2-D matrix, got shape {w.shape}")
        if low_weights is not None:
            low_weights = low_weights.tocsr() if sp.issparse(low_weights) \
                else np.asarray(low_weights)
            if low_weights.shape != w.shape:
                raise ValueError(f"{proc}: low_weights must have the shape of weights "
                                 f"{w.shape}, got {low_weights.shape}")
        batch = validate_int(proc, "batch", batch, 1)
        in_shape = validate_shape(proc, in_shape if in_shape is not None else (w.shape[1],))
        out_shape = validate_shape(proc, out_shape if out_shape is not None else (w.shape[0],))
        if math.prod(in_shape) != w.shape[1] or math.prod(out_shape) != w.shape[0]:
            raise ValueError(f"{proc}: weights {w.shape} do not map in_shape {in_shape} to "
                             f"out_shape {out_shape}")
        weight_exp = validate_int(proc, "weight_exp", weight_exp, -64)
        bits = validate_int(proc, "num_message_bits", num_message_bits, 0)
        super().__init__(shape=in_shape, weights=w, batch=batch, in_shape=in_shape,
                         out_shape=out_shape,
                         weight_exp=weight_exp, num_message_bits=bits,
                         window=validate_window(proc, window), low_weights=low_weights,
                         low_weight_exp=validate_int(proc, "low_weight_exp", low_weight_exp,
                                                     -64),
                         name=name, log_config=log_config)
        self.s_in = InPort(shape=(batch, *in_shape))
        self.a_out = OutPort(shape=(batch, *out_shape))
