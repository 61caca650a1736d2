"""The tutorials run end to end at smoke size (``--smoke``)."""

import importlib.util
from pathlib import Path

import pytest

TUTORIALS = Path(__file__).resolve().parents[1] / "tutorials"


def load(name: str):
    spec = importlib.util.spec_from_file_location(name, TUTORIALS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_convert_torchvision_model(capsys):
    res = load("01_convert_torchvision_and_run_in_lava").main(["--smoke"])
    out = capsys.readouterr().out
    assert "torchvision:resnet18" in out and "Lava" in out
    assert res["agreement"] >= 75.0
    assert res["max_gap"] < 1e-9  # in float64 the SNN is the quantised ANN


def test_ilif_in_a_norse_training_loop(capsys):
    res = load("02_ilif_in_norse_training").main(["--smoke"])
    assert res["equal_to_quantised_ann"] == 1.0
    assert res["accuracy"] > 70.0  # 10 classes; 3 epochs already learn most of it
    assert "test accuracy" in capsys.readouterr().out


@pytest.mark.shared
def test_reproduce_resnet20_row(tmp_path, capsys):
    tut = load("03_reproduce_cifar10_resnet20")
    res = tut.main(["--smoke", "--out", str(tmp_path)])
    if res is None:
        pytest.skip(f"needs ../shared ({tut.CHECKPOINT} and the CIFAR-10 trees)")
    row = res["rows"][0]
    assert row["method"] == "iLIF" and row["T"] == 8 and row["images"] == 32
    assert row["agreement"] >= 90.0
    assert (tmp_path / "results.csv").exists() and (tmp_path / "accuracy.png").exists()


@pytest.mark.lava
def test_lava_process_graph_probe(tmp_path, capsys):
    pytest.importorskip("lava", reason="tutorial 4 needs lava-nc 0.10.0")
    res = load("04_lava_process_graph").main(["--smoke", "--out", str(tmp_path)])
    assert res["logits_equal"] == 1.0  # our own run of lnet.processes() equals lnet.run
    assert res["peak"] > 0 and (tmp_path / "membrane.png").stat().st_size > 0
    assert "probing" in capsys.readouterr().out
