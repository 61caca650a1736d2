"""The ``spikeconverter`` command: convert, evaluate, check, run-lava, export, demo.

Every subcommand has examples in its ``--help``. Bad input (a missing file, an unknown model, data
of the wrong shape, an unsupported layer, an output that exists) ends with exit status 2 and one
line ``spikeconverter: error: ...`` on stderr, without a traceback (``--debug`` shows it). Output
paths are checked before any work starts. SIGINT (Ctrl-C) and SIGTERM stop the command cleanly
-- Lava runtimes and their workers included -- with one line ``spikeconverter: interrupted by
SIGINT`` and exit status 130 (SIGTERM: 143).
"""

from __future__ import annotations

import argparse
import os
import pickle
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from spikeconverter.devices import add_runtime_arguments
from spikeconverter.interrupts import exit_status, raise_on_signals
from spikeconverter.training.cli import add_finetune_parser

__all__ = ["build_parser", "check_output_file", "check_output_folder", "main"]

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
  spikeconverter demo --out /tmp/demo --epochs 10   # train the CNN here first
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
    _add_overwrite(p)
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
                   "(default: out/evaluate); results.csv/json are rewritten after every row, "
                   "OUT/progress.json (the exact resume checkpoint) after each T and baseline")
    _add_overwrite(p)
    p.add_argument("--resume", action="store_true", help="keep the T values and baselines "
                   "OUT/progress.json already holds (same settings) and run the rest")
    add_runtime_arguments(p)

    p = add("check", "say whether a model converts, listing every blocker, without converting",
            _cmd_check)
    _add_model(p)
    p.add_argument("--input-shape", type=int, nargs="+", default=[3, 224, 224],
                   metavar="N", help="per-sample input shape (default: 3 224 224)")

    p = add("run-lava", "run a network file on some images in the Lava simulator", _cmd_run_lava)
    p.add_argument("network", help="network file written by 'spikeconverter convert'")
    _add_data(p, calibration=False)
    p.add_argument("--fixed-point", action="store_true",
                   help="bit-accurate fixed-point models instead of floating point")
    p.add_argument("--lava-batch", type=int, default=None,
                   help="images simulated side by side in one Lava runtime (default: 16)")
    p.add_argument("-o", "--output", help="CSV file of per-image results, written as they come")
    add_runtime_arguments(p)

    p = add("export", "write a model's rate-coded IF baseline as a NIR graph (.nir)",
            _cmd_export)
    _add_model(p)
    _add_data(p, required=False)  # required below, after a .snn file got its own message
    p.add_argument("--threshold-norm", choices=("max", "percentile"), default="percentile",
                   help="threshold normalisation (default: percentile 99.99)")
    p.add_argument("-o", "--output", required=True, help="NIR file to write (e.g. net.nir)")

    p = add("demo", "a pretrained small CNN on scikit-learn digits: convert, compare, plot",
            _cmd_demo)
    p.add_argument("--out", default="out/demo", help="output folder (default: out/demo)")
    p.add_argument("--epochs", type=int, default=None,
                   help="train the CNN from scratch for this many epochs instead of loading "
                   "the pretrained weights shipped with the package (30 made them)")
    p.add_argument("--lava-samples", type=int, default=3,
                   help="test images run in Lava (default: 3; 0 skips Lava)")
    _add_overwrite(p)
    add_finetune_parser(sub)
    return parser


def _add_overwrite(p: argparse.ArgumentParser) -> None:
    p.add_argument("--overwrite", action="store_true",
                   help="replace existing output files (default: refuse before any work)")


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

    check_output_file(args.output, args.overwrite)
    model = _model(args)
    calib = _calibration(args)
    check_model_input(model, calib[:2], "the calibration data")
    net = convert(model, calib, T=args.T, calibration_mode=args.calibration_mode,
                  rounding=args.rounding, progress=True, device=args.device)
    net.graph.meta.update(_input_meta(args))
    _lava_calibration(net, calib)
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


def _input_meta(args: argparse.Namespace) -> dict[str, Any]:
    """How the conversion's images were prepared, kept in the network file (graph.meta)."""
    norm = _normalization(args)
    return {"input_preprocessing": True,
            "input_mean": tuple(norm.mean) if norm else (),
            "input_std": tuple(norm.std) if norm else (),
            "input_channels": int(args.channels or 0),
            "input_image_size": int(args.image_size or 0)}


