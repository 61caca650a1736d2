"""Reference networks: the CIFAR ResNet family (option-A shortcuts), a small CNN, and a
residual net built as Sengupta et al. (2019) build theirs for conversion (no BatchNorm, no bias)."""

from __future__ import annotations

from collections.abc import Callable

import torch.nn as nn

from spikeconverter.models.cifar_resnet import (
    CifarResNet,
    load_cifar_resnet,
    resnet20,
    resnet32,
    resnet44,
    resnet56,
    resnet110,
)
from spikeconverter.models.paper_resnet import PaperResNet, paper_resnet
from spikeconverter.models.small_cnn import SmallCNN, small_cnn

__all__ = ["CifarResNet", "PaperResNet", "SmallCNN", "get_model", "list_models",
           "load_cifar_resnet"]

_REGISTRY: dict[str, Callable[..., nn.Module]] = {
    "cifar_resnet20": resnet20,
    "cifar_resnet32": resnet32,
    "cifar_resnet44": resnet44,
    "cifar_resnet56": resnet56,
    "cifar_resnet110": resnet110,
    "paper_resnet": paper_resnet,
    "small_cnn": small_cnn,
}


def list_models() -> list[str]:
    """Names accepted by :func:`get_model`."""
    return sorted(_REGISTRY)


def get_model(name: str, **kw) -> nn.Module:
    """A fresh (randomly initialised) model by name; ``kw`` go to its constructor.

    Raises
    ------
    ValueError
        ``name`` is not one of :func:`list_models`.
    """
    if name not in _REGISTRY:
        raise ValueError(f"unknown model {name!r}; available: {', '.join(list_models())}")
    return _REGISTRY[name](**kw)
