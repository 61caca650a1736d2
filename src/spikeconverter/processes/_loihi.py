"""What the ProcessModels share: Loihi's fixed-point conventions and the window clock.

Kept outside the Process folders, which Lava scans for ProcessModels.
"""

from __future__ import annotations

import numpy as np
from lava.magma.core.model.py.model import PyLoihiProcessModel

#: Range of a 24-bit signed membrane.
V_MIN = -(2**23)
V_MAX = 2**23 - 1
#: Loihi MSB-aligns thresholds and synaptic input with a 6-bit shift (Lava's LIF convention).
SHIFT = 6


class WindowClockModel(PyLoihiProcessModel):
    """Phase clock of the windowed models; subclasses set ``_offset`` and ``_period``.

    Step ``n = time_step - 1`` is idle before ``_offset``; after it, its phase in the window is
    ``(n - _offset) mod _period``.
    """

    _offset: int = 0
    _period: int = 1
    _payload = np.float64

    def _tau(self) -> int:
        """Phase of this step in its window, or -1 while idle before the offset."""
        rel = self.time_step - 1 - self._offset
        return -1 if rel < 0 else rel % self._period

    def _send_silence(self, port) -> None:
        """Send zeros of the port's shape (allocated once)."""
        if getattr(self, "_silence", None) is None:
            self._silence = np.zeros(port.shape, dtype=self._payload)
        port.send(self._silence)
