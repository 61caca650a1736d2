"""The hard-reset IF baseline where its paper's assumptions hold: a ResNet built as theirs.

Sengupta et al. (2019) convert ResNets trained without BatchNorm and without biases (dropout,
average pooling, a ReLU after each junction, plain convs before the residual blocks) and report
ResNet-20 on CIFAR-10 at 87.46 % after 2048 steps against 89.1 % for its ANN (-1.6 pt). This
trains a small net of that family (:class:`~spikeconverter.models.PaperResNet`: 2 plain convs,
one identity block per stage at 16/32/64 channels, 2x2 average pooling between stages) on the
shared CIFAR-10 training images (5,170, minutes on one CPU core), balances its thresholds with
spike-norm (``--norm-images`` training images x ``--norm-steps`` steps, Poisson input as in the
paper unless ``--encoding current``), and runs the hard-reset network on a seeded draw of
``--images`` of the 1,017 test images (the same draw as ``spikeconverter evaluate
--baseline-limit`` and ``benchmarks/hard_reset_resnet20.py``) up to 2048 steps, next to the ANN
on the same images, with the per-layer rate-vs-ANN table of the first batch. The question is
the paper's: does the SNN land within a few points of *its own* ANN? (The ANN is weak: a small
net trained briefly on 5k images; what matters is the gap.)

Run: ``python benchmarks/hard_reset_paper_net.py [--epochs 8] [--images 64] [--weights W]
[--cache out/images.pt] [--out out/paper_net]``; results in ``OUT/paper_net.json``, weights in
``OUT/weights.pt`` (``--weights`` reuses them and skips training).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from hard_reset_resnet20 import score  # the benchmark next to this one
from low_T import folder

from spikeconverter.baselines import (
    INPUT_ENCODINGS,
    RATE_METHODS,
    RateNetwork,
    spike_norm_thresholds,
)
from spikeconverter.converters.capture import capture
from spikeconverter.models import get_model


def load(split: str) -> tuple[torch.Tensor, torch.Tensor]:
    ds = folder(split)
    return torch.stack([ds[i][0] for i in range(len(ds))]), torch.tensor(ds.targets)


def augment(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Random horizontal flips and 4-pixel shifts (zero padding), per image."""
    flip = torch.rand(x.shape[0], generator=gen) < 0.5
    x = torch.where(flip.view(-1, 1, 1, 1), x.flip(3), x)
    pad = F.pad(x, (4, 4, 4, 4))
    dx, dy = torch.randint(0, 9, (2,), generator=gen).tolist()
    return pad[:, :, dy:dy + x.shape[2], dx:dx + x.shape[3]]


def train(model, x, y, epochs: int, seed: int = 0, lr: float = 2e-3):
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, lr, total_steps=epochs * -(-len(x) // 64))
    for ep in range(epochs):
        model.train()
        perm, t0, hits = torch.randperm(len(x), generator=gen), time.time(), 0
        for i in range(0, len(x), 64):
            idx = perm[i:i + 64]
            out = model(augment(x[idx], gen))
            loss = F.cross_entropy(out, y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            hits += int((out.argmax(1) == y[idx]).sum())
        print(f"epoch {ep + 1}/{epochs}: train acc {hits / len(x):.3f}, "
              f"{time.time() - t0:.0f} s", flush=True)
    return model.eval()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=8)
    ap.add_argument("--train-images", type=int, default=0, help="0: all 5,170")
    ap.add_argument("--images", type=int, default=64)
    ap.add_argument("--steps", type=int, nargs="+", default=[256, 512, 1024, 2048])
    ap.add_argument("--norm-steps", type=int, default=256)
    ap.add_argument("--norm-images", type=int, default=32)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--encoding", choices=INPUT_ENCODINGS, default="poisson")
    ap.add_argument("--method", default="hard_reset", choices=sorted(RATE_METHODS))
    ap.add_argument("--weights")
    ap.add_argument("--cache", help="test images as written by low_T.py --write-cache")
    ap.add_argument("--out", default="out/paper_net")
    args = ap.parse_args()
    torch.manual_seed(0)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    xt, yt = load("train")
    if args.train_images:  # a smoke run: a seeded subset
        keep = torch.randperm(len(xt), generator=torch.Generator().manual_seed(2))
        xt, yt = xt[keep[:args.train_images]], yt[keep[:args.train_images]]
    model = get_model("paper_resnet")
    t0 = time.time()
    if args.weights:
        model.load_state_dict(torch.load(args.weights))
        model.eval()
    else:
        train(model, xt, yt, args.epochs)
        torch.save(model.state_dict(), out / "weights.pt")
    train_s = time.time() - t0
    if args.cache:
        blob = torch.load(args.cache)
        xs, ys = blob["xs"], blob["ys"]
    else:
        xs, ys = load("test")
    with torch.no_grad():
        ann_all = torch.cat([model(xs[i:i + 256]).argmax(1) for i in range(0, len(xs), 256)])
    ann_all_ok = int((ann_all == ys).sum())
    pick = torch.randperm(len(xs), generator=torch.Generator().manual_seed(0))
    pick = pick[: args.images].sort().values
    xs, ys, ann = xs[pick], ys[pick], ann_all[pick]
    print(f"ANN: {ann_all_ok}/{len(ann_all)} test images, {int((ann == ys).sum())}/{len(xs)} "
          "on the draw", flush=True)
    graph = capture(model, xs[:2])
    cal = xt[torch.randperm(len(xt), generator=torch.Generator().manual_seed(1))]
    t1 = time.time()
    lam = spike_norm_thresholds(graph, cal[: args.norm_images], args.norm_steps, args.method,
                                progress=True, encoding=args.encoding)
    print(f"spike-norm: {args.norm_images} images x {args.norm_steps} steps, "
          f"{time.time() - t1:.0f} s", flush=True)
    net = RateNetwork(graph, lam, args.method, encoding=args.encoding)
    ok, agree, layers = score(net, graph, lam, xs, ys, ann, args.steps, args.batch)
    result = {"images": len(xs), "seed": 0, "ann_correct": int((ann == ys).sum()),
              "ann_correct_all_test": ann_all_ok, "test_images": len(ann_all),
              "method": args.method, "encoding": args.encoding, "correct": ok,
              "agreement_with_ann": agree, "epochs": args.epochs, "train_seconds": round(train_s),
              "norm_steps": args.norm_steps, "norm_images": args.norm_images,
              "thresholds": lam, "layers_first_batch": layers, "load": os.getloadavg(),
              "seconds": round(time.time() - t0, 1)}
    (out / "paper_net.json").write_text(json.dumps(result, indent=1))
    print(json.dumps({k: v for k, v in result.items()
                      if k not in ("thresholds", "layers_first_batch")}))


if __name__ == "__main__":
    main()
