import csv
import json

import numpy as np
import torch

from spikeconverter.reporting import format_table, write_csv, write_json


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
