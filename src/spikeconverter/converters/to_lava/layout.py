"""Tensor layouts: torch's per-sample ``(C, H, W)`` against Lava's ``(W, H, C)``.

Lava's Conv works on ``(W, H, C)`` arrays and every port flattens in C order, so a population of
shape ``(C, H, W)`` in the graph IR becomes a Lava population of shape ``(W, H, C)`` (the axes
reversed); 1-D populations keep their shape. These helpers convert values and flat indices
consistently, in both directions.
"""

from __future__ import annotations

import numpy as np

__all__ = ["flat_perm", "lava_shape", "to_lava", "to_torch"]


def lava_shape(shape: tuple[int, ...]) -> tuple[int, ...]:
    """Lava shape of a population of per-sample torch ``shape`` (axes reversed)."""
    return tuple(int(s) for s in reversed(tuple(shape)))


def to_lava(x: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Values ``(..., *shape)`` in torch order -> ``(..., *lava_shape(shape))``."""
    lead = x.ndim - len(shape)
    axes = list(range(lead)) + [lead + i for i in reversed(range(len(shape)))]
    return np.transpose(x, axes)


def to_torch(x: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Inverse of :func:`to_lava`: ``(..., *lava_shape(shape))`` -> ``(..., *shape)``."""
    return to_lava(x, lava_shape(shape))


def flat_perm(shape: tuple[int, ...]) -> np.ndarray:
    """``perm[j]`` = torch flat index of the neuron at Lava flat index ``j``."""
    n = int(np.prod(shape))
    return to_lava(np.arange(n).reshape(shape), shape).reshape(-1)
