"""Low-T conversion without training: layer vs channel thresholds, with and without correction.

For each shared CIFAR-10 ResNet (../shared/models), calibration draw (256 training images of
../shared/data/cifar10/train, seeded draw ``d``), T, threshold granularity and correction, the
network is converted (capture -> calibrate -> optional post-training correction -> Norse
``SpikingNetwork``, fused mode) and its spiking simulation is run on all 1,017 test images of
../shared/data/cifar10/test: correct images and argmax agreement with the ANN. Every finished
item is appended at once to ``OUT/low_T.csv`` and ``OUT/low_T.json`` and printed; items already
in the CSV are skipped, so an interrupted run resumes.

Run: ``python benchmarks/low_T.py [--nets resnet20 resnet32] [--T 2 3 4 6 8]
[--granularity layer channel] [--correction none both] [--calibration-mode max]
[--draws 0 1 2] [--device cpu|cuda] [--out out/low_T] [--threads N]
[--cache images.pt] [--models DIR] [--table]``

``--table`` prints the markdown tables of what ``OUT/low_T.csv`` holds (a cell: correct
(agreement) on the first draw; with more draws, the min-max of both over them) and exits.

``--write-cache images.pt`` stores the test images, labels and calibration draws in one file and
exits; ``--cache images.pt`` reads them from it instead of the image folders (for a machine that
has no copy of ../shared/data).

Only torch, torchvision, norse (through the Norse backend) and the package core are imported:
no Lava, so the grid runs on a GPU machine without it (``--device cuda``).
"""

from __future__ import annotations

import argparse
import copy
import csv
import inspect
import json
import sys
import time
from pathlib import Path

import torch

from spikeconverter.converters.calibrate import calibrate
from spikeconverter.converters.capture import capture
from spikeconverter.converters.correction import correct
from spikeconverter.converters.norse_backend import SpikingNetwork
from spikeconverter.converters.schedule import compute_schedule
from spikeconverter.data import calibration_batch
from spikeconverter.models import load_cifar_resnet

SHARED = Path(__file__).resolve().parents[1] / ".." / "shared"
MODELS = SHARED / "models" / "cifar10-resnet-akamaster"
CKPTS = {"resnet20": "resnet20-12fca82f.th", "resnet32": "resnet32-d509ac18.th"}
DATA = SHARED / "data" / "cifar10"
MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
FIELDS = ["net", "draw", "T", "calibration_mode", "granularity", "correction", "search_images",
          "correct",
          "agree", "images", "ann_correct", "latency_steps", "seconds", "device"]


def folder(split: str):
    from torchvision import datasets, transforms  # only here: --cache runs need no torchvision

    return datasets.ImageFolder(str(DATA / split), transforms.Compose(
        [transforms.ToTensor(), transforms.Normalize(MEAN, STD)]))


def predict(fn, xs: torch.Tensor, device: torch.device, batch: int = 256) -> torch.Tensor:
    with torch.no_grad():
        return torch.cat([fn(xs[i:i + batch].to(device)).argmax(1).cpu()
                          for i in range(0, len(xs), batch)])


def key(row: dict) -> tuple:
    return tuple(str(row[k]) for k in FIELDS[:7])


