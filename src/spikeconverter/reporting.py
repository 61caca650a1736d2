"""Writing results: atomic CSV/JSON files, a plain-text table, one-line warnings.

Numbers in files are rounded to :data:`SIGNIFICANT_DIGITS` significant digits: an accuracy
measured on a thousand images is known to about 0.1 %, so ``96.38888835906982`` is written as
``96.39``.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import math
import os
import sys
import warnings
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, TextIO

import numpy as np

from spikeconverter.atomic import atomic_path

__all__ = [
    "SIGNIFICANT_DIGITS",
    "format_table",
    "format_warning",
    "one_line_warnings",
    "round_significant",
    "write_csv",
    "write_json",
    "write_text",
]

SIGNIFICANT_DIGITS = 4
"""Significant digits of the floats written by :func:`write_csv` and :func:`write_json`."""


def write_text(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` to ``path`` atomically (temporary file in the same folder, then rename)."""
    path = Path(path)
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return path


def round_significant(value: float, digits: int = SIGNIFICANT_DIGITS) -> float:
    """``value`` rounded to ``digits`` significant digits (0, NaN and inf unchanged).

    >>> round_significant(96.38888835906982)
    96.39
    >>> round_significant(44214137.5)
    44210000.0
    """
    if digits < 1:
        raise ValueError(f"digits must be >= 1, got {digits!r}")
    if value == 0 or not math.isfinite(value):
        return value
    return float(f"{value:.{digits}g}")


def _plain(obj: Any, digits: int | None = None) -> Any:
    """JSON-friendly copy: numpy/torch scalars and arrays to Python, NaN/inf to None, floats
    rounded to ``digits`` significant digits (None: unrounded)."""
    if hasattr(obj, "detach"):  # torch tensors
        obj = obj.detach().cpu().numpy()
    if isinstance(obj, np.ndarray):
        return _plain(obj.tolist(), digits)
    if isinstance(obj, np.generic):
        return _plain(obj.item(), digits)
    if isinstance(obj, float):
        if not math.isfinite(obj):
            return None
        return obj if digits is None else round_significant(obj, digits)
    if isinstance(obj, Mapping):
        return {str(k): _plain(v, digits) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v, digits) for v in obj]
    if isinstance(obj, Path):
        return str(obj)
    return obj


def write_json(path: str | os.PathLike, obj: Any, digits: int | None = SIGNIFICANT_DIGITS) -> Path:
    """``obj`` as indented JSON (numpy and torch values converted), written atomically.

    Floats are rounded to ``digits`` significant digits (None keeps them as they are).
    """
    return write_text(path, json.dumps(_plain(obj, digits), indent=2, allow_nan=False) + "\n")


def write_csv(
    path: str | os.PathLike,
    rows: Sequence[Mapping[str, Any]],
    columns: Sequence[str],
    digits: int | None = SIGNIFICANT_DIGITS,
) -> Path:
    """Rows (dicts) as CSV with a header of ``columns``; missing entries stay empty.

    Floats are rounded to ``digits`` significant digits (None keeps them as they are).
    """
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(columns), extrasaction="ignore", lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({k: ("" if v is None else _plain(v, digits)) for k, v in r.items()})
    return write_text(path, buf.getvalue())


def _cell(v: Any) -> str:
    if v is None or v == "":
        return "-"
    if isinstance(v, float):
        if not math.isfinite(v):
            return "-"
        if v != 0 and (abs(v) >= 1e6 or abs(v) < 1e-2):
            return f"{v:.3g}"
        return f"{v:.2f}"
    return str(v)


def format_table(rows: Sequence[Mapping[str, Any]], columns: Sequence[str]) -> str:
    """Aligned plain-text table (numbers right-aligned, floats rounded for reading)."""
    cells = [[_cell(r.get(c)) for c in columns] for r in rows]
    widths = [max([len(c)] + [len(row[i]) for row in cells]) for i, c in enumerate(columns)]
    numeric = [all(isinstance(r.get(c), (int, float)) or r.get(c) in (None, "") for r in rows)
               for c in columns]

    def line(vals: Sequence[str]) -> str:
        return "  ".join(v.rjust(w) if num else v.ljust(w)
                         for v, w, num in zip(vals, widths, numeric, strict=True)).rstrip()

    out = [line(list(columns)), line(["-" * w for w in widths])]
    out += [line(row) for row in cells]
    return "\n".join(out)


def format_warning(message: Warning | str, category: type[Warning], filename: str,
                   lineno: int, prog: str = "spikeconverter") -> str:
    """One line for a warning: ``prog: warning: message``, without the source line.

    Warnings raised outside this package also name their category and origin, so that a
    library's warning is not mistaken for ours.
    """
    text = " ".join(str(message).split())
    ours = Path(__file__).resolve().parent
    try:
        inside = Path(filename).resolve().is_relative_to(ours)
    except (OSError, ValueError):
        inside = False
    if not inside:
        text += f" ({category.__name__} from {Path(filename).name}:{lineno})"
    return f"{prog}: warning: {text}\n"


@contextlib.contextmanager
def one_line_warnings(prog: str = "spikeconverter", stream: TextIO | None = None
                      ) -> Iterator[None]:
    """Within the block, every warning shown is one line on ``stream`` (default: stderr).

    For command-line programs (the CLI wraps its subcommands in it): Python's default format
    echoes the warning's source line. The previous warning settings come back on exit; filters
    are untouched, so a warning that would be hidden stays hidden.
    """
    def show(message: Warning | str, category: type[Warning], filename: str, lineno: int,
             file: TextIO | None = None, line: str | None = None) -> None:
        out = stream or file or sys.stderr
        out.write(format_warning(message, category, filename, lineno, prog))

    with warnings.catch_warnings():
        warnings.showwarning = show
        yield
