"""The argument tree of the ``spikeconverter`` command, built without importing torch.

``spikeconverter --help`` and ``spikeconverter COMMAND --help`` read only this module (and
:mod:`spikeconverter.options`): the commands themselves (:mod:`spikeconverter.cli`) import torch,
Norse and Lava when they run. Every subcommand speaks one grammar:

* data: ``-d/--data`` takes an ImageFolder directory or ``cifar10:ROOT`` / ``mnist:ROOT``;
  ``--limit N`` (a seeded draw across classes), ``--normalize PRESET`` or ``--mean/--std``,
  ``--batch-size``;
* output: ``-o/--output`` names the file or folder written, checked before any work, and
  existing results are replaced only with ``--overwrite``;
* runtime: ``--device cpu|cuda|cuda:N`` and ``--workers N`` (DataLoader processes).
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from spikeconverter.options import (
    MIXUP_KINDS,
    NORMALIZATION_PRESETS,
    SPLITS,
    SURROGATES,
    TORCHVISION_DATASETS,
)

__all__ = ["EXAMPLES", "PROG", "CommandError", "add_finetune_parser", "build_parser",
           "check_output_file", "check_output_folder"]

PROG = "spikeconverter"
DATA_HELP = ("an ImageFolder directory, or " + " / ".join(f"{k}:ROOT" for k in TORCHVISION_DATASETS)
             + " (torchvision files under ROOT, never downloaded)")


class CommandError(ValueError):
    """A user-facing error of a subcommand (exit status 2)."""


def add_model(p: argparse.ArgumentParser) -> None:
    """The model to convert: a name or file, its weights and constructor arguments."""
    g = p.add_argument_group("model")
    g.add_argument("model", help="torchvision:NAME (e.g. torchvision:vgg16_bn), a zoo name "
                   "(cifar_resnet20, small_cnn, ...) or path/to/file.py:factory")
    g.add_argument("-w", "--weights", help="state_dict or checkpoint file (keys like "
                   "state_dict/model/net and prefixes like module. are handled)")
    g.add_argument("--num-classes", type=int, help="passed to the model constructor")
    g.add_argument("--model-arg", action="append", default=[], metavar="KEY=VALUE",
                   help="extra constructor argument (repeatable; VALUE parsed as a Python "
                   "literal when it is one, e.g. input_size=8)")
    g.add_argument("--trust-checkpoint", action="store_true",
                   help="allow full unpickling of the weights file (runs code: only for files "
                   "you trust)")


def add_normalization(g: Any) -> None:
    """``--normalize PRESET`` or ``--mean``/``--std``: one definition for every subcommand."""
    g.add_argument("--normalize", choices=sorted(NORMALIZATION_PRESETS),
                   help="normalisation preset (the shared CIFAR ResNets use imagenet)")
    g.add_argument("--mean", type=float, nargs="+", help="explicit per-channel mean")
    g.add_argument("--std", type=float, nargs="+", help="explicit per-channel std")


def add_limit(g: Any, limit: int | None = None, what: str = "images") -> None:
    """``--limit N``: a seeded draw of N images across classes."""
    g.add_argument("--limit", type=int, default=limit,
                   help=f"use this many {what}, a seeded draw across classes"
                   + (f" (default: {limit})" if limit else " (default: all)"))


def add_data(p: argparse.ArgumentParser, *, required: bool = True,
             calibration: bool = True) -> None:
    """``-d/--data`` and how its images are read (see the module docstring)."""
    g = p.add_argument_group("data")
    g.add_argument("-d", "--data", required=required, help=DATA_HELP)
    g.add_argument("--split", choices=SPLITS, default="test",
                   help="split of a torchvision dataset (default: test)")
    if calibration:
        g.add_argument("--calibration", help="data for thresholds (same forms as --data; "
                       "default: --data with --split train for torchvision roots, else --data)")
        g.add_argument("--calibration-images", type=int, default=None,
                       help="images drawn for calibration (default: 256; 1024 for 'convert "
                            "-T 4' without --correction and --threshold-granularity, where "
                            "they give the block reconstruction: within 0.5 pt of the ANN in "
                            "7 of 8 measured cells, 5 of 8 with 256)")
    add_limit(g)
    add_normalization(g)
    g.add_argument("--channels", type=int, choices=(1, 3),
                   help="convert images to 1 (grey) or 3 (RGB) channels")
    g.add_argument("--image-size", type=int, help="resize and centre-crop to this size")
    g.add_argument("--batch-size", type=int, default=64, help="batch size (default: 64)")


#: ``converters.correction.CORRECTIONS`` (kept literal so that ``--help`` imports nothing heavy;
#: tests/test_cli_grammar.py checks that the two agree)
CORRECTION_CHOICES = ("none", "bias", "threshold", "both", "refit", "reconstruct", "block",
                      "network")


def add_low_T(p: argparse.ArgumentParser) -> None:
    """Threshold granularity, post-training correction and double buffering (``convert``)."""
    g = p.add_argument_group("thresholds and pipelining (default: the best measured for -T)")
    g.add_argument("--threshold-granularity", choices=("layer", "channel"), default=None,
                   help="one threshold per layer or per channel (default: by T: channel for "
                        "T <= 3 and for T = 4 with 1024 calibration images, layer above)")
    g.add_argument("--correction", choices=CORRECTION_CHOICES, default=None,
                   help="post-training correction against the ANN, layer by layer "
                        "(default: by T: 'block' for T = 2 and 3 and for T = 4 with 1024 "
                        "calibration images, else 'both' up to T = 8, 'none' above)")
    g.add_argument("--double-buffered", action="store_true",
                   help="two membrane banks per neuron: a new sample every T steps instead of "
                        "2T (same logits; neuron state x 2)")


def add_conversion(p: argparse.ArgumentParser, T_default: Any) -> None:
    """The iLIF conversion's options: T (one or several), thresholds, rounding."""
    g = p.add_argument_group("conversion")
    if isinstance(T_default, int):
        g.add_argument("-T", "--T", type=int, default=T_default, dest="T",
                       help=f"spike-train length per layer (default: {T_default})")
    else:
        g.add_argument("-T", "--T", type=int, nargs="+", default=list(T_default), dest="T",
                       help="spike-train lengths to evaluate (default: "
                       f"{' '.join(map(str, T_default))})")
    g.add_argument("--calibration-mode", choices=("max", "percentile", "optimal"),
                   default="max", help="threshold choice (default: max)")
    g.add_argument("--rounding", choices=("nearest", "floor"), default="nearest",
                   help="code rounding (default: nearest, unbiased)")


