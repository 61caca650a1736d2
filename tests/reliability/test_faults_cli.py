"""Command-line faults: every one a clear error (exit 2, one line), found before the work."""

from __future__ import annotations

import json
import shutil
import time

import pytest
import torch
import torch.nn as nn
from faulthelpers import TINY

from spikeconverter.cli import main
from spikeconverter.evaluation import check_model_input, evaluate


def error_of(capsys, *argv) -> str:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    assert code == 2, (out, err)
    lines = [line for line in err.splitlines() if line.startswith("spikeconverter")]
    assert lines == [err.strip().splitlines()[-1]] and "Traceback" not in err, err
    return lines[0]


@pytest.fixture
def truncated(folder, tmp_path):
    bad = tmp_path / "bad"
    shutil.copytree(folder, bad)
    png = bad / "class1" / "2.png"
    png.write_bytes(png.read_bytes()[:60])
    return bad, png


def test_a_truncated_image_is_named(capsys, truncated, tmp_path):
    bad, png = truncated
    err = error_of(capsys, "convert", *TINY, "-d", bad, "--channels", "1", "-T", "4",
                   "-o", tmp_path / "n.snn")
    assert str(png) in err and "truncated" in err


def test_a_truncated_image_is_named_by_run_lava(capsys, truncated, netfile):
    bad, png = truncated
    err = error_of(capsys, "run-lava", netfile, "-d", bad, "--channels", "1", "--limit", "18")
    assert str(png) in err


def _timed_error(capsys, *argv) -> tuple[str, float]:
    t0 = time.perf_counter()
    err = error_of(capsys, *argv)
    return err, time.perf_counter() - t0


def test_convert_refuses_an_existing_output_before_any_work(capsys, folder, netfile, tmp_path):
    before = netfile.read_bytes()
    err, seconds = _timed_error(capsys, "convert", *TINY, "-d", folder, "--channels", "1",
                                "-o", netfile)
    assert "already exists" in err and "--overwrite" in err
    assert seconds < 2 and netfile.read_bytes() == before  # refused before calibrating
    err = error_of(capsys, "convert", *TINY, "-d", folder, "--channels", "1", "-o", tmp_path)
    assert "is a directory" in err and ".tmp" not in err
    out = tmp_path / "copy.snn"
    shutil.copy(netfile, out)
    assert main(["convert", *TINY, "-d", str(folder), "--channels", "1", "-T", "4",
                 "--calibration-images", "6", "-o", str(out), "--overwrite"]) == 0
    assert out.read_bytes() != before


def test_evaluate_checks_its_output_folder_first(capsys, folder, tmp_path):
    (tmp_path / "file").write_text("x")
    err, seconds = _timed_error(capsys, "evaluate", *TINY, "-d", folder, "--channels", "1",
                                "--baselines", "none", "-o", tmp_path / "file")
    assert "is a file" in err and seconds < 2
    (tmp_path / "old").mkdir()
    (tmp_path / "old" / "results.csv").write_text("keep me")
    err = error_of(capsys, "evaluate", *TINY, "-d", folder, "--channels", "1",
                   "--baselines", "none", "-o", tmp_path / "old")
    assert "results.csv" in err and "--overwrite" in err
    assert (tmp_path / "old" / "results.csv").read_text() == "keep me"


def test_evaluate_writes_each_result_as_it_comes(folder, tmp_path):
    from spikeconverter.data import load_dataset, make_loader
    from spikeconverter.evaluation import write_partial_report
    from spikeconverter.models import get_model

    ds = load_dataset(folder, channels=1)
    model = get_model("small_cnn", input_size=8, num_classes=3, width=4, hidden=8)
    x = torch.stack([ds[i][0] for i in range(len(ds))])
    seen = []

    def on_row(report):
        write_partial_report(report, tmp_path)
        seen.append(len(json.loads((tmp_path / "results.json").read_text())["rows"]))

    evaluate(model, make_loader(ds, 8), x, T_values=(2, 3), baselines=(), progress=False,
             on_row=on_row)
    assert seen == [1, 2]


def test_a_model_that_asserts_its_input_size_is_a_clear_error():
    class Fixed(nn.Module):  # like torchvision's ViT
        def forward(self, x):
            assert x.shape[-1] == 224, f"Wrong image height! Expected 224 but got {x.shape[-1]}!"
            return x.flatten(1)

    with pytest.raises(ValueError, match="does not accept the data.*Wrong image height"):
        check_model_input(Fixed(), torch.zeros(1, 3, 32, 32))
