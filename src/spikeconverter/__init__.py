"""SpikeConverter: iLIF neurons with temporal separation, and ANN-to-SNN conversion.

>>> import spikeconverter as sc
>>> net = sc.convert(model, calibration_images, T=8)   # Norse backend: an nn.Module
>>> logits = net(images); net.stats
>>> sc.finetune(net, train_loader, epochs=1, val_data=val_loader)   # low-T recovery

The names below are resolved on first use (PEP 562), so ``import spikeconverter`` loads
neither Norse, Lava nor the training code, and changes no global state (such as the
multiprocessing start method that Lava sets): a user of :mod:`spikeconverter.coding` or of
the neurons pays only for what they import.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # for type checkers and IDEs only; never executed
    from spikeconverter.converters import calibrate, capture, convert, load
    from spikeconverter.training import finetune

__version__ = "0.1.0"

#: Public name -> the module that defines it, imported when the name is first used.
LAZY_NAMES = {
    "calibrate": "spikeconverter.converters",
    "capture": "spikeconverter.converters",
    "convert": "spikeconverter.converters",
    "load": "spikeconverter.converters",
    "finetune": "spikeconverter.training",
}

__all__ = ["__version__", "calibrate", "capture", "convert", "finetune", "load"]


def __getattr__(name: str) -> Any:
    """Import the module that defines ``name`` on first use and cache the name here."""
    module = LAZY_NAMES.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later look-ups bypass __getattr__
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(LAZY_NAMES))