def add_output(p: argparse.ArgumentParser, help_: str, *, required: bool = True,
               default: str | None = None, aliases: tuple[str, ...] = ()) -> None:
    """``-o/--output`` and ``--overwrite`` (existing results are refused before any work)."""
    g = p.add_argument_group("output")
    g.add_argument("-o", "--output", *aliases, required=required and default is None,
                   default=default, dest="output", help=help_)
    g.add_argument("--overwrite", action="store_true",
                   help="replace existing output files (default: refuse before any work)")


def add_runtime(p: argparse.ArgumentParser, *, workers: bool = True) -> None:
    """``--device`` (and ``--workers``): where the networks run, who reads the images."""
    g = p.add_argument_group("runtime")
    g.add_argument("--device", default="cpu", metavar="DEVICE",
                   help="where the networks run: cpu, cuda or cuda:N (default: cpu; under "
                   "torchrun with CUDA each process takes cuda:LOCAL_RANK)")
    if workers:
        g.add_argument("--workers", type=int, default=0, metavar="N",
                       help="DataLoader worker processes reading the images (default: 0, "
                       "read in the main process)")


EXAMPLES = {
    "convert": """examples:
  spikeconverter convert cifar_resnet20 -w resnet20.th -d cifar10:./data --normalize imagenet \\
      -T 8 -o resnet20_T8.snn
  spikeconverter convert torchvision:vgg16_bn -w vgg16_bn.pth -d ./imagenet/val \\
      --normalize imagenet --image-size 224 --calibration-images 64 -T 8 -o vgg.snn
  spikeconverter convert nets.py:make_net -w ckpt.pt -d ./digits --channels 1 \\
      --model-arg width=8 -T 4 -o net.snn --check 200
""",
    "evaluate": """examples:
  torchrun --standalone --nproc_per_node 4 -m spikeconverter evaluate cifar_resnet20 \\
      -w resnet20.th -d cifar10:./data --normalize imagenet --device cuda -o out/r20
  spikeconverter evaluate cifar_resnet20 -w resnet20.th -d ../shared/data/cifar10/test \\
      --calibration ../shared/data/cifar10/train --normalize imagenet -T 4 8 16 -o out/r20
  spikeconverter evaluate small_cnn --model-arg input_size=28 -w mnist_cnn.pt \\
      -d mnist:./data --normalize mnist --baselines soft_reset --baseline-steps 32 64 128
  spikeconverter evaluate torchvision:resnet18 -w r18.pth -d ./val --normalize imagenet \\
      --image-size 224 --limit 200 --baselines none

writes OUT/results.csv, OUT/results.json, OUT/accuracy.png, OUT/synops.png; rerun with --resume
to continue an interrupted run (OUT/progress.json)
""",
    "check": """examples:
  spikeconverter check torchvision:densenet121 --num-classes 10 --input-shape 3 32 32
  spikeconverter check torchvision:efficientnet_b0      # lists every blocker, exit status 1
  spikeconverter check nets.py:make_net --input-shape 1 28 28

exit status: 0 convertible, 1 not convertible (every blocker listed), 2 bad input
""",
    "run-lava": """examples:
  spikeconverter run-lava resnet20_T8.snn -d ../shared/data/cifar10/test --normalize imagenet \\
      --fixed-point -o lava.csv          # the whole folder: accuracy, agreement with Norse
  spikeconverter run-lava net.snn -d ./digits --channels 1 --limit 8 --fixed-point
""",
    "report": """examples:
  spikeconverter report resnet20_T8.snn                 # activity of the calibration data
  spikeconverter report net.snn -d ../shared/data/cifar10/test --normalize imagenet \\
      --limit 256 -o out/report --double-buffered
""",
    "export": """examples:
  spikeconverter export nets.py:make_net -w ckpt.pt -d ./digits --channels 1 -o net.nir
  spikeconverter export nets.py:make_net -w ckpt.pt -d mnist:./data --normalize mnist \\
      --threshold-norm max -o net.nir

writes the hard-reset rate-coded IF baseline of the model as a NIR graph (nodes Input, Conv2d,
Affine/Linear, SumPool2d, Flatten, IF, Output) with thresholds from --calibration (or --data);
read it with nir.read, run it with norse.torch.from_nir (one unbatched sample per call). NIR has
no iLIF neuron, so a converted .snn network cannot be exported, and max pooling, layers without a
ReLU and residual adds are refused with the reason.
""",
    "demo": """examples:
  spikeconverter demo                      # writes out/demo/*.png and results.csv
  spikeconverter demo -o /tmp/demo --epochs 10      # train the CNN here first
  spikeconverter demo --device cuda --lava-samples 0
""",
    "finetune": """examples:
  spikeconverter finetune net.snn -d ../shared/data/cifar10/train \\
      --val ../shared/data/cifar10/test --normalize imagenet --augment -o net-ft.snn
  spikeconverter finetune net.snn -d cifar10:./data --val cifar10:./data --normalize imagenet \\
      --limit 5000 --augment -o net-ft.snn   # cifar10:ROOT: -d reads train, --val test
  spikeconverter finetune net-ft.snn -d ./train -o net-ft.snn --resume --epochs 3
  spikeconverter finetune net.snn -d ../shared/data/cifar10/train --val-fraction 0.1 \\
      --normalize imagenet --augment --optimizer adam --lr 1e-3 --cosine --weight-decay 0 \\
      --epochs 3 --distill cifar_resnet20 --distill-checkpoint resnet20.th -o net-ft.snn
""",
}



