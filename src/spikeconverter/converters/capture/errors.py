"""What the capture reports: its error type and the list of operations it supports."""

from __future__ import annotations

__all__ = ["SUPPORTED_OPERATIONS", "ConversionError"]

SUPPORTED_OPERATIONS = (
    "Conv2d (any stride/padding/dilation/groups), Linear, BatchNorm1d/2d, ReLU, ReLU6, "
    "Hardtanh(0, m), clamp(min=0), MaxPool2d, AvgPool2d, AdaptiveAvgPool2d, mean over H,W, "
    "Flatten/flatten/view/reshape to (batch, features), Dropout, Identity, residual add, "
    "strided slicing x[:, a:b:s, ...], F.pad with constant 0"
)


class ConversionError(ValueError):
    """The model cannot be converted (unsupported operation, untraceable, failed self-check)."""
