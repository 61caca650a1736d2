"""The ``spikeconverter finetune`` subcommand: fine-tune a saved network on an image folder.

Wiring (in ``spikeconverter.cli``)::

    from spikeconverter.training.cli import add_finetune_parser
    add_finetune_parser(subparsers)        # sets func=run_finetune on the subparser

Example::

    spikeconverter finetune net.snn -d data/cifar10/train --val data/cifar10/test \\
        --normalize imagenet --augment -o net-ft.snn --epochs 2
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import torch

from spikeconverter.data import NORMALIZATION_PRESETS, Normalization, resolve_normalization
from spikeconverter.devices import add_runtime_arguments
from spikeconverter.training.config import FinetuneConfig
from spikeconverter.training.holdout import split_holdout
from spikeconverter.training.trainable import SURROGATES

__all__ = ["add_finetune_parser", "run_finetune"]

EPILOG = """examples:
  spikeconverter finetune net.snn -d ../shared/data/cifar10/train --val-fraction 0.1 \\
      --normalize imagenet --augment --optimizer adam --lr 1e-3 --cosine --epochs 8 \\
      --distill cifar_resnet20 --distill-checkpoint resnet20.th -o net-ft.snn
  spikeconverter finetune net-ft.snn -d ./train -o net-ft.snn --resume --epochs 3
