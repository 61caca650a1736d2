"""Atomic file writes: nothing half-written is ever left at the target path.

Each write goes to its own temporary file beside the target, ``.NAME.PID.TOKEN.tmp`` (``TOKEN``
is random, so threads of one process saving to the same path never share a temporary file),
which is synced and renamed onto the target. A process killed mid-write (``kill -9``) leaves its
temporary file behind; the next write to the same target removes such leftovers when the
process that made them is gone and they are old enough not to belong to a writer on another
machine sharing the folder (:data:`STALE_SECONDS`).
"""

from __future__ import annotations

import os
import re
import secrets
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

__all__ = ["STALE_SECONDS", "atomic_path", "remove_stale_temporaries"]

#: Age after which a leftover temporary file of a dead process is removed.
STALE_SECONDS = 600.0


def _temporary_name(path: Path) -> Path:
    return path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(6)}.tmp")


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, owned by someone else
        return True
    return True


def remove_stale_temporaries(path: str | os.PathLike, older_than: float = STALE_SECONDS
                             ) -> list[Path]:
    """Remove leftover temporary files of writes to ``path`` whose writer process is gone.

    Only files named like this module's temporaries of ``path`` (``.NAME.PID.tmp`` of older
    versions and ``.NAME.PID.TOKEN.tmp``) are considered, and only those whose ``PID`` is not a
    running process and that were last modified more than ``older_than`` seconds ago.

    Returns
    -------
    list of Path
        The files removed.
    """
    path = Path(path)
    pattern = re.compile(rf"\.{re.escape(path.name)}\.(\d+)(\.[0-9a-f]+)?\.tmp")
    removed = []
    now = time.time()
    try:
        candidates = list(path.parent.iterdir())
    except OSError:
        return removed
    for p in candidates:
        m = pattern.fullmatch(p.name)
        if m is None or int(m.group(1)) == os.getpid() or _pid_alive(int(m.group(1))):
            continue
        try:
            if now - p.lstat().st_mtime > older_than and p.is_file():
                p.unlink()
                removed.append(p)
        except OSError:  # raced with another cleaner, or not ours to remove: leave it
            continue
    return removed


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it is synced and renamed onto ``path``.

    The temporary file is removed if the body raises, so a failed write leaves the old file (or
    nothing) in place. Concurrent writers (threads or processes) each get their own temporary
    file; the last rename wins. A directory at ``path`` is refused before anything is written.

    Raises
    ------
    IsADirectoryError
        ``path`` is an existing directory.

    Examples
    --------
    >>> with atomic_path("net.snn") as tmp:
    ...     torch.save(blob, tmp)
    """
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(f"cannot write {str(path)!r}: it is a directory; give a file "
                                "name")
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(path)
    tmp = _temporary_name(path)
    try:
        yield tmp
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