def build_parser() -> argparse.ArgumentParser:
    """The argument parser: subcommands convert, evaluate, check, run-lava, export, demo,
    finetune (``args.command`` names the one chosen)."""
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="SpikeConverter: convert trained CNNs into iLIF spiking networks (Norse, "
        "Lava) and compare them with rate-coded conversions.",
        epilog="examples:\n  spikeconverter demo\n  spikeconverter convert --help\n"
        "  spikeconverter evaluate --help",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--debug", action="store_true", help="show tracebacks of errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def add(name: str, help_: str) -> argparse.ArgumentParser:
        return sub.add_parser(name, help=help_, description=help_, epilog=EXAMPLES[name],
                              formatter_class=argparse.RawDescriptionHelpFormatter)

    p = add("convert", "convert a trained model into an iLIF network file")
    add_model(p)
    add_data(p)
    add_conversion(p, 8)
    add_low_T(p)
    add_output(p, "network file to write")
    p.add_argument("--check", type=int, default=0, metavar="N",
                   help="also report ANN vs SNN top-1 on N images of --data")
    add_runtime(p)

    p = add("evaluate", "ANN vs iLIF SNN vs rate-coded baselines: table, CSV, JSON, plots")
    add_model(p)
    add_data(p)
    add_conversion(p, (4, 8, 16))
    _add_baselines(p)
    add_output(p, "output folder (default: out/evaluate); results.csv/json are rewritten after "
               "every row, OUT/progress.json (the exact resume checkpoint) after each T and "
               "baseline", default="out/evaluate")
    p.add_argument("--resume", action="store_true", help="keep the T values and baselines "
                   "OUT/progress.json already holds (same settings) and run the rest")
    add_runtime(p)

    p = add("check", "say whether a model converts, listing every blocker, without converting")
    add_model(p)
    p.add_argument("--input-shape", type=int, nargs="+", default=[3, 224, 224],
                   metavar="N", help="per-sample input shape (default: 3 224 224)")
    add_runtime(p, workers=False)  # the trial run and the capture: no data to read

    p = add("run-lava", "run a network file on some images in the Lava simulator")
    p.add_argument("network", help="network file written by 'spikeconverter convert'")
    add_data(p, calibration=False)
    p.add_argument("--fixed-point", action="store_true",
                   help="bit-accurate fixed-point models instead of floating point")
    p.add_argument("--lava-batch", type=int, default=None,
                   help="images simulated side by side in one Lava runtime (default: 32)")
    add_output(p, "CSV file of per-image results, written as they come", required=False)
    add_runtime(p)  # Lava simulates on the CPU: the command refuses any other device

    p = add("report", "Loihi 2 hardware report of a network file: cores, chips, cost estimate")
    p.add_argument("network", help="network file written by 'spikeconverter convert'")
    add_data(p, required=False, calibration=False)
    p.add_argument("--double-buffered", action="store_true",
                   help="report double buffering: two membrane banks per neuron (state x 2, "
                        "a sample every T steps instead of 2T)")
    add_output(p, "folder for hardware.json and hardware.png (default: out/report)",
               default="out/report")

    p = add("export", "write a model's rate-coded IF baseline as a NIR graph (.nir)")
    add_model(p)
    add_data(p, required=False)  # required below, after a .snn file got its own message
    p.add_argument("--threshold-norm", choices=("max", "percentile"), default="percentile",
                   help="threshold normalisation (default: percentile 99.99)")
    add_output(p, "NIR file to write (e.g. net.nir)")
    add_runtime(p)

    p = add("demo", "a pretrained small CNN on scikit-learn digits: convert, compare, plot")
    p.add_argument("--epochs", type=int, default=None,
                   help="train the CNN from scratch for this many epochs instead of loading "
                   "the pretrained weights shipped with the package (30 made them)")
    p.add_argument("--lava-samples", type=int, default=3,
                   help="test images run in Lava (default: 3; 0 skips Lava)")
    add_limit(p, what="test images (of 360)")
    add_output(p, "output folder (default: out/demo)", default="out/demo", aliases=("--out",))
    add_runtime(p, workers=False)  # the digits are tensors in memory: no DataLoader
    add_finetune_parser(sub)
    return parser


