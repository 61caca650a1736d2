"""SpikeConverter: iLIF neurons with temporal separation, and ANN-to-SNN conversion.

>>> import spikeconverter as sc
>>> net = sc.convert(model, calibration_images, T=8)   # Norse backend: an nn.Module
>>> logits = net(images); net.stats
"""

from spikeconverter.converters import calibrate, capture, convert, load

__version__ = "0.1.0"

__all__ = ["__version__", "calibrate", "capture", "convert", "load"]
