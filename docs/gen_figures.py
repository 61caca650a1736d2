"""The figures of the Concepts page, computed by the package itself.

Run by mkdocs-gen-files while the site builds (the PNGs go into the site as
``concepts/*.png``), or by hand to look at them: ``python docs/gen_figures.py OUT_DIR``.

* ``code.png`` -- one value's MSB-first train (:func:`spikeconverter.coding.encode`) and the
  quantiser every ReLU becomes (:func:`spikeconverter.coding.quantize`, floor and nearest);
* ``neuron.png`` -- one iLIF neuron stepped with :func:`spikeconverter.plugin.ilif_step`:
  membrane, spikes, the accumulate and generate phases;
* ``schedule.png``, ``pipeline.png``, ``pipeline_double.png`` -- the windows of CIFAR ResNet-20
  converted at T = 4 (:func:`spikeconverter.plotting.plot_schedule`), one sample, three
  pipelined ones, and three pipelined through double-buffered neurons;
* ``exactness.png`` -- a converted network's logits against the quantised ANN's and the ANN's;
* ``conversion_error.png`` -- Eq. 13 over threshold and ``k``
  (:func:`spikeconverter.plotting.plot_conversion_error`).
"""

from __future__ import annotations

import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from spikeconverter import coding
from spikeconverter.converters import convert
from spikeconverter.models import get_model
from spikeconverter.plotting import plot_conversion_error, plot_schedule
from spikeconverter.plugin import ILIFParameters, ilif_initial_state, ilif_step

DPI = 110