def _lava_calibration(net: Any, calib: Any) -> None:
    """Measure Lava's fixed-point calibration into the graph (saved with it), if Lava is here."""
    try:
        lava_net = _lava_network(net)
    except CommandError:
        print("note: Lava is not installed: the file holds no fixed-point calibration "
              "(run-lava --fixed-point will need a conversion with Lava installed)")
        return
    lava_net.calibrate_fixed_point(calib, progress=True)


def _run_lava_inputs(args: argparse.Namespace, graph: Any) -> tuple[Any, int | None, int | None]:
    """Normalisation, channels and image size for run-lava: the file's, unless it predates
    them; an explicit option that disagrees with the file is refused."""
    from spikeconverter.data import Normalization

    given = _normalization(args)
    meta = graph.meta
    if not meta.get("input_preprocessing"):
        print(f"note: {args.network} does not record its input normalisation (written by an "
              "older spikeconverter): using the command line's "
              f"({'none' if given is None else given})")
        return given, args.channels, args.image_size
    mean, std = tuple(meta.get("input_mean", ())), tuple(meta.get("input_std", ()))
    stored = Normalization(mean, std) if mean else None
    explicit = args.normalize is not None or args.mean is not None or args.std is not None
    if explicit and given != stored:
        raise CommandError(f"the normalisation given ({given}) disagrees with the one the network "
                           f"was converted with ({stored}); leave --normalize/--mean/--std out")
    out = []
    for name, value in (("channels", meta.get("input_channels", 0)),
                        ("image_size", meta.get("input_image_size", 0))):
        opt = getattr(args, name)
        if opt is not None and value and opt != value:
            raise CommandError(f"--{name.replace('_', '-')} {opt} disagrees with the network "
                               f"file ({value})")
        out.append(opt if opt is not None else (value or None))
    return stored, out[0], out[1]


def _cmd_evaluate(args: argparse.Namespace) -> int:
    from spikeconverter.data import make_loader
    from spikeconverter.evaluation import (
        COLUMNS,
        REPORT_FILES,
        check_model_input,
        evaluate,
        write_partial_report,
        write_report,
    )
    from spikeconverter.reporting import format_table

    baselines = [] if args.baselines == ["none"] else args.baselines
    for s in args.baseline_steps:
        _positive(s, "--baseline-steps")
    # --resume continues in the folder it left: its files are expected there
    out = check_output_folder(args.output, (*REPORT_FILES, "progress.json"),
                              args.overwrite or args.resume)
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
                          device=args.device, checkpoint=out / "progress.json",
                          resume=args.resume, on_row=lambda rep: write_partial_report(rep, out))
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
    import torch

    from spikeconverter.converters import load
    from spikeconverter.data import load_dataset, make_loader
    from spikeconverter.lavaeval import run_test_set

    path = Path(args.network)
    if not path.is_file():
        raise FileNotFoundError(f"network file {str(path)!r} does not exist")
    if args.device.type != "cpu":
        raise CommandError(f"run-lava simulates Lava on the CPU only; drop --device "
                           f"{args.device} (or pass --device cpu)")
    _positive(args.lava_batch, "--lava-batch")
    net = load(path)
    lava_net = _lava_network(net)
    lava_net.use_plan_cache(path.with_name(path.name + ".lavaplan"))  # built once per network
    norm, channels, size = _run_lava_inputs(args, net.graph)
    if args.fixed_point:
        lava_net.plan(fixed_point=True)  # before any data: says what is missing, if anything
    ds = load_dataset(args.data, split=args.split, normalization=norm, channels=channels,
                      image_size=size, limit=args.limit)
    # the images are read through the DataLoader (--workers); Lava takes them all at once
    batches = list(make_loader(ds, args.batch_size, workers=args.workers))
    xs = torch.cat([x for x, _ in batches])
    ys = torch.cat([torch.as_tensor(y) for _, y in batches]).tolist()
    kind = "fixed point" if args.fixed_point else "float"
    res = run_test_set(lava_net, net, xs, ys, fixed_point=args.fixed_point,
                       batch_size=args.lava_batch, csv_path=args.output)
    sat = "" if res["saturations"] is None else f", saturations {res['saturations']}"
    print(f"Lava ({kind}) on {res['images']} images: top-1 {res['accuracy']:.2f}% "
          f"({res['correct']}/{res['images']}), agrees with Norse on {res['agree']} "
          f"({res['agreement']:.2f}%; Norse top-1 {res['norse_accuracy']:.2f}%){sat}; "
          f"{res['seconds']:.1f} s, {res['images_per_s']:.2f} images/s at batch "
          f"{res['batch_size']}" + (f"; wrote {res['csv']}" if res["csv"] else ""))
    return 0


