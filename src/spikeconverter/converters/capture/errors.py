"""What the capture reports: its error type, the blockers it lists, what it supports."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["SUPPORTED_OPERATIONS", "Blocker", "ConversionError", "blocked"]

SUPPORTED_OPERATIONS = (
    "Conv2d (any stride/padding/dilation/groups), Linear, BatchNorm1d/2d, ReLU, ReLU6, "
    "Hardtanh(0, m), clamp(min=0), MaxPool2d, AvgPool2d, AdaptiveAvgPool2d, mean over H,W, "
    "residual add and subtraction, multiplication/division by a constant number, "
    "torch.cat (any dim but the batch), layout ops that only move values "
    "(view/reshape/flatten, transpose/permute, chunk/split, contiguous, indexing and slicing, "
    "channel shuffle), F.pad with constant 0, and eval-mode no-ops (Dropout variants, "
    "stochastic depth, Identity)"
)


@dataclass(frozen=True)
class Blocker:
    """One node of a model that the capture cannot represent.

    Attributes
    ----------
    node : str
        The fx node's name.
    op : str
        The fx op (``call_module``, ``call_function``, ``call_method``, ``get_attr``).
    target : str
        What it calls (for modules: the submodule's path and class).
    location : str
        Where the model's source creates it (``file:line in function``), or ``""`` if unknown.
    why : str
        The reason, and what would work instead.
    """

    node: str
    op: str
    target: str
    location: str
    why: str

    def place(self) -> str:
        """The node, its op and target, and where it is made."""
        where = f" at {self.location}" if self.location else ""
        return f"node {self.node!r} (op {self.op}, target {self.target}){where}"

    def __str__(self) -> str:
        return f"{self.place()}: {self.why}"


class ConversionError(ValueError):
    """The model cannot be converted (unsupported operation, untraceable, failed self-check).

    ``blockers`` lists every unsupported node when the capture found some (empty otherwise).
    """

    def __init__(self, message: str, blockers: tuple[Blocker, ...] = ()):
        super().__init__(message)
        self.blockers = tuple(blockers)


def blocked(model: str, blockers: list[Blocker]) -> ConversionError:
    """The error listing every blocker of ``model`` at once, grouped by reason (each reason
    once, then every node it blocks)."""
    by_why: dict[str, list[Blocker]] = {}
    for b in blockers:
        by_why.setdefault(b.why, []).append(b)
    many = f"{len(blockers)} nodes" if len(blockers) > 1 else "1 node"
    # the first line stands alone (the CLI shows only it): it names the first blocker
    more = " and the others below" if len(blockers) > 1 else ""
    lines = [f"cannot convert {model}: {many} cannot be represented by the spiking network "
             f"(`spikeconverter check` lists them): {blockers[0]}{more}"]
    for why, group in by_why.items():
        lines.append(f"* {why} ({len(group)} node{'s' if len(group) > 1 else ''}):")
        lines += [f"  - {b.place()}" for b in group]
    lines.append(f"Supported: {SUPPORTED_OPERATIONS}.")
    return ConversionError("\n".join(lines), tuple(blockers))
