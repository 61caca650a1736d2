"""Functional iLIF neuron for Norse: parameters, state and a pure step function.

The neuron works in windows of ``t_acc + t_gen`` steps after an idle ``offset``. Let ``n`` count
the steps from the initial state and ``tau = (n - offset) mod (t_acc + t_gen)``:

* ``n < offset``: idle, ``V = 0``, no spikes;
* ``tau < t_acc`` (accumulate): ``V <- I`` at ``tau = 0``, ``V <- k*V + I`` after, never firing;
  at ``tau = t_acc - 1`` the bias is added (and half an LSB when rounding to nearest);
* ``tau >= t_acc`` (generate): input ignored, ``z = [V >= v_th]`` (signed: ``-1`` when
  ``V <= -v_th``), ``V <- k*(V - z*v_th)``.

With ``k = 2`` a window turns the accumulated value into :func:`spikeconverter.coding.encode`'s
train, spike for spike.

Double buffering (``double_buffered=True``, beyond the paper): the population holds two membrane
banks and alternates them, so it accumulates sample ``i + 1`` in one bank while it generates
sample ``i`` from the other. Its period is ``P = max(t_acc, t_gen)`` instead of
``t_acc + t_gen``: with ``r = n - offset``, the bank ``(r // P) mod 2`` accumulates at window
step ``r mod P < t_acc`` and the bank ``((r - t_acc) // P) mod 2`` generates at window step
``(r - t_acc) mod P < t_gen``; each bank follows exactly the single-banked equations, so a
stream of samples fed every ``P`` steps gives, sample for sample, the spikes the single-banked
neuron gives when fed every ``t_acc + t_gen`` steps. A bank that neither accumulates nor
generates holds 0. The state's ``v`` then has a leading axis of 2 (the banks).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import norse.torch.utils.pytree as pytree
import torch
from norse.torch.functional.threshold import threshold

from spikeconverter.coding import rounding_offset, validate_code_params, window_period

__all__ = [
    "ILIFParameters",
    "ILIFState",
    "detach_state",
    "ilif_initial_state",
    "ilif_step",
    "validate_parameters",
]


class ILIFParameters(pytree.StateTuple, metaclass=pytree.MultipleInheritanceNamedTupleMeta):
    """Parameters of an iLIF neuron.

    Parameters
    ----------
    k : float
        Inverse leak, in (1, 2]; 2 makes the train the binary expansion of ``V / v_th``.
    v_th : torch.Tensor
        Threshold (scalar or broadcastable to the neuron shape, e.g. per channel).
    t_acc : int
        Steps of the accumulate phase (the length of the incoming trains).
    t_gen : int
        Steps of the generate phase (the length of the outgoing train).
    offset : int
        Idle steps before the first window (pipelining across layers).
    bias : torch.Tensor
        Added once per window, at the last accumulate step.
    rounding : str
        ``"floor"`` or ``"nearest"`` (adds half an LSB, ``v_th * k**(1 - t_gen) / 2``).
    signed : bool
        Emit ``-1`` spikes for negative membranes (layers without a ReLU after them).
    method : str
        Norse surrogate-gradient method of the threshold (``"super"``, ``"triangle"``, ...).
    alpha : float
        Parameter of the surrogate gradient.
    double_buffered : bool
        Two membrane banks: accumulate the next sample while generating this one (period
        ``max(t_acc, t_gen)`` instead of ``t_acc + t_gen``; see the module docstring).
    """

    k: float = 2.0
    v_th: torch.Tensor = torch.as_tensor(1.0)
    t_acc: int = 16
    t_gen: int = 16
    offset: int = 0
    bias: torch.Tensor = torch.as_tensor(0.0)
    rounding: str = "floor"
    signed: bool = False
    method: str = "super"
    alpha: float = torch.as_tensor(100.0)
    double_buffered: bool = False


class ILIFState(NamedTuple):
    """State of an iLIF population.

    Parameters
    ----------
    v : torch.Tensor
        Membrane potential; with ``double_buffered`` parameters the two banks stacked on a
        leading axis of 2.
    n : torch.Tensor
        Integer step counter (0-dim), the phase clock of the windows.
    """

    v: torch.Tensor
    n: torch.Tensor


def validate_parameters(p: ILIFParameters) -> None:
    """Raise ValueError naming the first bad field of ``p``."""
    try:
        validate_code_params(k=p.k, rounding=p.rounding)
    except ValueError as e:
        raise ValueError(f"ILIFParameters.{e}") from None
    for name in ("t_acc", "t_gen"):
        value = getattr(p, name)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"ILIFParameters.{name} must be an integer >= 1, got {value!r}")
    if isinstance(p.offset, bool) or not isinstance(p.offset, int) or p.offset < 0:
        raise ValueError(f"ILIFParameters.offset must be an integer >= 0, got {p.offset!r}")
    if not isinstance(p.double_buffered, bool):
        raise ValueError("ILIFParameters.double_buffered must be True or False, got "
                         f"{p.double_buffered!r}")
    v_th = torch.as_tensor(p.v_th)
    if not bool(torch.isfinite(v_th).all()) or not bool((v_th > 0).all()):
        raise ValueError(f"ILIFParameters.v_th must be finite and > 0, got {p.v_th!r}")


def ilif_initial_state(input_tensor: torch.Tensor, double_buffered: bool = False) -> ILIFState:
    """Zero membrane of the input's shape, dtype and device (two banks, stacked on a leading
    axis, when ``double_buffered``); clock at step 0."""
    v = torch.zeros_like(input_tensor)
    return ILIFState(
        v=torch.stack([v, v]) if double_buffered else v,
        n=torch.zeros((), dtype=torch.long, device=input_tensor.device),
    )


def detach_state(state: Any) -> Any:
    """Cut the autograd history of a state, keeping its phase clock: truncated BPTT.

    Every floating-point tensor (the membrane ``v``) is detached; integer tensors (the clock
    ``n``) pass unchanged, so the next call continues the same window where it left off and
    emits the same spikes as an unbroken run. Works on an :class:`ILIFState` and on any nesting
    of tuples, lists and dicts of states (e.g. the list a
    :class:`norse.torch.SequentialState` returns); ``None`` entries stay ``None``.

    Parameters
    ----------
    state : ILIFState or nested tuples/lists/dicts of states
        What a module or :func:`ilif_step` returned.

    Returns
    -------
    Same structure as ``state``
        With floating-point tensors detached.

    Examples
    --------
    Gradients stop at step 50, the clock does not:

    >>> z, state = layer(x[:50], state)         # doctest: +SKIP
    >>> loss(z).backward()                        # doctest: +SKIP
    >>> state = detach_state(state)              # doctest: +SKIP
    >>> z, state = layer(x[50:], state)          # doctest: +SKIP
    """

    def cut(t: torch.Tensor) -> torch.Tensor:
        return t.detach() if t.is_floating_point() or t.is_complex() else t

    return pytree.tree_map_only(torch.Tensor, cut, state)


def _spike(x: torch.Tensor, p: ILIFParameters) -> torch.Tensor:
    """``[x >= 0]`` forward, norse's surrogate gradient backward."""
    if not (torch.is_grad_enabled() and x.requires_grad):
        return (x >= 0).to(x.dtype)
    # norse's heaviside is strict (x > 0); adding the (gradient-free) x == 0 term makes it >=,
    # which the code needs: V == v_th must fire, exactly as coding.encode does.
    return threshold(x, p.method, p.alpha) + (x == 0).to(x.dtype)


