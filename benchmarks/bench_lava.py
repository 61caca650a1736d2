"""Lava at scale: batched simulation throughput and bounded conversion, on ResNet-20 (T=8).

Run: ``python benchmarks/bench_lava.py [--rounds 2] [--images 3] [--batch 32]
[--calibration 256] [--part all|convert|speed|marginal|steady|conv] [--windows 8]
[--big-windows 16] [--fixed-only]``.

* ``convert`` (in a fresh subprocess, so its peak RSS is the conversion's own): time and peak
  RSS of ``sc.convert(resnet20, calibration, T=8, backend="lava")`` plus building the float
  and fixed-point plans, next to the Norse conversion of the same data (goal: peak < 2 GB).
* ``speed``: images/s of the converted net in Lava at ``batch_size=1`` against the default
  batch, float and fixed point, the two alternated ``--rounds`` times in one run (min and
  median). Images/s is the pipeline's steady rate, ``B / (period * step time)``, with the step
  time measured on the ``RunSteps`` calls after the first one (which compiles and starts the
  runtime; its time is printed too). The runtime overhead is fitted from the two step times as
  ``t(B) = o + a * B``: its share of the step is ``o / t(B)`` (goal: >= 15x more images/s than
  batch_size 1 in fixed point).
* ``marginal``: whole runs of a small and a big image count at batch 1 (8 vs 56 images) and at
  the default batch (one batch vs 17), alternated; images/s is
  ``(n_big - n_small) / (t_big - t_small)``, so runtime start, pipeline fill and drain
  cancel (the ``speed`` figure times steps while a single batch drains, when the windowed
  early layers are idle, and flatters the batched run). Images past the 1,017 shared ones
  repeat them.
* ``steady``: fixed point, one run per batch size of ``max(--windows, 48)`` windows in
  ``run()``'s own chunks (8 windows); images/s of each chunk during which the pipeline is
  full (some window already out, the last not yet in), so neither the runtime start, whose
  time jitters by tens of seconds under load, nor fill and drain count; B=1 and the default
  batch alternated.
* ``conv``: the im2col Conv model against Lava's own Conv model (one 32x32x16 layer).

Everything needs ``../shared`` (checkpoint and CIFAR-10); it says so and skips otherwise.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np

SHARED = Path(__file__).resolve().parents[1] / ".." / "shared"
CHECKPOINT = SHARED / "models" / "cifar10-resnet-akamaster" / "resnet20-12fca82f.th"
CIFAR_TEST = SHARED / "data" / "cifar10" / "test"
CIFAR_TRAIN = SHARED / "data" / "cifar10" / "train"


def _load(calibration: int, images: int):
    import torch

    from spikeconverter.data import calibration_batch, load_dataset, resolve_normalization
    from spikeconverter.modelspec import load_model

    norm = resolve_normalization("imagenet")  # what the akamaster checkpoints were trained with
    model = load_model("cifar_resnet20", CHECKPOINT)
    test = load_dataset(CIFAR_TEST, normalization=norm, limit=max(images, 1))
    x = torch.stack([test[i][0] for i in range(images)]) if images else None
    calib = calibration_batch(load_dataset(CIFAR_TRAIN, normalization=norm), calibration)
    return model, calib, x


def convert_part(calibration: int) -> dict:
    """Conversion time and peak RSS (this process; run it in a fresh one)."""
    import spikeconverter as sc

    model, calib, _ = _load(calibration, 0)
    start = time.perf_counter()
    sc.convert(model, calib, T=8, progress=False)
    norse_s = time.perf_counter() - start
    rss_norse = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        lnet = sc.convert(model, calib, T=8, progress=False, backend="lava")
        convert_s = time.perf_counter() - start
        lnet.plan(False)
        lnet.plan(True)
    total_s = time.perf_counter() - start
    return {"calibration": calibration, "norse_s": norse_s, "lava_convert_s": convert_s,
            "lava_total_s": total_s, "peak_rss_mb": resource.getrusage(
                resource.RUSAGE_SELF).ru_maxrss / 1024, "rss_after_norse_mb": rss_norse}


def print_convert(calibration: int) -> None:
    cmd = [sys.executable, __file__, "--part", "convert-json", "--calibration", str(calibration)]
    out = subprocess.run(cmd, capture_output=True, text=True, check=False)
    lines = [ln for ln in out.stdout.splitlines() if ln.startswith("{")]
    if out.returncode != 0 or not lines:
        print(f"conversion: failed (exit {out.returncode})\n{out.stderr[-2000:]}")
        return
    r = json.loads(lines[-1])
    print(f"ResNet-20 T=8, {r['calibration']} calibration images, load {os.getloadavg()[0]:.1f}")
    print(f"  Norse conversion                    {r['norse_s']:8.1f} s")
    print(f"  Lava conversion (+ membrane peaks)  {r['lava_convert_s']:8.1f} s")
    print(f"  ... + float and fixed-point plans   {r['lava_total_s']:8.1f} s "
          f"({r['lava_total_s'] / r['norse_s']:.1f}x the Norse conversion)")
    print(f"  peak RSS (whole process)            {r['peak_rss_mb']:8.0f} MB (goal < 2048 MB)")


def _rate(lnet, x, fixed: bool, batch: int) -> tuple[float, float, float]:
    """(images/s steady, step seconds, first-chunk seconds) of one run."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the fixed-point plan's core-budget warnings
        lnet.run(x, fixed_point=fixed, batch_size=batch, progress=False)
    t = lnet.stats["timing"]
    step = t["stepping_seconds"] / max(t["stepping_steps"], 1)
    return batch / (lnet.schedule.steps_per_sample * step), step, t["first_chunk_seconds"]


