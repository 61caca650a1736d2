"""Atomic writes under concurrency and after a killed writer."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time

import pytest

from spikeconverter.atomic import atomic_path, remove_stale_temporaries


def test_threads_saving_to_one_path_all_succeed(tmp_path):
    target = tmp_path / "net.snn"
    errors, start = [], threading.Barrier(8)

    def save(i: int) -> None:
        try:
            start.wait()
            with atomic_path(target) as tmp:
                tmp.write_bytes(bytes([i]) * 200_000)
        except Exception as e:  # noqa: BLE001 - the test counts every failure
            errors.append(e)

    threads = [threading.Thread(target=save, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    data = target.read_bytes()
    assert len(data) == 200_000 and len(set(data)) == 1  # one whole save, never a mix
    assert [p.name for p in tmp_path.iterdir()] == ["net.snn"]


def _dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def test_leftovers_of_a_killed_writer_are_removed_by_the_next_write(tmp_path):
    target = tmp_path / "net.snn"
    dead = _dead_pid()
    old = time.time() - 3600
    stale = [tmp_path / f".net.snn.{dead}.tmp", tmp_path / f".net.snn.{dead}.0a1b2c.tmp"]
    for p in stale:
        p.write_bytes(b"half")
        os.utime(p, (old, old))
    recent = tmp_path / f".net.snn.{dead}.ffff.tmp"  # maybe another machine's: too young
    recent.write_bytes(b"half")
    alive = tmp_path / f".net.snn.{os.getppid()}.tmp"  # a running writer's: never touched
    alive.write_bytes(b"half")
    os.utime(alive, (old, old))
    other = tmp_path / f".other.snn.{dead}.tmp"  # another target's
    other.write_bytes(b"x")
    os.utime(other, (old, old))
    with atomic_path(target) as tmp:
        tmp.write_text("new")
    assert target.read_text() == "new"
    assert not any(p.exists() for p in stale)
    assert recent.exists() and alive.exists() and other.exists()
    assert remove_stale_temporaries(target) == []


def test_a_directory_target_is_refused_before_writing(tmp_path):
    with pytest.raises(IsADirectoryError, match="is a directory"), atomic_path(tmp_path):
        pytest.fail("the body must not run")
    assert list(tmp_path.iterdir()) == []
