"""Tutorial 1: convert a torchvision model and run it in Norse and in the Lava simulator.

Any torchvision classifier that ``torch.fx`` can trace converts. This script builds
``torchvision.models.resnet18`` for 10 classes (weights from ``--weights`` if you have a trained
state_dict; random otherwise: nothing is downloaded), converts it with calibration images, and
checks the spiking network against the ANN and against the quantised ANN it must equal. Then it
runs a few images in Lava (float and fixed point) -- when the Lava backend is installed.

Images: ``--data`` (an ImageFolder tree, e.g. ../shared/data/cifar10/test) or, without it,
random images of the right shape.

Run ``python tutorials/01_convert_torchvision_and_run_in_lava.py`` (``--smoke`` for seconds).
"""

from __future__ import annotations

import argparse
import os

import numpy as np
import torch

import spikeconverter as sc
from spikeconverter.data import calibration_batch, load_dataset, resolve_normalization
from spikeconverter.modelspec import load_model


def main(argv: list[str] | None = None) -> dict[str, float]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="torchvision:resnet18")
    ap.add_argument("--weights", help="trained state_dict for the model (optional)")
    ap.add_argument("--data", help="ImageFolder tree of 32x32 images (optional)")
    ap.add_argument("-T", type=int, default=8)
    ap.add_argument("--smoke", action="store_true",
                    default=bool(os.environ.get("SPIKECONVERTER_SMOKE")))
    args = ap.parse_args(argv)
    n_cal, n_test = (8, 4) if args.smoke else (128, 64)
    torch.manual_seed(0)

    model = load_model(args.model, args.weights, num_classes=10)
    if args.data:
        ds = load_dataset(args.data, normalization=resolve_normalization("imagenet"))
        calib = calibration_batch(ds, n_cal, seed=1)
        x = calibration_batch(ds, n_test, seed=2)
    else:
        calib, x = torch.randn(n_cal, 3, 32, 32), torch.randn(n_test, 3, 32, 32)

    # 1. convert: capture with torch.fx, fold BN, calibrate thresholds, schedule the windows
    net = sc.convert(model, calib, T=args.T, progress=not args.smoke)
    print(f"{args.model}: {len(net.graph.populations)} populations, T={args.T}, "
          f"latency {net.schedule.latency_steps} steps")

    # 2. run in Norse and compare with the ANN
    with torch.no_grad():
        ann = model(x)
        snn = net(x)
    agree = 100.0 * float((ann.argmax(1) == snn.argmax(1)).float().mean())
    print(f"Norse: top-1 agreement with the ANN {agree:.1f}%; "
          f"{net.stats['synaptic_ops_per_sample']:.3g} synaptic ops per image")
    # The spiking network *is* the quantised ANN. In float64 that holds to the last bit; in
    # float32 a value that lands on a code boundary may round the other way and the one-LSB
    # difference travels on, so the exactness check uses float64.
    net64 = sc.convert(model, calib, T=args.T, dtype=torch.float64, progress=False)
    with torch.no_grad():
        snn64 = net64(x.double())
        quantised = net64.graph.forward(x.double(), quantized=True)[net64.graph.output]
    gap = float((snn64 - quantised).abs().max())
    print(f"float64: max |SNN - quantised ANN| = {gap:.1e}")

    # 3. the same network in Lava (float and bit-accurate fixed point)
    try:
        lnet = sc.convert(model, calib, T=args.T, backend="lava", progress=False)
    except NotImplementedError as e:
        print(f"Lava: not available in this installation ({e})")
        return {"agreement": agree, "max_gap": gap}
    for fixed in (False, True):
        logits = np.asarray(lnet.run(x[:2], fixed_point=fixed))
        print(f"Lava ({'fixed' if fixed else 'float'}): predictions {logits.argmax(1).tolist()}"
              f", Norse {snn[:2].argmax(1).tolist()}")
    return {"agreement": agree, "max_gap": gap}


if __name__ == "__main__":
    main()
