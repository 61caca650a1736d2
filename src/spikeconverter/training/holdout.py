"""A seeded validation split of the training data, for best-on-validation model selection.

Selecting the best of several validations on the test images would report a maximum over
test measurements; holding out part of the training data keeps the test images unseen until
the end.
"""

from __future__ import annotations

import math
from collections.abc import Sized
from typing import Any

import torch
from torch.utils.data import DataLoader, Subset

__all__ = ["holdout_indices", "split_holdout"]


def holdout_indices(n: int, fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """``(train, validation)`` indices of ``n`` items: a seeded random ``fraction`` (rounded
    up, at least one, and at least one left for training) is held out.

    Raises
    ------
    ValueError
        ``fraction`` outside ``(0, 1)`` or fewer than 2 items.
    """
    if not (isinstance(fraction, (int, float)) and 0 < fraction < 1):
        raise ValueError(f"val_fraction must lie strictly between 0 and 1, got {fraction!r}")
    if n < 2:
        raise ValueError(f"cannot hold out validation data from {n} training item(s)")
    k = min(max(1, math.ceil(fraction * n)), n - 1)
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed)).tolist()
    return sorted(perm[k:]), sorted(perm[:k])


def split_holdout(train_data: Any, fraction: float, seed: int, batch_size: int,
                  val_dataset: Any = None) -> tuple[Any, Any]:
    """Split ``train_data`` into a training loader and held-out validation data.

    Parameters
    ----------
    train_data : tuple or DataLoader
        ``(inputs, labels)`` tensors, or a ``DataLoader`` over a map-style dataset (its batch
        size and workers are kept; the training part is shuffled with ``seed``).
    fraction, seed : float, int
        See :func:`holdout_indices`.
    batch_size : int
        Batch size for tensors (and for validation).
    val_dataset : Dataset, optional
        The dataset to take validation items from (same indices as ``train_data`` 's): the
        same images without random augmentation. Default: ``train_data`` 's own.

    Returns
    -------
    tuple
        ``(train, validation)``: tensors stay tensors, loaders become loaders over subsets.

    Raises
    ------
    TypeError
        A loader without a sized, indexable dataset (an iterable dataset cannot be split).
    ValueError
        See :func:`holdout_indices`; a ``val_dataset`` of another length.
    """
    if isinstance(train_data, (tuple, list)) and len(train_data) == 2 and all(
            isinstance(t, torch.Tensor) for t in train_data):
        x, y = train_data
        tr, va = holdout_indices(len(x), fraction, seed)
        if val_dataset is not None:
            raise TypeError("val_dataset goes with a DataLoader, not with tensors")
        return (x[tr], y[tr]), (x[va], y[va])
    ds = getattr(train_data, "dataset", None)
    if not isinstance(train_data, DataLoader) or not isinstance(ds, Sized) \
            or not hasattr(ds, "__getitem__"):
        raise TypeError("val_fraction needs train_data as (inputs, labels) tensors or a "
                        f"DataLoader over a map-style dataset, got {type(train_data).__name__}; "
                        "pass val_data instead")
    tr, va = holdout_indices(len(ds), fraction, seed)
    val_ds = ds if val_dataset is None else val_dataset
    if len(val_ds) != len(ds):
        raise ValueError(f"val_dataset has {len(val_ds)} items, the training dataset "
                         f"{len(ds)}: they must be the same images")
    train = DataLoader(Subset(ds, tr), batch_size=train_data.batch_size, shuffle=True,
                       generator=torch.Generator().manual_seed(seed),
                       num_workers=train_data.num_workers, collate_fn=train_data.collate_fn)
    val = DataLoader(Subset(val_ds, va), batch_size=batch_size,
                     num_workers=train_data.num_workers, collate_fn=train_data.collate_fn)
    return train, val


