"""One grammar for every subcommand, and a ``--help`` that imports neither torch, Norse nor Lava."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

import pytest

from spikeconverter.cliparser import build_parser

SRC = str(Path(__file__).resolve().parents[1] / "src")
HEAVY = ("torch", "norse", "lava", "numpy", "torchvision")
#: subcommands that read images, and those where networks run
READS_DATA = ("convert", "evaluate", "run-lava", "export", "finetune", "demo")
RUNS = ("convert", "evaluate", "run-lava", "export", "finetune", "demo", "check")


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


def _options(p: argparse.ArgumentParser) -> set[str]:
    return {s for a in p._actions for s in a.option_strings}


def _imported_by(*argv: str) -> set[str]:
    """Top-level packages imported by ``python -m spikeconverter ARGV`` (``-X importtime``)."""
    r = subprocess.run([sys.executable, "-X", "importtime", "-m", "spikeconverter", *argv],
                       capture_output=True, text=True, env={**os.environ, "PYTHONPATH": SRC},
                       timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    names = [line.rpartition("|")[2].strip() for line in r.stderr.splitlines()
             if line.startswith("import time:") and "|" in line]
    assert "spikeconverter.cliparser" in names  # the parser module was read
    return {n.split(".")[0] for n in names}


@pytest.mark.parametrize("argv", [("--help",), ("evaluate", "--help"), ("finetune", "--help"),
                                  ("run-lava", "--help"), ("demo", "--help")])
def test_help_imports_no_heavy_package(argv):
    heavy = _imported_by(*argv) & set(HEAVY)
    assert not heavy, f"spikeconverter {' '.join(argv)} imported {sorted(heavy)}"


def test_every_subcommand_speaks_one_grammar():
    subs = _subparsers(build_parser())
    for name in READS_DATA:
        assert "--limit" in _options(subs[name]), name
    for name in RUNS:
        assert "--device" in _options(subs[name]), name
    for name in ("convert", "evaluate", "run-lava", "export", "finetune"):
        opts = _options(subs[name])
        assert {"--workers", "-d", "--normalize", "--mean", "--std"} <= opts, name
    for name, p in subs.items():
        if name != "check":
            assert {"-o", "--output", "--overwrite"} <= _options(p), name


def test_finetune_defaults_are_the_apis():
    from spikeconverter.training import FinetuneConfig

    args = build_parser().parse_args(["finetune", "n.snn", "-d", "x", "-o", "y"])
    api = FinetuneConfig()
    for key in ("epochs", "lr", "momentum", "weight_decay", "batch_size", "clip_grad_norm",
                "surrogate", "alpha", "seed", "optimizer", "warmup", "threshold_lr_scale",
                "weight_lr_scale"):
        assert getattr(args, key) == getattr(api, key), key


def test_demo_keeps_its_out_spelling():
    assert build_parser().parse_args(["demo", "--out", "d"]).output == "d"


def test_demo_takes_limit_and_device(tmp_path):
    import torch

    from spikeconverter.demo import run_demo

    lines: list[str] = []
    kw = dict(T_values=(2,), rate_steps=(2,), lava_samples=0, limit=20, log=lines.append)
    res = run_demo(tmp_path, device="cpu", **kw)
    assert any("/20)" in s for s in lines) and len(res["rows"]) == 2
    if torch.cuda.is_available():
        on_gpu = run_demo(tmp_path / "gpu", device="cuda", **kw)
        assert len(on_gpu["rows"]) == 2  # float32 on another device: not bit-equal
    else:
        with pytest.raises(ValueError, match="CUDA is not available"):
            run_demo(tmp_path, device="cuda", **kw)


def test_run_lava_refuses_any_device_but_the_cpu(tmp_path, capsys):
    from spikeconverter.cli import main

    (tmp_path / "net.snn").write_text("never read")
    assert main(["run-lava", str(tmp_path / "net.snn"), "-d", str(tmp_path),
                 "--device", "meta"]) == 2
    assert "Lava on the CPU only" in capsys.readouterr().err


def test_the_help_names_the_calibration_defaults_that_run():
    # the parser keeps these numbers literal so that --help imports no torch; they must follow
    # the network core's defaults when those change
    from spikeconverter.converters import correction

    convert = _subparsers(build_parser())["convert"]
    helps = {a.dest: a.help for a in convert._actions}
    draw = helps["calibration_images"]
    assert f"default: {correction.DRAW};" in draw
    assert f"{correction.WIDE_DRAW} for 'convert -T {correction.WIDE_DRAW_T}'" in draw
    for dest in ("threshold_granularity", "correction"):
        assert f"T = {correction.WIDE_DRAW_T} with {correction.WIDE_DRAW} calibration" in \
            helps[dest], dest
    assert f"T <= {correction.CHANNEL_T} " in helps["threshold_granularity"]
    assert f"'block' for T = 2 and {correction.BLOCK_T} " in helps["correction"]
    assert f"'both' up to T = {correction.LOW_T}," in helps["correction"]
