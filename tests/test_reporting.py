import csv
import io
import json
import warnings

import numpy as np
import pytest
import torch

from spikeconverter.reporting import (
    format_table,
    format_warning,
    one_line_warnings,
    round_significant,
    write_csv,
    write_json,
)


def test_json_and_csv_round_trip(tmp_path):
    p = write_json(tmp_path / "a" / "r.json", {"acc": np.float32(0.5), "t": torch.tensor([1, 2]),
                                               "bad": float("nan"), 3: (1, 2)})
    assert json.loads(p.read_text()) == {"acc": 0.5, "t": [1, 2], "bad": None, "3": [1, 2]}
    rows = [{"method": "iLIF", "T": 4, "acc": 91.5}, {"method": "soft", "T": 32, "acc": None}]
    p = write_csv(tmp_path / "r.csv", rows, ["method", "T", "acc"])
    got = list(csv.DictReader(p.open()))
    assert got == [{"method": "iLIF", "T": "4", "acc": "91.5"},
                   {"method": "soft", "T": "32", "acc": ""}]
    assert sorted(x.name for x in tmp_path.rglob("*")) == ["a", "r.csv", "r.json"]


def test_format_table_aligns():
    text = format_table([{"m": "iLIF", "T": 4, "ops": 1.5e7}, {"m": "soft reset", "T": 2048,
                                                                "ops": None}], ["m", "T", "ops"])
    lines = text.splitlines()
    assert lines[0].split() == ["m", "T", "ops"]
    assert lines[2].split() == ["iLIF", "4", "1.5e+07"]
    assert lines[3].split() == ["soft", "reset", "2048", "-"]
    assert len({len(line) for line in lines[:3]}) == 1


def test_files_hold_meaningful_digits(tmp_path):
    rows = [{"method": "iLIF", "T": 4, "top1": 96.38888835906982, "ops": 44214137.5,
             "rate": np.float32(0.1234567), "latency_steps": 77}]
    text = write_csv(tmp_path / "r.csv", rows, ["method", "T", "top1", "ops", "rate",
                                                "latency_steps"]).read_text()
    assert text.splitlines()[1] == "iLIF,4,96.39,44210000.0,0.1235,77"
    js = json.loads(write_json(tmp_path / "r.json", {"rows": rows, "x": [1 / 3]}).read_text())
    assert js == {"rows": [{"method": "iLIF", "T": 4, "top1": 96.39, "ops": 44210000.0,
                            "rate": 0.1235, "latency_steps": 77}], "x": [0.3333]}
    # digits=None keeps the value as it is
    assert json.loads(write_json(tmp_path / "f.json", [1 / 3], digits=None).read_text()) == [1 / 3]
    assert round_significant(0.0) == 0.0 and round_significant(-1.23456, 2) == -1.2
    with pytest.raises(ValueError, match="digits"):
        round_significant(1.0, 0)


def test_warnings_become_one_line():
    buf = io.StringIO()
    before = warnings.showwarning
    with one_line_warnings("prog", stream=buf):
        warnings.warn("the network needs about 339 cores,\n  more than 128", UserWarning,
                      stacklevel=1)
    # a warning from outside the package says where it came from, still on one line
    assert buf.getvalue() == ("prog: warning: the network needs about 339 cores, more than 128 "
                              f"(UserWarning from test_reporting.py:{_line_of('339 cores')})\n")
    import spikeconverter.reporting as rep

    ours = format_warning("thresholds clipped", RuntimeWarning, rep.__file__, 3)
    assert ours == "spikeconverter: warning: thresholds clipped\n"
    assert warnings.showwarning is before  # the previous display comes back after the block


def _line_of(text: str) -> int:
    src = open(__file__, encoding="utf-8").read().splitlines()
    return next(i for i, line in enumerate(src, 1) if text in line and "warn(" in line)