"""


def add_finetune_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add ``finetune`` to ``subparsers`` (from ``ArgumentParser.add_subparsers``)."""
    p = subparsers.add_parser(
        "finetune", help="fine-tune a converted network through its spiking simulation",
        description="Train a saved network's weights, biases and thresholds through the iLIF "
                    "simulation (Norse surrogate gradients); writes the best network (by "
                    "--val accuracy, else the last) to --output, plus OUTPUT.state for "
                    "--resume.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("network", help="network file written by 'spikeconverter convert' or save()")
    p.add_argument("-d", "--data", required=True, help="training images: an ImageFolder tree")
    p.add_argument("--val", help="validation images (ImageFolder): measured every --val-every "
                                 "steps and each epoch; the best network is kept")
    p.add_argument("-o", "--output", required=True, help="fine-tuned network file to write")
    p.add_argument("--epochs", type=int, default=1, help="passes over the data (default: 1)")
    p.add_argument("--max-steps", type=int, help="stop after this many optimiser steps")
    p.add_argument("--lr", type=float, default=0.01, help="SGD learning rate (default: 0.01)")
    p.add_argument("--momentum", type=float, default=0.9, help="(default: 0.9)")
    p.add_argument("--weight-decay", type=float, default=5e-4, help="(default: 5e-4)")
    p.add_argument("--cosine", action="store_true", help="cosine learning-rate decay to 0")
    p.add_argument("--optimizer", choices=("sgd", "adam"), default="sgd",
                   help="sgd (the paper's, default) or adam (AdamW; --momentum is beta1)")
    p.add_argument("--clip-grad-norm", type=float, default=1.0,
                   help="clip the gradient norm (default: 1, which deep BN-folded nets need at "
                        "lr 0.01; 0 disables)")
    p.add_argument("--batch-size", type=int, default=64, help="(default: 64)")
    p.add_argument("--val-every", type=int, help="steps between validations (default: epoch)")
    p.add_argument("--resume", action="store_true", help="continue from OUTPUT.state")
    p.add_argument("--fixed-thresholds", action="store_true", help="do not train thresholds")
    p.add_argument("--surrogate", choices=SURROGATES, default="triangle",
                   help="Norse surrogate gradient (default: triangle)")
    p.add_argument("--alpha", type=float, default=1.0, help="surrogate parameter (default: 1)")
    p.add_argument("--augment", action="store_true",
                   help="random crop (padding 4) and horizontal flip of training images")
    p.add_argument("--normalize", choices=sorted(NORMALIZATION_PRESETS), help="mean/std preset")
    p.add_argument("--mean", type=float, nargs="+", help="explicit per-channel mean")
    p.add_argument("--std", type=float, nargs="+", help="explicit per-channel std")
    p.add_argument("--seed", type=int, default=0,
                   help="shuffling and --val-fraction split seed (default: 0)")
    p.add_argument("--val-fraction", type=float, metavar="F",
                   help="hold out this seeded share of --data (unaugmented) as validation "
                        "data for best-on-validation selection (not with --val)")
    g = p.add_argument_group("distillation from the ANN")
    g.add_argument("--distill", metavar="MODEL",
                   help="the ANN to distil from, as 'spikeconverter convert' names models "
                        "(zoo name, torchvision:NAME, file.py:factory)")
    g.add_argument("--distill-checkpoint", metavar="FILE", help="its weights (state_dict or "
                                                                "checkpoint file)")
    g.add_argument("--distill-weight", type=float, default=0.9,
                   help="share of the distillation term, 0..1 (default: 0.9)")
    g.add_argument("--distill-temperature", type=float, default=4.0,
                   help="distillation temperature (default: 4)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_runtime_arguments(p)
    p.set_defaults(func=run_finetune)
    return p


def _normalization(args: argparse.Namespace) -> Normalization | None:
    return resolve_normalization(args.normalize, args.mean, args.std)


def _folder(path: str, shape: tuple[int, ...], norm: Any, augment: bool):
    from torchvision import datasets, transforms

    if not Path(path).is_dir():
        raise ValueError(f"{path}: not a folder (expected an ImageFolder tree: one sub-folder "
                         "per class)")
    if len(shape) != 3:
        raise ValueError(f"the network takes inputs of shape {shape}, not images (C, H, W)")
    c, h, w = shape
    steps: list[Any] = [transforms.Grayscale(1) if c == 1 else transforms.Lambda(_rgb)]
    if augment:
        steps += [transforms.RandomCrop((h, w), padding=4), transforms.RandomHorizontalFlip()]
    steps.append(transforms.ToTensor())
    if norm is not None:
        if norm.channels != c:
            raise ValueError(f"normalisation has {norm.channels} channels, the network takes {c}")
        steps.append(transforms.Normalize(norm.mean, norm.std))
    return datasets.ImageFolder(path, transforms.Compose(steps))


def _config(args: argparse.Namespace) -> FinetuneConfig:
    """The :class:`~spikeconverter.training.finetune.FinetuneConfig` the arguments ask for."""
    return FinetuneConfig(
        epochs=args.epochs, lr=args.lr, momentum=args.momentum, weight_decay=args.weight_decay,
        batch_size=args.batch_size, val_every=args.val_every, checkpoint=args.output,
        resume=args.resume, progress=not args.no_progress, max_steps=args.max_steps,
        cosine=args.cosine, train_thresholds=not args.fixed_thresholds,
        surrogate=args.surrogate, alpha=args.alpha, seed=args.seed, optimizer=args.optimizer,
        clip_grad_norm=args.clip_grad_norm or None, device=args.device,
        distill_weight=args.distill_weight,
        distill_temperature=args.distill_temperature)


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


def _rgb(image: Any) -> Any:
    return image.convert("RGB")


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
    teacher = _teacher(args)
    net = load(args.network, device=args.device)
    shape = tuple(net.graph[net.graph.input].shape)
    norm = _normalization(args)
    train = _folder(args.data, shape, norm, args.augment)
    # under torchrun finetune() re-reads this dataset through a DistributedSampler
    loader = DataLoader(train, batch_size=args.batch_size, shuffle=True,
                        generator=torch.Generator().manual_seed(args.seed),
                        num_workers=args.workers)
    val = None
    if args.val:
        val = DataLoader(_folder(args.val, shape, norm, False), batch_size=args.batch_size,
                         num_workers=args.workers)
    elif args.val_fraction is not None:
        loader, val = split_holdout(loader, args.val_fraction, args.seed, args.batch_size,
                                    val_dataset=_folder(args.data, shape, norm, False))
    with process_group(args.device) as rank:
        before = evaluate(net, val) if val is not None else None
        history = finetune(net, loader, val_data=val, config=config.updated(teacher=teacher))
    if rank != 0:
        return 0
    net.save(args.output)
    out = sys.stdout
    print(f"fine-tuned {args.network}: {history['steps']} steps, {history['epochs']} epochs, "
          f"{history['seconds']:.1f} s ({history['cpu_seconds']:.1f} s CPU)", file=out)
    if before is not None:
        where = args.val or f"{args.val_fraction:g} of {args.data} (held out)"
        print(f"spiking top-1 on {where}: {100 * before:.2f} % before, "
              f"{100 * history['best_accuracy']:.2f} % after (best, step "
              f"{history['best_step']}, epoch {history['best_epoch']})", file=out)
    print(f"wrote {args.output} (training state: {args.output}.state)", file=out)
    return 0
