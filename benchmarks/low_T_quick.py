"""Quick low-T probe: the *quantised ANN* of a converted network instead of its SNN simulation.

The SNN equals the quantised ANN (``Graph.forward(quantized=True)``) exactly (tests/converters:
float64 exactness after every correction), so its correct and agreement counts are the SNN's,
at a fraction of the cost of ``benchmarks/low_T.py`` (which simulates the spikes). Reads the
cache written by ``low_T.py --write-cache``; appends one JSON line per item to ``--out`` and
prints it, with the seconds the correction took.

Run: ``python benchmarks/low_T_quick.py --cache out/images.pt --nets resnet32 --T 4
--granularity channel --correction reconstruct --draws 0 [--steps 100] [--out FILE]``
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import time
from pathlib import Path

import torch
from low_T import CKPTS, MODELS

from spikeconverter.converters.calibrate import calibrate
from spikeconverter.converters.capture import capture
from spikeconverter.converters.correction import correct
from spikeconverter.models import load_cifar_resnet


def argmax(fn, xs: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return torch.cat([fn(xs[i:i + 256]).argmax(1) for i in range(0, len(xs), 256)])


def augment(x: torch.Tensor, copies: int, seed: int) -> torch.Tensor:
    """``x`` and ``copies`` augmented copies of it: random crops (4-pixel zero pad) and flips."""
    gen = torch.Generator().manual_seed(seed)
    out = [x]
    pad = torch.nn.functional.pad(x, (4, 4, 4, 4))
    h, w = x.shape[-2:]
    for _ in range(copies):
        dy, dx = torch.randint(0, 9, (2, len(x)), generator=gen)
        flip = torch.rand(len(x), generator=gen) < 0.5
        crops = torch.stack([pad[i, :, dy[i]:dy[i] + h, dx[i]:dx[i] + w] for i in range(len(x))])
        out.append(torch.where(flip[:, None, None, None], crops.flip(-1), crops))
    return torch.cat(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cache", required=True)
    ap.add_argument("--nets", nargs="+", default=["resnet20"], choices=list(CKPTS))
    ap.add_argument("--T", type=int, nargs="+", default=[4])
    ap.add_argument("--granularity", nargs="+", default=["layer"])
    ap.add_argument("--correction", default="reconstruct")
    ap.add_argument("--draws", type=int, nargs="+", default=[0])
    ap.add_argument("--steps", type=int, default=None, help="reconstruct_steps of correct()")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--flip", action="store_true", help="correct on the draw plus its mirrors")
    ap.add_argument("--out", default="out/low_T_quick.jsonl")
    ap.add_argument("--search-images", type=int, default=64)
    ap.add_argument("--shuffle", action="store_true",
                    help="seeded shuffle of the draw (its images are sorted by class): the "
                         "threshold search's first --search-images then span every class")
    ap.add_argument("--augment", type=int, default=0,
                    help="add this many randomly cropped and flipped copies of the draw")
    ap.add_argument("--max-images", type=int, default=1024, help="max_images of correct()")
    ap.add_argument("--block", default="{}", help="JSON overrides of correction.BLOCK")
    ap.add_argument("--network", default="{}",
                    help="JSON overrides of correction.NETWORK (the network-level step)")
    ap.add_argument("--save", default=None,
                    help="folder: pickle each corrected graph there (net_draw_T_granularity.pt)")
    args = ap.parse_args()
    from spikeconverter.converters import correction as corr
    corr.BLOCK.update(json.loads(args.block))
    corr.NETWORK.update(json.loads(args.network))
    torch.set_num_threads(args.threads)
    blob = torch.load(args.cache)
    xs, ys = blob["xs"], blob["ys"]
    for net in args.nets:
        model = load_cifar_resnet(Path(MODELS) / CKPTS[net]).eval()
        ann = argmax(model, xs)
        graph0 = capture(model, xs[:2])
        for d in args.draws:
            for T in args.T:
                for gr in args.granularity:
                    g = calibrate(copy.deepcopy(graph0), blob["draws"][d], T, mode="max",
                                  granularity=gr, progress=False)
                    t0 = time.time()
                    cal = blob["draws"][d]
                    if args.shuffle:
                        cal = cal[torch.randperm(len(cal), generator=torch.Generator()
                                                 .manual_seed(d))]
                    if args.augment:
                        cal = augment(cal, args.augment, d)
                    if args.flip:
                        cal = torch.cat([cal, cal.flip(-1)])
                    correct(g, cal, method=args.correction, reconstruct_steps=args.steps,
                            search_images=args.search_images,
                            max_images=args.max_images)
                    sec = time.time() - t0
                    if args.save:
                        Path(args.save).mkdir(parents=True, exist_ok=True)
                        torch.save(g, Path(args.save) / f"{net}_{d}_{T}_{gr}.pt")
                    pred = argmax(lambda x, g=g: g.forward(x)[g.output], xs)
                    row = {"net": net, "draw": d, "T": T, "granularity": gr,
                           "correction": args.correction, "steps": args.steps, "flip": args.flip,
                           "shuffle": args.shuffle, "augment": args.augment,
                           "search_images": args.search_images,
                           "calibration": len(cal), "max_images": args.max_images,
                           "cache": args.cache,
                           "block": args.block if args.correction == "block" else None,
                           "network": args.network if args.correction == "block" else None,
                           "correct": int((pred == ys).sum()), "agree": int((pred == ann).sum()),
                           "images": len(xs), "ann_correct": int((ann == ys).sum()),
                           "correction_seconds": round(sec, 1),
                           "load": round(os.getloadavg()[0], 1)}
                    print(json.dumps(row), flush=True)
                    with open(args.out, "a") as f:
                        f.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main()
