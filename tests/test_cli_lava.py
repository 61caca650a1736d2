"""Network files that run in Lava as they are: convert -> save -> run-lava --fixed-point."""

import csv

import pytest
import torch
from test_cli import TINY, _one_thread, run, tiny  # noqa: F401 - fixtures

pytest.importorskip("lava", reason="the Lava backend needs lava-nc 0.10.0 (Python 3.10)")

pytestmark = pytest.mark.lava


def test_convert_then_run_lava_fixed_point_with_no_other_option(tiny, tmp_path, capsys):  # noqa: F811
    net = tmp_path / "net.snn"
    code, out, err = run(capsys, "convert", *TINY, "-w", tiny / "w.pt", "-d", tiny / "data",
                         "--channels", "1", "--mean", "0.2", "--std", "0.5", "-T", "3",
                         "-o", net)
    assert code == 0, err
    out_csv = tmp_path / "lava.csv"
    # neither the normalisation nor the channels again: the file knows them
    code, out, err = run(capsys, "run-lava", net, "-d", tiny / "data", "--fixed-point",
                         "--limit", "6", "--lava-batch", "4", "-o", out_csv)
    assert code == 0, err
    assert "Lava (fixed point) on 6 images" in out and "agrees with Norse on" in out
    with open(out_csv) as f:
        rows = list(csv.DictReader(f))
    assert [int(r["index"]) for r in rows] == list(range(6))
    # the network saw the same images it was converted with: Norse agrees with the labels
    assert sum(r["norse"] == r["label"] for r in rows) >= 4
    # an explicit normalisation that disagrees with the file is refused before any work
    code, out, err = run(capsys, "run-lava", net, "-d", tiny / "data", "--normalize", "mnist",
                         "--limit", "2")
    assert code == 2 and "disagrees" in err


def test_old_file_without_the_new_fields_still_runs(tiny, tmp_path, capsys):  # noqa: F811
    from spikeconverter.converters import load

    net = tmp_path / "net.snn"
    assert run(capsys, "convert", *TINY, "-w", tiny / "w.pt", "-d", tiny / "data",
               "--channels", "1", "-T", "3", "-o", net)[0] == 0
    old = tmp_path / "old.snn"
    blob = torch.load(net, weights_only=True)
    for key in [k for k in blob["graph"]["meta"] if k.startswith(("input_", "lava_"))]:
        del blob["graph"]["meta"][key]  # what today's (older) files hold
    torch.save(blob, old)
    lnet = load(old, backend="lava")
    with pytest.raises(ValueError, match="holds no fixed-point calibration"):
        lnet.plan(fixed_point=True)
    code, out, err = run(capsys, "run-lava", old, "-d", tiny / "data", "--channels", "1",
                         "--limit", "2")
    assert code == 0, err
    assert "does not record its input normalisation" in out and "Lava (float) on 2" in out
    code, out, err = run(capsys, "run-lava", old, "-d", tiny / "data", "--channels", "1",
                         "--limit", "2", "--fixed-point")
    assert code == 2 and "holds no fixed-point calibration" in err


def test_stale_calibration_is_ignored(tiny, tmp_path, capsys):  # noqa: F811
    from spikeconverter.converters import load

    net = tmp_path / "net.snn"
    assert run(capsys, "convert", *TINY, "-w", tiny / "w.pt", "-d", tiny / "data",
               "--channels", "1", "-T", "3", "-o", net)[0] == 0
    assert load(net, backend="lava").membrane_peaks is not None
    changed = load(net)
    pop = next(p for p in changed.graph if p.kind == "relu")
    pop.theta = pop.theta * 1.5  # e.g. fine-tuned thresholds
    assert load(net).graph.meta["lava_membrane_peaks"]
    from spikeconverter.converters.to_lava.stored import stored_peaks

    peaks, why = stored_peaks(changed.graph)
    assert peaks is None and "different version" in why
