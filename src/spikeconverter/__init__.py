"""SpikeConverter: iLIF neurons with temporal separation, and ANN-to-SNN conversion.

>>> import spikeconverter as sc
>>> net = sc.convert(model, calibration_images, T=8)   # Norse backend: an nn.Module
>>> logits = net(images); net.stats
>>> sc.finetune(net, train_loader, epochs=1, val_data=val_loader)   # low-T recovery
"""

from spikeconverter.converters import calibrate, capture, convert, load
from spikeconverter.training import finetune

__version__ = "0.1.0"

__all__ = ["__version__", "calibrate", "capture", "convert", "finetune", "load"]
