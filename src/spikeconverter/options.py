"""Plain-data choices shared by the library and the command line (standard library only).

The command line's parser (:mod:`spikeconverter.cliparser`) is built from these without
importing torch, so ``spikeconverter --help`` stays fast; :mod:`spikeconverter.data` and
:mod:`spikeconverter.training` take the same names from here.
"""

from __future__ import annotations

__all__ = ["MIXUP_KINDS", "NORMALIZATION_PRESETS", "SPLITS", "SURROGATES", "TORCHVISION_DATASETS"]

#: Per-channel ``(mean, std)`` of the normalisation presets, after scaling pixels to [0, 1].
NORMALIZATION_PRESETS: dict[str, tuple[tuple[float, ...], tuple[float, ...]]] = {
    "cifar10": ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
    "imagenet": ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
    "mnist": ((0.1307,), (0.3081,)),
}
#: ``KIND:ROOT`` data specs read from torchvision's files under ROOT (never downloaded).
TORCHVISION_DATASETS = ("cifar10", "mnist")
#: Splits of a torchvision dataset.
SPLITS = ("train", "test")
#: norse.torch.functional.threshold methods that have a surrogate gradient.
SURROGATES = ("triangle", "super", "tanh", "circ", "heavi_erfc")
#: The kinds of batch mixing of fine-tuning ("both": mixup or CutMix, half the steps each).
MIXUP_KINDS = ("mixup", "cutmix", "both")