def _wall(lnet, x, fixed: bool, batch: int) -> float:
    """Wall seconds of one whole ``run`` (runtime start, stepping, drain and stop)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        start = time.perf_counter()
        lnet.run(x, fixed_point=fixed, batch_size=batch, progress=False)
        return time.perf_counter() - start


def marginal_part(rounds: int, batch: int, windows: int, calibration: int,
                  modes: tuple[bool, ...] = (False, True), big_windows: int = 16) -> None:
    """Marginal throughput: ``(n_big - n_small) / (t_big - t_small)`` of whole runs, so the
    runtime start, the pipeline's fill and drain cancel and only full-pipeline steps count."""
    import spikeconverter as sc

    # B=1 gets 6 * windows extra images (its rate is ~1/10 of the batched one), the batched
    # run big_windows extra batches: both differences take many times the jitter of a
    # runtime start under load (tens of seconds)
    sizes = {1: (windows, 7 * windows), batch: (batch, (1 + big_windows) * batch)}
    n = max(sizes[1][1], sizes[batch][1])
    model, calib, x = _load(calibration, min(n, 1017))
    x = x.repeat((-(-n // len(x)), 1, 1, 1))[:n]  # test images, repeated past the 1,017 shared
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        lnet = sc.convert(model, calib, T=8, progress=False, backend="lava")
    print(f"marginal images/s (whole runs of n_small and n_big images, both alternated "
          f"{rounds}x): B=1 {sizes[1]}, B={batch} {sizes[batch]}")
    for fixed in modes:
        lnet.plan(fixed)  # built once, outside the timed runs
        _wall(lnet, x[:1], fixed, 1)  # and Lava's first compile
        rates: dict[int, list[float]] = {1: [], batch: []}
        loads = []
        for r in range(rounds):
            for b, (small, big) in sizes.items():
                t_small, t_big = _wall(lnet, x[:small], fixed, b), _wall(lnet, x[:big], fixed, b)
                if t_big <= t_small:
                    raise SystemExit(f"B={b}: {big} images ran no slower than {small} "
                                     "(runtime start dominates): raise --windows")
                rates[b].append((big - small) / (t_big - t_small))
                loads.append(os.getloadavg()[0])
                print(f"    round {r + 1} B={b:<3} {rates[b][-1]:7.3f} images/s  "
                      f"({t_small:.1f} s / {t_big:.1f} s)  load {loads[-1]:.1f}", flush=True)
        kind = "fixed point" if fixed else "float"
        ratios = [bb / one for one, bb in zip(rates[1], rates[batch], strict=True)]
        for b in (1, batch):
            print(f"  {kind:<11} B={b:<3} marginal images/s min {min(rates[b]):7.3f} median "
                  f"{statistics.median(rates[b]):7.3f}")
        print(f"  {kind:<11} marginal speed-up B={batch} / B=1: min {min(ratios):.1f}x median "
              f"{statistics.median(ratios):.1f}x  load min {min(loads):.1f} max {max(loads):.1f}")


def _steady_rates(lnet, x, fixed: bool, batch: int, chunk_windows: int) -> list[float]:
    """Images/s of every chunk of one run during which the pipeline is full: some window has
    already come out and the last one has not yet gone in (start, fill and drain excluded)."""
    sched, period = lnet.schedule, lnet.schedule.steps_per_sample
    chunk = chunk_windows * period
    out = lnet.graph.output
    read = sched.offset[out] + sched.t_acc[out] - 1  # the step window 0's logits are read
    windows = -(-len(x) // batch)
    last_in = lnet.plan(fixed).input_delay + (windows - 1) * period
    stamps: dict[int, list] = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for first, logits in lnet.iter_run(x, fixed, batch_size=batch, chunk_steps=chunk):
            k = (read + (first // batch) * period) // chunk  # the chunk it came out of
            stamps.setdefault(k, [time.perf_counter(), 0])[1] += len(logits)
    first_k = min(stamps)
    return [stamps[k][1] / (stamps[k][0] - stamps[k - 1][0]) for k in sorted(stamps)
            if k > first_k and k - 1 in stamps and last_in >= chunk * (k + 1)]


def steady_part(rounds: int, batch: int, windows: int, chunk_windows: int,
                calibration: int) -> None:
    """Steady-state images/s: chunks of a running, full pipeline only (robust to the runtime
    start's jitter under load), B=1 and B=batch alternated; min and median of the ratio of
    each round's median chunk rates."""
    import spikeconverter as sc

    model, calib, x = _load(calibration, min(1017, windows * batch))
    n = windows * batch
    x = x.repeat((-(-n // len(x)), 1, 1, 1))[:n]  # test images, repeated past the 1,017 shared
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        lnet = sc.convert(model, calib, T=8, progress=False, backend="lava")
        lnet.plan(True)
    print(f"steady images/s, fixed point: {windows} windows per run (B=1: {windows} images, "
          f"B={batch}: {n}), chunks of {chunk_windows} windows, {rounds} rounds alternated")
    ratios, med = [], {1: [], batch: []}
    for r in range(rounds):
        for b in (1, batch):
            rates = _steady_rates(lnet, x[:windows * b], True, b, chunk_windows)
            med[b].append(statistics.median(rates))
            print(f"    round {r + 1} B={b:<3} median {med[b][-1]:7.3f} images/s over "
                  f"{len(rates)} chunks (min {min(rates):.3f}, max {max(rates):.3f})  load "
                  f"{os.getloadavg()[0]:.1f}", flush=True)
        ratios.append(med[batch][-1] / med[1][-1])
    print(f"  steady speed-up B={batch} / B=1: min {min(ratios):.1f}x median "
          f"{statistics.median(ratios):.1f}x (goal >= 15x)")


def speed_part(rounds: int, images: int, batch: int, calibration: int,
               modes: tuple[bool, ...] = (False, True)) -> None:
    import spikeconverter as sc

    model, calib, x = _load(calibration, max(images, batch))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        lnet = sc.convert(model, calib, T=8, progress=False, backend="lava")
    period = lnet.schedule.steps_per_sample
    # both runs step well past their first chunk (8 windows) to measure a running runtime
    n1 = max(images, 1)
    print(f"ResNet-20 T=8 in Lava: {period} steps/sample, latency "
          f"{lnet.schedule.latency_steps} steps; batch_size 1 ({n1} images) vs {batch} "
          f"({batch} images), {rounds} rounds alternated")
    for fixed in modes:
        res: dict[int, list] = {1: [], batch: []}
        for _ in range(rounds):
            for b, n in ((1, n1), (batch, batch)):
                res[b].append(_rate(lnet, x[:n], fixed, b) + (os.getloadavg()[0],))
        kind = "fixed point" if fixed else "float"
        for b in (1, batch):
            r = [v[0] for v in res[b]]
            print(f"  {kind:<11} B={b:<3} images/s min {min(r):7.3f} median "
                  f"{statistics.median(r):7.3f}  ms/step median "
                  f"{1e3 * statistics.median(v[1] for v in res[b]):8.1f}  first chunk "
                  f"(compile+start) {statistics.median(v[2] for v in res[b]):6.1f} s  load "
                  f"{statistics.median(v[3] for v in res[b]):.1f}")
        ratios = [bb[0] / one[0] for one, bb in zip(res[1], res[batch], strict=True)]
        t1 = statistics.median(v[1] for v in res[1])
        tb = statistics.median(v[1] for v in res[batch])
        a = max((tb - t1) / (batch - 1), 0.0)
        o = t1 - a
        goal = " (goal >= 15x)" if fixed else ""
        print(f"  {kind:<11} speed-up B={batch} / B=1: min {min(ratios):.1f}x median "
              f"{statistics.median(ratios):.1f}x{goal}")
        print(f"  {kind:<11} runtime overhead per step (fit t(B) = o + a*B): o = "
              f"{1e3 * o:.1f} ms, {100 * o / t1:.0f}% of the step at B=1, "
              f"{100 * o / tb:.0f}% at B={batch}")


def conv_part(steps: int = 20) -> None:
    from lava.magma.core.run_conditions import RunSteps
    from lava.magma.core.run_configs import Loihi2SimCfg
    from lava.proc.conv.process import Conv
    from lava.proc.io.sink import RingBuffer as Sink
    from lava.proc.io.source import RingBuffer as Source

    from spikeconverter.processes.fastconv.config import fast_conv_run_config

    def ms_per_step(cfg) -> float:
        rng = np.random.default_rng(0)
        data = (rng.random((32, 32, 16, steps)) < 0.2).astype(float)
        conv = Conv(weight=rng.normal(size=(16, 3, 3, 16)), input_shape=(32, 32, 16), padding=1)
        src, sink = Source(data=data), Sink(shape=conv.output_shape, buffer=steps)
        src.s_out.connect(conv.s_in)
        conv.a_out.connect(sink.a_in)
        try:
            sink.run(condition=RunSteps(num_steps=1), run_cfg=cfg)
            start = time.perf_counter()
            sink.run(condition=RunSteps(num_steps=steps - 1), run_cfg=cfg)
            return (time.perf_counter() - start) / (steps - 1) * 1e3
        finally:
            sink.stop()

    lava_ms = ms_per_step(Loihi2SimCfg(select_tag="floating_pt"))
    fast_ms = ms_per_step(fast_conv_run_config("floating_pt"))
    print(f"Conv 32x32x16 -> 16, 3x3: lava {lava_ms:.2f} ms/step, im2col {fast_ms:.2f} ms/step "
          f"({lava_ms / fast_ms:.1f}x)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--part", default="all",
                        choices=["all", "convert", "speed", "marginal", "steady", "conv",
                                 "convert-json"])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--images", type=int, default=3, help="images of the batch_size=1 runs")
    parser.add_argument("--batch", type=int, default=None,
                        help="batched run's batch size (default: the library default)")
    parser.add_argument("--calibration", type=int, default=256)
    parser.add_argument("--windows", type=int, default=8,
                        help="marginal: B=1 runs this many vs 7x this many images")
    parser.add_argument("--big-windows", type=int, default=16,
                        help="marginal: extra batches of the batched big run (default 16: "
                             "B=128 runs 128 vs 2,176 images; more where the runtime start's "
                             "jitter is large against the difference)")
    parser.add_argument("--fixed-only", action="store_true", help="speed: fixed point only")
    args = parser.parse_args()
    missing = [p for p in (CHECKPOINT, CIFAR_TEST, CIFAR_TRAIN) if not p.exists()]
    if missing and args.part != "conv":
        print(f"skipped: {missing[0]} is absent (needs ../shared)")
        return
    if args.part == "convert-json":
        print(json.dumps(convert_part(args.calibration)))
        return
    if args.part in ("all", "convert"):
        print_convert(args.calibration)
    from spikeconverter.converters.to_lava.batched import DEFAULT_BATCH, DEFAULT_CHUNK_WINDOWS

    batch = args.batch or DEFAULT_BATCH
    modes = (True,) if args.fixed_only else (False, True)
    if args.part in ("all", "speed"):
        speed_part(args.rounds, args.images, batch, 64, modes)
    if args.part == "marginal":
        marginal_part(args.rounds, batch, args.windows, 64, modes, args.big_windows)
    if args.part == "steady":
        # both sides in run()'s own chunks (smaller ones charge B=1 a RunSteps call every few
        # images, which inflated the ratio); enough windows for several full-pipeline chunks
        steady_part(args.rounds, batch, max(args.windows, 6 * DEFAULT_CHUNK_WINDOWS),
                    DEFAULT_CHUNK_WINDOWS, 64)
    if args.part == "conv":
        conv_part()


if __name__ == "__main__":
    main()