def ilif_step(
    input_tensor: torch.Tensor,
    state: ILIFState,
    p: ILIFParameters = ILIFParameters(),
    dt: float = 0.001,
) -> tuple[torch.Tensor, ILIFState]:
    """One step of an iLIF population (``dt`` is unused: the model is discrete).

    Parameters
    ----------
    input_tensor : torch.Tensor
        Input current of this step.
    state : ILIFState
        Membrane and clock.
    p : ILIFParameters
        Neuron parameters.
    dt : float
        Ignored; kept for Norse's step-function signature.

    Returns
    -------
    (torch.Tensor, ILIFState)
        Spikes of this step (0/1, or -1/0/1 if signed) and the next state.
    """
    v, n = state
    acc, first, last, gen = (_bank_gates if p.double_buffered else _gates)(n, p, v)
    keep = p.k * (acc - first + gen)  # 0 while idle and at the first accumulate step
    v_th = p.v_th
    z = _spike(v - v_th, p)
    if p.signed:
        z = z - _spike(-v - v_th, p)
    z = z * gen
    # One expression for all phases (and both banks): the gates select what each phase keeps,
    # so the step is free of data-dependent branches (torch.compile).
    v_new = keep * (v - z * v_th) + acc * input_tensor
    if not (isinstance(p.bias, (int, float)) and p.bias == 0):
        v_new = v_new + last * p.bias
    if p.rounding == "nearest":
        half = rounding_offset(v_th, p.t_gen, float(p.k), p.rounding)
        if p.signed:
            half = half * torch.sign(v_new)
        v_new = v_new + last * half
    if p.double_buffered:
        z = z.sum(0)  # at most one bank generates
    return z, ILIFState(v=v_new, n=n + 1)


def _gates(n: torch.Tensor, p: ILIFParameters, v: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """Scalar gates of one bank at step ``n``: accumulating, first and last accumulate step,
    generating (0/1 in ``v``'s dtype)."""
    rel = n - p.offset
    active = (rel >= 0).to(v.dtype)
    tau = torch.remainder(rel, window_period(p.t_acc, p.t_gen))
    acc = (tau < p.t_acc).to(v.dtype) * active
    return (acc, acc * (tau == 0).to(v.dtype), acc * (tau == p.t_acc - 1).to(v.dtype),
            active - acc)


def _bank_gates(n: torch.Tensor, p: ILIFParameters, v: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """The gates of :func:`_gates` for two banks, shaped ``(2, 1, ...)`` to broadcast over the
    bank axis of ``v``: bank ``w mod 2`` holds the sample of window ``w``."""
    period = window_period(p.t_acc, p.t_gen, True)
    banks = torch.arange(2, device=v.device).reshape(2, *([1] * (v.ndim - 1)))
    rel = n - p.offset
    tau = torch.remainder(rel, period)
    acc = ((rel >= 0) & (tau < p.t_acc) & (torch.div(rel, period, rounding_mode="floor") % 2
                                            == banks)).to(v.dtype)
    rel_gen = rel - p.t_acc
    gen = ((rel_gen >= 0) & (torch.remainder(rel_gen, period) < p.t_gen)
           & (torch.div(rel_gen, period, rounding_mode="floor") % 2 == banks)).to(v.dtype)
    return acc, acc * (tau == 0).to(v.dtype), acc * (tau == p.t_acc - 1).to(v.dtype), gen
