"""Lava simulator speed: the im2col Conv model against Lava's own Conv model, and ResNet-20.

Run: ``python benchmarks/bench_lava.py [--steps 20] [--images 4] [--fixed]``. Prints ms per step
of each Conv model on a 32x32x16 input with a 3x3 kernel to 16 channels and the speed-up
(goal >= 5x); then seconds per image of the shared CIFAR-10 ResNet-20 converted at T=8 and
streamed through Lava (float, and with ``--fixed`` the Loihi-style fixed point), with its top-1
agreement with the Norse backend. The ResNet part is skipped with a message when ``../shared``
(checkpoint and data) is absent.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
from lava.magma.core.run_conditions import RunSteps
from lava.magma.core.run_configs import Loihi2SimCfg
from lava.proc.conv.process import Conv
from lava.proc.io.sink import RingBuffer as Sink
from lava.proc.io.source import RingBuffer as Source

from spikeconverter.processes.fastconv.config import fast_conv_run_config

SHARED = Path(__file__).resolve().parents[1] / ".." / "shared"
CHECKPOINT = SHARED / "models" / "cifar10-resnet-akamaster" / "resnet20-12fca82f.th"
CIFAR_TEST = SHARED / "data" / "cifar10" / "test"
CIFAR_TRAIN = SHARED / "data" / "cifar10" / "train"


def ms_per_step(cfg, steps: int, shape=(32, 32, 16), c_out: int = 16, kernel: int = 3) -> float:
    rng = np.random.default_rng(0)
    data = (rng.random((*shape, steps)) < 0.2).astype(float)
    conv = Conv(weight=rng.normal(size=(c_out, kernel, kernel, shape[-1])), input_shape=shape,
                padding=kernel // 2)
    src, sink = Source(data=data), Sink(shape=conv.output_shape, buffer=steps)
    src.s_out.connect(conv.s_in)
    conv.a_out.connect(sink.a_in)
    try:
        sink.run(condition=RunSteps(num_steps=1), run_cfg=cfg)  # compile and start up
        start = time.perf_counter()
        sink.run(condition=RunSteps(num_steps=steps - 1), run_cfg=cfg)
        return (time.perf_counter() - start) / (steps - 1) * 1e3
    finally:
        sink.stop()


def resnet20_in_lava(images: int, fixed: bool, T: int = 8, calibration: int = 128) -> None:
    """Convert the shared ResNet-20 and stream ``images`` CIFAR-10 test images through Lava."""
    missing = [p for p in (CHECKPOINT, CIFAR_TEST, CIFAR_TRAIN) if not p.exists()]
    if missing:
        print(f"ResNet-20 in Lava: skipped ({missing[0]} is absent; needs ../shared)")
        return
    import warnings

    import torch

    import spikeconverter as sc
    from spikeconverter.converters.to_lava.fixed_point import format_report
    from spikeconverter.data import calibration_batch, load_dataset, resolve_normalization
    from spikeconverter.modelspec import load_model

    norm = resolve_normalization("imagenet")  # what the akamaster checkpoints were trained with
    model = load_model("cifar_resnet20", CHECKPOINT)
    test = load_dataset(CIFAR_TEST, normalization=norm, limit=images)
    x = torch.stack([test[i][0] for i in range(images)])
    y = torch.tensor([int(test[i][1]) for i in range(images)])
    calib = calibration_batch(load_dataset(CIFAR_TRAIN, normalization=norm), calibration)
    norse = sc.convert(model, calib, T=T, progress=False)
    with torch.no_grad():
        ref = norse(x).argmax(1).numpy()
    start = time.perf_counter()
    lnet = sc.convert(model, calib, T=T, progress=False, backend="lava")
    prep = time.perf_counter() - start
    s = lnet.schedule
    print(f"ResNet-20 (CIFAR-10) in Lava, T={T}, {images} test images streamed back to back: "
          f"latency {s.latency_steps} steps, {s.steps_per_sample} steps/sample, "
          f"{s.steps_for(images)} steps; conversion + fixed-point calibration {prep:.1f} s")
    print(f"  Norse backend top-1 {100 * (ref == y.numpy()).mean():.1f}%")
    for fixed_point in (False, True) if fixed else (False,):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            logits = lnet.run(x, fixed_point=fixed_point)
        pred = logits.argmax(1)
        st = lnet.stats
        kind = "fixed point" if fixed_point else "float      "
        print(f"  {kind}: {st['seconds_per_sample']:.2f} s/image ({st['seconds']:.1f} s, "
              f"{1e3 * st['seconds'] / st['steps_simulated']:.0f} ms/step), agreement with Norse "
              f"{100 * (pred == ref).mean():.1f}%, top-1 {100 * (pred == y.numpy()).mean():.1f}%"
              + (f", saturations {st['saturations']}" if fixed_point else ""))
        if fixed_point:
            print(format_report(lnet.fixed_point_report()))
            for w in {str(c.message) for c in caught}:
                print(f"  warning: {w}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--images", type=int, default=4,
                        help="CIFAR-10 test images streamed through ResNet-20 (0: skip)")
    parser.add_argument("--fixed", action="store_true", help="also run ResNet-20 in fixed point")
    args = parser.parse_args()
    lava_ms = ms_per_step(Loihi2SimCfg(select_tag="floating_pt"), args.steps)
    fast_ms = ms_per_step(fast_conv_run_config("floating_pt"), args.steps)
    # the same source -> conv -> sink pipeline doing almost no arithmetic: what every step
    # costs in Lava's runtime (messages, synchronisation) whatever the model
    base_ms = ms_per_step(fast_conv_run_config("floating_pt"), args.steps, shape=(1, 1, 1),
                          c_out=1, kernel=1)
    print(f"Conv 32x32x16 -> 16, 3x3, padding 1, floating_pt, {args.steps} steps")
    print(f"  lava PyConvModelFloat   {lava_ms:8.2f} ms/step")
    print(f"  PyConvModelIm2colFloat  {fast_ms:8.2f} ms/step")
    print(f"  runtime floor (1x1x1)   {base_ms:8.2f} ms/step")
    print(f"speed-up, whole step:           {lava_ms / fast_ms:5.1f}x (goal >= 5x)")
    print(f"speed-up, model time over floor: "
          f"{(lava_ms - base_ms) / max(fast_ms - base_ms, 1e-3):5.1f}x")
    if args.images > 0:
        resnet20_in_lava(args.images, args.fixed)


if __name__ == "__main__":
    main()
