"""Tutorial 4: the Lava Processes of a converted network -- probe a layer's membrane.

``lnet.run(images)`` builds, runs and stops a Lava process graph for you. A Lava user who wants
the Processes themselves gets them from ``lnet.processes(images, fixed_point=...)``: the
source, the sink, a dict of population name -> Lava Process and the synapse Processes, with the
number of steps and the run configuration that ``run`` uses. Here we attach a
``lava.proc.monitor.process.Monitor`` to the membrane ``v`` of the first hidden layer of a
small CNN in fixed point (Loihi-style 24-bit integers), run the graph ourselves, read the
logits and the probed membrane, check the logits against ``lnet.run`` and plot the membrane of a
few neurons over the accumulate/generate windows.

Two graphs exist (``graph=``): ``"lava"`` (default here) uses Lava's own Dense/Sparse/Conv
Processes with one neuron per model neuron -- what a Loihi mapping looks like; ``"batched"``
gives every Process a leading batch axis and is what ``lnet.run`` uses by default, because
Lava's CPU runtime pays a fixed cost per Process and step that the batch then shares.

Run ``python tutorials/04_lava_process_graph.py [--out out/tutorial4]`` (``--smoke`` for
seconds).
"""

from __future__ import annotations

import argparse
import os
import warnings
from pathlib import Path

import numpy as np
import torch

import spikeconverter as sc
from spikeconverter.models import small_cnn


def main(argv: list[str] | None = None) -> dict[str, float] | None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="out/tutorial4", help="folder of the plot")
    ap.add_argument("-T", type=int, default=6)
    ap.add_argument("--smoke", action="store_true",
                    default=bool(os.environ.get("SPIKECONVERTER_SMOKE")))
    args = ap.parse_args(argv)
    try:
        from lava.proc.monitor.process import Monitor

        from spikeconverter.processes import simulation
    except ImportError as e:
        print(f"Lava is not installed ({e}); this tutorial needs lava-nc 0.10.0")
        return None
    torch.manual_seed(0)
    size = 8 if args.smoke else 16
    model = small_cnn(in_channels=1, input_size=size, width=4, hidden=16).eval()
    calib, x = torch.randn(32, 1, size, size), torch.randn(2, 1, size, size)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the core-budget report warns about nothing here
        lnet = sc.convert(model, calib, T=args.T, backend="lava", progress=False)

    # 1. the process graph, in fixed point, for two images
    pg = lnet.processes(x, fixed_point=True)
    layer = next(name for name, p in lnet.graph.populations.items() if p.kind == "relu")
    neurons = pg.neurons[layer]
    print(f"{len(pg.neurons)} populations, {len(pg.synapses)} synapse Processes; probing "
          f"{layer!r} ({type(neurons).__name__}, Lava shape {neurons.shape}) for "
          f"{pg.num_steps} steps")

    # 2. attach a Monitor to its membrane and run the graph ourselves
    monitor = Monitor()
    monitor.probe(neurons.v, pg.num_steps)
    with simulation(pg.sink, num_steps=pg.num_steps, run_cfg=pg.run_cfg):
        logits = pg.logits()  # read before the runtime stops
        v = monitor.get_data()[neurons.name]["v"]  # (steps, *shape), integer membrane
    same = np.array_equal(logits, lnet.run(x, fixed_point=True, progress=False))
    print(f"logits from our own run equal lnet.run: {same}")

    # 3. plot a few neurons in float units (the fixed-point gain maps float to integers)
    gain = lnet.fixed_point_report()["layers"][layer]["gain"]
    v = np.asarray(v, dtype=np.float64).reshape(len(v), -1) / gain
    theta = float(np.unique(lnet.plan(True).populations[layer].vth)[0]) * 64 / gain
    picks = np.argsort(np.abs(v).max(axis=0))[-4:]
    path = _plot(v[:, picks], theta, lnet.schedule, layer, Path(args.out))
    print(f"wrote {path}")
    return {"logits_equal": float(same), "steps": float(pg.num_steps),
            "peak": float(np.abs(v).max())}


def _plot(v: np.ndarray, theta: float, schedule, layer: str, out: Path) -> Path:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7, 3.6))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    for i in range(v.shape[1]):
        ax.step(np.arange(len(v)), v[:, i], where="post", label=f"neuron {i}")
    ax.axhline(theta, color="grey", ls="--", lw=0.8, label="threshold")
    start = schedule.offset[layer]
    for w in range(start, len(v), schedule.steps_per_sample):
        ax.axvline(w, color="k", lw=0.4, alpha=0.4)
        ax.axvspan(w + schedule.t_acc[layer], w + schedule.steps_per_sample, color="orange",
                   alpha=0.08)
    ax.set(xlabel="time step", ylabel="membrane (float units)",
           title=f"{layer}: accumulate (white) and generate (shaded) windows, fixed point")
    ax.legend(fontsize=7, loc="upper right")
    out.mkdir(parents=True, exist_ok=True)
    path = out / "membrane.png"
    fig.savefig(path, dpi=120, bbox_inches="tight")
    return path


if __name__ == "__main__":
    main()
