"""Lava simulator speed: the im2col Conv model against Lava's own Conv model.

Run: ``python benchmarks/bench_lava.py [--steps 20]``. Prints ms per step of each on a
32x32x16 input with a 3x3 kernel to 16 channels, and the speed-up (goal >= 5x).
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from lava.magma.core.run_conditions import RunSteps
from lava.magma.core.run_configs import Loihi2SimCfg
from lava.proc.conv.process import Conv
from lava.proc.io.sink import RingBuffer as Sink
from lava.proc.io.source import RingBuffer as Source

from spikeconverter.processes.fastconv.config import fast_conv_run_config


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20)
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


if __name__ == "__main__":
    main()
