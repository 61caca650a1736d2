"""The ``spikeconverter`` command: convert, evaluate, run-lava, demo.

Every subcommand has examples in its ``--help``. Bad input (a missing file, an unknown model, data
of the wrong shape, an unsupported layer) ends with exit status 2 and one line
``spikeconverter: error: ...`` on stderr, without a traceback (``--debug`` shows it).
"""

from __future__ import annotations

import argparse
import pickle
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from spikeconverter.devices import add_runtime_arguments
from spikeconverter.training.cli import add_finetune_parser

__all__ = ["build_parser", "main"]

PROG = "spikeconverter"
EXIT_USAGE = 2


class CommandError(ValueError):
    """A user-facing error of a subcommand (exit status 2)."""


# --------------------------------------------------------------------------------------------
# shared options


def _add_model(p: argparse.ArgumentParser) -> None:
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


def _add_data(p: argparse.ArgumentParser, *, required: bool = True, calibration: bool = True,
              limit: int | None = None) -> None:
    g = p.add_argument_group("data")
    g.add_argument("-d", "--data", required=required,
                   help="ImageFolder directory, or cifar10:ROOT / mnist:ROOT (torchvision "
                   "files under ROOT, never downloaded)")
    g.add_argument("--split", choices=("train", "test"), default="test",
                   help="split of a torchvision dataset (default: test)")
    if calibration:
        g.add_argument("--calibration", help="data for thresholds (same forms as --data; "
                       "default: --data with --split train for torchvision roots, else --data)")
        g.add_argument("--calibration-images", type=int, default=256,
                       help="images drawn for calibration (default: 256)")
    g.add_argument("--limit", type=int, default=limit,
                   help="use this many images, a seeded draw across classes"
                   + (f" (default: {limit})" if limit else " (default: all)"))
    g.add_argument("--normalize", choices=("cifar10", "imagenet", "mnist"),
                   help="normalisation preset (the shared CIFAR ResNets use imagenet)")
    g.add_argument("--mean", type=float, nargs="+", help="explicit per-channel mean")
    g.add_argument("--std", type=float, nargs="+", help="explicit per-channel std")
    g.add_argument("--channels", type=int, choices=(1, 3),
                   help="convert images to 1 (grey) or 3 (RGB) channels")
    g.add_argument("--image-size", type=int, help="resize and centre-crop to this size")
    g.add_argument("--batch-size", type=int, default=64, help="batch size (default: 64)")


def _add_conversion(p: argparse.ArgumentParser, T_default: Any) -> None:
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
  spikeconverter evaluate cifar_resnet20 -w resnet20.th -d ../shared/data/cifar10/test \\
      --calibration ../shared/data/cifar10/train --normalize imagenet -T 4 8 16 -o out/r20
  spikeconverter evaluate small_cnn --model-arg input_size=28 -w mnist_cnn.pt \\
      -d mnist:./data --normalize mnist --baselines soft_reset --baseline-steps 32 64 128
  spikeconverter evaluate torchvision:resnet18 -w r18.pth -d ./val --normalize imagenet \\
      --image-size 224 --limit 200 --baselines none

writes OUT/results.csv, OUT/results.json, OUT/accuracy.png, OUT/synops.png
""",
    "run-lava": """examples:
  spikeconverter run-lava resnet20_T8.snn -d ../shared/data/cifar10/test --normalize imagenet \\
      --limit 4
  spikeconverter run-lava net.snn -d ./digits --channels 1 --limit 8 --fixed-point
""",
    "demo": """examples:
  spikeconverter demo                      # writes out/demo/*.png and results.csv
  spikeconverter demo --out /tmp/demo --epochs 10
""",
}


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (subcommands convert, evaluate, run-lava, demo, finetune)."""
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

    def add(name: str, help_: str, func: Callable) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_, description=help_, epilog=EXAMPLES[name],
                           formatter_class=argparse.RawDescriptionHelpFormatter)
        p.set_defaults(func=func)
        return p

    p = add("convert", "convert a trained model into an iLIF network file", _cmd_convert)
    _add_model(p)
    _add_data(p)
    _add_conversion(p, 8)
    p.add_argument("-o", "--output", required=True, help="network file to write")
    p.add_argument("--check", type=int, default=0, metavar="N",
                   help="also report ANN vs SNN top-1 on N images of --data")
    add_runtime_arguments(p)

    p = add("evaluate", "ANN vs iLIF SNN vs rate-coded baselines: table, CSV, JSON, plots",
            _cmd_evaluate)
    _add_model(p)
    _add_data(p)
    _add_conversion(p, (4, 8, 16))
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
    p.add_argument("-o", "--output", default="out/evaluate", help="output folder "
                   "(default: out/evaluate); OUT/progress.json is rewritten after each T and "
                   "baseline")
    p.add_argument("--resume", action="store_true", help="keep the T values and baselines "
                   "OUT/progress.json already holds (same settings) and run the rest")
    add_runtime_arguments(p)

    p = add("run-lava", "run a network file on some images in the Lava simulator", _cmd_run_lava)
    p.add_argument("network", help="network file written by 'spikeconverter convert'")
    _add_data(p, calibration=False, limit=4)
    p.add_argument("--fixed-point", action="store_true",
                   help="bit-accurate fixed-point models instead of floating point")
    add_runtime_arguments(p)

    p = add("demo", "train a small CNN on scikit-learn digits, convert, compare, plot",
            _cmd_demo)
    p.add_argument("--out", default="out/demo", help="output folder (default: out/demo)")
    p.add_argument("--epochs", type=int, default=30, help="training epochs (default: 30)")
    p.add_argument("--lava-samples", type=int, default=3,
                   help="test images run in Lava (default: 3; 0 skips Lava)")
    add_finetune_parser(sub)
    return parser


