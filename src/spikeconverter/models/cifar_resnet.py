"""CIFAR-10 ResNets of He et al. (2016), option-A shortcuts, as in akamaster/pytorch_resnet_cifar10.

The layout matches the public checkpoints (``conv1``/``bn1``, ``layer1..3`` of ``BasicBlock``,
``linear``), so :func:`load_cifar_resnet` reads them directly (their ``module.`` prefix is
stripped). Option-A shortcuts (stride-2 subsampling, zero-padded channels) are written with
plain slicing and ``F.pad`` so that ``torch.fx`` traces them into ``getitem`` + ``pad`` nodes.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

__all__ = [
    "BasicBlock",
    "CifarResNet",
    "LambdaLayer",
    "load_cifar_resnet",
    "resnet20",
    "resnet32",
    "resnet44",
    "resnet56",
    "resnet110",
]

DEPTHS = {20: 3, 32: 5, 44: 7, 56: 9, 110: 18}


class LambdaLayer(nn.Module):
    """Wraps a function as a module (the option-A shortcut)."""

    def __init__(self, fn):
        super().__init__()
        self.fn = fn

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fn(x)


class _OptionA:
    """``x[:, :, ::2, ::2]`` padded with ``pad`` zero channels each side (picklable)."""

    def __init__(self, pad: int):
        self.pad = pad

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return F.pad(x[:, :, ::2, ::2], (0, 0, 0, 0, self.pad, self.pad), "constant", 0)


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, in_planes: int, planes: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.shortcut: nn.Module = nn.Sequential()
        if stride != 1 or in_planes != planes:
            self.shortcut = LambdaLayer(_OptionA(planes // 4))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        out = out + self.shortcut(x)
        return F.relu(out)


class CifarResNet(nn.Module):
    """ResNet for 32x32 inputs: 3 stages of ``n`` basic blocks at 16/32/64 channels.

    Parameters
    ----------
    num_blocks : int
        Blocks per stage (3 for ResNet-20, 5 for -32, 7 for -44, 9 for -56, 18 for -110).
    num_classes : int
        Size of the output layer.
    """

    def __init__(self, num_blocks: int, num_classes: int = 10):
        super().__init__()
        self.in_planes = 16
        self.conv1 = nn.Conv2d(3, 16, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        self.layer1 = self._make_layer(16, num_blocks, 1)
        self.layer2 = self._make_layer(32, num_blocks, 2)
        self.layer3 = self._make_layer(64, num_blocks, 2)
        self.linear = nn.Linear(64, num_classes)
        for m in self.modules():
            if isinstance(m, (nn.Linear, nn.Conv2d)):
                nn.init.kaiming_normal_(m.weight)

    def _make_layer(self, planes: int, num_blocks: int, stride: int) -> nn.Sequential:
        layers = []
        for s in [stride] + [1] * (num_blocks - 1):
            layers.append(BasicBlock(self.in_planes, planes, s))
            self.in_planes = planes
        return nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.layer3(self.layer2(self.layer1(out)))
        out = F.avg_pool2d(out, out.size()[3])
        out = out.view(out.size(0), -1)
        return self.linear(out)


def _factory(depth: int):
    def make(num_classes: int = 10) -> CifarResNet:
        return CifarResNet(DEPTHS[depth], num_classes)

    make.__name__ = f"resnet{depth}"
    make.__doc__ = f"CIFAR ResNet-{depth} (option-A shortcuts), random initial weights."
    return make


resnet20 = _factory(20)
resnet32 = _factory(32)
resnet44 = _factory(44)
resnet56 = _factory(56)
resnet110 = _factory(110)


def load_cifar_resnet(path: str | Path, depth: int | None = None) -> CifarResNet:
    """A CIFAR ResNet with the weights of an akamaster checkpoint, in eval mode.

    Parameters
    ----------
    path : str or Path
        A ``.th`` file holding ``{"state_dict": ...}`` (keys may carry a ``module.`` prefix) or
        a bare state dict.
    depth : int, optional
        20, 32, 44, 56 or 110; inferred from the number of blocks in the file when omitted.

    Raises
    ------
    ValueError
        The file is missing, unreadable, or does not hold a CIFAR ResNet of a known depth.
    """
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"checkpoint {path} does not exist")
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unpickling failure means the same thing here
        raise ValueError(f"checkpoint {path} could not be read by torch.load: {exc}") from exc
    state = blob.get("state_dict", blob) if isinstance(blob, dict) else None
    if not isinstance(state, dict):
        raise ValueError(f"checkpoint {path} holds no state dict")
    state = {k.removeprefix("module."): v for k, v in state.items()}
    blocks = {k.split(".")[1] for k in state if k.startswith("layer1.")}
    n = len(blocks)
    if depth is None:
        depth = next((d for d, nb in DEPTHS.items() if nb == n), None)
        if depth is None:
            raise ValueError(f"checkpoint {path}: {n} blocks per stage is no known CIFAR ResNet")
    if depth not in DEPTHS:
        raise ValueError(f"depth must be one of {sorted(DEPTHS)}, got {depth!r}")
    num_classes = state["linear.weight"].shape[0] if "linear.weight" in state else 10
    model = CifarResNet(DEPTHS[depth], num_classes)
    missing, unexpected = model.load_state_dict(state, strict=False)
    missing = [m for m in missing if not m.endswith("num_batches_tracked")]
    if missing or unexpected:
        raise ValueError(
            f"checkpoint {path} does not match CIFAR ResNet-{depth}: missing {missing[:5]}, "
            f"unexpected {unexpected[:5]}"
        )
    return model.eval()
