"""The hard-reset IF baseline on the shared CIFAR-10 ResNet-20, balanced as its paper does.

Sengupta et al. (2019) report ResNet-20 on CIFAR-10 at 87.46 % after 2048 steps with their
spike-norm threshold balancing. This runs the same recipe on our graph IR: thresholds from
:func:`~spikeconverter.baselines.spike_norm_thresholds` (``--norm-images`` calibration images of
../shared/data/cifar10/train, ``--norm-steps`` steps per layer), then the rate-coded hard-reset
network on a seeded draw of ``--images`` of the 1,017 test images (the same draw as
``spikeconverter evaluate --baseline-limit``), read out at every checkpoint up to 2048 steps,
next to the ANN on the same images. Progress is printed per batch; results go to
``OUT/hard_reset.json``.

Run: ``python benchmarks/hard_reset_resnet20.py [--images 256] [--steps 256 512 1024 2048]
[--norm-steps 256] [--norm-images 32] [--device cpu|cuda] [--cache images.pt] [--out DIR]``
(``--cache`` as written by ``benchmarks/low_T.py --write-cache``).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from spikeconverter.baselines import RateNetwork, spike_norm_thresholds
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
    args = ap.parse_args()
    device = torch.device(args.device)
    xs, ys, cal = images(args)
    model = load_cifar_resnet(args.model)
    with torch.no_grad():
        ann = model(xs).argmax(1)
    graph = capture(model, xs[:2])
    t0 = time.time()
    lam = spike_norm_thresholds(graph, cal.to(device), args.norm_steps, device=device,
                                progress=True)
    print(f"spike-norm: {len(cal)} images x {args.norm_steps} steps, {time.time() - t0:.0f} s",
          flush=True)
    net = RateNetwork(graph, lam, "hard_reset", device=device)
    ok = dict.fromkeys(args.steps, 0)
    for i in range(0, len(xs), args.batch):
        res = net.run(xs[i:i + args.batch], args.steps)
        for t in args.steps:
            ok[t] += int((res.logits[t].argmax(1) == ys[i:i + args.batch]).sum())
        print(f"{i + len(res.logits[args.steps[0]])}/{len(xs)} images: "
              + ", ".join(f"T={t} {ok[t]}" for t in args.steps), flush=True)
    result = {"images": len(xs), "ann_correct": int((ann == ys).sum()), "hard_reset_correct": ok,
              "norm_steps": args.norm_steps, "norm_images": len(cal), "thresholds": lam,
              "seconds": round(time.time() - t0, 1)}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "hard_reset.json").write_text(json.dumps(result, indent=1))
    print(json.dumps({k: v for k, v in result.items() if k != "thresholds"}))


if __name__ == "__main__":
    main()
