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
"""

from __future__ import annotations

from typing import Any, NamedTuple

import norse.torch.utils.pytree as pytree
import torch
from norse.torch.functional.threshold import threshold

from spikeconverter.coding import rounding_offset, validate_code_params

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


class ILIFState(NamedTuple):
    """State of an iLIF population.

    Parameters
    ----------
    v : torch.Tensor
        Membrane potential.
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
    v_th = torch.as_tensor(p.v_th)
    if not bool(torch.isfinite(v_th).all()) or not bool((v_th > 0).all()):
        raise ValueError(f"ILIFParameters.v_th must be finite and > 0, got {p.v_th!r}")


def ilif_initial_state(input_tensor: torch.Tensor) -> ILIFState:
    """Zero membrane of the input's shape, dtype and device; clock at step 0."""
    return ILIFState(
        v=torch.zeros_like(input_tensor),
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
    period = p.t_acc + p.t_gen
    rel = n - p.offset
    active = (rel >= 0).to(v.dtype)
    tau = torch.remainder(rel, period)
    accumulating = (tau < p.t_acc).to(v.dtype) * active
    generating = active - accumulating
    # One expression for both phases: scalar gates select what each phase keeps, so the step is
    # free of data-dependent branches (torch.compile) and touches the tensor a few times only.
    keep = p.k * (active - accumulating * (tau == 0).to(v.dtype))
    v_th = p.v_th
    z = _spike(v - v_th, p)
    if p.signed:
        z = z - _spike(-v - v_th, p)
    z = z * generating
    v_new = keep * (v - z * v_th) + accumulating * input_tensor
    last = accumulating * (tau == p.t_acc - 1).to(v.dtype)
    if not (isinstance(p.bias, (int, float)) and p.bias == 0):
        v_new = v_new + last * p.bias
    if p.rounding == "nearest":
        half = rounding_offset(v_th, p.t_gen, float(p.k), p.rounding)
        if p.signed:
            half = half * torch.sign(v_new)
        v_new = v_new + last * half
    return z, ILIFState(v=v_new, n=n + 1)
