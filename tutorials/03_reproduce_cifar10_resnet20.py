"""Tutorial 3: reproduce the paper's CIFAR-10 ResNet-20 row with the shared checkpoint.

Uses the pretrained ResNet-20 of akamaster/pytorch_resnet_cifar10 and the CIFAR-10 test subset
that the project keeps in ``../shared`` (see its README): ANN vs iLIF SNN top-1 and agreement at
T = 4, 8, 16 with synaptic operations, optionally next to the rate-coded baselines. Without
``../shared`` (a user's machine) it says so and exits cleanly.

The same as the command line::

    spikeconverter evaluate cifar_resnet20 \\
        -w ../shared/models/cifar10-resnet-akamaster/resnet20-12fca82f.th \\
        -d ../shared/data/cifar10/test --calibration ../shared/data/cifar10/train \\
        --normalize imagenet -T 4 8 16 -o out/resnet20

Run ``python tutorials/03_reproduce_cifar10_resnet20.py`` (``--smoke``: 32 images, T = 8).
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from spikeconverter.data import calibration_batch, load_dataset, make_loader, resolve_normalization
from spikeconverter.evaluation import COLUMNS, evaluate, write_report
from spikeconverter.modelspec import load_model
from spikeconverter.reporting import format_table

SHARED = Path(__file__).resolve().parents[1] / ".." / "shared"
CHECKPOINT = SHARED / "models" / "cifar10-resnet-akamaster" / "resnet20-12fca82f.th"
TEST, TRAIN = SHARED / "data" / "cifar10" / "test", SHARED / "data" / "cifar10" / "train"


def main(argv: list[str] | None = None) -> dict | None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--smoke", action="store_true",
                    default=bool(os.environ.get("SPIKECONVERTER_SMOKE")))
    ap.add_argument("--baselines", nargs="*", default=[],
                    help="rate baselines to add (hard_reset soft_reset threshold_shift; slow)")
    ap.add_argument("--out", default="out/tutorial_resnet20")
    args = ap.parse_args(argv)
    missing = [p for p in (CHECKPOINT, TEST, TRAIN) if not p.exists()]
    if missing:
        print(f"skipping: needs the project's shared checkpoint and data ({missing[0]} is absent)")
        return None

    norm = resolve_normalization("imagenet")  # what the akamaster checkpoints were trained with
    model = load_model("cifar_resnet20", CHECKPOINT)
    test = load_dataset(TEST, normalization=norm, limit=32 if args.smoke else None)
    calib = calibration_batch(load_dataset(TRAIN, normalization=norm), 64 if args.smoke else 256)
    report = evaluate(model, make_loader(test, 128), calib,
                      T_values=(8,) if args.smoke else (4, 8, 16), baselines=args.baselines,
                      baseline_steps=(32, 64) if args.smoke else (32, 64, 128, 256, 512, 1024,
                                                                    2048),
                      progress=not args.smoke, log=print)
    files = write_report(report, args.out, title="CIFAR-10 ResNet-20")
    print(f"ANN top-1 {report.ann['top1']:.2f}% on {report.ann['images']} images")
    print(format_table(report.rows, COLUMNS))
    print("wrote " + ", ".join(str(p) for p in files.values()))
    return {"ann": report.ann, "rows": report.rows}


if __name__ == "__main__":
    main()
