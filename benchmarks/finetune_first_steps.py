r"""The first optimiser steps of fine-tuning a converted ResNet-20: how far each recipe knocks it.

Loads a converted network (a file written by ``convert(...).save`` or by
``benchmarks/finetune_resnet20.py --cache``), takes the first ``--steps`` shuffled, augmented
batches of 64 of ../shared/data/cifar10/train (less the held-out part of ``--seed``), and for
each recipe ``OPT:LR[:WARMUP[:THRESHOLD_LR_SCALE]]`` (``adam`` = AdamW without decay, ``sgd`` =
momentum 0.9; distillation from the ANN, weight 0.9, temperature 4; gradient norm clipped to 1)
prints after steps 1, 5 and 20: the batch loss, the gradient norm, the spiking network's
accuracy on the first 256 held-out validation images, and the relative change
``||p - p0|| / ||p0||`` of the weights, biases and thresholds.

Run: ``python benchmarks/finetune_first_steps.py NET.snn SEED adam:1e-3 adam:1e-4 sgd:1e-2``

Measured (issue 15; seed 1, T=3, per-layer thresholds + correction, 909/1017 test; 2 threads,
load 7-10 on the shared 2-core machine; validation 94.1 % before training)::

    recipe      step  loss   grad norm  val     rel. change w / b / theta
    adam:1e-3     1   4.59    52.4      36.7 %  0.0105 / 0.0019 / 0.0006
    adam:1e-3     5  15.6    372        59.4 %  0.0205 / 0.0032 / 0.0018
    adam:1e-4     1   4.59    52.4      91.8 %  0.0010 / 0.0002 / 0.0001
    adam:1e-4     5   2.02    30.8      87.9 %  0.0032 / 0.0006 / 0.0003
    adam:1e-4    20   1.25    22.1      93.0 %  0.0065 / 0.0010 / 0.0008
    sgd:1e-2      1   4.59    52.4      91.8 %  0.0002 / 0.0001 / 0.0000
    sgd:1e-2      5   2.25    31.2      89.5 %  0.0019 / 0.0010 / 0.0005

Adam's first step moves every parameter by ``lr`` (its moment estimates are one batch's:
``m / sqrt(v) = sign(g)``); at 1e-3 that is a 1 % change of every weight at once, and the
network falls to 37 % and is at 59 % five steps later (loss 4.6 -> 30 on the next batch;
63 % after 10 steps in a run that also measured step 10).
The gradient is concentrated in the first convolution of each block of the last stage (60 %
of its squared norm in three 64-channel layers), whose folded weights are the smallest.
"""

from __future__ import annotations

import copy
import math
import sys
import time

import torch
from finetune_resnet20 import CKPT, datasets
from torch.utils.data import DataLoader, Subset

from spikeconverter.converters import load
from spikeconverter.models import load_cifar_resnet
from spikeconverter.training import evaluate
from spikeconverter.training.finetune import lr_factor
from spikeconverter.training.holdout import holdout_indices
from spikeconverter.training.losses import distillation_loss
from spikeconverter.training.trainable import TrainableSpikingNetwork

CHECK = (1, 5, 20)
KINDS = (("w", "_w_"), ("b", "_b_"), ("theta", "_theta_"))


def optimizer(tn: TrainableSpikingNetwork, name: str, lr: float, scale: float):
    g = tn.parameter_groups()
    groups = [{"params": g["weights"] + g["biases"], "base": lr},
              {"params": g["thresholds"], "base": lr * scale}]
    if name == "adam":
        return torch.optim.AdamW(groups, lr=lr, weight_decay=0.0)
    return torch.optim.SGD(groups, lr=lr, momentum=0.9)


def relative_change(tn: TrainableSpikingNetwork, init: dict) -> dict[str, float]:
    out = {}
    with torch.no_grad():
        for kind, prefix in KINDS:
            keys = [k for k, _ in tn.named_parameters() if k.startswith(prefix)]
            num = sum(float((tn.get_parameter(k) - init[k]).norm() ** 2) for k in keys)
            out[kind] = math.sqrt(num / sum(float(init[k].norm() ** 2) for k in keys))
    return out


def run(recipe: str, net, model, batches, val) -> None:
    name, lr, *rest = recipe.split(":")
    warmup = int(rest[0]) if rest else 0
    scale = float(rest[1]) if len(rest) > 1 else 1.0
    tn = TrainableSpikingNetwork(copy.deepcopy(net.graph), net.schedule)
    opt = optimizer(tn, name, float(lr), scale)
    init = {k: p.detach().clone() for k, p in tn.named_parameters()}
    t0 = time.perf_counter()
    for s, (x, y) in enumerate(batches, 1):
        for group in opt.param_groups:
            group["lr"] = group["base"] * lr_factor(s - 1, warmup)
        tn.train()
        opt.zero_grad()
        with torch.no_grad():
            teacher = model(x)
        loss = distillation_loss(tn(x), teacher, y, temperature=4.0, weight=0.9)
        loss.backward()
        norm = float(torch.nn.utils.clip_grad_norm_(tn.parameters(), 1.0))
        opt.step()
        tn.project_()
        if s in CHECK:
            tn.eval()
            rel = relative_change(tn, init)
            print(f"{recipe} step {s}: loss {loss.item():.3f} grad norm {norm:.1f} val "
                  f"{100 * evaluate(tn, val):.1f} % rel w {rel['w']:.4f} b {rel['b']:.4f} "
                  f"theta {rel['theta']:.4f} ({time.perf_counter() - t0:.0f} s)", flush=True)


def main() -> None:
    path, seed, recipes = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
    torch.set_num_threads(2)
    train, plain, _ = datasets()
    model = load_cifar_resnet(CKPT).eval()
    tr_idx, va_idx = holdout_indices(len(plain), 0.1, seed)
    val = DataLoader(Subset(plain, va_idx[:256]), batch_size=256)
    torch.manual_seed(seed)
    loader = DataLoader(Subset(train, tr_idx), batch_size=64, shuffle=True,
                        generator=torch.Generator().manual_seed(seed))
    batches = [b for _, b in zip(range(max(CHECK)), loader, strict=False)]
    net = load(path)
    print(f"{path}: val {100 * evaluate(net, val):.1f} % before training", flush=True)
    for recipe in recipes:
        run(recipe, net, model, batches, val)


if __name__ == "__main__":
    main()
