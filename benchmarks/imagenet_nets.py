"""ImageNet-size networks with random weights and realistic BatchNorm statistics.

Shared by ``bench_convert.py --imagenet`` and ``gpu_check.py``: torchvision's resnet34,
mobilenet_v2 and vgg16_bn, randomly initialised, with BatchNorm running statistics set from a
few batches of random 224x224 images (so the activations, and the spikes, have the ranges of a
trained network's after normalisation), in eval mode.
"""

from __future__ import annotations

import torch

NETS = ("resnet34", "mobilenet_v2", "vgg16_bn")


def imagenet_model(name: str, *, seed: int = 0, bn_batches: int = 2, batch: int = 8,
                   device: str | torch.device = "cpu") -> torch.nn.Module:
    """A torchvision classifier ``name`` with random weights and data-set BN statistics."""
    import torchvision

    torch.manual_seed(seed)
    model = getattr(torchvision.models, name)(weights=None).to(device)
    g = torch.Generator().manual_seed(seed)
    model.train()
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
                m.momentum = None  # cumulative average over the batches
        for _ in range(bn_batches):
            model(torch.randn(batch, 3, 224, 224, generator=g).to(device))
    return model.eval()


def images(n: int, *, seed: int = 1) -> torch.Tensor:
    """``n`` random normalised images ``(n, 3, 224, 224)`` (on the CPU)."""
    return torch.randn(n, 3, 224, 224, generator=torch.Generator().manual_seed(seed))
