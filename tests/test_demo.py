"""The demo's shipped weights: package data, safe loading, the accuracy they were saved with."""

import torch

from spikeconverter.demo import DEMO_WEIGHTS, demo_model, load_digits_data, train_demo_weights


def test_shipped_weights_load_safely_and_score_what_their_note_says():
    from importlib import resources

    with resources.as_file(resources.files("spikeconverter.models") / DEMO_WEIGHTS) as path:
        assert path.stat().st_size < 300_000  # "a few hundred KB at most"
    model, meta = demo_model()  # torch.load(weights_only=True) inside
    data = load_digits_data(seed=meta["seed"])
    with torch.no_grad():
        correct = int((model(data.x_test).argmax(1) == data.y_test).sum())
    assert correct == meta["test_correct"] and meta["test_images"] == len(data.y_test)
    assert meta["test_top1"] > 98.0 and meta["epochs"] == 30


def test_train_demo_weights_writes_a_file_demo_model_reads(tmp_path):
    meta = train_demo_weights(tmp_path / "w.pt", epochs=1, log=lambda s: None)
    model, read = demo_model(tmp_path / "w.pt")
    assert read == meta and not model.training
    assert 0 <= meta["test_correct"] <= meta["test_images"]
