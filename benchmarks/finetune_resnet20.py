"""Fine-tuning the converted CIFAR-10 ResNet-20 at very low T: SNN top-1 before and after.

For each T the shared ResNet-20 (../shared/models) is converted (defaults of ``convert`` except
``--calibration-mode``, calibration on 256 training images), its spiking simulation is measured on
../shared/data/cifar10/test (1,017 images), it is fine-tuned with :func:`finetune` through the
spiking simulation on ../shared/data/cifar10/train (5,170 images, random crop + flip; the
paper's SGD settings unless overridden) and measured again. No validation split is used for
model selection: the final parameters are measured. Prints one table and the CPU time.

Run: ``python benchmarks/finetune_resnet20.py [--T 2 3 4] [--epochs 1] [--max-steps N]
[--lr 0.01] [--batch 64] [--optimizer sgd|adam] [--clip C] [--weight-decay 5e-4]
[--calibration-mode max|percentile|optimal] [--fixed-thresholds] [--threads 2]``

The issue-7 figures were measured with ``--calibration-mode optimal --lr 1e-3 --clip 1
--batch 32 --max-steps 30`` (the paper's lr 0.01 diverges on this BN-folded network).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
from torch.utils.data import DataLoader

from spikeconverter.converters import convert
from spikeconverter.models import load_cifar_resnet
from spikeconverter.training import evaluate, finetune

SHARED = Path(__file__).resolve().parents[1] / ".." / "shared"
CKPT = SHARED / "models" / "cifar10-resnet-akamaster" / "resnet20-12fca82f.th"
DATA = SHARED / "data" / "cifar10"
MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def datasets():
    from torchvision import datasets as tvd
    from torchvision import transforms as tr

    norm = [tr.ToTensor(), tr.Normalize(MEAN, STD)]
    train = tvd.ImageFolder(DATA / "train", tr.Compose(
        [tr.RandomCrop(32, padding=4), tr.RandomHorizontalFlip(), *norm]))
    plain = tvd.ImageFolder(DATA / "train", tr.Compose(norm))
    test = tvd.ImageFolder(DATA / "test", tr.Compose(norm))
    return train, plain, test


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--T", type=int, nargs="+", default=[2, 3, 4])
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--max-steps", type=int, default=None)
    ap.add_argument("--lr", type=float, default=0.01)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--cosine", action="store_true", help="cosine learning-rate decay")
    ap.add_argument("--optimizer", choices=("sgd", "adam"), default="sgd")
    ap.add_argument("--clip", type=float, default=None, help="gradient-norm clipping")
    ap.add_argument("--weight-decay", type=float, default=5e-4)
    ap.add_argument("--calibration-mode", choices=("max", "percentile", "optimal"),
                    default="max")
    ap.add_argument("--fixed-thresholds", action="store_true", help="do not train thresholds")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--progress", action="store_true")
    args = ap.parse_args()
    if not CKPT.is_file() or not (DATA / "train").is_dir():
        raise SystemExit(f"needs the shared checkpoint {CKPT} and data {DATA}")
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    train, plain, test = datasets()
    test_loader = DataLoader(test, batch_size=256)
    model = load_cifar_resnet(CKPT).eval()
    ann = evaluate(model, test_loader)
    cal = torch.stack([plain[i][0] for i in torch.randperm(len(plain))[:256].tolist()])
    print(f"ResNet-20, ANN top-1 on cifar10/test ({len(test)} images): {100 * ann:.2f} %")
    print(f"fine-tuning on cifar10/train ({len(train)} images), epochs={args.epochs}, "
          f"max_steps={args.max_steps}, lr={args.lr}, batch={args.batch}, "
          f"cosine={args.cosine}, optimizer={args.optimizer}, clip={args.clip}, "
          f"weight_decay={args.weight_decay}, calibration_mode={args.calibration_mode}, "
          f"train_thresholds={not args.fixed_thresholds}, threads={args.threads}", flush=True)
    rows = []
    for T in args.T:
        net = convert(model, cal, T=T, progress=False, calibration_mode=args.calibration_mode)
        before = evaluate(net, test_loader)
        loader = DataLoader(train, batch_size=args.batch, shuffle=True,
                            generator=torch.Generator().manual_seed(T))
        t0 = time.process_time()
        hist = finetune(net, loader, epochs=args.epochs, lr=args.lr, max_steps=args.max_steps,
                        cosine=args.cosine, progress=args.progress, optimizer=args.optimizer,
                        clip_grad_norm=args.clip, weight_decay=args.weight_decay,
                        train_thresholds=not args.fixed_thresholds)
        cpu = time.process_time() - t0
        after = evaluate(net, test_loader)
        rows.append((T, before, after, hist["steps"], hist["seconds"], cpu))
        print(f"T={T}: SNN {100 * before:.2f} % -> {100 * after:.2f} % after {hist['steps']} "
              f"steps ({hist['seconds']:.0f} s wall, {cpu:.0f} s CPU)", flush=True)
    print(f"\n{'T':>2} {'SNN before':>10} {'SNN after':>10} {'ANN':>6} {'gap after':>9} "
          f"{'steps':>5} {'wall s':>7} {'CPU s':>7}")
    for T, b, a, n, wall, cpu in rows:
        print(f"{T:>2} {100 * b:>9.2f}% {100 * a:>9.2f}% {100 * ann:>5.2f}% "
              f"{100 * (ann - a):>8.2f}p {n:>5} {wall:>7.0f} {cpu:>7.0f}")


if __name__ == "__main__":
    main()
