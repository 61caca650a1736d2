"""iLIF neuron modules for Norse: :class:`ILIFCell` (one step) and :class:`ILIF` (time loop)."""

from __future__ import annotations

import torch
from norse.torch.module.snn import SNN, SNNCell

from spikeconverter.plugin.functional import (
    ILIFParameters,
    ILIFState,
    ilif_initial_state,
    ilif_step,
    validate_parameters,
)

__all__ = ["ILIFCell", "ILIF"]


def _as_tensors(p: ILIFParameters) -> ILIFParameters:
    validate_parameters(p)
    return p._replace(
        v_th=torch.as_tensor(p.v_th),
        bias=p.bias if isinstance(p.bias, (int, float)) else torch.as_tensor(p.bias),
        alpha=torch.as_tensor(p.alpha),
    )


class ILIFCell(SNNCell):
    """One step of an inverse-leaky integrate-and-fire population.

    Call it as ``z, state = cell(input_current, state)``; ``state=None`` starts at step 0 with a
    zero membrane shaped like the input. See :mod:`spikeconverter.plugin.functional` for the
    dynamics.

    Parameters
    ----------
    p : ILIFParameters
        Neuron parameters.
    **kwargs
        Passed to :class:`norse.torch.module.snn.SNNCell` (e.g. ``dt``, unused by iLIF).

    Examples
    --------
    >>> cell = ILIFCell(ILIFParameters(t_acc=4, t_gen=4))
    >>> state = None
    >>> for t in range(8):
    ...     z, state = cell(torch.full((2,), 0.3 if t < 4 else 0.0), state)
    """

    def __init__(self, p: ILIFParameters = ILIFParameters(), **kwargs):
        super().__init__(
            activation=ilif_step,
            state_fallback=self.initial_state,
            p=_as_tensors(p),
            **kwargs,
        )

    def initial_state(self, input_tensor: torch.Tensor) -> ILIFState:
        return ilif_initial_state(input_tensor)


class ILIF(SNN):
    """An iLIF population run over time: input ``(T, ...)`` gives spikes ``(T, ...)``.

    Parameters
    ----------
    p : ILIFParameters
        Neuron parameters.
    **kwargs
        Passed to :class:`norse.torch.module.snn.SNN` (``record_states``, ``dt``).

    Examples
    --------
    >>> layer = ILIF(ILIFParameters(t_acc=1, t_gen=8))
    >>> current = torch.zeros(9, 3); current[0] = torch.tensor([0.25, 1.0, 1.9])
    >>> spikes, state = layer(current)   # spikes[1:] is the 8-bit code of each value
    """

    def __init__(self, p: ILIFParameters = ILIFParameters(), **kwargs):
        super().__init__(
            activation=ilif_step,
            state_fallback=self.initial_state,
            p=_as_tensors(p),
            **kwargs,
        )

    def initial_state(self, input_tensor: torch.Tensor) -> ILIFState:
        return ilif_initial_state(input_tensor[0])