# --------------------------------------------------------------------------------------------
# helpers


def _literal(text: str) -> Any:
    import ast

    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def _model(args: argparse.Namespace):
    from spikeconverter.modelspec import load_model

    kwargs: dict[str, Any] = {}
    for item in args.model_arg:
        key, sep, value = item.partition("=")
        if not sep or not key.isidentifier():
            raise CommandError(f"--model-arg expects KEY=VALUE, got {item!r}")
        kwargs[key] = _literal(value)
    if args.num_classes is not None:
        kwargs["num_classes"] = args.num_classes
    return load_model(args.model, args.weights, trusted=args.trust_checkpoint, **kwargs)


def _normalization(args: argparse.Namespace):
    from spikeconverter.data import resolve_normalization

    return resolve_normalization(args.normalize, args.mean, args.std)


def _dataset(args: argparse.Namespace, source: str, split: str, limit: int | None):
    from spikeconverter.data import load_dataset

    return load_dataset(source, split=split, normalization=_normalization(args),
                        channels=args.channels, image_size=args.image_size, limit=limit)


def _calibration(args: argparse.Namespace):
    from spikeconverter.data import TORCHVISION_DATASETS, calibration_batch

    source, split = args.calibration, args.split
    if source is None:
        source = args.data
        kind = str(source).partition(":")[0].lower()
        if kind in TORCHVISION_DATASETS and not Path(source).exists():
            split = "train"
    return calibration_batch(_dataset(args, source, split, None), args.calibration_images)


def _device(name: str) -> Any:
    """The device to use, checked before any work: under torchrun with CUDA, ``cuda`` means
    this process's ``cuda:LOCAL_RANK``."""
    import os

    from spikeconverter.devices import resolve_device

    dev = resolve_device(name)
    if dev.type == "cuda" and dev.index is None and "LOCAL_RANK" in os.environ:
        dev = resolve_device(f"cuda:{int(os.environ['LOCAL_RANK'])}")
    return dev


def _positive(value: Any, name: str) -> None:
    if value is not None and value < 1:
        raise CommandError(f"{name} must be >= 1, got {value}")


def _check_common(args: argparse.Namespace) -> None:
    if getattr(args, "device", None) is not None:
        args.device = _device(args.device)
    if getattr(args, "workers", 0) < 0:
        raise CommandError(f"--workers must be >= 0, got {args.workers}")
    for name in ("limit", "batch_size", "calibration_images", "baseline_limit", "epochs"):
        _positive(getattr(args, name, None), "--" + name.replace("_", "-"))
    T = getattr(args, "T", None)
    for t in T if isinstance(T, list) else [T]:
        _positive(t, "-T")


# --------------------------------------------------------------------------------------------
# subcommands


def _cmd_convert(args: argparse.Namespace) -> int:
    import torch

    from spikeconverter.converters import convert
    from spikeconverter.data import make_loader
    from spikeconverter.evaluation import check_model_input

    model = _model(args)
    calib = _calibration(args)
    check_model_input(model, calib[:2], "the calibration data")
    net = convert(model, calib, T=args.T, calibration_mode=args.calibration_mode,
                  rounding=args.rounding, progress=True, device=args.device)
    net.save(args.output)
    print(f"wrote {args.output}: T={args.T}, {len(net.graph.populations)} populations, "
          f"latency {net.schedule.latency_steps} steps, a new sample every "
          f"{net.schedule.steps_per_sample} steps")
    if args.check:
        ds = _dataset(args, args.data, args.split, min(args.check, args.limit or args.check))
        ok_ann = ok_snn = agree = n = 0
        model.to(args.device)
        with torch.no_grad():
            for x, y in make_loader(ds, args.batch_size, workers=args.workers):
                x, y = x.to(args.device), y.to(args.device)
                a, s = model(x).argmax(1), net(x).argmax(1)
                ok_ann += int((a == y).sum())
                ok_snn += int((s == y).sum())
                agree += int((a == s).sum())
                n += len(y)
        print(f"check on {n} images: ANN top-1 {100 * ok_ann / n:.2f}%, SNN top-1 "
              f"{100 * ok_snn / n:.2f}%, agreement {100 * agree / n:.2f}%")
    return 0