def _add_baselines(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("baselines")
    g.add_argument("--baselines", nargs="+", default=["hard_reset", "soft_reset",
                                                       "threshold_shift"],
                   metavar="NAME", help="rate-coded baselines: hard_reset soft_reset "
                   "threshold_shift, or none (default: all three)")
    g.add_argument("--baseline-steps", type=int, nargs="+",
                   default=[32, 64, 128, 256, 512, 1024, 2048],
                   help="time steps at which the baselines are read (default: 32 ... 2048)")
    g.add_argument("--baseline-limit", type=int,
                   help="run the baselines on this many images only (they are slow)")
    g.add_argument("--threshold-norm", choices=("max", "percentile"), default="percentile",
                   help="baselines' threshold normalisation (default: percentile 99.99)")


def add_finetune_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add ``finetune`` to ``subparsers`` (from ``ArgumentParser.add_subparsers``)."""
    p = subparsers.add_parser(
        "finetune", help="fine-tune a converted network through its spiking simulation",
        description="Train a saved network's weights, biases and thresholds through the iLIF "
                    "simulation (Norse surrogate gradients); writes the best network (by "
                    "--val accuracy, else the last) to --output, plus OUTPUT.state for "
                    "--resume.",
        epilog=EXAMPLES["finetune"], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("network", help="network file written by 'spikeconverter convert' or save()")
    g = p.add_argument_group("data")
    g.add_argument("-d", "--data", required=True, help="training images: " + DATA_HELP
                   + "; a torchvision root gives its train split")
    g.add_argument("--val", help="validation images (same forms; a torchvision root gives its "
                   "test split): measured every --val-every steps and each epoch; the best "
                   "network is kept")
    add_limit(g, what="images of --data (and of --val)")
    add_normalization(g)
    g.add_argument("--image-size", type=int, help="resize and centre-crop to this size (the "
                   "images must match the network's input)")
    g.add_argument("--augment", action="store_true",
                   help="random crop (padding 4) and horizontal flip of training images")
    g.add_argument("--batch-size", type=int, default=64, help="(default: 64)")
    g = p.add_argument_group("training")
    g.add_argument("--epochs", type=int, default=1, help="passes over the data (default: 1)")
    g.add_argument("--max-steps", type=int, help="stop after this many optimiser steps")
    g.add_argument("--lr", type=float, default=0.01,
                   help="learning rate (default: 0.01, the paper's SGD)")
    g.add_argument("--momentum", type=float, default=0.9, help="(default: 0.9)")
    g.add_argument("--weight-decay", type=float, default=5e-4, help="(default: 5e-4)")
    g.add_argument("--cosine", action="store_true", help="cosine learning-rate decay to 0")
    g.add_argument("--warmup", type=int, default=0, metavar="STEPS",
                   help="linear learning-rate warm-up over this many steps (default: 0)")
    g.add_argument("--threshold-lr-scale", type=float, default=1.0, metavar="S",
                   help="the thresholds' learning rate as a multiple of --lr (default: 1)")
    g.add_argument("--weight-lr-scale", type=float, default=1.0, metavar="S",
                   help="the weights' learning rate as a multiple of --lr; 0 freezes them "
                        "(biases and thresholds only) (default: 1)")
    g.add_argument("--optimizer", choices=("sgd", "adam"), default="sgd",
                   help="sgd (the paper's, default) or adam (AdamW; --momentum is beta1)")
    g.add_argument("--clip-grad-norm", type=float, default=1.0,
                   help="clip the gradient norm (default: 1, which deep BN-folded nets need at "
                        "lr 0.01; 0 disables)")
    g.add_argument("--val-every", type=int, help="steps between validations (default: epoch)")
    g.add_argument("--resume", action="store_true", help="continue from OUTPUT.state")
    g.add_argument("--fixed-thresholds", action="store_true", help="do not train thresholds")
    g.add_argument("--surrogate", choices=SURROGATES, default="triangle",
                   help="Norse surrogate gradient (default: triangle)")
    g.add_argument("--alpha", type=float, default=1.0, help="surrogate parameter (default: 1)")
    g.add_argument("--seed", type=int, default=0,
                   help="shuffling and --val-fraction split seed (default: 0)")
    g.add_argument("--val-fraction", type=float, metavar="F",
                   help="hold out this seeded share of --data (unaugmented) as validation "
                        "data for best-on-validation selection (not with --val)")
    g.add_argument("--no-progress", action="store_true", help="no progress bar")
    g = p.add_argument_group("distillation from the ANN")
    g.add_argument("--distill", metavar="MODEL",
                   help="the ANN to distil from, named as 'convert' names models (zoo name, "
                        "torchvision:NAME, file.py:factory)")
    g.add_argument("--distill-checkpoint", metavar="FILE",
                   help="its weights (state_dict or checkpoint file)")
    g.add_argument("--distill-weight", type=float, default=0.9,
                   help="share of the distillation term, 0..1 (default: 0.9)")
    g.add_argument("--distill-temperature", type=float, default=4.0,
                   help="distillation temperature (default: 4)")
    g.add_argument("--feature-weight", type=float, default=0.0, metavar="W",
                   help="feature distillation: add W times the relative squared error of each "
                        "block's output against the --distill ANN's activation there "
                        "(default: 0, off)")
    g.add_argument("--ema", type=float, default=None, metavar="DECAY",
                   help="validate, keep and write the parameters' moving average with this "
                        "decay, e.g. 0.95 (default: off)")
    g.add_argument("--select-on", choices=("accuracy", "kl", "agreement", "last"),
                   default="accuracy",
                   help="validation score that picks the network kept; kl and agreement "
                        "compare with the --distill ANN; last keeps the end of the run "
                        "(with --ema its average) (default: accuracy)")
    g = p.add_argument_group("regularisation and averaging")
    g.add_argument("--mixup", type=float, default=None, metavar="ALPHA",
                   help="train on mixed batches, lam ~ Beta(ALPHA, ALPHA), labelled by the "
                        "--distill ANN when given (default: off)")
    g.add_argument("--mixup-kind", choices=MIXUP_KINDS, default="mixup",
                   help="with --mixup: blend (mixup), paste a box (cutmix), or one of them "
                        "per step (both) (default: mixup)")
    g.add_argument("--swa-from", type=int, default=None, metavar="STEP",
                   help="validate, keep and write the uniform average of the parameters from "
                        "this step on (stochastic weight averaging; not with --ema)")
    add_output(p, "fine-tuned network file to write (--resume continues into it)")
    add_runtime(p)
    return p


# --------------------------------------------------------------------------------------------
# output conventions, checked before any work


def _writable_folder(path: Path, what: str) -> None:
    """Raise CommandError unless ``path`` (a folder, maybe not yet there) can be created/written."""
    probe = path
    while not probe.exists():
        if probe.parent == probe:
            break
        probe = probe.parent
    if probe.exists() and not probe.is_dir():
        raise CommandError(f"{what} {str(path)!r} cannot be created: {str(probe)!r} is a file")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise CommandError(f"{what} {str(path)!r} cannot be written: no write permission in "
                           f"{str(probe)!r}")


def check_output_file(path: str | os.PathLike, overwrite: bool, option: str = "-o") -> Path:
    """Check before any work that ``path`` can be written as a file.

    Raises
    ------
    CommandError
        ``path`` is a directory, exists (without ``overwrite``), or its folder is not writable.
    """
    path = Path(path)
    if path.is_dir():
        raise CommandError(f"{option} {str(path)!r} is a directory; give a file name, e.g. "
                           f"{str(path / 'net.snn')!r}")
    if path.exists() and not overwrite:
        raise CommandError(f"{option} {str(path)!r} already exists; pass --overwrite to replace "
                           "it, or choose another name")
    _writable_folder(path.parent, "the folder of " + option)
    return path


def check_output_folder(path: str | os.PathLike, names: Sequence[str], overwrite: bool,
                        option: str = "-o") -> Path:
    """Check before any work that the files ``names`` can be written into folder ``path``.

    Raises
    ------
    CommandError
        ``path`` is a file, holds one of ``names`` (without ``overwrite``), or is not writable.
    """
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise CommandError(f"{option} {str(path)!r} is a file; give a folder for the results")
    there = [n for n in names if (path / n).exists()]
    if there and not overwrite:
        raise CommandError(f"{option} {str(path)!r} already holds {', '.join(there)}; pass "
                           "--overwrite to replace them, or choose another folder")
    _writable_folder(path, option)
    return path
