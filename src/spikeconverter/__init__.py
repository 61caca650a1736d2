"""SpikeConverter: iLIF neurons with temporal separation, and ANN-to-SNN conversion."""

__version__ = "0.1.0"