def _cmd_evaluate(args: argparse.Namespace) -> int:
    from spikeconverter.data import make_loader
    from spikeconverter.evaluation import COLUMNS, check_model_input, evaluate, write_report
    from spikeconverter.reporting import format_table

    baselines = [] if args.baselines == ["none"] else args.baselines
    for s in args.baseline_steps:
        _positive(s, "--baseline-steps")
    model = _model(args)
    data = make_loader(_dataset(args, args.data, args.split, args.limit), args.batch_size,
                       workers=args.workers)
    calib = _calibration(args)
    check_model_input(model, calib[:2], "the calibration data")
    with _distributed(args.device) as rank:
        report = evaluate(model, data, calib, T_values=args.T, baselines=baselines,
                          baseline_steps=args.baseline_steps,
                          baseline_limit=args.baseline_limit,
                          calibration_mode=args.calibration_mode, rounding=args.rounding,
                          threshold_norm=args.threshold_norm, progress=True, log=print,
                          device=args.device, checkpoint=Path(args.output) / "progress.json",
                          resume=args.resume)
    if rank != 0:
        return 0
    files = write_report(report, args.output, title=Path(str(args.model)).name)
    print(f"\nANN top-1 {report.ann['top1']:.2f}% ({report.ann['images']} images, "
          f"{report.ann['macs_per_image']:.3g} MACs per image)")
    print(format_table(report.rows, COLUMNS))
    print("\nwrote " + ", ".join(str(p) for p in files.values()))
    return 0


def _distributed(device: Any) -> Any:
    """A context that joins the torchrun process group (when launched by torchrun) and yields
    this process's rank (0 when alone)."""
    from spikeconverter.distributed import process_group

    return process_group(device)


def _cmd_run_lava(args: argparse.Namespace) -> int:
    import numpy as np
    import torch

    from spikeconverter.converters import load

    path = Path(args.network)
    if not path.is_file():
        raise FileNotFoundError(f"network file {str(path)!r} does not exist")
    net = load(path, device=args.device)
    lava_net = _lava_network(net)
    from spikeconverter.data import make_loader

    # Lava takes all --limit images at once; they are read through the DataLoader
    batches = list(make_loader(_dataset(args, args.data, args.split, args.limit),
                               args.batch_size, workers=args.workers))
    xs = torch.cat([x for x, _ in batches])
    ys = torch.cat([torch.as_tensor(y) for _, y in batches]).tolist()
    with torch.no_grad():
        norse_pred = net(xs.to(args.device)).argmax(1).tolist()
    logits = np.asarray(lava_net.run(xs, fixed_point=args.fixed_point))
    pred = logits.argmax(1).tolist()
    kind = "fixed point" if args.fixed_point else "float"
    print(f"Lava ({kind}) on {len(ys)} images:")
    print(f"  labels      {ys}\n  Lava        {pred}\n  Norse iLIF  {norse_pred}")
    print(f"  Lava correct {sum(p == y for p, y in zip(pred, ys, strict=True))}/{len(ys)}, "
          f"agrees with Norse on {sum(p == q for p, q in zip(pred, norse_pred, strict=True))}")
    return 0


def _lava_network(net: Any) -> Any:
    """The Lava backend's network for a loaded (Norse) network's graph."""
    from spikeconverter.converters.api import resolve_backend

    try:
        build = resolve_backend("lava")
    except NotImplementedError as e:
        raise CommandError(f"the Lava backend is not available in this installation ({e})"
                           ) from None
    return build(net.graph)


def _cmd_demo(args: argparse.Namespace) -> int:
    from spikeconverter.demo import run_demo

    _positive(args.epochs, "--epochs")
    run_demo(args.out, epochs=args.epochs, lava_samples=max(args.lava_samples, 0))
    return 0


# --------------------------------------------------------------------------------------------


def _user_errors() -> tuple[type[BaseException], ...]:
    errors: list[type[BaseException]] = [ValueError, TypeError, FileNotFoundError,
                                         NotADirectoryError, PermissionError, IsADirectoryError,
                                         NotImplementedError, pickle.UnpicklingError]
    return tuple(errors)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status (0 ok, 2 bad input, 130 interrupted)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    from spikeconverter.reporting import one_line_warnings

    try:
        _check_common(args)
        with one_line_warnings(PROG):
            return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130
    except _user_errors() as e:
        if args.debug:
            raise
        msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        if isinstance(e, FileNotFoundError) and e.filename and str(e.filename) not in msg:
            msg = f"{msg}: {e.filename}"
        print(f"{PROG}: error: {msg}", file=sys.stderr)
        return EXIT_USAGE


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
