"""The hard-reset IF baseline on the shared CIFAR-10 ResNet-20, balanced as its paper does.

Sengupta et al. (2019) report ResNet-20 on CIFAR-10 at 87.46 % after 2048 steps with their
spike-norm threshold balancing. This runs the same recipe on our graph IR: thresholds from
:func:`~spikeconverter.baselines.spike_norm_thresholds` (``--norm-images`` calibration images of
../shared/data/cifar10/train, ``--norm-steps`` steps per layer), then the rate-coded hard-reset
network on a seeded draw of ``--images`` of the 1,017 test images (the same draw as
``spikeconverter evaluate --baseline-limit``), read out at every checkpoint up to 2048 steps,
next to the ANN on the same images. Progress is printed per batch; results go to
``OUT/hard_reset.json``, with a per-layer table of the first batch: the SNN's rates against the
ANN's ``a / lambda`` (correlation and least-squares slope), which is where a conversion that
fails shows where it breaks. ``--method soft_reset`` runs the same thresholds with reset by
subtraction (the control that isolates the hard reset), ``--encoding poisson`` the paper's
Poisson input, ``--junctions identity`` the equal-threshold reading of its residual rule, and
``--bias-scale 0`` a diagnosis: the same net with every bias (the folded BatchNorm's) scaled,
the ANN it is compared with included (the paper's nets have no biases).

Run: ``python benchmarks/hard_reset_resnet20.py [--images 256] [--steps 256 512 1024 2048]
[--norm-steps 256] [--norm-images 32] [--device cpu|cuda] [--cache images.pt] [--out DIR]``
(``--cache`` as written by ``benchmarks/low_T.py --write-cache``).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import time
from pathlib import Path

import torch

from spikeconverter.baselines import (
    INPUT_ENCODINGS,
    JUNCTION_RULES,
    RATE_METHODS,
    RateNetwork,
    spike_norm_thresholds,
)
from spikeconverter.converters.capture import capture
from spikeconverter.models import load_cifar_resnet

SHARED = Path(__file__).resolve().parents[1] / ".." / "shared"
CKPT = SHARED / "models" / "cifar10-resnet-akamaster" / "resnet20-12fca82f.th"


def images(args) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    if args.cache:
        blob = torch.load(args.cache)
        xs, ys, cal = blob["xs"], blob["ys"], blob["draws"][0]
    else:
        from low_T import load_images  # the benchmark next to this one

        xs, ys, draws = load_images(argparse.Namespace(cache=None, write_cache=False,
                                                       calibration=256, draws=[0]))
        cal = draws[0]
    pick = torch.randperm(len(xs), generator=torch.Generator().manual_seed(0))
    pick = pick[: args.images].sort().values
    return xs[pick], ys[pick], cal[: args.norm_images]


def scale_biases(graph, factor: float) -> None:
    """Multiply every op's bias in ``graph`` by ``factor`` (in place)."""
    for pop in graph:
        for e in pop.edges:
            e.ops[:] = [op if op.bias is None else dataclasses.replace(op, bias=op.bias * factor)
                        for op in e.ops]


def layer_table(graph, x, res, lam, T) -> dict[str, dict[str, float]]:
    """Per layer: the SNN's rates ``count / T`` against the ANN's ``a / lambda`` on ``x``
    (Pearson correlation and least-squares slope; 1 and 1 for a lossless conversion)."""
    with torch.no_grad():
        ann = graph.forward(x.double(), quantized=False)
    out = {}
    for name, count in res.counts.items():
        r, a = (count / T).flatten().double(), (ann[name] / lam[name]).flatten()
        corr = float(torch.corrcoef(torch.stack([r, a]))[0, 1])
        slope = float((r * a).sum() / (a * a).sum().clamp_min(1e-30))
        out[name] = {"lambda": round(lam[name], 4), "ann_max": round(float(ann[name].max()), 4),
                     "corr": round(corr, 4), "slope": round(slope, 4),
                     "mean_rate": round(float(r.mean()), 6)}
        print(f"{name:10s} lambda {lam[name]:8.2f}  corr {corr:6.3f}  slope {slope:6.3f}  "
              f"rate {float(r.mean()):.4f}", flush=True)
    return out


def score(net, graph, lam, xs, ys, ann, steps, batch) -> tuple[dict, dict, dict]:
    """Correct and ANN-agreeing counts of ``net`` at each of ``steps``, batch by batch, with
    progress, and the first batch's per-layer table (:func:`layer_table`)."""
    ok, agree, layers = dict.fromkeys(steps, 0), dict.fromkeys(steps, 0), None
    for i in range(0, len(xs), batch):
        res = net.run(xs[i:i + batch], steps, keep_counts=layers is None)
        for t in steps:
            pred = res.logits[t].argmax(1)
            ok[t] += int((pred == ys[i:i + batch]).sum())
            agree[t] += int((pred == ann[i:i + batch]).sum())
        if layers is None:  # the first batch: each layer's rates against the ANN's
            layers = layer_table(graph, xs[i:i + batch], res, lam, steps[-1])
        print(f"{min(i + batch, len(xs))}/{len(xs)} images: "
              + ", ".join(f"T={t} {ok[t]}" for t in steps), flush=True)
    return ok, agree, layers


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=256)
    ap.add_argument("--steps", type=int, nargs="+", default=[256, 512, 1024, 2048])
    ap.add_argument("--norm-steps", type=int, default=256)
    ap.add_argument("--norm-images", type=int, default=32)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--cache")
    ap.add_argument("--model", default=str(CKPT))
    ap.add_argument("--out", default="out/hard_reset")
    ap.add_argument("--encoding", choices=INPUT_ENCODINGS, default="current",
                    help="input as a constant current or Poisson spikes (Sengupta et al.)")
    ap.add_argument("--junctions", choices=JUNCTION_RULES, default="max",
                    help="residual joins: the skip source's threshold, or spike-norm's max")
    ap.add_argument("--method", default="hard_reset", choices=sorted(RATE_METHODS))
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's)")
    ap.add_argument("--bias-scale", type=float, default=1.0,
                    help="diagnosis: scale every bias of the captured graph (ANN included)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    xs, ys, cal = images(args)
    model = load_cifar_resnet(args.model)
    graph = capture(model, xs[:2])
    scale_biases(graph, args.bias_scale)
    with torch.no_grad():
        ann = graph.forward(xs.double(), quantized=False)[graph.output].argmax(1)
    t0 = time.time()
    lam = spike_norm_thresholds(graph, cal.to(device), args.norm_steps, args.method,
                                device=device, progress=True, encoding=args.encoding,
                                junctions=args.junctions)
    print(f"spike-norm: {len(cal)} images x {args.norm_steps} steps, {time.time() - t0:.0f} s",
          flush=True)
    net = RateNetwork(graph, lam, args.method, device=device, encoding=args.encoding)
    ok, agree, layers = score(net, graph, lam, xs, ys, ann, args.steps, args.batch)
    result = {"images": len(xs), "seed": 0, "ann_correct": int((ann == ys).sum()),
              "method": args.method, "correct": ok, "agreement_with_ann": agree,
              "encoding": args.encoding, "junctions": args.junctions, "bias_scale": args.bias_scale,
              "norm_steps": args.norm_steps, "norm_images": len(cal), "thresholds": lam,
              "layers_first_batch": layers, "load": os.getloadavg(),
              "seconds": round(time.time() - t0, 1)}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "hard_reset.json").write_text(json.dumps(result, indent=1))
    print(json.dumps({k: v for k, v in result.items() if k != "thresholds"}))


if __name__ == "__main__":
    main()
