from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from spikeconverter.data import (
    NORMALIZATION_PRESETS,
    calibration_batch,
    iter_input_batches,
    load_dataset,
    make_loader,
    resolve_normalization,
)

SHARED = Path(__file__).resolve().parents[1] / ".." / "shared"


def make_folder(root: Path, classes=("cat", "dog"), per_class=5, size=6, mode="RGB") -> Path:
    rng = np.random.default_rng(0)
    for c in classes:
        (root / c).mkdir(parents=True)
        for i in range(per_class):
            shape = (size, size, 3) if mode == "RGB" else (size, size)
            Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8), mode).save(
                root / c / f"{i}.png")
    return root


def test_presets_and_explicit_normalisation():
    n = resolve_normalization("cifar10")
    assert n.mean == (0.4914, 0.4822, 0.4465) and n.std == (0.2470, 0.2435, 0.2616)
    assert resolve_normalization("imagenet").std == (0.229, 0.224, 0.225)
    assert resolve_normalization("mnist").channels == 1
    assert resolve_normalization(mean=[0.5], std=[0.25]).mean == (0.5,)
    assert resolve_normalization() is None
    assert set(NORMALIZATION_PRESETS) == {"cifar10", "imagenet", "mnist"}
    with pytest.raises(ValueError, match="unknown normalisation preset 'cifar100'"):
        resolve_normalization("cifar100")
    with pytest.raises(ValueError, match="not both"):
        resolve_normalization("mnist", mean=[0.1], std=[0.2])
    with pytest.raises(ValueError, match="same"):
        resolve_normalization(mean=[0.1, 0.2], std=[0.2])
    with pytest.raises(ValueError, match="> 0"):
        resolve_normalization(mean=[0.1], std=[0.0])
    with pytest.raises(ValueError, match="together"):
        resolve_normalization(mean=[0.1])


def test_image_folder_values_are_normalised(tmp_path):
    root = make_folder(tmp_path / "d")
    raw = load_dataset(root)
    x, y = raw[0]
    assert x.shape == (3, 6, 6) and y == 0 and float(x.min()) >= 0 and float(x.max()) <= 1
    norm = resolve_normalization(mean=[0.5, 0.4, 0.3], std=[0.5, 0.25, 0.125])
    xn, _ = load_dataset(root, normalization=norm)[0]
    want = (x - torch.tensor([0.5, 0.4, 0.3]).view(3, 1, 1)) / torch.tensor(
        [0.5, 0.25, 0.125]).view(3, 1, 1)
    assert torch.allclose(xn, want, atol=1e-6)


def test_grayscale_for_mnist_and_rgb_from_gray(tmp_path):
    root = make_folder(tmp_path / "g", mode="L")
    x, _ = load_dataset(root, normalization=resolve_normalization("mnist"))[0]
    assert x.shape == (1, 6, 6)
    x3, _ = load_dataset(root, channels=3)[0]
    assert x3.shape == (3, 6, 6) and torch.equal(x3[0], x3[1])
    with pytest.raises(ValueError, match="channels"):
        load_dataset(root, channels=2)


def test_limit_draws_from_every_class_and_resize(tmp_path):
    root = make_folder(tmp_path / "d", classes=("a", "b", "c"), per_class=20)
    part = load_dataset(root, limit=15, image_size=4)
    assert len(part) == 15
    labels = [part[i][1] for i in range(len(part))]
    assert set(labels) == {0, 1, 2}
    assert part[0][0].shape == (3, 4, 4)
    assert len(load_dataset(root, limit=1000)) == 60
    again = load_dataset(root, limit=15)
    assert [again[i][1] for i in range(15)] == labels  # seeded
    with pytest.raises(ValueError, match="limit"):
        load_dataset(root, limit=0)


def test_calibration_batch_loader_and_batches(tmp_path):
    ds = load_dataset(make_folder(tmp_path / "d"))
    cal = calibration_batch(ds, 4)
    assert cal.shape == (4, 3, 6, 6)
    loader = make_loader(ds, batch_size=3)
    xs = list(iter_input_batches(loader))
    assert [x.shape[0] for x in xs] == [3, 3, 3, 1]
    assert [x.shape[0] for x in iter_input_batches(torch.zeros(5, 2), batch_size=2)] == [2, 2, 1]
    with pytest.raises(ValueError, match="batch dimension"):
        list(iter_input_batches(torch.zeros(3)))
    with pytest.raises(TypeError, match="iterable"):
        list(iter_input_batches(3))
    with pytest.raises(TypeError, match="str"):
        list(iter_input_batches([("a", 1)]))
    with pytest.raises(ValueError, match="calibration images"):
        calibration_batch(ds, 0)
    with pytest.raises(ValueError, match="batch_size"):
        make_loader(ds, batch_size=0)


def test_missing_data_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_dataset(tmp_path / "nowhere")
    with pytest.raises(FileNotFoundError, match="CIFAR10 .test. not found.*never downloads"):
        load_dataset(f"cifar10:{tmp_path}")
    with pytest.raises(FileNotFoundError, match="MNIST .train. not found"):
        load_dataset(f"mnist:{tmp_path}", split="train")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="not an ImageFolder tree"):
        load_dataset(tmp_path / "empty")
    f = tmp_path / "file.png"
    f.write_bytes(b"")
    with pytest.raises(ValueError, match="is a file"):
        load_dataset(f)
    with pytest.raises(ValueError, match="split"):
        load_dataset(tmp_path, split="val")


@pytest.mark.shared
def test_shared_mnist_tree():
    root = SHARED / "data" / "mnist" / "test"
    if not root.is_dir():
        pytest.skip(f"needs {root} (the project's ../shared data)")
    ds = load_dataset(root, normalization=resolve_normalization("mnist"), limit=10)
    x, y = ds[0]
    assert x.shape == (1, 28, 28) and 0 <= y < 10
