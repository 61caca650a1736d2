"""iLIF neuron modules for Norse: :class:`ILIFCell` (one step) and :class:`ILIF` (time loop)."""

from __future__ import annotations

from collections.abc import Iterable

import torch
from norse.torch.module.snn import SNN, SNNCell

from spikeconverter.plugin.functional import (
    ILIFParameters,
    ILIFState,
    ilif_initial_state,
    ilif_step,
    validate_parameters,
)

__all__ = ["ILIFCell", "ILIF", "LEARNABLE_FIELDS", "TENSOR_FIELDS"]


#: Fields of :class:`ILIFParameters` held as tensors: module buffers, or parameters when learnable.
TENSOR_FIELDS = ("v_th", "bias", "alpha")
#: Fields that ``learnable=`` may name (``alpha`` only shapes the surrogate gradient).
LEARNABLE_FIELDS = ("v_th", "bias")


class _RegisteredParameters(torch.nn.Module):
    """Holds an :class:`ILIFParameters` with its tensors registered on the module.

    Norse's base modules keep ``p`` as a plain attribute, invisible to ``.to()``, ``.double()``,
    ``state_dict()`` and optimisers. Here ``v_th``, ``bias`` and ``alpha`` live in the module as
    buffers, or as :class:`torch.nn.Parameter` when learnable, and the property ``p`` rebuilds
    the NamedTuple from them at every access, so the step function always sees the registered
    (moved, cast, loaded, trained) tensors.
    """

    _learnable: tuple[str, ...] = ()

    @property
    def p(self) -> ILIFParameters:
        tensors = {name: getattr(self, name) for name in TENSOR_FIELDS if name in self._owned}
        return self._static._replace(**tensors)

    @p.setter
    def p(self, p: ILIFParameters) -> None:
        validate_parameters(p)
        unknown = sorted(set(self._learnable) - set(LEARNABLE_FIELDS))
        if unknown:
            raise ValueError(f"learnable must name fields among {LEARNABLE_FIELDS}, got "
                             f"{unknown}")
        owned = []
        for name in TENSOR_FIELDS:
            value = getattr(p, name)
            if name == "bias" and isinstance(value, (int, float)) and name not in self._learnable:
                continue  # a plain-number bias stays a number: the step skips a zero bias
            self._register(name, value)
            owned.append(name)
        self._owned = tuple(owned)
        self._static = p

    def _register(self, name: str, value) -> None:
        for store in (self._parameters, self._buffers):
            store.pop(name, None)
        if isinstance(value, torch.nn.Parameter):
            self.register_parameter(name, value)  # the caller's own Parameter, shared on purpose
            return
        t = torch.as_tensor(value)
        if name in self._learnable:
            t = t.to(torch.get_default_dtype()) if not t.is_floating_point() else t
            self.register_parameter(name, torch.nn.Parameter(t.detach().clone()))
        elif t.requires_grad:
            # part of the caller's autograd graph (e.g. a threshold that training learns
            # upstream): kept as is so gradients reach it
            self.register_buffer(name, t)
        else:
            # own storage: load_state_dict copies in place and must never write into the
            # caller's tensor or the shared default of ILIFParameters
            self.register_buffer(name, t.clone())


def _learnable_names(learnable: Iterable[str] | str) -> tuple[str, ...]:
    if isinstance(learnable, str):
        learnable = (learnable,)
    return tuple(learnable)


class ILIFCell(_RegisteredParameters, SNNCell):
    """One step of an inverse-leaky integrate-and-fire population.

    Call it as ``z, state = cell(input_current, state)``; ``state=None`` starts at step 0 with a
    zero membrane shaped like the input. See :mod:`spikeconverter.plugin.functional` for the
    dynamics.

    ``v_th``, ``bias`` (when a tensor) and ``alpha`` are registered on the module: buffers by
    default, so ``.to()``, ``.double()`` and ``state_dict()`` carry them; parameters when named in
    ``learnable`` (or passed as :class:`torch.nn.Parameter`), so optimisers train them. ``cell.p``
    is the :class:`ILIFParameters` built from them.

    Parameters
    ----------
    p : ILIFParameters
        Neuron parameters.
    learnable : str or iterable of str
        Fields to train as :class:`torch.nn.Parameter`: ``"v_th"`` and/or ``"bias"``.
    **kwargs
        Passed to :class:`norse.torch.module.snn.SNNCell` (e.g. ``dt``, unused by iLIF).

    Examples
    --------
    >>> cell = ILIFCell(ILIFParameters(t_acc=4, t_gen=4), learnable="v_th")
    >>> state = None
    >>> for t in range(8):
    ...     z, state = cell(torch.full((2,), 0.3 if t < 4 else 0.0), state)
    ...     if t == 5:
    ...         state = detach_state(state)  # truncated BPTT: the clock keeps counting
    """

    def __init__(self, p: ILIFParameters = ILIFParameters(), *,
                 learnable: Iterable[str] | str = (), **kwargs):
        object.__setattr__(self, "_learnable", _learnable_names(learnable))
        super().__init__(activation=ilif_step, state_fallback=self.initial_state, p=p, **kwargs)

    def initial_state(self, input_tensor: torch.Tensor) -> ILIFState:
        return ilif_initial_state(input_tensor, self.p.double_buffered)


class ILIF(_RegisteredParameters, SNN):
    """An iLIF population run over time: input ``(T, ...)`` gives spikes ``(T, ...)``.

    Its tensors are registered like :class:`ILIFCell`'s.

    Parameters
    ----------
    p : ILIFParameters
        Neuron parameters.
    learnable : str or iterable of str
        Fields to train as :class:`torch.nn.Parameter`: ``"v_th"`` and/or ``"bias"``.
    **kwargs
        Passed to :class:`norse.torch.module.snn.SNN` (``record_states``, ``dt``).

    Examples
    --------
    >>> layer = ILIF(ILIFParameters(t_acc=1, t_gen=8))
    >>> current = torch.zeros(9, 3); current[0] = torch.tensor([0.25, 1.0, 1.9])
    >>> spikes, state = layer(current)   # spikes[1:] is the 8-bit code of each value
    """

    def __init__(self, p: ILIFParameters = ILIFParameters(), *,
                 learnable: Iterable[str] | str = (), **kwargs):
        object.__setattr__(self, "_learnable", _learnable_names(learnable))
        super().__init__(activation=ilif_step, state_fallback=self.initial_state, p=p, **kwargs)

    def initial_state(self, input_tensor: torch.Tensor) -> ILIFState:
        return ilif_initial_state(input_tensor[0], self.p.double_buffered)
