"""SIGTERM and Ctrl-C (SIGINT to the process group) stop ``spikeconverter run-lava`` cleanly:
exit 143/130, one line, no traceback, no surviving process, no leaked shared memory."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

pytest.importorskip("lava", reason="needs lava-nc 0.10.0 (Python 3.10)")


def _session(sid: int) -> list[int]:
    """Live processes of session ``sid`` (the command and everything it started)."""
    pids = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            fields = Path(f"/proc/{d}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[3]) == sid and fields[0] != "Z":
            pids.append(int(d))
    return pids


def _shm_of(pids: list[int]) -> set[str]:
    """The /dev/shm segments these processes have mapped."""
    names = set()
    for pid in pids:
        try:
            maps = Path(f"/proc/{pid}/maps").read_text()
        except OSError:
            continue
        names |= {line.split("/dev/shm/", 1)[1].split()[0] for line in maps.splitlines()
                  if "/dev/shm/" in line}
    return names


@pytest.mark.lava
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signal_to_the_group_stops_run_lava_and_its_workers(sig, netfile, folder):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    p = subprocess.Popen(
        [sys.executable, "-m", "spikeconverter.cli", "run-lava", str(netfile), "-d",
         str(folder), "--channels", "1", "--limit", "18", "--lava-batch", "1"],
        env=env, start_new_session=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True)
    err: list[str] = []
    reader = threading.Thread(target=lambda: err.extend(p.stderr), daemon=True)
    reader.start()
    shm: set[str] = set()
    try:
        deadline = time.monotonic() + 120
        while not any("lava float" in line for line in err):  # the run has started
            assert p.poll() is None and time.monotonic() < deadline, "".join(err)
            time.sleep(0.05)
        workers = _session(p.pid)
        shm = _shm_of(workers)
        assert len(workers) > 3 and shm  # the runtime's workers and segments exist
        os.killpg(p.pid, sig)  # what a terminal does on Ctrl-C; a job manager's SIGTERM
        rc = p.wait(timeout=60)
        reader.join(5)
        for _ in range(100):  # the last workers may take a moment to be reaped
            if not _session(p.pid):
                break
            time.sleep(0.1)
        text = "".join(err)
        assert rc == 128 + sig, text
        ours = [line for line in text.splitlines() if line.startswith("spikeconverter:")]
        assert ours == [f"spikeconverter: interrupted by {signal.Signals(sig).name}"], text
        assert "Traceback" not in text and "KeyboardInterrupt" not in text, text
        assert _session(p.pid) == []
        assert not [s for s in shm if Path("/dev/shm", s).exists()]
    finally:  # never leave anything behind on the machine, even when an assertion failed
        for pid in _session(p.pid):
            os.kill(pid, signal.SIGKILL)
        for s in shm:
            Path("/dev/shm", s).unlink(missing_ok=True)


def _graph():
    from spikeconverter.converters.to_lava.runtime import import_lava_runtime

    import_lava_runtime()  # tolerates the start method an earlier progress bar fixed
    import numpy as np
    from lava.proc.io.sink import RingBuffer as Sink
    from lava.proc.io.source import RingBuffer as Source

    source = Source(data=np.ones((2, 8)))
    sink = Sink(shape=(2,), buffer=8)
    source.s_out.connect(sink.a_in)
    return sink


@pytest.mark.lava
@pytest.mark.parametrize("when", ["running", "starting"])
def test_lava_runtime_stops_everything_on_a_signal(when, monkeypatch):
    """In-process: a SIGTERM while the graph runs, or while its runtime is still being built
    (held until it is up, then raised), stops the runtime and leaves no worker behind."""
    import multiprocessing

    sink = _graph()  # first: imports Lava's runtime the tolerant way
    from lava.magma.core.run_conditions import RunSteps

    from spikeconverter.interrupts import Interrupted
    from spikeconverter.processes.run import lava_runtime, run_config

    before = set(multiprocessing.active_children())
    if when == "starting":
        create = type(sink).create_runtime

        def create_and_signal(self, *args, **kwargs):
            os.kill(os.getpid(), signal.SIGTERM)  # arrives before the workers exist
            return create(self, *args, **kwargs)

        monkeypatch.setattr(type(sink), "create_runtime", create_and_signal)
    handler = signal.getsignal(signal.SIGTERM)
    with pytest.raises(Interrupted, match="SIGTERM") as info, \
            lava_runtime(sink, run_config()) as gate:
        assert when == "running", "the held signal must be raised before the block runs"
        sink.run(condition=RunSteps(num_steps=4))
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(0.2)  # held: never raised inside Lava's code
        sink.run(condition=RunSteps(num_steps=4))
        gate.check()  # the safe point between chunks
        pytest.fail("SIGTERM was not raised")
    assert info.value.signum == signal.SIGTERM
    assert signal.getsignal(signal.SIGTERM) is handler  # the handlers are restored
    assert set(multiprocessing.active_children()) <= before
