"""Tutorial 2: the iLIF neuron inside an ordinary Norse training loop.

The iLIF neuron (``spikeconverter.plugin.ILIF``) is a Norse module like ``LIF``: data is
``(time, batch, ...)``, parameters are a NamedTuple, the threshold has a surrogate gradient. Here a
two-layer network is trained with backpropagation through time on scikit-learn's 8x8 digits (no
download):

* step 0: the image (flattened, through a Linear layer) is the input current; the hidden iLIF
  layer accumulates it (``t_acc = 1``);
* steps 1..T: the hidden layer generates its train, most significant spike first;
* the readout decodes the trains (``spikeconverter.coding.decode``: spike ``j`` weighs
  ``theta * 2**-j``) and a Linear layer gives the logits.

Because a train decodes to the quantised ReLU of the membrane, the trained spiking network equals
a quantised ANN exactly, which the script checks at the end.

Run ``python tutorials/02_ilif_in_norse_training.py`` (``--smoke`` for a seconds-long run).
"""

from __future__ import annotations

import argparse
import os

import norse.torch as norse
import torch
from torch import nn

from spikeconverter import coding
from spikeconverter.demo import load_digits_data
from spikeconverter.plugin import ILIF, ILIFParameters


class Decode(nn.Module):
    """MSB-first trains ``(1 + T, B, F)`` -> values ``(B, F)`` (step 0 is the accumulate step)."""

    def __init__(self, theta: float):
        super().__init__()
        self.theta = theta

    def forward(self, spikes: torch.Tensor) -> torch.Tensor:
        return coding.decode(spikes[1:], self.theta)


def make_snn(T: int, hidden: int = 128, theta: float = 1.0) -> norse.SequentialState:
    p = ILIFParameters(k=2.0, v_th=torch.tensor(theta), t_acc=1, t_gen=T, rounding="nearest",
                       method="super", alpha=torch.tensor(20.0))
    return norse.SequentialState(
        nn.Flatten(start_dim=2),  # (steps, B, 1, 8, 8) -> (steps, B, 64)
        nn.Linear(64, hidden),
        ILIF(p),
        Decode(theta),
        nn.Linear(hidden, 10),
    )


def as_current(images: torch.Tensor, T: int) -> torch.Tensor:
    """The image at step 0, nothing afterwards: ``(1 + T, B, ...)``."""
    return torch.cat([images.unsqueeze(0), images.new_zeros((T, *images.shape))])


def main(argv: list[str] | None = None) -> dict[str, float]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--smoke", action="store_true",
                    default=bool(os.environ.get("SPIKECONVERTER_SMOKE")),
                    help="a few epochs only (also: SPIKECONVERTER_SMOKE=1)")
    ap.add_argument("-T", type=int, default=4, help="spikes per train (default 4)")
    args = ap.parse_args(argv)
    epochs = 3 if args.smoke else 40
    torch.manual_seed(0)

    data = load_digits_data()
    model = make_snn(args.T)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    # the ordinary loop: forward over time, loss on the readout, backward through time, step
    for epoch in range(epochs):
        perm = torch.randperm(len(data.y_train))
        for i in range(0, len(perm), 64):
            idx = perm[i : i + 64]
            logits, _ = model(as_current(data.x_train[idx], args.T))
            loss = nn.functional.cross_entropy(logits, data.y_train[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
        if epoch % 10 == 9 or epoch == epochs - 1:
            print(f"epoch {epoch + 1}: loss {loss.item():.3f}")

    model.eval()
    with torch.no_grad():
        logits, _ = model(as_current(data.x_test, args.T))
        acc = 100.0 * float((logits.argmax(1) == data.y_test).float().mean())
        # the same network as a quantised ANN: Linear -> quantize(T) -> Linear
        lin1, lin2 = model[1], model[4]
        u = lin1(data.x_test.flatten(1))
        q = coding.quantize(u, 1.0, args.T, 2.0, "nearest")
        ann_logits = lin2(q)
    same = bool(torch.allclose(logits, ann_logits, atol=1e-5))
    print(f"iLIF network, T={args.T}: test accuracy {acc:.2f}%; equals the quantised ANN: {same}")
    return {"accuracy": acc, "equal_to_quantised_ann": float(same)}


if __name__ == "__main__":
    main()
