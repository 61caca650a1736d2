"""The ``spikeconverter finetune`` subcommand: fine-tune a saved network on images.

The options are defined with the others in :mod:`spikeconverter.cliparser` (which imports no
torch, so ``--help`` is fast); this module runs the command. Example::

    spikeconverter finetune net.snn -d data/cifar10/train --val data/cifar10/test \\
        --normalize imagenet --augment -o net-ft.snn --epochs 2
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

import torch

from spikeconverter import cliparser
from spikeconverter.data import (
    Normalization,
    load_dataset,
    make_loader,
    resolve_normalization,
)
from spikeconverter.training.config import FinetuneConfig
from spikeconverter.training.holdout import split_holdout

__all__ = ["add_finetune_parser", "run_finetune", "with_teacher"]


def add_finetune_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add ``finetune`` to ``subparsers`` (from ``ArgumentParser.add_subparsers``), running
    :func:`run_finetune`."""
    p = cliparser.add_finetune_parser(subparsers)
    p.set_defaults(func=run_finetune)
    return p


def _normalization(args: argparse.Namespace) -> Normalization | None:
    return resolve_normalization(args.normalize, args.mean, args.std)


def _images(args: argparse.Namespace, source: str, split: str, shape: tuple[int, ...],
            augment: bool) -> Any:
    """The images of ``source`` (any data spec) as the network takes them."""
    if len(shape) != 3:
        raise ValueError(f"the network takes inputs of shape {shape}, not images (C, H, W)")
    norm = _normalization(args)
    if norm is not None and norm.channels not in (1, shape[0]):
        raise ValueError(f"normalisation has {norm.channels} channels, the network takes "
                         f"{shape[0]}")
    try:
        ds = load_dataset(source, split=split, normalization=norm, channels=shape[0],
                          image_size=args.image_size, limit=args.limit, augment=augment)
    except FileNotFoundError as e:  # a bad option value, as the other data errors
        raise ValueError(str(e)) from None
    got = tuple(ds[0][0].shape) if len(ds) else shape
    if got != shape:
        raise ValueError(f"{source}: images of shape {got}, the network takes {shape}; pass "
                         "--image-size (or other data)")
    return ds


def _config(args: argparse.Namespace) -> FinetuneConfig:
    """The :class:`~spikeconverter.training.finetune.FinetuneConfig` the arguments ask for."""
    return FinetuneConfig(
        epochs=args.epochs, lr=args.lr, momentum=args.momentum, weight_decay=args.weight_decay,
        batch_size=args.batch_size, val_every=args.val_every, checkpoint=args.output,
        resume=args.resume, progress=not args.no_progress, max_steps=args.max_steps,
        cosine=args.cosine, warmup=args.warmup, threshold_lr_scale=args.threshold_lr_scale,
        weight_lr_scale=args.weight_lr_scale,
        train_thresholds=not args.fixed_thresholds,
        surrogate=args.surrogate, alpha=args.alpha, seed=args.seed, optimizer=args.optimizer,
        clip_grad_norm=args.clip_grad_norm or None, device=args.device,
        distill_weight=args.distill_weight, distill_temperature=args.distill_temperature,
        ema=args.ema, mixup=args.mixup, mixup_kind=args.mixup_kind, swa_from=args.swa_from)


def _teacher(args: argparse.Namespace) -> torch.nn.Module | None:
    """The ANN of ``--distill`` (with ``--distill-checkpoint``), or ``None``."""
    if args.val and args.val_fraction is not None:
        raise ValueError("--val and --val-fraction both give validation data: pass one")
    if args.val_fraction is not None and not 0 < args.val_fraction < 1:
        raise ValueError(f"--val-fraction must lie strictly between 0 and 1, got "
                         f"{args.val_fraction}")
    if args.distill is None:
        if args.distill_checkpoint is not None:
            raise ValueError("--distill-checkpoint needs --distill MODEL (the ANN it belongs "
                             "to)")
        return None
    from spikeconverter.modelspec import load_model

    return load_model(args.distill, args.distill_checkpoint)


def with_teacher(config: FinetuneConfig, args: argparse.Namespace,
                 teacher: torch.nn.Module | None) -> FinetuneConfig:
    """``config`` with the ANN and the options that need it (``--select-on``,
    ``--feature-weight``), refused with the flag's name when they need an ANN and none is
    given."""
    if args.select_on in ("kl", "agreement") and teacher is None:
        raise ValueError(f"--select-on {args.select_on} compares with the ANN: pass "
                         "--distill MODEL")
    if args.feature_weight and teacher is None:
        raise ValueError("--feature-weight matches the ANN's activations: pass --distill MODEL")
    return config.updated(teacher=teacher, select_on=args.select_on,
                          feature_weight=args.feature_weight)


def run_finetune(args: argparse.Namespace) -> int:
    """Run the subcommand; returns the exit status (0 on success).

    Raises
    ------
    ValueError
        Bad files or settings (the caller turns it into a one-line message).
    """
    from torch.utils.data import DataLoader

    from spikeconverter.converters.api import load
    from spikeconverter.distributed import process_group
    from spikeconverter.training.finetune import evaluate, finetune

    config = _config(args)  # settings checked before any file is read
    config = with_teacher(config, args, _teacher(args))
    net = load(args.network, device=args.device)
    shape = tuple(net.graph[net.graph.input].shape)
    train = _images(args, args.data, "train", shape, args.augment)
    # under torchrun finetune() re-reads this dataset through a DistributedSampler
    loader = DataLoader(train, batch_size=args.batch_size, shuffle=True,
                        generator=torch.Generator().manual_seed(args.seed),
                        num_workers=args.workers)
    val = None
    if args.val:
        val = make_loader(_images(args, args.val, "test", shape, False), args.batch_size,
                          workers=args.workers)
    elif args.val_fraction is not None:
        loader, val = split_holdout(loader, args.val_fraction, args.seed, args.batch_size,
                                    val_dataset=_images(args, args.data, "train", shape, False))
    cliparser.check_output_file(args.output, args.overwrite or args.resume)  # before training
    with process_group(args.device) as rank:
        before = evaluate(net, val) if val is not None else None
        history = finetune(net, loader, val_data=val, config=config)
    if rank != 0:
        return 0
    net.save(args.output)
    out = sys.stdout
    print(f"fine-tuned {args.network}: {history['steps']} steps, {history['epochs']} epochs, "
          f"{history['seconds']:.1f} s ({history['cpu_seconds']:.1f} s CPU)", file=out)
    if before is not None:
        where = args.val or f"{args.val_fraction:g} of {args.data} (held out)"
        print(f"spiking top-1 on {where}: {100 * before:.2f} % before, "
              f"{100 * history['best_accuracy']:.2f} % after (best: {history['best']})",
              file=out)
    print(f"wrote {args.output} (training state: {args.output}.state)", file=out)
    return 0