def done_keys(path: Path) -> set[tuple]:
    if not path.is_file():
        return set()
    with path.open() as f:
        rows = list(csv.DictReader(f))
    if rows and "search_images" not in rows[0]:  # written before the column: 64 images searched
        for r in rows:
            r["search_images"] = 0 if r["correction"] in ("none", "bias") else 64
        with path.open("w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=FIELDS)
            w.writeheader()
            w.writerows(rows)
    return {key(r) for r in rows}


def searched(correction: str, n: int) -> int:
    """Images the threshold search used (0: the correction searches none)."""
    return 0 if correction in ("none", "bias") else n


def append(out: Path, row: dict) -> None:
    csv_path, json_path = out / "low_T.csv", out / "low_T.json"
    new = not csv_path.is_file()
    with csv_path.open("a", newline="") as f:
        w = csv.DictWriter(f, fieldnames=FIELDS)
        if new:
            w.writeheader()
        w.writerow(row)
    rows = json.loads(json_path.read_text()) if json_path.is_file() else []
    rows.append(row)
    tmp = json_path.with_suffix(".tmp")
    tmp.write_text(json.dumps(rows, indent=1))
    tmp.replace(json_path)


def load_images(args) -> tuple[torch.Tensor, torch.Tensor, dict[int, torch.Tensor]]:
    """Test images, labels and the calibration draws (from --cache or the image folders)."""
    if args.cache and not args.write_cache:
        blob = torch.load(args.cache)
        if blob["calibration"] != args.calibration:
            sys.exit(f"{args.cache} holds draws of {blob['calibration']} calibration images")
        return blob["xs"], blob["ys"], {d: blob["draws"][d] for d in args.draws}
    if not DATA.is_dir():
        sys.exit(f"needs the shared data {DATA} (or --cache)")
    test, train = folder("test"), folder("train")
    xs = torch.stack([test[i][0] for i in range(len(test))])
    ys = torch.tensor(test.targets)
    draws = {d: calibration_batch(train, args.calibration, seed=d) for d in args.draws}
    return xs, ys, draws


def table(csv_path: Path) -> str:
    """The measured cells of ``csv_path`` as one markdown table per net.

    A cell is ``correct (agreement)`` on the lowest draw measured, then, when more draws are,
    the min-max of both over all of them and their count.
    """
    with csv_path.open() as f:
        rows = list(csv.DictReader(f))
    configs = sorted({(r["granularity"], r["correction"], int(r["search_images"])) for r in rows},
                     key=lambda c: (c[0] != "layer", c[1] != "none", c[1], c[2]))
    out = []
    for net in sorted({r["net"] for r in rows}):
        mine = [r for r in rows if r["net"] == net]
        out += [f"{net} (ANN {mine[0]['ann_correct']}/{mine[0]['images']} correct)", "",
                "| T | " + " | ".join(f"{g} + {c} ({n})" if n else g for g, c, n in configs)
                + " |", "|---" * (len(configs) + 1) + "|"]
        for T in sorted({int(r["T"]) for r in mine}):
            cells = [_cell([r for r in mine if int(r["T"]) == T
                            and (r["granularity"], r["correction"], int(r["search_images"]))
                            == c]) for c in configs]
            out.append(f"| {T} | " + " | ".join(cells) + " |")
        out.append("")
    return "\n".join(out)


def _cell(rows: list[dict]) -> str:
    if not rows:
        return ""
    rows = sorted(rows, key=lambda r: int(r["draw"]))
    text = f"{rows[0]['correct']} ({rows[0]['agree']})"
    if len(rows) > 1:
        ok, agree = ([int(r[k]) for r in rows] for k in ("correct", "agree"))
        text += f"; {min(ok)}-{max(ok)} ({min(agree)}-{max(agree)}) over {len(ok)} draws"
    return text


def convert_one(graph0, cal, T, args, granularity, correction, device):
    g = copy.deepcopy(graph0)
    calibrate(g, cal, T, mode=args.calibration_mode, granularity=granularity, progress=False)
    correct(g, cal, method=correction, device=device, search_images=args.search_images)
    return SpikingNetwork(g, compute_schedule(g, hop_latency=0), mode="fused").to(device)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--nets", nargs="+", default=["resnet20", "resnet32"], choices=list(CKPTS))
    ap.add_argument("--T", type=int, nargs="+", default=[2, 3, 4, 6, 8])
    ap.add_argument("--granularity", nargs="+", default=["layer", "channel"])
    ap.add_argument("--correction", nargs="+", default=["none", "both"])
    ap.add_argument("--calibration-mode", default="max")
    ap.add_argument("--draws", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--calibration", type=int, default=256)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    ap.add_argument("--out", default="out/low_T")
    ap.add_argument("--cache", help="read test images and calibration draws from this file")
    ap.add_argument("--write-cache", action="store_true", help="write --cache and exit")
    ap.add_argument("--models", default=str(MODELS), help="folder of the checkpoints")
    ap.add_argument("--limit", type=int, default=None, help="first N test images (smoke runs)")
    ap.add_argument("--search-images", type=int,
                    default=inspect.signature(correct).parameters["search_images"].default,
                    help="images the correction's threshold search measures (default: correct's)")
    ap.add_argument("--table", action="store_true",
                    help="print the markdown tables of OUT/low_T.csv and exit")
    args = ap.parse_args()
    if args.table:
        print(table(Path(args.out) / "low_T.csv"))
        return
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    xs, ys, cals = load_images(args)
    xs, ys = xs[: args.limit], ys[: args.limit]
    if args.write_cache:
        torch.save({"xs": xs, "ys": ys, "draws": cals, "calibration": args.calibration},
                   args.cache)
        return
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    done = done_keys(out / "low_T.csv")
    cals = {d: c.to(device) for d, c in cals.items()}
    # draw-major: a partial run has every setting on the first draw
    items = [(n, d, T, gr, c) for d in args.draws for n in args.nets for T in args.T
             for gr in args.granularity for c in args.correction]
    print(f"{len(items)} items ({len(done)} done before), {len(xs)} test images, "
          f"{args.calibration} calibration images per draw, device {device}", flush=True)
    nets = {}
    for name in args.nets:
        model = load_cifar_resnet(Path(args.models) / CKPTS[name]).to(device)
        ann = predict(model, xs, device)
        nets[name] = (capture(model.cpu(), xs[:2]), ann, int((ann == ys).sum()))
        print(f"{name}: ANN {nets[name][2]}/{len(xs)}", flush=True)
    for i, (n, d, T, gr, c) in enumerate(items, 1):
        row = {"net": n, "draw": d, "T": T, "calibration_mode": args.calibration_mode,
               "granularity": gr, "correction": c,
               "search_images": searched(c, min(args.search_images, args.calibration))}
        if key(row) in done:
            continue
        graph0, ann, ann_ok = nets[n]
        t0 = time.time()
        snn = convert_one(graph0, cals[d], T, args, gr, c, device)
        pred = predict(snn, xs, device)
        row.update(correct=int((pred == ys).sum()), agree=int((pred == ann).sum()),
                   images=len(xs), ann_correct=ann_ok, latency_steps=snn.schedule.latency_steps,
                   seconds=round(time.time() - t0, 1), device=str(device))
        append(out, row)
        print(f"[{i}/{len(items)}] {n} draw {d} T={T} {gr:<7} correction {c:<9} "
              f"correct {row['correct']} (ANN {ann_ok}) agree {row['agree']} "
              f"{row['seconds']} s", flush=True)


if __name__ == "__main__":
    main()
