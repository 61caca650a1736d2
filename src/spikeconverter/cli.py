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
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from spikeconverter.cliparser import (
    PROG,
    CommandError,
    build_parser,
    check_output_file,
    check_output_folder,
)
from spikeconverter.interrupts import exit_status, raise_on_signals

__all__ = ["build_parser", "check_output_file", "check_output_folder", "main"]

EXIT_USAGE = 2


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
    from spikeconverter.data import calibration_batch
    from spikeconverter.options import TORCHVISION_DATASETS

    source, split = args.calibration, args.split
    if source is None:
        source = args.data
        kind = str(source).partition(":")[0].lower()
        if kind in TORCHVISION_DATASETS and not Path(source).exists():
            split = "train"
    return calibration_batch(_dataset(args, source, split, None), _calibration_count(args),
                             workers=getattr(args, "workers", 0))


def _calibration_count(args: argparse.Namespace) -> int:
    """``--calibration-images``, else the draw the conversion for ``-T`` was measured with
    (``correction.calibration_draw``: 1,024 for ``convert -T 4`` without ``--correction`` or
    ``--threshold-granularity``, 256 otherwise); ``evaluate`` calibrates all its T on one
    draw of 256."""
    from spikeconverter.converters.correction import DRAW, calibration_draw

    if args.calibration_images is not None:
        return args.calibration_images
    if args.command != "convert":
        return DRAW
    return calibration_draw(args.T, threshold_granularity=args.threshold_granularity,
                            correction=args.correction)


def _conversion_line(args: argparse.Namespace, images: int) -> str:
    """What ``convert`` is about to do, in one line: its calibration and correction."""
    from spikeconverter.converters.correction import chosen_settings

    run = chosen_settings(args.T, images, threshold_granularity=args.threshold_granularity,
                          correction=args.correction)
    return (f"converting at T={args.T} on {images} calibration images: thresholds per "
            f"{run['threshold_granularity']}, correction '{run['correction']}'"
            + (" (minutes on a CPU)" if run["correction"] == "block" else ""))


def _device(name: str) -> Any:
    """The device to use, checked before any work: under torchrun with CUDA, ``cuda`` means
    this process's ``cuda:LOCAL_RANK``."""

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

    check_output_file(args.output, args.overwrite)
    model = _model(args)
    calib = _calibration(args)
    check_model_input(model, calib[:2], "the calibration data")
    print(_conversion_line(args, len(calib)))
    net = convert(model, calib, T=args.T, calibration_mode=args.calibration_mode,
                  rounding=args.rounding, progress=True, device=args.device,
                  threshold_granularity=args.threshold_granularity, correction=args.correction,
                  double_buffered=args.double_buffered)
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
    from spikeconverter.converters.to_lava.plancache import plan_cache_path
    from spikeconverter.data import load_dataset, make_loader
    from spikeconverter.lavaeval import run_test_set

    path = Path(args.network)
    if not path.is_file():
        raise FileNotFoundError(f"network file {str(path)!r} does not exist")
    if args.device.type != "cpu":
        raise CommandError(f"run-lava simulates Lava on the CPU only; drop --device "
                           f"{args.device} (or pass --device cpu)")
    if args.output is not None:
        check_output_file(args.output, args.overwrite)
    _positive(args.lava_batch, "--lava-batch")
    net = load(path)
    lava_net = _lava_network(net)
    lava_net.use_plan_cache(plan_cache_path(path))  # built once per network
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
    model = _model(args).eval().to(args.device)
    x = torch.randn(2, *shape, generator=torch.Generator().manual_seed(0)).to(args.device)
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


def _cmd_report(args: argparse.Namespace) -> int:
    import torch

    from spikeconverter.converters import load
    from spikeconverter.converters.hardware import format_hardware_report
    from spikeconverter.converters.to_lava.fixed_point import format_report
    from spikeconverter.plotting import plot_hardware
    from spikeconverter.reporting import write_json

    path = Path(args.network)
    if not path.is_file():
        raise FileNotFoundError(f"network file {str(path)!r} does not exist")
    try:
        net = load(path, backend="lava")
    except NotImplementedError as e:
        raise CommandError(f"the Lava backend is not available in this installation ({e})"
                           ) from None
    images = None
    if args.data is not None:
        ds = _dataset(args, args.data, args.split, args.limit)
        images = torch.stack([ds[i][0] for i in range(len(ds))])
    report = net.hardware_report(images, double_buffered=args.double_buffered or None)
    print(format_hardware_report(report))
    if net.membrane_peaks is not None:  # the fixed-point plan: formats, errors, violations
        net.allow_violations = True  # a report lists what breaks a format instead of refusing
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            print(format_report(net.fixed_point_report()))
    out = Path(args.output)
    files = [write_json(out / "hardware.json", report), plot_hardware(report, out / "hardware.png")]
    print("wrote " + ", ".join(str(f) for f in files))
    return 0


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
    check_output_file(args.output, args.overwrite)
    model = _model(args)
    calib = _calibration(args)
    check_model_input(model, calib[:2], "the calibration data")
    graph = capture(model, calib[:2])
    lam = rate_thresholds(graph, calib, mode=args.threshold_norm, device=args.device)
    net = RateNetwork(graph, lam, "hard_reset")
    path = write_nir(net, args.output)
    spiking = sum(p.kind == "relu" for p in graph)
    print(f"wrote {path}: a hard-reset IF network, {spiking} IF populations, thresholds from "
          f"{len(calib)} calibration images ({args.threshold_norm})")
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    _positive(args.epochs, "--epochs")
    print("loading the demo (torch, Norse, scikit-learn) ...", flush=True)
    from spikeconverter.demo import DEMO_FILES, run_demo

    check_output_folder(args.output, DEMO_FILES, args.overwrite)
    run_demo(args.output, epochs=args.epochs, lava_samples=max(args.lava_samples, 0),
             device=args.device, limit=args.limit)
    return 0


# --------------------------------------------------------------------------------------------


def _run_finetune(args: argparse.Namespace) -> int:
    from spikeconverter.training.cli import run_finetune

    return run_finetune(args)


#: the function of this module each subcommand runs (its heavy imports happen inside it)
COMMANDS: dict[str, str] = {
    "convert": "_cmd_convert", "evaluate": "_cmd_evaluate", "check": "_cmd_check",
    "run-lava": "_cmd_run_lava", "export": "_cmd_export", "demo": "_cmd_demo",
    "report": "_cmd_report",
    "finetune": "_run_finetune",
}


def _command(args: argparse.Namespace) -> Callable[[argparse.Namespace], int]:
    """The function of ``args.command``, looked up when called (so it can be patched); a
    parser of the caller's own may have set ``func``."""
    return getattr(args, "func", None) or globals()[COMMANDS[args.command]]


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
                return int(_command(args)(args) or 0)
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