def _cmd_check(args: argparse.Namespace) -> int:
    """Capture only: exit 0 if the model converts, 1 with every blocker if not."""
    import torch

    from spikeconverter.converters import ConversionError, capture

    shape = tuple(args.input_shape)
    if any(n <= 0 for n in shape):
        raise CommandError(f"--input-shape must be positive integers, got {list(shape)}")
    model = _model(args).eval()
    x = torch.randn(2, *shape, generator=torch.Generator().manual_seed(0))
    try:
        with torch.no_grad():
            model(x)
    except Exception as e:  # noqa: BLE001 - whatever the model raises on a wrong shape
        raise CommandError(f"{args.model} does not run on inputs of shape {list(shape)} "
                           f"({type(e).__name__}: {str(e).splitlines()[0][:200]}); pass "
                           "--input-shape") from None
    try:
        graph = capture(model, x)
    except ConversionError as e:
        print(f"{args.model}: not convertible\n{e}")
        return 1
    kinds = [p.kind for p in graph]
    print(f"{args.model}: convertible ({len(kinds)} populations: "
          + ", ".join(f"{kinds.count(k)} {k}" for k in dict.fromkeys(kinds)) + ")")
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


def _cmd_export(args: argparse.Namespace) -> int:
    from spikeconverter.baselines import RateNetwork, rate_thresholds
    from spikeconverter.converters import capture
    from spikeconverter.evaluation import check_model_input
    from spikeconverter.export import NO_ILIF_IN_NIR, write_nir

    if str(args.model).endswith(".snn"):
        raise CommandError(f"{args.model}: {NO_ILIF_IN_NIR}")
    if args.data is None:
        raise CommandError("export needs -d/--data: the IF thresholds are normalised on it "
                           "(or on --calibration)")
    model = _model(args)
    calib = _calibration(args)
    check_model_input(model, calib[:2], "the calibration data")
    graph = capture(model, calib[:2])
    net = RateNetwork(graph, rate_thresholds(graph, calib, mode=args.threshold_norm),
                      "hard_reset")
    path = write_nir(net, args.output)
    spiking = sum(p.kind == "relu" for p in graph)
    print(f"wrote {path}: a hard-reset IF network, {spiking} IF populations, thresholds from "
          f"{len(calib)} calibration images ({args.threshold_norm})")
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    _positive(args.epochs, "--epochs")
    print("loading the demo (torch, Norse, scikit-learn) ...", flush=True)
    from spikeconverter.demo import DEMO_FILES, run_demo

    check_output_folder(args.out, DEMO_FILES, args.overwrite, "--out")
    run_demo(args.out, epochs=args.epochs, lava_samples=max(args.lava_samples, 0))
    return 0


# --------------------------------------------------------------------------------------------


def _user_errors() -> tuple[type[BaseException], ...]:
    errors: list[type[BaseException]] = [ValueError, TypeError, FileNotFoundError,
                                         NotADirectoryError, PermissionError, IsADirectoryError,
                                         NotImplementedError, pickle.UnpicklingError]
    return tuple(errors)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status.

    0 ok, 2 bad input, 130 interrupted by SIGINT (Ctrl-C), 143 stopped by SIGTERM.
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    from spikeconverter.reporting import one_line_warnings

    try:
        with raise_on_signals():
            _check_common(args)
            with one_line_warnings(PROG):
                return int(args.func(args) or 0)
    except KeyboardInterrupt as e:
        print(f"{PROG}: {e or 'interrupted by SIGINT'}", file=sys.stderr)
        return exit_status(e)
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
