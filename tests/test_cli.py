"""End-to-end runs of every subcommand on a tiny model and data in temporary folders."""

import csv
import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from spikeconverter.cli import main

TINY = ["small_cnn", "--model-arg", "input_size=8", "--model-arg", "width=4",
        "--model-arg", "hidden=8", "--num-classes", "3"]

BAD_NET = '''
import torch.nn as nn

def net():
    return nn.Sequential(nn.Conv2d(1, 2, 3, padding=1), nn.Sigmoid(), nn.Flatten(),
                         nn.Linear(2 * 8 * 8, 3))
'''


@pytest.fixture(autouse=True)
def _one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny tensors: threads only add overhead on a shared machine
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A 3-class ImageFolder of 8x8 grey images and trained small_cnn weights for it."""
    from spikeconverter.demo import train_classifier
    from spikeconverter.models import get_model

    root = tmp_path_factory.mktemp("tiny")
    rng = np.random.default_rng(0)
    for c in range(3):
        d = root / "data" / f"class{c}"
        d.mkdir(parents=True)
        for i in range(10):
            a = rng.integers(0, 60, (8, 8)).astype(np.uint8)
            a[c * 3 : c * 3 + 2, :] += 180
            Image.fromarray(a, "L").save(d / f"{i}.png")
    from spikeconverter.data import load_dataset

    ds = load_dataset(root / "data", channels=1)
    x = torch.stack([ds[i][0] for i in range(len(ds))])
    y = torch.tensor([ds[i][1] for i in range(len(ds))])
    torch.manual_seed(0)
    model = get_model("small_cnn", input_size=8, num_classes=3, width=4, hidden=8)
    train_classifier(model, x, y, epochs=40, lr=1e-2)
    # saved the way DataParallel checkpoints are: prefixed, inside a dict
    torch.save({"state_dict": {f"module.{k}": v for k, v in model.state_dict().items()},
                "epoch": 40}, root / "w.pt")
    (root / "bad_net.py").write_text(BAD_NET)
    return root


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def error_of(capsys, *argv) -> str:
    code, out, err = run(capsys, *argv)
    assert code == 2, (out, err)
    assert "Traceback" not in err and err.count("\n") == 1, err
    assert err.startswith("spikeconverter: error: ")
    return err


@pytest.mark.parametrize("command", ["convert", "evaluate", "run-lava", "export", "demo",
                                     "finetune"])
def test_help_has_examples(capsys, command):
    with pytest.raises(SystemExit) as e:
        main([command, "--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    assert "examples:" in out and f"spikeconverter {command}" in out


def test_convert_writes_a_network_file(tiny, tmp_path, capsys):
    from spikeconverter.converters import load

    dst = tmp_path / "net.snn"
    code, out, err = run(capsys, "convert", *TINY, "-w", tiny / "w.pt", "-d", tiny / "data",
                         "--channels", "1", "-T", "4", "-o", dst, "--check", "30")
    assert code == 0, err
    assert f"wrote {dst}: T=4" in out
    line = next(s for s in out.splitlines() if s.startswith("check on 30 images"))
    net = load(dst)
    assert {p.T for p in net.graph if p.spiking} == {4}
    # the file holds the same network: its agreement with the ANN is what was printed
    from spikeconverter.data import load_dataset
    from spikeconverter.modelspec import load_model

    ds = load_dataset(tiny / "data", channels=1)
    x = torch.stack([ds[i][0] for i in range(len(ds))])
    model = load_model("small_cnn", tiny / "w.pt", input_size=8, width=4, hidden=8,
                       num_classes=3)
    agree = 100 * float((net(x).argmax(1) == model(x).argmax(1)).float().mean())
    assert line.endswith(f"agreement {agree:.2f}%")


def test_evaluate_writes_table_json_and_plots(tiny, tmp_path, capsys):
    out_dir = tmp_path / "eval"
    code, out, err = run(capsys, "evaluate", *TINY, "-w", tiny / "w.pt", "-d", tiny / "data",
                         "--channels", "1", "-T", "2", "4", "--baselines", "soft_reset",
                         "hard_reset", "--baseline-steps", "8", "32", "--baseline-limit", "12",
                         "-o", out_dir)
    assert code == 0, err
    rows = list(csv.DictReader((out_dir / "results.csv").open()))
    assert [(r["method"], r["T"]) for r in rows] == [
        ("iLIF", "2"), ("iLIF", "4"), ("soft_reset", "8"), ("soft_reset", "32"),
        ("hard_reset", "8"), ("hard_reset", "32")]
    assert [r["images"] for r in rows] == ["30", "30", "12", "12", "12", "12"]
    for r in rows:
        assert 0 <= float(r["top1"]) <= 100 and 0 <= float(r["agreement"]) <= 100
        assert float(r["synops_per_image"]) > 0
    # iLIF: the schedule's latency (more than 2T per layer); rate coding: its T steps
    assert int(rows[0]["latency_steps"]) > 4 and rows[2]["latency_steps"] == rows[2]["T"]
    # more steps, more spikes
    assert float(rows[3]["spikes_per_image"]) > float(rows[2]["spikes_per_image"])
    js = json.loads((out_dir / "results.json").read_text())
    assert js["rows"][0]["method"] == "iLIF" and js["ann"]["images"] == 30
    assert set(js["ilif_layers"]) == {"2", "4"}
    assert js["meta"]["baseline_images"] == 12
    for name in ("accuracy.png", "synops.png"):
        with Image.open(out_dir / name) as im:
            assert im.format == "PNG"
    assert "ANN top-1" in out and "soft_reset" in out


POOL_NET = '''
import torch.nn as nn

def net():
    return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.AvgPool2d(2), nn.Flatten(),
                         nn.Linear(4 * 4 * 4, 3))
'''


def test_export_writes_a_nir_file_norse_reads(tiny, tmp_path, capsys):
    import nir

    (tmp_path / "pool_net.py").write_text(POOL_NET)
    dst = tmp_path / "net.nir"
    code, out, err = run(capsys, "export", tmp_path / "pool_net.py:net", "-d", tiny / "data",
                         "--channels", "1", "-o", dst)
    assert code == 0, err
    assert f"wrote {dst}" in out and "1 IF populations" in out
    graph = nir.read(dst)
    assert sum(isinstance(n, nir.IF) for n in graph.nodes.values()) == 1
    assert any(isinstance(n, nir.SumPool2d) for n in graph.nodes.values())


def test_export_refuses_ilif_networks_and_max_pooling_in_one_line(tiny, tmp_path, capsys):
    err = error_of(capsys, "export", tmp_path / "net.snn", "-o", tmp_path / "x.nir")
    assert "no iLIF primitive" in err
    assert "needs -d/--data" in error_of(capsys, "export", *TINY, "-o", tmp_path / "x.nir")
    err = error_of(capsys, "export", *TINY, "-w", tiny / "w.pt", "-d", tiny / "data",
                   "--channels", "1", "-o", tmp_path / "x.nir")
    assert "max pooling" in err and not (tmp_path / "x.nir").exists()


def test_demo_runs_and_writes_plots(tmp_path, capsys):
    code, out, err = run(capsys, "demo", "--out", tmp_path / "demo", "--epochs", "3",
                         "--lava-samples", "0")
    assert code == 0, err
    names = {p.name for p in (tmp_path / "demo").iterdir()}
    assert {"results.csv", "accuracy.png", "synops.png", "conversion_error.png",
            "raster.png"} <= names
    assert "ANN test accuracy" in out and str((tmp_path / "demo").resolve()) in out
    rows = list(csv.DictReader((tmp_path / "demo" / "results.csv").open()))
    assert {r["method"] for r in rows} == {"iLIF", "rate (soft reset)"}


def test_run_lava(tiny, tmp_path, capsys):
    net = tmp_path / "net.snn"
    assert run(capsys, "convert", *TINY, "-w", tiny / "w.pt", "-d", tiny / "data",
               "--channels", "1", "-T", "3", "-o", net)[0] == 0
    code, out, err = run(capsys, "run-lava", net, "-d", tiny / "data", "--channels", "1",
                         "--limit", "2")
    try:
        import spikeconverter.converters.lava_backend  # noqa: F401
    except ImportError:
        assert code == 2 and "Lava backend is not available" in err
        return
    assert code == 0, err
    assert "Lava (float) on 2 images" in out


def test_bad_invocations_exit_2_with_one_message(tiny, tmp_path, capsys):
    data = ["-d", tiny / "data", "--channels", "1"]
    err = error_of(capsys, "convert", *TINY, "-w", tmp_path / "nope.pt", *data, "-o", "x")
    assert "nope.pt" in err and "does not exist" in err
    err = error_of(capsys, "convert", "resnet_cifar20", *data, "-o", "x")
    assert "unknown model 'resnet_cifar20'" in err
    err = error_of(capsys, "convert", *TINY, "-w", tiny / "w.pt", "-d", tmp_path / "nodata",
                   "-o", "x")
    assert "nodata" in err and "does not exist" in err
    # RGB images into a one-channel model
    err = error_of(capsys, "convert", *TINY, "-w", tiny / "w.pt", "-d", tiny / "data",
                   "--channels", "3", "-o", "x")
    assert "does not accept" in err and "(3, 8, 8)" in err
    # weights of another architecture
    err = error_of(capsys, "convert", "small_cnn", "--model-arg", "input_size=8", "-w",
                   tiny / "w.pt", *data, "-o", "x")
    assert "shapes" in err and "classifier.4.weight (3, 8) vs (10, 64)" in err
    err = error_of(capsys, "convert", f"{tiny / 'bad_net.py'}:net", *data, "-o", "x")
    assert "igmoid" in err
    err = error_of(capsys, "convert", *TINY, "-w", tiny / "w.pt", *data, "-T", "0", "-o", "x")
    assert "-T must be >= 1" in err
    err = error_of(capsys, "evaluate", *TINY, "-w", tiny / "w.pt", *data, "--baselines",
                   "leaky_reset")
    assert "leaky_reset" in err
    err = error_of(capsys, "evaluate", *TINY, "-d", "cifar10:" + str(tmp_path), "-o", "x")
    assert "never downloads" in err
    err = error_of(capsys, "run-lava", tmp_path / "missing.snn", *data)
    assert "missing.snn" in err
    err = error_of(capsys, "finetune", tmp_path / "missing.snn", "-d", tiny / "data",
                   "-o", tmp_path / "ft.snn")
    assert "missing.snn" in err
    with pytest.raises(SystemExit) as e:
        main(["convert", "small_cnn"])  # argparse: required options missing
    assert e.value.code == 2


def test_warnings_are_one_line(monkeypatch, capsys):
    import warnings

    import spikeconverter.cli as cli

    def noisy(args):
        warnings.warn("about 339 cores,\n more than one chip", UserWarning, stacklevel=1)
        return 0

    monkeypatch.setattr(cli, "_cmd_demo", noisy)
    code, out, err = run(capsys, "demo")
    assert code == 0
    assert err.startswith("spikeconverter: warning: about 339 cores, more than one chip (")
    assert err.count("\n") == 1 and "warnings.warn" not in err  # no source echo


def test_console_script_entry_point_runs(tmp_path):
    import subprocess

    res = subprocess.run([sys.executable, "-m", "spikeconverter.cli", "convert", "nosuch",
                          "-d", str(tmp_path), "-o", "x"], capture_output=True, text=True,
                         env={"PYTHONPATH": str(Path(__file__).resolve().parents[1] / "src"),
                              "PATH": "/usr/bin:/bin"})
    assert res.returncode == 2
    assert res.stderr.startswith("spikeconverter: error: unknown model 'nosuch'")
    assert "Traceback" not in res.stderr


def test_convert_takes_granularity_correction_and_double_buffering(tiny, tmp_path, capsys):
    from spikeconverter.converters import load

    dst = tmp_path / "net.snn"
    code, out, err = run(capsys, "convert", *TINY, "-w", tiny / "w.pt", "-d", tiny / "data",
                         "--channels", "1", "-T", "4", "-o", dst, "--threshold-granularity",
                         "channel", "--correction", "none", "--double-buffered")
    assert code == 0, err
    net = load(dst)
    assert net.schedule.double_buffered and net.schedule.steps_per_sample == 4
    # per-channel thresholds: the first conv population holds one threshold per channel
    conv = next(p for p in net.graph if p.spiking and p.kind == "relu")
    assert net.theta(conv.name).numel() == conv.shape[0] > 1
    assert "a new sample every 4 steps" in out


def test_correction_choices_are_the_converters():
    from spikeconverter.cliparser import CORRECTION_CHOICES
    from spikeconverter.converters.correction import CORRECTIONS

    assert CORRECTION_CHOICES == CORRECTIONS


@pytest.mark.parametrize("extra, command, drawn", [
    ([], "convert", 1024),  # the T = 4 default needs a wide draw for its block reconstruction
    (["--correction", "both"], "convert", 256),
    (["--threshold-granularity", "layer"], "convert", 256),
    (["--calibration-images", "18"], "convert", 18),
    ([], "evaluate", 256),  # one draw calibrates every T of the table
])
def test_the_calibration_draw_follows_the_T4_default(tiny, tmp_path, capsys, monkeypatch,
                                                      extra, command, drawn):
    import spikeconverter.data as data

    asked = []
    real = data.calibration_batch
    monkeypatch.setattr(data, "calibration_batch",
                        lambda ds, n, **kw: asked.append(n) or real(ds, n, **kw))
    dst = tmp_path / ("net.snn" if command == "convert" else "eval")
    code, out, err = run(capsys, command, *TINY, "-w", tiny / "w.pt", "-d", tiny / "data",
                         "--channels", "1", "-T", "4", "-o", dst, *extra,
                         *(["--baselines", "none"] if command == "evaluate" else []))
    assert code == 0, err
    assert asked == [drawn]
    if command == "convert":
        # 30 images are all there is: too few for the block reconstruction, so per layer
        held = min(drawn, 30)
        assert f"converting at T=4 on {held} calibration images: thresholds per" in out


def test_convert_says_which_calibration_it_runs(tiny, tmp_path, capsys):
    code, out, err = run(capsys, "convert", *TINY, "-w", tiny / "w.pt", "-d", tiny / "data",
                         "--channels", "1", "-T", "3", "-o", tmp_path / "n.snn")
    assert code == 0, err
    assert ("converting at T=3 on 30 calibration images: thresholds per channel, correction "
            "'block' (minutes on a CPU)") in out
