"""Milliseconds per step of Dense + ILIF against Dense + Lava's LIF of the same size.

Both graphs are ``RingBuffer source -> Dense (n x n) -> neurons`` on the CPU simulator
(``Loihi2SimCfg``, floating_pt, or fixed_pt with --fixed). Each is compiled and started with
one step, then timed over ``--steps`` steps; the two are alternated ``--repeats`` times and the
best time of each is kept (the machine may be shared). Prints ms/step and the ratio ILIF / LIF.
Then the two float ProcessModels' ``run_spk`` alone (no runtime, ports replaced by stubs), which
isolates the neuron update from the Lava message passing that dominates small graphs.

Run: ``PYTHONPATH=src python benchmarks/bench_lava_neuron.py --neurons 256 --steps 300``
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from lava.magma.core.run_conditions import RunSteps
from lava.proc.dense.process import Dense
from lava.proc.io.source import RingBuffer as Source
from lava.proc.lif.models import PyLifModelFloat
from lava.proc.lif.process import LIF

from spikeconverter.processes import ILIF
from spikeconverter.processes.ilif.models import PyILIFModelFloat
from spikeconverter.processes.run import run_config


def time_graph(kind: str, n: int, steps: int, select_tag: str, seed: int = 0) -> float:
    """Seconds per step of ``source -> Dense -> neurons`` after a warm-up step."""
    rng = np.random.default_rng(seed)
    fixed = select_tag == "fixed_pt"
    spikes = (rng.random((n, 64)) < 0.2).astype(np.int32 if fixed else float)
    weights = rng.integers(-8, 9, size=(n, n)) if fixed else rng.normal(0, 0.1, size=(n, n))
    source = Source(data=spikes)
    dense = Dense(weights=weights)
    if kind == "ilif":
        neurons = ILIF(shape=(n,), vth=64 if fixed else 1.0, t_acc=16, t_gen=16,
                       rounding="nearest")
    else:
        neurons = LIF(shape=(n,), vth=64 if fixed else 1.0, du=0, dv=0)
    source.s_out.connect(dense.s_in)
    dense.a_out.connect(neurons.a_in)
    cfg = run_config(select_tag)
    try:
        neurons.run(condition=RunSteps(num_steps=1), run_cfg=cfg)  # compile + start
        t0 = time.perf_counter()
        neurons.run(condition=RunSteps(num_steps=steps), run_cfg=cfg)
        return (time.perf_counter() - t0) / steps
    finally:
        neurons.stop()


class _InStub:
    def __init__(self, data: np.ndarray):
        self.data = data

    def recv(self) -> np.ndarray:
        return self.data.copy()  # a real port hands over a fresh array too


class _OutStub:
    def __init__(self, n: int):
        self.shape = (n,)

    def send(self, data: np.ndarray) -> None:
        np.asarray(data, dtype=float).copy()


def time_model_update(kind: str, n: int, steps: int) -> float:
    """Seconds per ``run_spk`` of the float model alone (stub ports, Vars set by hand)."""
    if kind == "ilif":
        params = dict(shape=(n,), k=2.0, t_acc=16, t_gen=16, offset=0, rounding="nearest",
                      signed=False)
        model = PyILIFModelFloat(params)
        model.v, model.vth, model.bias = np.zeros(n), np.ones(n), np.zeros(n)
    else:
        model = PyLifModelFloat({"shape": (n,)})
        model.u, model.v, model.bias_mant = np.zeros(n), np.zeros(n), np.zeros(n)
        model.du, model.dv, model.vth = 0.0, 0.0, 1.0
    model.a_in = _InStub(np.random.default_rng(0).random(n))
    model.s_out = _OutStub(n)
    t0 = time.perf_counter()
    for step in range(1, steps + 1):
        model.time_step = step
        model.run_spk()
    return (time.perf_counter() - t0) / steps


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--neurons", type=int, default=256)
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--fixed", action="store_true", help="run the fixed_pt models")
    args = parser.parse_args(argv)
    tag = "fixed_pt" if args.fixed else "floating_pt"
    best = {"ilif": float("inf"), "lif": float("inf")}
    for _ in range(args.repeats):
        for kind in ("lif", "ilif"):
            best[kind] = min(best[kind], time_graph(kind, args.neurons, args.steps, tag))
    print(f"Dense({args.neurons}x{args.neurons}) + neurons, {args.steps} steps, {tag}, "
          f"best of {args.repeats}")
    print(f"  Lava LIF : {1e3 * best['lif']:.3f} ms/step")
    print(f"  ILIF     : {1e3 * best['ilif']:.3f} ms/step")
    print(f"  ratio ILIF / LIF: {best['ilif'] / best['lif']:.2f} (goal <= 1.2)")
    alone = {kind: min(time_model_update(kind, args.neurons, 3000) for _ in range(3))
             for kind in ("lif", "ilif")}
    print(f"float neuron update alone ({args.neurons} neurons, no runtime, best of 3):")
    print(f"  Lava LIF : {1e6 * alone['lif']:.1f} us/step")
    print(f"  ILIF     : {1e6 * alone['ilif']:.1f} us/step")
    print(f"  ratio ILIF / LIF: {alone['ilif'] / alone['lif']:.2f}")


if __name__ == "__main__":
    main()
