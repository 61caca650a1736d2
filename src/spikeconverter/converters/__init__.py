"""Converters: torch/torchvision models -> graph IR -> calibration -> schedule -> backends."""
