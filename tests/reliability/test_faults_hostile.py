"""Hostile network files: out-of-range values and oversized shapes are refused by ``load``
with a ValueError before anything is allocated, and by the CLI with exit status 2."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest
import torch
import torch.nn as nn

import spikeconverter as sc
from spikeconverter.cli import main


def _model():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Flatten(), nn.Linear(64, 3)).eval()


@pytest.fixture(scope="module")
def good(tmp_path_factory):
    path = tmp_path_factory.mktemp("hostile") / "good.snn"
    sc.convert(_model(), torch.rand(16, 1, 8, 8), T=4, progress=False).save(path)
    return path


def test_trains_too_long_for_the_saved_dtype_are_refused(tmp_path):
    path = tmp_path / "long.snn"
    sc.convert(_model(), torch.rand(16, 1, 8, 8), T=25, dtype=torch.float64,
               progress=False).save(path)
    assert sc.load(path).dtype == torch.float64
    _write(path, _set(lambda b: b["options"], "dtype", "float32"), path)
    with pytest.raises(ValueError, match="long.snn: .*T=25 is too long.*float32 only up to "
                                         "T=24"):
        sc.load(path)
    with pytest.raises(ValueError, match="T=25 is too long"):
        sc.load(path, dtype=torch.float32)


def _relu(blob):
    return next(p for p in blob["graph"]["populations"] if p["kind"] == "relu")


def _set(getter, key, value):
    def mutate(blob):
        getter(blob)[key] = value
    return mutate


MUTATIONS = {
    "k=7": (_set(lambda b: b["graph"], "k", 7.0), r"k must be a number in \(1, 2\]"),
    "rounding=up": (_set(lambda b: b["graph"], "rounding", "up"), "rounding must be one of"),
    "theta<0": (_set(_relu, "theta", -1.0), "theta must be finite and > 0"),
    "theta=nan": (_set(_relu, "theta", float("nan")), "theta must be finite and > 0"),
    "T=-3": (_set(_relu, "T", -3), "T must be an integer >= 1"),
    "T=10**6": (_set(_relu, "T", 10**6), "T=1000000 is too long"),
    "options=list": (_set(lambda b: b, "options", [1]), "options must be a dict"),
    "dtype=foo": (_set(lambda b: b["options"], "dtype", "foo"), r"options\['dtype'\]"),
    "mode=1": (_set(lambda b: b["options"], "mode", 1), r"options\['mode'\]"),
    "shape=2TB": (_set(_relu, "shape", (4, 250_000, 250_000)), "neurons per sample"),
    "shape=wrong": (_set(_relu, "shape", (4, 8, 9)), "produces shape"),
    "shape=text": (_set(_relu, "shape", "abc"), "shape must be"),
    "schedule forged": (_set(lambda b: b["schedule"]["t_acc"], "_1", 10**9),
                        "saved schedule's t_acc does not match"),
}


def _write(good, mutate, path):
    blob = torch.load(good, weights_only=True)
    mutate(blob)
    torch.save(blob, path)
    return path


@pytest.mark.parametrize("name", list(MUTATIONS))
def test_load_refuses_out_of_range_values(good, tmp_path, name):
    mutate, message = MUTATIONS[name]
    path = _write(good, mutate, tmp_path / "bad.snn")
    # the file is named; values read() sees are "damaged", the rest the backend refuses
    with pytest.raises(ValueError, match=f"bad.snn: .*{message}"):
        sc.load(path)


def test_the_good_file_still_loads_and_runs(good):
    assert torch.isfinite(sc.load(good)(torch.rand(2, 1, 8, 8))).all()


def test_an_oversized_shape_is_refused_within_bounded_memory(good, tmp_path):
    """1 GiB of neurons claimed by one field: refused while the process grows < 64 MiB."""
    path = _write(good, _set(_relu, "shape", (64, 2048, 2048)), tmp_path / "big.snn")
    code = textwrap.dedent(f"""
        import resource, spikeconverter as sc, torch
        import spikeconverter.converters.norse_backend  # imports are not what is measured
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        try:
            sc.load({str(path)!r})
        except ValueError as e:
            print("refused:", e)
        after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        print("grew_kib", after - before)
    """)
    # a hard cap too: should the check fail, the allocation fails instead of the machine
    r = subprocess.run([sys.executable, "-c", "import resource; resource.setrlimit("
                        "resource.RLIMIT_AS, (6 << 30, 6 << 30)); exec(" + repr(code) + ")"],
                       capture_output=True, text=True, timeout=300,
                       env=dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path)))
    assert "refused:" in r.stdout and "neurons per sample" in r.stdout, r.stdout + r.stderr
    grew = int(r.stdout.split("grew_kib")[1])
    assert grew < 64 * 1024, grew


def test_the_cli_exits_2_on_a_hostile_file(good, tmp_path, capsys):
    path = _write(good, MUTATIONS["theta<0"][0], tmp_path / "bad.snn")
    code = main(["run-lava", str(path), "-d", str(tmp_path), "--limit", "1"])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err
    assert err.strip().startswith("spikeconverter: error: ") and "theta must be finite" in err