def _figure(width: float, height: float, ncols: int = 1) -> tuple[Figure, np.ndarray]:
    fig = Figure(figsize=(width, height), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    return fig, np.atleast_1d(fig.subplots(1, ncols))


def code_figure(path: Path) -> None:
    """Left: the train of u = 1.37 (theta = 1, T = 6). Right: quantize(u) for T = 3."""
    fig, (ax, qx) = _figure(10.0, 3.6, 2)
    u, T = 1.37, 6
    spikes = coding.encode(torch.tensor([u]), theta=1.0, T=T)[:, 0]
    weights = 2.0 ** -np.arange(T)
    ax.bar(np.arange(T), spikes.numpy(), color="k", width=0.15)
    for j, (s, w) in enumerate(zip(spikes.tolist(), weights, strict=True)):
        ax.text(j, 1.05, f"{w:g}", ha="center", fontsize=8, color="k" if s else "0.6")
    decoded = float(coding.decode(spikes[:, None], theta=1.0)[0])
    ax.set_title(f"u = {u}: spikes weigh theta*2^-j, decode = {decoded:g}", fontsize=10)
    ax.set_xlabel("step j of the generate phase (most significant first)")
    ax.set_yticks([0, 1])
    ax.set_ylim(0, 1.25)
    ax.set_ylabel("spike")
    v = torch.linspace(-0.5, 2.5, 1201)
    qx.plot(v, v, color="0.7", lw=1, label="ReLU input u")
    for rounding in ("floor", "nearest"):
        qx.plot(v, coding.quantize(v, 1.0, 3, rounding=rounding), label=f"quantize, {rounding}")
    qx.axhline(float(coding.top_code(1.0, 3)), color="k", ls=":", lw=1,
               label="top code theta*(2 - 2^(1-T))")
    qx.set_xlabel("membrane u (theta = 1)")
    qx.set_ylabel("decoded value")
    qx.set_title("what a layer computes: quantised, clipped ReLU (T = 3)", fontsize=10)
    qx.legend(fontsize=7)
    qx.grid(True, alpha=0.3)
    fig.savefig(path)


def neuron_figure(path: Path) -> None:
    """Two windows of one neuron (t_acc = t_gen = 4, offset 2), input from a fixed seed."""
    p = ILIFParameters(v_th=torch.tensor(1.0), t_acc=4, t_gen=4, offset=2, rounding="floor")
    steps = 2 + 2 * 8
    # idle, window 1 (V = 1.4: train 1011 = 1.375), window 2 (V = 0.55: train 0100 = 0.5);
    # the sources send nothing while this neuron generates
    current = torch.tensor([0.0, 0.0, 0.1, 0.05, 0.1, 0.2, 0.0, 0.0, 0.0, 0.0,
                            0.05, -0.05, 0.1, 0.15, 0.0, 0.0, 0.0, 0.0])
    state = ilif_initial_state(current[:1])
    v, z = [], []
    for t in range(steps):
        s, state = ilif_step(current[t:t + 1], state, p)
        v.append(float(state.v[0]))
        z.append(float(s[0]))
    fig, (ax,) = _figure(9.0, 3.8)
    t = np.arange(steps)
    for w in range(2):
        a = p.offset + 8 * w
        ax.axvspan(a - 0.5, a + 3.5, color="#dde7f3", zorder=0)
        ax.axvspan(a + 3.5, a + 7.5, color="#f6e3cf", zorder=0)
        ax.text(a + 1.5, 2.3, "accumulate", ha="center", fontsize=8)
        ax.text(a + 5.5, 2.3, "generate", ha="center", fontsize=8)
    ax.bar(t, current.numpy(), width=0.3, color="tab:green", label="input current I(t)")
    ax.step(t, v, where="post", color="tab:blue", label="membrane V after the step")
    ax.axhline(1.0, color="k", ls=":", lw=1, label="threshold v_th")
    st = t[np.asarray(z) > 0]
    ax.scatter(st, np.full(st.shape, 2.0), marker="|", s=300, color="k", label="spike")
    ax.set_ylim(-0.2, 2.5)
    ax.set_xlabel("step n")
    ax.set_title("one iLIF neuron: V <- 2V + I while accumulating; "
                 "s = [V >= v_th], V <- 2(V - s v_th) while generating", fontsize=10)
    fig.legend(fontsize=8, loc="outside lower center", ncols=4)
    fig.savefig(path)


def resnet20_schedule_figures(out: Path) -> None:
    """The schedule of CIFAR ResNet-20 at T = 4 (thresholds do not change the timing, so
    random weights and random calibration images give the same windows)."""
    torch.manual_seed(0)
    net = convert(get_model("cifar_resnet20").eval(), torch.randn(4, 3, 32, 32), T=4,
                  progress=False)
    plot_schedule(net.schedule, out / "schedule.png",
                  title="CIFAR ResNet-20, T = 4: every population's windows")
    plot_schedule(net.schedule, out / "pipeline.png", samples=3,
                  title="CIFAR ResNet-20, T = 4, pipelined")
    double = convert(get_model("cifar_resnet20").eval(), torch.randn(4, 3, 32, 32), T=4,
                     progress=False, double_buffered=True)
    plot_schedule(double.schedule, out / "pipeline_double.png", samples=3,
                  title="CIFAR ResNet-20, T = 4, double-buffered")


def exactness_figure(path: Path) -> None:
    """small_cnn with random weights, converted at T = 3 in float64."""
    torch.manual_seed(0)
    model = get_model("small_cnn", in_channels=1, input_size=8, num_classes=10, width=8,
                      hidden=32).double().eval()
    x = torch.randn(64, 1, 8, 8, dtype=torch.float64)
    net = convert(model, x[:32], T=3, dtype=torch.float64, progress=False)
    with torch.no_grad():
        snn = net(x).flatten().numpy()
        quant = net.graph.forward(x, quantized=True)[net.graph.output].flatten().numpy()
        ann = model(x).flatten().numpy()
    fig, axes = _figure(9.0, 3.9, 2)
    for ax, ref, name in ((axes[0], quant, "quantised ANN"), (axes[1], ann, "ANN")):
        gap = float(np.abs(snn - ref).max())
        ax.scatter(ref, snn, s=6, alpha=0.6)
        lo, hi = float(min(ref.min(), snn.min())), float(max(ref.max(), snn.max()))
        ax.plot([lo, hi], [lo, hi], color="0.6", lw=1)
        ax.set_xlabel(f"{name} logit")
        ax.set_ylabel("SNN logit")
        ax.set_title(f"SNN vs {name}: max |difference| = {gap:.1e}", fontsize=10)
        ax.grid(True, alpha=0.3)
    fig.suptitle("small CNN, T = 3, float64, 64 random inputs x 10 logits", fontsize=10)
    fig.savefig(path)


FIGURES: dict[str, Callable[[Path], None]] = {
    "code.png": code_figure,
    "neuron.png": neuron_figure,
    "exactness.png": exactness_figure,
    "conversion_error.png": lambda p: plot_conversion_error(p, T=6),
}


def generate(out: Path) -> list[Path]:
    """Write every figure into ``out``; returns their paths."""
    out.mkdir(parents=True, exist_ok=True)
    for name, make in FIGURES.items():
        make(out / name)
    resnet20_schedule_figures(out)
    return sorted(out.glob("*.png"))


def _into_site() -> None:
    import mkdocs_gen_files

    with tempfile.TemporaryDirectory() as tmp:
        for png in generate(Path(tmp)):
            with mkdocs_gen_files.open(f"concepts/{png.name}", "wb") as f:
                f.write(png.read_bytes())


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python docs/gen_figures.py OUT_DIR")
    for p in generate(Path(sys.argv[1])):
        print(p)
else:  # run by mkdocs-gen-files (runpy gives another __name__)
    _into_site()
