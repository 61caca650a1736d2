"""Image data for conversion and evaluation: folders, torchvision roots, normalisation.

A data *source* is a path (an ``ImageFolder`` tree: one sub-folder per class) or a torchvision
dataset root written ``cifar10:ROOT`` / ``mnist:ROOT`` (read with ``download=False``: this package
never downloads). Images are converted to tensors and normalised with a preset (``cifar10``,
``imagenet``, ``mnist``) or an explicit mean/std.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Subset

from spikeconverter.options import NORMALIZATION_PRESETS, SPLITS, TORCHVISION_DATASETS

__all__ = [
    "NORMALIZATION_PRESETS",
    "Normalization",
    "calibration_batch",
    "iter_input_batches",
    "load_dataset",
    "load_image",
    "make_loader",
    "resolve_normalization",
    "subset",
]


@dataclass(frozen=True)
class Normalization:
    """Per-channel ``(x - mean) / std`` applied after scaling pixels to [0, 1]."""

    mean: tuple[float, ...]
    std: tuple[float, ...]

    @property
    def channels(self) -> int:
        return len(self.mean)


def resolve_normalization(
    preset: str | None = None,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
) -> Normalization | None:
    """Normalisation from a preset name or an explicit mean/std (not both).

    Returns ``None`` (pixels in [0, 1], no normalisation) when nothing is given.
    """
    if preset is not None and (mean is not None or std is not None):
        raise ValueError("give either a normalisation preset or an explicit mean/std, not both")
    if preset is not None:
        if preset not in NORMALIZATION_PRESETS:
            raise ValueError(
                f"unknown normalisation preset {preset!r}; choose one of "
                f"{sorted(NORMALIZATION_PRESETS)} or give mean and std explicitly"
            )
        m, s = NORMALIZATION_PRESETS[preset]
        return Normalization(m, s)
    if mean is None and std is None:
        return None
    if mean is None or std is None:
        raise ValueError("mean and std must be given together")
    m, s = tuple(float(v) for v in mean), tuple(float(v) for v in std)
    if len(m) != len(s) or not m:
        raise ValueError(
            f"mean and std need the same, non-zero number of channels, got {len(m)} and {len(s)}"
        )
    if any(not np.isfinite(v) or v <= 0 for v in s):
        raise ValueError(f"std entries must be finite and > 0, got {s}")
    return Normalization(m, s)


def _transform(norm: Normalization | None, channels: int | None, image_size: int | None,
               augment: bool = False):
    from torchvision import transforms

    steps: list[Any] = []
    # ImageFolder and CIFAR10 load RGB, MNIST loads grayscale: convert to what the model takes.
    if channels == 1:
        steps.append(transforms.Grayscale(num_output_channels=1))
    elif channels == 3:
        steps.append(transforms.Lambda(_to_rgb))
    if image_size is not None:
        steps += [transforms.Resize(image_size), transforms.CenterCrop(image_size)]
    if augment:
        steps += [transforms.Lambda(_random_pad_crop), transforms.RandomHorizontalFlip()]
    steps.append(transforms.ToTensor())
    if norm is not None:
        steps.append(transforms.Normalize(norm.mean, norm.std))
    return transforms.Compose(steps)


def _to_rgb(image: Any) -> Any:
    return image.convert("RGB")


def _random_pad_crop(image: Any) -> Any:
    """A random crop of the image's own size after padding 4 pixels (the CIFAR augmentation)."""
    from torchvision import transforms

    return transforms.RandomCrop((image.height, image.width), padding=4)(image)


def load_dataset(
    source: str | os.PathLike,
    *,
    split: str = "test",
    normalization: Normalization | None = None,
    channels: int | None = None,
    image_size: int | None = None,
    limit: int | None = None,
    seed: int = 0,
    augment: bool = False,
) -> Dataset:
    """A dataset of ``(image tensor, label)`` from a folder tree or a torchvision root.

    Parameters
    ----------
    source : str or path
        An ``ImageFolder`` directory, or ``"cifar10:ROOT"`` / ``"mnist:ROOT"`` for the torchvision
        datasets stored under ``ROOT`` (never downloaded).
    split : {"train", "test"}
        Which part of a torchvision dataset (ignored for folders).
    normalization : Normalization, optional
        See :func:`resolve_normalization`; its number of channels sets ``channels`` by default.
    channels : {1, 3}, optional
        Convert images to grayscale (1) or RGB (3). Defaults to the normalisation's channel
        count; ``ImageFolder`` otherwise loads RGB.
    image_size : int, optional
        Resize the shorter side and centre-crop to this size.
    limit : int, optional
        Keep this many images, drawn without replacement with ``seed`` (folders are sorted by
        class, so a plain prefix would hold one class only).
    seed : int
        Seed of that draw.
    augment : bool
        Random crop (padding 4) and horizontal flip of every image read (for training).
    """
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    if channels is None and normalization is not None:
        channels = normalization.channels
    if channels not in (None, 1, 3):
        raise ValueError(f"channels must be 1 or 3, got {channels!r}")
    if normalization is not None and channels is not None and normalization.channels not in (
        1,
        channels,
    ):
        raise ValueError(
            f"normalisation has {normalization.channels} channels but images have {channels}"
        )
    tf = _transform(normalization, channels, image_size, augment)
    text = os.fspath(source)
    kind, sep, root = text.partition(":")
    if sep and kind.lower() in TORCHVISION_DATASETS and not Path(text).exists():
        ds = _torchvision_dataset(kind.lower(), root, split, tf)
    else:
        ds = _image_folder(Path(text), tf)
    return subset(ds, limit, seed) if limit is not None else ds


