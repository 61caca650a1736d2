"""Train the demo's small CNN on scikit-learn's digits and write the weights the package ships.

How ``src/spikeconverter/models/small_cnn_digits.pt`` was made; see
:func:`spikeconverter.demo.train_demo_weights` for the data and settings (they are saved in the
file's ``meta`` too). Deterministic on the CPU for a given torch version.

Run: ``python benchmarks/train_demo_weights.py [-o PATH] [--epochs 30]``
"""

from __future__ import annotations

import argparse
from pathlib import Path

from spikeconverter.demo import DEMO_TRAINING, DEMO_WEIGHTS, train_demo_weights

DEFAULT_OUT = (Path(__file__).resolve().parents[1] / "src" / "spikeconverter" / "models"
               / DEMO_WEIGHTS)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-o", "--output", type=Path, default=DEFAULT_OUT,
                    help=f"weights file to write (default: {DEFAULT_OUT})")
    for name, value in DEMO_TRAINING.items():
        ap.add_argument(f"--{name.replace('_', '-')}", type=type(value), default=value,
                        help=f"(default: {value})")
    args = ap.parse_args()
    training = {name: getattr(args, name) for name in DEMO_TRAINING}
    meta = train_demo_weights(args.output, **training)
    size_kb = args.output.stat().st_size / 1024
    print(f"wrote {args.output} ({size_kb:.0f} KB): {meta}")


if __name__ == "__main__":
    main()