def _image_folder(path: Path, tf: Any) -> Dataset:
    from torchvision.datasets import ImageFolder

    if not path.exists():
        raise FileNotFoundError(
            f"data folder {str(path)!r} does not exist (expected an ImageFolder tree with one "
            "sub-folder per class, or 'cifar10:ROOT' / 'mnist:ROOT' for torchvision datasets)"
        )
    if not path.is_dir():
        raise ValueError(f"data source {str(path)!r} is a file; give a folder with one sub-folder "
                         "per class")
    try:
        return ImageFolder(str(path), transform=tf, loader=load_image)
    except FileNotFoundError as e:  # torchvision's message names no fix
        raise ValueError(
            f"{str(path)!r} is not an ImageFolder tree: it needs one sub-folder per class "
            f"holding image files ({e})"
        ) from None


def load_image(path: str | os.PathLike) -> Any:
    """Read an image file as an RGB PIL image (what ``ImageFolder`` does), fully decoded.

    Raises
    ------
    ValueError
        The file is truncated, damaged or not an image; the message names it.
    """
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            return im.convert("RGB")  # decodes everything now: a truncated file fails here
    except (OSError, UnidentifiedImageError, SyntaxError, ValueError) as e:
        raise ValueError(f"image file {os.fspath(path)!r} cannot be read ({e}): it is "
                         "truncated, damaged or not an image; replace or remove it") from None


def _torchvision_dataset(kind: str, root: str, split: str, tf: Any) -> Dataset:
    from torchvision import datasets

    cls = {"cifar10": datasets.CIFAR10, "mnist": datasets.MNIST}[kind]
    if not root:
        raise ValueError(f"give the dataset root as '{kind}:ROOT'")
    try:
        return cls(root, train=split == "train", transform=tf, download=False)
    except RuntimeError as e:  # torchvision says "Dataset not found or corrupted"
        raise FileNotFoundError(
            f"{cls.__name__} ({split}) not found under {root!r}: spikeconverter never downloads "
            f"data; put the files there first (e.g. torchvision.datasets.{cls.__name__}"
            f"({root!r}, download=True)) or point to an ImageFolder tree ({e})"
        ) from None


def subset(dataset: Dataset, limit: int | None, seed: int = 0) -> Dataset:
    """``limit`` items drawn without replacement (sorted indices); all of them if fewer."""
    if limit is None:
        return dataset
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
        raise ValueError(f"limit must be an integer >= 1, got {limit!r}")
    n = len(dataset)
    if limit >= n:
        return dataset
    idx = np.sort(np.random.default_rng(seed).choice(n, size=limit, replace=False))
    return Subset(dataset, idx.tolist())


def make_loader(
    dataset: Dataset, batch_size: int = 64, workers: int = 0, shuffle: bool = False
) -> DataLoader:
    """A plain :class:`~torch.utils.data.DataLoader` (order kept unless ``shuffle``)."""
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be an integer >= 1, got {batch_size!r}")
    return DataLoader(dataset, batch_size=batch_size, shuffle=shuffle, num_workers=workers)


def calibration_batch(dataset: Dataset, n: int = 256, seed: int = 0,
                      workers: int = 0) -> torch.Tensor:
    """``n`` images of ``dataset`` (seeded draw) stacked into one ``(n, C, H, W)`` tensor,
    read by ``workers`` DataLoader processes (0: in this one)."""
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"the number of calibration images must be an integer >= 1, got {n!r}")
    if len(dataset) == 0:
        raise ValueError("the calibration dataset is empty")
    part = subset(dataset, n, seed)
    if workers == 0:
        return torch.stack([part[i][0] for i in range(len(part))])
    return torch.cat([x for x, *_ in make_loader(part, 64, workers=workers)])


def iter_input_batches(data: Any, batch_size: int = 64) -> Iterator[torch.Tensor]:
    """Input tensors from a tensor ``(N, ...)`` or an iterable of batches or ``(x, y)`` pairs."""
    if isinstance(data, torch.Tensor):
        if data.ndim < 2:
            raise ValueError(f"input tensor needs a batch dimension, got shape {tuple(data.shape)}")
        for i in range(0, data.shape[0], batch_size):
            yield data[i : i + batch_size]
        return
    if not isinstance(data, Iterable):
        raise TypeError(
            f"expected a tensor of inputs or an iterable of batches, got {type(data).__name__}"
        )
    for item in data:
        x = item[0] if isinstance(item, (tuple, list)) else item
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"batches must be tensors or (x, y) pairs, got {type(x).__name__}")
        yield x
